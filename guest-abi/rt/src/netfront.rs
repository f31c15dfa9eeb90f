//! netfront: a network card from dom0's netback (guest-abi [`netif`](guest_abi::netif),
//! porting guide "Network").
//!
//! [`probe`] lists the domain's `device/vif` nodes; [`NetFront::connect`] does the
//! frontend's half of Xen's handshake on one of them: it reads `backend`, `backend-id` and
//! `mac`, grows the grant table to one frame and maps it at window slot [`TABLE_SLOT`],
//! grants dom0 the two ring pages and the buffers ([`netring::PAGES`] pages, references
//! [`FIRST_REF`] on; transmit buffers read-only), posts every receive buffer, allocates one
//! unbound event channel for both rings, writes `tx-ring-ref`, `rx-ring-ref`,
//! `event-channel`, `request-rx-copy` = 1, `feature-rx-notify` = 1 and `state` = 3
//! (Initialised), and waits (at most [`CONNECT_WAIT_NS`]) for the backend's `state` = 4.
//!
//! Then [`NetFront::send`] copies a frame into a free transmit buffer (`Err(Busy)` when
//! every one is in flight), [`NetFront::recv`] copies the next received frame out and posts
//! its buffer again, and [`NetFront::wait`] sleeps until a frame arrives or a deadline
//! passes. What the backend answers is checked as [`netring`] describes: a hostile backend
//! can drop or garble frames, never make the frontend read or write outside its pages or
//! lose a buffer. [`NetFront::disconnect`] writes Closing, waits (bounded) for the
//! backend's Closed, ends the grants and closes the channel.
//!
//! The rings and buffers are static (about 1.5 MiB of `.bss`, in a kernel that uses this
//! module), so there is one frontend at a time; it allocates nothing. It uses grant
//! references from [`FIRST_REF`] and its own window slot, so it can run beside
//! [`blkfront`](crate::blkfront).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

use guest_abi::Errno;
use guest_abi::blkif::XenbusState;
use guest_abi::calls;
use guest_abi::event::EvtchnPort;
use guest_abi::grant::{GNTST_OKAY, GTF_PERMIT_ACCESS, GTF_READONLY, GrantRef};
use guest_abi::netif::{
    EVENT_CHANNEL, FEATURE_RX_NOTIFY, REQUEST_RX_COPY, RX_RING_REF, TX_RING_REF,
};
use guest_abi::types::{DOMID_SELF, DomId};
use guest_abi::xenstore::XS_DIRECTORY;

use crate::boot::VIRT_BASE;
use crate::mm::{self, Window};
use crate::netring::{
    self, PAGE, PAGES, RX_RING, Rings, SendError, Shared, Stats, TX_BUF, TX_RING,
};
use crate::time::{NS_PER_MS, now_ns};
use crate::xenbus::Xenbus;
use crate::{events, println};

/// The window slot the grant table is mapped at while a frontend is connected (blkfront
/// has the one above).
pub const TABLE_SLOT: usize = mm::FREE_SLOTS - 2;
/// The grant reference of page 0 (the transmit ring); page `p` is `FIRST_REF + p`. Past
/// blkfront's references, and the last one still in the table's first frame.
pub const FIRST_REF: GrantRef = 64;
/// How long the handshake (and the close) waits for the backend.
pub const CONNECT_WAIT_NS: u64 = 10_000 * NS_PER_MS;

const _: () = assert!(FIRST_REF as usize + PAGES <= 512);

#[repr(C, align(4096))]
struct Pages(UnsafeCell<[u8; PAGES * PAGE]>);

// SAFETY: the pages are used only by the one connected frontend (`IN_USE`), from the main
// flow; the backend writes the receive ring and buffers through grant copies, which the
// frontend reads after an acquire of the index that announces them (block copies).
unsafe impl Sync for Pages {}

/// The rings, then the receive buffers, then the transmit buffers (`netring`'s layout).
static AREA: Pages = Pages(UnsafeCell::new([0; PAGES * PAGE]));
static IN_USE: AtomicBool = AtomicBool::new(false);

fn area() -> *mut u8 {
    AREA.0.get() as *mut u8
}

fn page_mfn(p: usize) -> u64 {
    let va = area() as u64 + (p * PAGE) as u64;
    mm::p2m((va - VIRT_BASE) / PAGE as u64)
}

/// The static area as [`netring`] sees it.
pub struct StaticArea(());

impl StaticArea {
    fn at(page: usize, at: usize, len: usize) -> *mut u8 {
        assert!(page < PAGES && at.checked_add(len).is_some_and(|e| e <= PAGE));
        // SAFETY: page < PAGES and at + len <= PAGE (checked above): inside the area.
        unsafe { area().add(page * PAGE + at) }
    }

    fn word(page: usize, at: usize) -> &'static AtomicU32 {
        assert!(at.is_multiple_of(4));
        // SAFETY: 4-aligned, inside the area (`at` checks the bounds); the backend writes
        // ring indexes concurrently, hence atomic.
        unsafe { &*(Self::at(page, at, 4) as *const AtomicU32) }
    }
}

impl Shared for StaticArea {
    fn index(&self, page: usize, at: usize) -> u32 {
        Self::word(page, at).load(Ordering::Acquire)
    }

    fn set_index(&self, page: usize, at: usize, value: u32) {
        Self::word(page, at).store(value, Ordering::Release)
    }

    fn read(&self, page: usize, at: usize, out: &mut [u8]) {
        let src = Self::at(page, at, out.len());
        // The index load that announced these bytes (acquire) came first; one block copy
        // (`rep movs`), not a loop of volatile accesses, which costs much more under
        // emulation for a whole frame.
        fence(Ordering::Acquire);
        // SAFETY: `src..src + out.len()` is inside the area (checked by `at`); `out` is the
        // caller's and cannot overlap the private area. The backend writes these bytes only
        // through grant copies before the response that announced them; a hostile backend
        // writing meanwhile garbles only its own frame.
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
    }

    fn write(&self, page: usize, at: usize, data: &[u8]) {
        let dst = Self::at(page, at, data.len());
        // SAFETY: as in `read`; the backend reads these bytes only after the index store
        // that publishes them (release, in `netring`).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        fence(Ordering::Release);
    }
}

/// Why a network operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such device, or another frontend is connected.
    NoDevice,
    /// A xenstore request failed.
    Store(Errno),
    /// The backend did not answer in time.
    Timeout,
    /// The backend closed or failed the device, or wrote nonsense in the store.
    Closed,
    /// The hypervisor refused a grant or channel operation.
    Hypervisor,
    /// Every transmit buffer is in flight: [`NetFront::wait`] and try again.
    Busy,
    /// The frame is shorter than an Ethernet header or longer than 1514 bytes.
    Size,
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

fn write_node(xs: &mut Xenbus, parts: &[&str], value: &str) -> Result<(), Error> {
    let path = Text::new(parts).ok_or(Error::Store(Errno::E2BIG))?;
    xs.write(path.as_str(), value.as_bytes())
        .map_err(Error::Store)
}

fn backend_state(xs: &mut Xenbus, backend: &Text) -> XenbusState {
    read_node(xs, &[backend.as_str(), "/state"])
        .map(|t| XenbusState::parse(t.as_str().as_bytes()))
        .unwrap_or(XenbusState::Unknown)
}

/// The domain's virtual network interfaces (`device/vif/<devid>`): their numbers, into
/// `out`; how many there are.
pub fn probe(xs: &mut Xenbus, out: &mut [u32]) -> usize {
    let mut list = [0u8; 512];
    let Ok(n) = xs.request(XS_DIRECTORY, &[b"device/vif\0"], &mut list) else {
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

/// A connected virtual network interface.
pub struct NetFront {
    devid: u32,
    backend: Text,
    backend_id: DomId,
    mac: [u8; 6],
    port: EvtchnPort,
    table: Option<Window>,
    rings: Rings<StaticArea>,
}

impl NetFront {
    /// Connects to interface `devid` (`device/vif/<devid>`), as described above.
    pub fn connect(xs: &mut Xenbus, devid: u32) -> Result<NetFront, Error> {
        if IN_USE.swap(true, Ordering::SeqCst) {
            return Err(Error::NoDevice);
        }
        let r = Self::handshake(xs, devid);
        if r.is_err() {
            IN_USE.store(false, Ordering::SeqCst);
        }
        r
    }

    fn handshake(xs: &mut Xenbus, devid: u32) -> Result<NetFront, Error> {
        let mut nb = [0u8; 20];
        let dev = Text::new(&["device/vif/", num(devid.into(), &mut nb)]).ok_or(Error::NoDevice)?;
        let dev = dev.as_str();
        let backend = read_node(xs, &[dev, "/backend"]).map_err(|_| Error::NoDevice)?;
        let backend_id = read_node(xs, &[dev, "/backend-id"])
            .ok()
            .and_then(|t| t.as_str().trim().parse().ok())
            .unwrap_or(0);
        let mac = read_node(xs, &[dev, "/mac"])
            .ok()
            .and_then(|t| netring::parse_mac(t.as_str()))
            .ok_or(Error::Closed)?;
        // The grant table's first frame, mapped for the frontend's life.
        let mut frames = [0u64; 1];
        if calls::grant_setup_table(&mut frames) != Ok(GNTST_OKAY) {
            return Err(Error::Hypervisor);
        }
        // SAFETY: TABLE_SLOT is the frontend's alone (one frontend at a time, `IN_USE`).
        let table =
            unsafe { Window::writable(TABLE_SLOT, frames[0]) }.map_err(|_| Error::Hypervisor)?;
        let mut f = NetFront {
            devid,
            backend,
            backend_id,
            mac,
            port: 0,
            table: Some(table),
            // Zeroes the rings and posts every receive buffer before anything is granted.
            rings: Rings::new(StaticArea(()), FIRST_REF),
        };
        for p in 0..PAGES {
            let flags = if p >= TX_BUF {
                GTF_PERMIT_ACCESS | GTF_READONLY
            } else {
                GTF_PERMIT_ACCESS
            };
            f.grant(FIRST_REF + p as u32, page_mfn(p), flags);
        }
        f.port = match calls::evtchn_alloc_unbound(DOMID_SELF, backend_id) {
            Ok(p) => p,
            Err(_) => {
                f.release();
                return Err(Error::Hypervisor);
            }
        };
        if let Err(e) = f.publish(xs, dev) {
            f.release();
            return Err(e);
        }
        let deadline = now_ns() + CONNECT_WAIT_NS;
        loop {
            match backend_state(xs, &f.backend) {
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
        if let Err(e) = write_node(xs, &[dev, "/state"], XenbusState::Connected.as_str()) {
            f.release();
            return Err(e);
        }
        // The backend may have posted nothing yet, but tell it the buffers are there.
        let _ = calls::evtchn_send(f.port);
        Ok(f)
    }

    /// Writes the frontend's keys and `state` = Initialised.
    fn publish(&self, xs: &mut Xenbus, dev: &str) -> Result<(), Error> {
        let mut tb = [0u8; 20];
        let mut rb = [0u8; 20];
        let mut pb = [0u8; 20];
        let tx = num(self.rings.page_ref(TX_RING).into(), &mut tb);
        let rx = num(self.rings.page_ref(RX_RING).into(), &mut rb);
        write_node(xs, &[dev, "/", TX_RING_REF], tx)?;
        write_node(xs, &[dev, "/", RX_RING_REF], rx)?;
        write_node(
            xs,
            &[dev, "/", EVENT_CHANNEL],
            num(self.port.into(), &mut pb),
        )?;
        write_node(xs, &[dev, "/", REQUEST_RX_COPY], "1")?;
        write_node(xs, &[dev, "/", FEATURE_RX_NOTIFY], "1")?;
        write_node(xs, &[dev, "/state"], XenbusState::Initialised.as_str())
    }

    /// Grants page `mfn` to the backend in entry `r` (frame and domid first, then flags,
    /// as Xen's `gnttab_grant_foreign_access_ref`).
    fn grant(&self, r: GrantRef, mfn: u64, flags: u16) {
        let Some(t) = &self.table else { return };
        let w = (t.va() + 8 * u64::from(r)) as *mut u32;
        // SAFETY: the table frame is mapped writable in its window while the frontend lives;
        // `r` is below 512 (one frame, asserted at compile time); the entry is not in use, so
        // the hypervisor does not write it.
        unsafe {
            w.add(1).write_volatile(mfn as u32);
            (w as *mut u16).add(1).write_volatile(self.backend_id);
        }
        fence(Ordering::Release);
        // SAFETY: as above.
        unsafe { (w as *mut u16).write_volatile(flags) };
    }

    /// Ends grant `r` (compare-and-swap of the flags/domid word to 0; a busy grant stays).
    fn end_grant(&self, r: GrantRef, flags: u16) -> bool {
        let Some(t) = &self.table else { return false };
        let expected = u32::from(flags) | u32::from(self.backend_id) << 16;
        // SAFETY: the word is 4-aligned in the mapped table frame; the hypervisor accesses it
        // only atomically.
        let word = unsafe { AtomicU32::from_ptr((t.va() + 8 * u64::from(r)) as *mut u32) };
        word.compare_exchange(expected, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn release(&mut self) {
        let mut busy = 0;
        for p in 0..PAGES {
            let flags = if p >= TX_BUF {
                GTF_PERMIT_ACCESS | GTF_READONLY
            } else {
                GTF_PERMIT_ACCESS
            };
            if !self.end_grant(FIRST_REF + p as u32, flags) {
                busy += 1;
            }
        }
        if busy > 0 {
            println!("netfront: {busy} grants still busy at close");
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

    fn kick(&mut self) {
        if self.rings.take_notify() {
            let _ = calls::evtchn_send(self.port);
        }
    }

    /// The interface's MAC address (the `mac` the toolstack wrote).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface number (`device/vif/<devid>`).
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// The event channel the backend notifies (both rings).
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// What the frontend counted (frames, drops, protocol violations of the backend).
    pub fn stats(&self) -> Stats {
        self.rings.stats()
    }

    /// Sends one Ethernet frame (14 to 1514 bytes, without FCS): copied into a transmit
    /// buffer, so `frame` is free again on return. Completed sends are reclaimed first;
    /// `Err(Busy)` when every buffer is still in flight.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        let r = self.rings.send(frame).map_err(|e| match e {
            SendError::Busy => Error::Busy,
            SendError::Size => Error::Size,
        });
        self.kick();
        r
    }

    /// As [`NetFront::send`], but the backend is not notified yet: [`NetFront::flush`] (or
    /// [`NetFront::wait`], which flushes first) does it once for every frame queued since.
    /// A domain sending a burst (a TCP window) this way costs the backend one wake-up, and
    /// the backend sees the whole burst at once.
    pub fn queue(&mut self, frame: &[u8]) -> Result<(), Error> {
        self.rings.send(frame).map_err(|e| match e {
            SendError::Busy => Error::Busy,
            SendError::Size => Error::Size,
        })
    }

    /// Notifies the backend of the frames queued and buffers reposted since the last
    /// notification, if it asked to be told (its rings' event indexes).
    pub fn flush(&mut self) {
        self.kick();
    }

    /// Whether [`NetFront::send`] would take a frame now.
    pub fn can_send(&mut self) -> bool {
        self.rings.can_send()
    }

    /// The next received frame, copied into `buf` (1514 bytes hold any): its length, or
    /// `None` when none waits. Its buffer is posted again (the backend, which reads the
    /// receive ring whenever it has a frame, is told at the next [`NetFront::flush`] or
    /// [`NetFront::wait`] if it asked).
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.rings.recv(buf)
    }

    /// Flushes ([`NetFront::flush`]), then sleeps until a frame waits for
    /// [`NetFront::recv`], or until system time `deadline_ns`, or another event wakes the
    /// domain (a transmit completion among them, asked for only while few transmit buffers
    /// are free): whether a frame waits. Called with events masked, as the rest of the
    /// runtime.
    pub fn wait(&mut self, deadline_ns: u64) -> bool {
        // Never asleep with the backend not told of what was queued.
        let notify = self.rings.take_notify();
        self.rings.reclaim();
        if self.rings.rx_ready() || now_ns() >= deadline_ns {
            if notify {
                let _ = calls::evtchn_send(self.port);
            }
            return self.rings.rx_ready();
        }
        if notify {
            notify_and_block(self.port, deadline_ns);
        } else {
            events::block_until(Some(deadline_ns));
        }
        self.rings.rx_ready()
    }

    /// Closes the interface: `state` = Closing, then (bounded) the backend's Closed, then
    /// the grants end and the channel closes.
    pub fn disconnect(mut self, xs: &mut Xenbus) {
        let mut nb = [0u8; 20];
        if let Some(dev) = Text::new(&["device/vif/", num(self.devid.into(), &mut nb)]) {
            let dev = dev.as_str();
            let _ = write_node(xs, &[dev, "/state"], XenbusState::Closing.as_str());
            let deadline = now_ns() + CONNECT_WAIT_NS;
            loop {
                let state = backend_state(xs, &self.backend);
                if matches!(state, XenbusState::Closed | XenbusState::Unknown) {
                    break;
                }
                if now_ns() >= deadline {
                    println!("netfront: the backend did not close in time");
                    break;
                }
                events::block_until(Some((now_ns() + 10 * NS_PER_MS).min(deadline)));
            }
            let _ = write_node(xs, &[dev, "/state"], XenbusState::Closed.as_str());
        }
        self.release();
    }
}

/// Notifies `port`, arms the timer for `deadline_ns` and blocks, as one `multicall`
/// ([`events::block_until`] after an `EVTCHNOP_SEND`, one hypercall instead of three): the
/// backend woken by the notification cannot take the pCPU before this vCPU blocks, which
/// costs two switches per round trip otherwise. Falls back to the separate calls if the
/// multicall or its block fails.
fn notify_and_block(port: EvtchnPort, deadline_ns: u64) {
    use guest_abi::hypercall::{
        HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_SET_TIMER_OP, MulticallEntry,
    };
    let mut send = guest_abi::event::EvtchnSend { port };
    let entry = |op: u64, a0: u64, a1: u64| MulticallEntry {
        op,
        result: 0,
        args: [a0, a1, 0, 0, 0, 0],
    };
    let mut batch = [
        entry(
            HYPERVISOR_EVENT_CHANNEL_OP,
            u64::from(guest_abi::event::EVTCHNOP_SEND),
            &raw mut send as u64,
        ),
        // A deadline already past raises the timer event at once; 0 would mean "no timer".
        entry(HYPERVISOR_SET_TIMER_OP, deadline_ns.max(1), 0),
        entry(
            HYPERVISOR_SCHED_OP,
            u64::from(guest_abi::sched::SCHEDOP_BLOCK),
            0,
        ),
    ];
    // SAFETY: the send entry points at `send`, which lives across the call and is only
    // read; the timer and block entries take no pointer (`calls::set_timer_op`,
    // `calls::sched_block`); the upcall the block may trigger is the guest's own handler.
    let done = unsafe { calls::multicall(&mut batch) };
    if done.is_err() {
        // Nothing was run (the batch could not be read).
        let _ = calls::evtchn_send(port);
        events::block_until(Some(deadline_ns));
        return;
    }
    if batch[2].result < 0 {
        events::block_until(Some(deadline_ns));
        return;
    }
    events::mask();
}
