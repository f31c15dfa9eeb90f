//! # xenpv: a test kernel for Xen's x86-64 PV ABI
//!
//! Built as a Xen PV kernel is (Linux, XTF, Mini-OS): its own entry, ELF notes like Linux's
//! (`!writable_page_tables` required, `GUEST_OS` "xenia-xenpv-test"), no hypercall page, every
//! hypercall a `syscall` from kernel mode (number in `rax`, arguments in `rdi rsi rdx r10 r8`,
//! `rcx` and `r11` clobbered), Xen's bounce frames. It runs in ring 3 under Xenia's Xen PV
//! guest mode (DESIGN.md §12) and checks it, printing `PASS <name>` or `FAIL <name>: <why>`
//! per check on its console (`console_io`), then `xenpv: done` and powers off.
//!
//! With `hostile=<what>` on its command line it then makes one request the hypervisor must
//! answer by crashing it (`no_user_l4`: a return to user mode before any user page table, as
//! Xen does); an `iret` frame the CPU would refuse is not one of them any more: it is a #GP
//! delivered to the kernel, one of the checks.
//!
//! On the build host this is an empty program, so that `cargo test --workspace` builds.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod kernel;

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
