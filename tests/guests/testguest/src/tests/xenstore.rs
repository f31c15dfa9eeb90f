//! `xenstore`: a hostile domU against the store in dom0's kernel (run as a domU made by
//! `xl create`, scenario `xenstore_hostile_domu`). Through the runtime's xenbus client it
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
    XENSTORE_RING_SIZE, XS_ERROR, XS_INTRODUCE, XS_READ, XS_WATCH, XsdSockmsg,
};

use xenia_guest_rt::check::{Checks, Text, note};
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
    c.eq("watch past the quota", refusal, Some(Errno::E2BIG));
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
