//! Debian's stock Linux kernel as a domU (issue 18), at the `dom0# ` prompt of the default
//! image. `cargo xtask build` fetches the kernel package (`linux-image-*-cloud-amd64-unsigned`)
//! and puts the kernel, its initramfs and `/etc/xen/debian.cfg` into dom0's initrd; without the
//! package these scenarios pass with a `skipped:` note saying why (the runner has no skip
//! status).
//!
//! Xenia has no Xen PV guest mode yet, so what is checked is the recognition: `xl create`
//! names the kernel, its release and the features it requires that Xenia lacks, and leaves
//! nothing behind.

use std::fs;

use super::xl::{boot, parse_list, run};
use crate::INITRD_ARTIFACT;
use crate::runner::Context;

/// The configuration `cargo xtask build` adds when it has the kernel.
const CONFIG: &str = "/etc/xen/debian.cfg";

/// `Some(reason)` when the default initrd has no Debian kernel (the package could not be
/// fetched): the scenario is skipped.
fn skip_reason(ctx: &Context) -> Result<Option<String>, String> {
    let path = ctx.workspace().require_artifact(INITRD_ARTIFACT)?;
    let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A newc entry's name follows its header, without the leading `/`.
    let needle = b"etc/xen/debian.cfg\0";
    if bytes.windows(needle.len()).any(|w| w == needle) {
        Ok(None)
    } else {
        Ok(Some(format!(
            "skipped: {} has no {CONFIG}: `cargo xtask build` could not fetch Debian's \
             linux-image-*-cloud-amd64-unsigned (its output says why; it needs apt and \
             Debian's archive)",
            path.display()
        )))
    }
}

/// `xl create /etc/xen/debian.cfg` refuses the kernel, naming it (Linux and Debian's release),
/// saying it is a Xen PV kernel and which features it requires that Xenia lacks; no domain is
/// left behind and dom0's free memory is what it was.
pub fn kernel_recognised(ctx: &Context) -> Result<(), String> {
    if let Some(reason) = skip_reason(ctx)? {
        println!("scenario {}: {reason}", ctx.name());
        ctx.note(reason);
        return Ok(());
    }
    let mut vm = boot(ctx)?;
    let config = run(&mut vm, &format!("cat {CONFIG}"))?;
    for line in [
        "type = \"pv\"",
        "kernel = \"/boot/debian/vmlinuz\"",
        "ramdisk = \"/boot/debian/initrd.img\"",
        "extra = \"console=hvc0\"",
        "memory = 256",
        "name = \"debian\"",
    ] {
        if !config.contains(line) {
            return Err(format!("{CONFIG} lacks `{line}`: {config:?}"));
        }
    }
    let before = parse_list(&run(&mut vm, "xl list")?)?;
    let free_before = free_memory(&run(&mut vm, "xl info")?)?;
    let out = run(&mut vm, &format!("xl create {CONFIG}"))?;
    let refusal = out
        .lines()
        .find(|l| l.contains("is a Xen PV kernel"))
        .ok_or_else(|| format!("no Xen PV refusal in {out:?}"))?;
    let expected = "cannot create \"debian\": /boot/debian/vmlinuz is a Xen PV kernel (Linux ";
    let at = refusal
        .find(expected)
        .ok_or_else(|| format!("the refusal lacks {expected:?}: {refusal:?}"))?;
    // The release, as Debian names it: `6.1.0-48-cloud-amd64`.
    let release = refusal[at + expected.len()..]
        .split([',', ')'])
        .next()
        .unwrap_or_default();
    if !release.ends_with("-cloud-amd64") || !release.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "the refusal does not name Debian's release: {release:?} in {refusal:?}"
        ));
    }
    for part in [
        "requires features Xenia does not provide: writable_page_tables",
        "the Xen PV guest mode",
        "not implemented yet",
    ] {
        if !refusal.contains(part) {
            return Err(format!("the refusal lacks {part:?}: {refusal:?}"));
        }
    }
    if !out.contains("xl: exited with status 1") {
        return Err(format!("xl create did not fail: {out:?}"));
    }
    let after = parse_list(&run(&mut vm, "xl list")?)?;
    if after != before || after.len() != 1 {
        return Err(format!("a domain was left behind: {before:?} -> {after:?}"));
    }
    let free_after = free_memory(&run(&mut vm, "xl info")?)?;
    if free_after != free_before {
        return Err(format!(
            "free memory went from {free_before} to {free_after} MiB"
        ));
    }
    ctx.note(format!("refused: {refusal}"));
    vm.kill();
    Ok(())
}

/// `free_memory` of `xl info`'s output, in MiB.
fn free_memory(out: &str) -> Result<u64, String> {
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "free_memory").then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no free_memory in {out:?}"))
}
