//! Xen's split network device, dom0's side (issue 16, scenarios `net_*` of this module):
//! netback in dom0's kernel and the bridge `xenbr0`, exercised by testguest domUs
//! (`test=net_*`, testguest `src/tests/net.rs`, a raw netif frontend of its own). The
//! toolstack's nodes are written from dom0's prompt with `xenstore-write` and
//! `xenstore-chmod`, as libxl writes them, while the domain is paused (`xl create -p`),
//! then the domain is unpaused.

use std::time::Duration;

use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::{DEFAULT_TIMEOUT as T, Qemu};
use crate::runner::Context;
use crate::scenarios::blkif::{created_id, frame_check, free_memory, gone, passes};
use crate::scenarios::xl::{self, PROMPT};
use crate::workspace::{DOM0_ARTIFACT, TEST_INITRD_ARTIFACT};

/// How long a domU's job may take under emulation.
const JOB: Duration = Duration::from_secs(300);
/// Whether the bridge is the learning one (helper nic's `bridge.rs`): a bystander then sees
/// no frame addressed to another domain. With netback's stand-in bridge, which floods every
/// frame, it sees them all, and the scenario only notes how many.
const LEARNING_BRIDGE: bool = true;

const MAC_A: &str = "00:16:3e:00:00:0a";
const MAC_B: &str = "00:16:3e:00:00:0b";
const MAC_C: &str = "00:16:3e:00:00:0c";
const MAC_H: &str = "00:16:3e:00:00:0d";
const MAC_H1: &str = "00:16:3e:00:00:1d";
const MAC_H2: &str = "00:16:3e:00:00:2d";

fn boot(ctx: &Context) -> Result<Qemu, String> {
    boot_cpus(ctx, 1)
}

fn boot_cpus(ctx: &Context, cpus: u32) -> Result<Qemu, String> {
    let ws = ctx.workspace();
    let mut vm = ctx
        .machine()
        .memory_mib(512)
        .cpus(cpus)
        .hv_options(DEFAULT_HV_OPTIONS)
        .module(ws.require_artifact(DOM0_ARTIFACT)?, "")
        .module(ws.require_artifact(TEST_INITRD_ARTIFACT)?, "")
        .boot()?;
    vm.wait_for(PROMPT, T)?;
    Ok(vm)
}

/// `log`'s complete lines: up to its last newline. A domain's line may be half-written when
/// the log is read (`(d1) Test result: ` without its `SUCCESS` failed `net_netback_frames`
/// once, session 18).
fn complete_lines(log: &str) -> &str {
    &log[..log.rfind('\n').map_or(0, |i| i + 1)]
}

/// Waits until every domain of `ids` printed its test result, whatever their order (a wait
/// for one line moves past the lines before it), then requires each to be SUCCESS with no
/// failed check. Only complete lines count.
fn all_pass(vm: &mut Qemu, ids: &[u32], timeout: Duration) -> Result<(), String> {
    let results: Vec<String> = ids
        .iter()
        .map(|d| format!("(d{d}) Test result: "))
        .collect();
    vm.wait_until("every domain's test result", timeout, |log, cursor| {
        let log = complete_lines(log);
        results
            .iter()
            .all(|r| log.lines().any(|l| l.starts_with(r.as_str())))
            .then_some(((), cursor))
    })?;
    let log = vm.serial_log();
    let log = complete_lines(&log);
    for (id, r) in ids.iter().zip(&results) {
        let prefix = format!("(d{id}) ");
        let result = log
            .lines()
            .find(|l| l.starts_with(r.as_str()))
            .unwrap_or("");
        let failed: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("{prefix}check ")) && !l.ends_with(": ok"))
            .collect();
        if result != format!("{prefix}Test result: SUCCESS") || !failed.is_empty() {
            return Err(format!("{result}; failed checks: {failed:?}"));
        }
    }
    Ok(())
}

/// Runs `line` at dom0's prompt and requires it to print nothing (xenstore-write and
/// xenstore-chmod say nothing when they succeed).
fn quiet(vm: &mut Qemu, line: &str) -> Result<(), String> {
    let out = without_domu_lines(&xl::run(vm, line)?);
    // What the terminal echoed of the line is not output.
    let out = out.trim_start().strip_prefix(line).unwrap_or(&out);
    // Lines of the domUs' consoles and of dom0's kernel come in between.
    let own: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("(d") && !l.starts_with("dom0: ") && !l.trim().is_empty())
        // The echo itself, when a kernel line came before it.
        .filter(|l| l.trim() != line)
        .collect();
    if own.is_empty() {
        Ok(())
    } else {
        Err(format!("`{line}`: {out}"))
    }
}

/// `text` without the domUs' console lines (`(d<n>) ...` up to its newline), wherever they
/// start: the hypervisor prints a domU's line as it comes, even in the middle of the echo
/// of what was typed at dom0's prompt.
fn without_domu_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("(d") {
        let tail = &rest[at + 2..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(") ") {
            out.push_str(&rest[..at]);
            rest = match tail.find('\n') {
                Some(nl) => &tail[nl + 1..],
                None => "",
            };
        } else {
            out.push_str(&rest[..at + 2]);
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Writes interface `devid` of domain `dom` with `mac` as libxl does: the frontend's
/// directory (the domain's, dom0 reads), the backend's (dom0's, the domain reads), the
/// backend's `state` = 1 last.
fn add_vif(vm: &mut Qemu, dom: u32, devid: u32, mac: &str) -> Result<(), String> {
    let fe = format!("/local/domain/{dom}/device/vif/{devid}");
    let be = format!("/local/domain/0/backend/vif/{dom}/{devid}");
    quiet(
        vm,
        &format!(
            "xenstore-write {fe}/backend {be} {fe}/backend-id 0 {fe}/handle {devid} \
             {fe}/mac {mac} {fe}/state 1"
        ),
    )?;
    quiet(vm, &format!("xenstore-chmod -r {fe} n{dom} r0"))?;
    quiet(
        vm,
        &format!(
            "xenstore-write {be}/frontend {fe} {be}/frontend-id {dom} {be}/online 1 \
             {be}/mac {mac} {be}/bridge xenbr0 {be}/handle {devid} {be}/type vif"
        ),
    )?;
    quiet(vm, &format!("xenstore-chmod -r {be} n0 r{dom}"))?;
    quiet(vm, &format!("xenstore-write {be}/state 1"))
}

/// `xl create -p` of testguest running `cmdline` as `name`, its vifs written, unpaused;
/// returns the domain's id.
fn create(vm: &mut Qemu, name: &str, cmdline: &str, vifs: &[&str]) -> Result<u32, String> {
    let out = xl::run(
        vm,
        &format!(
            "xl create -p /etc/xen/hello.cfg 'name=\"{name}\"' 'kernel=\"/boot/testguest.elf\"' \
             'cmdline=\"{cmdline}\"'"
        ),
    )?;
    // "Domain <name> created with id <n>, paused (...)".
    let id = created_id(&out.replace(", paused", "\n"), name)?;
    for (devid, mac) in vifs.iter().enumerate() {
        add_vif(vm, id, devid as u32, mac)?;
    }
    quiet(vm, &format!("xl unpause {name}"))?;
    Ok(id)
}

/// [`passes`] for a domain whose result may be printed already: domains that end together
/// print theirs in any order, and `passes` looks only after the last line it waited for.
fn passed(vm: &mut Qemu, id: u32, timeout: Duration) -> Result<(), String> {
    let prefix = format!("(d{id}) ");
    let log = vm.serial_log();
    let Some(result) = log
        .lines()
        .find(|l| l.starts_with(&format!("{prefix}Test result: ")))
    else {
        return passes(vm, id, timeout);
    };
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}check ")) && !l.ends_with(": ok"))
        .collect();
    if result != format!("{prefix}Test result: SUCCESS") || !failed.is_empty() {
        return Err(format!("{result}; failed checks: {failed:?}"));
    }
    Ok(())
}

/// Requires a line containing `text`, printed already or within `timeout`.
fn seen(vm: &mut Qemu, text: &str, timeout: Duration) -> Result<(), String> {
    if vm.serial_log().contains(text) {
        return Ok(());
    }
    vm.wait_for_line(text, timeout).map(drop)
}

/// The numbers of domain `id`'s `net: received <mine> frames for me, <b> broadcast, <o> for
/// others; ...` line.
fn received(vm: &Qemu, id: u32) -> Result<(u64, u64, u64), String> {
    let prefix = format!("(d{id}) note: net: received ");
    let log = vm.serial_log();
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .ok_or_else(|| format!("no `{prefix}` line"))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums[..] {
        [mine, bcast, others, ..] => Ok((mine, bcast, others)),
        _ => Err(format!("cannot read {line:?}")),
    }
}

fn note_round_trip(ctx: &Context, vm: &Qemu, id: u32) {
    let prefix = format!("(d{id}) note: net: ");
    if let Some(l) = vm
        .serial_log()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .find(|l| l.contains("round trip"))
    {
        ctx.note(format!("domU to domU through netback and the bridge: {l}"));
    }
}

/// Two domUs exchange frames through netback and the bridge: A (echo) answers B's pings;
/// a bystander C receives the broadcasts. Both ends close their interfaces cleanly and
/// netback says how many frames each sent and received.
pub fn frames(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let c = create(&mut vm, "bystander", "test=net_echo idle=20", &[MAC_C])?;
    seen(&mut vm, &format!("(d{c}) note: net: echo ready"), JOB)?;
    let a = create(&mut vm, "echo", "test=net_echo", &[MAC_A])?;
    seen(&mut vm, &format!("(d{a}) note: net: echo ready"), JOB)?;
    let b = create(
        &mut vm,
        "pinger",
        &format!("test=net_ping peer={MAC_A} count=50"),
        &[MAC_B],
    )?;
    // Their results come in any order: each looked for in the whole log.
    all_pass(&mut vm, &[b, a, c], JOB)?;
    note_round_trip(ctx, &vm, b);
    let log = vm.serial_log();
    for d in [a, b, c] {
        for what in ["connected to xenbr0", "released (closed;"] {
            let line = format!("dom0: netback: d{d} vif{d}.0 {what}");
            if !log.contains(&line) {
                return Err(format!("no `{line}` line"));
            }
        }
    }
    // A got the pings (at least 50 and done) and the broadcasts of B and C.
    let (mine, bcast, _) = received(&vm, a)?;
    if mine < 51 || bcast < 1 {
        return Err(format!(
            "echo received {mine} frames for it and {bcast} broadcasts"
        ));
    }
    let (mine, bcast, others) = received(&vm, c)?;
    ctx.note(format!(
        "bystander: {mine} frames for it, {bcast} broadcasts, {others} for others"
    ));
    if mine != 0 || bcast < 2 {
        return Err(format!(
            "bystander received {mine} frames for it and {bcast} broadcasts"
        ));
    }
    if LEARNING_BRIDGE && others != 0 {
        return Err(format!(
            "bystander received {others} frames meant for other domains"
        ));
    }
    for name in ["echo", "pinger", "bystander"] {
        gone(&mut vm, name)?;
    }
    let out = xl::run(&mut vm, "xenstore-ls /local/domain/0/backend")?;
    if out.contains("vif") && out.contains("frontend") {
        return Err(format!("backend nodes left after the domains: {out}"));
    }
    frame_check(&mut vm)?;
    vm.kill();
    Ok(())
}

/// The `(dH) note: net: <n> pongs` lines of the victim's pinger so far.
fn pongs(vm: &Qemu, id: u32) -> usize {
    let prefix = format!("(d{id}) note: net: ");
    vm.serial_log()
        .lines()
        .filter(|l| {
            l.strip_prefix(&prefix)
                .is_some_and(|r| r.ends_with(" pongs"))
        })
        .count()
}

/// A hostile frontend (testguest `net_hostile`: `vif 1` without `request-rx-copy`, `vif 2`
/// whose ring grant it ends (served on through netback's mapping, as in Xen, then closed),
/// then on `vif 0` a bad
/// grant reference, a frame over the MTU, 19 slots, a short frame, floods, a producer far
/// ahead) gets its errors and log lines (rate-limited), while two other domUs keep
/// exchanging frames and dom0's prompt answers.
pub fn hostile_frontend(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let a = create(&mut vm, "echo", "test=net_echo count=0", &[MAC_A])?;
    seen(&mut vm, &format!("(d{a}) note: net: echo ready"), JOB)?;
    let b = create(
        &mut vm,
        "pinger",
        &format!("test=net_ping peer={MAC_A} count=0"),
        &[MAC_B],
    )?;
    seen(&mut vm, &format!("(d{b}) note: net: 50 pongs"), JOB)?;
    let h = create(
        &mut vm,
        "attacker",
        "test=net_hostile",
        &[MAC_H, MAC_H1, MAC_H2],
    )?;
    // While the attacker lives: the refused interface's error node (Xen's
    // `xenbus_dev_fatal`: `error/<backend path>/error` = "<errno> <message>") and its
    // backend at Closing.
    seen(
        &mut vm,
        &format!("(d{h}) check vif 1 without request-rx-copy is refused: ok"),
        JOB,
    )?;
    let err = xl::run(
        &mut vm,
        &format!("xenstore-read /local/domain/0/error/backend/vif/{h}/1/error"),
    )?;
    if !err.contains("\n95 ") {
        return Err(format!("xenbus error node: {err:?}"));
    }
    let state = xl::run(
        &mut vm,
        &format!("xenstore-read /local/domain/0/backend/vif/{h}/1/state"),
    )?;
    if !state.contains("\n5") && !state.contains("\n6") {
        return Err(format!("refused interface's backend state: {state:?}"));
    }
    passes(&mut vm, h, JOB)?;
    let log = vm.serial_log();
    let about = |what: &str| {
        let prefix = format!("dom0: netback: d{h} vif{h}.");
        log.lines()
            .filter(|l| l.contains(&prefix))
            .any(|l| l.contains(what))
    };
    // One line for each kind of refusal (a second apart), the flood's held back and
    // counted, and the end of the ring.
    for what in [
        "1: cannot connect: /local/domain",
        "2 released (closed;",
        "request-rx-copy is not 1",
        "grant copy failed",
        "frame of 2000 bytes, longer than 1514",
        "19 slots, more than 18",
        "frame of 10 bytes, shorter than 14",
        "more not shown)",
        "is more than a ring ahead of rsp_prod",
        "; not serving it",
    ] {
        if !about(what) {
            return Err(format!("dom0 said nothing of the attacker's {what:?}"));
        }
    }
    let lines = log
        .lines()
        .filter(|l| l.contains(&format!("dom0: netback: d{h} ")))
        .count();
    ctx.note(format!("{lines} log lines about the attacker"));
    if lines > 16 {
        return Err(format!(
            "{lines} log lines about the attacker: not rate-limited"
        ));
    }
    // dom0 answers, and the victims go on exchanging frames.
    xl::run(&mut vm, "xl list")?;
    let mark = pongs(&vm, b);
    vm.wait_until("the victims exchanging on", JOB, |log, cursor| {
        let prefix = format!("(d{b}) note: net: ");
        let n = log
            .lines()
            .filter(|l| {
                l.strip_prefix(&prefix)
                    .is_some_and(|r| r.ends_with(" pongs"))
            })
            .count();
        (n >= mark + 2).then_some(((), cursor))
    })?;
    for name in ["attacker", "pinger", "echo"] {
        xl::run(&mut vm, &format!("xl destroy {name}"))?;
        gone(&mut vm, name)?;
    }
    // Every refused frame was counted: the 2048 of the flood and the 5 others.
    let released = format!("dom0: netback: d{h} vif{h}.0 released (");
    seen(&mut vm, &released, T)?;
    let log = vm.serial_log();
    let refused = log
        .lines()
        .find_map(|l| l.split_once(&released).map(|(_, r)| r.to_string()))
        .and_then(|r| {
            let (_, r) = r.split_once(" frames sent, ")?;
            r.split(' ').next()?.parse::<u64>().ok()
        })
        .ok_or("no count of the attacker's refused frames")?;
    ctx.note(format!("attacker: {refused} frames refused"));
    if refused < 2048 + 5 {
        return Err(format!(
            "only {refused} of the attacker's frames counted as refused"
        ));
    }
    for dir in ["backend", "error/backend"] {
        let out = xl::run(&mut vm, &format!("xenstore-ls /local/domain/0/{dir}/vif"))?;
        if let Some(l) = out.lines().find(|l| {
            [a, b, h]
                .iter()
                .any(|d| l.trim_start().starts_with(&format!("{d} =")))
        }) {
            return Err(format!("nodes left after the domains in {dir}/vif: {l:?}"));
        }
    }
    frame_check(&mut vm)?;
    vm.kill();
    Ok(())
}

/// A domU destroyed while it streams frames to another: netback releases its interface
/// (channel, bridge port), its backend nodes go, free memory comes back to the figure
/// before it, and the other domU goes on answering a new one.
pub fn destroy_midstream(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let a = create(&mut vm, "echo", "test=net_echo count=0", &[MAC_A])?;
    seen(&mut vm, &format!("(d{a}) note: net: echo ready"), JOB)?;
    let before = free_memory(&mut vm)?;
    let s = create(
        &mut vm,
        "streamer",
        &format!("test=net_stream peer={MAC_A}"),
        &[MAC_B],
    )?;
    seen(
        &mut vm,
        &format!("(d{s}) note: net: streamed 512 frames"),
        JOB,
    )?;
    xl::run(&mut vm, "xl destroy streamer")?;
    seen(
        &mut vm,
        &format!("dom0: netback: d{s} vif{s}.0 released"),
        T,
    )?;
    gone(&mut vm, "streamer")?;
    let out = xl::run(&mut vm, "xenstore-ls /local/domain/0/backend/vif")?;
    if out
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{s} =")))
    {
        return Err(format!("backend nodes left after the domain: {out}"));
    }
    let after = free_memory(&mut vm)?;
    if after != before {
        return Err(format!(
            "free memory {after} MiB after the domain, {before} MiB before"
        ));
    }
    let c = create(
        &mut vm,
        "pinger",
        &format!("test=net_ping peer={MAC_A} count=20"),
        &[MAC_C],
    )?;
    passes(&mut vm, c, JOB)?;
    note_round_trip(ctx, &vm, c);
    xl::run(&mut vm, "xl destroy echo")?;
    gone(&mut vm, "echo")?;
    frame_check(&mut vm)?;
    vm.kill();
    Ok(())
}

/// On two CPUs, a hostile frontend (testguest `net_race`, pinned to CPU 1) rewrites its
/// transmit ring's entries, `req_prod` and `rsp_event` under netback at full speed while
/// netback, holding both rings mapped, serves it; two other domains ping on. Then the
/// attacker, still publishing, is destroyed with its rings mapped: dom0 unmaps them first
/// (`grantmap: d<N> ref ... unmapped before the domain's destruction`) and keeps running,
/// the interface is released, the victims keep exchanging, and free memory is what it was
/// before the attacker.
pub fn hostile_race(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_cpus(ctx, 2)?;
    let a = create(&mut vm, "echo", "test=net_echo count=0", &[MAC_A])?;
    seen(&mut vm, &format!("(d{a}) note: net: echo ready"), JOB)?;
    let b = create(
        &mut vm,
        "pinger",
        &format!("test=net_ping peer={MAC_A} count=0"),
        &[MAC_B],
    )?;
    seen(&mut vm, &format!("(d{b}) note: net: 50 pongs"), JOB)?;
    let before = free_memory(&mut vm)?;
    let h = create(&mut vm, "attacker", "test=net_race", &[MAC_H])?;
    xl::run(&mut vm, "xl vcpu-pin attacker 0 1")?;
    seen(&mut vm, &format!("(d{h}) note: net: race done"), JOB)?;
    let log = vm.serial_log();
    let prefix = format!("(d{h}) ");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}check ")) && !l.ends_with(": ok"))
        .collect();
    if !failed.is_empty() || log.contains(&format!("{prefix}Test result: ")) {
        return Err(format!("the attacker's checks failed: {failed:?}"));
    }
    if let Some(l) = log
        .lines()
        .find(|l| l.starts_with(&format!("{prefix}note: net: race: ")))
    {
        ctx.note(l[prefix.len()..].to_string());
    }
    if let Some(l) = log.lines().find(|l| {
        l.contains(&format!("dom0: netback: d{h} vif{h}.0: ")) && l.contains("not serving it")
    }) {
        return Err(format!(
            "netback stopped serving the attacker's harmless ring: {l:?}"
        ));
    }
    // Destroyed with its rings mapped, while it keeps requests outstanding.
    xl::run(&mut vm, "xl destroy attacker")?;
    gone(&mut vm, "attacker")?;
    seen(
        &mut vm,
        &format!("dom0: netback: d{h} vif{h}.0 released"),
        T,
    )?;
    let log = vm.serial_log();
    let unmapped = log
        .lines()
        .filter(|l| {
            l.contains(&format!("dom0: grantmap: d{h} ref "))
                && l.ends_with("unmapped before the domain's destruction")
        })
        .count();
    if unmapped < 2 {
        return Err(format!(
            "dom0 unmapped {unmapped} of the attacker's 2 rings before destroying it"
        ));
    }
    // dom0 answers, and the victims go on exchanging frames.
    let mark = pongs(&vm, b);
    vm.wait_until("the victims exchanging on", JOB, |log, cursor| {
        let prefix = format!("(d{b}) note: net: ");
        let n = log
            .lines()
            .filter(|l| {
                l.strip_prefix(&prefix)
                    .is_some_and(|r| r.ends_with(" pongs"))
            })
            .count();
        (n >= mark + 2).then_some(((), cursor))
    })?;
    let after = free_memory(&mut vm)?;
    if after != before {
        return Err(format!(
            "free memory {after} MiB after the attacker, {before} MiB before"
        ));
    }
    for name in ["pinger", "echo"] {
        xl::run(&mut vm, &format!("xl destroy {name}"))?;
        gone(&mut vm, name)?;
    }
    frame_check(&mut vm)?;
    vm.kill();
    Ok(())
}

/// Red team: MAC spoofing on the bridge. A domU (testguest `net_spoof`) sends frames with
/// the echo domain's MAC, and a made-up one, as source: netback refuses them
/// (`NETIF_RSP_ERROR`, a rate-limited log line) and accepts its own; from the pinger's
/// hello on it keeps claiming the echo's MAC every 200 ms while the pinger pings the echo, whose traffic must
/// still reach it (a bridge that learned the spoofed source would send it to the spoofer).
pub fn redteam_spoof(ctx: &Context) -> Result<(), String> {
    let mut vm = boot(ctx)?;
    let a = create(&mut vm, "echo", "test=net_echo", &[MAC_A])?;
    seen(&mut vm, &format!("(d{a}) note: net: echo ready"), JOB)?;
    let s = create(
        &mut vm,
        "spoofer",
        &format!("test=net_spoof victim={MAC_A}"),
        &[MAC_H],
    )?;
    let done = format!("(d{s}) note: net: spoof checks done, ");
    seen(&mut vm, &done, JOB)?;
    if !vm.serial_log().contains(&format!("{done}0 failed")) {
        return Err("the spoofer's frames were not refused (see its check lines)".into());
    }
    let b = create(
        &mut vm,
        "pinger",
        &format!("test=net_ping peer={MAC_A} count=10"),
        &[MAC_B],
    )?;
    seen(
        &mut vm,
        &format!("(d{s}) note: net: claiming the victim's mac"),
        JOB,
    )?;
    passes(&mut vm, b, JOB)?;
    // The echo ends at the pinger's done, its result printed before or after the pinger's.
    passed(&mut vm, a, JOB)?;
    note_round_trip(ctx, &vm, b);
    let log = vm.serial_log();
    let refusal = format!("is not the vif's mac {MAC_H}");
    let lines = log
        .lines()
        .filter(|l| l.starts_with(&format!("dom0: netback: d{s} vif{s}.0: frame at slot ")))
        .filter(|l| l.contains(&refusal))
        .count();
    if lines == 0 {
        return Err(format!(
            "dom0 said nothing of the spoofed frames ({refusal:?})"
        ));
    }
    ctx.note(format!(
        "{lines} rate-limited log lines about spoofed frames"
    ));
    xl::run(&mut vm, "xl destroy spoofer")?;
    gone(&mut vm, "spoofer")?;
    let released = format!("dom0: netback: d{s} vif{s}.0 released (");
    seen(&mut vm, &released, T)?;
    for name in ["echo", "pinger"] {
        gone(&mut vm, name)?;
    }
    frame_check(&mut vm)?;
    vm.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{complete_lines, without_domu_lines};

    /// A half-written result line is not a result yet.
    #[test]
    fn only_complete_lines_count() {
        let log = "(d2) Test result: SUCCESS\n(d1) Test result: ";
        assert_eq!(complete_lines(log), "(d2) Test result: SUCCESS\n");
        assert_eq!(complete_lines("no newline"), "");
        assert_eq!(complete_lines("a\nb\n"), "a\nb\n");
    }

    #[test]
    fn domu_lines_go_wherever_they_start() {
        let echo = "xenstore-write /a 1 /lo(d2) note: net: 100 pongs\ncal/b 2\r\n";
        assert_eq!(
            without_domu_lines(echo),
            "xenstore-write /a 1 /local/b 2\r\n"
        );
        assert_eq!(
            without_domu_lines("(d12) hello\ndom0# (dx) stays (d3)"),
            "dom0# (dx) stays (d3)"
        );
        assert_eq!(without_domu_lines("x (d4) no newline"), "x ");
    }
}
