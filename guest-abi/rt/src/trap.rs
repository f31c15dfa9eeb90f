//! Exceptions, the ring-3 services, and catching an exception a test expects.
//!
//! Every entry (exception, `int 0x80`, syscall callback, event callback) arrives at
//! `rt_trap` with the interrupted registers and the hardware frame in a [`Regs`]. What
//! happens then:
//!
//! - **The event callback** runs the event handler ([`crate::events`]).
//! - **`int 0x80` and the syscall callback** are the ring-3 services, chosen by `rax`:
//!   [`SVC_EXIT`] ends the ring-3 run ([`crate::user::run`] returns), [`SVC_COUNT`] counts and
//!   returns, [`SVC_ECHO`] returns `rdi + 1` in `rax`.
//! - **An exception the test armed with [`expect`]** is recorded (take it with
//!   [`take_caught`]); a ring-1 fault resumes at the recovery address that
//!   [`probe!`](crate::probe) stored, a ring-3 fault ends the ring-3 run.
//! - **Anything else** is reported, `Test result: ERROR`, and the domain shuts down as crashed.
//!
//! Every exception entry of the default trap table masks events on entry (an interrupt gate);
//! before returning, a handler restores the interrupted context's virtual interrupt flag
//! (`rflags.IF` in the frame), since `iretq` in ring 1 cannot, and forces delivery of what
//! became pending meanwhile.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use guest_abi::callback::{
    CALLBACKF_MASK_EVENTS, CALLBACKTYPE_EVENT, CALLBACKTYPE_SYSCALL, CallbackRegister,
};
use guest_abi::errno::Errno;
use guest_abi::hypercall::FAST_TRAP_VECTOR;
use guest_abi::sched::ShutdownReason;
use guest_abi::selectors::{KERNEL_SS, is_user_cs};
use guest_abi::trap::{BREAKPOINT, OVERFLOW, RFLAGS_IF, TrapInfo};
use guest_abi::{calls, trap};

use crate::boot::vcpu;
use crate::check::{TestResult, shutdown};
use crate::global::Global;
use crate::{console, events, println};

/// Pseudo-vector of the syscall callback in [`Regs::vector`].
pub const VECTOR_SYSCALL: u64 = 0x100;
/// Pseudo-vector of the event callback in [`Regs::vector`].
pub const VECTOR_EVENT: u64 = 0x101;

/// Ring-3 service (`rax`): end the ring-3 run; `rdi` is its result.
pub const SVC_EXIT: u64 = 0;
/// Ring-3 service: count one call ([`service_count`]) and return.
pub const SVC_COUNT: u64 = 1;
/// Ring-3 service: return `rdi + 1` in `rax`.
pub const SVC_ECHO: u64 = 2;

/// The trap flag in `rflags` (Intel SDM Vol. 1 §3.4.3).
pub const RFLAGS_TF: u64 = 1 << 8;
/// The alignment-check flag in `rflags`.
pub const RFLAGS_AC: u64 = 1 << 18;

/// What `rt_trap_common` saves: the general-purpose registers, the vector and error code the
/// stub pushed, and the hardware frame (lowest address first).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
#[allow(missing_docs)] // The register names say it all.
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector, `0x80`, [`VECTOR_SYSCALL`] or [`VECTOR_EVENT`].
    pub vector: u64,
    /// The error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl Regs {
    /// Whether the interrupted code ran in ring 3.
    pub const fn from_user(&self) -> bool {
        is_user_cs(self.cs)
    }

    /// The virtual interrupt flag the frame reports.
    pub const fn interrupts_enabled(&self) -> bool {
        self.rflags & RFLAGS_IF != 0
    }
}

/// What a handler saw on one entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Entry {
    /// The registers and frame.
    pub regs: Regs,
    /// `vcpu_info.arch.cr2` when the handler ran.
    pub cr2: u64,
    /// `evtchn_upcall_mask` when the handler started.
    pub mask_at_entry: u8,
    /// The handler's own `CS` (its ring).
    pub handler_cs: u16,
    /// The handler's own `SS`.
    pub handler_ss: u16,
    /// The handler's own `rflags` (`TF` must be clear: the handler is not single-stepped).
    pub handler_rflags: u64,
}

/// How a ring-3 run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// [`SVC_EXIT`] through `int 0x80` (vector 0x80) or `SYSCALL` ([`VECTOR_SYSCALL`]).
    Service(u64),
    /// The expected exception with this vector.
    Fault(u8),
}

/// The end of a ring-3 run.
#[derive(Clone, Copy, Debug)]
pub struct UserExit {
    /// How it ended.
    pub kind: ExitKind,
    /// What the handler saw.
    pub entry: Entry,
}

// Shared state. Writers: EXPECTED by `expect` (main flow, before the instruction) and by the
// handler (disarm); RECOVERY by `probe!` (main flow) and the handler; CAUGHT and USER_EXIT by
// the handler, taken by the main flow after the instruction or run; LAST_SERVICE by the
// handler; KERNEL_MASK by `user::run` before entering ring 3; USER_FAULT_RESOLVER by the main
// flow while no ring-3 code runs.
static EXPECTED: Global<u32> = Global::new(0);
static RECOVERY: Global<u64> = Global::new(0);
static CAUGHT: Global<Option<Entry>> = Global::new(None);
static USER_EXIT: Global<Option<UserExit>> = Global::new(None);
static LAST_SERVICE: Global<Option<Entry>> = Global::new(None);
static KERNEL_MASK: Global<u8> = Global::new(1);
static USER_FAULT_RESOLVER: Global<Option<UserFaultResolver>> = Global::new(None);
static SYSCALL_HANDLER: Global<Option<SyscallHandler>> = Global::new(None);
static USER_FAULTS_END_RUN: AtomicBool = AtomicBool::new(false);
static SERVICE_COUNT: AtomicU64 = AtomicU64::new(0);
static RECORD_SERVICES: AtomicBool = AtomicBool::new(true);
static SYSCALL_MASKS_EVENTS: AtomicBool = AtomicBool::new(false);
static FATAL: AtomicBool = AtomicBool::new(false);
static NOT_A_TEST: AtomicBool = AtomicBool::new(false);

/// For kernels that are not tests (dom0's, `hello`, the demos): an unexpected exception or
/// a panic is reported without the `Test result: ERROR` line.
pub fn set_not_a_test() {
    NOT_A_TEST.store(true, Ordering::SeqCst);
}

fn result_line() {
    if !NOT_A_TEST.load(Ordering::SeqCst) {
        println!("Test result: {}", TestResult::Error.word());
    }
}

/// A set of exception vectors (below 32), for [`expect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vectors(pub u32);

impl From<u8> for Vectors {
    fn from(vector: u8) -> Self {
        assert!(vector < 32, "not an exception vector: {vector}");
        Vectors(1 << vector)
    }
}

impl<const N: usize> From<[u8; N]> for Vectors {
    fn from(vectors: [u8; N]) -> Self {
        Vectors(vectors.iter().fold(0, |m, &v| m | Vectors::from(v).0))
    }
}

/// Arms the handler for one exception with one of `vectors`: the next one is recorded
/// instead of being reported. A ring-1 fault resumes at the recovery address (set by
/// [`probe!`](crate::probe)); a ring-3 fault ends the ring-3 run.
pub fn expect(vectors: impl Into<Vectors>) {
    CAUGHT.set(None);
    RECOVERY.set(0);
    EXPECTED.set(vectors.into().0);
}

/// Disarms [`expect`] and returns what was caught, if anything.
pub fn take_caught() -> Option<Entry> {
    EXPECTED.set(0);
    RECOVERY.set(0);
    CAUGHT.replace(None)
}

/// Where [`probe!`](crate::probe)'s assembly stores its recovery address.
pub fn recovery_slot() -> *mut u64 {
    RECOVERY.as_ptr()
}

/// The outcome of [`probe!`](crate::probe).
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// Address of the probed instruction.
    pub insn_rip: u64,
    /// Address just past it: where execution resumed.
    pub next_rip: u64,
    /// `rsp` when the instruction ran.
    pub rsp: u64,
    /// What the handler recorded, if the expected exception came.
    pub caught: Option<Entry>,
}

/// Runs a few instructions (assembly template strings, then optionally `;` and further
/// `asm!` operands) expecting exception `$vector` (anything [`expect`] takes), and evaluates to
/// a [`Probe`]. When the exception comes, the handler records it and resumes after the
/// instructions; when it does not, they simply complete and [`Probe::caught`] is `None`.
/// [`Probe::insn_rip`] is the address of the first instruction; the label `3` marks the
/// recovery address (`3f` from inside the templates).
///
/// ```ignore
/// let p = unsafe { probe!(INVALID_OPCODE, "ud2") };
/// let p = unsafe { probe!(PAGE_FAULT, "mov {v}, [{a}]"; a = in(reg) addr, v = out(reg) _) };
/// ```
///
/// Expands to inline assembly, so it must be used inside an `unsafe` block whose `SAFETY:`
/// comment covers what the instructions do if they do *not* fault. Operand names starting
/// with `probe_` are taken.
#[macro_export]
macro_rules! probe {
    ($vector:expr, $($insn:literal),+ $(,)? $(; $($operands:tt)*)?) => {{
        $crate::trap::expect($vector);
        let probe_insn: u64;
        let probe_next: u64;
        let probe_rsp: u64;
        ::core::arch::asm!(
            "lea {probe_tmp}, [rip + 3f]",
            "mov [{probe_slot}], {probe_tmp}",
            "lea {probe_insn}, [rip + 2f]",
            "mov {probe_rsp}, rsp",
            "2:",
            $($insn,)+
            "3:",
            "lea {probe_next}, [rip + 3b]",
            probe_slot = in(reg) $crate::trap::recovery_slot(),
            probe_tmp = out(reg) _,
            probe_insn = out(reg) probe_insn,
            probe_rsp = out(reg) probe_rsp,
            probe_next = lateout(reg) probe_next,
            $($($operands)*)?
        );
        $crate::trap::Probe {
            insn_rip: probe_insn,
            next_rip: probe_next,
            rsp: probe_rsp,
            caught: $crate::trap::take_caught(),
        }
    }};
}

/// A test's own handling of page faults from ring 3 (demand paging): called with what the
/// handler saw; returns `true` when it removed the cause, and ring 3 then retries the access.
/// It runs in the trap handler, with events masked: it may make hypercalls but must not use
/// [`expect`] or [`probe!`](crate::probe).
pub type UserFaultResolver = fn(&Entry) -> bool;

/// Installs (or with `None` removes) the resolver for page faults from ring 3. A fault it does
/// not resolve is handled as without it: recorded if expected, else fatal.
pub fn set_user_fault_resolver(resolver: Option<UserFaultResolver>) {
    USER_FAULT_RESOLVER.set(resolver);
}

/// A kernel's own system calls from ring 3 (`SYSCALL` or `int 0x80`), in place of the test
/// services: called with the ring-3 registers (which it may change: `rax` is the result);
/// returns `true` to resume ring 3, `false` to end the ring-3 run (the caller of
/// [`crate::user::run_at`] then gets an [`ExitKind::Service`] exit). It runs in the trap
/// handler on the ring-1 stack; it may block (`SCHEDOP_block`), after which events arrive as
/// nested callbacks, and must not use [`expect`] or [`probe!`](crate::probe).
pub type SyscallHandler = fn(&mut Regs) -> bool;

/// Installs (or with `None` removes) the handler for system calls from ring 3.
pub fn set_syscall_handler(handler: Option<SyscallHandler>) {
    SYSCALL_HANDLER.set(handler);
}

/// A kernel's say on a ring-3 exception that would end the ring-3 run
/// ([`set_user_faults_end_run`]): `true` when it dealt with it (ended that program and put
/// another's registers in `regs`, say), so that ring 3 goes on with `regs`.
pub type UserFaultHandler = fn(&mut Regs, &Entry) -> bool;

static USER_FAULT_HANDLER: Global<Option<UserFaultHandler>> = Global::new(None);

/// A kernel's look at an event that interrupted ring 3, after the event callback counted it
/// (events still masked): called with the ring-3 registers, which it may replace with
/// another program's; `true` resumes ring 3 with them, `false` ends the ring-3 run (an
/// [`ExitKind::Service`] exit with [`VECTOR_EVENT`]). Like a [`SyscallHandler`], it runs on
/// the ring-1 stack and may block. Without one, ring 3 simply resumes.
pub type UserEventHandler = fn(&mut Regs) -> bool;

static USER_EVENT_HANDLER: Global<Option<UserEventHandler>> = Global::new(None);

/// Installs (or with `None` removes) the [`UserEventHandler`]. With one, ring 3 runs with
/// events unmasked when its flags say so (as a Linux PV guest's user mode does): the run
/// starts so ([`crate::user::run_at`]), and every return from a system call restores it.
pub fn set_user_event_handler(handler: Option<UserEventHandler>) {
    USER_EVENT_HANDLER.set(handler);
}

/// Whether ring 3 is entered with events unmasked ([`set_user_event_handler`]).
pub(crate) fn user_events() -> bool {
    USER_EVENT_HANDLER.get().is_some()
}

/// Installs (or with `None` removes) the [`UserFaultHandler`].
pub fn set_user_fault_handler(handler: Option<UserFaultHandler>) {
    USER_FAULT_HANDLER.set(handler);
}

/// With `on`, every exception from ring 3 that no resolver handles ends the ring-3 run with
/// [`ExitKind::Fault`] (a kernel's processes may fault; the kernel reports it and goes on),
/// instead of being fatal when not expected.
pub fn set_user_faults_end_run(on: bool) {
    USER_FAULTS_END_RUN.store(on, Ordering::SeqCst);
}

/// With `on` (the default), every [`SVC_COUNT`] and [`SVC_ECHO`] call from ring 3 keeps a
/// record of its entry for [`last_service`]; off, an echo is answered without one (the
/// benchmark kernel's system call, whose native twin keeps none either).
pub fn record_services(on: bool) {
    RECORD_SERVICES.store(on, Ordering::SeqCst);
}

/// Number of [`SVC_COUNT`] calls since the last [`reset_service_count`].
pub fn service_count() -> u64 {
    SERVICE_COUNT.load(Ordering::SeqCst)
}

/// Zeroes [`service_count`] and forgets the last service entry.
pub fn reset_service_count() {
    SERVICE_COUNT.store(0, Ordering::SeqCst);
    LAST_SERVICE.set(None);
}

/// What the handler saw on the last ring-3 service call that returned to ring 3
/// ([`SVC_COUNT`], [`SVC_ECHO`]).
pub fn last_service() -> Option<Entry> {
    LAST_SERVICE.get()
}

/// Takes the record of the last ring-3 run's end (for [`crate::user`]).
pub(crate) fn take_user_exit() -> Option<UserExit> {
    USER_EXIT.replace(None)
}

/// Records the event mask to restore when the ring-3 run ends (for [`crate::user`]).
pub(crate) fn set_kernel_mask(mask: u8) {
    USER_EXIT.set(None);
    KERNEL_MASK.set(mask);
}

unsafe extern "C" {
    /// (vector, stub address) pairs, ending with a zero address (src/asm.rs).
    static rt_trap_stubs: [[u64; 2]; 20];
    fn rt_event_entry();
    fn rt_syscall_entry();
    static rt_kernel_stack_top: u8;
}

/// The stub that handles `vector` in the default table, if there is one.
pub fn stub(vector: u8) -> Option<u64> {
    stubs().find(|&(v, _)| v == vector).map(|(_, a)| a)
}

fn stubs() -> impl Iterator<Item = (u8, u64)> {
    // SAFETY: a read-only table in .rodata, written by the assembler.
    let table = unsafe { &*core::ptr::addr_of!(rt_trap_stubs) };
    table
        .iter()
        .take_while(|e| e[1] != 0)
        .map(|e| (e[0] as u8, e[1]))
}

/// Number of entries of [`default_table`] before its terminator.
pub const DEFAULT_TABLE_LEN: usize = 19;

/// The default trap table: every exception a guest can receive, each masking events on
/// entry, with DPL 3 for `int3` and `into` (so that they work from any ring) and DPL 0
/// otherwise; and the `int 0x80` fast trap (DPL 3, events left alone). Ends with
/// [`TrapInfo::END`].
pub fn default_table() -> [TrapInfo; DEFAULT_TABLE_LEN + 1] {
    let mut table = [TrapInfo::END; DEFAULT_TABLE_LEN + 1];
    for (slot, (vector, address)) in table.iter_mut().zip(stubs()) {
        *slot = if vector == FAST_TRAP_VECTOR {
            TrapInfo::new(vector, 3, false, address)
        } else if vector == BREAKPOINT || vector == OVERFLOW {
            TrapInfo::new(vector, 3, true, address)
        } else {
            TrapInfo::new(vector, 0, true, address)
        };
    }
    table
}

/// Address of the event callback entry.
pub fn event_entry() -> u64 {
    rt_event_entry as *const () as u64
}

/// Address of the syscall callback entry.
pub fn syscall_entry() -> u64 {
    rt_syscall_entry as *const () as u64
}

/// Top of the ring-1 stack for entries from ring 3.
pub fn kernel_stack_top() -> u64 {
    core::ptr::addr_of!(rt_kernel_stack_top) as u64
}

/// Installs the default trap table, the event callback and the ring-1 stack. On failure,
/// names the step.
pub fn install_defaults() -> Result<(), (&'static str, Errno)> {
    let table = default_table();
    // SAFETY: every entry points at a stub of src/asm.rs, which handles its vector with the
    // frame guest-abi `trap` describes.
    unsafe { calls::set_trap_table(&table) }.map_err(|e| ("set_trap_table", e))?;
    let event = CallbackRegister {
        callback_type: CALLBACKTYPE_EVENT,
        flags: 0,
        address: event_entry(),
    };
    // SAFETY: rt_event_entry handles the event callback frame.
    unsafe { calls::callback_register(&event) }.map_err(|e| ("callback_op(event)", e))?;
    // SAFETY: the stack is reserved for this in .bss and used for nothing else.
    unsafe { calls::stack_switch(KERNEL_SS, kernel_stack_top()) }
        .map_err(|e| ("stack_switch", e))?;
    Ok(())
}

/// Registers the syscall callback; with `mask_events` the hypervisor masks events on entry.
pub fn register_syscall(mask_events: bool) -> Result<(), Errno> {
    let cb = CallbackRegister {
        callback_type: CALLBACKTYPE_SYSCALL,
        flags: if mask_events {
            CALLBACKF_MASK_EVENTS
        } else {
            0
        },
        address: syscall_entry(),
    };
    SYSCALL_MASKS_EVENTS.store(mask_events, Ordering::SeqCst);
    // SAFETY: rt_syscall_entry handles the syscall callback frame.
    unsafe { calls::callback_register(&cb) }
}

/// The current `CS`.
pub fn current_cs() -> u16 {
    let cs: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    cs
}

/// The current `SS`.
pub fn current_ss() -> u16 {
    let ss: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, ss", out(reg) ss, options(nomem, nostack)) };
    ss
}

/// The current `DS`.
pub fn current_ds() -> u16 {
    let ds: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, ds", out(reg) ds, options(nomem, nostack)) };
    ds
}

/// The current `rflags`.
pub fn current_rflags() -> u64 {
    let f: u64;
    // SAFETY: pushfq/pop only touch the stack slot they use.
    unsafe { core::arch::asm!("pushfq", "pop {0}", out(reg) f, options(nomem)) };
    f
}

/// Called by `rt_trap_common` (src/asm.rs) for every entry. Returns 0 to resume the
/// interrupted code with `iretq`, 1 to end the ring-3 run.
/// The plain echo is answered here, before the whole handler (whose prologue alone saves
/// every callee-saved register).
pub(crate) extern "C" fn rt_trap(regs: &mut Regs) -> u64 {
    if (regs.vector == 0x80 || regs.vector == VECTOR_SYSCALL) && regs.from_user() {
        if plain_echo(regs) {
            return 0;
        }
        if let Some(handler) = SYSCALL_HANDLER.get() {
            return handled_call(regs, handler);
        }
    }
    rt_trap_recorded(regs)
}

/// The record of an entry, as the handler finds things now.
fn record(regs: &Regs) -> Entry {
    let v = vcpu();
    Entry {
        regs: *regs,
        cr2: v.arch.cr2.load(Ordering::SeqCst),
        mask_at_entry: v.evtchn_upcall_mask.load(Ordering::SeqCst),
        handler_cs: current_cs(),
        handler_ss: current_ss(),
        handler_rflags: current_rflags(),
    }
}

/// A system call from ring 3 to the kernel's handler ([`set_syscall_handler`]): no record is
/// made unless the call ends the ring-3 run (a kernel's every system call comes this way).
#[inline(never)]
fn handled_call(regs: &mut Regs, handler: SyscallHandler) -> u64 {
    let masked_on_entry =
        regs.vector == VECTOR_SYSCALL && SYSCALL_MASKS_EVENTS.load(Ordering::SeqCst);
    if handler(regs) {
        if masked_on_entry {
            restore_events(regs.interrupts_enabled());
        }
        return 0;
    }
    USER_EXIT.set(Some(UserExit {
        kind: ExitKind::Service(regs.vector),
        entry: record(regs),
    }));
    end_user_run()
}

/// Every other entry, with a record of it.
#[inline(never)]
fn rt_trap_recorded(regs: &mut Regs) -> u64 {
    let entry = record(regs);
    match regs.vector {
        VECTOR_EVENT => match USER_EVENT_HANDLER.get().filter(|_| regs.from_user()) {
            Some(handler) => {
                events::upcall(false);
                if !handler(regs) {
                    USER_EXIT.set(Some(UserExit {
                        kind: ExitKind::Service(VECTOR_EVENT),
                        entry,
                    }));
                    return end_user_run();
                }
                restore_events(regs.interrupts_enabled());
                0
            }
            None => {
                events::upcall(regs.interrupts_enabled());
                0
            }
        },
        0x80 | VECTOR_SYSCALL => service(regs, entry),
        _ => exception(regs, entry),
    }
}

/// Answers an [`SVC_ECHO`] from ring 3 at once when nothing keeps a record of it
/// ([`record_services`] off, no system-call handler): the benchmark kernel's system call,
/// whose native twin keeps none either. `false`: not such a call, nothing done.
#[inline]
fn plain_echo(regs: &mut Regs) -> bool {
    if regs.rax != SVC_ECHO
        || !regs.from_user()
        || RECORD_SERVICES.load(Ordering::Relaxed)
        || SYSCALL_HANDLER.get().is_some()
    {
        return false;
    }
    regs.rax = regs.rdi.wrapping_add(1);
    if regs.vector == VECTOR_SYSCALL && SYSCALL_MASKS_EVENTS.load(Ordering::SeqCst) {
        restore_events(regs.interrupts_enabled());
    }
    true
}

fn service(regs: &mut Regs, entry: Entry) -> u64 {
    let masked_on_entry =
        regs.vector == VECTOR_SYSCALL && SYSCALL_MASKS_EVENTS.load(Ordering::SeqCst);
    match regs.rax {
        SVC_EXIT if regs.from_user() => {
            USER_EXIT.set(Some(UserExit {
                kind: ExitKind::Service(regs.vector),
                entry,
            }));
            return end_user_run();
        }
        SVC_COUNT => {
            SERVICE_COUNT.fetch_add(1, Ordering::SeqCst);
            LAST_SERVICE.set(Some(entry));
        }
        SVC_ECHO => {
            LAST_SERVICE.set(Some(entry));
            regs.rax = regs.rdi.wrapping_add(1);
        }
        _ => fatal(
            regs,
            &entry,
            "unknown ring-3 service or service from ring 1",
        ),
    }
    if masked_on_entry {
        restore_events(regs.interrupts_enabled());
    }
    0
}

fn exception(regs: &mut Regs, entry: Entry) -> u64 {
    if regs.from_user()
        && regs.vector == u64::from(PAGE_FAULT)
        && let Some(resolve) = USER_FAULT_RESOLVER.get()
        && resolve(&entry)
    {
        // Back to ring 3, which retries the access.
        restore_events(regs.interrupts_enabled());
        return 0;
    }
    if regs.from_user() && USER_FAULTS_END_RUN.load(Ordering::SeqCst) {
        if let Some(handle) = USER_FAULT_HANDLER.get()
            && handle(regs, &entry)
        {
            restore_events(regs.interrupts_enabled());
            return 0;
        }
        USER_EXIT.set(Some(UserExit {
            kind: ExitKind::Fault(regs.vector as u8),
            entry,
        }));
        return end_user_run();
    }
    let expected = EXPECTED.get();
    if expected == 0 {
        fatal(regs, &entry, "no exception was expected");
    }
    if regs.vector >= 32 || expected & (1 << regs.vector) == 0 {
        fatal(regs, &entry, "a different exception was expected");
    }
    EXPECTED.set(0);
    CAUGHT.set(Some(entry));
    if regs.from_user() {
        USER_EXIT.set(Some(UserExit {
            kind: ExitKind::Fault(regs.vector as u8),
            entry,
        }));
        return end_user_run();
    }
    let recovery = RECOVERY.replace(0);
    if recovery == 0 {
        fatal(
            regs,
            &entry,
            "an expected ring-1 exception without a recovery address",
        );
    }
    regs.rip = recovery;
    // Stop single-stepping the interrupted code (set when the test used TF).
    regs.rflags &= !RFLAGS_TF;
    restore_events(regs.interrupts_enabled());
    0
}

/// Leaves the handler for the kernel context `user::run` saved: restores its event mask.
fn end_user_run() -> u64 {
    let mask = KERNEL_MASK.get();
    if mask == 0 {
        restore_events(true);
    } else {
        vcpu().evtchn_upcall_mask.store(mask, Ordering::SeqCst);
    }
    1
}

/// Before returning from an entry that masked events: if the interrupted context had events
/// enabled, clear the mask and, if something became pending meanwhile, have the hypervisor
/// deliver it now (`iretq` in ring 1 cannot).
pub fn restore_events(enabled: bool) {
    if enabled {
        let v = vcpu();
        v.evtchn_upcall_mask.store(0, Ordering::SeqCst);
        if v.evtchn_upcall_pending.load(Ordering::SeqCst) != 0 {
            events::force_delivery();
        }
    }
}

/// Mnemonic of exception `vector` (Intel SDM Vol. 3A Table 6-1).
pub fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 22] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    ];
    match vector {
        0x80 => "int 0x80",
        VECTOR_SYSCALL => "syscall",
        VECTOR_EVENT => "event",
        v => NAMES.get(v as usize).copied().unwrap_or("?"),
    }
}

/// Reports an entry the test did not expect, `Test result: ERROR` (unless [`set_not_a_test`]), and crashes the domain.
fn fatal(regs: &Regs, entry: &Entry, why: &str) -> ! {
    if FATAL.swap(true, Ordering::SeqCst) {
        // Faulted again while reporting: say nothing more.
        let _ = calls::sched_shutdown(ShutdownReason::Crash);
        loop {
            core::hint::spin_loop();
        }
    }
    console::flush();
    println!(
        "unexpected {} (vector {:#x}) in ring {}: {why}",
        vector_name(regs.vector),
        regs.vector,
        regs.cs & 3
    );
    println!(
        "  error code {:#x} rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} ss {:#x} cr2 {:#x}",
        regs.error_code, regs.rip, regs.cs, regs.rflags, regs.rsp, regs.ss, entry.cr2
    );
    println!(
        "  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp
    );
    result_line();
    shutdown(ShutdownReason::Crash)
}

/// Panics report like unexpected exceptions: `Test result: ERROR`, then a crash.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::flush();
    println!("panic: {info}");
    result_line();
    shutdown(ShutdownReason::Crash)
}

/// Re-export for tests that need the vector constants next to the runtime's.
pub use trap::{
    ALIGNMENT_CHECK, DEBUG, DIVIDE_ERROR, GENERAL_PROTECTION, INVALID_OPCODE, PAGE_FAULT,
    SIMD_FLOATING_POINT, X87_FLOATING_POINT,
};
