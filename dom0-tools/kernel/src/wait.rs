//! Waiting: dom0 never spins. Every wait blocks in the hypervisor (`SCHEDOP_block` with a
//! one-shot timer), wakes on any event (console input, a domU's console, a domain's
//! shutdown, the timer) and looks again, until its condition holds or its deadline passes.

use core::sync::atomic::{AtomicU32, Ordering};

use guest_abi::calls;
use guest_abi::event::{VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER};
use xenia_guest_rt::events;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

/// The longest dom0 blocks without looking at its backends.
const TICK_NS: u64 = 100 * NS_PER_MS;

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

/// The port `VIRQ_TIMER` is bound to (shared likewise).
pub fn timer_port() -> u32 {
    TIMER_PORT.load(Ordering::SeqCst)
}

/// `VIRQ_DOM_EXC` events seen so far.
pub fn dom_exc_events() -> u32 {
    events::count(DOM_EXC_PORT.load(Ordering::SeqCst))
}

/// Blocks once: until an event arrives or system time `deadline` (at most [`TICK_NS`]
/// from now), with events masked again on return.
fn block_once(deadline: u64) {
    let now = now_ns();
    if now >= deadline {
        return;
    }
    let _ = calls::set_timer_op(deadline.min(now + TICK_NS));
    let _ = calls::sched_block();
    events::mask();
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
