//! Xen's x86-64 PV guest mode (issue 18, DESIGN.md §12): the Xen PV test kernel
//! (`tests/guests/xenpv`, `/boot/xenpv.elf` in the scenarios' initrd) started with `xl
//! create`, its kernel in ring 3 with Xen's selectors, hypercalls by `syscall`, a user-mode
//! page table of its own and Xen's bounce frames. The kernel prints `PASS <check>` or
//! `FAIL <check>: <why>`; the scenarios require every check below to pass and none to fail,
//! and that what the hypervisor must refuse by crashing the domain (a return to user mode
//! without a user page table, as Xen) crashes it and nothing else; an `iret` frame the CPU
//! would refuse is a #GP delivered to the kernel (`iret_refused_frame_gp`), as on Xen.

use std::time::Duration;

use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::{DEFAULT_TIMEOUT as T, Qemu};
use crate::runner::Context;
use crate::scenarios::blkif::{created_id, gone};
use crate::scenarios::xl::{self, PROMPT};
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};

/// The checks the test kernel makes, in its order.
const CHECKS: &[&str] = &[
    "shared_info_mapped",
    "hypercall_by_syscall",
    "hypercall_page",
    "trap_table_callbacks_stack",
    "kernel_exception_frame",
    "gs_kernel_base",
    "hostile_user_l4_refused",
    "new_user_baseptr",
    "base_switch_checked",
    "user_syscall_frame",
    "user_syscall_is_not_a_hypercall",
    "gs_swapped_on_mode_changes",
    "gs_bases_by_rdmsr",
    "gs_user_base_after_selector_load",
    "user_access_to_kernel_faults",
    "user_exception_frame",
    "event_callback_frame",
    "fpu_taskswitch",
    "hostile_arguments_refused",
    "hostile_debugregs_refused",
    "iret_refused_frame_gp",
    "own_gdt_in_force",
    "iret_to_own_kernel_cs",
    "failsafe_callback",
    "hostile_descriptors_refused",
    "own_ldt",
    "syscall_round_trips",
    "registers_kept_across_system_call",
    "user_syscall_23_bounced",
    "iret_rcx_r11_unless_in_syscall",
    "unmasked_round_trips",
    "bounce_follows_stack_and_callback",
    "stack_switch_hypervisor_refused",
    "iret_user_refused_frame_gp",
    "iret_delivers_pending_event",
    "user_table_changes_seen",
    "base_switch_list_remapped",
    "base_switch_second_item_through_new_table",
    "base_switch_refs_balanced",
    "user_base_refs_balanced",
    "user_l4_rewritten_while_plain",
];

/// The checks the test kernel adds when its domain has a second vCPU (`vcpus=2`).
const SMP_CHECKS: &[&str] = &[
    "smp_hostile_contexts_refused",
    "smp_initialise_up",
    "smp_vcpu1_runs",
    "smp_vcpu1_events",
    "smp_event_binding",
    "smp_vcpu1_down",
    "smp_base_switch_list_remapped_by_vcpu1",
];

/// How long the test kernel may take from `xl create` to `xenpv: done`.
const RUN: Duration = Duration::from_secs(60);

fn boot(ctx: &Context) -> Result<Qemu, String> {
    boot_on(ctx, 1)
}

fn boot_on(ctx: &Context, cpus: u32) -> Result<Qemu, String> {
    boot_with(ctx, cpus, DEFAULT_HV_OPTIONS)
}

/// [`boot_on`] with the hypervisor's options `options`.
fn boot_with(ctx: &Context, cpus: u32, options: &str) -> Result<Qemu, String> {
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .cpus(cpus)
        .memory_mib(512)
        .hv_options(options)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok(vm)
}

/// `xl create` of the test kernel as `name` with `cmdline`; returns its id once it printed
/// `xenpv: done`.
fn create(vm: &mut Qemu, name: &str, cmdline: &str) -> Result<u32, String> {
    create_with(vm, name, cmdline, 1)
}

/// [`create`] with `vcpus` vCPUs.
fn create_with(vm: &mut Qemu, name: &str, cmdline: &str, vcpus: u32) -> Result<u32, String> {
    let out = xl::run(
        vm,
        &format!(
            "xl create /etc/xen/hello.cfg 'name=\"{name}\"' 'kernel=\"/boot/xenpv.elf\"' \
             memory=32 vcpus={vcpus} 'cmdline=\"{cmdline}\"'"
        ),
    )?;
    let id = created_id(&out, name)?;
    // The kernel may finish while `xl create` is still printing: look at the whole log.
    let done = format!("(d{id}) xenpv: done");
    vm.wait_until(&done, RUN, |log, cursor| {
        log.contains(&done).then_some(((), cursor))
    })?;
    Ok(id)
}

/// The domain's `PASS`/`FAIL` lines: every check of [`CHECKS`] passed, none failed.
fn verdict(vm: &Qemu, id: u32) -> Result<(), String> {
    verdict_of(vm, id, &[CHECKS])
}

/// The domain's `PASS`/`FAIL` lines: every check of `lists` passed, none failed.
fn verdict_of(vm: &Qemu, id: u32, lists: &[&[&str]]) -> Result<(), String> {
    let log = vm.serial_log();
    let prefix = format!("(d{id}) ");
    // A line of the kernel's may follow dom0's prompt on the same serial line.
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find(&prefix).map(|i| &l[i + prefix.len()..]))
        .collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    let missing: Vec<&&str> = lists
        .iter()
        .flat_map(|l| l.iter())
        .filter(|c| !lines.contains(&format!("PASS {c}").as_str()))
        .collect();
    if !failed.is_empty() || !missing.is_empty() {
        return Err(format!(
            "failed: {failed:?}; not passed: {missing:?}; the kernel's lines: {lines:#?}"
        ));
    }
    Ok(())
}

/// The test kernel's checks all pass, it powers off, and its domain goes away.
pub fn guest_mode(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    all_checks(&mut vm, "")
}

/// Runs the test kernel on `vm`: every check of [`CHECKS`] passes, it powers off and its
/// domain goes away (`how`: what the summary line adds).
fn all_checks(vm: &mut Qemu, how: &str) -> Result<(), String> {
    let id = create(vm, "xenpv", "")?;
    verdict(vm, id)?;
    gone(vm, "xenpv")?;
    println!(
        "  all {} checks passed{how}; the domain powered off",
        CHECKS.len()
    );
    Ok(())
}

/// The test kernel's checks all pass on the trap path alone (`xenpv_fastpath=0`: the Rust
/// short ways of `guest::fast_pv` and the ordinary path take every system call and `iret`,
/// which the entry stub takes otherwise), under the hypervisor built with debug assertions
/// (`xenia-checked.elf`), whose short ways check themselves against a walk and the vCPU.
pub fn guest_mode_trap_path(ctx: &Context) -> Result<(), String> {
    let checked = ctx
        .workspace()
        .require_artifact(crate::workspace::CHECKED_HYPERVISOR_ARTIFACT)?;
    ctx.set_default_hypervisor(&checked);
    let mut vm = boot_with(ctx, 1, &format!("{DEFAULT_HV_OPTIONS} xenpv_fastpath=0"))?;
    const OFF: &str =
        "xenpv_fastpath=0: Xen PV system calls and iret hypercalls take the trap path";
    if !vm.serial_log().contains(OFF) {
        return Err(format!("the hypervisor did not say {OFF:?}"));
    }
    all_checks(&mut vm, " on the trap path")
}

/// Each request the hypervisor answers by crashing the domain does crash it, with a line that
/// says why, after all the other checks passed; the machine and dom0 go on.
pub fn hostile_crashes(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    // The requests Xen answers by crashing the domain (an `iret` frame the CPU refuses is a
    // #GP to the kernel now, one of its checks): a return to user mode without a user
    // table; a system call whose kernel stack became a page table since the last one (the
    // short way's kept translation must not be used: nothing may be written there).
    for (what, why) in [
        (
            "no_user_l4",
            "switching to user mode with no user page table",
        ),
        (
            "syscall_stack_became_pt",
            "cannot write an exception frame at",
        ),
        (
            "syscall_stack_retyped_in_batch",
            "cannot write an exception frame at",
        ),
    ] {
        let name = format!("hostile-{}", what.replace('_', "-"));
        let id = create(&mut vm, &name, &format!("hostile={what}"))?;
        verdict(&vm, id)?;
        // Looked for in the whole log: the crash may come while `xl create` still prints.
        let crashed = format!("domain {id} crashed: ");
        let line = vm.wait_until(&crashed, T, |log, cursor| {
            // Complete lines only: the last one may still be arriving.
            let complete = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
            complete
                .lines()
                .find(|l| l.contains(&crashed))
                .map(|l| (l.to_string(), cursor))
        })?;
        if !line.contains(why) {
            return Err(format!(
                "hostile={what}: crash line {line:?} does not say {why:?}"
            ));
        }
        if vm.serial_log().contains(&format!("(d{id}) FAIL hostile_")) {
            return Err(format!(
                "hostile={what}: the kernel ran on after the request, or its set-up failed"
            ));
        }
        gone(&mut vm, &name)?;
        println!("  hostile={what}: {line}");
    }
    let list = xl::run(&mut vm, "xl list")?;
    if !list.contains("Domain-0") {
        return Err(format!("dom0 is not listed after the crashes:\n{list}"));
    }
    Ok(())
}

/// A Xen PV domain with two vCPUs on a two-pCPU machine: its kernel brings vCPU 1 up with
/// `VCPUOP_initialise` as Linux's `cpu_initialize_context` does (after hostile contexts, each
/// refused), vCPU 1 makes hypercalls and counts its timer's and vCPU 0's IPI events through
/// its own event callback, then takes itself down; every check passes, the domain powers off
/// and goes.
pub fn smp(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_on(ctx, 2)?;
    let id = create_with(&mut vm, "xenpv-smp", "", 2)?;
    verdict_of(&vm, id, &[CHECKS, SMP_CHECKS])?;
    let log = vm.serial_log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("(d{id}) xenpv: vcpu1: ")))
        .unwrap_or("")
        .to_string();
    gone(&mut vm, "xenpv-smp")?;
    println!(
        "  all {} checks passed on two vCPUs; {}",
        CHECKS.len() + SMP_CHECKS.len(),
        line.trim()
    );
    Ok(())
}
