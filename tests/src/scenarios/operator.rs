//! Issue 14, the operator's dom0: what an operator at the `dom0# ` prompt of the default image
//! sees on the serial line. Every scenario here is named `operator_*`
//! (`cargo xtask test operator_` runs them all).

use std::time::Instant;

use crate::machine::Qemu;
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, Row, boot, parse_list, run, until_prompt};

/// Which initrd an operator scenario's dom0 gets.
#[derive(Clone, Copy)]
pub(super) enum Initrd {
    /// The default image's.
    Default,
    /// The scenarios' one (the test programs, busybox).
    Test,
}

/// Boots dom0 (512 MiB, `dom0_mem=64M` and `extra` hypervisor options) with `initrd`, and
/// waits for its first prompt.
pub(super) fn boot_with(ctx: &Context, extra: &str, initrd: Initrd) -> Result<Qemu, String> {
    boot_machine(ctx, extra, initrd, false)
}

/// [`boot_with`], and with the console shell (busybox's ash) when `ash`, as the default
/// image has it.
fn boot_machine(ctx: &Context, extra: &str, initrd: Initrd, ash: bool) -> Result<Qemu, String> {
    use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};
    let ws = ctx.workspace();
    let options = format!("{} {extra}", crate::iso::DEFAULT_HV_OPTIONS);
    let mut machine = ctx.machine().memory_mib(512).hv_options(options.trim());
    if ash {
        machine = machine.console_shell();
    }
    match initrd {
        Initrd::Default => {
            for module in crate::iso::DEFAULT_MODULES {
                machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
            }
        }
        Initrd::Test => {
            machine = machine
                .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
                .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "");
        }
    }
    let mut vm = machine.boot()?;
    vm.wait_for(PROMPT, crate::machine::DEFAULT_TIMEOUT)?;
    Ok(vm)
}

/// The hypervisor's lines carry Xen's `(XEN) ` prefix on the serial line and in `xl dmesg`,
/// with the stamp `console_timestamps=boot` asks for (`[    s.uuuuuu] `, Xen's format) once the
/// option is read; guests' lines carry `(d<id>) ` and dom0's terminal nothing.
pub fn xen_prefix(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with(ctx, "console_timestamps=boot", Initrd::Default)?;
    let created = run(&mut vm, "xl create /etc/xen/echo.cfg")?;
    let dmesg_start = vm.raw_serial().len();
    run(&mut vm, "xl dmesg")?;
    let raw = vm.raw_serial();
    vm.kill();
    let text = String::from_utf8_lossy(&raw);
    let boot_log = &text[..text
        .find(PROMPT)
        .ok_or("no prompt in the raw serial output")?];
    let stamped = |l: &str| {
        l.strip_prefix("(XEN) [")
            .and_then(|r| r.split_once("] "))
            .is_some_and(|(t, _)| {
                t.trim_start().split_once('.').is_some_and(|(s, us)| {
                    s.bytes().all(|b| b.is_ascii_digit())
                        && us.len() == 6
                        && us.bytes().all(|b| b.is_ascii_digit())
                }) && t.len() >= 12
            })
    };
    let mut failed = Vec::new();
    for want in ["module 0:", "dom0: 64 MiB"] {
        match boot_log.lines().find(|l| l.contains(want)) {
            Some(l) if l.starts_with("(XEN) ") => {}
            other => failed.push(format!("the boot log's {want:?} line: {other:?}")),
        }
    }
    // Once the options are read, every hypervisor line has its stamp.
    match boot_log.lines().find(|l| l.contains("dom0: 64 MiB")) {
        Some(l) if stamped(l.trim_end()) => {}
        other => failed.push(format!("no boot stamp on {other:?}")),
    }
    let dmesg = &text[dmesg_start..];
    let ring: Vec<&str> = dmesg
        .lines()
        .filter(|l| l.contains("domain 1 created"))
        .collect();
    if ring.is_empty() || !ring.iter().all(|l| stamped(l.trim_end())) {
        failed.push(format!(
            "`xl dmesg` shows `domain 1 created` without `(XEN) [stamp] `: {ring:?} (create said \
             {created:?})"
        ));
    }
    if let Some(l) = text
        .lines()
        .find(|l| l.contains("(d1)") && l.contains("(XEN)"))
    {
        failed.push(format!("a guest's line carries (XEN): {l:?}"));
    }
    if text.lines().any(|l| l.starts_with("(XEN) dom0# ")) {
        failed.push("dom0's prompt carries (XEN)".into());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// dom0's output reaches the serial line with `\r\n` line ends, never `\r\r\n` (dom0's
/// terminal driver makes `\r\n` of a program's `\n`; the hypervisor passes dom0's terminal
/// output on byte for byte), and the hypervisor's own log lines end in `\r\n` too.
pub fn serial_crlf(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let listed = run(&mut vm, "xl list")?;
    if !listed.contains("Domain-0") {
        return Err(format!("`xl list` said {listed:?}"));
    }
    run(&mut vm, "help")?;
    let raw = vm.raw_serial();
    vm.kill();
    let text = String::from_utf8_lossy(&raw);
    // From dom0's first prompt (before it, GRUB and the boot log).
    let Some(from) = text.find(PROMPT) else {
        return Err("no prompt in the raw serial output".into());
    };
    let dom0 = &text[from..];
    if let Some(at) = dom0.find("\r\r\n") {
        let start = at.saturating_sub(60);
        return Err(format!(
            "`\\r\\r\\n` on the serial line: {:?}",
            &dom0[start..(at + 3).min(dom0.len())]
        ));
    }
    let bare = dom0
        .char_indices()
        .filter(|&(i, c)| c == '\n' && !dom0[..i].ends_with('\r'))
        .count();
    if bare > 0 {
        return Err(format!(
            "{bare} line ends after dom0's prompt without `\\r`: {:?}",
            &dom0[..dom0.len().min(400)]
        ));
    }
    let lines = dom0.matches("\r\n").count();
    if lines < 5 {
        return Err(format!("only {lines} lines after the prompt: {dom0:?}"));
    }
    ctx.note(format!(
        "{lines} lines after dom0's prompt, every one ending in \\r\\n"
    ));
    Ok(())
}

/// Xen 4.17's `xl info` keys, in xl's order (`print_info`: `output_nodeinfo`,
/// `output_physinfo`, `output_xeninfo`, then `xend_config_format`).
const XL_INFO_KEYS: &[&str] = &[
    "host",
    "release",
    "version",
    "machine",
    "nr_cpus",
    "max_cpu_id",
    "nr_nodes",
    "cores_per_socket",
    "threads_per_core",
    "cpu_mhz",
    "hw_caps",
    "virt_caps",
    "total_memory",
    "free_memory",
    "sharing_freed_memory",
    "sharing_used_memory",
    "outstanding_claims",
    "free_cpus",
    "xen_major",
    "xen_minor",
    "xen_extra",
    "xen_version",
    "xen_caps",
    "xen_scheduler",
    "xen_pagesize",
    "platform_params",
    "xen_changeset",
    "xen_commandline",
    "cc_compiler",
    "cc_compile_by",
    "cc_compile_domain",
    "cc_compile_date",
    "build_id",
    "xend_config_format",
];

/// `xl info` as Xen's: every key of Xen 4.17's in its order, each line rendered with xl's
/// `"%-23s: %s"` (so re-rendering a line from its key and value gives it back byte for
/// byte), Xenia's one extra line (`offlined_pages`) only after them; real values: the
/// version the banner printed, the command line the hypervisor booted with, `hw_caps` as
/// eight words, `virt_caps` ` pv gnttab-v1`, `xen_major.xen_minor xen_extra` = `xen_version`;
/// `xl info <field>` prints the value alone; `xl info -n` adds the topology and NUMA
/// sections.
pub fn xl_info(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let banner = vm
        .serial_log()
        .lines()
        .find_map(|l| l.strip_prefix("Xenia ").map(str::to_string))
        .ok_or("no `Xenia <version>` banner in the boot log")?;
    let out = run(&mut vm, "xl info")?;
    let lines: Vec<&str> = out.lines().skip(1).filter(|l| !l.is_empty()).collect();
    let mut fields = Vec::new();
    for line in &lines {
        let (key, value) = line
            .split_once(": ")
            .map(|(k, v)| (k.trim_end(), v))
            .or_else(|| line.strip_suffix(':').map(|k| (k.trim_end(), "")))
            .ok_or_else(|| format!("`xl info` line without `: `: {line:?}"))?;
        let rendered = format!("{key:<23}: {value}");
        if rendered.trim_end() != line.trim_end() {
            return Err(format!("{line:?} is not xl's \"%-23s: %s\" ({rendered:?})"));
        }
        fields.push((key.to_string(), value.to_string()));
    }
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    let expected_with_ours: Vec<&str> = XL_INFO_KEYS
        .iter()
        .copied()
        .chain(["offlined_pages"])
        .collect();
    if keys != XL_INFO_KEYS && keys != expected_with_ours {
        return Err(format!(
            "`xl info` keys {keys:?}, Xen's are {XL_INFO_KEYS:?}"
        ));
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let checks: [(&str, bool); 8] = [
        ("xen_version is the banner's", get("xen_version") == banner),
        (
            "xen_major.xen_minor + xen_extra is xen_version",
            format!(
                "{}.{}{}",
                get("xen_major"),
                get("xen_minor"),
                get("xen_extra")
            ) == get("xen_version"),
        ),
        (
            "xen_commandline is the booted one",
            get("xen_commandline").contains(crate::iso::DEFAULT_HV_OPTIONS),
        ),
        (
            "virt_caps",
            get("virt_caps") == " pv gnttab-v1" || get("virt_caps") == "pv gnttab-v1",
        ),
        (
            "hw_caps is eight words",
            get("hw_caps").split(':').count() == 8
                && get("hw_caps")
                    .split(':')
                    .all(|w| w.len() == 8 && w.chars().all(|c| c.is_ascii_hexdigit())),
        ),
        ("machine", get("machine") == "x86_64"),
        ("xend_config_format", get("xend_config_format") == "4"),
        (
            "cc_compiler names rustc",
            get("cc_compiler").starts_with("rustc "),
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(w, _)| *w)
        .collect();
    if !failed.is_empty() {
        return Err(format!("`xl info`: {failed:?} wrong in {out:?}"));
    }
    let one = run(&mut vm, "xl info xen_version")?;
    let values: Vec<&str> = one.lines().skip(1).filter(|l| !l.is_empty()).collect();
    if values != [banner.as_str()] {
        return Err(format!(
            "`xl info xen_version` said {one:?}, not {banner:?}"
        ));
    }
    let numa = run(&mut vm, "xl info -n")?;
    for section in ["cpu_topology           :", "numa_info              :"] {
        if !numa.contains(section) {
            return Err(format!("`xl info -n` lacks {section:?}: {numa:?}"));
        }
    }
    vm.kill();
    ctx.note(format!(
        "{} lines in Xen's order; xen_version {banner}",
        fields.len()
    ));
    Ok(())
}

/// `console=none` silences the hypervisor's log on the serial line, not dom0's console: the
/// prompt comes, `xl` works at it, a domain's creation is not logged on the line (the
/// hypervisor's `domain <id> created` line), and `xl dmesg` still shows that line from the
/// ring; `xl dmesg -c` shows it once more and empties the ring (Xen's readconsole `clear`).
pub fn console_none(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with(ctx, "console=none", Initrd::Default)?;
    let out = run(&mut vm, "xl create /etc/xen/hello.cfg")?;
    let id = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Domain hello created with id "))
        .ok_or_else(|| format!("`xl create` said {out:?}"))?
        .trim()
        .to_string();
    let created = format!("domain {id} created");
    let listed = run(&mut vm, "xl list")?;
    if !listed.lines().any(|l| l.starts_with("hello")) {
        return Err(format!("`xl list` lacks hello: {listed:?}"));
    }
    if vm.serial_log().contains(&created) {
        return Err(format!(
            "with console=none the hypervisor's `{created}` reached the serial line"
        ));
    }
    let dmesg = run(&mut vm, "xl dmesg")?;
    if !dmesg.contains(&created) {
        return Err(format!("`xl dmesg` lacks `{created}`: {dmesg:?}"));
    }
    // `xl dmesg -c` prints the ring and empties it: the line is gone from the next read.
    let cleared = run(&mut vm, "xl dmesg -c")?;
    if !cleared.contains(&created) {
        return Err(format!("`xl dmesg -c` lacks `{created}`: {cleared:?}"));
    }
    let after = run(&mut vm, "xl dmesg")?;
    vm.kill();
    if after.contains(&created) {
        return Err(format!(
            "`xl dmesg` after `-c` still has `{created}`: {after:?}"
        ));
    }
    Ok(())
}

/// A fatal boot error restarts the machine after a delay, as Xen does, and says so; with
/// `noreboot` the machine stays stopped and says that. Booted without `debug-exit` (which
/// would end QEMU at once) and with a first module that is no kernel (dom0 cannot be built);
/// QEMU runs with `-no-reboot`, so the restart ends it (status 0).
pub fn fatal_reboot(ctx: &Context) -> Result<(), String> {
    use std::time::Duration;
    let dir = ctx.work_dir()?;
    let bogus = dir.join("not-a-kernel.bin");
    std::fs::write(&bogus, [0x5a; 4096])
        .map_err(|e| format!("cannot write {}: {e}", bogus.display()))?;
    let boot = |options: &str| {
        ctx.machine()
            .debug_exit(false)
            .hv_options(options)
            .module(bogus.clone(), "")
            .boot()
    };
    let mut vm = boot("")?;
    vm.wait_for_line_starting(crate::contract::DOM0_ERROR, crate::machine::DEFAULT_TIMEOUT)?;
    vm.wait_for_line("Reboot in five seconds...", crate::machine::DEFAULT_TIMEOUT)?;
    // Five seconds of the guest's clock, and then some for a loaded host.
    vm.expect_exit(0, Duration::from_secs(60))?;
    let mut vm = boot("noreboot")?;
    vm.wait_for_line(
        "Manual reset required ('noreboot' specified)",
        crate::machine::DEFAULT_TIMEOUT,
    )?;
    vm.wait_for_line(
        "the machine is stopped; reset it to continue",
        crate::machine::DEFAULT_TIMEOUT,
    )?;
    if vm.serial_log().contains("Reboot in five seconds") {
        return Err("with noreboot the hypervisor still announced a reboot".into());
    }
    vm.kill();
    Ok(())
}

/// Serial input as Xen's `serial_rx` treats it: a single Ctrl-A (a line editor's "start of
/// line") reaches dom0, held only while it might become the third of a switch; the test
/// guest as dom0 reads a typed line with `console_io` and prints it, control characters
/// shown as `?`. With `conswitch=bx` (Xen's option) input starts with the hypervisor's debug
/// keys and Ctrl-B three times gives it to dom0.
pub fn serial_switch(ctx: &Context) -> Result<(), String> {
    use crate::contract;
    use crate::machine::DEFAULT_TIMEOUT as T;
    let kernel = ctx
        .workspace()
        .require_artifact(crate::scenarios::guests::TESTGUEST)?;
    let mut vm = ctx.machine().module(kernel, "test=console").boot()?;
    vm.wait_for_line(&contract::guest_line("console: type a line"), T)?;
    vm.send("a\x01b\x01\x01c\r")?;
    vm.wait_for_line(&contract::guest_line("console: got \"a?b??c\""), T)?;
    vm.kill();

    // The announcement comes before the prompt `boot_with` waits for.
    let mut vm = boot_with(ctx, "conswitch=bx", Initrd::Default)?;
    if !vm
        .serial_log()
        .contains("*** Serial input to Xenia (type 'CTRL-b' three times")
    {
        return Err("with conswitch=bx, input was not announced as the hypervisor's".into());
    }
    vm.send("m")?;
    vm.wait_for_line("memory: ", T)?;
    vm.send("\x02\x02\x02")?;
    vm.wait_for_line("*** Serial input to DOM0 (type 'CTRL-b' three times", T)?;
    let listed = run(&mut vm, "xl list")?;
    vm.kill();
    if !listed.contains("Domain-0") {
        return Err(format!(
            "after switching to dom0, `xl list` said {listed:?}"
        ));
    }
    Ok(())
}

/// Several processes in dom0 (issue 14: what a shell needs from the kernel), seen by
/// `probe processes` from the scenarios' initrd: fork, getppid, pipes to end of file, dup2
/// onto standard output and execve, twenty children collected by `wait4(-1)`, `ECHILD`, kill
/// of a child blocked on a pipe, `EPIPE`, and a sleeping process letting others run. Then a
/// plain program still runs and the prompt comes back.
pub fn processes(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with(ctx, "", Initrd::Test)?;
    let out = run(&mut vm, "probe processes")?;
    let failed: Vec<&str> = out.lines().filter(|l| l.contains("FAILED")).collect();
    if !failed.is_empty() || !out.contains("processes: done, 0 failed") {
        return Err(format!("probe processes: {failed:?} in {out:?}"));
    }
    let checks = out.lines().filter(|l| l.ends_with(": ok")).count();
    let again = run(&mut vm, "probe args a")?;
    vm.kill();
    if !again.contains("argc=3") {
        return Err(format!("a program after them: {again:?}"));
    }
    ctx.note(format!("{checks} checks passed"));
    Ok(())
}

/// How many times [`poweroff_repeated`] shuts a domain down (issue 14's acceptance).
const POWEROFFS: u32 = 200;
/// Failures after which [`poweroff_repeated`] stops looking (the report names each).
const FAILURES_SHOWN: usize = 5;
/// `xl list`s typed one at a time, when a domain outlived its shutdown, to tell the report
/// whether it went late or not at all.
const LATE_LISTS: u32 = 5;

/// `on_poweroff = "destroy"` applied every time, [`POWEROFFS`] times in one boot: `xl create`
/// the echo domain of `/etc/xen/hello.cfg`, then `xl shutdown -w hello` with `xl list`
/// queued right behind it (two lines pasted at once, as a script or a paste gives them):
/// `xl shutdown -w` must report the domain shut down, and that `xl list` must no longer
/// show it. dom0's kernel destroys the domain when it takes `VIRQ_DOM_EXC`, which must
/// happen before the shell starts the next command even though it never waits for input in
/// between (the command is already there): when dom0 counted that event only while blocked,
/// every queued `xl list` still showed the domain shut down, and it stayed so until dom0
/// next had nothing to do. At the end `xl info` reports the free memory it reported
/// before the first domain: each one was destroyed, not left behind.
pub fn poweroff_repeated(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let free_before = free_memory(&mut vm)?;
    let start = Instant::now();
    let mut failures = Vec::new();
    for i in 0..POWEROFFS {
        let out = run(&mut vm, "xl create /etc/xen/hello.cfg")?;
        let id = created_id(&out).ok_or_else(|| format!("round {i}: xl create: {out:?}"))?;
        vm.send("xl shutdown -w hello\rxl list\r")?;
        let shutdown = until_prompt(&mut vm, "xl shutdown -w hello")?;
        let listed = until_prompt(&mut vm, "xl list")?;
        for text in [
            format!("Shutting down domain {id}"),
            format!("Domain {id} has been shut down"),
        ] {
            if !shutdown.contains(&text) {
                return Err(format!(
                    "round {i}: `xl shutdown -w hello` did not say {text:?}: {shutdown:?}"
                ));
            }
        }
        let rows = parse_list(&listed)?;
        let Some(row) = domain(&rows, id) else {
            continue;
        };
        failures.push(format!(
            "round {i}: domain {id} still listed ({}) by the `xl list` after `xl shutdown -w`; {}",
            row.state,
            gone_later(&mut vm, id)?
        ));
        if failures.len() == FAILURES_SHOWN {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if !failures.is_empty() {
        return Err(format!(
            "on_poweroff not applied in time ({} failures, stopped looking after {FAILURES_SHOWN}):\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
    let rows = parse_list(&run(&mut vm, "xl list")?)?;
    if rows.len() != 1 || rows[0].name != "Domain-0" {
        return Err(format!("after the last round `xl list` shows {rows:?}"));
    }
    let free_after = free_memory(&mut vm)?;
    if free_after != free_before {
        return Err(format!(
            "free memory {free_before} MiB before the first domain, {free_after} MiB after \
             the last: destroyed domains left memory behind"
        ));
    }
    ctx.note(format!(
        "{POWEROFFS} rounds of create, shutdown -w and list in {elapsed:.1} s \
         ({:.0} ms each): destroyed every time; free memory {free_after} MiB as before",
        elapsed * 1000.0 / f64::from(POWEROFFS)
    ));
    vm.kill();
    Ok(())
}

/// Types `xl list` up to [`LATE_LISTS`] times, one at a time, until domain `id` is gone, and
/// destroys it if it stays; says what happened, for the report.
fn gone_later(vm: &mut Qemu, id: u32) -> Result<String, String> {
    for n in 1..=LATE_LISTS {
        if domain(&parse_list(&run(vm, "xl list")?)?, id).is_none() {
            return Ok(format!(
                "gone after {n} more `xl list`s typed one at a time"
            ));
        }
    }
    run(vm, &format!("xl destroy {id}"))?;
    Ok(format!(
        "still there after {LATE_LISTS} more `xl list`s (destroyed by hand)"
    ))
}

/// The row of domain `id`, if listed.
fn domain(rows: &[Row], id: u32) -> Option<&Row> {
    rows.iter().find(|r| r.id == id)
}

/// The id in `xl create`'s "Domain <name> created with id <id>".
fn created_id(out: &str) -> Option<u32> {
    let (_, rest) = out.split_once(" created with id ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `free_memory` of `xl info`, in MiB.
fn free_memory(vm: &mut Qemu) -> Result<u64, String> {
    let out = run(vm, "xl info")?;
    out.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "free_memory").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no free_memory in `xl info`: {out:?}"))
}

/// Boots the scenarios' initrd at the built-in shell and checks that busybox is among its
/// programs (`cargo xtask` fetches it; without a network it warns and leaves it out).
fn boot_with_busybox(ctx: &Context) -> Result<Qemu, String> {
    let mut vm = boot_with(ctx, "", Initrd::Test)?;
    let help = run(&mut vm, "help")?;
    if !help.contains("busybox") {
        return Err(format!(
            "no busybox among dom0's programs (did `cargo xtask` fetch busybox-static? see \
             its warning): {help:?}"
        ));
    }
    Ok(vm)
}

/// Debian's busybox in dom0 (the scenarios' initrd carries it, `cargo xtask` fetches it):
/// its shell runs pipelines, lists, loops, background jobs with `wait` and `kill`, a `trap`
/// handler, and `cd`; `ls`, `cat`, `grep`,
/// `wc`, `head`, `tail`, `find` and `uname` work on dom0's files; `xl` runs inside a
/// pipeline (`xl list | grep`); an exit status comes back to dom0's shell.
pub fn busybox(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with_busybox(ctx)?;
    // (command, a line the output must have)
    let cases: &[(&str, &str)] = &[
        ("busybox sh -c 'echo a b c | wc -w'", "3"),
        // The configurations in dom0-tools/etc/xen: hello, echo, compute, kv, web.
        ("sh -c 'ls /etc/xen | grep -c cfg'", "5"),
        ("sh -c 'cd /etc/xen && pwd && ls'", "/etc/xen"),
        ("sh -c 'cd /etc/xen && pwd && ls -1'", "hello.cfg"),
        (
            "sh -c 'cat /etc/xen/hello.cfg | head -1'",
            "# /etc/xen/hello.cfg: your first domain.",
        ),
        ("sh -c 'for i in 1 2 3; do echo n$i; done | tail -1'", "n3"),
        ("sh -c \"find /etc -name '*.cfg' | wc -l\"", "5"),
        // A background job and ash's `wait`, which waits for its SIGCHLD handler to run.
        (
            "sh -c 'sleep 1 & echo started; wait; echo waited'",
            "waited",
        ),
        // A signal handler (`trap`) runs and the shell goes on; `kill %1` ends a job.
        (
            "sh -c 'trap \"echo caught\" USR1; kill -USR1 $$; echo after'",
            "caught",
        ),
        ("sh -c 'sleep 5 & kill %1; wait; echo killed'", "killed"),
        ("sh -c 'false || echo fallback'", "fallback"),
        // SIGPIPE: `yes` writing into a pipe whose reader has gone is ended by it (128+13).
        (
            "sh -c '(yes; echo \"yes ended $?\" >&2) | head -1'",
            "yes ended 141",
        ),
        ("sh -c 'xl list | grep -c Domain-0'", "1"),
        ("uname -a", "Linux xenia-dom0 0.1.0-xenia-dom0"),
        ("sh -c 'exit 3'", "sh: exited with status 3"),
    ];
    let mut failed = Vec::new();
    for (command, want) in cases {
        let out = run(&mut vm, command)?;
        if !out
            .lines()
            .any(|l| l.trim_end() == *want || l.starts_with(want))
        {
            failed.push(format!("`{command}`: no line {want:?} in {out:?}"));
        }
    }
    vm.kill();
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    ctx.note(format!("{} busybox commands", cases.len()));
    Ok(())
}

/// dom0's root is writable (a tmpfs seeded from the initrd): a configuration written with
/// the shell is created by `xl`, found by `xl list | grep`, and restarted from (dom0's
/// kernel re-reads it); files are made, appended to, copied, moved, linked, listed and
/// removed; a file unlinked while open keeps its contents; `df` shows the tmpfs and `/proc`
/// feeds `ps`, `free` and `uptime`. Everything written is gone at the next boot (said in the
/// README), so nothing here can leak between scenarios.
pub fn files(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with_busybox(ctx)?;
    // (command, a line the output must have)
    let cases: &[(&str, &str)] = &[
        (
            r#"sh -c 'printf "name = \"mine\"\nkernel = \"/boot/echo.elf\"\nmemory = 16\n" > /etc/xen/mine.cfg && echo written'"#,
            "written",
        ),
        ("cat /etc/xen/mine.cfg", "name = \"mine\""),
        ("xl create /etc/xen/mine.cfg", "Domain mine created"),
        ("sh -c 'xl list | grep -c ^mine'", "1"),
        ("sh -c 'ls /etc/xen | grep mine'", "mine.cfg"),
        // Appending, and a compound command whose parts share one open file.
        (
            "sh -c '{ echo one; uname -s; echo three; } > /tmp/log; cat /tmp/log | tr \"\\n\" ,'",
            "one,Linux,three,",
        ),
        ("sh -c 'echo four >> /tmp/log; wc -l < /tmp/log'", "4"),
        (
            "sh -c 'mkdir -p /tmp/a/b && cp /etc/xen/mine.cfg /tmp/a/b/ && mv /tmp/a/b/mine.cfg /tmp/a/moved.cfg && ls /tmp/a'",
            "moved.cfg",
        ),
        (
            "sh -c 'ln -s /tmp/a/moved.cfg /tmp/link && readlink /tmp/link && grep -c memory /tmp/link'",
            "/tmp/a/moved.cfg",
        ),
        (
            "sh -c 'rm -r /tmp/a && ls /tmp/a 2>&1; test -e /tmp/a || echo gone'",
            "gone",
        ),
        ("sh -c 'touch /tmp/empty && ls -l /tmp/empty'", "-rw-r--r--"),
        // A file unlinked while open lives until closed.
        (
            "sh -c 'echo kept > /tmp/u; exec 3< /tmp/u; rm /tmp/u; cat <&3'",
            "kept",
        ),
        ("sh -c 'cd /etc/xen && cd .. && pwd'", "/etc"),
        ("df /", "tmpfs"),
        ("sh -c 'echo x > /proc/meminfo || echo refused'", "refused"),
        ("sh -c 'ps | grep -c \"[p]s$\"'", "1"),
        ("free", "Mem:"),
        ("uptime", "load average: 0.00, 0.00, 0.00"),
        ("sh -c 'cat /proc/self/stat | cut -d\" \" -f2'", "(cat)"),
        ("sh -c 'top -b -n 1 | grep -c PID'", "1"),
        ("sh -c 'cd /proc/self && cat comm'", "cat"),
        ("sh -c 'ls /proc/self/cwd/ | grep -c etc'", "1"),
        ("sh -c 'dmesg | grep -c \"dom0: initrd with\"'", "1"),
    ];
    let mut failed = Vec::new();
    for (command, want) in cases {
        let out = run(&mut vm, command)?;
        if !out
            .lines()
            .any(|l| l.trim_end() == *want || l.trim_start().starts_with(want) || l.contains(want))
        {
            failed.push(format!("`{command}`: no line {want:?} in {out:?}"));
        }
    }
    // dom0's kernel re-reads the configuration it recorded when the domain restarts.
    let out = run(&mut vm, "xl reboot mine")?;
    let listed = run(&mut vm, "xl list")?;
    vm.kill();
    if !listed.lines().any(|l| l.starts_with("mine")) {
        failed.push(format!(
            "after `xl reboot mine` ({out:?}), `xl list` lacks it: {listed:?}"
        ));
    }
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    ctx.note(format!(
        "{} commands on dom0's writable root",
        cases.len() + 1
    ));
    Ok(())
}

/// The default image's console shell is busybox's ash, with `dom0# ` as its prompt (issue
/// 14's scenario, typed as an operator types it): a configuration written with a here-document
/// is created by `xl create` and found by `xl list | grep`; `vi` writes a file; `ls`, `ps`, `free` and a
/// pipeline of three commands work; Ctrl-C ends a running `sleep 100`, a computation that
/// makes no system call, and a pipeline (the line discipline sends SIGINT to the foreground
/// job) and the shell reports status 130.
pub fn shell(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_machine(ctx, "", Initrd::Default, true)?;
    let log = vm.serial_log();
    if !log.contains("/bin/sh (busybox ash) on the console") {
        return Err(format!(
            "dom0 did not start busybox's ash on the console (is busybox in the default initrd? \
             see `cargo xtask build`'s warning); its last lines: {:?}",
            log.lines().rev().take(5).collect::<Vec<_>>()
        ));
    }
    // A configuration written at the prompt with a here-document.
    for line in [
        "cat > /etc/xen/mine.cfg <<EOF",
        "name = \"mine\"",
        "kernel = \"/boot/echo.elf\"",
        "memory = 16",
    ] {
        vm.send(&format!("{line}\r"))?;
    }
    run(&mut vm, "EOF")?;
    let mut failed = Vec::new();
    // (command, a line the output must have)
    let cases: &[(&str, &str)] = &[
        ("cat /etc/xen/mine.cfg", "memory = 16"),
        ("xl create /etc/xen/mine.cfg", "Domain mine created"),
        ("xl list | grep mine", "mine "),
        ("ls /etc/xen", "mine.cfg"),
        ("ps", "PID"),
        ("free", "Mem:"),
        ("cat /etc/xen/mine.cfg | grep -v memory | wc -l", "2"),
        ("echo $PS1", "dom0#"),
    ];
    for (command, want) in cases {
        let out = run(&mut vm, command)?;
        if !out.lines().skip(1).any(|l| l.contains(want)) {
            failed.push(format!("`{command}`: no line with {want:?} in {out:?}"));
        }
    }
    // A file written with `vi`, driven by keys as an operator types them; each key waits
    // for what vi shows in answer (its status line), so nothing depends on timing.
    vm.send("vi /tmp/notes\r")?;
    vm.wait_for("/tmp/notes", crate::machine::DEFAULT_TIMEOUT)?;
    vm.send("ivm = \"from vi\"")?;
    vm.wait_for("from vi", crate::machine::DEFAULT_TIMEOUT)?;
    vm.send("\x1b")?;
    vm.wait_for("[Modified]", crate::machine::DEFAULT_TIMEOUT)?;
    vm.send(":wq\r")?;
    until_prompt(&mut vm, "vi's :wq")?;
    let written = run(&mut vm, "cat /tmp/notes")?;
    if !written.lines().any(|l| l.trim_end() == "vm = \"from vi\"") {
        failed.push(format!(
            "vi did not write /tmp/notes: `cat` gave {written:?}"
        ));
    }
    // Ctrl-C while a program runs: one that sleeps, one that computes without a system
    // call, and a pipeline that moves bytes as fast as it can. Each job prints "started"
    // itself, so the Ctrl-C comes once it is the terminal's foreground job (as a person's
    // would; one typed before that reaches the shell instead, on Linux too). "after" must
    // never be printed and the status must be 130 (128 + SIGINT).
    let mut took = Vec::new();
    for command in [
        "sh -c 'echo started; exec sleep 100'",
        "awk 'BEGIN { print \"started\"; fflush(); while (1) {} }'",
        "{ echo started >&2; cat /dev/zero; } | wc -c",
    ] {
        vm.send(&format!("{command}; echo after\r"))?;
        vm.wait_for_line_starting("started", crate::machine::DEFAULT_TIMEOUT)?;
        let sent = Instant::now();
        vm.send("\x03")?;
        let out = until_prompt(&mut vm, "Ctrl-C")?;
        let back = sent.elapsed();
        if out.contains("after") || back.as_secs() >= 60 {
            failed.push(format!(
                "Ctrl-C did not interrupt `{command}` (back after {back:?}): {out:?}"
            ));
        }
        let status = run(&mut vm, "echo status=$?")?;
        if !status.contains("status=130") {
            failed.push(format!(
                "after Ctrl-C on `{command}`, `echo status=$?` gave {status:?}"
            ));
        }
        took.push(format!("{command} {:.1} s", back.as_secs_f64()));
    }
    vm.kill();
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    ctx.note(format!(
        "{} commands at ash's prompt; Ctrl-C ended {}",
        cases.len() + 1,
        took.join(", ")
    ));
    Ok(())
}

/// `xl create` with any readable configuration, as on Xen: `/dev/null` and the whole domain
/// in key=value overrides; a path with `//` and `..`; both domains are then listed (dom0's
/// kernel re-reads the configuration it records, and refused these before).
pub fn create_any_config(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let out = run(
        &mut vm,
        "xl create /dev/null 'name=\"nullcfg\"' 'kernel=\"/boot/echo.elf\"' memory=16",
    )?;
    if !out.contains("Domain nullcfg created") {
        return Err(format!("`xl create /dev/null ...`: {out:?}"));
    }
    let out = run(
        &mut vm,
        "xl create //etc/xen/../xen/hello.cfg 'name=\"dots\"'",
    )?;
    if !out.contains("Domain dots created") {
        return Err(format!("`xl create //etc/xen/../xen/hello.cfg`: {out:?}"));
    }
    let listed = run(&mut vm, "xl list")?;
    vm.kill();
    for name in ["nullcfg", "dots"] {
        if !listed.lines().any(|l| l.starts_with(name)) {
            return Err(format!("`xl list` lacks {name}: {listed:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_id_parses() {
        let out = "xl create /etc/xen/hello.cfg\nParsing config from /etc/xen/hello.cfg\n\
                   Domain hello created with id 17\n";
        assert_eq!(created_id(out), Some(17));
        assert_eq!(created_id("xl: cannot create \"hello\""), None);
    }
}
