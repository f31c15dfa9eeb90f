//! `privilege`: domain control is dom0's alone. dom0 builds testguest `unprivileged`, which
//! tries domctl (getdomaininfo and destroydomain of dom0), sysctl physinfo and
//! page_offline_op (on its own console ring), populating dom0's
//! memory, allocating a port in dom0 and reading the console: each must fail with `EPERM`
//! and leave its argument as it was, which the domU checks and reports. dom0 waits for it to
//! power off and finds its verdict in the hypervisor's console ring (a console that cannot be
//! read is a failure, not a skipped verdict). Then dom0 reads back what the refused calls
//! would have changed in it:
//!
//! - its memory: `tot_pages` and `max_pages` as before (populate_physmap for dom0);
//! - its event channels: no new unbound port (alloc_unbound in dom0);
//! - its existence: domain 0 is still first in the domain list, neither dying nor shut down
//!   (destroydomain of dom0);
//!
//! and the machine's free frames are back where they were once the domU is destroyed.

use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::event::{EVTCHN_2L_NR_CHANNELS, EVTCHNSTAT_UNBOUND, EvtchnPort};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Outcome};
use crate::wait::ConsoleLog;

/// Memory of the domU.
const MIB: u64 = 16;
/// How long dom0 waits for the domU's verdict.
const WAIT_NS: u64 = 20_000 * NS_PER_MS;

/// What of dom0 the domU's refused calls would change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dom0State {
    tot_pages: u64,
    max_pages: u64,
    unbound_ports: u32,
}

/// dom0's unbound ports, from `EVTCHNOP_status` of each port (port 0 is never used; a port
/// beyond what the domain has allocated is `EINVAL`, which ends the scan).
fn unbound_ports() -> Result<u32, Errno> {
    let mut n = 0;
    for port in 1..EVTCHN_2L_NR_CHANNELS as EvtchnPort {
        match calls::evtchn_status(DOMID_SELF, port) {
            Ok(s) => n += u32::from(s.status == EVTCHNSTAT_UNBOUND),
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn dom0_state(ctx: &mut Ctx) -> Result<Dom0State, Errno> {
    let info = ctx.hv.domain_info(0)?;
    Ok(Dom0State {
        tot_pages: info.tot_pages,
        max_pages: info.max_pages,
        unbound_ports: unbound_ports()?,
    })
}

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let mut log = match ConsoleLog::now(&mut ctx.hv) {
        Ok(l) => l,
        Err(e) => {
            c.check(
                "sysctl readconsole (where the domU's verdict is read)",
                false,
                format_args!("returned -{e:?}"),
            );
            return Outcome::Ran;
        }
    };
    let (Some(free_before), Some(dom0_before)) = (
        c.ok("sysctl physinfo before", ctx.free_pages()),
        c.ok("dom0's pages and ports before", dom0_state(ctx)),
    ) else {
        return Outcome::Ran;
    };
    let built = match ctx.build(&Domu::new("unprivileged", MIB)) {
        Ok(b) => b,
        Err(e) => {
            let why = ctx.explain(&e);
            c.check("build unprivileged", false, format_args!("{why}"));
            return Outcome::Ran;
        }
    };
    let dom = built.dom;
    println!("built d{dom} (unprivileged, {MIB} MiB)");
    let done = ctx
        .wait
        .wait_shutdown(&mut ctx.hv, dom, now_ns() + WAIT_NS)
        .is_ok_and(|(_, done)| done);
    c.check(
        format_args!("d{dom} shuts down"),
        done,
        format_args!("still running"),
    );
    match log.read_new(&mut ctx.hv) {
        Ok(text) => {
            let lines = ConsoleLog::lines_of(&text, dom);
            for line in lines.iter().filter(|l| l.starts_with("check ")) {
                println!("privilege d{dom}: {line}");
            }
            let verdict = lines.iter().find(|l| l.starts_with("Test result: "));
            c.check(
                format_args!("d{dom}'s attempts were all refused with EPERM, writing nothing back"),
                verdict.is_some_and(|v| v == "Test result: SUCCESS"),
                format_args!("its result line: {verdict:?}"),
            );
        }
        Err(e) => {
            c.check(
                format_args!("sysctl readconsole of d{dom}'s verdict"),
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }

    // What the refused calls would have changed in dom0.
    if let Some(after) = c.ok("dom0's pages and ports after", dom0_state(ctx)) {
        c.eq(
            "dom0's memory reservation and event channels as before the domU's attempts",
            after,
            dom0_before,
        );
    }
    match ctx.hv.domains() {
        Ok(list) => {
            let first = list.first();
            c.check(
                "domain 0 is still first in the domain list, alive",
                first.is_some_and(|d| d.dom == 0 && !d.dying && d.shutdown.is_none()),
                format_args!(
                    "first entry: {:?}",
                    first.map(|d| (d.dom, d.dying, d.shutdown))
                ),
            );
        }
        Err(e) => {
            c.check(
                "sysctl getdomaininfolist",
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }

    ctx.destroy_all(c, "the unprivileged domU", &[dom]);
    if let Some(after) = c.ok("sysctl physinfo after", ctx.free_pages()) {
        c.eq("free frames back where they were", after, free_before);
    }
    Outcome::Ran
}
