//! `xenstore`: domUs against the store in dom0's kernel, each made by `xl create`. With
//! `role=messages` (scenarios `xenstore_messages`, `xenstore_flood`) every message type,
//! transactions and quotas (see [`messages`]); with `role=flood` (`xenstore_flood`) a ring
//! kept full of requests (see [`flood`]). Without a role, a hostile domU (scenario
//! `xenstore_hostile_domu`). Through the runtime's xenbus client it
//! checks what it may do (read its home, write its `data`), what it may not (write its
//! `name` or `cpu` nodes, read another domain's nodes, introduce domains, exceed its
//! watch and value quotas), then sends malformed messages (a header announcing 5000 bytes,
//! an unknown type, a path without NUL, a path too long) and expects Xen's error strings,
//! with the store still answering properly after each. Last it sets its request producer
//! index a ring and more ahead: the store must stop serving it and say so in the ring's
//! `error` field (`XENSTORE_ERROR_RINGIDX`), which the scenario follows by checking that
//! another domain is still served.

use core::fmt::Write;
use guest_abi::Errno;
use guest_abi::xenstore::{
    XENSTORE_RING_SIZE, XS_DIRECTORY_PART, XS_ERROR, XS_GET_DOMAIN_PATH, XS_GET_PERMS,
    XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_READ, XS_RELEASE, XS_RESET_WATCHES, XS_SET_PERMS,
    XS_WATCH, XsdSockmsg,
};

use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::{Checks, Text, error, note};
use xenia_guest_rt::cmdline;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns, spin_until_or};
use xenia_guest_rt::xenbus::Xenbus;

/// Watches the store lets an unprivileged domain hold (Xen's default).
const WATCH_QUOTA: usize = 128;
/// Longest value an unprivileged domain may write (Xen's default).
const VALUE_MAX: usize = 2048;
/// Domains looked at for nodes this one must not read.
const OTHER_DOMAINS: u16 = 16;

/// A raw message: header and payload.
fn raw(msg_type: u32, req_id: u32, len: u32, payload: &[u8]) -> ([u8; 16], &[u8]) {
    (
        XsdSockmsg {
            msg_type,
            req_id,
            tx_id: 0,
            len,
        }
        .to_bytes(),
        payload,
    )
}

/// Sends a raw message and expects an `XS_ERROR` reply naming `want`.
fn expect_error(c: &mut Checks, bus: &mut Xenbus, what: &str, msg: ([u8; 16], &[u8]), want: &str) {
    let mut bytes = [0u8; 64 + 3072];
    let n = 16 + msg.1.len();
    bytes[..16].copy_from_slice(&msg.0);
    bytes[16..n].copy_from_slice(msg.1);
    let mut out = [0u8; 32];
    let got = bus.exchange_raw(&bytes[..n], &mut out);
    let ok = match got {
        Ok((t, len)) => t == XS_ERROR && out[..len.min(32)].starts_with(want.as_bytes()),
        Err(_) => false,
    };
    c.check(
        format_args!("{what}: XS_ERROR {want}"),
        ok,
        format_args!("got {got:?}, payload {:?}", &out[..]),
    );
    still_served(c, bus, what);
}

/// The store answers a proper request after `what`.
fn still_served(c: &mut Checks, bus: &mut Xenbus, what: &str) {
    let mut v = [0u8; 8];
    let r = bus.read("domid", &mut v);
    c.check(
        format_args!("the store still answers after {what}"),
        r.is_ok(),
        format_args!("read domid: {r:?}"),
    );
}

pub fn run() -> ! {
    match cmdline::value(start_info().cmdline_bytes(), "role") {
        None => hostile(),
        Some(b"messages") => messages(),
        Some(b"flood") => flood(),
        Some(other) => error(format_args!(
            "xenstore: role=messages|flood expected, not {:?}",
            core::str::from_utf8(other).unwrap_or("?")
        )),
    }
}

/// The domain id given as `peer=<id>`, if any.
fn peer() -> Option<u16> {
    cmdline::value(start_info().cmdline_bytes(), "peer")
        .and_then(|v| core::str::from_utf8(v).ok()?.parse().ok())
}

fn connect(c: &mut Checks) -> Xenbus {
    match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => error(format_args!(
            "Xenbus::connect: {e:?} ({} checks)",
            c.failures()
        )),
    }
}

/// `role=messages`: every message type a domU may send, from this domain's ring, with what
/// Xen answers: reads, writes, directories (whole and in parts), permissions, watches and
/// their events, transactions (commit, abort, conflict, quota), domain paths, the
/// privileged messages refused, `XS_RESET_WATCHES`, an unknown type; then, with
/// `peer=<id>`, another domain's nodes refused for reading and writing; last, the node
/// quota filled until `ENOSPC` (the scenario then checks another domain is unaffected).
fn messages() -> ! {
    let mut c = Checks::new();
    let mut bus = connect(&mut c);
    let mut v = [0u8; 256];
    let me = c.ok("XS_READ domid", bus.read("domid", &mut v));
    let domid: u16 = me
        .and_then(|n| core::str::from_utf8(&v[..n.min(16)]).ok()?.parse().ok())
        .unwrap_or(0);
    // XS_GET_DOMAIN_PATH.
    let n = bus.request(XS_GET_DOMAIN_PATH, &[b"0\0"], &mut v);
    c.eq(
        "XS_GET_DOMAIN_PATH 0",
        n.map(|n| &v[..n.min(256)] == b"/local/domain/0\0"),
        Ok(true),
    );
    // XS_WRITE, XS_MKDIR, XS_DIRECTORY, XS_RM.
    c.ok("XS_WRITE data/m/a", bus.write("data/m/a", b"1"));
    c.ok("XS_MKDIR data/m/b", bus.mkdir("data/m/b"));
    c.ok("XS_MKDIR of an existing node", bus.mkdir("data/m/b"));
    let n = bus.directory("data/m", &mut v);
    c.eq(
        "XS_DIRECTORY data/m",
        n.map(|n| &v[..n.min(256)] == b"a\0b\0"),
        Ok(true),
    );
    let n = bus.request(XS_DIRECTORY_PART, &[b"data/m\0", b"0\0"], &mut v);
    // The generation, a NUL, the names, and a NUL more at the end of the list.
    let part_ok = n.is_ok_and(|n| {
        let body = &v[..n.min(256)];
        let gen_end = body.iter().position(|&b| b == 0).unwrap_or(0);
        gen_end > 0 && &body[gen_end + 1..] == b"a\0b\0\0"
    });
    c.check(
        "XS_DIRECTORY_PART data/m 0",
        part_ok,
        format_args!("{n:?} {:?}", &v[..24]),
    );
    c.ok("XS_RM data/m/b", bus.rm("data/m/b"));
    c.ok("XS_RM of a missing node", bus.rm("data/m/b"));
    c.fails(
        "XS_READ data/m/b after XS_RM",
        bus.read("data/m/b", &mut v),
        Errno::ENOENT,
    );
    // XS_GET_PERMS, XS_SET_PERMS.
    let n = bus.request(XS_GET_PERMS, &[b"data/m/a\0"], &mut v);
    let mut want = Text::<16>::new();
    let _ = write!(want, "n{domid}");
    c.eq(
        "XS_GET_PERMS data/m/a: its own",
        n.map(|n| v[..n.min(256)].starts_with(want.as_str().as_bytes())),
        Ok(true),
    );
    let mut perms = Text::<32>::new();
    let _ = write!(perms, "n{domid}\0r0\0");
    c.ok(
        "XS_SET_PERMS data/m/a",
        bus.request(
            XS_SET_PERMS,
            &[b"data/m/a\0", perms.as_str().as_bytes()],
            &mut [],
        ),
    );
    c.fails(
        "XS_SET_PERMS giving it away: EPERM",
        bus.request(XS_SET_PERMS, &[b"data/m/a\0", b"n0\0"], &mut []),
        Errno::EPERM,
    );
    c.fails(
        "XS_SET_PERMS on dom0's name",
        bus.request(
            XS_SET_PERMS,
            &[b"name\0", perms.as_str().as_bytes()],
            &mut [],
        ),
        Errno::EACCES,
    );
    // XS_WATCH, its events, XS_UNWATCH.
    c.ok("XS_WATCH data/m", bus.watch("data/m", "tok"));
    let first = spin_until_or(now_ns() + 2_000 * NS_PER_MS, || bus.has_events());
    let e = bus.next_event();
    c.check(
        "the watch fires once at once (relative path, token)",
        first && e.is_some_and(|e| e.path() == "data/m" && e.token() == "tok"),
        format_args!("{}", if first { "wrong event" } else { "none" }),
    );
    c.ok("XS_WRITE data/m/c", bus.write("data/m/c", b"x"));
    let fired = spin_until_or(now_ns() + 2_000 * NS_PER_MS, || bus.has_events());
    let e = bus.next_event();
    c.check(
        "a write below fires it",
        fired && e.is_some_and(|e| e.path() == "data/m/c"),
        format_args!("fired {fired}"),
    );
    // Transactions: changes seen inside only, events at commit only.
    let t = c
        .ok("XS_TRANSACTION_START", bus.transaction_start())
        .unwrap_or(0);
    c.ok(
        "XS_WRITE in the transaction",
        bus.write_in(t, "data/m/t", b"in"),
    );
    let n = bus.read_in(t, "data/m/t", &mut v);
    c.eq(
        "XS_READ in the transaction sees it",
        n.map(|n| &v[..n.min(256)] == b"in"),
        Ok(true),
    );
    c.fails(
        "outside, it is not there yet",
        bus.read("data/m/t", &mut v),
        Errno::ENOENT,
    );
    c.check(
        "no event before the commit",
        !bus.has_events(),
        format_args!("an event came"),
    );
    c.ok("XS_TRANSACTION_END T", bus.transaction_end(t, true));
    let n = bus.read("data/m/t", &mut v);
    c.eq(
        "after the commit it is",
        n.map(|n| &v[..n.min(256)] == b"in"),
        Ok(true),
    );
    let fired = spin_until_or(now_ns() + 2_000 * NS_PER_MS, || bus.has_events());
    let e = bus.next_event();
    c.check(
        "the commit fires the watch",
        fired && e.is_some_and(|e| e.path() == "data/m/t"),
        format_args!("fired {fired}"),
    );
    let t = bus.transaction_start().unwrap_or(0);
    let _ = bus.write_in(t, "data/m/gone", b"x");
    c.ok("XS_TRANSACTION_END F", bus.transaction_end(t, false));
    c.fails(
        "an aborted write is not there",
        bus.read("data/m/gone", &mut v),
        Errno::ENOENT,
    );
    // Two transactions that conflict: the second to commit gets EAGAIN.
    let t1 = bus.transaction_start().unwrap_or(0);
    let t2 = bus.transaction_start().unwrap_or(0);
    let _ = bus.read_in(t1, "data/m/a", &mut v);
    let _ = bus.read_in(t2, "data/m/a", &mut v);
    let _ = bus.write_in(t1, "data/m/a", b"t1");
    let _ = bus.write_in(t2, "data/m/a", b"t2");
    c.ok(
        "the first of two conflicting commits",
        bus.transaction_end(t1, true),
    );
    c.fails(
        "the second: EAGAIN",
        bus.transaction_end(t2, true),
        Errno::EAGAIN,
    );
    let n = bus.read("data/m/a", &mut v);
    c.eq(
        "the first's value stands",
        n.map(|n| &v[..n.min(256)] == b"t1"),
        Ok(true),
    );
    // A write outside a transaction conflicts too.
    let t = bus.transaction_start().unwrap_or(0);
    let _ = bus.read_in(t, "data/m/a", &mut v);
    let _ = bus.write("data/m/a", b"outside");
    let _ = bus.write_in(t, "data/m/other", b"x");
    c.fails(
        "a commit after an outside write: EAGAIN",
        bus.transaction_end(t, true),
        Errno::EAGAIN,
    );
    c.fails(
        "an ended transaction is unknown",
        bus.read_in(t, "data/m/a", &mut v),
        Errno::ENOENT,
    );
    // Ten open at most (Xen's default).
    let mut open = [0u32; 10];
    let mut opened = 0;
    for slot in &mut open {
        if let Ok(t) = bus.transaction_start() {
            *slot = t;
            opened += 1;
        }
    }
    c.eq("ten transactions open", opened, 10);
    c.fails(
        "an eleventh: ENOSPC",
        bus.transaction_start(),
        Errno::ENOSPC,
    );
    for t in open {
        let _ = bus.transaction_end(t, false);
    }
    // XS_RESET_WATCHES: no more events.
    c.ok(
        "XS_RESET_WATCHES",
        bus.request(XS_RESET_WATCHES, &[b"\0"], &mut []),
    );
    // Events that came before it (the writes above) are kept by the client: drop them.
    while bus.next_event().is_some() {}
    let _ = bus.write("data/m/after-reset", b"x");
    let late = spin_until_or(now_ns() + 500 * NS_PER_MS, || bus.has_events());
    c.check(
        "no event after XS_RESET_WATCHES",
        !late,
        format_args!("an event came"),
    );
    c.fails(
        "XS_UNWATCH of a reset watch",
        bus.unwatch("data/m", "tok"),
        Errno::ENOENT,
    );
    // Privileged messages and unknown types.
    c.fails(
        "XS_INTRODUCE",
        bus.request(XS_INTRODUCE, &[b"9\0", b"1\0", b"2\0"], &mut []),
        Errno::EACCES,
    );
    c.fails(
        "XS_RELEASE",
        bus.request(XS_RELEASE, &[b"0\0"], &mut []),
        Errno::EACCES,
    );
    c.fails(
        "XS_IS_DOMAIN_INTRODUCED",
        bus.request(XS_IS_DOMAIN_INTRODUCED, &[b"0\0"], &mut []),
        Errno::EACCES,
    );
    c.fails(
        "type 99 (Xen: ENOSYS)",
        bus.request(99, &[b"x\0"], &mut []),
        Errno::ENOSYS,
    );
    // Another domain's nodes: refused, existing or not.
    if let Some(p) = peer() {
        let mut path = Text::<48>::new();
        let _ = write!(path, "/local/domain/{p}/name");
        c.fails(
            "read the peer's name",
            bus.read(path.as_str(), &mut v),
            Errno::EACCES,
        );
        let mut path = Text::<48>::new();
        let _ = write!(path, "/local/domain/{p}/data/mine");
        c.fails(
            "write the peer's data",
            bus.write(path.as_str(), b"x"),
            Errno::EACCES,
        );
        c.fails(
            "read the peer's data",
            bus.read(path.as_str(), &mut v),
            Errno::EACCES,
        );
        let mut path = Text::<48>::new();
        let _ = write!(path, "/local/domain/{p}/data/missing/deep");
        c.fails(
            "read a missing node of the peer's: EACCES, not ENOENT",
            bus.read(path.as_str(), &mut v),
            Errno::EACCES,
        );
        let mut path = Text::<48>::new();
        let _ = write!(path, "/local/domain/{p}/data");
        c.fails("rm the peer's data", bus.rm(path.as_str()), Errno::EACCES);
    }
    // The node quota: writes until ENOSPC (1000 nodes, or the 256 KiB before them).
    let mut written = 0;
    let mut last = Ok(());
    for i in 0..1200 {
        let mut path = Text::<32>::new();
        let _ = write!(path, "data/q/n{i}");
        last = bus.write(path.as_str(), b"v");
        if last.is_err() {
            break;
        }
        written += 1;
    }
    note(format_args!("{written} nodes written before the quota"));
    c.eq("past the quota: ENOSPC", last, Err(Errno::ENOSPC));
    c.check(
        "hundreds of nodes first",
        written > 500,
        format_args!("{written}"),
    );
    c.ok(
        "reads still answered at the quota",
        bus.read("domid", &mut v),
    );
    println!("xenstore: at quota");
    c.finish()
}

/// `role=flood`: keeps its request ring full of reads, taking the replies, until dom0
/// writes its `data/stop` (looked at every 256 replies) or two minutes pass; prints how
/// many requests were answered. The scenario checks that the others are served meanwhile.
fn flood() -> ! {
    let mut c = Checks::new();
    let mut bus = connect(&mut c);
    let mut v = [0u8; 16];
    let msg = {
        let (h, p) = raw(XS_READ, 0xF100D, 6, b"domid\0");
        let mut m = [0u8; 22];
        m[..16].copy_from_slice(&h);
        m[16..].copy_from_slice(p);
        m
    };
    println!("xenstore: flooding");
    let start = now_ns();
    let deadline = start + 120_000 * NS_PER_MS;
    let (mut answered, mut next_look) = (0usize, 256usize);
    let mut stopped = false;
    while now_ns() < deadline {
        bus.send_nowait(&msg);
        answered += bus.drop_replies();
        if answered >= next_look {
            next_look = answered + 256;
            if bus.read("data/stop", &mut v).is_ok() {
                stopped = true;
                break;
            }
        }
    }
    let ms = (now_ns() - start) / NS_PER_MS;
    note(format_args!(
        "{answered} flood requests answered in {ms} ms"
    ));
    c.check(
        "dom0 said stop",
        stopped,
        format_args!("two minutes passed"),
    );
    c.check(
        "the flood was served",
        answered > 256,
        format_args!("{answered}"),
    );
    c.finish()
}

/// The original test (no `role`): a hostile domU.
fn hostile() -> ! {
    let mut c = Checks::new();
    let mut bus = match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => {
            c.check("Xenbus::connect", false, format_args!("{e:?}"));
            c.finish()
        }
    };
    // What it may do.
    let mut v = [0u8; 64];
    let me = c.ok("read its domid", bus.read("domid", &mut v));
    let domid: u16 = me
        .and_then(|n| core::str::from_utf8(&v[..n.min(64)]).ok()?.parse().ok())
        .unwrap_or(0);
    c.check(
        "its domid is a domU's",
        domid != 0,
        format_args!("{:?}", &v[..8]),
    );
    c.ok("read its name", bus.read("name", &mut v));
    c.ok(
        "read cpu/0/availability",
        bus.read("cpu/0/availability", &mut v),
    );
    c.ok("write data/note", bus.write("data/note", b"hostile"));
    let n = bus.read("data/note", &mut v);
    c.eq(
        "read data/note back",
        n.map(|n| &v[..n.min(64)] == b"hostile"),
        Ok(true),
    );
    // What it may not.
    c.fails("write its name", bus.write("name", b"evil"), Errno::EACCES);
    c.fails(
        "write cpu/0/availability",
        bus.write("cpu/0/availability", b"offline"),
        Errno::EACCES,
    );
    c.fails("read /", bus.read("/", &mut v), Errno::EACCES);
    let mut refused = 0;
    for d in 1..=OTHER_DOMAINS {
        if d == domid {
            continue;
        }
        let mut path = Text::<32>::new();
        let _ = write!(path, "/local/domain/{d}/name");
        let p = path.as_str();
        match bus.read(p, &mut v) {
            Err(Errno::EACCES) => refused += 1,
            Err(Errno::ENOENT) => {}
            other => {
                c.check(
                    format_args!("read {p}"),
                    false,
                    format_args!("got {other:?}, not EACCES or ENOENT"),
                );
            }
        }
    }
    c.check(
        "another domain's name is refused (EACCES)",
        refused > 0,
        format_args!("no other domain among 1..={OTHER_DOMAINS}"),
    );
    c.fails(
        "XS_INTRODUCE from a domU",
        bus.request(XS_INTRODUCE, &[b"9\0", b"1\0", b"2\0"], &mut []),
        Errno::EACCES,
    );
    let big = [b'x'; VALUE_MAX + 1];
    c.fails(
        "write a value past 2048 bytes",
        bus.write("data/big", &big),
        Errno::ENOSPC,
    );
    // Watches up to the quota: 128 accepted, the next refused.
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..=WATCH_QUOTA {
        let token = [
            b'a' + (i / 26 % 26) as u8,
            b'a' + (i % 26) as u8,
            b'0' + (i / 676) as u8,
        ];
        let token = core::str::from_utf8(&token).unwrap_or("t");
        match bus.watch("data", token) {
            Ok(()) => accepted += 1,
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    c.eq("watches accepted", accepted, WATCH_QUOTA);
    // Xen's answer past the watch quota (older versions answered E2BIG).
    c.eq("watch past the quota", refusal, Some(Errno::ENOSPC));
    note(format_args!(
        "{} watch events lost while none was read",
        bus.lost_events()
    ));
    // Malformed messages.
    expect_error(
        &mut c,
        &mut bus,
        "a header announcing 5000 bytes",
        raw(XS_READ, 0xBAD, 5000, b"name\0"),
        "E2BIG",
    );
    expect_error(
        &mut c,
        &mut bus,
        "type 999",
        raw(999, 0xBAD, 5, b"name\0"),
        "ENOSYS",
    );
    expect_error(
        &mut c,
        &mut bus,
        "a path without NUL",
        raw(XS_READ, 0xBAD, 4, b"name"),
        "EINVAL",
    );
    let long = [b'a'; 3000];
    let mut long_msg = [0u8; 3001];
    long_msg[..3000].copy_from_slice(&long);
    expect_error(
        &mut c,
        &mut bus,
        "a 3000-byte relative path",
        raw(XS_READ, 0xBAD, 3001, &long_msg),
        "EINVAL",
    );
    expect_error(
        &mut c,
        &mut bus,
        "a watch with one string",
        raw(XS_WATCH, 0xBAD, 5, b"data\0"),
        "EINVAL",
    );
    // Impossible ring indexes: the store gives up on this ring and says so.
    bus.corrupt_req_prod(0x8000_0000 + XENSTORE_RING_SIZE as u32);
    let flagged = spin_until_or(now_ns() + 5_000 * NS_PER_MS, || bus.ring_error() == 2);
    c.check(
        "the store marks the ring broken (error = XENSTORE_ERROR_RINGIDX)",
        flagged,
        format_args!("error field {}", bus.ring_error()),
    );
    c.finish()
}
