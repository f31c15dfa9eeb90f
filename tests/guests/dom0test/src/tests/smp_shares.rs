//! `smp_shares`: the credit scheduler across pCPUs (issue 12's "weights and caps hold
//! across pCPUs"), in two parts, each over a window of system time while dom0 sleeps.
//!
//! 1. **Weights.** Four `hog` domUs (1 vCPU each) of weights 256/256/512/1024. Each must get
//!    its weight's share of the machine within [`SHARE_TOLERANCE`]: on two pCPUs
//!    12.5/12.5/25/50 % (25/25/50/100 % of one pCPU; the heaviest is one vCPU, so its share
//!    is exactly one pCPU). Printed: `smp share d<id> weight <w>: <pct>% of the machine`.
//! 2. **Cap.** A hog capped at [`CAP`] % next to two uncapped ones: the capped one must stay
//!    under its cap plus [`CAP_TOLERANCE`] (of one pCPU) and get at least its cap minus
//!    [`CAP_SHORTFALL`] (it is not starved). Printed: `smp cap d<id> cap <c>: <pct>% of one
//!    pCPU`.
//!
//! In both, the domUs always have a runnable vCPU for every pCPU, so **no pCPU may idle**:
//! the hogs' CPU time plus dom0's must be the whole machine's ([`IDLE_TOLERANCE`]). An idle
//! pCPU next to a runnable vCPU queued elsewhere (load balancing that does not steal) shows
//! up as idle time here. Printed: `smp idle: <pct>% of the machine`.

use alloc::vec::Vec;

use guest_abi::types::DomId;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::sched::{build_hogs, check_params};
use super::{Ctx, Domu, Ms, Outcome, Pct};

/// Memory of each hog.
const HOG_MIB: u64 = 16;
/// Weights of part 1.
const WEIGHTS: [u16; 4] = [256, 256, 512, 1024];
/// Part 1's measurement window.
const SHARE_WINDOW_NS: u64 = 10_000 * NS_PER_MS;
/// Part 1: allowed distance from the expected share of the machine, per mille (5 points).
const SHARE_TOLERANCE: u64 = 50;
/// Part 2's cap, in percent of one pCPU.
const CAP: u16 = 30;
/// Part 2's measurement window.
const CAP_WINDOW_NS: u64 = 5_000 * NS_PER_MS;
/// Part 2: how far above its cap the capped hog may get, per mille of a pCPU (2 points).
const CAP_TOLERANCE: u64 = 20;
/// Part 2: how far below its cap it may stay, per mille of a pCPU (5 points).
const CAP_SHORTFALL: u64 = 50;
/// Idle time allowed while runnable vCPUs wait, per mille of the machine (3 points; with
/// 30 ms slices, one slice per pCPU over the window is 0.3 points).
const IDLE_TOLERANCE: u64 = 30;
/// Time given to new domUs to start before a window opens.
const SETTLE_NS: u64 = 500 * NS_PER_MS;

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let cpus = match ctx.hv.physinfo() {
        Ok(p) => p.nr_cpus,
        Err(e) => {
            c.check("sysctl physinfo", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    if cpus < 2 {
        note(format_args!(
            "{cpus} pCPU: shares across pCPUs need two or more (run on -smp 2)"
        ));
        return Outcome::Skipped;
    }
    weights(ctx, c, cpus);
    cap(ctx, c, cpus);
    Outcome::Ran
}

/// What one window measured: each domU's CPU time, dom0's, and the window's length.
struct Window {
    deltas: Vec<u64>,
    dom0: u64,
    length: u64,
}

/// CPU time of `doms` and dom0 over a `window_ns` sleep.
fn measure(ctx: &mut Ctx, doms: &[DomId], window_ns: u64) -> Result<Window, guest_abi::Errno> {
    let t0 = now_ns();
    let before = ctx.cpu_times(doms)?;
    let dom0_before = ctx.hv.domain_info(0)?.cpu_time;
    ctx.wait.sleep_until(t0 + window_ns);
    let after = ctx.cpu_times(doms)?;
    let dom0_after = ctx.hv.domain_info(0)?.cpu_time;
    let t1 = now_ns();
    Ok(Window {
        deltas: after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect(),
        dom0: dom0_after.saturating_sub(dom0_before),
        length: t1 - t0,
    })
}

/// The idle check: the domains' CPU time over the window against `cpus` pCPUs' worth.
fn check_busy(c: &mut Checks, w: &Window, cpus: u32, what: &str) {
    let machine = w.length.saturating_mul(u64::from(cpus));
    let used = w.deltas.iter().sum::<u64>() + w.dom0;
    let idle = Pct::of(machine.saturating_sub(used), machine);
    println!("smp idle ({what}): {idle}% of the machine");
    note(format_args!(
        "window {}: the domUs used {}, dom0 {}, of {} ({cpus} pCPUs)",
        Ms(w.length),
        Ms(w.deltas.iter().sum()),
        Ms(w.dom0),
        Ms(machine)
    ));
    c.check(
        format_args!(
            "{what}: no pCPU idles while a vCPU is runnable (idle at most {}% of the machine)",
            Pct(IDLE_TOLERANCE)
        ),
        idle.0 <= IDLE_TOLERANCE,
        format_args!(
            "the domains used {} of {} ({idle}% idle)",
            Ms(used),
            Ms(machine)
        ),
    );
}

fn weights(ctx: &mut Ctx, c: &mut Checks, cpus: u32) {
    println!("smp_shares part 1: four hogs with weights 256, 256, 512, 1024 on {cpus} pCPUs");
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
        Ok(w) => {
            let machine = w.length.saturating_mul(u64::from(cpus));
            let weight_sum: u64 = WEIGHTS.iter().map(|&w| u64::from(w)).sum();
            for ((&dom, &delta), &weight) in doms.iter().zip(&w.deltas).zip(&WEIGHTS) {
                let share = Pct::of(delta, machine);
                // The weight's share of the machine, but never more than one pCPU (a vCPU
                // runs on one pCPU at a time).
                let want = Pct::of(u64::from(weight), weight_sum)
                    .0
                    .min(Pct::of(1, u64::from(cpus)).0);
                println!(
                    "smp share d{dom} weight {weight}: {share}% of the machine ({}% of one pCPU)",
                    Pct::of(delta, w.length)
                );
                c.check(
                    format_args!(
                        "d{dom} (weight {weight}) gets {}% +- 5 points of the machine",
                        Pct(want)
                    ),
                    share.0.abs_diff(want) <= SHARE_TOLERANCE,
                    format_args!("got {share}% ({} of {})", Ms(delta), Ms(machine)),
                );
            }
            check_busy(c, &w, cpus, "weights");
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

fn cap(ctx: &mut Ctx, c: &mut Checks, cpus: u32) {
    println!("smp_shares part 2: a hog capped at {CAP}% next to two uncapped hogs");
    let specs = [
        Domu {
            cap: CAP,
            ..Domu::new("hog", HOG_MIB)
        },
        Domu::new("hog", HOG_MIB),
        Domu::new("hog", HOG_MIB),
    ];
    let Some(doms) = build_hogs(ctx, c, &specs) else {
        return;
    };
    check_params(ctx, c, &doms, &specs);
    ctx.wait.sleep(SETTLE_NS);
    match measure(ctx, &doms, CAP_WINDOW_NS) {
        Ok(w) => {
            let capped = Pct::of(w.deltas[0], w.length);
            println!("smp cap d{} cap {CAP}: {capped}% of one pCPU", doms[0]);
            for (&dom, &delta) in doms.iter().zip(&w.deltas).skip(1) {
                println!(
                    "smp uncapped d{dom}: {}% of one pCPU",
                    Pct::of(delta, w.length)
                );
            }
            let cap = u64::from(CAP) * 10;
            c.check(
                format_args!(
                    "d{} capped at {CAP}% stays under {}% of one pCPU",
                    doms[0],
                    Pct(cap + CAP_TOLERANCE)
                ),
                capped.0 <= cap + CAP_TOLERANCE,
                format_args!("got {capped}% ({} in {})", Ms(w.deltas[0]), Ms(w.length)),
            );
            c.check(
                format_args!(
                    "d{} capped at {CAP}% still gets {}% of one pCPU or more",
                    doms[0],
                    Pct(cap - CAP_SHORTFALL)
                ),
                capped.0 + CAP_SHORTFALL >= cap,
                format_args!("got {capped}% ({} in {})", Ms(w.deltas[0]), Ms(w.length)),
            );
            check_busy(c, &w, cpus, "cap");
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
