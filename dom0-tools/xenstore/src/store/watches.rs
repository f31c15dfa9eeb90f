//! Watches: adding and removing them, and firing them when nodes change.

use super::*;

impl Store {
    pub(super) fn uncharge_watches(&mut self, dom: DomId, watches: &[Watch]) {
        let total: usize = watches.iter().map(Watch::cost).sum();
        let u = self.usage_mut(dom);
        u.memory = u.memory.saturating_sub(total);
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
            (Self::canonical(dom, path)?, !path.starts_with('/'))
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
        if dom != DOM0 && conn.watches.len() >= self.quota.watches {
            return Err(Errno::E2BIG);
        }
        if !self.within_quota(dom, dom, 0, cost) {
            return Err(Errno::ENOSPC);
        }
        self.usage_mut(dom).memory += cost;
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
            Self::canonical(dom, path)?
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

    /// The event a new watch fires at once: the last one `id` added.
    pub(super) fn fire_initial(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(w) = c.watches.last() else {
            return;
        };
        let event = Self::event(c.dom, w, &w.path);
        Self::queue_event(c, event);
    }

    pub(super) fn event(dom: DomId, w: &Watch, changed: &str) -> Vec<u8> {
        let home = home_path(dom);
        let shown = match changed.strip_prefix(home.as_str()) {
            Some(rest) if w.relative && rest.starts_with('/') => &rest[1..],
            _ => changed,
        };
        let mut p = Vec::with_capacity(shown.len() + w.token.len() + 2);
        p.extend_from_slice(shown.as_bytes());
        p.push(0);
        p.extend_from_slice(&w.token);
        p.push(0);
        message(XS_WATCH_EVENT, 0, &p)
    }

    pub(super) fn queue_event(c: &mut Conn, event: Vec<u8>) {
        if c.output.len() + event.len() > OUTPUT_MAX {
            c.lost_events += 1;
        } else {
            c.output.extend(event);
        }
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
            if !Self::access(c.dom, &perms).reads() {
                continue;
            }
            let mut events = Vec::new();
            for w in &c.watches {
                if w.path.starts_with('@') {
                    continue;
                }
                if is_within(changed, &w.path) || (removed && is_within(&w.path, changed)) {
                    events.push(Self::event(c.dom, w, changed));
                }
            }
            for e in events {
                Self::queue_event(c, e);
            }
        }
    }

    pub(super) fn fire_special(&mut self, name: &str) {
        for c in self.conns.values_mut() {
            let events: Vec<Vec<u8>> = c
                .watches
                .iter()
                .filter(|w| w.path == name)
                .map(|w| Self::event(c.dom, w, name))
                .collect();
            for e in events {
                Self::queue_event(c, e);
            }
        }
    }
}
