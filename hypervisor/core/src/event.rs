//! Event channels: Xen's 2-level scheme, as pure logic the hypercall layer drives.
//!
//! Two halves, kept apart so both can be tested on the host:
//!
//! * [`EventChannels`] is one domain's port table: which port is free, unbound, connected to
//!   another domain, bound to a VIRQ or an IPI, and which vCPU each one notifies. It knows nothing
//!   about other domains; inter-domain operations are split into steps that a caller holding both
//!   domains' tables strings together (recipes below).
//! * [`set_pending`], [`unmask`], [`clear_pending`], [`is_pending`] and [`is_masked`] are the bit
//!   protocol on a domain's [`SharedInfo`] page (Xen's `xen/common/event_2l.c`). The page is
//!   guest-writable, so every access is atomic and every index is bounds-checked: a guest
//!   scribbling on it can confuse only itself.
//!
//! Standing assumptions: the caller serialises operations on one table (Xen's per-domain
//! `event_lock`) and, for an inter-domain operation, holds both tables, taking the locks in a fixed
//! order (Xen takes the lower-addressed domain first). Every error is the guest's and comes back as
//! the errno Xen's `xen/common/event_channel.c` gives for it; nothing here panics on guest input.
//!
//! # What the caller does around each operation
//!
//! * `EVTCHNOP_bind_interdomain` (local domain `ld`, remote `rd`, remote port `rport`; `rd` may be
//!   `ld` itself): `lport = ld.get_free_port()?`, `rd.is_unbound_for(rport, ld_id)?`,
//!   `ld.connect(lport, rd_id, rport)?`, `rd.connect(rport, ld_id, lport)?`, then
//!   [`set_pending`] on `lport` for `ld.notify_vcpu(lport)`: Xen does so because events sent to the
//!   remote port while it was unbound were dropped (`evtchn_bind_interdomain`). The order of the
//!   first two steps is Xen's, so the errno is too when both would fail.
//! * `EVTCHNOP_close`: `peer = d.close(port)?`, [`clear_pending`] on `port` (Xen's `evtchn_free`,
//!   so a re-bound port starts quiet), and for `Some(peer)`:
//!   `peer_table.unbind_peer(peer.remote_port, d_id, port)`.
//! * `EVTCHNOP_send`: [`EventChannels::send`] says where the event goes; for
//!   [`Target::Remote`] ask the remote table for the port's [`EventChannels::notify_vcpu`].
//! * `EVTCHNOP_unmask`: `vcpu = d.notify_vcpu(port)?` (Xen checks the port is valid), then
//!   [`unmask`].
//! * Raising a VIRQ: [`EventChannels::virq_delivery`], then [`set_pending`].
//! * `EVTCHNOP_reset` and domain destruction: [`EventChannels::close_all`] or
//!   [`EventChannels::destroy`], then fix up the returned peers as for `close`.
//!
//! Not provided: PIRQs (no passthrough yet), Xen-internal consumers, FIFO event channels.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use guest_abi::errno::Errno;
use guest_abi::event::{
    EVTCHN_2L_NR_CHANNELS, EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI,
    EVTCHNSTAT_PIRQ, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ, EvtchnPort, EvtchnStatus, NR_VIRQS,
    VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU,
};
use guest_abi::shared_info::{EVTCHN_WORDS, SharedInfo, VcpuInfo};
use guest_abi::types::DomId;

/// Number of ports of the 2-level ABI on x86-64: one per bit of the 64 × 64-bit pending bitmap
/// (Xen's `evtchn_2l_init`: `BITS_PER_EVTCHN_WORD(d) * BITS_PER_EVTCHN_WORD(d)`).
pub const NR_PORTS: u32 = EVTCHN_2L_NR_CHANNELS;

/// Ports per bitmap word; also the unit by which a port table grows (Xen grows by
/// `EVTCHNS_PER_BUCKET` for the same reason: most domains use a handful of ports).
const PORTS_PER_WORD: u32 = u64::BITS;

const _: () = assert!(NR_PORTS as usize == EVTCHN_WORDS * PORTS_PER_WORD as usize);
// The VIRQ table stores ports as u16 to stay small; every port must fit.
const _: () = assert!(NR_PORTS <= u16::MAX as u32 + 1);

/// What a port is bound to (Xen's `ECS_*` states, without PIRQs and Xen-internal consumers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelState {
    /// Not in use (`ECS_FREE`). Port 0 is always in this state: Xen reserves it so that 0 can mean
    /// "no port" in its tables (`ECS_RESERVED`, set in `evtchn_init`), and reports it as closed.
    Free,
    /// Allocated, waiting for `remote` to connect (`ECS_UNBOUND`).
    Unbound {
        /// The only domain allowed to bind to this port.
        remote: DomId,
    },
    /// Connected to a port of another (or the same) domain (`ECS_INTERDOMAIN`).
    Interdomain {
        /// The domain at the other end.
        remote_dom: DomId,
        /// The port at the other end, in `remote_dom`'s table.
        remote_port: EvtchnPort,
    },
    /// Bound to a virtual IRQ (`ECS_VIRQ`).
    Virq {
        /// The `VIRQ_*` number.
        virq: u32,
        /// The vCPU in whose VIRQ table the binding lives (always 0 for a global VIRQ).
        vcpu: u32,
    },
    /// Bound for inter-vCPU notification (`ECS_IPI`).
    Ipi {
        /// The vCPU notified; fixed for the life of the port.
        vcpu: u32,
    },
    /// Bound to a physical IRQ of the hardware domain (`ECS_PIRQ`, `EVTCHNOP_bind_pirq`).
    Pirq {
        /// The PIRQ (`crate::pirq`).
        pirq: u32,
    },
}

/// One port: its binding and the vCPU it notifies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Channel {
    /// What the port is bound to.
    pub state: ChannelState,
    /// The vCPU whose `evtchn_pending_sel` and upcall flag an event on this port sets (Xen's
    /// `notify_vcpu_id`). 0 for a free port, as Xen resets it in `evtchn_free`.
    pub notify_vcpu: u32,
}

impl Channel {
    const FREE: Channel = Channel {
        state: ChannelState::Free,
        notify_vcpu: 0,
    };

    /// Fills the OUT fields of `EVTCHNOP_status` (`status`, `vcpu`, `u`), as Xen's
    /// `evtchn_status` does. The union is zeroed where Xen leaves it untouched (closed, IPI), so
    /// the guest never reads back stale input there.
    pub fn write_status(&self, out: &mut EvtchnStatus) {
        let (status, u) = match self.state {
            ChannelState::Free => (EVTCHNSTAT_CLOSED, [0, 0]),
            ChannelState::Unbound { remote } => (EVTCHNSTAT_UNBOUND, [u32::from(remote), 0]),
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            } => (EVTCHNSTAT_INTERDOMAIN, [u32::from(remote_dom), remote_port]),
            ChannelState::Virq { virq, .. } => (EVTCHNSTAT_VIRQ, [virq, 0]),
            ChannelState::Ipi { .. } => (EVTCHNSTAT_IPI, [0, 0]),
            ChannelState::Pirq { pirq } => (EVTCHNSTAT_PIRQ, [pirq, 0]),
        };
        out.status = status;
        out.vcpu = self.notify_vcpu;
        out.u = u;
    }
}

/// A port to make pending, and the vCPU to notify.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Delivery {
    /// The port, in the domain whose table produced this.
    pub port: EvtchnPort,
    /// The vCPU to notify: its index for [`set_pending`].
    pub vcpu: u32,
}

/// Where an `EVTCHNOP_send` goes (Xen's `evtchn_send`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// A port of the sending domain itself (an IPI).
    Local(Delivery),
    /// A port of another domain (or of the sender, for a loopback channel); its notify vCPU is in
    /// that domain's table.
    Remote {
        /// The receiving domain.
        dom: DomId,
        /// The receiving port.
        port: EvtchnPort,
    },
    /// Nothing to do: the port is unbound, and Xen silently drops such events.
    Dropped,
}

/// The far end of an interdomain channel that was just closed on this side. It still points at
/// the closed port until the caller turns it back into an unbound port with
/// [`EventChannels::unbind_peer`]`(remote_port, <this domain>, local_port)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Peer {
    /// The port closed in this domain.
    pub local_port: EvtchnPort,
    /// The domain holding the other end.
    pub remote_dom: DomId,
    /// The other end's port.
    pub remote_port: EvtchnPort,
}

/// Whether a VIRQ is bound once per domain (on vCPU 0) rather than once per vCPU (Xen's
/// `virq_is_global`). On x86 the architectural VIRQs are all global (`arch_virq_is_global`).
pub const fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// One domain's event-channel ports.
#[derive(Debug, Default)]
pub struct EventChannels {
    /// Slot `p` is port `p`. Its length is 0 or a multiple of [`PORTS_PER_WORD`], at most
    /// [`NR_PORTS`]. Valid ports (Xen's `port_is_valid`) are those below this length or in the
    /// first group, which Xen allocates with the domain (`evtchn_init`) and which is kept virtual
    /// here, all free, until the first port is handed out: an idle domain costs no heap.
    ports: Vec<Channel>,
    /// `virqs[v][virq]`: the port bound to `virq` on vCPU `v`, 0 for none (Xen's
    /// `virq_to_evtchn`; 0 works as "none" because port 0 is never handed out). Grown to a vCPU
    /// only when that vCPU binds a VIRQ.
    virqs: Vec<[u16; NR_VIRQS as usize]>,
    /// Set by [`EventChannels::destroy`]: no port can be allocated any more, so nothing can
    /// connect to a domain being torn down (Xen's `d->is_dying` check in `get_free_port`).
    dying: bool,
}

impl EventChannels {
    /// A table whose ports are all free. Allocates nothing, so it cannot fail and can be built
    /// anywhere.
    pub const fn new() -> Self {
        Self {
            ports: Vec::new(),
            virqs: Vec::new(),
            dying: false,
        }
    }

    /// Heap bytes the table holds now (charged to its domain).
    pub fn heap_bytes(&self) -> u64 {
        (self.ports.capacity() * core::mem::size_of::<Channel>()
            + self.virqs.capacity() * core::mem::size_of::<[u16; NR_VIRQS as usize]>())
            as u64
    }

    /// The most [`EventChannels::heap_bytes`] can reach: every port, and a VIRQ row for
    /// each of the most vCPUs a domain can have.
    pub fn heap_limit(&self) -> u64 {
        (NR_PORTS as usize * core::mem::size_of::<Channel>()
            + guest_abi::shared_info::XEN_LEGACY_MAX_VCPUS
                * core::mem::size_of::<[u16; NR_VIRQS as usize]>()) as u64
    }

    /// Number of valid ports: the allocated groups, and at least the first one.
    fn nr_valid(&self) -> usize {
        self.ports.len().max(PORTS_PER_WORD as usize)
    }

    /// Whether `port` is in an allocated group or the first one (Xen's `port_is_valid`). A free
    /// valid port can still be queried, and its bits unmasked.
    pub fn is_valid(&self, port: EvtchnPort) -> bool {
        (port as usize) < self.nr_valid()
    }

    /// A copy of a valid port's entry; [`Errno::EINVAL`] for an invalid port.
    fn channel(&self, port: EvtchnPort) -> Result<Channel, Errno> {
        if !self.is_valid(port) {
            return Err(Errno::EINVAL);
        }
        Ok(self
            .ports
            .get(port as usize)
            .copied()
            .unwrap_or(Channel::FREE))
    }

    /// A valid port's entry, for writing; the first group is allocated if it is still virtual.
    fn channel_mut(&mut self, port: EvtchnPort) -> Result<&mut Channel, Errno> {
        if self.is_valid(port) && self.ports.is_empty() {
            self.grow()?;
        }
        self.ports.get_mut(port as usize).ok_or(Errno::EINVAL)
    }

    /// Adds one group of free ports. [`Errno::ENOSPC`] at [`NR_PORTS`], [`Errno::ENOMEM`] if
    /// the heap is exhausted.
    fn grow(&mut self) -> Result<(), Errno> {
        let len = self.ports.len();
        if len >= NR_PORTS as usize {
            return Err(Errno::ENOSPC);
        }
        self.ports
            .try_reserve_exact(PORTS_PER_WORD as usize)
            .map_err(|_| Errno::ENOMEM)?;
        // alloc: within the room reserved just above.
        self.ports
            .resize(len + PORTS_PER_WORD as usize, Channel::FREE);
        Ok(())
    }

    /// The lowest free port, growing the table by one group if every valid port is taken (Xen's
    /// `get_free_port`). The port stays free until something binds it, so a caller that fails
    /// later has nothing to undo. [`Errno::ENOSPC`] when all [`NR_PORTS`] ports are in use,
    /// [`Errno::ENOMEM`] if growing fails, [`Errno::EINVAL`] once the domain is dying.
    pub fn get_free_port(&mut self) -> Result<EvtchnPort, Errno> {
        if self.dying {
            return Err(Errno::EINVAL);
        }
        // Port 0 is skipped: it stays reserved (see `ChannelState::Free`).
        if let Some(i) = self
            .ports
            .iter()
            .skip(1)
            .position(|c| c.state == ChannelState::Free)
        {
            return Ok(i as EvtchnPort + 1);
        }
        let first_new = self.ports.len();
        self.grow()?;
        // Growing from nothing materialises the first group, port 0 included.
        Ok(first_new.max(1) as EvtchnPort)
    }

    /// Binds the lowest free port as `channel`.
    fn claim(&mut self, channel: Channel) -> Result<EvtchnPort, Errno> {
        let port = self.get_free_port()?;
        *self.channel_mut(port)? = channel;
        Ok(port)
    }

    /// `EVTCHNOP_alloc_unbound`: a new port that only `remote` may connect to. The caller has
    /// already replaced `DOMID_SELF` with the caller's own id, as Xen does.
    pub fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.claim(Channel {
            state: ChannelState::Unbound { remote },
            notify_vcpu: 0,
        })
    }

    /// `EVTCHNOP_bind_virq`: binds `virq` on `vcpu` of a domain with `nr_vcpus` vCPUs. Errors in
    /// Xen's order (`evtchn_bind_virq`): [`Errno::EINVAL`] for an unknown VIRQ or a global one
    /// asked for on a vCPU other than 0, [`Errno::ENOENT`] for a vCPU the domain does not have,
    /// [`Errno::EEXIST`] if the VIRQ is already bound there, then [`Self::get_free_port`]'s.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32, nr_vcpus: u32) -> Result<EvtchnPort, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if virq_is_global(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        if vcpu >= nr_vcpus {
            return Err(Errno::ENOENT);
        }
        if self.virq_port(vcpu, virq).is_some() {
            return Err(Errno::EEXIST);
        }
        let port = self.get_free_port()?;
        // Grow the VIRQ table before binding, so a failure leaves nothing half done.
        let v = vcpu as usize;
        if v >= self.virqs.len() {
            self.virqs
                .try_reserve_exact(v + 1 - self.virqs.len())
                .map_err(|_| Errno::ENOMEM)?;
            // alloc: within the room reserved just above.
            self.virqs.resize(v + 1, [0; NR_VIRQS as usize]);
        }
        *self.channel_mut(port)? = Channel {
            state: ChannelState::Virq { virq, vcpu },
            notify_vcpu: vcpu,
        };
        self.virqs[v][virq as usize] = port as u16;
        Ok(port)
    }

    /// `EVTCHNOP_bind_ipi`: a port that notifies `vcpu`. [`Errno::ENOENT`] for a vCPU the domain
    /// does not have (Xen's `evtchn_bind_ipi`), then [`Self::get_free_port`]'s errors.
    pub fn bind_ipi(&mut self, vcpu: u32, nr_vcpus: u32) -> Result<EvtchnPort, Errno> {
        if vcpu >= nr_vcpus {
            return Err(Errno::ENOENT);
        }
        self.claim(Channel {
            state: ChannelState::Ipi { vcpu },
            notify_vcpu: vcpu,
        })
    }

    /// `EVTCHNOP_bind_pirq`: a port for PIRQ `pirq`, notifying vCPU 0 (Xen's
    /// `evtchn_bind_pirq` binds to vCPU 0 too; `EVTCHNOP_bind_vcpu` may move it). Whether
    /// the PIRQ exists and is free is the caller's check (`crate::pirq`); then
    /// [`Self::get_free_port`]'s errors.
    pub fn bind_pirq(&mut self, pirq: u32) -> Result<EvtchnPort, Errno> {
        self.claim(Channel {
            state: ChannelState::Pirq { pirq },
            notify_vcpu: 0,
        })
    }

    /// Where an interrupt of PIRQ `pirq`, which the PIRQ table says is bound to `port`, goes:
    /// `None` unless `port` is still bound to exactly that PIRQ (a reset or a close may have
    /// freed or reused it since).
    pub fn pirq_delivery(&self, port: EvtchnPort, pirq: u32) -> Option<Delivery> {
        let c = self.channel(port).ok()?;
        (c.state == ChannelState::Pirq { pirq }).then_some(Delivery {
            port,
            vcpu: c.notify_vcpu,
        })
    }

    /// The port bound to `virq` on `vcpu`, if any (Xen's `virq_to_evtchn` lookup). Out-of-range
    /// arguments simply have none.
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<EvtchnPort> {
        let port = *self.virqs.get(vcpu as usize)?.get(virq as usize)?;
        (port != 0).then_some(EvtchnPort::from(port))
    }

    /// Where raising `virq` for `vcpu` goes, if the guest bound it. A global VIRQ lives in vCPU
    /// 0's table whatever `vcpu` says, and notifies the vCPU the guest moved it to with
    /// `EVTCHNOP_bind_vcpu` (Xen's `send_guest_global_virq`); a per-vCPU VIRQ notifies its own
    /// vCPU (`send_guest_vcpu_virq`).
    pub fn virq_delivery(&self, vcpu: u32, virq: u32) -> Option<Delivery> {
        let vcpu = if virq_is_global(virq) { 0 } else { vcpu };
        let port = self.virq_port(vcpu, virq)?;
        let notify = self.channel(port).ok()?.notify_vcpu;
        Some(Delivery { port, vcpu: notify })
    }

    /// `EVTCHNOP_status`: the port's binding. [`Errno::EINVAL`] beyond the valid ports; a free
    /// valid port (port 0 included) is reported, as closed.
    pub fn status(&self, port: EvtchnPort) -> Result<Channel, Errno> {
        self.channel(port)
    }

    /// The vCPU a port notifies; [`Errno::EINVAL`] if the port is not valid. Used for the far end
    /// of a send and for `EVTCHNOP_unmask`, which Xen accepts on any valid port.
    pub fn notify_vcpu(&self, port: EvtchnPort) -> Result<u32, Errno> {
        Ok(self.channel(port)?.notify_vcpu)
    }

    /// `EVTCHNOP_bind_vcpu`: makes `port` notify `vcpu`. As in Xen's `evtchn_bind_vcpu`:
    /// [`Errno::ENOENT`] for a vCPU the domain does not have (checked first), [`Errno::EINVAL`]
    /// for an invalid port or one whose target is fixed (free, IPI, per-vCPU VIRQ). Unbound,
    /// interdomain and global-VIRQ ports can move.
    pub fn bind_vcpu(&mut self, port: EvtchnPort, vcpu: u32, nr_vcpus: u32) -> Result<(), Errno> {
        if vcpu >= nr_vcpus {
            return Err(Errno::ENOENT);
        }
        match self.channel(port)?.state {
            ChannelState::Unbound { .. }
            | ChannelState::Interdomain { .. }
            | ChannelState::Pirq { .. } => {}
            ChannelState::Virq { virq, .. } if virq_is_global(virq) => {}
            ChannelState::Free | ChannelState::Virq { .. } | ChannelState::Ipi { .. } => {
                return Err(Errno::EINVAL);
            }
        }
        self.channel_mut(port)?.notify_vcpu = vcpu;
        Ok(())
    }

    /// Checks, for `EVTCHNOP_bind_interdomain`, that `port` is an unbound port waiting for `dom`;
    /// [`Errno::EINVAL`] otherwise (Xen's `evtchn_bind_interdomain`).
    pub fn is_unbound_for(&self, port: EvtchnPort, dom: DomId) -> Result<(), Errno> {
        match self.channel(port)?.state {
            ChannelState::Unbound { remote } if remote == dom => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Connects `port` to `remote_port` of `remote_dom`: one half of
    /// `EVTCHNOP_bind_interdomain`, done on both tables. `port` must be free (the binder's new
    /// port, from [`Self::get_free_port`]) or unbound for `remote_dom` (the remote end, checked
    /// with [`Self::is_unbound_for`]); otherwise [`Errno::EINVAL`] and nothing changes. The notify
    /// vCPU is kept: an unbound port may already have been moved with `EVTCHNOP_bind_vcpu`.
    pub fn connect(
        &mut self,
        port: EvtchnPort,
        remote_dom: DomId,
        remote_port: EvtchnPort,
    ) -> Result<(), Errno> {
        // Port 0 looks free but must stay reserved.
        if port == 0 {
            return Err(Errno::EINVAL);
        }
        match self.channel(port)?.state {
            ChannelState::Free => {}
            ChannelState::Unbound { remote } if remote == remote_dom => {}
            _ => return Err(Errno::EINVAL),
        }
        self.channel_mut(port)?.state = ChannelState::Interdomain {
            remote_dom,
            remote_port,
        };
        Ok(())
    }

    /// `EVTCHNOP_close`: frees `port`. [`Errno::EINVAL`] if it is invalid or already free (port 0
    /// included), as in Xen's `evtchn_close`. A VIRQ binding leaves the VIRQ table; an
    /// interdomain port returns its [`Peer`], which the caller must turn back into an unbound port
    /// waiting for this domain (Xen does both ends under both domains' locks). The caller also
    /// clears the port's pending bit ([`clear_pending`]), as Xen's `evtchn_free` does.
    pub fn close(&mut self, port: EvtchnPort) -> Result<Option<Peer>, Errno> {
        let peer = match self.channel(port)?.state {
            ChannelState::Free => return Err(Errno::EINVAL),
            ChannelState::Unbound { .. } | ChannelState::Ipi { .. } | ChannelState::Pirq { .. } => {
                None
            }
            ChannelState::Virq { virq, vcpu } => {
                if let Some(slot) = self
                    .virqs
                    .get_mut(vcpu as usize)
                    .and_then(|t| t.get_mut(virq as usize))
                    .filter(|slot| u32::from(**slot) == port)
                {
                    *slot = 0;
                }
                None
            }
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            } => Some(Peer {
                local_port: port,
                remote_dom,
                remote_port,
            }),
        };
        *self.channel_mut(port)? = Channel::FREE;
        Ok(peer)
    }

    /// Turns `port`, the far end of a channel whose other end (`closer_port` of `closer_dom`) was
    /// just closed, back into a port waiting for `closer_dom` to connect again (Xen's
    /// `evtchn_close`, `ECS_INTERDOMAIN` case). Its notify vCPU and pending state are untouched.
    /// [`Errno::EINVAL`] if `port` is not connected to exactly that end: where Xen would `BUG()`,
    /// the caller gets a hypervisor-bug error to report, and nothing changes.
    pub fn unbind_peer(
        &mut self,
        port: EvtchnPort,
        closer_dom: DomId,
        closer_port: EvtchnPort,
    ) -> Result<(), Errno> {
        let expected = ChannelState::Interdomain {
            remote_dom: closer_dom,
            remote_port: closer_port,
        };
        if self.channel(port)?.state != expected {
            return Err(Errno::EINVAL);
        }
        self.channel_mut(port)?.state = ChannelState::Unbound { remote: closer_dom };
        Ok(())
    }

    /// `EVTCHNOP_send` on `port`: where the event goes. [`Errno::EINVAL`] for an invalid port, a
    /// free port or a VIRQ port (Xen's `evtchn_send` accepts only interdomain, IPI and unbound
    /// ports; only the hypervisor raises VIRQs).
    pub fn send(&self, port: EvtchnPort) -> Result<Target, Errno> {
        let channel = self.channel(port)?;
        match channel.state {
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            } => Ok(Target::Remote {
                dom: remote_dom,
                port: remote_port,
            }),
            ChannelState::Ipi { .. } => Ok(Target::Local(Delivery {
                port,
                vcpu: channel.notify_vcpu,
            })),
            ChannelState::Unbound { .. } => Ok(Target::Dropped),
            ChannelState::Free | ChannelState::Virq { .. } | ChannelState::Pirq { .. } => {
                Err(Errno::EINVAL)
            }
        }
    }

    /// Every port in use, lowest first, with its binding.
    pub fn iter_bound(&self) -> impl Iterator<Item = (EvtchnPort, Channel)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != ChannelState::Free)
            .map(|(p, c)| (p as EvtchnPort, *c))
    }

    /// `EVTCHNOP_reset`: closes every port of this domain, `own` (Xen's `evtchn_reset`). Returns
    /// the peers in other domains to fix up with [`Self::unbind_peer`]; loopback channels (both
    /// ends here) need nothing and are not returned. The list is allocated before anything is
    /// closed, so [`Errno::ENOMEM`] leaves the table as it was. If the domain lives on, the caller
    /// first clears the pending bits of the ports in [`Self::iter_bound`], as Xen's `evtchn_free`
    /// does for each port it closes.
    pub fn close_all(&mut self, own: DomId) -> Result<Vec<Peer>, Errno> {
        let mut peers = Vec::new();
        peers
            .try_reserve_exact(foreign_peers(&self.ports, own).count())
            .map_err(|_| Errno::ENOMEM)?;
        peers.extend(foreign_peers(&self.ports, own)); // alloc: room reserved above
        self.ports.fill(Channel::FREE);
        self.virqs.fill([0; NR_VIRQS as usize]);
        Ok(peers)
    }

    /// Domain destruction (Xen's `evtchn_destroy`): marks the table dying, so no port can be
    /// allocated any more, then closes everything as [`Self::close_all`]. On
    /// [`Errno::ENOMEM`] the table is dying but still bound; the caller retries.
    pub fn destroy(&mut self, own: DomId) -> Result<Vec<Peer>, Errno> {
        self.dying = true;
        self.close_all(own)
    }
}

/// The interdomain ports of `ports` whose far end is in a domain other than `own`.
fn foreign_peers(ports: &[Channel], own: DomId) -> impl Iterator<Item = Peer> + '_ {
    (0..).zip(ports).filter_map(move |(port, c)| match c.state {
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } if remote_dom != own => Some(Peer {
            local_port: port,
            remote_dom,
            remote_port,
        }),
        _ => None,
    })
}

/// What a change to the shared bitmaps asks of the caller.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[must_use]
pub struct Notify {
    /// The port's pending bit went from 0 to 1, masked or not: wake vCPUs blocked in
    /// `SCHEDOP_poll` on it (Xen's `evtchn_check_pollers`, called for every newly pending port).
    pub newly_pending: bool,
    /// The vCPU's `evtchn_upcall_pending` went from 0 to 1: kick it, so that it leaves a blocked
    /// state or takes the upcall on its next return to the guest (Xen's
    /// `vcpu_mark_events_pending`). The guest's upcall mask is checked at delivery, not here.
    pub kick: bool,
}

impl Notify {
    /// Nothing to do.
    pub const NOTHING: Notify = Notify {
        newly_pending: false,
        kick: false,
    };
}

/// The bitmap word and bit of a port, if it is one of the [`NR_PORTS`].
fn word_and_bit(port: EvtchnPort) -> Option<(usize, u64)> {
    (port < NR_PORTS).then(|| {
        (
            (port / PORTS_PER_WORD) as usize,
            1 << (port % PORTS_PER_WORD),
        )
    })
}

/// The `vcpu_info` slot of a vCPU in the shared page. vCPUs beyond the legacy slots would need a
/// registered `vcpu_info` (`VCPUOP_register_vcpu_info`), which Xenia does not offer.
fn vcpu_info(shared: &SharedInfo, vcpu: usize) -> Option<&VcpuInfo> {
    shared.vcpu_info.get(vcpu)
}

/// Tells `vcpu` that word `word` has unmasked pending ports: sets its bit in
/// `evtchn_pending_sel`, and if that is new, the upcall flag. Returns whether the upcall flag went
/// from 0 to 1 (Xen's `vcpu_mark_events_pending`, x86).
fn mark_word_pending(info: &VcpuInfo, word: usize) -> bool {
    let sel = 1u64 << word;
    if info.evtchn_pending_sel.fetch_or(sel, Ordering::SeqCst) & sel != 0 {
        return false;
    }
    info.evtchn_upcall_pending.fetch_or(1, Ordering::SeqCst) & 1 == 0
}

/// Makes `port` pending for `vcpu` (Xen's `evtchn_2l_set_pending`): sets the pending bit; if it
/// was clear and the port is unmasked, sets the word's bit in the vCPU's `evtchn_pending_sel` and
/// its `evtchn_upcall_pending`. An already pending event is not signalled twice; a masked one
/// waits in the bitmap for [`unmask`].
///
/// The read-modify-writes are sequentially consistent, in Xen's order: the guest clears the upcall
/// flag, then the selector, then pending bits, so a bit set here is never lost between its scans.
/// A port or vCPU out of range (a hypervisor bug: tables never hand those out) touches nothing.
pub fn set_pending(shared: &SharedInfo, port: EvtchnPort, vcpu: usize) -> Notify {
    match vcpu_info(shared, vcpu) {
        Some(info) => set_pending_to(shared, port, info),
        None => Notify::NOTHING,
    }
}

/// [`set_pending`] for a vCPU whose `vcpu_info` is `info`, wherever it lives (in
/// `shared_info`, or where the guest moved it with `VCPUOP_register_vcpu_info`).
pub fn set_pending_to(shared: &SharedInfo, port: EvtchnPort, info: &VcpuInfo) -> Notify {
    let Some((word, bit)) = word_and_bit(port) else {
        return Notify::NOTHING;
    };
    if shared.evtchn_pending[word].fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        return Notify::NOTHING;
    }
    let kick =
        shared.evtchn_mask[word].load(Ordering::SeqCst) & bit == 0 && mark_word_pending(info, word);
    Notify {
        newly_pending: true,
        kick,
    }
}

/// `EVTCHNOP_unmask` (Xen's `evtchn_2l_unmask`): clears the mask bit; if it was set and the port
/// is pending, signals `vcpu` as [`set_pending`] would have, had the port not been masked. A guest
/// that clears its mask bit by hand must check the pending bit itself; this is the call that does
/// it for it. Never reports [`Notify::newly_pending`]: pollers were woken when the port became
/// pending. Out-of-range arguments touch nothing.
pub fn unmask(shared: &SharedInfo, port: EvtchnPort, vcpu: usize) -> Notify {
    match vcpu_info(shared, vcpu) {
        Some(info) => unmask_to(shared, port, info),
        None => Notify::NOTHING,
    }
}

/// [`unmask`] for a vCPU whose `vcpu_info` is `info`, wherever it lives.
pub fn unmask_to(shared: &SharedInfo, port: EvtchnPort, info: &VcpuInfo) -> Notify {
    let Some((word, bit)) = word_and_bit(port) else {
        return Notify::NOTHING;
    };
    let kick = shared.evtchn_mask[word].fetch_and(!bit, Ordering::SeqCst) & bit != 0
        && shared.evtchn_pending[word].load(Ordering::SeqCst) & bit != 0
        && mark_word_pending(info, word);
    Notify {
        newly_pending: false,
        kick,
    }
}

/// Clears `port`'s pending bit (Xen's `evtchn_2l_clear_pending`), when the port is freed so that a
/// later binding does not inherit a stale event. Out of range: nothing to clear.
pub fn clear_pending(shared: &SharedInfo, port: EvtchnPort) {
    if let Some((word, bit)) = word_and_bit(port) {
        shared.evtchn_pending[word].fetch_and(!bit, Ordering::SeqCst);
    }
}

/// Whether `port` is pending. A port out of range never is (Xen's `evtchn_2l_is_pending`).
pub fn is_pending(shared: &SharedInfo, port: EvtchnPort) -> bool {
    word_and_bit(port)
        .is_some_and(|(word, bit)| shared.evtchn_pending[word].load(Ordering::SeqCst) & bit != 0)
}

/// Whether `port` is masked. A port out of range always is (Xen's `evtchn_2l_is_masked`), so no
/// caller ever tries to deliver through it.
pub fn is_masked(shared: &SharedInfo, port: EvtchnPort) -> bool {
    word_and_bit(port)
        .is_none_or(|(word, bit)| shared.evtchn_mask[word].load(Ordering::SeqCst) & bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use guest_abi::event::{VIRQ_ARCH_0, VIRQ_CONSOLE, VIRQ_DOM_EXC};
    use guest_abi::shared_info::XEN_LEGACY_MAX_VCPUS;

    const NR_VCPUS: u32 = 4;

    fn table() -> EventChannels {
        EventChannels::new()
    }

    fn unbound(remote: DomId) -> ChannelState {
        ChannelState::Unbound { remote }
    }

    fn interdomain(remote_dom: DomId, remote_port: EvtchnPort) -> ChannelState {
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        }
    }

    /// `EVTCHNOP_bind_interdomain` as the hypercall layer will do it (see the module docs), for
    /// two distinct tables.
    fn bind_interdomain(
        local: &mut EventChannels,
        local_id: DomId,
        remote: &mut EventChannels,
        remote_id: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, Errno> {
        let lport = local.get_free_port()?;
        remote.is_unbound_for(remote_port, local_id)?;
        local.connect(lport, remote_id, remote_port)?;
        remote.connect(remote_port, local_id, lport)?;
        Ok(lport)
    }

    /// The same, binding to a port of the caller's own domain.
    fn bind_loopback(d: &mut EventChannels, id: DomId, rport: EvtchnPort) -> Result<u32, Errno> {
        let lport = d.get_free_port()?;
        d.is_unbound_for(rport, id)?;
        d.connect(lport, id, rport)?;
        d.connect(rport, id, lport)?;
        Ok(lport)
    }

    #[test]
    fn a_new_table_has_one_group_of_ports_and_keeps_port_0() {
        let mut d = table();
        // Valid from the start, allocated only when needed.
        assert_eq!(d.ports.capacity(), 0);
        assert!(d.is_valid(0) && d.is_valid(63) && !d.is_valid(64));
        assert_eq!(d.status(0).unwrap(), Channel::FREE);
        assert_eq!(d.status(64), Err(Errno::EINVAL));
        assert_eq!(d.close(0), Err(Errno::EINVAL));
        assert_eq!(d.send(0), Err(Errno::EINVAL));
        assert_eq!(d.bind_vcpu(0, 0, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.connect(0, 1, 1), Err(Errno::EINVAL));
        assert_eq!(d.notify_vcpu(0), Ok(0));
        assert_eq!(d.notify_vcpu(64), Err(Errno::EINVAL));
        assert_eq!(d.iter_bound().count(), 0);
        assert_eq!(d.unbind_peer(5, 1, 1), Err(Errno::EINVAL));
        assert_eq!(d.ports.capacity(), 0, "failed operations allocate nothing");
        assert_eq!(d.alloc_unbound(0), Ok(1));
        assert_eq!(d.ports.len(), 64);
        assert_eq!(d.status(0).unwrap(), Channel::FREE);
        assert_eq!(d.status(64), Err(Errno::EINVAL));
    }

    #[test]
    fn connect_materialises_the_first_group() {
        // Only reachable by skipping get_free_port, but still well defined.
        let mut d = EventChannels::default();
        assert_eq!(d.connect(5, 2, 9), Ok(()));
        assert_eq!(d.ports.len(), 64);
        assert_eq!(d.status(5).unwrap().state, interdomain(2, 9));
        assert_eq!(d.get_free_port(), Ok(1));
    }

    #[test]
    fn get_free_port_does_not_claim() {
        let mut d = table();
        assert_eq!(d.get_free_port(), Ok(1));
        assert_eq!(d.get_free_port(), Ok(1));
        assert_eq!(d.status(1).unwrap().state, ChannelState::Free);
    }

    #[test]
    fn unbound_port_lifecycle() {
        let mut d = table();
        let p = d.alloc_unbound(7).unwrap();
        assert_eq!(
            d.status(p),
            Ok(Channel {
                state: unbound(7),
                notify_vcpu: 0
            })
        );
        assert_eq!(d.send(p), Ok(Target::Dropped));
        assert_eq!(d.is_unbound_for(p, 7), Ok(()));
        assert_eq!(d.is_unbound_for(p, 8), Err(Errno::EINVAL));
        assert_eq!(d.close(p), Ok(None));
        assert_eq!(d.status(p).unwrap(), Channel::FREE);
        assert_eq!(d.close(p), Err(Errno::EINVAL));
        assert_eq!(d.send(p), Err(Errno::EINVAL));
        assert_eq!(d.is_unbound_for(p, 7), Err(Errno::EINVAL));
        assert_eq!(d.is_unbound_for(4096, 7), Err(Errno::EINVAL));
    }

    #[test]
    fn ports_grow_lazily_up_to_4096_then_enospc() {
        let mut d = table();
        for expected in 1..NR_PORTS {
            assert_eq!(d.alloc_unbound(0), Ok(expected));
            // Grown one group at a time, only when the last one filled up.
            assert_eq!(d.ports.len(), (expected as usize / 64 + 1) * 64);
        }
        assert_eq!(d.ports.len(), NR_PORTS as usize);
        assert_eq!(d.alloc_unbound(0), Err(Errno::ENOSPC));
        assert_eq!(d.bind_ipi(0, NR_VCPUS), Err(Errno::ENOSPC));
        assert_eq!(d.bind_virq(VIRQ_TIMER, 0, NR_VCPUS), Err(Errno::ENOSPC));
        assert_eq!(d.get_free_port(), Err(Errno::ENOSPC));
        // A failed VIRQ bind leaves no binding behind.
        assert_eq!(d.virq_port(0, VIRQ_TIMER), None);
        // The lowest free port is reused.
        d.close(1234).unwrap();
        d.close(77).unwrap();
        assert_eq!(d.bind_ipi(1, NR_VCPUS), Ok(77));
        assert_eq!(d.bind_virq(VIRQ_TIMER, 0, NR_VCPUS), Ok(1234));
        assert_eq!(d.status(4095).unwrap().state, unbound(0));
        assert_eq!(d.status(4096), Err(Errno::EINVAL));
    }

    #[test]
    fn bind_virq_errors_in_xen_order() {
        let mut d = table();
        assert_eq!(d.bind_virq(NR_VIRQS, 0, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.bind_virq(u32::MAX, 99, NR_VCPUS), Err(Errno::EINVAL));
        // A global VIRQ only on vCPU 0, and that is checked before the vCPU exists.
        assert_eq!(d.bind_virq(VIRQ_CONSOLE, 1, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.bind_virq(VIRQ_CONSOLE, 99, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.bind_virq(VIRQ_ARCH_0, 1, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.bind_virq(VIRQ_CONSOLE, 0, 0), Err(Errno::ENOENT));
        assert_eq!(
            d.bind_virq(VIRQ_TIMER, NR_VCPUS, NR_VCPUS),
            Err(Errno::ENOENT)
        );
        assert!(d.iter_bound().next().is_none());
        assert!(d.virqs.is_empty());

        let p = d.bind_virq(VIRQ_TIMER, 2, NR_VCPUS).unwrap();
        // The VIRQ table grew only to the vCPU that bound.
        assert_eq!(d.virqs.len(), 3);
        assert_eq!(d.bind_virq(VIRQ_TIMER, 2, NR_VCPUS), Err(Errno::EEXIST));
        let q = d.bind_virq(VIRQ_TIMER, 1, NR_VCPUS).unwrap();
        assert_ne!(p, q);
        assert_eq!(
            d.status(p),
            Ok(Channel {
                state: ChannelState::Virq {
                    virq: VIRQ_TIMER,
                    vcpu: 2
                },
                notify_vcpu: 2
            })
        );
        assert_eq!(d.virq_port(2, VIRQ_TIMER), Some(p));
        assert_eq!(d.virq_port(1, VIRQ_TIMER), Some(q));
        assert_eq!(d.virq_port(0, VIRQ_TIMER), None);
        assert_eq!(d.virq_port(3, VIRQ_TIMER), None);
        assert_eq!(d.virq_port(2, VIRQ_DEBUG), None);
        assert_eq!(d.virq_port(2, NR_VIRQS), None);
        assert_eq!(d.virq_port(u32::MAX, VIRQ_TIMER), None);
        assert_eq!(
            d.virq_delivery(2, VIRQ_TIMER),
            Some(Delivery { port: p, vcpu: 2 })
        );
        // Only the hypervisor raises a VIRQ.
        assert_eq!(d.send(p), Err(Errno::EINVAL));

        assert_eq!(d.close(p), Ok(None));
        assert_eq!(d.virq_port(2, VIRQ_TIMER), None);
        assert_eq!(d.virq_port(1, VIRQ_TIMER), Some(q));
        assert_eq!(d.bind_virq(VIRQ_TIMER, 2, NR_VCPUS), Ok(p));
    }

    #[test]
    fn virq_kinds_follow_xen() {
        for virq in [VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU] {
            assert!(!virq_is_global(virq), "{virq}");
        }
        for virq in [VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_ARCH_0, NR_VIRQS - 1] {
            assert!(virq_is_global(virq), "{virq}");
        }
    }

    #[test]
    fn global_virq_can_move_and_is_raised_from_vcpu_0() {
        let mut d = table();
        let p = d.bind_virq(VIRQ_DOM_EXC, 0, NR_VCPUS).unwrap();
        assert_eq!(d.bind_vcpu(p, 3, NR_VCPUS), Ok(()));
        assert_eq!(d.notify_vcpu(p), Ok(3));
        // Whichever vCPU the caller names, the binding is vCPU 0's and the target vCPU 3.
        for vcpu in [0, 2, 99] {
            assert_eq!(
                d.virq_delivery(vcpu, VIRQ_DOM_EXC),
                Some(Delivery { port: p, vcpu: 3 })
            );
        }
        assert_eq!(d.virq_delivery(0, VIRQ_CONSOLE), None);
        // Freeing resets the notify vCPU (Xen's evtchn_free).
        d.close(p).unwrap();
        assert_eq!(d.notify_vcpu(p), Ok(0));
    }

    #[test]
    fn bind_ipi_and_send() {
        let mut d = table();
        assert_eq!(d.bind_ipi(NR_VCPUS, NR_VCPUS), Err(Errno::ENOENT));
        let p = d.bind_ipi(2, NR_VCPUS).unwrap();
        assert_eq!(d.status(p).unwrap().state, ChannelState::Ipi { vcpu: 2 });
        assert_eq!(d.send(p), Ok(Target::Local(Delivery { port: p, vcpu: 2 })));
        assert_eq!(d.bind_vcpu(p, 1, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.close(p), Ok(None));
        assert_eq!(d.send(p), Err(Errno::EINVAL));
    }

    #[test]
    fn bind_vcpu_errors_in_xen_order() {
        let mut d = table();
        // The vCPU is checked before the port.
        assert_eq!(d.bind_vcpu(4096, NR_VCPUS, NR_VCPUS), Err(Errno::ENOENT));
        assert_eq!(d.bind_vcpu(4096, 0, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.bind_vcpu(5, 0, NR_VCPUS), Err(Errno::EINVAL));
        let timer = d.bind_virq(VIRQ_TIMER, 1, NR_VCPUS).unwrap();
        assert_eq!(d.bind_vcpu(timer, 2, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(d.notify_vcpu(timer), Ok(1));
        let u = d.alloc_unbound(9).unwrap();
        assert_eq!(d.bind_vcpu(u, 3, NR_VCPUS), Ok(()));
        // The notify vCPU survives connecting and the far end's close.
        d.connect(u, 9, 42).unwrap();
        assert_eq!(d.status(u).unwrap().notify_vcpu, 3);
        assert_eq!(d.bind_vcpu(u, 2, NR_VCPUS), Ok(()));
        d.unbind_peer(u, 9, 42).unwrap();
        assert_eq!(
            d.status(u),
            Ok(Channel {
                state: unbound(9),
                notify_vcpu: 2
            })
        );
    }

    #[test]
    fn interdomain_pair_closed_from_either_end() {
        for close_a_first in [true, false] {
            let (ida, idb) = (1, 2);
            let (mut a, mut b) = (table(), table());
            let pb = b.alloc_unbound(ida).unwrap();
            let pa = bind_interdomain(&mut a, ida, &mut b, idb, pb).unwrap();
            assert_eq!(a.status(pa).unwrap().state, interdomain(idb, pb));
            assert_eq!(b.status(pb).unwrap().state, interdomain(ida, pa));
            assert_eq!(a.send(pa), Ok(Target::Remote { dom: idb, port: pb }));
            assert_eq!(b.send(pb), Ok(Target::Remote { dom: ida, port: pa }));

            let (first, first_id, first_port, second, second_id, second_port) = if close_a_first {
                (&mut a, ida, pa, &mut b, idb, pb)
            } else {
                (&mut b, idb, pb, &mut a, ida, pa)
            };
            let peer = first.close(first_port).unwrap().unwrap();
            assert_eq!(
                peer,
                Peer {
                    local_port: first_port,
                    remote_dom: second_id,
                    remote_port: second_port
                }
            );
            second
                .unbind_peer(peer.remote_port, first_id, first_port)
                .unwrap();
            assert_eq!(first.status(first_port).unwrap(), Channel::FREE);
            assert_eq!(second.status(second_port).unwrap().state, unbound(first_id));
            assert_eq!(second.send(second_port), Ok(Target::Dropped));
            // The closer may connect again to the port left waiting for it.
            let again = bind_interdomain(first, first_id, second, second_id, second_port).unwrap();
            assert_eq!(again, first_port);
            // Closing the other end now, then what is left.
            let peer = second.close(second_port).unwrap().unwrap();
            first.unbind_peer(again, second_id, second_port).unwrap();
            assert_eq!(peer.remote_port, again);
            assert_eq!(first.close(again), Ok(None));
            assert_eq!(first.iter_bound().count(), 0);
            assert_eq!(second.iter_bound().count(), 0);
        }
    }

    #[test]
    fn bind_interdomain_checks_the_remote_port() {
        let (mut a, mut b) = (table(), table());
        let for_someone_else = b.alloc_unbound(3).unwrap();
        let ipi = b.bind_ipi(0, NR_VCPUS).unwrap();
        for rport in [0, for_someone_else, ipi, 63, 64, u32::MAX] {
            assert_eq!(
                bind_interdomain(&mut a, 1, &mut b, 2, rport),
                Err(Errno::EINVAL),
                "{rport}"
            );
        }
        // Nothing was claimed on the binder's side.
        assert_eq!(a.iter_bound().count(), 0);
        // connect refuses to rebind a port that is not waiting for that domain.
        assert_eq!(b.connect(for_someone_else, 1, 5), Err(Errno::EINVAL));
        assert_eq!(b.connect(ipi, 1, 5), Err(Errno::EINVAL));
        assert_eq!(b.connect(4096, 1, 5), Err(Errno::EINVAL));
        assert_eq!(b.status(for_someone_else).unwrap().state, unbound(3));
        // And a connected one.
        let pb = b.alloc_unbound(1).unwrap();
        let pa = bind_interdomain(&mut a, 1, &mut b, 2, pb).unwrap();
        assert_eq!(b.connect(pb, 1, pa + 1), Err(Errno::EINVAL));
        assert_eq!(
            bind_interdomain(&mut a, 1, &mut b, 2, pb),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn unbind_peer_only_undoes_the_matching_connection() {
        let mut d = table();
        let p = d.alloc_unbound(4).unwrap();
        d.connect(p, 4, 10).unwrap();
        let before = d.status(p).unwrap();
        for (dom, port) in [(4, 11), (5, 10)] {
            assert_eq!(d.unbind_peer(p, dom, port), Err(Errno::EINVAL));
        }
        assert_eq!(d.unbind_peer(4096, 4, 10), Err(Errno::EINVAL));
        assert_eq!(d.unbind_peer(0, 4, 10), Err(Errno::EINVAL));
        assert_eq!(d.status(p).unwrap(), before);
        assert_eq!(d.unbind_peer(p, 4, 10), Ok(()));
        assert_eq!(d.unbind_peer(p, 4, 10), Err(Errno::EINVAL));
    }

    #[test]
    fn loopback_channel() {
        let id = 3;
        let mut d = table();
        let r = d.alloc_unbound(id).unwrap();
        let l = bind_loopback(&mut d, id, r).unwrap();
        assert_eq!(d.send(l), Ok(Target::Remote { dom: id, port: r }));
        let peer = d.close(r).unwrap().unwrap();
        assert_eq!(peer.remote_dom, id);
        d.unbind_peer(peer.remote_port, id, r).unwrap();
        assert_eq!(d.status(l).unwrap().state, unbound(id));
        // Reconnect, then reset: a loopback pair needs no fix-up from outside.
        let r2 = bind_loopback(&mut d, id, l).unwrap();
        assert_eq!(r2, r);
        assert_eq!(d.close_all(id), Ok(vec![]));
        assert_eq!(d.iter_bound().count(), 0);
    }

    #[test]
    fn close_all_and_destroy() {
        let (ida, idb) = (1, 2);
        let (mut a, mut b) = (table(), table());
        let timer = a.bind_virq(VIRQ_TIMER, 1, NR_VCPUS).unwrap();
        a.bind_virq(VIRQ_CONSOLE, 0, NR_VCPUS).unwrap();
        a.bind_ipi(3, NR_VCPUS).unwrap();
        a.alloc_unbound(idb).unwrap();
        let pb = b.alloc_unbound(ida).unwrap();
        let pa = bind_interdomain(&mut a, ida, &mut b, idb, pb).unwrap();
        let loop_r = a.alloc_unbound(ida).unwrap();
        bind_loopback(&mut a, ida, loop_r).unwrap();
        assert_eq!(a.iter_bound().count(), 7);

        let peers = a.close_all(ida).unwrap();
        assert_eq!(
            peers,
            vec![Peer {
                local_port: pa,
                remote_dom: idb,
                remote_port: pb
            }]
        );
        for peer in &peers {
            b.unbind_peer(peer.remote_port, ida, peer.local_port)
                .unwrap();
        }
        assert_eq!(b.status(pb).unwrap().state, unbound(ida));
        assert_eq!(a.iter_bound().count(), 0);
        assert!(a.ports.iter().all(|c| *c == Channel::FREE));
        assert_eq!(a.virq_port(1, VIRQ_TIMER), None);
        assert_eq!(a.virq_port(0, VIRQ_CONSOLE), None);
        // A reset domain lives on.
        assert_eq!(a.bind_virq(VIRQ_TIMER, 1, NR_VCPUS), Ok(1));
        assert_ne!(timer, 0);

        // A destroyed one takes no new ports.
        assert_eq!(a.destroy(ida), Ok(vec![]));
        assert_eq!(a.get_free_port(), Err(Errno::EINVAL));
        assert_eq!(a.alloc_unbound(idb), Err(Errno::EINVAL));
        assert_eq!(a.bind_ipi(0, NR_VCPUS), Err(Errno::EINVAL));
        assert_eq!(a.iter_bound().count(), 0);
        // And nobody can connect to it.
        assert_eq!(
            bind_interdomain(&mut b, idb, &mut a, ida, 1),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn status_abi_encoding() {
        let mut d = table();
        let u = d.alloc_unbound(0x7ff0).unwrap();
        let i = d.alloc_unbound(5).unwrap();
        d.connect(i, 5, 77).unwrap();
        let v = d.bind_virq(VIRQ_DEBUG, 2, NR_VCPUS).unwrap();
        let ipi = d.bind_ipi(3, NR_VCPUS).unwrap();
        let cases = [
            (0, EVTCHNSTAT_CLOSED, 0, [0, 0]),
            (u, EVTCHNSTAT_UNBOUND, 0, [0x7ff0, 0]),
            (i, EVTCHNSTAT_INTERDOMAIN, 0, [5, 77]),
            (v, EVTCHNSTAT_VIRQ, 2, [VIRQ_DEBUG, 0]),
            (ipi, EVTCHNSTAT_IPI, 3, [0, 0]),
        ];
        for (port, status, vcpu, u) in cases {
            let mut out = EvtchnStatus {
                dom: 0x7ff0,
                port,
                u: [0xdead, 0xbeef],
                ..Default::default()
            };
            d.status(port).unwrap().write_status(&mut out);
            assert_eq!((out.status, out.vcpu, out.u), (status, vcpu, u), "{port}");
            // IN fields are left alone.
            assert_eq!((out.dom, out.port), (0x7ff0, port));
        }
        let mut out = EvtchnStatus::default();
        d.status(u).unwrap().write_status(&mut out);
        assert_eq!(out.unbound_dom(), 0x7ff0);
        d.status(i).unwrap().write_status(&mut out);
        assert_eq!(out.interdomain(), (5, 77));
        d.status(v).unwrap().write_status(&mut out);
        assert_eq!(out.virq(), VIRQ_DEBUG);
    }

    // The bit protocol.

    fn guest_mask(shared: &SharedInfo, port: u32) {
        shared.evtchn_mask[port as usize / 64].fetch_or(1 << (port % 64), Ordering::SeqCst);
    }

    fn sel(shared: &SharedInfo, vcpu: usize) -> u64 {
        shared.vcpu_info[vcpu]
            .evtchn_pending_sel
            .load(Ordering::SeqCst)
    }

    fn upcall(shared: &SharedInfo, vcpu: usize) -> u8 {
        shared.vcpu_info[vcpu]
            .evtchn_upcall_pending
            .load(Ordering::SeqCst)
    }

    const KICK: Notify = Notify {
        newly_pending: true,
        kick: true,
    };
    const QUIET: Notify = Notify {
        newly_pending: true,
        kick: false,
    };
    const UNMASK_KICK: Notify = Notify {
        newly_pending: false,
        kick: true,
    };

    /// What a guest's upcall handler does (the loop in `guest_abi::event`'s docs): returns the
    /// unmasked pending ports it handled.
    fn guest_handle(shared: &SharedInfo, vcpu: usize) -> Vec<u32> {
        let info = &shared.vcpu_info[vcpu];
        let mut handled = Vec::new();
        while info.evtchn_upcall_pending.swap(0, Ordering::SeqCst) != 0 {
            let mut words = info.evtchn_pending_sel.swap(0, Ordering::SeqCst);
            while words != 0 {
                let w = words.trailing_zeros() as usize;
                words &= words - 1;
                let mut bits = shared.evtchn_pending[w].load(Ordering::SeqCst)
                    & !shared.evtchn_mask[w].load(Ordering::SeqCst);
                while bits != 0 {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    shared.evtchn_pending[w].fetch_and(!(1 << b), Ordering::SeqCst);
                    handled.push(w as u32 * 64 + b);
                }
            }
        }
        handled
    }

    #[test]
    fn set_pending_signals_once() {
        let s = SharedInfo::new();
        assert_eq!(set_pending(&s, 130, 1), KICK);
        assert!(is_pending(&s, 130));
        assert_eq!(sel(&s, 1), 1 << 2);
        assert_eq!(upcall(&s, 1), 1);
        assert_eq!(sel(&s, 0), 0);
        // Already pending: nothing new, nobody to wake.
        assert_eq!(set_pending(&s, 130, 1), Notify::NOTHING);
        // Another port of the same word: pending, but the vCPU already knows.
        assert_eq!(set_pending(&s, 131, 1), QUIET);
        // A port of another word: new selector bit, upcall already flagged.
        assert_eq!(set_pending(&s, 5, 1), QUIET);
        assert_eq!(sel(&s, 1), 1 << 2 | 1);
        assert_eq!(guest_handle(&s, 1), vec![5, 130, 131]);
        assert!(!is_pending(&s, 130));
        // Once handled, the next event kicks again.
        assert_eq!(set_pending(&s, 130, 1), KICK);
    }

    #[test]
    fn masked_event_is_held_until_unmask() {
        let s = SharedInfo::new();
        guest_mask(&s, 200);
        assert!(is_masked(&s, 200));
        assert_eq!(set_pending(&s, 200, 2), QUIET);
        assert!(is_pending(&s, 200));
        assert_eq!((sel(&s, 2), upcall(&s, 2)), (0, 0));
        assert_eq!(guest_handle(&s, 2), vec![]);
        assert!(is_pending(&s, 200));

        assert_eq!(unmask(&s, 200, 2), UNMASK_KICK);
        assert!(!is_masked(&s, 200));
        assert_eq!((sel(&s, 2), upcall(&s, 2)), (1 << 3, 1));
        assert_eq!(guest_handle(&s, 2), vec![200]);
        // Unmasking an unmasked port does nothing, even if it is pending (Xen tests and clears the
        // mask bit first).
        assert_eq!(set_pending(&s, 200, 2), KICK);
        s.vcpu_info[2]
            .evtchn_upcall_pending
            .store(0, Ordering::SeqCst);
        s.vcpu_info[2].evtchn_pending_sel.store(0, Ordering::SeqCst);
        assert_eq!(unmask(&s, 200, 2), Notify::NOTHING);
        assert_eq!((sel(&s, 2), upcall(&s, 2)), (0, 0));
    }

    #[test]
    fn unmask_of_a_quiet_port_only_clears_the_mask() {
        let s = SharedInfo::new();
        guest_mask(&s, 9);
        assert_eq!(unmask(&s, 9, 0), Notify::NOTHING);
        assert!(!is_masked(&s, 9));
        assert_eq!((sel(&s, 0), upcall(&s, 0)), (0, 0));
        // Masked and pending, but the vCPU already has the word flagged: no kick.
        guest_mask(&s, 9);
        assert_eq!(set_pending(&s, 9, 0), QUIET);
        assert_eq!(set_pending(&s, 10, 0), KICK);
        assert_eq!(unmask(&s, 9, 0), Notify::NOTHING);
        assert_eq!(guest_handle(&s, 0), vec![9, 10]);
    }

    #[test]
    fn events_go_to_the_named_vcpu() {
        let s = SharedInfo::new();
        let last = XEN_LEGACY_MAX_VCPUS - 1;
        assert_eq!(set_pending(&s, 4095, last), KICK);
        assert_eq!(sel(&s, last), 1 << 63);
        for v in 0..last {
            assert_eq!((sel(&s, v), upcall(&s, v)), (0, 0));
        }
        assert_eq!(guest_handle(&s, last), vec![4095]);
    }

    #[test]
    fn clear_pending_forgets_the_event() {
        let s = SharedInfo::new();
        guest_mask(&s, 64);
        assert_eq!(set_pending(&s, 64, 0), QUIET);
        clear_pending(&s, 64);
        assert!(!is_pending(&s, 64));
        assert_eq!(unmask(&s, 64, 0), Notify::NOTHING);
        assert_eq!((sel(&s, 0), upcall(&s, 0)), (0, 0));
    }

    #[test]
    fn out_of_range_never_panics_or_touches_the_page() {
        let s = SharedInfo::new();
        let bad_vcpu = XEN_LEGACY_MAX_VCPUS;
        for (port, vcpu) in [(NR_PORTS, 0), (u32::MAX, 0), (1, bad_vcpu), (1, usize::MAX)] {
            assert_eq!(set_pending(&s, port, vcpu), Notify::NOTHING);
            assert_eq!(unmask(&s, port, vcpu), Notify::NOTHING);
            clear_pending(&s, port);
        }
        assert!(!is_pending(&s, 1));
        for port in [NR_PORTS, u32::MAX] {
            assert!(!is_pending(&s, port));
            assert!(is_masked(&s, port));
        }
        // A masked port whose unmask names a bad vCPU stays masked.
        guest_mask(&s, 1);
        assert_eq!(unmask(&s, 1, bad_vcpu), Notify::NOTHING);
        assert!(is_masked(&s, 1));
        assert!(
            s.evtchn_pending
                .iter()
                .all(|w| w.load(Ordering::SeqCst) == 0)
        );
        assert!(s.vcpu_info.iter().all(|v| {
            v.evtchn_pending_sel.load(Ordering::SeqCst) == 0
                && v.evtchn_upcall_pending.load(Ordering::SeqCst) == 0
        }));
    }

    #[test]
    fn close_then_clear_means_a_rebound_port_starts_quiet() {
        let s = SharedInfo::new();
        let mut d = table();
        let p = d.bind_ipi(1, NR_VCPUS).unwrap();
        guest_mask(&s, p);
        let Ok(Target::Local(to)) = d.send(p) else {
            panic!("an IPI port sends locally");
        };
        assert_eq!(set_pending(&s, to.port, to.vcpu as usize), QUIET);
        d.close(p).unwrap();
        clear_pending(&s, p);
        let q = d.bind_ipi(1, NR_VCPUS).unwrap();
        assert_eq!(q, p);
        assert_eq!(
            unmask(&s, q, d.notify_vcpu(q).unwrap() as usize),
            Notify::NOTHING
        );
    }

    // Randomised sequences over two domains, checking the invariants after every step.

    /// xorshift64*: deterministic, good enough to pick operations.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u32) -> u32 {
            (self.next() % u64::from(n)) as u32
        }
    }

    const IDS: [DomId; 2] = [1, 2];

    fn dom_index(id: DomId) -> usize {
        IDS.iter()
            .position(|&d| d == id)
            .expect("a modelled domain")
    }

    /// A port worth trying: usually one in use, sometimes any valid one, sometimes an invalid one.
    fn pick_port(rng: &mut Rng, d: &EventChannels) -> u32 {
        let bound: Vec<u32> = d.iter_bound().map(|(p, _)| p).collect();
        match rng.below(8) {
            0 => rng.below(NR_PORTS + 8),
            1 => rng.below(d.nr_valid() as u32),
            _ if !bound.is_empty() => bound[rng.below(bound.len() as u32) as usize],
            _ => rng.below(d.nr_valid() as u32),
        }
    }

    #[test]
    fn pirq_ports_report_deliver_only_while_bound_and_refuse_send() {
        let mut d = EventChannels::new();
        let port = d.bind_pirq(11).unwrap();
        let mut st = EvtchnStatus::default();
        d.status(port).unwrap().write_status(&mut st);
        assert_eq!((st.status, st.vcpu, st.u), (EVTCHNSTAT_PIRQ, 0, [11, 0]));
        assert_eq!(d.pirq_delivery(port, 11), Some(Delivery { port, vcpu: 0 }));
        assert_eq!(d.pirq_delivery(port, 12), None);
        assert_eq!(d.send(port), Err(Errno::EINVAL));
        assert_eq!(d.close(port), Ok(None));
        assert_eq!(d.pirq_delivery(port, 11), None);
    }

    fn check_invariants(doms: &[EventChannels; 2]) {
        for (i, d) in doms.iter().enumerate() {
            let me = IDS[i];
            assert!(d.ports.len() <= NR_PORTS as usize);
            assert_eq!(d.ports.len() % 64, 0);
            assert_eq!(d.status(0), Ok(Channel::FREE), "port 0 is never handed out");
            for (p, c) in d.ports.iter().enumerate() {
                let p = p as u32;
                assert!(c.notify_vcpu < NR_VCPUS);
                match c.state {
                    ChannelState::Free => assert_eq!(c.notify_vcpu, 0),
                    ChannelState::Unbound { .. } | ChannelState::Pirq { .. } => {}
                    ChannelState::Ipi { vcpu } => assert_eq!(c.notify_vcpu, vcpu),
                    ChannelState::Virq { virq, vcpu } => {
                        assert!(virq < NR_VIRQS);
                        assert_eq!(d.virq_port(vcpu, virq), Some(p), "VIRQ table agrees");
                        if virq_is_global(virq) {
                            assert_eq!(vcpu, 0);
                        } else {
                            assert_eq!(c.notify_vcpu, vcpu);
                        }
                    }
                    ChannelState::Interdomain {
                        remote_dom,
                        remote_port,
                    } => {
                        let far = doms[dom_index(remote_dom)].status(remote_port).unwrap();
                        assert_eq!(far.state, interdomain(me, p), "peers point at each other");
                    }
                }
            }
            // Every VIRQ slot names a port bound to exactly that VIRQ on that vCPU, so a port is in
            // at most one slot.
            for (vcpu, table) in d.virqs.iter().enumerate() {
                for (virq, &port) in table.iter().enumerate() {
                    if port != 0 {
                        assert_eq!(
                            d.ports[usize::from(port)].state,
                            ChannelState::Virq {
                                virq: virq as u32,
                                vcpu: vcpu as u32
                            }
                        );
                    }
                }
            }
        }
    }

    fn random_step(rng: &mut Rng, doms: &mut [EventChannels; 2]) {
        let i = rng.below(2) as usize;
        let me = IDS[i];
        let other = IDS[1 - i];
        let vcpu = rng.below(NR_VCPUS + 1);
        match rng.below(10) {
            0 => {
                let remote = if rng.below(2) == 0 { me } else { other };
                let r = doms[i].alloc_unbound(remote);
                assert!(matches!(r, Ok(p) if p != 0) || r == Err(Errno::ENOSPC));
            }
            1 => {
                let virq = rng.below(NR_VIRQS + 1);
                let before = doms[i].virq_port(vcpu, virq);
                match doms[i].bind_virq(virq, vcpu, NR_VCPUS) {
                    Ok(p) => {
                        assert_eq!(before, None);
                        assert_eq!(doms[i].virq_port(vcpu, virq), Some(p));
                    }
                    Err(Errno::EEXIST) => assert!(before.is_some()),
                    Err(e) => assert!(
                        [Errno::EINVAL, Errno::ENOENT, Errno::ENOSPC].contains(&e),
                        "{e:?}"
                    ),
                }
            }
            2 => {
                let r = doms[i].bind_ipi(vcpu, NR_VCPUS);
                assert!(r.is_ok() || vcpu >= NR_VCPUS || r == Err(Errno::ENOSPC));
            }
            3 | 4 => {
                // Bind to a port of the other domain, or sometimes of this one.
                let j = if rng.below(4) == 0 { i } else { 1 - i };
                let rport = pick_port(rng, &doms[j]);
                let waiting = doms[j].is_unbound_for(rport, me).is_ok();
                let result = if i == j {
                    bind_loopback(&mut doms[i], me, rport)
                } else {
                    let [a, b] = doms;
                    let (local, remote) = if i == 0 { (a, b) } else { (b, a) };
                    bind_interdomain(local, me, remote, IDS[j], rport)
                };
                assert_eq!(result.is_ok(), waiting || result == Err(Errno::ENOSPC));
            }
            5 | 6 => {
                let port = pick_port(rng, &doms[i]);
                let was_bound = doms[i]
                    .status(port)
                    .is_ok_and(|c| c.state != ChannelState::Free);
                match doms[i].close(port) {
                    Ok(Some(peer)) => {
                        assert_eq!(peer.local_port, port);
                        doms[dom_index(peer.remote_dom)]
                            .unbind_peer(peer.remote_port, me, port)
                            .unwrap();
                    }
                    Ok(None) => assert!(was_bound),
                    Err(e) => {
                        assert_eq!(e, Errno::EINVAL);
                        assert!(!was_bound);
                    }
                }
            }
            7 => {
                let port = pick_port(rng, &doms[i]);
                let _ = doms[i].bind_vcpu(port, vcpu, NR_VCPUS);
            }
            8 => {
                let port = pick_port(rng, &doms[i]);
                if let Ok(Target::Remote { dom, port: rport }) = doms[i].send(port) {
                    // The far end exists and is connected back.
                    assert!(doms[dom_index(dom)].notify_vcpu(rport).is_ok());
                }
            }
            _ => {
                // Rarely, reset a whole domain.
                if rng.below(40) == 0 {
                    for peer in doms[i].close_all(me).unwrap() {
                        doms[dom_index(peer.remote_dom)]
                            .unbind_peer(peer.remote_port, me, peer.local_port)
                            .unwrap();
                    }
                    assert_eq!(doms[i].iter_bound().count(), 0);
                }
            }
        }
    }

    #[test]
    fn random_sequences_keep_the_tables_consistent() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut doms = [table(), table()];
            for _ in 0..3_000 {
                random_step(&mut rng, &mut doms);
                check_invariants(&doms);
            }
        }
    }
}
