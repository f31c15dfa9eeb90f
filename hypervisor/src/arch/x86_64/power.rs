//! Power-off, reboot and halt on x86 PCs.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

use crate::acpi::{self, PowerOff};
use crate::power::ExitReason;

/// QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
const DEBUG_EXIT_PORT: u16 = 0xF4;
/// Reset control register of PCI chipsets (Intel ICH/PIIX "RST_CNT"): 0x06 = hard reset.
const RESET_CONTROL_PORT: u16 = 0xCF9;
/// 8042 keyboard controller command port; command 0xFE pulses the reset line.
const KBD_COMMAND_PORT: u16 = 0x64;

static DEBUG_EXIT: AtomicBool = AtomicBool::new(false);
static ACPI_POWER_OFF: spin::Once<Option<PowerOff>> = spin::Once::new();

/// Turns on the isa-debug-exit reporting (the `debug-exit` option).
pub fn set_debug_exit(enabled: bool) {
    DEBUG_EXIT.store(enabled, Ordering::SeqCst);
}

/// How the machine powers off through ACPI, if it can (its ports are the hypervisor's).
pub fn acpi_power_off_info() -> Option<PowerOff> {
    ACPI_POWER_OFF.get().copied().flatten()
}

/// Records how to power off, found in the ACPI tables at boot.
pub fn set_acpi_power_off(info: Option<PowerOff>) {
    ACPI_POWER_OFF.call_once(|| info);
}

fn outb(port: u16, value: u8) {
    // SAFETY: the ports written here (debug exit, reset, PM1 control, SMI command) only
    // stop or reset the machine or switch it to ACPI mode, which is the caller's intent.
    unsafe { Port::new(port).write(value) }
}

fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe { Port::new(port).write(value) }
}

fn inw(port: u16) -> u16 {
    // SAFETY: reading a PM1 control register has no side effects.
    unsafe { Port::new(port).read() }
}

/// Stops the machine for `reason`. Never returns.
pub fn exit(reason: ExitReason) -> ! {
    x86_64::instructions::interrupts::disable();
    if DEBUG_EXIT.load(Ordering::SeqCst) {
        outb(DEBUG_EXIT_PORT, reason.debug_exit_code());
    }
    match reason {
        ExitReason::PowerOff => acpi_power_off(),
        ExitReason::Dom0Reboot => reset(),
        // As Xen after a panic or a crash of dom0: the machine restarts by itself after a
        // while, unless `noreboot` keeps it stopped with the messages on screen.
        ExitReason::HypervisorFailure
        | ExitReason::Dom0Crashed
        | ExitReason::FrameTableInconsistent => {
            if NOREBOOT.load(Ordering::SeqCst) {
                crate::console::emergency_line("Manual reset required ('noreboot' specified)");
            } else {
                crate::console::emergency_line("Reboot in five seconds...");
                super::time::spin_seconds(5);
                reset();
            }
        }
    }
    crate::console::emergency_line("the machine is stopped; reset it to continue");
    halt_forever()
}

/// `noreboot`: a failure leaves the machine stopped instead of restarting it.
static NOREBOOT: AtomicBool = AtomicBool::new(false);

/// Records the `noreboot` option.
pub fn set_noreboot(on: bool) {
    NOREBOOT.store(on, Ordering::SeqCst);
}

fn acpi_power_off() {
    let Some(Some(p)) = ACPI_POWER_OFF.get().copied() else {
        crate::console::emergency_line("ACPI power-off is not available on this machine");
        return;
    };
    // Firmware that starts in legacy mode needs ACPI handed over first (ACPI 6.5 §16.3.1).
    if inw(p.pm1a_control) & acpi::SCI_EN == 0 && p.smi_command != 0 && p.acpi_enable != 0 {
        outb(p.smi_command, p.acpi_enable);
        for _ in 0..1_000_000 {
            if inw(p.pm1a_control) & acpi::SCI_EN != 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
    outw(p.pm1a_control, acpi::slp_typ(p.slp_typ_a) | acpi::SLP_EN);
    if let Some(pm1b) = p.pm1b_control {
        outw(pm1b, acpi::slp_typ(p.slp_typ_b) | acpi::SLP_EN);
    }
    // Give the chipset a moment to cut the power before reporting failure.
    for _ in 0..10_000_000 {
        core::hint::spin_loop();
    }
    crate::console::emergency_line("ACPI power-off did not take effect");
}

fn reset() {
    outb(RESET_CONTROL_PORT, 0x02);
    outb(RESET_CONTROL_PORT, 0x06);
    outb(KBD_COMMAND_PORT, 0xFE);
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Whether the ACPI tables' problems were logged already (they are logged once, by the
/// first look that asks for it).
static TABLES_REPORTED: AtomicBool = AtomicBool::new(false);

/// The ACPI root table (RSDT or XSDT) and its entry size: from the loader's RSDP copy, else
/// (on BIOS machines only) by scanning the BIOS area for the RSDP (ACPI 6.5 §5.2.5.1). `None`
/// when the firmware offers no usable tables. The first call with `report` logs what is
/// wrong: no tables, a root table with a bad checksum (used anyway, as Xen's ACPICA does:
/// each table it lists is checked on its own), and each listed table that is unreadable or
/// whose checksum does not hold (skipped by every lookup).
fn acpi_root(
    root_from_loader: Option<(u64, usize)>,
    report: bool,
) -> Option<(&'static [u8], usize)> {
    use super::paging::firmware_bytes;
    let report = report && !TABLES_REPORTED.swap(true, Ordering::SeqCst);
    // On UEFI there is no BIOS ROM area (0xE0000–0xFFFFF) to scan: only the loader's RSDP, or
    // the one the EFI system table names (`boot_info`, which says why neither was found).
    let legacy = crate::boot_info::firmware().has_legacy_bios();
    let root = root_from_loader.or_else(|| {
        if !legacy {
            return None;
        }
        let bios = firmware_bytes(0xE0000, 0x20000)?;
        (0..bios.len() - 36)
            .step_by(16)
            .find_map(|at| acpi::root_table(&bios[at..at + 36]))
    });
    let Some((root_addr, entry_size)) = root else {
        if report {
            log::warn!(target: "acpi", "no ACPI tables found; power-off will halt instead");
        }
        return None;
    };
    let root_sig = if entry_size == 8 { b"XSDT" } else { b"RSDT" };
    let root_table = firmware_bytes(root_addr, 36)
        .and_then(acpi::table_length)
        .and_then(|len| firmware_bytes(root_addr, len))
        .filter(|t| t.get(0..4) == Some(&root_sig[..]));
    let Some(root_table) = root_table else {
        if report {
            log::warn!(target: "acpi", "ACPI root table at {root_addr:#x} is invalid; power-off will halt instead");
        }
        return None;
    };
    if report {
        report_tables(root_addr, root_table, entry_size);
    }
    Some((root_table, entry_size))
}

/// Logs the root table's own checksum problem and every listed table that lookups skip.
fn report_tables(root_addr: u64, root_table: &[u8], entry_size: usize) {
    use super::paging::firmware_bytes;
    if let Some(acpi::TableProblem::BadChecksum { stored, expected }) =
        acpi::table_problem(root_table)
    {
        log::warn!(
            target: "acpi",
            "ACPI: root table {} at {root_addr:#x} has a bad checksum ({stored:#04x}, should be \
             {expected:#04x}); using it anyway, as Xen does (each table it lists is checked on \
             its own)",
            acpi::Signature(acpi::signature(root_table))
        );
    }
    let mut names = alloc::string::String::new();
    for addr in acpi::root_entries(root_table, entry_size) {
        let Some(header) = firmware_bytes(addr, 36) else {
            log::warn!(target: "acpi", "ACPI: table at {addr:#x} lies outside the memory map's RAM and ACPI areas; skipped");
            continue;
        };
        let signature = acpi::signature(header);
        let table = acpi::table_length(header).and_then(|len| firmware_bytes(addr, len));
        let problem = match table {
            Some(t) => acpi::table_problem(t),
            None => Some(acpi::TableProblem::BadLength {
                length: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
            }),
        };
        match problem {
            Some(problem) => log::warn!(target: "acpi", "{}", acpi::TableReport {
                signature,
                address: addr,
                problem
            }),
            None => {
                use core::fmt::Write;
                let _ = write!(names, " {}", acpi::Signature(signature));
            }
        }
    }
    log::info!(target: "acpi", "acpi: {} at {root_addr:#x} lists{names}", acpi::Signature(acpi::signature(root_table)));
}

/// The whole table at `addr` if it is mapped, carries `sig` and its checksum holds.
fn acpi_table(addr: u64, sig: &[u8; 4]) -> Option<&'static [u8]> {
    use super::paging::firmware_bytes;
    let len = acpi::table_length(firmware_bytes(addr, 36)?)?;
    let t = firmware_bytes(addr, len)?;
    acpi::valid_table(t, sig).then_some(t)
}

/// The MADT (signature `APIC`, ACPI 6.5 §5.2.12), if the firmware has a valid one. Quiet:
/// `discover_acpi` has already said what is missing.
pub fn find_madt(root_from_loader: Option<(u64, usize)>) -> Option<&'static [u8]> {
    let (root_table, entry_size) = acpi_root(root_from_loader, false)?;
    acpi::root_entries(root_table, entry_size).find_map(|addr| acpi_table(addr, b"APIC"))
}

/// The HPET's register block from a valid ACPI `HPET` table, if there is one. The first
/// look at the ACPI tables: it logs what is wrong with them (see [`acpi_root`]).
pub fn find_hpet(root_from_loader: Option<(u64, usize)>) -> Option<u64> {
    let (root_table, entry_size) = acpi_root(root_from_loader, true)?;
    let table =
        acpi::root_entries(root_table, entry_size).find_map(|addr| acpi_table(addr, b"HPET"))?;
    let base = acpi::hpet_base(table);
    if base.is_none() {
        log::warn!(target: "acpi", "ACPI: the HPET table gives no usable register address; HPET not used");
    }
    base
}

/// Finds the power-off registers in the ACPI tables (see [`acpi_root`]). Returns `None`,
/// with the reason logged, when the firmware offers no usable tables.
pub fn discover_acpi(root_from_loader: Option<(u64, usize)>) -> Option<PowerOff> {
    let (root_table, entry_size) = acpi_root(root_from_loader, true)?;
    let table = acpi_table;
    if let Some(madt) =
        acpi::root_entries(root_table, entry_size).find_map(|addr| table(addr, b"APIC"))
    {
        match super::ioapic::route_com1(madt) {
            Ok(()) => log::info!(target: "acpi", "console: COM1 input interrupt-driven (I/O APIC)"),
            Err(why) => log::warn!(target: "acpi", "console: {why}; COM1 input is polled"),
        }
        if crate::console::keyboard_owned() {
            match super::ioapic::route_keyboard(madt) {
                Ok(()) => {
                    log::info!(target: "acpi", "console: PS/2 keyboard input interrupt-driven (I/O APIC)")
                }
                Err(why) => log::warn!(target: "acpi", "console: {why}; keyboard input is polled"),
            }
        }
    }
    let fadt = acpi::root_entries(root_table, entry_size).find_map(|addr| table(addr, b"FACP"));
    let Some((pm1a, pm1b, smi_command, acpi_enable, dsdt_addr)) = fadt.and_then(acpi::fadt_fields)
    else {
        log::warn!(target: "acpi", "no usable ACPI FADT; power-off will halt instead");
        return None;
    };
    let dsdt = table(dsdt_addr, b"DSDT");
    if dsdt.is_none()
        && let Some(header) = super::paging::firmware_bytes(dsdt_addr, 36)
    {
        let whole = acpi::table_length(header)
            .and_then(|len| super::paging::firmware_bytes(dsdt_addr, len));
        if let Some(problem) = whole.and_then(acpi::table_problem) {
            log::warn!(target: "acpi", "{}", acpi::TableReport {
                signature: acpi::signature(header),
                address: dsdt_addr,
                problem
            });
        }
    }
    let (slp_typ_a, slp_typ_b) = dsdt.and_then(acpi::find_s5).unwrap_or_else(|| {
        log::warn!(target: "acpi", "no \\_S5 sleep state in the DSDT; trying SLP_TYP 0");
        (0, 0)
    });
    Some(PowerOff {
        pm1a_control: pm1a,
        pm1b_control: pm1b,
        slp_typ_a,
        slp_typ_b,
        smi_command,
        acpi_enable,
    })
}
