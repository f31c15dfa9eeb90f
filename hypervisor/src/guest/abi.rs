//! Which guest ABI a domain runs, and what follows from it for the hypercalls that answer
//! differently per ABI (DESIGN.md §12).
//!
//! A domain runs Xenia's ring-1 ABI unless dom0 set Xen's x86-64 PV mode for it (the kernel
//! in ring 3, chosen by the builder from the kernel's ELF notes): [`mode`] and
//! [`Vcpu::in_guest_kernel_mode`] follow that choice.

use guest_abi::memory::{VMASST_TYPE_PAE_EXTENDED_CR3, VMASST_TYPE_WRITABLE_PAGETABLES};
use guest_abi::version as ver;

use crate::arch::x86_64::trap::TrapFrame;
use crate::domain::{Domain, Privilege, Vcpu};

/// A domain's guest ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Xenia's own: the kernel in ring 1.
    XeniaRing1,
    /// Xen's x86-64 PV ABI: the kernel in ring 3 with a user-mode top-level table.
    XenPv,
}

/// The ABI domain `dom` runs.
pub fn mode(dom: &Domain) -> Mode {
    match dom.guest_mode {
        crate::domain::GuestMode::Ring1 => Mode::XeniaRing1,
        crate::domain::GuestMode::XenPv => Mode::XenPv,
    }
}

impl Vcpu {
    /// Whether the vCPU, interrupted with `frame`, was in its guest kernel (Xen's
    /// `guest_kernel_mode`): ring 1 in Xenia's ABI. Privileged-instruction emulation
    /// (`guest::privop`) acts only for the kernel, as Xen's does.
    pub fn in_guest_kernel_mode(&self, frame: &TrapFrame) -> bool {
        if self.xen_pv {
            // Both modes run in ring 3; the vCPU's own flag says which (`TF_kernel_mode`).
            self.kernel_mode
        } else {
            frame.cs & 3 == 1
        }
    }
}

/// `XENVER_get_features` word 0 for `dom`: exactly the `XENFEAT_*` bits Xenia implements
/// for its ABI, as Xen computes them for a PV domain (`do_xen_version`): the
/// `MMU_PT_UPDATE_PRESERVE_AD` command, direct mapping (no translation), `pae_pgdir_above_4gb`
/// once the guest turned the `pae_extended_cr3` assist on, and `dom0` for the control
/// domain; for a Xen PV domain also `gnttab_map_avail_bits` (`grant_op::map`) and
/// `writable_page_tables` once that assist is on. Not set, as Xenia lacks them:
/// `highmem_assist` (32-bit only), `memory_op_vnode_supported`, `runstate_phys_area`,
/// `vcpu_time_phys_area`, `dm_msix_all_writes`.
pub fn features(dom: &Domain) -> u32 {
    let mut f = (1 << ver::XENFEAT_MMU_PT_UPDATE_PRESERVE_AD) | (1 << XENFEAT_DIRECT_MAPPED);
    if dom.vm_assist & (1 << VMASST_TYPE_PAE_EXTENDED_CR3) != 0 {
        f |= 1 << ver::XENFEAT_PAE_PGDIR_ABOVE_4GB;
    }
    if dom.privilege == Privilege::Control {
        f |= 1 << ver::XENFEAT_DOM0;
    }
    match mode(dom) {
        Mode::XeniaRing1 => f,
        // Xen: `writable_page_tables` once the guest turned that assist on
        // (`do_xen_version`); the grant-map avail bits always (`grant_op::map`).
        Mode::XenPv => {
            let f = f | 1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS;
            if dom.vm_assist & (1 << VMASST_TYPE_WRITABLE_PAGETABLES) != 0 {
                f | 1 << ver::XENFEAT_WRITABLE_PAGE_TABLES
            } else {
                f
            }
        }
    }
}

/// `XENFEAT_gnttab_map_avail_bits` (Xen's `features.h`): a grant map may set the PTE's
/// software-available bits.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;

/// `XENFEAT_direct_mapped` (Xen's `features.h`): guest frames are machine frames.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
