//! xenstore's wire protocol (Xen's `io/xs_wire.h`): the message header, the message types,
//! the error strings and the shared ring page a domain talks to the store through.
//!
//! # Where a domU finds its store
//!
//! `start_info.store_mfn` names the ring page ([`XenstoreDomainInterface`]) and
//! `start_info.store_evtchn` the domU's end of an event channel whose other end the store
//! (served inside dom0's kernel, DESIGN §11) binds. Under Xenia the page is also mapped at
//! start of day, at [`store_ring_va`] (four pages after `start_info`); a domain built
//! without a store has both fields zero.
//!
//! # Talking to it
//!
//! A request is an [`XsdSockmsg`] header followed by `len` payload bytes
//! (at most [`XENSTORE_PAYLOAD_MAX`]), usually NUL-terminated strings: for
//! [`XS_READ`] the path, for [`XS_WRITE`] the path, a NUL and the value (not
//! NUL-terminated), for [`XS_WATCH`] the path and a token. The guest copies
//! the bytes into `req` at `req_prod` (modulo [`XENSTORE_RING_SIZE`]),
//! advances `req_prod` (after the bytes, with a write barrier) and notifies
//! the channel. The store answers in `rsp` with the same `type` and `req_id`,
//! or with [`XS_ERROR`] whose payload is one of [`XSD_ERRORS`]'s strings and a
//! NUL. Watch events arrive in `rsp` as [`XS_WATCH_EVENT`] messages (`req_id`
//! 0) whenever a watched node or one of its descendants changes: the path
//! that changed, a NUL, the watch's token, a NUL. Paths not starting with
//! `/` are relative to the domain's home, `/local/domain/<domid>`.
//!
//! # Transactions
//!
//! [`XS_TRANSACTION_START`] (payload: an empty string) answers the new
//! transaction's id as a decimal string; requests that carry it in `tx_id`
//! (read, write, mkdir, rm, directory, directory part, get/set perms) see
//! the transaction's own changes and nobody else sees them.
//! [`XS_TRANSACTION_END`] with `T` commits (all changes at once, watches
//! fire then) or, with `EAGAIN`, fails because a node the transaction looked
//! at was changed meanwhile (nothing is applied: start again); with `F` it
//! aborts. An unknown `tx_id` gets `ENOENT`, a start inside a transaction
//! `EBUSY`. An unprivileged domain may hold 10 open at once, each looking at
//! 1024 nodes at most (Xen's defaults, `ENOSPC` past them).
//!
//! # What a domain may do
//!
//! Xen's rules: each node has an owner, who may do anything to it, and a
//! default access (`n`one, `r`ead, `w`rite, `b`oth) for other domains, with
//! exceptions per domain; dom0 may do anything. A new node gets its parent's
//! permissions, with the creating domain as owner unless it is dom0. The
//! toolstack makes a domain's home `/local/domain/<domid>` dom0's and
//! readable by the domain, and its `data` directory the domain's own. An
//! unprivileged domain may own at most 1000 nodes, set values of at most
//! 2048 bytes and lists of at most 5 permissions, hold 128 watches (Xen's
//! defaults) and 256 KiB of nodes, watches and transactions altogether
//! (`ENOSPC` past them); all unprivileged domains together 3 MiB (`ENOMEM`
//! past it). A missing node where the domain may not look answers `EACCES`,
//! as an existing one does. At most 20 replies wait for a domain (Xen's
//! outstanding-request quota) and at most 32 KiB of replies and events:
//! past them its requests wait in its ring and its watch events are dropped.
//! The store serves each ring at most 8 requests per turn, every ring in
//! turn. A domain whose ring indexes claim more than a ring's worth gets
//! `XENSTORE_ERROR_RINGIDX` (2) in `error` and is no longer served.

use crate::types::PAGE_SIZE;

/// A debugging or control command (`XS_DEBUG`); refused by Xenia.
pub const XS_CONTROL: u32 = 0;
/// List a node's children: the names, each NUL-terminated.
pub const XS_DIRECTORY: u32 = 1;
/// Read a node's value.
pub const XS_READ: u32 = 2;
/// Read a node's permissions: `<perm><domid>` strings, each NUL-terminated.
pub const XS_GET_PERMS: u32 = 3;
/// Watch a path and its descendants: path, token.
pub const XS_WATCH: u32 = 4;
/// Remove a watch: path, token.
pub const XS_UNWATCH: u32 = 5;
/// Start a transaction.
pub const XS_TRANSACTION_START: u32 = 6;
/// End a transaction.
pub const XS_TRANSACTION_END: u32 = 7;
/// Tell the store about a new domain (domid, ring frame, event channel); dom0 only.
pub const XS_INTRODUCE: u32 = 8;
/// Forget a domain; dom0 only.
pub const XS_RELEASE: u32 = 9;
/// The home path of a domain: `/local/domain/<domid>`.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// Write a node's value (creating it and missing parents).
pub const XS_WRITE: u32 = 11;
/// Create a node with an empty value (and missing parents).
pub const XS_MKDIR: u32 = 12;
/// Remove a node and its descendants.
pub const XS_RM: u32 = 13;
/// Set a node's permissions.
pub const XS_SET_PERMS: u32 = 14;
/// A watch fired (store to client only).
pub const XS_WATCH_EVENT: u32 = 15;
/// An error reply: the error's name and a NUL.
pub const XS_ERROR: u32 = 16;
/// Whether a domain was introduced.
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
/// Resume a domain.
pub const XS_RESUME: u32 = 18;
/// Set a domain's target.
pub const XS_SET_TARGET: u32 = 19;
/// Remove every watch of the connection.
pub const XS_RESET_WATCHES: u32 = XS_SET_TARGET + 2;
/// A part of a long directory listing.
pub const XS_DIRECTORY_PART: u32 = 22;
/// One past the highest type Xen defines.
pub const XS_TYPE_COUNT: u32 = 23;

/// The error strings of [`XS_ERROR`] replies, with the errno each stands for (Xen's
/// `xsd_errors` table).
pub const XSD_ERRORS: &[(crate::Errno, &str)] = &[
    (crate::Errno::EINVAL, "EINVAL"),
    (crate::Errno::EACCES, "EACCES"),
    (crate::Errno::EEXIST, "EEXIST"),
    (crate::Errno::EISDIR, "EISDIR"),
    (crate::Errno::ENOENT, "ENOENT"),
    (crate::Errno::ENOMEM, "ENOMEM"),
    (crate::Errno::ENOSPC, "ENOSPC"),
    (crate::Errno::EIO, "EIO"),
    (crate::Errno::ENOTEMPTY, "ENOTEMPTY"),
    (crate::Errno::ENOSYS, "ENOSYS"),
    (crate::Errno::EROFS, "EROFS"),
    (crate::Errno::EBUSY, "EBUSY"),
    (crate::Errno::EAGAIN, "EAGAIN"),
    (crate::Errno::EISCONN, "EISCONN"),
    (crate::Errno::E2BIG, "E2BIG"),
    (crate::Errno::EPERM, "EPERM"),
];

/// The string [`XS_ERROR`] carries for `e` (`EINVAL` for an errno xenstore has no name for).
pub fn error_string(e: crate::Errno) -> &'static str {
    XSD_ERRORS
        .iter()
        .find(|(n, _)| *n == e)
        .map_or("EINVAL", |(_, s)| s)
}

/// The errno an [`XS_ERROR`] payload names (its bytes up to the first NUL); `EINVAL` for a
/// string not in [`XSD_ERRORS`].
pub fn error_from(payload: &[u8]) -> crate::Errno {
    let name = payload.split(|&b| b == 0).next().unwrap_or(&[]);
    XSD_ERRORS
        .iter()
        .find(|(_, s)| s.as_bytes() == name)
        .map_or(crate::Errno::EINVAL, |(e, _)| *e)
}

/// Largest payload of one message (Xen: "violating this is very bad").
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest path relative to a domain's home.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// Size of each of the two rings of [`XenstoreDomainInterface`].
pub const XENSTORE_RING_SIZE: usize = 1024;

/// `struct xsd_sockmsg`: the 16-byte header of every message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XsdSockmsg {
    /// `XS_*`.
    pub msg_type: u32,
    /// Chosen by the requester, echoed in the reply (0 in watch events).
    pub req_id: u32,
    /// Transaction (0: none).
    pub tx_id: u32,
    /// Payload bytes following the header.
    pub len: u32,
}

impl XsdSockmsg {
    /// Size of the header on the wire.
    pub const SIZE: usize = 16;

    /// The header's bytes (little-endian fields in order).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, v) in [self.msg_type, self.req_id, self.tx_id, self.len]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// The header at the start of `b`; `None` if `b` is shorter than [`Self::SIZE`].
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b = b.get(..Self::SIZE)?;
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            msg_type: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        })
    }
}

/// `struct xenstore_domain_interface`: byte offsets in the ring page. The request ring is
/// written by the guest and read by the store, the response ring the other way round; each
/// index only grows (modulo 2^32), and a ring holds `prod - cons` bytes, never more than
/// [`XENSTORE_RING_SIZE`].
pub struct XenstoreDomainInterface;

impl XenstoreDomainInterface {
    /// `req[1024]`: requests to the store.
    pub const REQ: usize = 0;
    /// `rsp[1024]`: replies and watch events.
    pub const RSP: usize = XENSTORE_RING_SIZE;
    /// `req_cons`: the store's index in `req`.
    pub const REQ_CONS: usize = 2 * XENSTORE_RING_SIZE;
    /// `req_prod`: the guest's index in `req`.
    pub const REQ_PROD: usize = Self::REQ_CONS + 4;
    /// `rsp_cons`: the guest's index in `rsp`.
    pub const RSP_CONS: usize = Self::REQ_CONS + 8;
    /// `rsp_prod`: the store's index in `rsp`.
    pub const RSP_PROD: usize = Self::REQ_CONS + 12;
    /// `server_features`: what the store supports (Xenia: 0).
    pub const SERVER_FEATURES: usize = Self::REQ_CONS + 16;
    /// `connection`: 0, connected.
    pub const CONNECTION: usize = Self::REQ_CONS + 20;
    /// `error`: 0, none.
    pub const ERROR: usize = Self::REQ_CONS + 24;
    /// `evtchn_port` (Xen 4.19; unused by Xenia: the channel is `start_info.store_evtchn`).
    pub const EVTCHN_PORT: usize = Self::REQ_CONS + 28;
    /// Bytes of the page the interface spans.
    pub const SIZE: usize = Self::REQ_CONS + 32;
}

/// The store ring's virtual address at a domU's start of day, given the `start_info`
/// address (`rsi` at entry): four pages after it, after the console ring and the device
/// page (guest-abi [`device_page`](crate::device_page)).
pub const fn store_ring_va(start_info_va: u64) -> u64 {
    start_info_va + 4 * PAGE_SIZE as u64
}

/// Value of `cpu/<n>/availability` for a vCPU the toolstack wants up.
pub const VCPU_ONLINE: &str = "online";
/// Value of `cpu/<n>/availability` for a vCPU the toolstack wants down.
pub const VCPU_OFFLINE: &str = "offline";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Errno;

    #[test]
    fn header_round_trip() {
        let h = XsdSockmsg {
            msg_type: XS_WRITE,
            req_id: 7,
            tx_id: 0,
            len: 12,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..4], &11u32.to_le_bytes());
        assert_eq!(&b[12..], &12u32.to_le_bytes());
        assert_eq!(XsdSockmsg::from_bytes(&b), Some(h));
        assert_eq!(XsdSockmsg::from_bytes(&b[..15]), None);
    }

    #[test]
    fn numbers_are_xens() {
        assert_eq!(
            (XS_DIRECTORY, XS_WATCH_EVENT, XS_ERROR, XS_RESET_WATCHES),
            (1, 15, 16, 21)
        );
        assert_eq!(XenstoreDomainInterface::RSP_PROD, 2060);
        assert_eq!(XenstoreDomainInterface::SIZE, 2080);
    }

    #[test]
    fn error_strings() {
        assert_eq!(error_string(Errno::ENOENT), "ENOENT");
        assert_eq!(error_string(Errno::E2BIG), "E2BIG");
        assert_eq!(error_string(Errno::EPERM), "EPERM");
        assert_eq!(error_string(Errno::ESRCH), "EINVAL");
        assert_eq!(error_from(b"EACCES\0"), Errno::EACCES);
        assert_eq!(error_from(b"garbage"), Errno::EINVAL);
    }
}
