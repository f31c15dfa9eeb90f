//! The heap: a buddy allocator over a static arena in `.bss`.
//!
//! The domain builder allocates (its p2m list, page images, error messages), and dom0's
//! bootstrap region has no spare mapped memory the kernel could otherwise claim, so the
//! arena is part of the image: the builder zeroes `.bss`, and the arena's pages come with
//! dom0's memory. Blocks are freed and reused, so tests that build hundreds of domUs run in
//! a bounded heap.

use core::cell::UnsafeCell;

use buddy_system_allocator::LockedHeap;

/// Size of the arena: a 4096-entry p2m list is 32 KiB, so this leaves room for everything a
/// test keeps at once (the density test's records of a few hundred domains included).
pub const HEAP_BYTES: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_BYTES]>);

// SAFETY: the arena is handed to the allocator once, by `init`, and touched only through it
// afterwards; the allocator's own lock serialises that (dom0test runs on one vCPU anyway).
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_BYTES]));

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Gives the arena to the allocator. Call once, before anything allocates.
pub fn init() {
    use core::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    // SAFETY: the arena is static, aligned, HEAP_BYTES long and used by nothing else; the
    // flag above makes sure it is given to the allocator only once.
    unsafe { HEAP.lock().init(ARENA.0.get() as usize, HEAP_BYTES) };
}

/// Bytes currently allocated.
pub fn in_use() -> usize {
    HEAP.lock().stats_alloc_actual()
}
