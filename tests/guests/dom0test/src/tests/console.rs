//! `console`: dom0 as the console backend of a domU.
//!
//! dom0 builds testguest `console_ring` with a console (builder `console: true`: a ring page,
//! an unbound event channel in the domU for dom0, both in the device page and
//! `start_info.console`). The domU writes [`GREETING`] into its output ring and notifies
//! (again every 100 ms until its output is consumed); dom0 binds the domU's port
//! (`EVTCHNOP_bind_interdomain`) and, as a backend must, looks at the ring when the new port's
//! initial pending event arrives (a notification sent before the bind was dropped: the domU
//! may run before dom0 binds) and on every notification after it: it consumes what the ring
//! holds (`out_cons`) and notifies back, until the greeting's newline. The domU checks that
//! its output was consumed and reports; dom0 finds that report in the hypervisor's console
//! ring.
//!
//! dom0 reaches the ring page with Xenia's frame-copy domctls: `XEN_DOMCTL_XENIA_READ_FRAME`
//! to read the indexes and the bytes, `XEN_DOMCTL_XENIA_WRITE_FRAME` to publish `out_cons`
//! (guest-abi `domctl`); nothing of the domU is ever mapped into dom0.

use alloc::vec::Vec;

use dom0_tools::hypervisor::Hypervisor;
use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::console::{XENCONS_OUT_SIZE, XenconsInterface};
use guest_abi::sched::SHUTDOWN_POWEROFF;
use guest_abi::types::{DomId, Mfn};
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::{events, println};

use super::{Ctx, Domu, Ms, Outcome};
use crate::hv::{Recorded, Xenia};
use crate::wait::{ConsoleLog, POLL_NS};

/// What testguest `console_ring` writes (its `CONSOLE_GREETING`).
const GREETING: &[u8] = b"hello from the console ring\n";
/// Memory of the domU.
const MIB: u64 = 16;
/// How long dom0 waits for the greeting.
const EVENT_WAIT_NS: u64 = 10_000 * NS_PER_MS;
/// How long dom0 waits for the domU to power off (it gives up on the backend after 10 s).
const SHUTDOWN_WAIT_NS: u64 = 20_000 * NS_PER_MS;
/// Offsets in the ring page (guest-abi `console`, Xen's `struct xencons_interface`).
const OUTPUT: usize = core::mem::offset_of!(XenconsInterface, output);
const OUT_CONS: usize = core::mem::offset_of!(XenconsInterface, out_cons);
// `consume` reads both indexes in one copy.
const _: () = assert!(core::mem::offset_of!(XenconsInterface, out_prod) == OUT_CONS + 4);

/// The backend's side of the output ring, through the frame-copy domctls: reads the indexes,
/// then the bytes between them, then publishes the new consumer index. Returns the bytes.
fn consume(hv: &mut Xenia, dom: DomId, ring: Mfn) -> Result<Vec<u8>, Errno> {
    // `out_cons` then `out_prod`, read before the bytes they describe (the producer writes
    // the bytes before it publishes `out_prod`).
    let mut idx = [0u8; 8];
    hv.read_frame(dom, ring, OUT_CONS, &mut idx)?;
    let cons = u32::from_le_bytes([idx[0], idx[1], idx[2], idx[3]]);
    let prod = u32::from_le_bytes([idx[4], idx[5], idx[6], idx[7]]);
    // The domU is not trusted: a producer index too far ahead is cut to the ring's size.
    let n = (prod.wrapping_sub(cons) as usize).min(XENCONS_OUT_SIZE);
    let mut output = alloc::vec![0u8; XENCONS_OUT_SIZE];
    hv.read_frame(dom, ring, OUTPUT, &mut output)?;
    let bytes = (0..n)
        .map(|i| output[cons.wrapping_add(i as u32) as usize % XENCONS_OUT_SIZE])
        .collect();
    let new_cons = cons.wrapping_add(n as u32);
    hv.write_frame(dom, ring, OUT_CONS, &new_cons.to_le_bytes())?;
    Ok(bytes)
}

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let mut log = match ConsoleLog::now(&mut ctx.hv) {
        Ok(l) => Some(l),
        Err(e) => {
            // The domU's verdict is read there at the end; go on with the ring, but the
            // test has failed.
            c.check(
                "sysctl readconsole (where the domU's verdict is read)",
                false,
                format_args!("returned -{e:?}"),
            );
            None
        }
    };
    let built = match ctx.build(&Domu {
        console: true,
        ..Domu::new("console_ring", MIB)
    }) {
        Ok(b) => b,
        Err(e) => {
            let why = ctx.explain(&e);
            c.check(
                "build console_ring with a console",
                false,
                format_args!("{why}"),
            );
            return Outcome::Ran;
        }
    };
    let dom = built.dom;
    println!("built d{dom} (console_ring, {MIB} MiB, with a console)");
    let Some(ring) = built.console else {
        c.check(
            "the builder gave the domU a console",
            false,
            format_args!("Built.console is None"),
        );
        ctx.destroy_all(c, "the console domU", &[dom]);
        return Outcome::Ran;
    };
    note(format_args!(
        "d{dom}'s console: ring mfn {:#x} (pfn {:#x}), its port {}",
        ring.mfn.0, ring.pfn.0, ring.evtchn
    ));
    let mut outcome = Outcome::Ran;
    let Some(local) = c.ok(
        format_args!("EVTCHNOP_bind_interdomain(d{dom}, port {})", ring.evtchn),
        calls::evtchn_bind_interdomain(dom, ring.evtchn),
    ) else {
        ctx.destroy_all(c, "the console domU", &[dom]);
        return Outcome::Ran;
    };
    // guest-abi: the new port starts pending, because what the domU sent while its end was
    // unbound was dropped: the backend must look at the ring once whatever happened before.
    c.check(
        format_args!("the new port {local} starts pending"),
        events::is_pending(local),
        format_args!("its pending bit is clear"),
    );

    // The backend loop: on every event on the port, consume what the ring holds and notify
    // back; until the greeting's newline has come or the wait ends.
    let start = now_ns();
    let deadline = start + EVENT_WAIT_NS;
    let mut seen = 0u32;
    let mut looks = 0u32;
    let mut text: Vec<u8> = Vec::new();
    let mut failed: Option<(Errno, alloc::string::String)> = None;
    while !text.ends_with(b"\n") && now_ns() < deadline {
        if events::count(local) == seen {
            ctx.wait.block_until(deadline.min(now_ns() + POLL_NS));
            continue;
        }
        seen = events::count(local);
        looks += 1;
        match consume(&mut ctx.hv, dom, ring.mfn) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                text.extend_from_slice(&bytes);
                if let Err(e) = calls::evtchn_send(local) {
                    failed = Some((e, alloc::format!("EVTCHNOP_send on port {local}")));
                    break;
                }
            }
            Err(e) => {
                let f = ctx
                    .hv
                    .last_failure()
                    .map_or(alloc::string::String::new(), |f| alloc::format!("{f}"));
                failed = Some((e, f));
                break;
            }
        }
    }
    let shown = alloc::string::String::from_utf8_lossy(&text);
    note(format_args!(
        "{seen} events on port {local}, {looks} looks at the ring, {} bytes in {}",
        text.len(),
        Ms(now_ns() - start)
    ));
    let mut consumed = false;
    match failed {
        Some((Errno::ENOSYS, call)) => {
            println!(
                "console: SKIP reading the ring: the hypervisor does not implement the \
                 frame-copy domctls ({call})"
            );
            outcome = Outcome::Skipped;
        }
        Some((e, call)) => {
            c.check(
                format_args!("read and consume d{dom}'s console ring"),
                false,
                format_args!("-{e:?}: {call}"),
            );
        }
        None => {
            println!("console d{dom}: read {shown:?} from the ring");
            consumed = c.check(
                "dom0 reads the domU's greeting from its console ring",
                text == GREETING,
                format_args!("read {} bytes: {shown:?}", text.len()),
            );
        }
    }

    match ctx
        .wait
        .wait_shutdown(&mut ctx.hv, dom, now_ns() + SHUTDOWN_WAIT_NS)
    {
        Ok((info, done)) => {
            c.check(
                format_args!("d{dom} powers off"),
                done && info.shutdown_reason() == Some(SHUTDOWN_POWEROFF),
                format_args!(
                    "flags {:#x}, shutdown reason {:?}",
                    info.flags,
                    info.shutdown_reason()
                ),
            );
        }
        Err(e) => {
            c.check(
                format_args!("getdomaininfo d{dom}"),
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }
    // The domU's verdict is in the hypervisor's console: not being able to read it is a
    // failure, never a skipped check.
    let text = match log.as_mut().map(|l| l.read_new(&mut ctx.hv)) {
        Some(Ok(text)) => Some(text),
        Some(Err(e)) => {
            c.check(
                format_args!("sysctl readconsole of d{dom}'s verdict"),
                false,
                format_args!("returned -{e:?}"),
            );
            None
        }
        // Already failed where the log was opened.
        None => None,
    };
    if let Some(text) = text {
        let lines = ConsoleLog::lines_of(&text, dom);
        let verdict = lines.iter().find(|l| l.starts_with("Test result:"));
        println!(
            "console d{dom} says: {}",
            verdict.map_or("(no result line)", |v| v.as_str())
        );
        if consumed {
            c.check(
                format_args!("d{dom} saw its output consumed (its Test result: SUCCESS)"),
                verdict.is_some_and(|v| v == "Test result: SUCCESS"),
                format_args!("its lines: {lines:?}"),
            );
        }
    }
    c.ok(
        format_args!("EVTCHNOP_close port {local}"),
        calls::evtchn_close(local),
    );
    ctx.destroy_all(c, "the console domU", &[dom]);
    outcome
}
