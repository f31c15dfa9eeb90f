//! The node tree, permissions and quotas; the operations on it (`tree`, through a view
//! that is either the store itself or a transaction), transactions (`transactions`), the
//! message stream (`messages`) and watches (`watches`) are child modules working on the
//! same `Store`.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::Errno;
use guest_abi::xenstore::{
    XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XS_CONTROL, XS_DIRECTORY,
    XS_DIRECTORY_PART, XS_ERROR, XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE,
    XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RELEASE, XS_RESET_WATCHES, XS_RM, XS_SET_PERMS,
    XS_TRANSACTION_END, XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
    XsdSockmsg, error_string,
};

use crate::ring::RingState;
use messages::message;

/// A domain id.
pub type DomId = u16;
/// The privileged domain: it may do anything.
pub const DOM0: DomId = 0;

/// Most bytes of replies and watch events waiting for one connection: past it, its
/// requests wait (they stay in its ring) and watch events for it are dropped.
pub const OUTPUT_MAX: usize = 32 * 1024;

/// Bytes of one complete message at most.
const MESSAGE_MAX: usize = XsdSockmsg::SIZE + XENSTORE_PAYLOAD_MAX;

/// What a node costs beyond its path, name, value and permissions: the map entry, the
/// node's three vectors, its name in its parent's set and the maps' slack, rounded up
/// (quota and budget arithmetic; close to what the heap really spends).
const NODE_OVERHEAD: usize = 192;
/// What a watch costs beyond its path and token (quota arithmetic only).
const WATCH_OVERHEAD: usize = 64;

/// Domain ids above this are Xen's special ones (`DOMID_SELF`, ...).
const DOMID_FIRST_RESERVED: u32 = 0x7FF0;

/// Where the home paths of domains are.
const DOMAIN_ROOT: &str = "/local/domain";

/// `/local/domain/<dom>`: the home of `dom`, which relative paths start from.
pub fn home_path(dom: DomId) -> String {
    format!("{DOMAIN_ROOT}/{dom}")
}

/// What a permission entry allows (Xen's `n`, `r`, `w`, `b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `n`.
    None,
    /// `r`.
    Read,
    /// `w`.
    Write,
    /// `b`.
    Both,
}

impl Access {
    fn from_char(c: u8) -> Option<Self> {
        Some(match c {
            b'n' => Self::None,
            b'r' => Self::Read,
            b'w' => Self::Write,
            b'b' => Self::Both,
            _ => return None,
        })
    }

    fn as_char(self) -> char {
        match self {
            Self::None => 'n',
            Self::Read => 'r',
            Self::Write => 'w',
            Self::Both => 'b',
        }
    }

    /// Whether it allows reading.
    pub fn reads(self) -> bool {
        matches!(self, Self::Read | Self::Both)
    }

    /// Whether it allows writing.
    pub fn writes(self) -> bool {
        matches!(self, Self::Write | Self::Both)
    }
}

/// One entry of a node's permission list. The first names the owner (who may do
/// anything) and what every domain not listed after it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// The domain.
    pub dom: DomId,
    /// What it may do.
    pub access: Access,
}

impl Perm {
    /// `dom` may do `access`.
    pub const fn new(dom: DomId, access: Access) -> Self {
        Self { dom, access }
    }

    /// Parses Xen's text form: the access letter then the domain id (`r5`).
    pub fn parse(s: &[u8]) -> Option<Self> {
        let (&c, digits) = s.split_first()?;
        let access = Access::from_char(c)?;
        let text = core::str::from_utf8(digits).ok()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let dom: u32 = text.parse().ok()?;
        (dom < DOMID_FIRST_RESERVED).then_some(Self {
            dom: dom as DomId,
            access,
        })
    }

    /// Xen's text form.
    pub fn text(&self) -> String {
        format!("{}{}", self.access.as_char(), self.dom)
    }
}

/// Limits on what an unprivileged domain can make the store hold, and on what all of them
/// together can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Nodes it owns (Xen's `quota-nb-entry-per-domain`, 1000).
    pub nodes: usize,
    /// Watches per connection (Xen's `quota-nb-watch-per-domain`, 128).
    pub watches: usize,
    /// Bytes of one value it writes (Xen's `quota-max-entry-size`, 2048).
    pub value_max: usize,
    /// Entries of a permission list it sets (Xen's `quota-max-perms`, 5).
    pub perms: usize,
    /// Bytes of nodes, watches and open transactions it owns altogether (Xen's
    /// `quota-memory-per-domain` is 2.5 MiB; Xenia's store lives in dom0's 12 MiB kernel
    /// heap, so 256 KiB).
    pub memory: usize,
    /// Transactions open at once (Xen's `quota-max-transaction`, 10).
    pub transactions: usize,
    /// Nodes one transaction may read or change (Xen's `transaction-nodes`, 1024).
    pub transaction_nodes: usize,
    /// Replies not yet taken by the domain before its further requests wait in its ring
    /// (Xen's `outstanding`, 20).
    pub outstanding: usize,
    /// Bytes of everything unprivileged domains make the store hold (their nodes, watches
    /// and transactions), all domains together (Xen has no such limit: its store has a
    /// process of its own). Past it, what they ask that needs more memory gets `ENOMEM`;
    /// dom0 is not limited, and what it owns (the toolstack's nodes) is not counted.
    pub total: usize,
}

impl Quota {
    /// Xen's defaults (memory aside, see [`Quota::memory`]), and a total of 3 MiB: a
    /// quarter of dom0's kernel heap, so that the store's real cost (within 1.5 times what
    /// it counts) stays well below the heap whatever domUs do.
    pub const DEFAULT: Quota = Quota {
        nodes: 1000,
        watches: 128,
        value_max: 2048,
        perms: 5,
        memory: 256 * 1024,
        transactions: 10,
        transaction_nodes: 1024,
        outstanding: 20,
        total: 3 * 1024 * 1024,
    };
}

impl Default for Quota {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Identifies a connection: a domain's ring ([`Store::introduce`]: the domain id) or one
/// of dom0's `/dev/xen/xenbus` descriptors ([`Store::connect`]: above `u16::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnId(pub u32);

#[derive(Clone, Debug)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Perm>,
    children: BTreeSet<String>,
    /// The store's generation when the node was last changed (never 0: 0 stands for a
    /// missing node in a transaction's record).
    generation: u64,
}

/// What a node at `path` with a value of `value` bytes and `perms` permissions costs.
fn node_cost(path: &str, value: usize, perms: usize) -> usize {
    NODE_OVERHEAD + path.len() + base_name(path).len() + value + 4 * perms
}

impl Node {
    fn owner(&self) -> DomId {
        self.perms.first().map_or(DOM0, |p| p.dom)
    }

    fn cost(&self, path: &str) -> usize {
        node_cost(path, self.value.len(), self.perms.len())
    }
}

#[derive(Clone, Debug)]
struct Watch {
    /// Absolute, or a special `@...` path.
    path: String,
    token: Vec<u8>,
    /// Events are reported relative to the watcher's home.
    relative: bool,
}

impl Watch {
    fn cost(&self) -> usize {
        WATCH_OVERHEAD + self.path.len() + self.token.len()
    }
}

#[derive(Debug)]
pub(crate) struct Conn {
    dom: DomId,
    /// The part of a message received so far.
    input: Vec<u8>,
    /// Replies and events not delivered yet.
    pub(crate) output: VecDeque<u8>,
    /// Bytes ever queued in `output`, and ever taken from it.
    queued: u64,
    taken: u64,
    /// Where each reply not yet wholly taken ends (in `queued` terms): the requests
    /// outstanding.
    reply_ends: VecDeque<u64>,
    watches: Vec<Watch>,
    /// Watch events dropped because `output` was full.
    lost_events: u64,
    /// The ring, for a domain's connection.
    pub(crate) ring: Option<RingState>,
    /// Open transactions by id.
    txs: BTreeMap<u32, transactions::Tx>,
    next_tx: u32,
}

impl Conn {
    fn new(dom: DomId, ring: Option<RingState>) -> Self {
        Self {
            dom,
            input: Vec::new(),
            output: VecDeque::new(),
            queued: 0,
            taken: 0,
            reply_ends: VecDeque::new(),
            watches: Vec::new(),
            lost_events: 0,
            ring,
            txs: BTreeMap::new(),
            next_tx: 1,
        }
    }

    /// Queues a message; `reply` counts it as a request's answer (outstanding until
    /// taken).
    fn queue(&mut self, msg: &[u8], reply: bool) {
        self.output.extend(msg.iter().copied());
        self.queued += msg.len() as u64;
        if reply {
            self.reply_ends.push_back(self.queued);
        }
    }

    fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.output.len());
        self.taken += n as u64;
        while self.reply_ends.front().is_some_and(|&e| e <= self.taken) {
            self.reply_ends.pop_front();
        }
        self.output.drain(..n).collect()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    nodes: usize,
    memory: usize,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    nodes: BTreeMap<String, Node>,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    usage: BTreeMap<DomId, Usage>,
    quota: Quota,
    next_local: u32,
    /// Bumped at each change of a node (Xen's global generation count).
    generation: u64,
    /// Bytes counted for the nodes and watches of unprivileged domains and for every
    /// open transaction (what [`Quota::total`] bounds).
    total: usize,
}

/// The parent of an absolute path other than `/`.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// `child` named in `parent`.
fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Whether `path` is `ancestor` or below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || ancestor == "/"
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes()[ancestor.len()] == b'/')
}

/// `path` made absolute for `dom` and checked (Xen's characters: letters, digits and
/// `-/_@`; no empty component; length within Xen's limits).
fn canonical(dom: DomId, path: &str) -> Result<String, Errno> {
    let abs = if path.starts_with('/') {
        if path.len() > XENSTORE_ABS_PATH_MAX {
            return Err(Errno::EINVAL);
        }
        String::from(path)
    } else {
        if path.is_empty() || path.len() > XENSTORE_REL_PATH_MAX {
            return Err(Errno::EINVAL);
        }
        format!("{}/{path}", home_path(dom))
    };
    let ok_chars = abs
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-/_@".contains(&b));
    if !ok_chars || (abs != "/" && (abs.ends_with('/') || abs.contains("//"))) {
        return Err(Errno::EINVAL);
    }
    // Xen's path-length quota for unprivileged domains: what follows a domain's home
    // (`/local/domain/<id>/`) is at most a relative path's length.
    if dom != DOM0 && abs.len() - home_prefix_len(&abs) > XENSTORE_REL_PATH_MAX {
        return Err(Errno::EINVAL);
    }
    Ok(abs)
}

/// The length of `/local/domain/<id>/` at the start of `abs` (at most five digits, as
/// Xen's `sscanf("/local/domain/%5u/")`), 0 if it does not start so.
fn home_prefix_len(abs: &str) -> usize {
    let Some(rest) = abs.strip_prefix("/local/domain/") else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=5).contains(&digits) && rest.as_bytes().get(digits) == Some(&b'/') {
        "/local/domain/".len() + digits + 1
    } else {
        0
    }
}

/// What `dom` may do to a node with `perms` (Xen's `perm_for_conn`).
fn access(dom: DomId, perms: &[Perm]) -> Access {
    let Some(first) = perms.first() else {
        return if dom == DOM0 {
            Access::Both
        } else {
            Access::None
        };
    };
    if dom == DOM0 || first.dom == dom {
        return Access::Both;
    }
    perms[1..]
        .iter()
        .find(|p| p.dom == dom)
        .map_or(first.access, |p| p.access)
}

impl Store {
    /// A store with `/`, `/local` and `/local/domain`, all dom0's and unreadable to others
    /// (`n0`).
    pub fn new(quota: Quota) -> Self {
        let mut s = Self {
            nodes: BTreeMap::new(),
            conns: BTreeMap::new(),
            usage: BTreeMap::new(),
            quota,
            next_local: 0,
            generation: 1,
            total: 0,
        };
        s.nodes.insert(
            String::from("/"),
            Node {
                value: Vec::new(),
                perms: alloc::vec![Perm::new(DOM0, Access::None)],
                children: BTreeSet::new(),
                generation: 1,
            },
        );
        let _ = s.mkdir(DOM0, DOMAIN_ROOT);
        s
    }

    /// The limits in force.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// How many nodes there are.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes `dom` owns.
    pub fn nodes_of(&self, dom: DomId) -> usize {
        self.usage.get(&dom).map_or(0, |u| u.nodes)
    }

    /// Bytes counted against `dom`'s memory quota (its nodes and watches; its open
    /// transactions are counted on top when it asks for more).
    pub fn memory_of(&self, dom: DomId) -> usize {
        self.usage.get(&dom).map_or(0, |u| u.memory)
    }

    /// Bytes counted towards [`Quota::total`].
    pub fn memory_total(&self) -> usize {
        self.total
    }

    /// A connection for one of dom0's programs (`/dev/xen/xenbus`), as domain `dom`.
    pub fn connect(&mut self, dom: DomId) -> ConnId {
        loop {
            self.next_local = self.next_local.wrapping_add(1);
            let id = ConnId(0x1_0000 + (self.next_local & 0x0FFF_FFFF));
            if let alloc::collections::btree_map::Entry::Vacant(e) = self.conns.entry(id) {
                e.insert(Conn::new(dom, None));
                return id;
            }
        }
    }

    /// What a connection held that is counted: its watches and transactions.
    fn forget_conn(&mut self, c: &Conn) {
        self.uncharge_watches(c.dom, &c.watches);
        for tx in c.txs.values() {
            self.total = self.total.saturating_sub(tx.cost);
        }
    }

    /// Drops a connection, its watches and its transactions.
    pub fn disconnect(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            self.forget_conn(&c);
        }
    }

    /// Introduces domain `dom` (Xen's `XS_INTRODUCE`) with its ring page `mfn` and the
    /// domain's end of the store channel, `port`; the caller binds the channel and records
    /// it with [`Store::set_local_port`]. Introducing a domain twice keeps the first ring.
    pub fn introduce(&mut self, dom: DomId, mfn: u64, port: u32) -> ConnId {
        let id = ConnId(u32::from(dom));
        if let alloc::collections::btree_map::Entry::Vacant(e) = self.conns.entry(id) {
            e.insert(Conn::new(dom, Some(RingState::new(mfn, port))));
            self.fire_special("@introduceDomain");
        }
        id
    }

    /// Whether `dom` was introduced.
    pub fn is_introduced(&self, dom: DomId) -> bool {
        self.conns.contains_key(&ConnId(u32::from(dom)))
    }

    /// Forgets domain `dom`'s connection (Xen's `XS_RELEASE`; its nodes stay, the
    /// toolstack removes them). Returns dom0's end of the channel, if it was bound.
    pub fn release(&mut self, dom: DomId) -> Option<u32> {
        let id = ConnId(u32::from(dom));
        let c = self.conns.remove(&id)?;
        self.forget_conn(&c);
        self.fire_special("@releaseDomain");
        c.ring.and_then(|r| r.local_port)
    }

    /// Records dom0's end of `dom`'s store channel.
    pub fn set_local_port(&mut self, dom: DomId, port: u32) {
        if let Some(r) = self
            .conns
            .get_mut(&ConnId(u32::from(dom)))
            .and_then(|c| c.ring.as_mut())
        {
            r.local_port = Some(port);
        }
    }

    /// The domains with a ring: `(dom, ring mfn, the domain's port, dom0's port)`.
    pub fn rings(&self) -> Vec<(DomId, u64, u32, Option<u32>)> {
        self.conns
            .values()
            .filter_map(|c| {
                c.ring
                    .as_ref()
                    .map(|r| (c.dom, r.mfn, r.remote_port, r.local_port))
            })
            .collect()
    }

    /// Bytes waiting to be delivered on `id`.
    pub fn output_len(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.output.len())
    }

    /// Takes up to `max` bytes of what waits for `id`.
    pub fn take_output(&mut self, id: ConnId, max: usize) -> Vec<u8> {
        match self.conns.get_mut(&id) {
            Some(c) => c.take(max),
            None => Vec::new(),
        }
    }

    /// Watch events dropped for `id` because it did not read them.
    pub fn lost_events(&self, id: ConnId) -> u64 {
        self.conns.get(&id).map_or(0, |c| c.lost_events)
    }

    /// Transactions open on `id`.
    pub fn transactions_of(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.txs.len())
    }

    /// Runs `f` on the tree as `dom` sees it outside any transaction, then fires the
    /// watches of what changed.
    fn on_tree<R>(&mut self, dom: DomId, f: impl FnOnce(&mut tree::View) -> R) -> R {
        let mut v = tree::View::new(self, dom);
        let r = f(&mut v);
        let changed = v.into_fired();
        for (path, removed) in changed {
            self.fire(&path, removed);
        }
        r
    }

    /// `XS_READ` as `dom`.
    pub fn read(&mut self, dom: DomId, path: &str) -> Result<Vec<u8>, Errno> {
        self.on_tree(dom, |v| v.read(path))
    }

    /// `XS_DIRECTORY` as `dom`: the children's names.
    pub fn directory(&mut self, dom: DomId, path: &str) -> Result<Vec<String>, Errno> {
        self.on_tree(dom, |v| v.directory(path).map(|(_, c)| c))
    }

    /// `XS_GET_PERMS` as `dom`.
    pub fn get_perms(&mut self, dom: DomId, path: &str) -> Result<Vec<Perm>, Errno> {
        self.on_tree(dom, |v| v.get_perms(path))
    }

    /// `XS_WRITE` as `dom`: sets the value, creating the node and missing parents.
    pub fn write(&mut self, dom: DomId, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.on_tree(dom, |v| v.write(path, value))
    }

    /// `XS_MKDIR` as `dom`: creates the node (empty) and missing parents; an existing
    /// node is left as it is.
    pub fn mkdir(&mut self, dom: DomId, path: &str) -> Result<(), Errno> {
        self.on_tree(dom, |v| v.mkdir(path))
    }

    /// `XS_RM` as `dom`: removes the node and everything below it. A node that does not
    /// exist under an existing parent is not an error (Xen's rule).
    pub fn rm(&mut self, dom: DomId, path: &str) -> Result<(), Errno> {
        self.on_tree(dom, |v| v.rm(path))
    }

    /// `XS_SET_PERMS` as `dom`: only the owner (or dom0) may, and only dom0 may give a
    /// node to another owner.
    pub fn set_perms(&mut self, dom: DomId, path: &str, perms: &[Perm]) -> Result<(), Errno> {
        self.on_tree(dom, |v| v.set_perms(path, perms))
    }
}

mod messages;
mod transactions;
mod tree;
mod watches;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
