//! Running guests: what happens between a guest's trap into the hypervisor and its return
//! (DESIGN.md §3).
//!
//! Every entry from a guest arrives in [`trap()`] on the pCPU's hypervisor stack, with the
//! guest's registers in a [`TrapFrame`]. [`trap()`] builds the hypercall context
//! ([`context::Hc`]: the calling vCPU, its domain, the world) and hands it to the one handler
//! for the vector: a hypercall (`hypercall::dispatch`), an exception, an interrupt or a
//! SYSCALL. Every handler has the same shape, `fn(&mut Hc) -> HcResult`. Then the trap path
//! applies the result, runs expired timers, lets the scheduler decide, delivers a pending
//! event upcall, checks the frame it is about to return to, and returns. A guest's fault is
//! the guest's: it is bounced to the guest's own handler, or the domain is crashed; never the
//! hypervisor.
//!
//! Standing assumptions: every pCPU runs this code (docs/architecture.md, "Running guests on
//! every pCPU"); the world is a reader-writer lock, held shared ([`read_world`]) from the
//! start of a trap's handling until the return to the guest (exclusive, [`lock_world`], for
//! the control operations: [`shared_path`] says which), and released only while a pCPU
//! idles; each domain, the scheduler and the console input have their own locks
//! ([`locks`]); every domain stays in [`World::domains`] while any of its vCPUs' traps are
//! handled;
//! interrupts are off throughout, except while the idle loop halts.

pub mod abi;
pub mod context;
pub mod desc;
pub mod domctl;
pub mod event_op;
pub mod fast;
pub mod fast_pv;
pub mod forced;
pub mod grant_op;
pub mod hypercall;
pub mod locks;
pub mod mem;
pub mod mmu;
pub mod multicall;
pub mod physdev;
pub mod privop;
pub mod ptwr;
pub mod vcpu_op;
pub mod xenpv;

use alloc::collections::VecDeque;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use guest_abi::event::VIRQ_TIMER;
use guest_abi::selectors::{KERNEL_CS, KERNEL_SS, USER_CS, USER_SS};
use guest_abi::trap::RFLAGS_IF;
use guest_abi::types::DomId;

use crate::arch::x86_64::entry::{self, SYSCALL_VECTOR};
use crate::arch::x86_64::trap::{self, SPURIOUS_VECTOR, TrapFrame};
use crate::arch::x86_64::{apic, gdt, ipi, percpu, smp};
use crate::domain::{Domain, Shutdown};
use crate::lockorder::Level;
use crate::power::{self, ExitReason};
use crate::sched::{Params, Scheduler, VcpuId};
use context::{Hc, HcResult, Next, Ret};
use locks::{Domains, Lock};
use mem::GuestPtr;

const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IOPL: u64 = 3 << 12;
const RFLAGS_NT: u64 = 1 << 14;
const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_VM: u64 = 1 << 17;
const RFLAGS_VIF_VIP: u64 = 3 << 19;
/// Bit 1 of RFLAGS always reads as one.
const RFLAGS_FIXED: u64 = 1 << 1;

/// How often the idle loop looks at the serial line for dom0's console input.
const CONSOLE_POLL_NS: u64 = 10_000_000;

/// A vCPU: its domain and index.
pub type VcpuRef = (DomId, usize);

/// The online pCPUs: index and data.
pub fn online_cpus() -> impl Iterator<Item = (usize, &'static percpu::PerCpu)> {
    // The set bits only: every trap's end asks (the timer bounds), and a machine has far
    // fewer pCPUs online than `MAX_CPUS`.
    let mut mask = smp::online_mask();
    core::iter::from_fn(move || {
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(c) = percpu::of(i) {
                return Some((i, c));
            }
        }
        None
    })
}

/// All domains, the scheduler, and dom0's console input.
pub struct World {
    /// The domains, each behind its own lock (`locks`).
    pub domains: Domains,
    /// Console input waiting for dom0, and where serial input goes.
    pub input: Lock<ConsoleInput>,
    /// The credit scheduler (DESIGN §5), the one owner of whether a vCPU may run; its pCPUs
    /// are set up before the first domain runs.
    pub sched: Lock<Scheduler>,
    /// The domain ID created last, where the search for the next free one starts (Xen's
    /// `rover`: IDs are not reused at once, so a stale ID names no new domain). Changed
    /// only with the world exclusive.
    pub last_domid: DomId,
    /// pCPUs being taken offline whose last vCPU has not left yet (`XEN_SYSCTL_cpu_hotplug`
    /// waits for them with a continuation). Changed only with the world exclusive.
    pub cpus_draining: u64,
}

/// Serial input: the bytes waiting for dom0, and the switch to the debug keys.
pub struct ConsoleInput {
    pub bytes: VecDeque<u8>,
    /// Serial input goes to the hypervisor's debug keys instead of dom0 (the switch
    /// character three times switches, Xen's convention: `conswitch`).
    pub to_xen: bool,
    pub switch: crate::conswitch::InputSwitch,
}

/// Applies `conswitch=` at boot: the switch character (`None`: no switching) and whether
/// serial input starts with the hypervisor rather than dom0.
pub fn configure_input(code: Option<u8>, start_with_xen: bool) {
    let world = read_world();
    let mut input = world.input.lock();
    input.switch = crate::conswitch::InputSwitch::new(code);
    input.to_xen = start_with_xen;
}

/// The domain map, shared by every trap, exclusive for the operations that change it
/// (`locks` says how the rest is locked). Taken only through [`read_world`] and
/// [`lock_world`].
static WORLD: spin::RwLock<World> = spin::RwLock::new(World {
    domains: Domains::new(),
    input: Lock::new(
        Level::Input,
        ConsoleInput {
            bytes: VecDeque::new(),
            to_xen: false,
            switch: crate::conswitch::InputSwitch::new(Some(crate::conswitch::CTRL_A)),
        },
    ),
    sched: Lock::new(Level::Sched, Scheduler::empty()),
    last_domid: 0,
    cpus_draining: 0,
});

/// pCPUs waiting to take the world exclusive: while any does, no pCPU takes it shared, so
/// that a stream of traps on the other pCPUs cannot keep a control operation out for ever.
static WRITERS_WAITING: AtomicU32 = AtomicU32::new(0);

/// The world, exclusive: dereferences to [`World`].
pub struct WorldGuard {
    inner: spin::RwLockWriteGuard<'static, World>,
    _held: crate::lockorder::Held,
}

/// The world, shared: dereferences to [`World`] (every domain through its own lock).
pub struct SharedWorld {
    inner: spin::RwLockReadGuard<'static, World>,
    _held: crate::lockorder::Held,
}

impl core::ops::Deref for WorldGuard {
    type Target = World;
    fn deref(&self) -> &World {
        &self.inner
    }
}

impl core::ops::DerefMut for WorldGuard {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.inner
    }
}

impl core::ops::Deref for SharedWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.inner
    }
}

impl WorldGuard {
    /// Lets the other pCPUs back in, keeping the world shared (nothing can change the
    /// domain map in between).
    pub fn downgrade(self) -> SharedWorld {
        let WorldGuard { inner, _held } = self;
        SharedWorld {
            inner: spin::RwLockWriteGuard::downgrade(inner),
            _held,
        }
    }
}

/// Takes the world exclusive: waits (answering flush requests, bounded) until every other
/// pCPU has left its trap. A test-and-set lock, not a ticket lock: under emulation a pCPU's
/// thread can be descheduled, and a ticket lock would then stall every pCPU behind it.
pub fn lock_world() -> WorldGuard {
    let held = crate::lockorder::Held::new(crate::lockorder::Level::World);
    WRITERS_WAITING.fetch_add(1, Ordering::SeqCst);
    let inner = locks::spin_for("the world (exclusive)", || WORLD.try_write());
    WRITERS_WAITING.fetch_sub(1, Ordering::SeqCst);
    WorldGuard { inner, _held: held }
}

/// Whether some pCPU holds the world exclusive (`lockorder::may_change_frames`: a pCPU
/// that holds the world while it is write-locked is the writer).
pub fn world_write_locked() -> bool {
    WORLD.writer_count() > 0
}

/// How long a pCPU taking the world shared defers to pCPUs waiting to take it exclusive.
/// After that it takes it as soon as no one holds it exclusive: two vCPUs making exclusive
/// hypercalls back to back on two pCPUs would otherwise keep a third out for good.
const DEFER_TO_WRITERS_US: u64 = 200;

/// Takes the world shared, after any pCPU waiting to take it exclusive (for a while). The
/// first try (no writer waiting, the lock free of writers) is inlined into the callers:
/// every trap comes here (issue 18, session 15).
#[inline]
pub fn read_world() -> SharedWorld {
    if WRITERS_WAITING.load(Ordering::SeqCst) == 0 {
        let held = crate::lockorder::Held::new(crate::lockorder::Level::World);
        if let Some(inner) = WORLD.try_read() {
            return SharedWorld { inner, _held: held };
        }
    }
    read_world_waiting()
}

/// [`read_world`] after its first try failed: the wait, deferring to writers for a while.
#[inline(never)]
fn read_world_waiting() -> SharedWorld {
    let held = crate::lockorder::Held::new(crate::lockorder::Level::World);
    // When this pCPU first found a writer waiting (the clock is read only then).
    let mut deferring_since = None;
    let inner = locks::spin_for("the world", || {
        if WRITERS_WAITING.load(Ordering::SeqCst) == 0 {
            return WORLD.try_read();
        }
        let now = crate::time::now_ns();
        let since = *deferring_since.get_or_insert(now);
        if now.saturating_sub(since) > DEFER_TO_WRITERS_US * 1000 {
            WORLD.try_read()
        } else {
            None
        }
    });
    SharedWorld { inner, _held: held }
}

/// Which traps are handled with the world shared (the caller's domain locked, another
/// domain locked only as `Hc::pair` allows): the exceptions, interrupts and system calls a
/// guest's own handlers take, and the hypercalls on the paths DESIGN §10 names (page-table
/// updates of the caller's own tables, event send and unmask, a grant map, the timers,
/// yield and block, the return from a bounce). Every other hypercall, and these with a
/// foreign domain named, take the world exclusive. A shared handler never calls
/// `Hc::world`, and has no side effect before it reaches a second domain (so that, when
/// that domain's lock is busy, it can be run again from the start, exclusive).
fn shared_path(frame: &TrapFrame) -> bool {
    use guest_abi::hypercall as nr;
    if frame.vector != u64::from(guest_abi::hypercall::HYPERCALL_VECTOR) {
        return true;
    }
    let [a0, _, a2, a3, _] = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8];
    let own = |foreign: u64| {
        DomId::try_from(foreign).is_ok_and(|d| {
            d == guest_abi::types::DOMID_SELF
                || percpu::this().current().is_some_and(|(me, _)| me == d)
        })
    };
    match frame.rax {
        nr::HYPERVISOR_SET_TIMER_OP
        | nr::HYPERVISOR_IRET
        | nr::HYPERVISOR_STACK_SWITCH
        | nr::HYPERVISOR_FPU_TASKSWITCH
        | nr::HYPERVISOR_SET_SEGMENT_BASE
        | nr::HYPERVISOR_XEN_VERSION
        | nr::HYPERVISOR_UPDATE_VA_MAPPING => true,
        nr::HYPERVISOR_MMU_UPDATE | nr::HYPERVISOR_MMUEXT_OP => own(a3),
        nr::HYPERVISOR_EVENT_CHANNEL_OP => matches!(
            u32::try_from(a0),
            Ok(guest_abi::event::EVTCHNOP_SEND | guest_abi::event::EVTCHNOP_UNMASK)
        ),
        nr::HYPERVISOR_GRANT_TABLE_OP => {
            a0 == u64::from(guest_abi::grant::GNTTABOP_MAP_GRANT_REF) && a2 == 1
        }
        nr::HYPERVISOR_VCPU_OP => matches!(
            u32::try_from(a0),
            Ok(guest_abi::vcpu::VCPUOP_SET_SINGLESHOT_TIMER
                | guest_abi::vcpu::VCPUOP_STOP_SINGLESHOT_TIMER
                | guest_abi::vcpu::VCPUOP_SET_PERIODIC_TIMER
                | guest_abi::vcpu::VCPUOP_STOP_PERIODIC_TIMER)
        ),
        nr::HYPERVISOR_SCHED_OP => matches!(
            u32::try_from(a0),
            Ok(guest_abi::sched::SCHEDOP_YIELD | guest_abi::sched::SCHEDOP_BLOCK)
        ),
        nr::HYPERVISOR_CONSOLE_IO => a0 == u64::from(guest_abi::console::CONSOLEIO_WRITE),
        _ => false,
    }
}

/// How a trap handled with the world shared ended.
enum Shared {
    /// Done: reschedule or not.
    Done(bool),
    /// Done, and the guest's frame is ready to return to: nothing was due at the trap's end
    /// (`fast::may_leave_quietly`), so events were delivered and the frame checked with the
    /// domain still locked.
    Left,
    /// The domain stopped: the rest needs the world exclusive.
    Stopped,
    /// A second domain's lock was busy and could not be waited for: run it again,
    /// exclusive (the handler has changed nothing).
    Contended,
}

/// A trap from a guest: hypercall, exception, interrupt or SYSCALL.
pub fn trap(frame: &mut TrapFrame) {
    // Every hardware interrupt is acknowledged first, whatever happens to this trap next:
    // one left in service would block its whole priority class on this pCPU (the timer, the
    // IPI and COM1 share class 0xF) and leave it deaf to kicks and flush requests for good.
    // A guest cannot raise these vectors itself (their gates have DPL 0).
    if is_hardware_interrupt(frame.vector) {
        // A device interrupt of dom0's: its pin is masked before the EOI (a level-triggered
        // line still asserted would otherwise come straight back).
        if let Ok(v) = u8::try_from(frame.vector)
            && crate::arch::x86_64::ioapic::DEVICE_VECTORS.contains(&v)
        {
            crate::arch::x86_64::ioapic::device_interrupt(v);
        }
        apic::end_of_interrupt();
        if frame.vector == u64::from(trap::APIC_TIMER_VECTOR) {
            apic::timer_fired();
        }
    }
    ipi::service_flush();
    let cpu = percpu::this();
    let Some((id, v)) = cpu.current() else {
        panic!(
            "trap from a guest (vector {:#x}) but no guest is running",
            frame.vector
        );
    };
    if shared_path(frame) {
        let world = read_world();
        match handle_shared(&world, frame, id, v) {
            Shared::Done(reschedule) => return finish_trap(world, frame, reschedule),
            Shared::Left => return,
            Shared::Stopped => {
                drop(world);
                let mut world = lock_world();
                world.domain_stopped(id);
                return finish_trap(world.downgrade(), frame, true);
            }
            Shared::Contended => drop(world),
        }
    }
    let mut world = lock_world();
    let reschedule = handle_exclusive(&mut world, frame, id, v, !shared_path(frame));
    finish_trap(world.downgrade(), frame, reschedule);
}

/// The handler for the trap's vector.
fn run_handler(cx: &mut Hc) -> HcResult {
    match cx.vector() {
        // A Xen PV vCPU reaches the hypercall vector only by a `syscall` from kernel mode
        // (`trap::guest_trap_dispatch` renames it); the mode is checked again here, under
        // the domain's lock, so that user mode can never make a hypercall.
        v if v == u64::from(guest_abi::hypercall::HYPERCALL_VECTOR)
            && cx.vcpu_ref().xen_pv
            && !cx.vcpu_ref().kernel_mode =>
        {
            cx.regs().vector = SYSCALL_VECTOR;
            xenpv::syscall(cx)
        }
        v if v == u64::from(guest_abi::hypercall::HYPERCALL_VECTOR) => hypercall::dispatch(cx),
        SYSCALL_VECTOR => syscall(cx),
        0..=31 => exception(cx),
        v if v <= 0xFF && trap::GUEST_SOFTWARE_VECTORS.contains(&(v as u8)) => {
            software_interrupt(cx)
        }
        // Interrupts, acknowledged above: the timer's work is done below; the console
        // byte is read by the console poll; the IPI's kick is taken below.
        _ => Ok(Ret::Resumed),
    }
}

/// Applies a handler's result to the guest's registers and, for a yield or a block, to the
/// scheduler, while the caller's domain is still held: an event sent to it is marked under
/// that lock, and the wake-up looks for blocked vCPUs under it too, so none is lost between
/// the handler's last look and the block.
fn apply(cx: &mut Hc, result: HcResult) -> Next {
    let next = context::finish(cx.regs(), result);
    let me = VcpuId {
        dom: cx.id(),
        vcpu: cx.vcpu_id() as u32,
    };
    match next {
        Next::Yield => cx.sched().yield_now(me),
        Next::Block => {
            let _ = cx.sched().block(me, crate::time::now_ns());
        }
        Next::Continue | Next::Stopped => {}
    }
    next
}

/// In builds with debug assertions (the checked hypervisor): how many pCPUs are inside a
/// trap handled with the world shared now, the most there ever were, and a bit per
/// hypercall number that was entered while another pCPU was inside one. The log says it at
/// dom0's shutdown; `smp_lockcheck_4` checks that hypercalls did run side by side.
static SHARED_NOW: AtomicU32 = AtomicU32::new(0);
static SHARED_MOST: AtomicU32 = AtomicU32::new(0);
static SHARED_OVERLAPPED: AtomicU64 = AtomicU64::new(0);
/// A bit per hypercall number handled to the end with the world shared.
static SHARED_HANDLED: AtomicU64 = AtomicU64::new(0);

/// Counts one trap in or out of the shared handlers (debug builds only).
fn count_shared(frame: &TrapFrame, entering: bool) {
    if !cfg!(debug_assertions) {
        return;
    }
    if !entering {
        SHARED_NOW.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let hypercall = frame.vector == u64::from(guest_abi::hypercall::HYPERCALL_VECTOR);
    let n = SHARED_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    SHARED_MOST.fetch_max(n, Ordering::SeqCst);
    if n >= 2 && hypercall && frame.rax < 64 {
        SHARED_OVERLAPPED.fetch_or(1 << frame.rax, Ordering::SeqCst);
    }
}

/// The log line of [`count_shared`]'s figures (debug builds only).
fn report_shared() {
    if !cfg!(debug_assertions) {
        return;
    }
    let list = |bits: u64| {
        let mut list = alloc::string::String::new();
        for nr in (0..64).filter(|n| bits & (1 << n) != 0) {
            let _ = write!(list, " {nr}");
        }
        list
    };
    log::info!(
        target: "locks",
        "traps handled with the world shared: up to {} pCPUs at once; hypercalls handled \
         shared:{}; entered beside another:{}; frame table: up to {} pCPUs inside at once",
        SHARED_MOST.load(Ordering::SeqCst),
        list(SHARED_HANDLED.load(Ordering::SeqCst)),
        list(SHARED_OVERLAPPED.load(Ordering::SeqCst)),
        crate::mm::ft::most_inside()
    );
}

/// A trap handled with the world shared and the caller's domain locked.
fn handle_shared(world: &World, frame: &mut TrapFrame, id: DomId, v: usize) -> Shared {
    let (vector, nr) = (frame.vector, frame.rax);
    count_shared(frame, true);
    let outcome = handle_shared_counted(world, frame, id, v);
    count_shared(frame, false);
    if cfg!(debug_assertions)
        && vector == u64::from(guest_abi::hypercall::HYPERCALL_VECTOR)
        && nr < 64
        && !matches!(outcome, Shared::Contended)
    {
        SHARED_HANDLED.fetch_or(1 << nr, Ordering::SeqCst);
    }
    outcome
}

fn handle_shared_counted(world: &World, frame: &mut TrapFrame, id: DomId, v: usize) -> Shared {
    let Some(me) = world.domains.lock(id) else {
        panic!("the running domain {id} is not in the domain list");
    };
    me.vcpu_info(v).arch.pad.fetch_add(1, Ordering::Relaxed);
    if me.shutdown.is_some() {
        // Another vCPU of the domain stopped it while this one ran elsewhere; the scheduler
        // pauses it, and it does nothing more.
        return Shared::Done(true);
    }
    let mut cx = Hc::shared(world, me, None, frame, id, v);
    let mut result = run_handler(&mut cx);
    if let Some(other) = cx.contended() {
        // A domain with a lower id was busy: let go, take both in id order, and run the
        // call again from the start (it changed nothing). Still busy for another domain
        // then: exclusive.
        drop(cx);
        let Some(first) = world.domains.cell(other) else {
            return Shared::Contended;
        };
        let first = first.lock_as(Level::Domain);
        let Some(me) = world.domains.cell(id).map(|c| c.lock_as(Level::Domain2)) else {
            panic!("the running domain {id} is not in the domain list");
        };
        if me.shutdown.is_some() {
            return Shared::Done(true);
        }
        cx = Hc::shared(world, me, Some((other, first)), frame, id, v);
        result = run_handler(&mut cx);
        if cx.contended().is_some() {
            return Shared::Contended;
        }
    }
    match apply(&mut cx, result) {
        Next::Continue => {
            let vector = cx.vector();
            match cx.into_caller() {
                (Some(me), frame) => leave_quietly(me, v, frame, vector),
                (None, _) => Shared::Done(false),
            }
        }
        Next::Yield | Next::Block => Shared::Done(true),
        Next::Stopped => Shared::Stopped,
    }
}

/// The end of a trap handled with the world shared that needs none of the trap-end work
/// (`fast::may_leave_quietly`): events delivered and the frame checked with the caller's
/// domain `me` still locked, as [`finish_trap`] would, then straight back to the guest.
fn leave_quietly(
    mut me: locks::DomainGuard<'_>,
    v: usize,
    frame: &mut TrapFrame,
    vector: u64,
) -> Shared {
    let cpu = percpu::this();
    if !fast::may_leave_quietly(cpu, vector) {
        return Shared::Done(false);
    }
    let xen_pv = me.vcpus.get(v).is_some_and(|c| c.xen_pv);
    let ok = deliver_events(&mut me, v, frame).and_then(|()| {
        sanitize(frame, xen_pv).map_err(|why| {
            crash(&mut me, format_args!("cannot return to the guest: {why}"));
        })
    });
    match ok {
        Ok(()) => {
            entered(cpu, &me, v);
            Shared::Left
        }
        Err(()) => Shared::Stopped,
    }
}

/// Records, as this pCPU returns to vCPU `v` of `dom`, what the short ways out read: whether
/// an event waits that it cannot take, where its `vcpu_info` is, and what a SYSCALL needs.
fn entered(cpu: &percpu::PerCpu, dom: &Domain, v: usize) {
    let info = dom.vcpu_info_static(v);
    if let Some(vcpu) = dom.vcpus.get(v) {
        // A callback that is not canonical is none here (both short ways send the system
        // call the ordinary way, which has the answer).
        let handler = vcpu.callbacks.syscall;
        cpu.entered_syscall.store(
            if mem::is_canonical(handler) {
                handler
            } else {
                0
            },
            Ordering::Relaxed,
        );
        cpu.entered_syscall_masks
            .store(vcpu.callbacks.syscall_masks_events, Ordering::Relaxed);
        fast_pv::record_kernel_sp(cpu, vcpu.kernel_sp);
        cpu.entered_l4.store(vcpu.l4.phys(), Ordering::Relaxed);
        // What the entry stub's short way for Xen PV system calls reads (`xenia_pv_fast`),
        // set before the mode that sends system calls there.
        cpu.fast_vcpu
            .store(core::ptr::from_ref(vcpu) as u64, Ordering::Relaxed);
        let (generation, root_generation) = crate::mm::ft::generation_cells();
        cpu.generation_at.store(generation, Ordering::Relaxed);
        cpu.root_generation_at
            .store(root_generation, Ordering::Relaxed);
        let fast = if XENPV_FASTPATH.load(Ordering::Relaxed) {
            percpu::MODE_FAST
        } else {
            0
        };
        cpu.entered_mode.store(
            match (vcpu.xen_pv, vcpu.kernel_mode) {
                (false, _) => percpu::MODE_RING1,
                (true, true) => percpu::MODE_XEN_PV_KERNEL + fast,
                (true, false) => percpu::MODE_XEN_PV_USER + fast,
            },
            Ordering::Relaxed,
        );
    } else {
        cpu.entered_mode
            .store(percpu::MODE_RING1, Ordering::Relaxed);
    }
    // An event still waiting now could not be delivered (no callback yet): a kick would not
    // change that, so none is sent for it until this pCPU is back.
    cpu.entered_pending
        .store(fast::event_waiting(info), Ordering::Relaxed);
    // Held while the domain lives, which is longer than this pCPU runs its vCPU.
    cpu.entered_info.set(Some(info));
}

/// Whether the entry stub takes Xen PV system calls and `iret` hypercalls itself
/// (`xenia_pv_fast` in `arch::x86_64::entry`): the `xenpv_fastpath=` option, on by default.
static XENPV_FASTPATH: AtomicBool = AtomicBool::new(true);

/// Applies the `xenpv_fastpath=` option.
pub fn set_xenpv_fastpath(on: bool) {
    XENPV_FASTPATH.store(on, Ordering::Relaxed);
}

/// A trap handled with the world exclusive; says whether to reschedule.
/// `count`: the trap was not counted yet (it was not first tried shared).
fn handle_exclusive(
    world: &mut World,
    frame: &mut TrapFrame,
    id: DomId,
    v: usize,
    count: bool,
) -> bool {
    let Some(dom) = world.domains.get_mut(&id) else {
        panic!("the running domain {id} is not in the domain list");
    };
    if count {
        dom.vcpu_info(v).arch.pad.fetch_add(1, Ordering::Relaxed);
    }
    if dom.shutdown.is_some() {
        return true;
    }
    let next = {
        let mut cx = Hc::new(world, frame, id, v);
        let result = run_handler(&mut cx);
        apply(&mut cx, result)
    };
    match next {
        Next::Continue => false,
        Next::Yield | Next::Block => true,
        Next::Stopped => {
            world.domain_stopped(id);
            true
        }
    }
}

/// Whether `vector` is a hardware interrupt that needs an end of interrupt: the local APIC's
/// timer and IPI, COM1, anything else above the guests' software vectors, but not the
/// spurious vector (SDM Vol. 3A §11.9: no EOI for it) and not SYSCALL's pseudo-vector.
fn is_hardware_interrupt(vector: u64) -> bool {
    (u64::from(*trap::GUEST_SOFTWARE_VECTORS.end()) + 1..=0xFF).contains(&vector)
        && vector != u64::from(SPURIOUS_VECTOR)
}

/// Domain `id` is gone: no pCPU's entry stacks are its any more (`World::switch` then wipes
/// them before any domain runs there, whatever its id).
pub fn forget_entry_stacks(id: DomId) {
    for (_, cpu) in online_cpus() {
        let _ = cpu.stacks_of.compare_exchange(
            u32::from(id) + 1,
            u32::MAX,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// After a trap (or, with no current vCPU, before a pCPU's first one): timers, console
/// input, wake-ups, the scheduling decision (idling, with the world released, while there
/// is nothing to run), event delivery and the checks on the frame we return to. Leaves
/// `frame` holding the registers of the vCPU this pCPU runs next, and releases the world.
///
/// Before the scheduler decides, the current vCPU's registers go back to its domain and the
/// pCPU holds no vCPU: the decision may hand that vCPU to another pCPU at once (the world is
/// only shared), which must find its registers saved.
fn finish_trap(mut world: SharedWorld, frame: &mut TrapFrame, mut reschedule: bool) {
    let cpu = percpu::this();
    // One clock reading for the whole way out (each is a TSC read and a scaling): the plan
    // below may be late by the trap's remaining instructions, well under a microsecond.
    let mut now = crate::time::now_ns();
    loop {
        world.run_timers(now);
        // With COM1's interrupt routed, input is read when it interrupts (or when the pCPU
        // idles); polled, at every trap of pCPU 0.
        if frame.vector == u64::from(trap::COM1_VECTOR)
            || frame.vector == u64::from(trap::KEYBOARD_VECTOR)
            || !crate::arch::x86_64::ioapic::serial_interrupts()
        {
            world.poll_console();
        }
        world.deliver_pirqs();
        // A vCPU that wakes may preempt the current one (the scheduler's BOOST), so
        // the scheduler decides again, as Xen's tickle would make it.
        let woke = world.wake_blocked(now);
        reschedule |= ipi::take_kick();
        let cur = cpu.current();
        // Whatever makes the current vCPU unable to run (a pause, a block, a vCPU going
        // down, a change of affinity, offlining) kicks its pCPU, this one included
        // (`ipi::kick` notes a kick to itself): the scheduler is asked only when there is
        // something to decide, not at every trap.
        if reschedule || woke || cur.is_none() || cpu.run_until().is_some_and(|t| now >= t) {
            world.switch(frame, cur, None);
            let next = match world.decide(now) {
                Some(next) => next,
                None => {
                    let (w, next) = idle(world);
                    world = w;
                    // It may have halted for long.
                    now = crate::time::now_ns();
                    next
                }
            };
            world.switch(frame, None, Some(next));
        }
        let (id, v) = cpu.current().expect("a current vCPU after the decision");
        let Some(mut dom) = world.domains.lock(id) else {
            panic!("the current domain {id} is not in the domain list");
        };
        let xen_pv = dom.vcpus.get(v).is_some_and(|c| c.xen_pv);
        let ok = deliver_events(&mut dom, v, frame).and_then(|()| {
            sanitize(frame, xen_pv).map_err(|why| {
                crash(&mut dom, format_args!("cannot return to the guest: {why}"));
            })
        });
        match ok {
            Ok(()) => {
                entered(cpu, &dom, v);
                break;
            }
            Err(()) => {
                drop(dom);
                drop(world);
                let mut w = lock_world();
                w.domain_stopped(id);
                world = w.downgrade();
                reschedule = true;
                now = crate::time::now_ns();
            }
        }
    }
    let timer = world.plan_timer(now);
    // The local APIC timer is programmed after the world is released: under QEMU's
    // `-icount` (one emulator thread taking the pCPUs in turn) a write to the timer hands
    // the thread to the next pCPU, and a lock held across it made that pCPU find the lock
    // taken every time it ran (issue 12's shares under virtual time: the second pCPU never
    // got the lock, 30 s, panic). Nothing here needs the lock: the timer is this pCPU's.
    drop(world);
    program_timer(timer, now);
}

/// Programs this pCPU's local APIC timer as [`World::plan_timer`] decided (it published the
/// absolute deadline in `PerCpu::armed`): not at all when that is the deadline it is already
/// programmed for and still ahead.
fn program_timer(deadline_in_ns: Option<u64>, now: u64) {
    let cpu = percpu::this();
    let deadline = cpu.armed.load(Ordering::Relaxed);
    let was = cpu.programmed.swap(deadline, Ordering::Relaxed);
    if was == deadline && (deadline == u64::MAX || deadline > now) {
        return;
    }
    match deadline_in_ns {
        None => apic::disarm(),
        Some(ns) => apic::arm_oneshot(ns),
    }
}

/// Nothing is runnable on this pCPU: halt, with the world released, until something is;
/// return it, with the world held (shared) again.
fn idle(mut world: SharedWorld) -> (SharedWorld, VcpuRef) {
    loop {
        let now = crate::time::now_ns();
        world.run_timers(now);
        world.poll_console();
        world.deliver_pirqs();
        world.wake_blocked(now);
        let _ = ipi::take_kick();
        if let Some(next) = world.decide(now) {
            return (world, next);
        }
        let timer = world.plan_timer(now);
        drop(world);
        program_timer(timer, now);
        // Idle time (`XEN_SYSCTL_getcpuinfo`) is the time halted, the interrupt that ends
        // the halt included (a few hundred instructions; Xen counts it the same way).
        let cpu = percpu::this();
        cpu.idle_begin(crate::time::now_ns());
        // `sti; hlt` back to back: an interrupt between them would be lost otherwise. A
        // kick sent since the lock was dropped is pending and ends the `hlt` at once.
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
        cpu.idle_end(crate::time::now_ns());
        apic::take_tick();
        world = read_world();
    }
}

/// An event was marked for a vCPU that may be blocked since the last wake-up walk
/// ([`notified`]): the next [`World::wake_blocked`] walks the domains; otherwise it does not.
pub(crate) static WAKE_DUE: AtomicBool = AtomicBool::new(true);

/// When the timer walk and the wake-up walk last ran. Each also runs when this is
/// [`BACKSTOP_NS`] old, whatever the hints say, and the backstop wake-up walk kicks the
/// pCPUs whose vCPU has an event waiting (`World::kick_for_events`): a bound on the delay of
/// anything a hint missed (a guest that unmasks its events by hand, without a hypercall).
static LAST_TIMER_WALK: AtomicU64 = AtomicU64::new(0);
static LAST_WAKE_WALK: AtomicU64 = AtomicU64::new(0);
const BACKSTOP_NS: u64 = 50_000_000;

/// Whether a walk last run at `last` is due at `now` by the backstop; if so, records `now`.
fn backstop(last: &AtomicU64, now: u64) -> bool {
    let then = last.load(Ordering::Relaxed);
    now.saturating_sub(then) >= BACKSTOP_NS
        && last
            .compare_exchange(then, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// A timer of a vCPU homed on pCPU `home` now falls due at `deadline`: `home`'s bound is
/// lowered, and `home`, if it is another pCPU armed for later, is kicked to plan again. The
/// caller holds the vCPU's domain lock (so a timer walk either sees the deadline or runs
/// before it, and then this lowers the bound it sets).
///
/// Each pCPU's bound (`PerCpu::timer_due`) is a lower bound on its vCPUs' deadlines (one that
/// went away may leave it early): a trap's end walks the domains for timers only once some
/// bound is reached, not every time.
pub fn timer_set(home: usize, deadline: u64) {
    let this = percpu::this();
    let cpu = percpu::of(home).unwrap_or(this);
    cpu.timer_due.fetch_min(deadline, Ordering::SeqCst);
    if cpu.index() != this.index() && deadline < cpu.armed.load(Ordering::SeqCst) {
        ipi::kick(cpu.index());
    }
}

/// How late a timer may fire before [`late_timer`] logs it: far beyond the APIC's rounding
/// and a trap's length; a timer this late was found by a backstop walk, not by the pCPU armed
/// for it (or the host did not run the machine for that long).
const LATE_NS: u64 = 20_000_000;
/// Late timers logged so far (the first [`LATE_LOGGED`] are).
static LATE: AtomicU64 = AtomicU64::new(0);
const LATE_LOGGED: u64 = 16;

/// A timer of vCPU `v` of domain `id` that was due at `due` fired at `now`: logged at debug
/// level when it is more than [`LATE_NS`] late, a sign of a bound or wake-up that no pCPU
/// was armed or kicked for.
fn late_timer(id: DomId, v: usize, due: Option<u64>, now: u64) {
    let Some(due) = due else { return };
    let late = now.saturating_sub(due);
    if late > LATE_NS && LATE.fetch_add(1, Ordering::Relaxed) < LATE_LOGGED {
        log::debug!(
            target: "sched",
            "timer of d{id}v{v} fired {} ms late (found by a backstop walk)",
            late / 1_000_000
        );
    }
}

/// vCPUs changed home in a way that takes a pCPU away (offlining): every bound is made due,
/// so the next trap anywhere walks the timers and sets the bounds by the new homes.
pub fn timers_moved() {
    for (_, c) in online_cpus() {
        c.timer_due.store(0, Ordering::SeqCst);
    }
}

/// An event was marked for vCPU `vcpu` of domain `id` (the marker holds the domain's lock),
/// with outcome `n` (`event::set_pending_to`, `event::unmask_to`). Xen's
/// `vcpu_mark_events_pending` and `evtchn_check_pollers`, done directly: a vCPU that may be
/// blocked (in `SCHEDOP_block` or `poll`) has the wake-up walk made due, which the marker's
/// own pCPU runs at the end of its trap; a vCPU that runs on another pCPU has that pCPU
/// kicked, so that it takes the upcall now.
pub fn notified(id: DomId, vcpu: usize, n: crate::event::Notify) {
    if !n.kick && !n.newly_pending {
        return;
    }
    WAKE_DUE.store(true, Ordering::SeqCst);
    if n.kick
        && let Some(p) = running_on((id, vcpu))
        && p != percpu::this().index()
    {
        ipi::kick(p);
    }
}

impl World {
    /// The scheduler's choice for this pCPU from `now` on (`None`: idle), remembering
    /// when it wants to decide again, and kicking the pCPUs the decision names.
    fn decide(&self, now: u64) -> Option<VcpuRef> {
        let cpu = percpu::this();
        let d = self.sched.lock().schedule(cpu.index(), now);
        cpu.set_run_until(d.run_until);
        for p in d.kick {
            ipi::kick(p);
        }
        let next = d.next.map(|v| (v.dom, v.vcpu as usize))?;
        // The scheduler owns runnability; a vCPU it picks whose domain is gone idles instead.
        self.domains.contains_key(&next.0).then_some(next)
    }

    /// The pCPU whose registers are vCPU `r`'s now (it runs it, or handles its trap), if any.
    pub fn running_on(&self, r: VcpuRef) -> Option<usize> {
        running_on(r)
    }

    /// Whether any vCPU of domain `id` is on a pCPU now.
    pub fn domain_running(&self, id: DomId) -> bool {
        online_cpus().any(|(_, c)| c.current().is_some_and(|(d, _)| d == id))
    }

    /// Kicks each pCPU in `pcpus` (the scheduler's answers).
    pub fn kick(pcpus: impl IntoIterator<Item = usize>) {
        for p in pcpus {
            ipi::kick(p);
        }
    }

    /// Kicks every other pCPU whose vCPU has an event to deliver (pending and not masked):
    /// the upcall goes in at its next return to the guest, which the kick brings about now.
    fn kick_for_events(&self) {
        let me = percpu::this().index();
        for (i, c) in online_cpus() {
            if i == me {
                continue;
            }
            let Some((d, v)) = c.current() else {
                continue;
            };
            // A vCPU that entered its guest with an event it could not take (no callback)
            // is not kicked for it: each kick would trap it for nothing, and two such
            // vCPUs on two pCPUs would kick each other for ever.
            if c.entered_pending.load(Ordering::Relaxed) {
                continue;
            }
            let Some(dom) = self.domains.lock(d) else {
                continue;
            };
            if v < dom.vcpus.len() {
                let info = dom.vcpu_info(v);
                if info.evtchn_upcall_pending.load(Ordering::Acquire) != 0
                    && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0
                {
                    ipi::kick(i);
                }
            }
        }
    }

    /// Blocked vCPUs with an event pending become runnable; says whether any did. A vCPU in
    /// `SCHEDOP_poll` wakes when one of its ports is pending (masked or not) or an event
    /// needs delivery to it (pending and unmasked); its timeout is `run_timers`' business.
    fn wake_blocked(&self, now: u64) -> bool {
        let hinted = WAKE_DUE.swap(false, Ordering::SeqCst);
        if backstop(&LAST_WAKE_WALK, now) {
            self.kick_for_events();
        } else if !hinted {
            return false;
        }
        let mut woke = false;
        for id in self.domains.ids() {
            let Some(mut d) = self.domains.lock(id) else {
                continue;
            };
            let mut sched = self.sched.lock();
            for v in 0..d.vcpus.len() {
                let vid = VcpuId {
                    dom: id,
                    vcpu: v as u32,
                };
                if !sched.is_blocked(vid) {
                    continue;
                }
                let info = d.vcpu_info(v);
                let pending = info.evtchn_upcall_pending.load(Ordering::Acquire) != 0;
                let wake = match &d.vcpus[v].poll {
                    None => pending,
                    Some(p) => {
                        (pending && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0)
                            || p.ports()
                                .iter()
                                .any(|&port| crate::event::is_pending(d.shared(), port))
                    }
                };
                if wake {
                    d.vcpus[v].poll = None;
                    if let Some(p) = sched.wake(vid) {
                        ipi::kick(p);
                    }
                    woke = true;
                }
            }
        }
        woke
    }

    /// Saves the registers and CPU state of `from` (if this pCPU ran one) and loads those of
    /// `to` (`None`: this pCPU holds no vCPU and copies no guest root).
    fn switch(&self, frame: &mut TrapFrame, from: Option<VcpuRef>, to: Option<VcpuRef>) {
        if let Some(from) = from
            && let Some(mut d) = self.domains.lock(from.0)
            && let Some(v) = d.vcpus.get_mut(from.1)
        {
            v.regs = *frame;
            v.save_cpu_state();
            vcpu_op::publish_runstate(&mut d, from.1, &self.sched);
        }
        let cpu = percpu::this();
        cpu.entered_info.set(None);
        // No vCPU's system calls are the entry stub's until the next way out records one.
        cpu.entered_mode
            .store(percpu::MODE_RING1, Ordering::Relaxed);
        cpu.fast_vcpu.store(0, Ordering::Relaxed);
        // The entry stacks may hold the registers of the domain that ran here last: wiped
        // before another domain's vCPU runs here (a destroyed domain's id is forgotten at
        // once, `forget_entry_stacks`, so that a later domain with its id is another).
        if let Some((d, _)) = to
            && cpu.stacks_of.swap(u32::from(d) + 1, Ordering::Relaxed) != u32::from(d) + 1
        {
            entry::scrub_entry_stacks();
        }
        let Some(to) = to else {
            cpu.set_current(None);
            // No guest's GDT or LDT frame stays mapped on an idle pCPU.
            gdt::load_ldt(&[], 0);
            gdt::load_for(false, &[]);
            entry::forget_guest_root();
            return;
        };
        debug_assert!(
            self.running_on(to).is_none_or(|p| p == cpu.index()),
            "vCPU {to:?} chosen while another pCPU holds its registers"
        );
        let mut d = self.domains.lock(to.0).expect("next domain");
        // Dom0's ports for dom0's vCPUs, none for anyone else.
        gdt::set_io_ports(d.privilege == crate::domain::Privilege::Control);
        // The vCPU's GDT (its own frames for a Xen PV vCPU that gave some), before its
        // data selectors are loaded against it; Xen's reserved page (0xe000 up, the flat
        // ring-3 selectors) only for Xen PV vCPUs (`gdt::load_for`).
        desc::load_gdt(&d.vcpus[to.1]);
        vcpu_op::publish_runstate(&mut d, to.1, &self.sched);
        let v = &mut d.vcpus[to.1];
        *frame = v.regs;
        let failed = load_vcpu(v);
        cpu.set_current(Some(to));
        if failed != [0; 4] {
            xenpv::failsafe(&mut d, to.1, frame, failed);
        }
    }

    /// Raises VIRQ_TIMER for every expired timer of every vCPU, and ends the polls whose
    /// timeout passed (the vCPU wakes; Xen's `poll_timer_fn`). Only when a pCPU's bound
    /// (`PerCpu::timer_due`) is reached, or by the backstop: the walk sets every bound anew from
    /// the deadlines left, and kicks a pCPU armed for later than its new bound.
    fn run_timers(&self, now: u64) {
        let due = online_cpus().any(|(_, c)| c.timer_due.load(Ordering::SeqCst) <= now);
        if !backstop(&LAST_TIMER_WALK, now) && !due {
            return;
        }
        // From here on a setter's bound lands after this reset, and so survives the walk.
        for (_, c) in online_cpus() {
            c.timer_due.store(u64::MAX, Ordering::SeqCst);
        }
        let mut per_cpu = [u64::MAX; smp::MAX_CPUS];
        for id in self.domains.ids() {
            let Some(mut d) = self.domains.lock(id) else {
                continue;
            };
            if d.shutdown.is_some() {
                continue;
            }
            // The scheduler, locked once per domain, and only if one of its vCPUs has a
            // timer or a poll.
            let mut sched = None;
            for v in 0..d.vcpus.len() {
                let due = d.vcpus[v].next_deadline();
                if d.vcpus[v].expire_timers(now) {
                    late_timer(id, v, due, now);
                    send_virq(&mut d, v as u32, VIRQ_TIMER);
                }
                let vid = VcpuId {
                    dom: id,
                    vcpu: v as u32,
                };
                let vcpu = &mut d.vcpus[v];
                if vcpu
                    .poll
                    .is_some_and(|p| p.deadline.is_some_and(|t| t <= now))
                {
                    vcpu.poll = None;
                    let s = sched.get_or_insert_with(|| self.sched.lock());
                    if let Some(p) = s.wake(vid) {
                        ipi::kick(p);
                    }
                }
                if let Some(t) = d.vcpus[v].next_deadline() {
                    let s = sched.get_or_insert_with(|| self.sched.lock());
                    let home = s.pcpu_of(vid).unwrap_or(0).min(smp::MAX_CPUS - 1);
                    per_cpu[home] = per_cpu[home].min(t);
                }
            }
        }
        let me = percpu::this().index();
        for (i, c) in online_cpus() {
            c.timer_due.fetch_min(per_cpu[i], Ordering::SeqCst);
            if i != me && per_cpu[i] < c.armed.load(Ordering::SeqCst) {
                ipi::kick(i);
            }
        }
    }

    /// Moves typed characters to dom0's console input and raises VIRQ_CONSOLE, or, after
    /// Ctrl-A three times, to the hypervisor's debug keys (DESIGN.md §8).
    fn poll_console(&self) {
        // pCPU 0's alone: COM1's interrupt is routed to it (`ioapic::route_com1`, at boot,
        // on the boot CPU), or it polls on its timer; other pCPUs' traps never take the
        // console input's lock.
        if percpu::this().index() != 0 || !self.domains.contains_key(&0) {
            return;
        }
        let serial = crate::arch::x86_64::serial::Serial::com1();
        // The keyboard's bytes (when the hypervisor owns it) come after COM1's, as if typed
        // on the serial line.
        let mut keyboard = crate::console::KeyboardInput::default();
        let mut next = || serial.try_read().or_else(|| keyboard.next());
        let mut got = false;
        // Debug keys are run once the input is let go (they lock the domains).
        let mut keys = [0u8; 16];
        let mut nkeys = 0;
        {
            let mut input = self.input.lock();
            while let Some(b) = next() {
                let held = match input.switch.feed(b) {
                    crate::conswitch::Switch::Swallow => continue,
                    crate::conswitch::Switch::Toggle => {
                        input.to_xen = !input.to_xen;
                        crate::console::announce_input(input.to_xen, input.switch.code());
                        continue;
                    }
                    crate::conswitch::Switch::Pass { held } => held,
                };
                // A run of switch characters cut short goes on first, as Xen passes it.
                let code = input.switch.code().unwrap_or(b);
                let run = core::iter::repeat_n(code, usize::from(held));
                for byte in run.chain(core::iter::once(b)) {
                    if input.to_xen {
                        if nkeys < keys.len() {
                            keys[nkeys] = byte;
                            nkeys += 1;
                        }
                        continue;
                    }
                    // Keep a bounded backlog: 64 KiB of unread input is plenty for a console.
                    if input.bytes.len() < 64 * 1024 {
                        // alloc: serial input, not a guest's, bounded at 64 KiB just above.
                        input.bytes.push_back(byte);
                    }
                    got = true;
                }
            }
        }
        for &k in &keys[..nkeys] {
            self.debug_key(k);
        }
        if got && let Some(mut dom0) = self.domains.lock(0) {
            send_virq(&mut dom0, 0, guest_abi::event::VIRQ_CONSOLE);
        }
    }

    /// Hands the device interrupts that came since the last call to dom0: each marks its
    /// PIRQ waiting for `PHYSDEVOP_eoi` (the pin stays masked until then) and raises the
    /// port the PIRQ is bound to, if that port is still bound to it.
    fn deliver_pirqs(&self) {
        let pending = crate::arch::x86_64::ioapic::take_pending();
        if pending == 0 {
            return;
        }
        let Some(mut dom0) = self.domains.lock(crate::mm::iomem::HARDWARE_DOMAIN) else {
            return;
        };
        for slot in (0..crate::pirq::SLOTS).filter(|s| pending & (1 << s) != 0) {
            let Some((pirq, port)) = dom0.pirqs.interrupt(slot) else {
                continue;
            };
            if let Some(d) = dom0.events.pirq_delivery(port, pirq) {
                let n = crate::event::set_pending_to(
                    dom0.shared(),
                    d.port,
                    dom0.vcpu_info(d.vcpu as usize),
                );
                notified(dom0.id, d.vcpu as usize, n);
            }
        }
    }

    /// One debug key (Xen's letters): `h` help, `q` the domains, `m` memory, `d` every vCPU's
    /// registers (`0`: dom0's), `r` the run queues, `e` the event channels (each vCPU's
    /// upcall flag, mask, selector, poll and timers; each port's binding, pending and mask
    /// bits), `R` reboot.
    /// Typed after the Ctrl-A switch, or sent by `xl debug-keys` (`XEN_SYSCTL_debug_keys`);
    /// either way it takes the domains' locks and the scheduler's, none of which the caller
    /// may hold.
    pub(crate) fn debug_key(&self, key: u8) {
        match key {
            b'q' => {
                for id in self.domains.ids() {
                    let Some(d) = self.domains.lock(id) else {
                        continue;
                    };
                    let online = d.vcpus.iter().filter(|v| v.online).count();
                    let sched = self.sched.lock();
                    let blocked = (0..d.vcpus.len())
                        .filter(|&v| {
                            d.vcpus[v].online
                                && sched.is_blocked(VcpuId {
                                    dom: d.id,
                                    vcpu: v as u32,
                                })
                        })
                        .count();
                    drop(sched);
                    log::info!(
                        target: "keys",
                        "domain {}: {} pages (max {}), vCPUs {} online / {} blocked, paused {}, {}",
                        d.id,
                        d.tot_pages,
                        d.max_pages,
                        online,
                        blocked,
                        d.controller_pauses,
                        d.shutdown.map_or("running", |r| r.name())
                    );
                }
            }
            b'd' | b'0' => {
                for id in self.domains.ids().filter(|&id| key == b'd' || id == 0) {
                    let Some(d) = self.domains.lock(id) else {
                        continue;
                    };
                    for v in d.vcpus.iter().filter(|v| v.online) {
                        let r = &v.regs;
                        log::info!(
                            target: "keys",
                            "d{}v{} (saved at its last entry): rip {:#x} rsp {:#x} rflags {:#x} \
                             cs {:#x} ss {:#x} rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} \
                             rdi {:#x} rbp {:#x} l4 {:#x}",
                            d.id, v.id, r.rip, r.rsp, r.rflags, r.cs, r.ss, r.rax, r.rbx,
                            r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, v.l4.0
                        );
                        // What would wake it: its timers and its event flags (in the
                        // `vcpu_info` it registered, if it moved it).
                        let Some(info) = v
                            .info_view
                            .or_else(|| d.shared().vcpu_info.get(v.id as usize))
                        else {
                            continue;
                        };
                        log::info!(
                            target: "keys",
                            "d{}v{} at {} ns: singleshot {:?} periodic next {:?} poll {:?}; \
                             upcall pending {} mask {} sel {:#x}",
                            d.id,
                            v.id,
                            crate::time::now_ns(),
                            v.singleshot,
                            v.periodic.map(|p| p.next),
                            v.poll.and_then(|p| p.deadline),
                            info.evtchn_upcall_pending.load(Ordering::SeqCst),
                            info.evtchn_upcall_mask.load(Ordering::SeqCst),
                            info.evtchn_pending_sel.load(Ordering::SeqCst)
                        );
                    }
                }
            }
            // alloc-block: a debug key typed on the serial line or sent by dom0 (`xl debug-keys`,
            // a privileged sysctl), never a domU's.
            b'r' => {
                let sched = self.sched.lock();
                let now = crate::time::now_ns();
                // Relative to now, in ns: the timer bound, the planned and the programmed
                // deadline (`-`: none; 0 programmed: fired since).
                let rel = |t: u64| match t {
                    u64::MAX => alloc::string::String::from("-"),
                    0 => alloc::string::String::from("0"),
                    t => alloc::format!("{:+}", t as i64 - now as i64),
                };
                for (p, c) in online_cpus() {
                    let name = |v: VcpuId| alloc::format!("d{}v{}", v.dom, v.vcpu);
                    let queue: alloc::vec::Vec<alloc::string::String> =
                        sched.queued(p).map(name).collect();
                    log::info!(
                        target: "keys",
                        "CPU{p}: running {}; run queue [{}]; timer bound {} armed {} programmed {}",
                        sched.current(p).map_or("idle".into(), name),
                        queue.join(" "),
                        rel(c.timer_due.load(Ordering::SeqCst)),
                        rel(c.armed.load(Ordering::SeqCst)),
                        rel(c.programmed.load(Ordering::SeqCst)),
                    );
                }
            }
            // end alloc-block
            b'e' => {
                for id in self.domains.ids() {
                    let Some(d) = self.domains.lock(id) else {
                        continue;
                    };
                    let now = crate::time::now_ns();
                    let sched = self.sched.lock();
                    for (v, vcpu) in d.vcpus.iter().enumerate() {
                        let info = d.vcpu_info(v);
                        let blocked = sched.is_blocked(VcpuId {
                            dom: d.id,
                            vcpu: v as u32,
                        });
                        let rel = |t: u64| t as i64 - now as i64;
                        log::info!(
                            target: "keys",
                            "d{}v{v}: online {} blocked {blocked} upcall pending {} mask {} \
                             pending_sel {:#x} vcpu_info {:?} poll {:?} singleshot {:?} ns \
                             periodic {:?} ns",
                            d.id,
                            vcpu.online,
                            info.evtchn_upcall_pending.load(Ordering::SeqCst),
                            info.evtchn_upcall_mask.load(Ordering::SeqCst),
                            info.evtchn_pending_sel.load(Ordering::SeqCst),
                            vcpu.info_area.map(|(m, o)| (m.0, o)),
                            vcpu.poll.as_ref().map(|p| p.ports()),
                            vcpu.singleshot.map(rel),
                            vcpu.periodic.as_ref().map(|p| rel(p.next)),
                        );
                    }
                    drop(sched);
                    for (port, channel) in d.events.iter_bound() {
                        log::info!(
                            target: "keys",
                            "d{} port {port}: {channel:?}, pending {}, masked {}",
                            d.id,
                            crate::event::is_pending(d.shared(), port),
                            crate::event::is_masked(d.shared(), port)
                        );
                    }
                }
            }
            b'R' => {
                log::info!(target: "keys", "'R' pressed -> rebooting machine");
                crate::power::exit(crate::power::ExitReason::Dom0Reboot);
            }
            // The heap's size too: it grows from free frames and keeps them, so "every frame
            // back" is free frames plus what the heap grew by (linux_side_by_side).
            b'm' => log::info!(
                target: "keys",
                "memory: {} MiB free ({} frames); heap {} of {} bytes in use",
                crate::mm::frames::free_count() / 256,
                crate::mm::frames::free_count(),
                crate::mm::heap::used(),
                crate::mm::heap::size()
            ),
            b'\r' | b'\n' => {}
            _ => log::info!(
                target: "keys",
                "debug keys: 'q' domains, 'm' free memory, 'd' vCPU registers, '0' dom0's vCPU \
                 registers, 'r' run queues, 'e' event channels, 'R' reboot, 'h' this help; the \
                 switch character three times gives the input back to dom0"
            ),
        }
    }

    /// When this pCPU's APIC timer must fire, in ns from now (`None`: not at all): the
    /// bound on the timers of the vCPUs homed here (`PerCpu::timer_due`), the end of the time
    /// slice when another vCPU waits, the console poll while dom0 lives, and the next
    /// backstop walk (traps that leave quietly skip the walks, so a guest making only those
    /// would otherwise put them off for good; an idle pCPU would put them off until the next
    /// interrupt). The caller programs it once the world is released ([`program_timer`]).
    fn plan_timer(&self, now: u64) -> Option<u64> {
        let cpu = percpu::this();
        let me = cpu.index();
        let mut fixed = cpu.run_until().unwrap_or(u64::MAX);
        // The backstop walks are due whether a guest runs here or this pCPU idles: with every
        // pCPU halted, a missed hint (a timer bound or a wake-up that no pCPU was armed or
        // kicked for) would otherwise wait for the next device interrupt, for ever on a quiet
        // machine. Idle, this is one wake-up per `BACKSTOP_NS`.
        let last = LAST_TIMER_WALK
            .load(Ordering::Relaxed)
            .min(LAST_WAKE_WALK.load(Ordering::Relaxed));
        fixed = fixed.min(last.saturating_add(BACKSTOP_NS).max(now));
        if me == 0
            && !crate::arch::x86_64::ioapic::serial_interrupts()
            && self.domains.contains_key(&0)
        {
            // Without the I/O APIC route, dom0's console input is polled.
            fixed = fixed.min(now + CONSOLE_POLL_NS);
        }
        // The bound is read again after `armed` is published: a timer walk or a setter on
        // another pCPU lowers the bound, then reads `armed` to decide on a kick; either it
        // sees this plan (and kicks), or this second read sees its bound.
        let slot = &cpu.timer_due;
        let deadline = loop {
            let bound = slot.load(Ordering::SeqCst);
            let deadline = bound.min(fixed);
            cpu.armed.store(deadline, Ordering::SeqCst);
            if slot.load(Ordering::SeqCst) >= bound {
                break deadline;
            }
        };
        (deadline != u64::MAX).then(|| deadline.saturating_sub(now).max(1))
    }

    /// Domain `id` stopped (its `shutdown` says why, a crash if unset): dom0 stops the
    /// machine; another domain stays, shut down, until dom0 destroys it, and dom0 hears of
    /// it through VIRQ_DOM_EXC. Once per domain: two of its vCPUs may stop it at once.
    fn domain_stopped(&mut self, id: DomId) {
        let Some(dom) = self.domains.get_mut(&id) else {
            return;
        };
        if dom.stop_announced {
            return;
        }
        dom.stop_announced = true;
        let reason = *dom.shutdown.get_or_insert(Shutdown::Crash);
        log::info!(target: "domain", "domain {id} shut down: {}", reason.name());
        // Its vCPUs running on other pCPUs stop at the kick.
        World::kick(self.sched.get_mut().pause_domain(id));
        if id != 0 {
            if let Some(dom0) = self.domains.get_mut(&0) {
                send_virq(dom0, 0, guest_abi::event::VIRQ_DOM_EXC);
            }
            return;
        }
        report_shared();
        // Every clean run ends with the frame table checked; a failed check fails the run
        // whatever dom0's reason, with an exit code of its own.
        if self
            .domains
            .all()
            .is_none_or(|all| mmu::check_frame_table(all.iter().copied()).is_err())
        {
            power::exit(ExitReason::FrameTableInconsistent);
        }
        let exit = match reason {
            Shutdown::PowerOff => ExitReason::PowerOff,
            Shutdown::Reboot => ExitReason::Dom0Reboot,
            Shutdown::Crash | Shutdown::Watchdog => ExitReason::Dom0Crashed,
            Shutdown::Suspend => {
                log::warn!(target: "domain", "dom0 cannot be suspended; powering off");
                ExitReason::PowerOff
            }
        };
        power::exit(exit)
    }

    /// `SCHEDOP_remote_shutdown`: domain `target` (not dom0) shuts down for `reason`, through
    /// the same path as its own `SCHEDOP_shutdown`. A domain already shut down keeps its
    /// first reason.
    pub fn shut_down_other(
        &mut self,
        target: DomId,
        reason: Shutdown,
    ) -> Result<(), guest_abi::errno::Errno> {
        let dom = self
            .domains
            .get_mut(&target)
            .ok_or(guest_abi::errno::Errno::ESRCH)?;
        if dom.shutdown.is_none() {
            dom.shutdown = Some(reason);
            self.domain_stopped(target);
        }
        Ok(())
    }
}

/// The pCPU whose registers are vCPU `r`'s now (it runs it, or handles its trap), if any.
pub fn running_on(r: VcpuRef) -> Option<usize> {
    online_cpus()
        .find(|&(_, c)| c.current() == Some(r))
        .map(|(i, _)| i)
}

/// Loads vCPU `v`'s CPU state, root and ring-1 stack onto this pCPU.
/// Returns the data selectors that could not be loaded (`Vcpu::load_cpu_state`).
fn load_vcpu(v: &mut crate::domain::Vcpu) -> [u16; 4] {
    let failed = v.load_cpu_state();
    entry::load_guest_root(v.active_l4());
    gdt::set_ring1_stack(if v.xen_pv { 0 } else { v.kernel_sp });
    hypercall::refresh_fast_trap(v);
    failed
}

/// Logs why the domain crashed and marks it so.
pub fn crash(dom: &mut Domain, why: core::fmt::Arguments<'_>) {
    log::error!(target: "domain", "domain {} crashed: {why}", dom.id);
    dom.shutdown = Some(Shutdown::Crash);
}

/// The calling domain crashed for `why`.
pub fn crash_caller(cx: &mut Hc, why: core::fmt::Arguments<'_>) -> HcResult {
    crash(cx.me(), why);
    Ok(Ret::Stopped)
}

/// An exception raised by guest code.
fn exception(cx: &mut Hc) -> HcResult {
    use guest_abi::trap as t;
    let vector = cx.vector() as u8;
    match vector {
        t::NMI => {
            log::warn!(target: "trap", "NMI while domain {} ran; ignored", cx.id());
            return Ok(Ret::Resumed);
        }
        t::MACHINE_CHECK | t::DOUBLE_FAULT => {
            let mut out = crate::console::emergency();
            let _ = writeln!(
                out,
                "fatal {} while a guest ran",
                trap::exception_name(u64::from(vector))
            );
            power::exit(ExitReason::HypervisorFailure);
        }
        t::BREAKPOINT | t::OVERFLOW => return software_interrupt(cx),
        t::DEBUG => {
            // What the breakpoint or step reported, kept for `get_debugreg(6)` (sticky, as
            // the hardware's), and the CPU's DR6 reset for the next one.
            let hw = crate::arch::x86_64::read_dr6();
            let v = cx.vcpu();
            v.dr6 |= hw & crate::debugreg::DR6_STATUS;
            crate::arch::x86_64::write_debugreg(6, crate::debugreg::DR6_DEFAULT);
        }
        t::INVALID_OPCODE if self::forced::emulate(cx) => return Ok(Ret::Resumed),
        t::GENERAL_PROTECTION if self::privop::emulate(cx) => return Ok(Ret::Resumed),
        t::PAGE_FAULT => {
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            // A Xen PV kernel runs in ring 3, so the CPU reports its faults as user
            // accesses: the U bit says the guest's mode instead (Xen's `pv_inject_event`).
            if cx.vcpu_ref().xen_pv {
                const PF_USER: u64 = 1 << 2;
                let user = !cx.vcpu_ref().kernel_mode;
                let f = cx.regs();
                f.error_code = (f.error_code & !PF_USER) | if user { PF_USER } else { 0 };
            }
            if self::ptwr::emulate(cx, cr2) {
                return Ok(Ret::Resumed);
            }
            cx.info().arch.cr2.store(cr2, Ordering::Release);
        }
        t::DEVICE_NOT_AVAILABLE => {
            // The guest's CR0.TS (`fpu_taskswitch(1)`) did its job; as Xen does, it is
            // cleared as the #NM is delivered, so the handler may use the FPU at once.
            cx.vcpu().fpu_ts = false;
            crate::arch::x86_64::clts();
        }
        _ => {}
    }
    let error = t::has_error_code(vector).then_some(cx.regs().error_code);
    deliver_to_trap_table(cx, vector, error)
}

/// `int n` from the guest on a vector whose real gate admits ring 3 (the breakpoint,
/// overflow and fast-trap vectors): the guest's own table entry decides, as hardware
/// would with the entry's DPL.
fn software_interrupt(cx: &mut Hc) -> HcResult {
    let vector = cx.vector() as u8;
    let entry = cx.vcpu_ref().traps.get(vector);
    // A Xen PV kernel counts as ring 0 for its table's DPLs, as on Xen.
    let cpl = if cx.vcpu_ref().xen_pv {
        if cx.vcpu_ref().kernel_mode { 0 } else { 3 }
    } else {
        (cx.regs().cs & 3) as u8
    };
    if entry.is_end() || entry.dpl() < cpl {
        // Error code for an IDT vector: index << 3 | IDT bit (Intel SDM Vol. 3A §6.13).
        let code = (u64::from(vector) << 3) | 2;
        return deliver_to_trap_table(cx, guest_abi::trap::GENERAL_PROTECTION, Some(code));
    }
    deliver_to_trap_table(cx, vector, None)
}

fn deliver_to_trap_table(cx: &mut Hc, vector: u8, error: Option<u64>) -> HcResult {
    let entry = cx.vcpu_ref().traps.get(vector);
    if entry.is_end() {
        let cr2 = cx.info().arch.cr2.load(Ordering::Relaxed);
        let rip = cx.regs().rip;
        log_guest_stack(cx);
        return crash_caller(
            cx,
            format_args!(
                "unhandled {} (vector {vector}) at rip {:#x}, error code {:#x}{}{}",
                trap::exception_name(u64::from(vector)),
                rip,
                error.unwrap_or(0),
                if vector == guest_abi::trap::PAGE_FAULT {
                    ", cr2 "
                } else {
                    ""
                },
                OptionalHex((vector == guest_abi::trap::PAGE_FAULT).then_some(cr2)),
            ),
        );
    }
    bounce_caller(cx, error, entry.address, entry.masks_events())
}

/// Logs the crashing vCPU's registers, its stack pointer and the 24 words on top of its stack, as
/// far as they can be read through its own tables (Xen dumps the guest's stack on a crash
/// too): what a porter needs to find the caller of a faulting instruction.
fn log_guest_stack(cx: &mut Hc) {
    let rsp = cx.regs().rsp;
    let (id, v) = (cx.id(), cx.vcpu_id());
    let r = cx.regs();
    log::info!(
        target: "domain",
        "domain {} vCPU {}: rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}",
        id, v, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r12, r.r13, r.r14, r.r15
    );
    let space = cx.space();
    let mut words = [0u64; 24];
    let mut shown = 0;
    for (i, w) in words.iter_mut().enumerate() {
        match space.read(GuestPtr::<u64>::new(rsp.wrapping_add(8 * i as u64))) {
            Ok(v) => (*w, shown) = (v, i + 1),
            Err(_) => break,
        }
    }
    log::info!(
        target: "domain",
        "domain {} vCPU {}: rsp {rsp:#x}, stack {:x?}",
        cx.id(),
        cx.vcpu_id(),
        &words[..shown]
    );
}

/// Length of the `SYSCALL` instruction (0F 05).
const SYSCALL_INSN_LEN: u64 = 2;

/// `{:#x}` of a value, or nothing.
struct OptionalHex(Option<u64>);

impl core::fmt::Display for OptionalHex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v:#x}"),
            None => Ok(()),
        }
    }
}

/// SYSCALL from ring 3 goes to the registered syscall callback, or becomes #UD. The CPU
/// does not say which ring a SYSCALL came from (the stub reports ring 3), but ring 3 can
/// only execute user pages: a SYSCALL whose instruction is on a present page with U/S
/// clear came from the ring-1 kernel, which must never issue one (guest-abi), and it gets
/// #UD at that instruction with its own selectors. Only that positive evidence counts:
/// anything the walk cannot tell is treated as ring 3, as before, so that user code can
/// never be made to look like the kernel.
fn syscall(cx: &mut Hc) -> HcResult {
    if cx.vcpu_ref().xen_pv {
        return xenpv::syscall(cx);
    }
    let insn = cx.regs().rip.wrapping_sub(SYSCALL_INSN_LEN);
    if cx.space().user_accessible(insn) == Some(false) {
        let f = cx.regs();
        f.rip = insn;
        f.cs = u64::from(KERNEL_CS);
        f.ss = u64::from(KERNEL_SS);
        return deliver_to_trap_table(cx, guest_abi::trap::INVALID_OPCODE, None);
    }
    let cb = cx.vcpu_ref().callbacks;
    if cb.syscall == 0 {
        return deliver_to_trap_table(cx, guest_abi::trap::INVALID_OPCODE, None);
    }
    bounce_caller(cx, None, cb.syscall, cb.syscall_masks_events)
}

/// [`bounce`] for the calling vCPU.
fn bounce_caller(cx: &mut Hc, error: Option<u64>, handler: u64, mask_events: bool) -> HcResult {
    let v = cx.vcpu_id();
    let (dom, frame) = cx.me_and_regs();
    match bounce(dom, v, frame, error, handler, mask_events) {
        Ok(()) => Ok(Ret::Resumed),
        Err(()) => Ok(Ret::Stopped),
    }
}

/// Enters guest code of vCPU `v` at `handler` in ring 1 as the CPU would through an IDT
/// gate: a hardware-format frame (with `error` below it, if any) on the ring-1 stack, the
/// virtual IF in the saved RFLAGS. `Err` when the domain crashed trying.
fn bounce(
    dom: &mut Domain,
    v: usize,
    frame: &mut TrapFrame,
    error: Option<u64>,
    handler: u64,
    mask_events: bool,
) -> Result<(), ()> {
    if dom.vcpus[v].xen_pv {
        return xenpv::bounce(dom, v, frame, error, handler, mask_events);
    }
    let from_user = frame.cs & 3 == 3;
    let stack = if from_user {
        dom.vcpus[v].kernel_sp
    } else {
        frame.rsp
    };
    if from_user && stack == 0 {
        crash(
            dom,
            format_args!(
                "trap from ring 3 at rip {:#x} but no kernel stack was set (stack_switch)",
                frame.rip
            ),
        );
        return Err(());
    }
    let virtual_if = dom.vcpu_info(v).evtchn_upcall_mask.load(Ordering::Relaxed) == 0;
    let space = mem::AddressSpace {
        l4: dom.vcpus[v].l4,
        dom: dom.id,
    };
    let sp = match push_bounce_frame(&space, frame, error, stack, virtual_if) {
        Ok(sp) => sp,
        Err(PushError::Stack) => {
            crash(
                dom,
                format_args!("guest stack pointer {stack:#x} is not usable"),
            );
            return Err(());
        }
        Err(PushError::Write(sp)) => {
            crash(
                dom,
                format_args!(
                    "cannot write an exception frame at {sp:#x} (rip {:#x})",
                    frame.rip
                ),
            );
            return Err(());
        }
    };
    enter_handler(frame, handler, sp);
    if mask_events {
        dom.vcpu_info(v)
            .evtchn_upcall_mask
            .store(1, Ordering::Release);
    }
    Ok(())
}

/// Why [`push_bounce_frame`] pushed nothing.
enum PushError {
    /// The stack pointer leaves no room below it.
    Stack,
    /// The frame's place (this address) is not mapped writable, or is not plain memory.
    Write(u64),
}

/// Writes the frame a bounce leaves on the ring-1 stack, as an IDT gate would: `error` if
/// any, then `frame`'s rip, cs, rflags (with IF as `virtual_if`), rsp and ss, below `stack`
/// aligned down to 16 bytes; returns the new stack pointer. Nothing is written when it fails.
fn push_bounce_frame(
    space: &mem::AddressSpace,
    frame: &TrapFrame,
    error: Option<u64>,
    stack: u64,
    virtual_if: bool,
) -> Result<u64, PushError> {
    let rflags = (frame.rflags & !RFLAGS_IF) | if virtual_if { RFLAGS_IF } else { 0 };
    let mut words = [0u64; 6];
    let mut n = 0;
    if let Some(code) = error {
        words[0] = code;
        n = 1;
    }
    words[n..n + 5].copy_from_slice(&[frame.rip, frame.cs, rflags, frame.rsp, frame.ss]);
    n += 5;
    let top = stack & !0xF;
    let sp = top.checked_sub(8 * n as u64).ok_or(PushError::Stack)?;
    space
        .write_bytes(
            GuestPtr::new(sp),
            zerocopy::IntoBytes::as_bytes(&words[..n]),
        )
        .map_err(|_| PushError::Write(sp))?;
    Ok(sp)
}

/// The rest of a bounce, once its frame is pushed: `frame` resumes at `handler` in ring 1 on
/// stack `sp`, with the flags an IDT gate clears cleared.
fn enter_handler(frame: &mut TrapFrame, handler: u64, sp: u64) {
    frame.rip = handler;
    frame.cs = u64::from(KERNEL_CS);
    frame.ss = u64::from(KERNEL_SS);
    frame.rsp = sp;
    frame.rflags &= !(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF);
}

/// Enters vCPU `v`'s event callback if an event is pending and the guest has events
/// unmasked. `Err` when the domain crashed trying.
fn deliver_events(dom: &mut Domain, v: usize, frame: &mut TrapFrame) -> Result<(), ()> {
    let info = dom.vcpu_info(v);
    let cb = dom.vcpus[v].callbacks.event;
    if cb != 0
        && info.evtchn_upcall_pending.load(Ordering::Acquire) != 0
        && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0
    {
        return bounce(dom, v, frame, None, cb, true);
    }
    Ok(())
}

/// Marks the port bound to `virq` on `vcpu` pending, if there is one, for the vCPU it
/// notifies: `vcpu` itself for a per-vCPU VIRQ, the one `EVTCHNOP_bind_vcpu` chose for a
/// global VIRQ (Xen's `send_guest_vcpu_virq` / `send_guest_global_virq`).
pub fn send_virq(dom: &mut Domain, vcpu: u32, virq: u32) {
    if let Some(d) = dom.events.virq_delivery(vcpu, virq) {
        let n = crate::event::set_pending_to(dom.shared(), d.port, dom.vcpu_info(d.vcpu as usize));
        notified(dom.id, d.vcpu as usize, n);
    }
}

/// `SCHEDOP_block`: enables events and, unless one is already pending, blocks the vCPU so
/// that the scheduler runs something else (or idles) until an event for it arrives.
pub fn block(cx: &mut Hc) -> HcResult {
    cx.info().evtchn_upcall_mask.store(0, Ordering::Release);
    if cx.info().evtchn_upcall_pending.load(Ordering::Acquire) != 0 {
        return Ok(Ret::Value(0));
    }
    Ok(Ret::Block)
}

/// Whether a guest may run with this code and stack selector: ring 1 or ring 3, never
/// the hypervisor's. A ring-1 handler entered by the fast trap runs on a null SS with
/// RPL 1: that is what the CPU loads on a privilege change in 64-bit mode (Intel SDM
/// Vol. 3A §6.14.4).
#[inline]
pub fn selectors_ok(cs: u16, ss: u16) -> bool {
    const NULL_SS_RPL1: u16 = 1;
    (cs == KERNEL_CS && (ss == KERNEL_SS || ss == NULL_SS_RPL1)) || (cs == USER_CS && ss == USER_SS)
}

/// Checks the frame the hypervisor is about to `iretq` to: guest selectors only,
/// a canonical RIP, IF set, IOPL 0.
#[inline]
pub fn sanitize(frame: &mut TrapFrame, xen_pv: bool) -> Result<(), &'static str> {
    let (cs, ss) = (frame.cs as u16, frame.ss as u16);
    // A Xen PV vCPU's selectors are checked against the GDT in force (its own, or Xenia's
    // page 0 and Xen's reserved page), as `iretq` will check them.
    let pair_ok = if xen_pv {
        frame.cs <= 0xFFFF && gdt::iret_code_ok(cs, frame.rip) && gdt::iret_stack_ok(ss)
    } else {
        selectors_ok(cs, ss)
    };
    if frame.cs > 0xFFFF || frame.ss > 0xFFFF || !pair_ok {
        return Err("bad code or stack selector");
    }
    if !mem::is_canonical(frame.rip) || !mem::is_canonical(frame.rsp) {
        return Err("non-canonical rip or rsp");
    }
    // `iretq` to a 32-bit code segment checks RIP against its 4 GiB limit and would #GP in
    // ring 0 (Xen recovers from that fault; Xenia does not take it at all).
    if xen_pv
        && frame.cs as u16 == guest_abi::selectors::FLAT_RING3_CS32
        && frame.rip > u64::from(u32::MAX)
    {
        return Err("rip beyond a 32-bit code segment");
    }
    frame.rflags = clean_flags(frame.rflags);
    Ok(())
}

/// The flags a guest may run with: IF set, IOPL 0, no NT, VM, VIF or VIP, nothing reserved.
#[inline]
fn clean_flags(rflags: u64) -> u64 {
    (rflags & 0x003F_FFFF & !(RFLAGS_IOPL | RFLAGS_NT | RFLAGS_VM | RFLAGS_VIF_VIP))
        | RFLAGS_IF
        | RFLAGS_FIXED
}

/// MSRs for SYSCALL from guests (Intel SDM Vol. 3B §2.2.1, Vol. 2B SYSCALL): the entry
/// point in the entry area; IF, TF, DF, AC and NT cleared on entry.
pub fn init_syscall_msrs() {
    crate::arch::x86_64::enable_syscall(entry::syscall_entry());
}

/// Starts vCPU 0 of domain `id` on this pCPU. Never returns: from here on the
/// hypervisor runs only in traps.
pub fn run(id: DomId) -> ! {
    let mut frame = TrapFrame::default();
    let mut world = lock_world();
    let sched = world.sched.get_mut();
    *sched = Scheduler::new(smp::online_count() as usize);
    sched.set_clock(crate::time::now_ns);
    let me = VcpuId { dom: id, vcpu: 0 };
    if let Err(e) = sched
        .add_domain(id, 1, Params::default())
        .and_then(|()| sched.add_vcpu(me, percpu::this().index()))
    {
        panic!("cannot schedule domain {id}: {e:?}");
    }
    let _ = sched.unpause(me);
    let dom = world.domains.get_mut(&id).expect("the domain to run");
    let vcpu = &mut dom.vcpus[0];
    vcpu.initialised = true;
    vcpu.online = true;
    finish_trap(world.downgrade(), &mut frame, true);
    entry::enter_guest(&frame)
}

/// An application processor, online: idle until the scheduler gives it a vCPU, then run
/// it. Never returns: from here on this pCPU runs in traps like the boot CPU.
pub fn ap_run() -> ! {
    let mut frame = TrapFrame::default();
    finish_trap(read_world(), &mut frame, true);
    entry::enter_guest(&frame)
}
