//! blkback: Xen's block backend, served inside dom0's kernel (DESIGN §11; guest-abi
//! [`blkif`](guest_abi::blkif) describes the protocol).
//!
//! **Finding devices.** The kernel is a xenstore client of its own store (`store::connect`,
//! Xen's `xs_wire` messages) and watches `/local/domain/0/backend/vbd` and
//! `@releaseDomain`. After any event it looks at every device the toolstack described: a new
//! one whose `params` names a block device (`blockdev::lookup`) gets `sectors`,
//! `sector-size`, `physical-sector-size`, `info`, the features and `state` = InitWait; a
//! device whose frontend says Initialised gets its ring (`ring-ref`, `event-channel`,
//! `protocol` must be `x86_64-abi` if present) and goes Connected; a frontend Closing or
//! Closed, or a toolstack setting `online` = 0, ends it (Closed); a domain that is gone loses
//! its devices and its backend directory.
//!
//! **Serving.** The frontend's ring page (`ring-ref`) is mapped into dom0's kernel once, at
//! connect (`crate::grantmap`, unmapped at disconnect and before dom0 destroys the domain):
//! the indexes are read and the responses written in place, each request copied out once
//! (volatile) before it is looked at. Segment data moves with `GNTTABOP_copy` between the
//! frontend's grants and the disk driver's buffer (no indirect descriptors), or, when both
//! ends said `feature-persistent`, by dom0's own copy to or from the segment pages, each
//! mapped the first time it is named and kept mapped (at most 64 a device). Each request
//! is checked whole first (`xenia_dom0::vbd`); a
//! refused one gets `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP` and one log line (at most one
//! a second per device). Requests already in the ring when the backend connects are
//! refused. A `req_prod` claiming more than a ring's worth marks the ring broken: it is no
//! longer served (Xen's blkback does the same). Each round serves at most one ring's worth
//! (32 requests) of each device, so one domain cannot starve another.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering, fence};

use guest_abi::Errno;
use guest_abi::blkif::{
    BLKIF_ENTRY_SIZE, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_RING_SIZE, BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BlkifResponse, SRING_REQ_EVENT, SRING_REQ_PROD,
    SRING_RSP_PROD, VDISK_READONLY, XEN_IO_PROTO_ABI_X86_64, XenbusState, entry_offset,
};
use guest_abi::calls;
use guest_abi::grant::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTST_OKAY, GnttabCopy, GnttabCopyPtr,
};
use guest_abi::types::DomId;
use guest_abi::xenstore::XS_RM;
use spin::Mutex;
use xenia_dom0::vbd::{self, Action, BACKEND_ROOT, Geometry, LogLimit, Segment};
use xenia_guest_rt::boot::VIRT_BASE;
use xenia_guest_rt::time::now_ns;
use xenia_guest_rt::{events, mm};

use crate::blockdev::{self, BlockError, DevId};
use crate::direct::xen;
use crate::grantmap::{self, Mapped};
use crate::xsclient::Xs;
use crate::{store, tprintln};

const PAGE: usize = 4096;
/// Scratch pages: the round's requests as copied out of the ring, then one page per
/// segment.
const SCRATCH_PAGES: usize = 1 + BLKIF_MAX_SEGMENTS_PER_REQUEST;
/// A request's grant-copy batch: a segment may cross a page of the transfer buffer (two
/// pieces).
const DATA_BATCH: usize = 2 * BLKIF_MAX_SEGMENTS_PER_REQUEST;
/// Persistent grants (`feature-persistent`) a device keeps mapped at most: segments naming
/// other grants go by grant copy. 64: the guest runtime's blkfront keeps four requests of 11
/// segments in flight (44 grants), with room for a frontend that uses a few more.
const MAX_PERSISTENT: usize = 64;
const TOKEN_VBD: &str = "blkback-vbd";
const TOKEN_FE: &str = "blkback-fe";
const TOKEN_REL: &str = "blkback-rel";

/// Where a device is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for the frontend (`InitWait` written).
    InitWait,
    /// Serving its ring.
    Connected,
    /// Done (`Closed` written, or it could not be set up).
    Closed,
}

/// A connected ring.
struct Ring {
    /// The frontend's ring page, mapped in dom0.
    page: Mapped,
    /// dom0's end of the channel.
    port: u32,
    /// Events seen on `port` when last serviced.
    seen: u32,
    req_cons: u32,
    rsp_prod: u32,
    /// Requests before this index were in the ring before the backend connected.
    first_served: u32,
    broken: bool,
    /// Both ends said `feature-persistent`: segment grants are mapped once, kept in
    /// `grants`, and their data copied by dom0.
    persistent: bool,
    grants: Vec<(u32, Mapped)>,
}

struct Device {
    dom: DomId,
    devid: u32,
    be: String,
    fe: String,
    dev: DevId,
    geo: Geometry,
    phase: Phase,
    ring: Option<Ring>,
    log: LogLimit,
    /// Requests served and refused, for the log.
    served: u64,
    refused: u64,
}

struct Backend {
    xs: Xs,
    devices: BTreeMap<(DomId, u32), Device>,
    /// Page-aligned scratch: `SCRATCH_PAGES` pages starting at `base` in `buf`.
    buf: Vec<u8>,
    base: usize,
    /// Their machine frames.
    mfns: [u64; SCRATCH_PAGES],
}

static BACKEND: Mutex<Option<Backend>> = Mutex::new(None);
/// Device setup failed for good (no scratch memory): not tried again.
static BROKEN: Mutex<bool> = Mutex::new(false);
/// A ring had more requests than a round serves: look again before blocking.
static MORE: AtomicBool = AtomicBool::new(false);

/// Whether a ring still holds requests a round left (dom0 looks again at once rather than
/// block).
pub fn busy() -> bool {
    MORE.load(Ordering::Relaxed)
}

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
    let conn = store::connect();
    let mut xs = Xs::new(conn);
    // The root may not exist yet: the watch fires when it is made.
    xs.watch(BACKEND_ROOT, TOKEN_VBD).ok()?;
    xs.watch("@releaseDomain", TOKEN_REL).ok()?;
    Some(Backend {
        xs,
        devices: BTreeMap::new(),
        buf,
        base,
        mfns,
    })
}

/// Looks at the devices if xenstore changed, then serves every connected ring once.
pub fn service() {
    // Re-entered from a wait inside a driver: the round in progress finishes the work.
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
            tprintln!("dom0: blkback: cannot start (no memory or no store)");
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

fn log(d: &mut Device, what: core::fmt::Arguments) {
    if let Some(held) = d.log.allow(now_ns()) {
        if held > 0 {
            tprintln!(
                "dom0: blkback: d{} {}: {what} ({held} more not shown)",
                d.dom,
                d.be
            );
        } else {
            tprintln!("dom0: blkback: d{} {}: {what}", d.dom, d.be);
        }
    }
}

impl Backend {
    /// Brings every device in line with xenstore.
    fn reconcile(&mut self) {
        let mut listed = Vec::new();
        for dom in self.xs.directory(BACKEND_ROOT) {
            for dev in self.xs.directory(&format!("{BACKEND_ROOT}/{dom}")) {
                if let Some(key) = vbd::device_of(&format!("{BACKEND_ROOT}/{dom}/{dev}")) {
                    listed.push(key);
                }
            }
        }
        // Devices whose backend directory went: let go, write nothing.
        let gone: Vec<(DomId, u32)> = self
            .devices
            .keys()
            .filter(|k| !listed.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(mut d) = self.devices.remove(&k) {
                disconnect(&mut d, "backend nodes removed");
                self.xs.unwatch(&format!("{}/state", d.fe), TOKEN_FE);
            }
        }
        let mut removed: Vec<DomId> = Vec::new();
        for (dom, devid) in listed {
            self.settle(dom, devid, &mut removed);
        }
    }

    /// Looks only at the devices the fired `paths` concern (a backend directory, or a
    /// frontend's `state` this backend watches); anything else (the root, a domain's
    /// directory, `@releaseDomain`) is a look at every device.
    fn reconcile_paths(&mut self, paths: &[String]) {
        let mut keys: Vec<(DomId, u32)> = Vec::new();
        for p in paths {
            let key = vbd::device_of(p).or_else(|| {
                self.devices
                    .iter()
                    .find(|(_, d)| {
                        p.strip_prefix(d.fe.as_str())
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
            if self.xs.read(&vbd::backend_path(dom, devid)).is_none() {
                // Its backend directory went: let go, write nothing.
                if let Some(mut d) = self.devices.remove(&(dom, devid)) {
                    disconnect(&mut d, "backend nodes removed");
                    self.xs.unwatch(&format!("{}/state", d.fe), TOKEN_FE);
                }
                continue;
            }
            self.settle(dom, devid, &mut removed);
        }
    }

    /// Brings device `devid` of `dom`, whose backend directory exists, in line with
    /// xenstore: ended if the domain is gone, opened if new, else moved a step.
    fn settle(&mut self, dom: DomId, devid: u32, removed: &mut Vec<DomId>) {
        // A domain that is gone: its devices end and its backend directory goes.
        if xen().domain_info(dom) == Err(Errno::ESRCH) {
            if let Some(mut d) = self.devices.remove(&(dom, devid)) {
                disconnect(&mut d, "domain gone");
                self.xs.unwatch(&format!("{}/state", d.fe), TOKEN_FE);
            }
            if !removed.contains(&dom) {
                removed.push(dom);
                let _ = self
                    .xs
                    .request(XS_RM, &[format!("{BACKEND_ROOT}/{dom}").as_bytes(), b"\0"]);
                tprintln!("dom0: blkback: domain {dom} gone: its backend nodes removed");
            }
            return;
        }
        if !self.devices.contains_key(&(dom, devid)) {
            if let Some(d) = self.probe(dom, devid) {
                self.devices.insert((dom, devid), d);
            }
            return;
        }
        let Some(d) = self.devices.get_mut(&(dom, devid)) else {
            return;
        };
        step(&mut self.xs, d);
    }

    /// A device the toolstack described: opened and announced (InitWait), or `None` while
    /// its nodes are incomplete or when its target cannot be used (then `Closed`).
    fn probe(&mut self, dom: DomId, devid: u32) -> Option<Device> {
        let be = vbd::backend_path(dom, devid);
        let xs = &mut self.xs;
        let state = XenbusState::parse(xs.read(&format!("{be}/state"))?.as_bytes());
        if state != XenbusState::Initialising {
            return None;
        }
        let params = xs.read(&format!("{be}/params"))?;
        let mode = xs.read(&format!("{be}/mode"))?;
        let fe = xs
            .read(&format!("{be}/frontend"))
            .unwrap_or_else(|| vbd::frontend_path(dom, devid));
        let fail = |xs: &mut Xs, why: &str| {
            tprintln!("dom0: blkback: d{dom} {be}: {why}");
            let _ = xs.write(&format!("{be}/hotplug-error"), why);
            let _ = xs.write(&format!("{be}/state"), XenbusState::Closed.as_str());
            None
        };
        // The frontend must be the domain's own.
        if !fe.starts_with(&format!("/local/domain/{dom}/")) {
            return fail(xs, "frontend is not under the domain's home");
        }
        let Some(writable) = vbd::mode_writable(mode.as_bytes()) else {
            return fail(xs, "mode is neither r nor w");
        };
        let Some(dev) = blockdev::lookup(&params) else {
            return fail(xs, &format!("{params}: no such block device"));
        };
        let Some(info) = blockdev::info(dev) else {
            return fail(xs, &format!("{params}: no such block device"));
        };
        let read_only = !writable || info.read_only;
        // `feature-discard`: a discard is a hint, and the sectors it names read back
        // undefined (no `discard-zeroes-data`). dom0's virtio-blk driver (virtio-drivers)
        // negotiates neither DISCARD nor WRITE_ZEROES, so a checked discard (inside the
        // device, not on a read-only disk) is answered OKAY without telling the device: no
        // space is reclaimed until the driver negotiates VIRTIO_BLK_F_DISCARD.
        let keys: [(&str, String); 11] = [
            ("sectors", format!("{}", info.sectors)),
            ("sector-size", format!("{}", info.sector_size)),
            ("physical-sector-size", format!("{}", info.sector_size)),
            (
                "info",
                format!("{}", if read_only { VDISK_READONLY } else { 0 }),
            ),
            ("feature-flush-cache", "1".into()),
            ("feature-barrier", "1".into()),
            ("feature-discard", "1".into()),
            ("discard-granularity", format!("{}", info.sector_size)),
            ("discard-alignment", "0".into()),
            ("max-ring-page-order", "0".into()),
            ("feature-persistent", "1".into()),
        ];
        for (k, v) in keys {
            if xs.write(&format!("{be}/{k}"), &v).is_err() {
                return fail(xs, "cannot write the device's nodes");
            }
        }
        let _ = xs.watch(&format!("{fe}/state"), TOKEN_FE);
        let _ = xs.write(&format!("{be}/state"), XenbusState::InitWait.as_str());
        let mut d = Device {
            dom,
            devid,
            be,
            fe,
            dev,
            geo: Geometry {
                sectors: info.sectors,
                read_only,
            },
            phase: Phase::InitWait,
            ring: None,
            log: LogLimit::default(),
            served: 0,
            refused: 0,
        };
        // The frontend may be waiting already.
        step(xs, &mut d);
        Some(d)
    }

    fn serve_all(&mut self) {
        crate::wait::take_events();
        MORE.store(false, Ordering::Relaxed);
        let Backend {
            devices,
            buf,
            base,
            mfns,
            ..
        } = self;
        let scratch = &mut buf[*base..*base + SCRATCH_PAGES * PAGE];
        for d in devices.values_mut() {
            if d.phase == Phase::Connected {
                serve(d, scratch, mfns);
            }
        }
    }
}

/// One step of a known device's handshake, from what xenstore says now.
fn step(xs: &mut Xs, d: &mut Device) {
    let be_state = xs
        .read(&format!("{}/state", d.be))
        .map(|s| XenbusState::parse(s.as_bytes()))
        .unwrap_or(XenbusState::Unknown);
    let online = xs.read(&format!("{}/online", d.be));
    let fe_state = xs
        .read(&format!("{}/state", d.fe))
        .map(|s| XenbusState::parse(s.as_bytes()))
        .unwrap_or(XenbusState::Unknown);
    let closing = matches!(fe_state, XenbusState::Closing | XenbusState::Closed)
        || online.as_deref() == Some("0")
        || be_state == XenbusState::Closing;
    if closing {
        if d.phase != Phase::Closed {
            disconnect(d, "closed");
            // Not when the toolstack removed the directory: a write would make it again.
            if be_state != XenbusState::Unknown {
                let _ = xs.write(&format!("{}/state", d.be), XenbusState::Closed.as_str());
            }
        }
        return;
    }
    if d.phase == Phase::InitWait
        && matches!(fe_state, XenbusState::Initialised | XenbusState::Connected)
    {
        match connect(xs, d) {
            Ok(ring) => {
                d.ring = Some(ring);
                d.phase = Phase::Connected;
                let _ = xs.write(&format!("{}/state", d.be), XenbusState::Connected.as_str());
            }
            Err(why) => {
                log(d, format_args!("cannot connect: {why}"));
                d.phase = Phase::Closed;
                let _ = xs.write(&format!("{}/state", d.be), XenbusState::Closed.as_str());
            }
        }
    }
}

fn connect(xs: &mut Xs, d: &Device) -> Result<Ring, &'static str> {
    let gref: u32 = xs
        .read(&format!("{}/ring-ref", d.fe))
        .and_then(|s| s.trim().parse().ok())
        .ok_or("no ring-ref")?;
    let remote: u32 = xs
        .read(&format!("{}/event-channel", d.fe))
        .and_then(|s| s.trim().parse().ok())
        .ok_or("no event-channel")?;
    if let Some(p) = xs.read(&format!("{}/protocol", d.fe))
        && p != XEN_IO_PROTO_ABI_X86_64
    {
        return Err("protocol is not x86_64-abi");
    }
    let page = grantmap::map(d.dom, gref).map_err(|s| match s {
        guest_abi::grant::GNTST_NO_SPACE => "no room to map the ring",
        _ => "ring-ref is not granted to dom0 (writable)",
    })?;
    // The producer now: what is in the ring before the backend serves it is answered
    // with an error.
    let req_prod = grantmap::with(&page, |p| p.map(|p| p.read_u32(SRING_REQ_PROD)));
    let Some(req_prod) = req_prod else {
        grantmap::unmap(page);
        return Err("domain gone");
    };
    // Xen's `feature-persistent`: the frontend's own node says whether it reuses its grants.
    let persistent = xs
        .read(&format!("{}/feature-persistent", d.fe))
        .is_some_and(|v| v.trim() == "1");
    let port = match calls::evtchn_bind_interdomain(d.dom, remote) {
        Ok(p) => p,
        Err(_) => {
            grantmap::unmap(page);
            return Err("cannot bind the event channel");
        }
    };
    Ok(Ring {
        page,
        port,
        seen: u32::MAX,
        req_cons: 0,
        rsp_prod: 0,
        first_served: req_prod,
        broken: false,
        persistent,
        grants: Vec::new(),
    })
}

/// Lets go of a device's ring (its page unmapped, its channel closed) and says so once.
fn disconnect(d: &mut Device, why: &str) {
    if let Some(r) = d.ring.take() {
        grantmap::unmap(r.page);
        for (_, m) in r.grants {
            grantmap::unmap(m);
        }
        let _ = calls::evtchn_close(r.port);
    }
    if d.phase != Phase::Closed {
        tprintln!(
            "dom0: blkback: d{} device {} released ({why}; {} requests served, {} refused)",
            d.dom,
            d.devid,
            d.served,
            d.refused
        );
    }
    d.phase = Phase::Closed;
}

/// Runs grant copies; `Err` with the first bad status.
fn copy(ops: &mut [GnttabCopy]) -> Result<(), i16> {
    // SAFETY: every local end of these operations is a page of the backend's scratch
    // buffer, which the caller holds exclusively (`&mut`) and reads only after the call, or
    // of a disk's transfer buffer lent by its driver under the disk's lock, with no request
    // of the device on it (`blockdev::read_direct`, `blockdev::write_direct`).
    unsafe { calls::grant_copy(ops) }.map_err(|_| guest_abi::grant::GNTST_GENERAL_ERROR)?;
    match ops.iter().find(|o| o.status != GNTST_OKAY) {
        Some(o) => Err(o.status),
        None => Ok(()),
    }
}

fn from_gref(
    dom: DomId,
    gref: u32,
    offset: u16,
    mfn: u64,
    local_offset: u16,
    len: u16,
) -> GnttabCopy {
    GnttabCopy {
        source: GnttabCopyPtr::from_gref(gref, dom, offset),
        dest: GnttabCopyPtr::from_gmfn(mfn, local_offset),
        len,
        flags: GNTCOPY_SOURCE_GREF,
        status: 0,
    }
}

fn to_gref(
    dom: DomId,
    gref: u32,
    offset: u16,
    mfn: u64,
    local_offset: u16,
    len: u16,
) -> GnttabCopy {
    GnttabCopy {
        source: GnttabCopyPtr::from_gmfn(mfn, local_offset),
        dest: GnttabCopyPtr::from_gref(gref, dom, offset),
        len,
        flags: GNTCOPY_DEST_GREF,
        status: 0,
    }
}

/// What a look at a mapped ring found.
enum Look {
    /// The page was unmapped: the domain is being destroyed.
    Gone,
    /// `req_prod` more than a ring ahead of the responses.
    TooFar(u32),
    /// `new` requests published, the first `n` of them copied out.
    Took { new: u32, n: u32 },
}

/// Serves one device's ring: at most a ring's worth of requests.
fn serve(d: &mut Device, scratch: &mut [u8], mfns: &[u64; SCRATCH_PAGES]) {
    let Some(ring) = d.ring.as_mut() else {
        return;
    };
    if ring.broken {
        return;
    }
    let count = events::count(ring.port);
    if count == ring.seen && (ring.port as usize) < events::TRACKED_PORTS {
        return;
    }
    ring.seen = count;
    let (taken, data) = scratch.split_at_mut(PAGE);
    let (req_cons0, rsp_prod0) = (ring.req_cons, ring.rsp_prod);
    // The producer index, then (after an acquire fence: the frontend writes an entry before
    // it publishes it) each published entry copied out of the page once, into `taken`: the
    // frontend may rewrite the page at any moment, and nothing below reads it again.
    let look = grantmap::with(&ring.page, |p| {
        let Some(p) = p else {
            return Look::Gone;
        };
        let req_prod = p.read_u32(SRING_REQ_PROD);
        fence(Ordering::Acquire);
        let Some(new) = vbd::new_requests(req_prod, req_cons0, rsp_prod0) else {
            return Look::TooFar(req_prod);
        };
        let n = new.min(BLKIF_RING_SIZE);
        for i in 0..n {
            let at = entry_offset(req_cons0.wrapping_add(i));
            let k = i as usize * BLKIF_ENTRY_SIZE;
            p.read(at, &mut taken[k..k + BLKIF_ENTRY_SIZE]);
        }
        Look::Took { new, n }
    });
    let (new, n) = match look {
        Look::Gone => return gone(d),
        Look::TooFar(req_prod) => {
            ring.broken = true;
            tprintln!(
                "dom0: blkback: d{} {}: req_prod {req_prod} is more than a ring ahead of rsp_prod {}; not serving it",
                d.dom,
                d.be,
                ring.rsp_prod
            );
            return;
        }
        Look::Took { new: 0, .. } => return,
        Look::Took { new, n } => (new, n),
    };
    let dom = d.dom;
    let first_served = ring.first_served;
    let mut req_cons = req_cons0;
    let mut rsp_prod = rsp_prod0;
    for i in 0..n as usize {
        let idx = req_cons;
        req_cons = req_cons.wrapping_add(1);
        let mut e = [0u8; BLKIF_ENTRY_SIZE];
        e.copy_from_slice(&taken[i * BLKIF_ENTRY_SIZE..(i + 1) * BLKIF_ENTRY_SIZE]);
        let id = u64::from_le_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]);
        let operation = e[0];
        // Requests that were in the ring before the backend connected (wrapping compare).
        let early = (idx.wrapping_sub(first_served) as i32) < 0;
        let mut status = if early {
            d.refused += 1;
            log(
                d,
                format_args!("request {id:#x} sent before the backend connected"),
            );
            Err(BLKIF_RSP_ERROR)
        } else {
            vbd::check(&e, d.geo).map_err(|r| {
                d.refused += 1;
                log(d, format_args!("request {id:#x} refused: {r}"));
                r.status()
            })
        };
        if let Ok(action) = status {
            let grants = match d.ring.as_mut() {
                Some(r) if r.persistent => Some(&mut r.grants),
                _ => None,
            };
            status = match execute(dom, d.dev, &action, data, &mfns[1..], grants) {
                Ok(()) => {
                    d.served += 1;
                    Ok(action)
                }
                Err(why) => {
                    d.refused += 1;
                    log(d, format_args!("request {id:#x} failed: {why}"));
                    Err(if why == "not supported by the device" {
                        BLKIF_RSP_EOPNOTSUPP
                    } else {
                        BLKIF_RSP_ERROR
                    })
                }
            };
        }
        let rsp = BlkifResponse {
            id,
            operation,
            status: status.err().unwrap_or(BLKIF_RSP_OKAY),
        };
        // In its slot of the shared page (the request's own, already copied out). The page
        // may have gone while the request ran (dom0 destroyed the domain meanwhile).
        let Some(ring) = d.ring.as_ref() else {
            return;
        };
        let at = entry_offset(rsp_prod);
        let written = grantmap::with(&ring.page, |p| {
            p.map(|p| p.write(at, &rsp.to_bytes())).is_some()
        });
        if !written {
            return gone(d);
        }
        rsp_prod = rsp_prod.wrapping_add(1);
    }
    let Some(ring) = d.ring.as_mut() else {
        return;
    };
    ring.req_cons = req_cons;
    ring.rsp_prod = rsp_prod;
    // The responses before the index (release), then the next request wanted; then a last
    // look at the producer (Xen's RING_FINAL_CHECK_FOR_REQUESTS): more published meanwhile
    // are served by another round before dom0 blocks.
    let more = grantmap::with(&ring.page, |p| {
        let p = p?;
        fence(Ordering::Release);
        p.write_u32(SRING_RSP_PROD, rsp_prod);
        p.write_u32(SRING_REQ_EVENT, req_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Some(p.read_u32(SRING_REQ_PROD) != req_cons)
    });
    let Some(more) = more else {
        return gone(d);
    };
    if more || new > n {
        ring.seen = u32::MAX;
        MORE.store(true, Ordering::Relaxed);
    }
    let _ = calls::evtchn_send(ring.port);
}

/// The ring's page was unmapped because dom0 is destroying the domain: not served again
/// (the device is released when the domain's nodes go).
fn gone(d: &mut Device) {
    if let Some(r) = d.ring.as_mut()
        && !r.broken
    {
        r.broken = true;
        tprintln!(
            "dom0: blkback: d{} {}: ring unmapped (domain being destroyed); not serving it",
            d.dom,
            d.be
        );
    }
}

fn block_error(e: BlockError) -> &'static str {
    match e {
        BlockError::Unsupported => "not supported by the device",
        BlockError::OutOfRange => "out of range",
        BlockError::ReadOnly => "device is read-only",
        BlockError::Timeout => "device timed out",
        BlockError::NoMemory => "no memory",
        _ => "device error",
    }
}

fn grant_error(s: i16) -> &'static str {
    match s {
        guest_abi::grant::GNTST_BAD_GNTREF => "bad grant reference",
        guest_abi::grant::GNTST_PERMISSION_DENIED => "grant does not allow it",
        guest_abi::grant::GNTST_BAD_DOMAIN => "domain gone",
        _ => "grant copy failed",
    }
}

/// Where segment `i`'s bytes sit in the data pages: at its own offset in page `i`.
fn place(i: usize, s: &Segment) -> core::ops::Range<usize> {
    let start = i * PAGE + usize::from(s.offset);
    start..start + usize::from(s.len)
}

/// Runs of segments that are contiguous in the data pages (a whole-page segment followed
/// by one starting at its page's beginning), each done as one device access.
fn runs(segs: &[Segment]) -> Vec<(usize, core::ops::Range<usize>)> {
    let mut out: Vec<(usize, core::ops::Range<usize>)> = Vec::new();
    let mut sectors_before = 0usize;
    for (i, s) in segs.iter().enumerate() {
        let r = place(i, s);
        match out.last_mut() {
            Some((_, last)) if last.end == r.start => last.end = r.end,
            _ => out.push((sectors_before, r.clone())),
        }
        sectors_before += usize::from(s.len) / 512;
    }
    out
}

/// Grant copies between the segments and a machine-contiguous buffer starting at frame
/// `first`, the segments packed one after the other in it (the device's order); a piece of
/// a segment that crosses a page of the buffer is split. `into_buffer`: from the frontend's
/// grants into the buffer, else from the buffer to them. How many of `ops` are used.
fn packed(
    dom: DomId,
    segs: &[Segment],
    first: u64,
    into_buffer: bool,
    ops: &mut [GnttabCopy],
) -> usize {
    let mut n = 0;
    let mut at = 0usize;
    for s in segs {
        let mut left = usize::from(s.len);
        let mut remote = s.offset;
        while left > 0 && n < ops.len() {
            let off = at % PAGE;
            let piece = left.min(PAGE - off);
            let frame = first + (at / PAGE) as u64;
            ops[n] = if into_buffer {
                from_gref(dom, s.gref, remote, frame, off as u16, piece as u16)
            } else {
                to_gref(dom, s.gref, remote, frame, off as u16, piece as u16)
            };
            n += 1;
            at += piece;
            remote += piece as u16;
            left -= piece;
        }
    }
    n
}

/// Where each of `segs`' grants is mapped, as indexes into `grants` (the device's persistent
/// grants), mapping those not yet mapped while it has room; `None` when one cannot be (not
/// granted writable, no room): the request goes by grant copy.
fn persistent(
    dom: DomId,
    segs: &[Segment],
    grants: &mut Vec<(u32, Mapped)>,
) -> Option<[usize; BLKIF_MAX_SEGMENTS_PER_REQUEST]> {
    let mut at = [0usize; BLKIF_MAX_SEGMENTS_PER_REQUEST];
    for (i, s) in segs.iter().enumerate() {
        at[i] = match grants.iter().position(|(g, _)| *g == s.gref) {
            Some(k) => k,
            None => {
                if grants.len() >= MAX_PERSISTENT {
                    return None;
                }
                grants.try_reserve(1).ok()?;
                let m = grantmap::map(dom, s.gref).ok()?;
                grants.push((s.gref, m));
                grants.len() - 1
            }
        };
    }
    Some(at)
}

/// Copies between the segments' mapped pages (`at`: their indexes in `grants`) and `buf`,
/// the segments packed one after the other in it (the device's order). `into_buffer`: from
/// the pages into `buf`. `Err(true)` if a page was unmapped meanwhile (the domain is being
/// destroyed).
fn copy_mapped(
    segs: &[Segment],
    grants: &[(u32, Mapped)],
    at: &[usize],
    buf: &mut [u8],
    into_buffer: bool,
) -> Result<(), bool> {
    let mut off = 0usize;
    for (s, &k) in segs.iter().zip(at) {
        let len = usize::from(s.len);
        let part = buf.get_mut(off..off + len).ok_or(false)?;
        let (_, m) = grants.get(k).ok_or(false)?;
        let done = grantmap::with(m, |p| {
            p.map(|p| {
                if into_buffer {
                    p.copy_out(usize::from(s.offset), part)
                } else {
                    p.copy_in(usize::from(s.offset), part)
                }
            })
        });
        if done.is_none() {
            return Err(true);
        }
        off += len;
    }
    Ok(())
}

/// Carries out a checked request; `grants`: the device's persistent grants, if it uses them.
fn execute(
    dom: DomId,
    dev: DevId,
    action: &Action,
    data: &mut [u8],
    mfns: &[u64],
    grants: Option<&mut Vec<(u32, Mapped)>>,
) -> Result<(), &'static str> {
    match *action {
        Action::Flush => blockdev::flush(dev).map_err(block_error),
        // Checked by `vbd::check` (inside the device, not read-only); a hint the device is
        // not told of (see `feature-discard` in `Backend::probe`).
        Action::Discard { .. } => Ok(()),
        Action::Read { sector, segs, nr } => {
            let segs = &segs[..nr];
            let total: usize = segs.iter().map(|s| usize::from(s.len)).sum();
            // Persistent grants: from the driver's transfer buffer into the mapped pages.
            if let Some(grants) = grants
                && let Some(at) = persistent(dom, segs, grants)
            {
                let mut lent = false;
                let mut gone = false;
                let r = blockdev::read_direct(dev, sector, total, &mut |_, buf| {
                    lent = true;
                    copy_mapped(segs, grants, &at[..nr], buf, false).map_err(|g| {
                        gone = g;
                        BlockError::Io
                    })
                });
                match r {
                    Err(BlockError::Unsupported) if !lent => {}
                    Err(_) if gone => return Err("domain gone"),
                    r => return r.map_err(block_error),
                }
            }
            // Straight from the driver's transfer buffer to the frontend's pages.
            let mut status = GNTST_OKAY;
            let mut lent = false;
            let r = blockdev::read_direct(dev, sector, total, &mut |first, _| {
                lent = true;
                let mut ops = [GnttabCopy::default(); DATA_BATCH];
                let n = packed(dom, segs, first, false, &mut ops);
                copy(&mut ops[..n]).map_err(|s| {
                    status = s;
                    BlockError::Io
                })
            });
            match r {
                Err(BlockError::Unsupported) if !lent => {}
                Err(_) if status != GNTST_OKAY => return Err(grant_error(status)),
                r => return r.map_err(block_error),
            }
            for (before, r) in runs(segs) {
                blockdev::read(dev, sector + before as u64, &mut data[r]).map_err(block_error)?;
            }
            let mut ops = [GnttabCopy::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            for (i, s) in segs.iter().enumerate() {
                ops[i] = to_gref(dom, s.gref, s.offset, mfns[i], s.offset, s.len);
            }
            copy(&mut ops[..nr]).map_err(grant_error)
        }
        Action::Write {
            sector,
            segs,
            nr,
            flush,
        } => write(dom, dev, sector, &segs[..nr], flush, data, mfns, grants),
    }
}

/// Carries out a checked write (a barrier when `flush`); `grants` as for [`execute`].
#[allow(clippy::too_many_arguments)]
fn write(
    dom: DomId,
    dev: DevId,
    sector: u64,
    segs: &[Segment],
    flush: bool,
    data: &mut [u8],
    mfns: &[u64],
    grants: Option<&mut Vec<(u32, Mapped)>>,
) -> Result<(), &'static str> {
    if flush {
        blockdev::flush(dev).map_err(block_error)?;
    }
    let total: usize = segs.iter().map(|s| usize::from(s.len)).sum();
    // Persistent grants: from the mapped pages into the driver's transfer buffer.
    if let Some(grants) = grants
        && let Some(at) = persistent(dom, segs, grants)
    {
        let mut lent = false;
        let mut gone = false;
        let r = blockdev::write_direct(dev, sector, total, &mut |_, buf| {
            lent = true;
            copy_mapped(segs, grants, &at[..segs.len()], buf, true).map_err(|g| {
                gone = g;
                BlockError::Io
            })
        });
        match r {
            Err(BlockError::Unsupported) if !lent => {}
            Err(_) if gone => return Err("domain gone"),
            r => {
                r.map_err(block_error)?;
                if flush {
                    blockdev::flush(dev).map_err(block_error)?;
                }
                return Ok(());
            }
        }
    }
    // Straight from the frontend's pages into the driver's transfer buffer: every
    // segment is copied before anything is written, so a bad grant writes nothing.
    let mut status = GNTST_OKAY;
    let mut lent = false;
    let r = blockdev::write_direct(dev, sector, total, &mut |first, _| {
        lent = true;
        let mut ops = [GnttabCopy::default(); 2 * BLKIF_MAX_SEGMENTS_PER_REQUEST];
        let n = packed(dom, segs, first, true, &mut ops);
        copy(&mut ops[..n]).map_err(|s| {
            status = s;
            BlockError::Io
        })
    });
    match r {
        Err(BlockError::Unsupported) if !lent => {
            let mut ops = [GnttabCopy::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            for (i, s) in segs.iter().enumerate() {
                ops[i] = from_gref(dom, s.gref, s.offset, mfns[i], s.offset, s.len);
            }
            copy(&mut ops[..segs.len()]).map_err(grant_error)?;
            for (before, r) in runs(segs) {
                blockdev::write(dev, sector + before as u64, &data[r]).map_err(block_error)?;
            }
        }
        Err(_) if status != GNTST_OKAY => return Err(grant_error(status)),
        r => r.map_err(block_error)?,
    }
    if flush {
        blockdev::flush(dev).map_err(block_error)?;
    }
    Ok(())
}
