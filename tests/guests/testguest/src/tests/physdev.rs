//! `physdev_domu`: a domU may not touch physical devices (DESIGN.md §11). Every device
//! operation dom0 has must fail here: the `physdev_op` commands and `EVTCHNOP_bind_pirq` with
//! `EPERM` (leaving their arguments as they were), `mmu_update` on `DOMID_IO` with `EPERM`
//! whatever the frame, an I/O frame through an ordinary `update_va_mapping` with `EPERM`, an
//! exchange naming another domain with `EPERM`, and `in`/`out` on PCI configuration ports,
//! the keyboard controller and a PCI I/O BAR's range with #GP at the instruction.
//!
//! `XENMEM_exchange` of its own memory is every domain's (the red team's attacks, issue 15):
//! a pinned page table, a mapped frame, one frame listed twice in a chunk, a frame that is not
//! the domain's, and a chunk whose second extent is bad are refused with nothing exchanged
//! and every frame still where it was; a good exchange hands back zeroed frames, and the
//! frames given up can no longer be mapped.
//!
//! Run by dom0test's `devaccess_domu` as an unprivileged domU; its verdict is read from the
//! hypervisor's console ring.

use guest_abi::errno::Errno;
use guest_abi::event::{EVTCHNOP_BIND_PIRQ, EvtchnBindPirq};
use guest_abi::hypercall::{
    HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_MEMORY_OP, HYPERVISOR_PHYSDEV_OP, hypercall2,
};
use guest_abi::memory::{
    MMU_NORMAL_PT_UPDATE, MemoryExchange, MemoryReservation, MmuUpdate, UVMF_INVLPG, UVMF_LOCAL,
    XENMEM_EXCHANGE,
};
use guest_abi::physdev as pd;
use guest_abi::pte;
use guest_abi::types::{DOMID_IO, DOMID_SELF};
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::mm::{self, Window};
use xenia_guest_rt::trap::GENERAL_PROTECTION;
use xenia_guest_rt::{events, probe};

use super::{Want, check_exception};

/// QEMU `pc`'s standard VGA framebuffer (BAR0 of 00:02.0): device memory above RAM.
const VGA_FB_MFN: u64 = 0xFD000;
/// The local APIC's frame.
const LAPIC_MFN: u64 = 0xFEE00;

fn physdev<T>(cmd: u32, arg: &mut T) -> i64 {
    // SAFETY: the hypervisor reads and may write `arg`, borrowed for the call; a refused call
    // changes nothing.
    unsafe { hypercall2(HYPERVISOR_PHYSDEV_OP, cmd.into(), arg as *mut T as u64) }
}

pub fn run() -> ! {
    let mut c = Checks::new();
    events::mask();

    let mut gsi = pd::PhysdevSetupGsi {
        gsi: 11,
        triggering: pd::GSI_TRIGGER_LEVEL,
        polarity: pd::GSI_POLARITY_LOW,
        _pad0: 0,
    };
    c.errno(
        "PHYSDEVOP_setup_gsi from a domU",
        physdev(pd::PHYSDEVOP_SETUP_GSI, &mut gsi),
        Errno::EPERM,
    );
    let mut map = pd::PhysdevMapPirq {
        domid: DOMID_SELF,
        kind: pd::MAP_PIRQ_TYPE_GSI,
        index: 11,
        pirq: -1,
        ..Default::default()
    };
    let sent = map;
    c.errno(
        "PHYSDEVOP_map_pirq (GSI 11) from a domU",
        physdev(pd::PHYSDEVOP_MAP_PIRQ, &mut map),
        Errno::EPERM,
    );
    c.eq("the refused map_pirq wrote nothing back", map, sent);
    let mut unmap = pd::PhysdevUnmapPirq {
        domid: DOMID_SELF,
        _pad0: 0,
        pirq: 11,
    };
    c.errno(
        "PHYSDEVOP_unmap_pirq from a domU",
        physdev(pd::PHYSDEVOP_UNMAP_PIRQ, &mut unmap),
        Errno::EPERM,
    );
    c.errno(
        "PHYSDEVOP_eoi from a domU",
        physdev(pd::PHYSDEVOP_EOI, &mut pd::PhysdevEoi { irq: 11 }),
        Errno::EPERM,
    );
    let mut query = pd::PhysdevIrqStatusQuery { irq: 11, flags: 0 };
    c.errno(
        "PHYSDEVOP_irq_status_query from a domU",
        physdev(pd::PHYSDEVOP_IRQ_STATUS_QUERY, &mut query),
        Errno::EPERM,
    );
    c.eq("the refused status query wrote no flags", query.flags, 0);
    let mut bind = EvtchnBindPirq {
        pirq: 11,
        flags: 0,
        port: 0,
    };
    // SAFETY: as for `physdev`.
    let ret = unsafe {
        hypercall2(
            HYPERVISOR_EVENT_CHANNEL_OP,
            EVTCHNOP_BIND_PIRQ.into(),
            &raw mut bind as u64,
        )
    };
    c.errno("EVTCHNOP_bind_pirq from a domU", ret, Errno::EPERM);
    c.eq("the refused bind_pirq returned no port", bind.port, 0);

    // I/O memory: through DOMID_IO, and as an ordinary mapping. The window slot's L1 entry is
    // the target; a refused update leaves the slot as it was.
    // SAFETY: slot 0 is this test's; it maps the domain's own padding frame.
    match unsafe { Window::read_only(0, mm::p2m(0)) } {
        Ok(w) => {
            let slot = mm::walk(w.va())[3];
            if let Some(l1) = slot {
                for (what, mfn) in [
                    ("the VGA framebuffer", VGA_FB_MFN),
                    ("the local APIC", LAPIC_MFN),
                    ("its own RAM", mm::p2m(0)),
                ] {
                    let req = [MmuUpdate::new(
                        MMU_NORMAL_PT_UPDATE,
                        l1.ma(),
                        pte::entry(mfn, pte::PRESENT | pte::RW),
                    )];
                    // SAFETY: the window slot is this test's; a refused update changes nothing.
                    let ret = unsafe { guest_abi::calls::mmu_update(&req, DOMID_IO) };
                    c.check(
                        format_args!("mmu_update on DOMID_IO ({what}) from a domU is EPERM"),
                        ret == Err(Errno::EPERM),
                        format_args!("returned {ret:?}"),
                    );
                }
            } else {
                c.check("walk to the window's L1 entry", false, format_args!("none"));
            }
            // SAFETY: as above.
            let ret = unsafe {
                w.set(
                    pte::entry(VGA_FB_MFN, pte::PRESENT),
                    UVMF_INVLPG | UVMF_LOCAL,
                )
            };
            c.errno(
                "update_va_mapping of the VGA framebuffer from a domU",
                ret,
                Errno::EPERM,
            );
            c.check(
                "the window still maps its own frame",
                mm::walk(w.va())[3].is_some_and(|s| pte::mfn(s.entry) == mm::p2m(0)),
                format_args!("{:?}", mm::walk(w.va())[3]),
            );
            let _ = w.close();
        }
        Err(e) => {
            c.check("open a window", false, format_args!("returned {e}"));
        }
    }

    // An exchange naming another domain's memory.
    let mut ins = [mm::p2m(0)];
    let mut outs = [0u64];
    let mut exch = MemoryExchange {
        input: MemoryReservation {
            extent_start: ins.as_mut_ptr() as u64,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid: 0,
        },
        output: MemoryReservation {
            extent_start: outs.as_mut_ptr() as u64,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid: 0,
        },
        nr_exchanged: 0,
    };
    // SAFETY: the hypervisor reads the structure and the arrays, borrowed for the call; a
    // refused exchange changes nothing.
    let ret = unsafe {
        hypercall2(
            HYPERVISOR_MEMORY_OP,
            XENMEM_EXCHANGE.into(),
            &raw mut exch as u64,
        )
    };
    c.errno(
        "XENMEM_exchange of domain 0's memory from a domU",
        ret,
        Errno::EPERM,
    );
    c.eq(
        "the refused exchange reported nothing exchanged",
        exch.nr_exchanged,
        0,
    );

    own_exchanges(&mut c);

    // Ports: dom0's bitmap is not in force for a domU.
    // SAFETY: (every probe) in a domU's ring 1 these raise #GP before any effect.
    let probes = unsafe {
        [
            (
                "out to 0xCF8 (PCI config address)",
                probe!(GENERAL_PROTECTION, "out dx, eax"; in("dx") 0xCF8u16, in("eax") 0x8000_0000u32),
            ),
            (
                "in from 0xCFC (PCI config data)",
                probe!(GENERAL_PROTECTION, "in eax, dx"; in("dx") 0xCFCu16, out("eax") _),
            ),
            (
                "in from 0x64 (keyboard controller)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0x64u16, out("al") _),
            ),
            (
                "in from 0xC000 (a PCI I/O BAR range)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0xC000u16, out("al") _),
            ),
        ]
    };
    for (name, p) in probes {
        check_exception(
            &mut c,
            format_args!("{name} raises #GP(0) in a domU"),
            p.caught,
            &Want {
                vector: GENERAL_PROTECTION,
                error_code: 0,
                rip: p.insn_rip,
                user: false,
                rsp: Some(p.rsp),
                interrupts: false,
                cr2: None,
            },
        );
    }
    c.finish()
}

/// `XENMEM_exchange` of `ins` (order `in_order`) for `outs.len()` extents of `out_order`;
/// returns `rax` and `nr_exchanged`.
fn exchange(ins: &mut [u64], in_order: u32, outs: &mut [u64], out_order: u32) -> (i64, u64) {
    exchange_below(ins, in_order, outs, out_order, 0)
}

/// [`exchange`] with the new extents asked below `2^bits` bytes (`XENMEMF_address_bits`).
fn exchange_below(
    ins: &mut [u64],
    in_order: u32,
    outs: &mut [u64],
    out_order: u32,
    bits: u32,
) -> (i64, u64) {
    let mut x = MemoryExchange {
        input: MemoryReservation {
            extent_start: ins.as_mut_ptr() as u64,
            nr_extents: ins.len() as u64,
            extent_order: in_order,
            mem_flags: 0,
            domid: DOMID_SELF,
        },
        output: MemoryReservation {
            extent_start: outs.as_mut_ptr() as u64,
            nr_extents: outs.len() as u64,
            extent_order: out_order,
            mem_flags: bits,
            domid: DOMID_SELF,
        },
        nr_exchanged: 0,
    };
    // SAFETY: the hypervisor reads the structure and the arrays and writes them back, all
    // borrowed for the call; the frames named are this test's fresh frames (or ones it must
    // refuse), which no Rust reference uses.
    let ret = unsafe {
        hypercall2(
            HYPERVISOR_MEMORY_OP,
            XENMEM_EXCHANGE.into(),
            &raw mut x as u64,
        )
    };
    (ret, x.nr_exchanged)
}

/// Whether frame `mfn` can be mapped (read-only) by this domain now: its own, not gone.
fn mappable(mfn: u64) -> bool {
    // SAFETY: slot 1 is this test's; a window is closed at once.
    match unsafe { Window::read_only(1, mfn) } {
        Ok(w) => {
            let _ = w.close();
            true
        }
        Err(_) => false,
    }
}

/// Attacks on `XENMEM_exchange` with the domain's own memory (see the module's text).
fn own_exchanges(c: &mut Checks) {
    let mut fresh = [0u64; 4];
    for f in &mut fresh {
        match mm::fresh_frame() {
            Some((_, mfn)) => *f = mfn,
            None => {
                c.check("four fresh frames", false, format_args!("ran out"));
                return;
            }
        }
    }
    let [a, b, t, d] = fresh;

    // A pinned page table (an empty L1).
    // SAFETY: `t` is a fresh frame nothing maps; pinned, it is read-only to us.
    let pinned = unsafe { mm::zero_frame(t) }.is_ok() && unsafe { mm::pin(1, t) } == 0;
    c.check(
        "pin a fresh frame as an L1",
        pinned,
        format_args!("refused"),
    );
    let (ret, done) = exchange(&mut [t], 0, &mut [0], 0);
    c.errno("exchange of a pinned L1", ret, Errno::EBUSY);
    c.eq("nothing exchanged (pinned L1)", done, 0);
    // SAFETY: as above; unpinning an empty L1 changes no mapping.
    c.eq(
        "the L1 is still pinned (unpin works)",
        unsafe { mm::unpin(t) },
        0,
    );

    // A frame the domain maps (its first bootstrap page).
    let mapped = mm::p2m(0);
    let (ret, done) = exchange(&mut [mapped], 0, &mut [0], 0);
    c.errno("exchange of a mapped frame", ret, Errno::EBUSY);
    c.eq("nothing exchanged (mapped)", done, 0);

    // One frame listed twice in one chunk (two order-0 extents for one order-1 extent).
    let (ret, done) = exchange(&mut [a, a], 0, &mut [0], 1);
    c.check(
        "exchange listing a frame twice in a chunk is refused",
        ret < 0,
        format_args!("returned {ret}"),
    );
    c.eq("nothing exchanged (frame twice)", done, 0);
    c.check(
        "the frame listed twice is still ours",
        mappable(a),
        format_args!("not mappable"),
    );

    // An order-1 input extent whose second frame is not the domain's: the frame past the
    // domain's last fresh one is some other owner's (or nobody's) as often as not, so the
    // local APIC's frame stands in as the certainly foreign one.
    let (ret, done) = exchange(&mut [a, LAPIC_MFN], 0, &mut [0], 1);
    c.check(
        "exchange including a frame that is not ours is refused",
        ret < 0,
        format_args!("returned {ret}"),
    );
    c.eq("nothing exchanged (foreign frame)", done, 0);
    c.check(
        "the good frame of that chunk is still ours",
        mappable(a),
        format_args!("not mappable"),
    );

    // A two-chunk exchange whose second chunk is bad: the first is done and reported.
    // The frames get a pattern first: what comes back must be zero.
    for &f in &[a, b] {
        // SAFETY: fresh frames nothing else maps.
        let _ = unsafe { mm::fill_frame(f, |p| p.fill(0x5EC2_E7D0_0D0F_0000 | f)) };
    }
    let mut outs = [0u64; 2];
    let (ret, done) = exchange(&mut [a, b], 0, &mut outs, 0);
    // Chunks are one frame each here, so the failure needs a bad second frame: see below.
    c.eq("exchange of two fresh frames", ret, 0);
    c.eq("nr_exchanged after a good exchange", done, 2);
    // A frame given up in the first chunk may come straight back as the second chunk's new
    // frame (the allocator reuses what was freed last): then it is ours again, and zeroed.
    for (what, g) in [("first", a), ("second", b)] {
        c.eq(
            format_args!(
                "the {what} frame given up ({g:#x}, new {outs:x?}) is mappable only if handed back"
            ),
            mappable(g),
            outs.contains(&g),
        );
    }
    for (i, &n) in outs.iter().enumerate() {
        let mut zero = true;
        // SAFETY: slot 1 is this test's; the new frame is ours and nothing else maps it.
        match unsafe { Window::read_only(1, n) } {
            Ok(w) => {
                for off in (0..4096).step_by(8) {
                    zero &= w.read(off) == 0;
                }
                let _ = w.close();
            }
            Err(e) => {
                c.check(
                    format_args!("map new frame {i}"),
                    false,
                    format_args!("returned {e}"),
                );
                continue;
            }
        }
        c.check(
            format_args!("new frame {i} ({n:#x}) is zero"),
            zero,
            format_args!("old data"),
        );
    }
    let (ret, done) = exchange(&mut [d, LAPIC_MFN], 0, &mut [0, 0], 0);
    c.check(
        "a two-chunk exchange whose second chunk is bad fails",
        ret < 0,
        format_args!("returned {ret}"),
    );
    c.eq("nr_exchanged reports the first chunk", done, 1);
    c.check(
        "the first chunk's frame was given up",
        !mappable(d),
        format_args!("still mappable"),
    );
    unsatisfiable_limit(c);
}

/// Calls of [`unsatisfiable_limit`]'s exchange timed.
const LIMIT_CALLS: u64 = 8;

/// 512 frames for one 2 MiB extent below 8 KiB, which no extent can be: `ENOMEM`, nothing
/// exchanged, the frames still ours, and the time each refusal holds the hypervisor (the
/// call runs with every domain's hypercalls held off) printed.
fn unsatisfiable_limit(c: &mut Checks) {
    const N: usize = 512;
    static mut INS: [u64; N] = [0; N];
    // SAFETY: the test's main flow is the only user of this buffer.
    let ins = unsafe { &mut *core::ptr::addr_of_mut!(INS) };
    for f in ins.iter_mut() {
        match mm::fresh_frame() {
            Some((_, mfn)) => *f = mfn,
            None => {
                c.check("512 fresh frames", false, format_args!("ran out"));
                return;
            }
        }
    }
    let start = xenia_guest_rt::time::now_ns();
    let mut all = true;
    for _ in 0..LIMIT_CALLS {
        let (ret, done) = exchange_below(ins, 0, &mut [0], 9, 13);
        all &= ret == -(Errno::ENOMEM as i64) && done == 0;
    }
    let per_call = (xenia_guest_rt::time::now_ns() - start) / LIMIT_CALLS;
    c.check(
        "a 2 MiB extent below 8 KiB: ENOMEM, nothing exchanged",
        all,
        format_args!("some call differed"),
    );
    c.check(
        "the frames of the refused exchange are still ours",
        mappable(ins[0]) && mappable(ins[N - 1]),
        format_args!("not mappable"),
    );
    // The same 512 frames for 512 others, one chunk each.
    let mut outs = [0u64; N];
    let start = xenia_guest_rt::time::now_ns();
    let (ret, done) = exchange(ins, 0, &mut outs, 0);
    let took = xenia_guest_rt::time::now_ns() - start;
    c.check(
        format_args!("512 order-0 frames exchanged in one call ({took} ns)"),
        ret == 0 && done == N as u64,
        format_args!("returned {ret}, nr_exchanged {done}"),
    );
    multicall_of_exchanges(c, ins, &mut outs);
    // The figure is the point; the bound only catches a refusal that costs whole ticks.
    c.check(
        format_args!(
            "an unsatisfiable 2 MiB exchange is refused in {per_call} ns a call (< 100 ms)"
        ),
        per_call < 100_000_000,
        format_args!("too slow"),
    );
}

/// Entries of [`multicall_of_exchanges`]' batch (one multicall chunk).
const BATCH: usize = 64;

/// A multicall of [`BATCH`] exchanges of 512 frames each, every one giving the frames the one
/// before got (`a` and `b` hold the two lists, `b` the frames owned now): all must succeed,
/// and the frames end up ours. Each exchange step is a continuation point, so the batch
/// never holds the hypervisor for more than one step (printed: the batch's whole time).
fn multicall_of_exchanges(c: &mut Checks, a: &mut [u64], b: &mut [u64]) {
    use guest_abi::hypercall::MulticallEntry;
    static mut XS: [MemoryExchange; BATCH] = [MemoryExchange {
        input: MemoryReservation {
            extent_start: 0,
            nr_extents: 0,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
        },
        output: MemoryReservation {
            extent_start: 0,
            nr_extents: 0,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
        },
        nr_exchanged: 0,
    }; BATCH];
    // SAFETY: the test's main flow is the only user of this buffer.
    let xs = unsafe { &mut *core::ptr::addr_of_mut!(XS) };
    let n = a.len() as u64;
    let (pa, pb) = (a.as_mut_ptr() as u64, b.as_mut_ptr() as u64);
    let mut entries = [MulticallEntry::default(); BATCH];
    for (i, (x, e)) in xs.iter_mut().zip(entries.iter_mut()).enumerate() {
        // Entry 0 gives `b` (owned now) for `a`; entry 1 gives `a` back for `b`; ...
        let (from, to) = if i % 2 == 0 { (pb, pa) } else { (pa, pb) };
        x.input.extent_start = from;
        x.input.nr_extents = n;
        x.output.extent_start = to;
        x.output.nr_extents = n;
        x.nr_exchanged = 0;
        e.op = HYPERVISOR_MEMORY_OP;
        e.args[0] = XENMEM_EXCHANGE.into();
        e.args[1] = x as *mut MemoryExchange as u64;
    }
    let start = xenia_guest_rt::time::now_ns();
    // SAFETY: every entry is an exchange of this test's unmapped frames, whose lists and
    // structures are borrowed for the call.
    let r = unsafe { guest_abi::calls::multicall(&mut entries) };
    let took = xenia_guest_rt::time::now_ns() - start;
    let good = entries.iter().all(|e| e.result == 0) && xs.iter().all(|x| x.nr_exchanged == n);
    c.check(
        format_args!("a multicall of {BATCH} exchanges of {n} frames ({took} ns in all)"),
        r.is_ok() && good,
        format_args!(
            "returned {r:?}; first bad entry {:?}",
            entries.iter().position(|e| e.result != 0)
        ),
    );
    // BATCH is even: the last entry filled `b`.
    c.check(
        "the frames the batch handed out last are ours",
        mappable(b[0]) && mappable(b[b.len() - 1]),
        format_args!("not mappable"),
    );
    // More frames than one run of the call handles (512): continued once, invisibly.
    const M: usize = 1024;
    static mut BIG: [u64; M] = [0; M];
    static mut BIG_OUT: [u64; M] = [0; M];
    // SAFETY: the test's main flow is the only user of these buffers.
    let (big, big_out) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(BIG),
            &mut *core::ptr::addr_of_mut!(BIG_OUT),
        )
    };
    big[..b.len()].copy_from_slice(b);
    for f in big[b.len()..].iter_mut() {
        match mm::fresh_frame() {
            Some((_, mfn)) => *f = mfn,
            None => {
                c.check("512 more fresh frames", false, format_args!("ran out"));
                return;
            }
        }
    }
    let (ret, done) = exchange(big, 0, big_out, 0);
    c.check(
        "an exchange of 1024 frames (continued past 512) completes",
        ret == 0 && done == M as u64,
        format_args!("returned {ret}, nr_exchanged {done}"),
    );
    c.check(
        "its new frames are ours and its old ones are not (unless handed back)",
        mappable(big_out[0])
            && mappable(big_out[M - 1])
            && (mappable(big[0]) == big_out.contains(&big[0])),
        format_args!("no"),
    );
}
