//! # dom0-tools: the toolstack library
//!
//! What dom0 uses to manage other domains, as a library that the test dom0
//! kernel uses now and the userland toolstack (`xl`) later (DESIGN.md §7).
//!
//! * [`builder`] builds a paravirtual domU from a kernel image and a
//!   [`builder::DomainConfig`]: the same ELF checks and start-of-day layout
//!   as the hypervisor's dom0 builder (both come from `xenia-pvboot`), plus
//!   the console ring and device page a domU gets
//!   ([`guest_abi::device_page`]).
//! * [`hypervisor::Hypervisor`] is everything the builder asks of the
//!   hypervisor, as a trait: the dom0 kernel implements it with hypercalls,
//!   the host tests with a fake that keeps frames in memory.
//! * [`control`] encodes the `domctl`/`sysctl` requests behind that trait and
//!   decodes their replies (`xl list`'s state column, for instance).
//!
//! **What it trusts.** The hypervisor's answers (it is the one party dom0
//! must trust) and nothing else: kernel images and configurations are
//! checked before anything is created, and every size is checked arithmetic.
//!
//! **What it never does.** Touch memory or hardware itself (everything goes
//! through the trait), use `unsafe`, or leave a half-built domain behind:
//! a build that fails after the domain exists destroys it.
#![cfg_attr(target_os = "none", no_std)]
// No unsafe code; only the tests' fake hypervisor (`xen::tests`) writes through the
// pointers a hypercall carries, as the real one does.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]
#![deny(missing_docs)]

extern crate alloc;

pub mod builder;
pub mod control;
pub mod cpio;
pub mod devices;
pub mod files;
pub mod hypervisor;
pub mod lifecycle;
pub mod program;
pub mod shell;
pub mod syscalls;
pub mod userstack;
pub mod vm;
pub mod xen;
pub mod xlcfg;
pub mod xlfmt;

#[cfg(test)]
mod fake;

/// The name dom0 carries in `xl list`, as on Xen.
pub const DOM0_NAME: &str = "Domain-0";
