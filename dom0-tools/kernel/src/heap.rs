//! The kernel heap: a buddy allocator over a static arena in `.bss`.
//!
//! The builder zeroes `.bss` and its pages come with dom0's memory, so the arena needs no
//! mapping work at boot. Processes' memory does not come from here but from the frame pool
//! ([`crate::frames`]).

use core::cell::UnsafeCell;

use buddy_system_allocator::LockedHeap;

/// Size of the arena: domain records, console history (16 KiB a domain), the
/// descriptor tables, the builder's temporary p2m lists, and dom0's root file system's
/// changes (at most [`crate::fs::ROOT_BYTES`]).
pub const HEAP_BYTES: usize = 12 << 20;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_BYTES]>);

// SAFETY: the arena is handed to the allocator once, by `init`, and touched only through it
// afterwards; the allocator's lock serialises that (dom0 runs on one vCPU anyway).
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
