use super::*;
use crate::json::render;
use alloc::vec;

fn nic(specs: &[&str]) -> Nic {
    match parse("command line", specs) {
        Ok(p) => p.nic,
        Err(e) => panic!("{specs:?} refused: {e}"),
    }
}

fn error(specs: &[&str]) -> String {
    parse("command line", specs).expect_err("should be refused")
}

fn json_of(specs: &[&str]) -> String {
    render(&to_json(&nic(specs)))
}

/// Xen's own cases (`tools/xl/check-xl-vif-parse`: `xl -N network-attach 0 ...`).
#[test]
fn xens_rate_cases() {
    for bad in [
        "foo",
        "rate=foo",
        "rate=10MB",
        "rate=10MB/m",
        "rate=10ZB",
        "rate=10ZB/s",
        "rate=10ZB/m",
        "rate=4294967296b/s",
        "rate=4294967296Kb/s",
        "rate=4294967296Mb/s",
        "rate=4294967296Gb/s",
        "rate=0B/s",
        "rate=10Mb/s@foo",
        "rate=10Mb/s@10h",
        "rate=10MB/s@foo",
        "rate=10MB/s@10h",
        "rate=1B/s@4294967296us",
        "rate=1B/s@4294968ms",
        "rate=1B/s@4295s",
        "rate=1B/s@0us",
        "rate=4294967295GB/s@5us",
        "rate=4296MB/s@4294s",
        "rate=@",
    ] {
        assert!(parse("command line", &[bad]).is_err(), "{bad}");
    }
    let expect = |bytes: u64, us: u64| {
        format!(
            "{{\n    \"rate_bytes_per_interval\": {bytes},\n    \"rate_interval_usecs\": {us}\n}}\n"
        )
    };
    for (specs, bytes, us) in [
        (
            &[
                "rate=16000000b/s",
                "rate=16000000b/s@50ms",
                "rate=2000000B/s",
                "rate=2000000B/s@50ms",
            ][..],
            100_000,
            50_000,
        ),
        (
            &[
                "rate=16Kb/s",
                "rate=16Kb/s@50ms",
                "rate=2KB/s",
                "rate=2KB/s@50ms",
            ],
            100,
            50_000,
        ),
        (
            &[
                "rate=16Mb/s",
                "rate=16Mb/s@50ms",
                "rate=2MB/s",
                "rate=2MB/s@50ms",
            ],
            100_000,
            50_000,
        ),
        (
            &[
                "rate=8Gb/s",
                "rate=8Gb/s@50ms",
                "rate=1GB/s",
                "rate=1GB/s@50ms",
            ],
            50_000_000,
            50_000,
        ),
        (&["rate=80Mb/s@1s", "rate=10MB/s@1s"], 10_000_000, 1_000_000),
    ] {
        for spec in specs {
            assert_eq!(json_of(&[spec]), expect(bytes, us), "{spec}");
        }
    }
    assert_eq!(json_of(&["trusted"]), "{\n    \"trusted\": \"True\"\n}\n");
    assert_eq!(
        json_of(&["untrusted"]),
        "{\n    \"trusted\": \"False\"\n}\n"
    );
}

#[test]
fn xens_words_for_bad_specs() {
    assert_eq!(error(&["foo"]), "unrecognized argument `foo'");
    assert_eq!(
        error(&["mac=00:16:3e:zz:00:01"]),
        "Invalid parameter `mac'."
    );
    assert_eq!(error(&["mac=00:16:3e:00:01"]), "Invalid parameter `mac'.");
    assert_eq!(
        error(&["mac=00:16:3e:00:01:02:03"]),
        "Invalid parameter `mac'."
    );
    assert_eq!(
        error(&["mac=100:16:3e:00:01:02"]),
        "Invalid parameter `mac'."
    );
    assert_eq!(error(&["type=tap"]), "Invalid parameter `type'.");
    assert_eq!(
        error(&["mtu=big"]),
        "xl: failed to convert \"big\" to number"
    );
    assert_eq!(
        error(&["devid=-1"]),
        "xl: failed to convert \"-1\" to number"
    );
    assert_eq!(
        error(&["rate=10MB"]),
        "command line: config parsing error in vif: invalid rate in `10MB'"
    );
    assert_eq!(
        parse("/etc/xen/web.cfg", &["rate=0B/s"]).unwrap_err(),
        "/etc/xen/web.cfg: config parsing error in vif: rate overflow in `0B/s'"
    );
    assert_eq!(
        error(&["rate=1B/s@4295s"]),
        "command line: config parsing error in vif: replenishment interval overflow in `4295s'"
    );
    assert_eq!(
        error(&["rate=@"]),
        "command line: config parsing error in vif: no rate specified in `@'"
    );
    // The first bad piece is the one told.
    assert_eq!(
        error(&["bridge=xenbr0, mac=x, foo"]),
        "Invalid parameter `mac'."
    );
}

#[test]
fn every_key_of_the_man_page() {
    let n = nic(&[
        "mac=00:16:3E:74:3d:76, bridge=xenbr0, ip=10.0.2.30, type=vif, vifname=web0, \
         script=vif-bridge, gatewaydev=eth0, mtu=1400, backend=Domain-0, devid=3",
    ]);
    assert_eq!(n.mac, Some([0x00, 0x16, 0x3e, 0x74, 0x3d, 0x76]));
    assert_eq!(n.bridge.as_deref(), Some("xenbr0"));
    assert_eq!(n.ip.as_deref(), Some("10.0.2.30"));
    assert_eq!(n.nictype, NicType::Vif);
    assert_eq!(n.ifname.as_deref(), Some("web0"));
    assert_eq!(n.script.as_deref(), Some("vif-bridge"));
    assert_eq!(n.gatewaydev.as_deref(), Some("eth0"));
    assert_eq!(n.mtu, Some(1400));
    assert_eq!(n.devid, Some(3));
    assert_eq!(xenia_problem(&n), None);
    // The components of `network-attach`, and one-digit groups (xl's strtoul reads them).
    let n = nic(&["mac=0:16:3e:0:0:a", "bridge=xenbr0"]);
    assert_eq!(n.mac, Some([0, 0x16, 0x3e, 0, 0, 0xa]));
    // The empty spec is a vif with every default.
    assert_eq!(nic(&[""]), Nic::default());
    assert_eq!(nic(&[" , ,"]), Nic::default());
    // Deprecated and unsupported keys are told, not refused.
    let p = parse("command line", &["netdev=eth1,accel=x"]).unwrap();
    assert_eq!(p.nic.gatewaydev.as_deref(), Some("eth1"));
    assert_eq!(
        p.warnings,
        [
            "the netdev parameter is deprecated, please use gatewaydev instead",
            "the accel parameter for vifs is currently not supported"
        ]
    );
}

#[test]
fn what_xenia_cannot_serve_is_refused_with_the_reason() {
    let problem = |spec: &str| xenia_problem(&nic(&[spec])).unwrap_or_default();
    assert!(
        problem("type=ioemu")
            .starts_with("trying to create PV or PVH guest with an emulated interface")
    );
    assert!(problem("model=e1000").starts_with("model=e1000 is not supported by Xenia"));
    assert!(problem("script=vif-route").starts_with("script=vif-route is not supported by Xenia"));
    assert_eq!(problem("script=/etc/xen/scripts/vif-bridge"), "");
    assert!(problem("rate=10Mb/s").contains("no rate limiting"));
    assert!(problem("vlan=10").contains("no VLANs"));
    assert!(problem("colo_sock_mirror_id=1").contains("COLO"));
    assert!(problem("forwarddev=eth0").contains("COLO"));
    assert!(problem("backend=driverdom").contains("Domain-0 only"));
    assert_eq!(problem("backend=0"), "");
    assert!(problem("bridge=xenbr1").contains("one bridge, xenbr0"));
    assert!(problem("mtu=9000").contains("at most 1514 bytes"));
    assert!(problem("mtu=67").contains("mtu 68 to 1500"));
    assert_eq!(problem("mtu=1500"), "");
    assert!(problem("mac=01:16:3e:00:00:01").contains("multicast"));
    assert!(problem("devid=4294967295").contains("at most 2147483647"));
    assert!(problem("vifname=a/b").contains("interface name"));
    assert!(problem("vifname=abcdefghijklmnop").contains("interface name"));
    let long = format!("ip={}", "1".repeat(VALUE_MAX + 1));
    assert!(problem(&long).contains("at most 255 bytes"));
}

#[test]
fn generated_macs_are_xens_stable_and_distinct() {
    let a0 = generated_mac("web", 0);
    assert_eq!(&a0[..3], &XEN_OUI);
    assert_eq!(a0[3] & 0x80, 0);
    assert_eq!(a0, generated_mac("web", 0), "stable");
    assert_ne!(a0, generated_mac("web", 1));
    assert_ne!(a0, generated_mac("web2", 0));
    assert_ne!(generated_mac("ab", 0), generated_mac("a", 0));
    // A fixed value: the same on every build and machine.
    assert_eq!(mac_text(&generated_mac("web", 0)), mac_text(&a0));
    let fixed = generated_mac("", 0);
    assert_eq!(fixed, generated_mac("", 0));
    // Many names: few collisions (23 bits).
    let mut seen: Vec<[u8; 6]> = (0..2000)
        .map(|i| generated_mac(&format!("dom{i}"), 0))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert!(seen.len() >= 1995, "{}", seen.len());
    // Resolve fills libxl's defaults; a given MAC is kept, all-zero is none.
    let r = resolve(&nic(&[""]), "web", 2);
    assert_eq!(r.mac, Some(generated_mac("web", 2)));
    assert_eq!(r.devid, Some(2));
    assert_eq!(r.mtu, Some(1500));
    assert_eq!(r.bridge.as_deref(), Some("xenbr0"));
    assert_eq!(r.script.as_deref(), Some("/etc/xen/scripts/vif-bridge"));
    assert_eq!(r.nictype, NicType::Vif);
    assert_eq!(r.trusted, Some(true));
    let r = resolve(&nic(&["mac=00:16:3e:00:00:01"]), "web", 0);
    assert_eq!(r.mac, Some([0, 0x16, 0x3e, 0, 0, 1]));
    let r = resolve(&nic(&["mac=00:00:00:00:00:00"]), "web", 0);
    assert_eq!(r.mac, Some(generated_mac("web", 0)));
}

#[test]
fn add_ops_are_libxls_nodes_and_permissions() {
    let n = resolve(&nic(&["mac=00:16:3e:00:00:07,ip=10.0.2.30"]), "web", 1);
    let ops = add_ops(5, 1, &n);
    let fe = "/local/domain/5/device/vif/1";
    let be = "/local/domain/0/backend/vif/5/1";
    let w = |p: &str, v: &str| XsOp::Write(p.to_string(), v.to_string());
    assert_eq!(
        ops,
        vec![
            XsOp::Rm(fe.into()),
            XsOp::Mkdir(fe.into()),
            XsOp::SetPerms(fe.into(), vec![(5, b'n'), (0, b'r')]),
            w(&format!("{fe}/backend"), be),
            w(&format!("{fe}/backend-id"), "0"),
            w(&format!("{fe}/state"), "1"),
            w(&format!("{fe}/handle"), "1"),
            w(&format!("{fe}/mac"), "00:16:3e:00:00:07"),
            w(&format!("{fe}/trusted"), "1"),
            w(&format!("{fe}/mtu"), "1500"),
            XsOp::SetPerms(format!("{fe}/mtu"), vec![(0, b'n'), (5, b'r')]),
            XsOp::Rm(be.into()),
            XsOp::Mkdir(be.into()),
            XsOp::SetPerms(be.into(), vec![(0, b'n'), (5, b'r')]),
            w(&format!("{be}/frontend"), fe),
            w(&format!("{be}/frontend-id"), "5"),
            w(&format!("{be}/online"), "1"),
            w(&format!("{be}/state"), "1"),
            w(&format!("{be}/script"), "/etc/xen/scripts/vif-bridge"),
            w(&format!("{be}/mac"), "00:16:3e:00:00:07"),
            w(&format!("{be}/ip"), "10.0.2.30"),
            w(&format!("{be}/bridge"), "xenbr0"),
            w(&format!("{be}/handle"), "1"),
            w(&format!("{be}/type"), "vif"),
            w(&format!("{be}/hotplug-status"), "connected"),
        ]
    );
    // Another MTU is the backend's too.
    let n = resolve(&nic(&["mtu=1400,vifname=web0"]), "web", 0);
    let ops = add_ops(5, 0, &n);
    let be = "/local/domain/0/backend/vif/5/0";
    assert!(ops.contains(&w(&format!("{be}/mtu"), "1400")));
    assert!(ops.contains(&w(&format!("{be}/vifname"), "web0")));
    assert_eq!(
        remove_ops(5, 0),
        vec![
            XsOp::Rm("/local/domain/5/device/vif/0".into()),
            XsOp::Rm(be.into())
        ]
    );
}

#[test]
fn devids_ignore_what_is_not_an_id() {
    let names: Vec<String> = ["2", "0", "10", "x", "+1", "01", "4294967295", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(devids(&names), [0, 1, 2, 10]);
}

#[test]
fn to_json_as_libxl_prints_it() {
    let r = resolve(&nic(&["bridge=xenbr0"]), "web", 0);
    let mac = mac_text(&generated_mac("web", 0));
    assert_eq!(
        render(&to_json(&r)),
        format!(
            "{{\n    \"devid\": 0,\n    \"mtu\": 1500,\n    \"mac\": \"{mac}\",\n    \
             \"bridge\": \"xenbr0\",\n    \"script\": \"/etc/xen/scripts/vif-bridge\",\n    \
             \"nictype\": \"vif\",\n    \"trusted\": \"True\"\n}}\n"
        )
    );
    assert_eq!(
        render(&to_json(&nic(&[""]))),
        render(&Json::Map(Vec::new()))
    );
}

/// Hostile text: long, odd bytes, many pieces; no panic, one pass.
#[test]
fn hostile_specs_do_not_panic() {
    let long = "a".repeat(100_000);
    let big_rate = format!("rate={}B/s@{}s", "9".repeat(5000), "9".repeat(5000));
    let many = "trusted,".repeat(10_000);
    for spec in [
        long.as_str(),
        &big_rate,
        &many,
        "mac=",
        "mac=::::::",
        "mac=ff:ff:ff:ff:ff:ff:",
        "mac=é:16:3e:00:00:01",
        "rate=é",
        "rate=1é/s",
        "rate=1B/s@é",
        "rate=1B/s@1é",
        "=",
        "===,,,=",
        "devid=99999999999999999999",
        "mtu=\u{0}",
        "colo_=",
    ] {
        let _ = parse("command line", &[spec]).map(|p| xenia_problem(&p.nic));
    }
    assert!(parse("command line", &[&many]).is_ok());
}

#[test]
fn the_mac_index_names_holders_and_is_released_with_the_domain() {
    let mac = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x42];
    assert_eq!(mac_index_path(&mac), "/tool/xenia/macs/00163e000042");
    assert_eq!(parse_holder(b"5-1"), Some((5, 1)));
    for bad in [
        &b"5"[..],
        b"-1",
        b"5-",
        b"x-1",
        b"5-+1",
        b"70000-1",
        b"\xff-1",
    ] {
        assert_eq!(parse_holder(bad), None, "{bad:?}");
    }
    let n = resolve(&nic(&["mac=00:16:3e:00:00:42"]), "web", 1);
    assert_eq!(
        index_ops(5, 1, &n),
        vec![XsOp::Write(
            "/tool/xenia/macs/00163e000042".into(),
            "5-1".into()
        )]
    );
    struct Nodes(alloc::collections::BTreeMap<String, String>);
    impl crate::disk::ReadStore for Nodes {
        fn directory(&mut self, path: &str) -> Option<Vec<String>> {
            let prefix = format!("{path}/");
            let mut v: Vec<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|r| r.split('/').next().unwrap_or("").to_string())
                .collect();
            v.dedup();
            Some(v)
        }
        fn read(&mut self, path: &str) -> Option<Vec<u8>> {
            self.0.get(path).map(|v| v.clone().into_bytes())
        }
    }
    let mut nodes = alloc::collections::BTreeMap::new();
    let be = "/local/domain/0/backend/vif/5";
    nodes.insert(format!("{be}/0/mac"), "00:16:3e:00:00:01".to_string());
    nodes.insert(format!("{be}/1/mac"), "00:16:3e:00:00:42".to_string());
    nodes.insert(format!("{be}/2/mac"), "garbage".to_string());
    nodes.insert("/tool/xenia/macs/00163e000001".into(), "5-0".into());
    // Another domain holds this one now: not ours to remove.
    nodes.insert("/tool/xenia/macs/00163e000042".into(), "6-0".into());
    assert_eq!(
        index_release_ops(5, &mut Nodes(nodes)),
        vec![XsOp::Rm("/tool/xenia/macs/00163e000001".into())]
    );
    assert!(index_release_ops(7, &mut Nodes(Default::default())).is_empty());
}
