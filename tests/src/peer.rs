//! The peer benchmark program of issue 13 (`tests/programs/peerbench`, `/bin/peerbench` in
//! the scenarios' initrd): running it at Xenia dom0's prompt, and reading its
//! `peer <row> <figure>` lines. `cargo xtask bench --peer xen` runs the same binary under
//! native Linux, Linux as Xen's PV dom0 and Xenia's dom0 (`-icount shift=0,sleep=off`, so
//! the figures are instruction counts); the scenario `peer_program_in_dom0` runs it briefly
//! in Xenia's dom0, so that it does not rot.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::Machine;
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT, Workspace};

/// The program's name in `/bin`.
pub const PROGRAM: &str = "peerbench";

/// The rows the program prints, in order (the peer rows of `cargo xtask bench`).
pub const ROWS: [&str; 8] = [
    "null_syscall",
    "write_null",
    "page_fault",
    "mmap_64k",
    "clock_gettime",
    "fork_exit_wait",
    "pipe_pingpong",
    "cpu_loop",
];

/// The program's last line when every row was measured.
pub const DONE: &str = "peer done";

/// dom0's shell prompt.
const PROMPT: &str = "dom0# ";

/// Bound for the boot to dom0's first prompt.
const BOOT: Duration = Duration::from_secs(300);

/// The `peer <name> <value>` figures of `out` (lines may carry a console's prefix before
/// `peer `; a value that is not a number is left out).
pub fn figures(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let rest = &l[l.find("peer ")? + "peer ".len()..];
            let mut words = rest.split_whitespace();
            let (name, value) = (words.next()?, words.next()?);
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Whether `out` has the program's `peer done` line.
pub fn done(out: &str) -> bool {
    out.lines().any(|l| l.trim_end().ends_with(DONE))
}

/// Boots Xenia's dom0 with the scenarios' initrd on `machine` (the caller sets memory,
/// CPU and QEMU arguments), runs `peerbench <args>` at the prompt, waits up to `timeout`
/// for the next prompt and returns what the program printed.
pub fn run_in_xenia(
    ws: &Workspace,
    machine: Machine,
    args: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut vm = machine
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .boot()?;
    vm.wait_for(PROMPT, BOOT)?;
    let line = format!("{PROGRAM} {args}");
    vm.send(&format!("{line}\r"))?;
    let out = vm.wait_until(
        &format!("the prompt after `{line}`"),
        timeout,
        |log, cursor| {
            log[cursor..].find(PROMPT).map(|i| {
                (
                    log[cursor..cursor + i].to_string(),
                    cursor + i + PROMPT.len(),
                )
            })
        },
    )?;
    vm.kill();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_done_parse() {
        let out = "peerbench iters=1\r\npeer tsc_check 1000\n(d0) peer null_syscall 309\n\
                   peer write_null x\npeer done\n";
        let f = figures(out);
        assert_eq!(f.get("tsc_check"), Some(&1000));
        assert_eq!(f.get("null_syscall"), Some(&309), "a prefix is allowed");
        assert!(!f.contains_key("write_null"), "not a number");
        assert!(done(out));
        assert!(!done("peer failed: no /dev/null\n"));
    }
}
