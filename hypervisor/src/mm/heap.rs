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

/// Adds `bytes` (rounded down to whole 2 MiB runs) from the frame allocator to the heap.
/// Returns the number of bytes actually added.
pub fn grow(bytes: u64) -> u64 {
    const RUN_FRAMES: u64 = 512;
    let mut added = 0;
    while added + RUN_FRAMES * super::PAGE_SIZE <= bytes {
        let Some(first) = frames::alloc_contiguous(RUN_FRAMES) else {
            break;
        };
        let start = phys_to_virt(first.phys()) as usize;
        let end = start + (RUN_FRAMES * super::PAGE_SIZE) as usize;
        // SAFETY: the frames were just taken from the frame allocator, so nothing else
        // owns them, and the direct map makes them writable at `start..end`.
        unsafe { HEAP.lock().add_to_heap(start, end) };
        added += RUN_FRAMES * super::PAGE_SIZE;
    }
    added
}

/// Total bytes under the heap allocator.
pub fn size() -> usize {
    HEAP.lock().stats_total_bytes()
}
