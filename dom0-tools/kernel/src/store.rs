//! xenstore, served inside dom0's kernel (DESIGN §11): the store itself is
//! `xenia_xenstore` (safe, host-tested); this module connects it to the world.
//!
//! **Domains.** A domU `xl create` hands over ([`introduce`], from `backend::adopt`) has a
//! ring page in its own memory and an unbound channel for dom0 (`start_info.store_mfn`,
//! `store_evtchn`, made by the builder). The kernel binds the channel and, like the console
//! backend, reads and writes the ring through Xenia's frame-copy domctls: nothing of the
//! domU is mapped. A ring is looked at when its channel fired, or when replies or watch
//! events wait for it and its response ring was not full at the last look (the domain
//! notifies the channel when it has read).
//!
//! **The toolstack's nodes.** At introduction the kernel writes what libxl writes for a PV
//! domain (`xenia_xenstore::NewDomain`): its home `/local/domain/<id>` (dom0's, readable by
//! the domain) with `vm`, `name`, `domid`, `memory/{target,static-max,videoram}`,
//! `cpu/<n>/availability`, `store/*`, `console/*`, `control/*` and the domain's own `data`,
//! `device/suspend/event-channel`, `control/shutdown`, ..., and `/vm/<uuid>`. [`release`]
//! removes the home, `/vm/<uuid>` and `/local/domain/0/backend/*/<id>` at destroy. All of it
//! is in-memory writes: nothing waits. [`apply`] makes toolstack operations (a restarted
//! domain's disks).
//!
//! **Fair service.** Each look at a ring handles at most `ring::REQUESTS_PER_SERVICE`
//! requests, and every ring is looked at in turn; a ring with requests left is looked at
//! again at the next turn ([`busy`] keeps dom0 from sleeping meanwhile). A domain flooding
//! its ring gets its share and no more.
//!
//! **dom0's programs** talk to the store through `/dev/xen/xenbus` (Linux's device: write
//! whole `xsd_sockmsg` requests, read replies and watch events), one connection per open
//! descriptor, as dom0.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use dom0_tools::disk::XsOp;
use dom0_tools::hypervisor::Hypervisor;
use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::types::{DomId, Mfn};
use guest_abi::xenstore::XenstoreDomainInterface as Iface;
use spin::Mutex;
use xenia_guest_rt::events;
use xenia_xenstore::{ConnId, DOM0, NewDomain, Perm, Quota, Store, home_path, ring};

use crate::direct::xen;
use crate::tprintln;

/// What the kernel keeps, per domain ring, to decide when to look at it.
struct Look {
    /// Events seen on dom0's port when last serviced.
    seen: u32,
    /// Output was left over because its response ring was full.
    waiting: bool,
    /// Requests were left in its ring by the per-turn budget.
    more: bool,
}

/// The store and, per domain ring, what the kernel keeps to decide when to look at it.
struct State {
    store: Store,
    /// By domain: `service` looks one up for every ring it passes, so a creation among n
    /// live domains must not cost n² comparisons per request.
    looks: BTreeMap<DomId, Look>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock();
    let state = guard.get_or_insert_with(|| State {
        store: Store::new(Quota::DEFAULT),
        looks: BTreeMap::new(),
    });
    f(state)
}

/// What [`introduce`] needs to know of a domain besides its id and store ring.
pub struct DomainFacts<'a> {
    /// Its name.
    pub name: &'a str,
    /// vCPUs online at start, and at most.
    pub vcpus: u32,
    /// See `vcpus`.
    pub max_vcpus: u32,
    /// `memory` and `maxmem`, in KiB.
    pub target_kib: u64,
    /// See `target_kib`.
    pub static_max_kib: u64,
    /// Its console ring (machine frame, the domain's end of the channel), if any.
    pub console: Option<(u64, u32)>,
}

/// Introduces domain `dom` with its ring (`mfn`, the domain's port `remote`) and writes
/// its toolstack nodes as libxl does (`xenia_xenstore::NewDomain`: home, `/vm/<uuid>`,
/// memory, cpu, control, console, ...). Errors are negative errnos.
pub fn introduce(dom: DomId, mfn: u64, remote: u32, facts: &DomainFacts) -> Result<(), i64> {
    // A connection left from an earlier domain of this id goes first: its ring, port and
    // watches must not become the new domain's.
    release(dom);
    let port = calls::evtchn_bind_interdomain(dom, remote).map_err(|e| -(e as i64))?;
    let uuid = xen().domain_info(dom).map(|i| i.handle).unwrap_or_default();
    let start_time = xenia_guest_rt::time::now_ns() / 1_000_000_000;
    with(|s| {
        let st = &mut s.store;
        st.introduce(dom, mfn, remote);
        st.set_local_port(dom, port);
        let made = st.write_domain(&NewDomain {
            dom,
            name: facts.name,
            uuid,
            vcpus: facts.vcpus,
            max_vcpus: facts.max_vcpus,
            target_kib: facts.target_kib,
            static_max_kib: facts.static_max_kib,
            store: (mfn, remote),
            console: facts.console,
            start_time,
        });
        if let Err(e) = made {
            tprintln!("dom0: xenstore: cannot write domain {dom}'s nodes ({e})");
        }
        s.looks.insert(
            dom,
            Look {
                seen: u32::MAX,
                waiting: false,
                more: false,
            },
        );
    });
    service();
    Ok(())
}

/// Writes domain `dom`'s `name` nodes (its home's and its `/vm/<uuid>`'s), as libxl's
/// rename does (nothing when it has no home: a domain introduced without a store ring).
pub fn set_name(dom: DomId, name: &str) {
    let home = home_path(dom);
    with(|s| {
        if s.store.read(DOM0, &home).is_ok() {
            let _ = s
                .store
                .write(DOM0, &format!("{home}/name"), name.as_bytes());
            if let Ok(vm) = s.store.read(DOM0, &format!("{home}/vm"))
                && let Ok(vm) = core::str::from_utf8(&vm)
            {
                let _ = s.store.write(DOM0, &format!("{vm}/name"), name.as_bytes());
            }
        }
    });
    // A watch on the name may have fired.
    service();
}

/// Forgets domain `dom`: its connection, dom0's end of its channel, its home, its
/// `/vm/<uuid>` and its backends' directories.
pub fn release(dom: DomId) {
    let port = with(|s| {
        s.looks.remove(&dom);
        // The toolstack's index of who uses which disk loses this domain's entries.
        let mut ops = dom0_tools::disk::index_release_ops(dom, &mut AsDom0(&mut s.store));
        // And of which vif holds which MAC.
        ops.extend(dom0_tools::vif::index_release_ops(
            dom,
            &mut AsDom0(&mut s.store),
        ));
        for op in ops {
            if let XsOp::Rm(p) = op {
                let _ = s.store.rm(DOM0, &p);
            }
        }
        s.store.remove_domain(dom);
        s.store.release(dom)
    });
    if let Some(p) = port {
        let _ = calls::evtchn_close(p);
    }
}

/// The store read as dom0, for `dom0_tools::disk`.
struct AsDom0<'a>(&'a mut Store);

impl dom0_tools::disk::ReadStore for AsDom0<'_> {
    fn directory(&mut self, path: &str) -> Option<Vec<alloc::string::String>> {
        self.0.directory(DOM0, path).ok()
    }
    fn read(&mut self, path: &str) -> Option<Vec<u8>> {
        self.0.read(DOM0, path).ok()
    }
}

/// Makes toolstack operations as dom0 (a restarted domain's disks,
/// `dom0_tools::disk::add_ops`); stops at the first refused, whose errno it returns.
pub fn apply(ops: &[XsOp]) -> Result<(), Errno> {
    let r = with(|s| {
        for op in ops {
            match op {
                XsOp::Rm(p) => match s.store.rm(DOM0, p) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(e),
                },
                XsOp::Mkdir(p) => s.store.mkdir(DOM0, p)?,
                XsOp::SetPerms(p, perms) => {
                    let perms: Vec<Perm> = perms
                        .iter()
                        .filter_map(|&(dom, access)| {
                            Perm::parse(format!("{}{dom}", char::from(access)).as_bytes())
                        })
                        .collect();
                    s.store.set_perms(DOM0, p, &perms)?;
                }
                XsOp::Write(p, v) => s.store.write(DOM0, p, v.as_bytes())?,
            }
        }
        Ok(())
    });
    // Watches (a backend's on `backend/vbd`) may have fired.
    service();
    r
}

/// Serves every domain's ring that needs it.
pub fn service() {
    // The counters compared below move only when pending events are taken.
    crate::wait::take_events();
    let mut hv = xen();
    let mut guard = STATE.lock();
    let Some(s) = guard.as_mut() else {
        return;
    };
    for (dom, mfn, _, local) in s.store.rings() {
        let Some(port) = local else {
            continue;
        };
        let id = ConnId(u32::from(dom));
        let Some(look) = s.looks.get_mut(&dom) else {
            continue;
        };
        let seen = events::count(port);
        // Ports past the runtime's counters are always looked at.
        let fired = seen != look.seen || port as usize >= events::TRACKED_PORTS;
        let waiting = s.store.output_len(id) > 0 && !look.waiting;
        if !fired && !waiting && !look.more {
            continue;
        }
        look.seen = seen;
        // The indexes first, then the rings: the domain writes its bytes before the index
        // that publishes them, so bytes read after the index are at least that new (one
        // copy of the whole page could take the bytes before the domain wrote them and the
        // index after).
        let mut page = [0u8; Iface::SIZE];
        let (rings, indexes) = page.split_at_mut(Iface::REQ_CONS);
        let copied = hv
            .read_frame(dom, Mfn(mfn), Iface::REQ_CONS, indexes)
            .and_then(|()| hv.read_frame(dom, Mfn(mfn), 0, rings));
        if copied.is_err() {
            // The domain is going away; `release` will follow.
            look.waiting = true;
            look.more = false;
            continue;
        }
        // At most `ring::REQUESTS_PER_SERVICE` requests of each ring per turn, every ring
        // in turn: a domain flooding its ring is served like the others, not before them.
        let w = ring::service(&mut s.store, id, &page);
        look.waiting = s.store.output_len(id) > 0;
        look.more = w.more;
        if let Some(why) = w.broke {
            tprintln!("dom0: xenstore: domain {dom} broke its ring ({why}); no longer serving it");
        }
        let mut ok = true;
        for (at, bytes) in &w.chunks {
            ok &= hv.write_frame(dom, Mfn(mfn), *at, bytes).is_ok();
        }
        if w.notify && ok {
            let _ = calls::evtchn_send(port);
        }
        // Requests published while this served from its copy came with no event (the
        // domain saw the old `req_cons`): serve the ring again before blocking.
        if ok && w.consumed != 0 {
            fence(Ordering::SeqCst);
            let mut prod = [0u8; 4];
            if hv
                .read_frame(dom, Mfn(mfn), Iface::REQ_PROD, &mut prod)
                .is_ok()
                && ring::published_meanwhile(&w, ring::req_prod(&page), u32::from_le_bytes(prod))
            {
                look.more = true;
            }
        }
    }
}

/// Whether a ring has requests left by the per-turn budget: dom0 must not block before
/// serving it again.
pub fn busy() -> bool {
    STATE
        .lock()
        .as_ref()
        .is_some_and(|s| s.looks.values().any(|l| l.more))
}

/// A connection for a `/dev/xen/xenbus` descriptor.
pub fn connect() -> ConnId {
    with(|s| s.store.connect(DOM0))
}

/// Closes a `/dev/xen/xenbus` connection.
pub fn disconnect(id: ConnId) {
    with(|s| s.store.disconnect(id));
}

/// Requests written to a `/dev/xen/xenbus` descriptor: how many bytes were taken (all of
/// them unless replies are waiting to be read).
pub fn write(id: ConnId, bytes: &[u8]) -> usize {
    let n = with(|s| s.store.feed(id, bytes));
    // A write may have fired watches of domains.
    service();
    n
}

/// Replies and events waiting for a `/dev/xen/xenbus` descriptor, at most `max` bytes.
pub fn read(id: ConnId, max: usize) -> Vec<u8> {
    with(|s| s.store.take_output(id, max))
}

/// Whether something waits to be read on a `/dev/xen/xenbus` descriptor.
pub fn readable(id: ConnId) -> bool {
    with(|s| s.store.output_len(id) > 0)
}
