//! Part of `hypercalls`: every hypercall that copies data out to the guest, with short
//! buffers followed by canary bytes and with bad pointers.
//!
//! A hypervisor that ignores a length, writes a fixed-size record one byte too long, or
//! checks a pointer after writing through it corrupts the guest's memory next to the buffer;
//! a return code cannot show that, so each buffer here is followed by [`CANARY_LEN`] bytes of
//! [`CANARY`] that must come back intact, and the count the call reports is compared with
//! what it wrote. Each call is also given, instead of its buffer:
//!
//! - an address nothing maps ([`UNMAPPED`]),
//! - the hypervisor's image ([`HYPERVISOR_IMAGE`]),
//! - a read-only mapping of one of our own frames, whose contents are read back through a
//!   writable mapping of the same frame afterwards,
//! - a buffer whose first bytes are writable and whose rest lies in an unmapped page: the
//!   writable bytes must come back unchanged (no torn write),
//!
//! and must refuse with the documented status (`EFAULT`, `GNTST_bad_virt_addr` for
//! `setup_table`), writing nothing.
//!
//! `console_io` `CONSOLEIO_READ` needs console input: the test prints [`INPUT_PROMPT`] and the
//! scenario types [`INPUT`] (see `tests/src/scenarios/guests.rs`).

use core::fmt::Display;

use guest_abi::console::CONSOLEIO_READ;
use guest_abi::domctl::DomctlGetdomaininfo;
use guest_abi::errno::Errno::{self, EFAULT, EINVAL};
use guest_abi::event::VIRQ_CONSOLE;
use guest_abi::grant::{
    GNTST_BAD_VIRT_ADDR, GNTST_OKAY, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE, GnttabQuerySize,
    GnttabSetupTable,
};
use guest_abi::hypercall::{
    HYPERVISOR_CONSOLE_IO, HYPERVISOR_GRANT_TABLE_OP, HYPERVISOR_MEMORY_OP, HYPERVISOR_MMU_UPDATE,
    HYPERVISOR_SYSCTL, HYPERVISOR_XEN_VERSION,
};
use guest_abi::memory::{
    E820_RAM, E820Entry, MMU_MACHPHYS_UPDATE, MemoryMap, MmuUpdate, XENMEM_MEMORY_MAP,
    XENMEM_XENIA_FRAME_COUNTS, XeniaFrameCounts,
};
use guest_abi::sysctl::{
    SysctlGetdomaininfolist, SysctlReadconsole, XEN_SYSCTL_GETDOMAININFOLIST,
    XEN_SYSCTL_READCONSOLE, XenSysctl,
};
use guest_abi::types::DOMID_SELF;
use guest_abi::version::{
    XENVER_CAPABILITIES, XENVER_CHANGESET, XENVER_COMMANDLINE, XENVER_COMPILE_INFO,
    XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_PLATFORM_PARAMETERS, XenFeatureInfo,
};
use xenia_guest_rt::boot::VIRT_BASE;
use xenia_guest_rt::check::{Checks, Ret, note};
use xenia_guest_rt::mm::{self, PAGE, Window, window_va};
use xenia_guest_rt::time::{NS_PER_MS, now_ns, spin_until};
use xenia_guest_rt::{console, events, println};

use super::{HYPERVISOR_IMAGE, UNMAPPED, raw};

/// The byte the canaries hold.
const CANARY: u8 = 0xc5;
/// Canary bytes after each buffer: more than any record a call writes is long, so that an
/// overrun by a whole record still lands in them.
const CANARY_LEN: usize = 256;
/// What the buffers hold before a call, to tell written bytes from untouched ones.
const UNWRITTEN: u8 = 0x5a;

/// The line after which the scenario types [`INPUT`].
pub const INPUT_PROMPT: &str = "hypercalls: type the console input now";
/// What the scenario types: no newline, nothing the console switch treats specially.
pub const INPUT: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
/// The short buffer of the console reads: less than [`INPUT`], so that a read that ignores
/// its count runs into the canary.
const READ_CHUNK: usize = 4;
/// How long to wait for the typed input to start arriving.
const INPUT_WAIT_NS: u64 = 30_000 * NS_PER_MS;
/// Time for the rest of the typed line to reach the hypervisor's input queue once its first
/// byte has (QEMU hands the whole line to the UART at once). Not synchronisation: the test
/// then checks that some read really filled its short buffer, so a line that trickled in
/// byte by byte fails that check instead of passing untested.
const INPUT_SETTLE_NS: u64 = 50 * NS_PER_MS;

/// The window slots this test uses (`mm::Window`; slots below `FREE_SLOTS` are ours):
/// the page at [`UNMAPPED_SLOT`] is unmapped while the bad-pointer calls run, and the one just
/// below it ([`STRADDLE_SLOT`]) keeps its own writable frame, so a buffer that starts at the
/// end of that one runs into the unmapped page.
const UNMAPPED_SLOT: usize = 0;
const STRADDLE_SLOT: usize = 1;
/// A read-only mapping of the frame behind [`SCRATCH_SLOT`]'s own writable mapping.
const READ_ONLY_SLOT: usize = 2;
const SCRATCH_SLOT: usize = 3;

/// A buffer of `N` bytes followed by canary bytes.
#[repr(C, align(8))]
struct Guarded<const N: usize> {
    buf: [u8; N],
    canary: [u8; CANARY_LEN],
}

impl<const N: usize> Guarded<N> {
    fn new() -> Self {
        Guarded {
            buf: [UNWRITTEN; N],
            canary: [CANARY; CANARY_LEN],
        }
    }

    fn ptr(&mut self) -> u64 {
        self.buf.as_mut_ptr() as u64
    }

    /// The first canary byte that changed, if any. Read volatile: the hypervisor wrote
    /// behind the compiler's back.
    fn canary_damage(&self) -> Option<usize> {
        (0..CANARY_LEN).find(|&i| {
            // SAFETY: an in-bounds byte of our own array.
            unsafe { core::ptr::read_volatile(&self.canary[i]) != CANARY }
        })
    }

    fn bytes(&self) -> [u8; N] {
        // SAFETY: our own array, read whole.
        unsafe { core::ptr::read_volatile(&self.buf) }
    }

    /// A record of type `T` at the start of the buffer.
    fn record<T: Copy>(&self) -> T {
        assert!(size_of::<T>() <= N);
        // SAFETY: in bounds (asserted); T is a plain ABI record for which every bit pattern
        // is valid; read unaligned as some records are packed.
        unsafe { core::ptr::read_unaligned(self.buf.as_ptr().cast::<T>()) }
    }
}

/// Checks that `g`'s canary is intact.
fn canary<const N: usize>(c: &mut Checks, what: impl Display, g: &Guarded<N>) -> bool {
    let damage = g.canary_damage();
    c.check(
        format_args!("{what}: the bytes after the {N}-byte buffer are untouched"),
        damage.is_none(),
        format_args!("canary byte {damage:?} overwritten"),
    )
}

fn call(nr: u64, args: [u64; 5]) -> i64 {
    // SAFETY: every call here copies out into buffers of this test or must be refused; the
    // one that changes state (the M2P entry) is undone by the test.
    unsafe { raw::call(nr, args) }
}

/// The bad pointers, set up once and torn down at the end.
struct BadTargets {
    unmapped: Window,
    read_only: Window,
}

/// Bytes of the read-only frame's pattern that are checked after each call.
const PATTERN_BYTES: usize = 512;

impl BadTargets {
    fn open(c: &mut Checks) -> Option<BadTargets> {
        let scratch = window_va(SCRATCH_SLOT);
        let mfn = mm::p2m((scratch - VIRT_BASE) / PAGE);
        // SAFETY: the slots are this test's; nothing else maps them meanwhile.
        let unmapped = match unsafe { Window::open(UNMAPPED_SLOT, 0) } {
            Ok(w) => w,
            Err(e) => {
                c.check("unmap a window page", false, format_args!("{}", Ret(e)));
                return None;
            }
        };
        // SAFETY: as above; the frame is the scratch slot's own padding frame.
        let read_only = match unsafe { Window::read_only(READ_ONLY_SLOT, mfn) } {
            Ok(w) => w,
            Err(e) => {
                let _ = unmapped.close();
                c.check(
                    "map a frame of ours read-only",
                    false,
                    format_args!("{}", Ret(e)),
                );
                return None;
            }
        };
        // The straddling buffers rely on the two slots being adjacent pages.
        assert_eq!(window_va(STRADDLE_SLOT) + PAGE, unmapped.va());
        let targets = BadTargets {
            unmapped,
            read_only,
        };
        targets.reset();
        Some(targets)
    }

    /// Refills the bytes the bad-pointer checks read back.
    fn reset(&self) {
        let scratch = window_va(SCRATCH_SLOT) as *mut u8;
        let straddle = window_va(STRADDLE_SLOT) as *mut u8;
        for i in 0..PATTERN_BYTES {
            // SAFETY: the scratch page and the straddle page are padding frames mapped
            // writable, used by this test only.
            unsafe {
                scratch.add(i).write_volatile(pattern(i));
                straddle
                    .add(PAGE as usize - PATTERN_BYTES + i)
                    .write_volatile(pattern(i));
            }
        }
    }

    /// Whether the read-only frame and the writable end of the straddling buffer still hold
    /// the pattern.
    fn untouched(&self) -> bool {
        let scratch = window_va(SCRATCH_SLOT) as *const u8;
        let straddle = window_va(STRADDLE_SLOT) as *const u8;
        (0..PATTERN_BYTES).all(|i| {
            // SAFETY: as in `reset`.
            unsafe {
                scratch.add(i).read_volatile() == pattern(i)
                    && straddle
                        .add(PAGE as usize - PATTERN_BYTES + i)
                        .read_volatile()
                        == pattern(i)
            }
        })
    }

    /// The bad buffers for a copy of `len` bytes: (what, address).
    fn list(&self, len: u64) -> [(&'static str, u64); 4] {
        // Start far enough before the unmapped page that the copy's first bytes are
        // writable and the rest are not.
        let before = (len / 2).clamp(1, PATTERN_BYTES as u64);
        [
            ("an unmapped buffer", UNMAPPED),
            ("a buffer in the hypervisor's image", HYPERVISOR_IMAGE),
            ("a read-only mapping of our own frame", self.read_only.va()),
            (
                "a buffer running from a writable page into an unmapped one",
                self.unmapped.va() - before,
            ),
        ]
    }

    fn close(self, c: &mut Checks) {
        let a = self.read_only.close();
        let b = self.unmapped.close();
        c.check(
            "restore the window pages",
            a >= 0 && b >= 0,
            format_args!("{}, {}", Ret(a), Ret(b)),
        );
    }
}

fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(37).wrapping_add(11)
}

/// Calls `attempt` with each bad buffer of a `len`-byte copy: each must give `want`, leave
/// every byte the test can read where it was, and leave the call's own argument structure as
/// it went in (`attempt` returns the result and whether it did).
fn refuses(
    c: &mut Checks,
    t: &BadTargets,
    what: &dyn Display,
    len: u64,
    want: Refusal,
    mut attempt: impl FnMut(u64) -> (i64, bool),
) {
    let (want, shown) = match want {
        Refusal::Errno(e) => (-i64::from(e.code()), Ret::err(e)),
        Refusal::Status(s) => (i64::from(s), Ret(i64::from(s))),
    };
    for (target, ptr) in t.list(len) {
        t.reset();
        let (got, argument_kept) = attempt(ptr);
        let untouched = t.untouched();
        c.check(
            format_args!("{what} into {target}: refused, nothing written"),
            got == want && untouched && argument_kept,
            format_args!(
                "returned {} (expected {shown}), memory around it {}, argument {}",
                Ret(got),
                if untouched { "intact" } else { "WRITTEN" },
                if argument_kept { "intact" } else { "WRITTEN" }
            ),
        );
    }
}

/// How a call refuses a bad buffer.
#[derive(Clone, Copy)]
enum Refusal {
    /// The call fails with this errno.
    Errno(Errno),
    /// The call succeeds and the operation's status is this (`GNTST_*`).
    Status(i16),
}

/// The refusal of a bad buffer by a call that returns an errno.
const REFUSED: Refusal = Refusal::Errno(EFAULT);

/// The name of a `xen_version` sub-op, for messages.
struct XenVersion<'a>(&'a str);

impl Display for XenVersion<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "xen_version({})", self.0)
    }
}

pub fn run(c: &mut Checks) {
    let Some(targets) = BadTargets::open(c) else {
        return;
    };
    console_read(c, &targets);
    readconsole(c, &targets);
    xen_version(c, &targets);
    memory_map(c, &targets);
    frame_counts(c, &targets);
    setup_table(c, &targets);
    mmu_update_done(c, &targets);
    getdomaininfolist(c, &targets);
    targets.close(c);
}

fn console_read_into(ptr: u64, count: u64) -> i64 {
    call(
        HYPERVISOR_CONSOLE_IO,
        [CONSOLEIO_READ.into(), count, ptr, 0, 0],
    )
}

/// `CONSOLEIO_READ` (dom0 only) with typed input queued: reads into a [`READ_CHUNK`]-byte
/// buffer never go past it, bad buffers are refused without consuming input, and the reads
/// together give back exactly what was typed.
fn console_read(c: &mut Checks, t: &BadTargets) {
    let port = match events::bind_virq(VIRQ_CONSOLE) {
        Ok(p) => p,
        Err(e) => {
            c.check("bind VIRQ_CONSOLE", false, format_args!("{e:?}"));
            return;
        }
    };
    let seen = events::count(port);
    println!("{INPUT_PROMPT}");
    console::flush();
    let arrived = events::wait_for(port, seen, now_ns() + INPUT_WAIT_NS);
    events::mask();
    let _ = guest_abi::calls::evtchn_close(port);
    if !c.check(
        "console input arrives (VIRQ_CONSOLE)",
        arrived,
        format_args!("nothing typed within {} s", INPUT_WAIT_NS / 1_000_000_000),
    ) {
        return;
    }
    spin_until(now_ns() + INPUT_SETTLE_NS);

    // Input is queued now: a bad buffer must be refused, and must not eat the input.
    refuses(
        c,
        t,
        &"console_io read",
        READ_CHUNK as u64,
        REFUSED,
        |ptr| (console_read_into(ptr, READ_CHUNK as u64), true),
    );

    let mut got = [0u8; INPUT.len()];
    let mut len = 0;
    let mut full_reads = 0;
    let mut reads = 0;
    let deadline = now_ns() + INPUT_WAIT_NS;
    while len < INPUT.len() && now_ns() < deadline {
        let mut g = Guarded::<READ_CHUNK>::new();
        let ret = console_read_into(g.ptr(), READ_CHUNK as u64);
        reads += 1;
        let n = usize::try_from(ret).unwrap_or(usize::MAX);
        if n > READ_CHUNK || g.canary_damage().is_some() || len + n > INPUT.len() {
            canary(c, "console_io read", &g);
            c.check(
                format_args!("console_io read of {READ_CHUNK} bytes returns at most {READ_CHUNK}"),
                false,
                format_args!("returned {} after {len} bytes", Ret(ret)),
            );
            return;
        }
        let bytes = g.bytes();
        got[len..len + n].copy_from_slice(&bytes[..n]);
        if bytes[n..].iter().any(|&b| b != UNWRITTEN) {
            c.check(
                "console_io read writes only the bytes it reports",
                false,
                format_args!("returned {n}, buffer {bytes:02x?}"),
            );
            return;
        }
        len += n;
        full_reads += usize::from(n == READ_CHUNK);
    }
    note(format_args!(
        "console_io read: {len} bytes in {reads} reads of at most {READ_CHUNK}, {full_reads} full"
    ));
    c.check(
        format_args!(
            "console_io reads of {READ_CHUNK} bytes give back exactly the typed input, nothing \
             lost to the refused reads"
        ),
        got[..len] == *INPUT,
        format_args!(
            "got {:?}, typed {:?}",
            core::str::from_utf8(&got[..len]).unwrap_or("<not text>"),
            core::str::from_utf8(INPUT).unwrap_or("")
        ),
    );
    c.check(
        format_args!(
            "some console_io read found more than {READ_CHUNK} bytes queued and filled its buffer"
        ),
        full_reads > 0,
        format_args!(
            "{reads} reads, none returned {READ_CHUNK}: the short buffer was not exercised"
        ),
    );
    let mut g = Guarded::<READ_CHUNK>::new();
    let ret = console_read_into(g.ptr(), READ_CHUNK as u64);
    c.check(
        "console_io read with the input consumed returns 0, writes nothing",
        ret == 0 && g.bytes() == [UNWRITTEN; READ_CHUNK] && g.canary_damage().is_none(),
        format_args!("returned {}", Ret(ret)),
    );
}

fn sysctl(op: &mut XenSysctl) -> i64 {
    call(HYPERVISOR_SYSCTL, [op as *mut XenSysctl as u64, 0, 0, 0, 0])
}

/// A readconsole request for `count` bytes into `buffer`, from the oldest byte held.
fn readconsole_op(buffer: u64, count: u32) -> XenSysctl {
    XenSysctl::new(
        XEN_SYSCTL_READCONSOLE,
        &SysctlReadconsole {
            buffer,
            count,
            ..Default::default()
        },
    )
}

/// `sysctl` `XEN_SYSCTL_READCONSOLE`: a 16-byte read writes 16 bytes, the same as the first 16
/// of a longer read, reports count 16 and the index after them.
fn readconsole(c: &mut Checks, t: &BadTargets) {
    const SHORT: usize = 16;
    const LONG: usize = 256;
    let mut long = Guarded::<LONG>::new();
    let mut op = readconsole_op(long.ptr(), LONG as u32);
    let ret = sysctl(&mut op);
    let r: SysctlReadconsole = op.payload();
    let intact = canary(c, "readconsole", &long);
    if !c.check(
        format_args!("readconsole of {LONG} bytes"),
        ret == 0 && r.count as usize == LONG,
        format_args!("returned {}, count {}", Ret(ret), r.count),
    ) || !intact
    {
        return;
    }
    let mut short = Guarded::<SHORT>::new();
    let mut op = readconsole_op(short.ptr(), SHORT as u32);
    let ret = sysctl(&mut op);
    let s: SysctlReadconsole = op.payload();
    canary(c, "readconsole", &short);
    c.check(
        format_args!(
            "readconsole of {SHORT} bytes: count {SHORT}, the log's first {SHORT} bytes, index \
             after them"
        ),
        ret == 0
            && s.count as usize == SHORT
            && short.bytes()[..] == long.bytes()[..SHORT]
            && s.index.wrapping_add((LONG - SHORT) as u32) == r.index,
        format_args!(
            "returned {}, count {}, index {} (the {LONG}-byte read's: {}), bytes {:?}",
            Ret(ret),
            s.count,
            s.index,
            r.index,
            core::str::from_utf8(&short.bytes()).unwrap_or("<not text>")
        ),
    );
    refuses(c, t, &"readconsole", SHORT as u64, REFUSED, |ptr| {
        let mut op = readconsole_op(ptr, SHORT as u32);
        let before = op;
        let ret = sysctl(&mut op);
        // A refused sysctl writes nothing back either.
        (ret, op == before)
    });
}

fn xen_version_into(cmd: u32, ptr: u64) -> i64 {
    call(HYPERVISOR_XEN_VERSION, [cmd.into(), ptr, 0, 0, 0])
}

/// One string sub-op of `xen_version`: into a buffer of exactly its ABI size (Xen's
/// `xen_extraversion_t` and the like), the string NUL-terminated inside it.
fn xen_version_string<const N: usize>(c: &mut Checks, t: &BadTargets, name: &str, cmd: u32) {
    let mut g = Guarded::<N>::new();
    let ret = xen_version_into(cmd, g.ptr());
    let bytes = g.bytes();
    let nul = bytes.iter().position(|&b| b == 0);
    canary(c, format_args!("xen_version({name})"), &g);
    c.check(
        format_args!("xen_version({name}) returns 0 and a string ending inside its {N} bytes"),
        ret == 0 && nul.is_some(),
        format_args!("returned {}, NUL at {nul:?}", Ret(ret)),
    );
    refuses(c, t, &XenVersion(name), N as u64, REFUSED, |ptr| {
        (xen_version_into(cmd, ptr), true)
    });
}

fn xen_version(c: &mut Checks, t: &BadTargets) {
    // Sizes from Xen's public/version.h.
    xen_version_string::<16>(c, t, "XENVER_extraversion", XENVER_EXTRAVERSION);
    xen_version_string::<144>(c, t, "XENVER_compile_info", XENVER_COMPILE_INFO);
    xen_version_string::<1024>(c, t, "XENVER_capabilities", XENVER_CAPABILITIES);
    xen_version_string::<64>(c, t, "XENVER_changeset", XENVER_CHANGESET);
    xen_version_string::<1024>(c, t, "XENVER_commandline", XENVER_COMMANDLINE);

    // Platform parameters: one u64 (virt_start).
    let mut g = Guarded::<8>::new();
    let ret = xen_version_into(XENVER_PLATFORM_PARAMETERS, g.ptr());
    canary(c, "xen_version(XENVER_platform_parameters)", &g);
    let virt_start = u64::from_le_bytes(g.bytes());
    c.check(
        "xen_version(XENVER_platform_parameters) gives the start of the hypervisor's range",
        ret == 0 && virt_start >= 0xffff_8000_0000_0000,
        format_args!("returned {}, virt_start {virt_start:#x}", Ret(ret)),
    );
    refuses(
        c,
        t,
        &XenVersion("XENVER_platform_parameters"),
        8,
        REFUSED,
        |ptr| (xen_version_into(XENVER_PLATFORM_PARAMETERS, ptr), true),
    );

    // Features: reads submap_idx, writes only submap.
    const FEATURES: usize = size_of::<XenFeatureInfo>();
    let mut g = Guarded::<FEATURES>::new();
    g.buf[..4].copy_from_slice(&0u32.to_le_bytes());
    let ret = xen_version_into(XENVER_GET_FEATURES, g.ptr());
    let fi: XenFeatureInfo = g.record();
    canary(c, "xen_version(XENVER_get_features)", &g);
    c.check(
        "xen_version(XENVER_get_features) of submap 0 keeps submap_idx, fills submap",
        ret == 0 && fi.submap_idx == 0 && fi.submap != u32::from_le_bytes([UNWRITTEN; 4]),
        format_args!(
            "returned {}, submap_idx {}, submap {:#x}",
            Ret(ret),
            fi.submap_idx,
            fi.submap
        ),
    );
}

/// `XENMEM_memory_map` with room for one entry: one RAM entry covering the reservation's
/// maximum, `nr_entries` 1, nothing after it.
fn memory_map(c: &mut Checks, t: &BadTargets) {
    const ENTRY: usize = size_of::<E820Entry>();
    let memory_map_into = |nr_entries: u32, buffer: u64| {
        let mut map = MemoryMap { nr_entries, buffer };
        let ret = call(
            HYPERVISOR_MEMORY_OP,
            [XENMEM_MEMORY_MAP.into(), &raw mut map as u64, 0, 0, 0],
        );
        (ret, map.nr_entries)
    };
    let mut g = Guarded::<ENTRY>::new();
    let (ret, n) = memory_map_into(1, g.ptr());
    let e: E820Entry = g.record();
    let (addr, size, kind) = (e.addr, e.size, e.kind);
    let max = mm::maximum_reservation();
    canary(c, "XENMEM_memory_map", &g);
    c.check(
        "XENMEM_memory_map with room for 1 entry: 1 RAM entry of the maximum reservation",
        ret == 0
            && n == 1
            && addr == 0
            && kind == E820_RAM
            && Ok(size) == u64::try_from(max).map(|m| m * PAGE),
        format_args!(
            "returned {}, nr_entries {n}, entry addr {addr:#x} size {size:#x} type {kind} \
             (maximum reservation {max} pages)",
            Ret(ret)
        ),
    );
    let mut g = Guarded::<ENTRY>::new();
    let (ret, n) = memory_map_into(0, g.ptr());
    c.check(
        "XENMEM_memory_map with room for 0 entries: EINVAL, nothing written",
        ret == -i64::from(EINVAL.code()) && n == 0 && g.bytes() == [UNWRITTEN; ENTRY],
        format_args!("returned {}, nr_entries {n}", Ret(ret)),
    );
    canary(c, "XENMEM_memory_map with room for 0 entries", &g);
    refuses(c, t, &"XENMEM_memory_map", ENTRY as u64, REFUSED, |ptr| {
        let (ret, n) = memory_map_into(1, ptr);
        // A refused call leaves nr_entries alone.
        (ret, n == 1)
    });
}

/// `XENMEM_XENIA_FRAME_COUNTS`: the record and nothing after it; the counts add up.
fn frame_counts(c: &mut Checks, t: &BadTargets) {
    const RECORD: usize = size_of::<XeniaFrameCounts>();
    let counts_into = |ptr: u64| {
        call(
            HYPERVISOR_MEMORY_OP,
            [XENMEM_XENIA_FRAME_COUNTS.into(), ptr, 0, 0, 0],
        )
    };
    let mut g = Guarded::<RECORD>::new();
    let ret = counts_into(g.ptr());
    let counts: XeniaFrameCounts = g.record();
    let sum: u64 = counts.by_type.iter().sum();
    canary(c, "XENMEM_XENIA_FRAME_COUNTS", &g);
    c.check(
        "XENMEM_XENIA_FRAME_COUNTS: the per-type counts add up to the total",
        ret == 0 && counts.total == sum && counts.total >= mm::nr_pages(),
        format_args!(
            "returned {}, total {}, sum by type {sum}, our pages {}",
            Ret(ret),
            counts.total,
            mm::nr_pages()
        ),
    );
    refuses(
        c,
        t,
        &"XENMEM_XENIA_FRAME_COUNTS",
        RECORD as u64,
        REFUSED,
        |ptr| (counts_into(ptr), true),
    );
}

fn gnttab(cmd: u32, op: u64) -> i64 {
    call(HYPERVISOR_GRANT_TABLE_OP, [cmd.into(), op, 1, 0, 0])
}

/// `GNTTABOP_setup_table`: with the table grown to two frames, asking for one writes one
/// frame number; a bad frame list is `GNTST_bad_virt_addr` and nothing is written.
fn setup_table(c: &mut Checks, t: &BadTargets) {
    let setup = |nr_frames: u32, frame_list: u64| {
        let mut s = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames,
            status: 0x7777,
            frame_list,
        };
        let ret = gnttab(GNTTABOP_SETUP_TABLE, &raw mut s as u64);
        (ret, s.status)
    };
    let mut q = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    let ret = gnttab(GNTTABOP_QUERY_SIZE, &raw mut q as u64);
    if ret != 0 || q.status != GNTST_OKAY {
        c.check(
            "query_size",
            false,
            format_args!("returned {}, status {}", Ret(ret), q.status),
        );
        return;
    }
    // Two frames when the table may have them, so that asking for one is a short list.
    let grown = q.max_nr_frames.min(2);
    let mut two = Guarded::<16>::new();
    let (ret, status) = setup(grown, two.ptr());
    canary(c, format_args!("setup_table({grown} frames)"), &two);
    let frames = two.bytes();
    let first = u64::from_le_bytes(frames[..8].try_into().unwrap_or([0; 8]));
    c.check(
        format_args!("setup_table({grown} frames)"),
        ret == 0
            && status == GNTST_OKAY
            && first != 0
            && first != u64::from_le_bytes([UNWRITTEN; 8]),
        format_args!("returned {}, status {status}, frame {first:#x}", Ret(ret)),
    );
    let mut one = Guarded::<8>::new();
    let (ret, status) = setup(1, one.ptr());
    canary(c, "setup_table(1 frame) of a larger table", &one);
    let got = u64::from_le_bytes(one.bytes());
    c.check(
        "setup_table(1 frame) of a larger table writes just the first frame",
        ret == 0 && status == GNTST_OKAY && got == first,
        format_args!(
            "returned {}, status {status}, frame {got:#x} (expected {first:#x})",
            Ret(ret)
        ),
    );
    refuses(
        c,
        t,
        &"setup_table(1 frame)",
        8,
        Refusal::Status(GNTST_BAD_VIRT_ADDR),
        |ptr| {
            // The call succeeds; the operation's status says the list was bad.
            let (ret, status) = setup(1, ptr);
            (if ret != 0 { ret } else { i64::from(status) }, true)
        },
    );
}

/// `mmu_update`'s `done` pointer receives a 4-byte count: 2 after two updates, nothing after
/// it; a bad `done` pointer fails the call before any update is made.
fn mmu_update_done(c: &mut Checks, t: &BadTargets) {
    // One of our frames (the scratch page's), whose M2P entry the updates rewrite.
    let pfn = (window_va(SCRATCH_SLOT) - VIRT_BASE) / PAGE;
    let mfn = mm::p2m(pfn);
    let machphys = |to: u64| MmuUpdate::new(MMU_MACHPHYS_UPDATE, mfn * PAGE, to);
    let update = |reqs: &[MmuUpdate], done: u64| {
        call(
            HYPERVISOR_MMU_UPDATE,
            [
                reqs.as_ptr() as u64,
                reqs.len() as u64,
                done,
                u64::from(DOMID_SELF),
                0,
            ],
        )
    };
    let mut g = Guarded::<4>::new();
    // Two updates that leave the entry as it is.
    let ret = update(&[machphys(pfn), machphys(pfn)], g.ptr());
    canary(c, "mmu_update's done", &g);
    let done = u32::from_le_bytes(g.bytes());
    c.check(
        "mmu_update of 2 requests reports done = 2",
        ret == 0 && done == 2 && mm::m2p(mfn) == Some(pfn),
        format_args!(
            "returned {}, done {done}, M2P entry {:?}",
            Ret(ret),
            mm::m2p(mfn)
        ),
    );
    // Each bad `done` comes with an update that would move the M2P entry: it must not happen.
    refuses(c, t, &"mmu_update's done", 4, REFUSED, |ptr| {
        let ret = update(&[machphys(pfn + 1)], ptr);
        let moved = mm::m2p(mfn) != Some(pfn);
        let _ = update(&[machphys(pfn)], 0);
        (ret, !moved)
    });
}

/// `XEN_SYSCTL_GETDOMAININFOLIST`: room for 0 records writes none; room for 1 writes ours
/// (dom0) and reports 1.
fn getdomaininfolist(c: &mut Checks, t: &BadTargets) {
    const RECORD: usize = size_of::<DomctlGetdomaininfo>();
    let list_op = |max_domains: u32, buffer: u64| {
        XenSysctl::new(
            XEN_SYSCTL_GETDOMAININFOLIST,
            &SysctlGetdomaininfolist {
                first_domain: 0,
                max_domains,
                buffer,
                num_domains: 0x7777,
                ..Default::default()
            },
        )
    };
    let mut none = Guarded::<RECORD>::new();
    let mut op = list_op(0, none.ptr());
    let ret = sysctl(&mut op);
    let l: SysctlGetdomaininfolist = op.payload();
    canary(c, "getdomaininfolist with room for 0", &none);
    c.check(
        "getdomaininfolist with room for 0 records: 0 reported, nothing written",
        ret == 0 && l.num_domains == 0 && none.bytes() == [UNWRITTEN; RECORD],
        format_args!("returned {}, num_domains {}", Ret(ret), l.num_domains),
    );
    let mut one = Guarded::<RECORD>::new();
    let mut op = list_op(1, one.ptr());
    let ret = sysctl(&mut op);
    let l: SysctlGetdomaininfolist = op.payload();
    let info: DomctlGetdomaininfo = one.record();
    canary(c, "getdomaininfolist with room for 1", &one);
    c.check(
        "getdomaininfolist with room for 1 record: 1 reported, domain 0",
        ret == 0 && l.num_domains == 1 && info.domain == 0 && info.tot_pages > 0,
        format_args!(
            "returned {}, num_domains {}, domain {} with {} pages",
            Ret(ret),
            l.num_domains,
            info.domain,
            info.tot_pages
        ),
    );
    refuses(c, t, &"getdomaininfolist", RECORD as u64, REFUSED, |ptr| {
        let mut op = list_op(1, ptr);
        let before = op;
        let ret = sysctl(&mut op);
        (ret, op == before)
    });
}
