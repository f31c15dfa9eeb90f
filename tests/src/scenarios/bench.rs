//! The benchmark kernels of issue 13, briefly: `cargo xtask bench --only kernel` measures
//! with them (under `-icount`, for instruction counts); this runs both without `-icount`
//! and with few iterations, so that neither rots between benchmark runs.

use std::time::Duration;

use crate::benchk::{self, ROWS};
use crate::runner::Context;

/// Few operations per row, and a small primes limit (168 primes below 1000).
const ARGS: &str = "iters=200 primes=1000 runs=2";
const PRIMES_BELOW_1000: u64 = 168;
const RUN: Duration = Duration::from_secs(180);

/// Both kernels run every row to a figure, count the primes right, and power off; the pv
/// kernel does it as Xenia's dom0 (so every row's path through the hypervisor works: the
/// null hypercall, the fast trap, the SYSCALL bounce, page faults mapped with
/// `update_va_mapping`, a 512-entry `mmu_update`, `MMUEXT_NEW_BASEPTR`, the timer event).
pub fn kernels(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let native = benchk::run_native(ws, ctx.machine(), ARGS, RUN)?;
    let pv = benchk::run_pv(ws, ctx.machine(), ARGS, RUN)?;
    for (env, out) in [("native", &native), ("pv", &pv)] {
        if !out.lines().any(|l| l.trim() == format!("bench env {env}")) {
            return Err(format!("the {env} kernel did not say `bench env {env}`"));
        }
        let failed = benchk::failed_rows(out);
        if !failed.is_empty() {
            return Err(format!("{env}: rows failed: {failed:?}"));
        }
        let figures = benchk::figures(out);
        let missing: Vec<&str> = ROWS
            .iter()
            .copied()
            .filter(|r| !figures.contains_key(*r))
            .collect();
        if !missing.is_empty() {
            return Err(format!("{env}: no figure for {missing:?}"));
        }
        match figures.get("primes_count") {
            Some(&PRIMES_BELOW_1000) => {}
            other => {
                return Err(format!(
                    "{env}: primes below 1000 counted as {other:?}, not {PRIMES_BELOW_1000}"
                ));
            }
        }
        ctx.note(format!(
            "{env} (TSC ticks without -icount, not results): {}",
            ROWS.iter()
                .map(|r| format!("{r} {}", figures[*r]))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}
