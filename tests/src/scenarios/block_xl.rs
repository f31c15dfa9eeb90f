//! Disks through xl at dom0's prompt (issue 15): `disk=` at create, the sharing refusal,
//! `block-list`/`-attach`/`-detach`, `list -l`, the nodes going at destroy and coming back
//! at a restart. The target is an image file made at the prompt; with no block backend
//! in this dom0 yet, the disks stay in `XenbusStateInitialising` (state 1) and a
//! `block-detach` without `-f` times out as libxl's does.

use std::time::Duration;

use crate::machine::Qemu;
use crate::runner::Context;

use super::operator::{Initrd, boot_with};
use super::xl::run;

/// Lines of the hypervisor's and dom0's kernel's logs, and guests' console lines, which
/// share the serial line with xl.
fn log_line(line: &str) -> bool {
    let domain_n = line
        .strip_prefix("domain ")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    domain_n
        || line.starts_with("(XEN)")
        || line.starts_with("(d")
        || line.starts_with("dom0: ")
        || line.starts_with("memory: ")
}

/// `line` at the prompt: what it printed, without the echoed command and others' logs.
fn shell(vm: &mut Qemu, line: &str) -> Result<String, String> {
    let raw = run(vm, line)?.replace('\r', "");
    let mut lines = raw.split_inclusive('\n');
    lines.next();
    Ok(lines
        .filter(|l| !log_line(l.trim_end_matches('\n')))
        .collect())
}

/// `want` must be in what `line` printed.
fn expect(vm: &mut Qemu, line: &str, want: &str) -> Result<String, String> {
    let out = shell(vm, line)?;
    if out.contains(want) {
        Ok(out)
    } else {
        Err(format!("`{line}` printed\n{out}\nwhich lacks\n{want}"))
    }
}

/// The id in `Domain <name> created with id <n>`.
fn created(vm: &mut Qemu, line: &str) -> Result<u32, String> {
    let out = shell(vm, line)?;
    out.lines()
        .find_map(|l| l.split_once(" created with id ").map(|(_, id)| id.trim()))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("`{line}` printed {out:?}"))
}

const HEADER: &str = "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n";
const FAILED: &str = "xl: exited with status 1\n";

fn create_line(name: &str, disk: &str) -> String {
    format!("xl create /etc/xen/echo.cfg 'name=\"{name}\"' memory=16 'disk=[\"{disk}\"]'")
}

/// `block_xl_without_backend`.
pub fn without_backend(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with(ctx, "", Initrd::Test)?;
    let r = steps(&mut vm);
    vm.kill();
    r
}

fn steps(vm: &mut Qemu) -> Result<(), String> {
    expect(
        vm,
        "sh -c 'mkdir -p /srv && printf disk > /srv/d.img && echo made'",
        "made",
    )?;
    // Xen's example, as Xen's `check-xl-disk-parse` expects it.
    let out = shell(
        vm,
        "xl -N block-attach 0 format=raw vdev=hda access=rw target=/dev/vg/guest-volume",
    )?;
    let want = "disk: {\n    \"pdev_path\": \"/dev/vg/guest-volume\",\n    \"vdev\": \"hda\",\n    \
                \"format\": \"raw\",\n    \"readwrite\": 1\n}\n\n";
    if out != want {
        return Err(format!(
            "`xl -N block-attach` printed {out:?}, not {want:?}"
        ));
    }
    // Bad specs and targets, in Xen's words, before anything is built.
    expect(
        vm,
        &create_line("bq", "/srv/d.img,qcow9,xvda"),
        "config parsing error in disk specification: unknown value for format: near `qcow9' \
         in `/srv/d.img,qcow9,xvda'",
    )?;
    expect(
        vm,
        &create_line("bq", "/srv/d.img,qcow2,xvda"),
        "format=qcow2 is not supported by Xenia",
    )?;
    expect(
        vm,
        &create_line("bm", "/dev/nope,raw,xvda,rw"),
        "cannot create \"bm\": disk xvda: /dev/nope does not exist.\n",
    )?;

    // A domain with the image writable; nothing serves it, so it stays Initialising.
    let a = created(vm, &create_line("ba", "/srv/d.img,raw,xvda,rw"))?;
    let out = shell(vm, "xl block-list ba")?;
    let row = format!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}\n",
        51712,
        0,
        a,
        1,
        -1,
        -1,
        format!("/local/domain/0/backend/vbd/{a}/51712")
    );
    if out != format!("{HEADER}{row}") {
        return Err(format!("`xl block-list ba` printed {out:?}"));
    }
    let out = expect(vm, "xl list -l ba", "\"pdev_path\": \"/srv/d.img\"")?;
    for want in [
        "\"vdev\": \"xvda\"",
        "\"backend\": \"phy\"",
        "\"readwrite\": 1",
    ] {
        if !out.contains(want) {
            return Err(format!("`xl list -l ba` lacks {want}: {out}"));
        }
    }

    // The same image to another domain, writable or not: Xen's block script's words.
    expect(
        vm,
        &create_line("bb", "/srv/d.img,raw,xvda,rw"),
        "Device /srv/d.img is mounted in a guest domain,\nand so cannot be mounted now.",
    )?;
    expect(
        vm,
        &create_line("bc", "/srv/d.img,raw,xvda,ro"),
        "Device /srv/d.img is mounted read-write in a guest domain,\nand so cannot be mounted \
         read-only now.",
    )?;
    // ... and to the same domain a second time.
    let out = expect(
        vm,
        "xl block-attach ba /srv/d.img,raw,xvdb,ro",
        "libxl_device_disk_add failed.\n",
    )?;
    if !out.ends_with(FAILED) {
        return Err(format!("`xl block-attach` twice: {out:?}"));
    }
    // The refused domains are gone again.
    let listed = shell(vm, "xl list")?;
    if listed
        .lines()
        .any(|l| l.starts_with("bb ") || l.starts_with("bc "))
    {
        return Err(format!("a refused domain is left: {listed}"));
    }

    // Detach: no backend closes, so xl gives up after libxl's 10 s; -f takes it anyway.
    let out = expect(
        vm,
        "xl block-detach ba xvda",
        "libxl_device_disk_safe_remove failed.\n",
    )?;
    if !out.ends_with(FAILED) {
        return Err(format!("`xl block-detach ba xvda`: {out:?}"));
    }
    expect(
        vm,
        "xl block-list ba",
        &format!("{:<5} {:<3} {:<6} {:<5}", 51712, 0, a, 1),
    )?;
    let out = shell(vm, "xl block-detach -f ba xvda")?;
    if !out.is_empty() {
        return Err(format!("`xl block-detach -f ba xvda` printed {out:?}"));
    }
    let out = shell(vm, "xl block-list ba")?;
    if out != HEADER {
        return Err(format!(
            "after the detach `xl block-list ba` printed {out:?}"
        ));
    }
    expect(
        vm,
        "xl block-detach ba xvda",
        "Error: Device xvda not connected.\n",
    )?;

    // Read-only now, and shared read-only with another domain.
    let out = shell(vm, "xl block-attach ba /srv/d.img,raw,xvdb,ro")?;
    if !out.is_empty() {
        return Err(format!("`xl block-attach ba ...,ro` printed {out:?}"));
    }
    expect(
        vm,
        "xl block-list ba",
        &format!("{:<5} {:<3} {:<6} {:<5}", 51728, 0, a, 1),
    )?;
    let c = created(vm, &create_line("bc", "/srv/d.img,raw,xvda,ro"))?;

    // Destroyed, their backends go (the dom0 kernel removes them), so a writer is let in.
    shell(vm, "xl destroy ba")?;
    shell(vm, &format!("xl destroy {c}"))?;
    let b = created(vm, &create_line("bb", "/srv/d.img,raw,xvda,rw"))?;

    // Rebooted, the domain gets its disk again from its configuration, and keeps it.
    // The kernel says so on the console, maybe before the prompt is back.
    let said = run(vm, "xl reboot bb")?.replace('\r', "");
    let wanted = "\"bb\" restarted as domain";
    let line = match said.lines().find(|l| l.contains(wanted)) {
        Some(l) => l.to_string(),
        None => vm.wait_for_line(wanted, Duration::from_secs(30))?,
    };
    let b2: u32 = line
        .rsplit(' ')
        .next()
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("no id in {line:?}"))?;
    if b2 == b {
        return Err(format!("restarted as the same id {b}"));
    }
    expect(
        vm,
        "xl block-list bb",
        &format!(
            "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} /local/domain/0/backend/vbd/{b2}/51712",
            51712, 0, b2, 1, -1, -1
        ),
    )?;
    expect(
        vm,
        &create_line("bd", "/srv/d.img,raw,xvda,ro"),
        "Device /srv/d.img is mounted read-write in a guest domain,",
    )?;
    Ok(())
}
