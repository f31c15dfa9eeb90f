//! Walking a guest's page tables in software (DESIGN.md §2.5): how the hypervisor turns a
//! guest virtual address — an allegation — into a machine address it may copy through.
//! `guest::mem::AddressSpace` uses it over the direct map and the frame table; the rules
//! are here, host-tested over a fake memory, because a missing check here is an escape:
//!
//! - the address is canonical and outside the hypervisor's slots;
//! - every table on the way, and the final frame, is owned by the domain;
//! - every level is present, writable for a write and user-accessible for a user access;
//! - no superpages (Xenia's guests have none);
//! - a copy that spans pages is checked on every page before any byte is written.

use guest_abi::errno::Errno;
use guest_abi::types::DomId;

use super::{Mfn, PAGE_SIZE};
use crate::layout::{in_hypervisor_range, is_canonical};

// Page-table entry bits: guest-abi's, the one definition (Intel SDM Vol. 3A §4.5).
use guest_abi::pte::{ADDR_MASK, PRESENT, PS as HUGE, RW as WRITABLE, USER};

/// What a walk reads: page-table entries and who owns a frame.
pub trait GuestTables {
    /// Entry `index` (below 512) of table frame `table`, which the walk checked is owned
    /// by the domain.
    fn entry(&self, table: Mfn, index: u64) -> u64;
    /// Whether `mfn` belongs to domain `dom` (frames outside RAM belong to no domain).
    fn owned_by(&self, mfn: Mfn, dom: DomId) -> bool;
}

/// The frames a successful walk went through below its top-level table: the L3, L2 and L1
/// tables, then the final frame ([`user_accessible_path`], which does not look at the final
/// frame, gives the L1 again). A walk's answer depends only on these, the top-level table,
/// and the entries it read in them: the hypervisor's translation cache keeps an answer while
/// none of them changed (`FrameTable::unchanged_since`).
pub type Path = [Mfn; 4];

/// The machine address behind `va` in the address space rooted at `l4` of domain `dom`,
/// if the page is mapped for the access (`write`: writable at every level; `user`:
/// user-accessible at every level). `EFAULT` otherwise.
#[inline]
pub fn translate(
    mem: &impl GuestTables,
    l4: Mfn,
    dom: DomId,
    va: u64,
    write: bool,
    user: bool,
) -> Result<u64, Errno> {
    translate_path(mem, l4, dom, va, write, user).map(|(phys, _)| phys)
}

/// [`translate`], with the frames the walk went through ([`Path`]).
pub fn translate_path(
    mem: &impl GuestTables,
    l4: Mfn,
    dom: DomId,
    va: u64,
    write: bool,
    user: bool,
) -> Result<(u64, Path), Errno> {
    if !is_canonical(va) || in_hypervisor_range(va) {
        return Err(Errno::EFAULT);
    }
    let mut path = [Mfn(0); 4];
    let mut table = l4;
    for level in (0..4).rev() {
        if !mem.owned_by(table, dom) {
            return Err(Errno::EFAULT);
        }
        let index = (va >> (12 + 9 * level)) & 511;
        let entry = mem.entry(table, index);
        if entry & PRESENT == 0
            || (write && entry & WRITABLE == 0)
            || (user && entry & USER == 0)
            || (level > 0 && entry & HUGE != 0)
        {
            return Err(Errno::EFAULT);
        }
        table = Mfn::from_phys(entry & ADDR_MASK);
        path[3 - level as usize] = table;
    }
    if !mem.owned_by(table, dom) {
        return Err(Errno::EFAULT);
    }
    Ok((table.phys() + (va & (PAGE_SIZE - 1)), path))
}

/// Whether ring 3 could execute at `va`, as the CPU would walk it: `Some(false)` when the
/// page is present but U/S is clear at some level (only the kernel could run there),
/// `Some(true)` when it is user-accessible at every level, `None` when the walk cannot
/// tell (not present, or a table that is not the domain's). The final frame's owner is not
/// looked at: a user mapping of a granted frame is as executable as any other.
#[inline]
pub fn user_accessible(mem: &impl GuestTables, l4: Mfn, dom: DomId, va: u64) -> Option<bool> {
    user_accessible_path(mem, l4, dom, va).map(|(user, _)| user)
}

/// [`user_accessible`], with the tables the walk went through ([`Path`]; the L1 is given
/// again for the final frame, which this walk does not look at).
pub fn user_accessible_path(
    mem: &impl GuestTables,
    l4: Mfn,
    dom: DomId,
    va: u64,
) -> Option<(bool, Path)> {
    if !is_canonical(va) || in_hypervisor_range(va) {
        return None;
    }
    let mut path = [Mfn(0); 4];
    let mut table = l4;
    let mut user = true;
    for level in (0..4).rev() {
        if !mem.owned_by(table, dom) {
            return None;
        }
        let entry = mem.entry(table, (va >> (12 + 9 * level)) & 511);
        if entry & PRESENT == 0 || (level > 0 && entry & HUGE != 0) {
            return None;
        }
        user &= entry & USER != 0;
        if level > 0 {
            table = Mfn::from_phys(entry & ADDR_MASK);
            path[3 - level as usize] = table;
        }
    }
    path[3] = path[2];
    Some((user, path))
}

/// The pieces of a `len`-byte copy at `va`, one per page: `(guest address, offset in the
/// copy, length)`. The caller checked the range with `range_ok`.
pub fn pieces(va: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = va + done as u64;
        let chunk = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - done);
        let piece = (at, done, chunk);
        done += chunk;
        Some(piece)
    })
}

/// Checks that every page of `[va, va + len)` is mapped writable for the domain, so that
/// a write can be done whole or not at all.
pub fn check_writable(
    mem: &impl GuestTables,
    l4: Mfn,
    dom: DomId,
    va: u64,
    len: usize,
) -> Result<(), Errno> {
    pieces(va, len).try_for_each(|(at, _, _)| translate(mem, l4, dom, at, true, false).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const DOM: DomId = 3;
    const OTHER: DomId = 4;

    /// Tables as a map from (frame, index) to entry, and owners by frame.
    #[derive(Default)]
    struct Fake {
        entries: HashMap<(u64, u64), u64>,
        owners: HashMap<u64, DomId>,
    }

    impl GuestTables for Fake {
        fn entry(&self, table: Mfn, index: u64) -> u64 {
            assert!(index < 512);
            *self.entries.get(&(table.0, index)).unwrap_or(&0)
        }
        fn owned_by(&self, mfn: Mfn, dom: DomId) -> bool {
            self.owners.get(&mfn.0) == Some(&dom)
        }
    }

    const VA: u64 = 0x0000_1234_5678_9000;
    const L4: u64 = 0x10;
    const FRAME: u64 = 0x20;

    /// L4 0x10 -> L3 0x11 -> L2 0x12 -> L1 0x13 -> frame 0x20 for VA, all flags `flags`.
    fn mapped(flags: u64) -> Fake {
        let mut f = Fake::default();
        let path = [L4, 0x11, 0x12, 0x13, FRAME];
        for level in (0..4u64).rev() {
            let table = path[(3 - level) as usize];
            let next = path[(4 - level) as usize];
            let index = (VA >> (12 + 9 * level)) & 511;
            f.entries.insert((table, index), (next << 12) | flags);
        }
        for m in path {
            f.owners.insert(m, DOM);
        }
        f
    }

    const ALL: u64 = PRESENT | WRITABLE | USER;

    #[test]
    fn a_mapped_page_translates() {
        let f = mapped(ALL);
        assert_eq!(
            translate(&f, Mfn(L4), DOM, VA + 0x123, true, true),
            Ok((FRAME << 12) + 0x123)
        );
    }

    #[test]
    fn every_frame_on_the_way_must_be_the_domains() {
        for m in [L4, 0x11, 0x12, 0x13, FRAME] {
            let mut f = mapped(ALL);
            f.owners.insert(m, OTHER);
            assert_eq!(
                translate(&f, Mfn(L4), DOM, VA, false, false),
                Err(Errno::EFAULT),
                "frame {m:#x} of another domain"
            );
            f.owners.remove(&m);
            assert_eq!(
                translate(&f, Mfn(L4), DOM, VA, false, false),
                Err(Errno::EFAULT),
                "frame {m:#x} of no domain"
            );
        }
    }

    #[test]
    fn rights_are_checked_at_every_level() {
        for level in 0..4u64 {
            for (bit, write, user) in [(WRITABLE, true, false), (USER, false, true)] {
                let mut f = mapped(ALL);
                let path = [L4, 0x11, 0x12, 0x13];
                let table = path[(3 - level) as usize];
                let index = (VA >> (12 + 9 * level)) & 511;
                *f.entries.get_mut(&(table, index)).unwrap() &= !bit;
                assert_eq!(
                    translate(&f, Mfn(L4), DOM, VA, write, user),
                    Err(Errno::EFAULT),
                    "bit {bit:#x} clear at level {level}"
                );
                // The other kind of access still works.
                assert!(translate(&f, Mfn(L4), DOM, VA, !write, !user).is_ok());
            }
        }
    }

    #[test]
    fn absent_huge_and_reserved_addresses_fault() {
        let f = mapped(ALL);
        assert!(translate(&f, Mfn(L4), DOM, VA + 0x1000, false, false).is_err());
        let huge = mapped(ALL | HUGE);
        assert!(translate(&huge, Mfn(L4), DOM, VA, false, false).is_err());
        for bad in [
            0x0000_8000_0000_0000,
            0xFFFF_8000_0000_0000,
            0xFFFF_8123_4567_8000,
        ] {
            assert_eq!(
                translate(&f, Mfn(L4), DOM, bad, false, false),
                Err(Errno::EFAULT)
            );
        }
    }

    #[test]
    fn user_accessibility_ignores_the_final_frames_owner() {
        let mut f = mapped(ALL);
        assert_eq!(user_accessible(&f, Mfn(L4), DOM, VA), Some(true));
        // A granted frame (another domain's) mapped for ring 3 is still ring 3's.
        f.owners.insert(FRAME, OTHER);
        assert_eq!(user_accessible(&f, Mfn(L4), DOM, VA), Some(true));
        let kernel = mapped(PRESENT | WRITABLE);
        assert_eq!(user_accessible(&kernel, Mfn(L4), DOM, VA), Some(false));
        assert_eq!(user_accessible(&f, Mfn(L4), DOM, VA + 0x1000), None);
        let mut foreign_table = mapped(ALL);
        foreign_table.owners.insert(0x12, OTHER);
        assert_eq!(user_accessible(&foreign_table, Mfn(L4), DOM, VA), None);
    }

    #[test]
    fn a_write_is_checked_on_every_page_first() {
        let f = mapped(ALL);
        // The page after VA is not mapped: a write running into it is refused whole.
        assert_eq!(
            check_writable(&f, Mfn(L4), DOM, VA + 0xFF0, 0x20),
            Err(Errno::EFAULT)
        );
        assert_eq!(check_writable(&f, Mfn(L4), DOM, VA + 0xF00, 0x100), Ok(()));
        let read_only = mapped(PRESENT | USER);
        assert!(check_writable(&read_only, Mfn(L4), DOM, VA, 8).is_err());
        let p: Vec<_> = pieces(VA + 0xFF0, 0x1020).collect();
        assert_eq!(
            p,
            [
                (VA + 0xFF0, 0, 0x10),
                (VA + 0x1000, 0x10, 0x1000),
                (VA + 0x2000, 0x1010, 0x10)
            ]
        );
    }
}
