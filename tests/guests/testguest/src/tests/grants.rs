//! `grants`: grant tables, version 1 (guest-abi `grant`, Xen's `grant_table_op`), exercised by
//! one domain on its own grants, which Xen allows: dom0 is granter and mapper at once.
//!
//! Steps, one or more check lines each:
//!
//! 1. `GNTTABOP_query_size` gives sensible sizes; `GNTTABOP_setup_table` for one frame names
//!    an MFN (the same one when asked again), which the guest maps writable in a scratch
//!    window of its padding. Asking for more than `max_nr_frames` is `GNTST_general_error`, a
//!    `frame_list` in the hypervisor `GNTST_bad_virt_addr`, a domain that does not exist
//!    `GNTST_bad_domain` (dom0 is privileged; Xen looks the domain up before the permission
//!    check), and none of these changes the table's size.
//! 2. A fresh data frame is filled with a pattern through a window; grant entry 1 names it for
//!    domain 0 (frame and domid written first, then `flags = GTF_permit_access` after a
//!    release fence, as Xen guests do).
//! 3. `GNTTABOP_map_grant_ref` (ref 1, dom 0, `GNTMAP_host_map`) at a window slot emptied for
//!    it (its L1 exists, its entry is not present): `GNTST_okay` and a handle; the pattern reads
//!    through the new mapping, a write through it shows through the data window, and the entry
//!    now has `GTF_reading | GTF_writing`.
//! 4. Ending the grant while it is mapped fails: the guest's compare-and-swap of the
//!    flags/domid word from `(GTF_permit_access, 0)` to 0 finds the busy bits.
//! 5. `GNTTABOP_unmap_grant_ref` gives `GNTST_okay`; the address is unmapped again (a read
//!    faults with #PF, P clear); the busy bits are gone; ending the grant succeeds.
//! 6. A read-only grant (`GTF_readonly`) mapped without `GNTMAP_readonly` is refused
//!    (`GNTST_general_error`, as Xen); with it, the mapping works and is read-only (a write
//!    faults with #PF P|W), and unmaps.
//! 7. Bad arguments: a ref past the table (`GNTST_bad_gntref`), `dom = DOMID_SELF`
//!    (`GNTST_bad_domain`, Xen looks `dom` up as a real domain), an entry naming another
//!    domain (`GNTST_general_error`), unmapping a bogus or stale handle (`GNTST_bad_handle`),
//!    mapping at a hypervisor address or where no L1 table exists (`GNTST_general_error` or
//!    `GNTST_bad_virt_addr`); none of the refusals leaves a busy bit behind. A batch of a good
//!    and a bad map (and then unmap) gets one status per operation.
//! 8. `GNTTABOP_copy` of 64 bytes from grant ref 1 (source, at an offset) to another frame of
//!    the guest (dest as a machine frame with `DOMID_SELF`), and back from a frame into the
//!    grant: `GNTST_okay` and exactly those bytes moved; a granted end may name its domain as
//!    `DOMID_SELF` (Xen's copy accepts it); a copy into a read-only grant is
//!    `GNTST_general_error`; `offset + len > 4096` is `GNTST_bad_copy_arg`; no copy leaves a
//!    busy bit behind.
//! 9. With every grant ended and every window closed, both frames go back with
//!    `XENMEM_decrease_reservation`, and `XENMEM_XENIA_CHECK_FRAME_TABLE` finds the frame table
//!    consistent (0).

use core::sync::atomic::{AtomicU32, Ordering, fence};

use guest_abi::grant::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY, GNTST_BAD_COPY_ARG,
    GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_BAD_VIRT_ADDR, GNTST_GENERAL_ERROR,
    GNTST_OKAY, GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE,
    GNTTABOP_UNMAP_GRANT_REF, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef, GrantHandle, GrantRef,
};
use guest_abi::hypercall::{HYPERVISOR_GRANT_TABLE_OP, hypercall3};
use guest_abi::memory::XENMEM_DECREASE_RESERVATION;
use guest_abi::types::{DOMID_SELF, DomId};
use xenia_guest_rt::check::{Checks, Ret, error, note};
use xenia_guest_rt::mm::{self, INVALID_P2M, Window};
use xenia_guest_rt::trap::{PAGE_FAULT, Probe};
use xenia_guest_rt::{events, probe};

use super::{HYPERVISOR_IMAGE, PF_PRESENT, PF_USER, PF_WRITE, UNMAPPED};

/// The guest's own domain ID (it is booted as dom0).
const SELF_ID: DomId = 0;
/// Entries per version-1 grant frame.
const ENTRIES_PER_FRAME: u32 = 512;

/// Window slots: the grant table, the data frame, the copy destination, and the empty slot
/// grants are mapped at.
const SLOT_TABLE: usize = 0;
const SLOT_DATA: usize = 1;
const SLOT_DEST: usize = 2;
const SLOT_HOST: usize = 3;

/// Grant references the test uses.
const REF_RW: GrantRef = 1;
const REF_RO: GrantRef = 2;
const REF_OTHER: GrantRef = 3;

/// What the data frame holds: word `i` is `PATTERN | i`.
const PATTERN: u64 = 0xA5A5_0000_0000_0000;
/// What the test writes through the grant mapping.
const MAGIC: u64 = 0x6772_616E_7473_2121;
/// Word of the data frame the write goes to.
const MAGIC_WORD: u64 = 7;

/// `grant_table_op(cmd, ops, ops.len())`; returns `rax`.
///
/// # Safety
///
/// The operations' effect (mapping or unmapping a page, copying into a frame) must not change
/// memory Rust code uses.
pub(super) unsafe fn gnttab_op<T>(cmd: u32, ops: &mut [T]) -> i64 {
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

/// The name of a `GNTST_*` status.
fn st(s: i16) -> &'static str {
    match s {
        0 => "GNTST_okay",
        -1 => "GNTST_general_error",
        -2 => "GNTST_bad_domain",
        -3 => "GNTST_bad_gntref",
        -4 => "GNTST_bad_handle",
        -5 => "GNTST_bad_virt_addr",
        -6 => "GNTST_bad_dev_addr",
        -7 => "GNTST_no_device_space",
        -8 => "GNTST_permission_denied",
        -9 => "GNTST_bad_page",
        -10 => "GNTST_bad_copy_arg",
        -11 => "GNTST_address_too_big",
        -12 => "GNTST_eagain",
        -13 => "GNTST_no_space",
        _ => "unknown status",
    }
}

/// Checks that a hypercall returned 0 and the operation's status is one of `want`.
fn status(c: &mut Checks, what: impl core::fmt::Display, ret: i64, got: i16, want: &[i16]) -> bool {
    c.check(
        what,
        ret == 0 && want.contains(&got),
        format_args!(
            "hypercall returned {}, status {got} ({}), expected {}{}",
            Ret(ret),
            st(got),
            want[0],
            if want.len() > 1 {
                " or another listed code"
            } else {
                ""
            }
        ),
    )
}

/// The grant table as mapped in its window.
pub(super) struct Table {
    pub(super) va: u64,
}

impl Table {
    fn word(&self, r: GrantRef) -> *mut u32 {
        assert!(r < ENTRIES_PER_FRAME);
        (self.va + 8 * u64::from(r)) as *mut u32
    }

    /// Entry `r`'s `flags`.
    pub(super) fn flags(&self, r: GrantRef) -> u16 {
        // SAFETY: the table frame is mapped writable in its window for the whole test; the
        // hypervisor changes the word only with atomic operations.
        unsafe { (self.word(r) as *const u16).read_volatile() }
    }

    /// Grants `frame` to `domid` in entry `r`: frame and domid first, a release fence, then
    /// `flags` (Xen's `gnttab_grant_foreign_access_ref`).
    pub(super) fn grant(&self, r: GrantRef, domid: DomId, frame: u64, flags: u16) {
        let w = self.word(r);
        // SAFETY: as in `flags`; the entry is not in use, so the hypervisor does not write it.
        unsafe {
            w.add(1).write_volatile(frame as u32);
            (w as *mut u16).add(1).write_volatile(domid);
        }
        fence(Ordering::Release);
        // SAFETY: as above.
        unsafe { (w as *mut u16).write_volatile(flags) };
    }

    /// Ends grant `r` as Xen's `gnttab_end_foreign_access_ref` does for version 1: one
    /// compare-and-swap of the flags/domid word from `(flags, domid)` to 0, which fails if the
    /// hypervisor has set a busy bit. Returns the word found.
    pub(super) fn end(&self, r: GrantRef, flags: u16, domid: DomId) -> Result<u32, u32> {
        let expected = u32::from(flags) | u32::from(domid) << 16;
        // SAFETY: the word is 4-byte aligned and mapped writable for the whole test; the
        // hypervisor accesses it only atomically.
        let word = unsafe { AtomicU32::from_ptr(self.word(r)) };
        word.compare_exchange(expected, 0, Ordering::SeqCst, Ordering::SeqCst)
    }
}

/// `GNTTABOP_map_grant_ref` of one operation; returns `rax` and the operation.
pub(super) fn map(
    host_addr: u64,
    flags: u32,
    gref: GrantRef,
    dom: DomId,
) -> (i64, GnttabMapGrantRef) {
    let mut op = [GnttabMapGrantRef {
        host_addr,
        flags,
        gref,
        dom,
        status: 0x7777,
        handle: 0xFFFF_FFFF,
        dev_bus_addr: 0,
    }];
    // SAFETY: host_addr is a window slot of the padding, which Rust code does not use, or an
    // address the hypervisor must refuse.
    let ret = unsafe { gnttab_op(GNTTABOP_MAP_GRANT_REF, &mut op) };
    (ret, op[0])
}

/// `GNTTABOP_unmap_grant_ref` of one operation; returns `rax` and the status.
pub(super) fn unmap(host_addr: u64, handle: GrantHandle) -> (i64, i16) {
    let mut op = [GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr: 0,
        handle,
        status: 0x7777,
    }];
    // SAFETY: nothing but the test's probes uses the grant mapping at host_addr.
    let ret = unsafe { gnttab_op(GNTTABOP_UNMAP_GRANT_REF, &mut op) };
    (ret, op[0].status)
}

/// `GNTTABOP_copy` of one operation; returns `rax` and the status.
fn copy(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> (i64, i16) {
    let mut op = [GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 0x7777,
    }];
    // SAFETY: the frames copied into are the test's data and destination frames, which Rust
    // code reaches only through volatile window accesses.
    let ret = unsafe { gnttab_op(GNTTABOP_COPY, &mut op) };
    (ret, op[0].status)
}

/// A load from `va`, expecting a page fault.
fn read_probe(va: u64) -> (Probe, u64) {
    let mut v: u64 = 0;
    // SAFETY: a load from an address the test owns (a window slot); at worst it reads.
    let p =
        unsafe { probe!(PAGE_FAULT, "mov {v}, qword ptr [{a}]"; a = in(reg) va, v = inout(reg) v) };
    (p, v)
}

/// A store to `va`, expecting a page fault.
fn write_probe(va: u64, value: u64) -> Probe {
    // SAFETY: a store to the test's read-only grant mapping of its own data frame; if it is
    // wrongly writable, it changes only that frame, which the test then reports.
    unsafe { probe!(PAGE_FAULT, "mov qword ptr [{a}], {v}"; a = in(reg) va, v = in(reg) value) }
}

/// Checks that probe `p` of `va` took a #PF with exactly the error bits `want` (among P, W, U).
fn check_pf(c: &mut Checks, what: &str, p: &Probe, va: u64, want: u64) -> bool {
    match p.caught {
        None => c.check(what, false, format_args!("no #PF: the access completed")),
        Some(e) => {
            let bits = e.regs.error_code & (PF_PRESENT | PF_WRITE | PF_USER);
            c.check(
                what,
                e.regs.vector == u64::from(PAGE_FAULT)
                    && e.cr2 == va
                    && bits == want
                    && e.regs.rip == p.insn_rip,
                format_args!(
                    "vector {} error code {:#x} (expected P/W/U {want:#x}) cr2 {:#x} (expected \
                     {va:#x}) rip {:#x} (expected {:#x})",
                    e.regs.vector, e.regs.error_code, e.cr2, e.regs.rip, p.insn_rip
                ),
            )
        }
    }
}

fn check_flags(c: &mut Checks, what: &str, t: &Table, r: GrantRef, want: u16) -> bool {
    let got = t.flags(r);
    c.check(
        what,
        got == want,
        format_args!("flags {got:#x}, expected {want:#x}"),
    )
}

fn window(what: &str, w: Result<Window, i64>) -> Window {
    w.unwrap_or_else(|e| error(format_args!("cannot open the {what} window: {}", Ret(e))))
}

/// The test.
pub fn run() -> ! {
    events::unmask_and_deliver();
    let mut c = Checks::new();

    // 1. Sizes and the table frame.
    let mut q = [GnttabQuerySize {
        dom: DOMID_SELF,
        status: 0x7777,
        ..Default::default()
    }];
    // SAFETY: a query; it only writes the structure.
    let ret = unsafe { gnttab_op(GNTTABOP_QUERY_SIZE, &mut q) };
    let q0 = q[0];
    c.check(
        "query_size: okay, 1 <= max_nr_frames, nr_frames <= max_nr_frames",
        ret == 0
            && q0.status == GNTST_OKAY
            && q0.max_nr_frames >= 1
            && q0.nr_frames <= q0.max_nr_frames,
        format_args!(
            "returned {}, status {} ({}), nr_frames {}, max_nr_frames {}",
            Ret(ret),
            q0.status,
            st(q0.status),
            q0.nr_frames,
            q0.max_nr_frames
        ),
    );
    note(format_args!(
        "query_size before setup: nr_frames {} max_nr_frames {}",
        q0.nr_frames, q0.max_nr_frames
    ));

    let mut frame_list = [u64::MAX; 1];
    let mut s = [GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        status: 0x7777,
        frame_list: frame_list.as_mut_ptr() as u64,
    }];
    // SAFETY: the hypervisor writes one frame number into frame_list, borrowed for the call.
    let ret = unsafe { gnttab_op(GNTTABOP_SETUP_TABLE, &mut s) };
    let table_mfn = frame_list[0];
    if !status(
        &mut c,
        "setup_table(DOMID_SELF, 1 frame)",
        ret,
        s[0].status,
        &[GNTST_OKAY],
    ) || table_mfn == u64::MAX
        || table_mfn == 0
    {
        error(format_args!(
            "setup_table gave no table frame (frame_list[0] = {table_mfn:#x})"
        ));
    }
    note(format_args!("grant table frame: mfn {table_mfn:#x}"));

    // SAFETY: read-only query.
    let ret = unsafe { gnttab_op(GNTTABOP_QUERY_SIZE, &mut q) };
    let q1 = q[0];
    c.check(
        "query_size after setup: nr_frames >= 1",
        ret == 0 && q1.status == GNTST_OKAY && q1.nr_frames >= 1,
        format_args!(
            "returned {}, status {} ({}), nr_frames {}, max_nr_frames {}",
            Ret(ret),
            q1.status,
            st(q1.status),
            q1.nr_frames,
            q1.max_nr_frames
        ),
    );
    let nr_frames = q1.nr_frames.max(1);

    // SAFETY: as above; the hypervisor writes at most one frame number.
    let setup = |dom: DomId, nr_frames: u32, list: &mut [u64; 1]| unsafe {
        let mut s = [GnttabSetupTable {
            dom,
            nr_frames,
            status: 0x7777,
            frame_list: list.as_mut_ptr() as u64,
        }];
        let ret = gnttab_op(GNTTABOP_SETUP_TABLE, &mut s);
        (ret, s[0].status)
    };
    let mut again = [u64::MAX; 1];
    let (ret, s) = setup(DOMID_SELF, 1, &mut again);
    c.check(
        "setup_table(1 frame) again names the same frame",
        ret == 0 && s == GNTST_OKAY && again[0] == table_mfn,
        format_args!(
            "returned {}, status {s} ({}), frame {:#x}, expected {table_mfn:#x}",
            Ret(ret),
            st(s),
            again[0]
        ),
    );
    let too_many = q1.max_nr_frames.saturating_add(1);
    let (ret, s) = setup(DOMID_SELF, too_many, &mut again);
    status(
        &mut c,
        format_args!("setup_table({too_many} frames, past max_nr_frames): general_error"),
        ret,
        s,
        &[GNTST_GENERAL_ERROR],
    );
    let bad_list = {
        let mut s = [GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 1,
            status: 0x7777,
            frame_list: HYPERVISOR_IMAGE,
        }];
        // SAFETY: the frame list is a hypervisor address, which the hypervisor must not write.
        let ret = unsafe { gnttab_op(GNTTABOP_SETUP_TABLE, &mut s) };
        (ret, s[0].status)
    };
    status(
        &mut c,
        "setup_table with frame_list in the hypervisor: bad_virt_addr",
        bad_list.0,
        bad_list.1,
        &[GNTST_BAD_VIRT_ADDR],
    );
    let (ret, s) = setup(7, 1, &mut again);
    status(
        &mut c,
        "setup_table(dom 7, which does not exist): bad_domain",
        ret,
        s,
        &[GNTST_BAD_DOMAIN],
    );
    let mut q7 = [GnttabQuerySize {
        dom: 7,
        status: 0x7777,
        ..Default::default()
    }];
    // SAFETY: a query; it only writes the structure.
    let ret = unsafe { gnttab_op(GNTTABOP_QUERY_SIZE, &mut q7) };
    status(
        &mut c,
        "query_size(dom 7, which does not exist): bad_domain",
        ret,
        q7[0].status,
        &[GNTST_BAD_DOMAIN],
    );
    // SAFETY: a query; it only writes the structure.
    let ret = unsafe { gnttab_op(GNTTABOP_QUERY_SIZE, &mut q) };
    c.check(
        "the refused setups left the table at its size",
        ret == 0 && q[0].nr_frames == q1.nr_frames,
        format_args!("nr_frames {} (was {})", q[0].nr_frames, q1.nr_frames),
    );

    // SAFETY: the slot is this test's; the table frame is the domain's.
    let tw = unsafe { Window::writable(SLOT_TABLE, table_mfn) };
    c.check(
        "the table frame maps writable (update_va_mapping)",
        tw.is_ok(),
        format_args!("returned {}", Ret(*tw.as_ref().err().unwrap_or(&0))),
    );
    let tw = window("grant table", tw);
    let table = Table { va: tw.va() };
    let mut zero = true;
    for r in 0..ENTRIES_PER_FRAME {
        zero &= table.flags(r) == 0;
    }
    note(format_args!("all entry flags zero at start: {zero}"));

    // 2. The data frame and grant 1.
    let Some((data_pfn, data_mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame for the data"));
    };
    let Some((dest_pfn, dest_mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame for the copy destination"));
    };
    // SAFETY: the slot is this test's; the frame is fresh.
    let dw = window("data", unsafe { Window::writable(SLOT_DATA, data_mfn) });
    for i in 0..512 {
        dw.write(8 * i, PATTERN | i);
    }
    table.grant(REF_RW, SELF_ID, data_mfn, GTF_PERMIT_ACCESS);
    check_flags(
        &mut c,
        "grant 1 written: flags GTF_permit_access",
        &table,
        REF_RW,
        GTF_PERMIT_ACCESS,
    );

    // 3. Map it.
    // SAFETY: the slot is this test's; emptying it unmaps a padding page nothing uses.
    let hw = window("host", unsafe { Window::open(SLOT_HOST, 0) });
    let host = hw.va();
    let (ret, op) = map(host, GNTMAP_HOST_MAP, REF_RW, SELF_ID);
    let mapped = status(
        &mut c,
        "map_grant_ref(ref 1, dom 0, host_map) at an empty slot",
        ret,
        op.status,
        &[GNTST_OKAY],
    );
    let handle = op.handle;
    if mapped {
        note(format_args!("handle {handle:#x}, host_addr {host:#x}"));
        let (p, v) = read_probe(host);
        c.check(
            "the pattern reads through host_addr",
            p.caught.is_none() && v == PATTERN,
            format_args!("read {v:#x} (faulted: {})", p.caught.is_some()),
        );
        let (p, v) = read_probe(host + 8 * 300);
        c.check(
            "word 300 reads through host_addr",
            p.caught.is_none() && v == PATTERN | 300,
            format_args!("read {v:#x} (faulted: {})", p.caught.is_some()),
        );
        let p = write_probe(host + 8 * MAGIC_WORD, MAGIC);
        let seen = dw.read(8 * MAGIC_WORD);
        c.check(
            "a write through host_addr shows through the data window",
            p.caught.is_none() && seen == MAGIC,
            format_args!(
                "data window reads {seen:#x} (faulted: {})",
                p.caught.is_some()
            ),
        );
        check_flags(
            &mut c,
            "entry 1 now has GTF_reading|GTF_writing",
            &table,
            REF_RW,
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        );

        // 4. Ending it while mapped fails.
        let r = table.end(REF_RW, GTF_PERMIT_ACCESS, SELF_ID);
        c.check(
            "ending grant 1 while mapped fails (cmpxchg finds the busy bits)",
            matches!(r, Err(w) if w & u32::from(GTF_READING | GTF_WRITING) != 0),
            format_args!("cmpxchg gave {r:x?}"),
        );
        check_flags(
            &mut c,
            "entry 1 is unchanged by the failed end",
            &table,
            REF_RW,
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        );

        // 5. Unmap.
        let (ret, s) = unmap(host, handle);
        status(
            &mut c,
            "unmap_grant_ref(host_addr, handle)",
            ret,
            s,
            &[GNTST_OKAY],
        );
        let (p, _) = read_probe(host);
        check_pf(
            &mut c,
            "host_addr is unmapped: a read faults (#PF, P clear)",
            &p,
            host,
            0,
        );
        check_flags(
            &mut c,
            "entry 1's busy bits are clear after unmap",
            &table,
            REF_RW,
            GTF_PERMIT_ACCESS,
        );
        let r = table.end(REF_RW, GTF_PERMIT_ACCESS, SELF_ID);
        c.check(
            "ending grant 1 now succeeds",
            r.is_ok() && table.flags(REF_RW) == 0,
            format_args!("cmpxchg gave {r:x?}, flags now {:#x}", table.flags(REF_RW)),
        );
        let (ret, s) = unmap(host, handle);
        status(
            &mut c,
            "unmapping the same handle again: bad_handle",
            ret,
            s,
            &[GNTST_BAD_HANDLE],
        );
    }

    // 6. A read-only grant.
    table.grant(REF_RO, SELF_ID, data_mfn, GTF_PERMIT_ACCESS | GTF_READONLY);
    let (ret, op) = map(host, GNTMAP_HOST_MAP, REF_RO, SELF_ID);
    status(
        &mut c,
        "map of a read-only grant without GNTMAP_readonly is refused",
        ret,
        op.status,
        &[GNTST_GENERAL_ERROR],
    );
    check_flags(
        &mut c,
        "the refused map left entry 2 alone",
        &table,
        REF_RO,
        GTF_PERMIT_ACCESS | GTF_READONLY,
    );
    let (ret, op) = map(host, GNTMAP_HOST_MAP | GNTMAP_READONLY, REF_RO, SELF_ID);
    if status(
        &mut c,
        "map of the read-only grant with GNTMAP_readonly",
        ret,
        op.status,
        &[GNTST_OKAY],
    ) {
        let (p, v) = read_probe(host);
        c.check(
            "the pattern reads through the read-only mapping",
            p.caught.is_none() && v == PATTERN,
            format_args!("read {v:#x} (faulted: {})", p.caught.is_some()),
        );
        check_flags(
            &mut c,
            "entry 2 now has GTF_reading, not GTF_writing",
            &table,
            REF_RO,
            GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING,
        );
        let p = write_probe(host + 8, 0xBAD);
        check_pf(
            &mut c,
            "a write through the read-only mapping faults (#PF P|W)",
            &p,
            host + 8,
            PF_PRESENT | PF_WRITE,
        );
        let seen = dw.read(8);
        c.check(
            "the data frame is unchanged by the refused write",
            seen == PATTERN | 1,
            format_args!("word 1 reads {seen:#x}"),
        );
        let (ret, s) = unmap(host, op.handle);
        status(
            &mut c,
            "unmap of the read-only mapping",
            ret,
            s,
            &[GNTST_OKAY],
        );
        check_flags(
            &mut c,
            "entry 2's busy bits are clear after unmap",
            &table,
            REF_RO,
            GTF_PERMIT_ACCESS | GTF_READONLY,
        );
    }
    let r = table.end(REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY, SELF_ID);
    c.check(
        "ending grant 2 succeeds",
        r.is_ok(),
        format_args!("cmpxchg gave {r:x?}"),
    );

    // 7. Bad arguments.
    table.grant(REF_RW, SELF_ID, data_mfn, GTF_PERMIT_ACCESS);
    let past = nr_frames * ENTRIES_PER_FRAME;
    let (ret, op) = map(host, GNTMAP_HOST_MAP, past, SELF_ID);
    status(
        &mut c,
        format_args!("map of ref {past} (past the table): bad_gntref"),
        ret,
        op.status,
        &[GNTST_BAD_GNTREF],
    );
    let (ret, op) = map(host, GNTMAP_HOST_MAP, 0xFFFF_FFF0, SELF_ID);
    status(
        &mut c,
        "map of ref 0xfffffff0: bad_gntref",
        ret,
        op.status,
        &[GNTST_BAD_GNTREF],
    );
    let (ret, op) = map(host, GNTMAP_HOST_MAP, REF_RW, DOMID_SELF);
    status(
        &mut c,
        "map with dom = DOMID_SELF: bad_domain (Xen looks dom up by ID)",
        ret,
        op.status,
        &[GNTST_BAD_DOMAIN],
    );
    table.grant(REF_OTHER, 7, data_mfn, GTF_PERMIT_ACCESS);
    let (ret, op) = map(host, GNTMAP_HOST_MAP, REF_OTHER, SELF_ID);
    status(
        &mut c,
        "map of an entry naming domain 7: general_error",
        ret,
        op.status,
        &[GNTST_GENERAL_ERROR],
    );
    check_flags(
        &mut c,
        "the refused map left entry 3 alone",
        &table,
        REF_OTHER,
        GTF_PERMIT_ACCESS,
    );
    let r = table.end(REF_OTHER, GTF_PERMIT_ACCESS, 7);
    c.check(
        "ending grant 3 succeeds",
        r.is_ok(),
        format_args!("cmpxchg gave {r:x?}"),
    );
    let (ret, s) = unmap(host, 0xBAD);
    status(
        &mut c,
        "unmap with bogus handle 0xbad: bad_handle",
        ret,
        s,
        &[GNTST_BAD_HANDLE],
    );
    let (ret, s) = unmap(host, 0xFFFF_FFFF);
    status(
        &mut c,
        "unmap with bogus handle 0xffffffff: bad_handle",
        ret,
        s,
        &[GNTST_BAD_HANDLE],
    );
    let (ret, op) = map(HYPERVISOR_IMAGE, GNTMAP_HOST_MAP, REF_RW, SELF_ID);
    status(
        &mut c,
        format_args!("map at hypervisor address {HYPERVISOR_IMAGE:#x}: refused"),
        ret,
        op.status,
        &[GNTST_GENERAL_ERROR, GNTST_BAD_VIRT_ADDR],
    );
    note(format_args!(
        "map at the hypervisor address: status {} ({})",
        op.status,
        st(op.status)
    ));
    if op.status == GNTST_OKAY {
        let _ = unmap(HYPERVISOR_IMAGE, op.handle);
    }
    let (ret, op) = map(UNMAPPED, GNTMAP_HOST_MAP, REF_RW, SELF_ID);
    status(
        &mut c,
        format_args!("map at {UNMAPPED:#x}, which has no L1 table: refused"),
        ret,
        op.status,
        &[GNTST_GENERAL_ERROR, GNTST_BAD_VIRT_ADDR],
    );
    note(format_args!(
        "map where no L1 exists: status {} ({})",
        op.status,
        st(op.status)
    ));
    if op.status == GNTST_OKAY {
        let _ = unmap(UNMAPPED, op.handle);
    }
    // Over a present entry (a padding page of the still unused destination slot): Xen's
    // `create_grant_va_mapping` replaces the old entry; Xenia asks for an empty one. Not a
    // check, only what happened: either answer leaves the slot usable for step 8.
    let present = mm::window_va(SLOT_DEST);
    let (ret, op) = map(present, GNTMAP_HOST_MAP, REF_RW, SELF_ID);
    note(format_args!(
        "map over a present entry: returned {}, status {} ({})",
        Ret(ret),
        op.status,
        st(op.status)
    ));
    if ret == 0 && op.status == GNTST_OKAY {
        let (ret, s) = unmap(present, op.handle);
        status(
            &mut c,
            "unmap of the mapping over a present entry",
            ret,
            s,
            &[GNTST_OKAY],
        );
    }
    // A batch: one good and one bad map, then one good and one bad unmap; each operation
    // has its own status.
    let mut ops = [
        GnttabMapGrantRef {
            host_addr: host,
            flags: GNTMAP_HOST_MAP,
            gref: REF_RW,
            dom: SELF_ID,
            status: 0x7777,
            ..Default::default()
        },
        GnttabMapGrantRef {
            host_addr: host,
            flags: GNTMAP_HOST_MAP,
            gref: past,
            dom: SELF_ID,
            status: 0x7777,
            ..Default::default()
        },
    ];
    // SAFETY: the first operation maps the test's own frame at the emptied slot; the second
    // must be refused.
    let ret = unsafe { gnttab_op(GNTTABOP_MAP_GRANT_REF, &mut ops) };
    c.check(
        "a batch of two maps (ref 1, ref past the table): okay, bad_gntref",
        ret == 0 && ops[0].status == GNTST_OKAY && ops[1].status == GNTST_BAD_GNTREF,
        format_args!(
            "returned {}, statuses {} ({}), {} ({})",
            Ret(ret),
            ops[0].status,
            st(ops[0].status),
            ops[1].status,
            st(ops[1].status)
        ),
    );
    if ret == 0 && ops[0].status == GNTST_OKAY {
        let (p, v) = read_probe(host + 8 * MAGIC_WORD);
        c.check(
            "the batch's mapping works",
            p.caught.is_none() && v == MAGIC,
            format_args!("read {v:#x} (faulted: {})", p.caught.is_some()),
        );
        let mut un = [
            GnttabUnmapGrantRef {
                host_addr: host,
                handle: ops[0].handle,
                status: 0x7777,
                ..Default::default()
            },
            GnttabUnmapGrantRef {
                host_addr: host,
                handle: 0xBAD,
                status: 0x7777,
                ..Default::default()
            },
        ];
        // SAFETY: nothing but the probes uses the mapping at host.
        let ret = unsafe { gnttab_op(GNTTABOP_UNMAP_GRANT_REF, &mut un) };
        c.check(
            "a batch of two unmaps (the handle, a bogus one): okay, bad_handle",
            ret == 0 && un[0].status == GNTST_OKAY && un[1].status == GNTST_BAD_HANDLE,
            format_args!(
                "returned {}, statuses {} ({}), {} ({})",
                Ret(ret),
                un[0].status,
                st(un[0].status),
                un[1].status,
                st(un[1].status)
            ),
        );
    }
    check_flags(
        &mut c,
        "the refused maps left entry 1 without busy bits",
        &table,
        REF_RW,
        GTF_PERMIT_ACCESS,
    );

    // 8. Copy.
    // SAFETY: the slot is this test's; the frame is fresh.
    let cw = window("copy destination", unsafe {
        Window::writable(SLOT_DEST, dest_mfn)
    });
    for i in 0..512 {
        cw.write(8 * i, 0);
    }
    let (ret, s) = copy(
        GnttabCopyPtr::from_gref(REF_RW, SELF_ID, 128),
        GnttabCopyPtr::from_gmfn(dest_mfn, 256),
        64,
        GNTCOPY_SOURCE_GREF,
    );
    status(
        &mut c,
        "copy 64 bytes: grant 1 offset 128 -> own frame (gmfn, DOMID_SELF) offset 256",
        ret,
        s,
        &[GNTST_OKAY],
    );
    let mut wrong = None;
    for i in 0..512u64 {
        let want = if (32..40).contains(&i) {
            PATTERN | (i - 16)
        } else {
            0
        };
        let got = cw.read(8 * i);
        if got != want && wrong.is_none() {
            wrong = Some((i, got, want));
        }
    }
    c.check(
        "exactly the 64 bytes arrived",
        wrong.is_none(),
        format_args!("first wrong word {wrong:x?} (index, got, expected)"),
    );
    check_flags(
        &mut c,
        "the copy left entry 1 without busy bits",
        &table,
        REF_RW,
        GTF_PERMIT_ACCESS,
    );

    for i in 0..8 {
        cw.write(8 * (100 + i), MAGIC ^ i);
    }
    let (ret, s) = copy(
        GnttabCopyPtr::from_gmfn(dest_mfn, 800),
        GnttabCopyPtr::from_gref(REF_RW, SELF_ID, 2048),
        64,
        GNTCOPY_DEST_GREF,
    );
    status(
        &mut c,
        "copy 64 bytes: own frame offset 800 -> grant 1 offset 2048",
        ret,
        s,
        &[GNTST_OKAY],
    );
    let mut wrong = None;
    for i in 0..512u64 {
        let want = match i {
            256..264 => MAGIC ^ (i - 256),
            MAGIC_WORD => MAGIC,
            _ => PATTERN | i,
        };
        let got = dw.read(8 * i);
        if got != want && wrong.is_none() {
            wrong = Some((i, got, want));
        }
    }
    c.check(
        "exactly the 64 bytes arrived in the granted frame",
        wrong.is_none(),
        format_args!("first wrong word {wrong:x?} (index, got, expected)"),
    );

    let (ret, s) = copy(
        GnttabCopyPtr::from_gref(REF_RW, DOMID_SELF, 0),
        GnttabCopyPtr::from_gmfn(dest_mfn, 1024),
        8,
        GNTCOPY_SOURCE_GREF,
    );
    let got = cw.read(1024);
    c.check(
        "copy from grant 1 named with domid DOMID_SELF (Xen accepts it for copy)",
        ret == 0 && s == GNTST_OKAY && got == PATTERN,
        format_args!(
            "returned {}, status {s} ({}), word read {got:#x}",
            Ret(ret),
            st(s)
        ),
    );
    cw.write(1024, 0);
    table.grant(REF_RO, SELF_ID, data_mfn, GTF_PERMIT_ACCESS | GTF_READONLY);
    let (ret, s) = copy(
        GnttabCopyPtr::from_gmfn(dest_mfn, 0),
        GnttabCopyPtr::from_gref(REF_RO, SELF_ID, 0),
        8,
        GNTCOPY_DEST_GREF,
    );
    status(
        &mut c,
        "copy into a read-only grant: general_error",
        ret,
        s,
        &[GNTST_GENERAL_ERROR],
    );
    let (w0, f2) = (dw.read(0), table.flags(REF_RO));
    c.check(
        "the refused copy changed nothing and left entry 2 alone",
        w0 == PATTERN && f2 == GTF_PERMIT_ACCESS | GTF_READONLY,
        format_args!("data word 0 {w0:#x}, entry 2 flags {f2:#x}"),
    );
    // A copy names frames, not only grants: the caller's own page tables are never a
    // destination, in a call of many operations as of one (the hypervisor skips references
    // for a domain it keeps locked, and must still check the frame's use), and the refusal
    // leaves the call's other operations done.
    let l4 = mm::bootstrap_l4();
    let mut ops = [
        GnttabCopy {
            source: GnttabCopyPtr::from_gref(REF_RW, SELF_ID, 0),
            dest: GnttabCopyPtr::from_gmfn(dest_mfn, 1024),
            len: 8,
            flags: GNTCOPY_SOURCE_GREF,
            status: 0x7777,
        },
        GnttabCopy {
            source: GnttabCopyPtr::from_gref(REF_RW, SELF_ID, 0),
            // An unused slot of the L4 (entry 300): an accepted copy would make it present.
            dest: GnttabCopyPtr::from_gmfn(l4, 8 * 300),
            len: 8,
            flags: GNTCOPY_SOURCE_GREF,
            status: 0x7777,
        },
        GnttabCopy {
            // Entry 511, which maps the kernel: present, so not zero.
            source: GnttabCopyPtr::from_gmfn(l4, 8 * 511),
            dest: GnttabCopyPtr::from_gmfn(dest_mfn, 1032),
            len: 8,
            flags: 0,
            status: 0x7777,
        },
    ];
    // SAFETY: the frames written are the test's destination frame (or, if the hypervisor
    // were wrong, an unused L4 slot, which this check reports).
    let ret = unsafe { gnttab_op(GNTTABOP_COPY, &mut ops) };
    let st3 = [ops[0].status, ops[1].status, ops[2].status];
    let (got, l4_copy) = (cw.read(1024), cw.read(1032));
    c.check(
        "three copies in one call: into own frame ok, into own L4 general_error, out of own L4 ok",
        ret == 0
            && st3 == [GNTST_OKAY, GNTST_GENERAL_ERROR, GNTST_OKAY]
            && got == PATTERN
            && l4_copy != 0,
        format_args!(
            "returned {}, statuses {st3:?}, words copied {got:#x} {l4_copy:#x}",
            Ret(ret)
        ),
    );
    cw.write(1024, 0);
    cw.write(1032, 0);
    check_flags(
        &mut c,
        "the call left entry 1 without busy bits",
        &table,
        REF_RW,
        GTF_PERMIT_ACCESS,
    );
    let r = table.end(REF_RO, GTF_PERMIT_ACCESS | GTF_READONLY, SELF_ID);
    c.check(
        "ending grant 2 again succeeds",
        r.is_ok(),
        format_args!("cmpxchg gave {r:x?}"),
    );
    let (ret, s) = copy(
        GnttabCopyPtr::from_gref(REF_RW, SELF_ID, 4090),
        GnttabCopyPtr::from_gmfn(dest_mfn, 0),
        64,
        GNTCOPY_SOURCE_GREF,
    );
    status(
        &mut c,
        "copy with source offset 4090 + len 64 > 4096: bad_copy_arg",
        ret,
        s,
        &[GNTST_BAD_COPY_ARG],
    );
    let (ret, s) = copy(
        GnttabCopyPtr::from_gmfn(dest_mfn, 0),
        GnttabCopyPtr::from_gref(REF_RW, SELF_ID, 4033),
        64,
        GNTCOPY_DEST_GREF,
    );
    status(
        &mut c,
        "copy with dest offset 4033 + len 64 > 4096: bad_copy_arg",
        ret,
        s,
        &[GNTST_BAD_COPY_ARG],
    );
    let first = cw.read(0);
    c.check(
        "the refused copies changed nothing",
        first == 0 && dw.read(8 * 511) == PATTERN | 511,
        format_args!(
            "dest word 0 {first:#x}, data word 511 {:#x}",
            dw.read(8 * 511)
        ),
    );
    check_flags(
        &mut c,
        "the refused copies left entry 1 without busy bits",
        &table,
        REF_RW,
        GTF_PERMIT_ACCESS,
    );

    // 9. End everything, give the frames back, check the frame table.
    let r = table.end(REF_RW, GTF_PERMIT_ACCESS, SELF_ID);
    c.check(
        "ending grant 1 at the end succeeds",
        r.is_ok(),
        format_args!("cmpxchg gave {r:x?}"),
    );
    let closes = [cw.close(), dw.close(), hw.close(), tw.close()];
    c.check(
        "the windows close",
        closes.iter().all(|&r| r == 0),
        format_args!("returned {closes:?}"),
    );
    let mut extents = [data_mfn, dest_mfn];
    // SAFETY: both frames are mapped nowhere and granted to nobody any more.
    let ret = unsafe { mm::reservation(XENMEM_DECREASE_RESERVATION, &mut extents, DOMID_SELF) };
    c.check(
        "decrease_reservation gives back the data and destination frames",
        ret == 2,
        format_args!("returned {}", Ret(ret)),
    );
    if ret >= 1 {
        mm::set_p2m(data_pfn, INVALID_P2M);
    }
    if ret >= 2 {
        mm::set_p2m(dest_pfn, INVALID_P2M);
    }
    let ret = mm::check_frame_table();
    c.check(
        "XENMEM_XENIA_CHECK_FRAME_TABLE finds the frame table consistent",
        ret == 0,
        format_args!("returned {}", Ret(ret)),
    );
    c.finish()
}
