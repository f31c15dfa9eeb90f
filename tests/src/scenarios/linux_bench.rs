//! Issue 18's benchmark program (`linuxbench`, see [`crate::linuxbench`]) in Debian's kernel
//! booted natively by QEMU, briefly, so that the program, the initramfs's `/init` that runs
//! it (`xenia.bench=`) and the harness's parsing do not rot between `cargo xtask bench --only
//! linux` runs. Under `-icount shift=0,sleep=off`, as the bench: the figures are instruction
//! counts, so they can be held to tight bounds. Passes with a `skipped:` note when `cargo
//! xtask build` could not fetch Debian's kernel package.

use std::time::Duration;

use crate::benchk::ICOUNT;
use crate::linuxbench::{self, Figure, TESTS};
use crate::runner::Context;
use crate::workspace::{DEBIAN_INITRD_ARTIFACT, DEBIAN_KERNEL_ARTIFACT};

/// Few iterations of each test: the whole run is a few seconds after Linux's boot.
pub const SHORT_ARGS: &str = "syscalls=2000 pages=64 forks=5 trips=50 primes=10000 runs=2";

/// The primes below 10000 (the `cpu_loop` check).
const PRIMES_BELOW_10000: u64 = 1229;

/// Bound for Linux's boot and the program's run (about 10 s here).
const RUN: Duration = Duration::from_secs(240);

/// Each test's sane range of TSC ticks per iteration (instructions, under `-icount`): wide
/// enough for another kernel version or CPU model, narrow enough that a test that did not do
/// its work (a system call refused at once, a page that did not fault, a fork that failed) or
/// a clock that does not count instructions falls outside.
pub const BOUNDS: [(&str, u64, u64); 5] = [
    // Natively about 300: the entry, `getppid`, the return.
    ("null_syscall", 50, 20_000),
    // About 8,000: the fault, a zeroed page (`rep stosb`, 4,096 counted), the mapping.
    ("page_fault", 1_000, 200_000),
    // A few hundred thousand: copying the address space, the child's exit, `wait4`.
    ("fork_exit", 10_000, 20_000_000),
    // Two pipe writes and reads, two wake-ups, two context switches.
    ("pipe_pingpong", 1_000, 1_000_000),
    // The primes below 10,000 by trial division: 1,555,222 natively here.
    ("cpu_loop", 1_000_000, 3_000_000),
];

/// Checks a native run's output: every test's line with ticks in [`BOUNDS`], a clock that
/// agrees with the TSC on the CPU-bound test, the TSC counting instructions, the primes
/// counted right, `linuxbench: done`. Returns the figures, for the note.
pub fn check(out: &linuxbench::Output) -> Result<String, String> {
    if let Some(why) = &out.failed {
        return Err(format!("the program failed: {why}"));
    }
    match out.tsc_check {
        Some(t) if (990..=1010).contains(&t) => {}
        other => {
            return Err(format!(
                "the TSC should count instructions under -icount shift=0 (1000 ticks per \
                 1000 instructions): {other:?}"
            ));
        }
    }
    let mut note = Vec::new();
    for (test, low, high) in BOUNDS {
        let Some(&Figure { iters, ticks, ns }) = out.figures.get(test) else {
            return Err(format!("no `linuxbench: {test}` line"));
        };
        if iters == 0 || !(low..=high).contains(&ticks) {
            return Err(format!(
                "{test}: {ticks} ticks per iteration ({iters} iterations), expected {low}..={high}"
            ));
        }
        if ns == 0 {
            return Err(format!("{test}: CLOCK_MONOTONIC did not advance"));
        }
        note.push(format!("{test} {ticks}"));
    }
    // Over two million instructions, the kernel's clock and the TSC agree (both count
    // virtual nanoseconds under -icount).
    let cpu = out.figures["cpu_loop"];
    if cpu.ns.abs_diff(cpu.ticks) * 20 > cpu.ticks {
        return Err(format!(
            "cpu_loop: CLOCK_MONOTONIC says {} ns, the TSC {} ticks: more than 5% apart",
            cpu.ns, cpu.ticks
        ));
    }
    if out.primes != Some(PRIMES_BELOW_10000) {
        return Err(format!(
            "cpu_loop counted {:?} primes below 10000, not {PRIMES_BELOW_10000}",
            out.primes
        ));
    }
    if !out.done {
        return Err("no `linuxbench: done` line".into());
    }
    Ok(note.join(", "))
}

/// `linux_bench_native_short`: Debian's kernel with the initramfs `cargo xtask build` made,
/// booted natively with `xenia.bench=<SHORT_ARGS>` under `-icount`: `/init` runs the program
/// instead of the shell, every test prints a figure within [`BOUNDS`], and `/init` powers off.
pub fn native_short(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let (kernel, initrd) = (
        ws.artifact(DEBIAN_KERNEL_ARTIFACT),
        ws.artifact(DEBIAN_INITRD_ARTIFACT),
    );
    if !kernel.is_file() || !initrd.is_file() {
        let reason = format!(
            "skipped: no {} and {}: `cargo xtask build` could not fetch Debian's \
             linux-image-*-cloud-amd64-unsigned (its output says why)",
            kernel.display(),
            initrd.display()
        );
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let mut machine = ctx.machine().memory_mib(256);
    for a in ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let log = linuxbench::run_native(machine, &kernel, &initrd, SHORT_ARGS, RUN)?;
    if TESTS
        .iter()
        .any(|t| !log.contains(&format!("linuxbench: {t} ")))
    {
        return Err(format!("a test's line is missing:\n{log}"));
    }
    let note = check(&linuxbench::parse(&log))?;
    ctx.note(format!(
        "native, {SHORT_ARGS}: instructions per iteration: {note}"
    ));
    Ok(())
}

/// `linux_bench_icount_goal`'s settings: the best of three runs of a few thousand system
/// calls and of a thousand pipe round trips (the bench's own count: with two hundred, the
/// pipe's figure moved by 10 % between builds that differed by nothing it uses), a CPU-bound
/// loop long enough (36 million instructions) that the timer's ticks weigh well under the
/// 1 % its goal allows (with the primes below 10,000 they were 0.56 %), the rest short.
pub const GOAL_ARGS: &str = "syscalls=5000 pages=64 forks=5 trips=1000 primes=100000 runs=3";

/// The primes below 100,000 (the `cpu_loop` check of [`GOAL_ARGS`]).
const PRIMES_BELOW_100000: u64 = 9592;

/// The ratios (domU / native) `linux_bench_icount_goal` holds. The CPU-bound loop meets
/// issue 18's goal (1.01). The others are regression bounds, about 10 % above what this
/// scenario measured (session 20: null system call 1.67, with the entry stub's short way,
/// `xenia_pv_fast`, which the bound fails without; session 18: pipe round trip 1.99, `fork`
/// 2.00 with its five forks, where the bench's hundred read 1.96), so that losing a short
/// way or the translation cache's stamps fails the scenario. The bench (`cargo xtask bench
/// --only linux`) measures the goals themselves: `fork` and the pipe meet 2×, the null
/// system call (goal 1.5) does not. Earlier bounds for the null system call and the pipe:
/// 3.9 (session 19, measured 3.55), 4.4 (session 18, measured 4.00), 4.8 and 2.35 (session
/// 15, measured 4.36 and 2.10; session 14 left 5.02 to 5.18 and 2.32 to 2.33, session 12
/// 7.68 and 3.56).
pub const RATIO_BOUNDS: [(&str, f64); 4] = [
    ("cpu_loop", 1.01),
    ("null_syscall", 1.85),
    ("pipe_pingpong", 2.2),
    ("fork_exit", 2.2),
];

/// Bound for the native boot and run (about 20 s here; a first try on a loaded machine
/// once stopped early in Linux's boot within [`RUN`]).
const GOAL_NATIVE_RUN: Duration = Duration::from_secs(600);
/// Bound for Xenia's boot to dom0's prompt under `-icount`.
const GOAL_BOOT: Duration = Duration::from_secs(300);
/// Bound from `xl create` to the program's first line (Linux's boot in the domU under
/// `-icount`: about a minute here).
const GOAL_REACH: Duration = Duration::from_secs(600);
/// Bound for the program's run in the domU (well under a minute).
const GOAL_RUN: Duration = Duration::from_secs(600);

/// The ratios of [`RATIO_BOUNDS`] from the two runs' figures: `Err` names each one missing or
/// above its bound. Returns the notes (`test native -> domU (ratio)`).
pub fn judge(
    native: &linuxbench::Output,
    domu: &linuxbench::Output,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let mut over = Vec::new();
    for (test, bound) in RATIO_BOUNDS {
        let (Some(n), Some(d)) = (native.figures.get(test), domu.figures.get(test)) else {
            return Err(format!("{test}: no figure natively or in the domU"));
        };
        if n.ticks == 0 {
            return Err(format!("{test}: zero ticks natively"));
        }
        let ratio = d.ticks as f64 / n.ticks as f64;
        notes.push(format!(
            "{test}: {} -> {} instructions per iteration, ratio {ratio:.2} (at most {bound})",
            n.ticks, d.ticks
        ));
        if ratio > bound {
            over.push(format!("{test} {ratio:.2} > {bound}"));
        }
    }
    if over.is_empty() {
        Ok(notes)
    } else {
        Err(format!(
            "ratios above their bounds: {}; {}",
            over.join(", "),
            notes.join("; ")
        ))
    }
}

/// `linux_bench_icount_goal`: the `linux` bench's two halves in one scenario, short
/// ([`GOAL_ARGS`]): Debian's kernel natively and as a Xenia domU, both under `-icount
/// shift=0`, and the ratios of [`RATIO_BOUNDS`] held. Both runs must count instructions with
/// the TSC, count the primes right and finish (`linuxbench: done`). Skipped as the other `linux_` scenarios when Debian's
/// package could not be fetched.
pub fn icount_goal(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let (kernel, initrd) = (
        ws.artifact(DEBIAN_KERNEL_ARTIFACT),
        ws.artifact(DEBIAN_INITRD_ARTIFACT),
    );
    if !kernel.is_file() || !initrd.is_file() {
        let reason = format!(
            "skipped: no {} and {}: `cargo xtask build` could not fetch Debian's \
             linux-image-*-cloud-amd64-unsigned (its output says why)",
            kernel.display(),
            initrd.display()
        );
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let mut machine = ctx.machine().memory_mib(256);
    for a in ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let log = linuxbench::run_native(machine, &kernel, &initrd, GOAL_ARGS, GOAL_NATIVE_RUN)?;
    let native = linuxbench::parse(&log);
    finished(&native).map_err(|e| format!("native: {e}"))?;
    let mut machine = ctx.machine().memory_mib(1024);
    for a in ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let bounds = linuxbench::DomuBounds {
        boot: GOAL_BOOT,
        reach: GOAL_REACH,
        run: GOAL_RUN,
    };
    let log = linuxbench::run_domu(ws, machine, GOAL_ARGS, bounds)?;
    let domu = linuxbench::parse(&log);
    finished(&domu).map_err(|e| format!("domU: {e}\n{log}"))?;
    for note in judge(&native, &domu)? {
        println!("  {note}");
        ctx.note(note);
    }
    Ok(())
}

/// A run of [`GOAL_ARGS`] that did its work: no failure, the TSC counting instructions, the
/// primes counted right, `linuxbench: done`.
fn finished(out: &linuxbench::Output) -> Result<(), String> {
    if let Some(why) = &out.failed {
        return Err(format!("the program failed: {why}"));
    }
    if !out.tsc_check.is_some_and(|t| (990..=1010).contains(&t)) {
        return Err(format!(
            "the TSC should count instructions under -icount shift=0: {:?} ticks per 1000",
            out.tsc_check
        ));
    }
    if out.primes != Some(PRIMES_BELOW_100000) {
        return Err(format!(
            "cpu_loop counted {:?} primes below 100000, not {PRIMES_BELOW_100000}",
            out.primes
        ));
    }
    if !out.done {
        return Err("no `linuxbench: done` line".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "linuxbench: start\n\
        linuxbench: tsc_check ticks_per_1000_instructions=1000\n\
        linuxbench: null_syscall iters=2000 ticks_per_iter=320 ns_per_iter=320\n\
        linuxbench: page_fault iters=64 ticks_per_iter=8000 ns_per_iter=8001\n\
        linuxbench: fork_exit iters=5 ticks_per_iter=150000 ns_per_iter=150002\n\
        linuxbench: pipe_pingpong iters=50 ticks_per_iter=9000 ns_per_iter=9000\n\
        linuxbench: cpu_loop iters=1 ticks_per_iter=1935333 ns_per_iter=1935340 primes=1229\n\
        linuxbench: done\n";

    #[test]
    fn the_ratios_are_judged() {
        let native = linuxbench::parse(GOOD);
        let same = judge(&native, &native).expect("equal figures pass");
        assert_eq!(same.len(), RATIO_BOUNDS.len());
        for (from, to) in [
            // 320 * 1.85 = 592: above it fails.
            ("ticks_per_iter=320 ", "ticks_per_iter=600 "),
            // 9000 * 2.2 = 19800.
            ("ticks_per_iter=9000 ", "ticks_per_iter=19810 "),
            // 150000 * 2.2 = 330000.
            ("ticks_per_iter=150000 ", "ticks_per_iter=330100 "),
            // 1.01 of the loop.
            ("ticks_per_iter=1935333 ", "ticks_per_iter=1955000 "),
        ] {
            let slow = linuxbench::parse(&GOOD.replace(from, to));
            assert!(judge(&native, &slow).is_err(), "{from} -> {to}");
        }
        let within = linuxbench::parse(&GOOD.replace("ticks_per_iter=320 ", "ticks_per_iter=590 "));
        assert!(judge(&native, &within).is_ok());
        let within =
            linuxbench::parse(&GOOD.replace("ticks_per_iter=150000 ", "ticks_per_iter=329000 "));
        assert!(judge(&native, &within).is_ok());
        let missing = linuxbench::parse(&GOOD.replace(
            "linuxbench: pipe_pingpong iters=50 ticks_per_iter=9000 ns_per_iter=9000\n",
            "",
        ));
        assert!(judge(&native, &missing).is_err());
    }

    #[test]
    fn a_good_run_passes_and_bad_ones_fail() {
        assert!(check(&linuxbench::parse(GOOD)).is_ok());
        for (from, to) in [
            ("ticks_per_iter=320 ", "ticks_per_iter=3 "),
            ("primes=1229", "primes=1228"),
            ("linuxbench: done\n", ""),
            ("=1000\n", "=384\n"),
            ("ns_per_iter=1935340", "ns_per_iter=1000000"),
            ("ns_per_iter=8001", "ns_per_iter=0"),
            (
                "linuxbench: fork_exit iters=5 ticks_per_iter=150000 ns_per_iter=150002\n",
                "",
            ),
        ] {
            let bad = GOOD.replace(from, to);
            assert_ne!(bad, GOOD, "{from}");
            assert!(check(&linuxbench::parse(&bad)).is_err(), "{from} -> {to}");
        }
        let failed = format!("{GOOD}linuxbench: failed: fork returned -11\n");
        assert!(check(&linuxbench::parse(&failed)).is_err());
    }
}
