//! `timers`: `set_timer_op`, the single-shot and the periodic timer raise `VIRQ_TIMER` on
//! time; `SCHEDOP_block` sleeps until the timer wakes it; cancelling and stopping work.
//!
//! An event is timed when the event callback handles it (events enabled, the kernel spinning
//! on system time), so a measurement includes the delivery latency. Pass: every timer fires,
//! never before its deadline and at most [`LATE_NS`] after it; a cancelled or stopped timer
//! raises nothing for [`QUIET_NS`]; the periodic timer's ticks are each a period apart or more
//! and never late by more than [`LATE_NS`]. The measured figures are printed on `note:` lines
//! before their checks.
//!
//! The scenarios run this test under QEMU `-icount shift=4,sleep=off`: time is virtual (16 ns
//! per instruction, idle time skipped), so lateness measures the hypervisor's delivery path,
//! not the host's load, and a tight bound holds. On wall time (without
//! `-icount`) the bound is too tight for emulation and the test may fail.

use guest_abi::calls;
use guest_abi::event::{EvtchnPort, VIRQ_TIMER};
use guest_abi::vcpu::{VCPU_SSHOTTMR_FUTURE, VcpuSetSingleshotTimer};
use xenia_guest_rt::check::{Checks, error, note};
use xenia_guest_rt::events::{self, count, last_seen_ns, wait_for};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{Ms, NS_PER_MS, now_ns, spin_until};

/// How late a timer may fire, in virtual time: a tenth of the one-shot delay, far more than
/// the few thousand instructions of the delivery path (well under a millisecond at 16 ns per
/// instruction), far less than a timer that fired on a later tick or a wrong deadline.
const LATE_NS: u64 = 2 * NS_PER_MS;
/// How far ahead the one-shot deadlines are.
const DELAY_NS: u64 = 20 * NS_PER_MS;
/// How long a cancelled timer must stay quiet.
const QUIET_NS: u64 = 60 * NS_PER_MS;
/// Period of the periodic timer, and how many ticks to time.
const PERIOD_NS: u64 = 10 * NS_PER_MS;
const TICKS: u64 = 5;
/// Give up waiting for an event after this long.
const TIMEOUT_NS: u64 = 2_000 * NS_PER_MS;

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();
    let port = match events::bind_virq(VIRQ_TIMER) {
        Ok(port) => port,
        Err(e) => error(format_args!("EVTCHNOP_bind_virq(VIRQ_TIMER) failed: {e:?}")),
    };
    println!("VIRQ_TIMER bound to port {port}");

    // set_timer_op.
    let deadline = now_ns() + DELAY_NS;
    if c.ok("set_timer_op(now + 20 ms)", calls::set_timer_op(deadline))
        .is_some()
    {
        fired_on_time(&mut c, "set_timer_op", port, deadline);
    }
    let deadline = now_ns() + DELAY_NS;
    let _ = calls::set_timer_op(deadline);
    c.ok("set_timer_op(0) cancels", calls::set_timer_op(0));
    stays_quiet(&mut c, "cancelled set_timer_op", port);

    // The single-shot timer.
    let deadline = now_ns() + DELAY_NS;
    let timer = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline,
        flags: VCPU_SSHOTTMR_FUTURE,
    };
    if c.ok(
        "VCPUOP_set_singleshot_timer(now + 20 ms, future)",
        calls::vcpu_set_singleshot_timer(0, &timer),
    )
    .is_some()
    {
        fired_on_time(&mut c, "single-shot timer", port, deadline);
    }
    let timer = VcpuSetSingleshotTimer {
        timeout_abs_ns: now_ns() + DELAY_NS,
        flags: 0,
    };
    let _ = calls::vcpu_set_singleshot_timer(0, &timer);
    c.ok(
        "VCPUOP_stop_singleshot_timer",
        calls::vcpu_stop_singleshot_timer(0),
    );
    stays_quiet(&mut c, "stopped single-shot timer", port);

    block_until_timer(&mut c, port);
    periodic(&mut c, port);
    let _ = calls::evtchn_close(port);
    c.finish()
}

/// Waits for the timer event (events enabled, spinning) and checks when it came.
fn fired_on_time(c: &mut Checks, what: &str, port: EvtchnPort, deadline: u64) {
    let seen = count(port);
    let fired = wait_for(port, seen, deadline + TIMEOUT_NS);
    if !c.check(
        format_args!("{what} fires"),
        fired,
        format_args!(
            "{} events after {}",
            count(port) - seen,
            Ms(TIMEOUT_NS as i64)
        ),
    ) {
        return;
    }
    let late = last_seen_ns(port) as i64 - deadline as i64;
    note(format_args!(
        "{what}: handled {} after its deadline",
        Ms(late)
    ));
    c.check(
        format_args!("{what} fires on time"),
        late >= 0 && late <= LATE_NS as i64,
        format_args!(
            "handled {} after the deadline (allowed: 0 to {})",
            Ms(late),
            Ms(LATE_NS as i64)
        ),
    );
}

/// Checks that no timer event arrives for QUIET_NS, with events enabled.
fn stays_quiet(c: &mut Checks, what: &str, port: EvtchnPort) {
    let seen = count(port);
    events::unmask_and_deliver();
    spin_until(now_ns() + QUIET_NS);
    events::mask();
    let pending = events::is_pending(port);
    c.check(
        format_args!("{what} raises nothing"),
        count(port) == seen && !pending,
        format_args!(
            "{} events in {}, pending bit {}",
            count(port) - seen,
            Ms(QUIET_NS as i64),
            u8::from(pending)
        ),
    );
}

/// SCHEDOP_block sleeps until the timer's event; the callback has run when it returns.
fn block_until_timer(c: &mut Checks, port: EvtchnPort) {
    let seen = count(port);
    let deadline = now_ns() + 2 * DELAY_NS;
    if c.ok(
        "set_timer_op(now + 40 ms) before blocking",
        calls::set_timer_op(deadline),
    )
    .is_none()
    {
        return;
    }
    println!("blocking until the timer fires (deadline {deadline} ns)");
    // Block returns when an event is pending; only the timer is bound, but allow for spurious
    // wake-ups without hanging forever.
    let mut blocks = 0;
    while count(port) == seen && blocks < 10 {
        if let Err(e) = calls::sched_block() {
            c.check("SCHEDOP_block", false, format_args!("failed: {e:?}"));
            return;
        }
        blocks += 1;
    }
    let woke = now_ns();
    events::mask();
    let late = woke as i64 - deadline as i64;
    note(format_args!(
        "SCHEDOP_block returned {} after the timer's deadline ({blocks} block calls)",
        Ms(late)
    ));
    c.check(
        "SCHEDOP_block woken by the timer",
        count(port) > seen && late >= 0 && late <= LATE_NS as i64,
        format_args!(
            "{} timer events, woke {} after the deadline, {blocks} block calls",
            count(port) - seen,
            Ms(late)
        ),
    );
}

fn periodic(c: &mut Checks, port: EvtchnPort) {
    c.fails(
        "VCPUOP_set_periodic_timer(999 us) is refused",
        calls::vcpu_set_periodic_timer(0, 999_000),
        guest_abi::Errno::EINVAL,
    );
    let start = now_ns();
    if c.ok(
        "VCPUOP_set_periodic_timer(10 ms)",
        calls::vcpu_set_periodic_timer(0, PERIOD_NS),
    )
    .is_none()
    {
        return;
    }
    // Time TICKS events. Two ticks the kernel had no time to handle merge into one event (a
    // pending bit is not a counter), so the k-th event may be a later tick: it can only be
    // later, never earlier, than start + k periods.
    let mut previous = start;
    for k in 1..=TICKS {
        let seen = count(port);
        let ideal = start + k * PERIOD_NS;
        if !wait_for(port, seen, ideal + TIMEOUT_NS) {
            c.check(
                format_args!("periodic tick {k} fires"),
                false,
                format_args!("nothing after {}", Ms(TIMEOUT_NS as i64)),
            );
            break;
        }
        let at = last_seen_ns(port);
        let since_start = at as i64 - start as i64;
        let gap = at as i64 - previous as i64;
        note(format_args!(
            "periodic tick {k}: {} after the start, {} after the previous one",
            Ms(since_start),
            Ms(gap)
        ));
        c.check(
            format_args!("periodic tick {k} on time"),
            at >= ideal && gap <= (PERIOD_NS + LATE_NS) as i64,
            format_args!(
                "at {} after the start (not before {}), {} after the previous one",
                Ms(since_start),
                Ms((k * PERIOD_NS) as i64),
                Ms(gap)
            ),
        );
        previous = at;
    }
    c.ok(
        "VCPUOP_stop_periodic_timer",
        calls::vcpu_stop_periodic_timer(0),
    );
    // A tick raised just before the stop may still be delivered: let it, then listen.
    events::unmask_and_deliver();
    spin_until(now_ns() + PERIOD_NS);
    events::mask();
    events::clear_pending(port);
    stays_quiet(c, "stopped periodic timer", port);
}
