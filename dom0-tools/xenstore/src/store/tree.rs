//! The operations on the node tree, through a [`View`]: the store's own tree, or a
//! transaction's picture of it (its changes over the tree, every node it looked at noted with
//! the generation it had, for the conflict check at commit).
//!
//! Every operation checks permissions and quotas before it changes or allocates anything
//! for a request (a deep path of missing levels is measured first, then refused).

use super::transactions::{SEEN_COST, Tx};
use super::*;

/// The tree as one domain sees it, outside or inside a transaction.
pub(super) struct View<'a> {
    nodes: &'a mut BTreeMap<String, Node>,
    usage: &'a mut BTreeMap<DomId, Usage>,
    generation: &'a mut u64,
    total: &'a mut usize,
    quota: Quota,
    /// Who asks.
    dom: DomId,
    tx: Option<&'a mut Tx>,
    /// Bytes the asker's open transactions hold (counted on its memory quota).
    extra: usize,
    /// Nodes changed (`true`: removed, with everything below) whose watches fire.
    fired: Vec<(String, bool)>,
}

/// What `a` allows, for reading or for writing.
fn allows(a: Access, write: bool) -> bool {
    if write { a.writes() } else { a.reads() }
}

impl<'a> View<'a> {
    /// The store's tree, as `dom`.
    pub(super) fn new(s: &'a mut Store, dom: DomId) -> Self {
        Self::from_parts(
            &mut s.nodes,
            &mut s.usage,
            &mut s.generation,
            &mut s.total,
            s.quota,
            dom,
            None,
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_parts(
        nodes: &'a mut BTreeMap<String, Node>,
        usage: &'a mut BTreeMap<DomId, Usage>,
        generation: &'a mut u64,
        total: &'a mut usize,
        quota: Quota,
        dom: DomId,
        tx: Option<&'a mut Tx>,
        extra: usize,
    ) -> Self {
        Self {
            nodes,
            usage,
            generation,
            total,
            quota,
            dom,
            tx,
            extra,
            fired: Vec::new(),
        }
    }

    /// The nodes whose watches fire (outside a transaction; inside one they are kept in
    /// it for the commit).
    pub(super) fn into_fired(self) -> Vec<(String, bool)> {
        self.fired
    }

    fn fire(&mut self, path: &str, removed: bool) {
        match self.tx.as_deref_mut() {
            Some(tx) => {
                tx.fire.insert((String::from(path), removed));
            }
            None => self.fired.push((String::from(path), removed)),
        }
    }

    /// Notes that a transaction looked at `p` (the generation it had then, 0 if missing).
    fn note(&mut self, p: &str) {
        let Some(tx) = self.tx.as_deref_mut() else {
            return;
        };
        if tx.changed.contains_key(p) {
            return;
        }
        let generation = self.nodes.get(p).map_or(0, |n| n.generation);
        match tx.seen.get(p) {
            // It changed since the transaction first looked: whatever it reads now is not
            // what it read then, so it cannot commit (even if the node changes back).
            Some(&g) if g != generation => tx.stale = true,
            Some(_) => {}
            None => {
                tx.seen.insert(String::from(p), generation);
                tx.cost += SEEN_COST + p.len();
                *self.total += SEEN_COST + p.len();
            }
        }
    }

    /// `p` as this view sees it, without noting the look.
    fn peek(&self, p: &str) -> Option<&Node> {
        if let Some(tx) = self.tx.as_deref()
            && let Some(c) = tx.changed.get(p)
        {
            return c.as_ref();
        }
        self.nodes.get(p)
    }

    /// `p` as this view sees it.
    fn get(&mut self, p: &str) -> Option<&Node> {
        self.note(p);
        self.peek(p)
    }

    fn charge(&mut self, owner: DomId, nodes: isize, cost: isize) {
        let u = self.usage.entry(owner).or_default();
        u.nodes = u.nodes.saturating_add_signed(nodes);
        u.memory = u.memory.saturating_add_signed(cost);
        if owner != DOM0 {
            *self.total = self.total.saturating_add_signed(cost);
        }
    }

    /// Sets `p` to `n` (present) or removes it (`None`), with the accounting.
    pub(super) fn put(&mut self, p: &str, n: Option<Node>) {
        self.note(p);
        if let Some(tx) = self.tx.as_deref_mut() {
            let new = n.as_ref().map_or(SEEN_COST + p.len(), |n| n.cost(p));
            let old = match tx.changed.get(p) {
                Some(Some(o)) => o.cost(p),
                Some(None) => SEEN_COST + p.len(),
                None => 0,
            };
            tx.cost = (tx.cost + new).saturating_sub(old);
            *self.total = (*self.total + new).saturating_sub(old);
            tx.changed.insert(String::from(p), n);
            return;
        }
        let old = match n {
            Some(mut n) => {
                *self.generation += 1;
                n.generation = *self.generation;
                self.charge(n.owner(), 1, n.cost(p) as isize);
                self.nodes.insert(String::from(p), n)
            }
            None => self.nodes.remove(p),
        };
        if let Some(o) = old {
            self.charge(o.owner(), -1, -(o.cost(p) as isize));
        }
    }

    /// Changes the node at `p` (present) with `f`.
    fn update(&mut self, p: &str, f: impl FnOnce(&mut Node)) {
        if self.tx.is_some() {
            if let Some(mut n) = self.get(p).cloned() {
                f(&mut n);
                self.put(p, Some(n));
            }
            return;
        }
        let Some(n) = self.nodes.get_mut(p) else {
            return;
        };
        let (owner, cost) = (n.owner(), n.cost(p));
        f(n);
        *self.generation += 1;
        n.generation = *self.generation;
        let (new_owner, new_cost) = (n.owner(), n.cost(p));
        self.charge(owner, -1, -(cost as isize));
        self.charge(new_owner, 1, new_cost as isize);
    }

    /// Whether the asker may make `owner` own `nodes` more nodes and `memory` more bytes:
    /// dom0 and what dom0 owns are not limited (Xen checks the quota of the domain
    /// asking); the store's total is checked first (`ENOMEM`), then the owner's quota
    /// (`ENOSPC`).
    fn within_quota(&self, owner: DomId, nodes: usize, memory: usize) -> Result<(), Errno> {
        if self.dom == DOM0 || owner == DOM0 {
            return Ok(());
        }
        if *self.total + memory > self.quota.total {
            return Err(Errno::ENOMEM);
        }
        let u = self.usage.get(&owner).copied().unwrap_or_default();
        let extra = if owner == self.dom { self.extra } else { 0 };
        if u.nodes + nodes > self.quota.nodes || u.memory + extra + memory > self.quota.memory {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    /// Whether a transaction may look at `more` more nodes.
    fn tx_room(&self, more: usize) -> Result<(), Errno> {
        match self.tx.as_deref() {
            Some(tx)
                if self.dom != DOM0
                    && tx.seen.len() + tx.changed.len() + more > self.quota.transaction_nodes =>
            {
                Err(Errno::ENOSPC)
            }
            _ => Ok(()),
        }
    }

    /// What the asker may do to the nearest existing ancestor of `abs`.
    fn parent_access(&self, abs: &str) -> Access {
        let mut at = abs;
        while at != "/" {
            at = parent_of(at);
            if let Some(n) = self.peek(at) {
                return access(self.dom, &n.perms);
            }
        }
        Access::None
    }

    /// The error for a node the asker may not have, or that is missing: Xen's
    /// `errno_from_parents`, so that a domain cannot learn which nodes exist where it may
    /// not look (`EACCES` unless it may read, or write, the nearest existing ancestor).
    fn errno_from_parents(&self, abs: &str, e: Errno, write: bool) -> Errno {
        if allows(self.parent_access(abs), write) {
            e
        } else {
            Errno::EACCES
        }
    }

    /// `path` made absolute, when the node exists and the asker may read it (or write).
    fn node_for(&mut self, path: &str, write: bool) -> Result<String, Errno> {
        let abs = canonical(self.dom, path)?;
        let dom = self.dom;
        match self.get(&abs).map(|n| access(dom, &n.perms)) {
            Some(a) if allows(a, write) => Ok(abs),
            Some(_) => Err(Errno::EACCES),
            None => Err(self.errno_from_parents(&abs, Errno::ENOENT, write)),
        }
    }

    /// `XS_READ`.
    pub(super) fn read(&mut self, path: &str) -> Result<Vec<u8>, Errno> {
        let abs = self.node_for(path, false)?;
        Ok(self.peek(&abs).map(|n| n.value.clone()).unwrap_or_default())
    }

    /// `XS_DIRECTORY`: the node's generation and its children's names.
    pub(super) fn directory(&mut self, path: &str) -> Result<(u64, Vec<String>), Errno> {
        let abs = self.node_for(path, false)?;
        Ok(self
            .peek(&abs)
            .map(|n| (n.generation, n.children.iter().cloned().collect()))
            .unwrap_or_default())
    }

    /// `XS_GET_PERMS`.
    pub(super) fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>, Errno> {
        let abs = self.node_for(path, false)?;
        Ok(self.peek(&abs).map(|n| n.perms.clone()).unwrap_or_default())
    }

    /// `XS_WRITE`: sets the value, creating the node and missing parents.
    pub(super) fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Errno> {
        if self.dom != DOM0 && value.len() > self.quota.value_max {
            return Err(Errno::ENOSPC);
        }
        let abs = canonical(self.dom, path)?;
        self.tx_room(1)?;
        let dom = self.dom;
        let found = self
            .get(&abs)
            .map(|n| (access(dom, &n.perms), n.owner(), n.value.len()));
        match found {
            Some((a, owner, old)) => {
                if !a.writes() {
                    return Err(Errno::EACCES);
                }
                self.within_quota(owner, 0, value.len().saturating_sub(old))?;
                self.update(&abs, |n| n.value = Vec::from(value));
            }
            None => self.create(&abs, value)?,
        }
        self.fire(&abs, false);
        Ok(())
    }

    /// `XS_MKDIR`: creates the node (empty) and missing parents; an existing node is left
    /// as it is.
    pub(super) fn mkdir(&mut self, path: &str) -> Result<(), Errno> {
        let abs = canonical(self.dom, path)?;
        self.tx_room(1)?;
        let dom = self.dom;
        if let Some(a) = self.get(&abs).map(|n| access(dom, &n.perms)) {
            return if a.writes() {
                Ok(())
            } else {
                Err(Errno::EACCES)
            };
        }
        self.create(&abs, &[])?;
        self.fire(&abs, false);
        Ok(())
    }

    /// Creates `abs` (absent) with `value`, and its missing parents empty, each with its
    /// parent's permissions and, when the asker is unprivileged, the asker as the owner.
    fn create(&mut self, abs: &str, value: &[u8]) -> Result<(), Errno> {
        // The nearest existing ancestor, and what the missing nodes will cost, found
        // without allocating: the permission and quota checks come before any memory is
        // spent on a request (a deep path of a domU's would otherwise cost megabytes).
        let (mut count, mut path_bytes, mut name_bytes) = (1usize, abs.len(), base_name(abs).len());
        let mut at = parent_of(abs);
        while self.peek(at).is_none() {
            count += 1;
            path_bytes += at.len();
            name_bytes += base_name(at).len();
            at = parent_of(at);
        }
        self.tx_room(count + 1)?;
        let dom = self.dom;
        let parent = self.get(at).ok_or(Errno::ENOENT)?;
        if !access(dom, &parent.perms).writes() {
            return Err(Errno::EACCES);
        }
        let mut perms = parent.perms.clone();
        if dom != DOM0
            && let Some(first) = perms.first_mut()
        {
            first.dom = dom;
        }
        let owner = perms.first().map_or(DOM0, |p| p.dom);
        let mut memory =
            count * (NODE_OVERHEAD + 4 * perms.len()) + path_bytes + name_bytes + value.len();
        if self.tx.is_some() {
            // What the transaction's record of them costs on top.
            memory += count * SEEN_COST + path_bytes;
        }
        self.within_quota(owner, count, memory)?;
        let mut missing = alloc::vec![String::from(abs)];
        let mut at = parent_of(abs);
        while self.get(at).is_none() {
            missing.push(String::from(at));
            at = parent_of(at);
        }
        // Parents first, so each child is named in an existing parent.
        for path in missing.iter().rev() {
            let name = String::from(base_name(path));
            self.update(parent_of(path), |p| {
                p.children.insert(name);
            });
            let v = if path == abs {
                Vec::from(value)
            } else {
                Vec::new()
            };
            self.put(
                path,
                Some(Node {
                    value: v,
                    perms: perms.clone(),
                    children: BTreeSet::new(),
                    generation: 0,
                }),
            );
        }
        Ok(())
    }

    /// `XS_RM`: removes the node and everything below it. A node that does not exist
    /// under an existing parent is not an error (Xen's rule).
    pub(super) fn rm(&mut self, path: &str) -> Result<(), Errno> {
        let abs = canonical(self.dom, path)?;
        if abs == "/" {
            return Err(Errno::EINVAL);
        }
        let dom = self.dom;
        let Some(a) = self.get(&abs).map(|n| access(dom, &n.perms)) else {
            let e = self.errno_from_parents(&abs, Errno::ENOENT, true);
            return if e == Errno::ENOENT && self.get(parent_of(&abs)).is_some() {
                Ok(())
            } else {
                Err(e)
            };
        };
        if !a.writes() {
            return Err(Errno::EACCES);
        }
        let mut doomed = Vec::new();
        let mut record = 0;
        let mut stack = alloc::vec![abs.clone()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.peek(&p) {
                for child in &n.children {
                    stack.push(child_path(&p, child));
                }
                record += SEEN_COST + p.len();
                doomed.push(p);
            }
            self.tx_room(doomed.len() + 1)?;
        }
        if self.tx.is_some() {
            // What the transaction's record of the removals costs.
            self.within_quota(self.dom, 0, record)?;
        }
        for p in &doomed {
            self.put(p, None);
        }
        let name = String::from(base_name(&abs));
        self.update(parent_of(&abs), |p| {
            p.children.remove(&name);
        });
        self.fire(&abs, true);
        Ok(())
    }

    /// `XS_SET_PERMS`: only the owner (or dom0) may, and only dom0 may give a node to
    /// another owner (`EPERM`, as Xen).
    pub(super) fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), Errno> {
        let first = *perms.first().ok_or(Errno::EINVAL)?;
        if self.dom != DOM0 && perms.len() > self.quota.perms {
            return Err(Errno::ENOSPC);
        }
        let abs = canonical(self.dom, path)?;
        self.tx_room(1)?;
        let Some((owner, old_perms)) = self.get(&abs).map(|n| (n.owner(), n.perms.len())) else {
            return Err(self.errno_from_parents(&abs, Errno::ENOENT, true));
        };
        if self.dom != DOM0 {
            if owner != self.dom {
                return Err(Errno::EACCES);
            }
            if first.dom != owner {
                return Err(Errno::EPERM);
            }
        }
        self.within_quota(first.dom, 0, 4 * perms.len().saturating_sub(old_perms))?;
        self.update(&abs, |n| n.perms = Vec::from(perms));
        self.fire(&abs, false);
        Ok(())
    }
}
