//! The guest-visible part of the virtual address layout.
//!
//! The hypervisor reserves top-level (PML4) slots 256 to 271, the same
//! 8 TiB hole Xen reserves, `0xFFFF_8000_0000_0000` to
//! `0xFFFF_87FF_FFFF_FFFF`. Guests own every other slot: the lower half and
//! slots 272 to 511, so a higher-half kernel keeps its usual addresses.
//! A guest can never install an entry in a reserved slot.
//!
//! While a guest runs only two reserved slots are populated:
//!
//! * slot 256: the read-only machine-to-phys table (M2P), at Xen's
//!   address. Entry `mfn` (a `u64`) holds the guest PFN that machine frame
//!   `mfn` backs in its owner, or [`INVALID_M2P_ENTRY`].
//! * slot 257: the per-pCPU entry area (entry stubs, GDT, IDT, TSS, entry
//!   stacks). Guests must not touch it; its layout is the hypervisor's.
//!
//! Everything else of the hypervisor's (its image, the direct map, the frame
//! table, the heap) is not mapped at all while a guest runs.

/// First address of the hypervisor's reserved range.
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// First address past the hypervisor's reserved range.
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;

/// First reserved PML4 slot.
pub const HYPERVISOR_FIRST_L4_SLOT: usize = 256;
/// Last reserved PML4 slot (inclusive).
pub const HYPERVISOR_LAST_L4_SLOT: usize = 271;

/// Start of the read-only M2P table (Xen's `RO_MPT_VIRT_START` and
/// `MACH2PHYS_VIRT_START`).
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End of the range reserved for the M2P table (Xen's `MACH2PHYS_VIRT_END`).
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// Number of entries the M2P range can hold.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) / 8;
/// PML4 slot of the M2P table.
pub const MACH2PHYS_L4_SLOT: usize = 256;

/// Start of the per-pCPU entry area.
pub const ENTRY_AREA_VIRT_START: u64 = 0xFFFF_8080_0000_0000;
/// PML4 slot of the per-pCPU entry area.
pub const ENTRY_AREA_L4_SLOT: usize = 257;

/// M2P value for a machine frame that backs no guest PFN.
pub const INVALID_M2P_ENTRY: u64 = !0;

/// The PML4 slot that maps canonical address `va` (Intel SDM Vol. 3A §4.5).
pub const fn l4_slot(va: u64) -> usize {
    ((va >> 39) & 0x1FF) as usize
}

/// Whether PML4 slot `slot` is reserved for the hypervisor.
pub const fn is_hypervisor_l4_slot(slot: usize) -> bool {
    slot >= HYPERVISOR_FIRST_L4_SLOT && slot <= HYPERVISOR_LAST_L4_SLOT
}

/// Whether `va` lies in the hypervisor's reserved range.
pub const fn is_hypervisor_va(va: u64) -> bool {
    va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_range_is_slots_256_to_271() {
        assert_eq!(l4_slot(HYPERVISOR_VIRT_START), HYPERVISOR_FIRST_L4_SLOT);
        assert_eq!(l4_slot(HYPERVISOR_VIRT_END - 1), HYPERVISOR_LAST_L4_SLOT);
        assert_eq!(l4_slot(HYPERVISOR_VIRT_END), HYPERVISOR_LAST_L4_SLOT + 1);
        assert_eq!(
            HYPERVISOR_VIRT_END - HYPERVISOR_VIRT_START,
            16 << 39,
            "sixteen 512 GiB slots"
        );
        assert!(is_hypervisor_l4_slot(256) && is_hypervisor_l4_slot(271));
        assert!(!is_hypervisor_l4_slot(255) && !is_hypervisor_l4_slot(272));
        assert!(is_hypervisor_va(MACH2PHYS_VIRT_START));
        assert!(!is_hypervisor_va(HYPERVISOR_VIRT_END));
        assert!(!is_hypervisor_va(0xFFFF_FFFF_8000_0000));
    }

    #[test]
    fn fixed_areas() {
        assert_eq!(l4_slot(MACH2PHYS_VIRT_START), MACH2PHYS_L4_SLOT);
        assert_eq!(l4_slot(MACH2PHYS_VIRT_END - 1), MACH2PHYS_L4_SLOT);
        assert_eq!(l4_slot(ENTRY_AREA_VIRT_START), ENTRY_AREA_L4_SLOT);
        assert_eq!(ENTRY_AREA_VIRT_START, HYPERVISOR_VIRT_START + (1 << 39));
        assert_eq!(MACH2PHYS_NR_ENTRIES, 1 << 35);
    }
}
