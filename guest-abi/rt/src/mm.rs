//! Memory: the p2m list and the M2P, page-table entries and walks, fresh frames, scratch
//! windows, and the memory hypercalls as raw calls.
//!
//! Everything follows guest-abi's [`memory`](guest_abi::memory) module (Xen's direct paging):
//! page tables hold machine frame numbers, are mapped read-only to the guest once in use, and
//! change only through `mmu_update`, `update_va_mapping` and `mmuext_op`.
//!
//! - **Frames.** The builder maps pseudo-physical frames `0..`[`mapped_pages`] at
//!   `VIRT_BASE + pfn * 4096`; the frames from there to `nr_pages` are the domain's but mapped
//!   nowhere. [`fresh_frame`] hands those out, one at a time, never twice: a test that needs a
//!   page of its own (a page table, a user page, a victim) takes one.
//! - **Windows.** A frame mapped nowhere is reached through a [`Window`]: one of
//!   [`WINDOW_SLOTS`] pages at the top of the start-of-day padding (far from what
//!   [`crate::user`] uses at its bottom), remapped with `update_va_mapping` and restored to the
//!   padding's own frame when closed.
//! - **Walks.** [`walk`] reads the entries that translate an address, starting from the
//!   current base pointer ([`current_base`]); page-table frames outside the bootstrap region are
//!   read through a read-only window.
//! - **Raw calls.** The hypercall wrappers return the raw `rax` (print it with
//!   [`Ret`](crate::check::Ret)), so that tests and attacks can pass arguments the hypervisor
//!   must refuse and see exactly what it said.
//!
//! The wrappers that change mappings are `unsafe`: the caller vouches that no memory it uses
//! through Rust references is unmapped or remapped under it.

use core::arch::x86_64::__cpuid;

use guest_abi::hypercall::{
    HYPERVISOR_MEMORY_OP, HYPERVISOR_MMU_UPDATE, HYPERVISOR_MMUEXT_OP,
    HYPERVISOR_UPDATE_VA_MAPPING, hypercall2, hypercall3, hypercall4,
};
use guest_abi::layout::MACH2PHYS_VIRT_START;
use guest_abi::memory::{
    MMU_NORMAL_PT_UPDATE, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE,
    MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MemoryReservation, MmuUpdate,
    MmuextOp, UVMF_INVLPG, UVMF_LOCAL, XENMEM_CURRENT_RESERVATION, XENMEM_MAXIMUM_RESERVATION,
    XENMEM_XENIA_CHECK_FRAME_TABLE, XENMEM_XENIA_FRAME_COUNTS, XeniaFrameCounts,
};
use guest_abi::types::{DOMID_SELF, DomId, PAGE_SIZE};

use crate::boot::{VIRT_BASE, padding, start_info};
use crate::global::Global;
use crate::trap::PAGE_FAULT;

/// Size of a page, as a `u64`.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// Entries in a page table of any level (Intel SDM Vol. 3A §4.5).
pub const ENTRIES: usize = 512;
/// Xen's `INVALID_P2M_ENTRY`: a p2m slot with no frame behind it.
pub const INVALID_P2M: u64 = u64::MAX;

/// Page-table entry bits: guest-abi's one definition (Intel SDM Vol. 3A §4.5).
pub use guest_abi::pte;

/// The index of `va` in its page table at `level` (1 = L1 … 4 = L4).
pub const fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// Whether the CPU has the execute-disable bit (CPUID 0x8000_0001 EDX bit 20, Intel SDM
/// Vol. 2A, CPUID).
pub fn has_nx() -> bool {
    // `cpuid` works natively in ring 1 (porting guide); leaf 0x8000_0000 says whether the
    // extended leaf exists.
    let max = __cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && __cpuid(0x8000_0001).edx & (1 << 20) != 0
}

// ---------------------------------------------------------------------------------------------
// Frames: the p2m list, the M2P, fresh frames.

/// `start_info.nr_pages`: the length of the p2m list.
pub fn nr_pages() -> u64 {
    start_info().nr_pages
}

/// Number of pseudo-physical frames the bootstrap mappings cover (up to the end of the
/// padding).
pub fn mapped_pages() -> u64 {
    (padding().1 - VIRT_BASE) / PAGE
}

/// Where the bootstrap mappings put pseudo-physical frame `pfn` (below [`mapped_pages`]).
pub const fn pfn_va(pfn: u64) -> u64 {
    VIRT_BASE + pfn * PAGE
}

/// The machine frame behind `pfn`, from the p2m list.
pub fn p2m(pfn: u64) -> u64 {
    assert!(pfn < nr_pages(), "pfn {pfn:#x} beyond the p2m list");
    let p = (start_info().mfn_list + 8 * pfn) as *const u64;
    // SAFETY: the p2m list is mapped (writable) at mfn_list for nr_pages entries (porting
    // guide, start-of-day memory); the index was checked.
    unsafe { p.read_volatile() }
}

/// Records `mfn` as the frame behind `pfn` in the p2m list (the guest keeps the list; the
/// hypervisor never reads it after start of day).
pub fn set_p2m(pfn: u64, mfn: u64) {
    assert!(pfn < nr_pages(), "pfn {pfn:#x} beyond the p2m list");
    let p = (start_info().mfn_list + 8 * pfn) as *mut u64;
    // SAFETY: as for `p2m`; the list is the guest's own writable memory.
    unsafe { p.write_volatile(mfn) }
}

/// Whether `mfn` is in the p2m list (a linear search).
pub fn p2m_contains(mfn: u64) -> bool {
    (0..nr_pages()).any(|pfn| p2m(pfn) == mfn)
}

/// Entry `mfn` of the read-only M2P, or `None` if the table does not reach that far (the read
/// faulted).
pub fn m2p(mfn: u64) -> Option<u64> {
    let addr = MACH2PHYS_VIRT_START.checked_add(mfn.checked_mul(8)?)?;
    let value: u64;
    // SAFETY: a load from the M2P, which is mapped read-only; past its end the load faults
    // and the probe resumes after it.
    let p = unsafe {
        crate::probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) addr, v = out(reg) value)
    };
    p.caught.is_none().then_some(value)
}

/// The pseudo-physical frame of the bootstrap L4 (`pt_base`).
pub fn bootstrap_l4_pfn() -> u64 {
    (start_info().pt_base - VIRT_BASE) / PAGE
}

/// The machine frame of the bootstrap L4.
pub fn bootstrap_l4() -> u64 {
    p2m(bootstrap_l4_pfn())
}

/// The machine frames of the bootstrap page tables (`nr_pt_frames` from `pt_base`): the L4,
/// then the L3s, L2s and L1s.
pub fn bootstrap_tables() -> impl Iterator<Item = u64> {
    let first = bootstrap_l4_pfn();
    (first..first + start_info().nr_pt_frames).map(p2m)
}

/// Where the bootstrap mappings show machine frame `mfn`, if it backs a pseudo-physical frame
/// of the bootstrap region (per the M2P and the p2m list).
pub fn region_va(mfn: u64) -> Option<u64> {
    let pfn = m2p(mfn)?;
    (pfn < mapped_pages() && pfn < nr_pages() && p2m(pfn) == mfn).then(|| pfn_va(pfn))
}

/// The next fresh pseudo-physical frame (0: none taken yet). Main flow only.
static NEXT_FRESH: Global<u64> = Global::new(0);

/// A frame of the domain that no mapping uses: `(pfn, mfn)`. Frames come from the pfns past
/// the bootstrap mappings, each handed out once; `None` when they run out.
pub fn fresh_frame() -> Option<(u64, u64)> {
    let mut pfn = NEXT_FRESH.get().max(mapped_pages());
    while pfn < nr_pages() {
        let mfn = p2m(pfn);
        pfn += 1;
        if mfn != INVALID_P2M {
            NEXT_FRESH.set(pfn);
            return Some((pfn - 1, mfn));
        }
    }
    NEXT_FRESH.set(pfn);
    None
}

// ---------------------------------------------------------------------------------------------
// Raw hypercalls.

/// `mmu_update(reqs, count, done, foreigndom)` with raw arguments; returns `rax`.
///
/// # Safety
///
/// Whatever the requests change must not pull memory out from under Rust code (tests pass
/// requests the hypervisor must refuse, or changes to mappings they alone use).
pub unsafe fn mmu_update_raw(reqs: u64, count: u64, done: u64, foreigndom: u64) -> i64 {
    // SAFETY: the caller vouches for the effect; the hypervisor checks every pointer.
    unsafe { hypercall4(HYPERVISOR_MMU_UPDATE, reqs, count, done, foreigndom) }
}

/// `mmu_update` on `reqs` for the calling domain; returns `rax` and the `done` count.
///
/// # Safety
///
/// As for [`mmu_update_raw`].
pub unsafe fn mmu_update(reqs: &[MmuUpdate]) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: the requests and `done` are borrowed for the call; the caller vouches for the
    // effect.
    let ret = unsafe {
        mmu_update_raw(
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            &raw mut done as u64,
            DOMID_SELF.into(),
        )
    };
    (ret, done)
}

/// One `MMU_NORMAL_PT_UPDATE`: writes `val` to the entry at machine address `ma`.
///
/// # Safety
///
/// As for [`mmu_update_raw`].
pub unsafe fn set_entry(ma: u64, val: u64) -> i64 {
    // SAFETY: as the caller vouches.
    unsafe { mmu_update(&[MmuUpdate::new(MMU_NORMAL_PT_UPDATE, ma, val)]).0 }
}

/// `mmuext_op(ops, count, done, foreigndom)` with raw arguments; returns `rax`.
///
/// # Safety
///
/// As for [`mmu_update_raw`]: unpinning or switching base pointer must not pull memory out
/// from under Rust code.
pub unsafe fn mmuext_raw(ops: u64, count: u64, done: u64, foreigndom: u64) -> i64 {
    // SAFETY: the caller vouches for the effect; the hypervisor checks every pointer.
    unsafe { hypercall4(HYPERVISOR_MMUEXT_OP, ops, count, done, foreigndom) }
}

/// `mmuext_op` on `ops` for the calling domain; returns `rax` and the `done` count.
///
/// # Safety
///
/// As for [`mmuext_raw`].
pub unsafe fn mmuext(ops: &[MmuextOp]) -> (i64, u32) {
    let mut done: u32 = 0;
    // SAFETY: the operations and `done` are borrowed for the call; the caller vouches for the
    // effect.
    let ret = unsafe {
        mmuext_raw(
            ops.as_ptr() as u64,
            ops.len() as u64,
            &raw mut done as u64,
            DOMID_SELF.into(),
        )
    };
    if ret >= 0 && ops.iter().any(|op| op.cmd == MMUEXT_NEW_BASEPTR) {
        // The last base pointer switch of a batch that succeeded is the current one.
        if let Some(op) = ops.iter().rev().find(|op| op.cmd == MMUEXT_NEW_BASEPTR) {
            BASE.set(op.arg1);
        }
    }
    (ret, done)
}

/// One `mmuext_op` command with `arg1`; returns `rax`.
///
/// # Safety
///
/// As for [`mmuext_raw`].
pub unsafe fn mmuext_one(cmd: u32, arg1: u64) -> i64 {
    let op = MmuextOp { cmd, arg1, arg2: 0 };
    // SAFETY: as the caller vouches.
    unsafe { mmuext(&[op]).0 }
}

/// The `MMUEXT_PIN_L<level>_TABLE` command.
pub const fn pin_cmd(level: u32) -> u32 {
    match level {
        1 => MMUEXT_PIN_L1_TABLE,
        2 => MMUEXT_PIN_L2_TABLE,
        3 => MMUEXT_PIN_L3_TABLE,
        _ => MMUEXT_PIN_L4_TABLE,
    }
}

/// Pins `mfn` as a page table of `level` (1 to 4); returns `rax`.
///
/// # Safety
///
/// Pinning changes no mapping, but a frame that becomes a page table is read-only from then
/// on: the caller must not hold a writable Rust reference into it.
pub unsafe fn pin(level: u32, mfn: u64) -> i64 {
    // SAFETY: as the caller vouches.
    unsafe { mmuext_one(pin_cmd(level), mfn) }
}

/// Unpins `mfn`; returns `rax`.
///
/// # Safety
///
/// As for [`mmuext_raw`].
pub unsafe fn unpin(mfn: u64) -> i64 {
    // SAFETY: as the caller vouches.
    unsafe { mmuext_one(MMUEXT_UNPIN_TABLE, mfn) }
}

/// The base pointer (L4 machine frame) the last successful `MMUEXT_NEW_BASEPTR` through this
/// module set; 0 until then (the bootstrap L4). Main flow only.
static BASE: Global<u64> = Global::new(0);

/// Switches to the L4 in `mfn`; returns `rax`.
///
/// # Safety
///
/// Everything Rust code uses (code, stacks, statics, the pages of `start_info`) must be mapped
/// alike in the new address space.
pub unsafe fn new_baseptr(mfn: u64) -> i64 {
    // SAFETY: as the caller vouches; `mmuext` records the new base on success.
    unsafe { mmuext_one(MMUEXT_NEW_BASEPTR, mfn) }
}

/// The machine frame of the current L4 (the bootstrap L4 until [`new_baseptr`] moves it).
pub fn current_base() -> u64 {
    match BASE.get() {
        0 => bootstrap_l4(),
        mfn => mfn,
    }
}

/// `update_va_mapping(va, pte, flags)`; returns `rax`.
///
/// # Safety
///
/// As for [`guest_abi::calls::update_va_mapping`]: nothing may use the old mapping of `va`
/// through a Rust reference afterwards.
pub unsafe fn update_va(va: u64, pte: u64, flags: u64) -> i64 {
    // SAFETY: as the caller vouches.
    unsafe { hypercall3(HYPERVISOR_UPDATE_VA_MAPPING, va, pte, flags) }
}

/// `memory_op(cmd, arg)` with a raw argument; returns `rax`.
///
/// # Safety
///
/// The command's effect (freeing or adding frames) must not pull memory out from under Rust
/// code.
pub unsafe fn memory_op_raw(cmd: u32, arg: u64) -> i64 {
    // SAFETY: as the caller vouches; the hypervisor checks the pointer.
    unsafe { hypercall2(HYPERVISOR_MEMORY_OP, cmd.into(), arg) }
}

/// A reservation command (`XENMEM_{INCREASE,DECREASE}_RESERVATION`, `XENMEM_POPULATE_PHYSMAP`)
/// on `extents` (order 0) for `domid`; returns `rax` (in Xen, the number of extents done).
///
/// # Safety
///
/// As for [`memory_op_raw`]: frames being freed must not be mapped for Rust code.
pub unsafe fn reservation(cmd: u32, extents: &mut [u64], domid: DomId) -> i64 {
    let r = MemoryReservation {
        extent_start: extents.as_mut_ptr() as u64,
        nr_extents: extents.len() as u64,
        extent_order: 0,
        mem_flags: 0,
        domid,
    };
    // SAFETY: the reservation and the extent array are borrowed for the call; the caller
    // vouches for the effect.
    unsafe { memory_op_raw(cmd, &raw const r as u64) }
}

fn reservation_query(cmd: u32) -> i64 {
    let domid: DomId = DOMID_SELF;
    // SAFETY: the query only reads the domain identifier, borrowed for the call.
    unsafe { memory_op_raw(cmd, &raw const domid as u64) }
}

/// `XENMEM_current_reservation` for the calling domain; returns `rax`.
pub fn current_reservation() -> i64 {
    reservation_query(XENMEM_CURRENT_RESERVATION)
}

/// `XENMEM_maximum_reservation` for the calling domain; returns `rax`.
pub fn maximum_reservation() -> i64 {
    reservation_query(XENMEM_MAXIMUM_RESERVATION)
}

/// The Xenia extension `XENMEM_XENIA_FRAME_COUNTS`: the domain's frames by type.
pub fn frame_counts() -> Result<XeniaFrameCounts, i64> {
    let mut counts = XeniaFrameCounts::default();
    // SAFETY: the hypervisor only writes the structure, borrowed for the call.
    let ret = unsafe { memory_op_raw(XENMEM_XENIA_FRAME_COUNTS, &raw mut counts as u64) };
    if ret < 0 { Err(ret) } else { Ok(counts) }
}

/// The Xenia extension `XENMEM_XENIA_CHECK_FRAME_TABLE`: 0 when the hypervisor finds its
/// frame table consistent, `-EIO` otherwise.
pub fn check_frame_table() -> i64 {
    // SAFETY: the check takes no argument and changes nothing.
    unsafe { memory_op_raw(XENMEM_XENIA_CHECK_FRAME_TABLE, 0) }
}

// ---------------------------------------------------------------------------------------------
// Windows: scratch pages at the top of the padding.

/// Number of window slots.
pub const WINDOW_SLOTS: usize = 16;
/// The slot [`read_entry`] uses.
const READ_SLOT: usize = WINDOW_SLOTS - 1;
/// The slot [`fill_frame`] uses.
const FILL_SLOT: usize = WINDOW_SLOTS - 2;
/// Slots `0..FREE_SLOTS` are the caller's.
pub const FREE_SLOTS: usize = WINDOW_SLOTS - 2;

/// The entries the window slots had when first used (0: not yet recorded). Main flow only.
static ORIGINAL: Global<[u64; WINDOW_SLOTS]> = Global::new([0; WINDOW_SLOTS]);

/// The virtual address of window slot `slot`: the `slot + 1`-th page from the end of the
/// padding.
pub fn window_va(slot: usize) -> u64 {
    assert!(slot < WINDOW_SLOTS);
    let (start, end) = padding();
    // A domU built with no more memory than its start of day has little or no padding
    // (`StartInfo::padding_end_within`): no window then, rather than one over the stack.
    assert!(
        end - start >= (WINDOW_SLOTS as u64) * PAGE,
        "the start-of-day padding is too small for the window slots"
    );
    end - (slot as u64 + 1) * PAGE
}

/// A window slot mapped to some frame; [`Window::close`] puts the padding's own frame back.
#[must_use = "a window stays mapped until closed"]
pub struct Window {
    slot: usize,
}

impl Window {
    /// Maps window slot `slot` with entry `pte` (flushing its TLB entry). On failure returns
    /// `rax` and leaves the slot as it was.
    ///
    /// # Safety
    ///
    /// No other `Window` may use the slot.
    pub unsafe fn open(slot: usize, pte: u64) -> Result<Window, i64> {
        let va = window_va(slot);
        let mut originals = ORIGINAL.get();
        if originals[slot] == 0 {
            let current = bootstrap_l1_entry(va);
            let own = p2m((va - VIRT_BASE) / PAGE);
            originals[slot] = if current & pte::PRESENT != 0 && pte::mfn(current) == own {
                current
            } else {
                // Already moved by someone: the padding's mapping as the porting guide
                // describes it.
                pte::entry(own, pte::PRESENT | pte::RW | pte::USER)
            };
            ORIGINAL.set(originals);
        }
        // SAFETY: the slot is in the padding, which nothing but windows uses at its top; the
        // caller vouches that no other window holds it.
        let ret = unsafe { update_va(va, pte, UVMF_INVLPG | UVMF_LOCAL) };
        if ret < 0 {
            return Err(ret);
        }
        Ok(Window { slot })
    }

    /// Maps `mfn` read-write (supervisor) at `slot`.
    ///
    /// # Safety
    ///
    /// As for [`Window::open`].
    pub unsafe fn writable(slot: usize, mfn: u64) -> Result<Window, i64> {
        // SAFETY: as the caller vouches.
        unsafe { Window::open(slot, pte::entry(mfn, pte::PRESENT | pte::RW)) }
    }

    /// Maps `mfn` read-only (supervisor) at `slot`.
    ///
    /// # Safety
    ///
    /// As for [`Window::open`].
    pub unsafe fn read_only(slot: usize, mfn: u64) -> Result<Window, i64> {
        // SAFETY: as the caller vouches.
        unsafe { Window::open(slot, pte::entry(mfn, pte::PRESENT)) }
    }

    /// Its virtual address.
    pub fn va(&self) -> u64 {
        window_va(self.slot)
    }

    /// Its slot.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Remaps the window with entry `pte` and `flags` (`UVMF_*`); returns `rax`.
    ///
    /// # Safety
    ///
    /// No Rust reference into the window may be live.
    pub unsafe fn set(&self, pte: u64, flags: u64) -> i64 {
        // SAFETY: as the caller vouches; the slot is this window's.
        unsafe { update_va(self.va(), pte, flags) }
    }

    /// Reads the `u64` at `offset`.
    pub fn read(&self, offset: u64) -> u64 {
        assert!(offset < PAGE && offset.is_multiple_of(8));
        // SAFETY: the window is mapped (readable) while it exists and the offset is inside
        // it. A window remapped to something unreadable faults here, which is the caller's
        // doing.
        unsafe { ((self.va() + offset) as *const u64).read_volatile() }
    }

    /// Writes the `u64` at `offset` (the window must be writable).
    pub fn write(&self, offset: u64, value: u64) {
        assert!(offset < PAGE && offset.is_multiple_of(8));
        // SAFETY: as for `read`; the frame is one the caller mapped writable for this.
        unsafe { ((self.va() + offset) as *mut u64).write_volatile(value) }
    }

    /// Puts the padding's own frame back (flushing the TLB entry); returns `rax`.
    pub fn close(self) -> i64 {
        let original = ORIGINAL.get()[self.slot];
        // SAFETY: the slot is this window's; the padding frame it restores is free memory.
        unsafe { update_va(self.va(), original, UVMF_INVLPG | UVMF_LOCAL) }
    }
}

/// Maps `mfn` writable in a window, zeroes it, lets `fill` write entries into it, and closes
/// the window. Returns the first failing `rax`.
///
/// # Safety
///
/// The frame must be one the caller may overwrite (a fresh frame, not yet a page table).
pub unsafe fn fill_frame(mfn: u64, fill: impl FnOnce(&mut [u64; ENTRIES])) -> Result<(), i64> {
    // SAFETY: the fill slot is used only here, one window at a time.
    let w = unsafe { Window::writable(FILL_SLOT, mfn) }?;
    // SAFETY: the window maps the frame writable until closed, and nothing else refers to
    // it; a page is exactly ENTRIES u64s and page-aligned.
    let page = unsafe { &mut *(w.va() as *mut [u64; ENTRIES]) };
    page.fill(0);
    fill(page);
    match w.close() {
        ret if ret < 0 => Err(ret),
        _ => Ok(()),
    }
}

/// Zeroes frame `mfn` through a window.
///
/// # Safety
///
/// As for [`fill_frame`].
pub unsafe fn zero_frame(mfn: u64) -> Result<(), i64> {
    // SAFETY: as the caller vouches.
    unsafe { fill_frame(mfn, |_| {}) }
}

// ---------------------------------------------------------------------------------------------
// Walks.

/// Entry `index` of the page table in frame `mfn`: read where the bootstrap mappings show the
/// frame, else through a read-only window (mapped for the read only, so that no mapping of the
/// frame outlives it). `None` if the window cannot map the frame.
pub fn read_entry(mfn: u64, index: usize) -> Option<u64> {
    assert!(index < ENTRIES);
    if let Some(va) = region_va(mfn) {
        // SAFETY: the bootstrap region is mapped (page tables read-only) and the index is in
        // the page.
        return Some(unsafe { ((va + 8 * index as u64) as *const u64).read_volatile() });
    }
    // SAFETY: the read slot is used only here.
    let w = unsafe { Window::read_only(READ_SLOT, mfn) }.ok()?;
    let value = w.read(8 * index as u64);
    let _ = w.close();
    Some(value)
}

/// The L1 entry that maps `va` in the bootstrap tables (0 if there is none), read through
/// the bootstrap region only. Windows use it: every address space this module's users build
/// shares the kernel's half, and with it the padding's tables, with the bootstrap one, and
/// reading those needs no window (a walk through a window would recurse here).
fn bootstrap_l1_entry(va: u64) -> u64 {
    let mut table = bootstrap_l4();
    for level in (1..=4).rev() {
        let Some(at) = region_va(table) else {
            return 0;
        };
        // SAFETY: the bootstrap region is mapped (page tables read-only); the index is in the
        // page.
        let entry = unsafe { ((at + 8 * index(va, level) as u64) as *const u64).read_volatile() };
        if level == 1 {
            return entry;
        }
        if entry & pte::PRESENT == 0 || entry & pte::PS != 0 {
            return 0;
        }
        table = pte::mfn(entry);
    }
    0
}

/// One entry of a page table: where it is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Machine frame of the table.
    pub table: u64,
    /// Index in the table.
    pub index: usize,
    /// The entry.
    pub entry: u64,
}

impl Slot {
    /// Machine address of the entry (for `mmu_update`).
    pub const fn ma(&self) -> u64 {
        (self.table << 12) + 8 * self.index as u64
    }

    /// Whether the entry is present.
    pub const fn present(&self) -> bool {
        self.entry & pte::PRESENT != 0
    }
}

/// The entries that translate `va` in the current address space, `[L4, L3, L2, L1]`: each
/// level's entry is there when the table above pointed to a table (present, not a superpage);
/// the walk stops at the first entry that does not.
pub fn walk(va: u64) -> [Option<Slot>; 4] {
    let mut out = [None; 4];
    let mut table = current_base();
    for (i, level) in (1..=4).rev().enumerate() {
        let index = index(va, level);
        let Some(entry) = read_entry(table, index) else {
            break;
        };
        out[i] = Some(Slot {
            table,
            index,
            entry,
        });
        if entry & pte::PRESENT == 0 || (level > 1 && entry & pte::PS != 0) {
            break;
        }
        table = pte::mfn(entry);
    }
    out
}

/// A page mapped by [`map_page`], with the tables it had to create.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    /// The L1 entry that maps the page.
    pub leaf: Slot,
    /// The entries that hooked in new tables, from the top, with the new tables' frames:
    /// `(entry machine address, table mfn)`.
    pub created: [(u64, u64); 3],
    /// How many of `created` are used.
    pub n_created: usize,
}

/// Maps `va` with L1 entry `leaf` in the current address space, creating the missing L3, L2
/// and L1 tables from fresh frames (zeroed, then hooked in with `mmu_update` as
/// `P|RW|U` entries, which has the hypervisor validate them). On failure says which step
/// failed and its `rax`; tables created before the failure stay.
///
/// # Safety
///
/// `va` must not be an address Rust code uses.
pub unsafe fn map_page(va: u64, leaf: u64) -> Result<Mapping, (&'static str, i64)> {
    const TABLE: u64 = pte::PRESENT | pte::RW | pte::USER;
    let mut created = [(0, 0); 3];
    let mut n_created = 0;
    for level in (2..=4).rev() {
        let slot = walk(va)[(4 - level) as usize].ok_or(("walk", 0))?;
        if slot.present() {
            if slot.entry & pte::PS != 0 {
                return Err(("superpage in the way", 0));
            }
            continue;
        }
        let (_, mfn) = fresh_frame().ok_or(("fresh frame", 0))?;
        // SAFETY: a fresh frame, mapped nowhere.
        unsafe { zero_frame(mfn) }.map_err(|e| ("zero table", e))?;
        // SAFETY: the entry was empty, so no mapping Rust uses changes.
        let ret = unsafe { set_entry(slot.ma(), pte::entry(mfn, TABLE)) };
        if ret < 0 {
            return Err(("hook table", ret));
        }
        created[n_created] = (slot.ma(), mfn);
        n_created += 1;
    }
    let slot = walk(va)[3].ok_or(("walk to L1", 0))?;
    // SAFETY: the caller vouches that va is not used by Rust code.
    let ret = unsafe { set_entry(slot.ma(), leaf) };
    if ret < 0 {
        return Err(("leaf", ret));
    }
    Ok(Mapping {
        leaf: Slot {
            entry: leaf,
            ..slot
        },
        created,
        n_created,
    })
}

/// Undoes [`map_page`]: clears the leaf, then unhooks the tables it created, lowest first.
/// Returns the first failing step and `rax`.
///
/// # Safety
///
/// Nothing may use the page any more.
pub unsafe fn unmap_page(m: &Mapping) -> Result<(), (&'static str, i64)> {
    // SAFETY: the caller vouches that the page is unused; the entries were made by map_page.
    let ret = unsafe { set_entry(m.leaf.ma(), 0) };
    if ret < 0 {
        return Err(("clear leaf", ret));
    }
    for &(ma, _) in m.created[..m.n_created].iter().rev() {
        // SAFETY: as above; what the table mapped is gone.
        let ret = unsafe { set_entry(ma, 0) };
        if ret < 0 {
            return Err(("unhook table", ret));
        }
    }
    Ok(())
}
