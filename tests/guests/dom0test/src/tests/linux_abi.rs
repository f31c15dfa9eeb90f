//! `linux_abi_domu`: dom0 builds testguest `linux_abi_domu`, which checks from a domU what Xen
//! keeps from one (issue 18: `xen_version`'s denials, `pirq_eoi_gmfn_v2`, `get_free_pirq`,
//! `remote_shutdown`, `set_iopl`); its verdict comes back through the console ring, and every
//! frame comes back when it is destroyed.

use xenia_guest_rt::check::Checks;
use xenia_guest_rt::mm;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Outcome};
use crate::wait::ConsoleLog;

/// The domU's memory.
const DOMU_MIB: u64 = 16;

pub fn domu(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let mut log = match ConsoleLog::now(&mut ctx.hv) {
        Ok(l) => l,
        Err(e) => {
            c.check("sysctl readconsole", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let free_before = c.ok("sysctl physinfo before", ctx.free_pages());
    let built = match ctx.build(&Domu::new("linux_abi_domu", DOMU_MIB)) {
        Ok(b) => b,
        Err(e) => {
            let why = ctx.explain(&e);
            c.check("build linux_abi_domu", false, format_args!("{why}"));
            return Outcome::Ran;
        }
    };
    let dom = built.dom;
    let done = ctx
        .wait
        .wait_shutdown(&mut ctx.hv, dom, now_ns() + 20_000 * NS_PER_MS)
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
                println!("linux_abi d{dom}: {line}");
            }
            let verdict = lines.iter().find(|l| l.starts_with("Test result: "));
            c.check(
                format_args!("d{dom}'s checks all passed"),
                verdict.is_some_and(|v| v == "Test result: SUCCESS"),
                format_args!("its result line: {verdict:?}"),
            );
        }
        Err(e) => {
            c.check(
                "sysctl readconsole of the verdict",
                false,
                format_args!("-{e:?}"),
            );
        }
    }
    ctx.destroy_all(c, "the linux_abi domU", &[dom]);
    if let (Some(before), Some(after)) =
        (free_before, c.ok("sysctl physinfo after", ctx.free_pages()))
    {
        c.eq("free frames back where they were", after, before);
    }
    c.eq("frame table consistent", mm::check_frame_table(), 0);
    Outcome::Ran
}
