//! Firmware differences that break hypervisors (issue 17): machines without a PIT or an
//! HPET, RAM above 4 GiB behind a PCI hole, and an ACPI table whose checksum does not hold.
//! Each boots to dom0's prompt (or, with no clock at all, stops with a line that says why)
//! and logs what it found.

use std::time::Duration;

use crate::contract;
use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{DEFAULT_TIMEOUT as T, EXIT_HYPERVISOR_FATAL, EXIT_POWEROFF, Machine, Qemu};
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, parse_list, run};

/// The calibration line's start and the words naming each source.
const CALIBRATED: &str = "apic: timer";
const BY_HPET: &str = "(calibrated with the HPET at";
const BY_PIT: &str = "(calibrated with the PIT)";
/// The line when no clock is left to calibrate with.
const NO_CLOCK: &str = "no clock to calibrate the timers with";
/// How the console marks an error line (`hypervisor/src/console.rs`).
const ERROR: &str = "error: ";
/// Bound for the boot of a machine with 6 GiB: scrubbing it takes longer than the default.
const BIG_BOOT: Duration = Duration::from_secs(240);

/// The default image on `machine`.
fn default_image(ctx: &Context, machine: Machine) -> Result<Machine, String> {
    let ws = ctx.workspace();
    let mut machine = machine.hv_options(DEFAULT_HV_OPTIONS);
    for module in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    Ok(machine)
}

/// The calibration line of a boot.
fn calibration_line(vm: &mut Qemu) -> Result<String, String> {
    vm.wait_for_line_starting(CALIBRATED, T)
}

/// Boots the default image with `-machine <property>`, expects dom0's prompt and a
/// calibration line naming `source`, and `xl list` to list Domain-0.
fn boot_without(ctx: &Context, property: &str, source: &str) -> Result<(), String> {
    let machine = default_image(ctx, ctx.machine().memory_mib(512))?
        .qemu_arg("-machine")
        .qemu_arg(property);
    let mut vm = machine.boot()?;
    let line = calibration_line(&mut vm)?;
    if !line.contains(source) {
        return Err(format!(
            "with -machine {property} the calibration line is {line:?}; expected it to name \
             {source:?}"
        ));
    }
    ctx.note(line);
    vm.wait_for(PROMPT, T)?;
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    if !rows.iter().any(|r| r.name == "Domain-0") {
        return Err(format!("`xl list` has no Domain-0: {rows:?}"));
    }
    vm.kill();
    Ok(())
}

/// `-machine pit=off`: no 8254 PIT. Calibrated with the HPET; dom0 runs.
pub fn no_pit(ctx: &Context) -> Result<(), String> {
    boot_without(ctx, "pit=off", BY_HPET)
}

/// `-machine hpet=off`: no HPET (and no ACPI HPET table). Calibrated with the PIT; dom0 runs.
pub fn no_hpet(ctx: &Context) -> Result<(), String> {
    boot_without(ctx, "hpet=off", BY_PIT)
}

/// Neither a PIT nor an HPET, and QEMU's CPUs name no TSC frequency in CPUID: the boot stops
/// with a line naming what is missing, through the hypervisor's failure exit, not a hang or a
/// triple fault.
pub fn no_clock(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx
        .machine()
        .qemu_arg("-machine")
        .qemu_arg("pit=off,hpet=off")
        .boot()?;
    let line = vm.wait_for_line_matching("the no-clock line", T, |l| l.contains(NO_CLOCK))?;
    if !line.starts_with(ERROR) {
        return Err(format!("the no-clock line is not an error: {line:?}"));
    }
    vm.expect_exit(EXIT_HYPERVISOR_FATAL, T)
}

/// `-smp 6,sockets=2,cores=3`: QEMU numbers the cores of a socket in a 2-bit field, so the
/// APIC IDs are 0, 1, 2, 4, 5, 6. The gap gets one info line, and all six CPUs come online.
pub fn madt_gaps(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx
        .machine()
        .qemu_arg("-smp")
        .qemu_arg("6,sockets=2,cores=3")
        .boot()?;
    let note = vm.wait_for_line_matching("the MADT's gap line", T, |l| {
        l.starts_with("MADT: APIC IDs of the 6 usable CPUs are not contiguous (highest 6)")
    })?;
    let line = vm.wait_for_line_starting(contract::CPUS, T)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    if contract::parse_cpus_line(&line) != Some(6) {
        return Err(format!(
            "with APIC IDs 0-2 and 4-6 the hypervisor says {line:?}; expected six online"
        ));
    }
    let failed: Vec<String> = vm
        .serial_log()
        .lines()
        .filter(|l| l.contains(contract::CPU_NOT_STARTED) || l.contains("skipped"))
        .map(str::to_string)
        .collect();
    if !failed.is_empty() {
        return Err(format!("CPUs skipped or failed to start: {failed:?}"));
    }
    ctx.note(note);
    Ok(())
}

/// Host memory QEMU is given (`-m 6144`): on QEMU 7.2's `pc` machine 3 GiB lie below 4 GiB
/// and 3 GiB above, with the PCI hole between.
const SIX_GIB_MIB: u32 = 6144;
/// The first frame above 4 GiB.
const FIRST_HIGH_FRAME: u64 = 0x10_0000;
/// The last frame of RAM of that machine (6 GiB + 1 GiB of hole, less one page).
const LAST_HIGH_FRAME: u64 = 0x1B_FFFF;

/// `-m 6144`: the memory line within 3%, dom0's prompt, and a domU big enough that it must
/// be given frames above 4 GiB. One such frame is shown to be the domU's by
/// `xen-hptool mem-offline` (which names a frame's owner; the frame is put back online after)
/// and the domU runs.
pub fn mem_6g(ctx: &Context) -> Result<(), String> {
    let machine = default_image(ctx, ctx.machine().memory_mib(SIX_GIB_MIB))?;
    let mut vm = machine.boot()?;
    let line = vm.wait_for_line_starting(contract::MEMORY, T)?;
    let usable = contract::parse_memory_line(&line)?;
    let (lo, hi) = (f64::from(SIX_GIB_MIB) * 0.97, f64::from(SIX_GIB_MIB) * 1.03);
    if !(lo..=hi).contains(&(usable as f64)) {
        return Err(format!(
            "with -m {SIX_GIB_MIB} the hypervisor reports {usable} MiB usable; expected {lo:.0} \
             to {hi:.0} (within 3%)"
        ));
    }
    vm.wait_for(PROMPT, BIG_BOOT)?;
    let free = info_field(&mut vm, "free_memory")?;
    // Everything free but a margin for the domain's page tables, p2m and grant frames: far
    // more than the RAM below 4 GiB.
    let memory = free.saturating_sub(64);
    if memory < 3200 {
        return Err(format!(
            "only {free} MiB free after dom0 on a 6 GiB machine: RAM above 4 GiB is not used"
        ));
    }
    let out = run(
        &mut vm,
        &format!("xl create /etc/xen/hello.cfg 'name=\"big\"' memory={memory}"),
    )?;
    if !out.contains("Domain big created with id") {
        return Err(format!("xl create of a {memory} MiB domain: {out:?}"));
    }
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    let big = rows
        .iter()
        .find(|r| r.name == "big")
        .ok_or_else(|| format!("`xl list` has no big: {rows:?}"))?;
    if !(big.state.contains('r') || big.state.contains('b')) {
        return Err(format!("the big domain is not running or blocked: {big:?}"));
    }
    // A frame above 4 GiB that the domain owns: look from the top of RAM down in steps of
    // 64 MiB (a frame the hypervisor holds is refused; a free one is offlined, then put back).
    let mut owned = None;
    let mut seen = Vec::new();
    let mut mfn = LAST_HIGH_FRAME - 0x100;
    while mfn >= FIRST_HIGH_FRAME && owned.is_none() {
        let out = run(&mut vm, &format!("xen-hptool mem-offline {mfn:x}"))?;
        let pending = format!(
            "Memory mfn {mfn:x} offline pending, this page is DOM{}",
            big.id
        );
        if out.contains(&pending) {
            owned = Some(mfn);
        } else {
            seen.push(format!(
                "{mfn:#x}: {}",
                out.lines().last().unwrap_or("").trim()
            ));
        }
        if out.contains("offline") && !out.contains("not permitted") {
            let back = run(&mut vm, &format!("xen-hptool mem-online {mfn:x}"))?;
            if !back.contains("onlined successfully") {
                return Err(format!("mem-online {mfn:x} after the probe: {back:?}"));
            }
        }
        mfn -= 0x4000;
    }
    let Some(mfn) = owned else {
        return Err(format!(
            "no frame above 4 GiB belongs to the {memory} MiB domain: {seen:?}"
        ));
    };
    ctx.note(format!(
        "{line}; domain big ({memory} MiB) owns frame {mfn:#x} (above 4 GiB)"
    ));
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    if !rows.iter().any(|r| r.name == "big") {
        return Err(format!("the big domain went away: {rows:?}"));
    }
    vm.kill();
    Ok(())
}

/// A field of `xl info`, as a number.
fn info_field(vm: &mut Qemu, name: &str) -> Result<u64, String> {
    let out = run(vm, "xl info")?;
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no numeric {name} in `xl info`: {out:?}"))
}

/// A small SSDT: a header and one AML `NoopOp`, with a valid checksum.
pub fn ssdt() -> Vec<u8> {
    const NOOP_OP: u8 = 0xA3;
    let mut t = Vec::with_capacity(37);
    t.extend_from_slice(b"SSDT");
    t.extend_from_slice(&37u32.to_le_bytes());
    t.push(2); // revision
    t.push(0); // checksum, set below
    t.extend_from_slice(b"XENIA ");
    t.extend_from_slice(b"BADSUM  ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"XNIA");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.push(NOOP_OP);
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

/// A corrupted SSDT: the warning names it (signature and address) and says it was skipped,
/// and the boot reaches dom0's prompt. The table reaches the machine through GRUB's `acpi`
/// command, which adds it as it is: QEMU's `-acpitable` recomputes every table's checksum
/// (`acpi_table_install` in QEMU's `hw/acpi/core.c`), so it cannot carry a bad one.
pub fn bad_acpi_table(ctx: &Context) -> Result<(), String> {
    let dir = ctx.work_dir()?;
    let mut table = ssdt();
    table[9] = table[9].wrapping_add(0x5A);
    let path = dir.join("bad-ssdt.aml");
    std::fs::write(&path, &table).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let machine = default_image(ctx, ctx.machine().memory_mib(512))?.grub_acpi_table(&path);
    let mut vm = machine.boot()?;
    let line = vm.wait_for_line_matching("the bad-checksum line of the SSDT", T, |l| {
        l.contains("ACPI: table SSDT at") && l.contains("bad checksum")
    })?;
    if !line.starts_with(contract::WARNING) || !line.ends_with("skipped") {
        return Err(format!(
            "the bad-checksum line is {line:?}; expected a warning ending \"skipped\""
        ));
    }
    ctx.note(line);
    vm.wait_for(PROMPT, T)?;
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    if !rows.iter().any(|r| r.name == "Domain-0") {
        return Err(format!("`xl list` has no Domain-0: {rows:?}"));
    }
    vm.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ssdt;

    #[test]
    fn ssdt_is_valid_until_patched() {
        let t = ssdt();
        assert_eq!(t.len(), 37);
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 37);
        assert_eq!(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    }
}
