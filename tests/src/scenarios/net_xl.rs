//! Network interfaces through xl at dom0's prompt (issue 16): `vif=` at create, Xen's
//! words for bad specs, `network-list`/`-attach`/`-detach`, `list -l`, the nodes (read
//! with `xenstore-ls -p`) going at destroy and coming back at a restart, and each generated
//! MAC the same for a domain name across destroy, create and restart. The domains are the
//! echo demo, which has no netfront: its frontends stay `XenbusStateInitialising` (1, which
//! `network-list` shows, as xl shows the frontend's state). Whether a backend answers
//! (netback) or not, `network-detach` without `-f` ends one of the two ways Xen's does: the
//! backend closes and the vif goes, or libxl's timeout leaves it attached; `-f` takes it.

use crate::machine::Qemu;
use crate::runner::Context;

use super::block_xl::{
    FAILED, await_node, boot_with_disks, created, expect, nodes_hold, shell, timed_ms,
};
use super::xl::run;

/// `xl network-list`'s header, as Xen's `main_networklist` prints it.
const HEADER: &str = "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n";

fn create_line(name: &str, vifs: &str) -> String {
    format!("xl create /etc/xen/echo.cfg 'name=\"{name}\"' memory=16 'vif=[{vifs}]'")
}

/// A row of `xl network-list` for a vif whose frontend has not connected.
fn row(dom: u32, devid: u32, mac: &str) -> String {
    format!(
        "{:<3} {:<2} {mac}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}\n",
        devid,
        0,
        devid,
        1,
        -1,
        -1,
        -1,
        format!("/local/domain/0/backend/vif/{dom}/{devid}")
    )
}

/// The MAC dom0 wrote for `dom`'s vif `devid`.
fn mac_of(vm: &mut Qemu, dom: u32, devid: u32) -> Result<String, String> {
    let path = format!("/local/domain/0/backend/vif/{dom}/{devid}/mac");
    let out = shell(vm, &format!("xenstore-read {path}"))?;
    let mac = out.lines().next().unwrap_or("").trim().to_string();
    let xens = mac.len() == 17
        && mac.starts_with("00:16:3e:")
        && mac.bytes().all(|b| b == b':' || b.is_ascii_hexdigit());
    if xens {
        Ok(mac)
    } else {
        Err(format!(
            "{path} is {out:?}, not a MAC in Xen's 00:16:3e range"
        ))
    }
}

/// `net_xl_verbs`.
pub fn verbs(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with_disks(ctx, &[], false)?;
    let r = steps(&mut vm);
    vm.kill();
    ctx.note(r?);
    Ok(())
}

/// Returns what the backend did with `network-detach` without `-f`.
fn steps(vm: &mut Qemu) -> Result<String, String> {
    // Xen's own case (`check-xl-vif-parse`).
    let out = shell(vm, "xl -N network-attach 0 rate=16Mb/s")?;
    let want = "vif: {\n    \"rate_bytes_per_interval\": 100000,\n    \
                \"rate_interval_usecs\": 50000\n}\n\n";
    if out != want {
        return Err(format!(
            "`xl -N network-attach` printed {out:?}, not {want:?}"
        ));
    }
    // Bad specs in Xen's words, what Xenia cannot serve with why; nothing is built.
    expect(
        vm,
        &create_line("nq", "\"mac=00:16:zz\""),
        "Invalid parameter `mac'.",
    )?;
    expect(
        vm,
        &create_line("nq", "\"frob=1\""),
        "unrecognized argument `frob=1'",
    )?;
    expect(
        vm,
        &create_line("nq", "\"rate=10MB\""),
        "config parsing error in vif: invalid rate in `10MB'",
    )?;
    expect(
        vm,
        &create_line("nq", "\"model=e1000\""),
        "model=e1000 is not supported by Xenia",
    )?;
    expect(
        vm,
        &create_line("nq", "\"bridge=xenbr1\""),
        "bridge=xenbr1 is not supported by Xenia: dom0 has one bridge, xenbr0",
    )?;
    if shell(vm, "xl list")?.lines().any(|l| l.starts_with("nq ")) {
        return Err("a refused domain was built".into());
    }

    // Two vifs: one with every default (its MAC made from the name), one with a MAC.
    let a = created(
        vm,
        &create_line("na", "\"bridge=xenbr0\", \"mac=00:16:3e:00:00:42\""),
    )?;
    let mac0 = mac_of(vm, a, 0)?;
    if mac_of(vm, a, 1)? != "00:16:3e:00:00:42" {
        return Err("the MAC given is not the one written".into());
    }
    let out = shell(vm, "xl network-list na")?;
    let want = format!(
        "{HEADER}{}{}",
        row(a, 0, &mac0),
        row(a, 1, "00:16:3e:00:00:42")
    );
    if out != want {
        return Err(format!(
            "`xl network-list na` printed\n{out}expected\n{want}"
        ));
    }
    // libxl's nodes and permissions.
    let be = format!("/local/domain/0/backend/vif/{a}/0");
    let fe = format!("/local/domain/{a}/device/vif/0");
    nodes_hold(
        vm,
        &be,
        &[
            format!("frontend = \"{fe}\""),
            format!("frontend-id = \"{a}\""),
            "online = \"1\"".into(),
            format!("mac = \"{mac0}\""),
            "bridge = \"xenbr0\"".into(),
            "handle = \"0\"".into(),
            "type = \"vif\"".into(),
            "script = \"/etc/xen/scripts/vif-bridge\"".into(),
            format!("(n0,r{a})"),
        ],
    )?;
    nodes_hold(
        vm,
        &fe,
        &[
            format!("backend = \"{be}\""),
            "backend-id = \"0\"".into(),
            "state = \"1\"".into(),
            "handle = \"0\"".into(),
            format!("mac = \"{mac0}\""),
            "mtu = \"1500\"".into(),
            format!("(n{a},r0)"),
        ],
    )?;
    let out = expect(vm, "xl list -l na", "\"nics\": [")?;
    for want in [
        format!("\"mac\": \"{mac0}\""),
        "\"mac\": \"00:16:3e:00:00:42\"".into(),
        "\"bridge\": \"xenbr0\"".into(),
        "\"nictype\": \"vif\"".into(),
    ] {
        if !out.contains(&want) {
            return Err(format!("`xl list -l na` lacks {want}: {out}"));
        }
    }

    // network-attach: Xen's words for a bad spec, then a third vif, numbered after the
    // highest.
    let out = expect(
        vm,
        "xl network-attach na foo",
        "unrecognized argument `foo'\n",
    )?;
    if !out.ends_with(FAILED) {
        return Err(format!("`xl network-attach na foo`: {out:?}"));
    }
    expect(
        vm,
        "xl network-attach na type=ioemu",
        "trying to create PV or PVH guest with an emulated interface",
    )?;
    let out = shell(vm, "xl network-attach na ip=10.0.2.30")?;
    if !out.is_empty() {
        return Err(format!(
            "`xl network-attach na ip=10.0.2.30` printed {out:?}"
        ));
    }
    let mac2 = mac_of(vm, a, 2)?;
    if [mac0.as_str(), "00:16:3e:00:00:42"].contains(&mac2.as_str()) {
        return Err(format!("vif 2 has another vif's MAC {mac2}"));
    }
    nodes_hold(
        vm,
        &format!("/local/domain/0/backend/vif/{a}/2"),
        &["ip = \"10.0.2.30\"".into()],
    )?;
    expect(vm, "xl network-list na", &row(a, 2, &mac2))?;

    // network-detach: unknown devices in Xen's words; by MAC with -f; by id without.
    for dev in ["9", "00:16:3e:00:00:99", "x"] {
        expect(
            vm,
            &format!("xl network-detach na {dev}"),
            &format!("Unknown device {dev}.\n"),
        )?;
    }
    let out = shell(vm, "xl network-detach -f na 00:16:3e:00:00:42")?;
    if !out.is_empty() {
        return Err(format!("`xl network-detach -f` by MAC printed {out:?}"));
    }
    await_node(vm, &format!("/local/domain/0/backend/vif/{a}/1/mac"), None)?;
    await_node(vm, &format!("/local/domain/{a}/device/vif/1/mac"), None)?;
    let out = shell(vm, "xl network-detach na 2")?;
    let be2 = format!("/local/domain/0/backend/vif/{a}/2");
    let detached = if out.is_empty() {
        // A backend answered Closed: the vif went.
        await_node(vm, &format!("{be2}/mac"), None)?;
        "network-detach without -f: the backend closed, the vif went"
    } else {
        // None did (no netback): libxl's timeout, the vif left offline and closing.
        if !(out.contains("rc -9") && out.contains("libxl_device_nic_del failed.")) {
            return Err(format!("`xl network-detach na 2` printed {out:?}"));
        }
        await_node(vm, &format!("{be2}/online"), Some("0"))?;
        await_node(vm, &format!("{be2}/state"), Some("5"))?;
        let out = shell(vm, "xl network-detach -f na 2")?;
        if !out.is_empty() {
            return Err(format!("`xl network-detach -f na 2` printed {out:?}"));
        }
        await_node(vm, &format!("{be2}/mac"), None)?;
        "network-detach without -f: no backend closed (no netback), libxl's time-out; -f took it"
    };
    let out = shell(vm, "xl network-list na")?;
    if out != format!("{HEADER}{}", row(a, 0, &mac0)) {
        return Err(format!(
            "after the detaches `xl network-list na` printed {out:?}"
        ));
    }

    // Destroyed: both directories go. Created again (another id): the same MACs.
    shell(vm, "xl destroy na")?;
    await_node(vm, &format!("{be}/mac"), None)?;
    await_node(vm, &format!("{fe}/mac"), None)?;
    let b = created(vm, &create_line("na", "\"\", \"\""))?;
    if b == a {
        return Err(format!("created again as the same id {a}"));
    }
    if mac_of(vm, b, 0)? != mac0 {
        return Err("the MAC of vif 0 changed across destroy and create".into());
    }
    let mac1 = mac_of(vm, b, 1)?;
    if mac1 == mac0 {
        return Err("two vifs of one domain have one MAC".into());
    }
    // Another name, another MAC.
    let c = created(vm, &create_line("nb", "\"\""))?;
    if mac_of(vm, c, 0)? == mac0 {
        return Err("two names, one MAC".into());
    }
    // A MAC a live vif holds is refused to another (the bridge would misdeliver).
    let out = expect(
        vm,
        &format!("xl network-attach nb mac={mac0}"),
        &format!("mac={mac0} is in use by domain {b}'s vif 0"),
    )?;
    if !out.ends_with(FAILED) {
        return Err(format!("a MAC in use: {out:?}"));
    }

    // Rebooted, the domain gets its vifs again from its configuration, same MACs.
    let said = run(vm, "xl reboot na")?.replace('\r', "");
    let wanted = "\"na\" restarted as domain";
    let line = match said.lines().find(|l| l.contains(wanted)) {
        Some(l) => l.to_string(),
        None => vm.wait_for_line(wanted, std::time::Duration::from_secs(30))?,
    };
    let b2: u32 = line
        .rsplit(' ')
        .next()
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("no id in {line:?}"))?;
    if b2 == b {
        return Err(format!("restarted as the same id {b}"));
    }
    await_node(
        vm,
        &format!("/local/domain/0/backend/vif/{b2}/0/mac"),
        Some(&mac0),
    )?;
    await_node(
        vm,
        &format!("/local/domain/0/backend/vif/{b2}/1/mac"),
        Some(&mac1),
    )?;
    await_node(vm, &format!("/local/domain/0/backend/vif/{b}/0/mac"), None)?;
    expect(vm, "xl network-list na", &row(b2, 1, &mac1))?;
    shell(vm, "xl destroy na")?;
    shell(vm, "xl destroy nb")?;
    Ok(detached.to_string())
}

/// Create/destroy cycles with a vif in [`create_flat_icount`].
const FLAT_CYCLES: u32 = 12;
/// Domains made alive with a vif in [`create_flat_icount`].
const FLAT_DOMAINS: u32 = 20;
/// Creations whose best is one point of [`create_flat_icount`]'s comparison.
const SAMPLES: u32 = 3;

/// `net_xl_create_icount`: under `-icount shift=0` (virtual time: one nanosecond an
/// instruction), `time xl create` of an 8 MiB hello with a vif over [`FLAT_CYCLES`]
/// create/destroy cycles (the last at most 1.2× the first, issue 13's goal for creation),
/// then [`FLAT_DOMAINS`] live domains with a vif each, against domains without one made at
/// the same population: what the vif adds grows no faster than creation itself (xl reads
/// only the new domain's backend directory, never every domain's).
pub fn create_flat_icount(ctx: &Context) -> Result<(), String> {
    let mut vm = boot_with_disks(ctx, &[], true)?;
    let r = create_flat_steps(&mut vm);
    vm.kill();
    for line in r? {
        ctx.note(line);
    }
    Ok(())
}

fn create_flat_steps(vm: &mut Qemu) -> Result<Vec<String>, String> {
    let create = |vm: &mut Qemu, name: &str, vif: &str| -> Result<f64, String> {
        let line = format!("time xl create /etc/xen/hello.cfg 'name=\"{name}\"' memory=8{vif}");
        let out = run(vm, &line)?;
        if !out.contains(&format!("Domain {name} created")) {
            return Err(format!("`{line}`: {out:?}"));
        }
        timed_ms(&out).ok_or_else(|| format!("no time in {out:?}"))
    };
    let vif = " 'vif=[\"bridge=xenbr0\"]'";
    let mut cycles = Vec::new();
    for _ in 0..FLAT_CYCLES {
        cycles.push(create(vm, "c", vif)?);
        shell(vm, "xl destroy c")?;
    }
    let (c1, cn) = (cycles[0], cycles[cycles.len() - 1]);
    let mut notes = vec![format!(
        "xl create with a vif, create/destroy cycles: {c1:.2} ms the 1st, {cn:.2} ms the \
         {FLAT_CYCLES}th (ratio {:.2})",
        cn / c1
    )];
    let mut failed = Vec::new();
    if cn > 1.2 * c1 {
        failed.push("the cycles are not flat");
    }
    let best = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
    let mut plain = Vec::new();
    for i in 1..=SAMPLES {
        plain.push(create(vm, &format!("p{i}"), "")?);
    }
    let mut times = Vec::new();
    for i in 1..=FLAT_DOMAINS {
        times.push(create(vm, &format!("d{i}"), vif)?);
    }
    for i in 1..=SAMPLES {
        plain.push(create(vm, &format!("q{i}"), "")?);
    }
    let n = SAMPLES as usize;
    let (plain_first, plain_last) = (best(&plain[..n]), best(&plain[n..]));
    let (d1, dn) = (best(&times[..n]), best(&times[times.len() - n..]));
    let (added_first, added_last) = (d1 - plain_first, dn - plain_last);
    notes.push(format!(
        "xl create among live domains (best of {SAMPLES}): without a vif {plain_first:.2} ms \
         (1st) and {plain_last:.2} ms (after {}); with a vif {d1:.2} ms (1st) and {dn:.2} ms \
         (up to the {FLAT_DOMAINS}th): the vif adds {added_first:.2} ms, then \
         {added_last:.2} ms",
        FLAT_DOMAINS + SAMPLES,
    ));
    // As for disks (block_xl_create_icount): the vif's ~25 store requests each pass every
    // ring of dom0's store, so what it adds grows with creation itself; the bound catches
    // a toolstack that reads every domain's vifs.
    let growth = plain_last / plain_first;
    if added_last > 1.5 * growth * added_first.max(0.1) {
        failed.push("what the vif costs grows faster than creation");
    }
    if failed.is_empty() {
        Ok(notes)
    } else {
        Err(format!("{}: {}", failed.join(", "), notes.join("; ")))
    }
}
