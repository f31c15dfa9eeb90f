//! # xenia-guest-rt: what every Xenia test guest shares
//!
//! A test guest is a small paravirtual kernel in the spirit of Xen's XTF: it checks one
//! behaviour of the hypervisor, prints one line per check (`check <what>: ok (…)` or
//! `check <what>: FAILED (…)`), then `Test result: SUCCESS|FAILURE|ERROR|SKIP`, and shuts its
//! domain down. This crate is everything those kernels have in common, so that a test is only
//! its checks:
//!
//! - the entry point `_start`, the Xen ELF notes and the hypercall page (all the assembly is
//!   in one file, `src/asm.rs`), and the [`entry!`] macro naming the test kernel's main;
//! - [`boot`]: what the builder handed over (`start_info`, `shared_info`, the registers at
//!   entry, the user-accessible padding);
//! - [`console`]: line-buffered [`println!`] through `console_io`;
//! - [`trap`]: the trap table, handlers that report an unexpected exception as
//!   `Test result: ERROR` and crash the domain, and [`probe!`](crate::probe), which runs an
//!   instruction that is expected to fault and records what the handler saw;
//! - [`events`]: the event callback, per-port counters, masking helpers;
//! - [`time`]: system time from `vcpu_time_info` and the TSC;
//! - [`user`]: running a piece of code in ring 3 (copied into the padding, entered with
//!   `iretq`) until it comes back through `int 0x80`, `SYSCALL` or a fault;
//! - [`mm`]: the p2m list and the M2P, page-table walks, fresh frames, scratch windows and
//!   the memory hypercalls as raw calls, for tests that build page tables of their own;
//! - [`check`]: the check lines, the result line and shutdown.
//!
//! **Standing assumptions.** The guest runs on vCPU 0 only, in ring 1, in the bootstrap
//! address space the builder made (see the guest-abi porting guide), or in one of its own
//! whose upper half maps the kernel exactly as the bootstrap tables do. Handlers and the main flow share state through [`Global`], which is
//! sound because there is one vCPU and each piece of shared state has one writer at a time
//! (documented where it is used).
//!
//! **What it trusts.** Only guest-abi's documented contract: where the hypervisor may do
//! something else, the runtime checks instead of assuming (the entry registers are recorded
//! before anything changes them, the padding is recomputed from `start_info` and compared
//! with the entry `rsp`).
//!
//! **What it never does.** Let a check pass because nothing happened: an expected exception
//! that does not come is a failure, and a test that ran no check reports `ERROR`.
//!
//! Everything except [`cmdline`] and [`Global`] exists only on the bare-metal target
//! (`target_os = "none"`, and in the documentation), so the workspace's host build and
//! tests are unaffected.

#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

mod global;

pub mod cmdline;
pub use global::Global;

#[cfg(any(target_os = "none", doc))]
mod asm;
#[cfg(any(target_os = "none", doc))]
pub mod boot;
#[cfg(any(target_os = "none", doc))]
pub mod check;
#[cfg(any(target_os = "none", doc))]
pub mod console;
#[cfg(any(target_os = "none", doc))]
pub mod events;
#[cfg(any(target_os = "none", doc))]
pub mod mm;
#[cfg(any(target_os = "none", doc))]
pub mod time;
#[cfg(any(target_os = "none", doc))]
pub mod trap;
#[cfg(any(target_os = "none", doc))]
pub mod user;

/// Names the test kernel's main function: `xenia_guest_rt::entry!(main);` with
/// `fn main() -> !`. The runtime calls it once the trap table, the event callback and the
/// ring-1 stack are in place.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The test kernel's main function, called by the runtime after start-up.
        #[unsafe(no_mangle)]
        pub extern "Rust" fn xenia_guest_main() -> ! {
            let main: fn() -> ! = $main;
            main()
        }
    };
}
