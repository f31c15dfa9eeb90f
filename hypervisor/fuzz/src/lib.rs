//! # xenia-fuzz: fuzz targets for the hardware-independent core
//!
//! Each target in [`targets`] drives one part of Xenia with inputs decoded from random bytes
//! and checks its invariants after every step; [`engine`] generates and mutates the bytes,
//! catches the panic of a broken invariant and minimises the input. `cargo xtask fuzz` builds
//! and runs them; `cargo xtask test` runs each for a few seconds before the QEMU scenarios.
//!
//! **What is fuzzed is the real code.** The hypervisor is a binary crate, so its host-testable
//! modules (the frame table, grant tables, event channels, memory map) are compiled into this
//! crate from their own source files with `#[path]`, under the same module paths
//! (`crate::mm`, `crate::grant`, `crate::event`) they have in the hypervisor. Nothing in
//! `hypervisor/src` changes for it. The parsers come from their crates as ordinary
//! dependencies.
//!
//! Host only: the targets use `std` (panics are caught, and the engine measures time).
#![forbid(unsafe_code)]

extern crate alloc;

/// The hypervisor's address-space layout, which `mm` uses as `crate::arch::x86_64::layout`.
#[path = "../../src/arch/x86_64/layout.rs"]
#[allow(dead_code)]
pub mod layout;

/// The module path the hypervisor's code names the layout by.
pub mod arch {
    pub mod x86_64 {
        pub use crate::layout;
    }
}

/// The hypervisor's `mm` module tree: `Mfn`, the memory map, the frame table (and the frame
/// allocator and direct-map helpers that come with `mm/mod.rs`).
#[path = "../../src/mm/mod.rs"]
#[allow(dead_code)]
pub mod mm;

/// The hypervisor's grant tables.
#[path = "../../src/grant.rs"]
#[allow(dead_code)]
pub mod grant;

/// The hypervisor's event channels.
#[path = "../../src/event.rs"]
#[allow(dead_code)]
pub mod event;

pub mod engine;
pub mod targets;
