//! Serving a domain's ring page (`struct xenstore_domain_interface`, guest-abi
//! [`XenstoreDomainInterface`](guest_abi::xenstore::XenstoreDomainInterface)).
//!
//! The caller (dom0's kernel) copies the page in — the indexes first, then the rings, so
//! that no byte is older than the index that published it — calls [`service`], and writes
//! back what it returns, in order: response bytes first, then the indexes, so the domain never sees an
//! index ahead of its bytes. The page is the domain's and may change at any time: the
//! store keeps its own `req_cons` and `rsp_prod` and trusts the page only for the
//! domain's two indexes, `req_prod` and `rsp_cons`. If either claims more than a ring's
//! worth, the ring is broken: the store writes `XENSTORE_ERROR_RINGIDX` into `error` and
//! stops serving that domain (Xen's rule); every other domain goes on being served.

use alloc::vec::Vec;

use guest_abi::xenstore::{XENSTORE_RING_SIZE, XenstoreDomainInterface as Iface};

use crate::store::{ConnId, Store};

/// `error` value for impossible ring indexes (Xen's `XENSTORE_ERROR_RINGIDX`).
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;

/// Rounds of "take requests, give replies" one [`service`] call makes at most.
const ROUNDS: usize = 4;

/// Requests one [`service`] call handles at most: the caller serves every ring in turn,
/// so a domain that floods its ring gets this many served per turn, like every other
/// (the rest wait in its ring, [`Writes::more`]).
pub const REQUESTS_PER_SERVICE: usize = 8;

const RING: u32 = XENSTORE_RING_SIZE as u32;

/// The store's side of a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
    /// The ring page's machine frame.
    pub mfn: u64,
    /// The domain's end of the store channel.
    pub remote_port: u32,
    /// dom0's end, once bound.
    pub local_port: Option<u32>,
    req_cons: u32,
    rsp_prod: u32,
    /// Why the ring is no longer served.
    pub broken: Option<&'static str>,
}

impl RingState {
    /// A ring never used: indexes at 0.
    pub fn new(mfn: u64, remote_port: u32) -> Self {
        Self {
            mfn,
            remote_port,
            local_port: None,
            req_cons: 0,
            rsp_prod: 0,
            broken: None,
        }
    }
}

/// What to write back into the page, in order, and whether to notify the domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    /// `(offset in the page, bytes)`.
    pub chunks: Vec<(usize, Vec<u8>)>,
    /// Something changed that the domain should look at.
    pub notify: bool,
    /// The ring was found broken by this call (the reason).
    pub broke: Option<&'static str>,
    /// Requests are left in the ring: serve it again soon.
    pub more: bool,
    /// Request bytes taken from the ring by this call (`req_cons` moved by as much).
    pub consumed: u32,
}

fn u32_at(page: &[u8], at: usize) -> u32 {
    page.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Serves domain connection `id` given a copy of its ring `page` (at least
/// [`Iface::SIZE`] bytes; a shorter copy is read as all zero past its end).
pub fn service(store: &mut Store, id: ConnId, page: &[u8]) -> Writes {
    let mut w = Writes::default();
    let Some(mut st) = store.conns.get(&id).and_then(|c| c.ring.clone()) else {
        return w;
    };
    if st.broken.is_some() {
        return w;
    }
    let req_prod = u32_at(page, Iface::REQ_PROD);
    let rsp_cons = u32_at(page, Iface::RSP_CONS);
    let bad = if req_prod.wrapping_sub(st.req_cons) > RING {
        Some("its request producer index is more than a ring ahead")
    } else if st.rsp_prod.wrapping_sub(rsp_cons) > RING {
        Some("its response consumer index is past what was produced")
    } else {
        None
    };
    if let Some(why) = bad {
        st.broken = Some(why);
        w.broke = Some(why);
        w.chunks
            .push((Iface::ERROR, XENSTORE_ERROR_RINGIDX.to_le_bytes().to_vec()));
        w.notify = true;
        if let Some(c) = store.conns.get_mut(&id) {
            c.ring = Some(st);
        }
        return w;
    }
    let mut req_bytes = Vec::new();
    let mut budget = REQUESTS_PER_SERVICE;
    for _ in 0..ROUNDS {
        let mut progress = false;
        // Requests.
        let avail = req_prod.wrapping_sub(st.req_cons);
        if avail > 0 && budget > 0 {
            req_bytes.clear();
            req_bytes.extend((0..avail).map(|i| {
                let at = Iface::REQ + (st.req_cons.wrapping_add(i) % RING) as usize;
                page.get(at).copied().unwrap_or(0)
            }));
            let (taken, handled) = store.feed_some(id, &req_bytes, budget);
            budget -= handled.min(budget);
            let taken = taken as u32;
            if taken > 0 {
                st.req_cons = st.req_cons.wrapping_add(taken);
                w.consumed = w.consumed.wrapping_add(taken);
                progress = true;
            }
        }
        // Replies and events.
        let space = RING - st.rsp_prod.wrapping_sub(rsp_cons);
        let out = store.take_output(id, space as usize);
        if !out.is_empty() {
            let mut at = st.rsp_prod;
            let mut rest = &out[..];
            while !rest.is_empty() {
                let off = (at % RING) as usize;
                let n = rest.len().min(XENSTORE_RING_SIZE - off);
                w.chunks.push((Iface::RSP + off, rest[..n].to_vec()));
                rest = &rest[n..];
                at = at.wrapping_add(n as u32);
            }
            st.rsp_prod = at;
            progress = true;
        }
        if !progress {
            break;
        }
    }
    // Left over by the budget (not by a full output: the domain must read first, and it
    // notifies when it has).
    w.more = budget == 0 && req_prod != st.req_cons;
    let old = store
        .conns
        .get(&id)
        .and_then(|c| c.ring.as_ref())
        .map(|r| (r.req_cons, r.rsp_prod));
    if old != Some((st.req_cons, st.rsp_prod)) {
        w.chunks
            .push((Iface::RSP_PROD, st.rsp_prod.to_le_bytes().to_vec()));
        w.chunks
            .push((Iface::REQ_CONS, st.req_cons.to_le_bytes().to_vec()));
        w.notify = true;
    }
    if let Some(c) = store.conns.get_mut(&id) {
        c.ring = Some(st);
    }
    w
}

/// Whether the domain published requests while [`service`] worked from a copy of its page
/// and that call moved `req_cons` (`w`): `seen` is the copy's `req_prod`, `now` the
/// domain's `req_prod` read again after the writes of `w` (the new `req_cons` among them)
/// reached the page, with a full fence between. If so the caller serves the ring again
/// before it waits.
///
/// A domain notifies only when the store had consumed everything before its write (Linux's
/// `xb_write`: `if (prod <= intf->req_cons) notify`), so a request written while the store
/// works from its copy, before the new `req_cons` is in the page, comes with no event at
/// all. Xen's xenstored looks at every ring each turn of its loop; a store that waits for
/// events must look again here, or the request waits for ever (Linux with two vCPUs sent
/// a message's header, then its body while dom0 served the header, and hung at boot).
///
/// Only a call that took request bytes looks again: the domain's decision not to notify
/// compared its producer with a `req_cons` that this call moved. A call that took nothing
/// (a broken ring, a domain over its quota of unread replies) left `req_cons` where the
/// domain saw it, so a write after it was notified or waits for the replies to be read as
/// before; otherwise a domain moving `req_prod` to and fro could keep dom0 from blocking.
pub fn published_meanwhile(w: &Writes, seen: u32, now: u32) -> bool {
    w.consumed != 0 && seen != now
}

/// The `req_prod` of a page copy (what [`service`] worked from).
pub fn req_prod(page: &[u8]) -> u32 {
    u32_at(page, Iface::REQ_PROD)
}

/// Applies `w` to a page copy (for tests and for callers that keep a copy).
pub fn apply(page: &mut [u8], w: &Writes) {
    for (at, bytes) in &w.chunks {
        if let Some(dst) = page.get_mut(*at..*at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
}
