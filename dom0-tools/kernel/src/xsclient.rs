//! dom0's backends as clients of dom0's own store (`store::connect`, Xen's `xs_wire`
//! messages): requests answered at once, and watch events remembered by the path they name
//! so that a backend looks only at the devices they concern.

use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::xenstore::{
    XS_DIRECTORY, XS_ERROR, XS_READ, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE, XsdSockmsg,
};
use guest_abi::{Errno, xenstore::error_from};
use xenia_xenstore::ConnId;

use crate::store;

/// dom0's client of its own store.
pub struct Xs {
    pub conn: ConnId,
    pub next_id: u32,
    /// Output of the store not yet parsed.
    pub pending: Vec<u8>,
    /// A watch fired since the devices were last looked at.
    pub fired: bool,
    /// The paths those watches named (at most [`FIRED_PATHS`]), so that only the devices
    /// they concern are looked at: a creation then costs the same however many disks
    /// other domains have.
    pub fired_paths: Vec<String>,
    /// More fired than were kept, or one could not be read: look at every device.
    pub fired_all: bool,
}

/// Fired paths kept between two looks at the devices.
pub const FIRED_PATHS: usize = 32;

impl Xs {
    /// A client on connection `conn`, which looks at every device first.
    pub fn new(conn: ConnId) -> Xs {
        Xs {
            conn,
            next_id: 1,
            pending: Vec::new(),
            fired: true,
            fired_paths: Vec::new(),
            fired_all: true,
        }
    }

    /// Takes what the store wrote for the connection; watch events set `fired`, and the
    /// reply to `want` (if any) is returned as `(type, payload)`.
    pub fn pump(&mut self, want: Option<u32>) -> Option<(u32, Vec<u8>)> {
        // Every whole message was taken out by the last pump: with nothing new there is
        // nothing to find (and no allocation, on every round of the services).
        if !store::readable(self.conn) {
            return None;
        }
        let more = store::read(self.conn, 64 * 1024);
        self.pending.extend_from_slice(&more);
        let mut found = None;
        while let Some(h) = XsdSockmsg::from_bytes(&self.pending) {
            let total = XsdSockmsg::SIZE + h.len as usize;
            if self.pending.len() < total {
                break;
            }
            let body: Vec<u8> = self.pending[XsdSockmsg::SIZE..total].to_vec();
            self.pending.drain(..total);
            if h.msg_type == XS_WATCH_EVENT {
                self.fired = true;
                let path = body.split(|&b| b == 0).next().unwrap_or(&[]);
                match core::str::from_utf8(path) {
                    Ok(p) if self.fired_paths.len() < FIRED_PATHS => {
                        let mut kept = String::new();
                        if kept.try_reserve(p.len()).is_ok() {
                            kept.push_str(p);
                            self.fired_paths.push(kept);
                        } else {
                            self.fired_all = true;
                        }
                    }
                    _ => self.fired_all = true,
                }
            } else if Some(h.req_id) == want && found.is_none() {
                found = Some((h.msg_type, body));
            }
        }
        found
    }

    pub fn request(&mut self, msg_type: u32, parts: &[&[u8]]) -> Result<Vec<u8>, Errno> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let req_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let hdr = XsdSockmsg {
            msg_type,
            req_id,
            tx_id: 0,
            len: len as u32,
        };
        let mut msg = Vec::new();
        msg.try_reserve(XsdSockmsg::SIZE + len)
            .map_err(|_| Errno::ENOMEM)?;
        msg.extend_from_slice(&hdr.to_bytes());
        for p in parts {
            msg.extend_from_slice(p);
        }
        // The store answers dom0's own connection at once; its output is taken before each
        // request so a reply always has room.
        self.pump(None);
        let taken = store::write(self.conn, &msg);
        if taken != msg.len() {
            return Err(Errno::EAGAIN);
        }
        match self.pump(Some(req_id)) {
            Some((XS_ERROR, body)) => Err(error_from(&body)),
            Some((_, body)) => Ok(body),
            None => Err(Errno::EIO),
        }
    }

    pub fn read(&mut self, path: &str) -> Option<String> {
        let v = self.request(XS_READ, &[path.as_bytes(), b"\0"]).ok()?;
        String::from_utf8(v).ok()
    }

    pub fn write(&mut self, path: &str, value: &str) -> Result<(), Errno> {
        self.request(XS_WRITE, &[path.as_bytes(), b"\0", value.as_bytes()])
            .map(drop)
    }

    pub fn directory(&mut self, path: &str) -> Vec<String> {
        let Ok(v) = self.request(XS_DIRECTORY, &[path.as_bytes(), b"\0"]) else {
            return Vec::new();
        };
        v.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok().map(String::from))
            .collect()
    }

    /// Drops the watch on `path` with `token`.
    pub fn unwatch(&mut self, path: &str, token: &str) {
        let _ = self.request(
            XS_UNWATCH,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        );
    }

    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Errno> {
        self.request(XS_WATCH, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"])
            .map(drop)
    }
}
