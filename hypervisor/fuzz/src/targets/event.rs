//! `event`: random event-channel operations among three domains — alloc_unbound,
//! bind_interdomain (also loopback), bind_virq, bind_ipi, bind_vcpu, send, raising VIRQs,
//! unmask, close, reset, destroy — done with the recipes of `event.rs`'s module docs, while
//! the guests scribble on their own bitmaps (clearing pending bits, selectors and upcall flags,
//! masking and unmasking by hand). After every operation:
//!
//! - the 2-level bitmaps of every domain equal a reference model of Xen's protocol
//!   (`evtchn_2l_set_pending` / `unmask` / `clear_pending`) run on the same operations, and the
//!   `Notify` results agree with it;
//! - port states are consistent: port 0 stays free; interdomain ports come in pairs pointing
//!   at each other; the VIRQ table and the VIRQ ports agree both ways (global VIRQs on vCPU 0
//!   only); IPI and per-vCPU VIRQ ports notify their own vCPU; every port notifies an existing
//!   vCPU; a closed port is free and not pending;
//! - a destroyed domain is left by every peer (their ports unbound, waiting for it) and can
//!   allocate nothing.

use core::sync::atomic::Ordering::SeqCst;

use guest_abi::errno::Errno;
use guest_abi::event::{EvtchnPort, NR_VIRQS};
use guest_abi::shared_info::{EVTCHN_WORDS, SharedInfo};
use guest_abi::types::DomId;

use crate::engine::{Input, Target};
use crate::event::{
    ChannelState, EventChannels, NR_PORTS, Notify, Target as SendTarget, clear_pending, is_pending,
    set_pending, unmask, virq_is_global,
};

pub const TARGET: Target = Target {
    name: "event",
    about: "event-channel bind/send/unmask/close/reset/destroy sequences and the 2-level bitmaps",
    run,
    seeds: super::no_seeds,
    max_len: 1024,
};

const DOMS: [DomId; 3] = [1, 2, 3];
const MAX_OPS: usize = 64;
/// vCPUs a domain may have in this target (it is given 1 to this many).
const MAX_VCPUS: u32 = 4;

/// The reference model of one domain's shared bitmaps: what Xen's 2-level code would hold.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Bits {
    pending: [u64; EVTCHN_WORDS],
    mask: [u64; EVTCHN_WORDS],
    sel: [u64; MAX_VCPUS as usize],
    upcall: [u8; MAX_VCPUS as usize],
}

impl Bits {
    fn set_pending(&mut self, port: u32, vcpu: usize) -> Notify {
        let (w, b) = ((port / 64) as usize, 1u64 << (port % 64));
        if port >= NR_PORTS || vcpu >= MAX_VCPUS as usize || self.pending[w] & b != 0 {
            return Notify::NOTHING;
        }
        self.pending[w] |= b;
        let kick = self.mask[w] & b == 0 && self.mark(w, vcpu);
        Notify {
            newly_pending: true,
            kick,
        }
    }

    fn mark(&mut self, w: usize, vcpu: usize) -> bool {
        if self.sel[vcpu] & (1 << w) != 0 {
            return false;
        }
        self.sel[vcpu] |= 1 << w;
        let was = self.upcall[vcpu] & 1;
        self.upcall[vcpu] |= 1;
        was == 0
    }

    fn unmask(&mut self, port: u32, vcpu: usize) -> Notify {
        let (w, b) = ((port / 64) as usize, 1u64 << (port % 64));
        if port >= NR_PORTS || vcpu >= MAX_VCPUS as usize {
            return Notify::NOTHING;
        }
        let was_masked = self.mask[w] & b != 0;
        self.mask[w] &= !b;
        let kick = was_masked && self.pending[w] & b != 0 && self.mark(w, vcpu);
        Notify {
            newly_pending: false,
            kick,
        }
    }

    fn clear_pending(&mut self, port: u32) {
        if port < NR_PORTS {
            self.pending[(port / 64) as usize] &= !(1 << (port % 64));
        }
    }
}

struct Dom {
    id: DomId,
    alive: bool,
    vcpus: u32,
    ch: EventChannels,
    shared: Box<SharedInfo>,
    bits: Bits,
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut doms: Vec<Dom> = DOMS
        .iter()
        .map(|&id| Dom {
            id,
            alive: true,
            vcpus: 1 + input.below(u64::from(MAX_VCPUS)) as u32,
            ch: EventChannels::new(),
            shared: Box::new(SharedInfo::new()),
            bits: Bits {
                pending: [0; EVTCHN_WORDS],
                mask: [0; EVTCHN_WORDS],
                sel: [0; MAX_VCPUS as usize],
                upcall: [0; MAX_VCPUS as usize],
            },
        })
        .collect();
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        step(&mut doms, &mut input);
        check(&doms);
    }
    for d in 0..doms.len() {
        if doms[d].alive {
            destroy(&mut doms, d);
            check(&doms);
        }
    }
}

fn dom(input: &mut Input) -> usize {
    input.index(DOMS.len())
}

/// A port: mostly one in use, else a low one, else anything.
fn port(d: &Dom, input: &mut Input) -> EvtchnPort {
    let bound: Vec<EvtchnPort> = d.ch.iter_bound().map(|(p, _)| p).collect();
    match input.below(8) {
        0..=4 if !bound.is_empty() => bound[input.index(bound.len())],
        5 => input.u32(),
        _ => input.below(70) as u32,
    }
}

fn vcpu(input: &mut Input) -> u32 {
    // Sometimes one the domain does not have.
    input.below(u64::from(MAX_VCPUS) + 1) as u32
}

/// Makes `port` of `doms[d]` pending on its notify vCPU, in the table and in the model.
fn deliver(doms: &mut [Dom], d: usize, port: EvtchnPort) {
    let Ok(v) = doms[d].ch.notify_vcpu(port) else {
        panic!("delivery to invalid port {port} of d{}", doms[d].id);
    };
    assert!(
        v < doms[d].vcpus,
        "port {port} of d{} notifies missing vCPU {v}",
        doms[d].id
    );
    let got = set_pending(&doms[d].shared, port, v as usize);
    let want = doms[d].bits.set_pending(port, v as usize);
    assert_eq!(got, want, "set_pending({port}, {v}) on d{}", doms[d].id);
}

fn step(doms: &mut [Dom], input: &mut Input) {
    let d = dom(input);
    let op = input.below(16);
    if !doms[d].alive {
        return;
    }
    let id = doms[d].id;
    match op {
        0 => {
            let remote = if input.below(8) == 0 {
                input.u16()
            } else {
                DOMS[dom(input)]
            };
            let _ = doms[d].ch.alloc_unbound(remote);
        }
        1 | 2 => {
            // EVTCHNOP_bind_interdomain, as the module docs prescribe.
            let r = dom(input);
            if !doms[r].alive {
                return;
            }
            let rport = port(&doms[r], input);
            let rid = doms[r].id;
            let result: Result<EvtchnPort, Errno> = (|| {
                let lport = doms[d].ch.get_free_port()?;
                doms[r].ch.is_unbound_for(rport, id)?;
                doms[d].ch.connect(lport, rid, rport)?;
                if r == d {
                    doms[d].ch.connect(rport, id, lport)?;
                } else {
                    doms[r].ch.connect(rport, id, lport)?;
                }
                Ok(lport)
            })();
            if let Ok(lport) = result {
                deliver(doms, d, lport);
            }
        }
        3 => {
            let virq = if input.below(4) == 0 {
                input.u32() % 40
            } else {
                input.below(u64::from(NR_VIRQS)) as u32
            };
            let v = vcpu(input);
            let n = doms[d].vcpus;
            let _ = doms[d].ch.bind_virq(virq, v, n);
        }
        4 => {
            let v = vcpu(input);
            let n = doms[d].vcpus;
            let _ = doms[d].ch.bind_ipi(v, n);
        }
        5 => {
            let p = port(&doms[d], input);
            let v = vcpu(input);
            let n = doms[d].vcpus;
            let _ = doms[d].ch.bind_vcpu(p, v, n);
        }
        6 | 7 => {
            // EVTCHNOP_send.
            let p = port(&doms[d], input);
            match doms[d].ch.send(p) {
                Ok(SendTarget::Local(delivery)) => {
                    assert_eq!(delivery.port, p, "an IPI delivered to another port");
                    deliver(doms, d, p);
                }
                Ok(SendTarget::Remote { dom, port }) => {
                    let r = doms
                        .iter()
                        .position(|x| x.id == dom && x.alive)
                        .unwrap_or_else(|| panic!("d{id} port {p} sends to dead d{dom}"));
                    deliver(doms, r, port);
                }
                Ok(SendTarget::Dropped) | Err(_) => {}
            }
        }
        8 => {
            // The hypervisor raises a VIRQ.
            let virq = input.below(u64::from(NR_VIRQS)) as u32;
            let v = input.below(u64::from(doms[d].vcpus)) as u32;
            if let Some(delivery) = doms[d].ch.virq_delivery(v, virq) {
                let got = set_pending(&doms[d].shared, delivery.port, delivery.vcpu as usize);
                let want = doms[d]
                    .bits
                    .set_pending(delivery.port, delivery.vcpu as usize);
                assert_eq!(got, want, "VIRQ {virq} delivery");
                assert!(
                    delivery.vcpu < doms[d].vcpus,
                    "VIRQ {virq} to a missing vCPU"
                );
            }
        }
        9 => {
            // EVTCHNOP_unmask.
            let p = port(&doms[d], input);
            if let Ok(v) = doms[d].ch.notify_vcpu(p) {
                let got = unmask(&doms[d].shared, p, v as usize);
                let want = doms[d].bits.unmask(p, v as usize);
                assert_eq!(got, want, "unmask({p}, {v}) on d{id}");
            }
        }
        10 | 11 => {
            let p = port(&doms[d], input);
            close(doms, d, p);
        }
        12 | 13 => guest_scribbles(&mut doms[d], input),
        14 => {
            // EVTCHNOP_reset: pending bits of the bound ports cleared first, then every port
            // closed and the peers unbound.
            let bound: Vec<EvtchnPort> = doms[d].ch.iter_bound().map(|(p, _)| p).collect();
            if let Ok(peers) = doms[d].ch.close_all(id) {
                for p in bound {
                    clear_pending(&doms[d].shared, p);
                    doms[d].bits.clear_pending(p);
                }
                for peer in peers {
                    unbind_peer(doms, id, peer);
                }
            }
        }
        _ => {
            if input.below(4) == 0 {
                destroy(doms, d);
            }
        }
    }
}

fn unbind_peer(doms: &mut [Dom], closer: DomId, peer: crate::event::Peer) {
    let r = doms
        .iter()
        .position(|x| x.id == peer.remote_dom && x.alive)
        .unwrap_or_else(|| panic!("d{closer}'s peer d{} is gone", peer.remote_dom));
    assert_eq!(
        doms[r]
            .ch
            .unbind_peer(peer.remote_port, closer, peer.local_port),
        Ok(()),
        "unbinding the far end {peer:?} of d{closer}"
    );
}

/// EVTCHNOP_close, as the module docs prescribe.
fn close(doms: &mut [Dom], d: usize, p: EvtchnPort) {
    let id = doms[d].id;
    let Ok(peer) = doms[d].ch.close(p) else {
        return;
    };
    clear_pending(&doms[d].shared, p);
    doms[d].bits.clear_pending(p);
    if let Some(peer) = peer {
        if peer.remote_dom == id {
            // A loopback channel: the other end is here.
            assert_eq!(doms[d].ch.unbind_peer(peer.remote_port, id, p), Ok(()));
        } else {
            unbind_peer(doms, id, peer);
        }
    }
    let c = doms[d].ch.status(p).expect("a closed port stays valid");
    assert_eq!(c.state, ChannelState::Free, "port {p} not free after close");
    assert_eq!(c.notify_vcpu, 0, "closed port {p} keeps a notify vCPU");
    assert!(
        !is_pending(&doms[d].shared, p),
        "closed port {p} still pending"
    );
}

/// Domain destruction: the table is destroyed and the peers unbound.
fn destroy(doms: &mut [Dom], d: usize) {
    let id = doms[d].id;
    let peers = doms[d].ch.destroy(id).expect("destroy");
    for peer in peers {
        unbind_peer(doms, id, peer);
    }
    assert_eq!(
        doms[d].ch.get_free_port(),
        Err(Errno::EINVAL),
        "a dying domain allocated a port"
    );
    doms[d].alive = false;
    for other in doms.iter().filter(|x| x.alive) {
        for (p, c) in other.ch.iter_bound() {
            if let ChannelState::Interdomain { remote_dom, .. } = c.state {
                assert_ne!(
                    remote_dom, id,
                    "d{} port {p} still connected to dead d{id}",
                    other.id
                );
            }
        }
    }
}

/// What a guest may do to its own shared page: anything, done here to both the page and the
/// model, the way a guest's event loop does it (clear the upcall flag, the selector, pending
/// bits) or a confused guest would (mask, unmask or set bits by hand).
fn guest_scribbles(d: &mut Dom, input: &mut Input) {
    let w = input.index(EVTCHN_WORDS);
    let bits = if input.bool() {
        1u64 << input.below(64)
    } else {
        input.u64()
    };
    let v = input.index(MAX_VCPUS as usize);
    let info = &d.shared.vcpu_info[v];
    match input.below(7) {
        0 => {
            d.shared.evtchn_pending[w].fetch_and(!bits, SeqCst);
            d.bits.pending[w] &= !bits;
        }
        1 => {
            d.shared.evtchn_mask[w].fetch_or(bits, SeqCst);
            d.bits.mask[w] |= bits;
        }
        2 => {
            d.shared.evtchn_mask[w].fetch_and(!bits, SeqCst);
            d.bits.mask[w] &= !bits;
        }
        3 => {
            info.evtchn_pending_sel.fetch_and(!bits, SeqCst);
            d.bits.sel[v] &= !bits;
        }
        4 => {
            info.evtchn_upcall_pending.store(0, SeqCst);
            d.bits.upcall[v] = 0;
        }
        5 => {
            d.shared.evtchn_pending[w].fetch_or(bits, SeqCst);
            d.bits.pending[w] |= bits;
        }
        _ => {
            // The guest's event loop: take the upcall, the selector and the pending words.
            info.evtchn_upcall_pending.store(0, SeqCst);
            d.bits.upcall[v] = 0;
            let sel = info.evtchn_pending_sel.swap(0, SeqCst);
            assert_eq!(sel, d.bits.sel[v], "selector of vCPU {v} of d{}", d.id);
            d.bits.sel[v] = 0;
            for word in 0..EVTCHN_WORDS {
                if sel & (1 << word) != 0 {
                    let handled = d.bits.pending[word] & !d.bits.mask[word];
                    d.shared.evtchn_pending[word].fetch_and(!handled, SeqCst);
                    d.bits.pending[word] &= !handled;
                }
            }
        }
    }
}

fn check(doms: &[Dom]) {
    for d in doms {
        // The bitmaps equal the model.
        for w in 0..EVTCHN_WORDS {
            assert_eq!(
                d.shared.evtchn_pending[w].load(SeqCst),
                d.bits.pending[w],
                "d{} pending[{w}]",
                d.id
            );
            assert_eq!(
                d.shared.evtchn_mask[w].load(SeqCst),
                d.bits.mask[w],
                "d{} mask[{w}]",
                d.id
            );
        }
        for v in 0..MAX_VCPUS as usize {
            let info = &d.shared.vcpu_info[v];
            assert_eq!(
                info.evtchn_pending_sel.load(SeqCst),
                d.bits.sel[v],
                "d{} sel of vCPU {v}",
                d.id
            );
            assert_eq!(
                info.evtchn_upcall_pending.load(SeqCst),
                d.bits.upcall[v],
                "d{} upcall of vCPU {v}",
                d.id
            );
            if v >= d.vcpus as usize {
                assert_eq!(
                    d.bits.sel[v], 0,
                    "d{}: a missing vCPU {v} was signalled",
                    d.id
                );
            }
        }
        if !d.alive {
            assert_eq!(d.ch.iter_bound().count(), 0, "dead d{} keeps ports", d.id);
            continue;
        }
        let port0 = d.ch.status(0).expect("port 0 is valid");
        assert_eq!(port0.state, ChannelState::Free, "d{}: port 0 bound", d.id);
        for (p, c) in d.ch.iter_bound() {
            assert!(
                p != 0 && p < NR_PORTS && d.ch.is_valid(p),
                "d{}: port {p} bound",
                d.id
            );
            assert!(
                c.notify_vcpu < d.vcpus,
                "d{} port {p} notifies missing vCPU {}",
                d.id,
                c.notify_vcpu
            );
            match c.state {
                ChannelState::Free => panic!("iter_bound yielded free port {p}"),
                // The fuzzer binds no PIRQ (the hypervisor's PIRQ table checks them).
                ChannelState::Unbound { .. } | ChannelState::Pirq { .. } => {}
                ChannelState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    let r = doms
                        .iter()
                        .find(|x| x.id == remote_dom && x.alive)
                        .unwrap_or_else(|| {
                            panic!("d{} port {p} connected to dead d{remote_dom}", d.id)
                        });
                    let far = r.ch.status(remote_port).expect("far end valid");
                    assert_eq!(
                        far.state,
                        ChannelState::Interdomain {
                            remote_dom: d.id,
                            remote_port: p
                        },
                        "d{} port {p} -> d{remote_dom} port {remote_port} is one-sided",
                        d.id
                    );
                }
                ChannelState::Virq { virq, vcpu } => {
                    assert!(virq < NR_VIRQS, "VIRQ {virq}");
                    assert!(
                        !virq_is_global(virq) || vcpu == 0,
                        "global VIRQ {virq} on vCPU {vcpu}"
                    );
                    if !virq_is_global(virq) {
                        assert_eq!(
                            c.notify_vcpu, vcpu,
                            "per-vCPU VIRQ {virq} notifies another vCPU"
                        );
                    }
                    assert_eq!(
                        d.ch.virq_port(vcpu, virq),
                        Some(p),
                        "VIRQ table lost port {p}"
                    );
                }
                ChannelState::Ipi { vcpu } => {
                    assert_eq!(c.notify_vcpu, vcpu, "IPI port {p} notifies another vCPU");
                }
            }
        }
        for v in 0..MAX_VCPUS {
            for virq in 0..NR_VIRQS {
                if let Some(p) = d.ch.virq_port(v, virq) {
                    assert_eq!(
                        d.ch.status(p).map(|c| c.state),
                        Ok(ChannelState::Virq { virq, vcpu: v }),
                        "d{}: VIRQ table says VIRQ {virq} of vCPU {v} is port {p}",
                        d.id
                    );
                }
            }
        }
    }
}
