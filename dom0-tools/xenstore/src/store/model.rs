//! A model-based test: random operations of dom0 and two domUs (writes, removals,
//! permission changes, transactions of one of them) run on the store and on a plain
//! `BTreeMap` reference; after every step both agree on which operations succeeded and on
//! every node's value and permissions. A committed transaction has the effect of its
//! operations replayed at commit; one that fails with `EAGAIN` has none, and fails only if
//! something changed since it started.

extern crate std;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use proptest::prelude::*;

use super::messages::message;
use super::*;

const PATHS: &[&str] = &["a", "a/b", "b", "a/b/c"];

#[derive(Clone, Debug)]
enum Op {
    Write(u8, u8, u8),
    Rm(u8, u8),
    /// Let the other domU read it.
    Share(u8, u8),
    TxStart(u8),
    TxWrite(u8, u8, u8),
    TxRm(u8, u8),
    TxEnd(u8, bool),
}

#[derive(Clone, Copy, Debug)]
enum TxOp {
    Write(u8, u8),
    Rm(u8),
}

/// The reference: path → (value, permissions).
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    nodes: BTreeMap<String, (Vec<u8>, Vec<Perm>)>,
}

fn actor(a: u8) -> DomId {
    [DOM0, 5, 6][a as usize % 3]
}

/// Path `p` of the universe, under domain 5's or 6's `data`.
fn path(p: u8) -> String {
    let d = 5 + p / 4 % 2;
    format!("/local/domain/{d}/data/{}", PATHS[p as usize % 4])
}

impl Model {
    fn ancestor(&self, abs: &str) -> (String, Vec<Perm>) {
        let mut at = abs;
        loop {
            at = parent_of(at);
            if let Some((_, perms)) = self.nodes.get(at) {
                return (String::from(at), perms.clone());
            }
        }
    }

    fn write(&mut self, dom: DomId, abs: &str, v: &[u8]) -> bool {
        if let Some((value, perms)) = self.nodes.get_mut(abs) {
            if !access(dom, perms).writes() {
                return false;
            }
            *value = Vec::from(v);
            return true;
        }
        let (_, mut perms) = self.ancestor(abs);
        if !access(dom, &perms).writes() {
            return false;
        }
        if dom != DOM0 {
            perms[0].dom = dom;
        }
        let mut at = String::from(abs);
        while !self.nodes.contains_key(&at) {
            let value = if at == abs { Vec::from(v) } else { Vec::new() };
            self.nodes.insert(at.clone(), (value, perms.clone()));
            at = String::from(parent_of(&at));
        }
        true
    }

    fn rm(&mut self, dom: DomId, abs: &str) -> bool {
        match self.nodes.get(abs) {
            Some((_, perms)) => {
                if !access(dom, perms).writes() {
                    return false;
                }
                self.nodes.retain(|p, _| !is_within(p, abs));
                true
            }
            None => {
                access(dom, &self.ancestor(abs).1).writes()
                    && self.nodes.contains_key(parent_of(abs))
            }
        }
    }

    fn share(&mut self, dom: DomId, abs: &str) -> bool {
        let Some((_, perms)) = self.nodes.get_mut(abs) else {
            return false;
        };
        let owner = perms[0].dom;
        if dom != DOM0 && owner != dom {
            return false;
        }
        let other = if owner == 5 { 6 } else { 5 };
        *perms = vec![
            Perm::new(owner, Access::None),
            Perm::new(other, Access::Read),
        ];
        true
    }

    fn apply(&mut self, dom: DomId, op: TxOp, p: &str) -> bool {
        match op {
            TxOp::Write(_, v) => self.write(dom, p, &[b'a' + v % 26]),
            TxOp::Rm(_) => self.rm(dom, p),
        }
    }
}

fn send(s: &mut Store, id: ConnId, tx: u32, t: u32, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let mut m = message(t, 1, payload);
    m[8..12].copy_from_slice(&tx.to_le_bytes());
    s.feed(id, &m);
    let out = s.take_output(id, usize::MAX);
    let mut rest = &out[..];
    while let Some(h) = XsdSockmsg::from_bytes(rest) {
        let end = XsdSockmsg::SIZE + h.len as usize;
        let body = rest[XsdSockmsg::SIZE..end].to_vec();
        if h.msg_type == XS_ERROR {
            return Err(body);
        }
        if h.msg_type != XS_WATCH_EVENT {
            return Ok(body);
        }
        rest = &rest[end..];
    }
    Err(b"no reply".to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(a, p, v)| Op::Write(a, p, v)),
        (0..3u8, 0..8u8).prop_map(|(a, p)| Op::Rm(a, p)),
        (0..3u8, 0..8u8).prop_map(|(a, p)| Op::Share(a, p)),
        (0..2u8).prop_map(Op::TxStart),
        (0..2u8, 0..8u8, 0..4u8).prop_map(|(t, p, v)| Op::TxWrite(t, p, v)),
        (0..2u8, 0..8u8).prop_map(|(t, p)| Op::TxRm(t, p)),
        (0..2u8, any::<bool>()).prop_map(|(t, c)| Op::TxEnd(t, c)),
    ]
}

proptest! {
    #[test]
    fn store_agrees_with_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut s = Store::new(Quota::DEFAULT);
        let mut m = Model::default();
        for p in ["/", "/local", "/local/domain"] {
            m.nodes.insert(String::from(p), (Vec::new(), vec![Perm::new(DOM0, Access::None)]));
        }
        for d in [5u16, 6] {
            let home = home_path(d);
            s.mkdir(DOM0, &format!("{home}/data")).unwrap();
            s.set_perms(DOM0, &home, &[Perm::new(DOM0, Access::None), Perm::new(d, Access::Read)]).unwrap();
            s.set_perms(DOM0, &format!("{home}/data"), &[Perm::new(d, Access::None)]).unwrap();
            m.nodes.insert(home.clone(), (Vec::new(), vec![Perm::new(DOM0, Access::None), Perm::new(d, Access::Read)]));
            m.nodes.insert(format!("{home}/data"), (Vec::new(), vec![Perm::new(d, Access::None)]));
        }
        let conns: BTreeMap<DomId, ConnId> =
            [(DOM0, s.connect(DOM0)), (5, s.introduce(5, 1, 1)), (6, s.introduce(6, 2, 1))].into();
        // Domain 5's transactions: (id, operations, epoch at start).
        let mut txs: [Option<(u32, Vec<TxOp>, u64)>; 2] = [None, None];
        let mut epoch = 0u64;
        for op in ops {
            match op {
                Op::Write(a, p, v) => {
                    let (d, abs) = (actor(a), path(p));
                    let val = [b'a' + v % 26];
                    let got = send(&mut s, conns[&d], 0, XS_WRITE, &[abs.as_bytes(), b"\0", &val].concat()).is_ok();
                    prop_assert_eq!(got, m.write(d, &abs, &val), "write {} as {}", abs, d);
                    epoch += u64::from(got);
                }
                Op::Rm(a, p) => {
                    let (d, abs) = (actor(a), path(p));
                    let got = send(&mut s, conns[&d], 0, XS_RM, &[abs.as_bytes(), b"\0"].concat()).is_ok();
                    prop_assert_eq!(got, m.rm(d, &abs), "rm {} as {}", abs, d);
                    epoch += u64::from(got);
                }
                Op::Share(a, p) => {
                    let (d, abs) = (actor(a), path(p));
                    let owner = m.nodes.get(&abs).map_or(d, |n| n.1[0].dom);
                    let other = if owner == 5 { 6 } else { 5 };
                    let msg = format!("{abs}\0n{owner}\0r{other}\0");
                    let got = send(&mut s, conns[&d], 0, XS_SET_PERMS, msg.as_bytes()).is_ok();
                    prop_assert_eq!(got, m.share(d, &abs), "share {} as {}", abs, d);
                    epoch += u64::from(got);
                }
                Op::TxStart(t) if txs[t as usize].is_none() => {
                    let r = send(&mut s, conns[&5], 0, XS_TRANSACTION_START, b"\0");
                    let id: u32 = core::str::from_utf8(&r.unwrap()).unwrap().trim_end_matches('\0').parse().unwrap();
                    txs[t as usize] = Some((id, Vec::new(), epoch));
                }
                Op::TxWrite(t, p, _) | Op::TxRm(t, p) if txs[t as usize].is_some() => {
                    let Some((id, log, _)) = txs[t as usize].as_mut() else { continue };
                    let abs = path(p);
                    if let Op::TxWrite(_, _, v) = op {
                        let val = [b'a' + v % 26];
                        let _ = send(&mut s, conns[&5], *id, XS_WRITE, &[abs.as_bytes(), b"\0", &val].concat());
                        log.push(TxOp::Write(p, v));
                    } else {
                        let _ = send(&mut s, conns[&5], *id, XS_RM, &[abs.as_bytes(), b"\0"].concat());
                        log.push(TxOp::Rm(p));
                    }
                }
                Op::TxEnd(t, commit) => {
                    if let Some((id, log, start)) = txs[t as usize].take() {
                        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
                        let r = send(&mut s, conns[&5], id, XS_TRANSACTION_END, arg);
                        match r {
                            Ok(_) if commit => {
                                for op in log {
                                    let p = match op { TxOp::Write(p, _) | TxOp::Rm(p) => p };
                                    m.apply(5, op, &path(p));
                                }
                                epoch += 1;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                prop_assert_eq!(&e[..], b"EAGAIN\0");
                                prop_assert!(commit && epoch != start, "EAGAIN with nothing changed");
                            }
                        }
                    }
                }
                _ => {}
            }
            // Same nodes, values and permissions.
            for (p, (value, perms)) in &m.nodes {
                prop_assert_eq!(s.read(DOM0, p), Ok(value.clone()), "{}", p);
                prop_assert_eq!(s.get_perms(DOM0, p), Ok(perms.clone()), "{}", p);
            }
            for p in 0..8 {
                let abs = path(p);
                prop_assert_eq!(s.read(DOM0, &abs).is_ok(), m.nodes.contains_key(&abs), "{}", abs);
            }
            for d in [5u16, 6] {
                let n = m.nodes.values().filter(|(_, perms)| perms[0].dom == d).count();
                prop_assert_eq!(s.nodes_of(d), n);
            }
        }
    }
}
