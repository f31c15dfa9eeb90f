//! The hypercalls and emulation a Xen PV Linux kernel needs (issue 18), driven from the test
//! guest's ring-1 kernel (testguest `linux_abi_privop`, `linux_abi_hypercalls`; their module
//! docs list the checks): privileged instructions answered as Xen answers them, and the
//! answers of `xen_version`, `vm_assist`, `sched_op`, `physdev_op` and `vcpu_op`'s run-state
//! calls. The hypercalls scenario also checks the hypervisor's `loglvl=debug` line for a
//! hypercall Xenia lacks, which the Linux scenarios rely on to find any.

use super::domains::dom0test;
use super::guests::{TESTGUEST, testguest, testguest_checked, testguest_verdict};
use crate::runner::Context;

/// `linux_abi_privop` under CPU `model`.
pub fn privop(ctx: &Context, model: &str) -> Result<(), String> {
    testguest(ctx, "linux_abi_privop", model)
}

/// `linux_abi_privop` on the hypervisor built with debug assertions and overflow checks: the
/// decoder and the string I/O loop take the guest's bytes and counts.
pub fn privop_checked(ctx: &Context) -> Result<(), String> {
    testguest_checked(ctx, "linux_abi_privop")
}

/// The line the hypervisor logs at `loglvl=debug` for the guest's `xenoprof_op`.
const ENOSYS_LINE: &str = "d0v0: ENOSYS: xenoprof_op (31) sub-op 0";

/// `linux_abi_hypercalls` at `loglvl=debug`: the verdict, then the `ENOSYS` line for the one
/// hypercall it makes that Xenia lacks, and none for those it has. `checked`: on the
/// hypervisor built with debug assertions and lock-order checks (the run-state area is
/// written from the vCPU switch, with a domain locked, taking the scheduler's lock).
pub fn hypercalls(ctx: &Context, checked: bool) -> Result<(), String> {
    if checked {
        let hv = ctx
            .workspace()
            .require_artifact(crate::workspace::CHECKED_HYPERVISOR_ARTIFACT)?;
        ctx.set_default_hypervisor(&hv);
    }
    let kernel = ctx.workspace().require_artifact(TESTGUEST)?;
    let mut vm = ctx
        .machine()
        .cpu("max")
        .hv_options("loglvl=debug")
        .module(kernel, "test=linux_abi_hypercalls")
        .boot()?;
    testguest_verdict(&mut vm, "linux_abi_hypercalls", "max")?;
    let log = vm.serial_log();
    let enosys: Vec<&str> = log.lines().filter(|l| l.contains(": ENOSYS: ")).collect();
    if !enosys.iter().any(|l| l.contains(ENOSYS_LINE)) {
        return Err(format!(
            "no \"{ENOSYS_LINE}\" line at loglvl=debug for the guest's xenoprof_op; \
             ENOSYS lines: {enosys:?}"
        ));
    }
    if enosys.len() != 1 {
        return Err(format!(
            "the test makes one hypercall Xenia lacks, the log has {} ENOSYS lines: {enosys:?}",
            enosys.len()
        ));
    }
    Ok(())
}

/// dom0test `linux_abi_domu`: testguest `linux_abi_domu` as a domU (what Xen keeps from a
/// domU); its checks are printed by dom0 as `linux_abi d<N>: ` lines.
pub fn domu(ctx: &Context) -> Result<(), String> {
    dom0test(
        ctx,
        "linux_abi_domu",
        std::time::Duration::from_secs(120),
        &["linux_abi d"],
        false,
    )
}
