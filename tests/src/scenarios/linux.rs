//! Debian's stock Linux kernel as a domU (issue 18), at the `dom0# ` prompt of the default
//! image. `cargo xtask build` fetches the kernel package (`linux-image-*-cloud-amd64-unsigned`)
//! and puts the kernel, its initramfs and `/etc/xen/debian.cfg` into dom0's initrd; without the
//! package these scenarios pass with a `skipped:` note saying why (the runner has no skip
//! status).
//!
//! `xl create` loads the kernel as libxc does and the hypervisor runs it in its Xen PV guest
//! mode: what is checked is Linux's early boot (its banner with Debian's release and its Xen
//! PV detection on the early console, no oops), that the domain keeps running or crashes with
//! a logged reason, and that destroying it returns every frame; and the initramfs built for
//! it, booted with the same kernel natively by QEMU (`-kernel`), so that the guest mode's
//! session starts from a known-good initramfs.

use std::fs;
use std::time::Duration;

use super::xl::{boot, parse_list, run};
use crate::INITRD_ARTIFACT;
use crate::runner::Context;
use crate::workspace::{DEBIAN_INITRD_ARTIFACT, DEBIAN_KERNEL_ARTIFACT};

/// The configuration `cargo xtask build` adds when it has the kernel.
const CONFIG: &str = "/etc/xen/debian.cfg";

/// `Some(reason)` when the default initrd has no Debian kernel (the package could not be
/// fetched): the scenario is skipped.
pub(super) fn skip_reason(ctx: &Context) -> Result<Option<String>, String> {
    let path = ctx.workspace().require_artifact(INITRD_ARTIFACT)?;
    let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A newc entry's name follows its header, without the leading `/`.
    let needle = b"etc/xen/debian.cfg\0";
    if bytes.windows(needle.len()).any(|w| w == needle) {
        Ok(None)
    } else if ctx.workspace().artifact(DEBIAN_KERNEL_ARTIFACT).is_file() {
        // `cargo xtask build` writes the kernel's artifact only when it put the kernel and
        // the configuration into the initrd: both or neither. Not a reason to skip.
        Err(format!(
            "{} has no {CONFIG} although Debian's kernel was fetched ({}): the initrd is \
             stale or was built without it; run `cargo xtask build` again",
            path.display(),
            ctx.workspace().artifact(DEBIAN_KERNEL_ARTIFACT).display()
        ))
    } else {
        Ok(Some(format!(
            "skipped: {} has no {CONFIG}: `cargo xtask build` could not fetch Debian's \
             linux-image-*-cloud-amd64-unsigned (its output says why; it needs apt and \
             Debian's archive)",
            path.display()
        )))
    }
}

/// `xl create /etc/xen/debian.cfg` with the default `dom0_mem` (the builder streams the
/// 51 MiB image into the domain's frames) and `earlyprintk=xen`: Linux prints its banner
/// with Debian's release and detects Xen PV, with no oops; then [`built`].
pub fn early_boot(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let mut vm = boot(ctx)?;
    let config = run(&mut vm, &format!("cat {CONFIG}"))?;
    for line in [
        "type = \"pv\"",
        "kernel = \"/boot/debian/vmlinuz\"",
        "ramdisk = \"/boot/debian/initrd.img\"",
        "extra = \"console=hvc0\"",
        "memory = 256",
        "name = \"debian\"",
    ] {
        if !config.contains(line) {
            return Err(format!("{CONFIG} lacks `{line}`: {config:?}"));
        }
    }
    let before = parse_list(&run(&mut vm, "xl list")?)?;
    let free_before = free_memory(&run(&mut vm, "xl info")?)?;
    // Timed (`time: <ms> ms` from dom0's shell, or busybox's `real ...`): recognition streams 24 MiB of the 51 MiB
    // image through an 8 MiB buffer.
    let out = run(
        &mut vm,
        &format!("time xl create {CONFIG} 'extra=\"console=hvc0 earlyprintk=xen loglevel=8\"'"),
    )?;
    let took = out
        .lines()
        .find(|l| l.starts_with("time: ") || l.trim_start().starts_with("real"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "(no time printed)".into());
    if out.contains("is a Xen PV kernel") || out.contains("xl: exited with status") {
        return Err(format!("xl create refused Debian's kernel: {out:?}"));
    }
    // Linux's early console (`earlyprintk=xen`: `console_io`, in the hypervisor's log with
    // the `(d1)` prefix): its banner with Debian's release, and its Xen PV detection, which
    // comes after the memory map, the first page-table and descriptor-table hypercalls and
    // the exception-table fix-ups of its early MSR probes.
    let banner = "Linux version ";
    vm.wait_for(EARLY_DETECTED, EARLY_BOOT_BOUND)?;
    let log = vm.serial_log();
    let line = log
        .lines()
        .find(|l| l.contains("(d1)") && l.contains(banner))
        .ok_or_else(|| format!("no `{banner}` line from the domain"))?;
    let release = line[line.find(banner).unwrap_or(0) + banner.len()..]
        .split(' ')
        .next()
        .unwrap_or_default();
    if !release.ends_with("-cloud-amd64") || !release.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "the banner does not name Debian's release: {line:?}"
        ));
    }
    for bad in ["Oops", "BUG", "Call Trace", "Kernel panic"] {
        if let Some(l) = log.lines().find(|l| l.contains("(d1)") && l.contains(bad)) {
            return Err(format!("the domain's early log has {bad:?}: {l:?}"));
        }
    }
    let note = built(&mut vm, &before, free_before)?;
    ctx.note(format!(
        "Linux {release} reached `{EARLY_DETECTED}` ({took}); then {note}"
    ));
    vm.kill();
    Ok(())
}

/// The early-console line that says Linux found itself on a Xen PV hypervisor.
const EARLY_DETECTED: &str = "Hypervisor detected: Xen PV";
/// Bound for Linux to get there from `xl create` (about 5 s under TCG here).
const EARLY_BOOT_BOUND: Duration = Duration::from_secs(120);

/// How many `xl list` rounds [`built`] waits for Linux to run or crash (each is a command
/// round trip to dom0's shell, about a second under TCG).
const BUILT_ROUNDS: usize = 30;

/// `xl create` built the Debian domain (the hypervisor has the Xen PV guest mode): it is
/// listed with its 256 MiB; within [`BUILT_ROUNDS`] it is running (its vCPU time grows) or
/// it crashed with a reason in the hypervisor's log; `xl destroy` then returns every frame
/// (`xl list` and free memory as before). Returns what was seen.
fn built(
    vm: &mut crate::machine::Qemu,
    before: &[super::xl::Row],
    free_before: u64,
) -> Result<String, String> {
    let mut seen = String::new();
    for _ in 0..BUILT_ROUNDS {
        let rows = parse_list(&run(vm, "xl list")?)?;
        let Some(row) = rows.iter().find(|r| r.name == "debian") else {
            return Err(format!(
                "xl create succeeded but `xl list` has no debian: {rows:?}"
            ));
        };
        if !(250..=256).contains(&row.mem) {
            return Err(format!(
                "debian has {} MiB, configured 256: {row:?}",
                row.mem
            ));
        }
        seen = format!("state {} after xl create", row.state);
        if row.state.contains('c') {
            let log = run(vm, "xl dmesg")?;
            let reason = log
                .lines()
                .rev()
                .find(|l| l.contains("crash"))
                .ok_or_else(|| format!("debian crashed with no reason logged: {log:?}"))?;
            seen = format!("crashed: {}", reason.trim());
            break;
        }
        if row.state.contains('r') || row.state.contains('b') {
            seen = format!("running ({})", row.state);
        }
    }
    run(vm, "xl destroy debian")?;
    let after = parse_list(&run(vm, "xl list")?)?;
    if after != before {
        return Err(format!("after xl destroy: {before:?} -> {after:?}"));
    }
    let free_after = free_memory(&run(vm, "xl info")?)?;
    if free_after != free_before {
        return Err(format!(
            "destroying debian left free memory at {free_after} MiB, {free_before} before"
        ));
    }
    Ok(seen)
}

/// `xl create -c /etc/xen/debian.cfg` at `loglvl=debug`: Debian's Linux boots to its busybox
/// shell on `hvc0`, reached through `xl`'s console: `uname -r` names Debian's release,
/// `/proc/cpuinfo` has one processor, `free` shows the domain's memory, `dmesg` says it runs
/// on Xen; detached, `xl list` shows it running with its memory, and `xl console` attaches
/// again; its boot log has no `BUG`, `Oops`, `WARNING:`, `Call Trace` or panic line and the
/// hypervisor logged no `ENOSYS` for it; `poweroff -f` ends the domain through `on_poweroff`
/// (the console closes, dom0's prompt comes back, `xl list` no longer has it, every frame is
/// back).
pub fn boot_shell(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .hv_options(&format!("{} loglvl=debug", crate::iso::DEFAULT_HV_OPTIONS));
    for module in crate::iso::DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    let before = parse_list(&run(&mut vm, "xl list")?)?;
    let free_before = free_memory(&run(&mut vm, "xl info")?)?;
    let start = std::time::Instant::now();
    let from = vm.cursor();
    vm.send(&format!("xl create -c {CONFIG}\r"))?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    // Linux's own log on hvc0, then the initramfs's.
    vm.wait_for_line("Run /init as init process", SHELL_BOOT_BOUND)?;
    let banner = vm.wait_for_line("xenia-initramfs: Linux ", SHELL_BOOT_BOUND)?;
    vm.wait_for("xenia-initramfs: ready", SHELL_COMMAND)?;
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    let booted = start.elapsed();
    if !banner.contains(" on xen") {
        return Err(format!(
            "the initramfs should see /sys/hypervisor/type `xen`: {banner:?}"
        ));
    }
    let release = banner
        .split("xenia-initramfs: Linux ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    vm.send("uname -r\r")?;
    let line = vm.wait_for_line_starting(&release, SHELL_COMMAND)?;
    if line.trim() != release || !release.ends_with("-cloud-amd64") {
        return Err(format!(
            "uname -r said {line:?}; the banner said {banner:?}"
        ));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    vm.send("grep -c ^processor /proc/cpuinfo\r")?;
    let cpus = vm.wait_for_line_matching("the processor count", SHELL_COMMAND, |l| {
        l.trim().parse::<u32>().is_ok()
    })?;
    if cpus.trim() != "1" {
        return Err(format!(
            "/proc/cpuinfo lists {} processors, 1 configured",
            cpus.trim()
        ));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    vm.send("free -m\r")?;
    let mem = vm.wait_for_line_starting("Mem:", SHELL_COMMAND)?;
    let total: u64 = mem
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("free printed {mem:?}"))?;
    // 256 MiB less the kernel's own (about 40 MiB here).
    if !(150..=256).contains(&total) {
        return Err(format!(
            "free says {total} MiB in all, 256 configured: {mem:?}"
        ));
    }
    // Used and free are both some of it, and within it.
    let column = |n: usize| {
        mem.split_whitespace()
            .nth(n)
            .and_then(|t| t.parse::<u64>().ok())
    };
    match (column(2), column(3)) {
        (Some(used), Some(free)) if used > 0 && free > 0 && used + free <= total => {}
        _ => return Err(format!("free's Mem: line does not add up: {mem:?}")),
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    vm.send("dmesg | grep -c -i xen\r")?;
    let xen_lines = vm.wait_for_line_matching("the count of xen lines", SHELL_COMMAND, |l| {
        l.trim().parse::<u32>().is_ok()
    })?;
    if xen_lines.trim().parse::<u32>().unwrap_or(0) < 3 {
        return Err(format!("dmesg has {} lines naming Xen", xen_lines.trim()));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    let events = dmesg_and_cpuinfo(&mut vm)?;
    // Detached (Ctrl-]), `xl list` shows the running domain with its memory; `xl console`
    // attaches again to the same shell.
    vm.send("\x1d")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    let row = rows
        .iter()
        .find(|r| r.name == "debian")
        .ok_or_else(|| format!("`xl list` has no debian while it runs: {rows:?}"))?;
    if !(250..=256).contains(&row.mem) || !(row.state.contains('r') || row.state.contains('b')) {
        return Err(format!("debian should be running with 256 MiB: {row:?}"));
    }
    vm.send("xl console debian\r")?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    vm.send("\r")?;
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    vm.send("poweroff -f\r")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    clean_session(&vm, from)?;
    let after = parse_list(&run(&mut vm, "xl list")?)?;
    if after != before {
        return Err(format!("after poweroff: {before:?} -> {after:?}"));
    }
    let free_after = free_memory(&run(&mut vm, "xl info")?)?;
    if free_after != free_before {
        return Err(format!(
            "the powered-off domain left free memory at {free_after} MiB, {free_before} before"
        ));
    }
    ctx.note(format!(
        "Linux {release} reached its shell on hvc0 in {:.1} s after xl create -c; {total} MiB; \
         {events}; powered off",
        booted.as_secs_f64()
    ));
    vm.kill();
    Ok(())
}

/// What `dmesg | grep -i xen` and `/proc/cpuinfo` must show beyond counts, at the domU's
/// prompt: the 2-level event ABI in use, chosen by Linux itself (no `xen.fifo_events=0` on
/// its command line: it asked for FIFO, got `EOPNOTSUPP` and fell back), never FIFO;
/// `/proc/cpuinfo`'s processor, vendor, model name and flags lines for its one CPU. Returns
/// the events line.
fn dmesg_and_cpuinfo(vm: &mut crate::machine::Qemu) -> Result<String, String> {
    let (out, status) = super::linux_dev::sh(vm, "dmesg | grep -i xen", "DMESG")?;
    if status != 0 {
        return Err(format!("dmesg | grep -i xen failed: {out:?}"));
    }
    if let Some(l) = out.lines().find(|l| l.contains("FIFO-based ABI")) {
        return Err(format!(
            "Linux uses FIFO event channels, which Xenia lacks: {l:?}"
        ));
    }
    let events = out
        .lines()
        .find(|l| l.contains("xen:events: Using 2-level ABI"))
        .ok_or_else(|| format!("dmesg names no 2-level event ABI: {out:?}"))?
        .trim()
        .to_string();
    let (out, _) = super::linux_dev::sh(vm, "cat /proc/cmdline", "CMDLINE")?;
    if out.contains("fifo_events") {
        return Err(format!(
            "Linux's command line still turns FIFO event channels off: {out:?}"
        ));
    }
    let (out, status) = super::linux_dev::sh(
        vm,
        "grep -c -E '^(processor|vendor_id|model name|flags)[[:space:]]*:' /proc/cpuinfo",
        "CPUINFO",
    )?;
    if status != 0 || !out.lines().any(|l| l.trim() == "4") {
        return Err(format!(
            "/proc/cpuinfo should have processor, vendor_id, model name and flags for one CPU: \
             {out:?}"
        ));
    }
    Ok(events)
}

/// The domU shell's prompt (the initramfs's `/etc/profile`).
const SHELL_PROMPT: &str = "debian# ";
/// Bound for Linux to boot from `xl create -c` to its initramfs under TCG (about 60 s here).
const SHELL_BOOT_BOUND: Duration = Duration::from_secs(150);
/// Bound for one command in the domU's shell or dom0's.
const SHELL_COMMAND: Duration = Duration::from_secs(60);

/// `free_memory` of `xl info`'s output, in MiB.
fn free_memory(out: &str) -> Result<u64, String> {
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "free_memory").then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no free_memory in {out:?}"))
}

/// Bound for Debian's kernel to boot natively under TCG and reach its shell (about 15 s here).
const NATIVE_BOOT: Duration = Duration::from_secs(300);
/// Bound for one shell command in the native Linux.
const NATIVE_COMMAND: Duration = Duration::from_secs(60);

/// Debian's kernel booted natively by QEMU (`-kernel`, `-initrd`, `console=ttyS0`) with the
/// initramfs `cargo xtask build` made for the domU: `/init` mounts what it should, tries the
/// Xen block and net modules (natively they must refuse with `No such device`, their answer
/// off Xen, which also shows they match the kernel: a mismatched module is refused as an
/// invalid format), and starts busybox's shell on the console, where `uname -r` shows the
/// package's release and `/proc`, `/sys` and `/dev` are mounted.
pub fn initramfs_native(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let (kernel, initrd) = (
        ws.artifact(DEBIAN_KERNEL_ARTIFACT),
        ws.artifact(DEBIAN_INITRD_ARTIFACT),
    );
    if !kernel.is_file() || !initrd.is_file() {
        let reason = format!(
            "skipped: no {} and {}: `cargo xtask build` could not fetch Debian's \
             linux-image-*-cloud-amd64-unsigned (its output says why)",
            kernel.display(),
            initrd.display()
        );
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .qemu_arg("-kernel")
        .qemu_arg(&path(&kernel))
        .qemu_arg("-initrd")
        .qemu_arg(&path(&initrd))
        .qemu_arg("-append")
        .qemu_arg("console=ttyS0 quiet panic=-1")
        .boot()?;
    let banner = vm.wait_for_line("xenia-initramfs: Linux ", NATIVE_BOOT)?;
    let release = banner
        .split("xenia-initramfs: Linux ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    if !release.ends_with("-cloud-amd64") {
        return Err(format!("not Debian's cloud kernel: {banner:?}"));
    }
    for module in ["xen-blkfront", "xen-netfront"] {
        let line = vm.wait_for_line(&format!("{module}.ko"), NATIVE_COMMAND)?;
        if !line.contains("No such device") {
            return Err(format!(
                "{module} should refuse with `No such device` off Xen: {line:?}"
            ));
        }
    }
    vm.wait_for("xenia-initramfs: ready", NATIVE_COMMAND)?;
    vm.wait_for("debian# ", NATIVE_COMMAND)?;
    vm.send("uname -r; grep -c -E ' /(proc|sys|dev) ' /proc/mounts\r")?;
    let line = vm.wait_for_line_starting(&release, NATIVE_COMMAND)?;
    if line.trim() != release {
        return Err(format!("uname -r said {line:?}, not {release:?}"));
    }
    let mounts = vm.wait_for_line_matching("the count of mounts", NATIVE_COMMAND, |l| {
        l.trim().parse::<u32>().is_ok()
    })?;
    if mounts.trim() != "3" {
        return Err(format!(
            "/proc, /sys and /dev should be mounted: {} of them are",
            mounts.trim()
        ));
    }
    vm.wait_for("debian# ", NATIVE_COMMAND)?;
    ctx.note(format!(
        "Linux {release} booted natively with the domU's initramfs; modules refused off Xen as expected"
    ));
    vm.kill();
    Ok(())
}

/// Boots the default image at `loglvl=debug` on a machine with `cpus` CPUs and starts
/// `xl create -c /etc/xen/debian.cfg` with `extra` settings after the file; returns the machine
/// at the domU's prompt, with `xl list` and free memory from before and where the session's
/// log starts.
fn boot_debian(
    ctx: &Context,
    cpus: u32,
    extra: &str,
) -> Result<(crate::machine::Qemu, Vec<super::xl::Row>, u64, usize), String> {
    boot_debian_slower(ctx, cpus, extra, 1)
}

/// [`boot_debian`] with every bound `slower` times as long (for the hypervisor built with
/// debug assertions, which is slower on a loaded machine).
fn boot_debian_slower(
    ctx: &Context,
    cpus: u32,
    extra: &str,
    slower: u32,
) -> Result<(crate::machine::Qemu, Vec<super::xl::Row>, u64, usize), String> {
    let (boot_bound, command) = (SHELL_BOOT_BOUND * slower, SHELL_COMMAND * slower);
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .cpus(cpus)
        .memory_mib(512)
        .hv_options(&format!("{} loglvl=debug", crate::iso::DEFAULT_HV_OPTIONS));
    for module in crate::iso::DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(super::xl::PROMPT, command)?;
    let before = parse_list(&run(&mut vm, "xl list")?)?;
    let free_before = free_memory(&run(&mut vm, "xl info")?)?;
    let from = vm.cursor();
    vm.send(&format!("xl create -c {CONFIG} {extra}\r"))?;
    vm.wait_for("Ctrl-] detaches", command)?;
    if let Err(e) = vm.wait_for_line("Run /init as init process", boot_bound) {
        // The hypervisor's view, for the log: domains, vCPU registers, run queues, events;
        // the help line, typed last, says the keys were all read.
        vm.send("\x01\x01\x01qdreh")?;
        let _ = vm.wait_for("gives the input back to dom0", command);
        return Err(e);
    }
    vm.wait_for("xenia-initramfs: ready", command)?;
    vm.wait_for(SHELL_PROMPT, command)?;
    Ok((vm, before, free_before, from))
}

/// The session's log from `from` has no `BUG`, `Oops`, `WARNING:`, `Call Trace`, panic or
/// crash line, and the hypervisor logged no `ENOSYS`.
pub(super) fn clean_session(vm: &crate::machine::Qemu, from: usize) -> Result<(), String> {
    let log = vm.serial_log();
    let session = &log[from.min(log.len())..];
    for bad in [
        "BUG",
        "Oops",
        "WARNING:",
        "Call Trace",
        "Kernel panic",
        "crashed",
    ] {
        if let Some(l) = session.lines().find(|l| l.contains(bad)) {
            return Err(format!("Linux's boot or session has {bad:?}: {l:?}"));
        }
    }
    let enosys: Vec<&str> = log.lines().filter(|l| l.contains(": ENOSYS: ")).collect();
    if !enosys.is_empty() {
        return Err(format!(
            "the hypervisor answered ENOSYS to Linux: {}",
            enosys.join(" | ")
        ));
    }
    Ok(())
}

/// Waits for the hypervisor's line containing `text` anywhere after `from` (it may come
/// before or after dom0's prompt); the cursor does not move. `what` names the step.
fn logged_since(
    vm: &mut crate::machine::Qemu,
    from: usize,
    text: &str,
    what: &str,
) -> Result<String, String> {
    vm.wait_until(
        &format!("a line containing {text:?} after {what}"),
        SHELL_COMMAND,
        |log, cursor| {
            crate::serial::find_line_from(log, from, |l| l.contains(text))
                .map(|(l, _)| (l.to_string(), cursor))
        },
    )
}

/// Dom0's `xl list` and free memory are as `before` and `free_before`.
fn all_back(
    vm: &mut crate::machine::Qemu,
    before: &[super::xl::Row],
    free_before: u64,
    what: &str,
) -> Result<(), String> {
    let after = parse_list(&run(vm, "xl list")?)?;
    if after != before {
        return Err(format!("after {what}: {before:?} -> {after:?}"));
    }
    let free_after = free_memory(&run(vm, "xl info")?)?;
    if free_after != free_before {
        return Err(format!(
            "after {what}, free memory is {free_after} MiB, {free_before} before"
        ));
    }
    Ok(())
}

/// `xl create -c /etc/xen/debian.cfg vcpus=2` on a two-CPU machine: Linux brings up both
/// vCPUs (Xen's `VCPUOP_initialise` and `VCPUOP_up` from its `smp_pv.c`): `nproc` says 2,
/// `/proc/cpuinfo` lists 2 processors; two busy shell loops run in the background, each
/// pinned by `taskset` to its own CPU, and both finish (`wait`); `xl vcpu-set debian 1`
/// takes CPU 1 offline in Linux and `xl vcpu-set debian 2` brings it back (`nproc` says 2
/// again); Linux's balloon gives half its memory back and takes it again (`xl list` shows
/// 128 then 256 MiB), the second time through `xl mem-set`, which then takes it to 192 MiB;
/// the log is clean and `poweroff -f` returns every frame. (It hung or oopsed before
/// `/init` until vCPU 1 got the IOPL its context asks for, and hung in about half the boots
/// until dom0's xenstore looked again at a ring written while it served it:
/// docs/architecture.md, "Linux: two vCPUs (issue 18, session 13)" and "Linux: two vCPUs,
/// found (issue 18, session 14)".)
pub fn smp(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let start = std::time::Instant::now();
    let (mut vm, before, free_before, from) = boot_debian(ctx, 2, "vcpus=2")?;
    let booted = start.elapsed();
    vm.send("echo cpus=$(nproc)/$(grep -c ^processor /proc/cpuinfo)\r")?;
    let line = vm.wait_for_line_starting("cpus=", SHELL_COMMAND)?;
    if line.trim() != "cpus=2/2" {
        return Err(format!(
            "nproc / the processors of /proc/cpuinfo should say 2/2: {line:?}"
        ));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    let took = loops_on_both_cpus(&mut vm, from, 20_000, SHELL_COMMAND)?;
    // `xl vcpu-set` (libxl's `cpu/<n>/availability`): Linux's CPU hotplug watch takes CPU 1
    // down (the CPU's own `VCPUOP_down`) and brings it back (`VCPUOP_up`).
    vcpu_set(&mut vm, 1, "", "0")?;
    // Linux only makes the CPU present again; a distribution's udev rule then writes its
    // `online` (busybox has no udev: the scenario does it).
    vcpu_set(
        &mut vm,
        2,
        "for i in $(seq 30); do [ -e /sys/devices/system/cpu/cpu1/online ] && break; sleep 1; \
         done; echo 1 > /sys/devices/system/cpu/cpu1/online; ",
        "0-1",
    )?;
    vm.send("nproc\r")?;
    let line = vm.wait_for_line_matching("nproc's answer", SHELL_COMMAND, |l| {
        l.trim().parse::<u32>().is_ok()
    })?;
    if line.trim() != "2" {
        return Err(format!("after `xl vcpu-set debian 2`, nproc says {line:?}"));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    // Linux's balloon driver gives half its memory back (`XENMEM_decrease_reservation`)
    // and takes it again (`XENMEM_populate_physmap`); `xl list` follows both.
    balloon(&mut vm, Target::Sysfs, 131_072, 120..=130)?;
    // The operator's way, as in Xen: `xl mem-set` writes `memory/target`, which Linux's
    // balloon watches (xl asks the store whether it does); up, then down.
    balloon(&mut vm, Target::Xl, 262_144, 250..=256)?;
    balloon(&mut vm, Target::Xl, 196_608, 185..=192)?;
    vm.send("poweroff -f\r")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    clean_session(&vm, from)?;
    all_back(&mut vm, &before, free_before, "poweroff -f")?;
    ctx.note(format!(
        "Linux with 2 vCPUs reached its shell in {:.1} s; two loops on both CPUs took {:.1} s",
        booted.as_secs_f64(),
        took.as_secs_f64()
    ));
    vm.kill();
    Ok(())
}

/// Two processes, one pinned to each of Linux's two CPUs, each counting to `count` in
/// busybox's shell; both must finish (their lines after `from` in the log) within `bound`,
/// and the prompt come back. Returns how long they took.
fn loops_on_both_cpus(
    vm: &mut crate::machine::Qemu,
    from: usize,
    count: u32,
    bound: Duration,
) -> Result<Duration, String> {
    let workload = format!(
        "for c in 0 1; do taskset -c $c sh -c \
         'i=0; while [ $i -lt {count} ]; do i=$((i+1)); done; echo loop-done-$i' & done; \
         wait; echo workload-$(echo done)\r"
    );
    let t = std::time::Instant::now();
    vm.send(&workload)?;
    vm.wait_for("workload-done", bound)?;
    let took = t.elapsed();
    let log = vm.serial_log();
    let done_line = format!("loop-done-{count}");
    let done = log[from.min(log.len())..]
        .lines()
        .filter(|l| l.trim() == done_line)
        .count();
    if done != 2 {
        return Err(format!("{done} of the 2 loops finished"));
    }
    vm.wait_for(SHELL_PROMPT, bound)?;
    Ok(took)
}

/// How many times longer `linux_smp_checked` waits than the other `linux_` scenarios: on
/// the hypervisor built with debug assertions, Linux reached its shell in 33 s in a CI
/// rehearsal alone (the release build's `linux_smp`: 29 s), but in 79 to 91 s with
/// benchmarks running beside it, and one such run missed the 150 s bound for `/init`.
const CHECKED_SLOWER: u32 = 4;

/// Linux with two vCPUs on the hypervisor built with debug assertions and the lock-order
/// checks (`xenia-checked.elf`): its boot, then two processes looping on both CPUs in
/// busybox's shell, take the Xen PV short ways (`guest::fast_pv`) on two pCPUs with each
/// short way's cross-checks on (the remembered `iret` selectors checked again, the kept
/// kernel-stack page walked again, the `vcpu_info` and mode each way assumes compared);
/// a failed check panics the hypervisor and the scenario fails. Then `poweroff -f`: a clean
/// log, every frame back. (The rest of [`smp`], ballooning and CPU hotplug, stays there.)
pub fn smp_checked(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let checked = ctx
        .workspace()
        .require_artifact(crate::workspace::CHECKED_HYPERVISOR_ARTIFACT)?;
    ctx.set_default_hypervisor(&checked);
    let slow = SHELL_COMMAND * CHECKED_SLOWER;
    let start = std::time::Instant::now();
    let (mut vm, before, free_before, from) =
        boot_debian_slower(ctx, 2, "vcpus=2", CHECKED_SLOWER)?;
    let booted = start.elapsed();
    loops_on_both_cpus(&mut vm, from, 5_000, slow)?;
    vm.send("poweroff -f\r")?;
    vm.wait_for(super::xl::PROMPT, slow)?;
    clean_session(&vm, from)?;
    all_back(&mut vm, &before, free_before, "poweroff -f")?;
    ctx.note(format!(
        "Linux with 2 vCPUs on the checked hypervisor reached its shell in {:.1} s",
        booted.as_secs_f64()
    ));
    vm.kill();
    Ok(())
}

/// Detaches from Linux's console, runs `command` at dom0's prompt, and attaches again (at
/// Linux's shell prompt). The command's output must hold none of `refusals`, nor xl's
/// `Error` or `xl:` (the hypervisor's debug lines may come in between).
fn from_dom0(
    vm: &mut crate::machine::Qemu,
    command: &str,
    refusals: &[&str],
) -> Result<(), String> {
    vm.send("\x1d")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    let out = run(vm, command)?;
    if ["Error", "xl:"]
        .iter()
        .chain(refusals)
        .any(|r| out.contains(r))
    {
        return Err(format!("`{command}` said {out:?}"));
    }
    vm.send("xl console debian\r")?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    vm.send("\r")?;
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    Ok(())
}

/// Detaches from Linux's console, runs `xl vcpu-set debian <count>`, attaches again, runs
/// `then` in Linux's shell, and waits (bounded: Linux's watch works in the background)
/// until Linux's `/sys/devices/system/cpu/online` says `online`.
fn vcpu_set(
    vm: &mut crate::machine::Qemu,
    count: u32,
    then: &str,
    online: &str,
) -> Result<(), String> {
    // xl's own errors (`libxl_set_vcpuonline failed ...`, `Error: ...`).
    from_dom0(vm, &format!("xl vcpu-set debian {count}"), &["libxl"])?;
    // At most 30 looks a second apart.
    vm.send(&format!(
        "{then}for i in $(seq 30); do [ \"$(cat /sys/devices/system/cpu/online)\" = {online} ] && break; \
         sleep 1; done; echo cpus-online-at-{count}=$(cat /sys/devices/system/cpu/online)\r"
    ))?;
    // A marker of this step's own: `xl console` replays the console's history first.
    let marker = format!("cpus-online-at-{count}=");
    let line = vm.wait_for_line_starting(&marker, SHELL_COMMAND)?;
    if line.trim() != format!("{marker}{online}") {
        return Err(format!(
            "after `xl vcpu-set debian {count}`, Linux's online CPUs should be {online}: {line:?}"
        ));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    Ok(())
}

/// Who sets Linux's balloon target in [`balloon`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Linux itself, through `/sys/devices/system/xen_memory/xen_memory0/target_kb`.
    Sysfs,
    /// dom0's `xl mem-set debian <n>k` (the console detached and attached again), which
    /// writes `memory/target` in xenstore for Linux's balloon watch.
    Xl,
}

/// Sets Linux's balloon target (`how`), waits (bounded) until the balloon's `current_kb`
/// reaches it, then checks that `xl list` shows the domain's memory in `mib` (MiB), and
/// attaches again.
fn balloon(
    vm: &mut crate::machine::Qemu,
    how: Target,
    target_kb: u64,
    mib: std::ops::RangeInclusive<u64>,
) -> Result<(), String> {
    let sys = "/sys/devices/system/xen_memory/xen_memory0";
    let set = if how == Target::Xl {
        from_dom0(vm, &format!("xl mem-set debian {target_kb}k"), &["cannot"])?;
        String::new()
    } else {
        format!("echo {target_kb} > {sys}/target_kb; ")
    };
    // A marker of this step's own: `xl console` replays the console's history first.
    vm.send(&format!(
        "{set}for i in $(seq 60); do \
         [ \"$(cat {sys}/info/current_kb)\" = {target_kb} ] && break; sleep 1; done; \
         echo balloon-at-{target_kb}=$(cat {sys}/info/current_kb)\r"
    ))?;
    let marker = format!("balloon-at-{target_kb}=");
    let line = vm.wait_for_line_starting(&marker, Duration::from_secs(90))?;
    if line.trim() != format!("{marker}{target_kb}") {
        return Err(format!(
            "Linux's balloon did not reach {target_kb} KiB in 60 s: {line:?}"
        ));
    }
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    vm.send("\x1d")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    let rows = parse_list(&run(vm, "xl list")?)?;
    let row = rows
        .iter()
        .find(|r| r.name == "debian")
        .ok_or_else(|| format!("`xl list` has no debian: {rows:?}"))?;
    if !mib.contains(&row.mem) {
        return Err(format!(
            "with Linux's balloon at {target_kb} KiB, `xl list` should show {mib:?} MiB: {row:?}"
        ));
    }
    vm.send("xl console debian\r")?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    vm.send("\r")?;
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    Ok(())
}

/// How many times [`lifecycle`] asks the restarted domain's shell for a marker (each waits
/// [`REBOOT_ROUND`]) before it gives up.
const REBOOT_ROUNDS: usize = 12;
/// One round's bound.
const REBOOT_ROUND: Duration = Duration::from_secs(15);

/// The Linux domain's lifecycle through its initramfs's busybox `init` (PID 1) and the
/// toolstack: plain `poweroff` in Linux ends the domain through `on_poweroff` (init's
/// shutdown action runs, the console closes, every frame is back); `xl shutdown -w` of a
/// detached domain ends it (Linux's xenbus reads `control/shutdown` and powers off through
/// init); `xl list` shows the running domain with its memory and a time; `reboot` in Linux
/// restarts it through `on_reboot` (dom0 rebuilds it with no more memory than `xl create`
/// needed) and the restarted domain's shell answers; `xl destroy` then returns every frame.
pub fn lifecycle(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let (mut vm, before, free_before, from) = boot_debian(ctx, 1, "")?;
    // 1. `poweroff`: busybox signals init (SIGUSR2), which stops everything and powers off.
    let mark = vm.cursor();
    vm.send("poweroff\r")?;
    vm.wait_for("xenia-initramfs: shutting down", SHELL_COMMAND)?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    logged_since(&mut vm, mark, "shut down: poweroff", "poweroff in Linux")?;
    all_back(&mut vm, &before, free_before, "poweroff")?;
    // 2. `xl shutdown -w` of the detached domain.
    vm.send(&format!("xl create -c {CONFIG}\r"))?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    vm.wait_for("xenia-initramfs: ready", SHELL_BOOT_BOUND)?;
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    vm.send("\x1d")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    let list = run(&mut vm, "xl list")?;
    let line = list
        .lines()
        .find(|l| l.starts_with("debian "))
        .ok_or_else(|| format!("`xl list` has no debian while it runs: {list:?}"))?
        .to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let mem: u64 = fields.get(2).and_then(|m| m.parse().ok()).unwrap_or(0);
    let time: f64 = fields.get(5).and_then(|t| t.parse().ok()).unwrap_or(0.0);
    if !(250..=256).contains(&mem) || time <= 0.0 {
        return Err(format!(
            "`xl list` should show debian's 256 MiB and a positive time: {line:?}"
        ));
    }
    let mark = vm.cursor();
    vm.send("xl shutdown -w debian\r")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    logged_since(&mut vm, mark, "shut down: poweroff", "xl shutdown")?;
    all_back(&mut vm, &before, free_before, "xl shutdown")?;
    // 3. `reboot`: busybox signals init (SIGTERM); Linux asks for a restart; dom0 rebuilds
    // the domain; its shell answers a marker (retried in bounded rounds while it boots).
    vm.send(&format!("xl create -c {CONFIG}\r"))?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    vm.wait_for("xenia-initramfs: ready", SHELL_BOOT_BOUND)?;
    vm.wait_for(SHELL_PROMPT, SHELL_COMMAND)?;
    let mark = vm.cursor();
    vm.send("reboot\r")?;
    vm.wait_for("xenia-initramfs: shutting down", SHELL_COMMAND)?;
    logged_since(&mut vm, mark, "shut down: reboot", "reboot in Linux")?;
    vm.wait_for_line("restarted as domain", SHELL_COMMAND)
        .map_err(|e| format!("debian did not restart after reboot: {e}"))?;
    // The console closed with the old domain; dom0's prompt came before or after dom0's line.
    vm.send("\r")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    vm.send("xl console debian\r")?;
    vm.wait_for("Ctrl-] detaches", SHELL_COMMAND)?;
    let mut answered = false;
    for _ in 0..REBOOT_ROUNDS {
        vm.send("echo reborn-$((6*7))\r")?;
        if vm.wait_for("reborn-42", REBOOT_ROUND).is_ok() {
            answered = true;
            break;
        }
    }
    if !answered {
        return Err(format!(
            "the restarted debian's shell did not answer within {} s",
            REBOOT_ROUNDS as u64 * REBOOT_ROUND.as_secs()
        ));
    }
    vm.send("\x1d")?;
    vm.wait_for(super::xl::PROMPT, SHELL_COMMAND)?;
    run(&mut vm, "xl destroy debian")?;
    clean_session(&vm, from)?;
    all_back(&mut vm, &before, free_before, "reboot and xl destroy")?;
    ctx.note(
        "poweroff, xl shutdown -w and reboot of Linux through busybox's init; every frame back",
    );
    vm.kill();
    Ok(())
}
