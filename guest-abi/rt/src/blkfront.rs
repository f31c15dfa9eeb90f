//! blkfront: a virtual disk from dom0's blkback (guest-abi [`blkif`](guest_abi::blkif),
//! porting guide "Disks").
//!
//! [`probe`] lists the domain's `device/vbd` nodes; [`Blkfront::connect`] does the frontend's
//! half of Xen's handshake on one of them: it grows the grant table to one frame and maps it
//! at window slot [`TABLE_SLOT`], grants dom0 the ring page (ref [`RING_REF`]) and the
//! [`QUEUE_DEPTH`] * [`BLKIF_MAX_SEGMENTS_PER_REQUEST`] data pages (refs after it), allocates an unbound
//! channel for the backend, writes `ring-ref`, `event-channel`, `protocol` and `state` = 3
//! (Initialised), and waits (at most [`CONNECT_WAIT_NS`]) for the backend's `state` = 4 and
//! the disk's `sectors`, `sector-size`, `info` and `feature-persistent` (the frontend says
//! `feature-persistent` = 1 too). [`Blkfront::read`], [`Blkfront::write`],
//! [`Blkfront::flush`] and [`Blkfront::discard`] then put requests in the ring and wait for
//! their responses (with persistent grants, a read or write of more than [`MAX_IO`] bytes
//! keeps up to [`QUEUE_DEPTH`] requests in flight, published and notified together; else
//! one at a time; each wait at most [`IO_WAIT_NS`], with `SCHEDOP_poll` on the ring's port
//! and events masked: one hypercall and no upcall per wait); data moves through the granted
//! pages ([`QUEUE_DEPTH`] sets of [`BLKIF_MAX_SEGMENTS_PER_REQUEST`]), 44 KiB a request
//! (without persistent grants, a buffer that is sector-aligned and in the bootstrap mappings
//! lends its own pages instead, refs from `LEND_REF`: read-only for a write, writable for a
//! read, ended as soon as the response arrives; with them, the backend keeps the data pages
//! mapped and every request goes through them, one copy in the guest).
//! [`Blkfront::disconnect`] writes Closing, waits (bounded) for the backend's Closed, ends
//! the grants and closes the channel.
//!
//! The ring and data pages are static (in `.bss`), so there is one frontend at a time; it
//! allocates nothing.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

use guest_abi::Errno;
use guest_abi::blkif::{
    BLKIF_ENTRY_SIZE, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RING_SIZE, BLKIF_RSP_OKAY, BlkifRequest,
    BlkifRequestDiscard, BlkifRequestSegment, BlkifResponse, SECTOR_SIZE, SRING_REQ_EVENT,
    SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD, VDISK_READONLY, XEN_IO_PROTO_ABI_X86_64,
    XenbusState, entry_offset,
};
use guest_abi::calls;
use guest_abi::event::EvtchnPort;
use guest_abi::grant::{GNTST_OKAY, GTF_PERMIT_ACCESS, GTF_READONLY, GrantRef};
use guest_abi::types::{DOMID_SELF, DomId};
use guest_abi::xenstore::XS_DIRECTORY;

use crate::boot::VIRT_BASE;
use crate::mm::{self, Window};
use crate::time::{NS_PER_MS, now_ns};
use crate::xenbus::Xenbus;
use crate::{events, println};

/// The window slot the grant table is mapped at while a frontend is connected.
pub const TABLE_SLOT: usize = mm::FREE_SLOTS - 1;
/// The grant reference of the ring page (the first one past Xen's reserved entries).
pub const RING_REF: GrantRef = guest_abi::grant::GNTTAB_NR_RESERVED_ENTRIES;
/// How long the handshake waits for the backend.
pub const CONNECT_WAIT_NS: u64 = 10_000 * NS_PER_MS;
/// How long a request waits for its response.
pub const IO_WAIT_NS: u64 = 10_000 * NS_PER_MS;
/// Bytes a request moves at most.
pub const MAX_IO: usize = BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE;

/// Requests [`Blkfront::read`] and [`Blkfront::write`] keep in flight at most, with
/// persistent grants: a buffer of more than [`MAX_IO`] bytes goes as up to this many
/// requests published together (one notification), each on its own
/// [`BLKIF_MAX_SEGMENTS_PER_REQUEST`] data pages, and the backend serves them in one round.
pub const QUEUE_DEPTH: usize = 4;

const PAGE: usize = 4096;
const DATA_PAGES: usize = QUEUE_DEPTH * BLKIF_MAX_SEGMENTS_PER_REQUEST;
const PAGES: usize = 1 + DATA_PAGES;
/// The first of the references that lend a write's own pages (read-only) to the backend.
const LEND_REF: GrantRef = RING_REF + PAGES as u32;

#[repr(C, align(4096))]
struct Pages(UnsafeCell<[u8; PAGES * PAGE]>);

// SAFETY: the pages are used only by the one connected frontend (`IN_USE`), from the main
// flow; the backend writes them through grant copies, which the frontend copies out (after
// an acquire fence) only once the response that announces them has arrived.
unsafe impl Sync for Pages {}

/// The ring page, then the data pages.
static PAGES_AREA: Pages = Pages(UnsafeCell::new([0; PAGES * PAGE]));
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Why a disk operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such device, or another frontend is connected.
    NoDevice,
    /// A xenstore request failed.
    Store(Errno),
    /// The backend did not answer in time (handshake or request).
    Timeout,
    /// The backend answered with this `BLKIF_RSP_*` status.
    Status(i16),
    /// The backend closed or failed the device.
    Closed,
    /// The hypervisor refused a grant or channel operation.
    Hypervisor,
    /// Sectors beyond the disk, or a buffer not a whole number of sectors.
    Range,
    /// The disk is read-only.
    ReadOnly,
}

/// A short path or value kept without allocating.
#[derive(Clone, Copy)]
struct Text {
    bytes: [u8; 96],
    len: usize,
}

impl Text {
    fn new(parts: &[&str]) -> Option<Text> {
        let mut t = Text {
            bytes: [0; 96],
            len: 0,
        };
        for p in parts {
            let b = p.as_bytes();
            if t.len + b.len() > t.bytes.len() {
                return None;
            }
            t.bytes[t.len..t.len + b.len()].copy_from_slice(b);
            t.len += b.len();
        }
        Some(t)
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// A decimal number without allocating.
fn num(v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("0")
}

fn read_node(xs: &mut Xenbus, parts: &[&str]) -> Result<Text, Error> {
    let path = Text::new(parts).ok_or(Error::Store(Errno::E2BIG))?;
    let mut out = [0u8; 96];
    let n = xs.read(path.as_str(), &mut out).map_err(Error::Store)?;
    let s = core::str::from_utf8(&out[..n.min(out.len())]).map_err(|_| Error::Closed)?;
    Text::new(&[s]).ok_or(Error::Store(Errno::E2BIG))
}

fn read_u64(xs: &mut Xenbus, parts: &[&str]) -> Result<u64, Error> {
    read_node(xs, parts)?
        .as_str()
        .trim()
        .parse()
        .map_err(|_| Error::Closed)
}

fn write_node(xs: &mut Xenbus, parts: &[&str], value: &str) -> Result<(), Error> {
    let path = Text::new(parts).ok_or(Error::Store(Errno::E2BIG))?;
    xs.write(path.as_str(), value.as_bytes())
        .map_err(Error::Store)
}

/// The domain's virtual block devices (`device/vbd/<devid>`): their numbers, into `out`;
/// how many there are.
pub fn probe(xs: &mut Xenbus, out: &mut [u32]) -> usize {
    let mut list = [0u8; 512];
    let Ok(n) = xs.request(XS_DIRECTORY, &[b"device/vbd\0"], &mut list) else {
        return 0;
    };
    let mut found = 0;
    for name in list[..n.min(list.len())].split(|&b| b == 0) {
        let Some(id) = core::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if found < out.len() {
            out[found] = id;
        }
        found += 1;
    }
    found
}

/// A connected virtual disk.
pub struct Blkfront {
    devid: u32,
    backend: Text,
    backend_id: DomId,
    port: EvtchnPort,
    table: Option<Window>,
    sectors: u64,
    sector_size: u32,
    read_only: bool,
    discard: bool,
    /// Both ends said `feature-persistent`: only the data pages' grants are used (no
    /// lending), and the backend keeps them mapped.
    persistent: bool,
    req_prod: u32,
    rsp_cons: u32,
    next_id: u64,
}

fn area() -> *mut u8 {
    PAGES_AREA.0.get() as *mut u8
}

fn page_mfn(i: usize) -> u64 {
    let va = area() as u64 + (i * PAGE) as u64;
    mm::p2m((va - VIRT_BASE) / PAGE as u64)
}

fn ring_word(at: usize) -> &'static AtomicU32 {
    // SAFETY: `at` is one of the ring header's 4-aligned index offsets, inside the ring page
    // (page 0 of the static area); the backend writes it concurrently, hence atomic.
    unsafe { &*(area().add(at) as *const AtomicU32) }
}

impl Blkfront {
    /// Connects to device `devid` (`device/vbd/<devid>`), as described above.
    pub fn connect(xs: &mut Xenbus, devid: u32) -> Result<Blkfront, Error> {
        Self::connect_with_early(xs, devid, &[])
    }

    /// [`Blkfront::connect`], putting `early` in the ring before the frontend says
    /// Initialised (what a hostile frontend might do: the backend answers them with errors,
    /// first thing once connected).
    pub fn connect_with_early(
        xs: &mut Xenbus,
        devid: u32,
        early: &[[u8; BLKIF_ENTRY_SIZE]],
    ) -> Result<Blkfront, Error> {
        if IN_USE.swap(true, Ordering::SeqCst) {
            return Err(Error::NoDevice);
        }
        let r = Self::handshake(xs, devid, early);
        if r.is_err() {
            IN_USE.store(false, Ordering::SeqCst);
        }
        r
    }

    fn handshake(
        xs: &mut Xenbus,
        devid: u32,
        early: &[[u8; BLKIF_ENTRY_SIZE]],
    ) -> Result<Blkfront, Error> {
        let mut nb = [0u8; 20];
        let dev = Text::new(&["device/vbd/", num(devid.into(), &mut nb)]).ok_or(Error::NoDevice)?;
        let dev = dev.as_str();
        let backend = read_node(xs, &[dev, "/backend"]).map_err(|_| Error::NoDevice)?;
        let backend_id = read_u64(xs, &[dev, "/backend-id"]).unwrap_or(0) as DomId;
        let mut f = Blkfront {
            devid,
            backend,
            backend_id,
            port: 0,
            table: None,
            sectors: 0,
            sector_size: 512,
            read_only: false,
            discard: false,
            persistent: false,
            req_prod: 0,
            rsp_cons: 0,
            next_id: 1,
        };
        // The grant table's first frame, mapped for the frontend's life.
        let mut frames = [0u64; 1];
        if calls::grant_setup_table(&mut frames) != Ok(GNTST_OKAY) {
            return Err(Error::Hypervisor);
        }
        // SAFETY: TABLE_SLOT is the frontend's alone (one frontend at a time, `IN_USE`).
        f.table = Some(
            unsafe { Window::writable(TABLE_SLOT, frames[0]) }.map_err(|_| Error::Hypervisor)?,
        );
        // A fresh ring: indexes 0, events wanted from the first response on.
        for b in 0..PAGE {
            // SAFETY: inside the static area, which nothing else uses now.
            unsafe { area().add(b).write_volatile(0) };
        }
        ring_word(SRING_REQ_EVENT).store(1, Ordering::Relaxed);
        ring_word(SRING_RSP_EVENT).store(1, Ordering::Relaxed);
        for i in 0..PAGES {
            f.grant(RING_REF + i as u32, page_mfn(i));
        }
        f.port =
            calls::evtchn_alloc_unbound(DOMID_SELF, backend_id).map_err(|_| Error::Hypervisor)?;
        for e in early {
            f.push_raw(e);
        }
        let mut rb = [0u8; 20];
        let mut pb = [0u8; 20];
        write_node(xs, &[dev, "/ring-ref"], num(RING_REF.into(), &mut rb))?;
        write_node(xs, &[dev, "/event-channel"], num(f.port.into(), &mut pb))?;
        write_node(xs, &[dev, "/protocol"], XEN_IO_PROTO_ABI_X86_64)?;
        // Xen's `feature-persistent`: the data pages' grants stay the same for the
        // frontend's life, so a backend may map them once.
        write_node(xs, &[dev, "/feature-persistent"], "1")?;
        write_node(xs, &[dev, "/state"], XenbusState::Initialised.as_str())?;
        let be = f.backend;
        let deadline = now_ns() + CONNECT_WAIT_NS;
        loop {
            let state = read_node(xs, &[be.as_str(), "/state"])
                .map(|t| XenbusState::parse(t.as_str().as_bytes()))
                .unwrap_or(XenbusState::Unknown);
            match state {
                XenbusState::Connected => break,
                XenbusState::Closing | XenbusState::Closed => {
                    f.release();
                    return Err(Error::Closed);
                }
                _ => {}
            }
            if now_ns() >= deadline {
                f.release();
                return Err(Error::Timeout);
            }
            // Woken by any event (the store's, the timer's); looks again.
            events::block_until(Some((now_ns() + 10 * NS_PER_MS).min(deadline)));
        }
        f.sectors = read_u64(xs, &[be.as_str(), "/sectors"])?;
        f.sector_size = read_u64(xs, &[be.as_str(), "/sector-size"]).unwrap_or(512) as u32;
        let info = read_u64(xs, &[be.as_str(), "/info"]).unwrap_or(0);
        f.read_only = info & u64::from(VDISK_READONLY) != 0;
        f.discard = read_u64(xs, &[be.as_str(), "/feature-discard"]).unwrap_or(0) == 1;
        f.persistent = read_u64(xs, &[be.as_str(), "/feature-persistent"]).unwrap_or(0) == 1;
        write_node(xs, &[dev, "/state"], XenbusState::Connected.as_str())?;
        Ok(f)
    }

    /// Grants page `mfn` to the backend in entry `r` (frame and domid first, then flags,
    /// as Xen's `gnttab_grant_foreign_access_ref`).
    fn grant(&self, r: GrantRef, mfn: u64) {
        self.grant_flags(r, mfn, GTF_PERMIT_ACCESS);
    }

    fn grant_flags(&self, r: GrantRef, mfn: u64, flags: u16) {
        let Some(t) = &self.table else { return };
        let w = (t.va() + 8 * u64::from(r)) as *mut u32;
        // SAFETY: the table frame is mapped writable in its window while the frontend lives;
        // `r` is below 512 (one frame); the entry is not in use, so the hypervisor does not
        // write it.
        unsafe {
            w.add(1).write_volatile(mfn as u32);
            (w as *mut u16).add(1).write_volatile(self.backend_id);
        }
        fence(Ordering::Release);
        // SAFETY: as above.
        unsafe { (w as *mut u16).write_volatile(flags) };
    }

    /// Ends grant `r` (compare-and-swap of the flags/domid word to 0; a busy grant stays).
    fn end_grant(&self, r: GrantRef) -> bool {
        self.end_grant_flags(r, GTF_PERMIT_ACCESS)
    }

    fn end_grant_flags(&self, r: GrantRef, flags: u16) -> bool {
        let Some(t) = &self.table else { return false };
        let expected = u32::from(flags) | u32::from(self.backend_id) << 16;
        // SAFETY: the word is 4-aligned in the mapped table frame; the hypervisor accesses it
        // only atomically.
        let word = unsafe { AtomicU32::from_ptr((t.va() + 8 * u64::from(r)) as *mut u32) };
        word.compare_exchange(expected, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn release(&mut self) {
        for i in 0..PAGES {
            self.end_grant(RING_REF + i as u32);
        }
        for i in 0..BLKIF_MAX_SEGMENTS_PER_REQUEST {
            // Lent read-only (a write) or writable (a read); a grant already ended is 0.
            if !self.end_grant_flags(LEND_REF + i as u32, GTF_PERMIT_ACCESS | GTF_READONLY) {
                self.end_grant_flags(LEND_REF + i as u32, GTF_PERMIT_ACCESS);
            }
        }
        if self.port != 0 {
            let _ = calls::evtchn_close(self.port);
            self.port = 0;
        }
        if let Some(t) = self.table.take() {
            let _ = t.close();
        }
        IN_USE.store(false, Ordering::SeqCst);
    }

    /// The disk's length in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The disk's logical block size in bytes.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Whether the backend said the disk is read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether both ends use persistent grants (`feature-persistent`).
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// Whether the backend offers discard (`feature-discard`).
    pub fn can_discard(&self) -> bool {
        self.discard
    }

    /// The device number (`virtual-device`).
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// The grant reference of data page `i` (for tests that build requests themselves).
    pub fn data_ref(i: usize) -> GrantRef {
        RING_REF + 1 + i as u32
    }

    /// Puts `entry` in the ring as the next request and notifies the backend; its index.
    /// Nothing is checked: tests use it to send what a hostile frontend would.
    pub fn push_raw(&mut self, entry: &[u8; BLKIF_ENTRY_SIZE]) -> u32 {
        let idx = self.put(entry);
        self.publish();
        idx
    }

    /// Writes `entry` at the next request slot, not yet published; its index.
    fn put(&mut self, entry: &[u8; BLKIF_ENTRY_SIZE]) -> u32 {
        let idx = self.req_prod;
        let at = entry_offset(idx);
        // One block copy (the backend reads the entry only after the release of `req_prod`
        // below), not 112 single-byte stores.
        // SAFETY: an entry of the ring page, inside the static area; `entry` is the caller's
        // and cannot overlap the area (private to this module).
        unsafe { core::ptr::copy_nonoverlapping(entry.as_ptr(), area().add(at), BLKIF_ENTRY_SIZE) };
        self.req_prod = idx.wrapping_add(1);
        idx
    }

    /// Publishes the requests put so far (entries before the index: release) and notifies
    /// the backend.
    fn publish(&mut self) {
        fence(Ordering::Release);
        ring_word(SRING_REQ_PROD).store(self.req_prod, Ordering::Release);
        let _ = calls::evtchn_send(self.port);
    }

    /// Sets the ring's `req_prod` to `value` without writing entries, and notifies (a
    /// hostile frontend's claim; the ring is unusable afterwards).
    pub fn set_req_prod_raw(&mut self, value: u32) {
        ring_word(SRING_REQ_PROD).store(value, Ordering::Release);
        let _ = calls::evtchn_send(self.port);
    }

    /// Writes `bytes` at `offset` of ring entry `idx` (bounded to the entry), without
    /// publishing anything: a hostile frontend rewriting an entry under the backend.
    pub fn scribble(&mut self, idx: u32, offset: usize, bytes: &[u8]) {
        let at = entry_offset(idx);
        for (i, &b) in bytes
            .iter()
            .enumerate()
            .take(BLKIF_ENTRY_SIZE.saturating_sub(offset))
        {
            // SAFETY: inside entry `idx` of the ring page, inside the static area.
            unsafe { area().add(at + offset + i).write_volatile(b) };
        }
    }

    /// Stores `value` as the ring's `req_prod`, notifying the backend when `notify` (a
    /// hostile frontend's claim; [`Blkfront::next_response`] is not usable afterwards).
    pub fn publish_raw(&mut self, value: u32, notify: bool) {
        ring_word(SRING_REQ_PROD).store(value, Ordering::Release);
        if notify {
            let _ = calls::evtchn_send(self.port);
        }
    }

    /// The ring's `rsp_prod` as the backend last wrote it.
    pub fn rsp_prod_raw(&self) -> u32 {
        ring_word(SRING_RSP_PROD).load(Ordering::Acquire)
    }

    /// Grants the pages of `buf` (as [`Blkfront::read`] lends a buffer: in the bootstrap
    /// mappings, sector-aligned, at most 11 pages) read-only when `readonly`: the segments
    /// naming them, for tests that build requests themselves. The grants stay until the
    /// frontend is released.
    pub fn lend_raw(
        &self,
        buf: &[u8],
        readonly: bool,
    ) -> Option<([BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST], usize)> {
        let flags = if readonly {
            GTF_PERMIT_ACCESS | GTF_READONLY
        } else {
            GTF_PERMIT_ACCESS
        };
        self.lend(buf, flags, true)
    }

    /// Waits (at most [`IO_WAIT_NS`]) for the next response and takes it. The wait is
    /// `SCHEDOP_poll` on the ring's own port with the deadline as its timeout (one
    /// hypercall, and no upcall to take on waking): the port's pending bit is cleared
    /// before each look at `rsp_prod`, so a response published after the look leaves it
    /// set and the poll returns at once.
    pub fn next_response(&mut self) -> Result<BlkifResponse, Error> {
        // Masked while it waits: an upcall between the look and the poll would clear the
        // port's pending bit and the poll would sleep to the deadline.
        let was_masked = events::masked();
        events::mask();
        let r = self.wait_response();
        if !was_masked {
            events::unmask_and_deliver();
        }
        r
    }

    fn wait_response(&mut self) -> Result<BlkifResponse, Error> {
        let deadline = now_ns() + IO_WAIT_NS;
        loop {
            events::clear_pending(self.port);
            fence(Ordering::SeqCst);
            let prod = ring_word(SRING_RSP_PROD).load(Ordering::Acquire);
            if prod != self.rsp_cons {
                let at = entry_offset(self.rsp_cons);
                let mut b = [0u8; BlkifResponse::SIZE];
                for (i, v) in b.iter_mut().enumerate() {
                    // SAFETY: an entry of the ring page, inside the static area.
                    *v = unsafe { area().add(at + i).read_volatile() };
                }
                self.rsp_cons = self.rsp_cons.wrapping_add(1);
                ring_word(SRING_RSP_EVENT).store(self.rsp_cons.wrapping_add(1), Ordering::Release);
                return Ok(BlkifResponse::from_bytes(&b));
            }
            if now_ns() >= deadline {
                return Err(Error::Timeout);
            }
            // Returns when the port is pending, an event needs delivery, or at the
            // deadline; an error (it never fails for a bound port) falls back to blocking.
            if calls::sched_poll(&[self.port], deadline.max(1)).is_err() {
                events::block_until(Some(deadline));
            }
        }
    }

    /// Sends one request for `nr` data pages (whole pages) and waits for its response.
    fn request(&mut self, op: u8, sector: u64, bytes: usize) -> Result<(), Error> {
        let mut segs = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
        let mut left = bytes;
        let mut i = 0;
        while left > 0 {
            let n = left.min(PAGE);
            segs[i] = BlkifRequestSegment {
                gref: Self::data_ref(i),
                first_sect: 0,
                last_sect: (n / SECTOR_SIZE as usize - 1) as u8,
                _pad: 0,
            };
            left -= n;
            i += 1;
        }
        self.send(op, sector, &segs[..i])
    }

    /// Sends `bytes` (at most [`QUEUE_DEPTH`] * [`MAX_IO`], whole sectors) from sector
    /// `sector` on as consecutive requests of [`MAX_IO`] bytes, request `j` on data pages
    /// `11 j..`, published with one `req_prod` store and one notification; then waits for
    /// every response. Each response must carry the id of a request of the batch not yet
    /// answered (else [`Error::Closed`], as a response out of order or duplicated means a
    /// broken backend); the first bad status is returned once all are answered. Each wait
    /// is bounded by [`IO_WAIT_NS`].
    fn batch(&mut self, op: u8, sector: u64, bytes: usize) -> Result<(), Error> {
        let n = bytes.div_ceil(MAX_IO);
        if n == 0 || n > QUEUE_DEPTH {
            return Err(Error::Range);
        }
        // Requests from an earlier call still unanswered (after a timeout) keep their slots.
        if self.req_prod.wrapping_sub(self.rsp_cons) as usize + n > BLKIF_RING_SIZE as usize {
            return Err(Error::Closed);
        }
        let mut ids = [0u64; QUEUE_DEPTH];
        let mut left = bytes;
        for (j, id) in ids.iter_mut().enumerate().take(n) {
            let mut r = BlkifRequest {
                operation: op,
                nr_segments: 0,
                handle: self.devid as u16,
                id: self.next_id,
                sector_number: sector + (j * MAX_IO) as u64 / SECTOR_SIZE,
                ..Default::default()
            };
            self.next_id = self.next_id.wrapping_add(1);
            let mut i = 0;
            let mut here = left.min(MAX_IO);
            left -= here;
            while here > 0 {
                let m = here.min(PAGE);
                r.seg[i] = BlkifRequestSegment {
                    gref: Self::data_ref(j * BLKIF_MAX_SEGMENTS_PER_REQUEST + i),
                    first_sect: 0,
                    last_sect: (m / SECTOR_SIZE as usize - 1) as u8,
                    _pad: 0,
                };
                here -= m;
                i += 1;
            }
            r.nr_segments = i as u8;
            *id = r.id;
            self.put(&r.to_bytes());
        }
        self.publish();
        let was_masked = events::masked();
        events::mask();
        let mut answered = 0u32;
        let mut result = Ok(());
        for _ in 0..n {
            let rsp = match self.wait_response() {
                Ok(r) => r,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let Some(j) = ids[..n].iter().position(|&id| id == rsp.id) else {
                result = Err(Error::Closed);
                break;
            };
            if answered & (1 << j) != 0 {
                result = Err(Error::Closed);
                break;
            }
            answered |= 1 << j;
            if rsp.status != BLKIF_RSP_OKAY && result.is_ok() {
                result = Err(Error::Status(rsp.status));
            }
        }
        if !was_masked {
            events::unmask_and_deliver();
        }
        result
    }

    /// Sends one request with segments `segs` and waits for its response.
    fn send(&mut self, op: u8, sector: u64, segs: &[BlkifRequestSegment]) -> Result<(), Error> {
        let mut r = BlkifRequest {
            operation: op,
            nr_segments: 0,
            handle: self.devid as u16,
            id: self.next_id,
            sector_number: sector,
            ..Default::default()
        };
        self.next_id = self.next_id.wrapping_add(1);
        r.seg[..segs.len()].copy_from_slice(segs);
        r.nr_segments = segs.len() as u8;
        let id = r.id;
        self.push_raw(&r.to_bytes());
        let rsp = self.next_response()?;
        if rsp.id != id {
            return Err(Error::Closed);
        }
        if rsp.status != BLKIF_RSP_OKAY {
            return Err(Error::Status(rsp.status));
        }
        Ok(())
    }

    fn check_range(&self, sector: u64, len: usize) -> Result<(), Error> {
        if !len.is_multiple_of(SECTOR_SIZE as usize) {
            return Err(Error::Range);
        }
        let end = sector.checked_add((len / SECTOR_SIZE as usize) as u64);
        match end {
            Some(e) if e <= self.sectors => Ok(()),
            _ => Err(Error::Range),
        }
    }

    /// Reads `buf.len()` bytes (whole 512-byte sectors) from sector `sector` on. With
    /// persistent grants, through the data pages and one copy, up to [`QUEUE_DEPTH`]
    /// requests of [`MAX_IO`] bytes in flight at once (give a large buffer for sequential
    /// reads). Without them, one request at a time: where the buffer allows it (in the
    /// bootstrap mappings, sector-aligned), its pages are lent to the backend, which copies
    /// straight into them; otherwise through the data pages and one copy.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.check_range(sector, buf.len())?;
        if self.persistent {
            let group = QUEUE_DEPTH * MAX_IO;
            for (k, chunk) in buf.chunks_mut(group).enumerate() {
                let s = sector + (k * group) as u64 / SECTOR_SIZE;
                self.batch(BLKIF_OP_READ, s, chunk.len())?;
                // Every response said the backend is done with its pages (its copies
                // happened before it); the requests' pages are contiguous: one block copy.
                fence(Ordering::Acquire);
                // SAFETY: data pages start at page 1 of the static area and `chunk.len()` <=
                // QUEUE_DEPTH * MAX_IO bytes of them; `chunk` is the caller's buffer, which
                // cannot overlap the area (private to this module and never lent out).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        area().add(PAGE),
                        chunk.as_mut_ptr(),
                        chunk.len(),
                    )
                };
            }
            return Ok(());
        }
        for (k, chunk) in buf.chunks_mut(MAX_IO).enumerate() {
            let s = sector + (k * MAX_IO) as u64 / SECTOR_SIZE;
            if let Some((segs, nr)) = self.lend(chunk, GTF_PERMIT_ACCESS, false) {
                let r = self.send(BLKIF_OP_READ, s, &segs[..nr]);
                for i in 0..nr {
                    // A grant still busy (after a timeout) stays: on the caller's page,
                    // for the backend only; the caller gets the error.
                    self.end_grant_flags(LEND_REF + i as u32, GTF_PERMIT_ACCESS);
                }
                // The backend's grant copies happened before its response.
                fence(Ordering::Acquire);
                r?;
                continue;
            }
            self.request(BLKIF_OP_READ, s, chunk.len())?;
            // The response said the backend is done with the pages (its grant copies
            // happened before it); one block copy (`rep movs`), not a loop of accesses.
            fence(Ordering::Acquire);
            // SAFETY: data pages start at page 1 of the static area and `chunk.len()` <=
            // MAX_IO bytes of them; `chunk` is the caller's buffer, which cannot overlap the
            // area (the area is private to this module and never lent out).
            unsafe {
                core::ptr::copy_nonoverlapping(area().add(PAGE), chunk.as_mut_ptr(), chunk.len())
            };
        }
        Ok(())
    }

    /// Writes `buf` (whole 512-byte sectors) from sector `sector` on; done when the backend
    /// answered every request (durable after [`Blkfront::flush`]). Requests in flight and
    /// lending as for [`Blkfront::read`] (a write's pages are lent read-only).
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.write_unchecked(sector, buf)
    }

    /// [`Blkfront::write`] without the read-only check (for testing the backend's).
    pub fn write_unchecked(&mut self, sector: u64, buf: &[u8]) -> Result<(), Error> {
        self.check_range(sector, buf.len())?;
        if self.persistent {
            let group = QUEUE_DEPTH * MAX_IO;
            for (k, chunk) in buf.chunks(group).enumerate() {
                let s = sector + (k * group) as u64 / SECTOR_SIZE;
                // SAFETY: as in `read`; no request is in flight (`batch` returns only once
                // every request it sent is answered), so the backend is not reading the
                // pages.
                unsafe {
                    core::ptr::copy_nonoverlapping(chunk.as_ptr(), area().add(PAGE), chunk.len())
                };
                fence(Ordering::Release);
                self.batch(BLKIF_OP_WRITE, s, chunk.len())?;
            }
            return Ok(());
        }
        for (k, chunk) in buf.chunks(MAX_IO).enumerate() {
            let s = sector + (k * MAX_IO) as u64 / SECTOR_SIZE;
            if let Some((segs, nr)) = self.lend(chunk, GTF_PERMIT_ACCESS | GTF_READONLY, false) {
                let r = self.send(BLKIF_OP_WRITE, s, &segs[..nr]);
                for i in 0..nr {
                    // A grant still busy (after a timeout) stays: read-only, on the
                    // domain's own page, for the backend only.
                    self.end_grant_flags(LEND_REF + i as u32, GTF_PERMIT_ACCESS | GTF_READONLY);
                }
                r?;
                continue;
            }
            // SAFETY: as in `read`; no request is in flight, so the backend is not copying
            // from the pages.
            unsafe {
                core::ptr::copy_nonoverlapping(chunk.as_ptr(), area().add(PAGE), chunk.len())
            };
            fence(Ordering::Release);
            self.request(BLKIF_OP_WRITE, s, chunk.len())?;
        }
        Ok(())
    }

    /// Tells the disk that `count` sectors at `sector` are unused (`BLKIF_OP_DISCARD`, a
    /// hint: they read back undefined afterwards).
    pub fn discard(&mut self, sector: u64, count: u64) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if !self.discard {
            return Err(Error::Status(guest_abi::blkif::BLKIF_RSP_EOPNOTSUPP));
        }
        match sector.checked_add(count) {
            Some(e) if e <= self.sectors => {}
            _ => return Err(Error::Range),
        }
        self.discard_unchecked(sector, count)
    }

    /// [`Blkfront::discard`] without the frontend's checks (for testing the backend's).
    pub fn discard_unchecked(&mut self, sector: u64, count: u64) -> Result<(), Error> {
        let r = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: 0,
            handle: self.devid as u16,
            id: self.next_id,
            sector_number: sector,
            nr_sectors: count,
        };
        self.next_id = self.next_id.wrapping_add(1);
        let id = r.id;
        self.push_raw(&r.to_bytes());
        let rsp = self.next_response()?;
        if rsp.id != id {
            return Err(Error::Closed);
        }
        if rsp.status != BLKIF_RSP_OKAY {
            return Err(Error::Status(rsp.status));
        }
        Ok(())
    }

    /// Grants the backend access (`flags`: read-only for a write's data, writable for a
    /// read's) to the pages of `chunk` when it lies in the bootstrap mappings (where the p2m
    /// gives its frames), starts on a sector boundary and takes at most
    /// [`BLKIF_MAX_SEGMENTS_PER_REQUEST`] segments: the segments, and saves the copy through
    /// the data pages. `None`: nothing granted, copy instead.
    fn lend(
        &self,
        chunk: &[u8],
        flags: u16,
        force: bool,
    ) -> Option<([BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST], usize)> {
        // With persistent grants the backend keeps the data pages mapped: copying through
        // them costs less than a grant the backend has to map or copy each time.
        if self.persistent && !force {
            return None;
        }
        let va = chunk.as_ptr() as u64;
        let end = va.checked_add(chunk.len() as u64)?;
        let top = VIRT_BASE + mm::mapped_pages().min(mm::nr_pages()) * PAGE as u64;
        if va < VIRT_BASE
            || end > top
            || chunk.is_empty()
            || !va.is_multiple_of(SECTOR_SIZE)
            || !(chunk.len() as u64).is_multiple_of(SECTOR_SIZE)
        {
            return None;
        }
        let mut segs = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
        let mut mfns = [0u64; BLKIF_MAX_SEGMENTS_PER_REQUEST];
        let mut at = va;
        let mut i = 0;
        while at < end {
            if i == BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return None;
            }
            let page = at & !(PAGE as u64 - 1);
            let stop = end.min(page + PAGE as u64);
            mfns[i] = mm::p2m((page - VIRT_BASE) / PAGE as u64);
            segs[i] = BlkifRequestSegment {
                gref: LEND_REF + i as u32,
                first_sect: ((at - page) / SECTOR_SIZE) as u8,
                last_sect: ((stop - page) / SECTOR_SIZE - 1) as u8,
                _pad: 0,
            };
            at = stop;
            i += 1;
        }
        for (k, &mfn) in mfns[..i].iter().enumerate() {
            self.grant_flags(LEND_REF + k as u32, mfn, flags);
        }
        Some((segs, i))
    }

    /// Makes every answered write durable (`BLKIF_OP_FLUSH_DISKCACHE`).
    pub fn flush(&mut self) -> Result<(), Error> {
        let r = BlkifRequest {
            operation: BLKIF_OP_FLUSH_DISKCACHE,
            handle: self.devid as u16,
            id: self.next_id,
            ..Default::default()
        };
        self.next_id = self.next_id.wrapping_add(1);
        self.push_raw(&r.to_bytes());
        let rsp = self.next_response()?;
        if rsp.status != BLKIF_RSP_OKAY {
            return Err(Error::Status(rsp.status));
        }
        Ok(())
    }

    /// Closes the device: `state` = Closing, then (bounded) the backend's Closed, then the
    /// grants end and the channel closes.
    pub fn disconnect(mut self, xs: &mut Xenbus) {
        let mut nb = [0u8; 20];
        let dev = Text::new(&["device/vbd/", num(self.devid.into(), &mut nb)]);
        if let Some(dev) = dev {
            let _ = write_node(xs, &[dev.as_str(), "/state"], XenbusState::Closing.as_str());
            let be = self.backend;
            let deadline = now_ns() + CONNECT_WAIT_NS;
            loop {
                let state = read_node(xs, &[be.as_str(), "/state"])
                    .map(|t| XenbusState::parse(t.as_str().as_bytes()))
                    .unwrap_or(XenbusState::Unknown);
                if matches!(state, XenbusState::Closed | XenbusState::Unknown) {
                    break;
                }
                if now_ns() >= deadline {
                    println!("blkfront: the backend did not close in time");
                    break;
                }
                events::block_until(Some((now_ns() + 10 * NS_PER_MS).min(deadline)));
            }
            let _ = write_node(xs, &[dev.as_str(), "/state"], XenbusState::Closed.as_str());
        }
        self.release();
    }

    /// Requests in flight allowed by the ring (for tests).
    pub const RING_SIZE: u32 = BLKIF_RING_SIZE;
}
