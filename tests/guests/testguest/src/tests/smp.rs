//! `smp`: a guest with several vCPUs (dom0test's `smp` builds it with four). Run as a domU:
//! dom0 has one vCPU.
//!
//! 1. **Bring-up rules.** The vCPU count is found as a Xen guest finds it without xenstore,
//!    by `VCPUOP_is_up` until `ENOENT`; `is_up` is truthful (only vCPU 0 is up at start);
//!    out-of-range vCPU numbers are `ENOENT` for every command; `VCPUOP_up` on a vCPU never
//!    initialised is `EINVAL`; `VCPUOP_initialise` with an unreadable context is `EFAULT`,
//!    with a bad one `EINVAL`, on vCPU 0 (up) `EEXIST`; `EVTCHNOP_bind_ipi` for a vCPU the
//!    domain does not have is `ENOENT`, `bind_vcpu` of an IPI port `EINVAL`.
//!    `VCPUOP_register_vcpu_info` moves vCPU 1's `vcpu_info` into a page of the guest
//!    (once: a second time is `EINVAL`), and refuses an offset that does not fit or is
//!    misaligned, a frame not the guest's, an unreadable argument, and (later) a vCPU that
//!    is up and not the caller. vCPU 1 then runs everything below on the moved
//!    `vcpu_info` (the hypervisor's per-entry counter shows where it writes).
//! 2. **All come up**: every secondary vCPU is started with the runtime's `smp::start`
//!    (`VCPUOP_initialise` + `up`, a stack each) and reports in.
//! 3. **Per-vCPU timers**: each secondary binds `VIRQ_TIMER` on itself and takes
//!    [`TIMER_ROUNDS`] single-shot timers of its own, each handled by its own upcall (a timer
//!    delivered to another vCPU would leave it blocked, and the supervisor's deadline fails
//!    the test), none early.
//! 4. **IPI ring**: one token goes round vCPU 0 → 1 → … → n−1 → 0 [`RING_LAPS`] times, each
//!    hop an `EVTCHNOP_send` on the next vCPU's IPI port (`bind_ipi`); every port must have
//!    received exactly [`RING_LAPS`] events: none lost, none duplicated.
//! 5. **Down and up**: vCPU 0 takes vCPU 2 down (`is_up` says so; an IPI sent to it is not
//!    handled while it is down, and is once it is up again); vCPU 3 takes itself down and,
//!    brought up again, returns from its `VCPUOP_down`. `VCPUOP_initialise` on a vCPU that
//!    is up, or down after having run, is `EEXIST`.
//! 6. **`SCHEDOP_poll`** wakes on a masked port another vCPU sends, times out on its
//!    deadline, and refuses too many ports, a port out of range and an unreadable array.
//! 7. **Flush masks**: `MMUEXT_TLB_FLUSH_MULTI` / `INVLPG_MULTI` with a good vCPU mask
//!    succeed; with an unreadable or null one they fail with `EFAULT`, as does
//!    `update_va_mapping` whose scope is an unreadable bitmap.
//! 9. **Races across pCPUs** (they race for real on `-smp 2` and more; on one pCPU they
//!    interleave at the hypervisor's scheduling points only): vCPU 3 writes a forged L1
//!    entry (a frame not the guest's, present and writable) through a window that vCPU 0
//!    maps to a frame T and then maps away again flushing only itself, then pins T as an L1
//!    table: whatever vCPU 3's TLB still holds, a pinned T never holds the forged entry (the
//!    pin's change of use flushes every pCPU before it validates), for [`RACE_ROUNDS`]
//!    rounds. Meanwhile vCPU 1 binds and closes an IPI port as fast as it can while vCPU 0
//!    sends on whatever port it last saw, and vCPU 0 asks `VCPUOP_initialise` for vCPU 3
//!    while it runs (`EEXIST` every time).
//! 10. **Grant map against end of access** across pCPUs: vCPU 2 grants a data frame to its
//!     own domain and ends the grant with Xen's compare-and-swap, over and over, while vCPU 0
//!     maps and unmaps it ([`GRANT_ROUNDS`] maps tried): the end never succeeds while vCPU 0
//!     holds a mapping (the hypervisor's busy bits are set atomically with its permission
//!     check), and a mapping that succeeded always finds the entry permitted and busy.
//! 8. **Multicall**: each entry's result written back (a version, a nested multicall's
//!    `EINVAL`, a yield's 0, an unknown command's `ENOSYS`, `is_up`), the inner list left
//!    untouched; a batch longer than one chunk; an unreadable list is `EFAULT`.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_abi::errno::Errno::{self, EEXIST, EFAULT, EINVAL, ENOENT, ENOSYS};
use guest_abi::event::{EVTCHN_2L_NR_CHANNELS, EvtchnPort, VIRQ_TIMER};
use guest_abi::hypercall::{
    HYPERVISOR_MMUEXT_OP, HYPERVISOR_MULTICALL, HYPERVISOR_SCHED_OP, HYPERVISOR_UPDATE_VA_MAPPING,
    HYPERVISOR_VCPU_OP, HYPERVISOR_XEN_VERSION, MULTICALL_CHUNK, MulticallEntry,
};
use guest_abi::memory::{
    MMUEXT_INVLPG_MULTI, MMUEXT_TLB_FLUSH_MULTI, MmuextOp, UVMF_INVLPG, UVMF_LOCAL, UVMF_TLB_FLUSH,
};
use guest_abi::sched::{SCHEDOP_POLL, SCHEDOP_YIELD, SchedPoll};
use guest_abi::types::DOMID_SELF;
use guest_abi::vcpu::{
    VCPUOP_DOWN, VCPUOP_INITIALISE, VCPUOP_IS_UP, VCPUOP_UP, VcpuSetSingleshotTimer,
};
use guest_abi::vcpu_context::VcpuGuestContext;
use guest_abi::version::XENVER_VERSION;
use guest_abi::{calls, errno};
use xenia_guest_rt::boot::shared;
use xenia_guest_rt::check::{Checks, error, note};
use xenia_guest_rt::events::{self, count, is_pending, last_seen_ns, set_port_masked};
use xenia_guest_rt::mm;
use xenia_guest_rt::smp::{self, InfoPage, MAX_VCPUS};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use super::UNMAPPED;
use super::raw::call;

/// Times the token goes round the ring.
pub const RING_LAPS: u32 = 10_000;
/// Single-shot timers each secondary vCPU takes.
pub const TIMER_ROUNDS: u32 = 20;
/// Delay of vCPU *v*'s timers: `v` times this (each vCPU its own rhythm).
const TIMER_STEP_NS: u64 = NS_PER_MS;
/// How long vCPU 0 waits for the secondaries to come up and finish their timers.
const READY_WAIT_NS: u64 = 5_000 * NS_PER_MS;
/// How long the whole ring may take.
const RING_WAIT_NS: u64 = 60_000 * NS_PER_MS;
/// How long vCPU 0 waits for one reaction of another vCPU.
const REACT_WAIT_NS: u64 = 1_000 * NS_PER_MS;
/// How long a vCPU that is down is given to (wrongly) handle an IPI.
const DOWN_GRACE_NS: u64 = 30 * NS_PER_MS;
/// The poll timeout checked in step 6.
const POLL_TIMEOUT_NS: u64 = 20 * NS_PER_MS;
/// More ports than `SCHEDOP_poll` takes (Xen's limit is 128).
const TOO_MANY_PORTS: usize = 129;
/// Entries of the long multicall: more than one chunk.
const LONG_BATCH: usize = (MULTICALL_CHUNK as usize) * 2 + 3;

/// The page vCPU 1's `vcpu_info` moves to, and where in it.
static INFO_PAGE: InfoPage = InfoPage::new();
const INFO_OFFSET: usize = 0x40;

/// What a secondary vCPU does with an IPI on its port.
const MODE_ACK: u32 = 0;
const MODE_RING: u32 = 1;
const MODE_SELF_DOWN: u32 = 2;
const MODE_POKE: u32 = 3;
const MODE_RACE: u32 = 4;

/// Rounds of step 9's pin race.
pub const RACE_ROUNDS: u32 = 200;
/// A frame that is never the guest's: the hypervisor image starts at 1 MiB.
const FORGED_MFN: u64 = 0x100;
/// Step 10's map rounds.
pub const GRANT_ROUNDS: u32 = 500;
/// How long vCPU 2 leaves each grant in place before it ends it.
const GRANT_HOLD_NS: u64 = 100_000;
/// Step 10: vCPU 0 holds a grant mapping; vCPU 2's successful ends while it did; its ends.
static GRANT_MAPPED: AtomicU32 = AtomicU32::new(0);
static GRANT_BAD_ENDS: AtomicU32 = AtomicU32::new(0);
static GRANT_ENDS: AtomicU32 = AtomicU32::new(0);
/// Step 10: the grant table's window, the data frame, the racers' domain id.
static GRANT_TABLE_VA: AtomicU64 = AtomicU64::new(0);
static GRANT_FRAME: AtomicU64 = AtomicU64::new(0);
static GRANT_DOMID: AtomicU32 = AtomicU32::new(0);
/// Step 9: the racers run while this is set.
static RACE_ON: AtomicU32 = AtomicU32::new(0);
/// Where vCPU 3 writes.
static RACE_VA: AtomicU64 = AtomicU64::new(0);
/// vCPU 3's writes; vCPU 1's binds; racers done.
static RACE_WRITES: AtomicU64 = AtomicU64::new(0);
static RACE_BINDS: AtomicU32 = AtomicU32::new(0);
static RACE_DONE: AtomicU32 = AtomicU32::new(0);
/// The port vCPU 1 bound last; its bind or close failures.
static RACE_PORT: AtomicU32 = AtomicU32::new(0);
static RACE_ODD: AtomicU32 = AtomicU32::new(0);

static NR: AtomicU32 = AtomicU32::new(0);
static MODE: AtomicU32 = AtomicU32::new(MODE_ACK);
static PORTS: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static POKE_PORT: AtomicU32 = AtomicU32::new(0);
static HOPS: AtomicU32 = AtomicU32::new(0);
static READY: AtomicU32 = AtomicU32::new(0);
static ACKS: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static RESUMED: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static TIMERS_DONE: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static TIMERS_EARLY: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static TIMER_LATE_MAX_NS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

fn vcpu_op(cmd: u32, vcpu: u64, arg: u64) -> i64 {
    // SAFETY: the commands used with this are harmless or must be refused (no context this
    // test does not mean to install reaches it).
    unsafe { call(HYPERVISOR_VCPU_OP, [cmd.into(), vcpu, arg, 0, 0]) }
}

fn addr<T>(x: &T) -> u64 {
    core::ptr::from_ref(x) as u64
}

/// Waits, blocking with events enabled, until `port` has been handled more than `n` times or
/// system time passes `deadline` (then false). Needs `VIRQ_TIMER` bound on this vCPU when
/// there is a deadline.
fn wait_above(port: EvtchnPort, n: u32, deadline: Option<u64>) -> bool {
    loop {
        events::mask();
        if count(port) > n {
            return true;
        }
        if deadline.is_some_and(|d| now_ns() >= d) {
            return false;
        }
        events::block_until(deadline);
    }
}

/// Waits (vCPU 0, blocking a millisecond at a time) until `cond` or `deadline`.
fn wait_until(deadline: u64, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        let now = now_ns();
        if now >= deadline {
            return false;
        }
        events::block_until(Some((now + NS_PER_MS).min(deadline)));
    }
}

/// A secondary vCPU: its own timers, then serving IPIs.
fn secondary(v: u32) -> ! {
    let i = v as usize;
    if let Ok(tport) = events::bind_virq_on(VIRQ_TIMER, v) {
        for _ in 0..TIMER_ROUNDS {
            let seen = count(tport);
            let deadline = now_ns() + TIMER_STEP_NS * u64::from(v);
            let t = VcpuSetSingleshotTimer {
                timeout_abs_ns: deadline,
                flags: 0,
            };
            if calls::vcpu_set_singleshot_timer(v, &t).is_err() {
                break;
            }
            // No deadline of its own: the timer under test is the only wake-up; vCPU 0
            // gives up on it if it never comes.
            wait_above(tport, seen, None);
            let seen_at = last_seen_ns(tport);
            if seen_at < deadline {
                TIMERS_EARLY[i].fetch_add(1, Ordering::SeqCst);
            }
            TIMER_LATE_MAX_NS[i].fetch_max(seen_at.saturating_sub(deadline), Ordering::SeqCst);
            TIMERS_DONE[i].fetch_add(1, Ordering::SeqCst);
        }
    }
    READY.fetch_add(1, Ordering::SeqCst);
    let nr = NR.load(Ordering::SeqCst) as usize;
    let port = PORTS[i].load(Ordering::SeqCst);
    let mut seen = count(port);
    loop {
        wait_above(port, seen, None);
        seen = count(port);
        match MODE.load(Ordering::SeqCst) {
            MODE_RING => {
                HOPS.fetch_add(1, Ordering::SeqCst);
                let _ = calls::evtchn_send(PORTS[(i + 1) % nr].load(Ordering::SeqCst));
            }
            MODE_SELF_DOWN => {
                let _ = calls::vcpu_down(v);
                RESUMED[i].fetch_add(1, Ordering::SeqCst);
            }
            MODE_POKE => {
                let _ = calls::evtchn_send(POKE_PORT.load(Ordering::SeqCst));
            }
            MODE_RACE => race(i),
            _ => {
                ACKS[i].fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();
    if let Err(e) = events::bind_virq(VIRQ_TIMER) {
        error(format_args!(
            "EVTCHNOP_bind_virq(VIRQ_TIMER) on vCPU 0: {e:?}"
        ));
    }
    let nr = bring_up_rules(&mut c);
    if nr < 4 {
        error(format_args!(
            "this test needs 4 vCPUs or more; the domain has {nr}"
        ));
    }
    NR.store(nr, Ordering::SeqCst);
    register_info(&mut c);
    ipi_ports(&mut c, nr);
    start_all(&mut c, nr);
    ring(&mut c, nr);
    moved_info(&mut c);
    down_and_up(&mut c);
    poll(&mut c);
    flush_masks(&mut c);
    multicall(&mut c);
    races(&mut c);
    grant_race(&mut c);
    c.finish()
}

/// Step 1; returns the vCPU count.
fn bring_up_rules(c: &mut Checks) -> u32 {
    let mut nr = 0u32;
    while (nr as usize) < MAX_VCPUS + 1 {
        match calls::vcpu_is_up(nr) {
            Ok(_) => nr += 1,
            Err(_) => break,
        }
    }
    note(format_args!("the domain has {nr} vCPUs"));
    c.eq("VCPUOP_is_up(0) at start", vcpu_op(VCPUOP_IS_UP, 0, 0), 1);
    for v in 1..nr {
        c.eq(
            format_args!("VCPUOP_is_up({v}) at start (never initialised)"),
            vcpu_op(VCPUOP_IS_UP, v.into(), 0),
            0,
        );
    }
    for bad in [u64::from(nr), 32, 1000, u64::from(u32::MAX), u64::MAX] {
        for (cmd, name) in [
            (VCPUOP_IS_UP, "is_up"),
            (VCPUOP_UP, "up"),
            (VCPUOP_DOWN, "down"),
            (VCPUOP_INITIALISE, "initialise"),
        ] {
            c.errno(
                format_args!("VCPUOP_{name} on vCPU {bad:#x}"),
                vcpu_op(cmd, bad, 0),
                ENOENT,
            );
        }
    }
    c.errno(
        "VCPUOP_up on vCPU 1, never initialised",
        vcpu_op(VCPUOP_UP, 1, 0),
        EINVAL,
    );
    c.errno(
        "VCPUOP_initialise on vCPU 1 from an unmapped context",
        vcpu_op(VCPUOP_INITIALISE, 1, UNMAPPED),
        EFAULT,
    );
    // A context that is readable but not acceptable: no VGCF_IN_KERNEL, selectors zero.
    let bad = VcpuGuestContext::new();
    c.errno(
        "VCPUOP_initialise on vCPU 1 with an unusable context",
        vcpu_op(VCPUOP_INITIALISE, 1, addr(&bad)),
        EINVAL,
    );
    c.eq(
        "VCPUOP_is_up(1) after the refused initialise",
        vcpu_op(VCPUOP_IS_UP, 1, 0),
        0,
    );
    c.errno(
        "VCPUOP_initialise on vCPU 0 (up)",
        vcpu_op(VCPUOP_INITIALISE, 0, addr(&bad)),
        EEXIST,
    );
    nr
}

fn register_raw(vcpu: u64, mfn: u64, offset: u32) -> i64 {
    let arg = guest_abi::vcpu::VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    };
    vcpu_op(guest_abi::vcpu::VCPUOP_REGISTER_VCPU_INFO, vcpu, addr(&arg))
}

/// Step 1, `VCPUOP_register_vcpu_info`: vCPU 1's moves (it is down); the refusals.
fn register_info(c: &mut Checks) {
    c.ok(
        "VCPUOP_register_vcpu_info for vCPU 1 (down) into a page of the guest",
        smp::register_vcpu_info(1, &INFO_PAGE, INFO_OFFSET),
    );
    let mfn = xenia_guest_rt::mm::p2m(
        (core::ptr::from_ref(&INFO_PAGE) as u64 - xenia_guest_rt::boot::VIRT_BASE)
            / guest_abi::types::PAGE_SIZE as u64,
    );
    c.errno(
        "VCPUOP_register_vcpu_info for vCPU 1 a second time",
        register_raw(1, mfn, 0x100),
        EINVAL,
    );
    let page = guest_abi::types::PAGE_SIZE as u32;
    for (what, mfn, offset) in [
        ("an offset where it does not fit", mfn, page - 8),
        ("an offset past the page", mfn, page),
        ("a misaligned offset", mfn, 0x44),
        ("a frame that is not the guest's", 0xF_FFFF_FFFF, 0),
    ] {
        c.errno(
            format_args!("VCPUOP_register_vcpu_info for vCPU 2 with {what}"),
            register_raw(2, mfn, offset),
            EINVAL,
        );
    }
    c.errno(
        "VCPUOP_register_vcpu_info from an unmapped argument",
        vcpu_op(guest_abi::vcpu::VCPUOP_REGISTER_VCPU_INFO, 2, UNMAPPED),
        EFAULT,
    );
}

/// After the ring: vCPU 1 ran on its moved `vcpu_info`; a vCPU that is up and not the
/// caller cannot be moved.
fn moved_info(c: &mut Checks) {
    let moved = smp::info_of(1).arch.pad.load(Ordering::SeqCst);
    let slot = shared().vcpu_info[1].arch.pad.load(Ordering::SeqCst);
    c.check(
        "vCPU 1's hypervisor entries are counted in its moved vcpu_info, not its old slot",
        moved > 0 && slot == 0,
        format_args!("moved copy {moved}, shared_info slot {slot}"),
    );
    let mfn = xenia_guest_rt::mm::p2m(
        (core::ptr::from_ref(&INFO_PAGE) as u64 - xenia_guest_rt::boot::VIRT_BASE)
            / guest_abi::types::PAGE_SIZE as u64,
    );
    c.errno(
        "VCPUOP_register_vcpu_info for vCPU 2 while it is up (not the caller)",
        register_raw(2, mfn, 0x100),
        EINVAL,
    );
}

/// The IPI ports, one per vCPU, and the refusals around them.
fn ipi_ports(c: &mut Checks, nr: u32) {
    for v in 0..nr {
        match c.ok(
            format_args!("EVTCHNOP_bind_ipi for vCPU {v}"),
            events::bind_ipi(v),
        ) {
            Some(p) => PORTS[v as usize].store(p, Ordering::SeqCst),
            None => error(format_args!("no IPI port for vCPU {v}")),
        }
    }
    c.fails(
        format_args!("EVTCHNOP_bind_ipi for vCPU {nr} (none)"),
        calls::evtchn_bind_ipi(nr),
        ENOENT,
    );
    c.fails(
        "EVTCHNOP_bind_vcpu of an IPI port (fixed to its vCPU)",
        calls::evtchn_bind_vcpu(PORTS[1].load(Ordering::SeqCst), 2),
        EINVAL,
    );
}

/// Step 2 and 3.
fn start_all(c: &mut Checks, nr: u32) {
    for v in 1..nr {
        c.ok(format_args!("smp::start({v})"), smp::start(v, secondary));
        c.eq(
            format_args!("VCPUOP_is_up({v}) once started"),
            calls::vcpu_is_up(v),
            Ok(true),
        );
    }
    let deadline = now_ns() + READY_WAIT_NS;
    let all = nr - 1;
    let ready = wait_until(deadline, || READY.load(Ordering::SeqCst) == all);
    c.check(
        format_args!("all {all} secondary vCPUs came up and ran their timers"),
        ready,
        format_args!(
            "{} reported in within {} ms",
            READY.load(Ordering::SeqCst),
            READY_WAIT_NS / NS_PER_MS
        ),
    );
    for v in 1..nr as usize {
        c.eq(
            format_args!("vCPU {v}: its own single-shot timers fired"),
            TIMERS_DONE[v].load(Ordering::SeqCst),
            TIMER_ROUNDS,
        );
        c.eq(
            format_args!("vCPU {v}: no timer early"),
            TIMERS_EARLY[v].load(Ordering::SeqCst),
            0,
        );
        note(format_args!(
            "vCPU {v}: latest timer {} us late",
            TIMER_LATE_MAX_NS[v].load(Ordering::SeqCst) / 1000
        ));
    }
}

/// Step 4.
fn ring(c: &mut Checks, nr: u32) {
    let before: [u32; MAX_VCPUS] = core::array::from_fn(|v| count(PORTS[v].load(Ordering::SeqCst)));
    let p0 = PORTS[0].load(Ordering::SeqCst);
    let p1 = PORTS[1].load(Ordering::SeqCst);
    MODE.store(MODE_RING, Ordering::SeqCst);
    HOPS.store(0, Ordering::SeqCst);
    let start = now_ns();
    let deadline = start + RING_WAIT_NS;
    let mut laps = 0;
    HOPS.fetch_add(1, Ordering::SeqCst);
    let mut sent = calls::evtchn_send(p1);
    while sent.is_ok() && laps < RING_LAPS {
        if !wait_above(p0, before[0] + laps, Some(deadline)) {
            break;
        }
        laps += 1;
        if laps < RING_LAPS {
            HOPS.fetch_add(1, Ordering::SeqCst);
            sent = calls::evtchn_send(p1);
        }
    }
    MODE.store(MODE_ACK, Ordering::SeqCst);
    let elapsed = now_ns() - start;
    c.ok("EVTCHNOP_send on the IPI ports", sent);
    c.check(
        format_args!("the token went round the {nr} vCPUs {RING_LAPS} times"),
        laps == RING_LAPS,
        format_args!(
            "{laps} laps in {} ms, {} hops",
            elapsed / NS_PER_MS,
            HOPS.load(Ordering::SeqCst)
        ),
    );
    c.eq("hops made", HOPS.load(Ordering::SeqCst), RING_LAPS * nr);
    for v in 0..nr as usize {
        c.eq(
            format_args!("vCPU {v}: IPIs received (none lost, none doubled)"),
            count(PORTS[v].load(Ordering::SeqCst)) - before[v],
            RING_LAPS,
        );
    }
    note(format_args!(
        "ring: {} hops in {} ms ({} ns per hop)",
        RING_LAPS * nr,
        elapsed / NS_PER_MS,
        elapsed / u64::from((RING_LAPS * nr).max(1))
    ));
}

/// Step 5.
fn down_and_up(c: &mut Checks) {
    let p2 = PORTS[2].load(Ordering::SeqCst);
    let p3 = PORTS[3].load(Ordering::SeqCst);
    let ctx = VcpuGuestContext::new();
    c.errno(
        "VCPUOP_initialise on vCPU 1 (up)",
        vcpu_op(VCPUOP_INITIALISE, 1, addr(&ctx)),
        EEXIST,
    );
    MODE.store(MODE_ACK, Ordering::SeqCst);
    let acks = ACKS[2].load(Ordering::SeqCst);
    c.ok("VCPUOP_down(2) from vCPU 0", calls::vcpu_down(2));
    c.eq("VCPUOP_is_up(2) once down", calls::vcpu_is_up(2), Ok(false));
    c.errno(
        "VCPUOP_initialise on vCPU 2 (down, but initialised)",
        vcpu_op(VCPUOP_INITIALISE, 2, addr(&ctx)),
        EEXIST,
    );
    c.ok("an IPI to vCPU 2 while it is down", calls::evtchn_send(p2));
    let grace = now_ns() + DOWN_GRACE_NS;
    wait_until(grace, || false);
    c.eq(
        "vCPU 2 did not handle it while down",
        ACKS[2].load(Ordering::SeqCst),
        acks,
    );
    c.ok("VCPUOP_up(2)", smp::restart(2));
    c.eq(
        "VCPUOP_is_up(2) once up again",
        calls::vcpu_is_up(2),
        Ok(true),
    );
    let handled = wait_until(now_ns() + REACT_WAIT_NS, || {
        ACKS[2].load(Ordering::SeqCst) > acks
    });
    c.check(
        "vCPU 2 handled the IPI once up again",
        handled,
        format_args!("acks {}", ACKS[2].load(Ordering::SeqCst)),
    );
    c.ok("VCPUOP_up(2) again (up already)", calls::vcpu_up(2));

    // vCPU 3 takes itself down; brought up, it returns from its VCPUOP_down.
    MODE.store(MODE_SELF_DOWN, Ordering::SeqCst);
    c.ok("an IPI asking vCPU 3 to go down", calls::evtchn_send(p3));
    let went_down = wait_until(now_ns() + REACT_WAIT_NS, || {
        calls::vcpu_is_up(3) == Ok(false)
    });
    c.check(
        "vCPU 3 took itself down",
        went_down,
        format_args!("VCPUOP_is_up(3) still 1"),
    );
    MODE.store(MODE_ACK, Ordering::SeqCst);
    let resumed = RESUMED[3].load(Ordering::SeqCst);
    c.eq(
        "vCPU 3 has not returned from VCPUOP_down while down",
        resumed,
        0,
    );
    c.ok("VCPUOP_up(3)", smp::restart(3));
    let back = wait_until(now_ns() + REACT_WAIT_NS, || {
        RESUMED[3].load(Ordering::SeqCst) == 1
    });
    c.check(
        "vCPU 3 returned from its VCPUOP_down once up",
        back,
        format_args!("resumed {}", RESUMED[3].load(Ordering::SeqCst)),
    );
}

fn sched_poll_raw(arg: &SchedPoll) -> i64 {
    // SAFETY: SCHEDOP_poll only reads its argument and blocks for a while.
    unsafe {
        call(
            HYPERVISOR_SCHED_OP,
            [SCHEDOP_POLL.into(), addr(arg), 0, 0, 0],
        )
    }
}

/// Step 6.
fn poll(c: &mut Checks) {
    let Some(p) = c.ok("EVTCHNOP_bind_ipi for the poll port", events::bind_ipi(0)) else {
        return;
    };
    set_port_masked(p, true);
    events::clear_pending(p);
    POKE_PORT.store(p, Ordering::SeqCst);
    MODE.store(MODE_POKE, Ordering::SeqCst);
    let start = now_ns();
    c.ok(
        "an IPI asking vCPU 1 to send the poll port",
        calls::evtchn_send(PORTS[1].load(Ordering::SeqCst)),
    );
    let mut woke = false;
    while now_ns() < start + REACT_WAIT_NS {
        let _ = calls::sched_poll(&[p], start + REACT_WAIT_NS);
        if is_pending(p) {
            woke = true;
            break;
        }
    }
    c.check(
        "SCHEDOP_poll woke on its masked port, sent by vCPU 1",
        woke,
        format_args!("nothing within {} ms", REACT_WAIT_NS / NS_PER_MS),
    );
    note(format_args!(
        "poll woke after {} us",
        (now_ns() - start) / 1000
    ));
    MODE.store(MODE_ACK, Ordering::SeqCst);
    events::clear_pending(p);

    let start = now_ns();
    let r = calls::sched_poll(&[p], start + POLL_TIMEOUT_NS);
    let waited = now_ns() - start;
    c.ok("SCHEDOP_poll with a timeout", r);
    c.check(
        format_args!(
            "SCHEDOP_poll on a quiet port returns at its {} ms timeout",
            POLL_TIMEOUT_NS / NS_PER_MS
        ),
        (POLL_TIMEOUT_NS..REACT_WAIT_NS).contains(&waited),
        format_args!("returned after {} us", waited / 1000),
    );
    let ports = [p; TOO_MANY_PORTS];
    let arg = |ports: u64, nr_ports: u32| SchedPoll {
        ports,
        nr_ports,
        timeout: now_ns() + POLL_TIMEOUT_NS,
    };
    c.errno(
        format_args!("SCHEDOP_poll on {TOO_MANY_PORTS} ports"),
        sched_poll_raw(&arg(addr(&ports), TOO_MANY_PORTS as u32)),
        EINVAL,
    );
    let out_of_range: [EvtchnPort; 1] = [EVTCHN_2L_NR_CHANNELS];
    c.errno(
        "SCHEDOP_poll on a port past the 2-level limit",
        sched_poll_raw(&arg(addr(&out_of_range), 1)),
        EINVAL,
    );
    c.errno(
        "SCHEDOP_poll with an unmapped port array",
        sched_poll_raw(&arg(UNMAPPED, 1)),
        EFAULT,
    );
    c.errno(
        "SCHEDOP_poll with an unmapped argument",
        // SAFETY: refused before it reads anything.
        unsafe {
            call(
                HYPERVISOR_SCHED_OP,
                [SCHEDOP_POLL.into(), UNMAPPED, 0, 0, 0],
            )
        },
        EFAULT,
    );
}

fn mmuext(cmd: u32, arg1: u64, arg2: u64) -> i64 {
    let op = MmuextOp { cmd, arg1, arg2 };
    // SAFETY: flushes change no mapping.
    unsafe {
        call(
            HYPERVISOR_MMUEXT_OP,
            [addr(&op), 1, 0, DOMID_SELF.into(), 0],
        )
    }
}

/// Step 7.
fn flush_masks(c: &mut Checks) {
    let all: u64 = (1 << NR.load(Ordering::SeqCst)) - 1;
    let va = addr(&all);
    c.eq(
        "MMUEXT_TLB_FLUSH_MULTI on every vCPU",
        mmuext(MMUEXT_TLB_FLUSH_MULTI, 0, addr(&all)),
        0,
    );
    c.eq(
        "MMUEXT_INVLPG_MULTI on every vCPU",
        mmuext(MMUEXT_INVLPG_MULTI, va, addr(&all)),
        0,
    );
    let beyond: u64 = u64::MAX;
    c.eq(
        "MMUEXT_TLB_FLUSH_MULTI with bits past the vCPUs (ignored)",
        mmuext(MMUEXT_TLB_FLUSH_MULTI, 0, addr(&beyond)),
        0,
    );
    for (what, mask) in [("an unmapped", UNMAPPED), ("a null", 0)] {
        c.errno(
            format_args!("MMUEXT_TLB_FLUSH_MULTI with {what} vCPU mask"),
            mmuext(MMUEXT_TLB_FLUSH_MULTI, 0, mask),
            EFAULT,
        );
        c.errno(
            format_args!("MMUEXT_INVLPG_MULTI with {what} vCPU mask"),
            mmuext(MMUEXT_INVLPG_MULTI, va, mask),
            EFAULT,
        );
    }
    for flush in [UVMF_TLB_FLUSH, UVMF_INVLPG] {
        c.errno(
            format_args!("update_va_mapping (flush {flush}) with an unmapped vCPU mask"),
            // SAFETY: refused before the mapping is looked at.
            unsafe {
                call(
                    HYPERVISOR_UPDATE_VA_MAPPING,
                    [UNMAPPED, 0, flush | UNMAPPED, 0, 0],
                )
            },
            EFAULT,
        );
    }
}

fn entry(op: u64, args: [u64; 6]) -> MulticallEntry {
    MulticallEntry {
        op,
        result: SENTINEL,
        args,
    }
}

/// A result no entry returns, to see which were written.
const SENTINEL: i64 = 0x5a5a_5a5a;

/// Step 8.
fn multicall(c: &mut Checks) {
    let expected_version = calls::xen_version().map_or(-1, i64::from);
    let mut inner = [entry(
        HYPERVISOR_XEN_VERSION,
        [XENVER_VERSION.into(), 0, 0, 0, 0, 0],
    )];
    let mut batch = [
        entry(
            HYPERVISOR_XEN_VERSION,
            [XENVER_VERSION.into(), 0, 0, 0, 0, 0],
        ),
        entry(
            HYPERVISOR_MULTICALL,
            [inner.as_mut_ptr() as u64, 1, 0, 0, 0, 0],
        ),
        entry(HYPERVISOR_SCHED_OP, [SCHEDOP_YIELD.into(), 0, 0, 0, 0, 0]),
        entry(HYPERVISOR_XEN_VERSION, [0x7fff, 0, 0, 0, 0, 0]),
        entry(HYPERVISOR_VCPU_OP, [VCPUOP_IS_UP.into(), 1, 0, 0, 0, 0]),
    ];
    // SAFETY: every entry is harmless (a version query, a yield, a refused nested batch).
    c.ok("multicall of five entries", unsafe {
        calls::multicall(&mut batch)
    });
    c.eq(
        "multicall: xen_version's result",
        batch[0].result,
        expected_version,
    );
    c.eq(
        "multicall: a nested multicall is refused",
        batch[1].result,
        errno_result(EINVAL),
    );
    c.eq(
        "multicall: the nested list was not run",
        inner[0].result,
        SENTINEL,
    );
    c.eq("multicall: SCHEDOP_yield's result", batch[2].result, 0);
    c.eq(
        "multicall: an unknown xen_version command",
        batch[3].result,
        errno_result(ENOSYS),
    );
    c.eq("multicall: VCPUOP_is_up(1)", batch[4].result, 1);

    let mut long = [entry(
        HYPERVISOR_XEN_VERSION,
        [XENVER_VERSION.into(), 0, 0, 0, 0, 0],
    ); LONG_BATCH];
    // SAFETY: version queries only.
    c.ok(
        format_args!("multicall of {LONG_BATCH} entries (continued between chunks)"),
        unsafe { calls::multicall(&mut long) },
    );
    c.check(
        "multicall: every entry of the long batch ran",
        long.iter().all(|e| e.result == expected_version),
        format_args!(
            "{} of {LONG_BATCH} results right",
            long.iter().filter(|e| e.result == expected_version).count()
        ),
    );
    c.errno(
        "multicall of an unmapped list",
        // SAFETY: refused before anything runs.
        unsafe { call(HYPERVISOR_MULTICALL, [UNMAPPED, 1, 0, 0, 0]) },
        EFAULT,
    );
    c.eq(
        "multicall of no entries",
        // SAFETY: nothing to run.
        unsafe { call(HYPERVISOR_MULTICALL, [UNMAPPED, 0, 0, 0, 0]) },
        0,
    );
}

/// The `result` a failed entry carries: the negative errno.
fn errno_result(e: Errno) -> i64 {
    errno::Errno::encode_result(Err(e))
}

/// The forged L1 entry of step 9.
fn forged() -> u64 {
    guest_abi::pte::entry(FORGED_MFN, guest_abi::pte::PRESENT | guest_abi::pte::RW)
}

/// A secondary vCPU's part of step 9 (vCPU 3 writes, vCPU 1 binds and closes).
fn race(i: usize) {
    match i {
        3 => {
            let va = RACE_VA.load(Ordering::SeqCst);
            while RACE_ON.load(Ordering::SeqCst) != 0 {
                // SAFETY: `va` is a window slot vCPU 0 keeps mapped writable for the whole
                // race (to T or to the padding's own frame); nothing in Rust refers into it.
                unsafe { (va as *mut u64).write_volatile(forged()) };
                RACE_WRITES.fetch_add(1, Ordering::Relaxed);
            }
        }
        2 if GRANT_TABLE_VA.load(Ordering::SeqCst) != 0 => grant_racer(),
        1 => {
            while RACE_ON.load(Ordering::SeqCst) != 0 {
                match calls::evtchn_bind_ipi(1) {
                    Ok(p) => {
                        RACE_PORT.store(p, Ordering::SeqCst);
                        RACE_BINDS.fetch_add(1, Ordering::Relaxed);
                        if calls::evtchn_close(p).is_err() {
                            RACE_ODD.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => {
                        RACE_ODD.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
        _ => {}
    }
    RACE_DONE.fetch_add(1, Ordering::SeqCst);
}

/// Step 9.
fn races(c: &mut Checks) {
    use xenia_guest_rt::mm::Window;
    let Some((_, t)) = mm::fresh_frame() else {
        error(format_args!("step 9: no spare frame for the pin race"));
    };
    // Slot 0 is W: T while vCPU 0 lets vCPU 3 write, else the padding's own frame (a
    // closed window), writable either way, so vCPU 3's writes never fault. Slots 1 and 2
    // are this vCPU's views of T. Nothing else in this test uses them.
    RACE_VA.store(mm::window_va(0), Ordering::SeqCst);
    RACE_ON.store(1, Ordering::SeqCst);
    RACE_DONE.store(0, Ordering::SeqCst);
    MODE.store(MODE_RACE, Ordering::SeqCst);
    for v in [1usize, 3] {
        let _ = calls::evtchn_send(PORTS[v].load(Ordering::SeqCst));
    }
    let started = now_ns();
    let mut pinned = 0;
    let mut refused = 0;
    let mut forged_seen = 0;
    let mut odd = 0;
    let mut sends = 0;
    let mut init_not_eexist = 0;
    let ctx = VcpuGuestContext::new();
    for round in 0..RACE_ROUNDS {
        // T writable at W (vCPU 3 writes into it), then W back to the padding with a flush
        // of this vCPU only (`Window::close`): vCPU 3 may keep T in its TLB.
        // SAFETY: slot 0 is W, this test's; no Rust reference points into it.
        let Ok(w) = (unsafe { Window::writable(0, t) }) else {
            odd += 1;
            continue;
        };
        // Give vCPU 3 time to write through the new mapping (bounded spin).
        let seen = RACE_WRITES.load(Ordering::Relaxed);
        let until = now_ns() + 200_000;
        while RACE_WRITES.load(Ordering::Relaxed) < seen + 64 && now_ns() < until {
            core::hint::spin_loop();
        }
        if w.close() != 0 {
            odd += 1;
            continue;
        }
        // Entry 0 of T cleared through a window of this vCPU alone, then the pin.
        // SAFETY: slot 1 is this test's; T is not a page table now.
        if let Ok(zw) = unsafe { Window::writable(1, t) } {
            zw.write(0, 0);
            let _ = zw.close();
        }
        // SAFETY: T is no Rust object's memory; pinning makes it read-only, nothing else.
        if unsafe { mm::pin(1, t) } == 0 {
            pinned += 1;
            // Let vCPU 3 write on: through a translation of T it should no longer have.
            let seen = RACE_WRITES.load(Ordering::Relaxed);
            let until = now_ns() + 200_000;
            while RACE_WRITES.load(Ordering::Relaxed) < seen + 64 && now_ns() < until {
                core::hint::spin_loop();
            }
            // SAFETY: slot 2 is this test's; a page table may be mapped read-only.
            match unsafe { Window::read_only(2, t) } {
                Ok(rw) => {
                    if rw.read(0) == forged() {
                        forged_seen += 1;
                    }
                    let _ = rw.close();
                }
                Err(_) => odd += 1,
            }
            // SAFETY: T was pinned just above by this test.
            if unsafe { mm::unpin(t) } != 0 {
                odd += 1;
            }
        } else {
            refused += 1;
        }
        // The events race and a VCPUOP_initialise on a running vCPU, every round.
        let _ = calls::evtchn_send(RACE_PORT.load(Ordering::SeqCst));
        sends += 1;
        // SAFETY: vCPU 3 is up: the call must be refused before it reads the context.
        if unsafe { calls::vcpu_initialise(3, &ctx) } != Err(EEXIST) {
            init_not_eexist += 1;
        }
        if round % 50 == 49 && now_ns() - started > READY_WAIT_NS * 4 {
            break;
        }
    }
    RACE_ON.store(0, Ordering::SeqCst);
    // vCPUs 1 and 3 raced.
    let all_back = wait_until(now_ns() + REACT_WAIT_NS, || {
        RACE_DONE.load(Ordering::SeqCst) == 2
    });
    MODE.store(MODE_ACK, Ordering::SeqCst);
    c.check(
        "step 9: the racers stopped",
        all_back,
        format_args!("{} of 2 back", RACE_DONE.load(Ordering::SeqCst)),
    );
    c.eq("a pinned T never holds the forged entry", forged_seen, 0);
    c.eq("windows and unpins of the pin race all worked", odd, 0);
    c.check(
        "the pin race ran (pins both taken and refused, vCPU 3 wrote)",
        pinned + refused > 0 && RACE_WRITES.load(Ordering::SeqCst) > 0,
        format_args!(
            "{pinned} pinned, {refused} refused, {} writes",
            RACE_WRITES.load(Ordering::SeqCst)
        ),
    );
    c.eq(
        "VCPUOP_initialise on running vCPU 3: EEXIST every time",
        init_not_eexist,
        0,
    );
    c.eq(
        "vCPU 1's binds and closes all succeeded",
        RACE_ODD.load(Ordering::SeqCst),
        0,
    );
    note(format_args!(
        "races: {pinned} pins taken, {refused} refused, {} forged writes by vCPU 3, {} \
         binds by vCPU 1 against {sends} sends",
        RACE_WRITES.load(Ordering::SeqCst),
        RACE_BINDS.load(Ordering::SeqCst)
    ));
}

/// `smp_spin`: every vCPU up and busy for good, changing its page tables all the time
/// (each vCPU maps a frame of its own at a window slot of its own, writable then read-only,
/// with `update_va_mapping`: frame-table work from every pCPU, and a hypercall now and then
/// so that traps come from every pCPU), for dom0test's destroy-while-running rounds and its
/// two domains side by side. Never returns; the domain ends by being destroyed.
pub fn spin() -> ! {
    events::mask();
    let nr = smp::nr_vcpus().min(MAX_VCPUS as u32);
    for (v, frame) in SPIN_FRAMES.iter().enumerate().take(nr as usize) {
        // A vCPU past the window slots or the domain's frames only spins.
        if v < mm::FREE_SLOTS
            && let Some((_, mfn)) = mm::fresh_frame()
        {
            frame.store(mfn, Ordering::SeqCst);
        }
    }
    for v in 1..nr {
        if let Err(e) = smp::start(v, spin_on) {
            error(format_args!("smp_spin: vCPU {v} did not start: {e:?}"));
        }
    }
    xenia_guest_rt::println!("smp_spin: {nr} vCPUs busy");
    spin_on(0)
}

/// The frame each spinning vCPU maps at its window slot (0: none).
static SPIN_FRAMES: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

fn spin_on(v: u32) -> ! {
    use guest_abi::pte;
    let frame = SPIN_FRAMES
        .get(v as usize)
        .map_or(0, |f| f.load(Ordering::SeqCst));
    let mut n: u64 = 0;
    loop {
        n = n.wrapping_add(1);
        if frame != 0 && n.is_multiple_of(64) {
            let flags = if n.is_multiple_of(128) {
                pte::PRESENT | pte::RW
            } else {
                pte::PRESENT
            };
            // SAFETY: window slot `v` is this vCPU's alone in this test (no `Window` exists
            // here), nothing reads through it, and the frame is a fresh one of the domain.
            let ret = unsafe {
                mm::update_va(
                    mm::window_va(v as usize),
                    pte::entry(frame, flags),
                    UVMF_INVLPG | UVMF_LOCAL,
                )
            };
            if ret < 0 {
                error(format_args!(
                    "smp_spin: vCPU {v}: update_va_mapping returned {ret}"
                ));
            }
        } else if n.is_multiple_of(4096) {
            let _ = calls::xen_version();
        }
        core::hint::spin_loop();
    }
}

/// The grant reference step 10 races on.
const GRANT_REF: guest_abi::grant::GrantRef = 1;

/// vCPU 2's part of step 10: grant, end, grant, end, for as long as the race runs.
fn grant_racer() {
    use guest_abi::grant::GTF_PERMIT_ACCESS;
    let t = super::grants::Table {
        va: GRANT_TABLE_VA.load(Ordering::SeqCst),
    };
    let dom = GRANT_DOMID.load(Ordering::SeqCst) as u16;
    let frame = GRANT_FRAME.load(Ordering::SeqCst);
    while RACE_ON.load(Ordering::SeqCst) != 0 {
        t.grant(GRANT_REF, dom, frame, GTF_PERMIT_ACCESS);
        // Granted for a while (so that vCPU 0's maps find it often), then ended.
        let until = now_ns() + GRANT_HOLD_NS;
        while now_ns() < until && RACE_ON.load(Ordering::SeqCst) != 0 {
            core::hint::spin_loop();
        }
        // Ends as a Xen guest does: retried while the hypervisor has the busy bits set.
        while RACE_ON.load(Ordering::SeqCst) != 0 {
            if t.end(GRANT_REF, GTF_PERMIT_ACCESS, dom).is_ok() {
                GRANT_ENDS.fetch_add(1, Ordering::Relaxed);
                // vCPU 0 sets this only after a map succeeded and clears it before it
                // unmaps: while it is set, the busy bits are, and no end may succeed.
                if GRANT_MAPPED.load(Ordering::SeqCst) != 0 {
                    GRANT_BAD_ENDS.fetch_add(1, Ordering::SeqCst);
                }
                break;
            }
            core::hint::spin_loop();
        }
    }
    // Leave the entry ended (vCPU 0 has stopped mapping).
    let _ = t.end(GRANT_REF, GTF_PERMIT_ACCESS, dom);
}

/// Step 10.
fn grant_race(c: &mut Checks) {
    use guest_abi::grant::{
        GNTMAP_HOST_MAP, GNTST_OKAY, GNTTABOP_SETUP_TABLE, GTF_PERMIT_ACCESS, GTF_READING,
        GnttabSetupTable,
    };
    use xenia_guest_rt::mm::Window;
    let mut list = [u64::MAX; 1];
    let mut s = [GnttabSetupTable {
        dom: guest_abi::types::DOMID_SELF,
        nr_frames: 1,
        status: 0x7777,
        frame_list: list.as_mut_ptr() as u64,
    }];
    // SAFETY: the hypervisor writes one frame number into `list`, borrowed for the call.
    let ret = unsafe { super::grants::gnttab_op(GNTTABOP_SETUP_TABLE, &mut s) };
    let Some((_, data)) = mm::fresh_frame() else {
        error(format_args!("step 10: no spare frame to grant"));
    };
    if ret != 0 || s[0].status != GNTST_OKAY || list[0] == u64::MAX {
        c.check(
            "step 10: setup_table",
            false,
            format_args!("returned {ret}, status {}", s[0].status),
        );
        return;
    }
    // Slot 3: the grant table; slot 4: where grants are mapped (its entry not present).
    // SAFETY: slots 3 and 4 are used by nothing else in this test.
    let (Ok(tw), Ok(hw)) = (unsafe { Window::writable(3, list[0]) }, unsafe {
        Window::open(4, 0)
    }) else {
        c.check(
            "step 10: windows on the grant table",
            false,
            format_args!("cannot open them"),
        );
        return;
    };
    let t = super::grants::Table { va: tw.va() };
    let host = hw.va();
    // This domain's id: the one a grant to itself can be mapped for (a domU is not told it).
    let mut me = None;
    for dom in 1..1024u16 {
        t.grant(GRANT_REF, dom, data, GTF_PERMIT_ACCESS);
        let (ret, op) = super::grants::map(host, GNTMAP_HOST_MAP, GRANT_REF, dom);
        if ret == 0 && op.status == GNTST_OKAY {
            let _ = super::grants::unmap(host, op.handle);
            me = Some(dom);
            let _ = t.end(GRANT_REF, GTF_PERMIT_ACCESS, dom);
            break;
        }
        let _ = t.end(GRANT_REF, GTF_PERMIT_ACCESS, dom);
    }
    let Some(me) = me else {
        c.check(
            "step 10: a grant to itself maps for some domain id",
            false,
            format_args!("none below 1024"),
        );
        return;
    };
    GRANT_TABLE_VA.store(t.va, Ordering::SeqCst);
    GRANT_FRAME.store(data, Ordering::SeqCst);
    GRANT_DOMID.store(u32::from(me), Ordering::SeqCst);
    RACE_ON.store(1, Ordering::SeqCst);
    RACE_DONE.store(0, Ordering::SeqCst);
    MODE.store(MODE_RACE, Ordering::SeqCst);
    let _ = calls::evtchn_send(PORTS[2].load(Ordering::SeqCst));
    let mut maps = 0;
    let mut unpermitted = 0;
    let mut unmap_failed = 0;
    for _ in 0..GRANT_ROUNDS {
        // Tries until the grant is there to map (vCPU 2 ends and renews it), bounded.
        let until = now_ns() + 20 * GRANT_HOLD_NS;
        let mapped = loop {
            let (ret, op) = super::grants::map(host, GNTMAP_HOST_MAP, GRANT_REF, me);
            if ret == 0 && op.status == GNTST_OKAY {
                break Some(op);
            }
            if now_ns() >= until {
                break None;
            }
        };
        let Some(op) = mapped else {
            continue;
        };
        GRANT_MAPPED.store(1, Ordering::SeqCst);
        maps += 1;
        let flags = t.flags(GRANT_REF);
        if flags & GTF_PERMIT_ACCESS == 0 || flags & GTF_READING == 0 {
            unpermitted += 1;
        }
        // Hold it a little while vCPU 2 tries to end the grant.
        let until = now_ns() + 50_000;
        while now_ns() < until {
            core::hint::spin_loop();
        }
        GRANT_MAPPED.store(0, Ordering::SeqCst);
        let (ret, status) = super::grants::unmap(host, op.handle);
        if ret != 0 || status != GNTST_OKAY {
            unmap_failed += 1;
        }
    }
    RACE_ON.store(0, Ordering::SeqCst);
    let back = wait_until(now_ns() + REACT_WAIT_NS, || {
        RACE_DONE.load(Ordering::SeqCst) == 1
    });
    MODE.store(MODE_ACK, Ordering::SeqCst);
    GRANT_TABLE_VA.store(0, Ordering::SeqCst);
    let _ = hw.close();
    let _ = tw.close();
    c.check(
        "step 10: vCPU 2 stopped",
        back,
        format_args!("{} back", RACE_DONE.load(Ordering::SeqCst)),
    );
    c.eq(
        "no end of access succeeded while the grant was mapped",
        GRANT_BAD_ENDS.load(Ordering::SeqCst),
        0,
    );
    c.eq(
        "every mapping found the entry permitted and busy",
        unpermitted,
        0,
    );
    c.eq(
        "every unmap of a mapping that succeeded worked",
        unmap_failed,
        0,
    );
    c.check(
        "the grant race ran (maps succeeded, ends succeeded)",
        maps > 0 && GRANT_ENDS.load(Ordering::SeqCst) > 0,
        format_args!("{maps} maps, {} ends", GRANT_ENDS.load(Ordering::SeqCst)),
    );
    note(format_args!(
        "grant race: {maps} of {GRANT_ROUNDS} maps succeeded, {} ends by vCPU 2 (domain id {me})",
        GRANT_ENDS.load(Ordering::SeqCst)
    ));
}

/// `smp_crash`: every vCPU up, the secondaries spinning with a 1 ms periodic timer each (so
/// their pCPUs take timer interrupts all the time), then vCPU 0 crashes the domain at the end
/// of a long multicall (64 flushes of every vCPU, then `SCHEDOP_shutdown(crash)`): the
/// secondaries' pCPUs trap in during the call and find their domain shut down. dom0test's
/// `smp` runs it and then needs every pCPU again (a pCPU left with an interrupt in service
/// would be deaf to timers and IPIs from then on).
pub fn crash_while_running() -> ! {
    use guest_abi::hypercall::HYPERVISOR_SCHED_OP;
    use guest_abi::memory::MMUEXT_TLB_FLUSH_ALL;
    use guest_abi::sched::{SCHEDOP_SHUTDOWN, SHUTDOWN_CRASH, SchedShutdown};
    events::mask();
    // `wait_until` blocks on vCPU 0's timer.
    if let Err(e) = events::bind_virq(VIRQ_TIMER) {
        error(format_args!(
            "smp_crash: EVTCHNOP_bind_virq(VIRQ_TIMER): {e:?}"
        ));
    }
    let nr = smp::nr_vcpus().min(MAX_VCPUS as u32);
    for v in 1..nr {
        if let Err(e) = smp::start(v, timer_spin) {
            error(format_args!("smp_crash: vCPU {v} did not start: {e:?}"));
        }
    }
    let deadline = now_ns() + READY_WAIT_NS;
    wait_until(deadline, || READY.load(Ordering::SeqCst) == nr - 1);
    // Let them run and take their timers for a while.
    let until = now_ns() + 50 * NS_PER_MS;
    while now_ns() < until {
        core::hint::spin_loop();
    }
    xenia_guest_rt::println!("smp_crash: {nr} vCPUs busy; crashing at the end of a long multicall");
    let flush = MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_ALL,
        ..Default::default()
    };
    let shutdown = SchedShutdown {
        reason: SHUTDOWN_CRASH,
    };
    let mut entries = [entry(0, [0; 6]); 65];
    for e in entries.iter_mut().take(64) {
        *e = entry(
            HYPERVISOR_MMUEXT_OP,
            [addr(&flush), 1, 0, u64::from(DOMID_SELF), 0, 0],
        );
    }
    entries[64] = entry(
        HYPERVISOR_SCHED_OP,
        [u64::from(SCHEDOP_SHUTDOWN), addr(&shutdown), 0, 0, 0, 0],
    );
    // SAFETY: flushes and a shutdown; nothing of this kernel's memory changes.
    let _ = unsafe { calls::multicall(&mut entries) };
    xenia_guest_rt::check::shutdown(guest_abi::sched::ShutdownReason::Crash)
}

fn timer_spin(v: u32) -> ! {
    let _ = calls::vcpu_set_periodic_timer(v, NS_PER_MS);
    READY.fetch_add(1, Ordering::SeqCst);
    loop {
        core::hint::spin_loop();
    }
}
