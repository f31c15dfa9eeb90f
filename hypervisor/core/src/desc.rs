//! Segment descriptors a Xen PV guest gives the hypervisor (`set_gdt`, `update_descriptor`):
//! Xen's `check_descriptor` for a 64-bit PV domain, whose kernel runs in ring 3.
//!
//! A not-present descriptor is harmless (it always faults) and kept as it is. A present one
//! gets its DPL raised to 3 (Xen's `__fixup_guest_selector` with `GUEST_KERNEL_RPL` 3), so
//! nothing the guest loads through it runs or reads with more privilege than its kernel.
//! Code and data segments are then fine, whatever their base and limit (a 64-bit segment
//! has none, and a 32-bit one only reaches what the page tables give ring 3). Type 0 (the
//! upper half of a 16-byte system descriptor) is harmless. Everything else is refused:
//! TSS and LDT descriptors (only the hypervisor installs those), interrupt and trap gates,
//! and call gates too — Xen keeps call gates with DPL 0 to emulate them from the #GP they
//! raise, which Xenia does not do (Linux does not use them).

/// Descriptor bits (Intel SDM Vol. 3A §3.4.5), in the 64-bit descriptor.
const PRESENT: u64 = 1 << 47;
const DPL_SHIFT: u32 = 45;
const DPL_MASK: u64 = 3 << DPL_SHIFT;
/// `S`: a code or data segment (clear for system descriptors and gates).
const CODE_DATA: u64 = 1 << 44;
const TYPE_SHIFT: u32 = 40;
const TYPE_MASK: u64 = 0xF << TYPE_SHIFT;

/// Entries of a GDT a guest may give (Xen's `FIRST_RESERVED_GDT_ENTRY`: 14 pages; the 15th,
/// selector 0xe000 upwards, is the hypervisor's).
pub const MAX_GUEST_GDT_ENTRIES: u64 = 14 * 512;

/// Xen's `check_descriptor` for a 64-bit PV domain: the descriptor to store for `raw`
/// (its DPL raised to 3 when present), or `None` if it is refused.
pub fn check_descriptor(raw: u64) -> Option<u64> {
    if raw & PRESENT == 0 {
        return Some(raw);
    }
    let d = raw | DPL_MASK;
    if d & CODE_DATA != 0 {
        return Some(d);
    }
    if d & TYPE_MASK == 0 {
        return Some(d);
    }
    None
}

/// Whether every descriptor of a descriptor page is acceptable, each stored as
/// [`check_descriptor`] rewrites it; `false` (and `page` partly rewritten) if one is refused.
pub fn check_page(page: &mut [u64]) -> bool {
    for d in page.iter_mut() {
        match check_descriptor(*d) {
            Some(fixed) => *d = fixed,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's `__KERNEL_CS` (DPL 0, 64-bit code) and `__USER_DS` (DPL 3 data).
    const KERNEL_CS: u64 = 0x00af_9b00_0000_ffff;
    const USER_DS: u64 = 0x00cf_f300_0000_ffff;

    #[test]
    fn not_present_is_kept_as_it_is() {
        assert_eq!(check_descriptor(0), Some(0));
        let junk = 0x1234_0000_5678_9abc & !PRESENT;
        assert_eq!(check_descriptor(junk), Some(junk));
    }

    #[test]
    fn code_and_data_get_dpl_3() {
        let fixed = check_descriptor(KERNEL_CS).unwrap();
        assert_eq!(fixed & DPL_MASK, DPL_MASK);
        assert_eq!(fixed & !DPL_MASK, KERNEL_CS & !DPL_MASK);
        assert_eq!(check_descriptor(USER_DS), Some(USER_DS));
        for dpl in 0..4u64 {
            let d = (USER_DS & !DPL_MASK) | dpl << DPL_SHIFT;
            assert_eq!(check_descriptor(d).unwrap() >> DPL_SHIFT & 3, 3);
        }
    }

    #[test]
    fn system_descriptors_and_gates_are_refused() {
        // 64-bit TSS (9, 11), LDT (2), call gate (0xC), interrupt (0xE) and trap (0xF)
        // gates, at every DPL.
        for ty in [2u64, 9, 11, 0xC, 0xE, 0xF, 1, 3, 5] {
            for dpl in 0..4u64 {
                let d = PRESENT | ty << TYPE_SHIFT | dpl << DPL_SHIFT | 0xffff;
                assert_eq!(check_descriptor(d), None, "type {ty:#x} dpl {dpl}");
            }
        }
        // The upper half of a system descriptor (type 0) is harmless.
        assert!(check_descriptor(PRESENT).is_some());
    }

    #[test]
    fn a_page_is_refused_for_one_bad_descriptor() {
        let mut page = [0u64; 512];
        page[1] = KERNEL_CS;
        page[2] = USER_DS;
        assert!(check_page(&mut page));
        assert_eq!(page[1] & DPL_MASK, DPL_MASK);
        page[300] = PRESENT | 0xC << TYPE_SHIFT;
        assert!(!check_page(&mut page));
    }
}
