//! `event_channel_op(cmd, arg)`: the hypercall side of `crate::event`.
//!
//! Each command copies its argument structure in, lets the port table decide, applies
//! the bit protocol to the domain's `shared_info`, and copies the OUT fields back. The
//! calling domain is out of the domain map while its trap is handled, so the other end of
//! an inter-domain channel is looked up in `others`; naming a domain that does not exist
//! gives `ESRCH`. Only a privileged domain (dom0) may allocate a port in another domain.

use core::mem::offset_of;

use guest_abi::errno::Errno;
use guest_abi::event::{self as ev, EvtchnPort};
use guest_abi::types::{DOMID_SELF, DomId};

use super::aspace;
use super::mem::Pod;
use crate::domain::Domain;
use crate::event::{self, Target};

type Others = alloc::collections::BTreeMap<DomId, Domain>;

/// Resolves `DOMID_SELF`.
fn resolve(dom: &Domain, named: DomId) -> DomId {
    if named == DOMID_SELF { dom.id } else { named }
}

/// Checks that `named` is the caller or an existing domain.
fn existing(dom: &Domain, others: &Others, named: DomId) -> Result<DomId, Errno> {
    let id = resolve(dom, named);
    if id == dom.id || others.contains_key(&id) {
        Ok(id)
    } else {
        Err(Errno::ESRCH)
    }
}

/// Marks `port` of domain `id` (the caller or one of `others`) pending for its notify vCPU.
fn notify(dom: &mut Domain, others: &mut Others, id: DomId, port: EvtchnPort) -> Result<(), Errno> {
    let target = if id == dom.id {
        dom
    } else {
        others.get_mut(&id).ok_or(Errno::ESRCH)?
    };
    let vcpu = target.events.notify_vcpu(port)?;
    let _ = event::set_pending(target.shared(), port, vcpu as usize);
    Ok(())
}

/// Heap one growth of a port table takes, at most (a group of ports and a VIRQ row).
const PORT_GROUP_BYTES: u64 = 4096;

pub fn dispatch(dom: &mut Domain, others: &mut Others, cmd: u64, arg: u64) -> Result<u64, Errno> {
    let space = aspace(dom);
    let nr_vcpus = dom.vcpus.len() as u32;
    let port_out =
        |offset: usize, port: EvtchnPort| space.write(arg + offset as u64, &port.to_le_bytes());
    let cmd = u32::try_from(cmd).map_err(|_| Errno::ENOSYS)?;
    // The commands that may grow the port table do so only while the machine can spare it.
    if matches!(
        cmd,
        ev::EVTCHNOP_BIND_VIRQ
            | ev::EVTCHNOP_BIND_IPI
            | ev::EVTCHNOP_ALLOC_UNBOUND
            | ev::EVTCHNOP_BIND_INTERDOMAIN
    ) && !crate::mm::heap::headroom(PORT_GROUP_BYTES)
    {
        return Err(Errno::ENOMEM);
    }
    match cmd {
        ev::EVTCHNOP_BIND_VIRQ => {
            let a: ev::EvtchnBindVirq = space.read_pod(arg)?;
            let port = dom.events.bind_virq(a.virq, a.vcpu, nr_vcpus)?;
            port_out(offset_of!(ev::EvtchnBindVirq, port), port)?;
        }
        ev::EVTCHNOP_BIND_IPI => {
            let a: ev::EvtchnBindIpi = space.read_pod(arg)?;
            let port = dom.events.bind_ipi(a.vcpu, nr_vcpus)?;
            port_out(offset_of!(ev::EvtchnBindIpi, port), port)?;
        }
        ev::EVTCHNOP_ALLOC_UNBOUND => {
            let a: ev::EvtchnAllocUnbound = space.read_pod(arg)?;
            let owner = existing(dom, others, a.dom)?;
            let remote = existing(dom, others, a.remote_dom)?;
            let port = if owner == dom.id {
                dom.events.alloc_unbound(remote)?
            } else if dom.privileged {
                others
                    .get_mut(&owner)
                    .ok_or(Errno::ESRCH)?
                    .events
                    .alloc_unbound(remote)?
            } else {
                return Err(Errno::EPERM);
            };
            port_out(offset_of!(ev::EvtchnAllocUnbound, port), port)?;
        }
        ev::EVTCHNOP_BIND_INTERDOMAIN => {
            let a: ev::EvtchnBindInterdomain = space.read_pod(arg)?;
            let remote = existing(dom, others, a.remote_dom)?;
            let local = dom.events.get_free_port()?;
            if remote == dom.id {
                dom.events.is_unbound_for(a.remote_port, dom.id)?;
                dom.events.connect(local, remote, a.remote_port)?;
                dom.events.connect(a.remote_port, dom.id, local)?;
            } else {
                let peer = others.get_mut(&remote).ok_or(Errno::ESRCH)?;
                peer.events.is_unbound_for(a.remote_port, dom.id)?;
                dom.events.connect(local, remote, a.remote_port)?;
                if let Err(e) = peer.events.connect(a.remote_port, dom.id, local) {
                    let _ = dom.events.close(local);
                    return Err(e);
                }
            }
            // Xen marks the new local end pending: events sent while the other end was
            // unbound were dropped.
            notify(dom, others, dom.id, local)?;
            port_out(offset_of!(ev::EvtchnBindInterdomain, local_port), local)?;
        }
        ev::EVTCHNOP_SEND => {
            let a: ev::EvtchnSend = space.read_pod(arg)?;
            match dom.events.send(a.port)? {
                Target::Local(d) => {
                    let _ = event::set_pending(dom.shared(), d.port, d.vcpu as usize);
                }
                Target::Remote { dom: target, port } => notify(dom, others, target, port)?,
                Target::Dropped => {}
            }
        }
        ev::EVTCHNOP_CLOSE => {
            let a: ev::EvtchnClose = space.read_pod(arg)?;
            let peer = dom.events.close(a.port)?;
            event::clear_pending(dom.shared(), a.port);
            if let Some(p) = peer {
                if p.remote_dom == dom.id {
                    dom.events
                        .unbind_peer(p.remote_port, dom.id, p.local_port)?;
                } else if let Some(other) = others.get_mut(&p.remote_dom) {
                    other
                        .events
                        .unbind_peer(p.remote_port, dom.id, p.local_port)?;
                }
            }
        }
        ev::EVTCHNOP_STATUS => {
            let a: ev::EvtchnStatus = space.read_pod(arg)?;
            let owner = existing(dom, others, a.dom)?;
            let channel = if owner == dom.id {
                dom.events.status(a.port)?
            } else if dom.privileged {
                others
                    .get(&owner)
                    .ok_or(Errno::ESRCH)?
                    .events
                    .status(a.port)?
            } else {
                return Err(Errno::EPERM);
            };
            let mut out = a;
            channel.write_status(&mut out);
            space.write(
                arg + offset_of!(ev::EvtchnStatus, status) as u64,
                &out.status.to_le_bytes(),
            )?;
            space.write(
                arg + offset_of!(ev::EvtchnStatus, vcpu) as u64,
                &out.vcpu.to_le_bytes(),
            )?;
            let mut u = [0u8; 8];
            u[..4].copy_from_slice(&out.u[0].to_le_bytes());
            u[4..].copy_from_slice(&out.u[1].to_le_bytes());
            space.write(arg + offset_of!(ev::EvtchnStatus, u) as u64, &u)?;
        }
        ev::EVTCHNOP_UNMASK => {
            let a: ev::EvtchnUnmask = space.read_pod(arg)?;
            let vcpu = dom.events.notify_vcpu(a.port)?;
            let _ = event::unmask(dom.shared(), a.port, vcpu as usize);
        }
        ev::EVTCHNOP_BIND_VCPU => {
            let a: ev::EvtchnBindVcpu = space.read_pod(arg)?;
            dom.events.bind_vcpu(a.port, a.vcpu, nr_vcpus)?;
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

// SAFETY: this and the impls below are repr(C) structures of integers from guest-abi,
// only ever filled from guest bytes.
unsafe impl Pod for ev::EvtchnBindVirq {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnBindIpi {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnAllocUnbound {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnBindInterdomain {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnSend {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnClose {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnStatus {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnUnmask {}
// SAFETY: as above.
unsafe impl Pod for ev::EvtchnBindVcpu {}
