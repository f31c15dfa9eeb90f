//! `wrpt`: writable page tables (`vm_assist(VMASST_CMD_enable, VMASST_TYPE_writable_pagetables)`,
//! Xen's `ptwr`). The test maps a fresh frame in a window, finds the L1 entry behind it (in a
//! bootstrap table, mapped read-only) and writes that entry directly:
//!
//! 1. `vm_assist` refuses an assist Xenia lacks (`EINVAL`) and an unknown command (`ENOSYS`).
//! 2. Assist off: the write is a #PF at the entry, which stays as it was.
//! 3. Assist on: `mov [entry], reg` maps another frame (read through the window after a
//!    flush), `xchg` swaps back and returns the old entry, `lock cmpxchg` with a wrong expected
//!    value writes nothing, loads `rax` and clears ZF, with the right one writes and sets ZF,
//!    `mov qword [entry], 0` unmaps.
//! 4. Still a #PF, the entry unchanged: an entry mapping the L1 itself writable, an entry for
//!    a frame not the domain's, a 4-byte write, an `add`, a write to the L2 above.
//! 5. Red team: `mov [entry], rax` at 8 bytes before the end of the address space (the
//!    emulation's read of the instruction must not run past it): emulated.
//! 6. Assist off again: a #PF again; the frame table is consistent.

use guest_abi::hypercall::{HYPERVISOR_VM_ASSIST, hypercall2};
use guest_abi::memory::{UVMF_INVLPG, UVMF_LOCAL};
use guest_abi::memory::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES};
use xenia_guest_rt::check::{Checks, Ret, error};
use xenia_guest_rt::mm::{self, Window, pte};
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::{PAGE_FAULT, Probe};

const PATTERN_A: u64 = 0xA1A1_0000_0000_0000;
const PATTERN_B: u64 = 0xB2B2_0000_0000_0000;

/// Accessed and dirty: the hardware may set them on an entry between our writes.
const AD: u64 = pte::ACCESSED | pte::DIRTY;

fn vm_assist(cmd: u32, ty: u32) -> i64 {
    // SAFETY: vm_assist changes how the hypervisor answers this domain's page faults only.
    unsafe { hypercall2(HYPERVISOR_VM_ASSIST, u64::from(cmd), u64::from(ty)) }
}

/// A fresh frame filled with `pattern | word index`.
fn filled(pattern: u64) -> u64 {
    let Some((_, mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame"));
    };
    // SAFETY: slot 1 is this test's; the frame is fresh, mapped nowhere else.
    let w = unsafe { Window::writable(1, mfn) }
        .unwrap_or_else(|r| error(format_args!("window on {mfn:#x}: {}", Ret(r))));
    for i in 0..512 {
        w.write(8 * i, pattern | i);
    }
    if w.close() != 0 {
        error(format_args!("closing the fill window"));
    }
    mfn
}

/// `mov qword ptr [at], value`, expecting a #PF if anything.
fn mov(at: u64, value: u64) -> Probe {
    // SAFETY: `at` is an L1 entry of the window slot this test owns (or the L2 entry above
    // it, written with the value it has): a write that is emulated changes only that mapping.
    unsafe { probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}"; a = in(reg) at, v = in(reg) value) }
}

fn faulted_at(p: &Probe, at: u64) -> bool {
    p.caught.as_ref().is_some_and(|e| e.cr2 == at)
}

pub fn run() -> ! {
    let mut c = Checks::new();

    // 1. Arguments.
    let r = vm_assist(VMASST_CMD_ENABLE, 7);
    c.check(
        "vm_assist of an assist Xenia lacks: EINVAL",
        r == -22,
        format_args!("returned {}", Ret(r)),
    );
    let r = vm_assist(9, VMASST_TYPE_WRITABLE_PAGETABLES);
    c.check(
        "vm_assist with an unknown command: ENOSYS",
        r == -38,
        format_args!("returned {}", Ret(r)),
    );

    let (a, b) = (filled(PATTERN_A), filled(PATTERN_B));
    // SAFETY: slot 0 is this test's; the frame is fresh.
    let w = unsafe { Window::read_only(0, a) }
        .unwrap_or_else(|r| error(format_args!("window on {a:#x}: {}", Ret(r))));
    let [_, _, Some(upper), Some(leaf)] = mm::walk(w.va()) else {
        error(format_args!("no L1 entry for the window at {:#x}", w.va()));
    };
    let (Some(l1_va), Some(l2_va)) = (mm::region_va(leaf.table), mm::region_va(upper.table)) else {
        error(format_args!(
            "the window's L1 and L2 are not in the bootstrap region"
        ));
    };
    let entry_va = l1_va + 8 * leaf.index as u64;
    let upper_va = l2_va + 8 * upper.index as u64;
    let entry = || mm::read_entry(leaf.table, leaf.index).unwrap_or(u64::MAX);
    let pte_a = leaf.entry;
    let pte_b = pte::entry(b, pte::PRESENT);

    // 2. Assist off.
    let p = mov(entry_va, pte_b);
    c.check(
        "assist off: writing the L1 entry is a #PF at it, and changes nothing",
        faulted_at(&p, entry_va) && entry() & !AD == pte_a & !AD,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );

    // 3. Assist on.
    let r = vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES);
    c.check(
        "vm_assist(enable, writable_pagetables)",
        r == 0,
        format_args!("returned {}", Ret(r)),
    );
    let p = mov(entry_va, pte_b);
    let now = entry();
    // SAFETY: the window is this test's and nothing references it.
    let flushed = unsafe { w.set(now, UVMF_INVLPG | UVMF_LOCAL) };
    let seen = w.read(8);
    c.check(
        "mov [entry], reg: emulated, the window maps the other frame",
        p.caught.is_none() && now == pte_b && flushed == 0 && seen == PATTERN_B | 1,
        format_args!(
            "caught {:?}, entry {now:#x}, flush {}, word read {seen:#x}",
            p.caught.map(|e| e.cr2),
            Ret(flushed)
        ),
    );

    let mut v = pte_a;
    // SAFETY: as for `mov`: the window's own entry.
    let p = unsafe {
        probe!(PAGE_FAULT, "xchg qword ptr [{a}], {v}"; a = in(reg) entry_va, v = inout(reg) v)
    };
    c.check(
        "xchg [entry], reg: emulated, the register gets the old entry",
        p.caught.is_none() && v & !AD == pte_b && entry() == pte_a,
        format_args!(
            "caught {:?}, register {v:#x}, entry {:#x}",
            p.caught.map(|e| e.cr2),
            entry()
        ),
    );

    let mut rax = 0x1234_u64;
    let zf: u8;
    // SAFETY: as for `mov`.
    let p = unsafe {
        probe!(PAGE_FAULT, "lock cmpxchg qword ptr [{a}], {n}", "sete {z}";
            a = in(reg) entry_va, n = in(reg) pte_b, inout("rax") rax, z = out(reg_byte) zf)
    };
    let now = entry();
    c.check(
        "lock cmpxchg with the wrong expected value: no write, rax loaded, ZF clear",
        p.caught.is_none() && zf == 0 && rax & !AD == pte_a & !AD && now & !AD == pte_a & !AD,
        format_args!(
            "caught {:?}, ZF {zf}, rax {rax:#x}, entry {now:#x}",
            p.caught.map(|e| e.cr2)
        ),
    );
    let mut rax = now;
    let zf: u8;
    // SAFETY: as for `mov`.
    let p = unsafe {
        probe!(PAGE_FAULT, "lock cmpxchg qword ptr [{a}], {n}", "sete {z}";
            a = in(reg) entry_va, n = in(reg) pte_b, inout("rax") rax, z = out(reg_byte) zf)
    };
    c.check(
        "lock cmpxchg with the right expected value: written, ZF set",
        p.caught.is_none() && zf == 1 && entry() == pte_b,
        format_args!(
            "caught {:?}, ZF {zf}, rax {rax:#x}, entry {:#x}",
            p.caught.map(|e| e.cr2),
            entry()
        ),
    );

    // SAFETY: as for `mov`.
    let p = unsafe { probe!(PAGE_FAULT, "mov qword ptr [{a}], 0"; a = in(reg) entry_va) };
    c.check(
        "mov qword [entry], 0: emulated, the entry is empty",
        p.caught.is_none() && entry() == 0,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );
    let p = mov(entry_va, pte_a);
    c.check(
        "mov [entry], reg puts the window's frame back",
        p.caught.is_none() && entry() == pte_a,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );

    // 4. Refusals.
    let before = entry();
    for (what, value) in [
        (
            "an entry mapping the L1 itself writable",
            pte::entry(leaf.table, pte::PRESENT | pte::RW),
        ),
        (
            "an entry for frame 1, not the domain's",
            pte::entry(1, pte::PRESENT),
        ),
    ] {
        let p = mov(entry_va, value);
        c.check(
            format_args!("{what}: a #PF, the entry unchanged"),
            faulted_at(&p, entry_va) && entry() == before,
            format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
        );
    }
    // SAFETY: as for `mov`; refused, this changes nothing.
    let p = unsafe {
        probe!(PAGE_FAULT, "mov dword ptr [{a}], {v:e}"; a = in(reg) entry_va, v = in(reg) 0u64)
    };
    c.check(
        "a 4-byte write: a #PF, the entry unchanged",
        faulted_at(&p, entry_va) && entry() == before,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );
    // SAFETY: as for `mov`; refused, this changes nothing.
    let p = unsafe { probe!(PAGE_FAULT, "add qword ptr [{a}], 0"; a = in(reg) entry_va) };
    c.check(
        "an add: a #PF, the entry unchanged",
        faulted_at(&p, entry_va) && entry() == before,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );
    let p = mov(upper_va, upper.entry);
    c.check(
        "a write to the L2 above: a #PF (only L1 tables are emulated)",
        faulted_at(&p, upper_va),
        format_args!("caught {:?}", p.caught.map(|e| e.cr2)),
    );

    // 5. The instruction at the top of the address space.
    top_of_address_space(&mut c, entry_va, pte_b, &entry);
    let p = mov(entry_va, before);
    c.check(
        "mov [entry], reg puts the entry back after the top-of-memory write",
        p.caught.is_none() && entry() == before,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );

    // 6. Off again.
    let r = vm_assist(VMASST_CMD_DISABLE, VMASST_TYPE_WRITABLE_PAGETABLES);
    let p = mov(entry_va, pte_b);
    c.check(
        "assist off again: a #PF, the entry unchanged",
        r == 0 && faulted_at(&p, entry_va) && entry() == before,
        format_args!(
            "disable returned {}, caught {:?}, entry {:#x}",
            Ret(r),
            p.caught.map(|e| e.cr2),
            entry()
        ),
    );
    let closed = w.close();
    let ret = mm::check_frame_table();
    c.check(
        "the window closes and the frame table is consistent",
        closed == 0 && ret == 0,
        format_args!("close {}, check {}", Ret(closed), Ret(ret)),
    );
    c.finish()
}

/// The last page of the address space (upper half, guest range).
const TOP_PAGE: u64 = 0xFFFF_FFFF_FFFF_F000;

/// 5.: `mov [rdi], rax; jmp rcx` at `TOP_PAGE + 0xFF8`, writing `value` to the L1 entry at
/// `entry_va`: the emulation reads 8 bytes to the end of the page and must not look past
/// the end of the address space (in a build with overflow checks that was a hypervisor panic).
fn top_of_address_space(c: &mut Checks, entry_va: u64, value: u64, entry: &dyn Fn() -> u64) {
    let Some((_, mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame"));
    };
    // SAFETY: the page is outside everything Rust code uses.
    let m = unsafe { mm::map_page(TOP_PAGE, pte::entry(mfn, pte::PRESENT | pte::RW)) }
        .unwrap_or_else(|(step, r)| {
            error(format_args!("mapping {TOP_PAGE:#x}: {step}: {}", Ret(r)))
        });
    let code = TOP_PAGE + 0xFF8;
    // SAFETY: the page was just mapped writable (and executable) for this test.
    unsafe {
        core::ptr::write_volatile(code as *mut [u8; 5], [0x48, 0x89, 0x07, 0xFF, 0xE1]);
    }
    // SAFETY: the code writes the window's own L1 entry (as `mov`) and jumps back to the
    // probe's end; a #PF delivered there resumes at the same place.
    let p = unsafe {
        probe!(PAGE_FAULT, "lea rcx, [rip + 3f]", "jmp {t}";
            t = in(reg) code, in("rdi") entry_va, in("rax") value, out("rcx") _)
    };
    c.check(
        "mov [entry], rax at the last 8 bytes of the address space: emulated",
        p.caught.is_none() && entry() == value,
        format_args!("caught {:?}, entry {:#x}", p.caught.map(|e| e.cr2), entry()),
    );
    // SAFETY: nothing runs there any more.
    if let Err((step, r)) = unsafe { mm::unmap_page(&m) } {
        error(format_args!("unmapping {TOP_PAGE:#x}: {step}: {}", Ret(r)));
    }
}
