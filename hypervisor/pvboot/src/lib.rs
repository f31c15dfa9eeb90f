//! # xenia-pvboot: how a paravirtualized domain starts
//!
//! The pure logic both domain builders share: the hypervisor, which builds dom0 from a
//! GRUB module, and the toolstack in dom0 (`dom0-tools`), which builds every other
//! domain. [`elf`] checks a guest kernel image, which is hostile input, and reads its Xen
//! notes; [`layout`] computes the start-of-day virtual layout (kernel, initrd, p2m list,
//! start_info, shared_info, page tables, stack, padding) and every bootstrap page-table
//! entry. Neither touches memory: the builders copy and write.
//!
//! `no_std` with `alloc`; host-tested.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod elf;
pub mod features;
pub mod layout;
