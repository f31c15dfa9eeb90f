//! The hypervisor's virtual address layout (DESIGN.md §4).
//!
//! The hypervisor owns top-level (PML4) slots 256–271, as Xen does; guests own the rest.
//! Each slot covers 512 GiB. The image constants must agree with `boot/linker.ld`.

/// Bytes covered by one PML4 slot.
pub const SLOT_SIZE: u64 = 1 << 39;

/// Virtual address of the start of PML4 slot `slot` (sign-extended canonical form).
pub const fn slot_base(slot: u64) -> u64 {
    let addr = slot * SLOT_SIZE;
    if addr & (1 << 47) != 0 {
        addr | 0xFFFF_0000_0000_0000
    } else {
        addr
    }
}

/// First and last reserved slots.
pub const FIRST_RESERVED_SLOT: u64 = 256;
pub const LAST_RESERVED_SLOT: u64 = 271;

/// Slot 256: the read-only machine-to-phys table (guest visible; later issue).
pub const RO_M2P_SLOT: u64 = 256;
/// Slot 257: the per-pCPU entry area (guest visible; later issue).
pub const ENTRY_AREA_SLOT: u64 = 257;
/// Slot 258: the hypervisor image, at `IMAGE_BASE + physical address`.
pub const IMAGE_SLOT: u64 = 258;
/// Slot 261: uncached mappings of device registers (local APIC).
pub const MMIO_SLOT: u64 = 261;
/// Slots 262–271: the direct map of physical memory (5 TiB at most).
pub const DIRECTMAP_SLOT: u64 = 262;
pub const DIRECTMAP_SLOTS: u64 = LAST_RESERVED_SLOT - DIRECTMAP_SLOT + 1;

pub const IMAGE_BASE: u64 = slot_base(IMAGE_SLOT);
pub const ENTRY_AREA_BASE: u64 = slot_base(ENTRY_AREA_SLOT);
pub const MMIO_BASE: u64 = slot_base(MMIO_SLOT);
pub const DIRECTMAP_BASE: u64 = slot_base(DIRECTMAP_SLOT);
/// Physical memory above this cannot be direct-mapped and is left unused.
pub const DIRECTMAP_LIMIT: u64 = DIRECTMAP_SLOTS * SLOT_SIZE;

/// Physical address where GRUB loads the image (`PHYS_BASE` in the linker script).
pub const IMAGE_PHYS_BASE: u64 = 0x10_0000;

/// Memory below 1 MiB stays out of the frame allocator (BIOS data, the future AP
/// start-up trampoline).
pub const LOW_MEMORY_LIMIT: u64 = 0x10_0000;

/// The direct-map virtual address of a physical address.
pub const fn phys_to_virt(phys: u64) -> u64 {
    DIRECTMAP_BASE + phys
}

/// Whether `va` is canonical (bits 63..47 equal).
pub const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_FFFF
}

/// Whether `va` lies in the hypervisor's reserved slots, which no guest pointer may name.
pub const fn in_hypervisor_range(va: u64) -> bool {
    let lo = slot_base(FIRST_RESERVED_SLOT);
    let hi = slot_base(LAST_RESERVED_SLOT) + SLOT_SIZE;
    va >= lo && va < hi
}

/// Whether `[va, va + len)` is a range a guest may name: canonical, no wrap, nothing
/// of it in the hypervisor's slots.
pub fn range_ok(va: u64, len: u64) -> bool {
    if len == 0 {
        return is_canonical(va);
    }
    let Some(last) = va.checked_add(len - 1) else {
        return false;
    };
    // The reserved slots sit at the bottom of the upper half, so a range that starts and
    // ends in the same half, outside them, cannot contain them.
    is_canonical(va)
        && is_canonical(last)
        && (va >> 63) == (last >> 63)
        && !in_hypervisor_range(va)
        && !in_hypervisor_range(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_where_xen_puts_them() {
        assert_eq!(slot_base(256), 0xFFFF_8000_0000_0000);
        assert_eq!(IMAGE_BASE, 0xFFFF_8100_0000_0000);
        assert_eq!(ENTRY_AREA_BASE, 0xFFFF_8080_0000_0000);
        assert_eq!(DIRECTMAP_BASE, 0xFFFF_8300_0000_0000);
        assert_eq!(
            slot_base(LAST_RESERVED_SLOT) + SLOT_SIZE,
            0xFFFF_8800_0000_0000
        );
        assert_eq!(DIRECTMAP_LIMIT, 5 << 40);
    }

    #[test]
    fn guest_ranges() {
        assert!(range_ok(0x1000, 4096));
        assert!(range_ok(0xFFFF_FFFF_8000_0000, 4096));
        assert!(
            range_ok(0xFFFF_8800_0000_0000, 1),
            "first guest address above the reserved slots"
        );
        assert!(!range_ok(0xFFFF_87FF_FFFF_FFFF, 1), "last reserved byte");
        assert!(!range_ok(0xFFFF_8000_0000_0000, 1));
        assert!(!range_ok(0xFFFF_8100_0010_0000, 8), "the hypervisor image");
        assert!(
            !range_ok(0x0000_7FFF_FFFF_F000, 0x2000),
            "crosses into the hole"
        );
        assert!(!range_ok(0x0000_8000_0000_0000, 1), "non-canonical");
        assert!(!range_ok(u64::MAX, 2), "wraps");
        assert!(
            !range_ok(0xFFFF_7FFF_FFFF_FFFF, 1),
            "non-canonical just below the upper half"
        );
        assert!(range_ok(0x1000, 0));
        assert!(!range_ok(0x0000_8000_0000_0000, 0));
    }
}
