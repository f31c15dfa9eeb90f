//! Events: the event callback, per-port bookkeeping and masking helpers (guest-abi `event`).
//!
//! The callback follows guest-abi's recipe: clear `evtchn_upcall_pending`, take
//! `evtchn_pending_sel`, and for each selected word handle the pending, unmasked ports,
//! clearing their pending bits; repeat while `evtchn_upcall_pending` is set again. Handling a
//! port here means counting it and noting the system time ([`count`], [`last_seen_ns`]), which
//! is all a test needs to see whether and when an event arrived.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use guest_abi::calls;
use guest_abi::event::{EVTCHN_2L_NR_CHANNELS, EvtchnPort};
use guest_abi::shared_info::EVTCHN_WORDS;

use crate::boot::{shared, vcpu};
use crate::time::now_ns;

/// Ports below this number get their own counters; the rest share [`others`].
pub const TRACKED_PORTS: usize = 256;

static UPCALLS: AtomicU64 = AtomicU64::new(0);
static OTHERS: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicU64 = AtomicU64::new(0);
static COUNT: [AtomicU32; TRACKED_PORTS] = [const { AtomicU32::new(0) }; TRACKED_PORTS];
/// The vCPU each tracked port notifies, as the runtime bound it (0 unless bound otherwise):
/// a vCPU's upcall handles only its own ports, so that it never takes another vCPU's event.
static PORT_VCPU: [AtomicU8; TRACKED_PORTS] = [const { AtomicU8::new(0) }; TRACKED_PORTS];
static LAST_NS: [AtomicU64; TRACKED_PORTS] = [const { AtomicU64::new(0) }; TRACKED_PORTS];

/// Number of times the event callback was entered.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::SeqCst)
}

/// Number of events the callback handled on `port`.
pub fn count(port: EvtchnPort) -> u32 {
    COUNT
        .get(port as usize)
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

/// System time at which the callback last handled `port` (0: never).
pub fn last_seen_ns(port: EvtchnPort) -> u64 {
    LAST_NS
        .get(port as usize)
        .map_or(0, |t| t.load(Ordering::SeqCst))
}

/// Events the callback handled on every port so far: a caller that notes it before looking
/// at its ports and finds it moved before it blocks has events it has not looked at (their
/// counts moved, and their pending bits are clear, so blocking would not end for them).
pub fn handled_total() -> u64 {
    HANDLED.load(Ordering::SeqCst)
}

/// Events handled on ports of [`TRACKED_PORTS`] and above.
pub fn others() -> u64 {
    OTHERS.load(Ordering::SeqCst)
}

/// Forgets what the callback counted on `port`.
pub fn reset(port: EvtchnPort) {
    if let (Some(c), Some(t)) = (COUNT.get(port as usize), LAST_NS.get(port as usize)) {
        c.store(0, Ordering::SeqCst);
        t.store(0, Ordering::SeqCst);
    }
}

/// Called from `trap::rt_trap` for the event callback, which the hypervisor enters with
/// events masked. `enabled` is the frame's virtual interrupt flag.
pub(crate) fn upcall(enabled: bool) {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    let me = crate::smp::this_vcpu();
    let v = vcpu();
    let si = shared();
    // The ports of this word that are another vCPU's: left pending for their own upcall.
    let others = |word: usize| {
        (0..64).fold(0u64, |m, bit| {
            let port = word * 64 + bit;
            match PORT_VCPU.get(port) {
                Some(owner) if usize::from(owner.load(Ordering::Relaxed)) != me => m | 1 << bit,
                _ => m,
            }
        })
    };
    loop {
        v.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        let mut sel = v.evtchn_pending_sel.swap(0, Ordering::SeqCst);
        while sel != 0 {
            let word = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            if word >= EVTCHN_WORDS {
                continue;
            }
            let mut bits = si.evtchn_pending[word].load(Ordering::SeqCst)
                & !si.evtchn_mask[word].load(Ordering::SeqCst)
                & !others(word);
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                si.evtchn_pending[word].fetch_and(!(1 << bit), Ordering::SeqCst);
                handled(word as u32 * 64 + bit);
            }
        }
        // Re-enable events the way iretq in ring 1 cannot: clear the mask, then look again,
        // so that an event that arrived during the scan is not left waiting.
        if !enabled {
            break;
        }
        v.evtchn_upcall_mask.store(0, Ordering::SeqCst);
        if v.evtchn_upcall_pending.load(Ordering::SeqCst) == 0 {
            break;
        }
        v.evtchn_upcall_mask.store(1, Ordering::SeqCst);
    }
}

fn handled(port: u32) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
    match COUNT.get(port as usize) {
        Some(c) => {
            c.fetch_add(1, Ordering::SeqCst);
            LAST_NS[port as usize].store(now_ns(), Ordering::SeqCst);
        }
        None => {
            OTHERS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Whether events are masked (`evtchn_upcall_mask != 0`): the virtual interrupt flag, clear.
pub fn masked() -> bool {
    vcpu().evtchn_upcall_mask.load(Ordering::SeqCst) != 0
}

/// Masks events (the guest's `cli`).
pub fn mask() {
    vcpu().evtchn_upcall_mask.store(1, Ordering::SeqCst);
}

/// Unmasks events without forcing delivery of what is pending (half of the guest's `sti`;
/// see [`unmask_and_deliver`]).
pub fn unmask_only() {
    vcpu().evtchn_upcall_mask.store(0, Ordering::SeqCst);
}

/// Unmasks events and, if one is pending, has the hypervisor deliver it before returning
/// (the guest's `sti`).
pub fn unmask_and_deliver() {
    crate::trap::restore_events(true);
}

/// With events masked, handles what is pending now in place, as the event callback would
/// (counting each port, clearing its pending bit), without entering the hypervisor: the
/// guest's "sti; cli" for a kernel that only counts its events, minus a `xen_version`, the
/// callback's bounce frame and its `iret`. Events stay masked; with events unmasked it does
/// nothing (delivery is then the hypervisor's).
pub fn take_pending() {
    if masked() && vcpu().evtchn_upcall_pending.load(Ordering::SeqCst) != 0 {
        upcall(false);
    }
}

/// Enters the hypervisor with a harmless hypercall (`xen_version`), so that it delivers a
/// pending, unmasked event on the way back, as Xen guests do after unmasking.
pub fn force_delivery() {
    let _ = calls::xen_version();
}

/// Binds `virq` on vCPU 0.
pub fn bind_virq(virq: u32) -> Result<EvtchnPort, guest_abi::Errno> {
    bind_virq_on(virq, 0)
}

/// Binds `virq` on `vcpu` (a per-vCPU VIRQ such as `VIRQ_TIMER` then reports that vCPU's
/// events, handled by its upcall).
pub fn bind_virq_on(virq: u32, vcpu: u32) -> Result<EvtchnPort, guest_abi::Errno> {
    let port = calls::evtchn_bind_virq(virq, vcpu)?;
    owned_by(port, vcpu);
    reset(port);
    Ok(port)
}

/// Binds a new IPI port that notifies `vcpu` (`EVTCHNOP_bind_ipi`): any vCPU sends it with
/// `EVTCHNOP_send`, and `vcpu`'s upcall handles it.
pub fn bind_ipi(vcpu: u32) -> Result<EvtchnPort, guest_abi::Errno> {
    let port = calls::evtchn_bind_ipi(vcpu)?;
    owned_by(port, vcpu);
    reset(port);
    Ok(port)
}

/// Moves `port` (unbound, interdomain or a global VIRQ) to notify `vcpu`
/// (`EVTCHNOP_bind_vcpu`).
pub fn bind_vcpu(port: EvtchnPort, vcpu: u32) -> Result<(), guest_abi::Errno> {
    calls::evtchn_bind_vcpu(port, vcpu)?;
    owned_by(port, vcpu);
    Ok(())
}

/// Records that `vcpu`'s upcall handles `port`.
fn owned_by(port: EvtchnPort, vcpu: u32) {
    if let (Some(owner), Ok(v)) = (PORT_VCPU.get(port as usize), u8::try_from(vcpu)) {
        owner.store(v, Ordering::SeqCst);
    }
}

fn word_bit(port: EvtchnPort) -> Option<(usize, u64)> {
    (port < EVTCHN_2L_NR_CHANNELS).then(|| (port as usize / 64, 1u64 << (port % 64)))
}

/// Whether `port`'s bit in `shared_info.evtchn_pending` is set.
pub fn is_pending(port: EvtchnPort) -> bool {
    word_bit(port).is_some_and(|(w, b)| shared().evtchn_pending[w].load(Ordering::SeqCst) & b != 0)
}

/// Clears `port`'s pending bit.
pub fn clear_pending(port: EvtchnPort) {
    if let Some((w, b)) = word_bit(port) {
        shared().evtchn_pending[w].fetch_and(!b, Ordering::SeqCst);
    }
}

/// Whether `port`'s bit in `vcpu_info.evtchn_pending_sel` is set.
pub fn is_selected(port: EvtchnPort) -> bool {
    vcpu().evtchn_pending_sel.load(Ordering::SeqCst) & (1 << (port / 64)) != 0
}

/// Sets or clears `port`'s bit in `shared_info.evtchn_mask` (no hypercall).
pub fn set_port_masked(port: EvtchnPort, masked: bool) {
    if let Some((w, b)) = word_bit(port) {
        let m = &shared().evtchn_mask[w];
        if masked {
            m.fetch_or(b, Ordering::SeqCst);
        } else {
            m.fetch_and(!b, Ordering::SeqCst);
        }
    }
}

/// Whether `port` is masked in `shared_info.evtchn_mask`.
pub fn is_port_masked(port: EvtchnPort) -> bool {
    word_bit(port).is_some_and(|(w, b)| shared().evtchn_mask[w].load(Ordering::SeqCst) & b != 0)
}

/// Waits, with events enabled, until the callback has handled `port` more than `seen`
/// times or system time `deadline_ns` passes (spinning: the hypervisor delivers the event on
/// its way back from the interrupt that raised it). Restores the mask it found.
pub fn wait_for(port: EvtchnPort, seen: u32, deadline_ns: u64) -> bool {
    let was_masked = masked();
    unmask_and_deliver();
    let ok = crate::time::spin_until_or(deadline_ns, || count(port) > seen);
    if was_masked {
        mask();
    }
    ok
}

/// Sleeps until an event arrives, or until system time `deadline_ns` if given, then masks
/// events again: the guest's "sti; hlt; cli". `SCHEDOP_block` unmasks and sleeps as one
/// step, so a caller that checked what it waits for with events masked cannot sleep through
/// the event that changes it. The deadline arms the one-shot timer, which wakes the vCPU
/// only if `VIRQ_TIMER` is bound ([`bind_virq`]). May return early (any event wakes it):
/// callers look again.
pub fn block_until(deadline_ns: Option<u64>) {
    if let Some(deadline) = deadline_ns {
        // A deadline already past raises the timer event at once; 0 would mean "no timer".
        let _ = calls::set_timer_op(deadline.max(1));
    }
    if let Err(e) = calls::sched_block() {
        crate::println!("SCHEDOP_block failed: {e:?}");
        crate::check::shutdown(guest_abi::sched::ShutdownReason::Crash);
    }
    mask();
}
