//! `physdev_domu`: a domU may not touch physical devices (DESIGN.md §11). Every device
//! operation dom0 has must fail here: the `physdev_op` commands and `EVTCHNOP_bind_pirq` with
//! `EPERM` (leaving their arguments as they were), `mmu_update` on `DOMID_IO` with `EPERM`
//! whatever the frame, an I/O frame through an ordinary `update_va_mapping` with `EPERM`, an
//! exchange naming another domain with `EPERM`, and `in`/`out` on PCI configuration ports,
//! the keyboard controller and a PCI I/O BAR's range with #GP at the instruction.
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
