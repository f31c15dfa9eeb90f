//! Issue 17, a screen and a keyboard (DESIGN.md §13): the hypervisor's log and dom0's console
//! on VGA text mode or a framebuffer, read back through QEMU's monitor, and the PS/2 keyboard
//! typed on with `sendkey`. Every scenario here is named `realpc_*`.

use std::time::{Duration, Instant};

use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{DEFAULT_TIMEOUT as T, Machine, Qemu};
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, until_prompt};

/// The first line the hypervisor logs, as the screen shows it.
const BANNER: &str = "(XEN) Xenia ";
/// How often the screen is read while waiting for something to appear on it: each read is a
/// monitor command and a file; the wait itself is bounded by its deadline.
const SCREEN_POLL: Duration = Duration::from_millis(100);

/// The default image's machine (512 MiB, `-vga std`, the monitor) with `extra` hypervisor
/// options.
fn machine(ctx: &Context, extra: &str) -> Result<Machine, String> {
    let ws = ctx.workspace();
    let options = format!("{DEFAULT_HV_OPTIONS} {extra}");
    let mut machine = ctx
        .machine()
        .memory_mib(512)
        .hv_options(options.trim())
        .monitor(true)
        .qemu_arg("-vga")
        .qemu_arg("std");
    for module in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    Ok(machine)
}

/// Reads the screen with `read` until `want` says yes, within `timeout`; returns the last
/// screen read.
fn wait_screen(
    vm: &mut Qemu,
    what: &str,
    timeout: Duration,
    mut read: impl FnMut(&mut Qemu) -> Result<Vec<String>, String>,
    want: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = read(vm)?;
        if want(&rows) {
            return Ok(rows);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}: {what} did not appear on the screen within {}s; it shows:\n{}",
                vm.name(),
                timeout.as_secs(),
                rows.join("\n")
            ));
        }
        if vm.has_exited() {
            return Err(format!(
                "{}: QEMU exited while waiting for {what}",
                vm.name()
            ));
        }
        std::thread::sleep(SCREEN_POLL);
    }
}

fn vga(vm: &mut Qemu) -> Result<Vec<String>, String> {
    vm.read_vga_text()
}

/// Whether a row of `rows` starts with `text`.
fn row_starts(rows: &[String], text: &str) -> bool {
    rows.iter().any(|r| r.starts_with(text))
}

/// Whether the last non-blank row is the prompt (with nothing typed after it).
fn prompt_last(rows: &[String]) -> bool {
    rows.iter()
        .rev()
        .find(|r| !r.is_empty())
        .is_some_and(|r| r.trim_end() == PROMPT.trim_end())
}

/// With `console=vga` on `-vga std` (BIOS, GRUB's `gfxpayload=text`), the hypervisor's log goes
/// to VGA text memory and not to the serial line: the boot banner shows on the screen, then
/// dom0's `dom0# ` prompt (dom0's console goes to both).
pub fn vga_console(ctx: &Context) -> Result<(), String> {
    let mut vm = machine(ctx, "console=vga")?.boot()?;
    wait_screen(&mut vm, "the boot banner", T, vga, |rows| {
        row_starts(rows, BANNER)
    })?;
    vm.wait_for(PROMPT, T)?;
    wait_screen(&mut vm, "the dom0# prompt", T, vga, prompt_last)?;
    let serial = vm.serial_log();
    vm.kill();
    if let Some(line) = serial.lines().find(|l| l.starts_with("(XEN) ")) {
        return Err(format!(
            "with console=vga the hypervisor's log reached the serial line: {line:?}"
        ));
    }
    Ok(())
}

/// Types `text` on the keyboard and waits for the prompt after it on the serial line (dom0's
/// console goes there too); returns what came before the prompt.
fn type_line(vm: &mut Qemu, text: &str) -> Result<String, String> {
    vm.send_keys(text)?;
    vm.send_keys("\n")?;
    until_prompt(vm, text)
}

/// Keys typed with `sendkey` reach dom0's prompt: `xl list` lists Domain-0 on the screen and
/// the serial line; Shift gives capitals and `-`'s shifted neighbour, and Backspace erases a
/// typo (`xl lisx`, Backspace, `t Domain-0`).
pub fn keyboard(ctx: &Context) -> Result<(), String> {
    let mut vm = machine(ctx, "")?.boot()?;
    vm.wait_for(PROMPT, T)?;
    let out = type_line(&mut vm, "xl list")?;
    if !out.lines().any(|l| l.starts_with("Domain-0")) {
        return Err(format!("`xl list` typed on the keyboard printed {out:?}"));
    }
    wait_screen(&mut vm, "xl list's Domain-0 row", T, vga, |rows| {
        row_starts(rows, "Domain-0 ") && prompt_last(rows)
    })?;

    vm.send_keys("xl lisx")?;
    vm.sendkey("backspace")?;
    let out = type_line(&mut vm, "t Domain-0")?;
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("Domain-0")).collect();
    if rows.len() != 1 {
        return Err(format!(
            "`xl lisx`, Backspace, `t Domain-0` printed {out:?}, not one Domain-0 row"
        ));
    }
    let screen = wait_screen(&mut vm, "the corrected command line", T, vga, |rows| {
        row_starts(rows, "dom0# xl list Domain-0") && prompt_last(rows)
    })?;
    vm.kill();
    if screen.iter().any(|r| r.contains("lisx")) {
        return Err(format!(
            "the erased x is still on the screen:\n{}",
            screen.join("\n")
        ));
    }
    Ok(())
}

/// Ctrl-A three times on the keyboard switches input to the hypervisor's debug keys, as on the
/// serial line (`*** Serial input to Xenia`), where `m` shows the memory line; three more give
/// input back to dom0, whose `xl list` then works.
pub fn keyboard_switch(ctx: &Context) -> Result<(), String> {
    let mut vm = machine(ctx, "")?.boot()?;
    vm.wait_for(PROMPT, T)?;
    for _ in 0..3 {
        vm.sendkey("ctrl-a")?;
    }
    vm.wait_for_line("*** Serial input to Xenia (type 'CTRL-a' three times", T)?;
    vm.send_keys("m")?;
    vm.wait_for_line("memory: ", T)?;
    for _ in 0..3 {
        vm.sendkey("ctrl-a")?;
    }
    vm.wait_for_line("*** Serial input to DOM0 (type 'CTRL-a' three times", T)?;
    let out = type_line(&mut vm, "xl list")?;
    vm.kill();
    if !out.lines().any(|l| l.starts_with("Domain-0")) {
        return Err(format!("after switching back, `xl list` printed {out:?}"));
    }
    Ok(())
}

/// Reads the framebuffer console from a `screendump` ([`crate::monitor::framebuffer_text`]:
/// every cell compared pixel for pixel with the glyphs the hypervisor draws) until `want`
/// holds, within `timeout`. For BIOS with a VBE mode and for UEFI (GOP) alike.
pub fn wait_framebuffer(
    vm: &mut Qemu,
    what: &str,
    timeout: Duration,
    want: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, String> {
    wait_screen(
        vm,
        what,
        timeout,
        |vm| Ok(crate::monitor::framebuffer_text(&vm.screendump()?)),
        want,
    )
}

/// Checks a booted machine's framebuffer console: the boot banner, then the `dom0# ` prompt,
/// drawn with the console's font (pixel for pixel). The machine must have the monitor and be
/// booted with `console=vga` (or the default).
pub fn check_framebuffer_console(vm: &mut Qemu) -> Result<(), String> {
    wait_framebuffer(vm, "the boot banner", T, |rows| row_starts(rows, BANNER))?;
    vm.wait_for(PROMPT, T)?;
    wait_framebuffer(vm, "the dom0# prompt", T, prompt_last)?;
    Ok(())
}

/// The framebuffer path on BIOS: GRUB sets a 1024x768x32 VBE mode (`gfxpayload`), the
/// hypervisor draws its log and dom0's console there, and a `screendump` shows the banner and
/// the prompt in the console's font.
pub fn fb_console(ctx: &Context) -> Result<(), String> {
    let mut vm = machine(ctx, "console=vga")?
        .gfxpayload("1024x768x32")
        .boot()?;
    check_framebuffer_console(&mut vm)?;
    let serial = vm.serial_log();
    vm.kill();
    if serial.lines().any(|l| l.starts_with("(XEN) ")) {
        return Err("with console=vga the hypervisor's log reached the serial line".into());
    }
    Ok(())
}

/// The screen and the keyboard are the hypervisor's: on a VBE framebuffer with the default
/// `console=`, the test dom0 (`devaccess_screen`) finds the keyboard controller's ports
/// faulting, GSI 1 refused and the framebuffer refused to `mmu_update` on `DOMID_IO`.
pub fn screen_owned(ctx: &Context) -> Result<(), String> {
    use crate::contract;
    let dom0 = ctx.workspace().require_artifact(super::domains::DOM0TEST)?;
    // The test dom0 wants the test guest as module 1, though this test builds no domU.
    let domu = ctx.workspace().require_artifact(super::guests::TESTGUEST)?;
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .gfxpayload("1024x768x32")
        .module(dom0, "test=devaccess_screen")
        .module(domu, "")
        .boot()?;
    let result = vm.wait_for_line_starting(&contract::guest_line("Test result: "), T)?;
    vm.expect_exit(crate::machine::EXIT_POWEROFF, T)?;
    if !result.contains("SUCCESS") {
        return Err(format!("devaccess_screen: {result}"));
    }
    if !vm.serial_log().contains("screen: framebuffer, ") {
        return Err("the hypervisor did not take the framebuffer".into());
    }
    Ok(())
}

/// The same on UEFI (OVMF): GRUB gives the GOP framebuffer, the hypervisor draws its log and
/// dom0's console there (`console=vga`: nothing of the hypervisor's on the serial line), and
/// `xl list` typed on the PS/2 keyboard lists Domain-0 on that screen.
pub fn uefi_screen(ctx: &Context) -> Result<(), String> {
    let mut vm = machine(ctx, "console=vga")?.uefi(true).boot()?;
    check_framebuffer_console(&mut vm)?;
    let out = type_line(&mut vm, "xl list")?;
    if !out.lines().any(|l| l.starts_with("Domain-0")) {
        return Err(format!("`xl list` typed on the keyboard printed {out:?}"));
    }
    wait_framebuffer(&mut vm, "xl list's Domain-0 row", T, |rows| {
        row_starts(rows, "Domain-0 ") && prompt_last(rows)
    })?;
    let serial = vm.serial_log();
    vm.kill();
    if serial.lines().any(|l| l.starts_with("(XEN) ")) {
        return Err("with console=vga the hypervisor's log reached the serial line".into());
    }
    Ok(())
}
