//! # bench-pv: the benchmark kernel as a Xenia guest (issue 13's `pv` column)
//!
//! One set of benchmark bodies, two environments: this kernel runs them on the guest runtime
//! with its kernel in ring 1 (booted as dom0 by `cargo xtask bench`), and `bench-native`
//! (`tests/guests/bench-native`) runs the same bodies on the bare machine in ring 0. The
//! ring-3 bodies are one assembly file both kernels include, `bodies/user.s`: the same
//! instructions in both columns. Only the environment differs: how a PTE is written
//! (`mmu_update` / `update_va_mapping` here), how a trap reaches the kernel (the hypervisor's
//! bounce, or the `int 0x80` fast trap straight to ring 1), how a timer is armed
//! (`set_timer_op` and `VIRQ_TIMER`).
//!
//! Under QEMU with `-icount shift=0,sleep=off` every instruction takes one nanosecond of
//! virtual time and the TSC counts them, so each figure is an instruction count, the minimum
//! over `runs=` runs (default 5): deterministic and free of the host's load. A figure for a
//! ring-3 loop subtracts the same body run for zero iterations (entering and leaving ring 3
//! once), so it is the cost of one operation alone.
//!
//! Output, one line each, then the kernel powers the machine off:
//! `bench env pv`, `bench <row> <instructions per operation>` for the rows of `bench.rs`,
//! `bench primes_count <n>`, `bench done`.
//!
//! Command line (dom0's module line): `iters=<n>` operations per run (default 10000),
//! `primes=<limit>` (default 2000000), `runs=<n>` (default 5).
//!
//! On the build host this is an empty program, so that `cargo test --workspace` builds.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod bench;

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(bench::run);

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
