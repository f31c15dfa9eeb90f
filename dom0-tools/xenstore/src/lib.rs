//! # xenstore for Xenia
//!
//! The store of DESIGN §11: a tree of nodes (`/local/domain/<id>/name`, ...), each with a
//! value and Xen's permissions, that domains read, write and watch through Xen's `xs_wire`
//! messages (guest-abi [`xenstore`](guest_abi::xenstore) has the protocol). dom0's kernel
//! serves it: on each domU's ring page ([`ring`]) and on `/dev/xen/xenbus` for dom0's
//! programs; both end in [`Store::feed`].
//!
//! **What it trusts.** Nothing a domain sends. Every message is checked (length, NULs,
//! path syntax and length, type) and anything wrong gets an [`XS_ERROR`] reply, never a
//! panic; ring indexes are checked against the store's own copies ([`ring`]). dom0
//! (domain 0) may do anything, as in Xen; any other domain only what the nodes' permissions
//! allow it.
//!
//! **Bounded.** What an unprivileged domain can make the store hold is limited by
//! [`Quota`] (Xen's defaults: 1000 nodes, 128 watches, 2048-byte values, 5 permissions a
//! node, 10 open transactions of at most 1024 nodes each, 20 outstanding requests; and a
//! memory quota smaller than Xen's, because dom0's kernel heap is 12 MiB), what all of them
//! together can by [`Quota::total`] (3 MiB), and what waits to be delivered to one by
//! [`OUTPUT_MAX`]: a domain that does not read its replies stops being served (its requests
//! wait in its ring) and loses watch events, and nobody else notices. A ring is served a
//! bounded number of requests per turn ([`ring::REQUESTS_PER_SERVICE`]).
//!
//! **Transactions** use Xen's generation counts: a transaction that looked at a node
//! someone else changed meanwhile ends with `EAGAIN`; a commit applies all of its changes at
//! once and fires their watches then.
//!
//! **Not served**: `XS_CONTROL` (but for Xenia's `watched`, `xl mem-set`'s question),
//! `XS_RESUME`, `XS_SET_TARGET` and watch depths (`ENOSYS`, as Xen answers any type it does
//! not know). Operations cost O(log n) in the number of nodes
//! (a `BTreeMap` by path), O(children) for a listing and O(watches) per change.
//!
//! [`toolstack`](NewDomain) has the nodes the toolstack writes for a domain.
//!
//! [`XS_ERROR`]: guest_abi::xenstore::XS_ERROR

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ring;
mod store;
mod toolstack;

pub use store::{Access, ConnId, DOM0, DomId, OUTPUT_MAX, Perm, Quota, Store, home_path};
pub use toolstack::{NewDomain, uuid_text};
