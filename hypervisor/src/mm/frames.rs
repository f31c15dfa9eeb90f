//! The frame allocator: every free 4 KiB machine frame of usable RAM, minus the image,
//! the modules and the boot information (see `memmap`), in a buddy allocator so that
//! naturally aligned runs of frames (for 2 MiB pages, contiguous buffers) are cheap.
//!
//! Memory offlining (`XEN_SYSCTL_page_offline_op`, see `frame_table::Offline`) needs two
//! things the buddy allocator cannot give: whether a given frame is free, and taking one
//! given free frame out. Once [`track`] has run (at boot, after the frame table exists) the
//! allocator keeps a bit a frame for each: `free` (in the buddy allocator), `offline`
//! (must not be handed out) and `withheld` (taken out because offline). A free frame that
//! is offlined stays in the buddy allocator — it cannot remove one given frame — and is
//! withheld when an allocation would hand it out: the run that contains it is given back
//! without it and the allocation retried. A frame freed while offline (a pending offline
//! completing) is withheld at once. Offline frames do not count as free.
//!
//! **Scrubbing ahead** (issue 13's creation time). With the bits, the allocator also keeps
//! a `clean` bit a frame: the frame is free and known to hold zeros. Only two things set
//! it: [`scrub_free`] (Xen's `bootscrub`, once at boot, after dom0 is built), which zeroes
//! every free frame, and [`free_zeroed`], whose caller has just zeroed frames nothing else
//! can reach (a destroyed domain's memory, wiped as it is released: Xen's scrub on free).
//! A frame leaving the allocator loses its bit, and a plain free never sets it. The zeroing
//! allocations ([`alloc_zeroed`], [`alloc_contiguous_zeroed`]) clear only the frames whose
//! bit was not set, so that a domain built on scrubbed memory costs no zeroing.

use alloc::vec::Vec;

use buddy_system_allocator::FrameAllocator;
use spin::Mutex;

use super::Mfn;
use super::memmap::{PAGE_SIZE, PhysRange};

/// Orders up to 2^32 frames (16 TiB) in one block.
const ORDER: usize = 33;

/// Most free blocks [`track`] takes out of the buddy allocator to learn which frames are
/// free (at boot it holds a few per range of free memory). Blocks beyond it are not known
/// free: offlining them is refused until they have been allocated and freed once.
const TRACK_BLOCKS: usize = 4096;

/// One bit a frame.
struct Bits(Vec<u64>);

impl Bits {
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: usize, on: bool) {
        if let Some(w) = self.0.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Whether any bit of `from..to` is set.
    fn any(&self, from: usize, to: usize) -> bool {
        let mut i = from;
        while i < to {
            if i.is_multiple_of(64) && to - i >= 64 {
                if self.0.get(i / 64).is_some_and(|&w| w != 0) {
                    return true;
                }
                i += 64;
            } else {
                if self.get(i) {
                    return true;
                }
                i += 1;
            }
        }
        false
    }
}

/// The offlining bits ([`track`]).
struct Tracking {
    free: Bits,
    offline: Bits,
    withheld: Bits,
    /// Free and known to be zero (module docs).
    clean: Bits,
}

struct Frames {
    buddy: FrameAllocator<ORDER>,
    free: u64,
    total: u64,
    tracking: Option<Tracking>,
}

static FRAMES: Mutex<Frames> = Mutex::new(Frames {
    buddy: FrameAllocator::new(),
    free: 0,
    total: 0,
    tracking: None,
});

impl Frames {
    /// Takes `count` frames out of the buddy allocator, withholding offline frames.
    fn take(&mut self, count: u64) -> Option<Mfn> {
        self.take_noting_clean(count).map(|(first, _)| first)
    }

    /// [`Frames::take`], also saying which of the first 64 frames taken were known to be
    /// zero (bit `k`: frame `first + k`). Every frame taken loses its clean bit.
    fn take_noting_clean(&mut self, count: u64) -> Option<(Mfn, u64)> {
        let rounded = count.checked_next_power_of_two()?;
        let n = usize::try_from(count).ok()?;
        let r = usize::try_from(rounded).ok()?;
        // Each retry withholds at least one offline frame for good: bounded by their number.
        loop {
            let first = self.buddy.alloc(n)?;
            let Some(t) = self.tracking.as_mut() else {
                self.free -= rounded;
                return Some((Mfn(first as u64), 0));
            };
            if !t.offline.any(first, first + r) {
                let mut clean = 0u64;
                for i in first..first + r {
                    t.free.set(i, false);
                    if t.clean.get(i) && i - first < 64 {
                        clean |= 1 << (i - first);
                    }
                    t.clean.set(i, false);
                }
                self.free -= rounded;
                return Some((Mfn(first as u64), clean));
            }
            // Give the run back without its offline frames (which already do not count
            // as free), and try again.
            let mut from = first;
            for i in first..=first + r {
                if i == first + r || t.offline.get(i) {
                    dealloc_range(&mut self.buddy, from, i);
                    if i < first + r {
                        t.free.set(i, false);
                        t.clean.set(i, false);
                        t.withheld.set(i, true);
                    }
                    from = i + 1;
                }
            }
        }
    }

    /// Gives back `count` frames from [`Frames::take`], withholding offline ones. `zeroed`:
    /// the caller has just zeroed every one of them (they are marked clean).
    fn give(&mut self, first: Mfn, count: u64, zeroed: bool) {
        let rounded = count.next_power_of_two();
        let (f, r) = (first.0 as usize, rounded as usize);
        let Some(t) = self.tracking.as_mut() else {
            self.buddy.dealloc(f, count as usize);
            self.free += rounded;
            return;
        };
        // Only the frames the caller zeroed: `count`, not the rounded run.
        for i in f..f + r {
            t.clean
                .set(i, zeroed && i < f + count as usize && !t.offline.get(i));
        }
        if !t.offline.any(f, f + r) {
            for i in f..f + r {
                t.free.set(i, true);
            }
            self.buddy.dealloc(f, count as usize);
            self.free += rounded;
            return;
        }
        let mut from = f;
        for i in f..=f + r {
            if i == f + r || t.offline.get(i) {
                dealloc_range(&mut self.buddy, from, i);
                if i < f + r {
                    t.withheld.set(i, true);
                }
                from = i + 1;
            } else {
                t.free.set(i, true);
                self.free += 1;
            }
        }
    }
}

/// Gives `from..to` back to the buddy allocator as naturally aligned power-of-two blocks
/// (its `dealloc` merges each with its buddy; a block must be aligned to its size).
fn dealloc_range(buddy: &mut FrameAllocator<ORDER>, mut from: usize, to: usize) {
    while from < to {
        let align = if from == 0 {
            1 << (ORDER - 1)
        } else {
            1usize << from.trailing_zeros()
        };
        let mut size = align.min(1 << (ORDER - 1));
        while size > to - from {
            size /= 2;
        }
        buddy.dealloc(from, size);
        from += size;
    }
}

/// Starts the offlining bits for frames `0..frames`. Called once, at boot, after the heap
/// has grown (the bits take three bits a frame from it) and before any domain exists.
/// Without the memory the allocator works as before and every offline request is refused.
pub fn track(frames: u64) {
    let Ok(frames) = usize::try_from(frames) else {
        return;
    };
    let words = frames.div_ceil(64);
    let bits = || {
        let mut v = Vec::new();
        // alloc: boot only, fallible.
        v.try_reserve_exact(words).ok()?;
        v.resize(words, 0u64);
        Some(Bits(v))
    };
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let (Some(free), Some(offline), Some(withheld), Some(clean), Ok(())) = (
        bits(),
        bits(),
        bits(),
        bits(),
        blocks.try_reserve_exact(TRACK_BLOCKS),
    ) else {
        log::warn!(target: "mm", "no memory for the offlining bits: memory offlining disabled");
        return;
    };
    let mut t = Tracking {
        free,
        offline,
        withheld,
        clean,
    };
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    let mut f = FRAMES.lock();
    // Learn which frames are free by taking every free block out, largest first (so that
    // nothing is split), and giving them all back.
    'orders: for order in (0..ORDER).rev() {
        while blocks.len() < TRACK_BLOCKS {
            let Some(first) = f.buddy.alloc(1 << order) else {
                continue 'orders;
            };
            blocks.push((first, 1 << order));
        }
        break;
    }
    for &(first, size) in &blocks {
        for i in first..first + size {
            t.free.set(i, true);
        }
        f.buddy.dealloc(first, size);
    }
    f.tracking = Some(t);
}

/// What [`offline`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The frame is free (or already withheld): it is out of use from now on.
    Free,
    /// In use: marked, it is withheld when freed.
    InUse,
}

/// Marks `mfn` offline: the allocator never hands it out again (until [`online`]). Says
/// whether it was free. `None` without the offlining bits (nothing changes).
pub fn offline(mfn: Mfn) -> Option<Found> {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    let mut f = FRAMES.lock();
    let f = &mut *f;
    let t = f.tracking.as_mut()?;
    let i = usize::try_from(mfn.0).ok()?;
    if i / 64 >= t.free.0.len() {
        return None;
    }
    if t.offline.get(i) {
        return Some(if t.free.get(i) || t.withheld.get(i) {
            Found::Free
        } else {
            Found::InUse
        });
    }
    t.offline.set(i, true);
    if t.free.get(i) {
        f.free -= 1;
        Some(Found::Free)
    } else {
        Some(Found::InUse)
    }
}

/// Undoes [`offline`]: a withheld frame goes back to the allocator; a free one counts as
/// free again; one in use is freed normally from now on.
pub fn online(mfn: Mfn) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    let mut f = FRAMES.lock();
    let f = &mut *f;
    let Some(t) = f.tracking.as_mut() else {
        return;
    };
    let Ok(i) = usize::try_from(mfn.0) else {
        return;
    };
    if !t.offline.get(i) {
        return;
    }
    t.offline.set(i, false);
    if t.withheld.get(i) {
        t.withheld.set(i, false);
        t.free.set(i, true);
        f.buddy.dealloc(i, 1);
        f.free += 1;
    } else if t.free.get(i) {
        f.free += 1;
    }
}

/// Whether `mfn` is withheld or would be (offline, not in use): for checks.
pub fn is_offline(mfn: Mfn) -> bool {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    let f = FRAMES.lock();
    let i = mfn.0 as usize;
    f.tracking.as_ref().is_some_and(|t| t.offline.get(i))
}

/// Hands the page-aligned `range` to the allocator.
pub fn add_free(range: PhysRange) {
    let (start, end) = (range.start / PAGE_SIZE, range.end / PAGE_SIZE);
    if start >= end {
        return;
    }
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    let mut f = FRAMES.lock();
    f.buddy.add_frame(start as usize, end as usize);
    if let Some(t) = f.tracking.as_mut() {
        for i in start as usize..end as usize {
            t.free.set(i, true);
        }
    }
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
    alloc_contiguous_zeroed(1)
}

/// [`alloc_contiguous`] with every frame zero: those not known clean are zeroed here,
/// outside the allocator's lock (nothing else refers to a frame just taken).
#[cfg(target_os = "none")]
pub fn alloc_contiguous_zeroed(count: u64) -> Option<Mfn> {
    let (first, clean) = {
        let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
        FRAMES.lock().take_noting_clean(count)?
    };
    for k in 0..count {
        if k >= 64 || clean & (1 << k) == 0 {
            super::physmem::zero(Mfn(first.0 + k));
        }
    }
    Some(first)
}

/// Returns `count` frames from [`alloc_contiguous`] that the caller has just zeroed, and
/// that nothing else can reach (no mapping, no reference): the next zeroing allocation
/// need not clear them again.
pub fn free_zeroed(first: Mfn, count: u64) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    FRAMES.lock().give(first, count, true);
}

/// Zeroes every free frame not yet known to be zero (Xen's `bootscrub`), a run of 64
/// frames at a time under the allocator's lock; says how many frames it zeroed. Without
/// the tracking bits there is nothing to remember the work in, and it does nothing.
#[cfg(target_os = "none")]
pub fn scrub_free() -> u64 {
    const RUN: usize = 64;
    let frames = {
        let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
        FRAMES
            .lock()
            .tracking
            .as_ref()
            .map_or(0, |t| t.free.0.len() * 64)
    };
    let mut scrubbed = 0;
    for base in (0..frames).step_by(RUN) {
        let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
        let mut f = FRAMES.lock();
        let Some(t) = f.tracking.as_mut() else {
            return scrubbed;
        };
        if t.free.0.get(base / 64).is_none_or(|&w| w == 0) {
            continue;
        }
        for i in base..base + RUN {
            if t.free.get(i) && !t.clean.get(i) && !t.offline.get(i) {
                // A free frame (under the lock, it stays free): nothing refers to it.
                super::physmem::scrub(Mfn(i as u64));
                t.clean.set(i, true);
                scrubbed += 1;
            }
        }
    }
    scrubbed
}

/// `count` physically contiguous frames, aligned to `count` rounded up to a power of two.
pub fn alloc_contiguous(count: u64) -> Option<Mfn> {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    FRAMES.lock().take(count)
}

/// As [`alloc_contiguous`], but `None` at once if the allocator is in use (the heap grows
/// from here while the frame allocator itself may be allocating from the heap).
pub fn try_alloc_contiguous(count: u64) -> Option<Mfn> {
    FRAMES.try_lock()?.take(count)
}

/// Returns frames obtained from `alloc_contiguous(count)` (or `alloc` with count 1). Offline
/// frames among them are withheld.
pub fn free_contiguous(first: Mfn, count: u64) {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    FRAMES.lock().give(first, count, false);
}

/// Frames currently free (offline frames never count).
pub fn free_count() -> u64 {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
    FRAMES.lock().free
}

/// Frames ever handed to the allocator.
pub fn total_count() -> u64 {
    let _held = crate::lockorder::Held::new(crate::lockorder::Level::Frames);
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

        // Offlining. Not before tracking.
        assert_eq!(offline(Mfn(0x300)), None);
        let held = alloc().unwrap();
        track(0x400);
        assert_eq!(offline(Mfn(0x500)), None, "beyond the bits");
        assert_eq!(offline(held), Some(Found::InUse));
        online(held);
        // A free frame: out of the count at once, never handed out, even inside a run.
        let victim = Mfn(0x2A7);
        assert_eq!(offline(victim), Some(Found::Free));
        assert_eq!(offline(victim), Some(Found::Free), "again");
        let free = free_count();
        assert_eq!(free, before - 2);
        let mut got = Vec::new();
        while let Some(m) = alloc() {
            assert_ne!(m, victim, "offline frame handed out");
            got.push(m);
        }
        assert_eq!(
            got.len() as u64,
            free,
            "every other frame still allocatable"
        );
        assert_eq!(free_count(), 0);
        for &m in &got {
            free_contiguous(m, 1);
        }
        let run = alloc_contiguous(256).unwrap();
        assert!(!(run.0..run.0 + 256).contains(&victim.0));
        free_contiguous(run, 256);
        assert_eq!(free_count(), free);
        // Online: back in the allocator.
        online(victim);
        assert_eq!(free_count(), free + 1);
        // An allocated frame offlined is withheld when freed; online gives it back.
        assert_eq!(offline(held), Some(Found::InUse));
        free_contiguous(held, 1);
        assert_eq!(free_count(), free + 1, "withheld, not free");
        assert_eq!(offline(held), Some(Found::Free), "withheld counts as out");
        online(held);
        assert_eq!(free_count(), before);
        assert_eq!(
            alloc_contiguous(512).map(|m| m.0),
            Some(0x200),
            "all merged again"
        );
        free_contiguous(Mfn(0x200), 512);

        // Clean bits: set only by a zeroed free, for the frames given; cleared by taking,
        // by a plain free, and never set on an offline frame.
        let take = |n| FRAMES.lock().take_noting_clean(n).unwrap();
        let (a, clean) = take(4);
        assert_eq!(clean, 0, "boot memory is not known clean");
        free_zeroed(a, 3);
        let (b, clean) = take(4);
        assert_eq!(
            (b, clean),
            (a, 0b0111),
            "the three zeroed, not the rounded fourth"
        );
        let (c, clean) = take(4);
        assert_ne!(c, a);
        assert_eq!(clean, 0);
        free_contiguous(b, 4);
        let (d, clean) = take(4);
        assert_eq!((d, clean), (a, 0), "taking cleared the bits");
        free_zeroed(d, 4);
        let (e, clean) = take(4);
        assert_eq!((e, clean), (a, 0b1111));
        free_zeroed(e, 4);
        // A plain free of the same frames (after taking them) forgets.
        let (f, _) = take(4);
        free_contiguous(f, 4);
        assert_eq!(take(4), (a, 0));
        // Offline: never clean.
        assert_eq!(offline(Mfn(a.0 + 1)), Some(Found::InUse));
        free_zeroed(a, 4);
        online(Mfn(a.0 + 1));
        let (g, clean) = take(4);
        assert_eq!(g, a);
        assert_eq!(
            clean & 0b0010,
            0,
            "the offlined frame was withheld, not clean"
        );
        free_contiguous(g, 4);
        free_contiguous(c, 4);
    }
}
