//! Guest scenarios: dom0 kernels in ring 1 (the example guest and the test guest), the
//! dom0 builder's refusals, and how each way a domain stops reaches the exit status.
//!
//! Every guest scenario runs under two CPU models: `-cpu max` (SMEP, SMAP, UMIP, NX,
//! 1 GiB pages) and the `qemu64` baseline (none of those but NX).

use crate::contract;
use crate::machine::{DEFAULT_TIMEOUT as T, EXIT_DOM0_CRASHED, EXIT_POWEROFF};
use crate::runner::Context;
use crate::serial;

/// The example guest, `target/xenia/hello.elf`.
pub const HELLO: &str = "hello.elf";
/// The test guest, `target/xenia/testguest.elf`, test chosen with `test=<name>`.
pub const TESTGUEST: &str = "testguest.elf";
/// The hostile guest, `target/xenia/attacks.elf`.
pub const ATTACKS: &str = "attacks.elf";
/// Fewest distinct escapes the attack suite must try.
const MIN_ATTACKS: usize = 25;

/// QEMU arguments for virtual time: QEMU's instruction counter drives every clock, a fixed
/// 2^4 = 16 ns per instruction (`shift=4`; QEMU's `-icount` documentation), and idle time is
/// skipped (`sleep=off`). Timings the guest measures are then the hypervisor's doing (a path
/// of N instructions takes 16 N ns), the same on a loaded host as on an idle one. A fixed
/// shift, unlike `auto`, does not let host speed into the figures; 16 ns keeps the tests'
/// spin loops affordable (at `shift=0` the timers test takes a minute of host time).
pub const VIRTUAL_TIME: [&str; 2] = ["-icount", "shift=4,sleep=off"];

/// Boots `artifact` as dom0 with `cmdline` under CPU `model`.
fn boot_guest(
    ctx: &Context,
    artifact: &str,
    cmdline: &str,
    model: &str,
) -> Result<crate::machine::Qemu, String> {
    let kernel = ctx.workspace().require_artifact(artifact)?;
    ctx.machine().cpu(model).module(kernel, cmdline).boot()
}

/// A test of the test guest passes: its checks all print `ok`, it reports
/// `Test result: SUCCESS` and powers off.
pub fn testguest(ctx: &Context, test: &str, model: &str) -> Result<(), String> {
    let mut vm = boot_guest(ctx, TESTGUEST, &format!("test={test}"), model)?;
    testguest_verdict(&mut vm, test, model)
}

/// A test of the test guest under `-cpu max` with the hypervisor built with debug assertions
/// and overflow checks (`xenia-checked.elf`): an arithmetic overflow or a failed assertion that
/// the guest's input reaches panics, and the test fails (red team, session 10: the emulation
/// paths `wrpt` and `fep` drive with hostile instruction addresses).
pub fn testguest_checked(ctx: &Context, test: &str) -> Result<(), String> {
    let checked = ctx
        .workspace()
        .require_artifact(crate::workspace::CHECKED_HYPERVISOR_ARTIFACT)?;
    ctx.set_default_hypervisor(&checked);
    testguest(ctx, test, "max")
}

/// A test of the test guest that measures time, run in virtual time ([`VIRTUAL_TIME`]); the
/// verdict is [`testguest`]'s, and the guest's `note:` lines (the measured figures) are shown.
pub fn testguest_virtual_time(ctx: &Context, test: &str, model: &str) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(TESTGUEST)?;
    let mut vm = ctx
        .machine()
        .cpu(model)
        .module(kernel, &format!("test={test}"))
        .qemu_arg(VIRTUAL_TIME[0])
        .qemu_arg(VIRTUAL_TIME[1])
        .boot()?;
    let verdict = testguest_verdict(&mut vm, test, model);
    for line in vm.serial_log().lines() {
        if let Some(note) = line.strip_prefix(&contract::guest_line("note: ")) {
            ctx.note(note);
        }
    }
    verdict
}

/// The line after which the `hypercalls` test reads console input (testguest
/// `copyout::INPUT_PROMPT`).
const HYPERCALLS_PROMPT: &str = "hypercalls: type the console input now";
/// What to type then (testguest `copyout::INPUT`): longer than the test's short read buffer.
const HYPERCALLS_INPUT: &str = "0123456789abcdefghijklmnopqrstuv";

/// The test guest's `hypercalls` test, which reads typed input with `console_io` into short
/// buffers: the scenario types when asked.
pub fn hypercalls(ctx: &Context, model: &str) -> Result<(), String> {
    let mut vm = boot_guest(ctx, TESTGUEST, "test=hypercalls", model)?;
    vm.wait_for_line(&contract::guest_line(HYPERCALLS_PROMPT), T)?;
    vm.send(HYPERCALLS_INPUT)?;
    testguest_verdict(&mut vm, "hypercalls", model)
}

/// The verdict of a test guest run: its checks all print `ok`, it reports
/// `Test result: SUCCESS` and powers off.
pub fn testguest_verdict(
    vm: &mut crate::machine::Qemu,
    test: &str,
    model: &str,
) -> Result<(), String> {
    let result = vm.wait_for_line_starting(&contract::guest_line("Test result: "), T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    let log = vm.serial_log();
    let check = contract::guest_line("check ");
    let checks: Vec<&str> = log.lines().filter(|l| l.starts_with(&check)).collect();
    let failed: Vec<&&str> = checks.iter().filter(|l| !l.ends_with(": ok")).collect();
    if result != contract::guest_line("Test result: SUCCESS") {
        return Err(format!(
            "test {test} under -cpu {model}: {result}; failed checks: {failed:?}"
        ));
    }
    if !failed.is_empty() {
        return Err(format!(
            "test {test} reported SUCCESS but has failed checks: {failed:?}"
        ));
    }
    if checks.is_empty() {
        return Err(format!(
            "test {test} reported SUCCESS without a single check line"
        ));
    }
    Ok(())
}

/// The example guest: prints its privilege level (`CPL 1`), handles a trap, takes ten timer
/// ticks, makes a system call from ring 3, and powers off.
pub fn hello(ctx: &Context, model: &str) -> Result<(), String> {
    const CMDLINE: &str = "hello from the scenario";
    let mut vm = boot_guest(ctx, HELLO, CMDLINE, model)?;
    let guest = |l: &str| l.starts_with(&contract::guest_line(""));
    let line =
        vm.wait_for_line_matching("the guest's CPL line", T, |l| guest(l) && l.contains("CPL"))?;
    if !line.contains("CPL 1") {
        return Err(format!(
            "the example guest reports {line:?}; expected CPL 1"
        ));
    }
    vm.wait_for_line_matching("the guest's command line", T, |l| {
        guest(l) && l.contains(CMDLINE)
    })?;
    vm.wait_for_line_starting(&contract::guest_line("trap handled: int3"), T)?;
    for tick in 1..=10 {
        let tick = contract::guest_line(&format!("tick {tick}"));
        vm.wait_for_line_matching(&tick, T, |l| l.starts_with(&tick))?;
    }
    vm.wait_for_line_starting(
        &contract::guest_line("ring 3 says hello through SYSCALL"),
        T,
    )?;
    vm.wait_for_line(&contract::domain_shut_down(0, "poweroff"), T)?;
    vm.expect_exit(EXIT_POWEROFF, T)
}

/// The attack suite: at least 25 distinct escapes, each refused (`attack <name>: refused
/// (<how>)`), none `SUCCEEDED`; the hypervisor's own frame-table check is consistent after
/// it; the guest reports SUCCESS and the machine powers off normally.
pub fn attacks(ctx: &Context, model: &str) -> Result<(), String> {
    attacks_on(ctx, model, 1)
}

/// [`attacks`] on a machine with `cpus` CPUs (`-smp`).
pub fn attacks_on(ctx: &Context, model: &str, cpus: u32) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(ATTACKS)?;
    let mut vm = ctx
        .machine()
        .cpu(model)
        .cpus(cpus)
        .module(kernel, "")
        .boot()?;
    let result = vm.wait_for_line_starting(&contract::guest_line("Test result: "), T)?;
    vm.wait_for_line_starting("frame table check: ", T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    let log = vm.serial_log();
    let attack = contract::guest_line("attack ");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with(&attack)).collect();
    let succeeded: Vec<&&str> = lines.iter().filter(|l| l.contains("SUCCEEDED")).collect();
    let refused = lines.iter().filter(|l| l.contains(": refused (")).count();
    if !succeeded.is_empty() {
        return Err(format!(
            "attacks got through under -cpu {model}: {succeeded:?}"
        ));
    }
    if refused < MIN_ATTACKS || refused != lines.len() {
        return Err(format!(
            "{refused} attacks refused out of {} attack lines; need at least {MIN_ATTACKS}, all refused",
            lines.len()
        ));
    }
    let checks: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("frame table check: "))
        .collect();
    if checks.is_empty()
        || checks
            .iter()
            .any(|l| !l.starts_with("frame table check: consistent"))
    {
        return Err(format!(
            "the hypervisor's frame-table check says {checks:?}"
        ));
    }
    if result != contract::guest_line("Test result: SUCCESS") {
        return Err(format!("the attack guest reports {result:?}"));
    }
    Ok(())
}

/// At `loglvl=debug` every page-table update the frame table refuses is logged with the entry
/// and the rule it broke (the porting guide's promise), for the attack suite's refusals: a
/// foreign frame mapped by an L1 entry, an update of L4 slot 256, a writable frame pinned as
/// a table.
pub fn refusal_log(ctx: &Context) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(ATTACKS)?;
    let mut vm = ctx
        .machine()
        .cpu("max")
        .hv_options("loglvl=debug")
        .module(kernel, "")
        .boot()?;
    vm.wait_for_line_starting(&contract::guest_line("Test result: "), T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    let log = vm.serial_log();
    let expected: [(&str, &[&str]); 3] = [
        (
            "an L1 entry mapping another domain's frame",
            &[
                "debug: d0: mmu_update refused (EBUSY): L1 entry ",
                "an L1 entry may only map the domain's own frames",
            ],
        ),
        (
            "an update of L4 slot 256",
            &[
                "debug: d0: mmu_update refused (EINVAL): L4 entry 256 of frame ",
                "L4 slots 256-271 belong to the hypervisor",
            ],
        ),
        (
            "a pin of a frame that is mapped writable",
            &["debug: d0: mmuext_op pin refused (", "): frame "],
        ),
    ];
    let missing: Vec<&str> = expected
        .iter()
        .filter(|(_, parts)| !log.lines().any(|l| parts.iter().all(|p| l.contains(p))))
        .map(|(what, _)| *what)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "no debug line naming the entry and the rule for: {missing:?}"
        ));
    }
    Ok(())
}

/// The demo of `cargo xtask run`: the example guest with `interactive` echoes typed lines
/// and powers off on `poweroff`.
pub fn hello_interactive(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_guest(ctx, HELLO, "interactive", "max")?;
    vm.wait_for_line_starting(&contract::guest_line("type a line"), T)?;
    vm.send("ping\r")?;
    vm.wait_for_line(&contract::guest_line("you typed: ping"), T)?;
    vm.send("poweroff\r")?;
    vm.wait_for_line(&contract::domain_shut_down(0, "poweroff"), T)?;
    vm.expect_exit(EXIT_POWEROFF, T)
}

/// Typed input reaches dom0: the guest asks for a line, the scenario types it, and the
/// guest echoes it back.
pub fn console(ctx: &Context, model: &str) -> Result<(), String> {
    const TYPED: &str = "hello xenia 42";
    let mut vm = boot_guest(ctx, TESTGUEST, "test=console", model)?;
    vm.wait_for_line(&contract::guest_line("console: type a line"), T)?;
    vm.send(&format!("{TYPED}\r"))?;
    vm.wait_for_line(
        &contract::guest_line(&format!("console: got \"{TYPED}\"")),
        T,
    )?;
    let result = vm.wait_for_line_starting(&contract::guest_line("Test result: "), T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    if result != contract::guest_line("Test result: SUCCESS") {
        return Err(format!("the console test reports {result:?}"));
    }
    Ok(())
}

/// A shutdown reason reaches the log and the exit status.
pub fn shutdown(ctx: &Context, reason: &str, exit: i32, model: &str) -> Result<(), String> {
    let mut vm = boot_guest(ctx, TESTGUEST, &format!("test=shutdown_{reason}"), model)?;
    vm.wait_for_line(&contract::domain_shut_down(0, reason), T)?;
    vm.expect_exit(exit, T)
}

/// A fault the guest has no handler for crashes dom0 with a line naming the vector and
/// RIP, and the machine stops with the dom0-crash status.
pub fn unhandled_fault(ctx: &Context, model: &str) -> Result<(), String> {
    let mut vm = boot_guest(ctx, TESTGUEST, "test=unhandled_fault", model)?;
    let line = vm.wait_for_line_starting(&contract::domain_crashed(0), T)?;
    if !(line.contains("vector 14") && line.contains("rip 0x")) {
        return Err(format!(
            "the crash line {line:?} does not name the vector (14) and the rip"
        ));
    }
    vm.wait_for_line(&contract::domain_shut_down(0, "crash"), T)?;
    vm.expect_exit(EXIT_DOM0_CRASHED, T)
}

/// A hypercall whose saved return address is the first non-canonical one (an `int 0x82` in
/// the last two bytes of the lower half): the hypervisor crashes dom0 rather than `iretq` to
/// it (a #GP in ring 0 on Intel CPUs), on the lock-free way for `xen_version` too.
pub fn hypercall_at_canonical_end(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_guest(ctx, TESTGUEST, "test=hypercall_at_canonical_end", "max")?;
    let line = vm.wait_for_line_starting(&contract::domain_crashed(0), T)?;
    if !line.contains("cannot return to the guest") {
        return Err(format!(
            "the crash line {line:?} does not say the frame could not be returned to"
        ));
    }
    vm.wait_for_line(&contract::domain_shut_down(0, "crash"), T)?;
    vm.expect_exit(EXIT_DOM0_CRASHED, T)
}

/// A SYSCALL from ring 3 whose kernel stack is a page table (mapped read-only): the bounce
/// writes nothing there and the hypervisor crashes dom0, on the way that answers SYSCALLs
/// without a lock (the guest's earlier hypercalls recorded its stack there) as on the
/// ordinary one.
pub fn syscall_stack_on_page_table(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_guest(ctx, TESTGUEST, "test=syscall_stack_on_page_table", "max")?;
    vm.wait_for_line("(d0) about to SYSCALL from ring 3", T)?;
    let line = vm.wait_for_line_starting(&contract::domain_crashed(0), T)?;
    if !line.contains("cannot write an exception frame") {
        return Err(format!(
            "the crash line {line:?} does not say the frame could not be written"
        ));
    }
    vm.wait_for_line(&contract::domain_shut_down(0, "crash"), T)?;
    vm.expect_exit(EXIT_DOM0_CRASHED, T)
}

/// A module that is not an ELF kernel: the builder names the problem and the machine
/// stops with the dom0-crash status.
pub fn bad_kernel(ctx: &Context) -> Result<(), String> {
    let dir = ctx.work_dir()?;
    let path = dir.join("not-a-kernel.bin");
    std::fs::write(&path, b"#!/bin/sh\necho this is not an ELF kernel\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut vm = ctx.machine().module(path, "").boot()?;
    let line = vm.wait_for_line_starting(contract::DOM0_ERROR, T)?;
    if !line.contains("ELF") {
        return Err(format!(
            "the builder's error {line:?} does not say what is wrong with the ELF"
        ));
    }
    vm.expect_exit(EXIT_DOM0_CRASHED, T)?;
    if serial::line_containing(&vm.serial_log(), "(d0)").is_some() {
        return Err("a guest printed although its kernel was refused".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Most lines the example guest may have (`wc -l guest-abi/hello/src/main.rs`): it is the
    /// single file a porter copies and reads top to bottom (issue 11), on top of the runtime.
    const HELLO_MAX_LINES: usize = 150;

    #[test]
    fn hello_stays_short() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-abi/hello/src/main.rs");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        // `wc -l` counts newline characters.
        let lines = text.bytes().filter(|&b| b == b'\n').count();
        assert!(
            lines <= HELLO_MAX_LINES,
            "{} has {lines} lines; the example guest must stay at most {HELLO_MAX_LINES}",
            path.display()
        );
    }
}
