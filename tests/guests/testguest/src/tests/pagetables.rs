//! `pagetables`: the kernel acts like a small OS and builds an address space for a ring-3
//! process through the page-table hypercalls, runs the process in it, resolves its page fault
//! by demand paging, and takes everything down again (guest-abi `memory`, DESIGN §4).
//!
//! Steps, one or more check lines each:
//!
//! 1. Read the domain's frame counts by type (`XENMEM_XENIA_FRAME_COUNTS`) and reservation.
//! 2. Take nine frames past the bootstrap mappings: an L4, an L3, an L2, two L1s, and the
//!    process's code, data, stack and demand-paged page. Zero each through a scratch window
//!    (`update_va_mapping` in the padding), write the tables while they are still ordinary
//!    writable pages: the L4 copies every kernel entry of the bootstrap L4 (so the kernel stays
//!    mapped) and adds slot 0, whose L3 → L2 → L1 map code at [`USER_CODE`] (read-only,
//!    executable), data at [`USER_DATA`] and stack at [`USER_STACK`] (writable, NX where the
//!    CPU has it), all with U/S set; the second L1 covers [`USER_FAULT`] and is empty.
//! 3. Pin the tables bottom-up (L1s, L2, L3, L4: pinning validates) and check the frame counts
//!    moved by exactly the new types.
//! 4. Switch to the new L4 with `MMUEXT_NEW_BASEPTR`; the kernel keeps running.
//! 5. Run the process in ring 3: it writes its stack and data, then stores a magic value at the
//!    unmapped [`USER_FAULT`]. The #PF (cr2 = that address, error code U|W) reaches the kernel,
//!    which maps a zeroed frame there with `mmu_update` on the L1 entry and returns to ring 3;
//!    the store is retried, and the process hands the value it reads back to the kernel through
//!    `int 0x80`.
//! 6. Switch back to the bootstrap L4, clear the new tables' entries in one `mmu_update` batch,
//!    unpin top-down, and check the frame counts are those of step 1, type by type.
//! 7. Give the nine frames back (`XENMEM_decrease_reservation`, with machine frame numbers as
//!    Xen takes them from PV guests), repopulate the same pfns (`XENMEM_populate_physmap`, which
//!    writes the new machine frames back into the array and sets their M2P entries), and check
//!    the reservation, the M2P, that the new frames are zeroed, and the frame counts again.
//! 8. `XENMEM_XENIA_CHECK_FRAME_TABLE` must find the frame table consistent (0).

use core::arch::global_asm;

use guest_abi::layout::is_hypervisor_l4_slot;
use guest_abi::memory::{
    MMU_NORMAL_PT_UPDATE, MmuUpdate, XENIA_FRAME_TYPES, XENMEM_DECREASE_RESERVATION,
    XENMEM_POPULATE_PHYSMAP, XeniaFrameCounts,
};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::check::{Checks, Ret, error, note};
use xenia_guest_rt::mm::{
    self, ENTRIES, INVALID_P2M, PAGE, Window,
    pte::{self, entry},
};
use xenia_guest_rt::trap::{
    Entry, ExitKind, PAGE_FAULT, SVC_EXIT, expect, set_user_fault_resolver, take_caught,
};
use xenia_guest_rt::{Global, events, user};

use super::{PF_USER, PF_WRITE};

/// Where the process's code is mapped (L4 slot 0, L3 0, L2 2, L1 0).
pub const USER_CODE: u64 = 0x40_0000;
/// Its data page.
pub const USER_DATA: u64 = 0x40_1000;
/// Its stack page (the stack grows down from `USER_STACK + PAGE`).
pub const USER_STACK: u64 = 0x40_2000;
/// The page it touches unmapped and the kernel maps on demand (L2 4, the second L1).
pub const USER_FAULT: u64 = 0x80_0000;
/// What the process stores there.
const MAGIC: u64 = 0x5AFE_C0DE_0BAD_F00D;
/// What the process writes through its stack and data.
const STACK_MARK: u64 = 0x57AC;

/// Entry flags of an upper-level table entry the process may use.
const TABLE: u64 = pte::PRESENT | pte::RW | pte::USER;

global_asm!(
    ".pushsection .text.ring3_pagetables, \"ax\", @progbits",
    // rdi = the data page, rsi = the unmapped page.
    ".globl pagetables_user_start",
    "pagetables_user_start:",
    "    mov rax, {mark}",
    "    push rax",
    "    pop rbx",
    "    mov [rdi], rbx",
    "    mov rcx, [rdi]",
    "    mov [rdi + 8], rcx",
    "    mov rax, {magic}",
    "    mov [rsi], rax",
    "    mov rdi, [rsi]",
    "    mov eax, {exit}",
    "    int 0x80",
    "    ud2",
    ".globl pagetables_user_end",
    "pagetables_user_end:",
    ".popsection",
    mark = const STACK_MARK,
    magic = const MAGIC,
    exit = const SVC_EXIT,
);

unsafe extern "C" {
    static pagetables_user_start: u8;
    static pagetables_user_end: u8;
}

/// The process's machine code.
fn program() -> &'static [u8] {
    let start = &raw const pagetables_user_start;
    let end = &raw const pagetables_user_end;
    // SAFETY: the bytes between the two labels are the assembled program in .text, which is
    // mapped and never written.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// The frames of the address space.
#[derive(Clone, Copy, Default)]
struct Frames {
    l4: u64,
    l3: u64,
    l2: u64,
    l1_code: u64,
    l1_fault: u64,
    code: u64,
    data: u64,
    stack: u64,
    fault: u64,
}

impl Frames {
    const COUNT: usize = 9;

    fn all(&self) -> [u64; Self::COUNT] {
        [
            self.l4,
            self.l3,
            self.l2,
            self.l1_code,
            self.l1_fault,
            self.code,
            self.data,
            self.stack,
            self.fault,
        ]
    }

    fn from(mfns: [u64; Self::COUNT]) -> Frames {
        let [l4, l3, l2, l1_code, l1_fault, code, data, stack, fault] = mfns;
        Frames {
            l4,
            l3,
            l2,
            l1_code,
            l1_fault,
            code,
            data,
            stack,
            fault,
        }
    }
}

// The page-fault resolver's state. RESOLVE is set by the main flow before the ring-3 run
// (machine address of the L1 entry, entry to write); the rest is written by the resolver
// during the run and read by the main flow after it.
static RESOLVE: Global<(u64, u64)> = Global::new((0, 0));
static FAULTS: Global<u32> = Global::new(0);
static FAULT_SEEN: Global<Option<Entry>> = Global::new(None);
static RESOLVE_RET: Global<i64> = Global::new(i64::MIN);

/// Demand paging: the first fault at [`USER_FAULT`] gets the prepared frame mapped there.
fn resolve(e: &Entry) -> bool {
    let (ma, val) = RESOLVE.get();
    if e.cr2 != USER_FAULT || ma == 0 {
        return false;
    }
    let n = FAULTS.get() + 1;
    FAULTS.set(n);
    FAULT_SEEN.set(Some(*e));
    if n > 1 {
        // The mapping did not take: let the run end with the fault.
        return false;
    }
    // SAFETY: the entry maps only USER_FAULT in the process's address space, which no Rust
    // code uses.
    let ret = unsafe { mm::set_entry(ma, val) };
    RESOLVE_RET.set(ret);
    ret >= 0
}

fn counts(c: &mut Checks, what: &str) -> XeniaFrameCounts {
    match mm::frame_counts() {
        Ok(n) => n,
        Err(e) => {
            c.check(
                format_args!("frame counts {what}"),
                false,
                format_args!("XENMEM_XENIA_FRAME_COUNTS returned {}", Ret(e)),
            );
            error(format_args!("cannot read the frame counts"))
        }
    }
}

fn show(n: &XeniaFrameCounts) -> impl core::fmt::Display + '_ {
    struct Show<'a>(&'a XeniaFrameCounts);
    impl core::fmt::Display for Show<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "total {}", self.0.total)?;
            for (name, n) in XENIA_FRAME_TYPES.iter().zip(self.0.by_type) {
                write!(f, " {name} {n}")?;
            }
            Ok(())
        }
    }
    Show(n)
}

fn expect_counts(c: &mut Checks, what: &str, got: &XeniaFrameCounts, want: &XeniaFrameCounts) {
    c.check(
        what,
        got == want,
        format_args!("got {}, expected {}", show(got), show(want)),
    );
}

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();

    // 1. The starting point.
    let before = counts(&mut c, "at start");
    note(format_args!("frame counts at start: {}", show(&before)));
    let reservation = mm::current_reservation();
    c.check(
        "current reservation",
        reservation > 0,
        format_args!("XENMEM_current_reservation returned {}", Ret(reservation)),
    );
    note(format_args!(
        "nr_pages {}, mapped {}, reservation {}, maximum {}",
        mm::nr_pages(),
        mm::mapped_pages(),
        Ret(reservation),
        Ret(mm::maximum_reservation())
    ));

    // 2. Frames and tables.
    let mut pfns = [0u64; Frames::COUNT];
    let mut mfns = [0u64; Frames::COUNT];
    for (pfn, mfn) in pfns.iter_mut().zip(mfns.iter_mut()) {
        let Some((p, m)) = mm::fresh_frame() else {
            error(format_args!("no frame past the bootstrap mappings"));
        };
        (*pfn, *mfn) = (p, m);
    }
    let f = Frames::from(mfns);
    build(&mut c, &f);

    // 3. Pin bottom-up.
    let mut pinned = true;
    for (level, mfn, what) in [
        (1, f.l1_code, "L1 (code)"),
        (1, f.l1_fault, "L1 (demand-paged)"),
        (2, f.l2, "L2"),
        (3, f.l3, "L3"),
        (4, f.l4, "L4"),
    ] {
        // SAFETY: the frame is one of ours, mapped nowhere writable any more.
        let ret = unsafe { mm::pin(level, mfn) };
        pinned &= c.check(
            format_args!("pin the {what} table (mfn {mfn:#x})"),
            ret == 0,
            format_args!("MMUEXT_PIN_L{level}_TABLE returned {}", Ret(ret)),
        );
    }
    if !pinned {
        error(format_args!("the new tables could not be pinned"));
    }
    let mut want = before;
    // The five tables and the two writable-mapped pages leave "none".
    want.by_type[0] -= 7;
    for (ty, n) in [(1, 2), (2, 1), (3, 1), (4, 1), (6, 2)] {
        want.by_type[ty] += n;
    }
    let after_pin = counts(&mut c, "after pinning");
    expect_counts(
        &mut c,
        "frame counts after pinning: +2 L1, +1 L2, +1 L3, +1 L4, +2 writable (data, stack)",
        &after_pin,
        &want,
    );

    // 4. Switch.
    // SAFETY: the new L4 maps the kernel's half exactly as the bootstrap L4 does (its entries
    // are copies), so code, stacks and statics stay where they are.
    let ret = unsafe { mm::new_baseptr(f.l4) };
    if !c.check(
        "switch to the new L4 (MMUEXT_NEW_BASEPTR)",
        ret == 0,
        format_args!("returned {}", Ret(ret)),
    ) {
        error(format_args!("cannot switch to the new address space"));
    }
    // SAFETY: USER_CODE is mapped (read-only, user) in the new address space; ring 1 may read
    // user pages (SMAP is clear).
    let first = unsafe { (USER_CODE as *const u64).read_volatile() };
    let mut expected_first = [0u8; 8];
    expected_first.copy_from_slice(&program()[..8]);
    c.eq_hex(
        "the new address space shows the process's code",
        first,
        u64::from_le_bytes(expected_first),
    );
    let fault_l1 = mm::walk(USER_FAULT)[3];
    c.check(
        "the demand-paged address is unmapped before the run",
        fault_l1.is_some_and(|s| s.entry == 0 && s.table == f.l1_fault),
        format_args!("walk found {fault_l1:?}"),
    );

    // 5. The process.
    run_process(&mut c, &f);

    // 6. Back, and down.
    // SAFETY: the bootstrap L4 is the address space the kernel started in.
    let ret = unsafe { mm::new_baseptr(mm::bootstrap_l4()) };
    c.check(
        "switch back to the bootstrap L4",
        ret == 0,
        format_args!("returned {}", Ret(ret)),
    );
    let l4_slot0 = mm::walk(USER_CODE)[0];
    c.check(
        "the bootstrap address space does not map the process",
        l4_slot0.is_some_and(|s| !s.present()),
        format_args!("L4 slot 0 is {l4_slot0:?}"),
    );
    tear_down(&mut c, &f);
    let after = counts(&mut c, "after tear-down");
    expect_counts(
        &mut c,
        "frame counts after tear-down equal those at start, type by type",
        &after,
        &before,
    );

    // 7. Give the frames back and take them again.
    give_back_and_repopulate(&mut c, &pfns, &f, reservation, &before);

    // 8. A batch far longer than the hypervisor's chunk: it is continued, not refused.
    long_batch(&mut c);

    // 9. The hypervisor's own view.
    let ret = mm::check_frame_table();
    c.check(
        "XENMEM_XENIA_CHECK_FRAME_TABLE finds the frame table consistent",
        ret == 0,
        format_args!("returned {}", Ret(ret)),
    );
    c.finish()
}

/// Step 2: zero the frames and write the tables and the code while they are plain pages.
fn build(c: &mut Checks, f: &Frames) {
    let nx = if mm::has_nx() { pte::NX } else { 0 };
    let bootstrap_l4 = mm::bootstrap_l4();
    let mut kernel = [0u64; ENTRIES];
    for (i, e) in kernel.iter_mut().enumerate() {
        if !is_hypervisor_l4_slot(i) {
            *e = mm::read_entry(bootstrap_l4, i).unwrap_or(0);
        }
    }
    let kernel_slots = kernel.iter().filter(|&&e| e & pte::PRESENT != 0).count();
    c.check(
        "the bootstrap L4 maps the kernel, and nothing in slot 0",
        kernel_slots > 0 && kernel[0] == 0,
        format_args!("{kernel_slots} kernel slots, slot 0 {:#x}", kernel[0]),
    );

    let code = program();
    let results = [
        fill(f.data, |_| {}),
        fill(f.stack, |_| {}),
        fill(f.fault, |_| {}),
        fill(f.l1_fault, |_| {}),
        fill(f.code, |page| {
            for (word, chunk) in page.iter_mut().zip(code.chunks(8)) {
                let mut bytes = [0u8; 8];
                bytes[..chunk.len()].copy_from_slice(chunk);
                *word = u64::from_le_bytes(bytes);
            }
        }),
        fill(f.l1_code, |t| {
            t[mm::index(USER_CODE, 1)] = entry(f.code, pte::PRESENT | pte::USER);
            t[mm::index(USER_DATA, 1)] = entry(f.data, TABLE | nx);
            t[mm::index(USER_STACK, 1)] = entry(f.stack, TABLE | nx);
        }),
        fill(f.l2, |t| {
            t[mm::index(USER_CODE, 2)] = entry(f.l1_code, TABLE);
            t[mm::index(USER_FAULT, 2)] = entry(f.l1_fault, TABLE);
        }),
        fill(f.l3, |t| t[mm::index(USER_CODE, 3)] = entry(f.l2, TABLE)),
        fill(f.l4, |t| {
            t.copy_from_slice(&kernel);
            t[mm::index(USER_CODE, 4)] = entry(f.l3, TABLE);
        }),
    ];
    let failed = results.iter().find_map(|r| r.err());
    c.check(
        format_args!(
            "zero nine fresh frames and write the tables through a scratch window (L4 {:#x}, \
             L3 {:#x}, L2 {:#x}, L1 {:#x} and {:#x})",
            f.l4, f.l3, f.l2, f.l1_code, f.l1_fault
        ),
        failed.is_none(),
        format_args!("update_va_mapping returned {}", Ret(failed.unwrap_or(0))),
    );
    if failed.is_some() {
        error(format_args!("cannot write the new tables"));
    }
}

/// Zeroes one of the nine fresh frames and lets `content` write it, through a window.
fn fill(mfn: u64, content: impl FnOnce(&mut [u64; ENTRIES])) -> Result<(), i64> {
    // SAFETY: the frames `build` fills were taken fresh for this test: mapped nowhere else
    // and no page tables yet.
    unsafe { mm::fill_frame(mfn, content) }
}

/// Step 5: the process, with demand paging.
fn run_process(c: &mut Checks, f: &Frames) {
    let l1_entry_ma = entry(f.l1_fault, 0) + 8 * mm::index(USER_FAULT, 1) as u64;
    let nx = if mm::has_nx() { pte::NX } else { 0 };
    RESOLVE.set((l1_entry_ma, entry(f.fault, TABLE | nx)));
    FAULTS.set(0);
    FAULT_SEEN.set(None);
    set_user_fault_resolver(Some(resolve));
    // An unresolved fault ends the run instead of crashing the test.
    expect(PAGE_FAULT);
    let exit = user::run_at(USER_CODE, USER_STACK + PAGE, USER_DATA, USER_FAULT);
    let _ = take_caught();
    set_user_fault_resolver(None);
    RESOLVE.set((0, 0));

    let r = &exit.entry.regs;
    c.check(
        "the process ran in ring 3 in its own address space and returned the magic via int 0x80",
        exit.kind == ExitKind::Service(0x80) && r.rdi == MAGIC,
        format_args!(
            "ended with {:?}, rdi {:#x}, rip {:#x}",
            exit.kind, r.rdi, r.rip
        ),
    );
    // SAFETY: the data page is mapped (user, writable) in the current address space.
    let data = unsafe {
        [
            (USER_DATA as *const u64).read_volatile(),
            ((USER_DATA + 8) as *const u64).read_volatile(),
        ]
    };
    c.check(
        "its writes through the stack and to the data page landed",
        data == [STACK_MARK, STACK_MARK],
        format_args!("data page holds {:#x} {:#x}", data[0], data[1]),
    );
    match FAULT_SEEN.get() {
        Some(e) => {
            c.check(
                "the #PF at the unmapped page reached the kernel: cr2 and error code U|W",
                e.cr2 == USER_FAULT
                    && e.regs.error_code == PF_USER | PF_WRITE
                    && e.regs.from_user(),
                format_args!(
                    "cr2 {:#x} error code {:#x} cs {:#x}",
                    e.cr2, e.regs.error_code, e.regs.cs
                ),
            );
        }
        None => {
            c.check(
                "the #PF at the unmapped page reached the kernel: cr2 and error code U|W",
                false,
                format_args!("no page fault was seen"),
            );
        }
    }
    c.check(
        "the kernel mapped a zeroed frame there with mmu_update on the L1 entry",
        RESOLVE_RET.get() == 0,
        format_args!("mmu_update returned {}", Ret(RESOLVE_RET.get())),
    );
    c.eq("the retried store did not fault again", FAULTS.get(), 1);
    let mut rest_zero = true;
    for i in 1..ENTRIES as u64 {
        // SAFETY: the demand-paged page is mapped (user, writable) now.
        rest_zero &= unsafe { ((USER_FAULT + 8 * i) as *const u64).read_volatile() } == 0;
    }
    // SAFETY: as above.
    let stored = unsafe { (USER_FAULT as *const u64).read_volatile() };
    c.check(
        "the demand-paged page holds the magic and zeros",
        stored == MAGIC && rest_zero,
        format_args!("first word {stored:#x}, rest zero: {rest_zero}"),
    );
}

/// Step 6 after the switch back: clear every entry the tables hold, in one batch, then unpin
/// top-down.
fn tear_down(c: &mut Checks, f: &Frames) {
    let at = |table: u64, index: usize| entry(table, 0) + 8 * index as u64;
    let mut reqs = [MmuUpdate::default(); ENTRIES + 8];
    let mut n = 0;
    let mut clear = |ma: u64| {
        reqs[n] = MmuUpdate::new(MMU_NORMAL_PT_UPDATE, ma, 0);
        n += 1;
    };
    clear(at(f.l1_fault, mm::index(USER_FAULT, 1)));
    for va in [USER_CODE, USER_DATA, USER_STACK] {
        clear(at(f.l1_code, mm::index(va, 1)));
    }
    clear(at(f.l2, mm::index(USER_CODE, 2)));
    clear(at(f.l2, mm::index(USER_FAULT, 2)));
    clear(at(f.l3, mm::index(USER_CODE, 3)));
    for i in 0..ENTRIES {
        if mm::read_entry(f.l4, i).is_some_and(|e| e != 0) {
            clear(at(f.l4, i));
        }
    }
    // SAFETY: nothing runs in the process's address space any more (the kernel is back on
    // the bootstrap L4).
    let (ret, done) = unsafe { mm::mmu_update(&reqs[..n]) };
    c.check(
        format_args!("clear the {n} entries of the new tables in one mmu_update batch"),
        ret == 0 && done as usize == n,
        format_args!("returned {}, done {done}", Ret(ret)),
    );
    let leftover = [f.l4, f.l3, f.l2, f.l1_code, f.l1_fault]
        .iter()
        .map(|&t| {
            (0..ENTRIES)
                .filter(|&i| mm::read_entry(t, i).is_some_and(|e| e != 0))
                .count()
        })
        .sum::<usize>();
    c.eq("the new tables are empty", leftover, 0);
    for (mfn, what) in [
        (f.l4, "L4"),
        (f.l3, "L3"),
        (f.l2, "L2"),
        (f.l1_code, "L1 (code)"),
        (f.l1_fault, "L1 (demand-paged)"),
    ] {
        // SAFETY: the tables are empty and no base pointer refers to them.
        let ret = unsafe { mm::unpin(mfn) };
        c.check(
            format_args!("unpin the {what} table"),
            ret == 0,
            format_args!("MMUEXT_UNPIN_TABLE returned {}", Ret(ret)),
        );
    }
}

/// Step 7: decrease_reservation, then populate_physmap of the same pfns.
fn give_back_and_repopulate(
    c: &mut Checks,
    pfns: &[u64; Frames::COUNT],
    f: &Frames,
    reservation: i64,
    before: &XeniaFrameCounts,
) {
    let n = Frames::COUNT as i64;
    let mut extents = f.all();
    // SAFETY: the frames are mapped nowhere and are no page tables any more.
    let ret = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) };
    c.check(
        "decrease_reservation frees the nine frames (extents are machine frames, as in Xen)",
        ret == n,
        format_args!("returned {}", Ret(ret)),
    );
    for &pfn in pfns {
        mm::set_p2m(pfn, INVALID_P2M);
    }
    let now = mm::current_reservation();
    c.check(
        "the reservation shrank by nine",
        now == reservation - n,
        format_args!("{} now, {} before", Ret(now), Ret(reservation)),
    );
    let stale = f
        .all()
        .iter()
        .filter(|&&mfn| mm::m2p(mfn).is_some_and(|p| pfns.contains(&p)))
        .count();
    c.eq("no M2P entry still names a freed frame's pfn", stale, 0);
    let total = counts(c, "after freeing").total;
    c.eq(
        "the domain owns nine frames fewer",
        total,
        before.total - Frames::COUNT as u64,
    );

    let mut extents = *pfns;
    // SAFETY: the pfns have no frame behind them; the new frames are mapped nowhere.
    let ret = unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut extents, DOMID_SELF) };
    c.check(
        "populate_physmap backs the nine pfns again",
        ret == n,
        format_args!("returned {}", Ret(ret)),
    );
    let done = usize::try_from(ret).unwrap_or(0).min(Frames::COUNT);
    let mut m2p_ok = true;
    let mut zeroed = true;
    for (&pfn, &mfn) in pfns.iter().zip(&extents).take(done) {
        mm::set_p2m(pfn, mfn);
        m2p_ok &= mm::m2p(mfn) == Some(pfn);
        // SAFETY: the window slot is free; the frame is a new frame of ours.
        match unsafe { Window::read_only(0, mfn) } {
            Ok(w) => {
                zeroed &= (0..PAGE).step_by(8).all(|off| w.read(off) == 0);
                let _ = w.close();
            }
            Err(_) => zeroed = false,
        }
    }
    c.check(
        "populate_physmap wrote the new machine frames back and set their M2P entries",
        done == Frames::COUNT && m2p_ok,
        format_args!("{done} done, M2P agrees: {m2p_ok}"),
    );
    c.check(
        "the new frames are zeroed",
        done > 0 && zeroed,
        format_args!("{done} frames read, all zero: {zeroed}"),
    );
    let now = mm::current_reservation();
    c.check(
        "the reservation is back where it started",
        now == reservation,
        format_args!("{} now, {} at start", Ret(now), Ret(reservation)),
    );
    let after = counts(c, "after repopulating");
    expect_counts(
        c,
        "frame counts after repopulating equal those at start",
        &after,
        before,
    );
}

/// Requests in the long batch: several times the hypervisor's chunk of 1024.
const LONG_BATCH: usize = 5000;

/// One `mmu_update` call of [`LONG_BATCH`] `MMU_MACHPHYS_UPDATE` requests, each rewriting
/// the M2P entry of the domain's first frame with its current value: all must complete
/// (`done` = count) and the entry must be unchanged.
fn long_batch(c: &mut Checks) {
    use guest_abi::memory::{MMU_MACHPHYS_UPDATE, MmuUpdate};
    static REQS: Global<[MmuUpdate; LONG_BATCH]> =
        Global::new([MmuUpdate { ptr: 0, val: 0 }; LONG_BATCH]);
    let mfn = mm::p2m(0);
    let pfn = mm::m2p(mfn).unwrap_or(0);
    // SAFETY: the test runs on one vCPU and nothing else touches REQS.
    let reqs = unsafe { &mut *REQS.as_ptr() };
    for r in reqs.iter_mut() {
        *r = MmuUpdate::new(MMU_MACHPHYS_UPDATE, mfn << 12, pfn);
    }
    // SAFETY: each request rewrites an M2P entry with the value it already has.
    let (ret, done) = unsafe { mm::mmu_update(reqs) };
    c.check(
        "an mmu_update batch of 5000 requests completes",
        ret == 0 && done as usize == LONG_BATCH,
        format_args!("returned {}, done {done}", Ret(ret)),
    );
    c.eq(
        "the M2P entry it rewrote is unchanged",
        mm::m2p(mfn),
        Some(pfn),
    );
}
