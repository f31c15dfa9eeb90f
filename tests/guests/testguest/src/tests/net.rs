//! `net_*`: a domU's virtual network interface through dom0's netback and bridge (scenarios
//! `net_*`; the toolstack's nodes are written by the scenario from dom0's prompt, as libxl
//! would, while the domain is paused).
//!
//! The frontend here is the test's own minimal one (Xen's `netif` rings, guest-abi
//! [`netif`](guest_abi::netif)), not the runtime's netfront, so that it can also say what a
//! hostile frontend would: the grant table is mapped at window slot [`TABLE_SLOT`], the two
//! rings, [`TX_PAGES`] transmit pages and [`RX_BUFS`] receive buffers are fresh frames mapped
//! at window slots `0..`, granted to dom0 as refs 8.. (`RING_TX_REF` ...).
//!
//! Frames are Ethernet with ethertype [`ETHERTYPE`] (IEEE's local experimental one) and a
//! payload of a kind byte (`P`ing, p`O`ng, `H`ello, `D`one, `S`tream) and a 32-bit sequence
//! number, padded to 60 bytes.
//!
//! * `net_echo`: says hello (broadcast, so that a learning bridge knows it), answers every
//!   ping sent to its MAC with a pong to the sender; counts the frames it receives (for it,
//!   broadcast, for others); ends at a `D`one frame, or with `idle=<s>` when no frame came
//!   for that long after the first (a bystander), or runs until destroyed with `count=0`;
//!   then prints the counts and closes its interface.
//! * `net_ping peer=<mac> count=N`: says hello (broadcast), sends N pings to `peer`, each
//!   waiting for its pong (retried), notes the round trips, then sends `D`one; `count=0`
//!   pings until destroyed, noting `net: <n> pongs` every 50.
//! * `net_stream peer=<mac>`: sends frames to `peer` without waiting, until destroyed,
//!   noting `net: streamed <n> frames` every 256.
//! * `net_hostile`: first `vif 1` without `request-rx-copy` (the backend refuses it and
//!   closes), `vif 2` whose transmit ring's grant it ends once connected (the backend, which
//!   mapped the ring at connect, serves it on, as Xen's does; the interface is then closed
//!   properly before its grant references are used again); then on `vif 0`: a bad grant reference, a frame longer than the MTU, one of
//!   19 slots, one shorter than a header, each answered `NETIF_RSP_ERROR`, a good frame
//!   after them `NETIF_RSP_OKAY`; a flood of refused and of accepted frames, all answered;
//!   last a producer index far ahead, after which the backend answers nothing more.
//! * `net_spoof victim=<mac>`: frames with another source MAC than its own are refused;
//!   then keeps sending the victim's MAC as source until destroyed (netback's antispoofing).
//! * `net_race rounds=N` (2000 by default): publishes one good frame a round and, until it
//!   is answered, flips its size between 60 and 2000 bytes, writes random (but not fatal)
//!   entries ahead and moves `req_prod` over them (never more than a ring ahead), and
//!   scribbles on `rsp_event`: the backend, holding the ring mapped, must keep serving it;
//!   notes `net: race done`, then keeps requests outstanding at full speed until destroyed.

use core::sync::atomic::{AtomicU32, Ordering, fence};

use guest_abi::blkif::{
    SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD, XenbusState,
};
use guest_abi::calls;
use guest_abi::event::EvtchnPort;
use guest_abi::grant::{GNTST_OKAY, GTF_PERMIT_ACCESS, GTF_READONLY, GrantRef};
use guest_abi::netif::{
    NET_RX_RING_SIZE, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_MORE_DATA, NetifRxRequest,
    NetifRxResponse, NetifTxRequest, NetifTxResponse, rx_entry_offset, tx_entry_offset,
};
use guest_abi::types::{DOMID_SELF, DomId};
use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::{Checks, Text, note};
use xenia_guest_rt::mm::{self, Window};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::xenbus::Xenbus;
use xenia_guest_rt::{cmdline, events};

/// Window slot of the grant table.
pub const TABLE_SLOT: usize = mm::FREE_SLOTS - 1;
/// Transmit data pages.
pub const TX_PAGES: usize = 2;
/// Receive buffers posted.
pub const RX_BUFS: usize = 8;
/// Ethertype of the test's frames.
pub const ETHERTYPE: u16 = 0x88b5;
const PAGES: usize = 2 + TX_PAGES + RX_BUFS;
const PAGE: usize = 4096;
const RING_TX_REF: GrantRef = guest_abi::grant::GNTTAB_NR_RESERVED_ENTRIES;
const RING_RX_REF: GrantRef = RING_TX_REF + 1;
const TX_REF: GrantRef = RING_TX_REF + 2;
const RX_REF: GrantRef = TX_REF + TX_PAGES as u32;
/// A reference this frontend never grants.
const BAD_REF: GrantRef = 400;
const WAIT_NS: u64 = 10_000 * NS_PER_MS;
const FRAME: usize = 60;
const BROADCAST: [u8; 6] = [0xff; 6];

/// A connected interface.
struct Netif {
    devid: u32,
    backend: Text<96>,
    backend_id: DomId,
    port: EvtchnPort,
    table: Option<Window>,
    pages: [Option<Window>; PAGES],
    mac: [u8; 6],
    tx_prod: u32,
    tx_rsp_cons: u32,
    rx_prod: u32,
    rx_cons: u32,
}

fn num(v: u64, buf: &mut Text<24>) -> &str {
    use core::fmt::Write;
    *buf = Text::default();
    let _ = write!(buf, "{v}");
    buf.as_str()
}

fn path(parts: &[&str]) -> Text<96> {
    use core::fmt::Write;
    let mut t = Text::default();
    for p in parts {
        let _ = t.write_str(p);
    }
    t
}

fn read(xs: &mut Xenbus, parts: &[&str]) -> Option<Text<96>> {
    let p = path(parts);
    let mut out = [0u8; 96];
    let n = xs.read(p.as_str(), &mut out).ok()?;
    Some(path(&[core::str::from_utf8(&out[..n.min(96)]).ok()?]))
}

fn write(xs: &mut Xenbus, parts: &[&str], value: &str) -> bool {
    xs.write(path(parts).as_str(), value.as_bytes()).is_ok()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(|&b| b == b':');
    for m in &mut mac {
        let p = core::str::from_utf8(parts.next()?).ok()?;
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn arg<'a>(key: &str) -> Option<&'a [u8]> {
    cmdline::value(start_info().cmdline_bytes(), key)
}

fn arg_num(key: &str, default: u64) -> u64 {
    arg(key)
        .and_then(|v| core::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl Netif {
    fn page(&self, i: usize) -> *mut u8 {
        self.pages[i]
            .as_ref()
            .map_or(core::ptr::null_mut(), |w| w.va() as *mut u8)
    }

    fn word(&self, ring: usize, at: usize) -> &AtomicU32 {
        // SAFETY: `at` is a 4-aligned ring header offset inside the mapped ring page; dom0
        // writes it concurrently (through grant copies), hence atomic.
        unsafe { &*(self.page(ring).add(at) as *const AtomicU32) }
    }

    fn put(&self, page: usize, at: usize, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: inside the mapped page (callers keep `at + len <= 4096`).
            unsafe { self.page(page).add(at + i).write_volatile(b) };
        }
    }

    fn get(&self, page: usize, at: usize, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: as in `put`.
            *b = unsafe { self.page(page).add(at + i).read_volatile() };
        }
    }

    fn grant(&self, r: GrantRef, mfn: u64, flags: u16) {
        let Some(t) = &self.table else { return };
        let w = (t.va() + 8 * u64::from(r)) as *mut u32;
        // SAFETY: the table frame is mapped writable while the frontend lives; `r` < 512;
        // the entry is unused, so the hypervisor does not write it now.
        unsafe {
            w.add(1).write_volatile(mfn as u32);
            (w as *mut u16).add(1).write_volatile(self.backend_id);
        }
        fence(Ordering::Release);
        // SAFETY: as above.
        unsafe { (w as *mut u16).write_volatile(flags) };
    }

    /// Connects to `device/vif/<devid>`; `rx_copy`: say `request-rx-copy` = 1. On failure
    /// everything taken is given back.
    fn connect(xs: &mut Xenbus, devid: u32, rx_copy: bool) -> Result<Netif, &'static str> {
        let mut nb = Text::<24>::default();
        let dev = path(&["device/vif/", num(devid.into(), &mut nb)]);
        let backend = read(xs, &[dev.as_str(), "/backend"]).ok_or("no backend node")?;
        let backend_id = read(xs, &[dev.as_str(), "/backend-id"])
            .and_then(|t| t.as_str().trim().parse().ok())
            .unwrap_or(0);
        let mac = read(xs, &[dev.as_str(), "/mac"])
            .and_then(|t| parse_mac(t.as_str().as_bytes()))
            .ok_or("no mac node")?;
        let mut f = Netif {
            devid,
            backend,
            backend_id,
            port: 0,
            table: None,
            pages: [const { None }; PAGES],
            mac,
            tx_prod: 0,
            tx_rsp_cons: 0,
            rx_prod: 0,
            rx_cons: 0,
        };
        match f.handshake(xs, dev.as_str(), rx_copy) {
            Ok(()) => Ok(f),
            Err(e) => {
                f.release();
                Err(e)
            }
        }
    }

    fn handshake(&mut self, xs: &mut Xenbus, dev: &str, rx_copy: bool) -> Result<(), &'static str> {
        let f = self;
        let backend_id = f.backend_id;
        let mut frames = [0u64; 1];
        if calls::grant_setup_table(&mut frames) != Ok(GNTST_OKAY) {
            return Err("grant table setup failed");
        }
        // SAFETY: TABLE_SLOT is this test's alone.
        f.table = Some(unsafe { Window::writable(TABLE_SLOT, frames[0]) }.map_err(|_| "table")?);
        for i in 0..PAGES {
            let (_, mfn) = mm::fresh_frame().ok_or("no fresh frame")?;
            // SAFETY: slot `i` is this test's alone; the frame is fresh (nothing maps it).
            let w = unsafe { Window::writable(i, mfn) }.map_err(|_| "window")?;
            for o in (0..PAGE as u64).step_by(8) {
                w.write(o, 0);
            }
            f.pages[i] = Some(w);
            let flags = if (2..2 + TX_PAGES).contains(&i) {
                GTF_PERMIT_ACCESS | GTF_READONLY
            } else {
                GTF_PERMIT_ACCESS
            };
            f.grant(RING_TX_REF + i as u32, mfn, flags);
        }
        for ring in 0..2 {
            f.word(ring, SRING_REQ_EVENT).store(1, Ordering::Relaxed);
            f.word(ring, SRING_RSP_EVENT).store(1, Ordering::Relaxed);
        }
        // Every receive buffer posted before connecting, as Linux's netfront does.
        for k in 0..RX_BUFS {
            f.post_rx(k as u16);
        }
        f.word(1, SRING_REQ_PROD)
            .store(f.rx_prod, Ordering::Release);
        f.port = calls::evtchn_alloc_unbound(DOMID_SELF, backend_id).map_err(|_| "channel")?;
        let (mut a, mut b, mut c) = (
            Text::<24>::default(),
            Text::<24>::default(),
            Text::<24>::default(),
        );
        let ok = write(xs, &[dev, "/tx-ring-ref"], num(RING_TX_REF.into(), &mut a))
            && write(xs, &[dev, "/rx-ring-ref"], num(RING_RX_REF.into(), &mut b))
            && write(xs, &[dev, "/event-channel"], num(f.port.into(), &mut c))
            && (!rx_copy || write(xs, &[dev, "/request-rx-copy"], "1"))
            && write(xs, &[dev, "/feature-rx-notify"], "1")
            && write(xs, &[dev, "/state"], XenbusState::Initialised.as_str());
        if !ok {
            return Err("cannot write the frontend's nodes");
        }
        let deadline = now_ns() + WAIT_NS;
        loop {
            match f.backend_state(xs) {
                XenbusState::Connected => break,
                XenbusState::Closing | XenbusState::Closed => return Err("backend closed"),
                _ => {}
            }
            if now_ns() >= deadline {
                return Err("backend did not connect in time");
            }
            events::block_until(Some((now_ns() + 10 * NS_PER_MS).min(deadline)));
        }
        write(xs, &[dev, "/state"], XenbusState::Connected.as_str());
        Ok(())
    }

    fn backend_state(&self, xs: &mut Xenbus) -> XenbusState {
        read(xs, &[self.backend.as_str(), "/state"])
            .map(|t| XenbusState::parse(t.as_str().as_bytes()))
            .unwrap_or(XenbusState::Unknown)
    }

    /// Puts receive buffer `k` in the ring (not yet published).
    fn post_rx(&mut self, k: u16) {
        let r = NetifRxRequest {
            id: k,
            _pad: 0,
            gref: RX_REF + u32::from(k),
        };
        self.put(1, rx_entry_offset(self.rx_prod), &r.to_bytes());
        self.rx_prod = self.rx_prod.wrapping_add(1);
    }

    /// Puts `slots` in the transmit ring, publishes them and notifies; nothing checked.
    fn push_raw(&mut self, slots: &[NetifTxRequest]) {
        for s in slots {
            self.put(0, tx_entry_offset(self.tx_prod), &s.to_bytes());
            self.tx_prod = self.tx_prod.wrapping_add(1);
        }
        fence(Ordering::Release);
        self.word(0, SRING_REQ_PROD)
            .store(self.tx_prod, Ordering::Release);
        let _ = calls::evtchn_send(self.port);
    }

    /// Waits (bounded) for the responses to everything sent; their statuses, in order, into
    /// `out` (as many as fit); how many came. `Err` on a timeout.
    fn tx_wait(&mut self, out: &mut [i16], timeout_ns: u64) -> Result<usize, usize> {
        let deadline = now_ns() + timeout_ns;
        let mut n = 0;
        while self.tx_rsp_cons != self.tx_prod {
            let prod = self.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
            if prod == self.tx_rsp_cons {
                self.word(0, SRING_RSP_EVENT)
                    .store(self.tx_rsp_cons.wrapping_add(1), Ordering::SeqCst);
                if self.word(0, SRING_RSP_PROD).load(Ordering::SeqCst) != prod {
                    continue;
                }
                if now_ns() >= deadline {
                    return Err(n);
                }
                events::block_until(Some(deadline));
                continue;
            }
            let mut b = [0u8; NetifTxResponse::SIZE];
            self.get(0, tx_entry_offset(self.tx_rsp_cons), &mut b);
            if n < out.len() {
                out[n] = NetifTxResponse::from_bytes(&b).status;
            }
            n += 1;
            self.tx_rsp_cons = self.tx_rsp_cons.wrapping_add(1);
        }
        Ok(n)
    }

    /// Takes the responses that arrived, without waiting.
    fn tx_reap(&mut self) {
        let prod = self.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
        self.tx_rsp_cons = prod;
    }

    /// Sends `frame` in one slot (transmit page `page`); waits for its response.
    fn send(&mut self, frame: &[u8], page: usize) -> Result<i16, &'static str> {
        let mut out = [0i16; 1];
        // The page is free once everything sent before is answered.
        self.tx_wait(&mut out, WAIT_NS)
            .map_err(|_| "no transmit response")?;
        self.put(2 + page, 0, frame);
        self.push_raw(&[NetifTxRequest {
            gref: TX_REF + page as u32,
            offset: 0,
            flags: 0,
            id: (self.tx_prod & 0xffff) as u16,
            size: frame.len() as u16,
        }]);
        self.tx_wait(&mut out, WAIT_NS)
            .map_err(|_| "no transmit response")?;
        Ok(out[0])
    }

    /// Sends `frame` without waiting for its response (the ring must have room: the caller
    /// reaps). Transmit page 1 holds it.
    fn send_nowait(&mut self, frame: &[u8]) {
        self.put(3, 0, frame);
        self.push_raw(&[NetifTxRequest {
            gref: TX_REF + 1,
            offset: 0,
            flags: 0,
            id: 0,
            size: frame.len() as u16,
        }]);
    }

    /// The next received frame (into `buf`), waiting until `deadline`; `Err` with the
    /// status of a failed response.
    fn recv(&mut self, buf: &mut [u8; 2048], deadline: u64) -> Option<Result<usize, i16>> {
        loop {
            let prod = self.word(1, SRING_RSP_PROD).load(Ordering::Acquire);
            if prod != self.rx_cons {
                if prod.wrapping_sub(self.rx_cons) > NET_RX_RING_SIZE {
                    return Some(Err(NETIF_RSP_ERROR));
                }
                let mut b = [0u8; NetifRxResponse::SIZE];
                self.get(1, rx_entry_offset(self.rx_cons), &mut b);
                self.rx_cons = self.rx_cons.wrapping_add(1);
                let r = NetifRxResponse::from_bytes(&b);
                let k = usize::from(r.id).min(RX_BUFS - 1);
                let out = if r.status > 0 {
                    let len = (r.status as usize).min(buf.len());
                    let off = usize::from(r.offset).min(PAGE - len);
                    self.get(4 + k, off, &mut buf[..len]);
                    Ok(len)
                } else {
                    Err(r.status)
                };
                // The buffer goes back.
                self.post_rx(k as u16);
                self.word(1, SRING_REQ_PROD)
                    .store(self.rx_prod, Ordering::Release);
                return Some(out);
            }
            self.word(1, SRING_RSP_EVENT)
                .store(self.rx_cons.wrapping_add(1), Ordering::SeqCst);
            if self.word(1, SRING_RSP_PROD).load(Ordering::SeqCst) != prod {
                continue;
            }
            if now_ns() >= deadline {
                return None;
            }
            events::block_until(Some(deadline));
        }
    }

    /// Ends the interface: Closing, the backend's Closed (bounded), Closed; grants ended
    /// and the channel closed.
    fn close(mut self, xs: &mut Xenbus) {
        let mut nb = Text::<24>::default();
        let dev = path(&["device/vif/", num(self.devid.into(), &mut nb)]);
        write(xs, &[dev.as_str(), "/state"], XenbusState::Closing.as_str());
        let deadline = now_ns() + WAIT_NS;
        while !matches!(
            self.backend_state(xs),
            XenbusState::Closed | XenbusState::Unknown
        ) && now_ns() < deadline
        {
            events::block_until(Some((now_ns() + 10 * NS_PER_MS).min(deadline)));
        }
        write(xs, &[dev.as_str(), "/state"], XenbusState::Closed.as_str());
        self.release();
    }

    fn release(&mut self) {
        if let Some(t) = &self.table {
            for i in 0..PAGES as u64 {
                let r = u64::from(RING_TX_REF) + i;
                // A plain clear: the backend copied, it never mapped.
                t.write(8 * r, 0);
            }
        }
        if self.port != 0 {
            let _ = calls::evtchn_close(self.port);
            self.port = 0;
        }
        for w in self.pages.iter_mut() {
            if let Some(w) = w.take() {
                let _ = w.close();
            }
        }
        if let Some(t) = self.table.take() {
            let _ = t.close();
        }
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], kind: u8, seq: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14] = kind;
    f[15..19].copy_from_slice(&seq.to_le_bytes());
    f
}

/// `(dst, src, kind, seq)` of a test frame.
fn parse(f: &[u8]) -> Option<([u8; 6], [u8; 6], u8, u32)> {
    if f.len() < 19 || f[12..14] != ETHERTYPE.to_be_bytes() {
        return None;
    }
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(&f[0..6]);
    src.copy_from_slice(&f[6..12]);
    Some((
        dst,
        src,
        f[14],
        u32::from_le_bytes([f[15], f[16], f[17], f[18]]),
    ))
}

fn open(c: &mut Checks, devid: u32) -> (Xenbus, Netif) {
    let mut bus = match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => {
            c.check("Xenbus::connect", false, format_args!("{e:?}"));
            core::mem::take(c).finish()
        }
    };
    match Netif::connect(&mut bus, devid, true) {
        Ok(f) => {
            let m = f.mac;
            note(format_args!(
                "net: vif {devid} connected, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ));
            c.check("the interface connects", true, format_args!(""));
            (bus, f)
        }
        Err(e) => {
            c.check("the interface connects", false, format_args!("{e}"));
            core::mem::take(c).finish()
        }
    }
}

fn peer(c: &mut Checks) -> [u8; 6] {
    match arg("peer").and_then(parse_mac) {
        Some(m) => m,
        None => {
            c.check("peer=<mac> on the command line", false, format_args!(""));
            core::mem::take(c).finish()
        }
    }
}

/// `net_echo`.
pub fn echo() -> ! {
    let mut c = Checks::new();
    let (mut bus, mut f) = open(&mut c, 0);
    let forever = arg_num("count", 1) == 0;
    let idle = arg_num("idle", 0) * 1000 * NS_PER_MS;
    // Known to the bridge before anyone sends to it.
    let hello = f.send(&frame(BROADCAST, f.mac, b'H', 0), 0);
    c.eq("a broadcast hello is sent", hello, Ok(NETIF_RSP_OKAY));
    note(format_args!("net: echo ready"));
    let (mut mine, mut bcast, mut others, mut pongs, mut errors) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 2048];
    let mut done = false;
    let limit = now_ns() + 600_000 * NS_PER_MS;
    let mut last: Option<u64> = None;
    while now_ns() < limit {
        let until = match last {
            Some(t) if idle > 0 => (t + idle).min(limit),
            _ => limit,
        };
        let Some(r) = f.recv(&mut buf, until) else {
            // Quiet for `idle` after traffic: what it came for is over.
            done = idle > 0 && last.is_some();
            break;
        };
        last = Some(now_ns());
        let len = match r {
            Ok(n) => n,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        let Some((dst, src, kind, seq)) = parse(&buf[..len]) else {
            continue;
        };
        if dst == f.mac {
            mine += 1;
        } else if dst == BROADCAST {
            bcast += 1;
        } else {
            others += 1;
            continue;
        }
        match kind {
            b'P' if dst == f.mac
                && f.send(&frame(src, f.mac, b'O', seq), 0) == Ok(NETIF_RSP_OKAY) =>
            {
                pongs += 1;
            }
            b'D' if dst == f.mac && !forever => {
                done = true;
                break;
            }
            _ => {}
        }
    }
    note(format_args!(
        "net: received {mine} frames for me, {bcast} broadcast, {others} for others; {pongs} pongs sent; {errors} errors"
    ));
    c.check(
        "the pinger said it was done (or traffic stopped, with idle=)",
        done,
        format_args!(""),
    );
    c.eq("received frames with an error status", errors, 0);
    f.close(&mut bus);
    c.check("the interface is closed", true, format_args!(""));
    c.finish()
}

/// Sends ping `seq` to `to` and waits for its pong (retried `tries` times, 1 s each);
/// the round trip in ns.
fn ping_once(f: &mut Netif, to: [u8; 6], seq: u32, tries: u32) -> Option<u64> {
    let mut buf = [0u8; 2048];
    for _ in 0..tries {
        let t0 = now_ns();
        if f.send(&frame(to, f.mac, b'P', seq), 0) != Ok(NETIF_RSP_OKAY) {
            return None;
        }
        let deadline = t0 + 1000 * NS_PER_MS;
        while let Some(r) = f.recv(&mut buf, deadline) {
            if let Ok(n) = r
                && let Some((dst, src, b'O', s)) = parse(&buf[..n])
                && dst == f.mac
                && src == to
                && s == seq
            {
                return Some(now_ns() - t0);
            }
        }
    }
    None
}

/// `net_ping`.
pub fn ping() -> ! {
    let mut c = Checks::new();
    let to = peer(&mut c);
    let count = arg_num("count", 20) as u32;
    let (mut bus, mut f) = open(&mut c, 0);
    let hello = f.send(&frame(BROADCAST, f.mac, b'H', 0), 0);
    c.eq("a broadcast hello is sent", hello, Ok(NETIF_RSP_OKAY));
    // The first may wait for the peer to come up.
    let first = ping_once(&mut f, to, 0, 30);
    c.check(
        "the peer answers a first ping",
        first.is_some(),
        format_args!(""),
    );
    let (mut ok, mut total, mut best, mut worst) = (0u32, 0u64, u64::MAX, 0u64);
    let mut seq = 1u32;
    loop {
        if count != 0 && seq > count {
            break;
        }
        if let Some(ns) = ping_once(&mut f, to, seq, 5) {
            ok += 1;
            total += ns;
            best = best.min(ns);
            worst = worst.max(ns);
            if count == 0 && ok.is_multiple_of(50) {
                note(format_args!("net: {ok} pongs"));
            }
        } else if count == 0 {
            note(format_args!("net: ping {seq} unanswered"));
        }
        seq = seq.wrapping_add(1);
    }
    if ok > 0 {
        note(format_args!(
            "net: {ok} pings answered, round trip mean {} us, best {} us, worst {} us",
            total / u64::from(ok) / 1000,
            best / 1000,
            worst / 1000
        ));
    }
    c.eq("pings answered", ok, count);
    let done = f.send(&frame(to, f.mac, b'D', seq), 0);
    c.eq("done is sent", done, Ok(NETIF_RSP_OKAY));
    f.close(&mut bus);
    c.finish()
}

/// `net_stream`.
pub fn stream() -> ! {
    let mut c = Checks::new();
    let to = peer(&mut c);
    let (_bus, mut f) = open(&mut c, 0);
    let mut n = 0u64;
    let mut buf = [0u8; 2048];
    loop {
        // At most 128 in flight; answers are taken as they come.
        f.tx_reap();
        if f.tx_prod.wrapping_sub(f.tx_rsp_cons) >= 128 {
            let mut out = [0i16; 0];
            let _ = f.tx_wait(&mut out, WAIT_NS);
        }
        f.send_nowait(&frame(to, f.mac, b'S', n as u32));
        n += 1;
        // Pongs or anything else that comes back is taken and thrown away.
        let _ = f.recv(&mut buf, 0);
        if n.is_multiple_of(256) {
            note(format_args!("net: streamed {n} frames"));
        }
    }
}

/// Waits a little over a second: the backend logs one refusal a second per interface, so
/// that each kind of refusal that follows gets its own line.
fn pause() {
    let until = now_ns() + 1100 * NS_PER_MS;
    while now_ns() < until {
        events::block_until(Some(until));
    }
}

/// Sends the raw `slots` and checks every response is `want`.
fn expect_all(c: &mut Checks, f: &mut Netif, what: &str, slots: &[NetifTxRequest], want: i16) {
    let mut out = [0i16; 32];
    pause();
    f.push_raw(slots);
    let r = f.tx_wait(&mut out, WAIT_NS);
    let n = slots.len();
    let ok = r == Ok(n) && out[..n.min(32)].iter().all(|&s| s == want);
    c.check(what, ok, format_args!("{r:?}: {:?}", &out[..n.min(32)]));
}

/// `net_hostile`.
pub fn hostile() -> ! {
    let mut c = Checks::new();
    let mut bus = match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => {
            c.check("Xenbus::connect", false, format_args!("{e:?}"));
            c.finish()
        }
    };
    // vif 1 without request-rx-copy: refused, the backend closes.
    match Netif::connect(&mut bus, 1, false) {
        Err("backend closed") => {
            c.check(
                "vif 1 without request-rx-copy is refused",
                true,
                format_args!(""),
            );
        }
        Err(e) => {
            c.check(
                "vif 1 without request-rx-copy is refused",
                false,
                format_args!("{e}"),
            );
        }
        Ok(mut f) => {
            c.check(
                "vif 1 without request-rx-copy is refused",
                false,
                format_args!("it connected"),
            );
            f.release();
        }
    }
    // vif 2: the transmit ring's grant ended under the backend's feet. The backend mapped
    // the ring at connect and the mapping holds the page (Xen's pin): it serves the ring
    // on, as Xen's netback does. The interface is then closed properly (the backend unmaps
    // before it says Closed), so that vif 0 can use the same grant references.
    match Netif::connect(&mut bus, 2, true) {
        Ok(mut f) => {
            if let Some(t) = &f.table {
                t.write(8 * u64::from(RING_TX_REF), 0);
            }
            f.push_raw(&[NetifTxRequest {
                gref: TX_REF,
                offset: 0,
                flags: 0,
                id: 1,
                size: FRAME as u16,
            }]);
            pause();
            let rsp = f.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
            c.eq(
                "vif 2 with its ring's grant ended is still served (the ring is mapped)",
                rsp,
                1,
            );
            f.close(&mut bus);
        }
        Err(e) => {
            c.check("vif 2 connects", false, format_args!("{e}"));
        }
    }
    // The refused interfaces' windows and grants are given back before vif 0 takes them.
    let mut f = match Netif::connect(&mut bus, 0, true) {
        Ok(f) => f,
        Err(e) => {
            c.check("vif 0 connects", false, format_args!("{e}"));
            c.finish()
        }
    };
    let me = f.mac;
    let good = frame(BROADCAST, me, b'H', 1);
    f.put(2, 0, &good);
    let one = |gref: u32, size: u16| NetifTxRequest {
        gref,
        offset: 0,
        flags: 0,
        id: 7,
        size,
    };
    expect_all(
        &mut c,
        &mut f,
        "a bad grant reference gets NETIF_RSP_ERROR",
        &[one(BAD_REF, 60)],
        NETIF_RSP_ERROR,
    );
    expect_all(
        &mut c,
        &mut f,
        "a frame of 2000 bytes (over the MTU) gets NETIF_RSP_ERROR",
        &[
            NetifTxRequest {
                flags: NETTXF_MORE_DATA,
                size: 2000,
                ..one(TX_REF, 0)
            },
            NetifTxRequest {
                offset: 1000,
                ..one(TX_REF, 1000)
            },
        ],
        NETIF_RSP_ERROR,
    );
    let mut nineteen = [one(TX_REF, 10); 19];
    nineteen[0].size = 19 * 10;
    for (i, s) in nineteen.iter_mut().enumerate() {
        s.offset = (i * 10) as u16;
        if i < 18 {
            s.flags = NETTXF_MORE_DATA;
        }
    }
    expect_all(
        &mut c,
        &mut f,
        "a frame of 19 slots gets NETIF_RSP_ERROR on every slot",
        &nineteen,
        NETIF_RSP_ERROR,
    );
    expect_all(
        &mut c,
        &mut f,
        "a frame of 10 bytes gets NETIF_RSP_ERROR",
        &[one(TX_REF, 10)],
        NETIF_RSP_ERROR,
    );
    expect_all(
        &mut c,
        &mut f,
        "a good frame after them gets NETIF_RSP_OKAY",
        &[one(TX_REF, FRAME as u16)],
        NETIF_RSP_OKAY,
    );
    // A flood: ring-fulls of refused frames, then of frames to itself (a learning bridge
    // sends those nowhere), each answered.
    let flood = arg_num("flood", 2048) as u32;
    for (what, size, want) in [
        ("refused", 10u16, NETIF_RSP_ERROR),
        ("accepted", FRAME as u16, NETIF_RSP_OKAY),
    ] {
        if want == NETIF_RSP_OKAY {
            f.put(2, 0, &frame(me, me, b'F', 0));
        }
        let start = now_ns();
        let mut sent = 0u32;
        let mut bad = 0u32;
        let mut out = [0i16; 128];
        while sent < flood {
            let batch = [one(TX_REF, size); 128];
            f.push_raw(&batch);
            match f.tx_wait(&mut out, WAIT_NS) {
                Ok(n) => bad += out[..n.min(128)].iter().filter(|&&s| s != want).count() as u32,
                Err(_) => {
                    bad += 128;
                    break;
                }
            }
            sent += 128;
        }
        let ms = (now_ns() - start) / NS_PER_MS;
        note(format_args!(
            "net: flood of {sent} {what} frames answered in {ms} ms"
        ));
        c.eq(
            format_args!("every {what} flood frame answered as expected"),
            bad,
            0,
        );
        if want == NETIF_RSP_ERROR {
            // The next refusal's line counts the flood's, held back.
            expect_all(
                &mut c,
                &mut f,
                "a short frame after the flood gets NETIF_RSP_ERROR",
                &[one(TX_REF, 12)],
                NETIF_RSP_ERROR,
            );
        }
    }
    // Last: a producer index far ahead. The backend stops serving the ring.
    let before = f.tx_prod;
    f.word(0, SRING_REQ_PROD)
        .store(before.wrapping_add(1000), Ordering::Release);
    let _ = calls::evtchn_send(f.port);
    let wait_until = now_ns() + 2000 * NS_PER_MS;
    while now_ns() < wait_until {
        events::block_until(Some(wait_until));
    }
    let rsp = f.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
    c.eq("no response after a producer far ahead", rsp, before);
    c.finish()
}

/// `net_spoof victim=<mac>`: frames whose source is not the interface's own MAC (the
/// victim's, then a made-up one) must be refused (`NETIF_RSP_ERROR`), a frame with its own
/// MAC accepted; it notes `net: spoof checks done, <n> failed`, waits for another domain's
/// hello, then keeps sending a frame with the victim's MAC as source every 200 ms until
/// destroyed (at most 600 s), so that a bridge that learned from such frames would send the
/// victim's traffic here.
pub fn spoof() -> ! {
    let mut c = Checks::new();
    let (mut bus, mut f) = open(&mut c, 0);
    let Some(victim) = arg("victim").and_then(parse_mac) else {
        c.check("victim=<mac> on the command line", false, format_args!(""));
        c.finish()
    };
    let me = f.mac;
    let made_up = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    for (what, src, want) in [
        (
            "a frame with another domain's MAC as source gets NETIF_RSP_ERROR",
            victim,
            NETIF_RSP_ERROR,
        ),
        (
            "a frame with a made-up source MAC gets NETIF_RSP_ERROR",
            made_up,
            NETIF_RSP_ERROR,
        ),
        (
            "a frame with its own MAC as source gets NETIF_RSP_OKAY",
            me,
            NETIF_RSP_OKAY,
        ),
    ] {
        pause();
        let got = f.send(&frame(BROADCAST, src, b'H', 0), 0);
        c.eq(what, got, Ok(want));
    }
    note(format_args!(
        "net: spoof checks done, {} failed",
        c.failures()
    ));
    // Quiet until another domain says hello (the pinger): then the victim's MAC is claimed
    // while that domain talks to the victim.
    let end = now_ns() + 600_000 * NS_PER_MS;
    let mut buf = [0u8; 2048];
    while let Some(r) = f.recv(&mut buf, end) {
        if let Ok(n) = r
            && let Some((_, src, b'H', _)) = parse(&buf[..n])
            && src != victim
            && src != me
        {
            break;
        }
    }
    note(format_args!("net: claiming the victim's mac"));
    let mut seq = 0u32;
    while now_ns() < end {
        let _ = f.send(&frame(BROADCAST, victim, b'H', seq), 0);
        seq = seq.wrapping_add(1);
        let until = now_ns() + 200 * NS_PER_MS;
        while now_ns() < until {
            events::block_until(Some(until));
        }
    }
    f.close(&mut bus);
    c.finish()
}

/// Rounds [`race`] makes when the command line does not say (`rounds=N`).
const RACE_ROUNDS: u64 = 2000;
/// How long [`race`] waits for one round's responses at most.
const RACE_WAIT_NS: u64 = 200 * NS_PER_MS;
/// [`NET_TX_RING_SIZE`](guest_abi::netif::NET_TX_RING_SIZE).
const TX_RING: u32 = guest_abi::netif::NET_TX_RING_SIZE;

/// A transmit request of one slot that netback may drop but never finds fatal: no flags,
/// its bytes inside their page.
fn harmless(r: u64) -> NetifTxRequest {
    let offset = (r % PAGE as u64) as u16;
    let size = ((r >> 12) % (PAGE as u64 - u64::from(offset) + 1)) as u16;
    let gref = match (r >> 24) % 4 {
        0 => TX_REF,
        1 => TX_REF + 1,
        2 => BAD_REF,
        _ => ((r >> 28) % 512) as u32,
    };
    NetifTxRequest {
        gref,
        offset,
        flags: 0,
        id: (r >> 40) as u16,
        size,
    }
}

/// `net_race`.
pub fn race() -> ! {
    let mut c = Checks::new();
    let (_bus, mut f) = open(&mut c, 0);
    let rounds = arg_num("rounds", RACE_ROUNDS);
    let me = f.mac;
    // A frame to itself: accepted, and a learning bridge sends it nowhere.
    f.put(2, 0, &frame(me, me, b'R', 0));
    // xorshift: the scribbles need not be good random numbers, only varied.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ now_ns();
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let good = |id: u16| NetifTxRequest {
        gref: TX_REF,
        offset: 0,
        flags: 0,
        id,
        size: FRAME as u16,
    };
    let publish = |f: &Netif, prod: u32| {
        fence(Ordering::Release);
        f.word(0, SRING_REQ_PROD).store(prod, Ordering::Release);
        let _ = calls::evtchn_send(f.port);
    };
    let start = now_ns();
    let (mut answered, mut flips, mut late) = (0u64, 0u64, 0u64);
    let mut late_in_a_row = 0u32;
    for k in 0..rounds {
        if late_in_a_row >= 10 {
            // The ring is no longer served: no point waiting out every round.
            break;
        }
        let idx = f.tx_prod;
        let rsp0 = f.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
        // A new request only while the ring has room for it (a round that timed out may
        // have left a ring's worth outstanding).
        let mine = idx.wrapping_sub(rsp0) < TX_RING;
        if mine {
            f.put(0, tx_entry_offset(idx), &good(k as u16).to_bytes());
            f.tx_prod = idx.wrapping_add(1);
        }
        publish(&f, f.tx_prod);
        let deadline = now_ns() + RACE_WAIT_NS;
        let mut j: u64 = 0;
        loop {
            let rsp = f.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
            if rsp == f.tx_prod {
                answered += 1;
                late_in_a_row = 0;
                break;
            }
            if now_ns() >= deadline {
                late += 1;
                late_in_a_row += 1;
                break;
            }
            // The published frame's size flips between 60 and 2000 bytes (dropped, not
            // fatal): a backend that checked one and copied the other would copy past the
            // frame's room in its scratch.
            // (Only its own, and only until answered: its slot may then hold a harmless entry
            // of another offset, published below.)
            if mine && (rsp.wrapping_sub(idx) as i32) <= 0 {
                let size: u16 = if j.is_multiple_of(2) {
                    2000
                } else {
                    FRAME as u16
                };
                f.put(0, tx_entry_offset(idx) + 10, &size.to_le_bytes());
                flips += 1;
            }
            // A random harmless entry ahead (in a slot whose request was answered: a slot
            // still published would be torn under the backend, which may find the mix
            // fatal), and now and then published: never more than a ring ahead of the
            // responses, never backwards.
            let ahead = f.tx_prod.wrapping_add(1 + (rand() % 8) as u32);
            if ahead.wrapping_sub(rsp) < TX_RING {
                f.put(0, tx_entry_offset(ahead), &harmless(rand()).to_bytes());
            }
            f.word(0, SRING_RSP_EVENT)
                .store(rand() as u32, Ordering::Relaxed);
            if j % 16 == 15 {
                let room = TX_RING - 1;
                let target = if ahead.wrapping_sub(rsp) <= room {
                    ahead
                } else {
                    rsp.wrapping_add(room)
                };
                if target.wrapping_sub(f.tx_prod) as i32 > 0 {
                    // Everything newly published is harmless, whatever the ring held.
                    let mut i = f.tx_prod;
                    while i != target {
                        f.put(0, tx_entry_offset(i), &harmless(rand()).to_bytes());
                        i = i.wrapping_add(1);
                    }
                    f.tx_prod = target;
                    publish(&f, target);
                }
            }
            j += 1;
        }
    }
    let ms = (now_ns() - start) / NS_PER_MS;
    note(format_args!(
        "net: race: {rounds} rounds, {answered} answered, {late} late, {flips} flips in {ms} ms"
    ));
    c.check(
        "the backend kept serving the ring rewritten under it",
        answered >= rounds / 2,
        format_args!("{answered} of {rounds} answered"),
    );
    note(format_args!("net: race done"));
    if c.failures() > 0 {
        c.finish()
    }
    // Until destroyed: good frames kept outstanding and notified at full speed, so that the
    // backend has work on the mapped ring when the domain is destroyed.
    let mut k: u64 = 0;
    loop {
        let rsp = f.word(0, SRING_RSP_PROD).load(Ordering::Acquire);
        if f.tx_prod.wrapping_sub(rsp) < TX_RING - 1 {
            f.put(0, tx_entry_offset(f.tx_prod), &good(k as u16).to_bytes());
            f.tx_prod = f.tx_prod.wrapping_add(1);
            k += 1;
        }
        publish(&f, f.tx_prod);
    }
}
