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
