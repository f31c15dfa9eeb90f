//! The kernel's own GDT in force (`set_gdt`), as Linux's `xen_load_gdt_boot` gives it: a
//! selector only its table has, a return to its own kernel code selector (Linux's
//! `__KERNEL_CS`, RPL 0 in the frame), the failsafe callback when a data selector it holds
//! goes away, and descriptor tables Xen refuses.

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use guest_abi::callback as cb;
use guest_abi::hypercall as nr;
use guest_abi::trap::IretContext;

use super::kernel_stack;

use super::{Mem, VEC_FAILSAFE, addr, check, hypercall, recorded, run, write_u64, xp_k_iret};

/// Linux's 64-bit GDT layout (DPL 0 kernel entries, which Xen raises to 3).
pub const LINUX_GDT: [u64; 7] = [
    0,
    0x00cf_9b00_0000_ffff, // KERNEL32_CS
    0x00af_9b00_0000_ffff, // KERNEL_CS (DPL 0)
    0x00cf_9300_0000_ffff, // KERNEL_DS (DPL 0)
    0x00cf_fb00_0000_ffff, // USER32_CS
    0x00cf_f300_0000_ffff, // USER_DS
    0x00af_fb00_0000_ffff, // USER_CS
];
/// A descriptor's DPL 3 bits.
pub const DPL3: u64 = 3 << 45;
/// Entry 9: a data segment (DPL 3, present, limit 0x12345 bytes) that Xenia's own GDT page
/// does not have, so `lsl` on its selector tells whose table is in force.
const MARK_INDEX: u64 = 9;
const MARK_DESC: u64 = 0x0001_F300_0000_2345;
const MARK_LIMIT: u32 = 0x12345;
const MARK_SEL: u16 = (MARK_INDEX as u16) << 3 | 3;
/// Linux's `__KERNEL_CS` and `__KERNEL_DS`.
const KERNEL_CS: u16 = 0x10;
const KERNEL_DS: u16 = 0x18;

global_asm!(
    ".text",
    ".globl xp_k_selectors",
    // rax = cs << 16 | ss, then #UD (the stub records rax).
    "xp_k_selectors:",
    "    mov eax, ss",
    "    mov ecx, cs",
    "    shl ecx, 16",
    "    or eax, ecx",
    "    ud2",
);

unsafe extern "C" {
    fn xp_k_selectors();
}

static FS_MA: AtomicU64 = AtomicU64::new(0);
static FS_SHARED: AtomicU64 = AtomicU64::new(0);
static FS_LOADED: AtomicU32 = AtomicU32::new(0);
static FS_GONE: AtomicI64 = AtomicI64::new(1);
static FS_TIMER: AtomicI64 = AtomicI64::new(1);

/// Loads DS with entry 9, takes entry 9 away, and blocks (events unmasked, a periodic timer
/// to wake it) until the failsafe stub resumes `run`'s caller; returns only if it never
/// comes (bounded).
extern "C" fn failsafe_body() {
    let shared = FS_SHARED.load(Ordering::Relaxed);
    set_ds(MARK_SEL);
    FS_LOADED.store(u32::from(ds()), Ordering::Relaxed);
    // Nothing pending, so that the block waits for the timer (the stubs leave the events of
    // the checks before pending): the upcall flag, the selector word, the ports.
    // SAFETY: vCPU 0's vcpu_info (byte 0 upcall pending, byte 8 the selector word) and the
    // pending bitmap (byte 2048) are in this domain's shared_info page, mapped; the
    // hypervisor updates them atomically too.
    unsafe {
        core::ptr::write_volatile(shared as *mut u8, 0);
        (*((shared + 8) as *const AtomicU64)).store(0, Ordering::SeqCst);
        for i in 0..8 {
            (*((shared + 2048 + 8 * i) as *const AtomicU64)).store(0, Ordering::SeqCst);
        }
    }
    let period = guest_abi::vcpu::VcpuSetPeriodicTimer {
        period_ns: 20_000_000,
    };
    let t = hypercall(
        nr::HYPERVISOR_VCPU_OP,
        [
            u64::from(guest_abi::vcpu::VCPUOP_SET_PERIODIC_TIMER),
            0,
            &raw const period as u64,
            0,
            0,
        ],
    );
    FS_TIMER.store(t, Ordering::Relaxed);
    FS_GONE.store(
        update_descriptor(FS_MA.load(Ordering::Relaxed), 0),
        Ordering::Relaxed,
    );
    for _ in 0..100 {
        // SAFETY: as above (byte 1: the event mask).
        unsafe { core::ptr::write_volatile((shared + 1) as *mut u8, 0) };
        hypercall(
            nr::HYPERVISOR_SCHED_OP,
            [u64::from(guest_abi::sched::SCHEDOP_BLOCK), 0, 0, 0, 0],
        );
    }
}

/// `lsl` of `sel` from this kernel (ring 3): the segment's limit, if the table in force has
/// a descriptor it may see there.
pub fn lsl(sel: u16) -> Option<u32> {
    let limit: u32;
    let ok: u8;
    // SAFETY: `lsl` only reads the descriptor table and sets ZF.
    unsafe {
        asm!(
            "xor {r:e}, {r:e}",
            "lsl {r:e}, {s:e}",
            "setz {ok}",
            r = out(reg) limit,
            s = in(reg) u32::from(sel),
            ok = out(reg_byte) ok,
            options(nostack, readonly),
        )
    };
    (ok != 0).then_some(limit)
}

/// This kernel's CS.
pub fn cs() -> u16 {
    let v: u16;
    // SAFETY: reading CS has no side effect.
    unsafe { asm!("mov {0:x}, cs", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn ds() -> u16 {
    let v: u16;
    // SAFETY: as `cs`.
    unsafe { asm!("mov {0:x}, ds", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn set_ds(sel: u16) {
    // SAFETY: the selector is null or one this kernel's GDT or LDT gives as a DPL-3 data
    // segment; in 64-bit mode DS's base and limit are not used, so nothing of the
    // kernel's memory access changes.
    unsafe { asm!("mov ds, {0:x}", in(reg) sel, options(nostack, preserves_flags)) };
}

pub fn remap(va: u64, mfn: u64, writable: bool) -> i64 {
    use super::{PTE_P, PTE_RW, PTE_U};
    let rw = if writable { PTE_RW } else { 0 };
    hypercall(
        nr::HYPERVISOR_UPDATE_VA_MAPPING,
        [
            va,
            mfn << 12 | PTE_P | PTE_U | rw,
            guest_abi::memory::UVMF_INVLPG,
            0,
            0,
        ],
    )
}

fn set_gdt(frames: &[u64], entries: u64) -> i64 {
    hypercall(
        nr::HYPERVISOR_SET_GDT,
        [frames.as_ptr() as u64, entries, 0, 0, 0],
    )
}

fn update_descriptor(ma: u64, desc: u64) -> i64 {
    hypercall(nr::HYPERVISOR_UPDATE_DESCRIPTOR, [ma, desc, 0, 0, 0])
}

fn set_ldt(base: u64, entries: u32) -> i64 {
    let op = guest_abi::memory::MmuextOp {
        cmd: guest_abi::memory::MMUEXT_SET_LDT,
        arg1: base,
        arg2: u64::from(entries),
    };
    hypercall(
        nr::HYPERVISOR_MMUEXT_OP,
        [
            &raw const op as u64,
            1,
            0,
            u64::from(guest_abi::types::DOMID_SELF),
            0,
        ],
    )
}

/// An LDT of its own (`MMUEXT_SET_LDT`): refused while its page is writable, unaligned,
/// too long, non-canonical, unmapped or holding a call gate (`gate_page`); then a selector
/// with TI set reaches its descriptor; then removed.
pub fn ldt_checks(mem: &Mem, page: u64, gate_page: u64) {
    const LDT_MARK: u64 = 0x0000_F300_0000_6789;
    const LDT_SEL: u16 = (1 << 3) | 4 | 3;
    for i in 0..512 {
        write_u64(page + i * 8, 0);
    }
    write_u64(page + 8, LDT_MARK);
    let refused = [
        ("writable", set_ldt(page, 2)),
        ("unaligned", set_ldt(page + 8, 2)),
        ("too long", set_ldt(page, 8193)),
        ("non-canonical", set_ldt(0x8000_0000_0000_0000, 1)),
        ("unmapped", set_ldt(0x7000_0000_0000, 1)),
        ("call gate", set_ldt(gate_page, 8)),
    ];
    let mut wrong = 0;
    for (i, (name, r)) in refused.iter().enumerate() {
        if *r != -22 {
            say!("xenpv: set_ldt {name}: {r}");
            wrong |= 1 << i;
        }
    }
    let ro = remap(page, mem.mfn_of(page), false);
    let set = set_ldt(page, 2);
    let limit = lsl(LDT_SEL);
    set_ds(LDT_SEL);
    let loaded = ds();
    set_ds(0);
    let cleared = set_ldt(0, 0);
    let after = lsl(LDT_SEL);
    check(
        "own_ldt",
        wrong == 0
            && ro == 0
            && set == 0
            && limit == Some(0x6789)
            && loaded == LDT_SEL
            && cleared == 0
            && after.is_none(),
        format_args!(
            "refusals wrong {wrong:#b}, remap {ro}, set_ldt {set}, lsl {limit:x?}, ds {loaded:#x}, \
             removed {cleared}, lsl after {after:x?}"
        ),
    );
}

/// The section. `shared` is shared_info (vCPU 0's vcpu_info opens it); `page` and `spare`
/// are free padding pages; `table` is a page-table page of
/// the kernel's (the user L4).
pub fn run_checks(mem: &Mem, shared: u64, page: u64, spare: u64, table: u64) {
    let before = lsl(MARK_SEL);
    for i in 0..512 {
        write_u64(page + i * 8, 0);
        write_u64(spare + i * 8, 0);
    }
    for (i, d) in LINUX_GDT.iter().enumerate() {
        write_u64(page + 8 * i as u64, *d);
    }
    write_u64(page + 8 * MARK_INDEX, MARK_DESC);
    let mfn = mem.mfn_of(page);
    // Hostile first: a frame mapped writable, one not the domain's, too many entries.
    let writable = set_gdt(&[mfn], 16);
    let foreign = set_gdt(&[0xF_FFFF_FFFF], 16);
    let too_many = set_gdt(&[mfn], 14 * 512 + 1);
    let ro = remap(page, mfn, false);
    let set = set_gdt(&[mfn], 16);
    // SAFETY: the page is this kernel's, read-only now; the hypervisor wrote its fix-ups.
    let fixed = unsafe { core::ptr::read_volatile((page + 16) as *const u64) };
    let after = lsl(MARK_SEL);
    check(
        "own_gdt_in_force",
        before.is_none()
            && writable == -22
            && foreign == -22
            && too_many == -22
            && ro == 0
            && set == 0
            && fixed == LINUX_GDT[2] | DPL3
            && after == Some(MARK_LIMIT),
        format_args!(
            "lsl {MARK_SEL:#x} before {before:x?} after {after:x?}; set_gdt writable {writable}, \
             foreign {foreign}, too many {too_many}, good {set} (remap {ro}); entry 2 {fixed:#x}"
        ),
    );

    // HYPERVISOR_iret to Linux's __KERNEL_CS/__KERNEL_DS with RPL 0: kernel mode, CS 0x13
    // and SS 0x1b of its own table.
    let ctx = IretContext {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: 0,
        rip: addr(xp_k_selectors),
        cs: u64::from(KERNEL_CS),
        rflags: 2,
        rsp: kernel_stack(),
        ss: u64::from(KERNEL_DS),
    };
    let v = run(xp_k_iret, &raw const ctx as u64, 0);
    let (w, rax) = recorded();
    check(
        "iret_to_own_kernel_cs",
        v == 6 && rax == 0x13 << 16 | 0x1b && w[3] & 0xFFFF == 0x10 && w[6] == 0x1b,
        format_args!("vector {v:#x}, cs:ss {rax:#x}, frame {:x?}", &w[..7]),
    );

    // The failsafe callback: DS holds entry 9, which goes away (update_descriptor), then this
    // vCPU blocks; when it is switched in again DS cannot be loaded: Xen's failsafe frame.
    let reg = cb::CallbackRegister {
        callback_type: cb::CALLBACKTYPE_FAILSAFE,
        flags: cb::CALLBACKF_MASK_EVENTS,
        address: addr(super::xp_failsafe),
    };
    let r = hypercall(
        nr::HYPERVISOR_CALLBACK_OP,
        [
            u64::from(cb::CALLBACKOP_REGISTER),
            &raw const reg as u64,
            0,
            0,
            0,
        ],
    );
    // The whole sequence runs under `run`, whose recovery point the failsafe stub resumes:
    // the vCPU may be switched out and in (and so get the callback) at any moment after
    // the descriptor went away, not only in the block.
    FS_MA.store((mfn << 12) | (MARK_INDEX * 8), Ordering::Relaxed);
    FS_SHARED.store(shared, Ordering::Relaxed);
    let v = run(failsafe_body, 0, 0);
    hypercall(
        nr::HYPERVISOR_VCPU_OP,
        [
            u64::from(guest_abi::vcpu::VCPUOP_STOP_PERIODIC_TIMER),
            0,
            0,
            0,
            0,
        ],
    );
    let loaded = FS_LOADED.load(Ordering::Relaxed) as u16;
    // The callback may come on the way back from `update_descriptor` itself (the vCPU
    // switched out and in before its return reached the kernel): then its answer was never
    // stored (1), and the descriptor in the page says whether it was done.
    let gone = FS_GONE.load(Ordering::Relaxed);
    // SAFETY: the GDT page is this kernel's, mapped read-only.
    let entry = unsafe { core::ptr::read_volatile((page + 8 * MARK_INDEX) as *const u64) };
    let t = FS_TIMER.load(Ordering::Relaxed);
    let (w, _) = recorded();
    let ds_after = ds();
    check(
        "failsafe_callback",
        r == 0
            && loaded == MARK_SEL
            && (gone == 0 || gone == 1)
            && entry == 0
            && t == 0
            && v == VEC_FAILSAFE
            && w[2] == u64::from(MARK_SEL)
            && w[7] & 0xFFFF == u64::from(super::FLAT_KERNEL_CS64 & !3)
            && ds_after == 0,
        format_args!(
            "callback_op {r}, ds {loaded:#x}, update_descriptor {gone} (entry {entry:#x}), timer {t}, vector \
             {v:#x}, frame {:x?}, ds after {ds_after:#x}",
            &w[..10]
        ),
    );

    // Descriptors Xen refuses, and one it fixes up.
    let ma = |i: u64| (mfn << 12) | (i * 8);
    let gate = (1 << 47) | DPL3 | (0xC << 40) | (0xe008 << 16);
    let tss = (1 << 47) | (0x9 << 40) | 0x67;
    let refused = [
        ("call gate", update_descriptor(ma(10), gate)),
        ("tss", update_descriptor(ma(10), tss)),
        ("unaligned", update_descriptor(ma(10) + 4, 0)),
        ("page table", update_descriptor(mem.mfn_of(table) << 12, 0)),
        ("foreign frame", update_descriptor(0xF_FFFF_FFFF << 12, 0)),
    ];
    let dpl0_code = update_descriptor(ma(11), LINUX_GDT[2]);
    // SAFETY: as above.
    let stored = unsafe { core::ptr::read_volatile((page + 88) as *const u64) };
    let mut wrong = 0;
    for (i, (name, r)) in refused.iter().enumerate() {
        if *r != -22 {
            say!("xenpv: update_descriptor {name}: {r}");
            wrong |= 1 << i;
        }
    }
    // A GDT page with a call gate, read-only (the spare page).
    write_u64(spare + 8 * 3, gate);
    let ro2 = remap(spare, mem.mfn_of(spare), false);
    let gate_gdt = set_gdt(&[mfn, mem.mfn_of(spare)], 1024);
    check(
        "hostile_descriptors_refused",
        wrong == 0
            && dpl0_code == 0
            && stored == LINUX_GDT[2] | DPL3
            && ro2 == 0
            && gate_gdt == -22
            && lsl(MARK_SEL).is_none(),
        format_args!(
            "wrong answers {wrong:#b}, DPL-0 code {dpl0_code} stored {stored:#x}, GDT with a \
             call gate {gate_gdt} (remap {ro2})"
        ),
    );
}
