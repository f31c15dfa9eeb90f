//! Vifs: create with `vif=`, network-attach, network-list, network-detach, list -l.

use super::*;
use dom0_tools::json::Json;
use dom0_tools::vif::{generated_mac, mac_text};

const FE7: &str = "/local/domain/7/device/vif/0";
const BE7: &str = "/local/domain/0/backend/vif/7/0";

fn with_vif_cfg(f: &mut Fake, name: &str, vifs: &str) {
    f.files.insert(
        format!("/etc/xen/{name}.cfg"),
        format!("name = \"{name}\"\nkernel = \"/boot/web.elf\"\nmemory = 16\nvif = [ {vifs} ]\n")
            .into_bytes(),
    );
}

fn attach(f: &mut Fake, dom: &str, spec: &[&str]) -> (VerbResult, String, String) {
    let spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
    run(f, |s, io| network_attach(s, io, dom, &spec, false))
}

fn detach(f: &mut Fake, dom: &str, dev: &str, force: bool) -> (VerbResult, String, String) {
    run(f, |s, io| network_detach(s, io, dom, dev, force))
}

fn node(f: &Fake, path: &str) -> Option<String> {
    f.tree.get(path).cloned()
}

#[test]
fn create_writes_the_nodes_as_libxl_before_the_domain_runs() {
    let mut f = Fake::new();
    with_vif_cfg(&mut f, "web", "'bridge=xenbr0'");
    let (r, out, err) = create(&mut f, "web.cfg", &[], false);
    assert_eq!(r, Ok(7), "{err}");
    assert_eq!(out, "Domain web created with id 7\n");
    assert!(f.built_cfg.as_ref().unwrap().2, "not built paused");
    let mac = mac_text(&generated_mac("web", 0));
    for (key, value) in [
        ("frontend", FE7),
        ("frontend-id", "7"),
        ("online", "1"),
        ("state", "1"),
        ("script", "/etc/xen/scripts/vif-bridge"),
        ("mac", mac.as_str()),
        ("bridge", "xenbr0"),
        ("handle", "0"),
        ("type", "vif"),
        ("hotplug-status", "connected"),
    ] {
        assert_eq!(
            node(&f, &format!("{BE7}/{key}")).as_deref(),
            Some(value),
            "{key}"
        );
    }
    for (key, value) in [
        ("backend", BE7),
        ("backend-id", "0"),
        ("state", "1"),
        ("handle", "0"),
        ("mac", mac.as_str()),
        ("mtu", "1500"),
        ("trusted", "1"),
    ] {
        assert_eq!(
            node(&f, &format!("{FE7}/{key}")).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(f.perms[FE7], ["n7", "r0"]);
    assert_eq!(f.perms[&format!("{FE7}/mtu")], ["n0", "r7"]);
    assert_eq!(f.perms[BE7], ["n0", "r7"]);
    // Started after the nodes were written: `create` succeeded, and the fake's unpause
    // fails unless the domain was built paused.
}

#[test]
fn the_mac_is_stable_for_a_name_across_destroy_and_create() {
    let mut f = Fake::new();
    with_vif_cfg(&mut f, "web", "'', ''");
    assert_eq!(create(&mut f, "web.cfg", &[], false).0, Ok(7));
    let first: Vec<Option<String>> = (0..2)
        .map(|i| node(&f, &format!("/local/domain/0/backend/vif/7/{i}/mac")))
        .collect();
    assert_ne!(first[0], first[1], "two vifs, two MACs");
    // Destroyed (its nodes go with it), created again: the same addresses.
    f.tree.retain(|k, _| !k.contains("/7"));
    f.domains.retain(|d| d.dom != 7);
    assert_eq!(create(&mut f, "web.cfg", &[], false).0, Ok(7));
    let again: Vec<Option<String>> = (0..2)
        .map(|i| node(&f, &format!("/local/domain/0/backend/vif/7/{i}/mac")))
        .collect();
    assert_eq!(first, again);
    // A MAC given is kept.
    with_vif_cfg(&mut f, "w2", "'mac=00:16:3e:12:34:56'");
    f.tree.retain(|k, _| !k.contains("/7"));
    f.domains.retain(|d| d.dom != 7);
    assert_eq!(create(&mut f, "w2.cfg", &[], false).0, Ok(7));
    assert_eq!(
        node(&f, &format!("{BE7}/mac")).as_deref(),
        Some("00:16:3e:12:34:56")
    );
}

#[test]
fn a_bad_vif_refuses_the_config_before_anything_is_built() {
    let mut f = Fake::new();
    with_vif_cfg(&mut f, "web", "'model=e1000'");
    let (r, _, _) = create(&mut f, "web.cfg", &[], false);
    let e = r.unwrap_err();
    assert!(
        e.contains("cannot attach vif 0: model=e1000 is not supported by Xenia"),
        "{e}"
    );
    with_vif_cfg(&mut f, "web", "'mac=00:16'");
    let e = create(&mut f, "web.cfg", &[], false).0.unwrap_err();
    assert!(e.ends_with("Invalid parameter `mac'."), "{e}");
    assert!(f.log.is_empty(), "{:?}", f.log);
    assert!(!f.tree.keys().any(|k| k.contains("/vif/")));
}

#[test]
fn network_attach_says_what_xen_says() {
    let mut f = Fake::new();
    let (r, _, err) = attach(&mut f, "hello", &["mac=zz"]);
    assert_eq!(r, Err(String::new()));
    assert_eq!(err, "Invalid parameter `mac'.\n");
    let (_, _, err) = attach(&mut f, "hello", &["foo"]);
    assert_eq!(err, "unrecognized argument `foo'\n");
    let (_, _, err) = attach(&mut f, "hello", &["rate=10MB"]);
    assert_eq!(
        err,
        "command line: config parsing error in vif: invalid rate in `10MB'\n"
    );
    let (_, _, err) = attach(&mut f, "nosuch", &["bridge=xenbr0"]);
    assert_eq!(err, "nosuch is an invalid domain identifier\n");
    let (_, _, err) = attach(&mut f, "hello", &["type=ioemu"]);
    assert!(
        err.starts_with(
            "libxl: error: libxl_device.c: Domain 3:trying to create PV or PVH guest with an \
             emulated interface"
        ),
        "{err}"
    );
    assert!(err.ends_with("libxl_device_nic_add failed.\n"), "{err}");
    let (_, _, err) = attach(&mut f, "hello", &["rate=10Mb/s"]);
    assert!(err.contains("no rate limiting"), "{err}");
    let (_, _, err) = attach(&mut f, "0", &[""]);
    assert!(err.contains("gives none to itself"), "{err}");
    assert!(f.tree.is_empty(), "{:?}", f.tree);
    // -N: the vif as libxl's JSON, nothing attached (Xen's check-xl-vif-parse).
    let spec = vec!["rate=16Mb/s".to_string()];
    let (r, out, _) = run(&mut f, |s, io| network_attach(s, io, "0", &spec, true));
    assert_eq!(r, Ok(()));
    assert_eq!(
        out,
        "vif: {\n    \"rate_bytes_per_interval\": 100000,\n    \"rate_interval_usecs\": 50000\n}\n\n"
    );
    assert!(f.tree.is_empty());
    // Warnings go to stderr, the vif is attached.
    let (r, _, err) = attach(&mut f, "hello", &["netdev=eth0"]);
    assert_eq!(r, Ok(()));
    assert_eq!(
        err,
        "the netdev parameter is deprecated, please use gatewaydev instead\n"
    );
}

#[test]
fn attach_numbers_after_the_highest_and_refuses_a_taken_id() {
    let mut f = Fake::new();
    assert_eq!(attach(&mut f, "hello", &[""]).0, Ok(()));
    assert_eq!(attach(&mut f, "hello", &["devid=5"]).0, Ok(()));
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:09"]).0,
        Ok(())
    );
    let be = |i: u32| format!("/local/domain/0/backend/vif/3/{i}");
    assert!(node(&f, &format!("{}/handle", be(0))).is_some());
    assert_eq!(node(&f, &format!("{}/handle", be(5))).as_deref(), Some("5"));
    assert_eq!(
        node(&f, &format!("{}/mac", be(6))).as_deref(),
        Some("00:16:3e:00:00:09")
    );
    // Each id's MAC is its own, made from the name "hello".
    assert_eq!(
        node(&f, &format!("{}/mac", be(5))),
        Some(mac_text(&generated_mac("hello", 5)))
    );
    let (r, _, err) = attach(&mut f, "hello", &["devid=5"]);
    assert_eq!(r, Err(String::new()));
    assert!(err.contains("device already exists in xenstore"), "{err}");
    // Transactions: made again on conflict.
    f.tx_support = true;
    f.tx_conflicts = 2;
    assert_eq!(attach(&mut f, "hello", &[""]).0, Ok(()));
    assert_eq!(f.tx_commits, 1);
    assert!(node(&f, &format!("{}/mac", be(7))).is_some());
}

#[test]
fn network_list_in_xls_columns() {
    let mut f = Fake::new();
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:01"]).0,
        Ok(())
    );
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:02"]).0,
        Ok(())
    );
    let fe = "/local/domain/3/device/vif/0";
    f.tree.insert(format!("{fe}/state"), "4".into());
    f.tree.insert(format!("{fe}/event-channel"), "9".into());
    f.tree.insert(format!("{fe}/tx-ring-ref"), "8".into());
    f.tree.insert(format!("{fe}/rx-ring-ref"), "768".into());
    let doms = vec!["hello".to_string(), "nosuch".to_string()];
    let (r, out, err) = run(&mut f, |s, io| network_list(s, io, &doms));
    assert_eq!(r, Ok(()));
    assert_eq!(
        out,
        "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n\
         0   0  00:16:3e:00:00:01     0     4      9     8/768         /local/domain/0/backend/vif/3/0\n\
         1   0  00:16:3e:00:00:02     1     1     -1    -1/-1          /local/domain/0/backend/vif/3/1\n"
    );
    assert_eq!(err, "nosuch is an invalid domain identifier\n");
}

#[test]
fn network_detach_by_id_or_mac_waits_for_the_backend() {
    let mut f = Fake::new();
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:01"]).0,
        Ok(())
    );
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:02"]).0,
        Ok(())
    );
    let be0 = "/local/domain/0/backend/vif/3/0";
    let fe0 = "/local/domain/3/device/vif/0";
    // No backend answers: libxl's 10 s, then a failure, the vif still there.
    let (r, _, err) = detach(&mut f, "hello", "0", false);
    assert_eq!(r, Err(String::new()));
    assert!(
        err.ends_with("libxl_device_nic_del failed.\n") && err.contains("rc -9"),
        "{err}"
    );
    assert_eq!(f.slept_ms, 10_000);
    assert_eq!(node(&f, &format!("{be0}/state")).as_deref(), Some("5"));
    assert_eq!(node(&f, &format!("{be0}/online")).as_deref(), Some("0"));
    // A backend that closes: both directories go; the other vif stays.
    f.backend_closes = true;
    let (r, _, err) = detach(&mut f, "hello", "00:16:3E:00:00:01", false);
    assert_eq!(r, Ok(()), "{err}");
    assert!(
        !f.tree
            .keys()
            .any(|k| k.starts_with(be0) || k.starts_with(fe0))
    );
    assert!(node(&f, "/local/domain/0/backend/vif/3/1/mac").is_some());
    // Gone now; unknown ids and MACs in xl's words.
    for dev in ["0", "00:16:3e:00:00:01", "7", "x", "", "00:16", "-1", "+1"] {
        let (r, _, err) = detach(&mut f, "hello", dev, false);
        assert_eq!(r, Err(String::new()), "{dev}");
        assert_eq!(err, format!("Unknown device {dev}.\n"));
    }
    // -f: no wait, frontend first.
    f.backend_closes = false;
    f.slept_ms = 0;
    f.log.clear();
    let (r, _, _) = detach(&mut f, "hello", "1", true);
    assert_eq!(r, Ok(()));
    assert_eq!(f.slept_ms, 0);
    assert_eq!(
        f.log.first().map(String::as_str),
        Some("rm /local/domain/3/device/vif/1")
    );
    assert!(!f.tree.keys().any(|k| k.contains("/vif/")), "{:?}", f.tree);
}

#[test]
fn list_long_shows_the_nics_after_the_disks() {
    let mut f = Fake::new();
    with_vif_cfg(&mut f, "web", "'ip=10.0.2.30'");
    assert_eq!(create(&mut f, "web.cfg", &[], false).0, Ok(7));
    let long = ListOpts {
        long: true,
        ..ListOpts::default()
    };
    let (r, out, _) = run(&mut f, |s, io| list(s, io, long, Some("web")));
    r.unwrap();
    let Json::Array(doms) = json::parse(&out).expect("JSON") else {
        panic!("{out}")
    };
    let config = doms[0].get("config").unwrap();
    assert_eq!(
        config.keys(),
        ["c_info", "b_info", "nics", "on_reboot", "on_soft_reset"]
    );
    let nic = match config.get("nics") {
        Some(Json::Array(n)) => n[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        nic.keys(),
        [
            "devid", "mtu", "mac", "ip", "bridge", "script", "nictype", "trusted"
        ]
    );
    assert_eq!(
        nic.get("mac"),
        Some(&Json::str(&mac_text(&generated_mac("web", 0))))
    );
    // create -n: the vif as parsed.
    let (r, out, _) = run(&mut f, |s, io| create_dry_run(s, io, "web.cfg", &[], true));
    r.unwrap();
    assert!(
        out.contains(
            "\"nics\": [\n        {\n            \"devid\": 0,\n            \"ip\": \"10.0.2.30\""
        ),
        "{out}"
    );
}

/// The domain owns its frontend directory: what it writes there does not change what xl
/// lists or detaches.
#[test]
fn a_hostile_frontend_does_not_mislead_xl() {
    let mut f = Fake::new();
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:01"]).0,
        Ok(())
    );
    let fe = "/local/domain/3/device/vif/0";
    let be = "/local/domain/0/backend/vif/3/0";
    f.tree
        .insert(format!("{fe}/mac"), "ff:ff:ff:ff:ff:ff".into());
    f.tree.insert(
        format!("{fe}/backend"),
        "/local/domain/0/backend/vif/9/0".into(),
    );
    f.tree
        .insert(format!("{fe}/state"), "99999999999999999999".into());
    f.tree.insert(format!("{fe}/tx-ring-ref"), "-5".into());
    f.tree
        .insert("/local/domain/3/device/vif/7/mac".into(), "x".into());
    let doms = vec!["hello".to_string()];
    let (_, out, _) = run(&mut f, |s, io| network_list(s, io, &doms));
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.ends_with(&format!(
            "0   0  00:16:3e:00:00:01     0    -1     -1    -1/-1          {be}\n"
        )),
        "{out}"
    );
    f.tree.retain(|k, _| !k.starts_with(fe));
    let (r, _, err) = detach(&mut f, "hello", "00:16:3e:00:00:01", true);
    assert_eq!(r, Ok(()), "{err}");
    assert!(!f.tree.keys().any(|k| k.starts_with(be)));
}

/// Two live vifs never share a MAC (the bridge would deliver one's frames to the other);
/// a MAC whose holder is gone is free again.
#[test]
fn a_mac_in_use_is_refused_and_freed_with_its_vif() {
    let mut f = Fake::new();
    f.add(4, "other", 16);
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:42"]).0,
        Ok(())
    );
    assert_eq!(
        node(&f, "/tool/xenia/macs/00163e000042").as_deref(),
        Some("3-0")
    );
    let (r, _, err) = attach(&mut f, "other", &["mac=00:16:3e:00:00:42"]);
    assert_eq!(r, Err(String::new()));
    assert!(
        err.contains("mac=00:16:3e:00:00:42 is in use by domain 3's vif 0"),
        "{err}"
    );
    assert!(!f.tree.keys().any(|k| k.contains("/vif/4/")));
    // Twice in one configuration: the second is refused, the domain destroyed again.
    with_vif_cfg(
        &mut f,
        "d",
        "'mac=00:16:3e:00:00:07', 'mac=00:16:3e:00:00:07'",
    );
    let e = create(&mut f, "d.cfg", &[], false).0.unwrap_err();
    assert!(e.contains("is in use by domain 7's vif 0"), "{e}");
    assert!(f.log.contains(&"destroy 7".to_string()));
    // Detached, its entry goes, and the MAC may be given again.
    let (r, _, _) = detach(&mut f, "hello", "0", true);
    assert_eq!(r, Ok(()));
    assert_eq!(node(&f, "/tool/xenia/macs/00163e000042"), None);
    assert_eq!(
        attach(&mut f, "other", &["mac=00:16:3e:00:00:42"]).0,
        Ok(())
    );
    // A stale entry (its domain's backends gone) does not refuse.
    f.tree
        .retain(|k, _| !k.starts_with("/local/domain/0/backend/vif/4"));
    assert_eq!(
        attach(&mut f, "hello", &["mac=00:16:3e:00:00:42"]).0,
        Ok(())
    );
    assert_eq!(
        node(&f, "/tool/xenia/macs/00163e000042").as_deref(),
        Some("3-0")
    );
}
