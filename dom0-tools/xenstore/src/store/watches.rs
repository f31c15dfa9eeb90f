//! Watches: adding and removing them, and firing them when nodes change.

use super::*;

impl Store {
    pub(super) fn uncharge_watches(&mut self, dom: DomId, watches: &[Watch]) {
        let total: usize = watches.iter().map(Watch::cost).sum();
        let u = self.usage.entry(dom).or_default();
        u.memory = u.memory.saturating_sub(total);
        if dom != DOM0 {
            self.total = self.total.saturating_sub(total);
        }
    }

    /// Whether some connection of domain `dom` has a watch that fires when node `path`
    /// (absolute) is written: a watch on it or on one of its ancestors. `xl mem-set` asks
    /// this of `memory/target` to know that a balloon driver listens (Linux's registers
    /// exactly that watch; a kernel without one registers none).
    pub fn watched_by(&self, dom: DomId, path: &str) -> bool {
        self.conns.values().filter(|c| c.dom == dom).any(|c| {
            c.watches.iter().any(|w| {
                w.path == "/"
                    || path
                        .strip_prefix(w.path.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
        })
    }

    pub(super) fn watch(&mut self, id: ConnId, path: &str, token: &[u8]) -> Result<(), Errno> {
        let dom = self.conns.get(&id).ok_or(Errno::EINVAL)?.dom;
        // Every event must fit one message: the longest path, a NUL, the token, a NUL.
        if XENSTORE_ABS_PATH_MAX + token.len() + 2 > XENSTORE_PAYLOAD_MAX {
            return Err(Errno::E2BIG);
        }
        let (abs, relative) = if path.starts_with('@') {
            // Domain creation and destruction are dom0's to hear of (Xen gives the special
            // nodes dom0-only permissions; XSA-115's class of leak otherwise).
            if dom != DOM0 {
                return Err(Errno::EACCES);
            }
            if path.len() > XENSTORE_REL_PATH_MAX
                || !path.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'@')
            {
                return Err(Errno::EINVAL);
            }
            (String::from(path), false)
        } else {
            (canonical(dom, path)?, !path.starts_with('/'))
        };
        let w = Watch {
            path: abs,
            token: Vec::from(token),
            relative,
        };
        let cost = w.cost();
        let conn = self.conns.get(&id).ok_or(Errno::EINVAL)?;
        if conn
            .watches
            .iter()
            .any(|x| x.path == w.path && x.token == w.token)
        {
            return Err(Errno::EEXIST);
        }
        if dom != DOM0 {
            // Xen's answer past the watch quota (older versions answered `E2BIG`).
            if conn.watches.len() >= self.quota.watches {
                return Err(Errno::ENOSPC);
            }
            if self.total + cost > self.quota.total {
                return Err(Errno::ENOMEM);
            }
            let extra: usize = conn.txs.values().map(|t| t.cost).sum();
            if self.memory_of(dom) + extra + cost > self.quota.memory {
                return Err(Errno::ENOSPC);
            }
        }
        self.usage.entry(dom).or_default().memory += cost;
        if dom != DOM0 {
            self.total += cost;
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.watches.push(w);
        }
        Ok(())
    }

    pub(super) fn unwatch(&mut self, id: ConnId, path: &str, token: &[u8]) -> Result<(), Errno> {
        let dom = self.conns.get(&id).ok_or(Errno::EINVAL)?.dom;
        let abs = if path.starts_with('@') {
            String::from(path)
        } else {
            canonical(dom, path)?
        };
        let c = self.conns.get_mut(&id).ok_or(Errno::EINVAL)?;
        let at = c
            .watches
            .iter()
            .position(|x| x.path == abs && x.token == token)
            .ok_or(Errno::ENOENT)?;
        let w = c.watches.remove(at);
        self.uncharge_watches(dom, core::slice::from_ref(&w));
        Ok(())
    }

    /// `XS_RESET_WATCHES`: drops every watch of `id`.
    pub(super) fn reset_watches(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            let watches = core::mem::take(&mut c.watches);
            let dom = c.dom;
            self.uncharge_watches(dom, &watches);
        }
    }

    /// The event a new watch fires at once: the last one `id` added.
    pub(super) fn fire_initial(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(at) = c.watches.len().checked_sub(1) {
            let path = c.watches[at].path.clone();
            Self::deliver(c, at, &path);
        }
    }

    /// How `changed` is shown to the watcher of `w` (relative for a relative watch).
    fn shown<'p>(dom: DomId, w: &Watch, changed: &'p str) -> &'p str {
        if !w.relative {
            return changed;
        }
        let home = home_path(dom);
        match changed.strip_prefix(home.as_str()) {
            Some(rest) if rest.starts_with('/') => &changed[home.len() + 1..],
            _ => changed,
        }
    }

    /// Queues the event of `c`'s watch number `at` for `changed`, if its output has room
    /// for it (measured before anything is built); otherwise counts it lost.
    fn deliver(c: &mut Conn, at: usize, changed: &str) {
        let Some(w) = c.watches.get(at) else {
            return;
        };
        let shown = Self::shown(c.dom, w, changed);
        let len = shown.len() + w.token.len() + 2;
        if c.output.len() + XsdSockmsg::SIZE + len > OUTPUT_MAX {
            c.lost_events += 1;
            return;
        }
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(shown.as_bytes());
        p.push(0);
        p.extend_from_slice(&w.token);
        p.push(0);
        let event = message(XS_WATCH_EVENT, 0, &p);
        c.queue(&event, false);
    }

    /// Fires the watches on `changed` or above it, and with `removed` those below it too,
    /// for connections that may read the node (as it is now, or its parent once removed).
    pub(super) fn fire(&mut self, changed: &str, removed: bool) {
        let perms = self
            .nodes
            .get(changed)
            .or_else(|| self.nodes.get(parent_of(changed)))
            .map(|n| n.perms.clone())
            .unwrap_or_default();
        for c in self.conns.values_mut() {
            if !access(c.dom, &perms).reads() {
                continue;
            }
            for at in 0..c.watches.len() {
                let w = &c.watches[at];
                if w.path.starts_with('@') {
                    continue;
                }
                if is_within(changed, &w.path) || (removed && is_within(&w.path, changed)) {
                    Self::deliver(c, at, changed);
                }
            }
        }
    }

    pub(super) fn fire_special(&mut self, name: &str) {
        for c in self.conns.values_mut() {
            for at in 0..c.watches.len() {
                if c.watches[at].path == name {
                    Self::deliver(c, at, name);
                }
            }
        }
    }
}
