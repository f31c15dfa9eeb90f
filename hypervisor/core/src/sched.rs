//! The credit scheduler (DESIGN.md §5): which vCPU each pCPU runs, and for how long.
//!
//! Xen's credit1 (`xen/common/sched/credit.c`) in spirit and in structure, as pure logic: it knows
//! nothing of registers, timers or IPIs. The hypervisor tells it what happened (a vCPU woke,
//! blocked, yielded, was paused; a pCPU's timer fired) with times in nanoseconds, and it answers
//! with decisions: which vCPU to run next, when to ask again, which other pCPUs to kick.
//!
//! # The policy, as in Xen's credit1
//!
//! * Every domain has a *weight* (default [`DEFAULT_WEIGHT`]) and a *cap* in percent of one pCPU
//!   (0 = none). Every accounting period ([`ACCT_PERIOD_NS`], 30 ms) the pCPUs' worth of credit
//!   is shared among the *active* domains in proportion to weight × active vCPUs, and split
//!   evenly among each domain's active vCPUs (Xen's `csched_acct`).
//! * A running vCPU burns [`CREDITS_PER_MSEC`] credits per millisecond it runs (`burn_credits`).
//! * A vCPU with credit left is `UNDER`, one that overdrew is `OVER`; `UNDER` runs before `OVER`,
//!   round-robin within a class. A vCPU that wakes from blocking while `UNDER` is `BOOST`ed above
//!   both, so an I/O-bound vCPU preempts CPU hogs at once; the boost ends at the first accounting
//!   tick that finds it running, i.e. as soon as it uses a non-negligible amount of CPU
//!   (`csched_unit_wake`, `csched_unit_acct`).
//! * A capped domain that overdrew by more than its cap in a period is *parked*: not runnable until
//!   the accounting gives it back non-negative credit.
//! * Each pCPU has its own run queue and runs its idle vCPU (here: `next: None`, halt) when the
//!   queue is empty, after trying to steal better work from its peers (`csched_load_balance`).
//!   A 30 ms slice ([`TSLICE_NS`]) and a 10 ms accounting tick ([`TICK_NS`]); no tick while idle.
//!
//! # What the hypervisor calls, and when
//!
//! One [`Scheduler`] serves all pCPUs. A call that returns pCPUs to *kick* (Xen's "tickle")
//! means: send each of them the schedule IPI, upon which it calls [`Scheduler::schedule`] for
//! itself; a kick naming the calling pCPU means "call `schedule` on the way out".
//!
//! * Boot, once the pCPUs are up: [`Scheduler::new`]`(nr_pcpus)`.
//! * Domain creation: [`Scheduler::add_domain`], then [`Scheduler::add_vcpu`] for each vCPU. A
//!   new vCPU is paused once ("down", Xen's `_VPF_down`).
//! * A vCPU brought up, a domain started or unpaused (`xl create`, `xl unpause`):
//!   [`Scheduler::unpause`] or [`Scheduler::unpause_domain`]; kick.
//! * A pCPU's one-shot timer reaches `run_until`, or a kick arrives:
//!   [`Scheduler::schedule`]`(this_pcpu, now)`. Switch to `next` (`None`: halt with interrupts
//!   on), re-arm the timer for `run_until` (`None`: no timer), kick the pCPUs in `kick`.
//! * `SCHEDOP_block`, after the usual check that no event is pending: [`Scheduler::block`], then
//!   `schedule`.
//! * An event for a blocked vCPU, a `SCHEDOP_poll` timeout, the vCPU's timer firing:
//!   [`Scheduler::wake`]; kick.
//! * `SCHEDOP_yield`: [`Scheduler::yield_now`], then `schedule`.
//! * `xl pause`, `XEN_DOMCTL_pausedomain`, a vCPU going down: [`Scheduler::pause`] or
//!   [`Scheduler::pause_domain`]; kick, and for Xen's synchronous pause wait until each kicked
//!   pCPU has rescheduled.
//! * `xl sched-credit` (`XEN_DOMCTL_SCHEDOP_putinfo`, `getinfo`): [`Scheduler::set_params`],
//!   [`Scheduler::params`].
//! * `xl vcpu-pin` (`XEN_DOMCTL_setvcpuaffinity`): [`Scheduler::set_affinity`]; kick. Its
//!   `getvcpuaffinity`: [`Scheduler::affinity`].
//! * `xen-hptool cpu-offline/cpu-online` (`XEN_SYSCTL_cpu_hotplug`):
//!   [`Scheduler::set_pcpu_online`]; kick, log the broken affinities, and for an offline wait
//!   until the pCPU runs nothing.
//! * Domain destruction: `pause_domain` and wait, then [`Scheduler::remove_domain`] (which copes
//!   with vCPUs still running too: it returns their pCPUs to kick).
//! * `xl list` Time(s), `getdomaininfo.cpu_time`, `getvcpuinfo.cpu_time`:
//!   [`Scheduler::domain_runtime`], [`Scheduler::runtime`].
//!
//! # Standing assumptions
//!
//! * The caller serialises every call (one lock around the `Scheduler`; Xen splits it into
//!   per-run-queue locks and a private lock, an optimisation this module leaves for later).
//! * `now` comes from one monotonic nanosecond clock that all pCPUs share (system time from the
//!   TSC, `time.rs`). A `now` slightly behind an earlier one is tolerated (nothing is charged).
//! * After `schedule(p, now)` returned `next`, pCPU `p` runs exactly that until it calls
//!   `schedule` again: the scheduler's idea of what runs where is the truth.
//!
//! Nothing here panics on any sequence of calls: unknown vCPUs, unknown domains and out-of-range
//! pCPUs are ignored (or refused with an [`Errno`] where the call returns a `Result`).
//!
//! # Where this differs from Xen, and why
//!
//! * One timer per pCPU instead of Xen's two (slice timer and `csched_tick` ticker): `run_until`
//!   is whichever comes first, and the tick's work is done inside `schedule` when it is due.
//!   Ticks fall on multiples of [`TICK_NS`] and accounting on multiples of [`ACCT_PERIOD_NS`], so
//!   every accounting instant is also a tick of every busy pCPU.
//! * Accounting runs in whichever pCPU's `schedule` first sees the period due (Xen: the "master"
//!   pCPU's timer), and first charges every running vCPU up to `now`, so the distribution sees
//!   exact consumption (Xen charges only at ticks and context switches).
//! * While every pCPU is idle there is no accounting at all unless a vCPU is parked (then the pCPU
//!   it belongs to keeps a timer for the next period, to unpark it); the period that was missed is
//!   caught up once when work returns. Xen's master ticker runs all the time.
//! * A waiting vCPU of strictly higher priority preempts the running one at any `schedule` call,
//!   ticks included (Xen: only when the waker tickles, or at the end of the slice).
//! * A vCPU woken for a busy pCPU while another pCPU idles is queued on the idle one directly
//!   (Xen tickles the idler, which then steals it).
//! * A runnable vCPU whose credit passes one period's worth keeps earning (up to two periods'
//!   worth) instead of being taken off the distribution with its credit halved. Xen does that to
//!   any vCPU, but for one that is runnable and merely waiting behind other vCPUs' 30 ms slices it
//!   throws away share it wanted: with Xen's rule, hogs weighted 256/512/1024/2048 on one pCPU
//!   got 8/16/33/43 % in the test harness (`sim`) instead of the fair 7/13/27/53 % they get now (the test
//!   `shares_follow_weights`). Blocked, paused and parked vCPUs stop earning as in Xen.
//! * Hard affinity is a 64-bit mask per vCPU (at most [`MAX_PCPUS`] pCPUs); soft affinity is
//!   recorded for the toolstack ([`Scheduler::affinity`]) but does not steer placement (Xen's
//!   credit1 prefers soft-affine pCPUs in `csched_runq_steal` and `__runq_tickle`).
//! * A pCPU taken offline ([`Scheduler::set_pcpu_online`]) is one the scheduler never gives a vCPU
//!   and that never steals; Xen removes it from its cpupool (`cpu_disable_scheduler`) and the
//!   pCPU itself dies. A vCPU whose hard affinity held only offline pCPUs has it reset to all
//!   pCPUs, as Xen's `cpu_disable_scheduler` does ("Breaking affinity"); the call names them.
//! * Not provided: SMT/NUMA-aware placement, the context-switch rate limit
//!   (`sched_ratelimit_us`), migration of running vCPUs at ticks, cpupools.
//!
//! # Affinity and offline pCPUs
//!
//! A vCPU runs, and waits in a run queue, only on a pCPU that is both in its hard affinity and
//! online: wakes and unpauses queue it on such a pCPU, an idle pCPU steals only vCPUs that may
//! run there, and a vCPU whose pCPU becomes forbidden (its affinity changed, the pCPU went
//! offline) is moved at once if it waits, or leaves at its pCPU's next `schedule` (which the
//! change asks for with a kick) if it runs. The credit distributed per period is worth the
//! online pCPUs.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use guest_abi::errno::Errno;
use guest_abi::types::{DOMID_FIRST_RESERVED, DomId};

/// Nanoseconds per millisecond.
const NS_PER_MS: u64 = 1_000_000;

/// Weight of a domain whose weight was never set (Xen's `CSCHED_DEFAULT_WEIGHT`).
pub const DEFAULT_WEIGHT: u32 = 256;

/// Largest weight: the `uint16_t weight` of Xen's `xen_domctl_sched_credit` (libxl's
/// `sched_credit_domain_set` refuses anything outside `1..=65535`).
pub const MAX_WEIGHT: u32 = 65_535;

/// A cap is in percent of one pCPU; a domain can use at most all of its vCPUs' worth, so
/// libxl's `sched_credit_domain_set` refuses a cap above `100 * nr_vcpus`.
pub const CAP_PERCENT_PER_VCPU: u32 = 100;

/// Length of a time slice: how long a vCPU runs before the others of its class get a turn
/// (Xen's `CSCHED_DEFAULT_TSLICE_MS`).
pub const TSLICE_NS: u64 = 30 * NS_PER_MS;

/// Accounting ticks per slice (Xen's `CSCHED_TICKS_PER_TSLICE`).
const TICKS_PER_TSLICE: u64 = 3;

/// Period of the per-pCPU accounting tick, which charges the running vCPU and ends its boost
/// (Xen's `tick_period_us`, `tslice / CSCHED_TICKS_PER_TSLICE`).
pub const TICK_NS: u64 = TSLICE_NS / TICKS_PER_TSLICE;

/// Period of the credit distribution. Xen's master ticker (`csched_acct`) fires every `tslice`.
pub const ACCT_PERIOD_NS: u64 = TSLICE_NS;

/// Credits a running vCPU burns per millisecond (Xen's `CSCHED_CREDITS_PER_MSEC`).
pub const CREDITS_PER_MSEC: u64 = 10;

/// Credits one pCPU is worth per accounting period (Xen's `credits_per_tslice`). It also bounds a
/// vCPU's credit: below `-CREDITS_PER_TSLICE` debt is forgiven, and a vCPU that is not runnable
/// stops earning above `+CREDITS_PER_TSLICE` (it evidently does not use its share).
const CREDITS_PER_TSLICE: i64 = (CREDITS_PER_MSEC * TSLICE_NS / NS_PER_MS) as i64;

/// Most credit a runnable vCPU keeps (see "Where this differs from Xen"): two periods' worth,
/// enough for a heavy vCPU waiting behind others' slices to keep what it earned meanwhile, little
/// enough that a long-starved vCPU cannot hold the `UNDER` class for long afterwards.
const RUNNABLE_CREDIT_LIMIT: i64 = 2 * CREDITS_PER_TSLICE;

/// Most pCPUs one scheduler serves: affinities and the online set are 64-bit masks.
pub const MAX_PCPUS: usize = 64;

/// Hard affinity of a new vCPU: every pCPU (Xen's default `cpumask_all`).
pub const AFFINITY_ALL: u64 = u64::MAX;

/// Whether `mask` has bit `p`.
fn has(mask: u64, p: usize) -> bool {
    p < MAX_PCPUS && mask & (1 << p) != 0
}

/// One virtual CPU, as the scheduler names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VcpuId {
    /// The domain it belongs to.
    pub dom: DomId,
    /// Its index within the domain (Xen's `vcpu_id`).
    pub vcpu: u32,
}

/// A domain's scheduling parameters (Xen's `xen_domctl_sched_credit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Relative share of CPU time when pCPUs are contended, `1..=MAX_WEIGHT`. A domain with
    /// weight 512 gets twice the time of one with 256 (per active vCPU).
    pub weight: u32,
    /// Upper limit in percent of one pCPU, whether or not the CPU is otherwise idle: 50 is half a
    /// pCPU, 200 two pCPUs. 0 means no cap. At most `100 * max_vcpus`.
    pub cap: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            cap: 0,
        }
    }
}

/// What a pCPU does next, from [`Scheduler::schedule`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the pCPU must run `next` until `run_until` and kick the pCPUs in `kick`"]
pub struct Decision {
    /// The vCPU to run; `None` runs the idle vCPU: halt until an interrupt.
    pub next: Option<VcpuId>,
    /// When to call `schedule` again at the latest (end of the slice or the next accounting
    /// tick). `None` only when idle with nothing to account: no tick while idle.
    pub run_until: Option<u64>,
    /// Other pCPUs to kick, found by the credit distribution this call ran: one runs a vCPU that
    /// its cap just parked, or idles with a vCPU that was just parked (it must keep a timer to
    /// unpark it), or should run a vCPU that was just unparked. Usually empty, and then
    /// allocation-free.
    pub kick: Vec<usize>,
}

/// Priority classes (Xen's `CSCHED_PRI_TS_*`; the idle class is a pCPU with no vCPU). The
/// derived order is the scheduling order: later variants run first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pri {
    /// Overdrew its credit.
    Over,
    /// Has credit left.
    Under,
    /// Woke from blocking with credit left: runs before everything else until a tick sees it.
    Boost,
}

/// Per-vCPU state (Xen's `struct csched_unit`).
#[derive(Debug)]
struct Vcpu {
    /// The pCPU whose run queue it belongs to, or which runs it.
    pcpu: usize,
    /// Credit in Xen's units ([`CREDITS_PER_MSEC`]); negative when overdrawn.
    credit: i64,
    /// Nanoseconds × credits-per-ms not yet converted to a whole credit, so short runs are
    /// charged exactly in the long run (Xen's `residual`).
    residual: u64,
    pri: Pri,
    /// Takes part in the credit distribution (Xen: on its domain's `active_unit` list).
    active: bool,
    /// On its pCPU's run queue.
    queued: bool,
    /// Waiting for an event (`SCHEDOP_block`).
    blocked: bool,
    /// Nested pauses (Xen's `pause_count`); a new vCPU starts with one ("down").
    pause_count: u32,
    /// Taken off the CPU by its domain's cap until the accounting gives credit back.
    parked: bool,
    /// Asked to let others run (`SCHEDOP_yield`); cleared at the next `schedule`.
    yielding: bool,
    /// While running: the time up to which it has been charged.
    charged_until: u64,
    /// Nanoseconds spent running, up to `charged_until`.
    runtime: u64,
    /// The pCPUs it may run on (bit *p* = pCPU *p*): never queued or picked elsewhere.
    hard: u64,
    /// The pCPUs it prefers: recorded for `getvcpuaffinity`, not used for placement.
    soft: u64,
    /// Its run-state accounting (`VCPUOP_get_runstate_info`), changed with every transition.
    runstate: crate::runstate::Account,
}

impl Vcpu {
    fn runnable(&self) -> bool {
        !self.blocked && self.pause_count == 0 && !self.parked
    }
}

/// Per-domain state (Xen's `struct csched_dom`).
#[derive(Debug)]
struct Dom {
    params: Params,
    /// The domain's vCPU ids are below this; bounds the cap.
    max_vcpus: u32,
    /// Number of its vCPUs with `active` set.
    active_vcpus: u32,
    /// Runtime of vCPUs already removed, so the domain's total never goes backwards.
    retired_runtime: u64,
}

/// Per-pCPU state (Xen's `struct csched_pcpu`).
#[derive(Debug, Default)]
struct Pcpu {
    /// Runnable vCPUs waiting for this pCPU, highest priority first, FIFO within a class.
    runq: VecDeque<VcpuId>,
    /// The vCPU it runs; `None` is the idle vCPU.
    current: Option<VcpuId>,
    /// When the current vCPU's slice ends.
    slice_end: u64,
    /// When the next accounting tick is due (meaningful only while not idle).
    next_tick: u64,
}

/// What taking a pCPU offline did ([`Scheduler::set_pcpu_online`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "the pCPUs in `kick` must be kicked"]
pub struct Offlined {
    /// pCPUs to kick: the one going offline if it runs a vCPU (it must reschedule, which moves
    /// the vCPU away), and those that got one of its waiting vCPUs.
    pub kick: Vec<usize>,
    /// vCPUs whose hard affinity held no other online pCPU: it is now every pCPU (Xen's
    /// "Breaking affinity"), which the caller logs.
    pub broken: Vec<VcpuId>,
}

/// The credit scheduler for a fixed set of pCPUs `0..nr_pcpus`, each online (for scheduling)
/// or offline.
#[derive(Debug)]
pub struct Scheduler {
    pcpus: Vec<Pcpu>,
    /// The pCPUs that take vCPUs (bit *p* = pCPU *p*); never empty once there are pCPUs.
    online: u64,
    doms: BTreeMap<DomId, Dom>,
    /// Keyed by `(dom, vcpu)`, so a domain's vCPUs are one contiguous range.
    vcpus: BTreeMap<VcpuId, Vcpu>,
    /// Domains with at least one active vCPU, in Xen's `active_sdom` order (which
    /// `csched_acct` rotates, so the order matters for who gets rounding leftovers).
    active_doms: VecDeque<DomId>,
    /// Sum of active vCPUs' credit after the last distribution (Xen's `credit_balance`): when
    /// negative, the next distribution hands out that much more, so the total converges to 0.
    credit_balance: i64,
    /// When the next distribution is due.
    next_acct: u64,
    /// The system clock for run-state accounting ([`Self::set_clock`]); without one, the
    /// latest time a caller passed in.
    clock: Option<fn() -> u64>,
    /// The latest time a caller passed in.
    seen: u64,
}

/// `a / b` rounded up, for non-negative `a` and positive `b` (Xen rounds every share up).
fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// The first multiple of `period` strictly after `now`.
fn next_multiple(now: u64, period: u64) -> u64 {
    (now / period).saturating_add(1).saturating_mul(period)
}

/// Charges `v` for running from `charged_until` to `now` (Xen's `burn_credits`).
fn burn(v: &mut Vcpu, now: u64) {
    let delta = now.saturating_sub(v.charged_until);
    v.charged_until = v.charged_until.max(now);
    v.runtime = v.runtime.saturating_add(delta);
    let scaled = delta
        .saturating_mul(CREDITS_PER_MSEC)
        .saturating_add(v.residual);
    v.residual = scaled % NS_PER_MS;
    let credits = i64::try_from(scaled / NS_PER_MS).unwrap_or(i64::MAX);
    v.credit = v.credit.saturating_sub(credits);
}

/// The keys of all of `dom`'s vCPUs.
fn dom_range(dom: DomId) -> core::ops::RangeInclusive<VcpuId> {
    VcpuId { dom, vcpu: 0 }..=VcpuId {
        dom,
        vcpu: u32::MAX,
    }
}

/// Adds `p` to `kick` once.
fn push_kick(kick: &mut Vec<usize>, p: usize) {
    if !kick.contains(&p) {
        kick.push(p);
    }
}

impl Scheduler {
    /// A scheduler for pCPUs `0..nr_pcpus` (at most [`MAX_PCPUS`]; more are ignored), all
    /// online and idle, with no domains.
    pub fn new(nr_pcpus: usize) -> Self {
        let nr_pcpus = nr_pcpus.min(MAX_PCPUS);
        let mut pcpus = Vec::with_capacity(nr_pcpus);
        pcpus.resize_with(nr_pcpus, Pcpu::default);
        let online = if nr_pcpus == MAX_PCPUS {
            u64::MAX
        } else {
            (1u64 << nr_pcpus) - 1
        };
        Self {
            pcpus,
            online,
            doms: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            active_doms: VecDeque::new(),
            credit_balance: 0,
            next_acct: ACCT_PERIOD_NS,
            clock: None,
            seen: 0,
        }
    }

    /// A scheduler with no pCPUs and no domains, for a `static` before boot knows the pCPUs;
    /// [`Self::new`] makes the working one.
    pub const fn empty() -> Self {
        Self {
            pcpus: Vec::new(),
            online: 0,
            doms: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            active_doms: VecDeque::new(),
            credit_balance: 0,
            next_acct: ACCT_PERIOD_NS,
            clock: None,
            seen: 0,
        }
    }

    /// Whether `id` may run now: not blocked, not paused (by its domain's controller, by
    /// being down, by a shutdown), not parked by its cap. The scheduler is the one owner of
    /// this answer; `false` for an unknown vCPU.
    pub fn is_runnable(&self, id: VcpuId) -> bool {
        self.vcpus.get(&id).is_some_and(Vcpu::runnable)
    }

    /// Whether `id` waits in `SCHEDOP_block` for an event.
    pub fn is_blocked(&self, id: VcpuId) -> bool {
        self.vcpus.get(&id).is_some_and(|v| v.blocked)
    }

    /// Number of pCPUs it schedules, online or not.
    pub fn nr_pcpus(&self) -> usize {
        self.pcpus.len()
    }

    /// The pCPUs online for scheduling (bit *p* = pCPU *p*).
    pub fn online_mask(&self) -> u64 {
        self.online
    }

    /// Whether pCPU `p` takes vCPUs.
    pub fn is_pcpu_online(&self, p: usize) -> bool {
        has(self.online, p)
    }

    /// Takes pCPU `p` offline (`online == false`) or brings it back (Xen's `cpu_down` and
    /// `cpu_up` as far as the scheduler sees them).
    ///
    /// Offline: `EINVAL` if `p` is out of range or offline already, `EBUSY` if it is the last
    /// online pCPU. Its waiting vCPUs move to pCPUs they may run on; one it runs leaves at its
    /// next `schedule` (it is in `kick`); vCPUs that would have nowhere to run get every pCPU
    /// as their hard affinity (in `broken`). From then on it is never given a vCPU and never
    /// steals, so once it has rescheduled it idles.
    ///
    /// Online: `EINVAL` if out of range or online already; the answer's `kick` names `p`, so it
    /// looks for work to steal.
    pub fn set_pcpu_online(&mut self, p: usize, online: bool) -> Result<Offlined, Errno> {
        if p >= self.pcpus.len() || has(self.online, p) == online {
            return Err(Errno::EINVAL);
        }
        let mut out = Offlined::default();
        if online {
            self.online |= 1 << p;
            out.kick.push(p);
            return Ok(out);
        }
        if self.online == 1 << p {
            return Err(Errno::EBUSY);
        }
        self.online &= !(1 << p);
        let ids: Vec<VcpuId> = self.vcpus.keys().copied().collect();
        for id in ids {
            let running = self.is_running(id);
            let online = self.online;
            let Some(v) = self.vcpus.get_mut(&id) else {
                continue;
            };
            if v.hard & online == 0 {
                v.hard = AFFINITY_ALL;
                out.broken.push(id);
            }
            if v.pcpu != p {
                continue;
            }
            if running {
                push_kick(&mut out.kick, p);
            } else {
                self.rehome(id, &mut out.kick);
            }
        }
        Ok(out)
    }

    /// Sets the hard affinity of `id` (`XEN_DOMCTL_setvcpuaffinity`): the pCPUs it may run on,
    /// bit *p* = pCPU *p*. Returns the pCPUs to kick: the one running it if that is now
    /// forbidden (it reschedules, which moves the vCPU), and the one it was moved to if it was
    /// waiting on a forbidden one.
    ///
    /// `ESRCH` for an unknown vCPU, `EINVAL` for a mask with no online pCPU (nothing changes).
    pub fn set_affinity(&mut self, id: VcpuId, hard: u64) -> Result<Vec<usize>, Errno> {
        let online = self.online;
        let running = self.is_running(id);
        let v = self.vcpus.get_mut(&id).ok_or(Errno::ESRCH)?;
        if hard & online == 0 {
            return Err(Errno::EINVAL);
        }
        v.hard = hard;
        let mut kick = Vec::new();
        if has(hard & online, v.pcpu) {
            return Ok(kick);
        }
        if running {
            kick.push(v.pcpu);
        } else {
            self.rehome(id, &mut kick);
        }
        Ok(kick)
    }

    /// Records the soft affinity of `id` (not used for placement; see the module docs).
    /// `ESRCH` for an unknown vCPU.
    pub fn set_soft_affinity(&mut self, id: VcpuId, soft: u64) -> Result<(), Errno> {
        self.vcpus.get_mut(&id).ok_or(Errno::ESRCH)?.soft = soft;
        Ok(())
    }

    /// The hard and soft affinity of `id`, as set (Xen's `getvcpuaffinity` reports them
    /// without intersecting them with the online pCPUs).
    pub fn affinity(&self, id: VcpuId) -> Option<(u64, u64)> {
        self.vcpus.get(&id).map(|v| (v.hard, v.soft))
    }

    /// Whether `id` may run on `p` now: in its hard affinity and online.
    pub fn may_run(&self, id: VcpuId, p: usize) -> bool {
        self.vcpus
            .get(&id)
            .is_some_and(|v| has(v.hard & self.online, p))
    }

    /// The pCPUs `id` may run on now; the online ones should its affinity have none (which
    /// the callers that change either keep from happening).
    fn allowed(&self, id: VcpuId) -> u64 {
        let hard = self.vcpus.get(&id).map_or(AFFINITY_ALL, |v| v.hard);
        match hard & self.online {
            0 => self.online,
            m => m,
        }
    }

    /// The first pCPU of `mask` at or after `from`, wrapping around.
    fn first_in(&self, mask: u64, from: usize) -> Option<usize> {
        let n = self.pcpus.len();
        (from..n).chain(0..from.min(n)).find(|&q| has(mask, q))
    }

    /// Moves `id`, which does not run, off a pCPU it may no longer use: a waiting vCPU is
    /// queued again where it may run (its pCPU added to `kick` if that should reschedule),
    /// any other gets such a pCPU as its home.
    fn rehome(&mut self, id: VcpuId, kick: &mut Vec<usize>) {
        let Some(v) = self.vcpus.get(&id) else {
            return;
        };
        let (home, queued) = (v.pcpu, v.queued);
        if queued {
            self.dequeue(id);
            if let Some(p) = self.make_runnable(id, false) {
                push_kick(kick, p);
            }
        } else if !has(self.allowed(id), home) {
            let to = self.first_in(self.allowed(id), home).unwrap_or(home);
            if let Some(v) = self.vcpus.get_mut(&id) {
                v.pcpu = to;
            }
        }
    }

    /// Checks `params` for a domain of `max_vcpus` vCPUs, with libxl's limits
    /// (`sched_credit_domain_set`): weight `1..=65535`, cap at most `100 * max_vcpus`.
    fn validate(params: Params, max_vcpus: u32) -> Result<(), Errno> {
        let weight_ok = (1..=MAX_WEIGHT).contains(&params.weight);
        let cap_ok =
            u64::from(params.cap) <= u64::from(CAP_PERCENT_PER_VCPU) * u64::from(max_vcpus);
        if weight_ok && cap_ok {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// Registers domain `dom`, whose vCPUs will be numbered below `max_vcpus`.
    ///
    /// `EEXIST` if it is known already, `EINVAL` for a reserved domain id, `max_vcpus == 0` or
    /// invalid `params`.
    pub fn add_domain(&mut self, dom: DomId, max_vcpus: u32, params: Params) -> Result<(), Errno> {
        if dom >= DOMID_FIRST_RESERVED || max_vcpus == 0 {
            return Err(Errno::EINVAL);
        }
        if self.doms.contains_key(&dom) {
            return Err(Errno::EEXIST);
        }
        Self::validate(params, max_vcpus)?;
        self.doms.insert(
            dom,
            Dom {
                params,
                max_vcpus,
                active_vcpus: 0,
                retired_runtime: 0,
            },
        );
        Ok(())
    }

    /// Forgets domain `dom` and all its vCPUs, returning the pCPUs that were running one of them:
    /// they must reschedule at once (and must not resume the vCPU). Unknown domains are ignored.
    #[must_use = "pCPUs still running the domain's vCPUs must be kicked"]
    pub fn remove_domain(&mut self, dom: DomId) -> Vec<usize> {
        let ids: Vec<VcpuId> = self
            .vcpus
            .range(dom_range(dom))
            .map(|(id, _)| *id)
            .collect();
        let mut kick = Vec::new();
        for id in ids {
            if let Some(p) = self.remove_vcpu(id) {
                push_kick(&mut kick, p);
            }
        }
        self.doms.remove(&dom);
        kick
    }

    /// Changes a domain's weight and cap (`XEN_DOMCTL_SCHEDOP_putinfo`). They take effect at the
    /// next distribution, at most [`ACCT_PERIOD_NS`] later; so does lifting a cap for a parked
    /// domain.
    ///
    /// `ESRCH` for an unknown domain, `EINVAL` for a weight of 0 or above [`MAX_WEIGHT`], or a cap
    /// above `100 * max_vcpus`.
    pub fn set_params(&mut self, dom: DomId, params: Params) -> Result<(), Errno> {
        let d = self.doms.get_mut(&dom).ok_or(Errno::ESRCH)?;
        Self::validate(params, d.max_vcpus)?;
        d.params = params;
        Ok(())
    }

    /// A domain's weight and cap (`XEN_DOMCTL_SCHEDOP_getinfo`).
    pub fn params(&self, dom: DomId) -> Option<Params> {
        self.doms.get(&dom).map(|d| d.params)
    }

    /// Adds vCPU `id` of an existing domain, queued on `pcpu` once it runs. It starts paused once
    /// ("down", as Xen's vCPUs start with `_VPF_down`): [`Self::unpause`] brings it up.
    ///
    /// Its hard affinity is every pCPU. An offline `pcpu` is replaced by the next online one.
    ///
    /// `ESRCH` for an unknown domain, `EINVAL` for `id.vcpu >= max_vcpus` or `pcpu` out of range,
    /// `EEXIST` if it exists already.
    pub fn add_vcpu(&mut self, id: VcpuId, pcpu: usize) -> Result<(), Errno> {
        let d = self.doms.get(&id.dom).ok_or(Errno::ESRCH)?;
        if id.vcpu >= d.max_vcpus || pcpu >= self.pcpus.len() {
            return Err(Errno::EINVAL);
        }
        if self.vcpus.contains_key(&id) {
            return Err(Errno::EEXIST);
        }
        let pcpu = self.first_in(self.online, pcpu).unwrap_or(pcpu);
        let created = self.runstate_now();
        self.vcpus.insert(
            id,
            Vcpu {
                pcpu,
                credit: 0,
                residual: 0,
                pri: Pri::Under,
                active: false,
                queued: false,
                blocked: false,
                pause_count: 1,
                parked: false,
                yielding: false,
                charged_until: 0,
                runtime: 0,
                hard: AFFINITY_ALL,
                soft: AFFINITY_ALL,
                runstate: crate::runstate::Account::new(crate::runstate::OFFLINE, created),
            },
        );
        Ok(())
    }

    /// Forgets vCPU `id`. Returns the pCPU that was running it, which must reschedule at once.
    #[must_use = "a pCPU still running the vCPU must be kicked"]
    pub fn remove_vcpu(&mut self, id: VcpuId) -> Option<usize> {
        if self.vcpus.get(&id).is_some_and(|v| v.active) {
            self.deactivate(id);
        }
        self.dequeue(id);
        let v = self.vcpus.remove(&id)?;
        if let Some(d) = self.doms.get_mut(&id.dom) {
            d.retired_runtime = d.retired_runtime.saturating_add(v.runtime);
        }
        let p = self.pcpus.get_mut(v.pcpu)?;
        if p.current == Some(id) {
            p.current = None;
            Some(v.pcpu)
        } else {
            None
        }
    }

    /// Where `id` runs or waits (or would, once runnable).
    pub fn pcpu_of(&self, id: VcpuId) -> Option<usize> {
        self.vcpus.get(&id).map(|v| v.pcpu)
    }

    /// The vCPUs waiting in `pcpu`'s run queue, in the order they will run (debug key `r`).
    pub fn queued(&self, pcpu: usize) -> impl Iterator<Item = VcpuId> + '_ {
        self.pcpus
            .get(pcpu)
            .into_iter()
            .flat_map(|p| p.runq.iter().copied())
    }

    /// The vCPU `pcpu` runs according to the last [`Self::schedule`] (`None`: idle).
    pub fn current(&self, pcpu: usize) -> Option<VcpuId> {
        self.pcpus.get(pcpu).and_then(|p| p.current)
    }

    /// Gives the scheduler the system clock, read at every run-state change (the transitions
    /// without a time argument: wake, pause, unpause).
    pub fn set_clock(&mut self, clock: fn() -> u64) {
        self.clock = Some(clock);
    }

    /// The time for run-state accounting: the clock's, never before a time a caller passed.
    fn runstate_now(&self) -> u64 {
        self.clock.map_or(self.seen, |c| c()).max(self.seen)
    }

    /// Records `id`'s run state as it is now (Xen's `vcpu_runstate_change`): running if a
    /// pCPU runs it, blocked if it waits for an event (even paused, as in Xen), runnable if
    /// it may run, else offline.
    fn settle(&mut self, id: VcpuId) {
        use crate::runstate as rs;
        let running = self.is_running(id);
        let now = self.runstate_now();
        if let Some(v) = self.vcpus.get_mut(&id) {
            let state = if running {
                rs::RUNNING
            } else if v.blocked {
                rs::BLOCKED
            } else if v.runnable() {
                rs::RUNNABLE
            } else {
                rs::OFFLINE
            };
            v.runstate.change(state, now);
        }
    }

    /// `id`'s run-state accounting as of `now` (`None` for an unknown vCPU).
    pub fn runstate(&mut self, id: VcpuId, now: u64) -> Option<crate::runstate::Runstate> {
        self.seen = self.seen.max(now);
        self.settle(id);
        let now = self.runstate_now();
        self.vcpus.get(&id).map(|v| v.runstate.at(now))
    }

    /// Whether `id` is running on some pCPU now.
    fn is_running(&self, id: VcpuId) -> bool {
        self.vcpus
            .get(&id)
            .is_some_and(|v| self.pcpus.get(v.pcpu).and_then(|p| p.current) == Some(id))
    }

    /// Marks `id` blocked, waiting for an event (`SCHEDOP_block`; Xen's `vcpu_block` then
    /// `csched_unit_sleep`). It is charged up to `now`. Returns the pCPU running it, which must
    /// call [`Self::schedule`] now; a blocked vCPU is never picked again until [`Self::wake`].
    ///
    /// The caller does Xen's race check: if an event became pending meanwhile, it calls `wake`
    /// right after, and the vCPU simply keeps running.
    #[must_use = "the pCPU that ran the vCPU must reschedule"]
    pub fn block(&mut self, id: VcpuId, now: u64) -> Option<usize> {
        self.seen = self.seen.max(now);
        let r = self.block_inner(id, now);
        self.settle(id);
        r
    }

    fn block_inner(&mut self, id: VcpuId, now: u64) -> Option<usize> {
        let running = self.is_running(id);
        let v = self.vcpus.get_mut(&id)?;
        v.blocked = true;
        if running {
            burn(v, now);
            let (pcpu, inactive) = (v.pcpu, !v.active);
            // It has just used CPU, so it takes part in the next distribution. Otherwise a
            // vCPU that runs in short bursts, which the 10 ms tick rarely finds running,
            // would keep burning credit without earning any, turn OVER, and lose the BOOST
            // that lets it preempt CPU hogs when it wakes (a wake-up latency of whole
            // slices). Xen activates only at a tick; this is the one place Xenia does more.
            if inactive {
                self.activate(id);
            }
            Some(pcpu)
        } else {
            self.dequeue(id);
            None
        }
    }

    /// Ends a block (an event for `id` arrived; Xen's `vcpu_wake` → `csched_unit_wake`). A vCPU
    /// that wakes with credit left is boosted. Returns the pCPU to kick: its own if that idles
    /// or runs something of lower priority, or an idle one it was moved to while its own is
    /// busy; `None` if it just waits its turn. Waking a vCPU that is not blocked does nothing.
    #[must_use = "the returned pCPU must be kicked to run the woken vCPU"]
    pub fn wake(&mut self, id: VcpuId) -> Option<usize> {
        let v = self.vcpus.get_mut(&id)?;
        if !v.blocked {
            return None;
        }
        v.blocked = false;
        let r = self.make_runnable(id, true);
        self.settle(id);
        r
    }

    /// Pauses `id` once more (Xen's `vcpu_pause_nosync`; pauses nest). Returns the pCPU running
    /// it: that one must reschedule, and a synchronous pause waits until it has.
    #[must_use = "the pCPU running the vCPU must reschedule"]
    pub fn pause(&mut self, id: VcpuId) -> Option<usize> {
        let running = self.is_running(id);
        let v = self.vcpus.get_mut(&id)?;
        v.pause_count = v.pause_count.saturating_add(1);
        if running {
            // Still on its pCPU until that reschedules: running until then.
            Some(v.pcpu)
        } else {
            self.dequeue(id);
            self.settle(id);
            None
        }
    }

    /// Undoes one [`Self::pause`] (Xen's `vcpu_unpause`). When the last pause goes and the vCPU is
    /// otherwise runnable it is queued (boosted like a wake, as Xen's `vcpu_unpause` goes through
    /// `vcpu_wake`); the return value is as for [`Self::wake`]. An unbalanced unpause does nothing.
    #[must_use = "the returned pCPU must be kicked to run the unpaused vCPU"]
    pub fn unpause(&mut self, id: VcpuId) -> Option<usize> {
        let v = self.vcpus.get_mut(&id)?;
        if v.pause_count == 0 {
            return None;
        }
        v.pause_count -= 1;
        if v.pause_count == 0 {
            let r = self.make_runnable(id, true);
            self.settle(id);
            r
        } else {
            None
        }
    }

    /// [`Self::pause`] for every vCPU of `dom` (Xen's `domain_pause`). Returns the pCPUs to kick.
    #[must_use = "the pCPUs running the domain's vCPUs must reschedule"]
    pub fn pause_domain(&mut self, dom: DomId) -> Vec<usize> {
        self.each_vcpu_of(dom, Self::pause)
    }

    /// [`Self::unpause`] for every vCPU of `dom` (Xen's `domain_unpause`). Returns the pCPUs to
    /// kick.
    #[must_use = "the returned pCPUs must be kicked to run the unpaused vCPUs"]
    pub fn unpause_domain(&mut self, dom: DomId) -> Vec<usize> {
        self.each_vcpu_of(dom, Self::unpause)
    }

    /// Applies `op` to every vCPU of `dom`; returns the pCPUs it asked to kick, each once.
    fn each_vcpu_of(
        &mut self,
        dom: DomId,
        op: fn(&mut Self, VcpuId) -> Option<usize>,
    ) -> Vec<usize> {
        let ids: Vec<VcpuId> = self
            .vcpus
            .range(dom_range(dom))
            .map(|(id, _)| *id)
            .collect();
        let mut kick = Vec::new();
        for id in ids {
            if let Some(p) = op(self, id) {
                push_kick(&mut kick, p);
            }
        }
        kick
    }

    /// Lets other vCPUs run before `id` (`SCHEDOP_yield`; Xen's `csched_unit_yield`): at its
    /// pCPU's next [`Self::schedule`], which the caller does right away, it goes behind one vCPU
    /// of the next lower class if there is one, else to the back of its own class.
    pub fn yield_now(&mut self, id: VcpuId) {
        if let Some(v) = self.vcpus.get_mut(&id) {
            v.yielding = true;
        }
    }

    /// Nanoseconds `id` has run, up to `now` (Xen's `runstate.time[RUNSTATE_running]`, as
    /// `vcpu_runstate_get` reads it). 0 for an unknown vCPU.
    pub fn runtime(&self, id: VcpuId, now: u64) -> u64 {
        let Some(v) = self.vcpus.get(&id) else {
            return 0;
        };
        if self.is_running(id) {
            v.runtime
                .saturating_add(now.saturating_sub(v.charged_until))
        } else {
            v.runtime
        }
    }

    /// Nanoseconds all of `dom`'s vCPUs have run, up to `now`, including removed vCPUs (for
    /// `getdomaininfo.cpu_time` and `xl list`'s Time(s)). 0 for an unknown domain.
    pub fn domain_runtime(&self, dom: DomId, now: u64) -> u64 {
        let retired = self.doms.get(&dom).map_or(0, |d| d.retired_runtime);
        self.vcpus
            .range(dom_range(dom))
            .fold(retired, |sum, (id, _)| {
                sum.saturating_add(self.runtime(*id, now))
            })
    }

    /// Decides what `pcpu` runs from `now` on (Xen's `csched_schedule`, with `csched_tick` and
    /// `csched_acct` folded in when due). Call it when `run_until` is reached, when kicked, and
    /// right after [`Self::block`] or [`Self::yield_now`] on this pCPU.
    ///
    /// The current vCPU keeps the pCPU if it is still runnable, did not yield, has slice left and
    /// nothing of strictly higher priority waits; otherwise it goes back to the run queue and the
    /// head of the queue runs with a fresh slice. If the best local candidate is `OVER` (or there
    /// is none), a peer's better waiting vCPU is stolen instead (`csched_load_balance`).
    pub fn schedule(&mut self, pcpu: usize, now: u64) -> Decision {
        self.seen = self.seen.max(now);
        let before = self.current(pcpu);
        let d = self.schedule_inner(pcpu, now);
        // The vCPU that ran and the one that runs now changed run state (a vCPU whose cap
        // parked it is settled at its next change).
        for id in [before, d.next].into_iter().flatten() {
            self.settle(id);
        }
        d
    }

    fn schedule_inner(&mut self, pcpu: usize, now: u64) -> Decision {
        let mut kick = Vec::new();
        let Some(p) = self.pcpus.get(pcpu) else {
            return Decision {
                next: None,
                run_until: None,
                kick,
            };
        };
        let cur = p.current;

        // Xen's `csched_tick`: charge the running vCPU, end its boost, let it earn again.
        if let Some(id) = cur
            && now >= p.next_tick
        {
            self.tick(id, now);
            self.pcpus[pcpu].next_tick = next_multiple(now, TICK_NS);
        }
        if now >= self.next_acct {
            self.account(now, pcpu, &mut kick);
            self.next_acct = next_multiple(now, ACCT_PERIOD_NS);
        }

        if let Some(id) = cur
            && !self.may_run(id, pcpu)
        {
            // Its affinity changed or this pCPU went offline: it goes where it may run.
            let v = self.vcpus.get_mut(&id).expect("current vCPU is known");
            burn(v, now);
            v.yielding = false;
            self.pcpus[pcpu].current = None;
            if let Some(p) = self.make_runnable(id, false) {
                push_kick(&mut kick, p);
            }
            if !self.vcpus[&id].queued {
                // Not runnable: it only needs a home it may use.
                self.rehome(id, &mut kick);
            }
        } else if let Some(id) = cur {
            let head = self.pcpus[pcpu].runq.front().map(|h| self.vcpus[h].pri);
            let slice_end = self.pcpus[pcpu].slice_end;
            let v = self.vcpus.get_mut(&id).expect("current vCPU is known");
            burn(v, now);
            if v.runnable() && !v.yielding && now < slice_end && head.is_none_or(|h| h <= v.pri) {
                let next_tick = self.pcpus[pcpu].next_tick;
                return Decision {
                    next: Some(id),
                    run_until: Some(slice_end.min(next_tick).min(self.next_acct)),
                    kick,
                };
            }
            let yielding = core::mem::take(&mut v.yielding);
            if v.runnable() {
                self.runq_insert(pcpu, id, yielding);
            }
            self.pcpus[pcpu].current = None;
        }

        let next = self.pick(pcpu);
        let p = &mut self.pcpus[pcpu];
        p.current = next;
        let run_until = match next {
            Some(id) => {
                let v = self.vcpus.get_mut(&id).expect("picked vCPU is known");
                v.charged_until = now;
                v.yielding = false;
                if cur.is_none() {
                    // Restart the tick coming out of idle, aligned to the tick grid as Xen does.
                    p.next_tick = next_multiple(now, TICK_NS);
                }
                p.slice_end = now.saturating_add(TSLICE_NS);
                Some(p.slice_end.min(p.next_tick).min(self.next_acct))
            }
            // Idle: the tick stops. Only a parked vCPU of ours needs the next distribution.
            None => self
                .vcpus
                .values()
                .any(|v| v.parked && v.pcpu == pcpu)
                .then_some(self.next_acct),
        };
        Decision {
            next,
            run_until,
            kick,
        }
    }

    /// Takes the vCPU `pcpu` runs next off a run queue: its own queue's head, or the best vCPU
    /// of a peer's queue that may run here, if that is of strictly higher priority than its own
    /// best and its own best is `OVER` or absent. An offline pCPU takes nothing.
    fn pick(&mut self, pcpu: usize) -> Option<VcpuId> {
        if !has(self.online, pcpu) {
            return None;
        }
        let local = self.pcpus[pcpu].runq.front().map(|h| self.vcpus[h].pri);
        if local.is_none_or(|pri| pri <= Pri::Over) {
            let n = self.pcpus.len();
            for peer in (pcpu + 1..n).chain(0..pcpu) {
                // Queues are in priority order: the first that may come here is its best
                // (Xen's `csched_runq_steal` skips the ones whose affinity forbids it).
                let Some((at, id)) = self.pcpus[peer]
                    .runq
                    .iter()
                    .enumerate()
                    .find(|(_, id)| self.may_run(**id, pcpu))
                    .map(|(at, id)| (at, *id))
                else {
                    continue;
                };
                if Some(self.vcpus[&id].pri) > local {
                    self.pcpus[peer].runq.remove(at);
                    let v = self.vcpus.get_mut(&id).expect("queued vCPU is known");
                    v.queued = false;
                    v.pcpu = pcpu;
                    return Some(id);
                }
            }
        }
        let id = self.pcpus[pcpu].runq.pop_front()?;
        if let Some(v) = self.vcpus.get_mut(&id) {
            v.queued = false;
        }
        Some(id)
    }

    /// Queues runnable `id` (not running, not queued) and says which pCPU to kick for it (Xen's
    /// `csched_unit_wake` and `__runq_tickle`). `boost` is false for an unpark: credit earned back
    /// after overdrawing a cap is no reason to jump the queue.
    fn make_runnable(&mut self, id: VcpuId, boost: bool) -> Option<usize> {
        let running = self.is_running(id);
        let v = self.vcpus.get_mut(&id)?;
        if running || v.queued || !v.runnable() {
            return None;
        }
        if boost && v.pri == Pri::Under {
            v.pri = Pri::Boost;
        }
        let home = v.pcpu;
        let allowed = self.allowed(id);
        // Its own pCPU if it may run there and that idles with nothing on its way there; else
        // any pCPU it may run on that does (Xen's `__runq_tickle` wakes an idler, which steals
        // it); else its own queue, or the first it may use after its own.
        let home_ok = has(allowed, home);
        let home_free = self.pcpus[home].current.is_none() && self.pcpus[home].runq.is_empty();
        let target = if home_ok && home_free {
            home
        } else if let Some(q) = self.idle_peer(home, allowed) {
            q
        } else if home_ok {
            home
        } else {
            self.first_in(allowed, home).unwrap_or(home)
        };
        let v = self.vcpus.get_mut(&id)?;
        v.pcpu = target;
        let pri = v.pri;
        self.runq_insert(target, id, false);
        match self.pcpus[target].current {
            None => Some(target),
            Some(cur) if self.vcpus.get(&cur).is_none_or(|c| pri > c.pri) => Some(target),
            Some(_) => None,
        }
    }

    /// A pCPU of `allowed` other than `home` that idles with nothing queued, searching upwards
    /// from `home`.
    fn idle_peer(&self, home: usize, allowed: u64) -> Option<usize> {
        let n = self.pcpus.len();
        (home + 1..n).chain(0..home.min(n)).find(|&q| {
            has(allowed, q) && self.pcpus[q].current.is_none() && self.pcpus[q].runq.is_empty()
        })
    }

    /// Inserts `id` into `pcpu`'s queue behind every vCPU of its priority or higher (Xen's
    /// `__runq_insert`); a yielding vCPU goes one further, behind the first lower one.
    fn runq_insert(&mut self, pcpu: usize, id: VcpuId, yielding: bool) {
        let pri = self.vcpus[&id].pri;
        let runq = &self.pcpus[pcpu].runq;
        let mut at = runq
            .iter()
            .position(|q| self.vcpus[q].pri < pri)
            .unwrap_or(runq.len());
        if yielding && at < runq.len() {
            at += 1;
        }
        self.pcpus[pcpu].runq.insert(at, id);
        if let Some(v) = self.vcpus.get_mut(&id) {
            v.queued = true;
            v.pcpu = pcpu;
        }
    }

    /// Takes `id` off its run queue if it is on one.
    fn dequeue(&mut self, id: VcpuId) {
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        if !v.queued {
            return;
        }
        v.queued = false;
        let runq = &mut self.pcpus[v.pcpu].runq;
        if let Some(at) = runq.iter().position(|q| *q == id) {
            runq.remove(at);
        }
    }

    /// The accounting tick for the running `id` (Xen's `csched_unit_acct`).
    fn tick(&mut self, id: VcpuId, now: u64) {
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        // Running at a tick means using a non-negligible amount of CPU: no more boost.
        if v.pri == Pri::Boost {
            v.pri = Pri::Under;
        }
        burn(v, now);
        if !v.active {
            self.activate(id);
        }
    }

    /// Puts `id` on the credit distribution (Xen's `__csched_unit_acct_start`).
    fn activate(&mut self, id: VcpuId) {
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        let Some(d) = self.doms.get_mut(&id.dom) else {
            return;
        };
        v.active = true;
        d.active_vcpus += 1;
        if d.active_vcpus == 1 {
            // Xen adds a newly active domain at the head of `active_sdom`.
            self.active_doms.push_front(id.dom);
        }
    }

    /// Takes `id` off the credit distribution (Xen's `__csched_unit_acct_stop_locked`).
    fn deactivate(&mut self, id: VcpuId) {
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        let Some(d) = self.doms.get_mut(&id.dom) else {
            return;
        };
        v.active = false;
        d.active_vcpus = d.active_vcpus.saturating_sub(1);
        if d.active_vcpus == 0 {
            self.active_doms.retain(|x| *x != id.dom);
        }
    }

    /// Distributes one period's credit among the active vCPUs and reclassifies them (Xen's
    /// `csched_acct`, same arithmetic). Runs within `schedule(this, now)`; pCPUs other than `this`
    /// that must reschedule because of it are added to `kick`.
    fn account(&mut self, now: u64, this: usize, kick: &mut Vec<usize>) {
        // Charge everything running up to now, so the distribution sees exact use.
        for p in &self.pcpus {
            if let Some(v) = p.current.and_then(|id| self.vcpus.get_mut(&id)) {
                burn(v, now);
            }
        }

        let cpt = CREDITS_PER_TSLICE;
        let weight_total: i64 = self
            .active_doms
            .iter()
            .filter_map(|d| self.doms.get(d))
            .map(|d| i64::from(d.params.weight) * i64::from(d.active_vcpus))
            .sum();
        // Worth the online pCPUs (Xen's `prv->credit` follows the pool's pCPUs).
        let mut credit_total = cpt * i64::from(self.online.count_ones());
        // Converge the balance towards 0 when it went negative.
        if self.credit_balance < 0 {
            credit_total -= self.credit_balance;
        }
        if weight_total == 0 {
            self.credit_balance = 0;
            self.unpark_uncapped(this, kick);
            return;
        }

        let mut weight_left = weight_total;
        let mut credit_balance = 0;
        let mut credit_xtra = false;
        let mut unpark = Vec::new();
        let order: Vec<DomId> = self.active_doms.iter().copied().collect();
        for dom in order {
            let Some(d) = self.doms.get(&dom) else {
                continue;
            };
            let weight = i64::from(d.params.weight);
            let cap = i64::from(d.params.cap);
            let n = i64::from(d.active_vcpus);
            if n == 0 {
                continue;
            }
            weight_left -= weight * n;

            // At most, a domain can run all its active vCPUs for the whole period; more only
            // while the system-wide balance is negative.
            let mut credit_peak = n * cpt;
            if self.credit_balance < 0 {
                credit_peak += div_ceil(-self.credit_balance * weight * n, weight_total);
            }
            let mut credit_cap = 0;
            if cap != 0 {
                credit_cap = div_ceil(cap * cpt, 100);
                credit_peak = credit_peak.min(credit_cap);
                credit_cap = div_ceil(credit_cap, n);
            }

            // The fair share by weight; what a domain cannot use goes to the ones after it.
            let mut credit_fair = div_ceil(credit_total * weight * n, weight_total);
            if credit_fair < credit_peak {
                credit_xtra = true;
            } else {
                if weight_left != 0 {
                    credit_total +=
                        div_ceil((credit_fair - credit_peak) * weight_total, weight_left);
                }
                if credit_xtra {
                    // Xen keeps domains with spare credit at the head, to give the others a
                    // chance at it in later periods.
                    self.active_doms.retain(|x| *x != dom);
                    self.active_doms.push_front(dom);
                }
                credit_fair = credit_peak;
            }
            let credit_fair = div_ceil(credit_fair, n);

            let ids: Vec<VcpuId> = self
                .vcpus
                .range(dom_range(dom))
                .filter(|(_, v)| v.active)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let v = self.vcpus.get_mut(&id).expect("active vCPU is known");
                v.credit = v.credit.saturating_add(credit_fair);
                if v.credit < 0 {
                    v.pri = Pri::Over;
                    if cap != 0 && v.credit < -credit_cap && !v.parked {
                        self.park(id, this, kick);
                    }
                    let v = self.vcpus.get_mut(&id).expect("active vCPU is known");
                    // Forgive debt beyond one period: a vCPU is not punished forever.
                    v.credit = v.credit.max(-cpt);
                    credit_balance += v.credit;
                } else {
                    v.pri = Pri::Under;
                    if v.parked {
                        unpark.push(id);
                    }
                    if v.credit > cpt && !v.runnable() {
                        // It does not use its share: stop earning, and start the next run a
                        // little ahead.
                        v.credit /= 2;
                        let credit = v.credit;
                        self.deactivate(id);
                        credit_balance += credit;
                    } else {
                        // Runnable and still waiting for its turn: it wants the share, so it
                        // keeps it, up to two periods' worth (see the module docs).
                        v.credit = v.credit.min(RUNNABLE_CREDIT_LIMIT);
                        credit_balance += v.credit;
                    }
                }
            }
        }
        self.credit_balance = credit_balance;

        // Priorities changed: restore queue order (Xen's `csched_runq_sort`), stably.
        for p in &mut self.pcpus {
            let vcpus = &self.vcpus;
            p.runq
                .make_contiguous()
                .sort_by_key(|id| core::cmp::Reverse(vcpus[id].pri));
        }

        for id in unpark {
            self.unpark(id, this, kick);
        }
        self.unpark_uncapped(this, kick);
    }

    /// Takes `id` off the CPU for exceeding its domain's cap (Xen: `CSCHED_FLAG_UNIT_PARKED` and
    /// `sched_unit_pause_nosync`). Its pCPU is kicked if it runs it, or if it idles (so that it
    /// keeps a timer for the distribution that will unpark it).
    fn park(&mut self, id: VcpuId, this: usize, kick: &mut Vec<usize>) {
        let running = self.is_running(id);
        self.dequeue(id);
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        v.parked = true;
        let p = v.pcpu;
        if p != this && (running || self.pcpus[p].current.is_none()) {
            push_kick(kick, p);
        }
    }

    /// Lets parked `id` run again, without a boost.
    fn unpark(&mut self, id: VcpuId, this: usize, kick: &mut Vec<usize>) {
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        v.parked = false;
        if let Some(p) = self.make_runnable(id, false)
            && p != this
        {
            push_kick(kick, p);
        }
    }

    /// Unparks the vCPUs of domains whose cap was lifted since they were parked.
    fn unpark_uncapped(&mut self, this: usize, kick: &mut Vec<usize>) {
        let ids: Vec<VcpuId> = self
            .vcpus
            .iter()
            .filter(|(id, v)| v.parked && self.doms.get(&id.dom).is_none_or(|d| d.params.cap == 0))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.unpark(id, this, kick);
        }
    }
}

/// A discrete-event simulation of pCPUs driving a [`Scheduler`] exactly as the hypervisor does,
/// without real time: for this module's tests and for any other test that needs scheduling.
///
/// Each vCPU has a [`Workload`]. The simulator jumps from event to event (a pCPU's `run_until`,
/// a kick arriving after [`Sim::kick_delay`], a vCPU finishing its burst and blocking, a vCPU's
/// timer firing) and calls the scheduler at each, checking its promises as it goes: a vCPU runs
/// on at most one pCPU, never while blocked or paused, and `run_until` is always in the future.
#[cfg(test)]
pub mod sim {
    use super::*;
    use alloc::vec;

    /// What a simulated vCPU does with the CPU.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Workload {
        /// Always runnable: never blocks.
        Hog,
        /// Blocks on a periodic timer: the timer fires at `phase + k * period`; each firing
        /// brings `burst` ns of work, after which the vCPU blocks again. A firing while work is
        /// left adds to it (the guest is late).
        Timer {
            /// Timer period.
            period: u64,
            /// First firing.
            phase: u64,
            /// CPU time needed per firing.
            burst: u64,
        },
    }

    #[derive(Debug)]
    struct Task {
        workload: Workload,
        /// Work left before the vCPU blocks (`Timer` only).
        work_left: u64,
        blocked: bool,
        paused: u32,
        next_fire: Option<u64>,
        /// When it was last woken and has not run since.
        woke_at: Option<u64>,
        /// The pCPU it last ran on.
        last_pcpu: Option<usize>,
    }

    #[derive(Debug, Default)]
    struct Cpu {
        running: Option<VcpuId>,
        run_until: Option<u64>,
    }

    /// The simulated machine.
    #[derive(Debug)]
    pub struct Sim {
        /// The scheduler under test.
        pub sched: Scheduler,
        /// Simulated time, ns.
        pub now: u64,
        /// Time from a kick to the kicked pCPU calling `schedule` (IPI delivery and exit).
        pub kick_delay: u64,
        cpus: Vec<Cpu>,
        tasks: BTreeMap<VcpuId, Task>,
        /// Kicks in flight: (arrival, pCPU).
        kicks: Vec<(u64, usize)>,
        /// CPU time the simulator saw each vCPU get: an independent check on `runtime`.
        pub given: BTreeMap<VcpuId, u64>,
        /// Wake-to-run latencies per vCPU, ns.
        pub latencies: BTreeMap<VcpuId, Vec<u64>>,
        /// Times a vCPU started running on a pCPU other than the one it last ran on.
        pub migrations: u64,
        /// Calls to `schedule`, to see that idle pCPUs stay quiet.
        pub schedule_calls: Vec<u64>,
        /// The pCPUs each vCPU has been seen running on (bit *p* = pCPU *p*), for the
        /// affinity tests, which clear it to start a fresh observation.
        pub ran_on: BTreeMap<VcpuId, u64>,
    }

    impl Sim {
        /// A machine with `nr_pcpus` idle pCPUs and kicks that land after 20 µs.
        pub fn new(nr_pcpus: usize) -> Self {
            Self {
                sched: Scheduler::new(nr_pcpus),
                now: 0,
                kick_delay: 20_000,
                cpus: (0..nr_pcpus).map(|_| Cpu::default()).collect(),
                tasks: BTreeMap::new(),
                kicks: Vec::new(),
                given: BTreeMap::new(),
                latencies: BTreeMap::new(),
                migrations: 0,
                schedule_calls: vec![0; nr_pcpus],
                ran_on: BTreeMap::new(),
            }
        }

        /// Sets the hard affinity of `id`, as `xl vcpu-pin` would (kicks land after
        /// `kick_delay`).
        pub fn set_affinity(&mut self, id: VcpuId, hard: u64) -> Result<(), Errno> {
            for p in self.sched.set_affinity(id, hard)? {
                self.kicks.push((self.now + self.kick_delay, p));
            }
            Ok(())
        }

        /// Takes pCPU `p` offline or brings it back, as `xen-hptool cpu-offline/online`
        /// would; returns the vCPUs whose affinity was broken.
        pub fn set_online(&mut self, p: usize, online: bool) -> Result<Vec<VcpuId>, Errno> {
            let out = self.sched.set_pcpu_online(p, online)?;
            for k in out.kick {
                self.kicks.push((self.now + self.kick_delay, k));
            }
            Ok(out.broken)
        }

        /// Creates domain `dom` with one vCPU per entry of `vcpus` (workload, initial pCPU), and
        /// starts them (unpause).
        pub fn add_domain(&mut self, dom: DomId, params: Params, vcpus: &[(Workload, usize)]) {
            let max = u32::try_from(vcpus.len()).expect("few vCPUs");
            self.sched
                .add_domain(dom, max, params)
                .expect("valid domain");
            for (i, &(workload, pcpu)) in vcpus.iter().enumerate() {
                let id = VcpuId {
                    dom,
                    vcpu: u32::try_from(i).expect("few vCPUs"),
                };
                self.sched.add_vcpu(id, pcpu).expect("valid vCPU");
                let (blocked, next_fire) = match workload {
                    Workload::Hog => (false, None),
                    Workload::Timer { phase, .. } => (true, Some(self.now + phase)),
                };
                self.tasks.insert(
                    id,
                    Task {
                        workload,
                        work_left: 0,
                        blocked,
                        paused: 0,
                        next_fire,
                        woke_at: None,
                        last_pcpu: None,
                    },
                );
                if blocked {
                    // Blocked before it is brought up, as a guest waiting for its first timer.
                    let none = self.sched.block(id, self.now);
                    assert_eq!(none, None);
                }
                let kick = self.sched.unpause(id);
                self.send_kick(kick);
            }
        }

        /// Pauses a vCPU, as `xl pause` would (the kicked pCPU reschedules after `kick_delay`).
        pub fn pause(&mut self, id: VcpuId) {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.paused += 1;
            }
            let kick = self.sched.pause(id);
            self.send_kick(kick);
        }

        /// Undoes one [`Sim::pause`].
        pub fn unpause(&mut self, id: VcpuId) {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.paused = t.paused.saturating_sub(1);
            }
            let kick = self.sched.unpause(id);
            self.send_kick(kick);
        }

        /// Destroys a domain on the spot, even while its vCPUs run.
        pub fn remove_domain(&mut self, dom: DomId) {
            for p in self.sched.remove_domain(dom) {
                // The kicked pCPU must stop running the domain now: the hypervisor would not
                // return to a destroyed domain's context.
                self.cpus[p].running = None;
                self.kicks.push((self.now, p));
            }
            self.tasks.retain(|id, _| id.dom != dom);
        }

        /// Runs the machine until `end`.
        pub fn run_until(&mut self, end: u64) {
            while self.now < end {
                let t = self.next_event().min(end);
                self.advance(t);
                self.handle_events();
            }
        }

        /// Runs the machine for `duration` more ns.
        pub fn run_for(&mut self, duration: u64) {
            self.run_until(self.now + duration);
        }

        /// Percent of one pCPU's time `dom` got over the whole run, by the scheduler's count
        /// (checked against the simulator's own).
        pub fn share(&self, dom: DomId) -> f64 {
            let sched = self.sched.domain_runtime(dom, self.now);
            let seen: u64 = self
                .given
                .iter()
                .filter(|(id, _)| id.dom == dom)
                .map(|(_, t)| *t)
                .sum();
            assert_eq!(
                sched, seen,
                "runtime of d{dom} disagrees with the simulation"
            );
            sched as f64 * 100.0 / self.now as f64
        }

        fn send_kick(&mut self, kick: Option<usize>) {
            if let Some(p) = kick {
                self.kicks.push((self.now + self.kick_delay, p));
            }
        }

        fn next_event(&self) -> u64 {
            let mut t = u64::MAX;
            for cpu in &self.cpus {
                if let Some(r) = cpu.run_until {
                    t = t.min(r);
                }
                if let Some(id) = cpu.running
                    && let Some(task) = self.tasks.get(&id)
                    && matches!(task.workload, Workload::Timer { .. })
                {
                    t = t.min(self.now + task.work_left);
                }
            }
            for task in self.tasks.values() {
                if let Some(f) = task.next_fire {
                    t = t.min(f);
                }
            }
            for (at, _) in &self.kicks {
                t = t.min(*at);
            }
            t
        }

        fn advance(&mut self, t: u64) {
            let elapsed = t - self.now;
            for (p, cpu) in self.cpus.iter().enumerate() {
                if let Some(id) = cpu.running {
                    *self.given.entry(id).or_default() += elapsed;
                    if elapsed > 0 {
                        *self.ran_on.entry(id).or_default() |= 1 << p;
                    }
                    if let Some(task) = self.tasks.get_mut(&id)
                        && matches!(task.workload, Workload::Timer { .. })
                    {
                        task.work_left -= elapsed;
                    }
                }
            }
            self.now = t;
        }

        fn handle_events(&mut self) {
            let now = self.now;
            // Bursts that ended: the vCPU blocks and its pCPU reschedules at once.
            for p in 0..self.cpus.len() {
                let Some(id) = self.cpus[p].running else {
                    continue;
                };
                let task = self.tasks.get_mut(&id).expect("running task exists");
                if matches!(task.workload, Workload::Timer { .. }) && task.work_left == 0 {
                    task.blocked = true;
                    assert_eq!(self.sched.block(id, now), Some(p));
                    self.do_schedule(p);
                }
            }
            // Timers that fired: wake the blocked ones.
            let fired: Vec<VcpuId> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.next_fire.is_some_and(|f| f <= now))
                .map(|(id, _)| *id)
                .collect();
            for id in fired {
                let task = self.tasks.get_mut(&id).expect("task exists");
                let Workload::Timer { period, burst, .. } = task.workload else {
                    unreachable!("only timer tasks have timers");
                };
                task.next_fire = task.next_fire.map(|f| f + period);
                task.work_left += burst;
                if task.blocked {
                    task.blocked = false;
                    if task.paused == 0 {
                        task.woke_at = Some(now);
                    }
                    let kick = self.sched.wake(id);
                    self.send_kick(kick);
                }
            }
            // Kicks that arrived, then timers that expired.
            let mut due: Vec<usize> = Vec::new();
            self.kicks.retain(|&(at, p)| {
                if at <= now {
                    due.push(p);
                    false
                } else {
                    true
                }
            });
            for p in 0..self.cpus.len() {
                if self.cpus[p].run_until.is_some_and(|r| r <= now) && !due.contains(&p) {
                    due.push(p);
                }
            }
            for p in due {
                self.do_schedule(p);
            }
        }

        fn do_schedule(&mut self, p: usize) {
            let now = self.now;
            self.schedule_calls[p] += 1;
            let d = self.sched.schedule(p, now);
            if let Some(id) = d.next {
                for (q, cpu) in self.cpus.iter().enumerate() {
                    assert!(q == p || cpu.running != Some(id), "{id:?} on two pCPUs");
                }
                assert!(
                    self.sched.may_run(id, p),
                    "{id:?} picked on pCPU {p} outside its affinity or offline"
                );
                let task = self.tasks.get_mut(&id).expect("scheduled vCPU exists");
                assert!(!task.blocked, "{id:?} scheduled while blocked");
                assert_eq!(task.paused, 0, "{id:?} scheduled while paused");
                if let Some(w) = task.woke_at.take() {
                    self.latencies.entry(id).or_default().push(now - w);
                }
                if task.last_pcpu.is_some_and(|l| l != p) {
                    self.migrations += 1;
                }
                task.last_pcpu = Some(p);
                assert!(d.run_until.is_some(), "a busy pCPU needs a timer");
            }
            if let Some(r) = d.run_until {
                assert!(r > now, "run_until {r} not after now {now}");
            }
            self.cpus[p].running = d.next;
            self.cpus[p].run_until = d.run_until;
            for k in d.kick {
                self.kicks.push((now + self.kick_delay, k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::{Sim, Workload};
    use super::*;

    const MS: u64 = NS_PER_MS;
    const S: u64 = 1_000 * MS;

    fn v(dom: DomId, vcpu: u32) -> VcpuId {
        VcpuId { dom, vcpu }
    }

    fn weight(weight: u32) -> Params {
        Params { weight, cap: 0 }
    }

    fn cap(cap: u32) -> Params {
        Params {
            weight: DEFAULT_WEIGHT,
            cap,
        }
    }

    fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
        assert!(
            (got - want).abs() <= tolerance,
            "{what}: {got:.2}% is not within {tolerance} points of {want}%"
        );
    }

    #[test]
    fn runstate_follows_every_transition() {
        use crate::runstate as rs;
        let mut s = Scheduler::new(1);
        s.add_domain(1, 1, Params::default()).unwrap();
        s.add_vcpu(v(1, 0), 0).unwrap();
        // Down (paused) from 0 to 1 ms, runnable until 2 ms, running until 5, blocked until
        // 9, runnable until 10, running since.
        let _ = s.runstate(v(1, 0), MS);
        assert_eq!(s.unpause(v(1, 0)), Some(0));
        let d = s.schedule(0, 2 * MS);
        assert_eq!(d.next, Some(v(1, 0)));
        assert_eq!(s.block(v(1, 0), 5 * MS), Some(0));
        assert_eq!(s.schedule(0, 5 * MS).next, None);
        assert_eq!(
            s.runstate(v(1, 0), 9 * MS).map(|r| r.state),
            Some(rs::BLOCKED)
        );
        let _ = s.wake(v(1, 0));
        let _ = s.schedule(0, 10 * MS);
        let r = s.runstate(v(1, 0), 12 * MS).unwrap();
        assert_eq!(r.state, rs::RUNNING);
        assert_eq!(r.entry, 10 * MS);
        assert_eq!(r.time, [3 * MS + 2 * MS, MS + MS, 4 * MS, MS]);
        assert_eq!(r.time.iter().sum::<u64>(), 12 * MS);
        assert_eq!(s.runstate(v(2, 0), 12 * MS), None);
    }

    /// A one-pCPU scheduler with domain 1 (one vCPU) brought up.
    fn one_vcpu() -> Scheduler {
        let mut s = Scheduler::new(1);
        s.add_domain(1, 1, Params::default()).unwrap();
        s.add_vcpu(v(1, 0), 0).unwrap();
        assert_eq!(s.unpause(v(1, 0)), Some(0));
        s
    }

    #[test]
    fn shares_follow_weights() {
        let mut sim = Sim::new(1);
        sim.add_domain(1, weight(256), &[(Workload::Hog, 0)]);
        sim.add_domain(2, weight(256), &[(Workload::Hog, 0)]);
        sim.add_domain(3, weight(512), &[(Workload::Hog, 0)]);
        sim.run_for(10 * S);
        assert_near("d1 (256)", sim.share(1), 25.0, 5.0);
        assert_near("d2 (256)", sim.share(2), 25.0, 5.0);
        assert_near("d3 (512)", sim.share(3), 50.0, 5.0);

        // Steeper weights: the heaviest domain still gets its part (see the module docs).
        let mut sim = Sim::new(1);
        for (dom, w) in [(1, 256), (2, 512), (3, 1024), (4, 2048)] {
            sim.add_domain(dom, weight(w), &[(Workload::Hog, 0)]);
        }
        sim.run_for(10 * S);
        for (dom, fair) in [(1, 6.67), (2, 13.33), (3, 26.67), (4, 53.33)] {
            assert_near("weighted hog", sim.share(dom), fair, 2.0);
        }
    }

    #[test]
    fn cap_holds_against_a_hog() {
        let mut sim = Sim::new(1);
        sim.add_domain(1, cap(20), &[(Workload::Hog, 0)]);
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(10 * S);
        assert_near("capped d1", sim.share(1), 20.0, 2.0);
        assert_near("hog d2", sim.share(2), 80.0, 2.0);
    }

    #[test]
    fn cap_holds_alone() {
        let mut sim = Sim::new(1);
        sim.add_domain(1, cap(20), &[(Workload::Hog, 0)]);
        sim.run_for(10 * S);
        assert_near("capped d1 alone", sim.share(1), 20.0, 2.0);
        // Parked and alone, the pCPU idles but keeps a timer for the next distribution.
        assert!(sim.schedule_calls[0] < 10 * S / TICK_NS + 10);
    }

    #[test]
    fn cap_holds_with_vcpus_down() {
        // Four vCPUs, three of them down at first (as compute's workers before they are
        // brought up), cap 50, one pCPU: vCPU 0 gets its half, then all four share it.
        let mut sim = Sim::new(1);
        let hogs = [(Workload::Hog, 0); 4];
        sim.add_domain(1, cap(50), &hogs);
        for v in 1..4 {
            sim.pause(VcpuId { dom: 1, vcpu: v });
        }
        sim.run_for(2 * S);
        assert_near("d1 with one vCPU up", sim.share(1), 50.0, 3.0);
        for v in 1..4 {
            sim.unpause(VcpuId { dom: 1, vcpu: v });
        }
        sim.run_for(2 * S);
        assert_near("d1 with four vCPUs up", sim.share(1), 50.0, 3.0);
    }

    #[test]
    fn cap_spans_pcpus() {
        // Cap 150 on two vCPUs: one and a half pCPUs of two, with nothing else to run.
        let mut sim = Sim::new(2);
        sim.add_domain(1, cap(150), &[(Workload::Hog, 0), (Workload::Hog, 1)]);
        sim.run_for(10 * S);
        assert_near("d1 capped at 150", sim.share(1), 150.0, 5.0);
    }

    #[test]
    fn timer_waker_preempts_hogs_quickly() {
        let mut sim = Sim::new(1);
        sim.add_domain(1, Params::default(), &[(Workload::Hog, 0)]);
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        // The hogs are in full swing (and past the boost of their own start) when the waker comes.
        sim.run_for(100 * MS);
        // Off the 10 ms grid, so wake-ups meet ticks at every possible offset.
        let timer = Workload::Timer {
            period: MS,
            phase: 337_000,
            burst: 50_000,
        };
        sim.add_domain(3, Params::default(), &[(timer, 0)]);
        sim.run_for(10 * S - 100 * MS);
        let lat = &sim.latencies[&v(3, 0)];
        assert!(lat.len() >= 9_890, "only {} wake-ups", lat.len());
        let worst = *lat.iter().max().unwrap();
        assert!(worst < 2 * MS, "worst wake-to-run latency {worst} ns");
        // The waker got its 5 %, the hogs share the rest evenly.
        assert_near("waker", sim.share(3), 5.0, 0.5);
        assert_near("hog d1", sim.share(1), 47.5, 5.0);
        assert_near("hog d2", sim.share(2), 47.5, 5.0);
    }

    #[test]
    fn blocking_gives_the_cpu_up_at_once() {
        let mut s = Scheduler::new(1);
        s.add_domain(1, 1, Params::default()).unwrap();
        s.add_domain(2, 1, Params::default()).unwrap();
        s.add_vcpu(v(1, 0), 0).unwrap();
        s.add_vcpu(v(2, 0), 0).unwrap();
        assert_eq!(s.unpause(v(1, 0)), Some(0));
        assert_eq!(s.unpause(v(2, 0)), Some(0));
        let d = s.schedule(0, 0);
        assert_eq!(d.next, Some(v(1, 0)));
        assert_eq!(d.run_until, Some(TICK_NS));

        let t = 3 * MS;
        assert_eq!(s.block(v(1, 0), t), Some(0));
        let d = s.schedule(0, t);
        assert_eq!(
            d.next,
            Some(v(2, 0)),
            "the other vCPU runs at the same instant"
        );
        assert_eq!(s.runtime(v(1, 0), t), 3 * MS);

        // The last runnable vCPU blocks: the pCPU idles right away.
        let t = 5 * MS;
        assert_eq!(s.block(v(2, 0), t), Some(0));
        let d = s.schedule(0, t);
        assert_eq!(d.next, None);
        assert_eq!(s.runtime(v(2, 0), t), 2 * MS);

        // Blocking with an event already pending (wake right after block) keeps the vCPU on.
        assert_eq!(s.wake(v(2, 0)), Some(0));
        let d = s.schedule(0, 6 * MS);
        assert_eq!(d.next, Some(v(2, 0)));
        assert_eq!(s.block(v(2, 0), 7 * MS), Some(0));
        assert_eq!(s.wake(v(2, 0)), None, "still current: nothing to kick");
        let d = s.schedule(0, 7 * MS);
        assert_eq!(d.next, Some(v(2, 0)));
    }

    #[test]
    fn idle_has_no_tick() {
        let mut s = one_vcpu();
        let d = s.schedule(0, 0);
        assert_eq!(d.next, Some(v(1, 0)));
        assert!(d.run_until.is_some());
        assert_eq!(s.block(v(1, 0), MS), Some(0));
        let d = s.schedule(0, MS);
        assert_eq!(
            d,
            Decision {
                next: None,
                run_until: None,
                kick: Vec::new()
            }
        );
        // Long idle, then a wake: work resumes with a fresh tick, on the tick grid.
        assert_eq!(s.wake(v(1, 0)), Some(0));
        let now = 3 * S + 4 * MS;
        let d = s.schedule(0, now);
        assert_eq!(d.next, Some(v(1, 0)));
        assert_eq!(d.run_until, Some(3 * S + TICK_NS));

        // An idle simulated machine never calls `schedule`.
        let mut sim = Sim::new(2);
        let timer = Workload::Timer {
            period: 10 * S,
            phase: 10 * S,
            burst: MS,
        };
        sim.add_domain(1, Params::default(), &[(timer, 0)]);
        sim.run_for(9 * S);
        assert_eq!(sim.schedule_calls, [0, 0]);
    }

    #[test]
    fn pause_and_unpause() {
        let mut sim = Sim::new(1);
        sim.add_domain(1, Params::default(), &[(Workload::Hog, 0)]);
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(S);
        // Pauses nest: two pauses, one unpause, still paused.
        sim.pause(v(1, 0));
        sim.pause(v(1, 0));
        sim.run_for(MS);
        let before = sim.sched.runtime(v(1, 0), sim.now);
        sim.unpause(v(1, 0));
        sim.run_for(S);
        assert_eq!(sim.sched.runtime(v(1, 0), sim.now), before);
        assert_eq!(sim.sched.current(0), Some(v(2, 0)));
        sim.unpause(v(1, 0));
        sim.run_for(S);
        assert!(sim.sched.runtime(v(1, 0), sim.now) > before + S / 4);
        // Unbalanced unpause is ignored.
        assert_eq!(sim.sched.unpause(v(1, 0)), None);

        // Pausing the running vCPU names its pCPU; the scheduler then runs something else.
        let mut s = one_vcpu();
        assert_eq!(s.schedule(0, 0).next, Some(v(1, 0)));
        assert_eq!(s.pause(v(1, 0)), Some(0));
        assert_eq!(s.schedule(0, MS).next, None);
        // A wake while paused does not make it runnable.
        assert_eq!(s.block(v(1, 0), MS), None);
        assert_eq!(s.wake(v(1, 0)), None);
        assert_eq!(s.schedule(0, 2 * MS).next, None);
        assert_eq!(s.unpause(v(1, 0)), Some(0));
        assert_eq!(s.schedule(0, 3 * MS).next, Some(v(1, 0)));
    }

    #[test]
    fn two_pcpus_spread_and_stay() {
        // Both hogs start on pCPU 0; the second one moves to the idle pCPU 1 and stays there.
        let mut sim = Sim::new(2);
        sim.add_domain(1, Params::default(), &[(Workload::Hog, 0)]);
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(10 * S);
        assert_near("d1", sim.share(1), 100.0, 1.0);
        assert_near("d2", sim.share(2), 100.0, 1.0);
        assert_eq!(sim.migrations, 0);
        assert_ne!(sim.sched.pcpu_of(v(1, 0)), sim.sched.pcpu_of(v(2, 0)));

        // Four hogs, two per pCPU, and a timer waker: everyone gets its part, nothing panics.
        let mut sim = Sim::new(2);
        for dom in 1..=4 {
            sim.add_domain(
                dom,
                Params::default(),
                &[(Workload::Hog, usize::from(dom % 2))],
            );
        }
        sim.run_for(100 * MS);
        let timer = Workload::Timer {
            period: MS,
            phase: 123_000,
            burst: 50_000,
        };
        sim.add_domain(5, Params::default(), &[(timer, 1)]);
        sim.run_for(10 * S - 100 * MS);
        for dom in 1..=4 {
            assert_near("hog", sim.share(dom), 48.75, 5.0);
        }
        assert_near("waker", sim.share(5), 5.0, 0.5);
        let worst = *sim.latencies[&v(5, 0)].iter().max().unwrap();
        assert!(worst < 2 * MS, "worst wake-to-run latency {worst} ns");

        // Three hogs on two pCPUs: 2/3 of a pCPU each, through stealing.
        let mut sim = Sim::new(2);
        for dom in 1..=3 {
            sim.add_domain(dom, Params::default(), &[(Workload::Hog, 0)]);
        }
        sim.run_for(10 * S);
        for dom in 1..=3 {
            assert_near("hog of three", sim.share(dom), 66.7, 5.0);
        }
    }

    #[test]
    fn remove_domain_while_it_runs() {
        let mut sim = Sim::new(2);
        sim.add_domain(
            1,
            Params::default(),
            &[(Workload::Hog, 0), (Workload::Hog, 1)],
        );
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(S);
        assert!(sim.sched.current(0).is_some() && sim.sched.current(1).is_some());
        sim.remove_domain(1);
        assert_eq!(sim.sched.params(1), None);
        assert_eq!(sim.sched.domain_runtime(1, sim.now), 0);
        let before = sim.sched.runtime(v(2, 0), sim.now);
        sim.run_for(S);
        // The survivor gets a whole pCPU, whichever.
        assert_eq!(sim.sched.runtime(v(2, 0), sim.now), before + S);

        // Directly: the kick names the pCPU, which then runs the other domain.
        let mut s = Scheduler::new(1);
        for dom in 1..=2 {
            s.add_domain(dom, 1, Params::default()).unwrap();
            s.add_vcpu(v(dom, 0), 0).unwrap();
            let _ = s.unpause(v(dom, 0));
        }
        assert_eq!(s.schedule(0, 0).next, Some(v(1, 0)));
        assert_eq!(s.remove_domain(1), [0]);
        assert_eq!(s.current(0), None);
        assert_eq!(s.schedule(0, MS).next, Some(v(2, 0)));
        assert_eq!(s.remove_domain(1), Vec::<usize>::new(), "twice is harmless");
        // Operations on what is gone do nothing.
        assert_eq!(s.wake(v(1, 0)), None);
        assert_eq!(s.pause(v(1, 0)), None);
        assert_eq!(s.remove_vcpu(v(1, 0)), None);
        assert_eq!(s.runtime(v(1, 0), MS), 0);
        s.yield_now(v(1, 0));
        assert_eq!(s.schedule(7, MS).next, None, "unknown pCPU");
    }

    #[test]
    fn parameters_are_validated() {
        let mut s = Scheduler::new(1);
        assert_eq!(s.add_domain(1, 2, Params::default()), Ok(()));
        assert_eq!(s.add_domain(1, 2, Params::default()), Err(Errno::EEXIST));
        assert_eq!(s.add_domain(2, 0, Params::default()), Err(Errno::EINVAL));
        assert_eq!(
            s.add_domain(DOMID_FIRST_RESERVED, 1, Params::default()),
            Err(Errno::EINVAL)
        );
        assert_eq!(s.add_domain(3, 1, weight(0)), Err(Errno::EINVAL));
        assert_eq!(
            s.params(1),
            Some(Params {
                weight: 256,
                cap: 0
            })
        );

        for bad in [
            weight(0),
            weight(65_536),
            cap(201),
            Params {
                weight: u32::MAX,
                cap: 0,
            },
        ] {
            assert_eq!(s.set_params(1, bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(
            s.params(1),
            Some(Params::default()),
            "a refused change changes nothing"
        );
        for good in [weight(1), weight(65_535), cap(200), cap(1)] {
            assert_eq!(s.set_params(1, good), Ok(()), "{good:?}");
            assert_eq!(s.params(1), Some(good));
        }
        assert_eq!(s.set_params(9, Params::default()), Err(Errno::ESRCH));

        assert_eq!(s.add_vcpu(v(9, 0), 0), Err(Errno::ESRCH));
        assert_eq!(
            s.add_vcpu(v(1, 2), 0),
            Err(Errno::EINVAL),
            "vCPU id beyond max_vcpus"
        );
        assert_eq!(s.add_vcpu(v(1, 0), 1), Err(Errno::EINVAL), "no pCPU 1");
        assert_eq!(s.add_vcpu(v(1, 0), 0), Ok(()));
        assert_eq!(s.add_vcpu(v(1, 0), 0), Err(Errno::EEXIST));
    }

    #[test]
    fn yield_lets_the_other_run() {
        let mut s = Scheduler::new(1);
        for dom in 1..=2 {
            s.add_domain(dom, 1, Params::default()).unwrap();
            s.add_vcpu(v(dom, 0), 0).unwrap();
            let _ = s.unpause(v(dom, 0));
        }
        assert_eq!(s.schedule(0, 0).next, Some(v(1, 0)));
        s.yield_now(v(1, 0));
        assert_eq!(s.schedule(0, MS).next, Some(v(2, 0)));
        s.yield_now(v(2, 0));
        assert_eq!(s.schedule(0, 2 * MS).next, Some(v(1, 0)));
        // Alone, a yield gives the CPU straight back.
        let mut s = one_vcpu();
        assert_eq!(s.schedule(0, 0).next, Some(v(1, 0)));
        s.yield_now(v(1, 0));
        assert_eq!(s.schedule(0, MS).next, Some(v(1, 0)));
    }

    #[test]
    fn weight_change_takes_effect() {
        let mut sim = Sim::new(1);
        sim.add_domain(1, Params::default(), &[(Workload::Hog, 0)]);
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(5 * S);
        sim.sched.set_params(2, weight(768)).unwrap();
        let (a, b) = (
            sim.sched.domain_runtime(1, sim.now),
            sim.sched.domain_runtime(2, sim.now),
        );
        sim.run_for(10 * S);
        let da = sim.sched.domain_runtime(1, sim.now) - a;
        let db = sim.sched.domain_runtime(2, sim.now) - b;
        let share_b = db as f64 * 100.0 / (da + db) as f64;
        assert_near("d2 at weight 768 against 256", share_b, 75.0, 5.0);

        // Lifting a cap unparks within one period.
        let mut sim = Sim::new(1);
        sim.add_domain(1, cap(10), &[(Workload::Hog, 0)]);
        sim.run_for(S);
        sim.sched.set_params(1, Params::default()).unwrap();
        let before = sim.sched.domain_runtime(1, sim.now);
        sim.run_for(S);
        assert!(sim.sched.domain_runtime(1, sim.now) - before >= S - ACCT_PERIOD_NS - MS);
    }

    /// The vCPU of single-vCPU domain `dom`.
    fn only(dom: DomId) -> VcpuId {
        v(dom, 0)
    }

    #[test]
    fn pinned_vcpu_runs_only_on_its_pcpu() {
        // Seven hogs on four pCPUs; domain 9's is pinned to pCPU 2 while the others balance.
        let mut sim = Sim::new(4);
        for dom in 1..=6 {
            sim.add_domain(
                dom,
                Params::default(),
                &[(Workload::Hog, usize::from(dom) % 4)],
            );
        }
        sim.add_domain(9, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(S);
        sim.set_affinity(only(9), 1 << 2).unwrap();
        assert_eq!(sim.sched.affinity(only(9)), Some((1 << 2, AFFINITY_ALL)));
        // Once the kick has landed it is never anywhere else.
        sim.run_for(MS);
        assert_eq!(sim.sched.pcpu_of(only(9)), Some(2));
        sim.ran_on.clear();
        let start = sim.now;
        let before: u64 = sim.given.values().sum();
        sim.run_for(5 * S);
        assert_eq!(sim.ran_on[&only(9)], 1 << 2, "pinned vCPU seen elsewhere");
        // The others still use every pCPU, and no pCPU idles while one waits.
        let mut all = 0;
        for dom in 1..=6 {
            all |= sim.ran_on[&only(dom)];
        }
        assert_eq!(all, 0b1111);
        let used: u64 = sim.given.values().sum::<u64>() - before;
        assert!(
            used >= 4 * (sim.now - start) - 4 * MS,
            "pCPUs idled: {used}"
        );
        let got = sim.sched.runtime(only(9), sim.now);
        assert!(got > S, "the pinned vCPU starved: {got} ns");

        // Repinned at runtime: to pCPU 1, then to all of them.
        sim.set_affinity(only(9), 1 << 1).unwrap();
        sim.run_for(MS);
        sim.ran_on.clear();
        sim.run_for(2 * S);
        assert_eq!(sim.ran_on[&only(9)], 1 << 1);
        sim.set_affinity(only(9), AFFINITY_ALL).unwrap();
        sim.run_for(2 * S);
        assert_eq!(
            sim.sched.affinity(only(9)),
            Some((AFFINITY_ALL, AFFINITY_ALL))
        );

        // A mask with no pCPU of this machine is refused and changes nothing.
        assert_eq!(sim.sched.set_affinity(only(9), 1 << 4), Err(Errno::EINVAL));
        assert_eq!(sim.sched.set_affinity(only(9), 0), Err(Errno::EINVAL));
        assert_eq!(sim.sched.set_affinity(v(7, 0), 1), Err(Errno::ESRCH));
        assert_eq!(
            sim.sched.affinity(only(9)),
            Some((AFFINITY_ALL, AFFINITY_ALL))
        );
        sim.sched.set_soft_affinity(only(9), 0b11).unwrap();
        assert_eq!(sim.sched.affinity(only(9)), Some((AFFINITY_ALL, 0b11)));
    }

    #[test]
    fn pinning_a_waiting_vcpu_moves_it_at_once() {
        // Two hogs on pCPU 0 of 2 (the second waits), pCPU 1 busy with a third.
        let mut s = Scheduler::new(2);
        for dom in 1..=3 {
            s.add_domain(dom, 1, Params::default()).unwrap();
        }
        s.add_vcpu(only(1), 0).unwrap();
        s.add_vcpu(only(2), 0).unwrap();
        s.add_vcpu(only(3), 1).unwrap();
        let _ = s.set_affinity(only(1), 1).unwrap();
        let _ = s.set_affinity(only(2), 1).unwrap();
        let _ = s.set_affinity(only(3), 2).unwrap();
        for dom in 1..=3 {
            let _ = s.unpause(only(dom));
        }
        assert_eq!(s.schedule(0, 0).next, Some(only(1)));
        assert_eq!(s.schedule(1, 0).next, Some(only(3)));
        assert_eq!(s.pcpu_of(only(2)), Some(0));
        // Pinned to pCPU 1: it leaves pCPU 0's queue now, and pCPU 1 is not kicked (it runs a
        // vCPU of the same class).
        assert_eq!(s.set_affinity(only(2), 2), Ok(vec![]));
        assert_eq!(s.pcpu_of(only(2)), Some(1));
        // The running one pinned away: its pCPU is kicked, and at its `schedule` it goes.
        assert_eq!(s.set_affinity(only(1), 2), Ok(vec![0]));
        let d = s.schedule(0, MS);
        assert_eq!(d.next, None, "nothing may run on pCPU 0");
        assert_eq!(s.pcpu_of(only(1)), Some(1));
        // Pinning where it already is kicks nobody.
        assert_eq!(s.set_affinity(only(3), 0b11), Ok(vec![]));
    }

    #[test]
    fn weights_and_caps_hold_with_affinity() {
        // Two pinned pairs, weights 1:3 within each pair.
        let mut sim = Sim::new(2);
        sim.add_domain(1, weight(256), &[(Workload::Hog, 0)]);
        sim.add_domain(2, weight(768), &[(Workload::Hog, 0)]);
        sim.add_domain(3, weight(256), &[(Workload::Hog, 1)]);
        sim.add_domain(4, weight(768), &[(Workload::Hog, 1)]);
        for (dom, p) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
            sim.set_affinity(only(dom), 1 << p).unwrap();
        }
        sim.run_for(10 * S);
        for (dom, fair) in [(1, 25.0), (2, 75.0), (3, 25.0), (4, 75.0)] {
            assert_near("pinned weighted hog", sim.share(dom), fair, 5.0);
        }
        // A capped domain pinned to pCPU 1 next to an unpinned hog.
        let mut sim = Sim::new(2);
        sim.add_domain(1, cap(20), &[(Workload::Hog, 1)]);
        sim.set_affinity(only(1), 1 << 1).unwrap();
        sim.add_domain(2, Params::default(), &[(Workload::Hog, 0)]);
        sim.run_for(10 * S);
        assert_near("pinned capped", sim.share(1), 20.0, 2.0);
        assert_near("hog", sim.share(2), 100.0, 2.0);
    }

    #[test]
    fn offline_pcpu_is_emptied_and_left_alone() {
        let mut sim = Sim::new(4);
        for dom in 1..=4 {
            sim.add_domain(
                dom,
                Params::default(),
                &[(Workload::Hog, usize::from(dom) - 1)],
            );
        }
        // One pinned to pCPU 3 only, and a timer waker homed there.
        sim.add_domain(5, Params::default(), &[(Workload::Hog, 3)]);
        sim.set_affinity(only(5), 1 << 3).unwrap();
        let timer = Workload::Timer {
            period: MS,
            phase: 123_000,
            burst: 50_000,
        };
        sim.add_domain(6, Params::default(), &[(timer, 3)]);
        sim.run_for(S);

        assert_eq!(
            sim.set_online(3, false),
            Ok(vec![only(5)]),
            "affinity broken"
        );
        assert_eq!(sim.sched.affinity(only(5)).map(|a| a.0), Some(AFFINITY_ALL));
        assert!(!sim.sched.is_pcpu_online(3));
        assert_eq!(sim.sched.online_mask(), 0b0111);
        sim.run_for(MS);
        assert_eq!(sim.sched.current(3), None);
        let calls = sim.schedule_calls[3];
        sim.ran_on.clear();
        let before: u64 = sim.given.values().sum();
        let start = sim.now;
        sim.run_for(5 * S);
        for (id, on) in &sim.ran_on {
            assert_eq!(on & (1 << 3), 0, "{id:?} ran on the offline pCPU");
        }
        assert!(
            sim.schedule_calls[3] <= calls,
            "the offline pCPU keeps scheduling"
        );
        // The other three stay busy, and the credit is worth three pCPUs: five hogs share
        // them evenly (no one is starved by credit the offline pCPU would have been worth).
        let used: u64 = sim.given.values().sum::<u64>() - before;
        assert!(used >= 3 * (sim.now - start) - 3 * MS);
        for dom in 1..=5 {
            let got = sim.sched.runtime(only(dom), sim.now);
            assert!(got > 5 * S * 3 / 5 / 2, "d{dom} got {got} ns");
        }
        // A new vCPU meant for the offline pCPU goes to an online one.
        sim.add_domain(7, Params::default(), &[(Workload::Hog, 3)]);
        assert_ne!(sim.sched.pcpu_of(only(7)), Some(3));
        // Pinning only to the offline pCPU is refused.
        assert_eq!(sim.sched.set_affinity(only(1), 1 << 3), Err(Errno::EINVAL));

        // Back online: it takes work again.
        assert_eq!(sim.set_online(3, true), Ok(vec![]));
        sim.run_for(MS);
        sim.ran_on.clear();
        sim.run_for(2 * S);
        assert!(
            sim.ran_on.values().any(|on| on & (1 << 3) != 0),
            "nothing runs on the onlined pCPU"
        );
    }

    #[test]
    fn offlining_is_validated() {
        let mut s = Scheduler::new(2);
        assert_eq!(s.set_pcpu_online(2, false), Err(Errno::EINVAL), "no pCPU 2");
        assert_eq!(
            s.set_pcpu_online(1, true),
            Err(Errno::EINVAL),
            "online already"
        );
        assert_eq!(s.set_pcpu_online(1, false), Ok(Offlined::default()));
        assert_eq!(
            s.set_pcpu_online(1, false),
            Err(Errno::EINVAL),
            "offline already"
        );
        assert_eq!(
            s.set_pcpu_online(0, false),
            Err(Errno::EBUSY),
            "the last one"
        );
        assert_eq!(s.online_mask(), 1);
        let back = s.set_pcpu_online(1, true).unwrap();
        assert_eq!(back.kick, [1]);
        assert_eq!(s.online_mask(), 0b11);
        // The running vCPU of a pCPU going offline: its pCPU is kicked and it moves at the
        // `schedule` that follows.
        s.add_domain(1, 1, Params::default()).unwrap();
        s.add_vcpu(only(1), 1).unwrap();
        let _ = s.unpause(only(1));
        assert_eq!(s.schedule(1, 0).next, Some(only(1)));
        let out = s.set_pcpu_online(1, false).unwrap();
        assert_eq!(out.kick, [1]);
        assert!(out.broken.is_empty());
        let d = s.schedule(1, MS);
        assert_eq!(d.next, None);
        assert_eq!(d.run_until, None, "an offline pCPU keeps no timer");
        assert_eq!(d.kick, [0], "the vCPU's new pCPU is kicked");
        assert_eq!(s.schedule(0, MS).next, Some(only(1)));
        // An empty scheduler has nothing to take offline.
        assert_eq!(
            Scheduler::empty().set_pcpu_online(0, false),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn weights_hold_with_a_pcpu_offline() {
        // With pCPU 1 offline the credit is one pCPU's worth, so weights 1:3 show on pCPU 0.
        let mut sim = Sim::new(2);
        sim.set_online(1, false).unwrap();
        sim.add_domain(1, weight(256), &[(Workload::Hog, 0)]);
        sim.add_domain(2, weight(768), &[(Workload::Hog, 1)]);
        sim.run_for(10 * S);
        assert_near("d1 (256)", sim.share(1), 25.0, 5.0);
        assert_near("d2 (768)", sim.share(2), 75.0, 5.0);
    }

    /// Checks the bookkeeping that every operation must preserve.
    fn check_invariants(s: &Scheduler) {
        for (p, pcpu) in s.pcpus.iter().enumerate() {
            for (i, id) in pcpu.runq.iter().enumerate() {
                let v = &s.vcpus[id];
                assert!(
                    v.queued && v.pcpu == p && v.runnable(),
                    "{id:?} queued wrongly"
                );
                assert!(s.may_run(*id, p), "{id:?} queued on forbidden pCPU {p}");
                assert!(
                    !pcpu.runq.iter().skip(i + 1).any(|x| x == id),
                    "{id:?} twice"
                );
                assert!(
                    s.pcpus.iter().all(|q| q.current != Some(*id)),
                    "{id:?} queued and on"
                );
            }
            if let Some(id) = pcpu.current {
                assert_eq!(s.vcpus[&id].pcpu, p);
            }
        }
        assert!(s.pcpus.is_empty() || s.online != 0, "no pCPU online");
        for (id, v) in &s.vcpus {
            assert_ne!(v.hard & s.online, 0, "{id:?} has nowhere to run");
            let on = s.pcpus[v.pcpu].current == Some(*id);
            // Off a forbidden pCPU unless it still runs there (until that pCPU reschedules).
            assert!(
                on || s.may_run(*id, v.pcpu),
                "{id:?} homed on a forbidden pCPU"
            );
            assert_eq!(v.queued, s.pcpus[v.pcpu].runq.contains(id));
            // A runnable vCPU is never lost: it runs or waits.
            assert!(
                !v.runnable() || v.queued || on,
                "{id:?} runnable but nowhere"
            );
        }
        for (dom, d) in &s.doms {
            let active = s
                .vcpus
                .range(dom_range(*dom))
                .filter(|(_, v)| v.active)
                .count();
            assert_eq!(d.active_vcpus as usize, active);
            let listed = s.active_doms.iter().filter(|x| *x == dom).count();
            assert_eq!(listed, usize::from(active > 0), "d{dom} on the active list");
        }
    }

    #[test]
    fn random_operations_keep_the_books() {
        // A fixed-seed linear congruential generator (Knuth's MMIX constants): reproducible
        // without a dependency.
        let mut seed: u64 = 0x5EED;
        let mut rand = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let nr_pcpus = 3;
        let mut s = Scheduler::new(nr_pcpus);
        let mut now = 0;
        for _ in 0..200_000 {
            let dom = rand(4) as DomId + 1;
            let id = v(dom, rand(3) as u32);
            let pcpu = rand(nr_pcpus as u64 + 1) as usize; // sometimes out of range
            // Kicks are ignored on purpose: the scheduler must stay consistent regardless.
            match rand(17) {
                0 => {
                    let params = Params {
                        weight: rand(3) as u32 * 256,
                        cap: rand(4) as u32 * 50,
                    };
                    let _ = s.add_domain(dom, 3, params);
                }
                1 if rand(8) == 0 => drop(s.remove_domain(dom)),
                2 => drop(s.add_vcpu(id, pcpu)),
                3 if rand(4) == 0 => drop(s.remove_vcpu(id)),
                4 => drop(s.wake(id)),
                5 => drop(s.block(id, now)),
                6 => drop(s.pause(id)),
                7 | 8 => drop(s.unpause(id)),
                9 => s.yield_now(id),
                10 => {
                    let params = Params {
                        weight: rand(1000) as u32,
                        cap: rand(400) as u32,
                    };
                    let _ = s.set_params(dom, params);
                }
                11 => drop(s.pause_domain(dom)),
                12 => drop(s.unpause_domain(dom)),
                13 if rand(2) == 0 => drop(s.set_affinity(id, rand(16))),
                14 if rand(8) == 0 => {
                    let on = rand(2) == 0;
                    if let Ok(out) = s.set_pcpu_online(pcpu, on) {
                        assert!(on || out.kick.iter().all(|&k| k < nr_pcpus));
                    }
                }
                _ => {
                    now += rand(40 * MS);
                    let d = s.schedule(pcpu, now);
                    if let Some(r) = d.run_until {
                        assert!(r > now);
                    }
                    assert!(d.next.is_none() || d.run_until.is_some());
                    assert!(!d.kick.contains(&pcpu));
                }
            }
            check_invariants(&s);
            assert!(s.domain_runtime(dom, now) <= now * nr_pcpus as u64);
        }
    }
}
