//! `density` (report only): build minimal domUs (testguest `idle`, which blocks forever) with
//! the smallest memory their start of day fits, until building fails for lack of memory;
//! then print how many ran at once and how much the hypervisor spends per domain beyond the
//! domain's own pages (from `physinfo.free_pages` before and after), destroy them all, and
//! pass if at least one was built, all were destroyed cleanly, none is left in the domain
//! list, and every frame came back (`physinfo.free_pages` where it started: a frame missing
//! after teardown is a leak, and fails the test).
//!
//! Printed: `density: <n> domUs of <mib> MiB running at once with <M> MiB` (M is the
//! machine's RAM, from `physinfo.max_mfn`).

use alloc::string::String;
use alloc::vec::Vec;

use dom0_tools::builder::BuildError;
use guest_abi::Errno;
use guest_abi::domctl::XEN_DOMINF_BLOCKED;
use guest_abi::types::DomId;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::NS_PER_MS;

use super::{Ctx, Domu, Outcome, PAGES_PER_MIB, SMALLEST_MIB};

/// Never more than this many domUs (a bound for a hypervisor that never runs out).
const MAX_DOMUS: usize = 2000;
/// Time the domUs get to start and block before they are counted.
const SETTLE_NS: u64 = 2_000 * NS_PER_MS;
/// Progress line every this many domUs.
const PROGRESS_EVERY: usize = 25;

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
    let before = phys.free_pages;
    let machine_mib = (phys.max_mfn + 1).div_ceil(PAGES_PER_MIB);
    let mut mib = SMALLEST_MIB;
    let mut doms: Vec<DomId> = Vec::new();
    let mut pages_each = 0u64;
    let mut stop = String::new();
    while doms.len() < MAX_DOMUS {
        match ctx.build_smallest(&Domu::new("idle", mib)) {
            Ok((b, used)) => {
                mib = used;
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
    if doms.len() == MAX_DOMUS {
        note(format_args!(
            "stopped at {MAX_DOMUS} domUs without running out of memory"
        ));
    }
    c.check(
        "at least one minimal domU was built",
        !doms.is_empty(),
        format_args!("the first build failed: {stop}"),
    );

    // Let them all start and block, then count them.
    ctx.wait.sleep(SETTLE_NS);
    let mut alive = 0usize;
    let mut blocked = 0usize;
    for &dom in &doms {
        if let Ok(info) = ctx.hv.domain_info(dom)
            && info.shutdown_reason().is_none()
        {
            alive += 1;
            if info.flags & XEN_DOMINF_BLOCKED != 0 {
                blocked += 1;
            }
        }
    }
    let full = ctx.free_pages().unwrap_or(before);
    println!("density: {alive} domUs of {mib} MiB running at once with {machine_mib} MiB");
    note(format_args!(
        "{} built, {alive} alive and not shut down, {blocked} blocked (idle)",
        doms.len()
    ));
    if !doms.is_empty() {
        let n = doms.len() as u64;
        let used = before.saturating_sub(full);
        let own = n * pages_each;
        let extra_tenths = (used.saturating_sub(own) * 10) / n;
        println!(
            "density: hypervisor memory per domain: {}.{} frames ({} KiB) beyond its own {} \
             pages ({} frames taken for {n} domUs of {pages_each} pages)",
            extra_tenths / 10,
            extra_tenths % 10,
            extra_tenths * 4 / 10,
            pages_each,
            used
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
    match ctx.free_pages() {
        Ok(after) => {
            note(format_args!(
                "free frames before: {before} with all domUs: {full} after destroying them: \
                 {after} ({} not back)",
                before as i64 - after as i64
            ));
            c.check(
                "every frame is free again after destroying every domU",
                after == before,
                format_args!(
                    "free frames before {before}, after {after}: {} leaked",
                    before as i64 - after as i64
                ),
            );
        }
        Err(e) => {
            c.check(
                "sysctl physinfo after the teardown",
                false,
                format_args!("returned -{e:?}"),
            );
        }
    }
    Outcome::Ran
}
