//! The hypercall context: what every hypercall and trap handler receives, and the one result
//! type they all return (DESIGN.md §10).
//!
//! A handler is `fn(&mut Hc) -> HcResult`. [`Hc`] names the calling vCPU and its domain, and
//! reaches every domain (the caller included) by id in the domain map, where all of them stay
//! while a trap is handled; two domains at once come from [`Hc::pair`]. Arguments are read
//! through typed accessors ([`Hc::arg`], [`Hc::ptr`]), never from the register frame. What
//! happens next is the handler's [`Ret`]: a value for `rax`, a continuation, a reschedule, a
//! frame the handler rewrote, or the domain stopped; an `Err(errno)` becomes `-errno` in
//! `rax`, in one place ([`finish`]).
//!
//! Privileged operations take a [`Privileged`] token, which only [`Hc::privileged`] makes,
//! and only for dom0's context.

use guest_abi::errno::Errno;
use guest_abi::shared_info::VcpuInfo;
use guest_abi::types::{DOMID_SELF, DomId};

use super::World;
use super::locks::{DomainGuard, Guard};
use super::mem::{AddressSpace, GuestPtr};
use crate::arch::x86_64::trap::TrapFrame;
use crate::domain::{Domain, Privilege, Vcpu};
use crate::lockorder::Level;
use crate::sched::Scheduler;

/// How a handler finished (the error case is the `Err` of [`HcResult`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Return this value in `rax`.
    Value(u64),
    /// A continuation (Xen's `hypercall_create_continuation`): the call stopped part-way to
    /// let events through and is re-issued by the guest with these argument registers
    /// (`rdi, rsi, rdx, r10, r8`); `rax` keeps the hypercall number.
    Again([u64; 5]),
    /// Return 0, then let another vCPU run (`SCHEDOP_yield`).
    Yield,
    /// Return 0; the vCPU waits for an event (`SCHEDOP_block`, `SCHEDOP_poll`).
    Block,
    /// A continuation, and the vCPU yields or blocks first (`Next::Yield` or `Next::Block`):
    /// a multicall whose entry yielded or blocked is cut short there, as Xen's preemption
    /// check after that entry does, and the rest runs when the vCPU runs again.
    AgainAfter([u64; 5], Next),
    /// The handler rewrote the guest's frame itself (`iret`, a bounce to a guest handler):
    /// `rax` is left as the frame says.
    Resumed,
    /// The calling domain stopped (shut down or crashed).
    Stopped,
}

/// What every handler returns.
pub type HcResult = Result<Ret, Errno>;

/// Proof that the caller is the control domain (dom0). Only [`Hc::privileged`] makes one;
/// functions that only dom0 may reach take it as an argument.
#[derive(Debug)]
pub struct Privileged {
    _only_from_context: (),
}

/// Length of `int 0x82`, which a continued hypercall re-executes.
const HYPERCALL_INSN_LEN: u64 = 2;

/// The calling vCPU's context for one trap: its registers, its domain, and the way to the
/// others.
///
/// With the world exclusive (a control operation, or anything not on the shared paths:
/// `guest::shared_path`) every domain is reached directly. With the world shared the
/// caller's domain is locked for the whole trap, and one other domain at a time can be
/// locked too ([`Self::domain`], [`Self::pair`]): one with a higher id is waited for; one
/// with a lower id only if its lock is free at once, since waiting for it could close a
/// circle. When it is not free the handler gets `EAGAIN`, the trap path throws its result
/// away and runs the hypercall again with the world exclusive (a shared handler changes
/// nothing before it reaches the second domain).
pub struct Hc<'a> {
    access: Access<'a>,
    frame: &'a mut TrapFrame,
    dom: DomId,
    vcpu: usize,
    /// While a multicall runs one of its entries: that entry's hypercall number and
    /// arguments, which [`Hc::arg`] and [`Hc::call_number`] then read instead of the
    /// registers (`guest::multicall`).
    entry: Option<(u64, [u64; 5])>,
}

/// How a context reaches the domains.
enum Access<'a> {
    /// The world, exclusive.
    Exclusive(&'a mut World),
    /// The world shared: the caller's domain, locked, and perhaps one other.
    Shared {
        world: &'a World,
        me: DomainGuard<'a>,
        other: Option<(DomId, DomainGuard<'a>)>,
        /// `other` was locked before the caller (a second try, in id order) and stays the
        /// only other domain this context may reach.
        fixed: bool,
        /// A second domain whose lock was busy and not waited for.
        contended: Option<DomId>,
    },
}

const IN_MAP: &str = "the calling domain stays in the map while its trap is handled";

impl<'a> Hc<'a> {
    /// The context of vCPU `vcpu` of domain `dom`, whose registers are `frame`, with the
    /// world exclusive. The domain must be in the map (the trap path checks it first).
    pub fn new(world: &'a mut World, frame: &'a mut TrapFrame, dom: DomId, vcpu: usize) -> Self {
        Hc {
            access: Access::Exclusive(world),
            frame,
            dom,
            vcpu,
            entry: None,
        }
    }

    /// The same with the world shared and the caller's domain `me` locked, and perhaps
    /// another domain locked before it (a second try after [`Self::contended`]).
    pub fn shared(
        world: &'a World,
        me: DomainGuard<'a>,
        other: Option<(DomId, DomainGuard<'a>)>,
        frame: &'a mut TrapFrame,
        dom: DomId,
        vcpu: usize,
    ) -> Self {
        Hc {
            access: Access::Shared {
                world,
                me,
                fixed: other.is_some(),
                other,
                contended: None,
            },
            frame,
            dom,
            vcpu,
            entry: None,
        }
    }

    /// The second domain whose lock was found busy, if any (the trap path then runs the
    /// call again: shared with both locked in id order, or exclusive).
    pub fn contended(&self) -> Option<DomId> {
        match self.access {
            Access::Shared { contended, .. } => contended,
            Access::Exclusive(_) => None,
        }
    }

    /// The world, read-only (its parts have their own locks).
    fn world_ref(&self) -> &World {
        match &self.access {
            Access::Exclusive(w) => w,
            Access::Shared { world, .. } => world,
        }
    }

    /// The calling domain's id.
    pub fn id(&self) -> DomId {
        self.dom
    }

    /// The calling vCPU's index in its domain.
    pub fn vcpu_id(&self) -> usize {
        self.vcpu
    }

    /// The calling domain.
    pub fn me(&mut self) -> &mut Domain {
        match &mut self.access {
            Access::Exclusive(w) => w.domains.get_mut(&self.dom).expect(IN_MAP),
            Access::Shared { me, .. } => me,
        }
    }

    /// The calling domain, read-only.
    pub fn me_ref(&mut self) -> &Domain {
        self.me()
    }

    /// The calling vCPU.
    pub fn vcpu(&mut self) -> &mut Vcpu {
        let v = self.vcpu;
        &mut self.me().vcpus[v]
    }

    /// The calling vCPU, read-only.
    pub fn vcpu_ref(&mut self) -> &Vcpu {
        self.vcpu()
    }

    /// The calling vCPU's `vcpu_info` (in `shared_info`, or where the guest registered it).
    pub fn info(&mut self) -> &'static VcpuInfo {
        let v = self.vcpu;
        self.me().vcpu_info_static(v)
    }

    /// The calling vCPU's address space, through which guest pointers are copied: the
    /// top-level table in force (a Xen PV vCPU in user mode sees only its user table).
    pub fn space(&mut self) -> AddressSpace {
        AddressSpace {
            l4: self.vcpu_ref().active_l4(),
            dom: self.dom,
        }
    }

    /// Hypercall argument `n` (0-based: `rdi, rsi, rdx, r10, r8`), as the raw register.
    pub fn arg(&self, n: usize) -> u64 {
        self.args()[n]
    }

    /// All five argument registers (or, inside a multicall, the entry's arguments).
    pub fn args(&self) -> [u64; 5] {
        if let Some((_, args)) = self.entry {
            return args;
        }
        let f = &*self.frame;
        [f.rdi, f.rsi, f.rdx, f.r10, f.r8]
    }

    /// Hypercall argument `n` as a guest pointer to a `T` (an allegation).
    pub fn ptr<T>(&self, n: usize) -> GuestPtr<T> {
        GuestPtr::new(self.arg(n))
    }

    /// The hypercall number (`rax`, or, inside a multicall, the entry's `op`).
    pub fn call_number(&self) -> u64 {
        self.entry.map_or(self.frame.rax, |(op, _)| op)
    }

    /// Whether a multicall entry is being run (a nested multicall is refused).
    pub fn in_multicall(&self) -> bool {
        self.entry.is_some()
    }

    /// Runs `f` with the hypercall number and arguments of one multicall entry in place of
    /// the registers'.
    pub fn with_entry<R>(&mut self, op: u64, args: [u64; 5], f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = self.entry.replace((op, args));
        let r = f(self);
        self.entry = saved;
        r
    }

    /// Brings the caller's own vCPU `v` up in the scheduler (undoes its "down" pause), for
    /// `VCPUOP_up`: a domain may start and stop only its own vCPUs, so this needs no token.
    pub fn unpause_own_vcpu(&mut self, v: usize) {
        let id = crate::sched::VcpuId {
            dom: self.dom,
            vcpu: v as u32,
        };
        // The pCPU it is queued on asks the scheduler again (this one does on the way out).
        let kick = self.sched().unpause(id);
        super::World::kick(kick);
    }

    /// Takes the caller's own vCPU `v` down in the scheduler (one pause), for `VCPUOP_down`.
    pub fn pause_own_vcpu(&mut self, v: usize) {
        let id = crate::sched::VcpuId {
            dom: self.dom,
            vcpu: v as u32,
        };
        // The pCPU that runs it reschedules at the kick (this one on the way out: a kick to
        // itself is noted, and the trap's end takes it and asks the scheduler again).
        let kick = self.sched().pause(id);
        super::World::kick(kick);
    }

    /// The caller set a timer of its own domain's vCPU `v` to fall due at `deadline`. The
    /// calling vCPU's home is this pCPU; another vCPU's is where the scheduler keeps it,
    /// which is kicked to plan its timer again if armed for later (its last plan may have
    /// been made just before the change, and it may be about to halt on it).
    pub fn timer_set(&mut self, v: usize, deadline: u64) {
        let this = crate::arch::x86_64::percpu::this().index();
        let home = if v == self.vcpu_id() {
            this
        } else {
            let id = crate::sched::VcpuId {
                dom: self.dom,
                vcpu: v as u32,
            };
            self.sched().pcpu_of(id).unwrap_or(this)
        };
        super::timer_set(home, deadline);
    }

    /// The scheduler, locked (after the caller's domain, in the lock order).
    pub fn sched(&self) -> Guard<'_, Scheduler> {
        self.world_ref().sched.lock()
    }

    /// The caller's domain, still locked, and its registers, once its trap is handled (a
    /// context with the world shared; any other domain it locked is let go): the trap's end
    /// delivers events with them.
    pub fn into_caller(self) -> (Option<DomainGuard<'a>>, &'a mut TrapFrame) {
        match self.access {
            Access::Shared { me, .. } => (Some(me), self.frame),
            Access::Exclusive(_) => (None, self.frame),
        }
    }

    /// The vector of the trap being handled.
    pub fn vector(&self) -> u64 {
        self.frame.vector
    }

    /// The guest's saved registers, for the handlers whose job is to change them (`iret`,
    /// exception delivery): a hypercall handler reads its arguments with [`Self::arg`].
    pub fn regs(&mut self) -> &mut TrapFrame {
        self.frame
    }

    /// The calling domain and the guest's saved registers at once (exception delivery).
    pub fn me_and_regs(&mut self) -> (&mut Domain, &mut TrapFrame) {
        let dom: &mut Domain = match &mut self.access {
            Access::Exclusive(w) => w.domains.get_mut(&self.dom).expect(IN_MAP),
            Access::Shared { me, .. } => me,
        };
        (dom, self.frame)
    }

    /// `DOMID_SELF` resolved to the caller.
    pub fn resolve(&self, id: DomId) -> DomId {
        if id == DOMID_SELF { self.dom } else { id }
    }

    /// Whether domain `id` exists (`DOMID_SELF` resolved).
    pub fn exists(&self, id: DomId) -> bool {
        self.world_ref().domains.contains_key(&self.resolve(id))
    }

    /// Domain `id`, the caller included (`DOMID_SELF` resolved); `ESRCH` if there is none.
    /// Whether the caller may act on it is the handler's question. With the world shared,
    /// `EAGAIN` when its lock cannot be waited for (the call then runs again, exclusive).
    pub fn domain(&mut self, id: DomId) -> Result<&mut Domain, Errno> {
        let id = self.resolve(id);
        if id == self.dom {
            return Ok(self.me());
        }
        if matches!(self.access, Access::Shared { .. }) {
            self.lock_other(id)?;
        }
        match &mut self.access {
            Access::Exclusive(w) => w.domains.get_mut(&id).ok_or(Errno::ESRCH),
            Access::Shared {
                other: Some((_, g)),
                ..
            } => Ok(g),
            Access::Shared { .. } => Err(Errno::ESRCH),
        }
    }

    /// With the world shared: locks domain `id` (not the caller) as the second domain,
    /// letting go of any other second domain first.
    fn lock_other(&mut self, id: DomId) -> Result<(), Errno> {
        let caller = self.dom;
        let Access::Shared {
            world,
            other,
            fixed,
            contended,
            ..
        } = &mut self.access
        else {
            return Ok(());
        };
        if other.as_ref().is_some_and(|(o, _)| *o == id) {
            return Ok(());
        }
        if *fixed {
            // A second try that now wants another domain than the first named: exclusive.
            *contended = Some(id);
            return Err(Errno::EAGAIN);
        }
        *other = None;
        let world: &'a World = world;
        let cell = world.domains.cell(id).ok_or(Errno::ESRCH)?;
        let guard = if id > caller {
            cell.lock_as(Level::Domain2)
        } else if let Some(g) = cell.try_lock_as(Level::Domain2) {
            g
        } else {
            *contended = Some(id);
            return Err(Errno::EAGAIN);
        };
        *other = Some((id, guard));
        Ok(())
    }

    /// Domain `id` for an operation only the control domain may do on another domain (a
    /// foreign `populate_physmap`, a port allocated in another domain, ...): the token proves
    /// the caller may. `ESRCH` if there is none.
    pub fn foreign(&mut self, id: DomId, _: &Privileged) -> Result<&mut Domain, Errno> {
        self.domain(id)
    }

    /// [`Self::foreign`], read-only.
    pub fn foreign_ref(&mut self, id: DomId, token: &Privileged) -> Result<&Domain, Errno> {
        self.foreign(id, token).map(|d| &*d)
    }

    /// The caller and another domain at once (`ESRCH` if `other` does not exist, `EINVAL` if
    /// it is the caller; with the world shared, `EAGAIN` as for [`Self::domain`]).
    pub fn pair(&mut self, other: DomId) -> Result<(&mut Domain, &mut Domain), Errno> {
        let other = self.resolve(other);
        if other == self.dom {
            return Err(Errno::EINVAL);
        }
        if matches!(self.access, Access::Shared { .. }) {
            self.lock_other(other)?;
        }
        match &mut self.access {
            Access::Exclusive(w) => w.domains.two_mut(self.dom, other).ok_or(Errno::ESRCH),
            Access::Shared {
                me,
                other: Some((_, g)),
                ..
            } => Ok((&mut **me, &mut **g)),
            Access::Shared { .. } => Err(Errno::ESRCH),
        }
    }

    /// The privilege token, for dom0's context only; `EPERM` for everyone else.
    pub fn privileged(&mut self) -> Result<Privileged, Errno> {
        match self.me_ref().privilege {
            Privilege::Control => Ok(Privileged {
                _only_from_context: (),
            }),
            Privilege::Guest => Err(Errno::EPERM),
        }
    }

    /// Whether the caller's own vCPU `v` is on a pCPU now (its registers are that pCPU's).
    pub fn own_vcpu_running(&self, v: usize) -> bool {
        super::running_on((self.dom, v)).is_some()
    }

    /// The whole world: every domain and the scheduler. For the control operations that
    /// work on many domains at once (creation, destruction, lists), which prove with the
    /// token that dom0 asked. They never run with the world shared (`guest::shared_path`
    /// sends none of them there): asking for it then is a bug in that list.
    pub fn world(&mut self, _: &Privileged) -> &mut World {
        let call = self.call_number();
        match &mut self.access {
            Access::Exclusive(w) => w,
            Access::Shared { .. } => panic!(
                "hypercall {call} is handled with the world shared but needs it exclusive \
                 (guest::shared_path)"
            ),
        }
    }
}

/// Applies a handler's result to the guest's registers: `rax` for a value or an errno, the
/// argument registers and RIP for a continuation. Returns what the trap path does next.
pub fn finish(frame: &mut TrapFrame, result: HcResult) -> Next {
    match result {
        Err(e) => {
            frame.rax = Errno::encode_result(Err(e)) as u64;
            Next::Continue
        }
        Ok(Ret::Value(v)) => {
            frame.rax = v;
            Next::Continue
        }
        Ok(Ret::Again(args)) => {
            [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8] = args;
            frame.rip = frame.rip.wrapping_sub(HYPERCALL_INSN_LEN);
            Next::Continue
        }
        Ok(Ret::Yield) => {
            frame.rax = 0;
            Next::Yield
        }
        Ok(Ret::Block) => {
            frame.rax = 0;
            Next::Block
        }
        Ok(Ret::AgainAfter(args, next)) => {
            [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8] = args;
            frame.rip = frame.rip.wrapping_sub(HYPERCALL_INSN_LEN);
            next
        }
        Ok(Ret::Resumed) => Next::Continue,
        Ok(Ret::Stopped) => Next::Stopped,
    }
}

/// What the trap path does after a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Yield,
    Block,
    Stopped,
}
