//! `smp`: a domU with [`VCPUS`] vCPUs. dom0 has one vCPU, so the SMP guest is a domU: dom0
//! builds testguest `smp` with `max_vcpus` [`VCPUS`] (the builder starts vCPU 0; the guest
//! starts the others with `VCPUOP_initialise` and `VCPUOP_up`), waits for it to power off,
//! and finds its verdict in the hypervisor's console ring (testguest's `tests/smp.rs` says
//! what it checks). While it runs, dom0 watches `getdomaininfo`: the domain's online vCPU
//! count must reach [`VCPUS`] (the hypervisor's view of `VCPUOP_up`). Then dom0 destroys it
//! and checks that every frame came back.
//!
//! Then two `smp_spin` domains run side by side, every vCPU changing its page tables, and are
//! destroyed. Then, [`SPIN_ROUNDS`] times, dom0 builds testguest `smp_spin` (every vCPU up and busy),
//! waits until all its vCPUs are online and it has run, and destroys it while they run (on
//! other pCPUs, on `-smp 2` and more: the destroy must wait for each to leave its pCPU).
//! Free memory must be back where it started and the frame table consistent.

use alloc::vec::Vec;

use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::{Ctx, Domu, Outcome};
use crate::wait::{ConsoleLog, POLL_NS};

/// vCPUs of the domU.
pub const VCPUS: u32 = 4;
/// Memory of the domU.
const MIB: u64 = 16;
/// How long dom0 waits for the domU's verdict (its ring alone is 40 000 IPIs).
const WAIT_NS: u64 = 120_000 * NS_PER_MS;
/// Domains destroyed while all their vCPUs run.
pub const SPIN_ROUNDS: u32 = 5;
/// How long dom0 waits for a spinning domain's vCPUs to come up and run.
const SPIN_WAIT_NS: u64 = 10_000 * NS_PER_MS;

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
    let Some(free_before) = c.ok("sysctl physinfo before", ctx.free_pages()) else {
        return Outcome::Ran;
    };
    let domu = Domu {
        vcpus: VCPUS,
        ..Domu::new("smp", MIB)
    };
    let built = match ctx.build(&domu) {
        Ok(b) => b,
        Err(e) => {
            let why = ctx.explain(&e);
            c.check(
                format_args!("build smp with {VCPUS} vCPUs"),
                false,
                format_args!("{why}"),
            );
            return Outcome::Ran;
        }
    };
    let dom = built.dom;
    println!("built d{dom} (smp, {VCPUS} vCPUs, {MIB} MiB)");
    // Watch the online count while it runs, until it shuts down.
    let deadline = now_ns() + WAIT_NS;
    let mut most_online = 0;
    let mut done = false;
    let mut max_vcpu_id = None;
    while now_ns() < deadline {
        match ctx.hv.domain_info(dom) {
            Ok(info) => {
                most_online = most_online.max(info.nr_online_vcpus);
                max_vcpu_id = Some(info.max_vcpu_id);
                if info.shutdown_reason().is_some() {
                    done = true;
                    break;
                }
            }
            Err(_) => break,
        }
        ctx.wait.block_until((now_ns() + POLL_NS).min(deadline));
    }
    c.check(
        format_args!("d{dom} shuts down"),
        done,
        format_args!("still running after {} s", WAIT_NS / 1_000_000_000),
    );
    c.eq(
        format_args!("d{dom}: getdomaininfo max_vcpu_id"),
        max_vcpu_id,
        Some(VCPUS - 1),
    );
    c.eq(
        format_args!("d{dom}: most vCPUs online at once (getdomaininfo)"),
        most_online,
        VCPUS,
    );
    match log.read_new(&mut ctx.hv) {
        Ok(text) => {
            let lines: Vec<_> = ConsoleLog::lines_of(&text, dom);
            for line in &lines {
                if line.starts_with("check ") {
                    println!("smp d{dom}: {line}");
                } else if line.starts_with("note") {
                    println!("smp figure d{dom}: {line}");
                }
            }
            let verdict = lines.iter().find(|l| l.starts_with("Test result: "));
            c.check(
                format_args!("d{dom}'s SMP checks passed"),
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
    if ctx.destroy_all(c, "the smp domU", &[dom]) {
        if let Some(free_after) = c.ok("sysctl physinfo after", ctx.free_pages()) {
            note(format_args!(
                "free pages: {free_before} before, {free_after} after"
            ));
            c.eq("free pages back as before", free_after, free_before);
        }
    }
    crash_running(ctx, c);
    side_by_side(ctx, c);
    destroy_running(ctx, c, free_before);
    Outcome::Ran
}

/// CPU time each side-by-side domain must have had before it is destroyed.
const SIDE_BY_SIDE_NS: u64 = 500 * NS_PER_MS;

/// Two `smp_spin` domains of two vCPUs at once, every vCPU changing its page tables: their
/// updates go through the frame table side by side (no lock around it; the checked
/// hypervisor counts the pCPUs inside at once, which `smp_lockcheck_4` requires to reach
/// two). Waits, bounded, until both have had [`SIDE_BY_SIDE_NS`] of CPU time, then destroys
/// both (`destroy_running` then checks memory and the frame table).
fn side_by_side(ctx: &mut Ctx, c: &mut Checks) {
    let mut doms = Vec::new();
    for i in 0..2 {
        let domu = Domu {
            vcpus: 2,
            ..Domu::new("smp_spin", MIB)
        };
        match ctx.build(&domu) {
            Ok(b) => doms.push(b.dom),
            Err(e) => {
                let why = ctx.explain(&e);
                c.check(
                    format_args!("build smp_spin #{i} to run side by side"),
                    false,
                    format_args!("{why}"),
                );
            }
        }
    }
    if doms.len() == 2 {
        let deadline = now_ns() + SPIN_WAIT_NS;
        let mut times = Vec::new();
        while now_ns() < deadline {
            times = doms
                .iter()
                .map(|&d| ctx.hv.domain_info(d).map(|i| i.cpu_time))
                .collect();
            if times.iter().any(|t| t.is_err())
                || times
                    .iter()
                    .all(|t| t.as_ref().is_ok_and(|&ns| ns > SIDE_BY_SIDE_NS))
            {
                break;
            }
            ctx.wait.block_until((now_ns() + POLL_NS).min(deadline));
        }
        c.check(
            format_args!(
                "d{} and d{} changed their page tables side by side for {} ms of CPU each",
                doms[0],
                doms[1],
                SIDE_BY_SIDE_NS / NS_PER_MS
            ),
            times.len() == 2
                && times
                    .iter()
                    .all(|t| t.as_ref().is_ok_and(|&ns| ns > SIDE_BY_SIDE_NS)),
            format_args!("CPU time (ns) when the wait ended: {times:?}"),
        );
    }
    ctx.destroy_all(c, "the side-by-side spinners", &doms);
}

/// Builds testguest `test` with [`VCPUS`] vCPUs [`SPIN_ROUNDS`] times; each time waits,
/// bounded, until `ready` says so of its `getdomaininfo` (check `what`), then destroys it.
/// Returns how many were destroyed.
fn rounds(
    ctx: &mut Ctx,
    c: &mut Checks,
    test: &str,
    what: &str,
    ready: impl Fn(&guest_abi::domctl::DomctlGetdomaininfo) -> bool,
) -> u32 {
    let mut destroyed = 0;
    for round in 0..SPIN_ROUNDS {
        let domu = Domu {
            vcpus: VCPUS,
            ..Domu::new(test, MIB)
        };
        let dom = match ctx.build(&domu) {
            Ok(b) => b.dom,
            Err(e) => {
                let why = ctx.explain(&e);
                c.check(
                    format_args!("build {test} round {round}"),
                    false,
                    format_args!("{why}"),
                );
                return destroyed;
            }
        };
        let deadline = now_ns() + SPIN_WAIT_NS;
        let mut seen = false;
        while now_ns() < deadline {
            match ctx.hv.domain_info(dom) {
                Ok(info) if ready(&info) => {
                    seen = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
            ctx.wait.block_until((now_ns() + POLL_NS).min(deadline));
        }
        c.check(
            format_args!("{test} d{dom} (round {round}): {what}"),
            seen,
            format_args!("not within {} ms", SPIN_WAIT_NS / NS_PER_MS),
        );
        if ctx.destroy_all(c, test, &[dom]) {
            destroyed += 1;
        }
    }
    destroyed
}

/// `smp_crash` [`SPIN_ROUNDS`] times: it crashes itself while its other vCPUs run and take
/// timer interrupts on other pCPUs; dom0 waits for the crash and destroys it. The spinning
/// rounds after this need every pCPU to still take interrupts.
fn crash_running(ctx: &mut Ctx, c: &mut Checks) {
    let crashed = rounds(ctx, c, "smp_crash", "crashed itself", |i| {
        i.shutdown_reason().is_some()
    });
    note(format_args!(
        "{crashed} domains crashed with {VCPUS} vCPUs running, destroyed"
    ));
}

/// `smp_spin` [`SPIN_ROUNDS`] times, destroyed with every vCPU running; then memory and the
/// frame table are checked.
fn destroy_running(ctx: &mut Ctx, c: &mut Checks, free_before: u64) {
    let destroyed = rounds(ctx, c, "smp_spin", "all vCPUs up and running", |i| {
        i.nr_online_vcpus == VCPUS && i.cpu_time > 50 * NS_PER_MS
    });
    note(format_args!(
        "{destroyed} domains destroyed with {VCPUS} vCPUs running"
    ));
    if let Some(free_after) = c.ok("sysctl physinfo after the spinners", ctx.free_pages()) {
        c.eq(
            "free pages back as before the spinners",
            free_after,
            free_before,
        );
    }
    let ret = xenia_guest_rt::mm::check_frame_table();
    c.check(
        "XENMEM_XENIA_CHECK_FRAME_TABLE returns 0 after the spinners",
        ret == 0,
        format_args!("returned {ret}"),
    );
}
