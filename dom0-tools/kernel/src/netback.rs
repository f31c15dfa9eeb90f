//! netback: Xen's network backend, served inside dom0's kernel (DESIGN §11; guest-abi
//! [`netif`](guest_abi::netif) describes the protocol, `xenia_dom0::vif` the checks).
//!
//! **Finding interfaces.** As blkback: a client of dom0's own store (`xsclient`) watching
//! `/local/domain/0/backend/vif` and `@releaseDomain`. A new interface (backend `state` =
//! 1, `frontend` under the domain's home, `bridge` absent or `xenbr0`) gets
//! `feature-rx-copy` = 1, `feature-rx-flip` = 0, `feature-sg` = 1 and `state` = InitWait; a
//! frontend at Initialised gives `tx-ring-ref`, `rx-ring-ref`, `event-channel` and must say
//! `request-rx-copy` = 1 (else Xen's `xenbus_dev_fatal`: `error/backend/vif/<d>/<n>/error`
//! under dom0's home, a log line, backend Closing); the channel is bound, the interface
//! joins the bridge as port `vif<d>.<n>` and goes Connected. A frontend Closing or Closed,
//! `online` = 0, a removed backend directory or a domain that is gone ends it: channel
//! closed, port detached (its queued frames and learned MACs go with it), state forgotten.
//!
//! **Serving.** Both rings are mapped into dom0's kernel at connect (`crate::grantmap`,
//! writable, as Linux's netback maps them) and unmapped at disconnect, or by
//! `grantmap::before_destroy` before dom0 destroys the domain (then the interface is not
//! served again). Requests are copied out of the mapped page once (`req_prod` read once,
//! then each published entry) and checked and used from that copy only; responses are
//! written in place, then `rsp_prod`, `req_event` and a last look at the producer as Xen's
//! `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` and `RING_FINAL_CHECK_FOR_REQUESTS` do. The data
//! moves with `GNTTABOP_copy` (transmit is grant copy, as Linux's netback does for the
//! header; receive is grant copy, `feature-rx-copy`). Transmit: each frame's slots are
//! checked whole (`vif::check_tx`), the accepted frames' bytes are copied into dom0's
//! scratch in one batch and handed to `bridge::input`; every slot is answered (`OKAY`,
//! `ERROR`, `NULL` for extra-info slots). Receive: frames the bridge queued for the port
//! are copied each into the next buffer the frontend posted, answered with offset 0 and
//! the length; with no buffer posted the frame is dropped and counted. A frame whose source
//! MAC is not the interface's (the backend's `mac` node, required at connect as Linux's
//! netback requires it) is refused (`ERROR`) before the bridge sees it: antispoofing, so a
//! domain can neither take another's address nor fill the bridge's table; and the MAC is
//! pinned to the vif's port (`bridge::pin`), so no other port can take it either (a second
//! live vif with the same MAC is refused at connect). Refusals get one log
//! line a second per interface (`vbd::LogLimit`); what Linux's netback treats as fatal
//! (`xenvif_fatal_tx_err`: a producer more than a ring ahead, a slot crossing its page,
//! [`vif::FATAL_SLOTS`] slots, a frame running past the producer, a bad extra) stops
//! serving the interface and detaches its port. Each turn serves at most [`TX_BUDGET`]
//! transmit slots and [`RX_BUDGET`] received frames per interface; left-over work makes
//! [`busy`] true so dom0 looks again before it blocks.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::sync::atomic::{Ordering, fence};
use guest_abi::Errno;

use guest_abi::blkif::{
    SRING_HEADER, SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD, XenbusState,
    need_notify,
};
use guest_abi::calls;
use guest_abi::event::EvtchnPort;
use guest_abi::grant::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTST_NO_SPACE, GNTST_OKAY, GnttabCopy, GnttabCopyPtr,
};
use guest_abi::netif::{
    EVENT_CHANNEL, FEATURE_RX_COPY, FEATURE_RX_FLIP, FEATURE_SG, NET_RX_RING_SIZE,
    NET_TX_ENTRY_SIZE, NET_TX_RING_SIZE, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY,
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, REQUEST_RX_COPY, RX_RING_REF,
    TX_RING_REF, rx_entry_offset, tx_entry_offset,
};
use guest_abi::types::DomId;
use guest_abi::xenstore::XS_RM;
use spin::Mutex;
use xenia_dom0::vbd::LogLimit;
use xenia_dom0::vif::{self, BACKEND_ROOT, Role, TxFrame};
use xenia_guest_rt::boot::VIRT_BASE;
use xenia_guest_rt::time::now_ns;
use xenia_guest_rt::{events, mm};

use crate::bridge::{self, PortId};
use crate::direct::xen;
use crate::grantmap::{self, Mapped, Shared};
use crate::xsclient::Xs;
use crate::{store, tprintln};

const PAGE: usize = 4096;
/// Transmit slots served per interface and turn.
pub const TX_BUDGET: u32 = 64;
/// Received frames served per interface and turn.
pub const RX_BUDGET: usize = 64;
/// Scratch bytes per frame (an Ethernet frame fits; two to a page, so none crosses one).
const FRAME_ROOM: usize = 2048;
/// Frames in flight in one turn: a turn stops taking frames once it took [`TX_BUDGET`]
/// slots, and each frame has at least one.
const FRAMES: usize = TX_BUDGET as usize;
const DATA_PAGES: usize = FRAMES * FRAME_ROOM / PAGE;
/// Scratch pages: the transmit requests' copy (at their offsets in the ring), then the
/// frames.
const SCRATCH_PAGES: usize = 1 + DATA_PAGES;
/// The first scratch page of the frames' rooms.
const DATA: usize = 1;
const TOKEN_VIF: &str = "netback-vif";
const TOKEN_FE: &str = "netback-fe";
const TOKEN_REL: &str = "netback-rel";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    InitWait,
    Connected,
    Closed,
}

/// A connected interface's rings.
struct Rings {
    /// The shared rings, mapped into dom0's kernel at connect (`grantmap`), unmapped at
    /// disconnect or, by `grantmap::before_destroy`, before dom0 destroys the domain.
    tx_page: Mapped,
    rx_page: Mapped,
    /// dom0's end of the channel (both rings).
    port: EvtchnPort,
    /// Events seen on `port` when last serviced.
    seen: u32,
    /// Its port on the bridge (until detached).
    bridge: Option<PortId>,
    tx_cons: u32,
    tx_rsp: u32,
    /// Receive requests are answered as they are taken: one index for both.
    rx_cons: u32,
    /// The receive ring's `req_prod` when last read, and the requests posted up to it
    /// (slot `i % 256` for index `i`): the ring is read again only when fewer than
    /// [`RX_BUDGET`] of them are left, so a frontend that keeps its buffers posted (as
    /// Linux's and Xenia's netfront do) costs one ring copy every few turns, not each turn.
    rx_known: u32,
    rx_reqs: Vec<NetifRxRequest>,
    /// Transmit requests were left for the next turn.
    more: bool,
    /// Stopped for good (a fatal error of the frontend's).
    broken: bool,
    /// The frontend asked to hear of responses given this turn: notified by [`flush`].
    notify_due: bool,
    /// The interface's MAC (the backend's `mac` node): the only source its frames may have.
    mac: [u8; 6],
}

struct Vif {
    dom: DomId,
    devid: u32,
    be: String,
    fe: String,
    phase: Phase,
    rings: Option<Rings>,
    log: LogLimit,
    sent: u64,
    refused: u64,
    received: u64,
    dropped: u64,
}

struct Backend {
    xs: Xs,
    vifs: BTreeMap<(DomId, u32), Vif>,
    buf: Vec<u8>,
    base: usize,
    mfns: [u64; SCRATCH_PAGES],
}

static BACKEND: Mutex<Option<Backend>> = Mutex::new(None);
static BROKEN: Mutex<bool> = Mutex::new(false);

fn make() -> Option<Backend> {
    let mut buf = Vec::new();
    buf.try_reserve_exact((SCRATCH_PAGES + 1) * PAGE).ok()?;
    buf.resize((SCRATCH_PAGES + 1) * PAGE, 0);
    let base = (PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
    let mut mfns = [0u64; SCRATCH_PAGES];
    for (i, m) in mfns.iter_mut().enumerate() {
        let va = (buf.as_ptr() as u64) + (base + i * PAGE) as u64;
        let pfn = va.checked_sub(VIRT_BASE)? / PAGE as u64;
        let mfn = mm::p2m(pfn);
        // The heap is in the kernel's bootstrap region: its pages are where the p2m says.
        if mm::region_va(mfn) != Some(va) {
            return None;
        }
        *m = mfn;
    }
    let mut xs = Xs::new(store::connect());
    xs.watch(BACKEND_ROOT, TOKEN_VIF).ok()?;
    xs.watch("@releaseDomain", TOKEN_REL).ok()?;
    Some(Backend {
        xs,
        vifs: BTreeMap::new(),
        buf,
        base,
        mfns,
    })
}

/// Looks at the interfaces if xenstore changed, then serves every connected one once.
pub fn service() {
    let Some(mut guard) = BACKEND.try_lock() else {
        return;
    };
    if guard.is_none() {
        let mut broken = BROKEN.lock();
        if *broken {
            return;
        }
        *guard = make();
        if guard.is_none() {
            *broken = true;
            tprintln!("dom0: netback: cannot start (no memory or no store)");
            return;
        }
    }
    let Some(b) = guard.as_mut() else {
        return;
    };
    b.xs.pump(None);
    if core::mem::take(&mut b.xs.fired) {
        let paths = core::mem::take(&mut b.xs.fired_paths);
        if core::mem::take(&mut b.xs.fired_all) {
            b.reconcile();
        } else {
            b.reconcile_paths(&paths);
        }
    }
    b.serve_all();
}

/// Whether an interface has transmit requests left from the last turn (dom0 looks again
/// before it blocks).
pub fn busy() -> bool {
    BACKEND.try_lock().is_some_and(|g| {
        g.as_ref().is_some_and(|b| {
            b.vifs
                .values()
                .any(|v| v.rings.as_ref().is_some_and(|r| r.more && !r.broken))
        })
    })
}

fn log(v: &mut Vif, what: core::fmt::Arguments) {
    if let Some(held) = v.log.allow(now_ns()) {
        if held > 0 {
            tprintln!(
                "dom0: netback: d{} vif{}.{}: {what} ({held} more not shown)",
                v.dom,
                v.dom,
                v.devid
            );
        } else {
            tprintln!("dom0: netback: d{} vif{}.{}: {what}", v.dom, v.dom, v.devid);
        }
    }
}

impl Backend {
    fn reconcile(&mut self) {
        let mut listed = Vec::new();
        for dom in self.xs.directory(BACKEND_ROOT) {
            for dev in self.xs.directory(&format!("{BACKEND_ROOT}/{dom}")) {
                if let Some(key) = vif::device_of(&format!("{BACKEND_ROOT}/{dom}/{dev}")) {
                    listed.push(key);
                }
            }
        }
        let gone: Vec<(DomId, u32)> = self
            .vifs
            .keys()
            .filter(|k| !listed.contains(k))
            .copied()
            .collect();
        for k in gone {
            self.forget(k, "backend nodes removed");
        }
        let mut removed: Vec<DomId> = Vec::new();
        for (dom, devid) in listed {
            self.settle(dom, devid, &mut removed);
        }
        // Domains that went with their backend directory already removed.
        let dead: Vec<(DomId, u32)> = self
            .vifs
            .keys()
            .filter(|(d, _)| xen().domain_info(*d) == Err(Errno::ESRCH))
            .copied()
            .collect();
        for k in dead {
            self.forget(k, "domain gone");
        }
    }

    fn reconcile_paths(&mut self, paths: &[String]) {
        let mut keys: Vec<(DomId, u32)> = Vec::new();
        for p in paths {
            let key = vif::device_of(p).or_else(|| {
                self.vifs
                    .iter()
                    .find(|(_, v)| {
                        p.strip_prefix(v.fe.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                    })
                    .map(|(k, _)| *k)
            });
            match key {
                Some(k) if !keys.contains(&k) => keys.push(k),
                Some(_) => {}
                None => return self.reconcile(),
            }
        }
        let mut removed: Vec<DomId> = Vec::new();
        for (dom, devid) in keys {
            if self.xs.read(&vif::backend_path(dom, devid)).is_none() {
                self.forget((dom, devid), "backend nodes removed");
                continue;
            }
            self.settle(dom, devid, &mut removed);
        }
    }

    /// Ends interface `k` (if known) and drops what dom0 keeps of it, its error node (a
    /// `xenbus_dev_fatal`'s) included, and the domain's error directory once it is gone.
    fn forget(&mut self, k: (DomId, u32), why: &str) {
        if let Some(mut v) = self.vifs.remove(&k) {
            disconnect(&mut v, why);
            self.xs.unwatch(&format!("{}/state", v.fe), TOKEN_FE);
            let _ = self
                .xs
                .request(XS_RM, &[vif::error_dir(k.0, k.1).as_bytes(), b"\0"]);
            if xen().domain_info(k.0) == Err(Errno::ESRCH) {
                let _ = self
                    .xs
                    .request(XS_RM, &[vif::error_root(k.0).as_bytes(), b"\0"]);
            }
        }
    }

    fn settle(&mut self, dom: DomId, devid: u32, removed: &mut Vec<DomId>) {
        if xen().domain_info(dom) == Err(Errno::ESRCH) {
            self.forget((dom, devid), "domain gone");
            if !removed.contains(&dom) {
                removed.push(dom);
                let _ = self
                    .xs
                    .request(XS_RM, &[format!("{BACKEND_ROOT}/{dom}").as_bytes(), b"\0"]);
                let _ = self
                    .xs
                    .request(XS_RM, &[vif::error_root(dom).as_bytes(), b"\0"]);
                tprintln!("dom0: netback: domain {dom} gone: its backend nodes removed");
            }
            return;
        }
        if !self.vifs.contains_key(&(dom, devid)) {
            if let Some(v) = self.probe(dom, devid) {
                self.vifs.insert((dom, devid), v);
            }
            return;
        }
        if let Some(v) = self.vifs.get_mut(&(dom, devid)) {
            step(&mut self.xs, v);
        }
    }

    /// A new interface the toolstack described: announced (InitWait), or `None` while its
    /// nodes are incomplete or when it cannot be served (then `Closed`).
    fn probe(&mut self, dom: DomId, devid: u32) -> Option<Vif> {
        let be = vif::backend_path(dom, devid);
        let xs = &mut self.xs;
        let state = XenbusState::parse(xs.read(&format!("{be}/state"))?.as_bytes());
        if state != XenbusState::Initialising {
            return None;
        }
        let fe = xs
            .read(&format!("{be}/frontend"))
            .unwrap_or_else(|| vif::frontend_path(dom, devid));
        let fail = |xs: &mut Xs, why: &str| {
            tprintln!("dom0: netback: d{dom} {be}: {why}");
            let _ = xs.write(&format!("{be}/hotplug-error"), why);
            let _ = xs.write(&format!("{be}/state"), XenbusState::Closed.as_str());
            None
        };
        if !fe.starts_with(&format!("/local/domain/{dom}/")) {
            return fail(xs, "frontend is not under the domain's home");
        }
        if let Some(br) = xs.read(&format!("{be}/bridge"))
            && br != vif::BRIDGE
        {
            return fail(xs, &format!("bridge {br} does not exist (dom0 has xenbr0)"));
        }
        for (k, v) in [
            (FEATURE_RX_COPY, "1"),
            (FEATURE_RX_FLIP, "0"),
            (FEATURE_SG, "1"),
        ] {
            if xs.write(&format!("{be}/{k}"), v).is_err() {
                return fail(xs, "cannot write the interface's nodes");
            }
        }
        let _ = xs.watch(&format!("{fe}/state"), TOKEN_FE);
        let _ = xs.write(&format!("{be}/state"), XenbusState::InitWait.as_str());
        let mut v = Vif {
            dom,
            devid,
            be,
            fe,
            phase: Phase::InitWait,
            rings: None,
            log: LogLimit::default(),
            sent: 0,
            refused: 0,
            received: 0,
            dropped: 0,
        };
        step(xs, &mut v);
        Some(v)
    }

    fn serve_all(&mut self) {
        crate::wait::take_events();
        let Backend {
            vifs,
            buf,
            base,
            mfns,
            ..
        } = self;
        let scratch = &mut buf[*base..*base + SCRATCH_PAGES * PAGE];
        for v in vifs.values_mut() {
            if v.phase == Phase::Connected {
                serve(v, scratch, mfns);
            }
        }
    }
}

/// One step of a known interface's handshake, from what xenstore says now.
fn step(xs: &mut Xs, v: &mut Vif) {
    let be_state = xs
        .read(&format!("{}/state", v.be))
        .map(|s| XenbusState::parse(s.as_bytes()))
        .unwrap_or(XenbusState::Unknown);
    let online = xs.read(&format!("{}/online", v.be));
    let fe_state = xs
        .read(&format!("{}/state", v.fe))
        .map(|s| XenbusState::parse(s.as_bytes()))
        .unwrap_or(XenbusState::Unknown);
    let closing = matches!(fe_state, XenbusState::Closing | XenbusState::Closed)
        || online.as_deref() == Some("0")
        || be_state == XenbusState::Closing;
    if closing {
        disconnect(v, "closed");
        // Not when the toolstack removed the directory: a write would make it again.
        if !matches!(be_state, XenbusState::Unknown | XenbusState::Closed) {
            let _ = xs.write(&format!("{}/state", v.be), XenbusState::Closed.as_str());
        }
        return;
    }
    if v.phase == Phase::InitWait
        && matches!(fe_state, XenbusState::Initialised | XenbusState::Connected)
    {
        match connect(xs, v) {
            Ok(r) => {
                v.rings = Some(r);
                v.phase = Phase::Connected;
                let _ = xs.write(&format!("{}/state", v.be), XenbusState::Connected.as_str());
                tprintln!(
                    "dom0: netback: d{} vif{}.{} connected to {}",
                    v.dom,
                    v.dom,
                    v.devid,
                    vif::BRIDGE
                );
            }
            Err((errno, why)) => {
                // Xen's `xenbus_dev_fatal`: the error under dom0's `error/<backend path>`,
                // then Closing.
                tprintln!(
                    "dom0: netback: d{} vif{}.{}: cannot connect: {why}",
                    v.dom,
                    v.dom,
                    v.devid
                );
                let _ = xs.write(
                    &format!("{}/error", vif::error_dir(v.dom, v.devid)),
                    &format!("{} {why}", errno as i32),
                );
                v.phase = Phase::Closed;
                let _ = xs.write(&format!("{}/state", v.be), XenbusState::Closing.as_str());
            }
        }
    }
}

fn read_num(xs: &mut Xs, path: &str) -> Option<u32> {
    xs.read(path).and_then(|s| s.trim().parse().ok())
}

fn connect(xs: &mut Xs, v: &Vif) -> Result<Rings, (Errno, String)> {
    let fe = &v.fe;
    let missing = |k: &str| (Errno::ENOENT, format!("reading {fe}/{k}"));
    let tx_gref =
        read_num(xs, &format!("{fe}/{TX_RING_REF}")).ok_or_else(|| missing(TX_RING_REF))?;
    let rx_gref =
        read_num(xs, &format!("{fe}/{RX_RING_REF}")).ok_or_else(|| missing(RX_RING_REF))?;
    let remote =
        read_num(xs, &format!("{fe}/{EVENT_CHANNEL}")).ok_or_else(|| missing(EVENT_CHANNEL))?;
    // Linux's netback serves copying receivers only, and so does Xenia's.
    if read_num(xs, &format!("{fe}/{REQUEST_RX_COPY}")) != Some(1) {
        return Err((
            Errno::EOPNOTSUPP,
            format!("{fe}/{REQUEST_RX_COPY} is not 1: only copying receive is served"),
        ));
    }
    // Linux's netback reads the MAC at connect and fails the device without one
    // (`parsing <backend>/mac`); here it is also the only source the domain's frames may have.
    let mac_node = format!("{}/mac", v.be);
    let mac = match xs.read(&mac_node) {
        None => return Err((Errno::ENOENT, format!("parsing {mac_node}"))),
        Some(t) => vif::backend_mac(&t).ok_or((Errno::EINVAL, format!("parsing {mac_node}")))?,
    };
    // Both rings mapped once, writable (Linux's netback maps them too): their requests
    // are copied out of the pages, their responses written in place, with no grant copy.
    let map = |gref: u32, which: &str| {
        grantmap::map(v.dom, gref).map_err(|st| match st {
            GNTST_NO_SPACE => (Errno::ENOMEM, format!("no room to map {which} {gref}")),
            _ => (
                Errno::EINVAL,
                format!("{which} {gref} is not granted to dom0 (writable)"),
            ),
        })
    };
    let tx_page = map(tx_gref, TX_RING_REF)?;
    let rx_page = match map(rx_gref, RX_RING_REF) {
        Ok(m) => m,
        Err(e) => {
            grantmap::unmap(tx_page);
            return Err(e);
        }
    };
    let undo = |tx: Mapped, rx: Mapped| {
        grantmap::unmap(tx);
        grantmap::unmap(rx);
    };
    let port = match calls::evtchn_bind_interdomain(v.dom, remote) {
        Ok(p) => p,
        Err(e) => {
            undo(tx_page, rx_page);
            return Err((e, format!("cannot bind event channel {remote}")));
        }
    };
    let Some(bp) = bridge::attach(&vif::port_name(v.dom, v.devid)) else {
        let _ = calls::evtchn_close(port);
        undo(tx_page, rx_page);
        return Err((
            Errno::ENOSPC,
            format!("{} has no room for another port", vif::BRIDGE),
        ));
    };
    // The vif's MAC is pinned to its port: its traffic goes there from the start, and no
    // other port (another domain's, or eth0's network) can take it over by sending with it.
    // Two live vifs with one MAC cannot both have it: the second is refused.
    if !bridge::pin(bp, mac) {
        bridge::detach(bp);
        let _ = calls::evtchn_close(port);
        undo(tx_page, rx_page);
        return Err((
            Errno::EEXIST,
            format!(
                "mac {} is another interface's on {}",
                MacText(&mac),
                vif::BRIDGE
            ),
        ));
    }
    let mut rx_reqs = Vec::new();
    if rx_reqs
        .try_reserve_exact(NET_RX_RING_SIZE as usize)
        .is_err()
    {
        bridge::detach(bp);
        let _ = calls::evtchn_close(port);
        undo(tx_page, rx_page);
        return Err((
            Errno::ENOMEM,
            String::from("no memory for the receive ring's state"),
        ));
    }
    rx_reqs.resize(NET_RX_RING_SIZE as usize, NetifRxRequest::default());
    Ok(Rings {
        tx_page,
        rx_page,
        port,
        seen: u32::MAX,
        bridge: Some(bp),
        tx_cons: 0,
        tx_rsp: 0,
        rx_cons: 0,
        rx_known: 0,
        rx_reqs,
        more: false,
        broken: false,
        notify_due: false,
        mac,
    })
}

/// Lets go of an interface: its channel and its bridge port; says so once.
fn disconnect(v: &mut Vif, why: &str) {
    if let Some(mut r) = v.rings.take() {
        let _ = calls::evtchn_close(r.port);
        if let Some(p) = r.bridge.take() {
            bridge::detach(p);
        }
        grantmap::unmap(r.tx_page);
        grantmap::unmap(r.rx_page);
    }
    if v.phase != Phase::Closed {
        tprintln!(
            "dom0: netback: d{} vif{}.{} released ({why}; {} frames sent, {} refused, {} received, {} dropped)",
            v.dom,
            v.dom,
            v.devid,
            v.sent,
            v.refused,
            v.received,
            v.dropped
        );
    }
    v.phase = Phase::Closed;
}

/// Stops serving an interface for good (Linux's `xenvif_fatal_tx_err`): its port leaves
/// the bridge, so nothing is queued for it any more; the channel stays until it closes.
fn fatal(v: &mut Vif, why: core::fmt::Arguments) {
    if let Some(r) = v.rings.as_mut() {
        r.broken = true;
        r.more = false;
        if let Some(p) = r.bridge.take() {
            bridge::detach(p);
        }
    }
    tprintln!(
        "dom0: netback: d{} vif{}.{}: {why}; not serving it",
        v.dom,
        v.dom,
        v.devid
    );
}

/// Runs grant copies (each operation's `status` says how it went); `false` when the call
/// itself failed, so that no status can be trusted.
fn run(ops: &mut [GnttabCopy]) -> bool {
    if ops.is_empty() {
        return true;
    }
    // SAFETY: every local end of these operations is a page of the backend's scratch
    // buffer, which the caller holds exclusively (`&mut`) and reads only after the call.
    unsafe { calls::grant_copy(ops) }.is_ok()
}

fn from_gref(dom: DomId, gref: u32, offset: u16, mfn: u64, local: u16, len: u16) -> GnttabCopy {
    GnttabCopy {
        source: GnttabCopyPtr::from_gref(gref, dom, offset),
        dest: GnttabCopyPtr::from_gmfn(mfn, local),
        len,
        flags: GNTCOPY_SOURCE_GREF,
        status: 0,
    }
}

fn to_gref(dom: DomId, gref: u32, offset: u16, mfn: u64, local: u16, len: u16) -> GnttabCopy {
    GnttabCopy {
        source: GnttabCopyPtr::from_gmfn(mfn, local),
        dest: GnttabCopyPtr::from_gref(gref, dom, offset),
        len,
        flags: GNTCOPY_DEST_GREF,
        status: 0,
    }
}

/// Copies entries `from..from + n` (free-running indexes; at most a ring's worth) of a ring
/// of `size` entries of `entry` bytes out of the mapped page into `copy`, each at its own
/// offset in the ring: at most two runs, each byte read once.
fn copy_entries(p: &Shared, copy: &mut [u8], from: u32, n: u32, size: u32, entry: usize) {
    let mut i = from;
    let mut left = n.min(size);
    while left > 0 {
        let slot = i % size;
        let run = (size - slot).min(left);
        let at = SRING_HEADER + slot as usize * entry;
        let len = run as usize * entry;
        if let Some(dst) = copy.get_mut(at..at + len) {
            p.copy_out(at, dst);
        }
        i = i.wrapping_add(run);
        left -= run;
    }
}

/// Publishes the responses written up to `rsp` (Xen's `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`:
/// the responses before the index, the index before the frontend's `rsp_event` is read),
/// then looks at the producer once more (`RING_FINAL_CHECK_FOR_REQUESTS`: `req_event` moved
/// only when nothing waits, and the producer read again after it). Whether the frontend
/// wants to hear of the responses, and whether requests past `cons` wait.
fn push_and_check(p: &Shared, old_rsp: u32, rsp: u32, cons: u32) -> (bool, bool) {
    fence(Ordering::Release);
    p.write_u32(SRING_RSP_PROD, rsp);
    fence(Ordering::SeqCst);
    let notify = need_notify(old_rsp, rsp, p.read_u32(SRING_RSP_EVENT));
    let mut more = p.read_u32(SRING_REQ_PROD) != cons;
    if !more {
        p.write_u32(SRING_REQ_EVENT, cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        more = p.read_u32(SRING_REQ_PROD) != cons;
    }
    (notify, more)
}

/// The rings' pages were unmapped because dom0 is destroying the domain
/// (`grantmap::before_destroy`): not served again; the interface is released when the
/// domain's nodes go.
fn gone(v: &mut Vif) {
    fatal(v, format_args!("rings unmapped (domain being destroyed)"));
}

/// Serves one interface: transmit if its channel fired (or work was left), receive if the
/// bridge queued frames for it; then one notification if either ring wants one.
fn serve(v: &mut Vif, scratch: &mut [u8], mfns: &[u64; SCRATCH_PAGES]) {
    let Some(r) = v.rings.as_mut() else {
        return;
    };
    if r.broken {
        return;
    }
    let count = events::count(r.port);
    let fresh = count != r.seen || r.more || r.port as usize >= events::TRACKED_PORTS;
    if fresh {
        r.seen = count;
    }
    let pending = r.bridge.is_some_and(bridge::pending);
    let mut notify = false;
    if pending {
        notify |= serve_rx(v, scratch, mfns);
    }
    if fresh && v.rings.as_ref().is_some_and(|r| !r.broken) {
        notify |= serve_tx(v, scratch, mfns);
    }
    if notify && let Some(r) = v.rings.as_mut() {
        r.notify_due = true;
    }
}

/// Sends the notifications the frontends asked for during this round of dom0's services
/// (`kernel::service` calls it once the network's services are done, before dom0 looks at
/// anything else or blocks). Kept until then rather than sent by [`serve`]: an event wakes
/// the domain, which (boosted, as Xen's credit scheduler boosts a woken vCPU) takes the
/// pCPU from dom0 at once; later, it finds every frame of the round in one wake-up, and
/// dom0 has given the card what the round produced first.
pub fn flush() {
    let Some(mut guard) = BACKEND.try_lock() else {
        return;
    };
    let Some(b) = guard.as_mut() else {
        return;
    };
    for v in b.vifs.values_mut() {
        if let Some(r) = v.rings.as_mut()
            && core::mem::take(&mut r.notify_due)
        {
            let _ = calls::evtchn_send(r.port);
        }
    }
}

/// The transmit ring: frames checked, copied, handed to the bridge, every slot answered.
/// Whether the frontend wants to hear of the responses.
fn serve_tx(v: &mut Vif, scratch: &mut [u8], mfns: &[u64; SCRATCH_PAGES]) -> bool {
    let dom = v.dom;
    let Some(r) = v.rings.as_mut() else {
        return false;
    };
    let mac = r.mac;
    let (ring, data) = scratch.split_at_mut(DATA * PAGE);
    let (cons, old_rsp) = (r.tx_cons, r.tx_rsp);
    // The producer read once, then (after an acquire fence: the frontend writes an entry
    // before it publishes it) each published entry copied out once into `ring`, at its own
    // offset: the frontend may rewrite the page at any moment, and nothing below reads its
    // requests again (the checks and the copies use `ring` only).
    let look = grantmap::with(&r.tx_page, |p| {
        let p = p?;
        let req_prod = p.read_u32(SRING_REQ_PROD);
        fence(Ordering::Acquire);
        let new = vif::new_requests(req_prod, cons, old_rsp, NET_TX_RING_SIZE);
        if let Ok(n) = new {
            copy_entries(p, ring, cons, n, NET_TX_RING_SIZE, NET_TX_ENTRY_SIZE);
        }
        Some(new)
    });
    let new = match look {
        None => {
            gone(v);
            return false;
        }
        Some(Err(f)) => {
            fatal(v, format_args!("{f}"));
            return false;
        }
        Some(Ok(n)) => n,
    };
    r.more = false;
    if new == 0 {
        return false;
    }
    let ring: &[u8] = ring;
    let entry = |i: u32| -> NetifTxRequest {
        let at = tx_entry_offset(i);
        let mut b = [0u8; NetifTxRequest::SIZE];
        b.copy_from_slice(&ring[at..at + NetifTxRequest::SIZE]);
        NetifTxRequest::from_bytes(&b)
    };
    // Frames, whole, until the budget is spent.
    let mut frames: Vec<(u32, TxFrame)> = Vec::new();
    if frames.try_reserve(FRAMES).is_err() {
        r.more = true;
        return false;
    }
    let mut taken = 0u32;
    while taken < new && taken < TX_BUDGET {
        let start = cons.wrapping_add(taken);
        match vif::check_tx(|i| entry(start.wrapping_add(i)), new - taken) {
            Ok(f) => {
                taken += f.slots as u32;
                frames.push((start, f));
            }
            Err(f) => {
                fatal(v, format_args!("{f}"));
                return false;
            }
        }
    }
    // The accepted frames' bytes, each in its own room of the scratch, in one batch.
    let mut ops: Vec<GnttabCopy> = Vec::new();
    let mut spans: Vec<core::ops::Range<usize>> = Vec::new();
    let mut statuses: Vec<i16> = Vec::new();
    if ops.try_reserve(taken as usize).is_err()
        || spans.try_reserve(frames.len()).is_err()
        || statuses.try_reserve(frames.len()).is_err()
    {
        r.more = true;
        return false;
    }
    for (k, (_, f)) in frames.iter().enumerate() {
        let first = ops.len();
        if let Ok(p) = &f.verdict {
            let mut at = k * FRAME_ROOM;
            for piece in &p.pieces[..p.nr] {
                if piece.len > 0 {
                    ops.push(from_gref(
                        dom,
                        piece.gref,
                        piece.offset,
                        mfns[DATA + at / PAGE],
                        (at % PAGE) as u16,
                        piece.len,
                    ));
                }
                at += usize::from(piece.len);
            }
        }
        spans.push(first..ops.len());
    }
    let called = run(&mut ops);
    // Each frame's fate, known before any response is written: responses go straight into
    // the ring with their final status.
    for (k, (start, f)) in frames.iter().enumerate() {
        let p = match &f.verdict {
            Ok(p) => p,
            Err(why) => {
                v.refused += 1;
                log(v, format_args!("frame at slot {start}: {why}"));
                statuses.push(NETIF_RSP_ERROR);
                continue;
            }
        };
        let failed = if called {
            ops[spans[k].clone()]
                .iter()
                .find(|o| o.status != GNTST_OKAY)
                .map(|o| o.status)
        } else {
            Some(guest_abi::grant::GNTST_GENERAL_ERROR)
        };
        let accepted = match failed {
            Some(s) => {
                log(
                    v,
                    format_args!("frame at slot {start}: grant copy failed ({s})"),
                );
                false
            }
            None => {
                let room = k * FRAME_ROOM;
                let frame = &mut data[room..room + p.len];
                // Linux's netfront leaves TCP and UDP checksums to the backend.
                if p.csum_blank {
                    vif::fill_checksum(frame);
                }
                let frame = &*frame;
                if vif::source_allowed(frame, &mac) {
                    if let Some(bp) = v.rings.as_ref().and_then(|r| r.bridge) {
                        bridge::input(bp, frame);
                    }
                    v.sent += 1;
                    true
                } else {
                    // Antispoofing: never reaches the bridge, which would learn it.
                    log(
                        v,
                        format_args!(
                            "frame at slot {start}: source {} is not the vif's mac {}",
                            MacText(&frame[6..12]),
                            MacText(&mac)
                        ),
                    );
                    false
                }
            }
        };
        if !accepted {
            v.refused += 1;
        }
        statuses.push(if accepted {
            NETIF_RSP_OKAY
        } else {
            NETIF_RSP_ERROR
        });
    }
    // Every slot answered, in order, in place; then `rsp_prod` and the final check.
    let Some(r) = v.rings.as_mut() else {
        return false;
    };
    let new_cons = cons.wrapping_add(taken);
    let mut rsp = old_rsp;
    for f in &frames {
        rsp = rsp.wrapping_add(f.1.slots as u32);
    }
    let pushed = grantmap::with(&r.tx_page, |p| {
        let p = p?;
        let mut at_rsp = old_rsp;
        for ((start, f), &status) in frames.iter().zip(&statuses) {
            for j in 0..f.slots {
                let id = entry_id_tx(ring, start.wrapping_add(j as u32));
                let s = match f.roles[j] {
                    Role::Extra => NETIF_RSP_NULL,
                    Role::Data => status,
                };
                p.write(
                    tx_entry_offset(at_rsp),
                    &NetifTxResponse { id, status: s }.to_bytes(),
                );
                at_rsp = at_rsp.wrapping_add(1);
            }
        }
        Some(push_and_check(p, old_rsp, rsp, new_cons))
    });
    r.tx_cons = new_cons;
    r.tx_rsp = rsp;
    let Some((notify, more)) = pushed else {
        gone(v);
        return false;
    };
    // Requests the budget left, or that came meanwhile, are served at the next turn.
    r.more = more;
    notify
}

/// A MAC as `xx:xx:xx:xx:xx:xx`, without allocating (log lines).
struct MacText<'a>(&'a [u8]);

impl core::fmt::Display for MacText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The `id` of the transmit request at index `idx`, from the requests' copy.
fn entry_id_tx(ring: &[u8], idx: u32) -> u16 {
    let at = tx_entry_offset(idx) + 8;
    u16::from_le_bytes([ring[at], ring[at + 1]])
}

/// The receive ring: frames the bridge queued, each into the next posted buffer; frames
/// without a buffer dropped and counted. Whether the frontend wants to hear of them.
fn serve_rx(v: &mut Vif, scratch: &mut [u8], mfns: &[u64; SCRATCH_PAGES]) -> bool {
    let dom = v.dom;
    let Some(r) = v.rings.as_mut() else {
        return false;
    };
    let Some(bp) = r.bridge else {
        return false;
    };
    let data = &mut scratch[DATA * PAGE..];
    let cons = r.rx_cons;
    let known = r.rx_known.wrapping_sub(cons);
    let mut posted = known as usize;
    if posted < RX_BUDGET {
        // Few requests known: the producer read once, then each request not copied before
        // copied out once into `rx_reqs` (those copied before are not read again).
        let rx_reqs = &mut r.rx_reqs;
        let look = grantmap::with(&r.rx_page, |p| {
            let p = p?;
            let req_prod = p.read_u32(SRING_REQ_PROD);
            fence(Ordering::Acquire);
            let n = match vif::new_requests(req_prod, cons, cons, NET_RX_RING_SIZE) {
                Ok(n) => n,
                Err(f) => return Some(Err(f)),
            };
            for k in known.min(n)..n {
                let i = cons.wrapping_add(k);
                let mut b = [0u8; NetifRxRequest::SIZE];
                p.read(rx_entry_offset(i), &mut b);
                if let Some(slot) = rx_reqs.get_mut((i % NET_RX_RING_SIZE) as usize) {
                    *slot = NetifRxRequest::from_bytes(&b);
                }
            }
            Some(Ok((req_prod, n)))
        });
        match look {
            None => {
                gone(v);
                return false;
            }
            Some(Err(f)) => {
                fatal(v, format_args!("receive ring: {f}"));
                return false;
            }
            Some(Ok((req_prod, n))) => {
                r.rx_known = req_prod;
                posted = n as usize;
            }
        }
    }
    // Frames in, each in its room; those past the posted buffers are dropped.
    let mut lens = [0usize; RX_BUDGET];
    let mut n = 0;
    while n < RX_BUDGET {
        let room = &mut data[n * FRAME_ROOM..(n + 1) * FRAME_ROOM];
        let Some(len) = bridge::pop(bp, room) else {
            break;
        };
        if n < posted {
            lens[n] = len;
            n += 1;
        } else {
            v.dropped += 1;
            if !bridge::pending(bp) {
                break;
            }
        }
    }
    if n == 0 {
        return false;
    }
    let mut ops: Vec<GnttabCopy> = Vec::new();
    if ops.try_reserve(n).is_err() {
        v.dropped += n as u64;
        return false;
    }
    let mut reqs = [NetifRxRequest::default(); RX_BUDGET];
    for (k, &len) in lens[..n].iter().enumerate() {
        let i = cons.wrapping_add(k as u32);
        reqs[k] = r
            .rx_reqs
            .get((i % NET_RX_RING_SIZE) as usize)
            .copied()
            .unwrap_or_default();
        let room = k * FRAME_ROOM;
        ops.push(to_gref(
            dom,
            reqs[k].gref,
            0,
            mfns[DATA + room / PAGE],
            (room % PAGE) as u16,
            len as u16,
        ));
    }
    let called = run(&mut ops);
    // Each frame's response with its final status (its length, or `NETIF_RSP_ERROR` when
    // its copy failed: a posted buffer's grant of the frontend's own that was bad), in
    // place; then `rsp_prod`, the next `req_event`, and the frontend's `rsp_event` read.
    let mut bad = 0u64;
    let mut bad_status = 0i16;
    let mut statuses = [0i16; RX_BUDGET];
    for (k, op) in ops.iter().enumerate() {
        if called && op.status == GNTST_OKAY {
            statuses[k] = lens[k] as i16;
        } else {
            bad += 1;
            bad_status = if called {
                op.status
            } else {
                guest_abi::grant::GNTST_GENERAL_ERROR
            };
            statuses[k] = NETIF_RSP_ERROR;
        }
    }
    let new_cons = cons.wrapping_add(n as u32);
    let notify = grantmap::with(&r.rx_page, |p| {
        let p = p?;
        for k in 0..n {
            let rsp = NetifRxResponse {
                id: reqs[k].id,
                offset: 0,
                flags: 0,
                status: statuses[k],
            };
            p.write(
                rx_entry_offset(cons.wrapping_add(k as u32)),
                &rsp.to_bytes(),
            );
        }
        fence(Ordering::Release);
        p.write_u32(SRING_RSP_PROD, new_cons);
        p.write_u32(SRING_REQ_EVENT, new_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Some(need_notify(cons, new_cons, p.read_u32(SRING_RSP_EVENT)))
    });
    r.rx_cons = new_cons;
    let Some(notify) = notify else {
        gone(v);
        return false;
    };
    v.received += n as u64 - bad;
    if bad > 0 {
        v.dropped += bad;
        log(
            v,
            format_args!(
                "{bad} received frames lost: a posted buffer's grant copy failed ({bad_status})"
            ),
        );
    }
    notify
}
