//! `teardown`: [`CYCLES`] times, build the smallest domU that boots (testguest `exit`, which
//! prints one line and powers off), let it run, wait for it to shut down (woken by
//! `VIRQ_DOM_EXC`), and destroy it. Every frame must come back: `physinfo.free_pages` after
//! the last cycle equals the count before the first, printed as
//! `free frames before: <N> after: <M>`. Also checked on every cycle: the shutdown reason is
//! `poweroff`, `VIRQ_DOM_EXC` was raised, `destroydomain` succeeds and the domain is gone
//! afterwards. The time per cycle is printed.

use guest_abi::sched::SHUTDOWN_POWEROFF;
use guest_abi::types::DomId;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Ms, Outcome, SMALLEST_MIB};
use crate::hv::Recorded;

/// Build/run/destroy cycles.
const CYCLES: u32 = 200;
/// How long one domU may take to power off.
const SHUTDOWN_WAIT_NS: u64 = 10_000 * NS_PER_MS;
/// Cycles between progress lines.
const PROGRESS_EVERY: u32 = 50;

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let before = match ctx.free_pages() {
        Ok(f) => f,
        Err(e) => {
            c.check("sysctl physinfo", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let mut mib = SMALLEST_MIB;
    let mut after_first = None;
    let mut done = 0u32;
    let mut dom_exc_missing = 0u32;
    let mut slowest = 0u64;
    let mut fastest = u64::MAX;
    let mut problem: Option<(u32, alloc::string::String)> = None;
    let mut ids = (DomId::MAX, 0 as DomId);
    let start = now_ns();
    let calls_before = ctx.hv.calls();
    for cycle in 1..=CYCLES {
        let t0 = now_ns();
        let seen = ctx.wait.dom_exc_seen();
        let built = match ctx.build_smallest(&Domu::new("exit", mib)) {
            Ok((b, used)) => {
                if cycle == 1 {
                    note(format_args!("the smallest domU that fits: {used} MiB"));
                }
                mib = used;
                b
            }
            Err(e) => {
                problem = Some((cycle, alloc::format!("build: {}", ctx.explain(&e))));
                break;
            }
        };
        let dom = built.dom;
        ids = (ids.0.min(dom), ids.1.max(dom));
        let waited = ctx
            .wait
            .wait_shutdown(&mut ctx.hv, dom, now_ns() + SHUTDOWN_WAIT_NS);
        let bad = match waited {
            Ok((info, true)) if info.shutdown_reason() == Some(SHUTDOWN_POWEROFF) => None,
            Ok((info, true)) => Some(alloc::format!(
                "d{dom} shut down with reason {:?}, not poweroff",
                info.shutdown_reason()
            )),
            Ok((info, false)) => Some(alloc::format!(
                "d{dom} did not shut down within {} (flags {:#x})",
                Ms(SHUTDOWN_WAIT_NS),
                info.flags
            )),
            Err(e) => Some(alloc::format!("getdomaininfo d{dom} returned -{e:?}")),
        };
        ctx.wait.deliver_pending();
        if ctx.wait.dom_exc_seen() == seen {
            dom_exc_missing += 1;
        }
        let destroyed = ctx.destroy(dom);
        if let Some(why) = bad.or(destroyed.err()) {
            problem = Some((cycle, why));
            break;
        }
        let took = now_ns() - t0;
        slowest = slowest.max(took);
        fastest = fastest.min(took);
        done = cycle;
        if cycle == 1 {
            after_first = ctx.free_pages().ok();
        }
        if cycle.is_multiple_of(PROGRESS_EVERY) {
            println!("teardown: {cycle} cycles done");
        }
    }
    let elapsed = now_ns() - start;
    let calls = ctx.hv.calls() - calls_before;
    c.check(
        format_args!("{CYCLES} cycles of build, run, shut down, destroy"),
        problem.is_none() && done == CYCLES,
        format_args!(
            "cycle {}: {}",
            problem.as_ref().map_or(0, |p| p.0),
            problem.as_ref().map_or("", |p| p.1.as_str())
        ),
    );
    if done > 0 {
        println!(
            "teardown: {done} cycles in {}: {} per cycle (fastest {}, slowest {}); domain ids \
             {} to {}",
            Ms(elapsed),
            Ms(elapsed / u64::from(done)),
            Ms(fastest),
            Ms(slowest),
            ids.0,
            ids.1
        );
        note(format_args!(
            "{} dom0 hypercalls per cycle (domctl, sysctl and foreign memory/event calls)",
            calls / u64::from(done)
        ));
    }
    c.check(
        "VIRQ_DOM_EXC raised for every shutdown",
        dom_exc_missing == 0,
        format_args!("no VIRQ_DOM_EXC in {dom_exc_missing} of {done} cycles"),
    );
    match ctx.free_pages() {
        Ok(after) => {
            println!("free frames before: {before} after: {after}");
            if let Some(first) = after_first {
                note(format_args!(
                    "free frames after the first cycle: {first} ({} fewer than before)",
                    before as i64 - first as i64
                ));
            }
            c.check(
                "every frame came back",
                before == after,
                format_args!(
                    "{} frames missing after {done} cycles",
                    before as i64 - after as i64
                ),
            );
        }
        Err(e) => {
            c.check("sysctl physinfo", false, format_args!("returned -{e:?}"));
        }
    }
    Outcome::Ran
}
