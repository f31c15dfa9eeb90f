//! Memory offlining (issue 12, Xen 3.4's `xen-hptool mem-*`) from dom0's prompt: a free
//! frame taken out is never handed out again, even with memory filled by domains; a frame a
//! domain owns goes offline-pending and leaves when the domain is destroyed; the
//! hypervisor's own frames are refused; `xl info` counts the offlined frames. The image is
//! the default one with the test program `/bin/probe` in the initrd (`probe frame-check`
//! runs the hypervisor's frame-table consistency check, which finds any offlined frame a
//! domain owns). A domU's attempt is refused in the test guest's `unprivileged` test
//! (`domains_privilege`, and [`domu_refused`] here).

use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::{DEFAULT_TIMEOUT as T, Qemu};
use crate::runner::Context;
use crate::scenarios::xl::{PROMPT, run};
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};

/// The machine: dom0's 64 MiB and room for domUs.
const MEMORY_MIB: u32 = 512;
/// Candidate frames, high memory first (the 512 MiB machine ends at frame 0x20000): where a
/// domU's memory comes from; those the hypervisor holds (GRUB may put the modules there) are
/// skipped.
const CANDIDATES: [u32; 16] = [
    0x1f800, 0x1f000, 0x1e000, 0x1d000, 0x1c000, 0x1b000, 0x1a000, 0x19000, 0x18000, 0x17000,
    0x16000, 0x15000, 0x14000, 0x13000, 0x12000, 0x11000,
];
/// A frame of the hypervisor's image (linked at 1 MiB, `boot/linker.ld`'s `PHYS_BASE`).
const XEN_FRAME: u32 = 0x100;
/// The largest domain the fill creates, and the smallest it tries (MiB).
const FILL_LARGEST: u64 = 128;
const FILL_SMALLEST: u64 = 4;
/// Most `xl create` attempts the fill makes (it needs about ten on this machine).
const FILL_TRIES: u32 = 40;

fn boot(ctx: &Context) -> Result<Qemu, String> {
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .memory_mib(MEMORY_MIB)
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

/// A field of `xl info`, as a number.
fn info_field(vm: &mut Qemu, name: &str) -> Result<u64, String> {
    let out = run(vm, "xl info")?;
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no numeric {name} in `xl info`: {out:?}"))
}

/// What `xen-hptool mem-offline` said of a frame.
#[derive(Debug, PartialEq, Eq)]
enum Offlined {
    /// Taken out at once: it was free.
    Now,
    /// Pending: domain `.0` owns it.
    Pending(u32),
}

/// `xen-hptool mem-offline <mfn>`, which must succeed one way or the other.
fn mem_offline(vm: &mut Qemu, mfn: u32) -> Result<Offlined, String> {
    let out = run(vm, &format!("xen-hptool mem-offline {mfn:x}"))?;
    offline_result(&out, mfn)
}

/// What `xen-hptool mem-offline <mfn>` said it did (`out`), which must be one or the other.
fn offline_result(out: &str, mfn: u32) -> Result<Offlined, String> {
    if out.contains(&format!(
        "Memory mfn {mfn:x} offlined successfully, current state is [PG_OFFLINE_OFFLINED]"
    )) {
        return Ok(Offlined::Now);
    }
    let owner = format!("Memory mfn {mfn:x} offline pending, this page is DOM");
    if let Some(i) = out.find(&owner) {
        let rest = &out[i + owner.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(dom) = digits.parse() {
            expect(
                rest,
                " page, current state is [PG_OFFLINE_PENDING, PG_OFFLINE_OWNED]",
                "mem-offline of an owned frame",
            )?;
            return Ok(Offlined::Pending(dom));
        }
    }
    Err(format!("`xen-hptool mem-offline {mfn:x}` said {out:?}"))
}

/// [`mem_offline`] of a candidate frame, `None` when the hypervisor holds it (its image, a
/// module GRUB loaded there, a heap run: refused as Xen refuses a `XEN_PAGE`), so that the
/// next candidate is tried: where GRUB puts the modules depends on their sizes.
fn offline_candidate(vm: &mut Qemu, mfn: u32) -> Result<Option<Offlined>, String> {
    let out = run(vm, &format!("xen-hptool mem-offline {mfn:x}"))?;
    if out.contains("XEN_PAGE is not permitted be offlined") {
        return Ok(None);
    }
    offline_result(&out, mfn).map(Some)
}

/// `xen-hptool mem-online <mfn>` of an offlined or pending frame.
fn mem_online(vm: &mut Qemu, mfn: u32) -> Result<(), String> {
    let out = run(vm, &format!("xen-hptool mem-online {mfn:x}"))?;
    expect(
        &out,
        &format!("Memory mfn {mfn:x} onlined successfully"),
        "mem-online",
    )
}

/// `xen-hptool mem-status <mfn>`: the bracketed state list.
fn mem_status(vm: &mut Qemu, mfn: u32) -> Result<String, String> {
    let out = run(vm, &format!("xen-hptool mem-status {mfn:x}"))?;
    out.lines()
        .find_map(|l| l.split_once("Memory Status ").map(|(_, r)| r.to_string()))
        .ok_or_else(|| format!("`xen-hptool mem-status {mfn:x}` said {out:?}"))
}

/// `probe frame-check`: the frame table must be consistent (no offlined frame owned by a
/// domain, no pending one owned by none, every count right).
fn frame_check(vm: &mut Qemu, when: &str) -> Result<(), String> {
    let out = run(vm, "probe frame-check")?;
    if out.contains("frame table check: 0") {
        Ok(())
    } else {
        Err(format!("frame table check {when}: {out:?}"))
    }
}

/// The first candidate frame `mem-offline` takes out at once (a free frame). Candidates a
/// domain owns are put back online (their pending offline cancelled).
fn offline_a_free_frame(vm: &mut Qemu) -> Result<u32, String> {
    for mfn in CANDIDATES {
        match offline_candidate(vm, mfn)? {
            Some(Offlined::Now) => return Ok(mfn),
            Some(Offlined::Pending(_)) => mem_online(vm, mfn)?,
            None => {}
        }
    }
    Err(format!("none of the frames {CANDIDATES:x?} was free"))
}

/// Creates echo domains (`fill0`, `fill1`, ...) until one of [`FILL_SMALLEST`] MiB no
/// longer fits; returns their names and the free memory left (MiB).
fn fill_memory(vm: &mut Qemu) -> Result<(Vec<String>, u64), String> {
    let mut names = Vec::new();
    let mut size = FILL_LARGEST;
    for _ in 0..FILL_TRIES {
        let free = info_field(vm, "free_memory")?;
        size = size.min(free);
        if size < FILL_SMALLEST {
            return Ok((names, free));
        }
        let name = format!("fill{}", names.len());
        let out = run(
            vm,
            &format!("xl create /etc/xen/hello.cfg 'name=\"{name}\"' memory={size}"),
        )?;
        if out.contains(&format!("Domain {name} created")) {
            names.push(name);
        } else {
            // The domain's own page tables and the hypervisor's records need more than
            // its memory: try a smaller one.
            size /= 2;
        }
    }
    Err(format!(
        "memory not filled after {FILL_TRIES} `xl create`s ({} domains)",
        names.len()
    ))
}

/// (a) A free frame offlined: `mem-status` says offlined, `xl info` counts 1; memory filled
/// with domains never hands it out (the frame-table check finds no domain owning it and
/// `mem-offline` still finds it offlined, not pending); after the domains go, `mem-online`
/// brings it back and free memory is where it started.
pub fn free_frame(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let free_before = info_field(&mut vm, "free_memory")?;
    if info_field(&mut vm, "offlined_pages")? != 0 {
        return Err("offlined_pages is not 0 at boot".into());
    }
    let mfn = offline_a_free_frame(&mut vm)?;
    let status = mem_status(&mut vm, mfn)?;
    if status != "2: [ PAGE_OFFLINED ]" {
        return Err(format!(
            "mem-status of the offlined frame {mfn:x}: {status:?}"
        ));
    }
    if info_field(&mut vm, "offlined_pages")? != 1 {
        return Err("`xl info` offlined_pages is not 1 after one mem-offline".into());
    }

    let (domains, left) = fill_memory(&mut vm)?;
    ctx.note(format!(
        "frame {mfn:#x} offlined; {} domains filled memory from {free_before} MiB free to \
         {left} MiB",
        domains.len()
    ));
    frame_check(&mut vm, "with memory full")?;
    if mem_offline(&mut vm, mfn)? != Offlined::Now {
        return Err(format!("the offlined frame {mfn:x} was handed to a domain"));
    }
    // Its neighbours were handed out (a note: the allocator's choice, not a requirement). A
    // neighbour may also be the hypervisor's (a guest root, a heap run): refused, as Xen
    // refuses a `XEN_PAGE`, and noted.
    for n in [mfn - 1, mfn + 1] {
        let out = run(&mut vm, &format!("xen-hptool mem-offline {n:x}"))?;
        if out.contains("XEN_PAGE is not permitted be offlined") {
            ctx.note(format!("neighbour {n:#x} is the hypervisor's"));
            continue;
        }
        match offline_result(&out, n)? {
            Offlined::Pending(dom) => {
                ctx.note(format!("neighbour {n:#x} belongs to domain {dom}"));
                mem_online(&mut vm, n)?;
            }
            Offlined::Now => {
                ctx.note(format!("neighbour {n:#x} is free"));
                mem_online(&mut vm, n)?;
            }
        }
    }

    for name in &domains {
        run(&mut vm, &format!("xl destroy {name}"))?;
    }
    frame_check(&mut vm, "after the domains")?;
    if mem_status(&mut vm, mfn)? != "2: [ PAGE_OFFLINED ]" {
        return Err(format!("{mfn:x} no longer offlined after the domains went"));
    }
    mem_online(&mut vm, mfn)?;
    let status = mem_status(&mut vm, mfn)?;
    if status != "0: [ PAGE_ONLINED ]" {
        return Err(format!("mem-status after mem-online: {status:?}"));
    }
    if info_field(&mut vm, "offlined_pages")? != 0 {
        return Err("`xl info` offlined_pages is not 0 after mem-online".into());
    }
    let free_after = info_field(&mut vm, "free_memory")?;
    if free_after != free_before {
        return Err(format!(
            "free memory {free_before} MiB before, {free_after} MiB after"
        ));
    }
    // Online again: a frame online answers so.
    let out = run(&mut vm, &format!("xen-hptool mem-online {mfn:x}"))?;
    expect(&out, "Memory is already onlined!", "mem-online twice")?;
    vm.kill();
    Ok(())
}

/// (b) A frame a running domU owns: `mem-offline` answers pending with the domU's id,
/// `mem-status` says pending, `xl info` does not count it yet; after `xl destroy` it is
/// offlined and counted; `mem-online` brings it back.
pub fn owned_frame(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let free = info_field(&mut vm, "free_memory")?;
    // One domain with nearly all free memory: the candidates that were free are its now.
    let memory = free.saturating_sub(16).min(512);
    let out = run(
        &mut vm,
        &format!("xl create /etc/xen/hello.cfg 'name=\"owner\"' memory={memory}"),
    )?;
    expect(&out, "Domain owner created with id", "xl create owner")?;
    let dom: u32 = out
        .split("Domain owner created with id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("no domain id in {out:?}"))?;
    let mut owned = None;
    for mfn in CANDIDATES {
        match offline_candidate(&mut vm, mfn)? {
            Some(Offlined::Pending(d)) if d == dom => {
                owned = Some(mfn);
                break;
            }
            Some(_) => mem_online(&mut vm, mfn)?,
            None => {}
        }
    }
    let mfn = owned.ok_or_else(|| {
        format!("none of the frames {CANDIDATES:x?} belongs to the {memory} MiB domain {dom}")
    })?;
    ctx.note(format!(
        "frame {mfn:#x} of domain {dom} ({memory} MiB) offline-pending"
    ));
    let status = mem_status(&mut vm, mfn)?;
    if status != "8: [ PAGE_OFFLINE_PENDING  PAGE_ONLINED ]" {
        return Err(format!("mem-status of a pending frame: {status:?}"));
    }
    if info_field(&mut vm, "offlined_pages")? != 0 {
        return Err("a pending frame is counted as offlined".into());
    }
    // Asking again answers the same.
    if mem_offline(&mut vm, mfn)? != Offlined::Pending(dom) {
        return Err("mem-offline of a pending frame changed its answer".into());
    }
    frame_check(&mut vm, "with the frame pending")?;

    run(&mut vm, "xl destroy owner")?;
    let status = mem_status(&mut vm, mfn)?;
    if status != "2: [ PAGE_OFFLINED ]" {
        return Err(format!("after xl destroy, mem-status says {status:?}"));
    }
    if info_field(&mut vm, "offlined_pages")? != 1 {
        return Err("`xl info` offlined_pages is not 1 after the owner went".into());
    }
    frame_check(&mut vm, "after the owner went")?;
    // The frame stays out: a new domain with the same memory does not get it.
    let out = run(
        &mut vm,
        &format!("xl create /etc/xen/hello.cfg 'name=\"again\"' memory={memory}"),
    )?;
    expect(&out, "Domain again created", "xl create again")?;
    frame_check(&mut vm, "with a new domain")?;
    if mem_offline(&mut vm, mfn)? != Offlined::Now {
        return Err(format!("the offlined frame {mfn:x} went to the new domain"));
    }
    run(&mut vm, "xl destroy again")?;
    mem_online(&mut vm, mfn)?;
    if info_field(&mut vm, "offlined_pages")? != 0 {
        return Err("`xl info` offlined_pages is not 0 after mem-online".into());
    }
    let after = info_field(&mut vm, "free_memory")?;
    if after != free {
        return Err(format!("free memory {free} MiB before, {after} MiB after"));
    }
    vm.kill();
    Ok(())
}

/// (c) The hypervisor's own frame is refused with Xen's message and the frame is unchanged;
/// a frame beyond the machine and a bad number are refused clearly; on this one-CPU machine
/// `cpu-offline` of CPU 1 (none) and CPU 0 (the boot CPU) are refused with Xen's messages.
pub fn refused(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let out = run(&mut vm, &format!("xen-hptool mem-offline {XEN_FRAME:x}"))?;
    expect(
        &out,
        &format!("Offlining page mfn {XEN_FRAME:x} failed, error ffffffff"),
        "mem-offline of the hypervisor's frame",
    )?;
    expect(
        &out,
        "XEN_PAGE is not permitted be offlined",
        "mem-offline of the hypervisor's frame",
    )?;
    expect(&out, "exited with status 1", "its exit status")?;
    if mem_status(&mut vm, XEN_FRAME)? != "0: [ PAGE_ONLINED ]" {
        return Err("the refused frame changed state".into());
    }
    let out = run(&mut vm, "xen-hptool mem-offline fffffff")?;
    expect(
        &out,
        "Offlining page mfn fffffff failed, error ffffffea",
        "mem-offline beyond the machine (EINVAL)",
    )?;
    let out = run(&mut vm, "xen-hptool mem-status nonsense")?;
    expect(
        &out,
        "'nonsense' is not a machine frame number",
        "a bad frame number",
    )?;
    // One CPU: there is no CPU 1 (`EINVAL`), and CPU 0 stays (`EBUSY`, with the reason).
    let out = run(&mut vm, "xen-hptool cpu-offline 1")?;
    expect(
        &out,
        "CPU 1 offline failed (error 22: ",
        "cpu-offline of a CPU the machine lacks (EINVAL)",
    )?;
    let out = run(&mut vm, "xen-hptool cpu-offline 0")?;
    expect(
        &out,
        "CPU 0 offline failed (error 16: ",
        "cpu-offline 0 (EBUSY)",
    )?;
    expect(
        &out,
        "CPU 0 (the boot CPU) and the last online CPU cannot be taken offline",
        "cpu-offline 0",
    )?;
    if info_field(&mut vm, "offlined_pages")? != 0 {
        return Err("a refusal counted as an offlined frame".into());
    }
    frame_check(&mut vm, "after the refusals")?;
    vm.kill();
    Ok(())
}

/// (d) A domU's `XEN_SYSCTL_page_offline_op` is refused with `EPERM` and writes no status:
/// the test guest's `unprivileged` test, built by the test dom0 (as `domains_privilege`).
pub fn domu_refused(ctx: &Context) -> Result<(), String> {
    super::domains::privilege(ctx)
}
