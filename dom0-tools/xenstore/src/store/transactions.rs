//! Transactions (`XS_TRANSACTION_START`/`END`), with Xen's generation counts: every node
//! carries the store's generation when it last changed; a transaction keeps its own changes
//! and, for every node it looked at, the generation it saw (0 for a missing node). At commit,
//! if any of those nodes has another generation now (someone changed, created or removed it
//! meanwhile), the commit fails with `EAGAIN` and nothing of it is applied; otherwise its
//! changes are applied at once and their watches fire then (never before). Aborting discards
//! them.
//!
//! Bounded: at most [`Quota::transactions`] open per unprivileged connection, each looking at
//! no more than [`Quota::transaction_nodes`] nodes, and what they hold counted on the
//! domain's memory quota and the store's total.

use super::tree::View;
use super::*;

/// What one node a transaction looked at costs beyond its path (quota arithmetic).
pub(super) const SEEN_COST: usize = 64;
/// What an open transaction costs before it looks at anything.
const TX_COST: usize = 128;

/// An open transaction.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    /// The nodes it changed: the new node, or `None` for a removed one.
    pub(super) changed: BTreeMap<String, Option<Node>>,
    /// The generation of each node it looked at, as it was then (0: missing).
    pub(super) seen: BTreeMap<String, u64>,
    /// Nodes whose watches fire at commit (`true`: removed, with what was below).
    pub(super) fire: BTreeSet<(String, bool)>,
    /// Bytes counted for it.
    pub(super) cost: usize,
    /// A node it looked at changed before it looked again: it will not commit.
    pub(super) stale: bool,
}

impl Store {
    /// `XS_TRANSACTION_START` on `id`: the new transaction's id.
    pub(super) fn transaction_start(&mut self, id: ConnId) -> Result<u32, Errno> {
        let (quota, total) = (self.quota, self.total);
        let c = self.conns.get_mut(&id).ok_or(Errno::EINVAL)?;
        if c.dom != DOM0 {
            if c.txs.len() >= quota.transactions {
                return Err(Errno::ENOSPC);
            }
            if total + TX_COST > quota.total {
                return Err(Errno::ENOMEM);
            }
        }
        let mut tx_id = c.next_tx;
        while tx_id == 0 || c.txs.contains_key(&tx_id) {
            tx_id = tx_id.wrapping_add(1);
        }
        c.next_tx = tx_id.wrapping_add(1);
        c.txs.insert(
            tx_id,
            Tx {
                cost: TX_COST,
                ..Tx::default()
            },
        );
        self.total += TX_COST;
        Ok(tx_id)
    }

    /// `XS_TRANSACTION_END` of `tx_id` on `id`: commits it (`EAGAIN` if it conflicts,
    /// `ENOSPC`/`ENOMEM` if it would take an unprivileged domain past its quota or the
    /// store past its total) or, without `commit`, drops it. Either way it is closed.
    pub(super) fn transaction_end(
        &mut self,
        id: ConnId,
        tx_id: u32,
        commit: bool,
    ) -> Result<(), Errno> {
        let c = self.conns.get_mut(&id).ok_or(Errno::EINVAL)?;
        let dom = c.dom;
        let tx = c.txs.remove(&tx_id).ok_or(Errno::ENOENT)?;
        self.total = self.total.saturating_sub(tx.cost);
        if !commit {
            return Ok(());
        }
        if tx.stale {
            return Err(Errno::EAGAIN);
        }
        for (path, &generation) in &tx.seen {
            if self.nodes.get(path).map_or(0, |n| n.generation) != generation {
                return Err(Errno::EAGAIN);
            }
        }
        if dom != DOM0 {
            self.commit_within_quota(&tx)?;
        }
        let mut v = View::new(self, dom);
        let Tx { changed, fire, .. } = tx;
        for (path, node) in changed {
            v.put(&path, node);
        }
        drop(v);
        for (path, removed) in &fire {
            // A removal below a removed node fired with it.
            if *removed
                && fire
                    .range(..(path.clone(), false))
                    .any(|(p, r)| *r && p != path && is_within(path, p))
            {
                continue;
            }
            self.fire(path, *removed);
        }
        Ok(())
    }

    /// Whether applying `tx` keeps every unprivileged owner it adds to within its quota,
    /// and the store within its total.
    fn commit_within_quota(&self, tx: &Tx) -> Result<(), Errno> {
        let mut delta: BTreeMap<DomId, (isize, isize)> = BTreeMap::new();
        for (path, node) in &tx.changed {
            if let Some(old) = self.nodes.get(path) {
                let d = delta.entry(old.owner()).or_default();
                d.0 -= 1;
                d.1 -= old.cost(path) as isize;
            }
            if let Some(new) = node {
                let d = delta.entry(new.owner()).or_default();
                d.0 += 1;
                d.1 += new.cost(path) as isize;
            }
        }
        let growth: isize = delta
            .iter()
            .filter(|&(&owner, _)| owner != DOM0)
            .map(|(_, d)| d.1)
            .sum();
        if self.total.saturating_add_signed(growth) > self.quota.total {
            return Err(Errno::ENOMEM);
        }
        for (&owner, &(nodes, memory)) in &delta {
            if owner == DOM0 || (nodes <= 0 && memory <= 0) {
                continue;
            }
            let u = self.usage.get(&owner).copied().unwrap_or_default();
            if u.nodes.saturating_add_signed(nodes) > self.quota.nodes
                || u.memory.saturating_add_signed(memory) > self.quota.memory
            {
                return Err(Errno::ENOSPC);
            }
        }
        Ok(())
    }

    /// Runs `f` inside transaction `tx_id` of connection `id`.
    pub(super) fn in_transaction<R>(
        &mut self,
        id: ConnId,
        tx_id: u32,
        f: impl FnOnce(&mut View) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let c = self.conns.get_mut(&id).ok_or(Errno::EINVAL)?;
        let dom = c.dom;
        let extra: usize = c.txs.values().map(|t| t.cost).sum();
        let tx = c.txs.get_mut(&tx_id).ok_or(Errno::ENOENT)?;
        if dom != DOM0 {
            let used = self.usage.get(&dom).map_or(0, |u| u.memory);
            if self.total > self.quota.total {
                return Err(Errno::ENOMEM);
            }
            if used + extra > self.quota.memory
                || tx.seen.len() + tx.changed.len() >= self.quota.transaction_nodes
            {
                return Err(Errno::ENOSPC);
            }
        }
        let mut v = View::from_parts(
            &mut self.nodes,
            &mut self.usage,
            &mut self.generation,
            &mut self.total,
            self.quota,
            dom,
            Some(tx),
            extra,
        );
        f(&mut v)
    }

    /// Drops every transaction of `id` (`XS_RESET_WATCHES` does).
    pub(super) fn drop_transactions(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            let txs = core::mem::take(&mut c.txs);
            for tx in txs.values() {
                self.total = self.total.saturating_sub(tx.cost);
            }
        }
    }
}
