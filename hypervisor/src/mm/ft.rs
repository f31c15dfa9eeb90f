//! The hypervisor's one frame table (`frame_table.rs` holds the rules) and the `PageMemory`
//! it works on: page-table contents through the direct map.
//!
//! Frames in the frame allocator are the hypervisor's in the table; a frame given to a
//! domain becomes the domain's (`give`) and comes back as the hypervisor's (`take_back`).
//!
//! There is no lock around the table: each frame's record is atomic words, and a frame
//! changes only on its owner's behalf, under the owner's domain lock or with the world
//! exclusive (`FrameTable`'s concurrency rule). So `mmu_update`s of two domains on two
//! pCPUs run through the table at the same time. Builds with debug assertions check, at
//! every use, that the pCPU holds a domain lock or the world exclusive (`check_holder`).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_abi::errno::Errno;
use guest_abi::types::DomId;

use super::frame_table::{Config, FrameTable, Owner, PageMemory};
use super::{Mfn, frames, physmem};

static TABLE: spin::Once<FrameTable> = spin::Once::new();

/// The page-table contents the frame table reads and writes, and the flushes it asks for.
pub struct DirectMem;

impl PageMemory for DirectMem {
    // The frame table reads entries only of frames it knows (RAM, covered by the direct
    // map), with `index` below 512. Guests may write data frames concurrently; page-table
    // frames are read-only to them. It writes only entries it has validated.
    fn read_entry(&self, mfn: Mfn, index: usize) -> u64 {
        physmem::read_u64(mfn, index)
    }

    fn nonzero_entries(&self, mfn: Mfn, from: usize, out: &mut [(usize, u64)]) -> (usize, usize) {
        physmem::nonzero_words(mfn, from, out)
    }

    // The frame table moves its generations and the table's stamp around every write that
    // can change a walk's answer (`FrameTable::unchanged_since`): nothing to do here.
    fn write_entry(&mut self, mfn: Mfn, index: usize, value: u64) {
        physmem::write_u64(mfn, index, value);
    }

    fn flush_tlbs(&mut self) {
        flush_everywhere();
    }

    fn sync_guest_roots(&mut self, l4: Mfn) {
        // The entry is written; a pCPU that starts copying `l4` from here on sees it, and one
        // that started before has published its source first (`load_guest_root`): this
        // fence orders the write before the loads of the sources below.
        core::sync::atomic::fence(Ordering::SeqCst);
        crate::arch::x86_64::entry::refresh_guest_root(l4);
        let copies = crate::guest::online_cpus()
            .filter(|(_, c)| c.guest_root_source.load(Ordering::SeqCst) == l4.phys())
            .fold(0u64, |mask, (i, _)| mask | 1 << i);
        crate::arch::x86_64::ipi::flush_others(copies);
    }

    // Between two tables of a (de)validation: a pCPU waiting for this one's flush would
    // otherwise wait out a whole tree (a few seconds for a domain of a few GiB; the flush
    // bound is 5 s). This pCPU is on the hypervisor root, so a flush costs it nothing.
    fn poll(&mut self) {
        crate::arch::x86_64::ipi::service_flush();
        VALIDATION_PROGRESS.fetch_add(1, Ordering::Relaxed);
    }

    fn io_frame_allowed(&self, mfn: Mfn, dom: DomId) -> bool {
        super::iomem::allowed(mfn, dom)
    }

    fn forced_user(&self, dom: DomId) -> bool {
        forced_user(dom)
    }
}

/// Domains whose page-table entries get U/S forced on (Xen PV mode; `PageMemory::forced_user`),
/// a bit per domain id below `DOMID_FIRST_RESERVED`: read on every validation and entry
/// update without the world lock.
static FORCED_USER: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];

/// Whether `dom`'s page-table entries get U/S forced on.
pub fn forced_user(dom: DomId) -> bool {
    let i = usize::from(dom);
    FORCED_USER
        .get(i / 64)
        .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
}

/// Sets whether `dom`'s page-table entries get U/S forced on: at its creation (off) and when
/// dom0 sets its guest mode (on for Xen PV).
pub fn set_forced_user(dom: DomId, on: bool) {
    let i = usize::from(dom);
    if let Some(w) = FORCED_USER.get(i / 64) {
        if on {
            w.fetch_or(1 << (i % 64), Ordering::AcqRel);
        } else {
            w.fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        }
    }
}

/// Drops every guest translation on every pCPU (this one at once, the others that run a
/// vCPU by a flush request, waited for). The caller holds the world lock. A pCPU with no
/// vCPU is in the hypervisor or halted, on the hypervisor root: it holds none.
pub fn flush_everywhere() {
    x86_64::instructions::tlb::flush_all();
    let running = crate::guest::online_cpus()
        .filter(|(_, c)| c.current().is_some())
        .fold(0u64, |mask, (i, _)| mask | 1 << i);
    crate::arch::x86_64::ipi::flush_others(running);
}

/// Physical address width (CPUID 8000_0008h EAX bits 7:0); 36 when the CPU does not say.
fn phys_addr_bits() -> u8 {
    use core::arch::x86_64::__cpuid;
    if __cpuid(0x8000_0000).eax >= 0x8000_0008 {
        (__cpuid(0x8000_0008).eax & 0xFF) as u8
    } else {
        36
    }
}

/// Creates the table for frames `0..frames`, all the hypervisor's.
pub fn init(frames: u64, nx: bool) {
    TABLE.call_once(|| {
        let config = Config {
            phys_addr_bits: phys_addr_bits(),
            nx,
            l1tf_mitigation: true,
        };
        FrameTable::new(frames, config)
    });
}

/// Runs `f` on the frame table. The caller holds the lock of the domain whose frames `f`
/// changes, or the world exclusive (checked in builds with debug assertions); reading who
/// owns a frame needs nothing.
pub fn with<R>(f: impl FnOnce(&FrameTable, &mut DirectMem) -> R) -> R {
    let table = TABLE.get().expect("frame table used before init");
    check_holder();
    count_inside(true);
    let r = f(table, &mut DirectMem);
    count_inside(false);
    r
}

/// The frame table's generation: a translation of a guest address made at one value holds
/// while it keeps that value (`FrameTable::generation`). Reading it needs nothing.
#[inline]
pub fn generation() -> u64 {
    table().generation()
}

/// The generation copies of L4 tables are kept at (`FrameTable::root_generation`): it
/// moves with every L4 entry written and every L4 validated or devalidated, not with the
/// updates of lower tables.
#[inline]
pub fn root_generation() -> u64 {
    table().root_generation()
}

/// Where the two generations are ([`generation`], [`root_generation`]), by address: the
/// entry stub for Xen PV system calls reads them there (`PerCpu::generation_at`).
pub fn generation_cells() -> (u64, u64) {
    let (g, r) = table().generation_cells();
    (core::ptr::from_ref(g) as u64, core::ptr::from_ref(r) as u64)
}

/// Whether no frame of `frames` changed (an entry written, a change of use) after generation
/// `since`, nor is being changed (`FrameTable::unchanged_since`): a translation found at
/// `since` through those frames still holds.
#[inline]
pub fn unchanged_since(since: u64, frames: &[Mfn]) -> bool {
    table().unchanged_since(since, frames)
}

/// Tables validated or devalidated so far, on every pCPU: lock waiters tell a long
/// validation (progress) from a stuck holder (none) by it (`guest::locks::spin_for`).
static VALIDATION_PROGRESS: AtomicU64 = AtomicU64::new(0);

/// [`VALIDATION_PROGRESS`] now.
pub fn validation_progress() -> u64 {
    VALIDATION_PROGRESS.load(Ordering::Relaxed)
}

/// In builds with debug assertions: pCPUs inside [`with`] now, and the most there ever were
/// (`smp_lockcheck_4` requires two: two domains' page-table work at the same moment).
static INSIDE_NOW: AtomicU32 = AtomicU32::new(0);
static INSIDE_MOST: AtomicU32 = AtomicU32::new(0);

fn count_inside(entering: bool) {
    if !cfg!(debug_assertions) {
        return;
    }
    if entering {
        let n = INSIDE_NOW.fetch_add(1, Ordering::SeqCst) + 1;
        INSIDE_MOST.fetch_max(n, Ordering::SeqCst);
    } else {
        INSIDE_NOW.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The most pCPUs that were inside the frame table at once (0 without debug assertions).
pub fn most_inside() -> u32 {
    INSIDE_MOST.load(Ordering::SeqCst)
}

/// With debug assertions: panics unless this pCPU holds a domain lock or the world
/// exclusive, or runs before guests exist (boot). Without, nothing.
fn check_holder() {
    if cfg!(debug_assertions) && !crate::lockorder::may_change_frames() {
        panic!(
            "frame table used without a domain lock or the world exclusive (the one-writer \
             rule of FrameTable)"
        );
    }
}

/// The table, once built.
#[inline]
fn table() -> &'static FrameTable {
    TABLE.get().expect("frame table used before init")
}

/// Gives frame `mfn`, just taken from the frame allocator, to domain `dom`.
pub fn give(mfn: Mfn, dom: DomId) -> Result<(), Errno> {
    with(|t, _| t.give_from_hypervisor(mfn, dom))
}

/// Takes frame `mfn` back from `dom` for the frame allocator; `EBUSY` while referenced.
pub fn take_back(mfn: Mfn, dom: DomId) -> Result<(), Errno> {
    with(|t, _| {
        t.unassign(mfn, dom)?;
        t.set_hypervisor(mfn)
    })
}

/// `sysctl_page_offline` for one frame (the rules: `FrameTable::offline`). The frame
/// allocator marks the frame first and says whether it is free; if the table refuses, the
/// mark is undone. Both under the table's lock (table, then allocator: the order of a
/// domain's release).
pub fn offline(mfn: Mfn) -> Result<u32, (Errno, u32)> {
    with(|t, _| {
        if t.info(mfn).is_none() {
            return Err((Errno::EINVAL, 0));
        }
        let free = match frames::offline(mfn) {
            Some(found) => found == frames::Found::Free,
            // Without the allocator's bits nothing can be withheld: refuse everything.
            None => return Err((Errno::EOPNOTSUPP, 0)),
        };
        let result = t.offline(mfn, free);
        if result.is_err() {
            frames::online(mfn);
        }
        result
    })
}

/// `sysctl_page_online` for one frame: the table's state goes back to online and the
/// allocator takes the frame back (or forgets a pending mark).
pub fn online(mfn: Mfn) -> Result<u32, Errno> {
    with(|t, _| {
        let status = t.online(mfn)?;
        frames::online(mfn);
        Ok(status)
    })
}

/// `sysctl_query_page_offline` for one frame.
pub fn query_offline(mfn: Mfn) -> Result<u32, Errno> {
    with(|t, _| t.query_offline(mfn))
}

/// Frames offlined and frames pending.
pub fn offline_counts() -> (u64, u64) {
    with(|t, _| t.offline_counts())
}

/// Frames the table describes: RAM's highest frame plus one.
pub fn frames() -> u64 {
    table().len()
}

/// Whether `dom` owns `mfn` (one atomic read; no lock needed).
#[inline]
pub fn owned_by(mfn: Mfn, dom: DomId) -> bool {
    table().owned_by(mfn, dom)
}

/// `mfn`'s current use (`FrameTable::current_type`): two atomic reads, no lock needed. What it
/// says holds until the frame changes use, which waits for every pCPU running a guest to
/// flush (the frame table's rule): a pCPU that asks with interrupts off, as a trap does, and
/// answers no flush request meanwhile, can act on the answer until it answers one.
#[inline]
pub fn current_type(mfn: Mfn) -> Option<super::frame_table::PageType> {
    table().current_type(mfn)
}

/// Who owns `mfn` (one atomic read; no lock needed).
pub fn owner(mfn: Mfn) -> Owner {
    table().owner(mfn)
}
