//! A process's address space: its own L4, whose upper half is the kernel's (copied from the
//! bootstrap L4) and whose lower half holds the process's pages.
//!
//! Direct paging (guest-abi `memory`): the L4 is pinned when made, tables below it are
//! zeroed frames hooked in with `mmu_update` (which has the hypervisor validate them), leaves
//! are `mmu_update`s too. Changing or removing a present leaf is followed by a TLB flush.
//! Freeing the space switches back to the bootstrap tables, unpins the L4 (the hypervisor
//! drops the whole tree's validation) and returns every frame to the pool.
//!
//! **Shared pages.** The read-only pages of a program from the initrd are the initrd's own
//! frames, mapped read-only ([`Uspace::map_shared`]) rather than copied: the initrd's bytes
//! are never written or freed while dom0 runs (the tmpfs copies a file's pages when it is
//! written), so every process running the program can read them. Such a page is never
//! returned to the pool, is shared again by `fork`, and becomes a private copy before it is
//! ever mapped writable ([`Uspace::make_private`]).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::memory::{
    MMU_NORMAL_PT_UPDATE, MMUEXT_COPY_PAGE, MMUEXT_TLB_FLUSH_LOCAL, MmuUpdate, MmuextOp,
};
use xenia_guest_rt::mm::{self, ENTRIES, pte};

use crate::frames;

/// Entry flags of a user page table: present, writable, user (the leaves decide).
const TABLE: u64 = pte::PRESENT | pte::RW | pte::USER;

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The frame pool is empty.
    NoMemory,
    /// The hypervisor refused an update (its `rax`).
    Refused(i64),
}

/// One process's page tables and pages.
pub struct Uspace {
    l4: u64,
    /// Tables below the L4: key [`table_key`] → machine frame.
    tables: BTreeMap<u64, u64>,
    /// Mapped pages: virtual page number → (machine frame, leaf flags).
    pages: BTreeMap<u64, (u64, u64)>,
    /// The pages of `pages` whose frames are not the space's own (read-only, shared).
    shared: BTreeSet<u64>,
}

/// The L4 of the space made active last (0: the bootstrap tables).
static ACTIVE: AtomicU64 = AtomicU64::new(0);

/// The key of the table at `level` (3, 2 or 1) that covers `va`.
const fn table_key(level: u32, va: u64) -> u64 {
    ((level as u64) << 56) | ((va & 0x0000_FFFF_FFFF_FFFF) >> (12 + 9 * level))
}

/// Leaf flags for a user page.
pub fn leaf_flags(write: bool, exec: bool) -> u64 {
    let mut f = pte::PRESENT | pte::USER;
    if write {
        f |= pte::RW;
    }
    if !exec && mm::has_nx() {
        f |= pte::NX;
    }
    f
}

impl Uspace {
    /// A new space with no user pages, not yet active.
    pub fn new() -> Result<Self, MapError> {
        let l4 = frames::alloc_one().ok_or(MapError::NoMemory)?;
        let boot = mm::bootstrap_l4();
        let mut kernel = [0u64; ENTRIES];
        for (i, e) in kernel.iter_mut().enumerate().skip(ENTRIES / 2) {
            *e = mm::read_entry(boot, i).unwrap_or(0);
        }
        // SAFETY: a pool frame, mapped nowhere and not yet a page table.
        let filled = unsafe { mm::fill_frame(l4, |page| page.copy_from_slice(&kernel)) };
        // SAFETY: pinning validates the frame as an L4; it is not in use by anything.
        let ret = match filled {
            Ok(()) => unsafe { mm::pin(4, l4) },
            Err(e) => e,
        };
        if ret < 0 {
            frames::free(&[l4]);
            return Err(MapError::Refused(ret));
        }
        Ok(Self {
            l4,
            tables: BTreeMap::new(),
            pages: BTreeMap::new(),
            shared: BTreeSet::new(),
        })
    }

    /// Makes this the current address space.
    pub fn activate(&self) -> Result<(), MapError> {
        // SAFETY: the upper half (the kernel, its stacks and data) is the bootstrap one, so
        // nothing Rust code uses changes.
        match unsafe { mm::new_baseptr(self.l4) } {
            r if r < 0 => Err(MapError::Refused(r)),
            _ => {
                ACTIVE.store(self.l4, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Pages mapped (the process's resident set).
    pub fn resident(&self) -> usize {
        self.pages.len()
    }

    /// Whether this is the active space.
    pub fn is_active(&self) -> bool {
        ACTIVE.load(Ordering::Relaxed) == self.l4
    }

    /// A copy of this space for a forked process: the same pages at the same addresses with
    /// the same flags, each in a frame of its own holding a copy (`MMUEXT_COPY_PAGE`, 64 at a
    /// time), in tables of its own; shared pages are shared again. Not active. On failure
    /// nothing is left behind.
    pub fn fork(&self) -> Result<Self, MapError> {
        let mut child = Uspace::new()?;
        let shared: Vec<(u64, u64, u64)> = self
            .shared
            .iter()
            .map(|&vpn| (vpn << 12, self.pages[&vpn].0, self.pages[&vpn].1))
            .collect();
        if let Err(e) = child.map_shared(&shared) {
            child.destroy();
            return Err(e);
        }
        let pages: Vec<(u64, u64, u64)> = self
            .pages
            .iter()
            .filter(|(vpn, _)| !self.shared.contains(vpn))
            .map(|(&vpn, &(mfn, flags))| (vpn << 12, mfn, flags))
            .collect();
        // The child's page records, in address order: built at once at the end (a bulk
        // build from sorted records, not one search and insertion per page).
        let mut copied = Vec::with_capacity(pages.len());
        for batch in pages.chunks(64) {
            let result = child.copy_in(batch, &mut copied);
            if let Err(e) = result {
                child.pages.extend(copied);
                child.destroy();
                return Err(e);
            }
        }
        if child.pages.is_empty() {
            // A bulk build from sorted records, not one search and insertion per page.
            child.pages = copied.into_iter().collect();
        } else {
            child.pages.extend(copied);
        }
        Ok(child)
    }

    /// Maps `pages` (address, frame, read-only leaf flags; unmapped addresses) as shared
    /// pages: frames of dom0's that stay valid and unwritten while the space lives (the
    /// initrd's), mapped as they are, 64 a `mmu_update`. Flags with write permission are
    /// refused (`EINVAL`) before anything is mapped. On failure the pages mapped so far stay
    /// the space's (shared).
    pub fn map_shared(&mut self, pages: &[(u64, u64, u64)]) -> Result<(), MapError> {
        if pages.iter().any(|&(_, _, flags)| flags & pte::RW != 0) {
            return Err(MapError::Refused(-(guest_abi::Errno::EINVAL as i64)));
        }
        for batch in pages.chunks(64) {
            let mut reqs = Vec::with_capacity(batch.len());
            for &(va, mfn, flags) in batch {
                let l1 = self.l1_for(va)?;
                let ma = (l1 << 12) + 8 * mm::index(va, 1) as u64;
                reqs.push(MmuUpdate::new(
                    MMU_NORMAL_PT_UPDATE,
                    ma,
                    pte::entry(mfn, flags),
                ));
            }
            // SAFETY: user-half entries that were empty; no Rust reference points there.
            let (ret, done) = unsafe { mm::mmu_update(&reqs) };
            for &(va, mfn, flags) in &batch[..done as usize] {
                self.pages.insert(va >> 12, (mfn, flags));
                self.shared.insert(va >> 12);
            }
            if ret < 0 {
                return Err(MapError::Refused(ret));
            }
        }
        Ok(())
    }

    /// Whether page `va` is a shared page (see [`Self::map_shared`]).
    pub fn is_shared(&self, va: u64) -> bool {
        self.shared.contains(&(va >> 12))
    }

    /// Gives shared page `va` a frame of its own holding a copy, mapped with `flags`
    /// (nothing to do for a page that is not shared).
    pub fn make_private(&mut self, va: u64, flags: u64) -> Result<(), MapError> {
        let vpn = va >> 12;
        if !self.shared.contains(&vpn) {
            return Ok(());
        }
        let src = self.pages[&vpn].0;
        let dst = frames::alloc_unzeroed(1).ok_or(MapError::NoMemory)?[0];
        let copy = [MmuextOp {
            cmd: MMUEXT_COPY_PAGE,
            arg1: dst,
            arg2: src,
        }];
        // SAFETY: the destination is a pool frame mapped nowhere; the source is only read.
        let (mut ret, _) = unsafe { mm::mmuext(&copy) };
        if ret >= 0 {
            let l1 = self.tables[&table_key(1, va)];
            let ma = (l1 << 12) + 8 * mm::index(va, 1) as u64;
            // SAFETY: the process's own entry; its new frame holds what the old one did, and
            // the kernel holds no reference into the page.
            ret = unsafe { mm::set_entry(ma, pte::entry(dst, flags)) };
        }
        if ret < 0 {
            frames::free(&[dst]);
            return Err(MapError::Refused(ret));
        }
        flush_tlb();
        self.pages.insert(vpn, (dst, flags));
        self.shared.remove(&vpn);
        Ok(())
    }

    /// Maps copies of `batch`'s pages (address, source frame, flags) into this space,
    /// recording each page mapped in `copied` (virtual page number, frame, flags).
    fn copy_in(
        &mut self,
        batch: &[(u64, u64, u64)],
        copied: &mut Vec<(u64, (u64, u64))>,
    ) -> Result<(), MapError> {
        let copies = frames::alloc_unzeroed(batch.len()).ok_or(MapError::NoMemory)?;
        let mut ops = [MmuextOp {
            cmd: MMUEXT_COPY_PAGE,
            arg1: 0,
            arg2: 0,
        }; 64];
        for (op, (&(_, src, _), &dst)) in ops.iter_mut().zip(batch.iter().zip(&copies)) {
            op.arg1 = dst;
            op.arg2 = src;
        }
        // SAFETY: the destinations are pool frames mapped nowhere; the sources are this
        // process's own pages, only read.
        let (ret, _) = unsafe { mm::mmuext(&ops[..batch.len()]) };
        if ret < 0 {
            frames::free(&copies);
            return Err(MapError::Refused(ret));
        }
        let mut reqs = Vec::with_capacity(batch.len());
        for (&(va, _, flags), &dst) in batch.iter().zip(&copies) {
            let l1 = match self.l1_for(va) {
                Ok(l1) => l1,
                Err(e) => {
                    frames::free(&copies);
                    return Err(e);
                }
            };
            let ma = (l1 << 12) + 8 * mm::index(va, 1) as u64;
            reqs.push(MmuUpdate::new(
                MMU_NORMAL_PT_UPDATE,
                ma,
                pte::entry(dst, flags),
            ));
        }
        // SAFETY: user-half entries of a space nobody runs, empty until now.
        let (ret, done) = unsafe { mm::mmu_update(&reqs) };
        for (&(va, _, flags), &dst) in batch.iter().zip(&copies).take(done as usize) {
            copied.push((va >> 12, (dst, flags)));
        }
        if ret < 0 {
            frames::free(&copies[done as usize..]);
            return Err(MapError::Refused(ret));
        }
        Ok(())
    }

    /// The machine frame of the L1 table covering `va`, creating missing tables.
    fn l1_for(&mut self, va: u64) -> Result<u64, MapError> {
        if let Some(&l1) = self.tables.get(&table_key(1, va)) {
            return Ok(l1);
        }
        let mut parent = self.l4;
        for level in (1..=3).rev() {
            let key = table_key(level, va);
            if let Some(&t) = self.tables.get(&key) {
                parent = t;
                continue;
            }
            let t = frames::alloc_one().ok_or(MapError::NoMemory)?;
            let ma = (parent << 12) + 8 * mm::index(va, level + 1) as u64;
            // SAFETY: the entry was empty (the table is new), in the user half.
            let ret = unsafe { mm::set_entry(ma, pte::entry(t, TABLE)) };
            if ret < 0 {
                frames::free(&[t]);
                return Err(MapError::Refused(ret));
            }
            self.tables.insert(key, t);
            parent = t;
        }
        Ok(parent)
    }

    /// Whether page `va` is mapped.
    pub fn is_mapped(&self, va: u64) -> bool {
        self.pages.contains_key(&(va >> 12))
    }

    /// Maps a fresh zeroed page at page `va` (a user address) with `flags`, unless it is
    /// mapped already: one page, without [`map_range`](Self::map_range)'s lists (the
    /// page-fault path).
    pub fn map_page(&mut self, va: u64, flags: u64) -> Result<(), MapError> {
        if self.is_mapped(va) {
            return Ok(());
        }
        let l1 = self.l1_for(va)?;
        let mfn = frames::alloc_one().ok_or(MapError::NoMemory)?;
        let ma = (l1 << 12) + 8 * mm::index(va, 1) as u64;
        // SAFETY: a user-half entry that was empty (the page is not mapped); no Rust
        // reference points there.
        let ret = unsafe { mm::set_entry(ma, pte::entry(mfn, flags)) };
        if ret < 0 {
            frames::free(&[mfn]);
            return Err(MapError::Refused(ret));
        }
        self.pages.insert(va >> 12, (mfn, flags));
        Ok(())
    }

    /// Maps fresh zeroed pages at every unmapped page of `[start, end)` (page-aligned user
    /// addresses) with `flags`. Pages already mapped are left alone.
    pub fn map_range(&mut self, start: u64, end: u64, flags: u64) -> Result<(), MapError> {
        self.map_missing(start, end, flags, true).map(drop)
    }

    /// [`Self::map_range`] with frames that are not zeroed: returns the pages it
    /// mapped, every byte of which the caller must write (the loader: file bytes and zeros)
    /// before the process runs. Saves the hypervisor's clear of each page a file fills.
    pub fn map_range_unzeroed(
        &mut self,
        start: u64,
        end: u64,
        flags: u64,
    ) -> Result<Vec<u64>, MapError> {
        self.map_missing(start, end, flags, false)
    }

    fn map_missing(
        &mut self,
        start: u64,
        end: u64,
        flags: u64,
        zeroed: bool,
    ) -> Result<Vec<u64>, MapError> {
        let missing: Vec<u64> = (start..end)
            .step_by(4096)
            .filter(|va| !self.is_mapped(*va))
            .collect();
        for batch in missing.chunks(64) {
            let frames = if zeroed {
                frames::alloc_zeroed(batch.len())
            } else {
                frames::alloc_unzeroed(batch.len())
            }
            .ok_or(MapError::NoMemory)?;
            let mut reqs = Vec::with_capacity(batch.len());
            for &va in batch {
                let l1 = match self.l1_for(va) {
                    Ok(l1) => l1,
                    Err(e) => {
                        frames::free(&frames);
                        return Err(e);
                    }
                };
                let ma = (l1 << 12) + 8 * mm::index(va, 1) as u64;
                reqs.push(MmuUpdate::new(MMU_NORMAL_PT_UPDATE, ma, 0));
            }
            for (r, &mfn) in reqs.iter_mut().zip(&frames) {
                r.val = pte::entry(mfn, flags);
            }
            // SAFETY: user-half entries that were empty; no Rust reference points there.
            let (ret, done) = unsafe { mm::mmu_update(&reqs) };
            for (&va, &mfn) in batch.iter().zip(&frames).take(done as usize) {
                self.pages.insert(va >> 12, (mfn, flags));
            }
            if ret < 0 {
                frames::free(&frames[done as usize..]);
                return Err(MapError::Refused(ret));
            }
        }
        Ok(missing)
    }

    /// Maps a frame this space does not own at page `va` (an unmapped user page) with
    /// `flags`: it is not one of the process's pages, so no unmap or protection change of
    /// the process reaches it and it is not freed with the space.
    pub fn map_foreign(&mut self, va: u64, mfn: u64, flags: u64) -> Result<(), MapError> {
        let l1 = self.l1_for(va)?;
        let ma = (l1 << 12) + 8 * mm::index(va, 1) as u64;
        // SAFETY: a user-half entry that was empty (the caller's page is unmapped); no Rust
        // reference points there.
        match unsafe { mm::set_entry(ma, pte::entry(mfn, flags)) } {
            r if r < 0 => Err(MapError::Refused(r)),
            _ => Ok(()),
        }
    }

    /// Unmaps the pages of `[start, end)` and frees their frames.
    pub fn unmap_range(&mut self, start: u64, end: u64) {
        let gone: Vec<(u64, u64)> = self
            .pages
            .range(start >> 12..end.div_ceil(4096))
            .map(|(&vpn, &(mfn, _))| (vpn, mfn))
            .collect();
        if gone.is_empty() {
            return;
        }
        let reqs: Vec<MmuUpdate> = gone
            .iter()
            .map(|&(vpn, _)| {
                let l1 = self.tables[&table_key(1, vpn << 12)];
                let ma = (l1 << 12) + 8 * mm::index(vpn << 12, 1) as u64;
                MmuUpdate::new(MMU_NORMAL_PT_UPDATE, ma, 0)
            })
            .collect();
        for (chunk, reqs) in gone.chunks(64).zip(reqs.chunks(64)) {
            // SAFETY: the process's own pages, which it gave up; the kernel holds no
            // reference into them.
            let (_, done) = unsafe { mm::mmu_update(reqs) };
            let mut freed = [0u64; 64];
            let mut n = 0;
            for &(vpn, mfn) in &chunk[..done as usize] {
                self.pages.remove(&vpn);
                // A shared page's frame is not the space's to free.
                if !self.shared.remove(&vpn) {
                    freed[n] = mfn;
                    n += 1;
                }
            }
            frames::free(&freed[..n]);
        }
        flush_tlb();
    }

    /// Changes the leaf flags of the mapped pages of `[start, end)`. A shared page made
    /// writable gets a private copy first; when there is no frame for it, it stays shared and
    /// read-only (a write to it then ends the process, as any unresolved fault does).
    pub fn protect_range(&mut self, start: u64, end: u64, flags: u64) {
        if flags & pte::RW != 0 {
            let shared: Vec<u64> = self
                .shared
                .range(start >> 12..end.div_ceil(4096))
                .copied()
                .collect();
            for vpn in shared {
                let _ = self.make_private(vpn << 12, flags);
            }
        }
        let changed: Vec<(u64, u64)> = self
            .pages
            .range(start >> 12..end.div_ceil(4096))
            .filter(|(vpn, (_, f))| {
                *f != flags && !(flags & pte::RW != 0 && self.shared.contains(vpn))
            })
            .map(|(&vpn, &(mfn, _))| (vpn, mfn))
            .collect();
        for chunk in changed.chunks(64) {
            let reqs: Vec<MmuUpdate> = chunk
                .iter()
                .map(|&(vpn, mfn)| {
                    let l1 = self.tables[&table_key(1, vpn << 12)];
                    let ma = (l1 << 12) + 8 * mm::index(vpn << 12, 1) as u64;
                    MmuUpdate::new(MMU_NORMAL_PT_UPDATE, ma, pte::entry(mfn, flags))
                })
                .collect();
            // SAFETY: the process's own pages; the kernel holds no reference into them.
            let (_, done) = unsafe { mm::mmu_update(&reqs) };
            for &(vpn, mfn) in &chunk[..done as usize] {
                self.pages.insert(vpn, (mfn, flags));
            }
        }
        flush_tlb();
    }

    /// Switches back to the bootstrap tables and frees everything. Should the hypervisor
    /// refuse the switch or the unpin, the frames stay out of the pool (page-table frames
    /// still validated must never come back as a process's pages) and the loss is reported.
    pub fn destroy(self) {
        // Back to the bootstrap space first if this one is active (its upper half is the
        // same, so nothing Rust code uses changes).
        let switched = if self.is_active() {
            ACTIVE.store(0, Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { mm::new_baseptr(mm::bootstrap_l4()) }
        } else {
            0
        };
        // SAFETY: the tree is no longer in use (not active).
        let unpinned = unsafe { mm::unpin(self.l4) };
        if switched < 0 || unpinned < 0 {
            crate::tprintln!(
                "dom0: cannot release a process's page tables ({switched}, {unpinned}); \
                 {} frames stay unused",
                self.pages.len() + self.tables.len() + 1
            );
            return;
        }
        let pages: Vec<u64> = self
            .pages
            .iter()
            .filter(|(vpn, _)| !self.shared.contains(vpn))
            .map(|(_, &(m, _))| m)
            .collect();
        frames::free(&pages);
        let tables: Vec<u64> = self.tables.values().copied().collect();
        frames::free(&tables);
        frames::free(&[self.l4]);
    }
}

fn flush_tlb() {
    // SAFETY: a flush changes no mapping.
    unsafe { mm::mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0) };
}
