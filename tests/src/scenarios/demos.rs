//! The demo guests (`guest-abi/demos`) and the default image.
//!
//! The demos are domUs: in the default image dom0's `xl` starts them and serves their
//! console ring. Booted as dom0 instead (the first module after the hypervisor), they use the
//! hypervisor console (`console_io`), so these scenarios check what they compute and print
//! without a console backend. The default image itself gets a smoke test: the hypervisor
//! takes both modules and dom0 starts.

use crate::contract;
use crate::iso::{DEFAULT_HV_OPTIONS, DEFAULT_MODULES};
use crate::machine::{DEFAULT_TIMEOUT as T, EXIT_POWEROFF};
use crate::runner::Context;

/// The demo that counts primes, `target/xenia/compute.elf`.
pub const COMPUTE: &str = "compute.elf";
/// dom0's shell prompt.
const DOM0_PROMPT: &str = "dom0# ";
/// The demo that says lines back, `target/xenia/echo.elf`.
pub const ECHO: &str = "echo.elf";

/// compute counts the primes below 200000 (`limit=200k`) in ten steps, prints the checkable
/// result (17984 primes, the largest 199999) and powers off.
pub fn compute(ctx: &Context) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(COMPUTE)?;
    let mut vm = ctx.machine().module(kernel, "limit=200k").boot()?;
    vm.wait_for_line(
        &contract::guest_line(
            "compute: counting the primes below 200000 in 10 steps (86 sieving primes)",
        ),
        T,
    )?;
    vm.wait_for_line(
        &contract::guest_line("compute: step 5/10: 9592 primes below 100000"),
        T,
    )?;
    vm.wait_for_line(
        &contract::guest_line("compute: 17984 primes below 200000"),
        T,
    )?;
    vm.wait_for_line(&contract::guest_line("compute: the largest is 199999"), T)?;
    vm.wait_for_line_starting(&contract::guest_line("compute: done in "), T)?;
    vm.wait_for_line(&contract::domain_shut_down(0, "poweroff"), T)?;
    vm.expect_exit(EXIT_POWEROFF, T)
}

/// echo prints its banner and answers each typed line (CR, LF or CR LF ends it); it runs
/// until the machine is stopped.
pub fn echo(ctx: &Context) -> Result<(), String> {
    let kernel = ctx.workspace().require_artifact(ECHO)?;
    let mut vm = ctx.machine().module(kernel, "").boot()?;
    vm.wait_for_line(
        &contract::guest_line("echo: type a line and I will say it back"),
        T,
    )?;
    vm.send("ping\r")?;
    vm.wait_for_line(&contract::guest_line("echo: ping"), T)?;
    vm.send("two words\r\nabc\x7fd\n")?;
    vm.wait_for_line(&contract::guest_line("echo: two words"), T)?;
    vm.wait_for_line(&contract::guest_line("echo: abd"), T)?;
    if vm.has_exited() {
        return Err("echo stopped; it should run until the machine is stopped".into());
    }
    vm.kill();
    Ok(())
}

/// The default image (`cargo xtask run`): the hypervisor with `dom0_mem=64M`, the dom0 kernel
/// and its initrd. Both modules are reported, dom0 gets 64 MiB, and its kernel comes up to
/// its shell prompt (`dom0# `, which it writes raw to the serial line).
pub fn default_image(ctx: &Context) -> Result<(), String> {
    let ws = ctx.workspace();
    let mut machine = ctx
        .machine()
        .memory_mib(1024)
        .hv_options(DEFAULT_HV_OPTIONS);
    for module in DEFAULT_MODULES {
        machine = machine.module(ws.require_artifact(module.artifact)?, module.cmdline);
    }
    let mut vm = machine.boot()?;
    for (index, module) in DEFAULT_MODULES.iter().enumerate() {
        let line = vm.wait_for_line_starting(&format!("module {index}:"), T)?;
        let size = std::fs::metadata(ws.artifact(module.artifact))
            .map_err(|e| format!("cannot stat {}: {e}", module.artifact))?
            .len();
        let got = contract::parse_module_line(&line)?;
        if got.bytes != size {
            return Err(format!(
                "module {index} ({}) is reported as {} bytes; the file has {size}",
                module.artifact, got.bytes
            ));
        }
    }
    let dom0 = vm.wait_for_line_starting("dom0: ", T)?;
    if !dom0.starts_with("dom0: 64 MiB") {
        return Err(format!("dom0_mem=64M gave {dom0:?}"));
    }
    vm.wait_for(DOM0_PROMPT, T)?;
    let log = vm.serial_log();
    if let Some(error) = log.lines().find(|l| l.starts_with(contract::DOM0_ERROR)) {
        return Err(format!(
            "the dom0 builder refused the default image: {error}"
        ));
    }
    vm.kill();
    Ok(())
}
