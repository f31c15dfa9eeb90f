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
