//! Event channels and virtual interrupts (`event_channel_op`).
//!
//! An event channel is a port in a domain that can be made pending; pending
//! unmasked ports make the vCPU they are bound to enter its event callback.
//! Xenia implements Xen's 2-level scheme: the pending and mask bitmaps live in
//! [`SharedInfo`](crate::shared_info::SharedInfo), the per-vCPU summary in
//! [`VcpuInfo`](crate::shared_info::VcpuInfo).
//!
//! Sending an event to port *p* bound to vCPU *v*: the hypervisor atomically
//! sets bit *p* of `evtchn_pending`; if it was clear and bit *p* of
//! `evtchn_mask` is clear, it sets bit `p / 64` of *v*'s
//! `evtchn_pending_sel`, then `evtchn_upcall_pending`, and arranges an
//! upcall unless `evtchn_upcall_mask` is set.
//!
//! Handling, in the event callback: clear `evtchn_upcall_pending`; exchange
//! `evtchn_pending_sel` with zero; for each set bit *w*, take
//! `evtchn_pending[w] & !evtchn_mask[w]`, and for each set bit clear it in
//! `evtchn_pending` (atomically) and handle that port; repeat while
//! `evtchn_upcall_pending` is set again.
//!
//! Every `event_channel_op(cmd, arg)` takes a pointer to the structure named
//! for its command; OUT fields are written back by the hypervisor on
//! success.

use crate::types::DomId;

/// An event-channel port number.
pub type EvtchnPort = u32;

/// Number of ports of the 2-level scheme: one per bit of the pending bitmap.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;

// Virtual interrupts (Xen's `VIRQ_*`, `xen.h`). "Per vCPU" ones are bound
// once on each vCPU that wants them; "global" ones once per domain, on vCPU 0.

/// Per vCPU: the timer (`set_timer_op`, `VCPUOP_*_timer`) expired.
pub const VIRQ_TIMER: u32 = 0;
/// Per vCPU: a request to dump debugging state.
pub const VIRQ_DEBUG: u32 = 1;
/// Global, dom0: input arrived on the hypervisor console (`console_io` read).
pub const VIRQ_CONSOLE: u32 = 2;
/// Global, dom0: some domain changed state (for instance shut down); the
/// tools should look.
pub const VIRQ_DOM_EXC: u32 = 3;
/// Global, dom0: trace buffers have records.
pub const VIRQ_TBUF: u32 = 4;
/// Global, dom0: a domain paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// Per vCPU: profiling sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// Global, dom0: the hypervisor's log ring has new data (`xl dmesg`).
pub const VIRQ_CON_RING: u32 = 8;
/// Global, dom0: a physical CPU changed state.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// Global, dom0: a memory event occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// Global: Argo message notification.
pub const VIRQ_ARGO: u32 = 11;
/// Global, dom0: the hypervisor is low on memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// Per vCPU: performance-counter interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// First of eight architecture-specific VIRQs (16 to 23).
pub const VIRQ_ARCH_0: u32 = 16;
/// Number of VIRQ numbers.
pub const NR_VIRQS: u32 = 24;

// Commands (`EVTCHNOP_*`).

/// Connect to an unbound port of another domain ([`EvtchnBindInterdomain`]).
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// Bind a VIRQ on a vCPU ([`EvtchnBindVirq`]).
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// Bind a physical IRQ (dom0; [`EvtchnBindPirq`]).
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// Close a port ([`EvtchnClose`]).
pub const EVTCHNOP_CLOSE: u32 = 3;
/// Send an event through a port ([`EvtchnSend`]).
pub const EVTCHNOP_SEND: u32 = 4;
/// Query a port ([`EvtchnStatus`]).
pub const EVTCHNOP_STATUS: u32 = 5;
/// Allocate a port that a given domain may connect to
/// ([`EvtchnAllocUnbound`]).
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// Allocate a port for inter-vCPU notifications ([`EvtchnBindIpi`]).
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// Change the vCPU a port notifies ([`EvtchnBindVcpu`]).
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// Clear a port's mask bit and notify if it is pending ([`EvtchnUnmask`]).
pub const EVTCHNOP_UNMASK: u32 = 9;
/// Close every port of a domain ([`EvtchnReset`]).
pub const EVTCHNOP_RESET: u32 = 10;
/// Register a vCPU's FIFO control block ([`EvtchnInitControl`]). Xenia has Xen's 2-level
/// ABI only and answers `EOPNOTSUPP`, as a Xen built without `CONFIG_EVTCHN_FIFO`; a guest
/// (Linux's `xen_init_IRQ`) then uses the 2-level ABI.
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// Add a page to the FIFO event array ([`EvtchnExpandArray`]): `EOPNOTSUPP`, as
/// [`EVTCHNOP_INIT_CONTROL`].
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// Set a port's FIFO priority ([`EvtchnSetPriority`]): checked, and changes nothing.
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// Continuation of a preempted reset.
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// `EVTCHNOP_ALLOC_UNBOUND` (Xen's `struct evtchn_alloc_unbound`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnAllocUnbound {
    /// IN: domain to allocate in; `DOMID_SELF` unless the caller is
    /// privileged.
    pub dom: DomId,
    /// IN: the only domain allowed to connect (may be `DOMID_SELF`).
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `EVTCHNOP_BIND_INTERDOMAIN` (Xen's `struct evtchn_bind_interdomain`,
/// 12 bytes).
///
/// As in Xen, the new local port starts *pending*: events the remote end
/// sent while its port was unbound were dropped, so the binder is told to
/// look once. A domain may bind to its own unbound port (`DOMID_SELF`),
/// which makes a loopback channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnBindInterdomain {
    /// IN: domain owning the unbound port (may be `DOMID_SELF`).
    pub remote_dom: DomId,
    /// IN: the unbound port, which must accept the caller.
    pub remote_port: EvtchnPort,
    /// OUT: the caller's new, connected port.
    pub local_port: EvtchnPort,
}

/// `EVTCHNOP_BIND_VIRQ` (Xen's `struct evtchn_bind_virq`, 12 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN: vCPU to notify (0 for global VIRQs).
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `EVTCHNOP_BIND_PIRQ` (Xen's `struct evtchn_bind_pirq`, 12 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnBindPirq {
    /// IN: physical IRQ: a PIRQ from `PHYSDEVOP_map_pirq`
    /// ([`physdev`](crate::physdev)); dom0 only. The port notifies vCPU 0.
    pub pirq: u32,
    /// IN: [`BIND_PIRQ_WILL_SHARE`] or 0.
    pub flags: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// Flag of [`EvtchnBindPirq::flags`]: the IRQ may be shared.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `EVTCHNOP_BIND_IPI` (Xen's `struct evtchn_bind_ipi`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnBindIpi {
    /// IN: vCPU to notify; fixed for the life of the port.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `EVTCHNOP_CLOSE` (Xen's `struct evtchn_close`). Closing one end of an
/// interdomain channel puts the other end back in the unbound state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnClose {
    /// IN: the caller's port.
    pub port: EvtchnPort,
}

/// `EVTCHNOP_SEND` (Xen's `struct evtchn_send`): make the other end pending
/// (the bound VIRQ, IPI or remote port).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnSend {
    /// IN: the caller's port.
    pub port: EvtchnPort,
}

/// `EVTCHNOP_UNMASK` (Xen's `struct evtchn_unmask`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnUnmask {
    /// IN: the caller's port.
    pub port: EvtchnPort,
}

/// `EVTCHNOP_SET_PRIORITY` (Xen's `struct evtchn_set_priority`, 8 bytes). The 2-level ABI
/// has no priorities: Xenia checks the port and the priority and changes nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnSetPriority {
    /// IN: the caller's port.
    pub port: EvtchnPort,
    /// IN: 0 (highest) to [`EVTCHN_FIFO_PRIORITY_MIN`].
    pub priority: u32,
}

/// `EVTCHNOP_INIT_CONTROL` (Xen's `struct evtchn_init_control`, 24 bytes). Xenia reads it
/// (`EFAULT` when it cannot) and answers `EOPNOTSUPP`: it has no FIFO ABI, so no control
/// block is ever mapped and no guest frame is taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnInitControl {
    /// IN: the guest frame holding the control block.
    pub control_gfn: u64,
    /// IN: the control block's offset in that frame.
    pub offset: u32,
    /// IN: the vCPU the control block is for.
    pub vcpu: u32,
    /// OUT: how many bits of an event word link to the next event.
    pub link_bits: u8,
    /// Padding to Xen's 24 bytes.
    pub pad: [u8; 7],
}

/// `EVTCHNOP_EXPAND_ARRAY` (Xen's `struct evtchn_expand_array`, 8 bytes): read, then
/// `EOPNOTSUPP`, as [`EvtchnInitControl`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnExpandArray {
    /// IN: the guest frame to add to the event array.
    pub array_gfn: u64,
}

/// The lowest FIFO priority (Xen's `EVTCHN_FIFO_PRIORITY_MIN`); 0 is the highest.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;

/// `EVTCHNOP_BIND_VCPU` (Xen's `struct evtchn_bind_vcpu`, 8 bytes). Only
/// interdomain, PIRQ and global-VIRQ ports can move.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnBindVcpu {
    /// IN: the caller's port.
    pub port: EvtchnPort,
    /// IN: vCPU to notify from now on.
    pub vcpu: u32,
}

/// `EVTCHNOP_RESET` (Xen's `struct evtchn_reset`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct EvtchnReset {
    /// IN: the domain (`DOMID_SELF` unless privileged).
    pub dom: DomId,
}

/// [`EvtchnStatus::status`]: the port is free.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// [`EvtchnStatus::status`]: allocated, waiting for a remote domain.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// [`EvtchnStatus::status`]: connected to a port of another domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// [`EvtchnStatus::status`]: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// [`EvtchnStatus::status`]: bound to a VIRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// [`EvtchnStatus::status`]: bound for inter-vCPU notifications.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `EVTCHNOP_STATUS` (Xen's `struct evtchn_status`, 24 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct EvtchnStatus {
    /// IN: domain owning the port (`DOMID_SELF` unless privileged).
    pub dom: DomId,
    /// IN: the port.
    pub port: EvtchnPort,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the port notifies.
    pub vcpu: u32,
    /// OUT: details, depending on `status` (Xen's union `u`). Read it with
    /// the accessors.
    pub u: [u32; 2],
}

impl EvtchnStatus {
    /// `EVTCHNSTAT_UNBOUND`: the domain allowed to connect.
    pub const fn unbound_dom(&self) -> DomId {
        self.u[0] as DomId
    }

    /// `EVTCHNSTAT_INTERDOMAIN`: the remote domain and port.
    pub const fn interdomain(&self) -> (DomId, EvtchnPort) {
        (self.u[0] as DomId, self.u[1])
    }

    /// `EVTCHNSTAT_PIRQ`: the physical IRQ.
    pub const fn pirq(&self) -> u32 {
        self.u[0]
    }

    /// `EVTCHNSTAT_VIRQ`: the VIRQ.
    pub const fn virq(&self) -> u32 {
        self.u[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let ops = [
            EVTCHNOP_BIND_INTERDOMAIN,
            EVTCHNOP_BIND_VIRQ,
            EVTCHNOP_BIND_PIRQ,
            EVTCHNOP_CLOSE,
            EVTCHNOP_SEND,
            EVTCHNOP_STATUS,
            EVTCHNOP_ALLOC_UNBOUND,
            EVTCHNOP_BIND_IPI,
            EVTCHNOP_BIND_VCPU,
            EVTCHNOP_UNMASK,
            EVTCHNOP_RESET,
            EVTCHNOP_INIT_CONTROL,
            EVTCHNOP_EXPAND_ARRAY,
            EVTCHNOP_SET_PRIORITY,
            EVTCHNOP_RESET_CONT,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        let virqs = [
            (VIRQ_TIMER, 0),
            (VIRQ_DEBUG, 1),
            (VIRQ_CONSOLE, 2),
            (VIRQ_DOM_EXC, 3),
            (VIRQ_TBUF, 4),
            (VIRQ_DEBUGGER, 6),
            (VIRQ_XENOPROF, 7),
            (VIRQ_CON_RING, 8),
            (VIRQ_PCPU_STATE, 9),
            (VIRQ_MEM_EVENT, 10),
            (VIRQ_ARGO, 11),
            (VIRQ_ENOMEM, 12),
            (VIRQ_XENPMU, 13),
            (VIRQ_ARCH_0, 16),
            (NR_VIRQS, 24),
        ];
        for (ours, xen) in virqs {
            assert_eq!(ours, xen);
        }
        let stat = [
            EVTCHNSTAT_CLOSED,
            EVTCHNSTAT_UNBOUND,
            EVTCHNSTAT_INTERDOMAIN,
            EVTCHNSTAT_PIRQ,
            EVTCHNSTAT_VIRQ,
            EVTCHNSTAT_IPI,
        ];
        for (i, s) in stat.into_iter().enumerate() {
            assert_eq!(s as usize, i);
        }
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
    }

    #[test]
    fn layouts() {
        assert_layout!(EvtchnAllocUnbound, 8, 4, { dom: 0, remote_dom: 2, port: 4 });
        assert_layout!(EvtchnBindInterdomain, 12, 4, { remote_dom: 0, remote_port: 4, local_port: 8 });
        assert_layout!(EvtchnBindVirq, 12, 4, { virq: 0, vcpu: 4, port: 8 });
        assert_layout!(EvtchnBindPirq, 12, 4, { pirq: 0, flags: 4, port: 8 });
        assert_layout!(EvtchnBindIpi, 8, 4, { vcpu: 0, port: 4 });
        assert_layout!(EvtchnClose, 4, 4, { port: 0 });
        assert_layout!(EvtchnSend, 4, 4, { port: 0 });
        assert_layout!(EvtchnUnmask, 4, 4, { port: 0 });
        assert_layout!(EvtchnBindVcpu, 8, 4, { port: 0, vcpu: 4 });
        assert_layout!(EvtchnReset, 2, 2, { dom: 0 });
        assert_layout!(EvtchnInitControl, 24, 8, { control_gfn: 0, offset: 8, vcpu: 12, link_bits: 16 });
        assert_layout!(EvtchnExpandArray, 8, 8, { array_gfn: 0 });
        assert_layout!(EvtchnStatus, 24, 4, { dom: 0, port: 4, status: 8, vcpu: 12, u: 16 });
    }

    #[test]
    fn status_union_views() {
        let s = EvtchnStatus {
            status: EVTCHNSTAT_INTERDOMAIN,
            u: [3, 17],
            ..Default::default()
        };
        assert_eq!(s.interdomain(), (3, 17));
        assert_eq!(s.unbound_dom(), 3);
        assert_eq!(s.virq(), 3);
        assert_eq!(s.pirq(), 3);
    }
}
