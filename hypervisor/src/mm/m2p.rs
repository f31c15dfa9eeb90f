//! The machine-to-phys table (DESIGN.md §4): for every machine frame, the pseudo-physical
//! frame its owner uses for it, as Xen's M2P. One `u64` per frame, `INVALID` where no
//! domain has said. Guests read it, read-only, at `RO_M2P_BASE` (slot 256, Xen's
//! `RO_MPT_VIRT_START`); only the hypervisor writes it, through the direct map, when a
//! domain is built or asks (`MMU_MACHPHYS_UPDATE`).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::pte;

use super::{Mfn, PAGE_SIZE, frames, physmem};
use crate::arch::x86_64::layout;

/// The M2P entry of a frame nobody described (Xen's `INVALID_M2P_ENTRY`).
pub const INVALID: u64 = u64::MAX;
/// Where guests see the table.
pub const RO_M2P_BASE: u64 = layout::slot_base(layout::RO_M2P_SLOT);
const ENTRIES_PER_FRAME: u64 = PAGE_SIZE / 8;

struct Table {
    /// The frames holding the table, in order.
    frames: Vec<Mfn>,
    /// How many machine frames the table describes.
    entries: u64,
    /// Top-level entry that maps the table read-only in a guest root.
    slot_entry: u64,
}

static TABLE: spin::Once<Table> = spin::Once::new();

fn new_zeroed_frame() -> Mfn {
    frames::alloc_zeroed().expect("no memory for the M2P table")
}

/// A page-table entry mapping `to` with `flags`.
fn entry(to: Mfn, flags: u64) -> u64 {
    pte::entry(to.0, flags)
}

/// Builds the table for machine frames `0..entries`, every entry `INVALID`, and the
/// read-only mapping guests get (supervisor-only, not executable when the CPU has NX).
pub fn init(entries: u64, nx: bool) {
    TABLE.call_once(|| {
        let nr_frames = entries.div_ceil(ENTRIES_PER_FRAME);
        let mut table_frames = Vec::with_capacity(nr_frames as usize);
        for _ in 0..nr_frames {
            let mfn = frames::alloc().expect("no memory for the M2P table");
            for i in 0..ENTRIES_PER_FRAME as usize {
                physmem::write_u64(mfn, i, INVALID);
            }
            table_frames.push(mfn);
        }
        // One L3 for the slot; an L2 per GiB and an L1 per 2 MiB of table. The table frames
        // are this module's, filled once, at boot, before any guest root refers to them.
        // Every level below the slot entry is user-accessible: a Xen PV kernel runs in ring 3
        // and reads the table there, as on Xen (whose read-only M2P has `_PAGE_USER`). The
        // slot entry decides: without U/S for Xenia's ring-1 guests, whose user programs
        // have no business with it; with it for Xen PV guests ([`guest_slot_entry_user`]).
        let leaf = pte::PRESENT | pte::USER | if nx { pte::NX } else { 0 };
        let l3 = new_zeroed_frame();
        for (i, chunk) in table_frames.chunks(physmem::WORDS).enumerate() {
            let l1 = new_zeroed_frame();
            for (j, mfn) in chunk.iter().enumerate() {
                physmem::write_u64(l1, j, entry(*mfn, leaf));
            }
            let (l3_index, l2_index) = (i / physmem::WORDS, i % physmem::WORDS);
            let l2 = match physmem::read_u64(l3, l3_index) {
                0 => {
                    let l2 = new_zeroed_frame();
                    physmem::write_u64(l3, l3_index, entry(l2, pte::PRESENT | pte::USER));
                    l2
                }
                present => Mfn(pte::mfn(present)),
            };
            physmem::write_u64(l2, l2_index, entry(l1, pte::PRESENT | pte::USER));
        }
        Table {
            frames: table_frames,
            entries,
            slot_entry: entry(l3, pte::PRESENT),
        }
    });
}

fn slot(mfn: Mfn) -> Option<&'static AtomicU64> {
    let t = TABLE.get()?;
    if mfn.0 >= t.entries {
        return None;
    }
    let frame = t.frames[(mfn.0 / ENTRIES_PER_FRAME) as usize];
    // A table frame owned by this module; guests only ever read it (their mapping is
    // read-only).
    Some(physmem::atomic_u64(
        frame,
        (mfn.0 % ENTRIES_PER_FRAME) as usize,
    ))
}

/// Records that `mfn` is pseudo-physical frame `pfn` of its owner.
pub fn set(mfn: Mfn, pfn: u64) {
    if let Some(s) = slot(mfn) {
        s.store(pfn, Ordering::Release);
    }
}

/// The pseudo-physical frame recorded for `mfn`, or `INVALID`.
pub fn get(mfn: Mfn) -> u64 {
    slot(mfn).map_or(INVALID, |s| s.load(Ordering::Acquire))
}

/// The top-level entry that maps the table read-only into a guest root (slot 256), or 0
/// before `init`.
pub fn guest_slot_entry() -> u64 {
    TABLE.get().map_or(0, |t| t.slot_entry)
}

/// [`guest_slot_entry`] for a Xen PV guest's root: the same table, readable from ring 3,
/// where that guest's kernel runs.
pub fn guest_slot_entry_user() -> u64 {
    TABLE.get().map_or(0, |t| t.slot_entry | pte::USER)
}
