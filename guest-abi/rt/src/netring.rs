//! The frontend's half of Xen's `netif` rings (guest-abi [`netif`](guest_abi::netif)), apart
//! from grants, xenstore and events: what [`netfront`](crate::netfront) puts in the rings and
//! how it checks what the backend answers. It builds and is unit-tested on the host, against
//! a backend played by the tests (hostile ones included).
//!
//! # The shared pages
//!
//! [`Rings`] works on [`PAGES`] pages that a [`Shared`] gives access to: the transmit ring
//! ([`TX_RING`]), the receive ring ([`RX_RING`]), one receive buffer per receive ring entry
//! (from [`RX_BUF`]) and the transmit buffers, two to a page (from [`TX_BUF`]). Page `p` is
//! granted to the backend as reference `first_ref + p` (the transmit buffers read-only).
//!
//! # What the backend is trusted with
//!
//! Nothing but the bytes of the frames. Its indexes are clamped to what the frontend has
//! asked for (a `rsp_prod` far ahead answers at most the requests outstanding and is
//! counted in [`Stats::bad`]); every response's `id`, `offset`, size and flags are checked
//! before anything is copied; a bad one is dropped and counted, and its slot reused.
//!
//! * Receive buffers are tied to ring positions, as in Linux's netfront: the buffer posted
//!   at index `i` is buffer `i % 256`, with that number as its `id`, and every buffer is
//!   posted all the time. The response at index `i` must carry the same `id`; whatever it
//!   says, buffer `i % 256` is posted again at index `i + 256` once its bytes are copied
//!   out, so no answer of the backend can lose or double a buffer.
//! * Transmit slots are named by `id`: one of [`TX_SLOTS`] half-page buffers. A response
//!   frees the slot its `id` names only if that slot is in flight; unknown or repeated ids
//!   are counted and ignored, so a backend can at worst keep slots busy (then `send` says
//!   [`SendError::Busy`]).
//!
//! Frames are single-slot both ways (`feature-sg` is not asked for): a receive response
//! with `NETRXF_MORE_DATA` or `NETRXF_EXTRA_INFO` is dropped with the slots that follow it
//! up to one without `NETRXF_MORE_DATA`.

use core::sync::atomic::{Ordering, fence};

use guest_abi::blkif::{SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD};
use guest_abi::netif::{
    ETH_FRAME_LEN, NET_RX_RING_SIZE, NET_TX_RING_SIZE, NETIF_RSP_OKAY, NETRXF_EXTRA_INFO,
    NETRXF_MORE_DATA, NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse,
    rx_entry_offset, tx_entry_offset,
};

/// Bytes in a page.
pub const PAGE: usize = 4096;
/// Page of the transmit ring.
pub const TX_RING: usize = 0;
/// Page of the receive ring.
pub const RX_RING: usize = 1;
/// Receive buffers: one page per receive ring entry.
pub const RX_BUFS: usize = NET_RX_RING_SIZE as usize;
/// First receive buffer page.
pub const RX_BUF: usize = 2;
/// Transmit slots: one per transmit ring entry.
pub const TX_SLOTS: usize = NET_TX_RING_SIZE as usize;
/// Bytes of one transmit slot's buffer (half a page: a whole frame fits).
pub const TX_SLOT_BYTES: usize = PAGE / 2;
/// First transmit buffer page.
pub const TX_BUF: usize = RX_BUF + RX_BUFS;
/// Pages the rings and buffers take (386: about 1.5 MiB).
pub const PAGES: usize = TX_BUF + TX_SLOTS / 2;
/// Free transmit slots below which the frontend asks to be notified of transmit responses
/// ([`Rings::reclaim`]).
pub const TX_LOW_WATER: usize = TX_SLOTS / 4;
/// Distance of the transmit ring's `rsp_event` from the consumer while no notification is
/// wanted: half the index space, never crossed.
const TX_QUIET: u32 = 1 << 31;
/// The shortest frame sent: an Ethernet header.
pub const ETH_HEADER: usize = 14;

const _: () = assert!(TX_SLOT_BYTES >= ETH_FRAME_LEN);

/// The pages shared with the backend, as the frontend sees them. Reads and writes of
/// entries and buffers are plain copies; the index accessors order them (acquire on a load,
/// release on a store), because the backend reads and writes the same pages concurrently.
pub trait Shared {
    /// The 32-bit ring index at byte `at` of page `page` (acquire).
    fn index(&self, page: usize, at: usize) -> u32;
    /// Sets the 32-bit ring index at byte `at` of page `page` (release).
    fn set_index(&self, page: usize, at: usize, value: u32);
    /// Copies `out.len()` bytes from byte `at` of page `page`.
    fn read(&self, page: usize, at: usize, out: &mut [u8]);
    /// Copies `data` to byte `at` of page `page`.
    fn write(&self, page: usize, at: usize, data: &[u8]);
}

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Every transmit slot is in flight: reclaim (wait for the backend) and try again.
    Busy,
    /// Shorter than an Ethernet header or longer than [`ETH_FRAME_LEN`].
    Size,
}

/// What the frontend counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames put in the transmit ring.
    pub tx_frames: u64,
    /// Transmit responses with a status other than `NETIF_RSP_OKAY`.
    pub tx_errors: u64,
    /// Frames received and handed over.
    pub rx_frames: u64,
    /// Receive responses carrying an error status, or a frame longer than the caller's
    /// buffer.
    pub rx_dropped: u64,
    /// Responses that broke the protocol (index beyond the requests, unknown `id`, data
    /// outside its page, multi-slot frames): dropped.
    pub bad: u64,
}

/// The frontend's ring state over the shared pages `M`.
pub struct Rings<M: Shared> {
    mem: M,
    first_ref: u32,
    tx_req_prod: u32,
    tx_rsp_cons: u32,
    tx_in_flight: [bool; TX_SLOTS],
    tx_free: [u16; TX_SLOTS],
    tx_nr_free: usize,
    rx_req_prod: u32,
    rx_rsp_cons: u32,
    /// Inside a multi-slot frame being dropped.
    rx_skipping: bool,
    notify: bool,
    stats: Stats,
}

impl<M: Shared> Rings<M> {
    /// Fresh rings over `mem` (zeroed here), page `p` granted as `first_ref + p`: every
    /// receive buffer posted, every transmit slot free, responses wanted from the first on.
    pub fn new(mem: M, first_ref: u32) -> Self {
        let zero = [0u8; 64];
        for ring in [TX_RING, RX_RING] {
            for at in (0..PAGE).step_by(zero.len()) {
                mem.write(ring, at, &zero);
            }
            mem.set_index(ring, SRING_REQ_EVENT, 1);
            mem.set_index(ring, SRING_RSP_EVENT, 1);
        }
        let mut r = Rings {
            mem,
            first_ref,
            tx_req_prod: 0,
            tx_rsp_cons: 0,
            tx_in_flight: [false; TX_SLOTS],
            tx_free: [0; TX_SLOTS],
            tx_nr_free: TX_SLOTS,
            rx_req_prod: 0,
            rx_rsp_cons: 0,
            rx_skipping: false,
            notify: false,
            stats: Stats::default(),
        };
        for (i, f) in r.tx_free.iter_mut().enumerate() {
            // Handed out from the end: slot 0 first.
            *f = (TX_SLOTS - 1 - i) as u16;
        }
        for _ in 0..RX_BUFS {
            r.post_rx();
        }
        r.mem.set_index(RX_RING, SRING_REQ_PROD, r.rx_req_prod);
        r.notify = false;
        r
    }

    /// The shared pages.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// What was counted so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the backend must be notified (it asked to be, through a ring's event index,
    /// for requests produced since the last call); clears the flag.
    pub fn take_notify(&mut self) -> bool {
        core::mem::take(&mut self.notify)
    }

    /// Grant reference of page `p`.
    pub fn page_ref(&self, p: usize) -> u32 {
        self.first_ref + p as u32
    }

    /// Posts receive buffer `rx_req_prod % RX_BUFS` at `rx_req_prod` (not yet published).
    fn post_rx(&mut self) {
        let idx = self.rx_req_prod;
        let buf = idx as usize % RX_BUFS;
        let req = NetifRxRequest {
            id: buf as u16,
            _pad: 0,
            gref: self.page_ref(RX_BUF + buf),
        };
        self.mem
            .write(RX_RING, rx_entry_offset(idx), &req.to_bytes());
        self.rx_req_prod = idx.wrapping_add(1);
    }

    /// Publishes requests produced from `old` on in ring `page`, noting whether the backend
    /// wants to hear of them.
    fn publish(&mut self, page: usize, old: u32, new: u32) {
        fence(Ordering::Release);
        self.mem.set_index(page, SRING_REQ_PROD, new);
        fence(Ordering::SeqCst);
        let event = self.mem.index(page, SRING_REQ_EVENT);
        if guest_abi::blkif::need_notify(old, new, event) {
            self.notify = true;
        }
    }

    /// Responses the backend says are there in ring `page`, clamped to the requests it has
    /// (a claim beyond them is counted as bad).
    fn available(&mut self, page: usize, cons: u32, prod: u32) -> u32 {
        let rsp_prod = self.mem.index(page, SRING_RSP_PROD);
        let claimed = rsp_prod.wrapping_sub(cons);
        let outstanding = prod.wrapping_sub(cons);
        if claimed > outstanding {
            self.stats.bad += 1;
            return outstanding;
        }
        claimed
    }

    /// Takes the transmit responses that arrived and frees the slots they name; how many
    /// slots are free now.
    ///
    /// The backend is asked to notify transmit responses only while fewer than
    /// [`TX_LOW_WATER`] slots are free (as Linux's netfront asks only part way): a sender
    /// with room does not need them, and each one would wake the domain for nothing, taking
    /// the pCPU from the backend that is moving its frames.
    pub fn reclaim(&mut self) -> usize {
        loop {
            let n = self.available(TX_RING, self.tx_rsp_cons, self.tx_req_prod);
            for k in 0..n {
                let idx = self.tx_rsp_cons.wrapping_add(k);
                let mut b = [0u8; NetifTxResponse::SIZE];
                self.mem.read(TX_RING, tx_entry_offset(idx), &mut b);
                let rsp = NetifTxResponse::from_bytes(&b);
                let id = usize::from(rsp.id);
                if id >= TX_SLOTS || !self.tx_in_flight[id] {
                    self.stats.bad += 1;
                    continue;
                }
                if rsp.status != NETIF_RSP_OKAY {
                    self.stats.tx_errors += 1;
                }
                self.tx_in_flight[id] = false;
                self.tx_free[self.tx_nr_free] = rsp.id;
                self.tx_nr_free += 1;
            }
            self.tx_rsp_cons = self.tx_rsp_cons.wrapping_add(n);
            if self.tx_nr_free >= TX_LOW_WATER {
                // Not told of responses: an event index half the index space away is never
                // crossed by the at most a ring's worth outstanding (`need_notify`).
                self.mem.set_index(
                    TX_RING,
                    SRING_RSP_EVENT,
                    self.tx_rsp_cons.wrapping_add(TX_QUIET),
                );
                return self.tx_nr_free;
            }
            // Told of the next response; then look again for one that came meanwhile (Xen's
            // RING_FINAL_CHECK_FOR_RESPONSES).
            self.mem
                .set_index(TX_RING, SRING_RSP_EVENT, self.tx_rsp_cons.wrapping_add(1));
            fence(Ordering::SeqCst);
            if n == 0 || self.mem.index(TX_RING, SRING_RSP_PROD) == self.tx_rsp_cons {
                return self.tx_nr_free;
            }
        }
    }

    /// Whether a frame can be sent now (after taking the responses that arrived).
    pub fn can_send(&mut self) -> bool {
        self.reclaim() > 0 && self.tx_room()
    }

    fn tx_room(&self) -> bool {
        self.tx_req_prod.wrapping_sub(self.tx_rsp_cons) < NET_TX_RING_SIZE
    }

    /// Copies `frame` into a free transmit slot and puts its request in the ring (see
    /// [`Rings::take_notify`]).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        if frame.len() < ETH_HEADER || frame.len() > ETH_FRAME_LEN {
            return Err(SendError::Size);
        }
        if !self.can_send() {
            return Err(SendError::Busy);
        }
        self.tx_nr_free -= 1;
        let id = self.tx_free[self.tx_nr_free];
        let slot = usize::from(id);
        self.tx_in_flight[slot] = true;
        let page = TX_BUF + slot / 2;
        let offset = (slot % 2) * TX_SLOT_BYTES;
        self.mem.write(page, offset, frame);
        let req = NetifTxRequest {
            gref: self.page_ref(page),
            offset: offset as u16,
            flags: 0,
            id,
            size: frame.len() as u16,
        };
        let old = self.tx_req_prod;
        self.mem
            .write(TX_RING, tx_entry_offset(old), &req.to_bytes());
        self.tx_req_prod = old.wrapping_add(1);
        self.publish(TX_RING, old, self.tx_req_prod);
        self.stats.tx_frames += 1;
        Ok(())
    }

    /// Whether a receive response waits (without taking it); if none, the backend is asked
    /// to notify the next one (then looked at again, so that one arriving meanwhile is not
    /// slept through).
    pub fn rx_ready(&mut self) -> bool {
        if self.available(RX_RING, self.rx_rsp_cons, self.rx_req_prod) > 0 {
            return true;
        }
        self.mem
            .set_index(RX_RING, SRING_RSP_EVENT, self.rx_rsp_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.available(RX_RING, self.rx_rsp_cons, self.rx_req_prod) > 0
    }

    /// The next received frame, copied into `buf`: its length. Bad responses on the way are
    /// dropped (counted); every buffer taken is posted again. `None`: nothing now (the
    /// backend is asked to notify the next response), or a ring's worth of bad slots taken
    /// in this call.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut got = None;
        let old = self.rx_req_prod;
        // At most a ring's worth of slots a call: a backend that claims endless responses
        // cannot keep the caller here.
        for _ in 0..RX_BUFS {
            let n = self.available(RX_RING, self.rx_rsp_cons, self.rx_req_prod);
            if n == 0 {
                self.mem
                    .set_index(RX_RING, SRING_RSP_EVENT, self.rx_rsp_cons.wrapping_add(1));
                fence(Ordering::SeqCst);
                if self.mem.index(RX_RING, SRING_RSP_PROD) == self.rx_rsp_cons {
                    break;
                }
                continue;
            }
            let idx = self.rx_rsp_cons;
            let mut b = [0u8; NetifRxResponse::SIZE];
            self.mem.read(RX_RING, rx_entry_offset(idx), &mut b);
            let rsp = NetifRxResponse::from_bytes(&b);
            let len = self.check_rx(idx, &rsp, buf.len());
            if let Some(len) = len {
                let at = usize::from(rsp.offset);
                self.mem
                    .read(RX_BUF + idx as usize % RX_BUFS, at, &mut buf[..len]);
                self.stats.rx_frames += 1;
            }
            // The bytes are out: the buffer goes back (at idx + RX_BUFS, the position it is
            // tied to).
            self.rx_rsp_cons = idx.wrapping_add(1);
            self.post_rx();
            if len.is_some() {
                got = len;
                break;
            }
        }
        if self.rx_req_prod != old {
            self.publish(RX_RING, old, self.rx_req_prod);
        }
        got
    }

    /// The length of the frame the response at `idx` delivers, if it is well formed and fits
    /// `room`; counts it otherwise.
    fn check_rx(&mut self, idx: u32, rsp: &NetifRxResponse, room: usize) -> Option<usize> {
        let chained = self.rx_skipping;
        self.rx_skipping = rsp.flags & NETRXF_MORE_DATA != 0;
        if chained || rsp.flags & (NETRXF_MORE_DATA | NETRXF_EXTRA_INFO) != 0 {
            self.stats.bad += 1;
            return None;
        }
        if usize::from(rsp.id) != idx as usize % RX_BUFS {
            self.stats.bad += 1;
            return None;
        }
        if rsp.status <= 0 {
            self.stats.rx_dropped += 1;
            return None;
        }
        let len = rsp.status as usize;
        if usize::from(rsp.offset) + len > PAGE || len < ETH_HEADER {
            self.stats.bad += 1;
            return None;
        }
        if len > room {
            self.stats.rx_dropped += 1;
            return None;
        }
        Some(len)
    }
}

/// The MAC address in xenstore's `mac` value (`00:16:3e:12:34:56`, Xen's colon-separated
/// hex), or `None` if it is not one.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::vec;
    use std::vec::Vec;

    /// The shared pages on the host; the tests play the backend on them.
    struct Mem(RefCell<Vec<[u8; PAGE]>>);

    impl Mem {
        fn new() -> Self {
            Mem(RefCell::new(vec![[0xa5; PAGE]; PAGES]))
        }
        fn u32_at(&self, page: usize, at: usize) -> u32 {
            let p = &self.0.borrow()[page];
            u32::from_le_bytes(p[at..at + 4].try_into().unwrap())
        }
        fn put_u32(&self, page: usize, at: usize, v: u32) {
            self.0.borrow_mut()[page][at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn bytes(&self, page: usize, at: usize, n: usize) -> Vec<u8> {
            self.0.borrow()[page][at..at + n].to_vec()
        }
        fn put(&self, page: usize, at: usize, b: &[u8]) {
            self.0.borrow_mut()[page][at..at + b.len()].copy_from_slice(b);
        }
    }

    impl Shared for &Mem {
        fn index(&self, page: usize, at: usize) -> u32 {
            self.u32_at(page, at)
        }
        fn set_index(&self, page: usize, at: usize, value: u32) {
            self.put_u32(page, at, value)
        }
        fn read(&self, page: usize, at: usize, out: &mut [u8]) {
            out.copy_from_slice(&self.0.borrow()[page][at..at + out.len()]);
        }
        fn write(&self, page: usize, at: usize, data: &[u8]) {
            self.put(page, at, data)
        }
    }

    const REF0: u32 = 64;

    /// The backend's view: its consumer indexes and response producers.
    #[derive(Default)]
    struct Backend {
        tx_cons: u32,
        tx_rsp: u32,
        rx_cons: u32,
        rx_rsp: u32,
    }

    impl Backend {
        /// Takes the next transmit request and the frame it names.
        fn take_tx(&mut self, m: &Mem) -> Option<(NetifTxRequest, Vec<u8>)> {
            if m.u32_at(TX_RING, SRING_REQ_PROD) == self.tx_cons {
                return None;
            }
            let b = m.bytes(TX_RING, tx_entry_offset(self.tx_cons), 12);
            self.tx_cons += 1;
            let req = NetifTxRequest::from_bytes(&b.try_into().unwrap());
            let page = (req.gref - REF0) as usize;
            assert!((TX_BUF..PAGES).contains(&page));
            let data = m.bytes(page, req.offset.into(), req.size.into());
            Some((req, data))
        }
        fn answer_tx(&mut self, m: &Mem, id: u16, status: i16) {
            let r = NetifTxResponse { id, status };
            m.put(TX_RING, tx_entry_offset(self.tx_rsp), &r.to_bytes());
            self.tx_rsp += 1;
            m.put_u32(TX_RING, SRING_RSP_PROD, self.tx_rsp);
        }
        /// Delivers `frame` into the next posted buffer, with `rsp`'s fields overriding
        /// what an honest backend would say when given.
        fn deliver(&mut self, m: &Mem, frame: &[u8], edit: impl FnOnce(&mut NetifRxResponse)) {
            assert_ne!(m.u32_at(RX_RING, SRING_REQ_PROD), self.rx_cons, "no buffer");
            let b = m.bytes(RX_RING, rx_entry_offset(self.rx_cons), 8);
            let req = NetifRxRequest::from_bytes(&b.try_into().unwrap());
            self.rx_cons += 1;
            let page = (req.gref - REF0) as usize;
            assert!((RX_BUF..TX_BUF).contains(&page));
            m.put(page, 0, frame);
            let mut rsp = NetifRxResponse {
                id: req.id,
                offset: 0,
                flags: 0,
                status: frame.len() as i16,
            };
            edit(&mut rsp);
            m.put(RX_RING, rx_entry_offset(self.rx_rsp), &rsp.to_bytes());
            self.rx_rsp += 1;
            m.put_u32(RX_RING, SRING_RSP_PROD, self.rx_rsp);
        }
    }

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    #[test]
    fn fresh_rings_post_every_receive_buffer() {
        let m = Mem::new();
        let r = Rings::new(&m, REF0);
        assert_eq!(m.u32_at(RX_RING, SRING_REQ_PROD), RX_BUFS as u32);
        assert_eq!(m.u32_at(TX_RING, SRING_REQ_PROD), 0);
        assert_eq!(m.u32_at(RX_RING, SRING_RSP_PROD), 0);
        for i in 0..RX_BUFS as u32 {
            let b = m.bytes(RX_RING, rx_entry_offset(i), 8);
            let q = NetifRxRequest::from_bytes(&b.try_into().unwrap());
            assert_eq!((q.id as u32, q.gref), (i, REF0 + RX_BUF as u32 + i));
        }
        assert_eq!(r.page_ref(TX_BUF), REF0 + 258);
        assert!(r.page_ref(PAGES - 1) < 512, "fits one grant-table frame");
    }

    #[test]
    fn frames_go_out_and_slots_come_back() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        let mut be = Backend::default();
        // The backend asks to hear of the first request.
        m.put_u32(TX_RING, SRING_REQ_EVENT, 1);
        r.send(&frame(60, 1)).unwrap();
        assert!(r.take_notify());
        r.send(&frame(1514, 2)).unwrap();
        assert!(!r.take_notify(), "not asked for the second");
        let (a, da) = be.take_tx(&m).unwrap();
        let (b, db) = be.take_tx(&m).unwrap();
        assert_eq!((da, db), (frame(60, 1), frame(1514, 2)));
        assert_ne!(a.id, b.id);
        assert_eq!(a.flags, 0);
        be.answer_tx(&m, a.id, NETIF_RSP_OKAY);
        be.answer_tx(&m, b.id, guest_abi::netif::NETIF_RSP_ERROR);
        assert_eq!(r.reclaim(), TX_SLOTS);
        assert_eq!(r.stats().tx_errors, 1);
        assert_eq!(r.send(&frame(13, 0)), Err(SendError::Size));
        assert_eq!(r.send(&frame(1515, 0)), Err(SendError::Size));
    }

    #[test]
    fn transmit_responses_are_notified_only_when_slots_run_low() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        let mut be = Backend::default();
        let wants = |m: &Mem, rsp_prod: u32, old: u32| {
            guest_abi::blkif::need_notify(old, rsp_prod, m.u32_at(TX_RING, SRING_RSP_EVENT))
        };
        // Plenty free: a backend answering any number of requests is not asked to notify.
        let mut ids = vec![];
        for i in 0..TX_SLOTS - TX_LOW_WATER {
            r.send(&frame(100, i as u8)).unwrap();
            ids.push(be.take_tx(&m).unwrap().0.id);
        }
        assert_eq!(r.reclaim(), TX_LOW_WATER);
        assert!(!wants(&m, 1, 0) && !wants(&m, 200, 0));
        // One more in flight: below the low water, the next response is asked for.
        r.send(&frame(100, 0)).unwrap();
        ids.push(be.take_tx(&m).unwrap().0.id);
        assert_eq!(r.reclaim(), TX_LOW_WATER - 1);
        assert!(wants(&m, 1, 0), "the first response is notified");
        // Answered: room again, quiet again.
        for id in ids {
            be.answer_tx(&m, id, NETIF_RSP_OKAY);
        }
        assert_eq!(r.reclaim(), TX_SLOTS);
        let cons = r.tx_rsp_cons;
        assert!(!wants(&m, cons.wrapping_add(TX_SLOTS as u32), cons));
    }

    #[test]
    fn a_backend_that_never_answers_makes_send_busy() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        for i in 0..TX_SLOTS {
            r.send(&frame(100, i as u8)).unwrap();
        }
        assert_eq!(r.send(&frame(100, 0)), Err(SendError::Busy));
        assert!(!r.can_send());
    }

    #[test]
    fn hostile_tx_responses_free_nothing_they_should_not() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        let mut be = Backend::default();
        let mut ids = vec![];
        for _ in 0..4 {
            r.send(&frame(100, 1)).unwrap();
            ids.push(be.take_tx(&m).unwrap().0.id);
        }
        // An id out of range, a real one twice, another real one; two stay in flight.
        be.answer_tx(&m, 999, 0);
        be.answer_tx(&m, ids[0], 0);
        be.answer_tx(&m, ids[0], 0);
        be.answer_tx(&m, ids[1], 0);
        assert_eq!(r.reclaim(), TX_SLOTS - 2);
        assert_eq!(r.stats().bad, 2);
        // Four requests were answered (badly): more responses than requests are clamped
        // and counted; the two slots the backend never freed stay busy (its loss only).
        be.answer_tx(&m, ids[2], 0);
        be.answer_tx(&m, ids[3], 0);
        assert_eq!(r.reclaim(), TX_SLOTS - 2);
        assert_eq!(r.stats().bad, 3);
        // rsp_prod far ahead: nothing outstanding to answer.
        m.put_u32(TX_RING, SRING_RSP_PROD, 0x8000_0000);
        assert_eq!(r.reclaim(), TX_SLOTS - 2);
        assert_eq!(r.stats().bad, 4);
        // Every other slot still works, none handed out twice.
        m.put_u32(TX_RING, SRING_RSP_PROD, r.tx_rsp_cons);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..TX_SLOTS - 2 {
            r.send(&frame(100, 1)).unwrap();
        }
        while let Some((q, _)) = be.take_tx(&m) {
            assert!(seen.insert(q.id));
            assert!(q.id != ids[2] && q.id != ids[3]);
        }
        assert_eq!(seen.len(), TX_SLOTS - 2);
        assert_eq!(r.send(&frame(100, 0)), Err(SendError::Busy));
    }

    #[test]
    fn frames_come_in_and_buffers_go_back() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        let mut be = Backend::default();
        let mut buf = [0u8; 1514];
        assert_eq!(r.recv(&mut buf), None);
        assert_eq!(
            m.u32_at(RX_RING, SRING_RSP_EVENT),
            1,
            "wants the first response"
        );
        // Around the ring more than twice: buffers are reposted.
        for i in 0..600usize {
            let f = frame(60 + i % 1400, i as u8);
            be.deliver(&m, &f, |_| {});
            assert!(r.rx_ready());
            assert_eq!(r.recv(&mut buf), Some(f.len()));
            assert_eq!(&buf[..f.len()], &f[..]);
            assert_eq!(
                m.u32_at(RX_RING, SRING_REQ_PROD),
                (RX_BUFS + i + 1) as u32,
                "reposted"
            );
        }
        assert_eq!(r.stats().rx_frames, 600);
        assert_eq!(r.stats().bad, 0);
    }

    #[test]
    fn hostile_rx_responses_are_dropped_and_buffers_kept() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        let mut be = Backend::default();
        let mut buf = [0u8; 1514];
        let f = frame(100, 7);
        // Data beyond the page, a wrong id, an error status, a multi-slot frame of two, an
        // extra-info slot, one longer than the caller's buffer, one shorter than a header.
        be.deliver(&m, &f, |r| r.offset = 4090);
        be.deliver(&m, &f, |r| r.id = r.id.wrapping_add(1));
        be.deliver(&m, &f, |r| r.status = -1);
        be.deliver(&m, &f, |r| r.flags = NETRXF_MORE_DATA);
        be.deliver(&m, &f, |_| {});
        be.deliver(&m, &f, |r| r.flags = NETRXF_EXTRA_INFO);
        be.deliver(&m, &f, |r| r.status = 2000);
        be.deliver(&m, &f, |r| r.status = 3);
        be.deliver(&m, &f, |r| r.status = i16::MAX);
        // Then a good one.
        be.deliver(&m, &frame(64, 9), |_| {});
        assert_eq!(r.recv(&mut buf), Some(64));
        assert_eq!(&buf[..64], &frame(64, 9)[..]);
        let s = r.stats();
        assert_eq!((s.rx_frames, s.rx_dropped, s.bad), (1, 2, 7));
        assert_eq!(r.recv(&mut buf), None);
        // A frame longer than a small caller buffer is dropped, not cut.
        be.deliver(&m, &f, |_| {});
        assert_eq!(r.recv(&mut buf[..50]), None);
        // Every buffer is posted again.
        assert_eq!(m.u32_at(RX_RING, SRING_REQ_PROD), (RX_BUFS + 11) as u32);
        // rsp_prod far ahead: one call takes at most a ring's worth, then returns.
        m.put_u32(RX_RING, SRING_RSP_PROD, be.rx_rsp + 100_000);
        let bad = r.stats().bad;
        assert_eq!(r.recv(&mut buf), None);
        assert!(r.stats().bad > bad);
        assert_eq!(
            m.u32_at(RX_RING, SRING_REQ_PROD)
                .wrapping_sub(r.rx_rsp_cons),
            RX_BUFS as u32,
            "every buffer still posted"
        );
    }

    /// A backend that writes random bytes over both rings' entries and indexes between the
    /// frontend's calls: the frontend never panics, never reads outside a page (the test
    /// memory would panic), keeps every receive buffer posted and never hands out a
    /// transmit slot twice.
    #[test]
    fn a_random_backend_breaks_nothing() {
        let m = Mem::new();
        let mut r = Rings::new(&m, REF0);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut buf = [0u8; 1514];
        for round in 0..20_000 {
            // Scribble: an index, or some entry bytes, of either ring.
            let ring = if rand() % 2 == 0 { TX_RING } else { RX_RING };
            match rand() % 4 {
                0 => m.put_u32(ring, SRING_RSP_PROD, rand() as u32),
                1 => {
                    let cons = if ring == TX_RING {
                        r.tx_rsp_cons
                    } else {
                        r.rx_rsp_cons
                    };
                    m.put_u32(
                        ring,
                        SRING_RSP_PROD,
                        cons.wrapping_add((rand() % 300) as u32),
                    );
                }
                _ => {
                    let at = 64 + (rand() as usize % (PAGE - 64 - 8));
                    m.put(ring, at, &rand().to_le_bytes());
                }
            }
            match rand() % 3 {
                0 => {
                    let n = 14 + rand() as usize % 1501;
                    let _ = r.send(&frame(n, round as u8));
                }
                1 => {
                    if let Some(n) = r.recv(&mut buf) {
                        assert!((ETH_HEADER..=1514).contains(&n));
                    }
                }
                _ => {
                    r.reclaim();
                }
            }
            assert_eq!(
                r.rx_req_prod.wrapping_sub(r.rx_rsp_cons),
                RX_BUFS as u32,
                "every receive buffer posted"
            );
            assert_eq!(m.u32_at(RX_RING, SRING_REQ_PROD), r.rx_req_prod);
            let in_flight = r.tx_in_flight.iter().filter(|&&b| b).count();
            assert_eq!(in_flight + r.tx_nr_free, TX_SLOTS);
            let mut free: Vec<u16> = r.tx_free[..r.tx_nr_free].to_vec();
            free.sort_unstable();
            free.dedup();
            assert_eq!(free.len(), r.tx_nr_free, "a slot free twice");
            assert!(free.iter().all(|&i| !r.tx_in_flight[usize::from(i)]));
        }
        assert!(r.stats().bad > 0);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("00:16:3e:0a:ff:01"),
            Some([0, 0x16, 0x3e, 0x0a, 0xff, 1])
        );
        assert_eq!(
            parse_mac("0:16:3e:a:ff:1\n"),
            Some([0, 0x16, 0x3e, 0xa, 0xff, 1])
        );
        for bad in [
            "",
            "00:16:3e:0a:ff",
            "00:16:3e:0a:ff:01:02",
            "00:16:3e:0a:ff:g1",
            "000:1:2:3:4:5",
            "00::3e:0a:ff:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
