//! The hypervisor heap: a buddy allocator (`buddy_system_allocator`) as the global
//! allocator. It starts on a static region in the image, so that allocation works before
//! the frame allocator exists, and grows from frames once memory is known.

use buddy_system_allocator::LockedHeap;

use super::frames;
use crate::arch::x86_64::layout::phys_to_virt;

/// Enough for boot-time bookkeeping (memory map, frame allocator nodes).
const BOOT_HEAP_BYTES: usize = 2 * 1024 * 1024;

#[repr(C, align(4096))]
struct BootHeap([u8; BOOT_HEAP_BYTES]);

static mut BOOT_HEAP: BootHeap = BootHeap([0; BOOT_HEAP_BYTES]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Puts the static region under the allocator. Runs once, first thing.
pub fn init() {
    let start = (&raw mut BOOT_HEAP) as usize;
    // SAFETY: BOOT_HEAP is used by nothing else; it is handed over exactly once, and its
    // address range is valid, writable hypervisor memory for the whole run.
    unsafe { HEAP.lock().init(start, BOOT_HEAP_BYTES) };
}

/// Adds `run` pages (a power of two), physically contiguous, to the heap.
fn add_run(run: u64) -> bool {
    let Some(first) = frames::alloc_contiguous(run) else {
        return false;
    };
    let start = phys_to_virt(first.phys()) as usize;
    let end = start + (run * super::PAGE_SIZE) as usize;
    // SAFETY: the frames were just taken from the frame allocator, so nothing else owns
    // them, and the direct map makes them writable at `start..end`.
    unsafe { HEAP.lock().add_to_heap(start, end) };
    true
}

/// Adds about `bytes` from the frame allocator to the heap, as a sum of power-of-two
/// runs (a buddy heap serves an allocation only from one run). Returns the bytes added.
pub fn grow(bytes: u64) -> u64 {
    let page = super::PAGE_SIZE;
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
    let run = bytes.div_ceil(super::PAGE_SIZE).next_power_of_two();
    if add_run(run) {
        run * super::PAGE_SIZE
    } else {
        0
    }
}

/// Total bytes under the heap allocator.
pub fn size() -> usize {
    HEAP.lock().stats_total_bytes()
}
