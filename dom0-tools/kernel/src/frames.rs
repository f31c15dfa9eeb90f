//! The frame pool: dom0's pseudo-physical frames past the bootstrap mappings, which processes
//! get as pages and page tables.
//!
//! The builder maps frames `0..mapped_pages` (the kernel, its `.bss`, the initrd, the
//! bootstrap tables, the padding); the rest of dom0's memory is mapped nowhere. All of it is
//! taken into the pool at boot. A frame handed out is zeroed by the hypervisor
//! (`MMUEXT_CLEAR_PAGE`) first, so nothing one process wrote reaches the next.

use alloc::vec::Vec;

use guest_abi::memory::{MMUEXT_CLEAR_PAGE, MmuextOp};
use spin::Mutex;
use xenia_guest_rt::mm;

/// Free frames (machine frame numbers).
static POOL: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Frames the pool held at boot.
static TOTAL: Mutex<usize> = Mutex::new(0);

/// Takes every fresh frame of dom0 into the pool. Call once at boot.
pub fn init() {
    let mut pool = POOL.lock();
    while let Some((_, mfn)) = mm::fresh_frame() {
        pool.push(mfn);
    }
    *TOTAL.lock() = pool.len();
}

/// Frames free now, and at boot.
pub fn counts() -> (usize, usize) {
    (POOL.lock().len(), *TOTAL.lock())
}

/// `n` zeroed frames, or `None` (and nothing taken) when the pool has fewer.
pub fn alloc_zeroed(n: usize) -> Option<Vec<u64>> {
    let frames = alloc_unzeroed(n)?;
    for chunk in frames.chunks(64) {
        let mut ops = [MmuextOp {
            cmd: MMUEXT_CLEAR_PAGE,
            arg1: 0,
            arg2: 0,
        }; 64];
        for (op, &mfn) in ops.iter_mut().zip(chunk) {
            op.arg1 = mfn;
        }
        // SAFETY: the frames are the pool's, mapped nowhere; clearing them changes no memory
        // Rust code uses.
        let (ret, _) = unsafe { mm::mmuext(&ops[..chunk.len()]) };
        if ret < 0 {
            // The hypervisor refused to clear a frame of our own: give them back and fail
            // rather than hand out stale contents.
            free(&frames);
            return None;
        }
    }
    Some(frames)
}

/// `n` frames of the pool as they are: holding whatever dom0 last kept in them. For a caller
/// that writes every byte of each before anything else can read it (the program loader).
pub fn alloc_unzeroed(n: usize) -> Option<Vec<u64>> {
    let mut pool = POOL.lock();
    if pool.len() < n {
        return None;
    }
    let at = pool.len() - n;
    Some(pool.split_off(at))
}

/// One zeroed frame (the page-fault path: no list, one clear).
pub fn alloc_one() -> Option<u64> {
    let mfn = POOL.lock().pop()?;
    let clear = [MmuextOp {
        cmd: MMUEXT_CLEAR_PAGE,
        arg1: mfn,
        arg2: 0,
    }];
    // SAFETY: the frame is the pool's, mapped nowhere; clearing it changes no memory Rust
    // code uses.
    let (ret, _) = unsafe { mm::mmuext(&clear) };
    if ret < 0 {
        free(&[mfn]);
        return None;
    }
    Some(mfn)
}

/// Returns frames to the pool. They must be mapped nowhere and be no page table.
pub fn free(frames: &[u64]) {
    POOL.lock().extend_from_slice(frames);
}
