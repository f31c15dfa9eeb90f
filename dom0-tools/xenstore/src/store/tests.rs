use alloc::string::ToString;
use alloc::vec;

use guest_abi::xenstore::XenstoreDomainInterface as Iface;

use super::*;
use crate::ring;

extern crate std;

/// Sends one message on `id` and returns every complete message waiting for it:
/// `(type, req_id, payload)`.
fn call(s: &mut Store, id: ConnId, msg_type: u32, payload: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let m = message(msg_type, 77, payload);
    assert_eq!(s.feed(id, &m), m.len());
    drain(s, id)
}

fn drain(s: &mut Store, id: ConnId) -> Vec<(u32, u32, Vec<u8>)> {
    let bytes = s.take_output(id, usize::MAX);
    split(&bytes)
}

fn split(mut bytes: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(h) = XsdSockmsg::from_bytes(bytes) {
        let end = XsdSockmsg::SIZE + h.len as usize;
        out.push((h.msg_type, h.req_id, bytes[XsdSockmsg::SIZE..end].to_vec()));
        bytes = &bytes[end..];
    }
    out
}

fn reply(s: &mut Store, id: ConnId, msg_type: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let r = call(s, id, msg_type, payload);
    (r[0].0, r[0].2.clone())
}

fn err(e: &str) -> (u32, Vec<u8>) {
    let mut p = e.as_bytes().to_vec();
    p.push(0);
    (XS_ERROR, p)
}

/// A store where dom0 made domain 5's and 6's homes as the toolstack does: owned by dom0,
/// readable by the domain, and `data` writable by it.
fn with_domains() -> (Store, ConnId, ConnId, ConnId) {
    let mut s = Store::new(Quota::DEFAULT);
    for d in [5u16, 6] {
        let home = home_path(d);
        s.mkdir(DOM0, &home).unwrap();
        s.set_perms(
            DOM0,
            &home,
            &[Perm::new(DOM0, Access::None), Perm::new(d, Access::Read)],
        )
        .unwrap();
        s.write(DOM0, &format!("{home}/name"), d.to_string().as_bytes())
            .unwrap();
        s.mkdir(DOM0, &format!("{home}/data")).unwrap();
        s.set_perms(DOM0, &format!("{home}/data"), &[Perm::new(d, Access::None)])
            .unwrap();
    }
    let a = s.introduce(5, 0x1000, 3);
    let b = s.introduce(6, 0x2000, 3);
    let d0 = s.connect(DOM0);
    (s, a, b, d0)
}

#[test]
fn read_write_relative_and_absolute() {
    let (mut s, a, _, d0) = with_domains();
    assert_eq!(
        reply(&mut s, a, XS_READ, b"name\0"),
        (XS_READ, b"5".to_vec())
    );
    assert_eq!(
        reply(&mut s, a, XS_READ, b"/local/domain/5/name\0"),
        (XS_READ, b"5".to_vec())
    );
    assert_eq!(
        reply(&mut s, a, XS_WRITE, b"data/x\0hello"),
        (XS_WRITE, b"OK\0".to_vec())
    );
    assert_eq!(
        reply(&mut s, d0, XS_READ, b"/local/domain/5/data/x\0"),
        (XS_READ, b"hello".to_vec())
    );
    // The node is the domain's: it owns what it creates.
    assert_eq!(
        reply(&mut s, d0, XS_GET_PERMS, b"/local/domain/5/data/x\0"),
        (XS_GET_PERMS, b"n5\0".to_vec())
    );
    assert_eq!(
        reply(&mut s, a, XS_DIRECTORY, b"\x2flocal/domain/5\0"),
        (XS_DIRECTORY, b"data\0name\0".to_vec())
    );
    assert_eq!(
        reply(&mut s, a, XS_GET_DOMAIN_PATH, b"5\0"),
        (XS_GET_DOMAIN_PATH, b"/local/domain/5\0".to_vec())
    );
    assert_eq!(reply(&mut s, a, XS_READ, b"nothing\0"), err("ENOENT"));
    assert_eq!(
        reply(&mut s, a, XS_MKDIR, b"data/d/e\0"),
        (XS_MKDIR, b"OK\0".to_vec())
    );
    assert_eq!(
        reply(&mut s, a, XS_RM, b"data/d\0"),
        (XS_RM, b"OK\0".to_vec())
    );
    assert_eq!(reply(&mut s, a, XS_READ, b"data/d/e\0"), err("ENOENT"));
    // Removing what is not there under an existing parent is fine (Xen).
    assert_eq!(
        reply(&mut s, a, XS_RM, b"data/d\0"),
        (XS_RM, b"OK\0".to_vec())
    );
    assert_eq!(reply(&mut s, a, XS_RM, b"data/d/e/f\0"), err("ENOENT"));
}

#[test]
fn domains_cannot_reach_each_other() {
    let (mut s, a, b, _) = with_domains();
    reply(&mut s, b, XS_WRITE, b"data/secret\0x");
    assert_eq!(
        reply(&mut s, a, XS_READ, b"/local/domain/6/data/secret\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_READ, b"/local/domain/6/name\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_DIRECTORY, b"/local/domain/6\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_WRITE, b"/local/domain/6/data/secret\0y"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_WRITE, b"/local/domain/6/data/new\0y"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_RM, b"/local/domain/6/data\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(
            &mut s,
            a,
            XS_SET_PERMS,
            b"/local/domain/6/data/secret\0b5\0"
        ),
        err("EACCES")
    );
    // Its own home is read-only to it, only `data` is writable.
    assert_eq!(reply(&mut s, a, XS_WRITE, b"name\0evil"), err("EACCES"));
    assert_eq!(reply(&mut s, a, XS_WRITE, b"cpu\0x"), err("EACCES"));
    assert_eq!(reply(&mut s, a, XS_READ, b"/\0"), err("EACCES"));
    // It may not give its node to someone else, nor introduce or release domains.
    reply(&mut s, a, XS_WRITE, b"data/mine\0x");
    // Xen's EPERM (the last entry of xsd_errors).
    assert_eq!(
        reply(&mut s, a, XS_SET_PERMS, b"data/mine\0n6\0"),
        err("EPERM")
    );
    assert_eq!(
        reply(&mut s, a, XS_SET_PERMS, b"data/mine\0n5\0r6\0"),
        (XS_SET_PERMS, b"OK\0".to_vec())
    );
    assert_eq!(
        reply(&mut s, b, XS_READ, b"/local/domain/5/data/mine\0"),
        (XS_READ, b"x".to_vec())
    );
    assert_eq!(reply(&mut s, a, XS_RELEASE, b"6\0"), err("EACCES"));
    assert_eq!(
        reply(&mut s, a, XS_INTRODUCE, b"9\x001\x002\0"),
        err("EACCES")
    );
    assert!(s.is_introduced(6));
}

#[test]
fn malformed_messages_get_errors() {
    let (mut s, a, _, _) = with_domains();
    assert_eq!(reply(&mut s, a, XS_READ, b"name"), err("EINVAL"), "no NUL");
    assert_eq!(reply(&mut s, a, XS_READ, b"na\0me\0"), err("EINVAL"));
    assert_eq!(reply(&mut s, a, XS_READ, b""), err("EINVAL"));
    assert_eq!(reply(&mut s, a, XS_READ, b"data//x\0"), err("EINVAL"));
    assert_eq!(reply(&mut s, a, XS_READ, b"data/\0"), err("EINVAL"));
    assert_eq!(reply(&mut s, a, XS_READ, b"da ta\0"), err("EINVAL"));
    assert_eq!(reply(&mut s, a, XS_READ, b"\xff\xfe\0"), err("EINVAL"));
    let mut long = vec![b'a'; XENSTORE_REL_PATH_MAX + 1];
    long.push(0);
    assert_eq!(reply(&mut s, a, XS_READ, &long), err("EINVAL"));
    assert_eq!(reply(&mut s, a, 999, b"x\0"), err("ENOSYS"));
    assert_eq!(reply(&mut s, a, XS_WATCH_EVENT, b"x\0t\0"), err("ENOSYS"));
    assert_eq!(reply(&mut s, a, XS_WATCH, b"data\0"), err("EINVAL"));
    assert_eq!(
        reply(&mut s, a, XS_GET_DOMAIN_PATH, b"70000\0"),
        err("EINVAL")
    );
    assert_eq!(reply(&mut s, a, XS_SET_PERMS, b"data\0q5\0"), err("EINVAL"));
    // A transaction id that does not exist.
    let mut m = message(XS_READ, 1, b"name\0");
    m[8] = 3;
    s.feed(a, &m);
    assert_eq!(drain(&mut s, a)[0].2, b"ENOENT\0");
    // A header announcing too much: E2BIG, the rest of the write dropped, and the
    // connection still answers afterwards.
    let mut m = message(XS_WRITE, 9, b"");
    m[12..16].copy_from_slice(&5000u32.to_le_bytes());
    m.extend_from_slice(&[0xAB; 100]);
    assert_eq!(s.feed(a, &m), m.len());
    assert_eq!(drain(&mut s, a), vec![(XS_ERROR, 9, b"E2BIG\0".to_vec())]);
    assert_eq!(
        reply(&mut s, a, XS_READ, b"name\0"),
        (XS_READ, b"5".to_vec())
    );
    // Garbage split across writes is reassembled as messages are.
    let m = message(XS_READ, 4, b"name\0");
    for b in &m {
        s.feed(a, core::slice::from_ref(b));
    }
    assert_eq!(drain(&mut s, a), vec![(XS_READ, 4, b"5".to_vec())]);
}

#[test]
fn quotas_bound_a_domain() {
    let quota = Quota {
        nodes: 10,
        watches: 3,
        value_max: 16,
        perms: 2,
        memory: 4096,
        ..Quota::DEFAULT
    };
    let mut s = Store::new(quota);
    s.mkdir(DOM0, "/local/domain/5/data").unwrap();
    s.set_perms(DOM0, "/local/domain/5/data", &[Perm::new(5, Access::None)])
        .unwrap();
    let a = s.introduce(5, 1, 1);
    // data is the domain's: one node of ten.
    assert_eq!(s.nodes_of(5), 1);
    assert_eq!(
        reply(
            &mut s,
            a,
            XS_WRITE,
            &[b"data/v\0".as_slice(), &[b'x'; 17]].concat()
        ),
        err("ENOSPC")
    );
    for i in 0..9 {
        let r = reply(&mut s, a, XS_WRITE, format!("data/n{i}\0v").as_bytes());
        assert_eq!(r.0, XS_WRITE, "{i}");
    }
    assert_eq!(reply(&mut s, a, XS_WRITE, b"data/n9\0v"), err("ENOSPC"));
    assert_eq!(reply(&mut s, a, XS_MKDIR, b"data/a/b\0"), err("ENOSPC"));
    assert_eq!(s.nodes_of(5), 10);
    // dom0 is not limited.
    s.write(DOM0, "/local/domain/5/data/n9", &[0; 100]).unwrap();
    assert_eq!(
        s.nodes_of(5),
        11,
        "dom0 created it in the domain's directory: inherits"
    );
    assert_eq!(reply(&mut s, a, XS_RM, b"data/n0\0").0, XS_RM);
    assert_eq!(reply(&mut s, a, XS_RM, b"data/n1\0").0, XS_RM);
    assert_eq!(reply(&mut s, a, XS_WRITE, b"data/again\0v").0, XS_WRITE);
    // Permissions lists and watches.
    assert_eq!(
        reply(&mut s, a, XS_SET_PERMS, b"data/again\0n5\0r1\0r2\0"),
        err("ENOSPC")
    );
    for t in [b"a", b"b", b"c"] {
        let p = [b"data\0".as_slice(), t, b"\0"].concat();
        assert_eq!(call(&mut s, a, XS_WATCH, &p)[0].0, XS_WATCH);
    }
    assert_eq!(reply(&mut s, a, XS_WATCH, b"data\0d\0"), err("ENOSPC"));
    assert_eq!(reply(&mut s, a, XS_WATCH, b"data\0a\0"), err("EEXIST"));
    assert_eq!(reply(&mut s, a, XS_UNWATCH, b"data\0a\0").0, XS_UNWATCH);
    assert_eq!(reply(&mut s, a, XS_UNWATCH, b"data\0a\0"), err("ENOENT"));
}

#[test]
fn watches_fire_on_the_node_and_below() {
    let (mut s, a, b, d0) = with_domains();
    let r = call(&mut s, a, XS_WATCH, b"cpu\0hotplug\0");
    assert_eq!(r[0], (XS_WATCH, 77, b"OK\0".to_vec()));
    assert_eq!(
        r[1],
        (XS_WATCH_EVENT, 0, b"cpu\0hotplug\0".to_vec()),
        "fires at once"
    );
    assert_eq!(
        call(&mut s, b, XS_WATCH, b"/local/domain/5\0spy\0")[0].0,
        XS_WATCH
    );
    let r = drain(&mut s, b);
    assert!(
        r.is_empty(),
        "no initial event for what it may not read: {r:?}"
    );
    s.write(DOM0, "/local/domain/5/cpu/1/availability", b"offline")
        .unwrap();
    assert_eq!(
        drain(&mut s, a),
        vec![(XS_WATCH_EVENT, 0, b"cpu/1/availability\0hotplug\0".to_vec())]
    );
    assert!(
        drain(&mut s, b).is_empty(),
        "domain 6 may not read domain 5's nodes"
    );
    assert_eq!(
        call(
            &mut s,
            d0,
            XS_WATCH,
            b"/local/domain/5/cpu/1/availability\0t\0"
        )
        .len(),
        2
    );
    s.rm(DOM0, "/local/domain/5/cpu").unwrap();
    assert_eq!(
        drain(&mut s, a),
        vec![(XS_WATCH_EVENT, 0, b"cpu\0hotplug\0".to_vec())]
    );
    assert_eq!(
        drain(&mut s, d0),
        vec![(XS_WATCH_EVENT, 0, b"/local/domain/5/cpu\0t\0".to_vec())],
        "a watch below a removed node fires too"
    );
    assert_eq!(call(&mut s, d0, XS_WATCH, b"@releaseDomain\0r\0").len(), 2);
    s.release(6);
    assert_eq!(drain(&mut s, d0)[0].2, b"@releaseDomain\0r\0");
}

#[test]
fn a_domain_that_does_not_read_is_throttled() {
    let (mut s, a, b, _) = with_domains();
    call(&mut s, a, XS_WATCH, b"data\0t\0");
    s.write(DOM0, "/local/domain/5/big", &[b'x'; 2000]).unwrap();
    let m = message(XS_READ, 1, b"big\0");
    let mut taken = 0;
    for _ in 0..100 {
        taken += s.feed(a, &m);
    }
    assert!(s.output_len(a) <= OUTPUT_MAX);
    assert!(
        taken < 100 * m.len(),
        "requests wait once its output is full"
    );
    for i in 0..100 {
        s.write(DOM0, &format!("/local/domain/5/data/{i}"), b"x")
            .unwrap();
    }
    assert!(s.output_len(a) <= OUTPUT_MAX);
    assert!(s.lost_events(a) > 0);
    // Others are served.
    assert_eq!(
        reply(&mut s, b, XS_READ, b"name\0"),
        (XS_READ, b"6".to_vec())
    );
}

/// A ring page as a domain fills it.
struct Guest {
    page: Vec<u8>,
}

impl Guest {
    fn new() -> Self {
        Self {
            page: vec![0; 4096],
        }
    }
    fn idx(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.page[at..at + 4].try_into().unwrap())
    }
    fn set(&mut self, at: usize, v: u32) {
        self.page[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn send(&mut self, bytes: &[u8]) {
        let mut prod = self.idx(Iface::REQ_PROD);
        for &b in bytes {
            self.page[Iface::REQ + (prod % 1024) as usize] = b;
            prod = prod.wrapping_add(1);
        }
        self.set(Iface::REQ_PROD, prod);
    }
    fn receive(&mut self) -> Vec<u8> {
        let mut cons = self.idx(Iface::RSP_CONS);
        let prod = self.idx(Iface::RSP_PROD);
        let mut out = Vec::new();
        while cons != prod {
            out.push(self.page[Iface::RSP + (cons % 1024) as usize]);
            cons = cons.wrapping_add(1);
        }
        self.set(Iface::RSP_CONS, cons);
        out
    }
}

#[test]
fn ring_round_trip_and_wrap() {
    let (mut s, a, _, _) = with_domains();
    let mut g = Guest::new();
    // Enough rounds for the indexes to wrap around the 1024-byte ring several times.
    for i in 0..200u32 {
        let m = message(
            XS_WRITE,
            i,
            format!("data/k{}\0{}", i % 7, "v".repeat(40)).as_bytes(),
        );
        g.send(&m);
        let w = ring::service(&mut s, a, &g.page);
        ring::apply(&mut g.page, &w);
        assert!(w.notify);
        let r = split(&g.receive());
        assert_eq!(r, vec![(XS_WRITE, i, b"OK\0".to_vec())], "round {i}");
    }
    assert_eq!(g.idx(Iface::REQ_CONS), g.idx(Iface::REQ_PROD));
    // A reply bigger than the ring arrives in pieces as the domain reads.
    let big = vec![b'z'; 2000];
    s.write(DOM0, "/local/domain/5/data/big", &big).unwrap();
    g.send(&message(XS_READ, 1, b"data/big\0"));
    let mut got = Vec::new();
    for _ in 0..5 {
        let w = ring::service(&mut s, a, &g.page);
        ring::apply(&mut g.page, &w);
        got.extend(g.receive());
    }
    assert_eq!(split(&got), vec![(XS_READ, 1, big)]);
}

/// Linux's `xb_write` rule: after publishing bytes written at `prod_before`, notify only if
/// the store's `req_cons` (as the page shows it now) had reached `prod_before`.
fn linux_notifies(g: &Guest, prod_before: u32) -> bool {
    prod_before.wrapping_sub(g.idx(Iface::REQ_CONS)) as i32 <= 0
}

#[test]
fn a_request_written_while_the_store_serves_is_served() {
    let (mut s, a, _, _) = with_domains();
    let mut g = Guest::new();
    let m = message(XS_READ, 7, b"name\0");
    let (header, body) = m.split_at(16);
    // The header, with an event (the store had consumed everything).
    let before = g.idx(Iface::REQ_PROD);
    g.send(header);
    assert!(linux_notifies(&g, before));
    // The store copies the page and serves the header ...
    let copy = g.page.clone();
    let w = ring::service(&mut s, a, &copy);
    // ... while the domain writes the body: the page still shows the old `req_cons`, so
    // no event is sent for it.
    let before = g.idx(Iface::REQ_PROD);
    g.send(body);
    assert!(!linux_notifies(&g, before), "the model sends no event here");
    ring::apply(&mut g.page, &w);
    assert!(g.receive().is_empty(), "half a request has no answer yet");
    // The store reads `req_prod` again after its writes: that is its only way to know.
    assert!(ring::published_meanwhile(
        &w,
        ring::req_prod(&copy),
        g.idx(Iface::REQ_PROD)
    ));
    let w = ring::service(&mut s, a, &g.page);
    ring::apply(&mut g.page, &w);
    assert_eq!(split(&g.receive()), vec![(XS_READ, 7, b"5".to_vec())]);
    // Nothing written meanwhile: no second look.
    assert!(!ring::published_meanwhile(
        &w,
        ring::req_prod(&g.page),
        g.idx(Iface::REQ_PROD)
    ));
    // A call that took nothing (here a broken ring) never looks again, however the domain
    // moves its producer: a domain cannot keep dom0 from blocking that way.
    let copy = g.page.clone();
    g.set(Iface::REQ_PROD, g.idx(Iface::REQ_CONS).wrapping_add(5000));
    let w = ring::service(&mut s, a, &g.page);
    assert!(w.broke.is_some());
    g.set(Iface::REQ_PROD, g.idx(Iface::REQ_CONS).wrapping_add(1));
    assert!(!ring::published_meanwhile(
        &w,
        ring::req_prod(&copy),
        g.idx(Iface::REQ_PROD)
    ));
}

#[test]
fn hostile_ring_indexes_break_only_that_ring() {
    let (mut s, a, b, _) = with_domains();
    let mut g = Guest::new();
    g.set(Iface::REQ_PROD, 5000);
    let w = ring::service(&mut s, a, &g.page);
    assert!(w.broke.is_some());
    ring::apply(&mut g.page, &w);
    assert_eq!(g.idx(Iface::ERROR), ring::XENSTORE_ERROR_RINGIDX);
    // Once broken, nothing more is read from it.
    let w = ring::service(&mut s, a, &g.page);
    assert_eq!(w, ring::Writes::default());
    // The other domain: consumer index ahead of the producer.
    let mut h = Guest::new();
    h.send(&message(XS_READ, 1, b"name\0"));
    let w = ring::service(&mut s, b, &h.page);
    ring::apply(&mut h.page, &w);
    assert_eq!(split(&h.receive()), vec![(XS_READ, 1, b"6".to_vec())]);
    // Garbage bytes: answered with errors, the ring keeps working.
    h.send(&[0xFF; 40]);
    let w = ring::service(&mut s, b, &h.page);
    ring::apply(&mut h.page, &w);
    let r = split(&h.receive());
    assert!(r.iter().all(|m| m.0 == XS_ERROR), "{r:?}");
    h.set(Iface::RSP_CONS, h.idx(Iface::RSP_PROD).wrapping_add(7));
    let w = ring::service(&mut s, b, &h.page);
    assert!(w.broke.is_some());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Raw(u8, Vec<u8>),
        Msg(u8, u32, Vec<u8>),
        Dom0Write(u8, u8),
        Dom0Rm(u8),
    }

    fn paths() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"data/a".to_vec()),
            Just(b"data/a/b".to_vec()),
            Just(b"name".to_vec()),
            Just(b"/local/domain/6/data/s".to_vec()),
            Just(b"/local/domain/6".to_vec()),
            Just(b"/".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..2u8, proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(c, b)| Op::Raw(c, b)),
            (
                0..2u8,
                0..24u32,
                paths(),
                proptest::collection::vec(any::<u8>(), 0..8)
            )
                .prop_map(|(c, t, mut p, tail)| {
                    p.push(0);
                    p.extend(tail);
                    Op::Msg(c, t, p)
                }),
            (0..4u8, 0..4u8).prop_map(|(d, k)| Op::Dom0Write(d, k)),
            (0..4u8).prop_map(Op::Dom0Rm),
        ]
    }

    proptest! {
        /// Whatever two domains send: no panic, quotas and output bounds hold, and domain
        /// 5 never reads domain 6's secret.
        #[test]
        fn hostile_streams(ops in proptest::collection::vec(op(), 1..60)) {
            let quota = Quota { nodes: 20, watches: 4, value_max: 32, perms: 3, memory: 8192, total: 12288, ..Quota::DEFAULT };
            let mut s = Store::new(quota);
            for d in [5u16, 6] {
                s.mkdir(DOM0, &format!("/local/domain/{d}/data")).unwrap();
                s.set_perms(DOM0, &format!("/local/domain/{d}"), &[Perm::new(DOM0, Access::None), Perm::new(d, Access::Read)]).unwrap();
                s.set_perms(DOM0, &format!("/local/domain/{d}/data"), &[Perm::new(d, Access::None)]).unwrap();
            }
            s.write(DOM0, "/local/domain/6/data/s", b"SECRET").unwrap();
            let conns = [s.introduce(5, 1, 1), s.introduce(6, 2, 1)];
            let mut six_spoke = false;
            for op in ops {
                match op {
                    Op::Raw(c, b) => { six_spoke |= c == 1; s.feed(conns[c as usize], &b); }
                    Op::Msg(c, t, p) => { six_spoke |= c == 1; s.feed(conns[c as usize], &message(t, 1, &p)); }
                    Op::Dom0Write(d, k) => { let _ = s.write(DOM0, &format!("/local/domain/{}/data/k{k}", 5 + d % 2), b"v"); }
                    Op::Dom0Rm(k) => { let _ = s.rm(DOM0, &format!("/local/domain/5/data/k{k}")); }
                }
                for d in [5u16, 6] {
                    prop_assert!(s.nodes_of(d) <= quota.nodes);
                    prop_assert!(s.usage.get(&d).map_or(0, |u| u.memory) <= quota.memory);
                }
                for c in conns {
                    prop_assert!(s.output_len(c) <= OUTPUT_MAX);
                }
                // The total holds, but for what one transaction operation may add past it.
                prop_assert!(s.memory_total() <= quota.total + 4096, "{}", s.memory_total());
                let out = s.take_output(conns[0], usize::MAX);
                prop_assert!(!out.windows(6).any(|w| w == b"SECRET"));
            }
            if !six_spoke {
                prop_assert_eq!(s.read(DOM0, "/local/domain/6/data/s"), Ok(b"SECRET".to_vec()));
            }
        }
    }
}

/// From the review of the slice: a deep path is refused before any memory is spent on it
/// (no write permission at `/`; past the node quota under the domain's own `data`), a domU
/// cannot watch domain creation and destruction, and a token too long for its events to fit
/// one message is refused.
#[test]
fn hostile_paths_and_watches_are_refused_cheaply() {
    let (mut s, a, _, d0) = with_domains();
    let deep = |root: &str| {
        let mut p = String::from(root);
        // As deep as an unprivileged domain may go (2048 bytes past its home).
        let home = if root.is_empty() {
            0
        } else {
            "/local/domain/5/".len()
        };
        while p.len() + 2 <= home + XENSTORE_REL_PATH_MAX {
            p.push_str("/a");
        }
        p.push('\0');
        p
    };
    assert_eq!(
        reply(&mut s, a, XS_WRITE, deep("").as_bytes()),
        err("EACCES")
    );
    let mine = deep("/local/domain/5/data");
    assert_eq!(reply(&mut s, a, XS_WRITE, mine.as_bytes()), err("ENOSPC"));
    assert_eq!(
        reply(&mut s, a, XS_WATCH, b"@introduceDomain\0t\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, d0, XS_WATCH, b"@releaseDomain\0t\0").0,
        XS_WATCH
    );
    let mut long = b"data\0".to_vec();
    long.extend(core::iter::repeat_n(
        b'x',
        XENSTORE_PAYLOAD_MAX - XENSTORE_ABS_PATH_MAX,
    ));
    long.push(0);
    assert_eq!(reply(&mut s, a, XS_WATCH, &long), err("E2BIG"));
}

/// A request in transaction `tx`: `(type, payload)` of the reply.
fn tx_reply(s: &mut Store, id: ConnId, tx: u32, msg_type: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let mut m = message(msg_type, 78, payload);
    m[8..12].copy_from_slice(&tx.to_le_bytes());
    assert_eq!(s.feed(id, &m), m.len());
    let r = drain(s, id);
    let r = r.iter().find(|m| m.0 != XS_WATCH_EVENT).unwrap();
    (r.0, r.2.clone())
}

fn start(s: &mut Store, id: ConnId) -> u32 {
    let (t, p) = reply(s, id, XS_TRANSACTION_START, b"\0");
    assert_eq!(t, XS_TRANSACTION_START, "{p:?}");
    core::str::from_utf8(&p[..p.len() - 1])
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn transactions_commit_atomically_and_conflicts_get_eagain() {
    let (mut s, a, _, d0) = with_domains();
    s.write(DOM0, "/local/domain/5/data/x", b"1").unwrap();
    // Watches fire at commit only.
    call(&mut s, d0, XS_WATCH, b"/local/domain/5/data\0w\0");
    let t = start(&mut s, a);
    assert_eq!(
        tx_reply(&mut s, a, t, XS_READ, b"data/x\0"),
        (XS_READ, b"1".to_vec())
    );
    assert_eq!(
        tx_reply(&mut s, a, t, XS_WRITE, b"data/y/z\0new").0,
        XS_WRITE
    );
    assert_eq!(
        tx_reply(&mut s, a, t, XS_READ, b"data/y/z\0"),
        (XS_READ, b"new".to_vec())
    );
    // Not visible outside, nothing fired.
    assert_eq!(reply(&mut s, a, XS_READ, b"data/y/z\0"), err("ENOENT"));
    assert!(drain(&mut s, d0).is_empty());
    assert_eq!(
        tx_reply(&mut s, a, t, XS_TRANSACTION_END, b"T\0"),
        (XS_TRANSACTION_END, b"OK\0".to_vec())
    );
    assert_eq!(
        s.read(DOM0, "/local/domain/5/data/y/z"),
        Ok(b"new".to_vec())
    );
    let events = drain(&mut s, d0);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].2, b"/local/domain/5/data/y/z\0w\0");
    // A conflict: the transaction read x, dom0 changed it meanwhile.
    let t = start(&mut s, a);
    tx_reply(&mut s, a, t, XS_READ, b"data/x\0");
    tx_reply(&mut s, a, t, XS_WRITE, b"data/q\0v");
    s.write(DOM0, "/local/domain/5/data/x", b"2").unwrap();
    assert_eq!(
        tx_reply(&mut s, a, t, XS_TRANSACTION_END, b"T\0"),
        err("EAGAIN")
    );
    assert_eq!(s.read(DOM0, "/local/domain/5/data/q"), Err(Errno::ENOENT));
    // Two transactions of one connection: the second to commit fails.
    let t1 = start(&mut s, a);
    let t2 = start(&mut s, a);
    assert_ne!(t1, t2);
    tx_reply(&mut s, a, t1, XS_READ, b"data/x\0");
    tx_reply(&mut s, a, t2, XS_READ, b"data/x\0");
    tx_reply(&mut s, a, t1, XS_WRITE, b"data/x\0t1");
    tx_reply(&mut s, a, t2, XS_WRITE, b"data/x\0t2");
    assert_eq!(
        tx_reply(&mut s, a, t1, XS_TRANSACTION_END, b"T\0").0,
        XS_TRANSACTION_END
    );
    assert_eq!(
        tx_reply(&mut s, a, t2, XS_TRANSACTION_END, b"T\0"),
        err("EAGAIN")
    );
    assert_eq!(s.read(DOM0, "/local/domain/5/data/x"), Ok(b"t1".to_vec()));
    // A removal meanwhile conflicts too; abort discards.
    let t = start(&mut s, a);
    tx_reply(&mut s, a, t, XS_WRITE, b"data/y/z\0again");
    s.rm(DOM0, "/local/domain/5/data/y").unwrap();
    assert_eq!(
        tx_reply(&mut s, a, t, XS_TRANSACTION_END, b"T\0"),
        err("EAGAIN")
    );
    let t = start(&mut s, a);
    tx_reply(&mut s, a, t, XS_RM, b"data/x\0");
    assert_eq!(
        tx_reply(&mut s, a, t, XS_TRANSACTION_END, b"F\0").0,
        XS_TRANSACTION_END
    );
    assert_eq!(s.read(DOM0, "/local/domain/5/data/x"), Ok(b"t1".to_vec()));
    // Unknown or ended ids, a bad argument, nesting.
    assert_eq!(tx_reply(&mut s, a, t, XS_READ, b"data/x\0"), err("ENOENT"));
    assert_eq!(
        tx_reply(&mut s, a, 0, XS_TRANSACTION_END, b"T\0"),
        err("ENOENT")
    );
    let t = start(&mut s, a);
    assert_eq!(
        tx_reply(&mut s, a, t, XS_TRANSACTION_END, b"X\0"),
        err("EINVAL")
    );
    assert_eq!(
        tx_reply(&mut s, a, t, XS_TRANSACTION_START, b"\0"),
        err("EBUSY")
    );
    // Permissions hold inside: another domain's node is refused.
    assert_eq!(
        tx_reply(&mut s, a, t, XS_READ, b"/local/domain/6/data\0"),
        err("EACCES")
    );
    assert_eq!(
        tx_reply(&mut s, a, t, XS_WRITE, b"/local/domain/6/data/x\0v"),
        err("EACCES")
    );
    // XS_RESET_WATCHES drops transactions and watches.
    assert_eq!(s.transactions_of(a), 1);
    call(&mut s, a, XS_WATCH, b"data\0w\0");
    assert_eq!(
        reply(&mut s, a, XS_RESET_WATCHES, b"\0").0,
        XS_RESET_WATCHES
    );
    assert_eq!(s.transactions_of(a), 0);
    s.write(DOM0, "/local/domain/5/data/x", b"3").unwrap();
    assert!(drain(&mut s, a).is_empty());
}

#[test]
fn transaction_quotas() {
    let (mut s, a, b, d0) = with_domains();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(start(&mut s, a));
    }
    assert_eq!(reply(&mut s, a, XS_TRANSACTION_START, b"\0"), err("ENOSPC"));
    // Another domain and dom0 are unaffected.
    let t = start(&mut s, b);
    for _ in 0..20 {
        start(&mut s, d0);
    }
    // A transaction looks at 1024 nodes at most.
    let mut refused = None;
    for i in 0..1100 {
        let r = tx_reply(&mut s, b, t, XS_READ, format!("data/n{i}\0").as_bytes());
        if r == err("ENOSPC") {
            refused = Some(i);
            break;
        }
    }
    // Each read looks at the node (missing ones too): 1024 of them.
    assert_eq!(refused, Some(1024));
    for t in ids {
        assert_eq!(
            tx_reply(&mut s, a, t, XS_TRANSACTION_END, b"F\0").0,
            XS_TRANSACTION_END
        );
    }
    let before = s.memory_total();
    let t = start(&mut s, a);
    tx_reply(&mut s, a, t, XS_WRITE, b"data/v\0x");
    assert!(s.memory_total() > before);
    s.disconnect(a);
    assert!(
        s.memory_total() <= before,
        "a closed connection's transactions are uncounted"
    );
}

/// From the review of the slice: a missing node under another domain's tree answers
/// `EACCES` like Xen (no leak of which nodes exist); under its own, `ENOENT`.
#[test]
fn missing_nodes_do_not_leak() {
    let (mut s, a, _, _) = with_domains();
    s.write(DOM0, "/local/domain/6/data/exists", b"x").unwrap();
    assert_eq!(
        reply(&mut s, a, XS_READ, b"/local/domain/6/data/exists\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_READ, b"/local/domain/6/data/missing\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_READ, b"/local/domain/77/name\0"),
        err("EACCES")
    );
    assert_eq!(
        reply(&mut s, a, XS_RM, b"/local/domain/6/data/missing\0"),
        err("EACCES")
    );
    assert_eq!(reply(&mut s, a, XS_READ, b"data/missing\0"), err("ENOENT"));
    assert_eq!(
        reply(&mut s, a, XS_READ, b"nothing/at/all\0"),
        err("ENOENT")
    );
}

#[test]
fn directory_part_as_xen() {
    let (mut s, a, _, _) = with_domains();
    for i in 0..300 {
        s.write(
            DOM0,
            &format!("/local/domain/5/data/child-number-{i:04}"),
            b"",
        )
        .unwrap();
    }
    let full = s.directory(DOM0, "/local/domain/5/data").unwrap();
    let mut got = Vec::new();
    let mut off = 0;
    let mut generation = None;
    loop {
        let (t, p) = reply(
            &mut s,
            a,
            XS_DIRECTORY_PART,
            format!("data\0{off}\0").as_bytes(),
        );
        assert_eq!(t, XS_DIRECTORY_PART);
        assert!(p.len() <= XENSTORE_PAYLOAD_MAX);
        let mut parts = p.split(|&b| b == 0);
        let g = parts.next().unwrap().to_vec();
        assert_eq!(*generation.get_or_insert(g.clone()), g);
        let rest = &p[g.len() + 1..];
        let done = rest.ends_with(b"\0\0") || rest == b"\0";
        for name in rest.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            got.push(String::from_utf8(name.to_vec()).unwrap());
            off += name.len() + 1;
        }
        if done {
            break;
        }
    }
    assert_eq!(got, full);
    assert_eq!(
        reply(&mut s, a, XS_DIRECTORY_PART, b"data\0"),
        err("EINVAL")
    );
}

#[test]
fn total_budget_bounds_all_domains() {
    let quota = Quota {
        total: 64 * 1024,
        ..Quota::DEFAULT
    };
    let mut s = Store::new(quota);
    let mut conns = Vec::new();
    for d in 1..=8u16 {
        let data = format!("/local/domain/{d}/data");
        s.mkdir(DOM0, &data).unwrap();
        s.set_perms(DOM0, &data, &[Perm::new(d, Access::None)])
            .unwrap();
        conns.push(s.introduce(d, u64::from(d), 1));
    }
    let mut first_nomem = None;
    'outer: for (i, c) in conns.iter().enumerate() {
        for n in 0..1000 {
            let r = reply(
                &mut s,
                *c,
                XS_WRITE,
                format!("data/n{n}\0{}", "v".repeat(100)).as_bytes(),
            );
            if r == err("ENOMEM") {
                first_nomem = Some(i);
                break 'outer;
            }
            if r.0 == XS_ERROR {
                break;
            }
        }
    }
    assert!(first_nomem.is_some());
    assert!(s.memory_total() <= quota.total);
    // dom0 is not limited by it.
    s.write(DOM0, "/tool", &[b'x'; 1000]).unwrap();
}

/// Outstanding replies: a domain that does not take them has at most 20 handled; and a
/// feed of a bounded number of messages leaves the rest.
#[test]
fn outstanding_requests_and_bounded_feeds() {
    let (mut s, a, _, _) = with_domains();
    let one = message(XS_READ, 1, b"domid\0");
    let many: Vec<u8> = (0..50).flat_map(|_| one.clone()).collect();
    let taken = s.feed(a, &many);
    assert_eq!(taken, 20 * one.len());
    let (taken, handled) = s.feed_some(a, &many, 5);
    assert_eq!((taken, handled), (0, 0), "still 20 outstanding");
    s.take_output(a, usize::MAX);
    let (taken, handled) = s.feed_some(a, &many, 5);
    assert_eq!((taken, handled), (5 * one.len(), 5));
}

/// A domain that keeps its ring full of requests gets [`ring::REQUESTS_PER_SERVICE`]
/// served per turn, and another domain served in the same turns gets its one request
/// answered at its first turn.
#[test]
fn a_flooding_ring_is_served_in_turns() {
    let (mut s, a, b, _) = with_domains();
    let (mut ga, mut gb) = (Guest::new(), Guest::new());
    let one = message(XS_READ, 9, b"domid\0");
    let mut served_a = 0;
    for turn in 0..20 {
        // Domain 5 refills its ring to the brim at every turn.
        let room = 1024
            - ga.idx(Iface::REQ_PROD)
                .wrapping_sub(ga.idx(Iface::REQ_CONS)) as usize;
        for _ in 0..room / one.len() {
            ga.send(&one);
        }
        if turn == 5 {
            gb.send(&message(XS_READ, 1, b"name\0"));
        }
        let wa = ring::service(&mut s, a, &ga.page);
        ring::apply(&mut ga.page, &wa);
        assert!(wa.more, "turn {turn}: the flood is left in its ring");
        let got = split(&ga.receive());
        assert!(
            got.len() <= ring::REQUESTS_PER_SERVICE,
            "turn {turn}: {}",
            got.len()
        );
        served_a += got.len();
        let wb = ring::service(&mut s, b, &gb.page);
        ring::apply(&mut gb.page, &wb);
        let got = split(&gb.receive());
        if turn == 5 {
            assert_eq!(got, vec![(XS_READ, 1, b"6".to_vec())]);
            assert!(!wb.more);
        } else {
            assert!(got.is_empty());
        }
    }
    assert_eq!(served_a, 20 * ring::REQUESTS_PER_SERVICE);
}

/// Xen's path-length quota: past a domain's home, an unprivileged domain's path is at most
/// 2048 bytes (dom0's up to 3072).
#[test]
fn unprivileged_paths_are_shorter() {
    let (mut s, a, _, d0) = with_domains();
    let tail = |n: usize| "x".repeat(n);
    let ok = format!("/local/domain/5/data/{}\0v", tail(2048 - 5));
    assert_eq!(reply(&mut s, a, XS_WRITE, ok.as_bytes()).0, XS_WRITE);
    let long = format!("/local/domain/5/data/{}\0v", tail(2048 - 4));
    assert_eq!(reply(&mut s, a, XS_WRITE, long.as_bytes()), err("EINVAL"));
    let dom0 = format!("/tool/{}\0v", tail(2900));
    assert_eq!(reply(&mut s, d0, XS_WRITE, dom0.as_bytes()).0, XS_WRITE);
}

/// `XS_CONTROL watched <domid> <path>`: dom0 learns whether a domain watches a node (a
/// balloon driver's `memory/target`), through a watch on it or on an ancestor, relative or
/// absolute; not another domain's watch, not a sibling's, not after the unwatch; only dom0
/// may ask, and Xen's own commands stay `ENOSYS`.
#[test]
fn dom0_asks_whether_a_domain_watches_a_node() {
    let (mut s, a, b, d0) = with_domains();
    let ask = |s: &mut Store, path: &str| {
        let payload = format!("watched\u{0}5\u{0}{path}\u{0}");
        reply(s, d0, XS_CONTROL, payload.as_bytes())
    };
    let yes = (XS_CONTROL, b"1\0".to_vec());
    let no = (XS_CONTROL, b"0\0".to_vec());
    let target = "/local/domain/5/memory/target";
    assert_eq!(ask(&mut s, target), no, "no watch yet");
    // Domain 6 watching domain 5's node (it may watch any path) says nothing of domain 5.
    assert_eq!(
        reply(&mut s, b, XS_WATCH, format!("{target}\0t\0").as_bytes()),
        (XS_WATCH, b"OK\0".to_vec())
    );
    assert_eq!(ask(&mut s, target), no, "another domain's watch");
    // Linux's balloon: a relative watch on `memory/target`.
    assert_eq!(
        reply(&mut s, a, XS_WATCH, b"memory/target\0bal\0"),
        (XS_WATCH, b"OK\0".to_vec())
    );
    assert_eq!(ask(&mut s, target), yes);
    assert_eq!(
        ask(&mut s, "/local/domain/5/memory/targets"),
        no,
        "a sibling"
    );
    assert_eq!(
        ask(&mut s, "/local/domain/5/memory"),
        no,
        "an ancestor of the watch"
    );
    assert_eq!(
        reply(&mut s, a, XS_UNWATCH, b"memory/target\0bal\0"),
        (XS_UNWATCH, b"OK\0".to_vec())
    );
    assert_eq!(ask(&mut s, target), no, "after the unwatch");
    // A watch on an ancestor fires for the node too.
    assert_eq!(
        reply(&mut s, a, XS_WATCH, b"/local/domain/5\0all\0"),
        (XS_WATCH, b"OK\0".to_vec())
    );
    assert_eq!(ask(&mut s, target), yes);
    assert_eq!(
        reply(&mut s, a, XS_UNWATCH, b"/local/domain/5\0all\0"),
        (XS_UNWATCH, b"OK\0".to_vec())
    );
    assert_eq!(ask(&mut s, target), no);
    // The root is every node's ancestor.
    assert_eq!(
        reply(&mut s, a, XS_WATCH, b"/\0root\0"),
        (XS_WATCH, b"OK\0".to_vec())
    );
    assert_eq!(ask(&mut s, target), yes);
    // Only dom0 asks; malformed questions and Xen's other commands are refused.
    assert_eq!(
        reply(
            &mut s,
            a,
            XS_CONTROL,
            format!("watched\u{0}5\u{0}{target}\u{0}").as_bytes()
        ),
        err("EACCES")
    );
    assert_eq!(reply(&mut s, d0, XS_CONTROL, b"log\0on\0"), err("ENOSYS"));
    assert_eq!(
        reply(&mut s, d0, XS_CONTROL, b"watched\x005\0"),
        err("EINVAL")
    );
    assert_eq!(
        reply(&mut s, d0, XS_CONTROL, b"watched\x005\0memory/target\0"),
        err("EINVAL"),
        "a relative path"
    );
    assert_eq!(
        reply(&mut s, d0, XS_CONTROL, b"watched\0x\0/a\0"),
        err("EINVAL")
    );
}
