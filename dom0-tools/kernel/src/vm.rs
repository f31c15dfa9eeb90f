//! A process's address space as the dom0 kernel's system calls see it: the
//! `brk` heap and the `mmap` areas, with their protections (DESIGN.md §7).
//!
//! Bookkeeping only, so it is tested on the host against a page-by-page
//! model: each call says which page ranges the kernel must map, unmap or
//! re-protect, and the kernel does that with page-table hypercalls. Linux's
//! rules are followed where programs can tell: `brk` returns the old break
//! when it cannot move; anonymous `mmap` places areas top-down below
//! [`MMAP_TOP`]; `MAP_FIXED` replaces what was there; `munmap` of nothing
//! is not an error; `mprotect` needs every page mapped.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Page size.
pub const PAGE: u64 = 4096;
/// Top of the mmap region (exclusive); the stack lives above it.
pub const MMAP_TOP: u64 = 0x7fff_0000_0000;
/// Lowest address `mmap` may hand out or accept.
pub const MMAP_MIN: u64 = 0x1_0000;
/// Most the heap may grow, per process.
pub const BRK_MAX: u64 = 1 << 30;

/// Page protections: readable, writable, executable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prot {
    /// `PROT_READ`.
    pub read: bool,
    /// `PROT_WRITE`.
    pub write: bool,
    /// `PROT_EXEC`.
    pub exec: bool,
}

impl Prot {
    /// From Linux's `PROT_*` bits; `None` for unknown bits.
    pub const fn from_linux(bits: u64) -> Option<Self> {
        if bits & !7 != 0 {
            return None;
        }
        Some(Self {
            read: bits & 1 != 0,
            write: bits & 2 != 0,
            exec: bits & 4 != 0,
        })
    }

    /// Read and write, the heap's protection.
    pub const RW: Self = Self {
        read: true,
        write: true,
        exec: false,
    };
}

/// A failed call, as the errno Linux returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError {
    /// `EINVAL`: misaligned, zero-length or malformed arguments.
    Invalid,
    /// `ENOMEM`: no room, outside the user range, or (mprotect) unmapped pages.
    NoMemory,
}

impl VmError {
    /// The negative errno a system call returns.
    pub const fn errno(self) -> i64 {
        match self {
            Self::Invalid => -22,
            Self::NoMemory => -12,
        }
    }
}

/// A page range `[start, end)` and what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Map fresh zeroed pages with this protection.
    Map(u64, u64, Prot),
    /// Unmap and free the pages.
    Unmap(u64, u64),
    /// Change the protection of mapped pages.
    Protect(u64, u64, Prot),
}

/// One process's areas.
#[derive(Clone, Debug)]
pub struct AddressSpace {
    /// Areas by start: (end, prot). Never overlapping, never empty.
    areas: BTreeMap<u64, (u64, Prot)>,
    /// Where the heap starts (page-aligned, after the program).
    brk_start: u64,
    /// The current break (byte-exact, as programs see it).
    brk: u64,
    /// Lowest address mmap may use (above the heap's reserve).
    mmap_floor: u64,
}

const fn up(v: u64) -> u64 {
    v.next_multiple_of(PAGE)
}

impl AddressSpace {
    /// A space whose heap starts at `brk_start` (page-aligned, as the
    /// loader's plan gives it). Areas the loader maps are added with
    /// [`insert`](Self::insert).
    pub fn new(brk_start: u64) -> Self {
        Self {
            areas: BTreeMap::new(),
            brk_start,
            brk: brk_start,
            mmap_floor: brk_start.saturating_add(BRK_MAX).max(MMAP_MIN),
        }
    }

    /// Records an area mapped by someone else (program segments, the stack).
    pub fn insert(&mut self, start: u64, end: u64, prot: Prot) {
        self.remove(start, end, &mut Vec::new());
        self.areas.insert(start, (end, prot));
    }

    /// The protection of the page holding `va`, if mapped.
    pub fn prot_at(&self, va: u64) -> Option<Prot> {
        let (_, &(end, prot)) = self.areas.range(..=va).next_back()?;
        (va < end).then_some(prot)
    }

    /// The areas, in address order, as (start, end, prot).
    pub fn areas(&self) -> impl Iterator<Item = (u64, u64, Prot)> + '_ {
        self.areas.iter().map(|(&s, &(e, p))| (s, e, p))
    }

    /// The current break.
    pub const fn current_brk(&self) -> u64 {
        self.brk
    }

    /// `brk(new)`: moves the break when it can and returns the break
    /// (unchanged on failure, or for `new == 0`, as Linux does).
    pub fn brk(&mut self, new: u64, changes: &mut Vec<Change>) -> u64 {
        if new < self.brk_start || new > self.brk_start + BRK_MAX {
            return self.brk;
        }
        let (old_end, new_end) = (up(self.brk), up(new));
        if new_end > old_end {
            if self
                .areas
                .range(..new_end)
                .any(|(&s, &(e, _))| s < new_end && e > old_end)
            {
                return self.brk;
            }
            self.areas.insert(old_end, (new_end, Prot::RW));
            changes.push(Change::Map(old_end, new_end, Prot::RW));
        } else if new_end < old_end {
            self.remove(new_end, old_end, changes);
        }
        self.brk = new;
        self.brk
    }

    /// `mmap` of anonymous memory: `len` bytes with `prot`, at `addr` when
    /// `fixed`, else wherever there is room (top-down; `addr` is ignored as
    /// a hint). Returns the address.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        fixed: bool,
        changes: &mut Vec<Change>,
    ) -> Result<u64, VmError> {
        if len == 0 || len > MMAP_TOP {
            return Err(if len == 0 {
                VmError::Invalid
            } else {
                VmError::NoMemory
            });
        }
        let len = up(len);
        let start = if fixed {
            if !addr.is_multiple_of(PAGE) {
                return Err(VmError::Invalid);
            }
            if addr < MMAP_MIN || addr.checked_add(len).is_none_or(|e| e > MMAP_TOP) {
                return Err(VmError::NoMemory);
            }
            self.remove(addr, addr + len, changes);
            addr
        } else {
            self.find_gap(len).ok_or(VmError::NoMemory)?
        };
        self.areas.insert(start, (start + len, prot));
        changes.push(Change::Map(start, start + len, prot));
        Ok(start)
    }

    /// `munmap`.
    pub fn munmap(
        &mut self,
        addr: u64,
        len: u64,
        changes: &mut Vec<Change>,
    ) -> Result<(), VmError> {
        if !addr.is_multiple_of(PAGE) || len == 0 {
            return Err(VmError::Invalid);
        }
        let end = addr.checked_add(up(len)).ok_or(VmError::Invalid)?;
        self.remove(addr, end, changes);
        Ok(())
    }

    /// `mprotect`: every page in the range must be mapped.
    pub fn mprotect(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        changes: &mut Vec<Change>,
    ) -> Result<(), VmError> {
        if !addr.is_multiple_of(PAGE) {
            return Err(VmError::Invalid);
        }
        let end = addr.checked_add(up(len)).ok_or(VmError::NoMemory)?;
        if addr == end {
            return Ok(());
        }
        // Covered without holes?
        let mut at = addr;
        for (s, e, _) in self.overlapping(addr, end) {
            if s > at {
                return Err(VmError::NoMemory);
            }
            at = at.max(e);
        }
        if at < end {
            return Err(VmError::NoMemory);
        }
        self.split_at(addr);
        self.split_at(end);
        for (_, v) in self.areas.range_mut(addr..end) {
            v.1 = prot;
        }
        changes.push(Change::Protect(addr, end, prot));
        Ok(())
    }

    fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64, Prot)> {
        let first = self
            .areas
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        self.areas
            .range(first..end)
            .map(|(&s, &(e, p))| (s, e, p))
            .filter(|&(s, e, _)| s < end && e > start)
            .collect()
    }

    /// Splits the area containing `at` (if any) into two at `at`.
    fn split_at(&mut self, at: u64) {
        if let Some((&s, &(e, p))) = self.areas.range(..at).next_back()
            && e > at
        {
            self.areas.insert(s, (at, p));
            self.areas.insert(at, (e, p));
        }
    }

    fn remove(&mut self, start: u64, end: u64, changes: &mut Vec<Change>) {
        if start >= end {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        let gone: Vec<u64> = self.areas.range(start..end).map(|(&s, _)| s).collect();
        for s in gone {
            let (e, _) = self.areas.remove(&s).expect("listed above");
            changes.push(Change::Unmap(s, e));
        }
    }

    /// The highest gap of `len` bytes between `mmap_floor` and
    /// [`MMAP_TOP`].
    fn find_gap(&self, len: u64) -> Option<u64> {
        let mut top = MMAP_TOP;
        for (&s, &(e, _)) in self.areas.range(..MMAP_TOP).rev() {
            if e <= top && top - e >= len && top - len >= self.mmap_floor {
                return Some(top - len);
            }
            top = top.min(s);
            if top < self.mmap_floor.saturating_add(len) {
                return None;
            }
        }
        (top >= self.mmap_floor.saturating_add(len)).then(|| top - len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    const BRK0: u64 = 0x40_0000;

    fn rw() -> Prot {
        Prot::RW
    }

    #[test]
    fn brk_grows_and_shrinks() {
        let mut a = AddressSpace::new(BRK0);
        let mut c = vec![];
        assert_eq!(a.brk(0, &mut c), BRK0, "brk(0) asks for the break");
        assert_eq!(a.brk(BRK0 + 10, &mut c), BRK0 + 10);
        assert_eq!(c, [Change::Map(BRK0, BRK0 + PAGE, rw())]);
        c.clear();
        assert_eq!(a.brk(BRK0 + 100, &mut c), BRK0 + 100);
        assert!(c.is_empty(), "same page, nothing to map");
        assert_eq!(a.brk(BRK0 + 3 * PAGE, &mut c), BRK0 + 3 * PAGE);
        assert_eq!(c, [Change::Map(BRK0 + PAGE, BRK0 + 3 * PAGE, rw())]);
        c.clear();
        assert_eq!(a.brk(BRK0 + 1, &mut c), BRK0 + 1);
        assert_eq!(c, [Change::Unmap(BRK0 + PAGE, BRK0 + 3 * PAGE)]);
        // Out of range: the old break comes back.
        assert_eq!(a.brk(BRK0 - 1, &mut c), BRK0 + 1);
        assert_eq!(a.brk(BRK0 + BRK_MAX + 1, &mut c), BRK0 + 1);
        assert_eq!(a.prot_at(BRK0), Some(rw()));
        assert_eq!(a.prot_at(BRK0 + PAGE), None);
    }

    #[test]
    fn brk_stops_at_a_fixed_mapping() {
        let mut a = AddressSpace::new(BRK0);
        let mut c = vec![];
        a.mmap(BRK0 + 2 * PAGE, PAGE, rw(), true, &mut c).unwrap();
        assert_eq!(a.brk(BRK0 + 3 * PAGE, &mut c), BRK0);
        assert_eq!(a.brk(BRK0 + 2 * PAGE, &mut c), BRK0 + 2 * PAGE);
    }

    #[test]
    fn mmap_top_down_and_errors() {
        let mut a = AddressSpace::new(BRK0);
        let mut c = vec![];
        let x = a.mmap(0, 10, rw(), false, &mut c).unwrap();
        assert_eq!(x, MMAP_TOP - PAGE);
        let y = a.mmap(0, 2 * PAGE, rw(), false, &mut c).unwrap();
        assert_eq!(y, MMAP_TOP - 3 * PAGE);
        a.munmap(x, PAGE, &mut c).unwrap();
        // A freed hole at the top is reused.
        assert_eq!(a.mmap(0, PAGE, rw(), false, &mut c), Ok(x));
        assert_eq!(a.mmap(0, 0, rw(), false, &mut c), Err(VmError::Invalid));
        assert_eq!(
            a.mmap(0, u64::MAX, rw(), false, &mut c),
            Err(VmError::NoMemory)
        );
        assert_eq!(a.mmap(5, PAGE, rw(), true, &mut c), Err(VmError::Invalid));
        assert_eq!(a.mmap(0, PAGE, rw(), true, &mut c), Err(VmError::NoMemory));
        assert_eq!(
            a.mmap(MMAP_TOP, PAGE, rw(), true, &mut c),
            Err(VmError::NoMemory)
        );
        assert_eq!(
            a.mmap(!(PAGE - 1), PAGE, rw(), true, &mut c),
            Err(VmError::NoMemory)
        );
        assert_eq!(a.munmap(3, PAGE, &mut c), Err(VmError::Invalid));
        assert_eq!(
            a.munmap(!(PAGE - 1), 2 * PAGE, &mut c),
            Err(VmError::Invalid)
        );
        assert_eq!(VmError::NoMemory.errno(), -12);
        assert_eq!(VmError::Invalid.errno(), -22);
    }

    #[test]
    fn mprotect_splits_and_needs_every_page() {
        let mut a = AddressSpace::new(BRK0);
        let mut c = vec![];
        let x = a.mmap(0, 4 * PAGE, rw(), false, &mut c).unwrap();
        let ro = Prot {
            read: true,
            write: false,
            exec: false,
        };
        a.mprotect(x + PAGE, PAGE, ro, &mut c).unwrap();
        let areas: Vec<_> = a.areas().collect();
        assert_eq!(
            areas,
            [
                (x, x + PAGE, rw()),
                (x + PAGE, x + 2 * PAGE, ro),
                (x + 2 * PAGE, x + 4 * PAGE, rw())
            ]
        );
        assert_eq!(
            a.mprotect(x + 3 * PAGE, 2 * PAGE, ro, &mut c),
            Err(VmError::NoMemory)
        );
        assert_eq!(a.mprotect(x + 1, PAGE, ro, &mut c), Err(VmError::Invalid));
        assert_eq!(a.mprotect(x, 0, ro, &mut c), Ok(()));
        assert_eq!(Prot::from_linux(8), None);
        assert_eq!(
            Prot::from_linux(5),
            Some(Prot {
                read: true,
                write: false,
                exec: true
            })
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Brk(u64),
        Mmap(u64, u64, u8, bool),
        Munmap(u64, u64),
        Mprotect(u64, u64, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Addresses in a small window near the top so operations collide.
        let page = (0u64..64).prop_map(|p| MMAP_TOP - 64 * PAGE + p * PAGE);
        prop_oneof![
            (0u64..40_000).prop_map(|d| Op::Brk(BRK0 + d)),
            (page.clone(), 1u64..6 * PAGE, 0u8..8, any::<bool>())
                .prop_map(|(a, l, p, f)| Op::Mmap(a, l, p, f)),
            (page.clone(), 1u64..8 * PAGE).prop_map(|(a, l)| Op::Munmap(a, l)),
            (page, 0u64..4 * PAGE, 0u8..8).prop_map(|(a, l, p)| Op::Mprotect(a, l, p)),
        ]
    }

    /// Applies changes to a page-by-page model of the page tables.
    fn apply(model: &mut BTreeMap<u64, Prot>, changes: &[Change]) {
        for &ch in changes {
            match ch {
                Change::Map(s, e, p) => {
                    for pg in (s..e).step_by(PAGE as usize) {
                        assert!(model.insert(pg, p).is_none(), "mapped twice: {pg:#x}");
                    }
                }
                Change::Unmap(s, e) => {
                    for pg in (s..e).step_by(PAGE as usize) {
                        assert!(model.remove(&pg).is_some(), "unmapped twice: {pg:#x}");
                    }
                }
                Change::Protect(s, e, p) => {
                    for pg in (s..e).step_by(PAGE as usize) {
                        *model.get_mut(&pg).expect("protect of a hole") = p;
                    }
                }
            }
        }
    }

    proptest! {
        /// The changes reported keep a page-table model equal to the areas,
        /// areas never overlap, and every call's Linux-visible result holds.
        #[test]
        fn changes_match_areas(ops in proptest::collection::vec(op(), 1..60)) {
            let mut a = AddressSpace::new(BRK0);
            let mut model = BTreeMap::new();
            for op in ops {
                let mut c = vec![];
                let before = model.clone();
                match op {
                    Op::Brk(n) => {
                        let got = a.brk(n, &mut c);
                        prop_assert!(got == n || c.is_empty());
                    }
                    Op::Mmap(addr, len, p, fixed) => {
                        let prot = Prot::from_linux(u64::from(p)).unwrap();
                        if let Ok(at) = a.mmap(addr, len, prot, fixed, &mut c) {
                            if fixed { prop_assert_eq!(at, addr); }
                            else {
                                // A non-fixed area only takes free pages.
                                for pg in (at..at + up(len)).step_by(PAGE as usize) {
                                    prop_assert!(!before.contains_key(&pg));
                                }
                            }
                        }
                    }
                    Op::Munmap(addr, len) => { a.munmap(addr, len, &mut c).unwrap(); }
                    Op::Mprotect(addr, len, p) => {
                        let prot = Prot::from_linux(u64::from(p)).unwrap();
                        let all = (addr..addr + up(len)).step_by(PAGE as usize)
                            .all(|pg| before.contains_key(&pg));
                        prop_assert_eq!(a.mprotect(addr, len, prot, &mut c).is_ok(), all);
                    }
                }
                apply(&mut model, &c);
                let mut last_end = 0;
                let mut pages = BTreeMap::new();
                for (s, e, p) in a.areas() {
                    prop_assert!(s < e && s >= last_end && s % PAGE == 0 && e % PAGE == 0);
                    last_end = e;
                    for pg in (s..e).step_by(PAGE as usize) { pages.insert(pg, p); }
                }
                prop_assert_eq!(&pages, &model);
                for (&pg, &p) in &model {
                    prop_assert_eq!(a.prot_at(pg + 5), Some(p));
                }
            }
        }
    }
}
