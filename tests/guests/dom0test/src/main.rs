//! # dom0test: Xenia's test dom0 kernel
//!
//! A paravirtual dom0 that exercises the hypervisor's domain management from the inside: it
//! builds domUs with the dom0-tools domain builder ([`dom0_tools::builder::build`]) over
//! hypercalls (`hv::Xenia`, the [`dom0_tools::hypervisor::Hypervisor`] trait), runs them,
//! watches them from outside (CPU time, shutdown reasons, free memory, the console ring) and
//! destroys them. The test is chosen by `test=<name>` on dom0's own command line; each prints
//! `check …` lines and measured figures, then `Test result: SUCCESS|FAILURE|ERROR|SKIP` and
//! powers dom0 (and so the machine) off, as every Xenia test guest does (`xenia-guest-rt`).
//!
//! **Boot.** GRUB module 0 is this kernel, module 1 its initrd, which is simply the
//! `testguest` ELF file: dom0test uses it as the kernel of every domU, choosing each domU's
//! workload with `test=<name>` on the domU's command line (testguest's `tests/domu.rs`).
//!
//! **What it trusts.** The hypervisor's answers, which are what is under test: every one is
//! checked or printed, never assumed. The initrd is whatever GRUB loaded; the builder checks
//! it before creating anything.
//!
//! **What it never does.** Spin while it waits: dom0 competes for the same pCPU as the
//! domains it measures, so every wait blocks (`SCHEDOP_block` with a timer), woken by the
//! timer or by `VIRQ_DOM_EXC` (module `wait`). It never leaves a domU behind on purpose: each test
//! destroys what it built, and checks that it went.
//!
//! On the build host this is an empty program, so that `cargo test --workspace` builds.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod hv;
#[cfg(target_os = "none")]
mod tests;
#[cfg(target_os = "none")]
mod wait;

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(tests::dispatch);

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
