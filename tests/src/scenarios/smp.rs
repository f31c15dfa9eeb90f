//! Many CPUs, first step (issue 12): the application processors are started from the MADT
//! and parked; nothing is scheduled on them yet. These scenarios check the count the boot log
//! and `xl info` give under `-smp 2` and `-smp 4`, `maxcpus=`, and that the guest-visible
//! behaviour (the attack suite, the test guest, dom0 and xl) is unchanged with APs parked.

use std::time::Instant;

use crate::contract;
use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{DEFAULT_TIMEOUT as T, EXIT_POWEROFF};
use crate::runner::Context;

use super::guests::{self, TESTGUEST};
use super::xl;

/// Boots `-smp cpus` with hypervisor options `options` and no module; checks the boot log
/// says `cpus: <want> online`, names no CPU that failed to start, and the machine powers off.
/// Returns the boot time to the no-module line (host time).
fn boot_count(ctx: &Context, cpus: u32, options: &str, want: u32) -> Result<f64, String> {
    let started = Instant::now();
    // At debug level the hypervisor says how long the APs took (its own clock).
    let mut vm = ctx
        .machine()
        .cpus(cpus)
        .hv_options(&format!("loglvl=debug {options}"))
        .boot()?;
    let line = vm.wait_for_line_starting(contract::CPUS, T)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    let boot = started.elapsed().as_secs_f64();
    vm.expect_exit(EXIT_POWEROFF, T)?;
    if contract::parse_cpus_line(&line) != Some(want) {
        return Err(format!(
            "with -smp {cpus} {options:?} the hypervisor says {line:?}; expected {:?}",
            contract::cpus_online(want)
        ));
    }
    let failed: Vec<String> = vm
        .serial_log()
        .lines()
        .filter(|l| l.contains(contract::CPU_NOT_STARTED))
        .map(str::to_string)
        .collect();
    if !failed.is_empty() {
        return Err(format!("CPUs failed to start: {failed:?}"));
    }
    let log = vm.serial_log();
    let aps = log
        .lines()
        .find_map(|l| {
            l.split_once("smp: ")
                .filter(|(_, r)| r.contains("APs started in"))
        })
        .map_or("no AP started", |(_, r)| r);
    println!(
        "    -smp {cpus} {options}: {line} ({aps}); boot to the no-module line {boot:.2} s (host)"
    );
    Ok(boot)
}

/// `-smp 1`: `cpus: 1 online`.
pub fn boot_1(ctx: &Context) -> Result<(), String> {
    boot_count(ctx, 1, "", 1).map(drop)
}

/// `-smp 2`: `cpus: 2 online`.
pub fn boot_2(ctx: &Context) -> Result<(), String> {
    boot_count(ctx, 2, "", 2).map(drop)
}

/// `-smp 4`: `cpus: 4 online`.
pub fn boot_4(ctx: &Context) -> Result<(), String> {
    boot_count(ctx, 4, "", 4).map(drop)
}

/// `maxcpus=2` on `-smp 4`: two CPUs online, the boot CPU among them; `maxcpus=1` leaves the
/// boot CPU alone; a limit above the machine's count changes nothing.
pub fn maxcpus(ctx: &Context) -> Result<(), String> {
    boot_count(ctx, 4, "maxcpus=2", 2)?;
    boot_count(ctx, 4, "maxcpus=1", 1)?;
    boot_count(ctx, 2, "maxcpus=8", 2).map(drop)
}

/// `-smp 2,maxcpus=4`: QEMU's MADT lists four processors, the two hot-pluggable ones disabled.
/// Each disabled entry gets one warning and is skipped; two CPUs come online.
pub fn madt_disabled(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx
        .machine()
        .qemu_arg("-smp")
        .qemu_arg("2,maxcpus=4")
        .boot()?;
    let line = vm.wait_for_line_starting(contract::CPUS, T)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    let log = vm.serial_log();
    let disabled: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(contract::WARNING) && l.contains("is disabled; skipped"))
        .collect();
    if contract::parse_cpus_line(&line) != Some(2) || disabled.len() != 2 {
        return Err(format!(
            "with -smp 2,maxcpus=4: {line:?} and {} disabled-entry warnings {disabled:?}; \
             expected 2 online and 2 warnings",
            disabled.len()
        ));
    }
    Ok(())
}

/// The default image under `-smp 4`: `xl info` says `nr_cpus : 4`, `max_cpu_id : 3`,
/// `threads_per_core : 1`, the cores per socket QEMU's `-smp 4` means and a plausible
/// `cpu_mhz`, and dom0 and a domU still work (one domain created, listed, destroyed).
pub fn xl_info_4(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .cpus(4)
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS);
    for module in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(xl::PROMPT, T)?;
    let info = xl::run(&mut vm, "xl info")?;
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    if field("nr_cpus").as_deref() != Some("4") || field("max_cpu_id").as_deref() != Some("3") {
        return Err(format!(
            "`xl info` under -smp 4 should say nr_cpus 4 and max_cpu_id 3:\n{info}"
        ));
    }
    // `-smp 4` alone is one thread per core; QEMU 6.2 and later make it one socket of four
    // cores (the `pc` machine prefers cores), earlier versions four sockets of one.
    let cores = field("cores_per_socket");
    if field("threads_per_core").as_deref() != Some("1")
        || !matches!(cores.as_deref(), Some("4" | "1"))
    {
        return Err(format!(
            "`xl info` under -smp 4 should say threads_per_core 1 and cores_per_socket 4 \
             (or 1 on QEMU before 6.2):\n{info}"
        ));
    }
    // The calibrated TSC, as `<MHz>.<kHz>`: anything a machine of the last 30 years runs at.
    let mhz = field("cpu_mhz")
        .and_then(|v| v.split_once('.').and_then(|(m, _)| m.parse::<u32>().ok()))
        .unwrap_or(0);
    if !(100..=20_000).contains(&mhz) {
        return Err(format!(
            "`xl info` cpu_mhz is not a plausible TSC frequency (100-20000 MHz):\n{info}"
        ));
    }
    println!(
        "    -smp 4: cores_per_socket {}, threads_per_core 1, cpu_mhz {mhz}",
        cores.unwrap_or_default()
    );
    let out = xl::run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    if !out.contains("Domain hello created") {
        return Err(format!("`xl create` under -smp 4 failed:\n{out}"));
    }
    let list = xl::run(&mut vm, "xl list")?;
    if !list.lines().any(|l| l.starts_with("hello ")) {
        return Err(format!("`xl list` does not show hello:\n{list}"));
    }
    xl::run(&mut vm, "xl destroy hello")?;
    let list = xl::run(&mut vm, "xl list")?;
    if list.lines().any(|l| l.starts_with("hello ")) {
        return Err(format!("hello survived `xl destroy`:\n{list}"));
    }
    Ok(())
}

/// The attack suite under `-smp 4`: every attack still refused, the frame table consistent.
pub fn attacks_4(ctx: &Context) -> Result<(), String> {
    guests::attacks_on(ctx, "max", 4)
}

/// Tests of the test guest under `-smp 4` (events, isolation, page tables, grants): the
/// single-pCPU guest behaviour is unchanged while the APs are parked.
pub fn testguest_4(ctx: &Context) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(TESTGUEST)?;
    for test in ["events", "isolation", "pagetables", "grants"] {
        let mut vm = ctx
            .machine()
            .cpu("max")
            .cpus(4)
            .module(&kernel, &format!("test={test}"))
            .boot()?;
        guests::testguest_verdict(&mut vm, test, "max").map_err(|e| format!("-smp 4: {e}"))?;
    }
    Ok(())
}
