//! A xenbus client: xenstore requests over the domain's store ring (guest-abi
//! [`xenstore`](guest_abi::xenstore), porting guide "xenstore"): read, write, mkdir, rm,
//! directory, watch and unwatch, and transactions ([`Xenbus::transaction_start`],
//! [`Xenbus::read_in`], [`Xenbus::write_in`], [`Xenbus::transaction_end`]: `EAGAIN` at the
//! end means start again); any other message with [`Xenbus::request_in`].
//!
//! [`Xenbus::connect`] finds the ring `start_info.store_mfn` names at its start-of-day
//! address (checked against the p2m) and the channel `store_evtchn`. Each request is written
//! into the request ring, the channel notified, and the reply awaited with
//! [`events::block_until`] until a deadline ([`REPLY_WAIT_NS`]): a store that does not
//! answer costs the caller that long, then `ETIMEDOUT`. Watch events that arrive meanwhile
//! are kept (up to [`MAX_EVENTS`], each at most [`EVENT_MAX`] bytes; more are counted as
//! lost) for [`Xenbus::next_event`]. Their notification was taken with the reply's, so
//! nothing wakes the kernel for them again: look at [`Xenbus::has_events`] before
//! sleeping.
//!
//! It is used from one vCPU at a time (the kernel's main flow), with events masked, as the
//! rest of the runtime; it allocates nothing (a [`Xenbus`] is about 6 KiB: keep it in a
//! `static` or on a big enough stack).

use core::sync::atomic::{AtomicU32, Ordering, fence};

use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::event::{EvtchnPort, VIRQ_TIMER};
use guest_abi::types::PAGE_SIZE;
use guest_abi::xenstore::{
    XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XS_DIRECTORY, XS_ERROR, XS_MKDIR, XS_READ, XS_RM,
    XS_TRANSACTION_END, XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
    XenstoreDomainInterface as Iface, XsdSockmsg, error_from, store_ring_va,
};

use crate::events;
use crate::time::{NS_PER_MS, now_ns};

/// How long a request waits for its reply.
pub const REPLY_WAIT_NS: u64 = 5_000 * NS_PER_MS;
/// Watch events kept until [`Xenbus::next_event`] takes them.
pub const MAX_EVENTS: usize = 8;
/// Largest watch event kept (path, token and their NULs); longer ones are lost.
pub const EVENT_MAX: usize = 256;

const RING: u32 = XENSTORE_RING_SIZE as u32;

/// Tells the store to look at the ring. Until dom0 has bound its end (it does when the
/// toolstack hands the domain over, just after building it) the send fails: nothing is
/// lost, since the store reads the whole ring when it binds.
fn notify(port: EvtchnPort) {
    let _ = calls::evtchn_send(port);
}

/// A watch event: the path that changed and the watch's token.
#[derive(Clone, Copy)]
pub struct WatchEvent {
    bytes: [u8; EVENT_MAX],
    len: usize,
}

impl WatchEvent {
    fn part(&self, i: usize) -> &str {
        let body = &self.bytes[..self.len];
        let s = body.split(|&b| b == 0).nth(i).unwrap_or(&[]);
        core::str::from_utf8(s).unwrap_or("")
    }

    /// The node that changed (relative to the domain's home when the watch was).
    pub fn path(&self) -> &str {
        self.part(0)
    }

    /// The token the watch was set with.
    pub fn token(&self) -> &str {
        self.part(1)
    }
}

/// A connection to the store.
pub struct Xenbus {
    ring: u64,
    port: EvtchnPort,
    next_id: u32,
    /// The message being received: header and payload so far.
    msg: [u8; XsdSockmsg::SIZE + XENSTORE_PAYLOAD_MAX],
    have: usize,
    events: [WatchEvent; MAX_EVENTS],
    nr_events: usize,
    lost: u32,
}

/// Why [`Xenbus::connect`] found no store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoStore {
    /// `start_info` names none (dom0, or a domain built without a store).
    None,
    /// The page at the start-of-day address is not the frame `store_mfn` names.
    Disagrees,
}

impl Xenbus {
    /// The store `start_info` names.
    pub fn connect() -> Result<Self, NoStore> {
        let si = crate::boot::start_info();
        if si.store_mfn.0 == 0 || si.store_evtchn == 0 {
            return Err(NoStore::None);
        }
        let ring = store_ring_va(crate::boot::start_info_va());
        let pfn = (ring - crate::boot::VIRT_BASE) / PAGE_SIZE as u64;
        if crate::mm::p2m(pfn) != si.store_mfn.0 {
            return Err(NoStore::Disagrees);
        }
        // Waits end at their deadline only if the timer VIRQ is bound (the kernel may have
        // bound it already).
        let _ = events::bind_virq(VIRQ_TIMER);
        Ok(Self {
            ring,
            port: si.store_evtchn,
            next_id: 1,
            msg: [0; XsdSockmsg::SIZE + XENSTORE_PAYLOAD_MAX],
            have: 0,
            events: [WatchEvent {
                bytes: [0; EVENT_MAX],
                len: 0,
            }; MAX_EVENTS],
            nr_events: 0,
            lost: 0,
        })
    }

    /// The store's event channel (it wakes [`events::block_until`]).
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Watch events lost because too many waited or one was too long.
    pub fn lost_events(&self) -> u32 {
        self.lost
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `ring` is the store ring page, mapped writable for the domain's life
        // (checked against the p2m in `connect`); `at` is one of the interface's 4-aligned
        // index offsets, inside the page. The store writes it concurrently, hence atomic.
        unsafe { &*((self.ring + at as u64) as *const AtomicU32) }
    }

    fn byte(&self, at: usize) -> *mut u8 {
        debug_assert!(at < Iface::REQ_CONS);
        (self.ring + at as u64) as *mut u8
    }

    /// Copies `bytes` into the request ring, waiting for room until `deadline`.
    fn send(&mut self, bytes: &[u8], deadline: u64) -> Result<(), Errno> {
        let mut sent = 0;
        while sent < bytes.len() {
            let cons = self.index(Iface::REQ_CONS).load(Ordering::Acquire);
            let prod = self.index(Iface::REQ_PROD).load(Ordering::Relaxed);
            let used = prod.wrapping_sub(cons);
            if used >= RING {
                // Full (or the store wrote nonsense): let it catch up.
                if now_ns() >= deadline {
                    return Err(Errno::ETIMEDOUT);
                }
                notify(self.port);
                self.pump();
                events::block_until(Some(deadline));
                continue;
            }
            let n = ((RING - used) as usize).min(bytes.len() - sent);
            for (i, &b) in bytes[sent..sent + n].iter().enumerate() {
                let at = Iface::REQ + (prod.wrapping_add(i as u32) % RING) as usize;
                // SAFETY: inside the request ring of the mapped page (see `index`).
                unsafe { self.byte(at).write_volatile(b) };
            }
            // The bytes before the index that publishes them.
            fence(Ordering::Release);
            self.index(Iface::REQ_PROD)
                .store(prod.wrapping_add(n as u32), Ordering::Release);
            sent += n;
        }
        notify(self.port);
        Ok(())
    }

    /// Takes what the response ring holds into the current message; returns a complete
    /// message's header if one is there (its payload in `self.msg`).
    fn receive(&mut self) -> Option<XsdSockmsg> {
        loop {
            let prod = self.index(Iface::RSP_PROD).load(Ordering::Acquire);
            let cons = self.index(Iface::RSP_CONS).load(Ordering::Relaxed);
            let avail = prod.wrapping_sub(cons).min(RING);
            let want = if self.have < XsdSockmsg::SIZE {
                XsdSockmsg::SIZE - self.have
            } else {
                let h = XsdSockmsg::from_bytes(&self.msg)?;
                (h.len as usize).min(XENSTORE_PAYLOAD_MAX) + XsdSockmsg::SIZE - self.have
            };
            if want == 0 {
                self.have = 0;
                return XsdSockmsg::from_bytes(&self.msg);
            }
            if avail == 0 {
                return None;
            }
            let n = want.min(avail as usize);
            for i in 0..n {
                let at = Iface::RSP + (cons.wrapping_add(i as u32) % RING) as usize;
                // SAFETY: inside the response ring of the mapped page (see `index`).
                self.msg[self.have + i] = unsafe { self.byte(at).read_volatile() };
            }
            self.have += n;
            // Read the bytes before giving their room back, then tell the store.
            fence(Ordering::AcqRel);
            self.index(Iface::RSP_CONS)
                .store(cons.wrapping_add(n as u32), Ordering::Release);
            notify(self.port);
        }
    }

    /// Keeps a watch event from `self.msg`.
    fn keep_event(&mut self, len: usize) {
        let body = &self.msg[XsdSockmsg::SIZE..XsdSockmsg::SIZE + len];
        if len > EVENT_MAX || self.nr_events == MAX_EVENTS {
            self.lost = self.lost.saturating_add(1);
            return;
        }
        let e = &mut self.events[self.nr_events];
        e.bytes[..len].copy_from_slice(body);
        e.len = len;
        self.nr_events += 1;
    }

    /// Receives every complete message waiting; events are kept, anything else (a reply
    /// nobody waits for) dropped.
    fn pump(&mut self) {
        while let Some(h) = self.receive() {
            if h.msg_type == XS_WATCH_EVENT {
                self.keep_event((h.len as usize).min(XENSTORE_PAYLOAD_MAX));
            }
        }
    }

    /// Whether watch events wait for [`Xenbus::next_event`] (kept, or in the ring).
    pub fn has_events(&mut self) -> bool {
        self.pump();
        self.nr_events > 0
    }

    /// The next watch event that arrived, without waiting.
    pub fn next_event(&mut self) -> Option<WatchEvent> {
        self.pump();
        if self.nr_events == 0 {
            return None;
        }
        let e = self.events[0];
        self.events.copy_within(1..self.nr_events, 0);
        self.nr_events -= 1;
        Some(e)
    }

    /// Sends a request of type `msg_type` whose payload is `parts` one after the other,
    /// and waits for its reply: the payload is copied into `out` (cut to its length) and
    /// its full length returned; an `XS_ERROR` reply gives its errno.
    pub fn request(
        &mut self,
        msg_type: u32,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, Errno> {
        self.request_in(0, msg_type, parts, out)
    }

    /// [`Xenbus::request`] in transaction `tx` (0: none).
    pub fn request_in(
        &mut self,
        tx: u32,
        msg_type: u32,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, Errno> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(Errno::E2BIG);
        }
        let req_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let hdr = XsdSockmsg {
            msg_type,
            req_id,
            tx_id: tx,
            len: len as u32,
        };
        let deadline = now_ns() + REPLY_WAIT_NS;
        self.send(&hdr.to_bytes(), deadline)?;
        for p in parts {
            self.send(p, deadline)?;
        }
        loop {
            while let Some(h) = self.receive() {
                let n = (h.len as usize).min(XENSTORE_PAYLOAD_MAX);
                if h.msg_type == XS_WATCH_EVENT {
                    self.keep_event(n);
                    continue;
                }
                if h.req_id != req_id {
                    continue;
                }
                let body = &self.msg[XsdSockmsg::SIZE..XsdSockmsg::SIZE + n];
                if h.msg_type == XS_ERROR {
                    return Err(error_from(body));
                }
                let m = n.min(out.len());
                out[..m].copy_from_slice(&body[..m]);
                return Ok(n);
            }
            if now_ns() >= deadline {
                return Err(Errno::ETIMEDOUT);
            }
            events::block_until(Some(deadline));
        }
    }

    /// `XS_READ`: the value of `path` into `out`; its full length.
    pub fn read(&mut self, path: &str, out: &mut [u8]) -> Result<usize, Errno> {
        self.request(XS_READ, &[path.as_bytes(), b"\0"], out)
    }

    /// `XS_WRITE`: sets `path` to `value`.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.request(XS_WRITE, &[path.as_bytes(), b"\0", value], &mut [])
            .map(drop)
    }

    /// `XS_WATCH`: events for `path` and below, with `token`. The store fires it once at
    /// once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Errno> {
        self.request(
            XS_WATCH,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
            &mut [],
        )
        .map(drop)
    }

    /// `XS_READ` in transaction `tx`.
    pub fn read_in(&mut self, tx: u32, path: &str, out: &mut [u8]) -> Result<usize, Errno> {
        self.request_in(tx, XS_READ, &[path.as_bytes(), b"\0"], out)
    }

    /// `XS_WRITE` in transaction `tx`.
    pub fn write_in(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.request_in(tx, XS_WRITE, &[path.as_bytes(), b"\0", value], &mut [])
            .map(drop)
    }

    /// `XS_MKDIR`.
    pub fn mkdir(&mut self, path: &str) -> Result<(), Errno> {
        self.request(XS_MKDIR, &[path.as_bytes(), b"\0"], &mut [])
            .map(drop)
    }

    /// `XS_RM`.
    pub fn rm(&mut self, path: &str) -> Result<(), Errno> {
        self.request(XS_RM, &[path.as_bytes(), b"\0"], &mut [])
            .map(drop)
    }

    /// `XS_DIRECTORY`: the children's names, each NUL-terminated, into `out`; the full
    /// length.
    pub fn directory(&mut self, path: &str, out: &mut [u8]) -> Result<usize, Errno> {
        self.request(XS_DIRECTORY, &[path.as_bytes(), b"\0"], out)
    }

    /// `XS_UNWATCH`.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Errno> {
        self.request(
            XS_UNWATCH,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
            &mut [],
        )
        .map(drop)
    }

    /// `XS_TRANSACTION_START`: the new transaction's id.
    pub fn transaction_start(&mut self) -> Result<u32, Errno> {
        let mut id = [0u8; 16];
        let n = self.request(XS_TRANSACTION_START, &[b"\0"], &mut id)?;
        let text = id[..n.min(16)].split(|&b| b == 0).next().unwrap_or(&[]);
        core::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(Errno::EIO)
    }

    /// `XS_TRANSACTION_END`: commits transaction `tx` (`EAGAIN`: it conflicted, nothing
    /// of it applied; start again) or, without `commit`, drops it.
    pub fn transaction_end(&mut self, tx: u32, commit: bool) -> Result<(), Errno> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request_in(tx, XS_TRANSACTION_END, &[arg], &mut [])
            .map(drop)
    }

    /// Copies as many copies of the whole message `msg` as the request ring has room for,
    /// without waiting for replies, and notifies the store: how many (for flooding a store
    /// in tests).
    pub fn send_nowait(&mut self, msg: &[u8]) -> usize {
        let cons = self.index(Iface::REQ_CONS).load(Ordering::Acquire);
        let prod = self.index(Iface::REQ_PROD).load(Ordering::Relaxed);
        let room = RING.saturating_sub(prod.wrapping_sub(cons)) as usize;
        let copies = if msg.is_empty() { 0 } else { room / msg.len() };
        let mut at = prod;
        for _ in 0..copies {
            for &b in msg {
                let off = Iface::REQ + (at % RING) as usize;
                // SAFETY: inside the request ring of the mapped page (see `index`).
                unsafe { self.byte(off).write_volatile(b) };
                at = at.wrapping_add(1);
            }
        }
        if copies > 0 {
            fence(Ordering::Release);
            self.index(Iface::REQ_PROD).store(at, Ordering::Release);
            notify(self.port);
        }
        copies
    }

    /// Takes every whole message waiting in the response ring: watch events are kept,
    /// replies dropped. How many replies were dropped.
    pub fn drop_replies(&mut self) -> usize {
        let mut n = 0;
        while let Some(h) = self.receive() {
            if h.msg_type == XS_WATCH_EVENT {
                self.keep_event((h.len as usize).min(XENSTORE_PAYLOAD_MAX));
            } else {
                n += 1;
            }
        }
        n
    }

    /// Writes raw bytes into the request ring (for testing a store against malformed
    /// messages; nothing is checked) and waits for the next message that is not a watch
    /// event, whatever its `req_id`: its type, and its payload copied into `out` (its full
    /// length returned).
    pub fn exchange_raw(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<(u32, usize), Errno> {
        let deadline = now_ns() + REPLY_WAIT_NS;
        self.send(bytes, deadline)?;
        loop {
            while let Some(h) = self.receive() {
                let n = (h.len as usize).min(XENSTORE_PAYLOAD_MAX);
                if h.msg_type == XS_WATCH_EVENT {
                    self.keep_event(n);
                    continue;
                }
                let m = n.min(out.len());
                out[..m].copy_from_slice(&self.msg[XsdSockmsg::SIZE..XsdSockmsg::SIZE + m]);
                return Ok((h.msg_type, n));
            }
            if now_ns() >= deadline {
                return Err(Errno::ETIMEDOUT);
            }
            events::block_until(Some(deadline));
        }
    }

    /// Sets the domain's own `req_prod` index to `value` and notifies the store (for testing
    /// a store against impossible indexes: the ring is unusable afterwards).
    pub fn corrupt_req_prod(&mut self, value: u32) {
        self.index(Iface::REQ_PROD).store(value, Ordering::Release);
        notify(self.port);
    }

    /// The ring's `error` field (`XENSTORE_ERROR_*`, written by the store).
    pub fn ring_error(&self) -> u32 {
        self.index(Iface::ERROR).load(Ordering::Acquire)
    }
}
