//! `churn`: create/destroy cycles of [`VCPUS`]-vCPU domains (issue 12: "1000 create/destroy
//! cycles of 4-vCPU domains on `-smp 4`, free frames equal before and after"). Each cycle
//! builds testguest `hog` with [`VCPUS`] vCPUs (it starts the others itself and every vCPU
//! spins), waits until `getvcpuinfo` says every vCPU is up and has run (CPU time above 0),
//! then destroys the domain while its vCPUs run, on whatever pCPUs they are on, and waits
//! for it to go. `cycles=<n>` on dom0's command line sets the count (default
//! [`DEFAULT_CYCLES`], at most [`MAX_CYCLES`]).
//!
//! Printed: `churn: <n> cycles of <v>-vCPU domUs in <ms>: <ms> per cycle ...` and
//! `churn free frames before: <N> after: <M> (+<G> the heap grew into)`: the counts must be
//! equal once the frames the hypervisor's heap took in between are added. The heap grows
//! from free frames and keeps them for the next domains (as `security`'s exhaustion check
//! counts them); how far it grows depends on how the pCPUs' allocations interleave, so a
//! churn on four pCPUs can end with a few frames more in the heap than it started with.

use alloc::string::String;

use guest_abi::types::{DOMID_INVALID, DomId};
use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::{cmdline, println};

use super::{Ctx, Domu, Ms, Outcome, SMALLEST_MIB};
use crate::hv::heap_info;

/// vCPUs of each domain.
const VCPUS: u32 = 4;
/// Cycles without `cycles=`.
const DEFAULT_CYCLES: u32 = 50;
/// The most `cycles=` may ask for.
const MAX_CYCLES: u32 = 100_000;
/// How long the vCPUs of a new domain may take to come up and run.
const RUNNING_WAIT_NS: u64 = 5_000 * NS_PER_MS;
/// How often dom0 looks at the new domain's vCPUs while it waits.
const LOOK_EVERY_NS: u64 = NS_PER_MS;
/// Progress lines every this many cycles.
const PROGRESS_EVERY: u32 = 100;

/// The cycle count `cycles=` asks for, or an explanation of why it is not one.
fn cycles() -> Result<u32, String> {
    let si = start_info();
    match cmdline::value(si.cmdline_bytes(), "cycles") {
        None => Ok(DEFAULT_CYCLES),
        Some(v) => core::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|n| (1..=MAX_CYCLES).contains(n))
            .ok_or_else(|| {
                alloc::format!(
                    "cycles={:?}: not a count from 1 to {MAX_CYCLES}",
                    String::from_utf8_lossy(v)
                )
            }),
    }
}

/// Waits until every vCPU of `dom` is up and has used CPU time; an explanation if not.
fn wait_all_running(ctx: &mut Ctx, dom: DomId) -> Result<(), String> {
    let deadline = now_ns() + RUNNING_WAIT_NS;
    loop {
        let mut ran = 0;
        for v in 0..VCPUS {
            match ctx.hv.vcpu_info(dom, v) {
                Ok(i) if i.online != 0 && i.cpu_time > 0 => ran += 1,
                Ok(_) => {}
                Err(e) => return Err(alloc::format!("getvcpuinfo d{dom} vCPU {v}: -{e:?}")),
            }
        }
        if ran == VCPUS {
            return Ok(());
        }
        let now = now_ns();
        if now >= deadline {
            return Err(alloc::format!(
                "only {ran} of d{dom}'s {VCPUS} vCPUs up and running after {}",
                Ms(RUNNING_WAIT_NS)
            ));
        }
        ctx.wait.block_until((now + LOOK_EVERY_NS).min(deadline));
    }
}

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let cycles = match cycles() {
        Ok(n) => n,
        Err(why) => {
            c.check("dom0's command line", false, format_args!("{why}"));
            return Outcome::Ran;
        }
    };
    let Some(before) = c.ok("sysctl physinfo before", ctx.free_pages()) else {
        return Outcome::Ran;
    };
    let Some(heap_before) = c.ok(
        "the hypervisor's heap before",
        heap_info(&mut ctx.hv, DOMID_INVALID),
    ) else {
        return Outcome::Ran;
    };
    let mut mib = SMALLEST_MIB;
    let mut done = 0u32;
    let mut problem: Option<(u32, String)> = None;
    let mut slowest = 0u64;
    let start = now_ns();
    for cycle in 1..=cycles {
        let t0 = now_ns();
        let domu = Domu {
            vcpus: VCPUS,
            ..Domu::new("hog", mib)
        };
        let dom = match ctx.build_smallest(&domu) {
            Ok((b, used)) => {
                if cycle == 1 {
                    note(format_args!(
                        "the smallest {VCPUS}-vCPU hog that fits: {used} MiB"
                    ));
                }
                mib = used;
                b.dom
            }
            Err(e) => {
                problem = Some((cycle, alloc::format!("build: {}", ctx.explain(&e))));
                break;
            }
        };
        let running = wait_all_running(ctx, dom);
        // Destroyed in any case, while its vCPUs spin.
        let destroyed = ctx.destroy(dom);
        if let Some(why) = running.err().or(destroyed.err()) {
            problem = Some((cycle, why));
            break;
        }
        slowest = slowest.max(now_ns() - t0);
        done = cycle;
        if cycle.is_multiple_of(PROGRESS_EVERY) {
            println!("churn: {cycle} cycles done");
        }
    }
    let elapsed = now_ns() - start;
    c.check(
        format_args!("{cycles} cycles: build a {VCPUS}-vCPU domU, all its vCPUs run, destroy it"),
        problem.is_none() && done == cycles,
        format_args!(
            "cycle {}: {}",
            problem.as_ref().map_or(0, |p| p.0),
            problem.as_ref().map_or("", |p| p.1.as_str())
        ),
    );
    if done > 0 {
        println!(
            "churn: {done} cycles of {VCPUS}-vCPU domUs in {}: {} per cycle (slowest {})",
            Ms(elapsed),
            Ms(elapsed / u64::from(done)),
            Ms(slowest)
        );
    }
    let heap_after = c.ok(
        "the hypervisor's heap after",
        heap_info(&mut ctx.hv, DOMID_INVALID),
    );
    if let (Some(after), Some(heap_after)) =
        (c.ok("sysctl physinfo after", ctx.free_pages()), heap_after)
    {
        let grown = heap_after.heap_total.saturating_sub(heap_before.heap_total) / 4096;
        println!(
            "churn free frames before: {before} after: {after} (+{grown} the heap grew into); \
             heap in use {} -> {} bytes",
            heap_before.heap_used, heap_after.heap_used
        );
        c.check(
            "every frame came back (with those the heap grew into)",
            before == after + grown,
            format_args!(
                "{} frames missing after {done} cycles",
                before as i64 - (after + grown) as i64
            ),
        );
    }
    Outcome::Ran
}
