//! Waiting: dom0 never spins. Every wait blocks in the hypervisor (`SCHEDOP_block` with a
//! one-shot timer), wakes on any event (console input, a domU's console, a domain's
//! shutdown, the timer) and looks again, until its condition holds or its deadline passes.
//!
//! dom0 runs with events masked, so an event that arrives while it works only sets bits in
//! `shared_info`; the callback that counts it ([`events::count`], which the backends and the
//! evtchn descriptors compare) runs when dom0 next unmasks. Blocking unmasks; so does
//! [`take_events`], which everything that reads those counters calls first, so that a busy
//! dom0 (a queued command line, a script) sees an event as soon as it looks, not only the
//! next time it has nothing to do.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_abi::calls;
use guest_abi::event::{VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER};
use xenia_guest_rt::events;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

/// The longest dom0 blocks without looking at its backends.
const TICK_NS: u64 = 100 * NS_PER_MS;

/// The shortest block dom0's TCP/IP stack's timers ask for.
const NET_MIN_BLOCK_NS: u64 = NS_PER_MS / 5;

static CONSOLE_PORT: AtomicU32 = AtomicU32::new(0);
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
static DOM_EXC_PORT: AtomicU32 = AtomicU32::new(0);

/// Binds the VIRQs dom0 waits for. Events stay masked except while blocked.
pub fn init() -> Result<(), guest_abi::Errno> {
    events::mask();
    CONSOLE_PORT.store(events::bind_virq(VIRQ_CONSOLE)?, Ordering::SeqCst);
    // The one-shot timer of `block_once` wakes dom0 only through this port: an unbound
    // VIRQ_TIMER is dropped, and a blocked vCPU wakes only for a pending event.
    TIMER_PORT.store(events::bind_virq(VIRQ_TIMER)?, Ordering::SeqCst);
    DOM_EXC_PORT.store(events::bind_virq(VIRQ_DOM_EXC)?, Ordering::SeqCst);
    Ok(())
}

/// The port `VIRQ_DOM_EXC` is bound to (shared with evtchn descriptors that ask for it).
pub fn dom_exc_port() -> u32 {
    DOM_EXC_PORT.load(Ordering::SeqCst)
}

/// The port `VIRQ_CONSOLE` is bound to (0 before [`init`]).
pub fn console_port() -> u32 {
    CONSOLE_PORT.load(Ordering::SeqCst)
}

/// The port `VIRQ_TIMER` is bound to (shared likewise).
pub fn timer_port() -> u32 {
    TIMER_PORT.load(Ordering::SeqCst)
}

/// Runs the event callback for whatever is pending now, with events masked again on
/// return: the guest's "sti; cli". Without it an event is counted only when dom0 next blocks,
/// and a dom0 that always has more to do never does: `xl shutdown -w hello` followed by a
/// queued `xl list` ran with `VIRQ_DOM_EXC` pending but uncounted, so `backend::service` saw
/// its counter unchanged and left the domain shut down, not destroyed, until dom0 next
/// waited for input. The callback only counts (no locks), so any caller may take it.
pub fn take_events() {
    // One look at `evtchn_upcall_pending` when nothing is pending; the callback's work done
    // in place when something is (no `xen_version`, bounce frame or `iret`: dom0's kernel
    // callback only counts, and a kernel-mode event does nothing else).
    events::take_pending();
}

/// Events the callback had handled when [`crate::service`] last began (see `block_once`).
static SERVICED: AtomicU64 = AtomicU64::new(0);

/// Notes, as [`crate::service`] begins, the events handled so far: any handled later are
/// looked at by another round before dom0 blocks.
pub fn servicing() {
    SERVICED.store(events::handled_total(), Ordering::SeqCst);
}

/// `VIRQ_DOM_EXC` events seen so far.
pub fn dom_exc_events() -> u32 {
    events::count(DOM_EXC_PORT.load(Ordering::SeqCst))
}

/// Blocks once: until an event arrives or system time `deadline` (at most [`TICK_NS`]
/// from now), with events masked again on return if they were before (blocking unmasks;
/// a program's system call runs unmasked and stays so).
fn block_once(deadline: u64) {
    let now = now_ns();
    if now >= deadline {
        return;
    }
    if events::handled_total() != SERVICED.load(Ordering::SeqCst) {
        // An event was taken (its count moved, its pending bit cleared) after the services
        // last began looking, perhaps after the one it was for had looked (a later
        // service's `take_events`, or a check of the caller's): blocking would not end for
        // it, and a device whose interrupt waits for that service's EOI would stay silent
        // until the tick. Look again.
        return;
    }
    if crate::store::busy()
        || crate::bridge::busy()
        || crate::netback::busy()
        || crate::blkback::busy()
    {
        // A domain's ring still holds requests, or frames wait in the bridge (served a
        // bounded number per turn): look again at once rather than sleep on them.
        return;
    }
    // A polled NIC is looked at every POLL_TICK_NS; dom0's TCP/IP stack wakes for its own
    // timers (a retransmission), at least a little in the future so that a stack that wants
    // to run "now" cannot make dom0 spin.
    let tick = if crate::virtio_net::polling() {
        crate::virtio_net::POLL_TICK_NS
    } else {
        TICK_NS
    };
    let mut wake = deadline.min(now + tick);
    if let Some(at) = crate::netstack::poll_at_ns() {
        wake = wake.min(at.max(now + NET_MIN_BLOCK_NS));
    }
    let masked = events::masked();
    arm_timer(wake, now);
    let _ = calls::sched_block();
    if masked {
        events::mask();
    }
}

/// How far ahead a timer already set must be for [`arm_timer`] to keep it.
const ARM_SLACK_NS: u64 = NS_PER_MS;

/// The one-shot timer's deadline as last set by [`arm_timer`] (0: none). dom0 has one vCPU
/// and sets its timer nowhere else.
static ARMED: AtomicU64 = AtomicU64::new(0);

/// Makes sure the one-shot timer fires by `at` (`now` is the current system time): a timer
/// already set for a time in `(now, at]` stays (the wake-up comes a little early and the
/// caller looks again), which saves a `set_timer_op` on nearly every block: each asks for
/// "now + the tick", a little later than the last.
pub fn arm_timer(at: u64, now: u64) {
    let armed = ARMED.load(Ordering::Relaxed);
    // A timer due within the slack may have fired already by the hypervisor's clock (dom0's
    // `now_ns` is extrapolated): set again rather than block on one that is gone.
    if armed > now.saturating_add(ARM_SLACK_NS) && armed <= at {
        return;
    }
    let _ = calls::set_timer_op(at);
    ARMED.store(at, Ordering::Relaxed);
}

/// Looks at the backends, then blocks once (until an event or `deadline`): for callers
/// that decide themselves what to look at after each wake-up.
pub fn once(deadline: u64) {
    crate::service();
    block_once(deadline);
}

/// Runs `service` and then `ready` until `ready` says yes or system time `deadline` passes
/// (`u64::MAX`: no deadline). Returns whether `ready` said yes.
pub fn until(deadline: u64, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        crate::service();
        if ready() {
            return true;
        }
        if now_ns() >= deadline {
            return false;
        }
        block_once(deadline);
    }
}
