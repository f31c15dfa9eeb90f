//! Boot scenarios: the hypervisor's boot log, CPU and memory detection, modules, options,
//! fatal exceptions and the ways out (see [`crate::contract`]).

use std::time::Duration;

use crate::contract::{self, CpuLine};
use crate::machine::{
    DEFAULT_TIMEOUT as T, EXIT_ACPI_POWEROFF, EXIT_DOM0_CRASHED, EXIT_HYPERVISOR_FATAL,
    EXIT_POWEROFF, Qemu,
};
use crate::runner::Context;
use crate::serial;

/// The version the banner must show: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `-m mib`: the memory line is within 3% of `mib`, and the boot ends in a clean power-off.
pub fn memory(ctx: &Context, mib: u32) -> Result<(), String> {
    let mut vm = ctx.machine().memory_mib(mib).boot()?;
    expect_memory_line(&mut vm, mib, T)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)
}

/// Waits (at most `timeout`) for the memory line of a machine booted with `-m mib` and checks
/// that it reports within 3% of `mib` usable.
pub(super) fn expect_memory_line(vm: &mut Qemu, mib: u32, timeout: Duration) -> Result<(), String> {
    let line = vm.wait_for_line_starting(contract::MEMORY, timeout)?;
    let usable = contract::parse_memory_line(&line)?;
    let (lo, hi) = (f64::from(mib) * 0.97, f64::from(mib) * 1.03);
    if !(lo..=hi).contains(&(usable as f64)) {
        return Err(format!(
            "with -m {mib} the hypervisor reports {usable} MiB usable; expected {lo:.0} to {hi:.0} \
             (within 3%)"
        ));
    }
    Ok(())
}

/// Boots with `-cpu model` and returns the parsed CPU line after a clean power-off.
fn cpu_line(ctx: &Context, model: &str) -> Result<CpuLine, String> {
    let mut vm = ctx.machine().cpu(model).boot()?;
    let cpu = contract::parse_cpu_line(&vm.wait_for_line_starting(contract::CPU, T)?)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    Ok(cpu)
}

/// `-cpu max` under TCG (QEMU 7.2): SMEP, SMAP, UMIP, FSGSBASE, NX, 1 GiB pages and SVM, but
/// neither PCID nor x2APIC (nor VMX).
pub fn cpu_max(ctx: &Context) -> Result<(), String> {
    let cpu = cpu_line(ctx, "max")?;
    check_identity(&cpu, "QEMU TCG CPU")?;
    cpu.expect(&[
        ("pcid", false),
        ("x2apic", false),
        ("smep", true),
        ("smap", true),
        ("umip", true),
        ("fsgsbase", true),
        ("nx", true),
        ("1g", true),
        ("svm", true),
        ("vmx", false),
    ])
}

/// `-cpu qemu64` under TCG (QEMU 7.2): the x86-64 baseline, NX and SVM only among the listed
/// features (as QEMU's `query-cpu-model-expansion` reports for this model).
pub fn cpu_qemu64(ctx: &Context) -> Result<(), String> {
    let cpu = cpu_line(ctx, "qemu64")?;
    check_identity(&cpu, "QEMU Virtual CPU")?;
    cpu.expect(&[
        ("pcid", false),
        ("x2apic", false),
        ("smep", false),
        ("smap", false),
        ("umip", false),
        ("fsgsbase", false),
        ("nx", true),
        ("1g", false),
        ("svm", true),
        ("vmx", false),
    ])
}

/// Both QEMU models identify as AMD, with a brand string naming the model.
fn check_identity(cpu: &CpuLine, brand: &str) -> Result<(), String> {
    if cpu.vendor != "AuthenticAMD" || !cpu.brand.starts_with(brand) {
        return Err(format!(
            "CPU identified as vendor {:?}, brand {:?}; expected AuthenticAMD and a brand \
             starting {brand:?}",
            cpu.vendor, cpu.brand
        ));
    }
    Ok(())
}

/// The banner comes first, then the CPU line, the memory line, the CPUs-online line (one CPU:
/// `cpus: 1 online`) and the no-module line, with the APIC timer calibrated in between.
pub fn log_contract_order(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx.machine().boot()?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    let log = vm.serial_log();
    let find = |what: &str, pred: &dyn Fn(&str) -> bool| {
        serial::line_index(&log, pred).ok_or_else(|| format!("no {what} in the serial log"))
    };
    let banner = find("banner line \"Xenia <version>\"", &|l| {
        contract::banner_version(l).is_some()
    })?;
    let version = log
        .lines()
        .nth(banner)
        .and_then(contract::banner_version)
        .unwrap_or("");
    if version != VERSION {
        return Err(format!(
            "the banner shows version {version:?}, expected {VERSION:?} (the workspace's)"
        ));
    }
    let order = [
        ("banner", banner),
        (
            "cpu line",
            find("line starting \"cpu: \"", &|l| l.starts_with(contract::CPU))?,
        ),
        (
            "memory line",
            find("line starting \"memory: \"", &|l| {
                l.starts_with(contract::MEMORY)
            })?,
        ),
        (
            "cpus line",
            find("line \"cpus: <n> online\"", &|l| {
                contract::parse_cpus_line(l).is_some()
            })?,
        ),
        (
            "no-module line",
            find("no-module line", &|l| l == contract::NO_DOM0)?,
        ),
    ];
    for pair in order.windows(2) {
        let ((a, ia), (b, ib)) = (pair[0], pair[1]);
        if ia >= ib {
            return Err(format!(
                "the {a} (line {}) must come before the {b} (line {})",
                ia + 1,
                ib + 1
            ));
        }
    }
    let apic = find("line starting \"apic: timer\"", &|l| {
        l.starts_with(contract::APIC_TIMER)
    })?;
    if apic < banner || apic > order[4].1 {
        return Err(format!(
            "the APIC timer line (line {}) must come between the banner and the no-module line",
            apic + 1
        ));
    }
    let cpus = log
        .lines()
        .nth(order[3].1)
        .and_then(contract::parse_cpus_line);
    if cpus != Some(1) {
        return Err(format!(
            "a one-CPU machine must say {:?}, found {cpus:?}",
            contract::cpus_online(1)
        ));
    }
    let stray: Vec<&str> = log
        .lines()
        .skip(banner + 1)
        .take(order[1].1 - banner - 1)
        .filter(|l| !l.starts_with(contract::WARNING))
        .collect();
    if !stray.is_empty() {
        return Err(format!(
            "between the banner and the cpu line only warnings may appear, found {stray:?}"
        ));
    }
    Ok(())
}

/// Three modules: their sizes and command lines (one quoted word, `$` and `;` that GRUB must
/// leave alone, and an empty one) come through, the third is reported as unused (issue 14:
/// nothing given is ignored silently), then the boot stops because the first module is no
/// kernel.
pub fn module_line(ctx: &Context) -> Result<(), String> {
    const CMDLINE: &str = r#"console=hvc0 "foo=a b" dollar=$root semi=a;b"#;
    let dir = ctx.work_dir()?;
    let modules = [
        ("module.bin", 1234, CMDLINE),
        ("second.bin", 4097, ""),
        ("third.bin", 10, "extra"),
    ];
    let mut machine = ctx.machine();
    for (name, size, cmdline) in modules {
        let path = dir.join(name);
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        machine = machine.module(path, cmdline);
    }
    let mut vm = machine.boot()?;
    for (index, (name, size, cmdline)) in modules.into_iter().enumerate() {
        let line = vm.wait_for_line_starting(&format!("module {index}:"), T)?;
        let got = contract::parse_module_line(&line)?;
        if got.bytes != size || got.cmdline != cmdline {
            return Err(format!(
                "module {index} ({name}) is reported as {} bytes with command line {:?}; \
                 expected {size} bytes with {cmdline:?}",
                got.bytes, got.cmdline
            ));
        }
    }
    let unused = format!("{}module 2 is not used", contract::WARNING);
    vm.wait_for_line_starting(&unused, T)?;
    // The first module is not a kernel: the builder says so and the machine stops.
    vm.wait_for_line_starting(contract::DOM0_ERROR, T)?;
    vm.expect_exit(EXIT_DOM0_CRASHED, T)?;
    if serial::line_containing(&vm.serial_log(), contract::NO_DOM0).is_some() {
        return Err("modules were given, yet the hypervisor said none was".into());
    }
    Ok(())
}

/// Boots with `selftest=<test>`, expects the fatal-exception diagnostic for `vector` and
/// QEMU's fatal exit status, and returns the diagnostic's lines.
fn selftest(ctx: &Context, test: &str, vector: u8, mnemonic: &str) -> Result<Vec<String>, String> {
    let mut vm = ctx
        .machine()
        .hv_options(&format!("selftest={test}"))
        .tolerate(contract::FATAL_EXCEPTION_MARK)
        .boot()?;
    let heading = contract::fatal_exception(vector, mnemonic);
    vm.wait_for_line(&heading, T)?;
    vm.expect_exit(EXIT_HYPERVISOR_FATAL, T)?;
    let log = vm.serial_log();
    let diagnostic: Vec<String> = log
        .lines()
        .skip_while(|l| !l.contains(&heading))
        .map(str::to_string)
        .collect();
    for needle in ["rip 0x", contract::CALL_TRACE] {
        if !diagnostic.iter().any(|l| l.contains(needle)) {
            return Err(format!(
                "the fatal-exception diagnostic has no line containing {needle:?}"
            ));
        }
    }
    Ok(diagnostic)
}

/// `selftest=ud`: ud2 in ring 0 is a fatal #UD with a diagnostic.
pub fn selftest_ud(ctx: &Context) -> Result<(), String> {
    selftest(ctx, "ud", 6, "#UD").map(drop)
}

/// `selftest=pf`: reading 0xdeadbeef000 is a fatal #PF whose diagnostic shows CR2.
pub fn selftest_pf(ctx: &Context) -> Result<(), String> {
    let diagnostic = selftest(ctx, "pf", 14, "#PF")?;
    if !diagnostic.iter().any(|l| l.contains("cr2 0xdeadbeef000")) {
        return Err("the #PF diagnostic has no line containing \"cr2 0xdeadbeef000\"".into());
    }
    Ok(())
}

/// `selftest=db`: a single-step trap in ring 0 with `rsp` unmapped (the shape of a guest's
/// `mov ss` + SYSCALL with TF set) is taken on the #DB's own stack and dropped; the boot goes
/// on. Without that stack the CPU's push faults and the #DF stops the machine.
pub fn selftest_db(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx.machine().hv_options("selftest=db").boot()?;
    vm.wait_for_line(
        "selftest: 1 #DB taken on its own stack and dropped; going on",
        T,
    )?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)
}

/// An unknown option is named in a warning and the boot goes on; a known one is not.
pub fn unknown_option_warns(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx
        .machine()
        .hv_options("frobnicate=3 loglvl=info")
        .boot()?;
    vm.wait_for_line(&contract::unknown_option_warning("frobnicate=3"), T)?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_POWEROFF, T)?;
    let log = vm.serial_log();
    let warning = contract::unknown_option_warning("frobnicate=3");
    let at = |pred: &dyn Fn(&str) -> bool| serial::line_index(&log, pred);
    let (banner, warned, cpu) = (
        at(&|l| contract::banner_version(l).is_some()),
        at(&|l| l == warning),
        at(&|l| l.starts_with(contract::CPU)),
    );
    if !(banner < warned && warned < cpu) {
        return Err(format!(
            "the warning must come after the banner and before the cpu line (lines {:?}, {:?}, {:?})",
            banner.map(|i| i + 1),
            warned.map(|i| i + 1),
            cpu.map(|i| i + 1)
        ));
    }
    if let Some(line) = log
        .lines()
        .find(|l| l.starts_with(contract::WARNING) && l.contains("loglvl"))
    {
        return Err(format!(
            "the known option loglvl=info drew a warning: {line:?}"
        ));
    }
    Ok(())
}

/// Without `debug-exit` the hypervisor powers off through ACPI: QEMU exits with 0.
pub fn acpi_poweroff(ctx: &Context) -> Result<(), String> {
    let mut vm = ctx.machine().debug_exit(false).boot()?;
    vm.wait_for_line(contract::NO_DOM0, T)?;
    vm.expect_exit(EXIT_ACPI_POWEROFF, T)
}

/// `-cpu qemu32` has no long mode: the hypervisor says so and halts: QEMU keeps running
/// (a triple fault or any exit would end it, given -no-reboot) and nothing more is printed.
pub fn no_long_mode(ctx: &Context) -> Result<(), String> {
    /// How long a halted machine must stay up and quiet.
    const HALTED_FOR: Duration = Duration::from_secs(2);
    let mut vm = ctx.machine().cpu("qemu32").boot()?;
    vm.wait_for(contract::NO_LONG_MODE, T)?;
    let at = vm.cursor();
    vm.expect_running(HALTED_FOR)?;
    let after = vm.serial_log()[at..].trim().to_string();
    vm.kill();
    if !after.is_empty() {
        return Err(format!(
            "after the long-mode message the machine printed {after:?}; it should halt"
        ));
    }
    Ok(())
}
