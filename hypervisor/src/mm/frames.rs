//! The frame allocator: every free 4 KiB machine frame of usable RAM, minus the image,
//! the modules and the boot information (see `memmap`), in a buddy allocator so that
//! naturally aligned runs of frames (for 2 MiB pages, contiguous buffers) are cheap.

use buddy_system_allocator::FrameAllocator;
use spin::Mutex;

use super::Mfn;
use super::memmap::{PAGE_SIZE, PhysRange};

/// Orders up to 2^32 frames (16 TiB) in one block.
const ORDER: usize = 33;

struct Frames {
    buddy: FrameAllocator<ORDER>,
    free: u64,
    total: u64,
}

static FRAMES: Mutex<Frames> = Mutex::new(Frames {
    buddy: FrameAllocator::new(),
    free: 0,
    total: 0,
});

/// Hands the page-aligned `range` to the allocator.
pub fn add_free(range: PhysRange) {
    let (start, end) = (range.start / PAGE_SIZE, range.end / PAGE_SIZE);
    if start >= end {
        return;
    }
    let mut f = FRAMES.lock();
    f.buddy.add_frame(start as usize, end as usize);
    f.free += end - start;
    f.total += end - start;
}

/// One frame, or `None` when memory is exhausted. Its contents are undefined.
pub fn alloc() -> Option<Mfn> {
    alloc_contiguous(1)
}

/// One frame filled with zeros, or `None` when memory is exhausted: what every frame handed
/// to a guest or to a page table starts as.
#[cfg(target_os = "none")]
pub fn alloc_zeroed() -> Option<Mfn> {
    let mfn = alloc()?;
    // A frame just taken from the allocator: nothing else refers to it.
    super::physmem::zero(mfn);
    Some(mfn)
}

/// `count` physically contiguous frames, aligned to `count` rounded up to a power of two.
pub fn alloc_contiguous(count: u64) -> Option<Mfn> {
    let rounded = count.checked_next_power_of_two()?;
    let mut f = FRAMES.lock();
    let first = f.buddy.alloc(usize::try_from(count).ok()?)?;
    f.free -= rounded;
    Some(Mfn(first as u64))
}

/// As [`alloc_contiguous`], but `None` at once if the allocator is in use (the heap grows
/// from here while the frame allocator itself may be allocating from the heap).
pub fn try_alloc_contiguous(count: u64) -> Option<Mfn> {
    let rounded = count.checked_next_power_of_two()?;
    let mut f = FRAMES.try_lock()?;
    let first = f.buddy.alloc(usize::try_from(count).ok()?)?;
    f.free -= rounded;
    Some(Mfn(first as u64))
}

/// Returns frames obtained from `alloc_contiguous(count)` (or `alloc` with count 1).
pub fn free_contiguous(first: Mfn, count: u64) {
    let rounded = count.next_power_of_two();
    let mut f = FRAMES.lock();
    f.buddy.dealloc(first.0 as usize, count as usize);
    f.free += rounded;
}

/// Frames currently free.
pub fn free_count() -> u64 {
    FRAMES.lock().free
}

/// Frames ever handed to the allocator.
pub fn total_count() -> u64 {
    FRAMES.lock().total
}

#[cfg(test)]
mod tests {
    use super::*;

    // The allocator is a global: one test exercises it end to end.
    #[test]
    fn alloc_free_round_trip() {
        add_free(PhysRange {
            start: 0x20_0000,
            end: 0x40_0000,
        });
        let before = free_count();
        assert_eq!(before, 512);
        let a = alloc().unwrap();
        let run = alloc_contiguous(3).unwrap();
        assert_eq!(run.0 % 4, 0, "runs are naturally aligned");
        assert_eq!(free_count(), before - 1 - 4);
        assert!((0x200..0x400).contains(&a.0));
        free_contiguous(run, 3);
        free_contiguous(a, 1);
        assert_eq!(free_count(), before);
        assert!(alloc_contiguous(1024).is_none(), "more than exists");
        assert_eq!(free_count(), before);
    }
}
