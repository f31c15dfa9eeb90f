//! `density`: build minimal domUs (testguest `idle`, which blocks forever) with the smallest
//! memory their start of day fits, to the page (the builder cuts a small domU's region at the
//! end of its memory), until building fails for lack of memory (or `max=<n>` on dom0's
//! command line, at most [`MAX_DOMUS`]); wait until every one of them has booted and blocked;
//! print how many ran at once and how much the hypervisor spends per domain beyond the
//! domain's own pages (from `physinfo.free_pages` before and after); destroy them all.
//!
//! Checks: at least one was built; every one built booted and blocked (so the smallest
//! domain does boot); the smallest is below Xen's least start-of-day region (4 MiB); the
//! hypervisor's memory per domain is at most [`HV_PER_DOMAIN_GOAL_KIB`]; building stopped
//! only for lack of memory or at the bound; all were destroyed cleanly, none is left in the
//! domain list, and every frame came back (`physinfo.free_pages` where it started: a frame
//! missing after teardown is a leak, and fails the test).
//!
//! Printed (the bench and the scenario read these):
//! - `density: smallest domain <kib> KiB (<pages> pages)`
//! - `density: <n> domUs of <kib> KiB running at once with <M> MiB` (M is the machine's
//!   RAM, from `physinfo.max_mfn`)
//! - `density: hypervisor memory per domain: <kib> KiB ...`

use alloc::string::String;
use alloc::vec::Vec;

use dom0_tools::builder::BuildError;
use guest_abi::Errno;
use guest_abi::domctl::XEN_DOMINF_BLOCKED;
use guest_abi::types::DomId;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::NS_PER_MS;

use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::cmdline;
use xenia_guest_rt::time::now_ns;

use super::{Ctx, Domu, KIB_PER_PAGE, Outcome, PAGES_PER_MIB};
use crate::hv::heap_info;
use guest_abi::sysctl::SysctlXeniaHeapInfo;
use guest_abi::types::{DOMID_INVALID, PAGE_SIZE};

/// Never more than this many domUs (a bound for a hypervisor that never runs out).
const MAX_DOMUS: usize = 2000;
/// How long the domUs get to start and block, in all.
const SETTLE_NS: u64 = 60_000 * NS_PER_MS;
/// How often dom0 counts the blocked ones meanwhile.
const LOOK_EVERY_NS: u64 = 100 * NS_PER_MS;
/// Progress line every this many domUs.
const PROGRESS_EVERY: usize = 100;
/// Issue 13's goal for the hypervisor's memory per domain.
pub const HV_PER_DOMAIN_GOAL_KIB: u64 = 16;
/// Xen's least start-of-day region: a domain of this size or more would fit without the
/// builder's cut region.
const XEN_LEAST_REGION_KIB: u64 = 4 * 1024;

/// The bound `max=` asks for, or why it is not one.
fn max_domus() -> Result<usize, String> {
    let si = start_info();
    match cmdline::value(si.cmdline_bytes(), "max") {
        None => Ok(MAX_DOMUS),
        Some(v) => core::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| (1..=MAX_DOMUS).contains(n))
            .ok_or_else(|| {
                alloc::format!(
                    "max={:?}: not a count from 1 to {MAX_DOMUS}",
                    String::from_utf8_lossy(v)
                )
            }),
    }
}

/// How many of `doms` are alive (not shut down) and how many of those are blocked.
fn count(ctx: &mut Ctx, doms: &[DomId]) -> (usize, usize) {
    let mut alive = 0usize;
    let mut blocked = 0usize;
    for &dom in doms {
        if let Ok(info) = ctx.hv.domain_info(dom)
            && info.shutdown_reason().is_none()
        {
            alive += 1;
            if info.flags & XEN_DOMINF_BLOCKED != 0 {
                blocked += 1;
            }
        }
    }
    (alive, blocked)
}

/// Whether a build failed because the hypervisor ran out of memory.
fn out_of_memory(e: &BuildError) -> bool {
    match e {
        BuildError::Hypervisor { errno, .. } => *errno == Errno::ENOMEM,
        BuildError::NotCleanedUp { cause, .. } => out_of_memory(cause),
        _ => false,
    }
}

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let phys = match ctx.hv.physinfo() {
        Ok(p) => p,
        Err(e) => {
            c.check("sysctl physinfo", false, format_args!("returned -{e:?}"));
            return Outcome::Ran;
        }
    };
    let limit = match max_domus() {
        Ok(n) => n,
        Err(e) => {
            c.check("dom0's command line", false, format_args!("{e}"));
            return Outcome::Ran;
        }
    };
    let before = phys.free_pages;
    let Some(heap_before) = c.ok("sysctl heap info before", heap(ctx)) else {
        return Outcome::Ran;
    };
    let machine_mib = (phys.max_mfn + 1).div_ceil(PAGES_PER_MIB);
    // From one page up: the builder's refusal says how many pages the start of day needs.
    let mut pages = 1u64;
    let mut doms: Vec<DomId> = Vec::new();
    let mut pages_each = 0u64;
    let mut stop = String::new();
    while doms.len() < limit {
        match ctx.build_smallest_pages(&Domu::in_kib("idle", pages * KIB_PER_PAGE)) {
            Ok((b, used)) => {
                if doms.is_empty() {
                    if let Ok(h) = heap_info(&mut ctx.hv, b.dom) {
                        note(format_args!(
                            "the first domU's heap charge: {} bytes (limit {})",
                            h.charged, h.limit
                        ));
                    }
                    println!(
                        "density: smallest domain {} KiB ({used} pages)",
                        used * KIB_PER_PAGE
                    );
                    c.check(
                        "the smallest domain is below Xen's least start-of-day region",
                        used * KIB_PER_PAGE < XEN_LEAST_REGION_KIB,
                        format_args!("{} KiB", used * KIB_PER_PAGE),
                    );
                }
                pages = used;
                pages_each = b.nr_pages;
                doms.push(b.dom);
                if doms.len().is_multiple_of(PROGRESS_EVERY) {
                    println!("density: {} domUs built", doms.len());
                }
            }
            Err(e) => {
                stop = ctx.explain(&e);
                let oom = out_of_memory(&e);
                note(format_args!(
                    "building domU number {} failed{}: {stop}",
                    doms.len() + 1,
                    if oom { " for lack of memory" } else { "" }
                ));
                if let BuildError::NotCleanedUp { dom, .. } = e {
                    c.check(
                        "a failed build leaves nothing behind",
                        false,
                        format_args!("d{dom} was left half built"),
                    );
                    doms.push(dom);
                }
                if !oom {
                    c.check(
                        "building stops only for lack of memory",
                        false,
                        format_args!("{stop}"),
                    );
                }
                break;
            }
        }
    }
    if doms.len() == limit {
        note(format_args!(
            "stopped at {limit} domUs without running out of memory"
        ));
    }
    c.check(
        "at least one minimal domU was built",
        !doms.is_empty(),
        format_args!("the first build failed: {stop}"),
    );

    // Let them all start and block (bounded), then count them.
    let deadline = now_ns() + SETTLE_NS;
    let (mut alive, mut blocked) = count(ctx, &doms);
    while blocked < doms.len() && now_ns() < deadline {
        ctx.wait.sleep(LOOK_EVERY_NS);
        (alive, blocked) = count(ctx, &doms);
    }
    c.check(
        "every minimal domU booted and blocked",
        alive == doms.len() && blocked == doms.len(),
        format_args!(
            "{} built, {alive} alive, {blocked} blocked after {} ms",
            doms.len(),
            SETTLE_NS / NS_PER_MS
        ),
    );
    let full = ctx.free_pages().unwrap_or(before);
    let heap_full = heap(ctx).unwrap_or(heap_before);
    println!(
        "density: {blocked} domUs of {} KiB running at once with {machine_mib} MiB",
        pages * KIB_PER_PAGE
    );
    note(format_args!(
        "{} built, {alive} alive and not shut down, {blocked} blocked (idle)",
        doms.len()
    ));
    if !doms.is_empty() {
        // What the domains cost the hypervisor: the frames taken beyond their own pages, less
        // what the heap grew by (frames it keeps for reuse), plus the heap bytes they use.
        let n = doms.len() as u64;
        let used = before.saturating_sub(full);
        let own = n * pages_each;
        let heap_growth = heap_full.heap_total.saturating_sub(heap_before.heap_total);
        let frames_bytes = used
            .saturating_sub(own)
            .saturating_sub(heap_growth / PAGE_SIZE as u64)
            * PAGE_SIZE as u64;
        let heap_bytes = heap_full.heap_used.saturating_sub(heap_before.heap_used);
        let kib_tenths = (frames_bytes + heap_bytes) * 10 / 1024 / n;
        println!(
            "density: hypervisor memory per domain: {}.{} KiB ({} bytes of frames and {} bytes \
             of heap each) beyond its own {pages_each} pages ({used} frames taken for {n} \
             domUs, {} of them by the heap's growth)",
            kib_tenths / 10,
            kib_tenths % 10,
            frames_bytes / n,
            heap_bytes / n,
            heap_growth / PAGE_SIZE as u64
        );
        c.check(
            "the hypervisor's memory per domain is within issue 13's goal",
            kib_tenths <= HV_PER_DOMAIN_GOAL_KIB * 10,
            format_args!(
                "{}.{} KiB, goal {HV_PER_DOMAIN_GOAL_KIB} KiB",
                kib_tenths / 10,
                kib_tenths % 10
            ),
        );
    }

    let destroyed = ctx.destroy_all(c, "every minimal domU", &doms);
    if destroyed {
        match ctx.domus() {
            Ok(left) => {
                c.check(
                    "no domU exists after destroying them all",
                    left.is_empty(),
                    format_args!("still there: {left:?}"),
                );
            }
            Err(e) => {
                c.check(
                    "sysctl getdomaininfolist after the teardown",
                    false,
                    format_args!("returned -{e:?}"),
                );
            }
        }
    }
    match (ctx.free_pages(), heap(ctx)) {
        (Ok(after), Ok(heap_after)) => {
            // The heap keeps the frames it grew by, for reuse: those are not a leak, but every
            // byte of it the domains used must be free again.
            let grown =
                heap_after.heap_total.saturating_sub(heap_before.heap_total) / PAGE_SIZE as u64;
            note(format_args!(
                "free frames before: {before} with all domUs: {full} after destroying them: \
                 {after} ({} not back, {grown} of them kept by the heap it grew by); heap bytes \
                 in use before {} after {}",
                before as i64 - after as i64,
                heap_before.heap_used,
                heap_after.heap_used
            ));
            c.check(
                "every frame is free again after destroying every domU",
                after + grown == before,
                format_args!(
                    "free frames before {before}, after {after}, heap grew by {grown}: {} leaked",
                    before as i64 - (after + grown) as i64
                ),
            );
            // Shared structures that grew with the domain count (the scheduler's and the
            // domain table's vectors) keep some capacity; anything a domain left behind is at
            // least one 8-byte heap block per domain.
            let slack = doms.len() as u64 * 8;
            c.check(
                "the heap bytes the domUs used are free again",
                heap_after.heap_used < heap_before.heap_used + slack.max(8),
                format_args!(
                    "heap in use before {}, after {} (at most {slack} more allowed)",
                    heap_before.heap_used, heap_after.heap_used
                ),
            );
        }
        (Err(e), _) | (_, Err(e)) => {
            c.check(
                "sysctl physinfo and heap info after the teardown",
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }
    Outcome::Ran
}

/// The hypervisor's heap figures.
fn heap(ctx: &mut Ctx) -> Result<SysctlXeniaHeapInfo, Errno> {
    heap_info(&mut ctx.hv, DOMID_INVALID)
}
