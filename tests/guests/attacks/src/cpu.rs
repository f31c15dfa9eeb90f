//! Regression attacks for the CPU-state findings of issue 10:
//!
//! - **F6**: a continued `mmu_update` batch rewrites `rdi`/`rsi`; the guest-abi primitives
//!   must say so, or an optimised caller reads a corrupted local.
//! - **F7**: `stack_switch` to the first non-canonical boundary, `SYSCALL` from ring 1,
//!   `setvcpucontext` with a kernel stack in the hypervisor's range, data segment selectors
//!   across a vCPU switch.
//! - **F3** (stops today's hypervisor): `CR0.TS` left set across a vCPU switch.
//!
//! The vCPU switches are real: the attack creates a domain whose one vCPU is runnable
//! ([`hv::runnable_domain`]) and yields to it; the domain faults on its first instruction and
//! is crashed, which `getdomaininfo` then shows (so the attack knows the switch happened).

use core::arch::{asm, global_asm};
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_abi::calls;
use guest_abi::domctl::XEN_DOMINF_SHUTDOWN;
use guest_abi::errno::Errno;
use guest_abi::hypercall::{
    HYPERVISOR_FPU_TASKSWITCH, HYPERVISOR_MMU_UPDATE, hypercall1, hypercall4,
};
use guest_abi::layout::HYPERVISOR_VIRT_START;
use guest_abi::memory::{MMU_NORMAL_PT_UPDATE, MmuUpdate};
use guest_abi::selectors::{KERNEL_CS, KERNEL_DS, KERNEL_SS, USER_CS, USER_DS};
use guest_abi::trap::{DEVICE_NOT_AVAILABLE, INVALID_OPCODE};
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::{
    self, ExitKind, Regs, SVC_COUNT, kernel_stack_top, register_syscall, set_syscall_handler,
};
use xenia_guest_rt::user::{self, Blob};

use crate::env::Env;
use crate::hv::{self, Scratch};
use crate::verdict::{Errname, Fault, Verdict};
use crate::{refused, setup_error, succeeded};

// ---------------------------------------------------------------------------------------------
// F6: argument registers across a continued batch.

/// Items in the long batch: more than one chunk of the hypervisor's continuation (it
/// continues `mmu_update` after 1024 items, issue 10 F6), so the call is continued at least
/// once.
const LONG_BATCH: usize = 1100;

/// The pointer and count the batch was issued with, kept where the compiler cannot forward
/// them from a register.
static ISSUED_PTR: AtomicU64 = AtomicU64::new(0);
static ISSUED_COUNT: AtomicU64 = AtomicU64::new(0);

/// Whether the caller still has the pointer and count it issued the batch with. Not inlined,
/// and taking them as its first two arguments, so that they travel in `rdi` and `rsi`
/// (System V): a caller whose compiler believes `rdi`/`rsi` still hold them after the
/// hypercall (the old `in("rdi")` declaration) passes the registers as the hypervisor left
/// them.
#[inline(never)]
fn issued_with(ptr: u64, count: u64) -> bool {
    ptr == ISSUED_PTR.load(Ordering::SeqCst) && count == ISSUED_COUNT.load(Ordering::SeqCst)
}

/// F6: a batch of [`LONG_BATCH`] harmless requests through guest-abi's `hypercall4` (inlined
/// here, so the compiler applies its register declaration), with a dozen live locals; then
/// the same batch through hand-written `int 0x82` that reads `rdi`/`rsi` back. The hypervisor
/// may change them (guest-abi `hypercall`: a continued batch advances them); the attack
/// checks that the wrappers tell the compiler so: the caller's values survive.
pub fn long_batch_keeps_locals(env: &Env) -> Verdict {
    let req = MmuUpdate::new(MMU_NORMAL_PT_UPDATE, env.target.ma(), env.target_entry());
    let reqs = [req; LONG_BATCH];
    let ptr = reqs.as_ptr() as u64;
    let count = LONG_BATCH as u64;
    ISSUED_PTR.store(ptr, Ordering::SeqCst);
    ISSUED_COUNT.store(count, Ordering::SeqCst);
    let locals: [u64; 12] = core::array::from_fn(|i| black_box(0x5EED_0000 + 0x1111 * i as u64));
    let mut done: u32 = 0;
    // SAFETY: every request rewrites the target entry with its current value; `done` and the
    // requests are borrowed for the call.
    let ret = unsafe {
        hypercall4(
            HYPERVISOR_MMU_UPDATE,
            ptr,
            count,
            &raw mut done as u64,
            u64::from(DOMID_SELF),
        )
    };
    let args_ok = issued_with(ptr, count);
    let locals_ok = locals
        .iter()
        .enumerate()
        .all(|(i, &v)| v == 0x5EED_0000 + 0x1111 * i as u64);
    // The evidence of what the hypervisor does to the registers, by hand.
    let (rdi, rsi, raw_ret): (u64, u64, i64);
    let mut raw_done: u32 = 0;
    // SAFETY: as above; every register the hypervisor may change is declared.
    unsafe {
        asm!(
            "int 0x82",
            inlateout("rax") HYPERVISOR_MMU_UPDATE as i64 => raw_ret,
            inlateout("rdi") ptr => rdi,
            inlateout("rsi") count => rsi,
            inlateout("rdx") &raw mut raw_done as u64 => _,
            inlateout("r10") u64::from(DOMID_SELF) => _,
            inlateout("r8") 0u64 => _,
        );
    }
    let how = format_args!(
        "{count} requests: {} done {done}; args after the call intact {args_ok}, locals \
         intact {locals_ok}; by hand {} done {raw_done}, rdi {:+} bytes, rsi {count} -> {rsi}",
        Errname(ret),
        Errname(raw_ret),
        rdi.wrapping_sub(ptr) as i64,
    );
    if ret != 0 || done as usize != LONG_BATCH || raw_ret != 0 {
        return setup_error!("{how}");
    }
    if args_ok && locals_ok {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

// ---------------------------------------------------------------------------------------------
// F7.

/// The first address past the lower canonical half (Intel SDM Vol. 1 §3.3.7.1): accepted
/// as a stack, the CPU would use it sign-extended, in the hypervisor's range.
const FIRST_NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
/// The end of the hypervisor's reserved range (guest-abi `layout`: slots 256–271).
const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;

global_asm!(
    ".pushsection .text.attacks_ring3, \"ax\", @progbits",
    // exit: SVC_EXIT (rax = 0) through int 0x80 with rdi = 0x600d.
    ".globl attacks_ring3_exit_start",
    "attacks_ring3_exit_start:",
    "    xor eax, eax",
    "    mov edi, 0x600d",
    "    int 0x80",
    "    ud2",
    ".globl attacks_ring3_exit_end",
    "attacks_ring3_exit_end:",
    ".popsection",
);

unsafe extern "C" {
    static attacks_ring3_exit_start: u8;
    static attacks_ring3_exit_end: u8;
}

/// A ring-3 round trip: ring 1 is entered on `TSS.RSP1`, so this shows which stack the
/// hypervisor loaded (a bad one stops the guest or the machine, which leaves no result line).
fn ring3_round_trip() -> bool {
    let blob = Blob::new(
        &raw const attacks_ring3_exit_start,
        &raw const attacks_ring3_exit_end,
    );
    let base = user::load(&blob);
    let exit = user::run(base, user::data(), 0);
    exit.kind == ExitKind::Service(0x80) && exit.entry.regs.rdi == 0x600d
}

/// F7: `stack_switch(KERNEL_SS, 0x0000_8000_0000_0000)` must be refused; then a ring-3 round
/// trip shows that the stack in use is still the runtime's.
pub fn stack_switch_first_non_canonical(_: &Env) -> Verdict {
    // SAFETY: ring 1 uses TSS.RSP1 only on entries from ring 3, and none happens before the
    // good stack is back (below) unless the call was refused.
    let ret = unsafe { calls::stack_switch(KERNEL_SS, FIRST_NON_CANONICAL) };
    if ret.is_ok() {
        // SAFETY: the runtime's own ring-1 stack, as at start of day.
        let _ = unsafe { calls::stack_switch(KERNEL_SS, kernel_stack_top()) };
        return succeeded!("stack_switch to {FIRST_NON_CANONICAL:#x} accepted");
    }
    let trip = ring3_round_trip();
    let how = format_args!(
        "{}, ring-3 round trip afterwards {trip}",
        Errname(Errno::encode_result(ret.map(|()| 0)))
    );
    if trip {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// What the syscall callback saw: `cs` of the frame (0: not called).
static SYSCALL_CS: AtomicU64 = AtomicU64::new(0);

/// The attack's syscall handler: records the reported `cs` and returns to ring 1 after the
/// `SYSCALL` (`rcx` holds that address), whatever ring the frame claims.
fn on_syscall(regs: &mut Regs) -> bool {
    SYSCALL_CS.store(regs.cs, Ordering::SeqCst);
    regs.cs = u64::from(KERNEL_CS);
    regs.ss = u64::from(KERNEL_SS);
    regs.rip = regs.rcx;
    true
}

/// F7: `SYSCALL` in ring 1. The hypervisor must not report it as coming from ring 3
/// (`CS = USER_CS`): `#UD` (as a CPU without SYSCALL enabled for that ring would give) or a
/// frame with the kernel's `CS` is a refusal.
pub fn syscall_from_ring1(_: &Env) -> Verdict {
    if let Err(e) = register_syscall(true) {
        return setup_error!("registering the syscall callback: {}", e.name());
    }
    SYSCALL_CS.store(0, Ordering::SeqCst);
    trap::reset_service_count();
    set_syscall_handler(Some(on_syscall));
    // SAFETY: SYSCALL from ring 1 enters the hypervisor; whatever it delivers (#UD, the
    // callback) returns to the instruction after it: the probe's recovery point or rcx.
    let p = unsafe {
        probe!(INVALID_OPCODE, "syscall";
            inout("rax") SVC_COUNT => _, out("rcx") _, out("r11") _)
    };
    set_syscall_handler(None);
    let cs = SYSCALL_CS.load(Ordering::SeqCst);
    let serviced = trap::service_count();
    let last = trap::last_service().map(|e| e.regs.cs);
    match (p.caught, cs) {
        (Some(e), 0) => refused!("{}", Fault(&e)),
        (None, cs) if cs == u64::from(USER_CS) => {
            succeeded!("reported to the syscall callback with CS = USER_CS ({cs:#x})")
        }
        (None, 0) if serviced > 0 && last == Some(u64::from(KERNEL_CS)) => {
            refused!("reported to the syscall callback from ring 1 (CS {KERNEL_CS:#x})")
        }
        (caught, cs) => succeeded!(
            "caught {:?}, callback cs {cs:#x}, services {serviced}, last cs {last:x?}",
            caught.map(|e| e.regs.vector)
        ),
    }
}

/// F7: `setvcpucontext` of a domain this guest created, with `kernel_sp` at the start and
/// near the end of the hypervisor's range: refused each time, and `getvcpucontext` shows the
/// value was not installed. The same context with a good stack is then accepted (so the
/// refusal was for the stack).
pub fn setvcpucontext_kernel_sp_in_hypervisor(_: &Env) -> Verdict {
    let d = match hv::scratch_domain() {
        Ok(d) => d,
        Err((what, r)) => return setup_error!("scratch domain: {what} {}", Errname(r)),
    };
    let bad = [HYPERVISOR_VIRT_START + 0x1000, HYPERVISOR_VIRT_END - 0x1000];
    let mut rets = [0i64; 2];
    let mut seen = [0u64; 2];
    let mut read_back = guest_abi::vcpu_context::VcpuGuestContext::new();
    for i in 0..bad.len() {
        let mut ctx = hv::scratch_context(d.l4, 0);
        ctx.kernel_sp = bad[i];
        rets[i] = hv::set_vcpu_context(d.id, &ctx);
        let got = hv::get_vcpu_context(d.id, &mut read_back);
        seen[i] = if got < 0 {
            u64::MAX
        } else {
            read_back.kernel_sp
        };
    }
    let good = hv::set_vcpu_context(d.id, &hv::scratch_context(d.l4, 0));
    let how = format_args!(
        "kernel_sp {:#x}: {}, reads back {:#x}; {:#x}: {}, reads back {:#x}; a good stack {}",
        bad[0],
        Errname(rets[0]),
        seen[0],
        bad[1],
        Errname(rets[1]),
        seen[1],
        Errname(good)
    );
    drop(d);
    if good < 0 {
        return setup_error!("{how}");
    }
    if rets.iter().all(|&r| r < 0) && !seen.iter().zip(&bad).any(|(s, b)| s == b) {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}

/// `DS` and `ES`.
fn data_segments() -> (u16, u16) {
    let (ds, es): (u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        asm!("mov {0:x}, ds", "mov {1:x}, es", out(reg) ds, out(reg) es, options(nomem, nostack))
    };
    (ds, es)
}

/// Loads `DS` and `ES` with `sel`.
fn load_data_segments(sel: u16) {
    // SAFETY: in 64-bit mode DS and ES take no part in addressing (Intel SDM Vol. 1 §3.4.2.1);
    // every selector loaded here is null or a data segment ring 1 may load.
    unsafe { asm!("mov ds, {0:x}", "mov es, {0:x}", in(reg) sel, options(nomem, nostack)) };
}

/// Whether `a` is the selector `b` as far as the CPU is concerned: equal, or both null
/// (index 0, table GDT), whose RPL an `iretq` to ring 1 may clear (Intel SDM Vol. 2A, IRET:
/// a null data segment selector is loaded as null).
fn same_selector(a: u16, b: u16) -> bool {
    a == b || (a & !3 == 0 && b & !3 == 0)
}

/// Yields until `d` has run (it crashes on its first instruction), a bounded number of times.
fn yield_to(d: &Scratch) -> bool {
    /// Yields before giving up. On one pCPU one is enough for the credit scheduler (a yield
    /// puts the caller behind every runnable vCPU). On several, `d` may run on another pCPU
    /// instead, which takes the world lock after this one's yields: then the check is only
    /// that DS/ES survive the yield, and the switch on one pCPU is the `-smp 1` run's.
    const TRIES: usize = 2000;
    for _ in 0..TRIES {
        let _ = calls::sched_yield();
        if hv::domain_info(d.id).is_ok_and(|i| i.flags & XEN_DOMINF_SHUTDOWN != 0) {
            return true;
        }
    }
    false
}

/// F7: `DS`/`ES` loaded with each of the kernel's and the user's data selectors and null
/// variants, then a switch to another domain's vCPU and back: they must be as left.
pub fn data_segments_across_switch(_: &Env) -> Verdict {
    let (ds0, es0) = data_segments();
    let mut wrong = None;
    let mut switched = 0;
    for sel in [KERNEL_DS, USER_DS, 0, 1, 3] {
        let d = match hv::runnable_domain() {
            Ok(d) => d,
            Err((what, r)) => {
                load_data_segments(ds0);
                return setup_error!("runnable domain: {what} {}", Errname(r));
            }
        };
        load_data_segments(sel);
        let ran = yield_to(&d);
        let (ds, es) = data_segments();
        load_data_segments(ds0);
        // SAFETY: as in load_data_segments.
        unsafe { asm!("mov es, {0:x}", in(reg) es0, options(nomem, nostack)) };
        switched += u32::from(ran);
        if wrong.is_none() && !(same_selector(ds, sel) && same_selector(es, sel)) {
            wrong = Some((sel, ds, es));
        }
    }
    match wrong {
        None if switched == 5 => refused!("DS/ES kept across 5 switches"),
        None => setup_error!("only {switched} of 5 yields switched to the other domain"),
        Some((sel, ds, es)) => {
            succeeded!(
                "loaded {sel:#x}, after a switch DS {ds:#x} ES {es:#x} ({switched} switches)"
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// F3.

/// `fpu_taskswitch(set)`; returns `rax`.
fn fpu_taskswitch(set: u64) -> i64 {
    // SAFETY: CR0.TS only makes the next x87/SSE instruction raise #NM; this kernel uses
    // neither outside the probes below.
    unsafe { hypercall1(HYPERVISOR_FPU_TASKSWITCH, set) }
}

/// F3 (stops today's hypervisor): `fpu_taskswitch(1)`, then a switch to another domain's vCPU
/// and back. The hypervisor must survive; the guest's FPU must still raise `#NM` (its
/// virtual `CR0.TS` is set), and work after `fpu_taskswitch(0)`.
pub fn fpu_taskswitch_across_switch(_: &Env) -> Verdict {
    let d = match hv::runnable_domain() {
        Ok(d) => d,
        Err((what, r)) => return setup_error!("runnable domain: {what} {}", Errname(r)),
    };
    let set = fpu_taskswitch(1);
    let ran = yield_to(&d);
    // SAFETY: fnop changes no state; with TS set it raises #NM, which the probe catches.
    let nm = unsafe { probe!(DEVICE_NOT_AVAILABLE, "fnop") };
    let clear = fpu_taskswitch(0);
    // SAFETY: as above.
    let after = unsafe { probe!(DEVICE_NOT_AVAILABLE, "fnop") };
    drop(d);
    let how = format_args!(
        "fpu_taskswitch(1) {}, switched {ran}, FPU then {}, fpu_taskswitch(0) {}, FPU then {}",
        Errname(set),
        nm.caught.as_ref().map_or("no fault", |_| "#NM"),
        Errname(clear),
        after.caught.as_ref().map_or("works", |_| "#NM"),
    );
    if set < 0 || clear < 0 || !ran {
        return setup_error!("{how}");
    }
    if nm.caught.is_some() && after.caught.is_none() {
        refused!("{how}")
    } else {
        succeeded!("{how}")
    }
}
