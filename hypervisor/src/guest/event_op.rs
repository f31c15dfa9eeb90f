//! `event_channel_op(cmd, arg)`: the hypercall side of `crate::event`.
//!
//! Each command copies its argument structure in, lets the port table decide, applies
//! the bit protocol to the domain's `shared_info`, and copies the OUT fields back. The
//! other end of an inter-domain channel is reached by id through the context (naming a
//! domain that does not exist gives `ESRCH`). Only the control domain (dom0) may allocate a
//! port in, or ask the status of a port of, another domain: that takes its token.

use core::mem::offset_of;

use guest_abi::errno::Errno;
use guest_abi::event::{self as ev, EvtchnPort};
use guest_abi::types::DomId;

use super::context::{Hc, HcResult, Ret};
use super::mem::GuestPtr;
use crate::domain::Domain;
use crate::event::{self, Target};

/// Checks that `named` is the caller or an existing domain, and resolves `DOMID_SELF`.
fn existing(cx: &mut Hc, named: DomId) -> Result<DomId, Errno> {
    let id = cx.resolve(named);
    if cx.exists(id) {
        Ok(id)
    } else {
        Err(Errno::ESRCH)
    }
}

/// Marks `port` of `dom` pending for its notify vCPU.
fn notify(dom: &mut Domain, port: EvtchnPort) -> Result<(), Errno> {
    let vcpu = dom.events.notify_vcpu(port)?;
    let n = event::set_pending_to(dom.shared(), port, dom.vcpu_info(vcpu as usize));
    super::notified(dom.id, vcpu as usize, n);
    Ok(())
}

/// Heap one growth of a port table takes, at most (a group of ports and a VIRQ row).
const PORT_GROUP_BYTES: u64 = 4096;

/// Writes one OUT port field of the argument back.
fn port_out<T>(
    cx: &mut Hc,
    arg: GuestPtr<T>,
    offset: usize,
    port: EvtchnPort,
) -> Result<(), Errno> {
    cx.space().write(arg.field::<EvtchnPort>(offset), &port)
}

pub fn dispatch(cx: &mut Hc) -> HcResult {
    let cmd = u32::try_from(cx.arg(0)).map_err(|_| Errno::ENOSYS)?;
    let space = cx.space();
    let me = cx.id();
    let nr_vcpus = cx.me_ref().vcpus.len() as u32;
    // The commands that may grow the port table do so only while the machine can spare it.
    if matches!(
        cmd,
        ev::EVTCHNOP_BIND_VIRQ
            | ev::EVTCHNOP_BIND_PIRQ
            | ev::EVTCHNOP_BIND_IPI
            | ev::EVTCHNOP_ALLOC_UNBOUND
            | ev::EVTCHNOP_BIND_INTERDOMAIN
    ) && !crate::mm::heap::headroom(PORT_GROUP_BYTES)
    {
        return Err(Errno::ENOMEM);
    }
    match cmd {
        ev::EVTCHNOP_BIND_VIRQ => {
            let arg = cx.ptr::<ev::EvtchnBindVirq>(1);
            let a = space.read(arg)?;
            let port = cx.me().events.bind_virq(a.virq, a.vcpu, nr_vcpus)?;
            port_out(cx, arg, offset_of!(ev::EvtchnBindVirq, port), port)?;
        }
        ev::EVTCHNOP_BIND_PIRQ => {
            // The hardware domain's alone (`guest::physdev`).
            cx.privileged()?;
            let arg = cx.ptr::<ev::EvtchnBindPirq>(1);
            let a = space.read(arg)?;
            let dom = cx.me();
            dom.pirqs.bindable(a.pirq)?;
            let port = dom.events.bind_pirq(a.pirq)?;
            let pin = dom.pirqs.bind(a.pirq, port)?;
            super::physdev::apply(pin);
            port_out(cx, arg, offset_of!(ev::EvtchnBindPirq, port), port)?;
        }
        ev::EVTCHNOP_BIND_IPI => {
            let arg = cx.ptr::<ev::EvtchnBindIpi>(1);
            let a = space.read(arg)?;
            let port = cx.me().events.bind_ipi(a.vcpu, nr_vcpus)?;
            port_out(cx, arg, offset_of!(ev::EvtchnBindIpi, port), port)?;
        }
        ev::EVTCHNOP_ALLOC_UNBOUND => {
            let arg = cx.ptr::<ev::EvtchnAllocUnbound>(1);
            let a = space.read(arg)?;
            let owner = existing(cx, a.dom)?;
            let remote = existing(cx, a.remote_dom)?;
            let dom = if owner == me {
                cx.me()
            } else {
                let token = cx.privileged()?;
                cx.foreign(owner, &token)?
            };
            let port = dom.events.alloc_unbound(remote)?;
            port_out(cx, arg, offset_of!(ev::EvtchnAllocUnbound, port), port)?;
        }
        ev::EVTCHNOP_BIND_INTERDOMAIN => {
            let arg = cx.ptr::<ev::EvtchnBindInterdomain>(1);
            let a = space.read(arg)?;
            let remote = existing(cx, a.remote_dom)?;
            let local = cx.me().events.get_free_port()?;
            if remote == me {
                let dom = cx.me();
                dom.events.is_unbound_for(a.remote_port, me)?;
                dom.events.connect(local, remote, a.remote_port)?;
                dom.events.connect(a.remote_port, me, local)?;
            } else {
                let (dom, peer) = cx.pair(remote)?;
                peer.events.is_unbound_for(a.remote_port, me)?;
                dom.events.connect(local, remote, a.remote_port)?;
                if let Err(e) = peer.events.connect(a.remote_port, me, local) {
                    let _ = dom.events.close(local);
                    return Err(e);
                }
            }
            // Xen marks the new local end pending: events sent while the other end was
            // unbound were dropped.
            notify(cx.me(), local)?;
            port_out(
                cx,
                arg,
                offset_of!(ev::EvtchnBindInterdomain, local_port),
                local,
            )?;
        }
        ev::EVTCHNOP_SEND => {
            let a = space.read(cx.ptr::<ev::EvtchnSend>(1))?;
            match cx.me().events.send(a.port)? {
                Target::Local(d) => {
                    let dom = cx.me();
                    let n =
                        event::set_pending_to(dom.shared(), d.port, dom.vcpu_info(d.vcpu as usize));
                    super::notified(dom.id, d.vcpu as usize, n);
                }
                Target::Remote { dom: target, port } => notify(cx.domain(target)?, port)?,
                Target::Dropped => {}
            }
        }
        ev::EVTCHNOP_CLOSE => {
            let a = space.read(cx.ptr::<ev::EvtchnClose>(1))?;
            let dom = cx.me();
            let was = dom.events.status(a.port).map(|c| c.state);
            let peer = dom.events.close(a.port)?;
            event::clear_pending(dom.shared(), a.port);
            if let Ok(event::ChannelState::Pirq { pirq }) = was {
                // Its pin is masked until the PIRQ is bound again.
                super::physdev::apply(dom.pirqs.unbind(pirq));
            }
            if let Some(p) = peer {
                if p.remote_dom == me {
                    cx.me()
                        .events
                        .unbind_peer(p.remote_port, me, p.local_port)?;
                } else if let Ok(other) = cx.domain(p.remote_dom) {
                    other.events.unbind_peer(p.remote_port, me, p.local_port)?;
                }
            }
        }
        ev::EVTCHNOP_STATUS => {
            let arg = cx.ptr::<ev::EvtchnStatus>(1);
            let a = space.read(arg)?;
            let owner = existing(cx, a.dom)?;
            let dom = if owner == me {
                cx.me_ref()
            } else {
                let token = cx.privileged()?;
                cx.foreign_ref(owner, &token)?
            };
            let channel = dom.events.status(a.port)?;
            let mut out = a;
            channel.write_status(&mut out);
            space.write(arg.field(offset_of!(ev::EvtchnStatus, status)), &out.status)?;
            space.write(arg.field(offset_of!(ev::EvtchnStatus, vcpu)), &out.vcpu)?;
            space.write(arg.field(offset_of!(ev::EvtchnStatus, u)), &out.u)?;
        }
        ev::EVTCHNOP_UNMASK => {
            let a = space.read(cx.ptr::<ev::EvtchnUnmask>(1))?;
            let dom = cx.me();
            let vcpu = dom.events.notify_vcpu(a.port)?;
            let n = event::unmask_to(dom.shared(), a.port, dom.vcpu_info(vcpu as usize));
            super::notified(dom.id, vcpu as usize, n);
        }
        ev::EVTCHNOP_BIND_VCPU => {
            let a = space.read(cx.ptr::<ev::EvtchnBindVcpu>(1))?;
            cx.me().events.bind_vcpu(a.port, a.vcpu, nr_vcpus)?;
        }
        // Linux's `xen_setup_timer` asks for the timer's priority whatever the ABI. The
        // 2-level ABI has none: the port must be one of the caller's in use and the
        // priority a FIFO one (`EINVAL` otherwise, as Xen), and nothing changes. Xen answers
        // `ENOSYS` here under the 2-level ABI; Xenia has no FIFO ABI to fall back from, so
        // it accepts the request rather than report a missing call.
        ev::EVTCHNOP_SET_PRIORITY => {
            let a = space.read(cx.ptr::<ev::EvtchnSetPriority>(1))?;
            if a.priority > ev::EVTCHN_FIFO_PRIORITY_MIN {
                return Err(Errno::EINVAL);
            }
            cx.me().events.status(a.port).map_err(|_| Errno::EINVAL)?;
        }
        // The FIFO ABI is not built. Xen built without `CONFIG_EVTCHN_FIFO` reads the
        // argument and answers `EOPNOTSUPP`; so does Xenia, rather than `ENOSYS`: the call
        // exists, the feature is off. Linux's `xen_init_IRQ` falls back to the 2-level ABI on
        // any error ("xen:events: Using 2-level ABI"). No guest frame is taken or written.
        ev::EVTCHNOP_INIT_CONTROL => {
            space.read(cx.ptr::<ev::EvtchnInitControl>(1))?;
            return Err(Errno::EOPNOTSUPP);
        }
        ev::EVTCHNOP_EXPAND_ARRAY => {
            space.read(cx.ptr::<ev::EvtchnExpandArray>(1))?;
            return Err(Errno::EOPNOTSUPP);
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(Ret::Value(0))
}
