//! xl at the `dom0# ` prompt of the default image: the operator's view. Each scenario boots
//! the image `cargo xtask run` boots (hypervisor, dom0 kernel, initrd with `/bin/xl`, the
//! demo guests and `/etc/xen/*.cfg`), types real xl commands and checks what comes back.

use std::time::Duration;

use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{DEFAULT_TIMEOUT as T, Qemu};
use crate::runner::Context;

/// dom0's shell prompt.
pub const PROMPT: &str = "dom0# ";
/// The machine: room for dom0's 64 MiB and a few domUs.
const MEMORY_MIB: u32 = 512;
/// Bound for one xl command (loading xl and a domain build take well under a second).
pub const COMMAND: Duration = Duration::from_secs(30);

/// Boots the default image and waits for the first prompt.
pub fn boot(ctx: &Context) -> Result<Qemu, String> {
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .memory_mib(MEMORY_MIB)
        .hv_options(DEFAULT_HV_OPTIONS);
    for module in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok(vm)
}

/// Types `line` and a return at the prompt and waits for the next prompt; returns what was
/// printed in between (the echoed command line first).
pub fn run(vm: &mut Qemu, line: &str) -> Result<String, String> {
    vm.send(&format!("{line}\r"))?;
    until_prompt(vm, line)
}

/// Waits for the next prompt (after `line`, which was typed already) and returns what was
/// printed before it.
pub fn until_prompt(vm: &mut Qemu, line: &str) -> Result<String, String> {
    vm.wait_until(
        &format!("the prompt after `{line}`"),
        COMMAND,
        |log, cursor| {
            log[cursor..].find(PROMPT).map(|i| {
                (
                    log[cursor..cursor + i].to_string(),
                    cursor + i + PROMPT.len(),
                )
            })
        },
    )
}

/// One row of `xl list`: (name, id, memory MiB, vCPUs, state).
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub id: u32,
    pub mem: u64,
    pub vcpus: u32,
    pub state: String,
}

/// Parses `xl list` output: the header, then one row per domain.
pub fn parse_list(out: &str) -> Result<Vec<Row>, String> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("Name"));
    let header = lines
        .next()
        .ok_or_else(|| format!("no `xl list` header in {out:?}"))?;
    for column in ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"] {
        if !header.contains(column) {
            return Err(format!("`xl list` header {header:?} lacks {column}"));
        }
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bad = || format!("`xl list` row {l:?} does not parse");
            let row = || -> Option<Row> {
                if f.len() != 6 {
                    return None;
                }
                Some(Row {
                    name: f[0].to_string(),
                    id: f[1].parse().ok()?,
                    mem: f[2].parse().ok()?,
                    vcpus: f[3].parse().ok()?,
                    state: f[4].to_string(),
                })
            };
            match row() {
                Some(r) => Some(Ok(r)),
                // The console is shared: a log line of the hypervisor (`(XEN) ...`) or of
                // dom0's kernel (`domain 2 shut down: poweroff`, `domain 1 destroyed`),
                // printed from another CPU while xl wrote its table, is not a row.
                None if log_line(&f) => None,
                None => Some(Err(bad())),
            }
        })
        .collect()
}

/// Whether the words `f` of a line are a log line that may land among `xl list`'s rows:
/// the hypervisor's (`(XEN) ...`), or a domain's event as the hypervisor or dom0's kernel
/// report it (`domain <id> <what>...`, where a row would have its memory after the id).
/// The hypervisor's lines carry `(XEN) ` on the wire and, in the normalized log the
/// scenarios read, a level prefix for all but info (`error: domain 4 crashed: ...`, printed
/// from another CPU as a domain crashes: seen among the rows in `smp_xl_4`, session 16);
/// guests' console lines carry `(d<id>)`.
fn log_line(f: &[&str]) -> bool {
    match f {
        ["(XEN)" | "error:" | "warning:" | "debug:" | "trace:", ..] => true,
        [guest, ..]
            if guest
                .strip_prefix("(d")
                .and_then(|g| g.strip_suffix(')'))
                .is_some_and(|id| id.parse::<u32>().is_ok()) =>
        {
            true
        }
        ["domain", id, what, ..] => id.parse::<u32>().is_ok() && what.parse::<u64>().is_err(),
        _ => false,
    }
}

fn list(vm: &mut Qemu) -> Result<Vec<Row>, String> {
    parse_list(&run(vm, "xl list")?)
}

fn row<'a>(rows: &'a [Row], name: &str) -> Result<&'a Row, String> {
    rows.iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("`xl list` has no {name}: {rows:?}"))
}

fn expect(out: &str, text: &str, what: &str) -> Result<(), String> {
    if out.contains(text) {
        Ok(())
    } else {
        Err(format!("{what}: expected {text:?} in {out:?}"))
    }
}

/// Three domains from configs: `xl list` shows each with its memory, vCPUs and a live state;
/// pause and unpause change the state; destroy removes the domain.
pub fn create_list_pause_destroy(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let out = run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    expect(&out, "Parsing config from /etc/xen/hello.cfg", "xl create")?;
    expect(&out, "Domain hello created with id", "xl create")?;
    let out = run(&mut vm, "xl create /etc/xen/echo.cfg")?;
    expect(&out, "created with id", "xl create echo.cfg")?;
    let out = run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'name=\"third\"' memory=24 vcpus=2",
    )?;
    expect(
        &out,
        "Domain third created with id",
        "xl create with overrides",
    )?;
    let rows = list(&mut vm)?;
    let dom0 = row(&rows, "Domain-0")?;
    if dom0.id != 0 {
        return Err(format!("Domain-0 listed with id {}", dom0.id));
    }
    let hello = row(&rows, "hello")?;
    let third = row(&rows, "third")?;
    // `VCPUs` counts the vCPUs online; a PV guest brings up all but vCPU 0 itself (echo
    // starts vCPU 1 of `third` soon after it starts, so either count may be seen here).
    if (hello.mem, hello.vcpus) != (16, 1) || third.mem != 24 || !(1..=2).contains(&third.vcpus) {
        return Err(format!("memory or vCPUs wrong in {rows:?}"));
    }
    let out = run(&mut vm, "xl vcpu-list third")?;
    let vcpus = out.lines().filter(|l| l.starts_with("third ")).count();
    if vcpus != 2 {
        return Err(format!(
            "xl vcpu-list third shows {vcpus} vCPUs, not 2: {out:?}"
        ));
    }
    if rows.len() != 4 {
        return Err(format!("expected dom0 and three domains: {rows:?}"));
    }
    for r in &rows {
        if !(r.state.contains('r') || r.state.contains('b')) || r.state.contains('p') {
            return Err(format!("{} is not running or blocked: {r:?}", r.name));
        }
    }
    ctx.note(format!(
        "xl list: {}",
        rows.iter()
            .map(|r| format!("{} {} {}M {}", r.name, r.id, r.mem, r.state))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    run(&mut vm, "xl pause third")?;
    let paused = row(&list(&mut vm)?, "third")?.state.clone();
    if !paused.contains('p') {
        return Err(format!("after xl pause, third's state is {paused:?}"));
    }
    run(&mut vm, &format!("xl unpause {}", third.id))?;
    let resumed = row(&list(&mut vm)?, "third")?.state.clone();
    if resumed.contains('p') {
        return Err(format!("after xl unpause, third's state is {resumed:?}"));
    }

    run(&mut vm, "xl destroy third")?;
    let rows = list(&mut vm)?;
    if rows.iter().any(|r| r.name == "third") || rows.len() != 3 {
        return Err(format!("after xl destroy third: {rows:?}"));
    }
    let out = run(&mut vm, "xl destroy third")?;
    expect(&out, "no domain named \"third\"", "destroying it again")?;
    vm.kill();
    Ok(())
}

/// A console round trip: attach, type a line, see the echo guest say it back, detach with
/// Ctrl-]; output written while nobody was attached is kept and shown on attach. Then
/// `xl top` until `q`, and `xl create -c` of a guest that powers off.
pub fn console(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    // Nobody is attached while the guest prints its banner; wait until it is kept.
    vm.send("xl console hello\r")?;
    vm.wait_for("Ctrl-] detaches", COMMAND)?;
    vm.wait_for_line("echo: type a line and I will say it back", COMMAND)?;
    vm.send("round trip 42\r")?;
    vm.wait_for_line("echo: round trip 42", COMMAND)?;
    vm.send("\x1d")?;
    vm.wait_for(PROMPT, COMMAND)?;
    // The shell is back: a command works.
    let rows = list(&mut vm)?;
    row(&rows, "hello")?;
    // `xl top` refreshes until `q`.
    vm.send("xl top\r")?;
    vm.wait_for("Domain-0", COMMAND)?;
    vm.wait_for("ort order", COMMAND)?;
    vm.send("q")?;
    vm.wait_for(PROMPT, COMMAND)?;
    // `xl create -c` attaches at once: compute's whole output, then its power-off closes
    // the console and the prompt comes back.
    vm.send("xl create -c /etc/xen/compute.cfg\r")?;
    vm.wait_for("Ctrl-] detaches", COMMAND)?;
    vm.wait_for_line("compute: 78498 primes below 1000000", T)?;
    vm.wait_for(PROMPT, T)?;
    vm.kill();
    Ok(())
}

/// A bad configuration gives the documented error (source and line) and changes nothing;
/// so does a kernel that is not there.
pub fn bad_config(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let before = list(&mut vm)?;
    let out = run(&mut vm, "xl create /etc/xen/hello.cfg 'memory=\"lots\"'")?;
    expect(
        &out,
        "xl: cannot create a domain from /etc/xen/hello.cfg: <command line>:1: 'memory' must be an integer",
        "a wrong type",
    )?;
    expect(&out, "xl: exited with status 1", "a wrong type")?;
    let out = run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'kernel=\"/boot/missing.elf\"'",
    )?;
    expect(
        &out,
        "<command line>:1: cannot read kernel /boot/missing.elf",
        "a missing kernel",
    )?;
    expect(&out, "xl: exited with status 1", "a missing kernel")?;
    let out = run(&mut vm, "xl create /etc/xen/nonexistent.cfg")?;
    expect(&out, "cannot read config file", "a missing config file")?;
    let after = list(&mut vm)?;
    if after != before {
        return Err(format!(
            "bad configs changed the domains: {before:?} -> {after:?}"
        ));
    }
    vm.kill();
    Ok(())
}

/// Free memory as `xl info` reports it, in MiB.
fn free_memory(vm: &mut Qemu) -> Result<u64, String> {
    let out = run(vm, "xl info")?;
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "free_memory").then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no free_memory in {out:?}"))
}

/// A domain asking for more memory than is free fails cleanly: a clear message, no
/// domain left behind, free memory unchanged; a domain that fits still builds afterwards.
pub fn too_much_memory(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let free = free_memory(&mut vm)?;
    let out = run(
        &mut vm,
        &format!("xl create /etc/xen/hello.cfg memory={}", free + 64),
    )?;
    expect(&out, "but only", "too much memory")?;
    expect(&out, "xl: exited with status 1", "too much memory")?;
    let rows = list(&mut vm)?;
    if rows.len() != 1 {
        return Err(format!("a domain was left behind: {rows:?}"));
    }
    let after = free_memory(&mut vm)?;
    if after != free {
        return Err(format!("free memory went from {free} to {after} MiB"));
    }
    let out = run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    expect(&out, "Domain hello created", "a domain that fits")?;
    ctx.note(format!(
        "free memory {free} MiB before and after the refusal"
    ));
    vm.kill();
    Ok(())
}

/// Runs `xl list` until `done` accepts the rows (each run is a real command, so this waits
/// for dom0 to act without sleeping); at most `tries` times.
fn list_until(
    vm: &mut Qemu,
    tries: u32,
    what: &str,
    mut done: impl FnMut(&[Row]) -> bool,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for _ in 0..tries {
        rows = list(vm)?;
        if done(&rows) {
            return Ok(rows);
        }
    }
    Err(format!(
        "{what}: still not so after {tries} `xl list`s: {rows:?}"
    ))
}

/// on_poweroff, on_reboot and on_crash: the compute guest powers off and is destroyed
/// (on_poweroff=destroy) or kept (preserve); told to fault, it crashes and is kept as
/// crashed (on_crash=preserve) or destroyed; `xl reboot` restarts a domain under its name
/// (on_reboot=restart).
pub fn lifecycle(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    run(&mut vm, "xl create /etc/xen/compute.cfg")?;
    run(
        &mut vm,
        "xl create /etc/xen/compute.cfg 'name=\"kept\"' 'on_poweroff=\"preserve\"'",
    )?;
    // Both power off when done; dom0 acts on VIRQ_DOM_EXC.
    let rows = list_until(&mut vm, 100, "compute destroyed, kept preserved", |rows| {
        !rows.iter().any(|r| r.name == "compute")
            && rows
                .iter()
                .any(|r| r.name == "kept" && r.state.contains('s'))
    })?;
    ctx.note(format!("after poweroff: {rows:?}"));
    // on_crash: compute told to fault after its first step crashes; preserved, it stays
    // listed as crashed (`c`); with the configuration's on_crash it is destroyed.
    run(
        &mut vm,
        "xl create /etc/xen/compute.cfg 'name=\"boom\"' 'cmdline=\"fault=after\"' 'on_crash=\"preserve\"'",
    )?;
    run(
        &mut vm,
        "xl create /etc/xen/compute.cfg 'name=\"gone\"' 'cmdline=\"fault=after\"' 'on_crash=\"destroy\"'",
    )?;
    list_until(
        &mut vm,
        100,
        "boom kept as crashed, gone destroyed",
        |rows| {
            rows.iter()
                .any(|r| r.name == "boom" && r.state.contains('c'))
                && !rows.iter().any(|r| r.name == "gone")
        },
    )?;
    run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    let old = row(&list(&mut vm)?, "hello")?.id;
    run(&mut vm, "xl reboot hello")?;
    list_until(&mut vm, 50, "hello restarted with a new id", |rows| {
        rows.iter().any(|r| r.name == "hello" && r.id != old)
    })?;
    if !vm.serial_log().contains("restarted as domain") {
        return Err("dom0 did not say that it restarted hello".into());
    }
    vm.kill();
    Ok(())
}

/// The other verbs an operator uses: info, uptime, sched-credit (read, change, read back),
/// mem-max (seen in `list -l`), mem-set (refused with the reason), vcpu-list, dmesg,
/// shutdown and `create -p`. Shutdown is judged on xl's evidence, never on the hypervisor's
/// own log line: `xl shutdown -w` reports the domain shut down, a domain configured to be
/// preserved shows state `s` with reason `-` (poweroff) in `xl list`, and one configured to be
/// destroyed is gone from it.
pub fn verbs(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let out = run(&mut vm, "xl info")?;
    expect(&out, "xen_scheduler          : credit", "xl info")?;
    run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    let out = run(&mut vm, "xl uptime")?;
    for name in ["Domain-0", "hello"] {
        if !out.lines().any(|l| l.starts_with(name)) {
            return Err(format!("xl uptime lacks {name}: {out:?}"));
        }
    }
    run(&mut vm, "xl sched-credit -d hello -w 512 -c 50")?;
    let out = run(&mut vm, "xl sched-credit -d hello")?;
    let line = out
        .lines()
        .find(|l| l.starts_with("hello"))
        .ok_or_else(|| format!("no hello in {out:?}"))?;
    if line.split_whitespace().collect::<Vec<_>>()[2..] != ["512", "50"] {
        return Err(format!(
            "sched-credit did not keep weight 512, cap 50: {line:?}"
        ));
    }
    run(&mut vm, "xl mem-max hello 32m")?;
    let out = run(&mut vm, "xl list -l hello")?;
    expect(&out, "\"max_memkb\": 32768", "mem-max in list -l")?;
    let out = run(&mut vm, "xl mem-set hello 8m")?;
    expect(&out, "balloon driver", "mem-set")?;
    let out = run(&mut vm, "xl vcpu-list hello")?;
    expect(&out, "Affinity", "vcpu-list")?;
    let hello = row(&list(&mut vm)?, "hello")?.id;
    let out = run(&mut vm, "xl shutdown -w hello")?;
    expect(
        &out,
        &format!("Shutting down domain {hello}"),
        "xl shutdown",
    )?;
    expect(
        &out,
        &format!("Domain {hello} has been shut down"),
        "xl shutdown -w",
    )?;
    list_until(&mut vm, 50, "hello destroyed after its poweroff", |rows| {
        rows.len() == 1 && rows[0].name == "Domain-0"
    })?;
    // Preserved, the shut-down domain stays in the list with its state: `s` (shut down) and
    // `-` (reason poweroff), as the guest's own poweroff put it, not a destroy.
    run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'name=\"kept\"' 'on_poweroff=\"preserve\"'",
    )?;
    let kept = row(&list(&mut vm)?, "kept")?.id;
    let out = run(&mut vm, "xl shutdown -w kept")?;
    expect(
        &out,
        &format!("Domain {kept} has been shut down"),
        "xl shutdown -w",
    )?;
    let state = row(&list(&mut vm)?, "kept")?.state.clone();
    if state.get(3..5) != Some("s-") {
        return Err(format!(
            "after `xl shutdown kept` (on_poweroff=preserve) `xl list` shows state {state:?}; \
             expected shut down (4th letter s) for poweroff (5th letter -)"
        ));
    }
    run(&mut vm, "xl destroy kept")?;
    // `create -p` leaves the new domain paused until `unpause`.
    let out = run(&mut vm, "xl create -p /etc/xen/hello.cfg 'name=\"later\"'")?;
    expect(&out, "paused", "xl create -p")?;
    if !row(&list(&mut vm)?, "later")?.state.contains('p') {
        return Err("xl create -p: the domain is not paused".into());
    }
    run(&mut vm, "xl unpause later")?;
    if row(&list(&mut vm)?, "later")?.state.contains('p') {
        return Err("xl unpause later: still paused".into());
    }
    run(&mut vm, "xl destroy later")?;
    let out = run(&mut vm, "xl dmesg")?;
    expect(&out, "Xenia 0.1.0", "xl dmesg")?;
    expect(&out, "domain 1 destroyed", "xl dmesg")?;
    vm.kill();
    Ok(())
}

/// Ctrl-A three times moves serial input to the hypervisor's debug keys (`q` lists the
/// domains, `m` free memory and the heap, `d`/`0` vCPU registers, timers and event flags,
/// `r` the run queues, `e` the event channels with their pending and mask bits) and three
/// more give it back to dom0 (DESIGN.md §8, Xen's keys).
pub fn debug_keys(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    vm.send("\x01\x01\x01")?;
    vm.wait_for_line(
        "*** Serial input to Xenia (type 'CTRL-a' three times",
        COMMAND,
    )?;
    vm.send("q")?;
    vm.wait_for_line("domain 0: ", COMMAND)?;
    vm.wait_for_line("domain 1: 4096 pages", COMMAND)?;
    vm.send("m")?;
    vm.wait_for_line(" frames); heap ", COMMAND)?;
    vm.send("d")?;
    vm.wait_for_line("d1v0 (saved at its last entry): rip ", COMMAND)?;
    vm.wait_for_line_matching("d1v0's timers and event flags", COMMAND, |l| {
        l.contains("d1v0 at ") && l.contains(" singleshot ") && l.contains(" upcall pending ")
    })?;
    vm.send("0")?;
    vm.wait_for_line("d0v0 (saved at its last entry): rip ", COMMAND)?;
    vm.send("r")?;
    vm.wait_for_line_matching("pCPU 0's run queue and timer", COMMAND, |l| {
        l.contains("CPU0: running ") && l.contains("; timer bound ") && l.contains(" programmed ")
    })?;
    vm.send("e")?;
    vm.wait_for_line_matching("a port of d1 with its bits", COMMAND, |l| {
        l.contains("d1 port ") && l.contains(", pending ") && l.contains(", masked ")
    })?;
    // Keys typed now are not dom0's: `x` gives the debug keys' help.
    vm.send("x")?;
    vm.wait_for_line("debug keys: 'q' domains", COMMAND)?;
    vm.send("\x01\x01\x01")?;
    vm.wait_for_line(
        "*** Serial input to DOM0 (type 'CTRL-a' three times",
        COMMAND,
    )?;
    let rows = list(&mut vm)?;
    row(&rows, "hello")?;
    vm.kill();
    Ok(())
}

/// The compute demo through `xl create` in the default image, on 1 vCPU, on 4, and on 2 of
/// 4 (`vcpus=2 maxvcpus=4`: the device page lists two, the domain has four): every run
/// finds the same count (78498 primes below 1000000); the SMP runs report each vCPU's
/// share and progress, and `xl list` shows how many vCPUs came up.
pub fn smp_compute_vcpus(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    for (args, vcpus) in [("vcpus=1", 1), ("vcpus=4", 4), ("vcpus=2 maxvcpus=4", 2)] {
        vm.send(&format!("xl create -c /etc/xen/compute.cfg {args}\r"))?;
        vm.wait_for("Ctrl-] detaches", COMMAND)?;
        if vcpus > 1 {
            let counting = vm.wait_for_line(
                &format!(
                    "compute: counting the primes below 1000000 in 10 steps on {vcpus} vCPUs \
                     (168 sieving primes)"
                ),
                T,
            );
            if let Err(e) = counting {
                // What the hypervisor knows of the domains (debug key `q`), for the report.
                let _ = vm.send("\x01\x01\x01q");
                let _ = vm.wait_for_line_starting("domain 0: ", COMMAND);
                return Err(e);
            }
            vm.wait_for_line_starting("compute: progress: vCPU 0 ", T)?;
            for v in 0..vcpus {
                vm.wait_for_line_starting(&format!("compute: vCPU {v}: "), T)?;
            }
        }
        vm.wait_for_line("compute: 78498 primes below 1000000", T)?;
        vm.wait_for_line("compute: the largest is 999983", T)?;
        let done = vm.wait_for_line_starting("compute: done in ", T)?;
        if vcpus > 1 && !done.contains(&format!("on {vcpus} vCPUs")) {
            return Err(format!("{args}: {done:?}: not on {vcpus} vCPUs"));
        }
        vm.wait_for(PROMPT, T)?;
    }
    vm.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parses() {
        let out = "xl list\nName                                        ID   Mem VCPUs\tState\tTime(s)\n\
                   Domain-0                                     0    64     1     r-----       0.5\n\
                   hello                                        1    16     1     -b----       0.0\n";
        let rows = parse_list(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1],
            Row {
                name: "hello".into(),
                id: 1,
                mem: 16,
                vcpus: 1,
                state: "-b----".into()
            }
        );
        assert!(parse_list("nothing").is_err());
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\nx y\n").is_err());
    }

    /// Log lines from other CPUs among the rows (seen in `smp_xl_4`: `domain 2 shut down:
    /// poweroff` in the middle of the table) are skipped; a domain named `domain` is still
    /// a row, and anything else that is not a row is still an error.
    #[test]
    fn list_skips_log_lines_among_its_rows() {
        let out = "Name ID Mem VCPUs State Time(s)\n\
                   Domain-0 0 64 1 r----- 0.7\n\
                   (XEN) domain 2 shut down: poweroff\n\
                   domain 2 shut down: poweroff\n\
                   domain 1 destroyed\n\
                   error: domain 4 crashed: it asked to (SHUTDOWN_crash)\n\
                   warning: domain 5 left 2 grants mapped\n\
                   (d7) hello from a guest\n\
                   domain 3 16 1 -b---- 0.0\n\
                   kept 2 16 1 ---s-- 0.1\n";
        let rows = parse_list(out).unwrap();
        let names: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.id)).collect();
        assert_eq!(names, [("Domain-0", 0), ("domain", 3), ("kept", 2)]);
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\ndomain x 16 1 r 0\n").is_err());
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\nhello 1 16\n").is_err());
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\nerrors: 1 16\n").is_err());
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\n(dx) 1 16\n").is_err());
    }
}
