//! The hypervisor heap: a buddy allocator (`buddy_system_allocator`) as the global
//! allocator. It starts on a static region in the image, so that allocation works before
//! the frame allocator exists, grows from frames once memory is known, and keeps growing
//! from the frame allocator whenever its free space runs low.
//!
//! # Memory a guest can make the hypervisor allocate
//!
//! Hypervisor memory used on a domain's behalf (vCPUs, event channels, grant mappings) is
//! bounded per domain by limits set when it is created, and every such allocation is
//! fallible (`try_reserve`), answered with `ENOMEM` or the operation's "no space" status.
//! Before a domain's structures grow, [`headroom`] says whether the heap can take it
//! without eating into [`RESERVE`]: the frames kept back so that the hypervisor's own small
//! allocations (log lines, the frame allocator's bookkeeping) always succeed, whatever the
//! guests do.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};

use buddy_system_allocator::LockedHeap;

use crate::arch::x86_64::layout::phys_to_virt;
use crate::mm::{Mfn, PAGE_SIZE, frames};

/// Enough for boot-time bookkeeping (memory map, frame allocator nodes).
const BOOT_HEAP_BYTES: usize = 2 * 1024 * 1024;

/// When free heap falls below this, the heap grows by [`GROW_STEP`] from free frames.
const LOW_WATER: usize = 1024 * 1024;
/// How much the heap grows at a time.
const GROW_STEP: u64 = 2 * 1024 * 1024;
/// Bytes of free frames (and free heap) kept back from guest-driven growth: 8 MiB.
pub const RESERVE: u64 = 8 * 1024 * 1024;

#[repr(C, align(4096))]
struct BootHeap([u8; BOOT_HEAP_BYTES]);

static mut BOOT_HEAP: BootHeap = BootHeap([0; BOOT_HEAP_BYTES]);

/// The buddy heap, grown from the frame allocator when it runs low.
struct GrowingHeap {
    heap: LockedHeap<32>,
    /// A growth is under way (the frame allocator may allocate from the heap while it
    /// hands out frames: that nested allocation must not try to grow again).
    growing: AtomicBool,
}

#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap {
    heap: LockedHeap::empty(),
    growing: AtomicBool::new(false),
};

// SAFETY: every request is passed to the buddy heap, a correct allocator; growing only adds
// frames nothing else owns.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout contract is passed on unchanged.
        let p = unsafe { self.heap.alloc(layout) };
        if !p.is_null() {
            if self.free() < LOW_WATER {
                self.grow_once(GROW_STEP, PAGE_SIZE);
            }
            return p;
        }
        // Out of heap: grow enough for this request (a buddy heap serves it from one run)
        // and try once more.
        let need = (layout.size().max(layout.align()) as u64).next_power_of_two();
        if !self.grow_once(need.max(GROW_STEP), need) {
            return core::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { self.heap.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

impl GrowingHeap {
    fn free(&self) -> usize {
        let h = self.heap.lock();
        h.stats_total_bytes() - h.stats_alloc_actual()
    }

    /// Adds one run of `bytes` (rounded up to a power of two of pages) from the frame
    /// allocator, or the largest smaller run down to `min_bytes` when free memory is
    /// fragmented, unless a growth is already under way or the frame allocator is busy (it
    /// is the one allocating). Says whether the heap grew.
    fn grow_once(&self, bytes: u64, min_bytes: u64) -> bool {
        if self.growing.swap(true, Ordering::Acquire) {
            return false;
        }
        let min = min_bytes.div_ceil(PAGE_SIZE).next_power_of_two();
        let mut run = bytes.div_ceil(PAGE_SIZE).next_power_of_two();
        let mut grown = false;
        while run >= min {
            if let Some(first) = frames::try_alloc_contiguous(run) {
                grown = add_frames(first, run);
                break;
            }
            run /= 2;
        }
        self.growing.store(false, Ordering::Release);
        grown
    }
}

/// Puts the static region under the allocator. Runs once, first thing.
pub fn init() {
    let start = (&raw mut BOOT_HEAP) as usize;
    // SAFETY: BOOT_HEAP is used by nothing else; it is handed over exactly once, and its
    // address range is valid, writable hypervisor memory for the whole run.
    unsafe { HEAP.heap.lock().init(start, BOOT_HEAP_BYTES) };
}

/// Hands `run` frames starting at `first`, just taken from the frame allocator, to the heap.
/// `false` (the frames given back) when the direct map's record of heap runs is full.
fn add_frames(first: Mfn, run: u64) -> bool {
    // The direct map must know these frames hold Rust objects from now on, so that it never
    // hands them out as raw memory (mm::physmem).
    if !super::note_heap_run(first, run) {
        frames::free_contiguous(first, run);
        return false;
    }
    let start = phys_to_virt(first.phys()) as usize;
    let end = start + (run * PAGE_SIZE) as usize;
    // SAFETY: the frames were just taken from the frame allocator, so nothing else owns
    // them, and the direct map makes them writable at `start..end`.
    unsafe { HEAP.heap.lock().add_to_heap(start, end) };
    true
}

/// Adds `run` pages (a power of two), physically contiguous, to the heap.
fn add_run(run: u64) -> bool {
    let Some(first) = frames::alloc_contiguous(run) else {
        return false;
    };
    add_frames(first, run)
}

/// Adds about `bytes` from the frame allocator to the heap, as a sum of power-of-two
/// runs (a buddy heap serves an allocation only from one run). Returns the bytes added.
pub fn grow(bytes: u64) -> u64 {
    let page = PAGE_SIZE;
    let mut remaining = bytes.div_ceil(page);
    let mut added = 0;
    while remaining > 0 {
        // The largest power of two not above what remains; smaller if memory is short.
        let mut run = 1u64 << (63 - remaining.leading_zeros());
        while run > 0 && !add_run(run) {
            run /= 2;
        }
        if run == 0 {
            break;
        }
        added += run * page;
        remaining = remaining.saturating_sub(run);
    }
    added
}

/// Adds one run large enough for a single allocation of `bytes` (such as the frame
/// table). Returns the bytes added (0 if memory is too fragmented or short).
pub fn grow_for_allocation(bytes: u64) -> u64 {
    let run = bytes.div_ceil(PAGE_SIZE).next_power_of_two();
    if add_run(run) { run * PAGE_SIZE } else { 0 }
}

/// Total bytes under the heap allocator.
pub fn size() -> usize {
    HEAP.heap.lock().stats_total_bytes()
}

/// Bytes of the heap in use.
pub fn used() -> usize {
    HEAP.heap.lock().stats_alloc_actual()
}

/// Whether `bytes` more can be allocated on a domain's behalf without eating into
/// [`RESERVE`]: free heap plus free frames, less the reserve.
pub fn headroom(bytes: u64) -> bool {
    let free = HEAP.free() as u64 + frames::free_count() * PAGE_SIZE;
    free.saturating_sub(RESERVE) >= bytes
}
