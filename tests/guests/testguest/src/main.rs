//! # testguest: Xenia's test guest kernel
//!
//! One paravirtual kernel, many tests: the kernel command line (`start_info.cmd_line`) names
//! the test with `test=<name>`. Each test prints a line per check
//! (`check <what>: ok` / `check <what>: FAILED (<details>)`, measured figures on `note:`
//! lines), then `Test result: SUCCESS`,
//! `FAILURE`, `ERROR` or `SKIP`, and shuts the domain down; the shutdown tests instead print
//! `about to shut down: <reason>` and shut down for that reason. A missing or unknown test
//! name gives `Test result: ERROR` and the list of valid names. The tests are listed in
//! `tests::TESTS`; the runtime they share is `xenia-guest-rt`.
//!
//! Run one by hand: `module2 /boot/testguest.elf test=cpl` after the hypervisor's
//! `multiboot2` line in grub.cfg.
//!
//! On the build host this is an empty program, so that `cargo test --workspace` builds.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod ring3;
#[cfg(target_os = "none")]
mod tests;

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(tests::dispatch);

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
