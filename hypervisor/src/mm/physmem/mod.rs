//! Physical memory as the hypervisor touches it (DESIGN.md §4): the one module outside
//! `arch/` that turns machine frames into memory. Its functions read, write, zero or copy a
//! frame through the direct map, or view a structure of atomics in one; its [`heap`] turns
//! runs of frames into the Rust heap (the global allocator). Everything else names frames
//! by [`Mfn`] and calls these functions; no other code outside `arch/` dereferences a
//! physical address or holds an `unsafe` block.
//!
//! # What the functions guarantee, and what they leave to the caller
//!
//! Every function here is safe to call with any frame: it refuses (panics on) a frame the
//! direct map does not cover, and a frame that holds the hypervisor's own Rust objects (the
//! image, with its statics, boot heap and boot stacks, and every run of frames the heap
//! took, which [`note_heap_run`] records). What remains is raw memory nothing in Rust
//! borrows: guest frames, page tables, `shared_info`, grant frames, the M2P, guest roots.
//! Bytes are only ever *copied* in or out (never handed out as `&mut [u8]`), because a
//! guest may write the same frame at the same time; the only references handed out are to
//! structures made of atomics ([`Atomics`]), where concurrent writes are the protocol.
//!
//! Whether a domain may have a frame read or written is not this module's question: the
//! frame table answers it (ownership, type, references) before a caller comes here.

pub mod heap;

use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

use super::{Mfn, PAGE_SIZE};
use crate::arch::x86_64::layout::phys_to_virt;

/// 64-bit words (page-table entries) in a frame.
pub const WORDS: usize = (PAGE_SIZE / 8) as usize;
const WORDS_PER_FRAME: usize = WORDS;

/// Most runs of frames the heap may take (each at least one page; the heap grows in 2 MiB
/// steps, so this covers 2 GiB of heap at that step). Growth beyond it is refused.
const MAX_HEAP_RUNS: usize = 1024;

/// The heap's runs, as `first_mfn << 20 | pages` (a run is at most 2^20 pages), 0 = unused.
static HEAP_RUNS: [AtomicU64; MAX_HEAP_RUNS] = [const { AtomicU64::new(0) }; MAX_HEAP_RUNS];

unsafe extern "C" {
    static __image_phys_start: u8;
    static __image_phys_end: u8;
}

/// Frames per region of [`HEAP_REGIONS`] (2 MiB).
const REGION_FRAMES_SHIFT: u32 = 9;
/// Regions [`HEAP_REGIONS`] covers: the first 64 GiB of physical memory (frames above are
/// always checked against every run).
const REGIONS: usize = 32 * 1024;

/// A bit per 2 MiB region of physical memory, set once some heap run has a frame there
/// (before the run is recorded, and never cleared: the heap does not give frames back). A
/// frame in a region whose bit is clear is no heap frame, which every access of guest memory
/// then learns with one load instead of a scan of the runs (11 runs, about 180 instructions
/// per access, measured under the benchmark kernel).
static HEAP_REGIONS: [AtomicU64; REGIONS / 64] = [const { AtomicU64::new(0) }; REGIONS / 64];

/// Regions that hold heap frames get a bit per frame (512 bits), so that guest memory in the
/// same 2 MiB region as a heap run is told from it with two loads instead of a scan of the
/// runs (which a guest access paid ~160 instructions for once the heap shared regions with
/// guest memory). [`REGION_MASK_OF`] names each region's mask (its index + 1; 0: none, in
/// which case a set [`HEAP_REGIONS`] bit means the runs are scanned, as before).
const REGION_MASKS: usize = 512;
static REGION_MASK_OF: [AtomicU16; REGIONS] = [const { AtomicU16::new(0) }; REGIONS];
static REGION_MASK: [[AtomicU64; 8]; REGION_MASKS] =
    [const { [const { AtomicU64::new(0) }; 8] }; REGION_MASKS];
static REGION_MASKS_USED: AtomicUsize = AtomicUsize::new(0);

/// Sets the per-frame bits of frames `first..=last` (one region's, `region`) in its mask,
/// taking a mask for the region if it has none and one is left.
fn mark_region_frames(region: usize, first: u64, last: u64) {
    let Some(slot) = REGION_MASK_OF.get(region) else {
        return;
    };
    let mut index = slot.load(Ordering::Acquire);
    if index == 0 {
        let taken = REGION_MASKS_USED.fetch_add(1, Ordering::AcqRel);
        if taken >= REGION_MASKS {
            REGION_MASKS_USED.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        index = taken as u16 + 1;
        slot.store(index, Ordering::Release);
    }
    let mask = &REGION_MASK[usize::from(index) - 1];
    for frame in first..=last {
        let bit = (frame & 511) as usize;
        mask[bit / 64].fetch_or(1 << (bit % 64), Ordering::AcqRel);
    }
}

/// How many slots of [`HEAP_RUNS`] are taken (the check scans only those: a handful in
/// practice, since the heap grows in large steps).
static HEAP_RUN_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Records that the heap took `pages` frames from `first` on (before it uses them). `false`
/// when the record is full: the heap must not take the run then.
pub fn note_heap_run(first: Mfn, pages: u64) -> bool {
    if pages == 0 || pages >= 1 << 20 {
        return false;
    }
    let slot = HEAP_RUN_COUNT.fetch_add(1, Ordering::AcqRel);
    if slot >= MAX_HEAP_RUNS {
        HEAP_RUN_COUNT.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    let last = first.0 + pages - 1;
    for region in (first.0 >> REGION_FRAMES_SHIFT)..=(last >> REGION_FRAMES_SHIFT) {
        // The frame bits first: a reader that sees the region's bit finds them.
        if let Ok(r) = usize::try_from(region) {
            let lo = first.0.max(region << REGION_FRAMES_SHIFT);
            let hi = last.min(((region + 1) << REGION_FRAMES_SHIFT) - 1);
            mark_region_frames(r, lo, hi);
        }
        if let Some(word) = usize::try_from(region)
            .ok()
            .and_then(|r| HEAP_REGIONS.get(r / 64))
        {
            word.fetch_or(1 << (region % 64), Ordering::AcqRel);
        }
    }
    HEAP_RUNS[slot].store((first.0 << 20) | pages, Ordering::Release);
    true
}

/// Whether `mfn` holds Rust objects of the hypervisor (the image or a heap run).
fn hypervisor_memory(mfn: Mfn) -> bool {
    let phys = mfn.phys();
    let image = (&raw const __image_phys_start) as u64..(&raw const __image_phys_end) as u64;
    // The image symbols are physical addresses (the linker script's load addresses).
    if image.contains(&phys) {
        return true;
    }
    let region = mfn.0 >> REGION_FRAMES_SHIFT;
    if let Some(word) = usize::try_from(region)
        .ok()
        .and_then(|r| HEAP_REGIONS.get(r / 64))
        && word.load(Ordering::Acquire) & (1 << (region % 64)) == 0
    {
        return false;
    }
    if let Some(index) = usize::try_from(region)
        .ok()
        .and_then(|r| REGION_MASK_OF.get(r))
        .map(|slot| slot.load(Ordering::Acquire))
        .filter(|&index| index != 0)
    {
        let bit = (mfn.0 & 511) as usize;
        return REGION_MASK[usize::from(index) - 1][bit / 64].load(Ordering::Acquire)
            & (1 << (bit % 64))
            != 0;
    }
    let used = HEAP_RUN_COUNT.load(Ordering::Acquire).min(MAX_HEAP_RUNS);
    HEAP_RUNS[..used].iter().any(|slot| {
        let packed = slot.load(Ordering::Acquire);
        let (first, pages) = (packed >> 20, packed & ((1 << 20) - 1));
        packed != 0 && (first..first + pages).contains(&mfn.0)
    })
}

/// The direct-map address of `mfn`, after the checks every access makes. Inlined (every
/// access of guest memory and page tables comes here, hundreds a `fork` of a Linux domU):
/// the common case is decided here ([`plainly_outside_hypervisor`]), everything else by the
/// whole check, out of line.
#[inline]
fn frame_va(mfn: Mfn) -> u64 {
    if !plainly_outside_hypervisor(mfn) {
        check_frame(mfn);
    }
    phys_to_virt(mfn.phys())
}

/// The common case of [`check_frame`], with loads only: a frame of the low window (which
/// the direct map always covers), above the image, in a 2 MiB region no heap run has a
/// frame in. `false` says nothing: the whole check decides. (Issue 18, session 17: the two
/// calls of the whole check were about 30 instructions an access, 64 a Linux domU's null
/// system call.)
#[inline(always)]
fn plainly_outside_hypervisor(mfn: Mfn) -> bool {
    let phys = mfn.phys();
    let image_end = (&raw const __image_phys_end) as u64;
    let region = (mfn.0 >> REGION_FRAMES_SHIFT) as usize;
    phys >= image_end
        && phys < crate::mm::directmap::LOW_WINDOW - PAGE_SIZE
        && HEAP_REGIONS
            .get(region / 64)
            .is_some_and(|word| word.load(Ordering::Acquire) & (1 << (region % 64)) == 0)
}

/// The whole check behind [`frame_va`]: panics for a frame the direct map does not cover
/// or that holds the hypervisor's own memory.
#[inline(never)]
fn check_frame(mfn: Mfn) {
    let covered = crate::arch::x86_64::paging::direct_map_covers(mfn.phys(), PAGE_SIZE);
    if !covered || hypervisor_memory(mfn) {
        frame_va_refused(mfn, covered);
    }
}

#[cold]
#[inline(never)]
fn frame_va_refused(mfn: Mfn, covered: bool) -> ! {
    if covered {
        panic!("frame {:#x} holds the hypervisor's own memory", mfn.0);
    }
    panic!("frame {:#x} is outside the direct map", mfn.0);
}

/// Checks that `offset..offset + len` lies inside one frame.
fn in_frame(offset: usize, len: usize) {
    assert!(
        offset
            .checked_add(len)
            .is_some_and(|end| end <= PAGE_SIZE as usize),
        "access of {len} bytes at offset {offset} leaves the frame"
    );
}

/// Copies `out.len()` bytes from `mfn` at `offset`.
pub fn read(mfn: Mfn, offset: usize, out: &mut [u8]) {
    in_frame(offset, out.len());
    let va = frame_va(mfn) + offset as u64;
    // SAFETY: `va..va + len` is inside one frame the direct map covers, holding no Rust
    // object (checked above); the bytes are copied into `out`, so a concurrent guest write
    // can only change the copy's contents.
    unsafe { core::ptr::copy_nonoverlapping(va as *const u8, out.as_mut_ptr(), out.len()) }
}

/// Copies `data` into `mfn` at `offset`.
pub fn write(mfn: Mfn, offset: usize, data: &[u8]) {
    in_frame(offset, data.len());
    let va = frame_va(mfn) + offset as u64;
    // SAFETY: as in `read`; no Rust reference to the frame's bytes exists to be invalidated.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), va as *mut u8, data.len()) }
}

/// The whole of `mfn` as 512 words (a page table), copied in one go.
pub fn read_table(mfn: Mfn) -> [u64; WORDS] {
    let va = frame_va(mfn) as *const [u64; WORDS];
    // SAFETY: one whole covered frame holding no Rust object, page-aligned; copied out.
    unsafe { core::ptr::read_volatile(va) }
}

/// Sets the whole of `mfn` from 512 words (a page table the hypervisor owns).
pub fn write_table(mfn: Mfn, words: &[u64; WORDS]) {
    let va = frame_va(mfn) as *mut [u64; WORDS];
    // SAFETY: as in `read_table`; no Rust reference to the frame exists to be invalidated.
    unsafe { core::ptr::write_volatile(va, *words) }
}

/// Word `index` of `mfn` (a page-table entry), read once.
#[inline]
pub fn read_u64(mfn: Mfn, index: usize) -> u64 {
    assert!(index < WORDS_PER_FRAME, "word {index} is outside a frame");
    let va = frame_va(mfn) as *const u64;
    // SAFETY: an aligned word inside a covered frame holding no Rust object; volatile, since
    // the value is checked after the read and must not be read twice.
    unsafe { core::ptr::read_volatile(va.add(index)) }
}

/// Sets word `index` of `mfn` (a page-table entry) with one store.
pub fn write_u64(mfn: Mfn, index: usize, value: u64) {
    assert!(index < WORDS_PER_FRAME, "word {index} is outside a frame");
    let va = frame_va(mfn) as *mut u64;
    // SAFETY: as in `read_u64`; one aligned store, so the CPU's page walker never sees a
    // torn entry.
    unsafe { core::ptr::write_volatile(va.add(index), value) }
}

/// Writes `words` into `mfn` from word `index` on (a bounce frame: a few aligned stores, no
/// byte copy).
#[inline(always)]
pub fn write_u64s<const N: usize>(mfn: Mfn, index: usize, words: &[u64; N]) {
    assert!(
        index
            .checked_add(N)
            .is_some_and(|end| end <= WORDS_PER_FRAME),
        "words {index}..+{N} leave the frame"
    );
    let va = frame_va(mfn) as *mut u64;
    for (i, &w) in words.iter().enumerate() {
        // SAFETY: as in `write_u64`; `index + i` is below `WORDS_PER_FRAME` (checked above).
        unsafe { core::ptr::write_volatile(va.add(index + i), w) }
    }
}

/// Words `index..index + out.len()` of `mfn` (page-table entries), each read once: one
/// direct-map check for the lot (a table's validation reads all 512).
pub fn read_u64s(mfn: Mfn, index: usize, out: &mut [u64]) {
    assert!(
        index
            .checked_add(out.len())
            .is_some_and(|end| end <= WORDS_PER_FRAME),
        "words {index}..+{} leave the frame",
        out.len()
    );
    let va = frame_va(mfn) as *const u64;
    for (i, o) in out.iter_mut().enumerate() {
        // SAFETY: as in `read_u64`; `index + i` is below `WORDS_PER_FRAME` (checked above).
        *o = unsafe { core::ptr::read_volatile(va.add(index + i)) };
    }
}

/// Words `index..index + N` of `mfn`, each read once (an `iret_context`, an `mmuext_op`
/// list: a few words whose count is known at the call, read without a loop's bookkeeping).
#[inline(always)]
pub fn read_u64_array<const N: usize>(mfn: Mfn, index: usize) -> [u64; N] {
    assert!(
        index
            .checked_add(N)
            .is_some_and(|end| end <= WORDS_PER_FRAME),
        "words {index}..+{N} leave the frame"
    );
    let va = frame_va(mfn) as *const u64;
    // SAFETY: as in `read_u64`; `index + i` is below `WORDS_PER_FRAME` (checked above).
    core::array::from_fn(|i| unsafe { core::ptr::read_volatile(va.add(index + i)) })
}

/// The words of `mfn` from word `from` on that are not zero, in order, as `(index, value)`
/// pairs, as many as `out` holds: how many were put there, and the word to go on from (the
/// frame's word count at its end). A page table's entries in use, for its validation and
/// devalidation: the zero words are skipped by `repe scasq`, one string step a word (most
/// of a table is empty), and the frame is checked once for the whole scan. Each word found
/// is read once more, volatile, for its value.
pub fn nonzero_words(mfn: Mfn, from: usize, out: &mut [(usize, u64)]) -> (usize, usize) {
    let base = frame_va(mfn);
    let mut n = 0;
    let mut next = from;
    while next < WORDS_PER_FRAME && n < out.len() {
        let mut at = base + 8 * next as u64;
        let mut left = (WORDS_PER_FRAME - next) as u64;
        let found: u8;
        // SAFETY: `repe scasq` reads at most `left` aligned words from `at` on, all inside
        // the one covered frame `frame_va` checked (`next` is below `WORDS_PER_FRAME`), which
        // holds no Rust object; it writes only the registers named. The direction flag is
        // clear, as the ABI requires at every call.
        unsafe {
            core::arch::asm!(
                "repe scasq",
                "setne {found}",
                found = out(reg_byte) found,
                inout("rdi") at,
                inout("rcx") left,
                in("rax") 0u64,
                options(nostack, readonly),
            );
        }
        let _ = left;
        if found == 0 {
            return (n, WORDS_PER_FRAME);
        }
        // `rdi` stops one word past the word that differed.
        let index = ((at - base) / 8 - 1) as usize;
        // SAFETY: as in `read_u64`: `index` is below `WORDS_PER_FRAME` (the scan stayed in
        // the frame).
        let value = unsafe { core::ptr::read_volatile((base as *const u64).add(index)) };
        if let Some(slot) = out.get_mut(n) {
            *slot = (index, value);
        }
        n += 1;
        next = index + 1;
    }
    (n, next)
}

/// Fills `mfn` with zeroes through non-temporal stores (Xen's `clear_page_sse2`): for bulk
/// scrubbing (every free frame at boot, a destroyed domain's memory), which should not push
/// what the caches hold for running code out for lines nobody reads soon.
pub fn scrub(mfn: Mfn) {
    let va = frame_va(mfn);
    // SAFETY: the stores cover exactly `va..va + 4096`, one whole covered frame holding no
    // Rust object; `sfence` orders them before anything that hands the frame out.
    unsafe {
        core::arch::asm!(
            "2:",
            "movnti [{p}], {z}",
            "movnti [{p} + 8], {z}",
            "movnti [{p} + 16], {z}",
            "movnti [{p} + 24], {z}",
            "movnti [{p} + 32], {z}",
            "movnti [{p} + 40], {z}",
            "movnti [{p} + 48], {z}",
            "movnti [{p} + 56], {z}",
            "add {p}, 64",
            "sub {n:e}, 1",
            "jnz 2b",
            "sfence",
            p = inout(reg) va => _,
            n = inout(reg) PAGE_SIZE / 64 => _,
            z = in(reg) 0u64,
            options(nostack),
        );
    }
}

/// Fills `mfn` with zeroes.
pub fn zero(mfn: Mfn) {
    let va = frame_va(mfn);
    // SAFETY: one whole covered frame holding no Rust object.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, PAGE_SIZE as usize) }
}

/// Copies `len` bytes from `src` at `src_offset` to `dst` at `dst_offset`; the two ranges may
/// be the same frame and may overlap.
pub fn copy(src: Mfn, src_offset: usize, dst: Mfn, dst_offset: usize, len: usize) {
    in_frame(src_offset, len);
    in_frame(dst_offset, len);
    let from = frame_va(src) + src_offset as u64;
    let to = frame_va(dst) + dst_offset as u64;
    // SAFETY: both ranges lie inside covered frames holding no Rust object; `copy` allows
    // overlap.
    unsafe { core::ptr::copy(from as *const u8, to as *mut u8, len) }
}

/// Word `index` of `mfn` as an atomic, for a table the hypervisor writes while guests read
/// it (the M2P). The caller keeps the frame for that purpose for the rest of the run.
pub fn atomic_u64(mfn: Mfn, index: usize) -> &'static AtomicU64 {
    assert!(index < WORDS_PER_FRAME, "word {index} is outside a frame");
    let va = frame_va(mfn) + 8 * index as u64;
    // SAFETY: an aligned word inside a covered frame holding no Rust object; it is only ever
    // accessed atomically or volatilely, never through a `&mut`.
    unsafe { AtomicU64::from_ptr(va as *mut u64) }
}

/// Structures made only of atomics, which may be viewed in place in a frame that a guest
/// writes at the same time (`shared_info`, grant-table frames, the M2P).
///
/// # Safety
/// Implement only for types of at most one page whose every field is an atomic integer
/// (any bit pattern is a value, and concurrent access through atomics is defined) and whose
/// alignment is at most a page's.
pub unsafe trait Atomics {}

// SAFETY: atomics only (guest-abi's layout), one page.
unsafe impl Atomics for guest_abi::shared_info::SharedInfo {}
// SAFETY: an array of AtomicU32 filling one page.
unsafe impl Atomics for crate::grant::EntryFrame {}
// SAFETY: 512 AtomicU64, one page.
unsafe impl Atomics for [AtomicU64; WORDS_PER_FRAME] {}
// SAFETY: atomics only (guest-abi's layout), 64 bytes.
unsafe impl Atomics for guest_abi::shared_info::VcpuInfo {}

const _: () = {
    assert!(size_of::<guest_abi::shared_info::SharedInfo>() <= PAGE_SIZE as usize);
    assert!(size_of::<crate::grant::EntryFrame>() <= PAGE_SIZE as usize);
};

/// The `T` of atomics at byte `offset` of `mfn` (a `vcpu_info` the guest placed in its own
/// page with `VCPUOP_register_vcpu_info`): `None` unless it lies wholly inside the frame at
/// an offset aligned for `T`. As for [`atomics`], the caller keeps the frame held for as
/// long as it uses the view.
pub fn atomics_at<T: Atomics>(mfn: Mfn, offset: usize) -> Option<&'static T> {
    let end = offset.checked_add(size_of::<T>())?;
    if end > PAGE_SIZE as usize || !offset.is_multiple_of(core::mem::align_of::<T>()) {
        return None;
    }
    let va = frame_va(mfn) + offset as u64;
    // SAFETY: `T` is atomics only (the trait's contract), it fits in the covered frame at
    // this offset and the address is aligned for it (both checked above); the frame holds no
    // Rust object.
    Some(unsafe { &*(va as *const T) })
}

/// A view this module made ([`atomics`], [`atomics_at`]), kept for later: the fast trap path
/// reads the running vCPU's `vcpu_info` through one without the checks again
/// (`guest::fast`). The only way in is [`ViewCell::set`] with a `&'static T` (which only this
/// module's checked views make of raw memory); whoever sets it keeps the frame held for as
/// long as it is set, as for the view itself.
#[repr(transparent)]
pub struct ViewCell<T: Atomics + 'static> {
    at: AtomicU64,
    _view: core::marker::PhantomData<&'static T>,
}

impl<T: Atomics + 'static> ViewCell<T> {
    pub const fn new() -> ViewCell<T> {
        ViewCell {
            at: AtomicU64::new(0),
            _view: core::marker::PhantomData,
        }
    }

    pub fn set(&self, view: Option<&'static T>) {
        let at = view.map_or(0, |v| core::ptr::from_ref(v) as u64);
        self.at.store(at, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<&'static T> {
        let at = self.at.load(Ordering::Relaxed);
        // SAFETY: a non-zero value was stored by `set` from a `&'static T`, which stays valid
        // (the direct map never unmaps; `T` is atomics only, so shared access is defined).
        (at != 0).then(|| unsafe { &*(at as *const T) })
    }
}

impl<T: Atomics + 'static> Default for ViewCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// `mfn` viewed as a `T` of atomics. The reference never dangles (the direct map maps the
/// frame for the hypervisor's whole run); the caller keeps the frame allocated to its
/// purpose for as long as it uses the view (a `hold_for_writes`, for frames a domain owns).
pub fn atomics<T: Atomics>(mfn: Mfn) -> &'static T {
    let va = frame_va(mfn);
    // SAFETY: `T` is atomics only and fits in the frame (the trait's contract), the frame is
    // covered and holds no Rust object, and a page-aligned address suits any such `T`.
    unsafe { &*(va as *const T) }
}
