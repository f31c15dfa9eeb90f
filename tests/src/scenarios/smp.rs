//! Many CPUs (issue 12): the application processors are started from the MADT and run
//! vCPUs like the boot CPU. These scenarios check the count the boot log and `xl info` give
//! under `-smp 2` and `-smp 4`, `maxcpus=`, and that the guest-visible behaviour (the attack
//! suite, the test guest, dom0 and xl) holds with every pCPU running guests.

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
/// single-vCPU guest behaviour is unchanged when the guest may run on any pCPU.
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

/// The xl scenarios written for one CPU, unchanged on `-smp 4`: create, list, pause,
/// destroy; the console; the lifecycle (reboot, crash, poweroff actions); every verb.
pub fn xl_4(ctx: &Context) -> Result<(), String> {
    ctx.set_default_cpus(4);
    xl::create_list_pause_destroy(ctx).map_err(|e| format!("-smp 4: {e}"))?;
    xl::console(ctx).map_err(|e| format!("-smp 4: {e}"))?;
    xl::lifecycle(ctx).map_err(|e| format!("-smp 4: {e}"))?;
    xl::verbs(ctx).map_err(|e| format!("-smp 4: {e}"))
}

/// The dom0 and demo scenarios written for one CPU, unchanged on `-smp 4`: dom0's programs
/// (shell, static musl programs), the default image, and the demos.
pub fn dom0_programs_4(ctx: &Context) -> Result<(), String> {
    ctx.set_default_cpus(4);
    super::dom0::programs(ctx).map_err(|e| format!("-smp 4: {e}"))?;
    super::demos::default_image(ctx).map_err(|e| format!("-smp 4: {e}"))?;
    super::demos::compute(ctx).map_err(|e| format!("-smp 4: {e}"))?;
    super::demos::echo(ctx).map_err(|e| format!("-smp 4: {e}"))
}

/// The test guest's tests on a representative CPU without SMEP/SMAP/UMIP, `-cpu qemu64`,
/// on `-smp 2`: events, isolation, page tables.
pub fn testguest_qemu64_2(ctx: &Context) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(TESTGUEST)?;
    for test in ["events", "isolation", "pagetables"] {
        let mut vm = ctx
            .machine()
            .cpu("qemu64")
            .cpus(2)
            .module(&kernel, &format!("test={test}"))
            .boot()?;
        guests::testguest_verdict(&mut vm, test, "qemu64").map_err(|e| format!("-smp 2: {e}"))?;
    }
    Ok(())
}

/// Samples of `xl vcpu-list` the affinity and offlining scenarios take: a fixed count, no
/// waiting between them (each is a new xl process, so they spread over a second or so).
const SAMPLES: usize = 20;

/// The machine for the affinity and offlining scenarios: `-smp 4`, 512 MiB, the default
/// image with the test initrd (`probe frame-check` at the end).
pub(super) fn boot_busy_4(ctx: &Context) -> Result<crate::machine::Qemu, String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .cpus(4)
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .boot()?;
    vm.wait_for(xl::PROMPT, T)?;
    Ok(vm)
}

/// Starts CPU-bound domains `busy1..=busyN` (the compute demo counting to 10G, uncapped:
/// minutes of work under emulation) and returns their ids.
fn start_busy(vm: &mut crate::machine::Qemu, n: u32) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for i in 1..=n {
        let out = xl::run(
            vm,
            &format!(
                "xl create /etc/xen/compute.cfg 'name=\"busy{i}\"' 'cmdline=\"limit=10G\"' cap=0"
            ),
        )?;
        let id = out
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("Domain busy{i} created with id "))
            })
            .and_then(|id| id.trim().parse().ok())
            .ok_or_else(|| format!("`xl create` of busy{i} failed:\n{out}"))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Destroys `busy1..=busyN` and checks the frame table (`probe frame-check`).
fn stop_busy(vm: &mut crate::machine::Qemu, n: u32) -> Result<(), String> {
    for i in 1..=n {
        xl::run(vm, &format!("xl destroy busy{i}"))?;
    }
    let list = xl::run(vm, "xl list")?;
    if list.contains("busy") {
        return Err(format!("busy domains survived `xl destroy`:\n{list}"));
    }
    let out = xl::run(vm, "probe frame-check")?;
    if !out.contains("frame table check: 0") {
        return Err(format!("frame table check: {out:?}"));
    }
    Ok(())
}

/// dom0test's `smp` (4-vCPU guest across pCPUs, the races, destroy while running) and
/// `teardown` on `-smp 4` with the hypervisor built with debug assertions
/// (`xenia-checked.elf`): a lock taken out of order (`lockorder`), a frame-table record
/// changed without its owner's lock (`mm::ft`), a failed `debug_assert!` or an arithmetic
/// overflow panics, and the test fails. Also required: traps handled shared on two pCPUs
/// at once, the four paths DESIGN §10 names handled shared, and two pCPUs inside the frame
/// table at once.
pub fn lockcheck_4(ctx: &Context) -> Result<(), String> {
    let checked = ctx
        .workspace()
        .require_artifact(crate::workspace::CHECKED_HYPERVISOR_ARTIFACT)?;
    ctx.set_default_hypervisor(&checked);
    let log = super::domains::dom0test_log(ctx, 4, "smp", LOCKCHECK_WAIT, &["smp figure "], false)?;
    let (most, shared) = shared_traps_at_once(&log)?;
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("traps handled with the world shared"))
    {
        ctx.note(line.trim());
    }
    if most < 2 {
        return Err(format!(
            "no two pCPUs were ever inside hypercall or trap handlers at once ({most}): the \
             world is not shared"
        ));
    }
    // No lock around the frame table: two domains' page-table updates (dom0test's two
    // `smp_spin` domains side by side) were inside it at the same moment.
    let inside = frame_table_at_once(&log)?;
    if inside < 2 {
        return Err(format!(
            "no two pCPUs were ever inside the frame table at once ({inside}), though two \
             domains changed their page tables side by side: it behaves as one lock"
        ));
    }
    // The paths DESIGN §10 names, each handled with the world shared (no global lock): a
    // page-table update (`mmu_update`, `update_va_mapping` or `mmuext_op`), a timer
    // (`set_timer_op` or `vcpu_op`), a grant map (`grant_table_op`) and an event send
    // (`event_channel_op`). Which of them happened to overlap another pCPU's trap in this
    // run is noted, not required (it depends on the host's load).
    for (what, any) in [
        ("a page-table update", &[1u32, 14, 26][..]),
        ("a timer hypercall", &[15, 24]),
        ("a grant map", &[20]),
        ("an event send", &[32]),
    ] {
        if !any.iter().any(|n| shared.contains(n)) {
            return Err(format!(
                "{what} (hypercall {any:?}) was never handled with the world shared \
                 (shared: {shared:?})"
            ));
        }
    }
    super::domains::dom0test_on(ctx, 4, "teardown", LOCKCHECK_WAIT, &["teardown: "], false)
}

/// The checked hypervisor's figure at dom0's shutdown: how many pCPUs were inside traps
/// handled with the world shared at once, at most, and the hypercalls handled shared
/// (which of them overlapped another pCPU's is noted).
fn shared_traps_at_once(log: &str) -> Result<(u32, Vec<u32>), String> {
    const KEY: &str = "traps handled with the world shared: up to ";
    let line = log
        .lines()
        .find(|l| l.contains(KEY))
        .ok_or_else(|| format!("no {KEY:?} line in the log of the checked hypervisor"))?;
    let rest = &line[line.find(KEY).map_or(0, |i| i + KEY.len())..];
    let n = rest
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad line {line:?}"))?;
    let shared = rest
        .split_once("handled shared:")
        .and_then(|(_, r)| r.split_once(';'))
        .map(|(list, _)| {
            list.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Ok((n, shared))
}

/// The checked hypervisor's other figure on that line: how many pCPUs were inside the frame
/// table at once, at most.
fn frame_table_at_once(log: &str) -> Result<u32, String> {
    const KEY: &str = "frame table: up to ";
    let line = log
        .lines()
        .find(|l| l.contains("traps handled with the world shared"))
        .ok_or("no \"traps handled with the world shared\" line in the checked log")?;
    line.split_once(KEY)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("no {KEY:?} figure in {line:?}"))
}

/// The checked build is slower than release (overflow checks); generous.
const LOCKCHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// One row of `xl vcpu-list`.
#[derive(Debug)]
pub(super) struct VcpuRow {
    name: String,
    vcpu: u32,
    /// `None` for a vCPU that is down (`-`).
    cpu: Option<u32>,
    /// The state column (`r--`, `-b-`, `--p` for a vCPU that is down).
    state: String,
    /// `hard / soft`, as printed.
    affinity: String,
}

/// Parses `xl vcpu-list`'s output (the header and the rows after the command's echo).
fn parse_vcpu_list(out: &str) -> Result<Vec<VcpuRow>, String> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("Name "));
    lines
        .next()
        .ok_or_else(|| format!("no `xl vcpu-list` header in {out:?}"))?;
    let mut rows = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f.contains(&"/") {
            // Not a row: a log line of the hypervisor's or a domain's on the same console.
            continue;
        }
        let bad = || format!("bad `xl vcpu-list` row {line:?}");
        let slash = f.iter().position(|x| *x == "/").ok_or_else(bad)?;
        rows.push(VcpuRow {
            name: f[0].to_string(),
            vcpu: f[2].parse().map_err(|_| bad())?,
            cpu: f[3].parse().ok(),
            state: f[4].to_string(),
            affinity: f[slash - 1..].join(" "),
        });
    }
    Ok(rows)
}

/// `xl vcpu-list [args]`, parsed.
fn vcpu_list(vm: &mut crate::machine::Qemu, args: &str) -> Result<Vec<VcpuRow>, String> {
    let out = xl::run(vm, &format!("xl vcpu-list {args}"))?;
    parse_vcpu_list(&out)
}

/// `nr_cpus` from `xl info`.
fn nr_cpus(vm: &mut crate::machine::Qemu) -> Result<u32, String> {
    let info = xl::run(vm, "xl info")?;
    info.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "nr_cpus").then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no nr_cpus in `xl info`: {info:?}"))
}

/// `xl vcpu-pin` on `-smp 4` with three CPU-bound domains: busy1's vCPU pinned to CPU 2 is
/// on CPU 2 in every one of [`SAMPLES`] `xl vcpu-list` samples while the others spread over
/// the rest, its affinity shows `2 / all`; repinned to `all` it shows `all / all`; a CPU
/// list with no CPU of the host is refused with xl's message.
pub fn affinity_4(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    start_busy(&mut vm, 3)?;
    let out = xl::run(&mut vm, "xl vcpu-pin busy1 0 2")?;
    if out
        .lines()
        .skip(1)
        .any(|l| !l.trim().is_empty() && !l.contains(xl::PROMPT))
    {
        return Err(format!("`xl vcpu-pin busy1 0 2` said something:\n{out}"));
    }
    let mut others = 0u32;
    for i in 0..SAMPLES {
        let rows = vcpu_list(&mut vm, "")?;
        let busy1 = rows
            .iter()
            .find(|r| r.name == "busy1" && r.vcpu == 0)
            .ok_or_else(|| format!("sample {i}: no busy1 in {rows:?}"))?;
        if busy1.cpu != Some(2) || busy1.affinity != "2 / all" {
            return Err(format!(
                "sample {i}: busy1 pinned to CPU 2 seen as {busy1:?}"
            ));
        }
        for r in rows.iter().filter(|r| r.name != "busy1") {
            if let Some(c) = r.cpu {
                others |= 1 << c;
            }
        }
    }
    ctx.note(format!("the other vCPUs were seen on CPUs {others:#06b}"));
    let out = xl::run(&mut vm, "xl vcpu-pin busy1 all all")?;
    if out.contains("xl:") {
        return Err(format!("`xl vcpu-pin busy1 all all` failed:\n{out}"));
    }
    let rows = vcpu_list(&mut vm, "busy1")?;
    if rows.len() != 1 || rows[0].affinity != "all / all" {
        return Err(format!("busy1 repinned to all: {rows:?}"));
    }
    let out = xl::run(&mut vm, "xl vcpu-pin busy1 0 7")?;
    if !out.contains("Could not set affinity for vcpu `0'") {
        return Err(format!(
            "pinning to a CPU the host lacks was not refused:\n{out}"
        ));
    }
    let out = xl::run(&mut vm, "xl vcpu-pin busy1 0 ^all")?;
    if !out.contains("Can't combine \"^\" and \"all\".") {
        return Err(format!("`^all` was not refused:\n{out}"));
    }
    // xl.cfg's `cpus=`: pinned from the start, before it first runs.
    let out = xl::run(
        &mut vm,
        "xl create /etc/xen/compute.cfg 'name=\"pinned\"' 'cmdline=\"limit=10G\"' cap=0 'cpus=\"1\"'",
    )?;
    if !out.contains("Domain pinned created with id ") {
        return Err(format!("`xl create ... cpus=\"1\"` failed:\n{out}"));
    }
    for i in 0..SAMPLES {
        let rows = vcpu_list(&mut vm, "pinned")?;
        if rows.len() != 1 || rows[0].affinity != "1 / all" || rows[0].cpu != Some(1) {
            return Err(format!("sample {i}: pinned by cpus=\"1\" seen as {rows:?}"));
        }
    }
    let out = xl::run(
        &mut vm,
        "xl create /etc/xen/compute.cfg 'name=\"nowhere\"' 'cpus=\"9\"'",
    )?;
    if !out.contains("cannot pin vCPU 0 as cpus= says")
        || xl::run(&mut vm, "xl list")?.contains("nowhere")
    {
        return Err(format!(
            "cpus= naming no CPU of the host was not refused cleanly:\n{out}"
        ));
    }
    xl::run(&mut vm, "xl destroy pinned")?;
    stop_busy(&mut vm, 3)?;
    vm.kill();
    Ok(())
}

/// Samples of `xl vcpu-list` [`vcpu_set_4`] takes at most while waiting for the guest to
/// act on `xl vcpu-set` (each a new xl process; the guest usually needs one or two).
const VCPU_SET_SAMPLES: usize = 40;

/// `xl vcpu-list <dom>` until every vCPU's online state is `want` (vCPU *n* online when
/// `want[n]`), at most [`VCPU_SET_SAMPLES`] times; the last rows otherwise.
pub(super) fn await_vcpus(
    vm: &mut crate::machine::Qemu,
    dom: &str,
    want: &[bool],
) -> Result<Vec<VcpuRow>, String> {
    let mut rows = Vec::new();
    for _ in 0..VCPU_SET_SAMPLES {
        rows = vcpu_list(vm, dom)?;
        let online: Vec<bool> = rows.iter().map(|r| r.cpu.is_some()).collect();
        if online == want {
            return Ok(rows);
        }
    }
    // The guest says on its console what its hot-plug handler did: show it in the log.
    if vm.send(&format!("xl console {dom}\r")).is_ok()
        && vm.wait_for("Ctrl-] detaches", T).is_ok()
        && vm.send("\x1d").is_ok()
    {
        let _ = vm.wait_for(xl::PROMPT, T);
    }
    Err(format!(
        "vCPUs of {dom} never became {want:?} in {VCPU_SET_SAMPLES} samples of `xl vcpu-list`; last: {rows:?}"
    ))
}

/// `xl vcpu-set` on `-smp 4` (issue 12, through xenstore as on Xen): the echo demo with
/// `vcpus=4` has four vCPUs online; `xl vcpu-set hp 1` has its runtime take vCPUs 1–3 down
/// (`xl vcpu-list` shows them `-` / `--p`, as Xen does); `xl vcpu-set hp 4` brings them
/// back and they run again; counts of 0, past the host's CPUs (without `-i`) and past
/// `maxvcpus` are refused with Xen's messages and change nothing; the frame table is consistent after `xl destroy`.
pub fn vcpu_set_4(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    let out = xl::run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'name=\"hp\"' vcpus=4",
    )?;
    if !out.contains("Domain hp created with id ") {
        return Err(format!("`xl create ... vcpus=4` failed:\n{out}"));
    }
    await_vcpus(&mut vm, "hp", &[true; 4])?;
    let out = xl::run(&mut vm, "xl vcpu-set hp 1")?;
    if out.contains("xl:") || out.contains("failed") {
        return Err(format!("`xl vcpu-set hp 1` failed:\n{out}"));
    }
    let rows = await_vcpus(&mut vm, "hp", &[true, false, false, false])?;
    if rows[1..].iter().any(|r| r.state != "--p") {
        return Err(format!("vCPUs 1-3 down but not shown as `--p`: {rows:?}"));
    }
    for (args, message) in [
        ("hp 0", "Requested 0 VCPUs!"),
        (
            "hp 5",
            "You are overcommmitting! You have 4 physical CPUs and want 5 vCPUs!",
        ),
        ("-i hp 5", "Requested 5 VCPUs, however maxcpus is 4!"),
    ] {
        let out = xl::run(&mut vm, &format!("xl vcpu-set {args}"))?;
        if !out.contains(message) {
            return Err(format!(
                "`xl vcpu-set {args}` did not say {message:?}:\n{out}"
            ));
        }
    }
    // Refusals change nothing.
    await_vcpus(&mut vm, "hp", &[true, false, false, false])?;
    let out = xl::run(&mut vm, "xl vcpu-set hp 4")?;
    if out.contains("xl:") || out.contains("failed") {
        return Err(format!("`xl vcpu-set hp 4` failed:\n{out}"));
    }
    let rows = await_vcpus(&mut vm, "hp", &[true; 4])?;
    if rows.iter().any(|r| r.state == "--p") {
        return Err(format!("vCPUs back up but still shown down: {rows:?}"));
    }
    // And down to two, to see the count is the number online, not the highest.
    xl::run(&mut vm, "xl vcpu-set hp 2")?;
    await_vcpus(&mut vm, "hp", &[true, true, false, false])?;
    xl::run(&mut vm, "xl destroy hp")?;
    let out = xl::run(&mut vm, "probe frame-check")?;
    if !out.contains("frame table check: 0") {
        return Err(format!("frame table check: {out:?}"));
    }
    vm.kill();
    Ok(())
}

/// `xen-hptool cpu-offline 3` on `-smp 4` with four CPU-bound domains (busy4 pinned to CPU 3
/// alone): it succeeds, busy4's affinity is broken as Xen does (logged, `all / all`), no
/// vCPU is on CPU 3 in any of [`SAMPLES`] `xl vcpu-list` samples, `xl info` says `nr_cpus
/// : 3`; CPU 0, CPU 3 again and CPU 9 are refused with Xen's messages (and Xenia's reason for
/// CPU 0); `cpu-online 3` brings it back (`nr_cpus : 4`, and within [`SAMPLES`] samples some
/// vCPU runs there).
pub fn cpu_offline_4(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    let ids = start_busy(&mut vm, 4)?;
    xl::run(&mut vm, "xl vcpu-pin busy4 0 3")?;
    let out = xl::run(&mut vm, "xen-hptool cpu-offline 3")?;
    if !out.contains("Prepare to offline CPU 3") || !out.contains("CPU 3 offlined successfully") {
        return Err(format!("`xen-hptool cpu-offline 3` failed:\n{out}"));
    }
    for i in 0..SAMPLES {
        let rows = vcpu_list(&mut vm, "")?;
        if let Some(r) = rows.iter().find(|r| r.cpu == Some(3)) {
            return Err(format!("sample {i}: {r:?} on the offline CPU 3"));
        }
        if rows.len() < 5 {
            return Err(format!("sample {i}: vCPUs missing: {rows:?}"));
        }
    }
    let busy4 = vcpu_list(&mut vm, "busy4")?;
    if busy4.first().map(|r| r.affinity.as_str()) != Some("all / all") {
        return Err(format!("busy4's affinity was not broken: {busy4:?}"));
    }
    let dmesg = xl::run(&mut vm, "xl dmesg")?;
    let broken = format!("Breaking affinity for d{}v0", ids[3]);
    if !dmesg.contains(&broken) {
        return Err(format!("no {broken:?} in the hypervisor's log"));
    }
    if nr_cpus(&mut vm)? != 3 {
        return Err("`xl info` should say nr_cpus 3 with CPU 3 offline".into());
    }
    for (cpu, want) in [
        (0, "CPU 0 offline failed (error 16: "),
        (3, "CPU 3 offline failed (error 22: "),
        (9, "CPU 9 offline failed (error 22: "),
    ] {
        let out = xl::run(&mut vm, &format!("xen-hptool cpu-offline {cpu}"))?;
        if !out.contains(want) {
            return Err(format!(
                "`xen-hptool cpu-offline {cpu}`: expected {want:?} in\n{out}"
            ));
        }
        if cpu == 0 && !out.contains("CPU 0 (the boot CPU) and the last online CPU") {
            return Err(format!("cpu-offline 0 does not say why:\n{out}"));
        }
    }
    let dmesg = xl::run(&mut vm, "xl dmesg")?;
    if !dmesg.contains("cpu 0 stays online") {
        return Err("the hypervisor's log does not say why CPU 0 stays online".into());
    }
    let out = xl::run(&mut vm, "xen-hptool cpu-online 3")?;
    if !out.contains("CPU 3 onlined successfully") {
        return Err(format!("`xen-hptool cpu-online 3` failed:\n{out}"));
    }
    if nr_cpus(&mut vm)? != 4 {
        return Err("`xl info` should say nr_cpus 4 with CPU 3 back".into());
    }
    let mut back = false;
    for _ in 0..SAMPLES {
        if vcpu_list(&mut vm, "")?.iter().any(|r| r.cpu == Some(3)) {
            back = true;
            break;
        }
    }
    if !back {
        return Err(format!(
            "no vCPU on CPU 3 in {SAMPLES} samples after cpu-online"
        ));
    }
    let out = xl::run(&mut vm, "xen-hptool cpu-online 3")?;
    if !out.contains("CPU 3 online failed (error 22: ") {
        return Err(format!("onlining an online CPU was not refused:\n{out}"));
    }
    stop_busy(&mut vm, 4)?;
    vm.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_list_parses() {
        let out = "xl vcpu-list\n\
            Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)\n\
            Domain-0                             0     0    0   r--       1.3  all / all\n\
            busy1                                1     0    2   -b-       0.0  2 / 0-1,3\n\
            busy2                                2     1    -   --p       0.0  all / all\n\
            dom0# ";
        let rows = parse_vcpu_list(out).unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            (rows[0].cpu, rows[0].affinity.as_str()),
            (Some(0), "all / all")
        );
        assert_eq!(
            (
                rows[1].name.as_str(),
                rows[1].cpu,
                rows[1].affinity.as_str()
            ),
            ("busy1", Some(2), "2 / 0-1,3")
        );
        assert_eq!((rows[2].vcpu, rows[2].cpu), (1, None));
        assert_eq!(
            (rows[1].state.as_str(), rows[2].state.as_str()),
            ("-b-", "--p")
        );
        assert!(parse_vcpu_list("nothing").is_err());
    }
}
