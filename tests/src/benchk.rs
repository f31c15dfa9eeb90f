//! The benchmark kernels of issue 13 (`tests/guests/bench-native`, `tests/guests/bench`):
//! booting each, and reading its `bench <row> <figure>` lines. `cargo xtask bench --only
//! kernel` runs them under `-icount shift=0,sleep=off` for the table; the scenario
//! `bench_kernels` runs them briefly, without `-icount`, so that neither rots.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::contract;
use crate::machine::{EXIT_POWEROFF, Machine};
use crate::workspace::Workspace;

/// The native benchmark kernel's file in `target/xenia/`.
pub const NATIVE_ARTIFACT: &str = "bench-native.elf";
/// The pv benchmark kernel's file in `target/xenia/`.
pub const PV_ARTIFACT: &str = "bench-pv.elf";

/// The rows both kernels print, in order (the table of `cargo xtask bench --only kernel`).
pub const ROWS: [&str; 8] = [
    "null_call",
    "int80",
    "syscall",
    "page_fault",
    "pt_batch",
    "process_switch",
    "timer",
    "primes",
];

/// QEMU's arguments for instruction counting: one instruction per nanosecond, idle time
/// skipped, so the TSC counts instructions.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];

/// The last `lines` lines of `log`, for an error message.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Boots the native benchmark kernel on `machine` (its image's `/boot/xenia.elf` is
/// `bench-native.elf`; the harness adds `debug-exit` to its command line, so it ends through
/// `isa-debug-exit`) with command line `args`, waits up to `timeout` for `bench done` and
/// the power-off, and returns the serial output.
pub fn run_native(
    ws: &Workspace,
    machine: Machine,
    args: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut vm = machine
        .hypervisor(ws.require_artifact(NATIVE_ARTIFACT)?)
        .hv_options(args)
        .memory_mib(1024)
        .boot()?;
    let done = vm
        .wait_for_line_starting("bench done", timeout)
        .and_then(|_| vm.expect_exit(EXIT_POWEROFF, Duration::from_secs(120)));
    match done {
        Ok(()) => Ok(vm.serial_log()),
        Err(e) => Err(format!(
            "bench-native: {e}; the log's last lines:\n{}",
            tail(&vm.serial_log(), 40)
        )),
    }
}

/// Boots Xenia on `machine` with `bench-pv` as dom0 (64 MiB) and command line `args`, waits
/// up to `timeout` for `bench done` and the power-off, and returns dom0's lines (without the
/// `(d0) ` prefix).
pub fn run_pv(
    ws: &Workspace,
    machine: Machine,
    args: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut vm = machine
        .memory_mib(1024)
        .hv_options("dom0_mem=64M")
        .module(ws.require_artifact(PV_ARTIFACT)?, args)
        .boot()?;
    let done = vm
        .wait_for_line(&contract::guest_line("bench done"), timeout)
        .and_then(|_| vm.expect_exit(EXIT_POWEROFF, Duration::from_secs(120)));
    if let Err(e) = done {
        return Err(format!(
            "bench-pv: {e}; the log's last lines:\n{}",
            tail(&vm.serial_log(), 40)
        ));
    }
    let prefix = contract::guest_line("");
    Ok(vm
        .serial_log()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The `bench <row> <figure>` figures of a kernel's output; `bench # ...` comments,
/// `bench env`, `bench done`, rows that `failed` and anything else are left out.
pub fn figures(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let mut words = l.trim().strip_prefix("bench ")?.split_whitespace();
            let (row, figure) = (words.next()?, words.next()?);
            if words.next().is_some() {
                return None;
            }
            Some((row.to_string(), figure.parse().ok()?))
        })
        .collect()
}

/// The rows a kernel reported as `failed`.
pub fn failed_rows(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("bench ")?;
            let (row, what) = rest.split_once(' ')?;
            (what.trim() == "failed").then(|| row.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_failures_parse() {
        let out = "GRUB\nbench env native\nbench # cpu: AuthenticAMD QEMU\nbench null_call 4\r\n\
                   bench int80 71\nbench timer failed\nbench primes_count 148933\n\
                   bench fatal: vector 0xe\nbench done\n";
        let f = figures(out);
        assert_eq!(f.get("null_call"), Some(&4));
        assert_eq!(f.get("primes_count"), Some(&148933));
        assert!(!f.contains_key("timer") && !f.contains_key("env") && !f.contains_key("#"));
        assert_eq!(f.len(), 3);
        assert_eq!(failed_rows(out), ["timer"]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
