//! `sched`: the credit scheduler seen from dom0, in three parts.
//!
//! 1. **Weights.** Three `hog` domUs (1 vCPU, 16 MiB) with weights 256, 256 and 512; dom0
//!    sleeps [`SHARE_WINDOW_NS`] and reads each one's `cpu_time` before and after. Each hog's
//!    share of the three hogs' total must be its weight's share (25/25/50 %) within
//!    [`SHARE_TOLERANCE`]. Printed: `share d<id> weight <w>: <pct>%`.
//! 2. **Cap.** A hog capped at 20 % next to an uncapped one: over [`CAP_WINDOW_NS`] the capped
//!    one's `cpu_time` must be 20 % ± [`CAP_TOLERANCE`] of the wall time (one pCPU's worth).
//!    Printed: `cap d<id> cap 20: <pct>% of one pCPU`.
//! 3. **Latency.** Two hogs and a `latency` domU, which times 1000 single-shot timers of
//!    1 ms and reports the worst and mean lateness on its console; dom0 waits for it to shut
//!    down (at most [`LATENCY_WAIT_NS`]), finds its lines in the hypervisor's console ring
//!    and checks its verdict.
//!
//! dom0 blocks for all of it (it competes for the same pCPU); the measurement windows are
//! system time, read from `vcpu_time_info`.

use alloc::vec::Vec;

use guest_abi::domctl::DomctlSchedCredit;
use guest_abi::sched::SHUTDOWN_POWEROFF;
use guest_abi::types::DomId;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Ms, Outcome, Pct};
use crate::wait::ConsoleLog;

/// Memory of each hog.
const HOG_MIB: u64 = 16;
/// Weights of part 1.
const WEIGHTS: [u16; 3] = [256, 256, 512];
/// Part 1's measurement window.
const SHARE_WINDOW_NS: u64 = 10_000 * NS_PER_MS;
/// Part 1: allowed distance from the expected share, in per mille (5 points).
const SHARE_TOLERANCE: u64 = 50;
/// Part 2's cap, in percent of a pCPU.
const CAP: u16 = 20;
/// Part 2's measurement window.
const CAP_WINDOW_NS: u64 = 5_000 * NS_PER_MS;
/// Part 2: allowed distance from the cap, in per mille of a pCPU (2 points).
const CAP_TOLERANCE: u64 = 20;
/// Time given to new domUs to start before a window opens.
const SETTLE_NS: u64 = 500 * NS_PER_MS;
/// How long part 3 waits for the latency domU to finish.
const LATENCY_WAIT_NS: u64 = 60_000 * NS_PER_MS;

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    weights(ctx, c);
    cap(ctx, c);
    latency(ctx, c);
    Outcome::Ran
}

/// Builds a hog per entry of `specs`; on a failure records it, destroys what was built and
/// returns `None`.
pub(super) fn build_hogs(ctx: &mut Ctx, c: &mut Checks, specs: &[Domu<'_>]) -> Option<Vec<DomId>> {
    let mut doms = Vec::new();
    for spec in specs {
        match ctx.build(spec) {
            Ok(b) => {
                println!(
                    "built d{} ({}, {} MiB, weight {}, cap {})",
                    b.dom,
                    spec.test,
                    spec.kib / 1024,
                    spec.weight,
                    spec.cap
                );
                doms.push(b.dom);
            }
            Err(e) => {
                let why = ctx.explain(&e);
                c.check(
                    format_args!(
                        "build {} (weight {}, cap {})",
                        spec.test, spec.weight, spec.cap
                    ),
                    false,
                    format_args!("{why}"),
                );
                ctx.destroy_all(c, "the domUs built so far", &doms);
                return None;
            }
        }
    }
    Some(doms)
}

/// Checks that the scheduler reports the parameters each domain was built with.
pub(super) fn check_params(ctx: &mut Ctx, c: &mut Checks, doms: &[DomId], specs: &[Domu<'_>]) {
    for (&dom, spec) in doms.iter().zip(specs) {
        let want = DomctlSchedCredit {
            weight: spec.weight,
            cap: spec.cap,
        };
        match ctx.hv.sched_credit(dom) {
            Ok(got) => {
                c.eq(
                    format_args!("scheduler_op getinfo d{dom}: weight and cap"),
                    got,
                    want,
                );
            }
            Err(e) => {
                c.check(
                    format_args!("scheduler_op getinfo d{dom}"),
                    false,
                    format_args!("returned -{e:?}"),
                );
            }
        }
    }
}

/// CPU time each of `doms` used over a `window_ns` sleep, and the window's true length.
fn measure(
    ctx: &mut Ctx,
    doms: &[DomId],
    window_ns: u64,
) -> Result<(Vec<u64>, u64), guest_abi::Errno> {
    let t0 = now_ns();
    let before = ctx.cpu_times(doms)?;
    let dom0_before = ctx.hv.domain_info(0)?.cpu_time;
    ctx.wait.sleep_until(t0 + window_ns);
    let after = ctx.cpu_times(doms)?;
    let dom0_after = ctx.hv.domain_info(0)?.cpu_time;
    let t1 = now_ns();
    let deltas: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let window = t1 - t0;
    let total: u64 = deltas.iter().sum();
    note(format_args!(
        "window {}: the domUs used {} ({}% of it), dom0 {}",
        Ms(window),
        Ms(total),
        Pct::of(total, window),
        Ms(dom0_after.saturating_sub(dom0_before))
    ));
    Ok((deltas, window))
}

fn weights(ctx: &mut Ctx, c: &mut Checks) {
    println!("sched part 1: three hogs with weights 256, 256, 512");
    let specs: Vec<Domu<'_>> = WEIGHTS
        .iter()
        .map(|&w| Domu {
            weight: w,
            ..Domu::new("hog", HOG_MIB)
        })
        .collect();
    let Some(doms) = build_hogs(ctx, c, &specs) else {
        return;
    };
    check_params(ctx, c, &doms, &specs);
    ctx.wait.sleep(SETTLE_NS);
    match measure(ctx, &doms, SHARE_WINDOW_NS) {
        Ok((deltas, _)) => {
            let total: u64 = deltas.iter().sum();
            let weight_sum: u64 = WEIGHTS.iter().map(|&w| u64::from(w)).sum();
            for ((&dom, &delta), &w) in doms.iter().zip(&deltas).zip(&WEIGHTS) {
                let share = Pct::of(delta, total);
                let want = Pct::of(u64::from(w), weight_sum);
                println!("share d{dom} weight {w}: {share}%");
                c.check(
                    format_args!("d{dom} (weight {w}) gets {want}% +- 5 points of the hogs' CPU"),
                    share.0.abs_diff(want.0) <= SHARE_TOLERANCE,
                    format_args!("got {share}% ({} of {})", Ms(delta), Ms(total)),
                );
            }
        }
        Err(e) => {
            c.check(
                "read the hogs' CPU time",
                false,
                format_args!("getdomaininfo returned -{e:?}"),
            );
        }
    }
    ctx.destroy_all(c, "the weighted hogs", &doms);
}

fn cap(ctx: &mut Ctx, c: &mut Checks) {
    println!("sched part 2: a hog capped at {CAP}% next to an uncapped hog");
    let specs = [
        Domu {
            cap: CAP,
            ..Domu::new("hog", HOG_MIB)
        },
        Domu::new("hog", HOG_MIB),
    ];
    let Some(doms) = build_hogs(ctx, c, &specs) else {
        return;
    };
    check_params(ctx, c, &doms, &specs);
    ctx.wait.sleep(SETTLE_NS);
    match measure(ctx, &doms, CAP_WINDOW_NS) {
        Ok((deltas, window)) => {
            let capped = Pct::of(deltas[0], window);
            let free = Pct::of(deltas[1], window);
            println!("cap d{} cap {CAP}: {capped}% of one pCPU", doms[0]);
            println!("uncapped d{}: {free}% of one pCPU", doms[1]);
            let want = u64::from(CAP) * 10;
            c.check(
                format_args!(
                    "d{} capped at {CAP}% gets {CAP}% +- 2 points of one pCPU",
                    doms[0]
                ),
                capped.0.abs_diff(want) <= CAP_TOLERANCE,
                format_args!("got {capped}% ({} in {})", Ms(deltas[0]), Ms(window)),
            );
        }
        Err(e) => {
            c.check(
                "read the hogs' CPU time",
                false,
                format_args!("getdomaininfo returned -{e:?}"),
            );
        }
    }
    ctx.destroy_all(c, "the capped and uncapped hogs", &doms);
}

fn latency(ctx: &mut Ctx, c: &mut Checks) {
    println!("sched part 3: timer latency of a domU next to two hogs");
    let hogs = [Domu::new("hog", HOG_MIB), Domu::new("hog", HOG_MIB)];
    let Some(mut doms) = build_hogs(ctx, c, &hogs) else {
        return;
    };
    // The verdict is in the domU's console output: without the console there is no
    // verdict, which is a failure, not a pass.
    let mut log = match ConsoleLog::now(&mut ctx.hv) {
        Ok(l) => l,
        Err(e) => {
            c.check(
                "sysctl readconsole (where the latency domU's verdict is read)",
                false,
                format_args!("returned -{e:?}"),
            );
            ctx.destroy_all(c, "the hogs", &doms);
            return;
        }
    };
    let Some(lat) = build_hogs(ctx, c, &[Domu::new("latency", HOG_MIB)]) else {
        ctx.destroy_all(c, "the hogs", &doms);
        return;
    };
    let lat = lat[0];
    doms.push(lat);
    let start = now_ns();
    match ctx
        .wait
        .wait_shutdown(&mut ctx.hv, lat, start + LATENCY_WAIT_NS)
    {
        Ok((info, done)) => {
            let took = now_ns() - start;
            c.check(
                format_args!(
                    "latency domU d{lat} powers off within {} s next to two hogs",
                    LATENCY_WAIT_NS / 1_000_000_000
                ),
                done && info.shutdown_reason() == Some(SHUTDOWN_POWEROFF),
                format_args!(
                    "after {}: flags {:#x}, shutdown reason {:?}",
                    Ms(took),
                    info.flags,
                    info.shutdown_reason()
                ),
            );
            if done {
                note(format_args!("the latency domU ran for {}", Ms(took)));
            }
        }
        Err(e) => {
            c.check(
                format_args!("getdomaininfo d{lat}"),
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }
    {
        match log.read_new(&mut ctx.hv) {
            Ok(text) => {
                let lines = ConsoleLog::lines_of(&text, lat);
                let figures = lines.iter().find(|l| l.starts_with("latency max"));
                let verdict = lines.iter().find(|l| l.starts_with("Test result:"));
                c.check(
                    format_args!("latency domU d{lat} reports its figures"),
                    figures.is_some(),
                    format_args!("no \"latency max\" line in its console output: {lines:?}"),
                );
                if let Some(l) = figures {
                    println!("latency d{lat}: {l}");
                }
                for l in lines.iter().filter(|l| l.starts_with("note: ")) {
                    println!("latency d{lat}: {l}");
                }
                c.check(
                    format_args!("latency domU d{lat} reports SUCCESS (max under 2000 us)"),
                    verdict.is_some_and(|v| v == "Test result: SUCCESS"),
                    format_args!(
                        "its result line: {:?}",
                        verdict.map_or("(none)", |v| v.as_str())
                    ),
                );
            }
            Err(e) => {
                c.check(
                    format_args!("sysctl readconsole of latency domU d{lat}'s verdict"),
                    false,
                    format_args!("returned -{e:?}"),
                );
            }
        }
    }
    ctx.destroy_all(c, "the hogs and the latency domU", &doms);
}
