//! The node tree, permissions and quotas; the message stream (`messages`) and watches
//! (`watches`) are child modules working on the same `Store`.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::Errno;
use guest_abi::xenstore::{
    XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XS_DIRECTORY, XS_ERROR,
    XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ,
    XS_RELEASE, XS_RM, XS_SET_PERMS, XS_TRANSACTION_END, XS_TRANSACTION_START, XS_UNWATCH,
    XS_WATCH, XS_WATCH_EVENT, XS_WRITE, XsdSockmsg, error_string,
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

/// What a node costs its owner beyond its path, value and permissions (a rough figure for
/// the tree's own bookkeeping; quota arithmetic only).
const NODE_OVERHEAD: usize = 64;
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

/// Limits on what an unprivileged domain can make the store hold.
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
    /// Bytes of nodes and watches it owns altogether (Xen's `quota-memory-per-domain` is
    /// 2.5 MiB; Xenia's store lives in dom0's 8 MiB kernel heap, so 256 KiB).
    pub memory: usize,
}

impl Quota {
    /// Xen's defaults (memory aside, see [`Quota::memory`]).
    pub const DEFAULT: Quota = Quota {
        nodes: 1000,
        watches: 128,
        value_max: 2048,
        perms: 5,
        memory: 256 * 1024,
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
}

impl Node {
    fn owner(&self) -> DomId {
        self.perms.first().map_or(DOM0, |p| p.dom)
    }

    fn cost(&self, path: &str) -> usize {
        NODE_OVERHEAD + path.len() + self.value.len() + 4 * self.perms.len()
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
    watches: Vec<Watch>,
    /// Watch events dropped because `output` was full.
    lost_events: u64,
    /// The ring, for a domain's connection.
    pub(crate) ring: Option<RingState>,
}

impl Conn {
    fn new(dom: DomId, ring: Option<RingState>) -> Self {
        Self {
            dom,
            input: Vec::new(),
            output: VecDeque::new(),
            watches: Vec::new(),
            lost_events: 0,
            ring,
        }
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

/// Whether `path` is `ancestor` or below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || ancestor == "/"
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes()[ancestor.len()] == b'/')
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
        };
        s.nodes.insert(
            String::from("/"),
            Node {
                value: Vec::new(),
                perms: alloc::vec![Perm::new(DOM0, Access::None)],
                children: BTreeSet::new(),
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

    /// Drops a connection and its watches.
    pub fn disconnect(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            self.uncharge_watches(c.dom, &c.watches);
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
        self.uncharge_watches(c.dom, &c.watches);
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
            Some(c) => {
                let n = max.min(c.output.len());
                c.output.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }

    /// Watch events dropped for `id` because it did not read them.
    pub fn lost_events(&self, id: ConnId) -> u64 {
        self.conns.get(&id).map_or(0, |c| c.lost_events)
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
        Ok(abs)
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

    fn node_for(&self, dom: DomId, path: &str, write: bool) -> Result<(String, &Node), Errno> {
        let abs = Self::canonical(dom, path)?;
        let node = self.nodes.get(&abs).ok_or(Errno::ENOENT)?;
        let a = Self::access(dom, &node.perms);
        if (write && !a.writes()) || (!write && !a.reads()) {
            return Err(Errno::EACCES);
        }
        Ok((abs, node))
    }

    /// `XS_READ` as `dom`.
    pub fn read(&self, dom: DomId, path: &str) -> Result<Vec<u8>, Errno> {
        self.node_for(dom, path, false)
            .map(|(_, n)| n.value.clone())
    }

    /// `XS_DIRECTORY` as `dom`: the children's names.
    pub fn directory(&self, dom: DomId, path: &str) -> Result<Vec<String>, Errno> {
        self.node_for(dom, path, false)
            .map(|(_, n)| n.children.iter().cloned().collect())
    }

    /// `XS_GET_PERMS` as `dom`.
    pub fn get_perms(&self, dom: DomId, path: &str) -> Result<Vec<Perm>, Errno> {
        self.node_for(dom, path, false)
            .map(|(_, n)| n.perms.clone())
    }

    fn usage_mut(&mut self, dom: DomId) -> &mut Usage {
        self.usage.entry(dom).or_default()
    }

    /// Whether `actor` may make `dom` own `nodes` more nodes and `memory` more bytes: dom0
    /// and what dom0 owns are not limited (Xen checks the quota of the domain asking).
    fn within_quota(&self, actor: DomId, dom: DomId, nodes: usize, memory: usize) -> bool {
        if actor == DOM0 || dom == DOM0 {
            return true;
        }
        let u = self.usage.get(&dom).copied().unwrap_or_default();
        u.nodes + nodes <= self.quota.nodes && u.memory + memory <= self.quota.memory
    }

    /// `XS_WRITE` as `dom`: sets the value, creating the node and missing parents.
    pub fn write(&mut self, dom: DomId, path: &str, value: &[u8]) -> Result<(), Errno> {
        if dom != DOM0 && value.len() > self.quota.value_max {
            return Err(Errno::ENOSPC);
        }
        let abs = Self::canonical(dom, path)?;
        match self.nodes.get(&abs) {
            Some(node) => {
                if !Self::access(dom, &node.perms).writes() {
                    return Err(Errno::EACCES);
                }
                let owner = node.owner();
                let (old, new) = (node.value.len(), value.len());
                if new > old && !self.within_quota(dom, owner, 0, new - old) {
                    return Err(Errno::ENOSPC);
                }
                let u = self.usage_mut(owner);
                u.memory = (u.memory + new).saturating_sub(old);
                if let Some(node) = self.nodes.get_mut(&abs) {
                    node.value = Vec::from(value);
                }
            }
            None => self.create(dom, &abs, value)?,
        }
        self.fire(&abs, false);
        Ok(())
    }

    /// `XS_MKDIR` as `dom`: creates the node (empty) and missing parents; an existing
    /// node is left as it is.
    pub fn mkdir(&mut self, dom: DomId, path: &str) -> Result<(), Errno> {
        let abs = Self::canonical(dom, path)?;
        if let Some(node) = self.nodes.get(&abs) {
            return if Self::access(dom, &node.perms).writes() {
                Ok(())
            } else {
                Err(Errno::EACCES)
            };
        }
        self.create(dom, &abs, &[])?;
        self.fire(&abs, false);
        Ok(())
    }

    /// Creates `abs` (absent) with `value`, and its missing parents empty, each with its
    /// parent's permissions and, when `dom` is unprivileged, `dom` as the owner.
    fn create(&mut self, dom: DomId, abs: &str, value: &[u8]) -> Result<(), Errno> {
        // The nearest existing ancestor, and how many nodes (and path bytes) are missing,
        // found without allocating: the permission and quota checks come before any memory
        // is spent on a request (a deep path of a domU's would otherwise cost megabytes).
        let (mut count, mut path_bytes) = (1usize, abs.len());
        let mut at = parent_of(abs);
        while !self.nodes.contains_key(at) {
            count += 1;
            path_bytes += at.len();
            at = parent_of(at);
        }
        let parent = self.nodes.get(at).ok_or(Errno::ENOENT)?;
        if !Self::access(dom, &parent.perms).writes() {
            return Err(Errno::EACCES);
        }
        let mut perms = parent.perms.clone();
        if dom != DOM0
            && let Some(first) = perms.first_mut()
        {
            first.dom = dom;
        }
        let owner = perms.first().map_or(DOM0, |p| p.dom);
        let memory = count * (NODE_OVERHEAD + 4 * perms.len()) + path_bytes + value.len();
        if !self.within_quota(dom, owner, count, memory) {
            return Err(Errno::ENOSPC);
        }
        let mut missing = alloc::vec![String::from(abs)];
        let mut at = parent_of(abs);
        while !self.nodes.contains_key(at) {
            missing.push(String::from(at));
            at = parent_of(at);
        }
        let u = self.usage_mut(owner);
        u.nodes += missing.len();
        u.memory += memory;
        // Parents first, so each child is named in an existing parent.
        for path in missing.iter().rev() {
            let name = String::from(base_name(path));
            if let Some(p) = self.nodes.get_mut(parent_of(path)) {
                p.children.insert(name);
            }
            let v = if path == abs {
                Vec::from(value)
            } else {
                Vec::new()
            };
            self.nodes.insert(
                path.clone(),
                Node {
                    value: v,
                    perms: perms.clone(),
                    children: BTreeSet::new(),
                },
            );
        }
        Ok(())
    }

    /// `XS_RM` as `dom`: removes the node and everything below it. A node that does not
    /// exist under an existing parent is not an error (Xen's rule).
    pub fn rm(&mut self, dom: DomId, path: &str) -> Result<(), Errno> {
        let abs = Self::canonical(dom, path)?;
        if abs == "/" {
            return Err(Errno::EINVAL);
        }
        let Some(node) = self.nodes.get(&abs) else {
            let parent = self.nodes.get(parent_of(&abs)).ok_or(Errno::ENOENT)?;
            return if Self::access(dom, &parent.perms).reads() {
                Ok(())
            } else {
                Err(Errno::EACCES)
            };
        };
        if !Self::access(dom, &node.perms).writes() {
            return Err(Errno::EACCES);
        }
        let mut stack = alloc::vec![abs.clone()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.remove(&p) {
                let cost = n.cost(&p);
                let u = self.usage_mut(n.owner());
                u.nodes = u.nodes.saturating_sub(1);
                u.memory = u.memory.saturating_sub(cost);
                for child in &n.children {
                    stack.push(if p == "/" {
                        format!("/{child}")
                    } else {
                        format!("{p}/{child}")
                    });
                }
            }
        }
        if let Some(parent) = self.nodes.get_mut(parent_of(&abs)) {
            parent.children.remove(base_name(&abs));
        }
        self.fire(&abs, true);
        Ok(())
    }

    /// `XS_SET_PERMS` as `dom`: only the owner (or dom0) may, and only dom0 may give a
    /// node to another owner.
    pub fn set_perms(&mut self, dom: DomId, path: &str, perms: &[Perm]) -> Result<(), Errno> {
        let abs = Self::canonical(dom, path)?;
        let node = self.nodes.get(&abs).ok_or(Errno::ENOENT)?;
        let first = *perms.first().ok_or(Errno::EINVAL)?;
        let old_owner = node.owner();
        if dom != DOM0 {
            if old_owner != dom {
                return Err(Errno::EACCES);
            }
            if perms.len() > self.quota.perms {
                return Err(Errno::ENOSPC);
            }
            if first.dom != dom {
                return Err(Errno::EACCES);
            }
        }
        let old_cost = node.cost(&abs);
        let new_cost = old_cost - 4 * node.perms.len() + 4 * perms.len();
        let extra_nodes = usize::from(first.dom != old_owner);
        let extra_mem = if first.dom != old_owner {
            new_cost
        } else {
            new_cost.saturating_sub(old_cost)
        };
        if !self.within_quota(dom, first.dom, extra_nodes, extra_mem) {
            return Err(Errno::ENOSPC);
        }
        let u = self.usage_mut(old_owner);
        u.nodes = u.nodes.saturating_sub(1);
        u.memory = u.memory.saturating_sub(old_cost);
        let u = self.usage_mut(first.dom);
        u.nodes += 1;
        u.memory += new_cost;
        if let Some(node) = self.nodes.get_mut(&abs) {
            node.perms = Vec::from(perms);
        }
        self.fire(&abs, false);
        Ok(())
    }
}

mod messages;
mod watches;

#[cfg(test)]
mod tests;
