//! dom0's kernel seen from its shell: programs from the initrd run in ring 3 with their
//! arguments, a non-zero exit status and a fault are reported, unknown system calls return
//! -ENOSYS and are logged once per number, privcmd refuses what would touch dom0 itself,
//! evtchn delivers a bound VIRQ, anonymous memory is demand-zero (mapped on first touch,
//! given back exactly at munmap), the clocks are read through the vDSO, every program's memory comes back when it ends, and the line editor edits. The image is
//! the default one with the test program `/bin/probe` added to the initrd.

use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::{DEFAULT_TIMEOUT as T, EXIT_POWEROFF, Qemu};
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, run};
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};

fn boot(ctx: &Context) -> Result<Qemu, String> {
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok(vm)
}

fn expect(out: &str, text: &str, what: &str) -> Result<(), String> {
    if out.contains(text) {
        Ok(())
    } else {
        Err(format!("{what}: expected {text:?} in {out:?}"))
    }
}

/// The shell and the process life cycle.
pub fn programs(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let out = run(&mut vm, "help")?;
    expect(&out, "  probe", "help")?;
    expect(&out, "  xl", "help")?;

    let out = run(&mut vm, "probe args one 'two words'")?;
    expect(&out, "argc=4", "arguments")?;
    expect(&out, "argv[0]=probe", "arguments")?;
    expect(&out, "argv[3]=two words", "arguments")?;

    let out = run(&mut vm, "probe exit 3")?;
    expect(&out, "probe: exited with status 3", "exit status")?;
    let out = run(&mut vm, "probe exit 0")?;
    if out.contains("exited") {
        return Err(format!("a zero exit status was reported: {out:?}"));
    }

    let out = run(&mut vm, "probe fault")?;
    expect(&out, "probe: killed by page fault (vector 14)", "a fault")?;
    expect(&out, "address 0x10", "a fault")?;
    let out = run(&mut vm, "probe ud")?;
    expect(&out, "probe: killed by invalid opcode (vector 6)", "#UD")?;

    let out = run(&mut vm, "probe enosys")?;
    let logged = "system call 500 is not implemented; returning -ENOSYS";
    if out.matches(logged).count() != 1 || out.matches("system call 500 returned -38").count() != 2
    {
        return Err(format!("unknown system call 500 twice: {out:?}"));
    }
    expect(
        &out,
        "system call 1000000 is not implemented",
        "a huge number",
    )?;
    let out = run(&mut vm, "probe enosys")?;
    if out.contains(logged) {
        return Err(format!("system call 500 was logged again: {out:?}"));
    }

    let out = run(&mut vm, "probe privcmd")?;
    expect(
        &out,
        "mmu_update on dom0: -1",
        "privcmd refuses dom0's own page tables (EPERM)",
    )?;
    expect(&out, "xen_version: 0x", "privcmd passes xen_version")?;
    expect(
        &out,
        "write-frame into dom0: -1",
        "privcmd refuses frame copies into dom0",
    )?;

    // /dev/xen/evtchn: a VIRQ bound through the device fires and is read back; a port the
    // descriptor does not hold cannot be notified; unbinding lets a second run bind again.
    for round in 1..=2 {
        let out = run(&mut vm, "probe evtchn")?;
        let port = out
            .lines()
            .find_map(|l| l.strip_prefix("evtchn: VIRQ_TIMER bound to port "))
            .ok_or_else(|| format!("evtchn round {round}: no binding in {out:?}"))?
            .trim()
            .to_string();
        expect(&out, "evtchn: poll returned 1, revents 1", "evtchn poll")?;
        expect(&out, &format!("evtchn: port {port} fired"), "evtchn read")?;
        expect(
            &out,
            "notify on a port not bound here: -22",
            "evtchn notify",
        )?;
        expect(&out, "evtchn: unbind: 0", "evtchn unbind")?;
    }

    // dom0 has 64 MiB; two 36 MiB programs in a row fit only if the first one's memory
    // came back.
    for round in 1..=3 {
        let out = run(&mut vm, "probe mem 36")?;
        expect(&out, "touched 36 MiB", &format!("36 MiB, round {round}"))?;
    }
    // Demand-zero memory: an mmap takes no frame, a touch takes one (and its page tables),
    // munmap gives back exactly those touched, a touch outside every area ends the program.
    // Twice: the second run sees the same free memory, so the first one's came back.
    let mut free_lines = Vec::new();
    for round in 1..=2 {
        let out = run(&mut vm, "probe lazy")?;
        let what = format!("demand paging, round {round}");
        expect(&out, "lazy: mmap of 16 MiB took 0 pages", &what)?;
        expect(&out, "lazy: touching 3 pages took 3 to 6", &what)?;
        expect(
            &out,
            "lazy: an untouched page reads 0, which took 1 to 3",
            &what,
        )?;
        expect(
            &out,
            "lazy: mprotect of an untouched page 0, it reads 0",
            &what,
        )?;
        expect(&out, "lazy: munmap 0 gave back 5 pages", &what)?;
        expect(&out, "probe: killed by page fault (vector 14)", &what)?;
        if out.contains("went through") {
            return Err(format!(
                "{what}: a write to an unmapped area went through: {out:?}"
            ));
        }
        free_lines.push(run(&mut vm, "probe free")?);
    }
    if free_lines[0] != free_lines[1] {
        return Err(format!(
            "memory leaked by a demand-paged program: {free_lines:?}"
        ));
    }
    let out = run(&mut vm, "probe lazy-none")?;
    expect(
        &out,
        "probe: killed by page fault (vector 14)",
        "a PROT_NONE page",
    )?;
    if out.contains("it read") {
        return Err(format!("a PROT_NONE page was readable: {out:?}"));
    }

    // A program's read-only pages are the initrd's frames, shared: a page made writable is
    // written through a copy (a fork sees the copy), and an unmapped one's frame never goes
    // to the pool — where the 36 MiB program after it would take it and have it cleared,
    // and the next run would find its own read-only data changed.
    let free_before = run(&mut vm, "probe free")?;
    for round in 1..=2 {
        let out = run(&mut vm, "probe shared")?;
        let what = format!("shared program pages, round {round}");
        for line in [
            "shared: rodata intact: yes",
            "shared: mprotect of a rodata page writable: 0",
            "shared: a child saw the written page: yes",
            "shared: munmap of a rodata page: 0",
        ] {
            expect(&out, line, &what)?;
        }
        let out = run(&mut vm, "probe mem 36")?;
        expect(&out, "touched 36 MiB", &what)?;
    }
    let free_after = run(&mut vm, "probe free")?;
    if free_before != free_after {
        return Err(format!(
            "memory leaked by shared program pages: {free_before:?} then {free_after:?}"
        ));
    }

    // The vDSO: musl's clock_gettime reads the hypervisor's clock in ring 3, agrees with the
    // system call and is faster than it.
    let out = run(&mut vm, "probe vdso")?;
    expect(&out, "vdso: AT_SYSINFO_EHDR 0x7fff00000000", "the vDSO")?;
    expect(&out, "vdso: monotonic in order: true", "the vDSO")?;
    expect(&out, "vdso: realtime agrees: true", "the vDSO")?;
    expect(&out, "vdso: faster than the system call: true", "the vDSO")?;

    let out = run(&mut vm, "probe stack 2000")?;
    expect(&out, "stack sum", "a 2 MiB stack")?;
    let out = run(&mut vm, "probe mem 200")?;
    expect(
        &out,
        "probe: exited with status 134",
        "more memory than dom0 has",
    )?;

    let out = run(&mut vm, "nosuchprogram")?;
    expect(
        &out,
        "nosuchprogram: command not found",
        "an unknown command",
    )?;

    // Line editing: backspace, Ctrl-U, Ctrl-C.
    let out = run(&mut vm, "probe argz\x7fs x")?;
    expect(&out, "argv[2]=x", "backspace")?;
    expect(&out, "argv[1]=args", "backspace")?;
    let out = run(&mut vm, "garbage\x15probe args y")?;
    expect(&out, "argv[2]=y", "Ctrl-U")?;
    vm.send("probe exit 9\x03")?;
    vm.wait_for(PROMPT, T)?;
    let out = run(&mut vm, "probe args z")?;
    if out.contains("status 9") {
        return Err(format!("Ctrl-C did not abandon the line: {out:?}"));
    }
    expect(&out, "argv[2]=z", "after Ctrl-C")?;
    // `poweroff` shuts dom0 down, and the hypervisor the machine.
    vm.send("poweroff\r")?;
    vm.expect_exit(EXIT_POWEROFF, T)
}
