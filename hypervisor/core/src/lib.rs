//! # xenia-core: the hypervisor's hardware-independent logic
//!
//! The rules of the hypervisor that need no hardware to state: who owns each machine frame
//! and what it may be used as (the frame table), grant tables, event channels, the credit
//! scheduler, the firmware memory map, the software page-table walk, the command line,
//! the dmesg ring, ACPI table parsing, RTC arithmetic, the address-space layout, the screen
//! console's terminal and the PS/2 keyboard's decoding. The
//! hypervisor binary (`hypervisor/src`) is `arch/`, entry code and the glue that feeds these
//! modules real memory; everything here builds for the host too, where its unit tests,
//! `cargo xtask fuzz` and `cargo xtask mutants` exercise it.
//!
//! **What it trusts.** Its caller, the hypervisor, for the facts it is told (which frames
//! exist, which domain is calling) and for the memory behind the traits it is given:
//! [`mm::frame_table::PageMemory`] (page-table contents), [`mm::walk::GuestTables`] (a
//! guest's tables), the entry frames handed to [`grant`]. It trusts nothing a guest or
//! firmware wrote: every guest-supplied index, reference and entry, every firmware table
//! and memory-map entry, is checked before it is used, and a bad one is an error value.
//!
//! **What it never does.** It has no `unsafe` code (`#![forbid(unsafe_code)]`): it never
//! touches a raw pointer, a register or an I/O port, and it never dereferences an address
//! that a guest, firmware or the boot loader supplied — those reach it as numbers. It never
//! panics on a guest's behalf (a guest's mistake is an `Errno`), and on the paths a guest
//! can drive it never allocates infallibly (`cargo xtask test`'s lint checks the files
//! listed in `xtask/src/lint.rs`).
//!
//! Module paths are those the hypervisor's code names them by (`crate::mm::frame_table`,
//! `crate::grant`, ...): the binary re-exports each module under its old path.
// `no_std` (the hypervisor has no OS below it); the host tests get `std`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod calibrate;
pub mod conswitch;
pub mod cpuid;
pub mod cpuinfo;
pub mod debugreg;
pub mod desc;
pub mod dmesg;
pub mod efi;
pub mod event;
pub mod grant;
pub mod guest_ptr;
pub mod hcnames;
pub mod keyboard;
pub mod layout;
pub mod maps;
pub mod mm;
pub mod options;
pub mod pirq;
pub mod power;
pub mod privop;
pub mod ptwr;
pub mod runstate;
pub mod sched;
pub mod screen;
pub mod time;
pub mod topology;
pub mod traps;
