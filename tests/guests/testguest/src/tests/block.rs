//! `block_*`: a domU's virtual disk through the runtime's blkfront and dom0's blkback (run as
//! domUs made by `xl create` with a `disk = [...]`, scenarios `block_*`).
//!
//! The pattern: the 8-byte little-endian word at byte offset `o` of the disk is
//! `PATTERN ^ (o / 8)`, so any offset can be checked on its own (the scenario checks the
//! image file on the host with the same rule).
//!
//! * `block_write`: writes the pattern over the whole disk (at most [`MAX_SECTORS`];
//!   [`QUEUE_DEPTH`] requests a call, which blkfront keeps in flight together), flushes,
//!   reads a few places back (a discard inside the disk first: OKAY; one past the end:
//!   `BLKIF_RSP_ERROR`), and powers off without closing the device (the backend finds
//!   the domain gone).
//! * `block_read`: reads the whole disk and checks the pattern (three whole requests and one
//!   of 5 sectors a call, so each request of a batch must land in its place), then
//!   disconnects (Closing, Closed).
//! * `block_stream`: writes for ever (until destroyed), saying how far it got.
//! * `block_readonly`: the backend says read-only; a write the frontend sends anyway gets
//!   `BLKIF_RSP_ERROR`, and so does a discard; reads work.
//! * `block_bench`: sequential throughput (`requests=N` requests of [`MAX_IO`] bytes, the
//!   largest blkfront makes; 372 by default, about 16 MiB): writes them from sector 0 on,
//!   [`QUEUE_DEPTH`] requests a call (blkfront keeps them in flight together), flushes, then reads them back, timed with the domain's system time; prints
//!   `block bench bytes=<B> request=<R> write_ns=<W> read_ns=<N>` (the write's time includes
//!   the flush, as `dd conv=fsync` does) and checks the first word of every request read.
//!   With `phases=write` it stops after the flush (`read_ns=0`).
//! * `block_hostile`: requests put in the ring during the handshake, bad segment counts,
//!   bad sector bounds, sectors past the end, grant references not granted to dom0, an
//!   indirect request: each gets its error, and a good request after them is served; last
//!   it claims a producer index far ahead and the backend stops serving it (no response).
//! * `block_race` (on a read-only disk, `rounds=N`, 3000 by default): rewrites the ring
//!   under the backend at full speed while it serves. Each round publishes a read into a
//!   page granted read-only and filled with the pattern, then, until its response comes
//!   (bounded), flips that entry's operation between read and write, fills the next entries
//!   with random bytes, and moves `req_prod` forward over them (never more than a ring
//!   ahead of `rsp_prod`, so the backend keeps serving). A backend that fetched an entry
//!   twice would, now and then, check a read and carry out a write of the pattern: the
//!   scenario finds the read-only disk's image still zero. Then it says `block: race done`
//!   and, until destroyed, keeps reads outstanding and notifies at full speed (the backend
//!   has work on the mapped ring when the domain is destroyed); with `end=poweroff` it
//!   publishes a ring's worth of reads and powers off at once instead.

use guest_abi::blkif::{
    BLKIF_ENTRY_SIZE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BlkifRequest, BlkifRequestSegment,
};
use xenia_guest_rt::blkfront::{Blkfront, Error, MAX_IO, QUEUE_DEPTH, probe};
use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::{Checks, note};
use xenia_guest_rt::cmdline;
use xenia_guest_rt::println;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::xenbus::Xenbus;

/// The pattern's constant ("XENIABLK").
pub const PATTERN: u64 = 0x584E_4941_424C_4B00;
/// Sectors written or read at most.
pub const MAX_SECTORS: u64 = 16 * 1024;

fn fill(buf: &mut [u8], at: u64) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(PATTERN ^ (at / 8 + i as u64)).to_le_bytes());
    }
}

fn matches(buf: &[u8], at: u64) -> Option<u64> {
    for (i, w) in buf.chunks_exact(8).enumerate() {
        let want = PATTERN ^ (at / 8 + i as u64);
        if u64::from_le_bytes(w.try_into().unwrap_or([0; 8])) != want {
            return Some(at + 8 * i as u64);
        }
    }
    None
}

/// The store and the first disk, or the failed check's result.
fn open(c: &mut Checks) -> (Xenbus, Blkfront) {
    let mut bus = match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => {
            c.check("Xenbus::connect", false, format_args!("{e:?}"));
            core::mem::take(c).finish()
        }
    };
    let mut ids = [0u32; 4];
    let n = probe(&mut bus, &mut ids);
    if !c.check("a vbd is listed", n >= 1, format_args!("{n} devices")) {
        core::mem::take(c).finish()
    }
    match Blkfront::connect(&mut bus, ids[0]) {
        Ok(f) => {
            c.check("blkfront connects", true, format_args!(""));
            note(format_args!(
                "block: device {} connected, {} sectors of {} bytes{}",
                f.devid(),
                f.sectors(),
                f.sector_size(),
                if f.read_only() { ", read-only" } else { "" }
            ));
            (bus, f)
        }
        Err(e) => {
            c.check("blkfront connects", false, format_args!("{e:?}"));
            core::mem::take(c).finish()
        }
    }
}

/// Page-aligned, so that blkfront can lend its pages to the backend for writes.
#[repr(C, align(4096))]
struct Buf([u8; MAX_IO]);

static mut BUF: Buf = Buf([0; MAX_IO]);

fn buf() -> &'static mut [u8; MAX_IO] {
    // SAFETY: the tests run on one vCPU from the main flow only; each takes the buffer once
    // at a time (no two references live together).
    unsafe { &mut (*core::ptr::addr_of_mut!(BUF)).0 }
}

/// `block_write`.
pub fn write() -> ! {
    let mut c = Checks::new();
    let (_bus, mut f) = open(&mut c);
    let sectors = f.sectors().min(MAX_SECTORS);
    let b = buf();
    let per = (MAX_IO / 512) as u64;
    // Discard: offered; a range inside the disk is answered OKAY (a hint: the pattern
    // written next covers it), one past the end gets BLKIF_RSP_ERROR from the backend.
    c.check(
        "the backend offers feature-discard",
        f.can_discard(),
        format_args!(""),
    );
    c.eq("a discard inside the disk", f.discard(0, 64), Ok(()));
    c.eq(
        "a discard past the end gets BLKIF_RSP_ERROR",
        f.discard_unchecked(f.sectors() - 4, 8),
        Err(Error::Status(BLKIF_RSP_ERROR)),
    );
    // QUEUE_DEPTH requests a call (in flight together with persistent grants); the last
    // call is shorter.
    let big = bench_buf();
    let per_call = per * QUEUE_DEPTH as u64;
    let mut s = 0;
    let start = now_ns();
    let mut failed = None;
    while s < sectors {
        let n = per_call.min(sectors - s);
        let chunk = &mut big[..(n * 512) as usize];
        fill(chunk, s * 512);
        if let Err(e) = f.write(s, chunk) {
            failed = Some((s, e));
            break;
        }
        s += n;
    }
    c.check(
        "the pattern is written",
        failed.is_none(),
        format_args!("{failed:?}"),
    );
    let ms = (now_ns() - start) / NS_PER_MS;
    c.eq("flush", f.flush(), Ok(()));
    note(format_args!(
        "block: pattern written to {sectors} sectors in {ms} ms"
    ));
    for at in [0, sectors / 2, sectors - 8] {
        let chunk = &mut b[..4096];
        let r = f.read(at, chunk);
        c.check(
            format_args!("sector {at} reads back"),
            r.is_ok() && matches(chunk, at * 512).is_none(),
            format_args!("{r:?}"),
        );
    }
    c.finish()
}

/// `block_read`.
pub fn read() -> ! {
    let mut c = Checks::new();
    let (mut bus, mut f) = open(&mut c);
    let sectors = f.sectors().min(MAX_SECTORS);
    let b = bench_buf();
    // Three whole requests and one of 5 sectors a call (in flight together with persistent
    // grants): the pattern checks that each lands in its place.
    let per = 3 * (MAX_IO / 512) as u64 + 5;
    let mut s = 0;
    let mut bad = None;
    let start = now_ns();
    while s < sectors {
        let n = per.min(sectors - s);
        let chunk = &mut b[..(n * 512) as usize];
        match f.read(s, chunk) {
            Ok(()) => {
                if let Some(o) = matches(chunk, s * 512) {
                    bad = Some(o);
                    break;
                }
            }
            Err(e) => {
                println!("block: read at sector {s} failed: {e:?}");
                bad = Some(s * 512);
                break;
            }
        }
        s += n;
    }
    let ms = (now_ns() - start) / NS_PER_MS;
    note(format_args!(
        "block: pattern read from {sectors} sectors in {ms} ms"
    ));
    c.check(
        format_args!("the pattern reads back from {sectors} sectors"),
        bad.is_none(),
        format_args!("first difference at byte {bad:?}"),
    );
    f.disconnect(&mut bus);
    c.check("disconnected", true, format_args!(""));
    c.finish()
}

/// `block_stream`.
pub fn stream() -> ! {
    let mut c = Checks::new();
    let (_bus, mut f) = open(&mut c);
    let sectors = f.sectors().min(MAX_SECTORS);
    let b = buf();
    let per = (MAX_IO / 512) as u64;
    let mut s = 0;
    let mut n_req: u64 = 0;
    note(format_args!("block: streaming"));
    loop {
        let n = per.min(sectors - s);
        let chunk = &mut b[..(n * 512) as usize];
        fill(chunk, s * 512);
        if let Err(e) = f.write(s, chunk) {
            c.check("streamed write", false, format_args!("{e:?} at sector {s}"));
            c.finish()
        }
        n_req += 1;
        if n_req.is_multiple_of(64) {
            note(format_args!("block: streamed {n_req} requests"));
        }
        s = (s + n) % sectors;
    }
}

/// [`bench()`]'s buffer: [`QUEUE_DEPTH`] requests' worth, page-aligned.
#[repr(C, align(4096))]
struct BenchBuf([u8; QUEUE_DEPTH * MAX_IO]);

static mut BENCH_BUF: BenchBuf = BenchBuf([0; QUEUE_DEPTH * MAX_IO]);

fn bench_buf() -> &'static mut [u8; QUEUE_DEPTH * MAX_IO] {
    // SAFETY: as for `buf`: one vCPU, the main flow, and only `bench` takes this buffer, once.
    unsafe { &mut (*core::ptr::addr_of_mut!(BENCH_BUF)).0 }
}

/// Requests [`bench()`] makes when the command line does not say (`requests=N`).
const BENCH_REQUESTS: u64 = 372;

/// `block_bench`.
pub fn bench() -> ! {
    let mut c = Checks::new();
    let requests = cmdline::value(start_info().cmdline_bytes(), "requests")
        .and_then(|v| core::str::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(BENCH_REQUESTS);
    let (_bus, mut f) = open(&mut c);
    let per = (MAX_IO / 512) as u64;
    if !c.check(
        format_args!("{requests} requests fit on the disk"),
        requests > 0 && requests.saturating_mul(per) <= f.sectors(),
        format_args!("{} sectors", f.sectors()),
    ) {
        c.finish()
    }
    let b = bench_buf();
    // The same bytes in every request (as `dd if=/dev/zero`), so the loop's only work is the
    // I/O; each request's first word says where it belongs. A call moves up to QUEUE_DEPTH
    // requests, which blkfront keeps in flight together.
    for part in b.chunks_exact_mut(MAX_IO) {
        fill(part, 0);
    }
    let group = QUEUE_DEPTH as u64;
    let start = now_ns();
    let mut failed = None;
    let mut k = 0;
    while k < requests {
        let m = (requests - k).min(group);
        for j in 0..m {
            let at = j as usize * MAX_IO;
            b[at..at + 8].copy_from_slice(&(k + j).to_le_bytes());
        }
        if let Err(e) = f.write(k * per, &b[..m as usize * MAX_IO]) {
            failed = Some((k, e));
            break;
        }
        k += m;
    }
    let flushed = f.flush();
    let write_ns = now_ns() - start;
    c.check(
        "the writes are answered",
        failed.is_none(),
        format_args!("{failed:?}"),
    );
    c.eq("flush", flushed, Ok(()));
    // `phases=write`: no read phase (the busy-time measure takes a domain's read as the
    // difference between a run with it and one without).
    let write_only = cmdline::value(start_info().cmdline_bytes(), "phases") == Some(&b"write"[..]);
    let start = now_ns();
    let mut bad = None;
    let mut k = 0;
    while k < requests && !write_only {
        let m = (requests - k).min(group);
        let r = f.read(k * per, &mut b[..m as usize * MAX_IO]);
        let wrong = (0..m).find(|&j| {
            let at = j as usize * MAX_IO;
            b[at..at + 8] != (k + j).to_le_bytes()
        });
        match (r, wrong) {
            (Ok(()), None) => {}
            (r, w) => {
                bad = Some((k + w.unwrap_or(0), r));
                break;
            }
        }
        k += m;
    }
    let read_ns = now_ns() - start;
    c.check(
        "every request reads back what was written",
        bad.is_none(),
        format_args!("first bad: {bad:?}"),
    );
    println!(
        "block bench bytes={} request={MAX_IO} write_ns={write_ns} read_ns={read_ns}",
        requests * MAX_IO as u64
    );
    c.finish()
}

/// `block_readonly`.
pub fn readonly() -> ! {
    let mut c = Checks::new();
    let (_bus, mut f) = open(&mut c);
    c.check(
        "the backend says read-only",
        f.read_only(),
        format_args!("info has no VDISK_READONLY"),
    );
    let b = buf();
    let chunk = &mut b[..4096];
    c.eq("a read works", f.read(0, chunk), Ok(()));
    let before = [chunk[0], chunk[1], chunk[2], chunk[3]];
    chunk.fill(0xEE);
    c.eq(
        "a write is refused by the frontend",
        f.write(0, &chunk[..512]),
        Err(Error::ReadOnly),
    );
    c.eq(
        "a write sent anyway gets BLKIF_RSP_ERROR",
        f.write_unchecked(0, &chunk[..512]),
        Err(Error::Status(BLKIF_RSP_ERROR)),
    );
    c.eq(
        "a discard is refused by the frontend",
        f.discard(0, 8),
        Err(Error::ReadOnly),
    );
    c.eq(
        "a discard sent anyway gets BLKIF_RSP_ERROR",
        f.discard_unchecked(0, 8),
        Err(Error::Status(BLKIF_RSP_ERROR)),
    );
    let chunk = &mut b[..4096];
    c.eq("reading again works", f.read(0, chunk), Ok(()));
    c.eq(
        "the disk is unchanged",
        [chunk[0], chunk[1], chunk[2], chunk[3]],
        before,
    );
    c.eq("a flush works", f.flush(), Ok(()));
    c.finish()
}

fn raw(op: u8, sector: u64, segs: &[(u32, u8, u8)], nr: u8, id: u64) -> [u8; BLKIF_ENTRY_SIZE] {
    let mut r = BlkifRequest {
        operation: op,
        nr_segments: nr,
        handle: 0,
        id,
        sector_number: sector,
        ..Default::default()
    };
    for (i, &(gref, first_sect, last_sect)) in segs.iter().enumerate().take(11) {
        r.seg[i] = BlkifRequestSegment {
            gref,
            first_sect,
            last_sect,
            _pad: 0,
        };
    }
    r.to_bytes()
}

/// `block_hostile`.
pub fn hostile() -> ! {
    let mut c = Checks::new();
    let mut bus = match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => {
            c.check("Xenbus::connect", false, format_args!("{e:?}"));
            c.finish()
        }
    };
    let mut ids = [0u32; 4];
    if probe(&mut bus, &mut ids) == 0 {
        c.check("a vbd is listed", false, format_args!("none"));
        c.finish()
    }
    let page = Blkfront::data_ref(0);
    // Two reads put in the ring before the frontend says Initialised.
    let early = [
        raw(BLKIF_OP_READ, 0, &[(page, 0, 7)], 1, 0xE1),
        raw(BLKIF_OP_READ, 0, &[(page, 0, 7)], 1, 0xE2),
    ];
    let mut f = match Blkfront::connect_with_early(&mut bus, ids[0], &early) {
        Ok(f) => f,
        Err(e) => {
            c.check("blkfront connects", false, format_args!("{e:?}"));
            c.finish()
        }
    };
    for id in [0xE1, 0xE2] {
        let r = f.next_response();
        c.check(
            format_args!("request {id:#x} from the handshake gets BLKIF_RSP_ERROR"),
            r.is_ok_and(|r| r.id == id && r.status == BLKIF_RSP_ERROR),
            format_args!("{r:?}"),
        );
    }
    let end = f.sectors();
    let cases: [(&str, [u8; BLKIF_ENTRY_SIZE], i16); 9] = [
        (
            "0 segments",
            raw(BLKIF_OP_READ, 0, &[(page, 0, 7)], 0, 1),
            BLKIF_RSP_ERROR,
        ),
        (
            "12 segments",
            raw(BLKIF_OP_READ, 0, &[(page, 0, 0); 11], 12, 2),
            BLKIF_RSP_ERROR,
        ),
        (
            "255 segments",
            raw(BLKIF_OP_WRITE, 0, &[(page, 0, 0); 11], 255, 3),
            BLKIF_RSP_ERROR,
        ),
        (
            "last_sect 8",
            raw(BLKIF_OP_READ, 0, &[(page, 0, 8)], 1, 4),
            BLKIF_RSP_ERROR,
        ),
        (
            "first_sect after last_sect",
            raw(BLKIF_OP_READ, 0, &[(page, 5, 2)], 1, 5),
            BLKIF_RSP_ERROR,
        ),
        (
            "sectors past the end",
            raw(BLKIF_OP_READ, end - 4, &[(page, 0, 7)], 1, 6),
            BLKIF_RSP_ERROR,
        ),
        (
            "a grant reference never granted",
            raw(BLKIF_OP_READ, 0, &[(300, 0, 7)], 1, 7),
            BLKIF_RSP_ERROR,
        ),
        (
            "a grant reference past the table",
            raw(BLKIF_OP_WRITE, 0, &[(100_000, 0, 7)], 1, 8),
            BLKIF_RSP_ERROR,
        ),
        (
            "an indirect request",
            raw(BLKIF_OP_INDIRECT, 0, &[(page, 0, 7)], 1, 9),
            BLKIF_RSP_EOPNOTSUPP,
        ),
    ];
    for (what, entry, want) in cases {
        f.push_raw(&entry);
        let r = f.next_response();
        c.check(
            format_args!("{what}: status {want}"),
            r.is_ok_and(|r| r.status == want),
            format_args!("{r:?}"),
        );
    }
    // A good request is still served.
    f.push_raw(&raw(BLKIF_OP_READ, 0, &[(page, 0, 7)], 1, 10));
    let r = f.next_response();
    c.check(
        "a good read after them: BLKIF_RSP_OKAY",
        r.is_ok_and(|r| r.id == 10 && r.status == BLKIF_RSP_OKAY),
        format_args!("{r:?}"),
    );
    // A producer a thousand requests ahead: the backend stops serving the ring.
    f.set_req_prod_raw(0x4000_0000);
    note(format_args!("block: producer index set far ahead"));
    let r = f.next_response();
    c.check(
        "no response to the impossible producer index",
        matches!(r, Err(Error::Timeout)),
        format_args!("{r:?}"),
    );
    c.finish()
}

/// Rounds [`race`] makes when the command line does not say (`rounds=N`).
const RACE_ROUNDS: u64 = 3000;
/// How long [`race`] waits for one round's responses at most.
const RACE_WAIT_NS: u64 = 200 * NS_PER_MS;

/// `block_race`.
pub fn race() -> ! {
    let mut c = Checks::new();
    let (_bus, mut f) = open(&mut c);
    let rounds = cmdline::value(start_info().cmdline_bytes(), "rounds")
        .and_then(|v| core::str::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(RACE_ROUNDS);
    c.check(
        "the disk is read-only",
        f.read_only(),
        format_args!("info says writable"),
    );
    let b = buf();
    fill(&mut b[..4096], 0);
    let Some((segs, _)) = f.lend_raw(&b[..4096], true) else {
        c.check("a page lent read-only", false, format_args!(""));
        c.finish()
    };
    let gref = segs[0].gref;
    let end = f.sectors();
    // xorshift: the scribbles need not be good random numbers, only varied.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ now_ns();
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = now_ns();
    let mut prod = f.rsp_prod_raw();
    let (mut answered, mut flips, mut late) = (0u64, 0u64, 0u64);
    for k in 0..rounds {
        let idx = prod;
        // A new read only while the ring has room for it (a round that timed out may have
        // left a ring's worth outstanding).
        if prod.wrapping_sub(f.rsp_prod_raw()) < BLKIF_RING_SIZE_U32 {
            let sector = (k * 8) % end.saturating_sub(8).max(1);
            f.scribble(idx, 0, &raw(BLKIF_OP_READ, sector, &[(gref, 0, 7)], 1, k));
            prod = idx.wrapping_add(1);
        }
        f.publish_raw(prod, true);
        let deadline = now_ns() + RACE_WAIT_NS;
        let mut j: u64 = 0;
        loop {
            let rsp = f.rsp_prod_raw();
            if rsp == prod {
                answered += 1;
                break;
            }
            if now_ns() >= deadline {
                late += 1;
                break;
            }
            // The published read becomes a write and back, again and again.
            let op = if j % 2 == 0 {
                BLKIF_OP_WRITE
            } else {
                BLKIF_OP_READ
            };
            f.scribble(idx, 0, &[op]);
            flips += 1;
            // Random bytes in an entry ahead, and now and then published: never more
            // than a ring ahead of the responses, never backwards.
            let ahead = prod.wrapping_add(1 + (rand() % 8) as u32);
            let junk = rand().to_le_bytes();
            let at = (rand() % 14) as usize * 8;
            f.scribble(ahead, at, &junk);
            if j % 16 == 15 {
                let room = BLKIF_RING_SIZE_U32 - 1;
                let target = if ahead.wrapping_sub(rsp) <= room {
                    ahead
                } else {
                    rsp.wrapping_add(room)
                };
                if target.wrapping_sub(prod) as i32 > 0 {
                    prod = target;
                    f.publish_raw(prod, false);
                }
            }
            j += 1;
        }
    }
    let ms = (now_ns() - start) / NS_PER_MS;
    note(format_args!(
        "block: race: {rounds} rounds, {answered} answered, {late} late, {flips} flips in {ms} ms"
    ));
    c.check(
        "the backend kept serving the ring rewritten under it",
        answered >= rounds / 2,
        format_args!("{answered} of {rounds} answered"),
    );
    note(format_args!("block: race done"));
    if c.failures() > 0 {
        c.finish()
    }
    let page = Blkfront::data_ref(0);
    let mut k: u64 = 0;
    if cmdline::value(start_info().cmdline_bytes(), "end") == Some(b"poweroff") {
        // A ring's worth of reads, then power off at once: dom0 destroys the domain while
        // it serves them (from a wait inside a request).
        while prod.wrapping_sub(f.rsp_prod_raw()) < BLKIF_RING_SIZE_U32 - 1 {
            f.scribble(prod, 0, &raw(BLKIF_OP_READ, 0, &[(page, 0, 7)], 1, k));
            prod = prod.wrapping_add(1);
            k += 1;
        }
        f.publish_raw(prod, true);
        c.finish()
    }
    // Until destroyed: reads (into a writable page) kept outstanding and notified at full
    // speed, so that the backend has work on the ring when the domain is destroyed.
    loop {
        if prod.wrapping_sub(f.rsp_prod_raw()) < BLKIF_RING_SIZE_U32 - 1 {
            f.scribble(prod, 0, &raw(BLKIF_OP_READ, 0, &[(page, 0, 7)], 1, k));
            prod = prod.wrapping_add(1);
            k += 1;
        }
        f.publish_raw(prod, true);
    }
}

/// [`BLKIF_RING_SIZE`](guest_abi::blkif::BLKIF_RING_SIZE) as the ring's index type.
const BLKIF_RING_SIZE_U32: u32 = guest_abi::blkif::BLKIF_RING_SIZE;
