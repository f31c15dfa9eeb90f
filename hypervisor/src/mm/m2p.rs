//! The machine-to-phys table (DESIGN.md §4): for every machine frame, the pseudo-physical
//! frame its owner uses for it, as Xen's M2P. One `u64` per frame, `INVALID` where no
//! domain has said. Guests read it, read-only, at `RO_M2P_BASE` (slot 256, Xen's
//! `RO_MPT_VIRT_START`); only the hypervisor writes it, through the direct map, when a
//! domain is built or asks (`MMU_MACHPHYS_UPDATE`).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::{PageTable, PageTableFlags as F};

use super::{Mfn, PAGE_SIZE, frames};
use crate::arch::x86_64::layout::{self, phys_to_virt};

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

fn table_at(mfn: Mfn) -> &'static mut PageTable {
    // SAFETY: page-table frames made here are owned by this module and reached through the
    // direct map; each is filled once, at boot, before any guest root refers to it.
    unsafe { &mut *(phys_to_virt(mfn.phys()) as *mut PageTable) }
}

/// Builds the table for machine frames `0..entries`, every entry `INVALID`, and the
/// read-only mapping guests get (supervisor-only, not executable when the CPU has NX).
pub fn init(entries: u64, nx: bool) {
    TABLE.call_once(|| {
        let nr_frames = entries.div_ceil(ENTRIES_PER_FRAME);
        let mut table_frames = Vec::with_capacity(nr_frames as usize);
        for _ in 0..nr_frames {
            let mfn = frames::alloc().expect("no memory for the M2P table");
            // SAFETY: a frame just taken from the allocator, reached through the direct map.
            unsafe {
                let p = phys_to_virt(mfn.phys()) as *mut u64;
                for i in 0..ENTRIES_PER_FRAME as usize {
                    p.add(i).write(INVALID);
                }
            }
            table_frames.push(mfn);
        }
        // One L3 for the slot; an L2 per GiB and an L1 per 2 MiB of table.
        let leaf = F::PRESENT | if nx { F::NO_EXECUTE } else { F::empty() };
        let l3 = new_zeroed_frame();
        for (i, chunk) in table_frames.chunks(512).enumerate() {
            let l1 = new_zeroed_frame();
            for (j, mfn) in chunk.iter().enumerate() {
                table_at(l1)[j].set_addr(x86_64::PhysAddr::new(mfn.phys()), leaf);
            }
            let (l3_index, l2_index) = (i / 512, i % 512);
            let l3_entry = &mut table_at(l3)[l3_index];
            let l2 = if l3_entry.is_unused() {
                let l2 = new_zeroed_frame();
                l3_entry.set_addr(x86_64::PhysAddr::new(l2.phys()), F::PRESENT);
                l2
            } else {
                Mfn::from_phys(l3_entry.addr().as_u64())
            };
            table_at(l2)[l2_index].set_addr(x86_64::PhysAddr::new(l1.phys()), F::PRESENT);
        }
        Table {
            frames: table_frames,
            entries,
            slot_entry: l3.phys() | F::PRESENT.bits(),
        }
    });
}

fn slot(mfn: Mfn) -> Option<&'static AtomicU64> {
    let t = TABLE.get()?;
    if mfn.0 >= t.entries {
        return None;
    }
    let frame = t.frames[(mfn.0 / ENTRIES_PER_FRAME) as usize];
    let at = phys_to_virt(frame.phys()) + (mfn.0 % ENTRIES_PER_FRAME) * 8;
    // SAFETY: `at` is an aligned u64 inside a table frame owned by this module, mapped by
    // the direct map; guests only ever read it (their mapping is read-only).
    Some(unsafe { AtomicU64::from_ptr(at as *mut u64) })
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
