//! `devaccess` and `devaccess_domu`: what dom0 needs from the hypervisor to drive a PCI
//! device (DESIGN.md §11), and that only dom0 has it.
//!
//! `devaccess`, in dom0:
//!
//! - **ports**: PCI configuration mechanism #1 works (device 00:00.0 is Intel's, vendor
//!   0x8086, under QEMU); the hypervisor's ports (COM1, the PIT, the PIC, the CMOS) raise #GP;
//! - **I/O memory** through `mmu_update` on `DOMID_IO`: the VGA device's framebuffer (BAR0)
//!   takes a write and gives it back, its MMIO BAR (BAR2) answers with the Bochs VBE id;
//!   RAM (dom0's own, the hypervisor's), the local APIC, the I/O APIC and the HPET are
//!   refused with `EPERM`, an address beyond the physical width with `EINVAL`, an L2 entry
//!   at device memory with `EINVAL`; the frame table stays consistent while device memory
//!   is mapped and after;
//! - **interrupts**: the hypervisor's GSIs are refused, bad PIRQs are `EINVAL`, MSI is
//!   `EOPNOTSUPP`; the keyboard controller's IRQ (GSI 1, made level-triggered with
//!   `setup_gsi`, set up again once mapped as Linux does) is mapped and bound, and the controller's "write output buffer" command
//!   raises it: the event comes; while the line stays asserted each `PHYSDEVOP_eoi` lets
//!   exactly one more event through (a storm costs one interrupt per EOI), none comes
//!   without an EOI, and none once the line drops; a closed port gets nothing, a rebound
//!   one does; unmapping closes the port;
//! - **`XENMEM_exchange`**: 16 order-0 frames for one order-4 extent below 4 GiB, whose
//!   frames the M2P shows machine-contiguous at the PFNs asked; a frame still mapped is
//!   refused (`EBUSY`) with nothing exchanged, and a two-chunk exchange whose second chunk
//!   holds such a frame reports the first chunk done (`nr_exchanged` 16); dom0's frame count
//!   is the same at the end.
//!
//! `devaccess_domu`: dom0 builds testguest `physdev_domu`, which tries all of it from a domU
//! (each attempt `EPERM` or #GP), and reads its verdict from the console ring.

use core::arch::asm;

use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::event::EVTCHNSTAT_PIRQ;
use guest_abi::memory::{
    MMU_NORMAL_PT_UPDATE, MMUEXT_TLB_FLUSH_LOCAL, MemoryExchange, MemoryReservation, MmuUpdate,
    MmuextOp, xenmemf_address_bits,
};
use guest_abi::physdev as pd;
use guest_abi::pte;
use guest_abi::types::{DOMID_IO, DOMID_SELF};
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::mm::{self, Window};
use xenia_guest_rt::time::{NS_PER_MS, now_ns};
use xenia_guest_rt::trap::GENERAL_PROTECTION;
use xenia_guest_rt::{events, println, probe};

use super::{Ctx, Outcome};

/// PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2).
const PCI_CONFIG_ADDRESS: u16 = 0xCF8;
const PCI_CONFIG_DATA: u16 = 0xCFC;
/// The 8042 keyboard controller (IBM PC/AT Technical Reference): data and command/status.
const KBC_DATA: u16 = 0x60;
const KBC_STATUS: u16 = 0x64;
/// Status bits: output buffer full, input buffer full.
const KBC_OBF: u8 = 1;
const KBC_IBF: u8 = 2;
/// Commands: read and write the command byte, write the output buffer (as if the keyboard
/// had sent the byte).
const KBC_READ_CB: u8 = 0x20;
const KBC_WRITE_CB: u8 = 0x60;
const KBC_WRITE_OBUF: u8 = 0xD2;
/// Command byte: keyboard interrupt enabled; keyboard clock disabled.
const KBC_CB_KBD_INT: u8 = 1;
const KBC_CB_KBD_DISABLED: u8 = 1 << 4;
/// The keyboard's ISA IRQ, GSI 1 on PCs.
const KBD_GSI: u32 = 1;
/// The frames the hypervisor keeps (QEMU `pc`).
const LAPIC_MFN: u64 = 0xFEE00;
const IOAPIC_MFN: u64 = 0xFEC00;
const HPET_MFN: u64 = 0xFED00;
/// A RAM frame below dom0's, the hypervisor's (1 MiB: the image, the boot structures).
const LOW_RAM_MFN: u64 = 0x100;
/// QEMU's standard VGA (PCI 1234:1111), its Bochs VBE registers at BAR2 + 0x500, of which
/// the first is the id (0xB0C0 to 0xB0C5).
const VGA_ID: u32 = 0x1111_1234;
const VBE_ID_OFFSET: u64 = 0x500;
/// Window slots this test uses.
const SLOT: usize = 0;
const SLOT2: usize = 1;
/// How long an event may take, and how long "no event" is watched for.
const EVENT_NS: u64 = 1_000 * NS_PER_MS;
const QUIET_NS: u64 = 100 * NS_PER_MS;
/// Memory of the domU.
const DOMU_MIB: u64 = 16;

fn outb(port: u16, v: u8) {
    // SAFETY: dom0's ports (its I/O bitmap); the PCI and keyboard-controller accesses of
    // this test touch no memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, nomem)) }
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as for `outb`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack, nomem)) };
    v
}

fn outl(port: u16, v: u32) {
    // SAFETY: as for `outb`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, nomem)) }
}

fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `outb`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack, nomem)) };
    v
}

/// Configuration register `reg` of bus 0, device `dev`, function 0.
fn pci_read(dev: u8, reg: u8) -> u32 {
    outl(
        PCI_CONFIG_ADDRESS,
        0x8000_0000 | (u32::from(dev) << 11) | u32::from(reg & 0xFC),
    );
    inl(PCI_CONFIG_DATA)
}

fn ports(c: &mut Checks) {
    let id = pci_read(0, 0);
    c.eq_hex(
        "PCI config space through 0xCF8/0xCFC: vendor of 00:00.0",
        u64::from(id & 0xFFFF),
        0x8086,
    );
    // SAFETY: (every probe) these ports are the hypervisor's: the access raises #GP before
    // any effect; were it to run, a read of these registers changes nothing that matters
    // (the PIT's status read back, the PIC's mask, the UART's scratch register, the CMOS
    // index is left as it was read).
    let probes = unsafe {
        [
            (
                "COM1 (0x3FF)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0x3FFu16, out("al") _),
            ),
            (
                "the PIT (0x40)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0x40u16, out("al") _),
            ),
            (
                "port 0x61",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0x61u16, out("al") _),
            ),
            (
                "the PIC (0x21)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0x21u16, out("al") _),
            ),
            (
                "the CMOS (0x71)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") 0x71u16, out("al") _),
            ),
        ]
    };
    for (what, p) in probes {
        c.check(
            format_args!("dom0 reading {what} raises #GP"),
            p.caught
                .is_some_and(|e| e.regs.vector == u64::from(GENERAL_PROTECTION)),
            format_args!("caught {:?}", p.caught),
        );
    }
}

/// `mmu_update` of one entry at machine address `ma` with `foreign`, then a flush of this
/// vCPU's TLB (`mmu_update` leaves that to the guest).
fn set_entry(ma: u64, val: u64, foreign: u16) -> Result<u32, Errno> {
    let req = [MmuUpdate::new(MMU_NORMAL_PT_UPDATE, ma, val)];
    // SAFETY: the entries this test changes map its window slots, which no Rust code uses
    // but through the windows.
    let r = unsafe { calls::mmu_update(&req, foreign) };
    let flush = [MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        arg1: 0,
        arg2: 0,
    }];
    // SAFETY: a flush changes no mapping.
    let _ = unsafe { calls::mmuext_op(&flush, DOMID_SELF) };
    r
}

/// The VGA device's BARs 0 and 2 (frame numbers), found on bus 0.
fn vga_bars() -> Option<(u64, u64)> {
    let dev = (0..32).find(|&d| pci_read(d, 0) == VGA_ID)?;
    let bar0 = u64::from(pci_read(dev, 0x10) & !0xF);
    let bar2 = u64::from(pci_read(dev, 0x18) & !0xF);
    (bar0 != 0 && bar2 != 0).then_some((bar0 >> 12, bar2 >> 12))
}

fn mmio(c: &mut Checks) {
    let Some((fb, regs)) = vga_bars() else {
        c.check("the VGA device on bus 0", false, format_args!("not found"));
        return;
    };
    println!("devaccess: VGA framebuffer at mfn {fb:#x}, registers at mfn {regs:#x}");
    // SAFETY: slots 0 and 1 are this test's; opened on dom0's own first frame, read-only.
    let (w, w2) = match unsafe {
        (
            Window::read_only(SLOT, mm::p2m(0)),
            Window::read_only(SLOT2, mm::p2m(0)),
        )
    } {
        (Ok(w), Ok(w2)) => (w, w2),
        _ => {
            c.check("open two windows", false, format_args!("refused"));
            return;
        }
    };
    let (Some(l1), Some(l1b), Some(l2)) = (
        mm::walk(w.va())[3],
        mm::walk(w2.va())[3],
        mm::walk(w.va())[2],
    ) else {
        c.check("walk to the windows' entries", false, format_args!("none"));
        return;
    };
    let uncached = pte::PRESENT | pte::RW | pte::PCD | pte::PWT;
    let ok = c.ok(
        "mmu_update on DOMID_IO maps the framebuffer (uncached)",
        set_entry(l1.ma(), pte::entry(fb, uncached), DOMID_IO),
    );
    let ok2 = c.ok(
        "mmu_update on DOMID_IO maps the VGA registers",
        set_entry(l1b.ma(), pte::entry(regs, uncached), DOMID_IO),
    );
    if ok.is_some() && ok2.is_some() {
        let pattern = 0x1122_3344_5566_7788;
        w.write(0x100, pattern);
        c.eq_hex(
            "the framebuffer gives back what was written",
            w.read(0x100),
            pattern,
        );
        let id = w2.read(VBE_ID_OFFSET) & 0xFFFF;
        c.check(
            "the VGA MMIO BAR answers with the Bochs VBE id",
            (0xB0C0..=0xB0C5).contains(&id),
            format_args!("read {id:#x}"),
        );
        c.eq(
            "frame table consistent with device memory mapped",
            mm::check_frame_table(),
            0,
        );
    }
    // Refused: RAM and the hypervisor's devices through DOMID_IO, whatever the entry says.
    for (what, mfn) in [
        ("dom0's own RAM", mm::p2m(0)),
        ("the hypervisor's RAM (1 MiB)", LOW_RAM_MFN),
        ("the local APIC", LAPIC_MFN),
        ("the I/O APIC", IOAPIC_MFN),
        ("the HPET", HPET_MFN),
    ] {
        let r = set_entry(l1.ma(), pte::entry(mfn, pte::PRESENT), DOMID_IO);
        c.check(
            format_args!("mmu_update on DOMID_IO of {what} is EPERM"),
            r == Err(Errno::EPERM),
            format_args!("returned {r:?}"),
        );
    }
    let r = set_entry(l1.ma(), pte::entry(1 << 39, pte::PRESENT), DOMID_IO);
    c.check(
        "mmu_update on DOMID_IO beyond the physical address width is EINVAL",
        r == Err(Errno::EINVAL),
        format_args!("returned {r:?}"),
    );
    let old_l2 = l2.entry;
    let r = set_entry(l2.ma(), pte::entry(fb, pte::PRESENT | pte::RW), DOMID_IO);
    c.check(
        "an L2 entry at device memory (DOMID_IO) is EINVAL",
        r == Err(Errno::EINVAL),
        format_args!("returned {r:?}"),
    );
    // (The CPU may have set the accessed bit meanwhile.)
    let ad = pte::ACCESSED | pte::DIRTY;
    c.eq_hex(
        "the L2 entry is unchanged",
        mm::walk(w.va())[2].map_or(0, |s| s.entry) & !ad,
        old_l2 & !ad,
    );
    // The window still maps the framebuffer: the refused updates changed nothing.
    if ok.is_some() {
        c.eq_hex(
            "the refused updates left the framebuffer mapping",
            mm::walk(w.va())[3].map_or(0, |s| pte::mfn(s.entry)),
            fb,
        );
    }
    c.check(
        "both windows closed (device memory unmapped)",
        w.close() >= 0 && w2.close() >= 0,
        format_args!("a close failed"),
    );
    c.eq(
        "frame table consistent after unmapping",
        mm::check_frame_table(),
        0,
    );
}

fn kbc_wait_input() {
    for _ in 0..100_000 {
        if inb(KBC_STATUS) & KBC_IBF == 0 {
            return;
        }
    }
}

fn kbc_command(cmd: u8) {
    kbc_wait_input();
    outb(KBC_STATUS, cmd);
}

fn kbc_write(data: u8) {
    kbc_wait_input();
    outb(KBC_DATA, data);
}

fn kbc_read() -> Option<u8> {
    for _ in 0..100_000 {
        if inb(KBC_STATUS) & KBC_OBF != 0 {
            return Some(inb(KBC_DATA));
        }
    }
    None
}

fn kbc_drain() {
    for _ in 0..64 {
        if inb(KBC_STATUS) & KBC_OBF == 0 {
            return;
        }
        inb(KBC_DATA);
    }
}

/// The controller puts `byte` in its output buffer as keyboard data and raises IRQ 1 until
/// it is read.
fn kbc_raise(byte: u8) {
    kbc_command(KBC_WRITE_OBUF);
    kbc_write(byte);
}

/// Whether `port` got an event beyond `seen` before `ns` passed.
fn event_after(port: u32, seen: u32, ns: u64) -> bool {
    events::wait_for(port, seen, now_ns() + ns)
}

fn interrupts(c: &mut Checks) {
    // Refusals first.
    c.eq(
        "setup_gsi of COM1's GSI (4)",
        calls::physdev_setup_gsi(4, pd::GSI_TRIGGER_EDGE, pd::GSI_POLARITY_HIGH),
        Err(Errno::EPERM),
    );
    for gsi in [4, 2, 0] {
        c.eq(
            format_args!("map_pirq of the hypervisor's GSI {gsi}"),
            calls::physdev_map_pirq_gsi(gsi, None),
            Err(Errno::EPERM),
        );
    }
    c.eq(
        "map_pirq of GSI 200",
        calls::physdev_map_pirq_gsi(200, None),
        Err(Errno::EINVAL),
    );
    c.eq(
        "map_pirq to PIRQ 5000",
        calls::physdev_map_pirq_gsi(KBD_GSI, Some(5000)),
        Err(Errno::EINVAL),
    );
    c.eq(
        "setup_gsi with trigger 7",
        calls::physdev_setup_gsi(KBD_GSI, 7, 0),
        Err(Errno::EINVAL),
    );
    c.eq(
        "eoi of an unmapped PIRQ",
        calls::physdev_eoi(77),
        Err(Errno::EINVAL),
    );
    c.eq(
        "status of an unmapped PIRQ",
        calls::physdev_irq_status_query(77),
        Err(Errno::EINVAL),
    );
    c.eq(
        "bind_pirq of an unmapped PIRQ",
        calls::evtchn_bind_pirq(77, 0),
        Err(Errno::EINVAL),
    );
    c.eq(
        "unmap of an unmapped PIRQ",
        calls::physdev_unmap_pirq(77),
        Err(Errno::EINVAL),
    );

    // The keyboard controller, quiet, with its keyboard interrupt on.
    kbc_drain();
    kbc_command(KBC_READ_CB);
    let cb = kbc_read().unwrap_or(0);
    kbc_command(KBC_WRITE_CB);
    kbc_write((cb | KBC_CB_KBD_INT) & !KBC_CB_KBD_DISABLED);
    kbc_drain();

    if c.ok(
        "setup_gsi: GSI 1 level-triggered, active high",
        calls::physdev_setup_gsi(KBD_GSI, pd::GSI_TRIGGER_LEVEL, pd::GSI_POLARITY_HIGH),
    )
    .is_none()
    {
        return;
    }
    let Some(pirq) = c.ok(
        "map_pirq of GSI 1",
        calls::physdev_map_pirq_gsi(KBD_GSI, None),
    ) else {
        return;
    };
    c.eq(
        "mapped again: the same PIRQ",
        calls::physdev_map_pirq_gsi(KBD_GSI, None),
        Ok(pirq),
    );
    c.eq(
        "setup_gsi of a mapped, unbound GSI (Linux's order) reprograms it",
        calls::physdev_setup_gsi(KBD_GSI, pd::GSI_TRIGGER_LEVEL, pd::GSI_POLARITY_HIGH),
        Ok(()),
    );
    c.eq(
        "irq_status_query: needs EOI",
        calls::physdev_irq_status_query(pirq),
        Ok(pd::XENIRQSTAT_NEEDS_EOI),
    );
    let Some(port) = c.ok("bind_pirq", calls::evtchn_bind_pirq(pirq, 0)) else {
        return;
    };
    events::set_port_masked(port, false);
    c.eq(
        "bind_pirq again",
        calls::evtchn_bind_pirq(pirq, 0),
        Err(Errno::EEXIST),
    );
    c.eq(
        "setup_gsi of a bound GSI",
        calls::physdev_setup_gsi(KBD_GSI, pd::GSI_TRIGGER_EDGE, pd::GSI_POLARITY_HIGH),
        Err(Errno::EEXIST),
    );
    match calls::evtchn_status(DOMID_SELF, port) {
        Ok(s) => c.eq(
            "the port's status: PIRQ, vCPU 0",
            (s.status, s.vcpu, s.u[0]),
            (EVTCHNSTAT_PIRQ, 0, pirq),
        ),
        Err(e) => c.check(
            "evtchn_status of the PIRQ port",
            false,
            format_args!("-{e:?}"),
        ),
    };

    // One interrupt, one event.
    let seen = events::count(port);
    let t0 = now_ns();
    kbc_raise(0xAB);
    let came = event_after(port, seen, EVENT_NS);
    c.check(
        "the keyboard controller's interrupt arrives as an event",
        came,
        format_args!("no event in {} ms", EVENT_NS / NS_PER_MS),
    );
    if came {
        println!(
            "devaccess: interrupt to event in {} us",
            (events::last_seen_ns(port) - t0) / 1000
        );
    }
    c.eq("the byte is in the output buffer", kbc_read(), Some(0xAB));
    c.eq("eoi", calls::physdev_eoi(pirq), Ok(()));
    c.check(
        "no event after the line dropped and the EOI",
        !event_after(port, events::count(port), QUIET_NS),
        format_args!("an event came"),
    );

    // A storm: the line stays asserted (the byte is not read); each EOI lets exactly one
    // more interrupt through.
    let seen = events::count(port);
    kbc_raise(0xCD);
    c.check(
        "storm: first event",
        event_after(port, seen, EVENT_NS),
        format_args!("none"),
    );
    const EOIS: u32 = 5;
    let mut each = 0;
    for _ in 0..EOIS {
        let before = events::count(port);
        let _ = calls::physdev_eoi(pirq);
        if event_after(port, before, EVENT_NS) {
            each += 1;
        }
    }
    c.eq("storm: one event per EOI", each, EOIS);
    let before = events::count(port);
    c.check(
        "storm: no event without an EOI (the pin stays masked)",
        !event_after(port, before, QUIET_NS),
        format_args!("{} more", events::count(port) - before),
    );
    c.eq("storm: the byte is still there", kbc_read(), Some(0xCD));
    let _ = calls::physdev_eoi(pirq);
    c.check(
        "storm over: no event once the line dropped",
        !event_after(port, events::count(port), QUIET_NS),
        format_args!("an event came"),
    );

    // Closing the port masks the pin; binding again unmasks it.
    c.eq("close the PIRQ port", calls::evtchn_close(port), Ok(()));
    let seen = events::count(port);
    kbc_raise(0xEF);
    c.check(
        "no event on a closed PIRQ port",
        !event_after(port, seen, QUIET_NS),
        format_args!("an event came"),
    );
    kbc_drain();
    let Some(port2) = c.ok(
        "bind_pirq again after the close",
        calls::evtchn_bind_pirq(pirq, 0),
    ) else {
        return;
    };
    events::set_port_masked(port2, false);
    let seen = events::count(port2);
    kbc_raise(0x12);
    c.check(
        "the rebound port gets the interrupt",
        event_after(port2, seen, EVENT_NS),
        format_args!("none"),
    );
    kbc_drain();
    let _ = calls::physdev_eoi(pirq);
    c.eq("unmap_pirq", calls::physdev_unmap_pirq(pirq), Ok(()));
    c.check(
        "unmapping closed the port",
        calls::evtchn_status(DOMID_SELF, port2)
            .is_ok_and(|s| s.status == guest_abi::event::EVTCHNSTAT_CLOSED),
        format_args!("{:?}", calls::evtchn_status(DOMID_SELF, port2)),
    );
    c.eq(
        "eoi after unmap",
        calls::physdev_eoi(pirq),
        Err(Errno::EINVAL),
    );
}

/// `XENMEM_exchange` of `ins` (order-0 frames) for `outs.len()` extents of `order` whose
/// PFNs `outs` lists; returns the result and `nr_exchanged`.
fn exchange(ins: &mut [u64], outs: &mut [u64], order: u32, bits: u32) -> (Result<(), Errno>, u64) {
    let mut x = MemoryExchange {
        input: MemoryReservation {
            extent_start: ins.as_mut_ptr() as u64,
            nr_extents: ins.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
        },
        output: MemoryReservation {
            extent_start: outs.as_mut_ptr() as u64,
            nr_extents: outs.len() as u64,
            extent_order: order,
            mem_flags: xenmemf_address_bits(bits),
            domid: DOMID_SELF,
        },
        nr_exchanged: 0,
    };
    // SAFETY: the frames given are fresh (mapped nowhere, unused); the arrays are borrowed.
    let r = unsafe { calls::memory_exchange(&mut x) };
    (r, x.nr_exchanged)
}

/// `n` fresh frames with consecutive PFNs: `(first pfn, mfns)`.
fn fresh_run(n: usize) -> Option<(u64, alloc::vec::Vec<u64>)> {
    let mut mfns = alloc::vec::Vec::new();
    let mut first = None;
    while mfns.len() < n {
        let (pfn, mfn) = mm::fresh_frame()?;
        match first {
            Some(f) if f + mfns.len() as u64 == pfn => mfns.push(mfn),
            _ => {
                first = Some(pfn);
                mfns.clear();
                mfns.push(mfn);
            }
        }
    }
    Some((first?, mfns))
}

fn memory_exchange(c: &mut Checks) {
    let total_before = mm::frame_counts().map(|f| f.total);
    let Some((base, mut ins)) = fresh_run(16) else {
        c.check("16 fresh frames", false, format_args!("dom0 has none left"));
        return;
    };
    let mut outs = [base];
    let (r, done) = exchange(&mut ins, &mut outs, 4, 32);
    c.eq("exchange of 16 frames for one order-4 extent", r, Ok(()));
    c.eq("nr_exchanged", done, 16);
    let first = outs[0];
    println!(
        "devaccess: 16 frames exchanged for mfns {first:#x}..{:#x}",
        first + 16
    );
    c.check(
        "the new extent lies below 4 GiB and is aligned",
        first + 16 <= 1 << 20 && first.is_multiple_of(16),
        format_args!("first mfn {first:#x}"),
    );
    let contiguous = (0..16).all(|j| mm::m2p(first + j) == Some(base + j));
    c.check(
        "the M2P maps the 16 machine-contiguous frames to the 16 PFNs asked",
        contiguous,
        format_args!(
            "{:?}",
            (0..16)
                .map(|j| mm::m2p(first + j))
                .collect::<alloc::vec::Vec<_>>()
        ),
    );
    for j in 0..16 {
        mm::set_p2m(base + j, first + j);
    }
    c.check(
        "the p2m agrees (updated by dom0)",
        (0..16).all(|j| mm::p2m(base + j) == first + j),
        format_args!("no"),
    );
    // The new frames are dom0's and usable: mapped writable, zeroed.
    // SAFETY: slot 0 is this test's; the frame is one dom0 was just given.
    if let Ok(w) = unsafe { Window::writable(SLOT, first + 15) } {
        c.eq_hex("a new frame is zeroed", w.read(0x80), 0);
        w.write(0x80, 42);
        c.eq_hex("and writable", w.read(0x80), 42);
        let _ = w.close();
    } else {
        c.check("map a new frame", false, format_args!("refused"));
    }
    // A frame in use (dom0's own first frame, mapped) is refused; nothing exchanged.
    let Some((_, fresh)) = fresh_run(15) else {
        c.check("15 more fresh frames", false, format_args!("none left"));
        return;
    };
    let mut ins2: alloc::vec::Vec<u64> = fresh.clone();
    ins2.push(mm::p2m(0));
    let mut outs2 = [0u64];
    let (r, done) = exchange(&mut ins2, &mut outs2, 4, 0);
    c.eq("an exchange including a mapped frame", r, Err(Errno::EBUSY));
    c.eq("nothing exchanged", done, 0);
    c.eq("the output list untouched", outs2[0], 0);
    // Two chunks, the second with the mapped frame: the first is done and reported.
    let Some((base3, run)) = fresh_run(16) else {
        c.check("16 more fresh frames", false, format_args!("none left"));
        return;
    };
    let mut ins3: alloc::vec::Vec<u64> = run.clone();
    ins3.extend_from_slice(&ins2);
    let mut outs3 = [base3, 0];
    let (r, done) = exchange(&mut ins3, &mut outs3, 4, 0);
    c.eq(
        "a two-chunk exchange whose second chunk holds a mapped frame",
        r,
        Err(Errno::EBUSY),
    );
    c.eq("nr_exchanged reports the first chunk", done, 16);
    if r.is_err() && done == 16 {
        for j in 0..16 {
            mm::set_p2m(base3 + j, outs3[0] + j);
        }
    }
    c.eq(
        "bad sizes (1 frame for an order-4 pair)",
        exchange(&mut fresh.clone()[..1], &mut [0u64; 2], 4, 0).0,
        Err(Errno::EINVAL),
    );
    c.eq(
        "dom0's frame count unchanged",
        mm::frame_counts().map(|f| f.total),
        total_before,
    );
    c.eq(
        "frame table consistent after the exchanges",
        mm::check_frame_table(),
        0,
    );
}

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let _ = ctx;
    ports(c);
    mmio(c);
    interrupts(c);
    memory_exchange(c);
    Outcome::Ran
}

/// `devaccess_screen`: with the hypervisor owning the screen and the PS/2 keyboard (the
/// default `console=`, booted on a VBE framebuffer), dom0 can reach neither: the keyboard
/// controller's ports fault, its GSI is refused, and the framebuffer (the VGA device's BAR0,
/// which the hypervisor draws on) cannot be mapped through `DOMID_IO`.
pub fn screen(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let _ = ctx;
    // SAFETY: (both probes) the keyboard controller's ports are the hypervisor's here: the
    // access raises #GP before any effect; were it to run, reading the status register
    // changes nothing, and a read of the data port loses one keystroke.
    let probes = unsafe {
        [
            (
                "the keyboard controller's status (0x64)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") KBC_STATUS, out("al") _),
            ),
            (
                "the keyboard controller's data (0x60)",
                probe!(GENERAL_PROTECTION, "in al, dx"; in("dx") KBC_DATA, out("al") _),
            ),
        ]
    };
    for (what, p) in probes {
        c.check(
            format_args!("dom0 reading {what} raises #GP"),
            p.caught
                .is_some_and(|e| e.regs.vector == u64::from(GENERAL_PROTECTION)),
            format_args!("caught {:?}", p.caught),
        );
    }
    c.eq(
        "map_pirq of the keyboard's GSI (1)",
        calls::physdev_map_pirq_gsi(KBD_GSI, None),
        Err(Errno::EPERM),
    );
    let Some((fb, _)) = vga_bars() else {
        c.check("the VGA device on bus 0", false, format_args!("not found"));
        return Outcome::Ran;
    };
    // SAFETY: slot 0 is this test's; opened on dom0's own first frame, read-only.
    let Ok(w) = (unsafe { Window::read_only(SLOT, mm::p2m(0)) }) else {
        c.check("open a window", false, format_args!("refused"));
        return Outcome::Ran;
    };
    let Some(l1) = mm::walk(w.va())[3] else {
        c.check("walk to the window's entry", false, format_args!("none"));
        return Outcome::Ran;
    };
    let r = set_entry(l1.ma(), pte::entry(fb, pte::PRESENT | pte::RW), DOMID_IO);
    c.check(
        "mmu_update on DOMID_IO of the framebuffer the hypervisor draws on is EPERM",
        r == Err(Errno::EPERM),
        format_args!("returned {r:?}"),
    );
    c.check(
        "window closed",
        w.close() >= 0,
        format_args!("close failed"),
    );
    Outcome::Ran
}

/// `devaccess_domu`: testguest `physdev_domu` as a domU; its verdict from the console ring.
pub fn domu(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    super::domu_verdict(
        ctx,
        c,
        "physdev_domu",
        DOMU_MIB,
        "devaccess",
        "device accesses were all refused",
    )
}
