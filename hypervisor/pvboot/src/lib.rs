//! # xenia-pvboot: how a paravirtualized domain starts
//!
//! The pure logic both domain builders share: the hypervisor, which builds dom0 from a
//! GRUB module, and the toolstack in dom0 (`dom0-tools`), which builds every other
//! domain. [`elf`] checks a guest kernel image, which is hostile input, and reads its Xen
//! notes; [`layout`] computes the start-of-day virtual layout (kernel, initrd, p2m list,
//! start_info, shared_info, the builder's extra pages, page tables, stack, padding); [`boot`]
//! plans what goes there: which frame holds which bootstrap page table and the value of every
//! entry, the `start_info` page, and vCPU 0's initial context. None of it touches memory:
//! each builder only copies the planned bytes through its own access to the domain (the
//! hypervisor through its direct map, the toolstack through `XEN_DOMCTL_XENIA_WRITE_FRAME`).
//!
//! `no_std` with `alloc`; host-tested.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod elf;
pub mod features;
pub mod layout;
pub mod xenpv;
