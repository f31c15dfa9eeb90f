//! Dom0's I/O ports (DESIGN.md §11): one I/O permission bitmap (Intel SDM Vol. 1 §19.5.2),
//! shared by every pCPU's TSS through the entry area, that grants dom0 every port except
//! those the hypervisor drives itself. Never IOPL: IOPL ≥ 1 would let ring 1 run `cli`.
//!
//! The bitmap is filled once at boot, before any guest runs, and never changes; a vCPU
//! switch picks it or nothing with one store of the TSS's `iomap_base`
//! (`gdt::set_io_ports`). Because dom0's kernel returns to ring 3 with its own `iretq`
//! (IOPL stays 0 and the bitmap is the pCPU's), dom0's ring-3 processes reach the same
//! ports: that is dom0's business, as a Linux dom0 with `iopl(3)` processes.

use crate::acpi::PowerOff;

/// Port ranges the hypervisor keeps, whatever the machine: `(first, count, what)`.
/// 0xCF9 (reset control) lies inside PCI configuration mechanism #1 (0xCF8–0xCFF), which
/// is dom0's, so it is not among them: dom0 can reset the machine through it, as it could
/// anyway. The 8042's command port (0x64), which the hypervisor writes only to reset the
/// machine when everything else failed, is dom0's too, unless the hypervisor owns the PS/2
/// keyboard (`console::attach_keyboard`): then 0x60 and 0x64 are the hypervisor's.
pub const HYPERVISOR_PORTS: [(u16, u16, &str); 7] = [
    // The legacy PICs, masked for good at boot (`pit::disable_legacy_pic`).
    (0x20, 2, "master PIC"),
    (0xA0, 2, "slave PIC"),
    // The PIT and the speaker/gate port, used to calibrate the local APIC timer.
    (0x40, 4, "PIT"),
    (0x61, 1, "PIT gate (port 0x61)"),
    // The CMOS RTC: the wallclock at boot, and bit 7 of the index is the NMI mask.
    (0x70, 2, "CMOS/RTC"),
    // QEMU's isa-debug-exit device (the `debug-exit` option).
    (0xF4, 4, "isa-debug-exit"),
    // The hypervisor's console.
    (0x3F8, 8, "COM1"),
];

/// Whether the hypervisor keeps `port` (`acpi`: the ACPI ports it uses to power off).
pub fn hypervisor_port(port: u16, acpi: Option<&PowerOff>) -> bool {
    let fixed = HYPERVISOR_PORTS.iter().any(|&(first, count, _)| {
        port >= first && u32::from(port) < u32::from(first) + u32::from(count)
    });
    let acpi = acpi.is_some_and(|p| {
        let in_range = |first: u16, count: u16| {
            first != 0 && port >= first && u32::from(port) < u32::from(first) + u32::from(count)
        };
        in_range(p.pm1a_control, 2)
            || p.pm1b_control.is_some_and(|b| in_range(b, 2))
            || in_range(p.smi_command, 1)
    });
    let keyboard = crate::console::keyboard_owned()
        && (port == super::i8042::DATA || port == super::i8042::STATUS);
    fixed || acpi || keyboard
}

/// Fills dom0's I/O bitmap: every port open (bit clear) except the hypervisor's, then the
/// all-ones end byte. Runs once on the boot CPU, before the APs start and before any guest.
pub fn init(acpi: Option<&PowerOff>) {
    // SAFETY: boot CPU, before any AP or guest runs: nothing reads the bitmap yet.
    let bitmap = unsafe { super::entry::io_bitmap_mut() };
    let bytes = super::gdt::IO_BITMAP_BYTES as usize;
    bitmap.fill(0xFF);
    let mut kept = 0u32;
    for port in 0..=u16::MAX {
        let byte = &mut bitmap[usize::from(port / 8)];
        let bit = 1u8 << (port % 8);
        if hypervisor_port(port, acpi) {
            *byte |= bit;
            kept += 1;
        } else {
            *byte &= !bit;
        }
    }
    debug_assert!(bitmap[bytes..].iter().all(|&b| b == 0xFF));
    log::info!(target: "ioport", "dom0's I/O bitmap: {} ports, {kept} kept by the hypervisor", 65536 - kept);
}
