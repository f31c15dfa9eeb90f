//! # xenia-fuzz: fuzz targets for the hardware-independent core
//!
//! Each target in [`targets`] drives one part of Xenia with inputs decoded from random bytes
//! and checks its invariants after every step; [`engine`] generates and mutates the bytes,
//! catches the panic of a broken invariant and minimises the input. `cargo xtask fuzz` builds
//! and runs them; `cargo xtask test` runs each for a few seconds before the QEMU scenarios.
//!
//! **What is fuzzed is the real code**: the hypervisor's hardware-independent modules (the
//! frame table, grant tables, event channels, memory map) are the `xenia-core` crate, a
//! dependency here like any other, re-exported below under the module paths (`crate::mm`,
//! `crate::grant`, `crate::event`) the targets name them by. The parsers come from their
//! crates too.
//!
//! Host only: the targets use `std` (panics are caught, and the engine measures time).
#![forbid(unsafe_code)]

extern crate alloc;

pub use xenia_core::{event, grant, mm};

pub mod engine;
pub mod targets;
