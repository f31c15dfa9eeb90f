//! The peer benchmark program briefly in Xenia's dom0: `cargo xtask bench --peer xen` runs
//! it under `-icount` in three environments for the table; this runs it at dom0's prompt
//! without `-icount` and with few iterations, so that it does not rot (every row is
//! measured, the CPU-bound row counts right, the program ends with `peer done`).

use std::time::Duration;

use crate::peer::{self, ROWS};
use crate::runner::Context;

/// Few operations per row, and a small primes limit (168 primes below 1000).
const ARGS: &str = "iters=50 runs=2 primes=1000";
const PRIMES_BELOW_1000: u64 = 168;
/// Bound for the program's run (a fraction of a second of emulated work).
const RUN: Duration = Duration::from_secs(60);

/// Every row of `peerbench` has a positive figure in Xenia's dom0.
pub fn program_in_dom0(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let out = peer::run_in_xenia(ws, ctx.machine().memory_mib(512), ARGS, RUN)?;
    if !peer::done(&out) {
        return Err(format!("no `{}` line: {out:?}", peer::DONE));
    }
    let figures = peer::figures(&out);
    let bad: Vec<&str> = ROWS
        .iter()
        .copied()
        .filter(|r| figures.get(*r).is_none_or(|&v| v == 0))
        .collect();
    if !bad.is_empty() {
        return Err(format!("no positive figure for {bad:?}: {out:?}"));
    }
    match figures.get("primes_count") {
        Some(&PRIMES_BELOW_1000) => {}
        other => {
            return Err(format!(
                "primes below 1000 counted as {other:?}, not {PRIMES_BELOW_1000}"
            ));
        }
    }
    ctx.note(format!(
        "TSC ticks without -icount, not results: {}",
        ROWS.iter()
            .map(|r| format!("{r} {}", figures[*r]))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// The figures of `cargo xtask bench --peer xen` this scenario holds Xenia's dom0 to,
/// instructions per operation, recorded from the last run of that benchmark (Debian's Linux
/// 6.1 booted natively and as Xen 4.17's PV dom0 on the same `-icount` machine; README,
/// "Side by side with Xen"): those two columns need packages fetched from Debian, which
/// `cargo xtask test` never downloads, so they are constants here and Xenia's column is
/// measured anew.
const NATIVE_NULL_SYSCALL: u64 = 316;
const XEN_NULL_SYSCALL: u64 = 974;
const XEN_WRITE_NULL: u64 = 1_248;
const XEN_CLOCK_GETTIME: u64 = 82;
/// Xen's dom0 (Linux 6.1, PV): `fork`, the child's `exit_group`, `wait4` (issue 14's row,
/// `cargo xtask bench --peer xen` on 2026-12-05).
const XEN_FORK_EXIT_WAIT: u64 = 734_553;
/// Xen's dom0: a byte to a child and back through two pipes.
const XEN_PIPE_PINGPONG: u64 = 20_937;
/// Fewer operations than the benchmark's, enough for a stable minimum.
const GOAL_ARGS: &str = "iters=500 runs=3 primes=1000";

/// Issue 13's goals for dom0's system calls, kept: under `-icount shift=0` (the TSC counts
/// instructions, so figures are path lengths, the same from run to run), Xenia's dom0 runs
/// the peer program at its prompt; its null system call must be within 1.5x native Linux's
/// and at or below Xen's, its `write` to `/dev/null` and `clock_gettime` at or below Xen's,
/// and (issue 14) `fork`+`exit`+`wait` and a pipe round trip between two processes at or
/// below Xen's (the recorded figures above). A change that lengthens the `SYSCALL` bounce or dom0's
/// system-call path fails here, not only in `cargo xtask bench --peer xen`.
pub fn goals_icount(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let mut machine = ctx.machine().memory_mib(1024);
    for a in crate::benchk::ICOUNT {
        machine = machine.qemu_arg(a);
    }
    let out = peer::run_in_xenia(ws, machine, GOAL_ARGS, Duration::from_secs(240))?;
    if !peer::done(&out) {
        return Err(format!("no `{}` line: {out:?}", peer::DONE));
    }
    let figures = peer::figures(&out);
    let get = |row: &str| {
        figures
            .get(row)
            .copied()
            .ok_or_else(|| format!("no figure for {row}: {out:?}"))
    };
    if get("tsc_check")? != 1000 {
        return Err(format!(
            "the TSC does not count instructions under -icount ({} ticks per 1000)",
            get("tsc_check")?
        ));
    }
    let (null, write, clock) = (
        get("null_syscall")?,
        get("write_null")?,
        get("clock_gettime")?,
    );
    let (fork, pipe) = (get("fork_exit_wait")?, get("pipe_pingpong")?);
    ctx.note(format!(
        "dom0 null system call {null} instructions ({:.2}x native Linux's {NATIVE_NULL_SYSCALL}, \
         Xen's {XEN_NULL_SYSCALL}); write to /dev/null {write} (Xen's {XEN_WRITE_NULL}); \
         clock_gettime {clock} (Xen's {XEN_CLOCK_GETTIME}); fork+exit+wait {fork} (Xen's \
         {XEN_FORK_EXIT_WAIT}); pipe round trip {pipe} (Xen's {XEN_PIPE_PINGPONG})",
        null as f64 / NATIVE_NULL_SYSCALL as f64,
    ));
    let mut missed = Vec::new();
    if null * 2 > NATIVE_NULL_SYSCALL * 3 || null > XEN_NULL_SYSCALL {
        missed.push(format!(
            "null system call {null}: goal at most 1.5x native ({}) and at most Xen's \
             ({XEN_NULL_SYSCALL})",
            NATIVE_NULL_SYSCALL * 3 / 2
        ));
    }
    if write > XEN_WRITE_NULL {
        missed.push(format!(
            "write to /dev/null {write}: goal at most Xen's ({XEN_WRITE_NULL})"
        ));
    }
    if clock > XEN_CLOCK_GETTIME {
        missed.push(format!(
            "clock_gettime {clock}: goal at most Xen's ({XEN_CLOCK_GETTIME})"
        ));
    }
    if fork > XEN_FORK_EXIT_WAIT {
        missed.push(format!(
            "fork+exit+wait {fork}: goal at most Xen's ({XEN_FORK_EXIT_WAIT})"
        ));
    }
    if pipe > XEN_PIPE_PINGPONG {
        missed.push(format!(
            "pipe round trip {pipe}: goal at most Xen's ({XEN_PIPE_PINGPONG})"
        ));
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(missed.join("; "))
    }
}
