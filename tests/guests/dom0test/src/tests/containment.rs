//! `containment`: misbehaving domUs harm no one else.
//!
//! Built side by side: `fault` (no trap table, reads an unmapped address: the hypervisor must
//! crash it), `spin_masked` (events masked, spinning), `flood` (`xen_version` in a loop) and a
//! well-behaved `hog` as the neighbour. Checked:
//!
//! - dom0 still gets its timer on time: [`SLEEPS`] sleeps of 100 ms, each woken less than
//!   [`LATE_LIMIT_NS`] after its deadline;
//! - `getdomaininfo` reports `fault` shut down with reason `crash`;
//! - the others are still alive, and each of the three that spin (the two hostile ones and the
//!   neighbour, equal weights) gets its fair share of the pCPU, a third, within
//!   [`SHARE_TOLERANCE`]: a hostile domU above it takes from the others; one below it while
//!   spinning means time the hypervisor spent on its behalf (the flood's hypercalls) was not
//!   charged to it, so it takes from the others unseen;
//! - `pausedomain` stops the flooding domU (no CPU time, `XEN_DOMINF_PAUSED`) and
//!   `unpausedomain` lets it run again;
//! - everything is destroyed, and `physinfo.free_pages` is back where it started.

use alloc::vec::Vec;

use guest_abi::domctl::XEN_DOMINF_PAUSED;
use guest_abi::sched::SHUTDOWN_CRASH;
use guest_abi::types::DomId;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Ms, Outcome, Pct};

/// Memory of each domU.
const MIB: u64 = 16;
/// dom0's timer sleeps.
const SLEEPS: u32 = 10;
/// Length of each.
const SLEEP_NS: u64 = 100 * NS_PER_MS;
/// How late dom0 may wake.
const LATE_LIMIT_NS: u64 = 50 * NS_PER_MS;
/// Extra time the neighbour's share is measured over, after the sleeps.
const EXTRA_WINDOW_NS: u64 = 2_000 * NS_PER_MS;
/// The spinning domUs (spin_masked, flood, hog) share the pCPU equally: each one's fair share,
/// per mille of the window (dom0 sleeps, the faulting domU is crashed at once).
const FAIR_SHARE: u64 = 1000 / 3;
/// Allowed distance from [`FAIR_SHARE`], per mille (5 points, the sched test's tolerance).
const SHARE_TOLERANCE: u64 = 50;
/// How long the flooding domU stays paused.
const PAUSE_NS: u64 = 500 * NS_PER_MS;
/// How long the faulting domU may take to be crashed.
const CRASH_WAIT_NS: u64 = 10_000 * NS_PER_MS;

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let before = match ctx.free_pages() {
        Ok(f) => f,
        Err(e) => {
            c.check("sysctl physinfo", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let names = ["fault", "spin_masked", "flood", "hog"];
    let mut doms: Vec<DomId> = Vec::new();
    for name in names {
        match ctx.build(&Domu::new(name, MIB)) {
            Ok(b) => {
                println!("built d{} ({name}, {MIB} MiB)", b.dom);
                doms.push(b.dom);
            }
            Err(e) => {
                let why = ctx.explain(&e);
                c.check(format_args!("build {name}"), false, format_args!("{why}"));
                ctx.destroy_all(c, "the domUs built so far", &doms);
                return Outcome::Ran;
            }
        }
    }
    let (fault, spin, flood, hog) = (doms[0], doms[1], doms[2], doms[3]);

    // dom0's timer, while the three spin.
    let t0 = now_ns();
    let timer_events = ctx.wait.timer_events();
    let cpu0 = ctx.cpu_times(&doms).ok();
    let mut worst = 0u64;
    let mut lates = Vec::new();
    for _ in 0..SLEEPS {
        let deadline = now_ns() + SLEEP_NS;
        let woke = ctx.wait.sleep_until(deadline);
        let late = woke - deadline;
        worst = worst.max(late);
        lates.push(late / 100_000);
    }
    println!(
        "dom0 timer lateness over {SLEEPS} sleeps of 100 ms: worst {} (each, in 0.1 ms: {lates:?})",
        Ms(worst)
    );
    note(format_args!(
        "dom0 handled {} VIRQ_TIMER events in those sleeps",
        ctx.wait.timer_events() - timer_events
    ));
    c.check(
        format_args!(
            "dom0 woken less than {} late from each 100 ms sleep",
            Ms(LATE_LIMIT_NS)
        ),
        worst < LATE_LIMIT_NS,
        format_args!("worst {}", Ms(worst)),
    );
    ctx.wait.sleep(EXTRA_WINDOW_NS);
    let cpu1 = ctx.cpu_times(&doms).ok();
    let window = now_ns() - t0;

    // The faulting domain.
    match ctx
        .wait
        .wait_shutdown(&mut ctx.hv, fault, now_ns() + CRASH_WAIT_NS)
    {
        Ok((info, _)) => {
            c.check(
                format_args!("getdomaininfo shows d{fault} (fault) shut down with reason crash"),
                info.shutdown_reason() == Some(SHUTDOWN_CRASH),
                format_args!(
                    "flags {:#x}, shutdown reason {:?}",
                    info.flags,
                    info.shutdown_reason()
                ),
            );
        }
        Err(e) => {
            c.check(
                format_args!("getdomaininfo d{fault}"),
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }
    // The others still run.
    for (dom, name) in [(spin, "spin_masked"), (flood, "flood"), (hog, "hog")] {
        match ctx.hv.domain_info(dom) {
            Ok(info) => {
                c.check(
                    format_args!("d{dom} ({name}) still runs"),
                    info.shutdown_reason().is_none(),
                    format_args!(
                        "flags {:#x}, shutdown reason {:?}",
                        info.flags,
                        info.shutdown_reason()
                    ),
                );
            }
            Err(e) => {
                c.check(
                    format_args!("getdomaininfo d{dom} ({name})"),
                    false,
                    format_args!("returned -{e:?}"),
                );
            }
        }
    }
    // Shares.
    match (cpu0, cpu1) {
        (Some(a), Some(b)) => {
            for (i, name) in names.iter().enumerate() {
                let used = b[i].saturating_sub(a[i]);
                println!(
                    "share d{} ({name}): {}% of one pCPU over {}",
                    doms[i],
                    Pct::of(used, window),
                    Ms(window)
                );
            }
            let fair = Pct(FAIR_SHARE);
            for (i, role) in [(1, "hostile"), (2, "hostile"), (3, "the neighbour")] {
                let used = b[i].saturating_sub(a[i]);
                let share = Pct::of(used, window);
                c.check(
                    format_args!(
                        "d{} ({}, {role}) gets its fair share, {fair}% +- 5 points of the pCPU",
                        doms[i], names[i]
                    ),
                    share.0.abs_diff(FAIR_SHARE) <= SHARE_TOLERANCE,
                    format_args!("got {share}% ({} of {})", Ms(used), Ms(window)),
                );
            }
        }
        _ => {
            c.check(
                "read the domUs' CPU time",
                false,
                format_args!("getdomaininfo failed"),
            );
        }
    }

    pause_flood(ctx, c, flood);

    ctx.destroy_all(c, "the four domUs", &doms);
    match ctx.free_pages() {
        Ok(after) => {
            note(format_args!("free frames before: {before} after: {after}"));
            c.check(
                "free frames back to where they started",
                after == before,
                format_args!(
                    "before {before}, after {after}: {} missing",
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

/// `pausedomain` stops the flooding domU: no CPU time while paused, `XEN_DOMINF_PAUSED`
/// shown; `unpausedomain` lets it go on.
fn pause_flood(ctx: &mut Ctx, c: &mut Checks, flood: DomId) {
    use dom0_tools::hypervisor::Hypervisor;
    if c.ok(
        format_args!("pausedomain d{flood} (flood)"),
        ctx.hv.pause(flood),
    )
    .is_none()
    {
        return;
    }
    let before = ctx.hv.domain_info(flood);
    ctx.wait.sleep(PAUSE_NS);
    let after = ctx.hv.domain_info(flood);
    match (before, after) {
        (Ok(a), Ok(b)) => {
            c.check(
                format_args!("paused d{flood} shows XEN_DOMINF_PAUSED and uses no CPU"),
                b.flags & XEN_DOMINF_PAUSED != 0 && b.cpu_time == a.cpu_time,
                format_args!(
                    "flags {:#x}, cpu_time {} -> {} over {}",
                    b.flags,
                    a.cpu_time,
                    b.cpu_time,
                    Ms(PAUSE_NS)
                ),
            );
        }
        _ => {
            c.check(
                format_args!("getdomaininfo d{flood}"),
                false,
                format_args!("failed"),
            );
        }
    }
    c.ok(
        format_args!("unpausedomain d{flood}"),
        ctx.hv.unpause(flood),
    );
    let t = ctx.hv.domain_info(flood).map(|i| i.cpu_time);
    ctx.wait.sleep(PAUSE_NS);
    let t2 = ctx.hv.domain_info(flood).map(|i| i.cpu_time);
    if let (Ok(a), Ok(b)) = (t, t2) {
        c.check(
            format_args!("unpaused d{flood} runs again"),
            b > a
                && ctx
                    .hv
                    .domain_info(flood)
                    .is_ok_and(|i| i.flags & XEN_DOMINF_PAUSED == 0),
            format_args!("cpu_time {a} -> {b} over {}", Ms(PAUSE_NS)),
        );
    }
}
