//! The kernel's page tables (4-level paging, Intel SDM Vol. 3A §4.5): two address spaces that
//! share everything, the identity map of the first 4 GiB for the kernel (2 MiB pages,
//! supervisor-only; the top GiB, devices, uncached) and a user region in top-level slot 1
//! with 4 KiB pages, so that the benchmarks can write single PTEs:
//!
//! | user address | what |
//! |---|---|
//! | [`USER_BASE`] | the ring-3 bodies (`bench_user_start`..`bench_user_end`), read-only |
//! | [`USER_STACK_TOP`] − 16 KiB .. [`USER_STACK_TOP`] | the ring-3 stack |
//! | [`FAULT_BASE`] | the page-fault area: [`FAULT_PAGES`] pages, absent until touched |
//!
//! Every table is a static of atomics (shared, changed in place) written with volatile
//! 8-byte stores: the MMU reads the entries and the compiler does not see it, so a plain
//! store to a table whose address never escapes into Rust-visible memory (the batch table)
//! would be removed as dead.

use core::sync::atomic::AtomicU64;

use crate::cpu;

/// Entries per table.
pub const ENTRIES: usize = 512;
/// Page size.
pub const PAGE: u64 = 4096;
/// Entry bits (Intel SDM Vol. 3A §4.5, tables 4-15..4-20).
pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
/// 2 MiB.
const LARGE_PAGE: u64 = 1 << 21;

/// Start of the user region: top-level slot 1 (512 GiB).
pub const USER_BASE: u64 = 1 << 39;
/// Top of the ring-3 stack (four pages below it), 1 MiB into the user region.
pub const USER_STACK_TOP: u64 = USER_BASE + 0x10_4000;
const USER_STACK_PAGES: u64 = 4;
/// The page-fault area: the second 2 MiB of the user region, one L1 table.
pub const FAULT_BASE: u64 = USER_BASE + LARGE_PAGE;
/// Pages the page-fault row touches (the pv kernel's `FAULT_PAGES`).
pub const FAULT_PAGES: u64 = 256;

/// A page table.
#[repr(C, align(4096))]
pub struct Table([AtomicU64; ENTRIES]);

impl Table {
    const fn new() -> Table {
        Table([const { AtomicU64::new(0) }; ENTRIES])
    }

    /// The table's physical address (virtual = physical in this kernel).
    fn phys(&self) -> u64 {
        self.0.as_ptr() as u64
    }

    /// Writes entry `index`: one volatile 8-byte store.
    #[inline(always)]
    fn set(&self, index: usize, entry: u64) {
        // SAFETY: the pointer comes from the atomic itself (aligned, valid for the program's
        // life); one CPU and no interrupt handler writes page tables, so no store races.
        unsafe { self.0[index].as_ptr().write_volatile(entry) };
    }
}

static SPACE_A: Table = Table::new();
static SPACE_B: Table = Table::new();
static KERNEL_PDPT: Table = Table::new();
static KERNEL_PD: [Table; 4] = [const { Table::new() }; 4];
static USER_PDPT: Table = Table::new();
static USER_PD: Table = Table::new();
/// The first 2 MiB of the user region: code and stack.
static L1_CODE: Table = Table::new();
/// The page-fault area.
static L1_FAULT: Table = Table::new();
/// The table the PTE-batch row rewrites: hooked into no address space (as in the pv
/// kernel), so that its entries map nothing anyone uses.
static L1_BATCH: Table = Table::new();

core::arch::global_asm!(
    ".pushsection .bss.bench_frames, \"aw\", @nobits",
    ".balign 4096",
    "bench_user_stack: .skip {stack}",
    "bench_fault_frames: .skip {fault}",
    "bench_batch_frame: .skip 4096",
    ".popsection",
    stack = const USER_STACK_PAGES * PAGE,
    fault = const FAULT_PAGES * PAGE,
);

unsafe extern "C" {
    static bench_user_start: u8;
    static bench_user_end: u8;
    static bench_user_stack: u8;
    static bench_fault_frames: u8;
    static bench_batch_frame: u8;
}

/// Builds both address spaces and loads the first.
pub fn init() {
    for (gib, pd) in KERNEL_PD.iter().enumerate() {
        // The fourth GiB holds the local APIC and the PCI hole: uncached.
        let cache = if gib == 3 {
            CACHE_DISABLE | WRITE_THROUGH
        } else {
            0
        };
        for i in 0..ENTRIES {
            let phys = (gib * ENTRIES + i) as u64 * LARGE_PAGE;
            pd.set(i, phys | PRESENT | WRITABLE | HUGE | cache);
        }
        KERNEL_PDPT.set(gib, pd.phys() | PRESENT | WRITABLE);
    }
    let user_table = PRESENT | WRITABLE | USER;
    USER_PDPT.set(0, USER_PD.phys() | user_table);
    USER_PD.set(0, L1_CODE.phys() | user_table);
    USER_PD.set(1, L1_FAULT.phys() | user_table);

    let code = &raw const bench_user_start as u64;
    let code_end = &raw const bench_user_end as u64;
    for (i, phys) in (code..code_end).step_by(PAGE as usize).enumerate() {
        L1_CODE.set(i, phys | PRESENT | USER);
    }
    let stack = &raw const bench_user_stack as u64;
    let stack_first = ((USER_STACK_TOP - USER_BASE) / PAGE - USER_STACK_PAGES) as usize;
    for i in 0..USER_STACK_PAGES {
        L1_CODE.set(
            stack_first + i as usize,
            (stack + i * PAGE) | PRESENT | WRITABLE | USER,
        );
    }

    for space in [&SPACE_A, &SPACE_B] {
        space.set(0, KERNEL_PDPT.phys() | PRESENT | WRITABLE);
        space.set(1, USER_PDPT.phys() | user_table);
    }
    // SAFETY: SPACE_A maps the first 4 GiB one to one, like the boot tables: the kernel's
    // code, data, stacks and the boot information stay where they are.
    unsafe { cpu::write_cr3(SPACE_A.phys()) };
}

/// The user address of the ring-3 label `label` (an address in the kernel image).
pub fn user_address(label: *const u8) -> u64 {
    USER_BASE + (label as u64 - &raw const bench_user_start as u64)
}

/// The process-switch service: loads the other address space.
pub fn switch_space() {
    let other = if cpu::read_cr3() == SPACE_A.phys() {
        &SPACE_B
    } else {
        &SPACE_A
    };
    // SAFETY: both spaces have the same entries: nothing the kernel or ring 3 uses moves.
    unsafe { cpu::write_cr3(other.phys()) };
}

/// Whether the first address space is the current one.
pub fn in_space_a() -> bool {
    cpu::read_cr3() == SPACE_A.phys()
}

/// The page-fault row's resolver: maps the page of the fault area holding `addr` (present,
/// writable, user) and says whether `addr` was in the area. No `invlpg`: the entry was not
/// present, the CPU caches no translation from a not-present entry, and a change from
/// not present to present needs no invalidation (Intel SDM Vol. 3A §4.10.4.3): the retried
/// write walks the tables again.
pub fn map_fault_page(addr: u64) -> bool {
    if !(FAULT_BASE..FAULT_BASE + FAULT_PAGES * PAGE).contains(&addr) {
        return false;
    }
    let page = (addr - FAULT_BASE) / PAGE;
    let frame = &raw const bench_fault_frames as u64 + page * PAGE;
    L1_FAULT.set(page as usize, frame | PRESENT | WRITABLE | USER);
    true
}

/// Unmaps the whole fault area and flushes the TLB (not measured).
pub fn unmap_fault_area() {
    for i in 0..FAULT_PAGES as usize {
        L1_FAULT.set(i, 0);
    }
    flush();
}

/// Reloads CR3: flushes every TLB entry (no global pages).
#[inline(always)]
pub fn flush() {
    // SAFETY: the same root again: nothing moves.
    unsafe { cpu::write_cr3(cpu::read_cr3()) };
}

/// One PTE batch: all 512 entries of [`L1_BATCH`] written to map the batch frame with
/// `flags`, then one flush.
#[inline(never)]
pub fn pte_batch(flags: u64) {
    let frame = &raw const bench_batch_frame as u64;
    for i in 0..ENTRIES {
        L1_BATCH.set(i, frame | flags);
    }
    flush();
}
