//! # xenia-guest-rt: the runtime a Xenia PV kernel starts on
//!
//! Everything a paravirtual kernel for Xenia needs before it can do anything of its own:
//! the image the domain builder loads, the entry point, the console, the trap table, the
//! event callback, system time, ring-3 entry and the memory hypercalls. dom0's kernel, the
//! example guest `hello`, the demo domUs and the test guests are all built on it; `hello`
//! is the one to read first. It follows the porting guide in the `guest_abi` crate docs,
//! whose sections the modules cite.
//!
//! **What it trusts.** Only guest-abi's documented contract: where the hypervisor may do
//! something else, the runtime checks instead of assuming (the entry registers are recorded
//! before anything changes them, `start_info`'s magic is checked, the console ring is used
//! only if the device page agrees with `start_info`). A console backend in dom0 is not
//! trusted to keep up: writes to the console ring wait for it a bounded time only.
//!
//! **What it never does.** Allocate (there is no heap: everything is static or on the
//! stack), use more than vCPU 0 unless the kernel starts others ([`smp`]), change the page tables it was started with (the [`mm`]
//! helpers are for a kernel that does), or let an exception pass unnoticed: an exception
//! nobody armed a handler for is reported with the registers, and the domain crashes.
//!
//! ## Starting a kernel on it
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use xenia_guest_rt::println;
//!
//! fn main() -> ! {
//!     println!("hello from ring 1");
//!     xenia_guest_rt::check::shutdown(guest_abi::sched::ShutdownReason::Poweroff)
//! }
//! xenia_guest_rt::entry!(main);
//! ```
//!
//! with a `build.rs` that links the binary with this crate's `linker.ld` (`-T`, `--no-pie`,
//! `-zmax-page-size=4096`; `guest-abi/hello/build.rs` is five lines to copy), built with
//! `cargo build --target x86_64-unknown-none`. The runtime's `_start` records the entry
//! registers, zeroes `.bss`, moves to the boot stack, checks `start_info`, installs the
//! trap table, the event callback and the ring-1 stack for entries from ring 3, and calls
//! `main` with events still masked. From there:
//!
//! - [`console`]: [`println!`] through `console_io` (dom0, or a domU without a backend), or
//!   through the console ring a domU shares with dom0's backend once [`console::use_ring`]
//!   is called; reading input.
//! - [`boot`]: what the builder handed over (`start_info`, `shared_info`, the registers at
//!   entry, the user-accessible padding).
//! - [`trap`]: the trap table; [`probe!`](crate::probe), which runs an instruction that
//!   is expected to fault and records what the handler saw; a kernel's own system calls
//!   ([`trap::set_syscall_handler`]) and ring-3 faults.
//! - [`events`]: the event callback, per-port counters, masking, [`events::block_until`].
//! - [`smp`]: secondary vCPUs (`VCPUOP_initialise` and `up` with a stack each), which vCPU
//!   runs, IPIs.
//! - [`xenbus`]: a xenstore client on the domain's store ring (read, write, watch);
//!   [`hotplug`]: vCPUs brought down and up as `xl vcpu-set` asks through xenstore;
//!   [`blkfront`]: a virtual disk served by dom0's blkback (Xen's `blkif`); [`netfront`]: a
//!   network interface served by dom0's netback (Xen's `netif`), its ring logic in
//!   [`netring`] (host-tested).
//! - [`time`]: system time from `vcpu_time_info` and the TSC.
//! - [`user`]: running code in ring 3 until it comes back through `int 0x80`, `SYSCALL`
//!   or a fault.
//! - [`mm`]: the p2m list and the M2P, page-table walks, fresh frames, scratch windows and
//!   the memory hypercalls, for kernels that build page tables of their own.
//! - [`check`]: shutdown, and the check and result lines of the test guests (`check <what>:
//!   ok`, `Test result: SUCCESS`), in the spirit of Xen's XTF.
//! - [`note`]: the ELF note naming the kernel; [`cmdline`]: `key=value` words.
//!
//! All of the assembly (ELF notes, hypercall page, `_start`, trap stubs, ring-3 entry) is
//! in one file, `src/asm.rs`.
//!
//! **Standing assumptions.** The kernel runs on vCPU 0 (secondary vCPUs only in ring 1,
//! see [`smp`]), in ring 1, in the bootstrap
//! address space the builder made (see the guest-abi porting guide), or in one of its own
//! whose upper half maps the kernel exactly as the bootstrap tables do. Handlers and the
//! main flow share state through [`Global`], which is sound because there is one vCPU and
//! each piece of shared state has one writer at a time (documented where it is used).
//!
//! Everything except [`cmdline`], [`netring`], [`note`] and [`Global`] exists only on the bare-metal
//! target (`target_os = "none"`, and in the documentation), so the workspace's host build
//! and tests are unaffected.

#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

mod global;

pub mod cmdline;
pub mod netring;
pub mod note;
pub use global::Global;

#[cfg(any(target_os = "none", doc))]
mod asm;
#[cfg(any(target_os = "none", doc))]
pub mod blkfront;
#[cfg(any(target_os = "none", doc))]
pub mod boot;
#[cfg(any(target_os = "none", doc))]
pub mod check;
#[cfg(any(target_os = "none", doc))]
pub mod console;
#[cfg(any(target_os = "none", doc))]
pub mod events;
#[cfg(any(target_os = "none", doc))]
pub mod hotplug;
#[cfg(any(target_os = "none", doc))]
pub mod mm;
#[cfg(any(target_os = "none", doc))]
pub mod netfront;
#[cfg(any(target_os = "none", doc))]
pub mod smp;
#[cfg(any(target_os = "none", doc))]
pub mod time;
#[cfg(any(target_os = "none", doc))]
pub mod trap;
#[cfg(any(target_os = "none", doc))]
pub mod user;
#[cfg(any(target_os = "none", doc))]
pub mod xenbus;

/// Size of the stack `_start` moves to when [`entry!`] is not given one (the builder's
/// bootstrap stack is one page, little for Rust code that formats text).
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// Names the kernel's main function, `fn main() -> !`: `xenia_guest_rt::entry!(main);`, or
/// `entry!(main, boot_stack = 256 * 1024)` for a kernel that needs more than
/// [`BOOT_STACK_SIZE`] of stack. The runtime calls it once the trap table, the event
/// callback and the ring-1 stack are in place. It also names the kernel to the tools: the
/// `XEN_ELFNOTE_GUEST_OS` note says `Xenia-<binary name>`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        $crate::entry!($main, boot_stack = $crate::BOOT_STACK_SIZE);
    };
    ($main:path, boot_stack = $size:expr) => {
        /// The kernel's main function, called by the runtime after start-up.
        #[unsafe(no_mangle)]
        pub extern "Rust" fn xenia_guest_main() -> ! {
            let main: fn() -> ! = $main;
            main()
        }

        /// The kernel's name for the tools.
        #[cfg(target_os = "none")]
        const XENIA_GUEST_OS: &str = concat!("Xenia-", env!("CARGO_BIN_NAME"));

        /// The `XEN_ELFNOTE_GUEST_OS` note.
        #[cfg(target_os = "none")]
        #[used]
        #[unsafe(link_section = ".note.Xen")]
        static XENIA_GUEST_OS_NOTE: $crate::note::StringNote<
            { $crate::note::room(XENIA_GUEST_OS.len()) },
        > = $crate::note::StringNote::guest_os(XENIA_GUEST_OS);

        // The stack `_start` moves to (src/asm.rs of xenia-guest-rt), in .bss.
        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            ".pushsection .bss.rt_boot_stack, \"aw\", @nobits",
            ".balign 16",
            "    .skip {size}",
            ".globl rt_boot_stack_top",
            "rt_boot_stack_top:",
            ".popsection",
            size = const $size,
        );
    };
}
