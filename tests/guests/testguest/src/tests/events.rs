//! `events`: event delivery follows the vCPU's mask and the per-port masks.
//!
//! The test makes a loopback channel (a port allocated unbound to itself, and a second port
//! bound to it), so that `EVTCHNOP_send` on one end makes the other pending.
//!
//! Pass:
//! - with events masked (`evtchn_upcall_mask` = 1), a send sets the port's pending bit, its
//!   selector bit and `evtchn_upcall_pending`, and does not enter the callback;
//! - clearing the mask and making a hypercall (as Xen guests do, with `xen_version`) enters
//!   the callback, which handles the port;
//! - with events enabled, a port masked in `shared_info.evtchn_mask` becomes pending without
//!   `evtchn_upcall_pending` and without a callback; `EVTCHNOP_unmask` clears the mask bit
//!   and delivers it.

use core::sync::atomic::Ordering;

use guest_abi::calls;
use guest_abi::types::DOMID_SELF;
use xenia_guest_rt::boot::vcpu;
use xenia_guest_rt::check::{Checks, error};
use xenia_guest_rt::events::{
    self, count, force_delivery, is_pending, is_port_masked, is_selected, set_port_masked, upcalls,
};
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns, spin_until_or};

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();
    let (unbound, local) = match loopback() {
        Ok(ports) => ports,
        Err(e) => error(format_args!("cannot make a loopback channel: {e:?}")),
    };
    println!("loopback channel: port {local} sends to port {unbound}");
    let v = vcpu();

    // 1. Events masked: pending, but no callback.
    let upcalls_before = upcalls();
    c.ok("send with events masked", calls::evtchn_send(local));
    c.check(
        "masked: pending bit set",
        is_pending(unbound),
        format_args!("evtchn_pending bit of port {unbound}"),
    );
    c.check(
        "masked: selector bit set",
        is_selected(unbound),
        format_args!(
            "evtchn_pending_sel {:#x}",
            v.evtchn_pending_sel.load(Ordering::SeqCst)
        ),
    );
    c.eq(
        "masked: evtchn_upcall_pending set",
        v.evtchn_upcall_pending.load(Ordering::SeqCst),
        1,
    );
    c.eq("masked: callback not entered", upcalls(), upcalls_before);

    // 2. Unmask, and a hypercall delivers it.
    events::unmask_only();
    force_delivery();
    let delivered = count(unbound);
    events::mask();
    c.check(
        "unmask + hypercall: callback entered for the port",
        upcalls() > upcalls_before && delivered == 1,
        format_args!(
            "{} callbacks, port {unbound} handled {delivered} times",
            upcalls() - upcalls_before
        ),
    );
    c.check(
        "callback consumed the event",
        !is_pending(unbound) && v.evtchn_upcall_pending.load(Ordering::SeqCst) == 0,
        format_args!(
            "pending bit {}, evtchn_upcall_pending {}",
            u8::from(is_pending(unbound)),
            v.evtchn_upcall_pending.load(Ordering::SeqCst)
        ),
    );

    // 3. A port masked in shared_info is held while events are enabled.
    set_port_masked(unbound, true);
    events::unmask_and_deliver();
    let upcalls_before = upcalls();
    let seen = count(unbound);
    c.ok(
        "send to a masked port with events enabled",
        calls::evtchn_send(local),
    );
    force_delivery();
    c.check(
        "masked port: callback not entered",
        upcalls() == upcalls_before && count(unbound) == seen,
        format_args!("{} callbacks", upcalls() - upcalls_before),
    );
    c.check(
        "masked port: pending bit set",
        is_pending(unbound),
        format_args!("evtchn_pending bit of port {unbound}"),
    );
    c.eq(
        "masked port: evtchn_upcall_pending not set",
        v.evtchn_upcall_pending.load(Ordering::SeqCst),
        0,
    );

    // 4. EVTCHNOP_unmask clears the mask bit and delivers the pending event.
    c.ok("EVTCHNOP_unmask", calls::evtchn_unmask(unbound));
    let delivered = spin_until_or(now_ns() + 100 * NS_PER_MS, || count(unbound) > seen);
    c.check(
        "EVTCHNOP_unmask delivered the held event",
        delivered,
        format_args!("port {unbound} handled {} times", count(unbound) - seen),
    );
    c.check(
        "EVTCHNOP_unmask cleared the mask bit",
        !is_port_masked(unbound),
        format_args!("evtchn_mask bit of port {unbound}"),
    );

    // 5. The other direction, events enabled: delivered at once.
    let seen_local = count(local);
    c.ok("send back on the other end", calls::evtchn_send(unbound));
    let delivered = spin_until_or(now_ns() + 100 * NS_PER_MS, || count(local) > seen_local);
    c.check(
        "event delivered to the other end with events enabled",
        delivered,
        format_args!("port {local} handled {} times", count(local) - seen_local),
    );
    events::mask();

    let _ = calls::evtchn_close(local);
    let _ = calls::evtchn_close(unbound);
    c.finish()
}

/// A port allocated unbound to ourselves, and a port bound to it.
fn loopback() -> Result<(u32, u32), guest_abi::Errno> {
    let unbound = calls::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)?;
    let local = calls::evtchn_bind_interdomain(DOMID_SELF, unbound)?;
    // Binding made the local port pending (as Xen does): start from quiet bitmaps, so that
    // the checks below see only what the test's own sends do. Events are masked.
    for port in [unbound, local] {
        set_port_masked(port, false);
        events::clear_pending(port);
        events::reset(port);
    }
    let v = vcpu();
    v.evtchn_pending_sel.store(0, Ordering::SeqCst);
    v.evtchn_upcall_pending.store(0, Ordering::SeqCst);
    Ok((unbound, local))
}
