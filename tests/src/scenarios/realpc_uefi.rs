//! Real PCs, UEFI boot (issue 17): the same image as on BIOS, booted by OVMF (QEMU's UEFI
//! firmware) through GRUB's `x86_64-efi` platform. The hypervisor must see UEFI (the
//! multiboot2 EFI tags), take its memory map from the EFI memory map tag and its ACPI RSDP
//! from the loader, and report everything it reports on BIOS: the memory within 3% of `-m`,
//! its CPUs, dom0 at its prompt, and an ACPI power-off through OVMF's FADT and `\_S5`.
//!
//! OVMF under TCG is slow to start: its own start-up takes about 10 s and GRUB reads the
//! modules through the firmware's CD driver, so the waits up to the hypervisor's banner are
//! longer than on BIOS ([`TO_BANNER`]); after that the usual bounds apply.

use std::time::Duration;

use crate::contract;
use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{DEFAULT_TIMEOUT as T, EXIT_ACPI_POWEROFF, EXIT_POWEROFF, Machine, Qemu};
use crate::runner::Context;
use crate::scenarios::boot::expect_memory_line;
use crate::scenarios::xl::{PROMPT, parse_list, run};
use crate::workspace::{DOM0_ARTIFACT, INITRD_ARTIFACT};

/// From QEMU's start to the hypervisor's banner under OVMF: OVMF's start-up and GRUB loading
/// the image: 7 to 25 s measured on a busy 2-core host, so the bound leaves a margin of about
/// four.
const TO_BANNER: Duration = Duration::from_secs(90);

/// The hypervisor's banner line, the first it prints.
const BANNER: &str = "Xenia ";

/// The line that says the hypervisor found UEFI firmware.
const FIRMWARE_UEFI: &str = "firmware: UEFI";

/// The line that says the memory map came from the EFI memory map tag.
const EFI_MEMORY_MAP: &str = "from the EFI memory map";

/// A machine booted with OVMF instead of SeaBIOS.
fn uefi_machine(ctx: &Context) -> Machine {
    ctx.machine().uefi(true)
}

/// Waits for the banner (OVMF and GRUB first), then for the lines that say the hypervisor saw
/// UEFI and used the EFI memory map, in this order.
fn expect_uefi_start(vm: &mut Qemu) -> Result<(), String> {
    vm.wait_for_line_starting(BANNER, TO_BANNER)?;
    vm.wait_for_line_starting(FIRMWARE_UEFI, T)?;
    vm.wait_for_line(EFI_MEMORY_MAP, T)?;
    Ok(())
}

/// No warning may say that the ACPI tables or the power-off registers were not found, or that
/// GRUB passed no RSDP (it must, from OVMF's configuration table).
fn expect_acpi_found(vm: &Qemu) -> Result<(), String> {
    let log = vm.serial_log();
    let bad = [
        "no ACPI tables found",
        "no usable ACPI FADT",
        "is invalid; power-off will halt",
        "gave no ACPI RSDP tag",
        "no \\_S5",
    ];
    match log.lines().find(|l| bad.iter().any(|b| l.contains(b))) {
        Some(line) => Err(format!(
            "under OVMF the ACPI tables must be found: {line:?}"
        )),
        None => Ok(()),
    }
}

/// The default image (the hypervisor with `dom0_mem=64M`, dom0 with its console shell, its
/// initrd) on a 2-CPU, 1 GiB UEFI machine: the hypervisor reports UEFI, starts the second
/// CPU, dom0 comes up to `dom0# ` and `xl list` lists Domain-0.
pub fn boot(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let mut machine = uefi_machine(ctx)
        .memory_mib(1024)
        .cpus(2)
        .hv_options(DEFAULT_HV_OPTIONS)
        .console_shell();
    for module in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.boot()?;
    expect_uefi_start(&mut vm)?;
    expect_memory_line(&mut vm, 1024, T)?;
    let cpus = vm.wait_for_line_starting(contract::CPUS, T)?;
    if contract::parse_cpus_line(&cpus) != Some(2) {
        return Err(format!(
            "a 2-CPU UEFI machine must say {:?}, found {cpus:?}",
            contract::cpus_online(2)
        ));
    }
    // Scrubbing free memory and dom0's start take longer than one bound on a busy host.
    vm.wait_for(PROMPT, 2 * T)?;
    expect_acpi_found(&vm)?;
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    match rows.iter().find(|r| r.name == "Domain-0") {
        Some(row) if row.id == 0 && row.mem == 64 => {}
        Some(row) => {
            return Err(format!(
                "`xl list` shows Domain-0 as {row:?}; expected ID 0 with 64 MiB"
            ));
        }
        None => return Err(format!("`xl list` has no Domain-0: {rows:?}")),
    }
    vm.kill();
    Ok(())
}

/// `-m mib` under OVMF: the memory line is within 3% of `mib` (as `boot_mem_*` on BIOS), and
/// the boot without dom0 ends in a clean power-off.
pub fn memory(ctx: &Context, mib: u32) -> Result<(), String> {
    let mut vm = uefi_machine(ctx).memory_mib(mib).boot()?;
    expect_uefi_start(&mut vm)?;
    expect_memory_line(&mut vm, mib, T)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)
}

/// ACPI power-off from dom0 under OVMF: `poweroff` at dom0's prompt, and the hypervisor
/// (without `debug-exit`) powers the machine off through the FADT's PM1 control registers
/// and the DSDT's `\_S5`, so QEMU exits with 0.
pub fn poweroff(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let mut vm = uefi_machine(ctx)
        .memory_mib(512)
        .debug_exit(false)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(INITRD_ARTIFACT)?, "")
        .boot()?;
    expect_uefi_start(&mut vm)?;
    vm.wait_for(PROMPT, 2 * T)?;
    expect_acpi_found(&vm)?;
    vm.send("poweroff\r")?;
    vm.expect_exit(EXIT_ACPI_POWEROFF, T)
}
