//! xenstore, served inside dom0's kernel (DESIGN §11; the slice issue 12's `xl vcpu-set`
//! needed). The store's logic is host-tested (`xenia-xenstore`); these scenarios check it
//! on the machine, against real rings.

use crate::machine::DEFAULT_TIMEOUT as T;
use crate::runner::Context;

use super::smp::{await_vcpus, boot_busy_4};
use super::xl;

/// The id `xl create` printed for `name`.
fn created_id(out: &str, name: &str) -> Result<u32, String> {
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("Domain {name} created with id "))
        })
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("`xl create` of {name} failed:\n{out}"))
}

/// A hostile domU (testguest `xenstore`, made by `xl create` with the test initrd's
/// `/boot/testguest.elf`) next to an echo domain with two vCPUs: it reads what it may and is
/// refused (`EACCES`) what it may not, including the other domain's name; its quotas hold
/// (128 watches, 2048-byte values); malformed messages (a header announcing 5000 bytes, an
/// unknown type, a path without NUL, a path too long, a watch without token) get Xen's
/// error strings and the store answers properly after each; then it breaks its ring's
/// indexes and the store flags the ring broken. dom0 keeps serving the other domain: `xl
/// vcpu-set other 1` still takes its vCPU 1 down. No hypervisor failure, the frame table
/// consistent at the end.
pub fn hostile_domu(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    let out = xl::run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'name=\"other\"' vcpus=2",
    )?;
    created_id(&out, "other")?;
    await_vcpus(&mut vm, "other", &[true, true])?;
    let out = xl::run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'name=\"hostile\"' 'kernel=\"/boot/testguest.elf\"' \
         'cmdline=\"test=xenstore\"'",
    )?;
    let id = created_id(&out, "hostile")?;
    let prefix = format!("(d{id}) ");
    let result = vm.wait_for_line_starting(&format!("{prefix}Test result: "), T)?;
    let log = vm.serial_log();
    let checks: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}check ")))
        .collect();
    let failed: Vec<&&str> = checks.iter().filter(|l| !l.ends_with(": ok")).collect();
    if result != format!("{prefix}Test result: SUCCESS") || !failed.is_empty() {
        return Err(format!("{result}; failed checks: {failed:?}"));
    }
    if checks.len() < 20 {
        return Err(format!("only {} check lines: {checks:?}", checks.len()));
    }
    if !log.contains(&format!(
        "dom0: xenstore: domain {id} broke its ring (its request producer index is more than a ring ahead)"
    )) {
        return Err("dom0 did not report the broken ring".into());
    }
    // The other domain is still served.
    let out = xl::run(&mut vm, "xl vcpu-set other 1")?;
    if out.contains("xl:") {
        return Err(format!("`xl vcpu-set other 1` failed:\n{out}"));
    }
    await_vcpus(&mut vm, "other", &[true, false])?;
    xl::run(&mut vm, "xl destroy other")?;
    // hello.cfg destroys the test guest when it powers off.
    let list = xl::run(&mut vm, "xl list")?;
    if list.contains("hostile") || list.contains("other") {
        return Err(format!("domains left after the test:\n{list}"));
    }
    let out = xl::run(&mut vm, "probe frame-check")?;
    if !out.contains("frame table check: 0") {
        return Err(format!("frame table check: {out:?}"));
    }
    vm.kill();
    Ok(())
}

/// The check lines and result of test guest `id` (made by `xl create`): an error unless it
/// succeeded with at least `min_checks` checks.
fn guest_passed(
    vm: &mut crate::machine::Qemu,
    id: u32,
    min_checks: usize,
) -> Result<String, String> {
    let prefix = format!("(d{id}) ");
    let result = vm.wait_for_line_starting(&format!("{prefix}Test result: "), T)?;
    let log = vm.serial_log();
    let checks: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}check ")))
        .collect();
    let failed: Vec<&&str> = checks.iter().filter(|l| !l.ends_with(": ok")).collect();
    if result != format!("{prefix}Test result: SUCCESS") || !failed.is_empty() {
        return Err(format!("{result}; failed checks: {failed:?}"));
    }
    if checks.len() < min_checks {
        return Err(format!("only {} check lines: {checks:?}", checks.len()));
    }
    Ok(log)
}

/// What `xl create` of the test guest with `cmdline` as `name` printed: its id.
fn create_testguest(
    vm: &mut crate::machine::Qemu,
    name: &str,
    cmdline: &str,
) -> Result<u32, String> {
    let out = xl::run(
        vm,
        &format!(
            "xl create /etc/xen/hello.cfg 'name=\"{name}\"' 'kernel=\"/boot/testguest.elf\"' \
             'cmdline=\"{cmdline}\"'"
        ),
    )?;
    created_id(&out, name)
}

/// Every message type from a domU (testguest `xenstore role=messages`, next to an echo
/// domain `other` given as its peer): read, write, mkdir, rm, directory and its parts,
/// get/set perms, watch with its events, unwatch, transactions (changes seen inside only,
/// events at commit, abort, two conflicting commits: the second `EAGAIN`, a commit after an
/// outside write `EAGAIN`, ten open at most), get_domain_path, reset_watches, introduce,
/// release and is_domain_introduced refused, an unknown type `ENOSYS`; the peer's nodes
/// refused for reading and writing (`EACCES`, a missing one too); then the node quota
/// filled until `ENOSPC`. The other domain is unaffected (`xl vcpu-set other 1` still
/// takes its vCPU down, dom0 still writes its nodes), and when the test guest is gone its
/// home and `/vm/<uuid>` are gone too.
pub fn messages(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    let out = xl::run(
        &mut vm,
        "xl create /etc/xen/hello.cfg 'name=\"other\"' vcpus=2",
    )?;
    let other = created_id(&out, "other")?;
    await_vcpus(&mut vm, "other", &[true, true])?;
    let started = std::time::Instant::now();
    let id = create_testguest(
        &mut vm,
        "msgs",
        &format!("test=xenstore role=messages peer={other}"),
    )?;
    let vm_dir = xl::run(&mut vm, &format!("xenstore-read /local/domain/{id}/vm"))?;
    // The test guest's console lines share the serial line with the command's output.
    let vm_dir = vm_dir
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/vm/"))
        .unwrap_or("")
        .to_string();
    if !vm_dir.starts_with("/vm/") {
        return Err(format!("no vm node for domain {id}: {vm_dir:?}"));
    }
    guest_passed(&mut vm, id, 40)?;
    println!(
        "xenstore_messages: the whole test took {} ms (wall, no flood)",
        started.elapsed().as_millis()
    );
    // The other domain is served as before.
    let out = xl::run(&mut vm, "xl vcpu-set other 1")?;
    if out.contains("xl:") {
        return Err(format!("`xl vcpu-set other 1` failed:\n{out}"));
    }
    await_vcpus(&mut vm, "other", &[true, false])?;
    // hello.cfg destroys the test guest when it powers off: its nodes go with it.
    let list = xl::run(&mut vm, "xl list")?;
    if list.contains("msgs") {
        return Err(format!("the test guest is still there:\n{list}"));
    }
    let out = xl::run(&mut vm, "xenstore-list /local/domain")?;
    if out.lines().any(|l| l.trim() == id.to_string()) {
        return Err(format!("/local/domain/{id} is left:\n{out}"));
    }
    let out = xl::run(
        &mut vm,
        &format!("sh -c 'xenstore-exists {vm_dir} || echo gone'"),
    )?;
    if !out.contains("gone") {
        return Err(format!("{vm_dir} is left: {out:?}"));
    }
    xl::run(&mut vm, "xl destroy other")?;
    let out = xl::run(&mut vm, "probe frame-check")?;
    if !out.contains("frame table check: 0") {
        return Err(format!("frame table check: {out:?}"));
    }
    vm.kill();
    Ok(())
}

/// A domU that keeps its ring full of requests (testguest `xenstore role=flood`) does not
/// starve the others: while it floods, dom0's `xenstore-read` answers and another domU
/// runs the whole `role=messages` test (every request answered within the client's 5 s);
/// the flood itself is served too, and stops when dom0 writes its `data/stop`.
pub fn flood(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    let flooder = create_testguest(&mut vm, "flooder", "test=xenstore role=flood")?;
    // It may have started before `xl create` printed its id.
    let line = format!("(d{flooder}) xenstore: flooding");
    vm.wait_until(&line, T, |log, cursor| {
        log.contains(&line).then_some(((), cursor))
    })?;
    let started = std::time::Instant::now();
    let out = xl::run(
        &mut vm,
        &format!("xenstore-read /local/domain/{flooder}/name"),
    )?;
    if !out.contains("flooder") {
        return Err(format!("dom0's xenstore-read during the flood: {out:?}"));
    }
    let dom0_ms = started.elapsed().as_millis();
    let started = std::time::Instant::now();
    let id = create_testguest(
        &mut vm,
        "msgs",
        &format!("test=xenstore role=messages peer={flooder}"),
    )?;
    guest_passed(&mut vm, id, 40)?;
    let other_ms = started.elapsed().as_millis();
    // The flood was still going on: stop it and see it was served.
    let out = xl::run(
        &mut vm,
        &format!("xenstore-write /local/domain/{flooder}/data/stop 1"),
    )?;
    if out.contains("xenstore-write:") {
        return Err(format!("stop: {out}"));
    }
    let log = guest_passed(&mut vm, flooder, 2)?;
    let served = log
        .lines()
        .find(|l| l.contains("flood requests answered"))
        .unwrap_or("")
        .to_string();
    println!(
        "xenstore_flood: dom0's xenstore-read {dom0_ms} ms, another domU's whole test {other_ms} ms \
         (wall) during the flood; {served}"
    );
    let list = xl::run(&mut vm, "xl list")?;
    if list.contains("flooder") || list.contains("msgs") {
        return Err(format!("domains left:\n{list}"));
    }
    vm.kill();
    Ok(())
}

/// The `xenstore-*` commands at dom0's prompt, on the nodes the toolstack writes for a
/// domain: `xenstore-ls -p` shows its home as Xen's does (`name = "..."`, one space per
/// level, permissions after dots), `xenstore-read`, `-write`, `-list`, `-exists`, `-rm`,
/// `-chmod` and `-watch` behave as Xen's (messages, exit codes), and destroying the domain
/// removes its home, its `/vm/<uuid>` and its backends' directories.
pub fn commands(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_busy_4(ctx)?;
    let out = xl::run(&mut vm, "xl create /etc/xen/hello.cfg 'name=\"sample\"'")?;
    let id = created_id(&out, "sample")?;
    let home = format!("/local/domain/{id}");
    let expect = |out: &str, what: &str, want: &str| -> Result<(), String> {
        if out.contains(want) {
            Ok(())
        } else {
            Err(format!("{what}: no {want:?} in {out:?}"))
        }
    };
    let ls = xl::run(&mut vm, &format!("xenstore-ls -p {home}"))?;
    for want in [
        "name = \"sample\"",
        &format!("domid = \"{id}\""),
        "memory = \"\"",
        " target = \"",
        " static-max = \"",
        "vm = \"/vm/",
        "control = \"\"",
        " platform-feature-xs_reset_watches = \"1\"",
        "data = \"\"",
        "console = \"\"",
        " ring-ref = \"",
        &format!("(n0,r{id})"),
        &format!("(n{id})"),
    ] {
        expect(&ls, "xenstore-ls -p", want)?;
    }
    let vm_dir = xl::run(&mut vm, &format!("xenstore-read {home}/vm"))?;
    // The test guest's console lines share the serial line with the command's output.
    let vm_dir = vm_dir
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/vm/"))
        .unwrap_or("")
        .to_string();
    let out = xl::run(
        &mut vm,
        &format!("xenstore-read {vm_dir}/name {vm_dir}/uuid"),
    )?;
    expect(&out, "xenstore-read of /vm", "sample")?;
    expect(&out, "xenstore-read of /vm", &vm_dir[4..])?;
    // Write, read (prefixed), list, chmod, rm, exists.
    xl::run(&mut vm, "xenstore-write /tool/t/a 1 /tool/t/b 'two words'")?;
    let out = xl::run(&mut vm, "xenstore-read -p /tool/t/a /tool/t/b")?;
    expect(&out, "xenstore-read -p", "/tool/t/a: 1")?;
    expect(&out, "xenstore-read -p", "/tool/t/b: two words")?;
    let out = xl::run(&mut vm, "xenstore-list /tool/t")?;
    expect(&out, "xenstore-list", "a\nb\n")?;
    xl::run(&mut vm, &format!("xenstore-chmod /tool/t/a n0 r{id}"))?;
    let out = xl::run(&mut vm, "xenstore-ls -p /tool")?;
    expect(&out, "xenstore-ls -p after chmod", &format!("(n0,r{id})"))?;
    let out = xl::run(&mut vm, "sh -c 'xenstore-read /tool/nope; echo rc=$?'")?;
    expect(
        &out,
        "xenstore-read of a missing node",
        "xenstore-read: couldn't read path /tool/nope",
    )?;
    expect(&out, "xenstore-read's exit code", "rc=1")?;
    let out = xl::run(
        &mut vm,
        "sh -c 'xenstore-rm /tool/t/a; xenstore-exists /tool/t/a; echo rc=$?'",
    )?;
    expect(&out, "xenstore-exists after xenstore-rm", "rc=1")?;
    let out = xl::run(&mut vm, "xenstore-watch -n 1 /tool/t")?;
    expect(&out, "xenstore-watch", "/tool/t")?;
    let out = xl::run(&mut vm, "sh -c 'xenstore-ls /nope; echo rc=$?'")?;
    expect(
        &out,
        "xenstore-ls of a missing path",
        "xenstore-ls: xs_directory (/nope): No such file or directory",
    )?;
    // Destroy: everything of the domain goes.
    xl::run(
        &mut vm,
        &format!("xenstore-write /local/domain/0/backend/vbd/{id}/51712/state 4"),
    )?;
    xl::run(&mut vm, "xl destroy sample")?;
    let out = xl::run(
        &mut vm,
        &format!(
            "sh -c 'xenstore-exists {home} || xenstore-exists {vm_dir} || \
             xenstore-exists /local/domain/0/backend/vbd/{id} || echo all-gone'"
        ),
    )?;
    expect(&out, "after xl destroy", "all-gone")?;
    vm.kill();
    Ok(())
}
