//! Page-table entries: the one definition of their bits for every Xenia crate.
//!
//! Under direct paging a paravirtual kernel writes real x86-64 page-table
//! entries (through `mmu_update` and `update_va_mapping`, see [`memory`]), so
//! the bits are the hardware's: Intel SDM Vol. 3A §4.5 ("4-Level Paging and
//! 5-Level Paging"), Tables 4-15 (PML4E), 4-17 and 4-18 (PDPTE), 4-19 and 4-20
//! (PDE) and 4-21 (PTE). The hypervisor, the builders and the guest runtimes
//! all use these constants; nothing else in the tree defines a PTE bit.
//!
//! Flags stay raw `u64` constants, as everywhere in this crate: an entry read
//! back from a page table can hold any bit pattern, and the hypervisor must
//! look at every bit of one a guest proposes.
//!
//! # What a guest may set
//!
//! The hypervisor validates every entry a guest proposes (the table in
//! [`crate::porting`](crate::porting#errno-tables) lists the refusals). In
//! short, for a *present* entry:
//!
//! * the address ([`ADDR_MASK`]) names a frame the domain owns (or, in an L1
//!   entry and with `foreigndom`, a frame of the domain given there);
//! * [`PWT`], [`PCD`] and bit 7 ([`PAT`] in an L1 entry, [`PS`] above) are
//!   refused: no cache attributes, no superpages;
//! * [`GLOBAL`] is allowed in an L1 entry only;
//! * [`NX`] is allowed at every level when the CPU has NX (`EFER.NXE` is then
//!   set for guests), and refused as a reserved bit when it does not;
//! * [`USER`], [`ACCESSED`], [`DIRTY`], [`RW`] and the software-available bits
//!   9–11 and 52–61 are the guest's (bit 62 is refused in L1 entries: Xen uses
//!   it to mark grant mappings);
//! * address bits at or above the machine's physical-address width are
//!   reserved and refused.
//!
//! A not-present entry's address field must not name RAM (the L1TF
//! mitigation): clear an entry by writing 0.
//!
//! # Examples
//!
//! ```
//! use guest_abi::pte;
//! use guest_abi::types::Mfn;
//!
//! // A user-accessible, read-only, non-executable mapping of machine frame 0x1234.
//! let e = pte::entry(0x1234, pte::PRESENT | pte::USER | pte::NX);
//! assert_eq!(pte::mfn(e), 0x1234);
//! assert_eq!(pte::frame(e), Mfn(0x1234));
//! assert!(pte::is_present(e) && e & pte::RW == 0);
//! // What an upper-level entry pointing at a page table usually holds.
//! assert_eq!(pte::TABLE, pte::PRESENT | pte::RW | pte::USER);
//! ```
//!
//! [`memory`]: crate::memory

use crate::types::{Mfn, PAGE_SHIFT};

/// Present (bit 0): the entry maps something. Intel SDM Vol. 3A §4.5,
/// Tables 4-15 to 4-21, "P".
pub const PRESENT: u64 = 1 << 0;
/// Read/write (bit 1): writes allowed through this entry (with `CR0.WP`, which
/// Xenia sets, for ring 1 too). Tables 4-15 to 4-21, "R/W".
pub const RW: u64 = 1 << 1;
/// User/supervisor (bit 2): ring 3 may use this entry. A page is
/// user-accessible only if every level has it. Tables 4-15 to 4-21, "U/S".
pub const USER: u64 = 1 << 2;
/// Page-level write-through (bit 3). Refused by Xenia in guest entries.
/// Tables 4-15 to 4-21, "PWT".
pub const PWT: u64 = 1 << 3;
/// Page-level cache disable (bit 4). Refused by Xenia in guest entries.
/// Tables 4-15 to 4-21, "PCD".
pub const PCD: u64 = 1 << 4;
/// Accessed (bit 5), set by the CPU. Tables 4-15 to 4-21, "A".
pub const ACCESSED: u64 = 1 << 5;
/// Dirty (bit 6), set by the CPU in leaf entries. Table 4-21, "D".
pub const DIRTY: u64 = 1 << 6;
/// Page size (bit 7) in an L2 or L3 entry: a 2 MiB or 1 GiB leaf (Tables 4-17,
/// 4-19, "PS"); reserved in an L4 entry. Refused by Xenia: no superpages.
pub const PS: u64 = 1 << 7;
/// Page attribute table (bit 7) in an L1 entry (Table 4-21, "PAT"): the same
/// bit as [`PS`]. Refused by Xenia in guest entries.
pub const PAT: u64 = 1 << 7;
/// Global (bit 8) in a leaf entry: the translation survives CR3 loads while
/// `CR4.PGE` is set. Table 4-21, "G". Allowed in guest L1 entries only.
pub const GLOBAL: u64 = 1 << 8;
/// Execute-disable (bit 63), if `IA32_EFER.NXE` = 1; reserved otherwise.
/// Tables 4-15 to 4-21, "XD".
pub const NX: u64 = 1 << 63;
/// The frame address: bits 12 to 51 (M–1 with the architectural maximum
/// M = 52; the bits from the machine's MAXPHYADDR up are reserved). Intel SDM
/// Vol. 3A §4.5, Table 4-15, "Address of page-directory-pointer table".
pub const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// The flags of an upper-level (L4, L3, L2) entry that points at a lower
/// table and leaves every decision to the leaves: present, writable and
/// user-accessible (the bootstrap tables' choice).
pub const TABLE: u64 = PRESENT | RW | USER;

/// An entry for machine frame number `mfn` with `flags`.
pub const fn entry(mfn: u64, flags: u64) -> u64 {
    ((mfn << PAGE_SHIFT) & ADDR_MASK) | flags
}

/// The machine frame number an entry names (whether present or not).
pub const fn mfn(entry: u64) -> u64 {
    (entry & ADDR_MASK) >> PAGE_SHIFT
}

/// The machine frame an entry names, typed.
pub const fn frame(entry: u64) -> Mfn {
    Mfn(mfn(entry))
}

/// The machine address an entry names: the frame's first byte.
pub const fn addr(entry: u64) -> u64 {
    entry & ADDR_MASK
}

/// Whether the entry is present.
pub const fn is_present(entry: u64) -> bool {
    entry & PRESENT != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_intels() {
        // Intel SDM Vol. 3A §4.5, Table 4-21: bit positions of a 4 KiB PTE.
        let bits = [
            (PRESENT, 0),
            (RW, 1),
            (USER, 2),
            (PWT, 3),
            (PCD, 4),
            (ACCESSED, 5),
            (DIRTY, 6),
            (PAT, 7),
            (PS, 7),
            (GLOBAL, 8),
            (NX, 63),
        ];
        for (flag, bit) in bits {
            assert_eq!(flag, 1 << bit);
        }
        assert_eq!(ADDR_MASK.trailing_zeros(), 12);
        assert_eq!(64 - ADDR_MASK.leading_zeros(), 52);
        assert_eq!(ADDR_MASK & (NX | 0xFFF), 0);
    }

    #[test]
    fn entry_round_trips() {
        let e = entry(0xA_BCDE, PRESENT | RW | NX);
        assert_eq!(e, 0x8000_0000_ABCD_E003);
        assert_eq!(mfn(e), 0xA_BCDE);
        assert_eq!(addr(e), 0xABCD_E000);
        assert_eq!(frame(e), Mfn(0xA_BCDE));
        assert!(is_present(e) && !is_present(e & !PRESENT));
        // A frame number too wide for the address field cannot leak into the flags.
        assert_eq!(entry(1 << 41, 0) & !ADDR_MASK, 0);
    }
}
