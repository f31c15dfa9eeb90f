use super::*;
use crate::json::render;
use alloc::vec;

fn json_of(specs: &[&str]) -> String {
    match parse(specs) {
        Ok(d) => render(&to_json(&d, false)),
        Err(e) => panic!("{specs:?} refused: {e:?}"),
    }
}

fn errors(specs: &[&str]) -> Vec<String> {
    parse(specs).expect_err("should be refused")
}

/// Xen's own cases (`tools/xl/check-xl-disk-parse`, from xl-disk-configuration(5)): every
/// spelling of a disk gives the same `libxl_device_disk`.
#[test]
fn xens_examples() {
    let plain = "{\n    \"pdev_path\": \"/dev/vg/guest-volume\",\n    \"vdev\": \"hda\",\n    \
                 \"format\": \"raw\",\n    \"readwrite\": 1\n}\n";
    for specs in [
        &["/dev/vg/guest-volume,,hda"][..],
        &["/dev/vg/guest-volume,raw,hda,rw"],
        &["format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume"],
        &[
            "format=raw",
            "vdev=hda",
            "access=rw",
            "target=/dev/vg/guest-volume",
        ],
        &["raw:/dev/vg/guest-volume,hda,w"],
    ] {
        assert_eq!(json_of(specs), plain, "{specs:?}");
    }
    let cdrom = "{\n    \"pdev_path\": \"/root/image.iso\",\n    \"vdev\": \"hdc\",\n    \
                 \"format\": \"raw\",\n    \"removable\": 1,\n    \"is_cdrom\": 1\n}\n";
    for specs in [
        &["/root/image.iso,,hdc,cdrom"][..],
        &["/root/image.iso,,hdc,,cdrom"],
        &["/root/image.iso,raw,hdc,devtype=cdrom"],
        &["format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso"],
        &[
            "format=raw",
            "vdev=hdc",
            "access=ro",
            "devtype=cdrom",
            "target=/root/image.iso",
        ],
        &["raw:/root/image.iso,hdc:cdrom,ro"],
    ] {
        assert_eq!(json_of(specs), cdrom, "{specs:?}");
    }
    assert_eq!(
        json_of(&["backendtype=phy,vdev=xvdb,access=w,target=/dev/vg/guest-volume"]),
        "{\n    \"pdev_path\": \"/dev/vg/guest-volume\",\n    \"vdev\": \"xvdb\",\n    \
         \"backend\": \"phy\",\n    \"format\": \"raw\",\n    \"readwrite\": 1\n}\n"
    );
    let empty = "{\n    \"pdev_path\": \"\",\n    \"vdev\": \"hdc\",\n    \"format\": \"empty\",\n    \
                 \"removable\": 1,\n    \"is_cdrom\": 1\n}\n";
    for spec in [
        "devtype=cdrom,,,hdc",
        ",,hdc:cdrom,r",
        ",hdc:cdrom,r",
        "vdev=hdc,access=r,devtype=cdrom,target=",
        ",empty,hdc:cdrom,r",
    ] {
        assert_eq!(json_of(&[spec]), empty, "{spec}");
    }
    let no_target = "{\n    \"vdev\": \"hdc\",\n    \"format\": \"empty\",\n    \
                     \"removable\": 1,\n    \"is_cdrom\": 1\n}\n";
    for spec in [
        "vdev=hdc,access=r,devtype=cdrom,format=empty",
        "vdev=hdc,access=r,devtype=cdrom",
    ] {
        assert_eq!(json_of(&[spec]), no_target, "{spec}");
    }
    let iqn = "iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost";
    let iscsi = format!(
        "{{\n    \"pdev_path\": \"{iqn}\",\n    \"vdev\": \"xvda\",\n    \"format\": \"raw\",\n    \
         \"script\": \"block-iscsi\",\n    \"readwrite\": 1\n}}\n"
    );
    assert_eq!(json_of(&[&format!("iscsi:{iqn},xvda,w")]), iscsi);
    assert_eq!(
        json_of(&[&format!(
            "vdev=xvda,access=w,script=block-iscsi,target={iqn}"
        )]),
        iscsi
    );
    assert_eq!(
        json_of(&["drbd:app01,hda,w"]),
        "{\n    \"pdev_path\": \"app01\",\n    \"vdev\": \"hda\",\n    \"format\": \"raw\",\n    \
         \"script\": \"block-drbd\",\n    \"readwrite\": 1\n}\n"
    );
    assert_eq!(
        json_of(&["discard", "vdev=hda", "target=/some/disk/image.raw"]),
        "{\n    \"pdev_path\": \"/some/disk/image.raw\",\n    \"vdev\": \"hda\",\n    \
         \"format\": \"raw\",\n    \"readwrite\": 1,\n    \"discard_enable\": \"True\"\n}\n"
    );
    assert_eq!(
        json_of(&[
            "cdrom",
            "no-discard",
            "vdev=hda",
            "target=/some/disk/image.iso"
        ]),
        "{\n    \"pdev_path\": \"/some/disk/image.iso\",\n    \"vdev\": \"hda\",\n    \
         \"format\": \"raw\",\n    \"removable\": 1,\n    \"is_cdrom\": 1,\n    \
         \"discard_enable\": \"False\"\n}\n"
    );
    for (flag, value) in [("trusted", "True"), ("untrusted", "False")] {
        assert_eq!(
            json_of(&[flag, "vdev=hda", "target=/some/disk/image.raw"]),
            format!(
                "{{\n    \"pdev_path\": \"/some/disk/image.raw\",\n    \"vdev\": \"hda\",\n    \
                 \"format\": \"raw\",\n    \"readwrite\": 1,\n    \"trusted\": \"{value}\"\n}}\n"
            )
        );
    }
}

#[test]
fn the_issues_spellings() {
    for spec in [
        "format=raw, vdev=xvda, access=rw, target=/dev/vdb",
        "/dev/vdb,raw,xvda,rw",
        "phy:/dev/vdb,xvda,w",
        "/dev/vdb,,xvda",
        "vdev=xvda, target=/dev/vdb",
    ] {
        let d = parse(&[spec]).unwrap();
        assert_eq!(d.pdev_path.as_deref(), Some("/dev/vdb"), "{spec}");
        assert_eq!(d.vdev.as_deref(), Some("xvda"), "{spec}");
        assert_eq!(d.format, Format::Raw, "{spec}");
        assert!(d.readwrite, "{spec}");
        assert_eq!(xenia_problem(&d), None, "{spec}");
    }
    let ro = parse(&["/dev/vdb,raw,xvdb,ro"]).unwrap();
    assert!(!ro.readwrite);
    let ro = parse(&["access=r, vdev=xvdb, target=/dev/vdb"]).unwrap();
    assert!(!ro.readwrite);
    // target= eats the rest, commas and all.
    let t = parse(&["vdev=xvda, target=/images/a,b c"]).unwrap();
    assert_eq!(t.pdev_path.as_deref(), Some("/images/a,b c"));
    let t = parse(&["vdev=xvda, target=/images/a,"]).unwrap();
    assert_eq!(t.pdev_path.as_deref(), Some("/images/a"));
}

#[test]
fn xens_error_messages() {
    let e = |spec: &str| errors(&[spec]).join("\n");
    assert_eq!(
        e("foo"),
        "config parsing error in disk specification: no vdev specified in `foo'"
    );
    assert_eq!(
        e("/dev/vdb,qcow9,xvda"),
        "config parsing error in disk specification: unknown value for format: near `qcow9' \
         in `/dev/vdb,qcow9,xvda'"
    );
    assert_eq!(
        e("/dev/vdb,raw,xvda,rx"),
        "config parsing error in disk specification: unknown value for access: near `rx' in \
         `/dev/vdb,raw,xvda,rx'"
    );
    assert_eq!(
        e("/dev/vdb,raw,xvda,rw,extra"),
        "config parsing error in disk specification: too many positional parameters: near \
         `extra' in `/dev/vdb,raw,xvda,rw,extra'"
    );
    // The unknown-parameter pattern takes one character of the value, as Xen's does.
    assert_eq!(
        e("vdev=xvda,colour=blue,target=/dev/vdb"),
        "config parsing error in disk specification: unknown parameter: near `colour=b' in \
         `vdev=xvda,colour=blue,target=/dev/vdb'"
    );
    assert_eq!(
        e("vdev=xvda,vdev=xvdb,target=/dev/vdb"),
        "config parsing error in disk specification: vdev respecified: near `xvdb' in \
         `vdev=xvda,vdev=xvdb,target=/dev/vdb'"
    );
    assert_eq!(
        e("format=raw,format=qcow2,vdev=xvda,target=/x"),
        "config parsing error in disk specification: format respecified: near `qcow2' in \
         `format=raw,format=qcow2,vdev=xvda,target=/x'"
    );
    assert_eq!(
        e("devtype=floppy,vdev=xvda,target=/x"),
        "config parsing error in disk specification: unknown value for type: near \
         `devtype=floppy,' in `devtype=floppy,vdev=xvda,target=/x'"
    );
    assert_eq!(
        e("zip:/x,xvda,w"),
        "config parsing error in disk specification: unknown deprecated disk prefix: near \
         `zip:' in `zip:/x,xvda,w'"
    );
    assert_eq!(
        e("vdev=xvda,=x"),
        "config parsing error in disk specification: bad disk syntax: near `=x' in \
         `vdev=xvda,=x'"
    );
    assert_eq!(
        e("backendtype=nbd,vdev=xvda,target=/x"),
        "config parsing error in disk specification: unknown value for backendtype: near \
         `nbd' in `backendtype=nbd,vdev=xvda,target=/x'"
    );
    assert_eq!(
        e("vdev=xvda"),
        "config parsing error in disk specification: no target specified (and device not \
         removable) in `vdev=xvda'"
    );
    assert_eq!(
        e("hdc:floppy"),
        "config parsing error in disk specification: no vdev specified in `hdc:floppy'"
    );
    // Scanning goes on after an error, so a spec may earn several lines.
    assert_eq!(
        errors(&["format=qcow9,access=x,vdev=xvda,target=/x"]).len(),
        2
    );
}

#[test]
fn what_xenia_cannot_serve() {
    let p = |spec: &str| xenia_problem(&parse(&[spec]).unwrap()).unwrap_or_default();
    assert!(p("/x,qcow2,xvda").starts_with("format=qcow2 is not supported by Xenia"));
    assert!(p("backendtype=qdisk,vdev=xvda,target=/x").starts_with("backendtype=qdisk"));
    assert!(p("/x,,hdc,cdrom").starts_with("devtype=cdrom"));
    assert!(p("vdev=xvda,script=block-iscsi,target=iqn").starts_with("script=block-iscsi"));
    assert!(p("specification=virtio,vdev=xvda,target=/x").starts_with("specification=virtio"));
    assert!(p("backend=dd,vdev=xvda,target=/x").starts_with("backend=dd"));
    assert_eq!(
        p("/x,,xvd"),
        "Invalid or unsupported virtual disk identifier xvd"
    );
    assert_eq!(
        p("/x,,hde"),
        "Invalid or unsupported virtual disk identifier hde"
    );
    assert_eq!(p("backend=Domain-0,vdev=xvda,target=/x"), "");
    assert_eq!(p("/x,,xvda,ro"), "");
}

#[test]
fn device_numbers_as_libxl() {
    for (vdev, n) in [
        ("xvda", 51712),
        ("xvdb", 51728),
        ("xvda1", 51713),
        ("xvdp", 51952),
        ("xvdp15", 51967),
        ("xvdq", (1 << 28) | (16 << 8)),
        ("xvda16", (1 << 28) | 16),
        ("xvdaa", (1 << 28) | (26 << 8)),
        ("xvdz", (1 << 28) | (25 << 8)),
        ("d0p0", 51712),
        ("d1p2", 51730),
        ("d16p0", (1 << 28) | (16 << 8)),
        ("hda", 768),
        ("hdb", 832),
        ("hdc", 5632),
        ("hdd1", 5697),
        ("sda", 2048),
        ("sdb3", 2067),
        ("sdp", 2288),
        ("51712", 51712),
        ("0x10", 16),
    ] {
        assert_eq!(dev_number(vdev), Some(n), "{vdev}");
    }
    for bad in [
        "",
        "xvd",
        "xvda0",
        "xvda01",
        "xvda256",
        "hde",
        "hda64",
        "sdq",
        "sda16",
        "vda",
        "xvdA",
        "d0p256",
        "d1048576p0",
        "-1",
        "xvda-1",
        " 5",
        "xvdaaaaaa",
    ] {
        assert_eq!(dev_number(bad), None, "{bad}");
    }
    for (n, vdev) in [
        (51712, "xvda"),
        (51728, "xvdb"),
        (51713, "xvda1"),
        ((1 << 28) | (26 << 8), "xvdaa"),
        ((1 << 28) | (16 << 8) | 3, "xvdq3"),
    ] {
        assert_eq!(devid_to_vdev(n), vdev);
        assert_eq!(dev_number(vdev), Some(n));
    }
}

#[test]
fn nodes_as_libxl_writes_them() {
    let d = parse(&["/dev/vdb,raw,xvda,rw"]).unwrap();
    let ops = add_ops(7, 51712, &d);
    let fe = "/local/domain/7/device/vbd/51712";
    let be = "/local/domain/0/backend/vbd/7/51712";
    assert_eq!(ops[0], XsOp::Rm(fe.into()));
    assert_eq!(
        ops[2],
        XsOp::SetPerms(fe.into(), vec![(7, b'n'), (0, b'r')])
    );
    assert!(ops.contains(&XsOp::SetPerms(be.into(), vec![(0, b'n'), (7, b'r')])));
    let writes: Vec<(String, String)> = ops
        .iter()
        .filter_map(|o| match o {
            XsOp::Write(p, v) => Some((p.clone(), v.clone())),
            _ => None,
        })
        .collect();
    let get = |p: &str| {
        writes
            .iter()
            .find(|(k, _)| k == p)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {p}"))
    };
    for (key, value) in [
        ("frontend", fe),
        ("frontend-id", "7"),
        ("params", "/dev/vdb"),
        ("mode", "w"),
        ("type", "phy"),
        ("online", "1"),
        ("removable", "0"),
        ("bootable", "1"),
        ("dev", "xvda"),
        ("device-type", "disk"),
        ("state", "1"),
    ] {
        assert_eq!(get(&format!("{be}/{key}")), value, "{key}");
    }
    for (key, value) in [
        ("backend", be),
        ("backend-id", "0"),
        ("state", "1"),
        ("virtual-device", "51712"),
        ("device-type", "disk"),
    ] {
        assert_eq!(get(&format!("{fe}/{key}")), value, "{key}");
    }
    // The backend directory exists before anything is written in it, and the frontend's
    // before its nodes (so they inherit its permissions).
    let at = |op: &XsOp| ops.iter().position(|o| o == op).unwrap();
    assert!(at(&XsOp::Mkdir(be.into())) < at(&XsOp::Write(format!("{be}/state"), "1".into())));
    let ro = parse(&["vdb,raw,xvdb,ro"]).unwrap();
    let ops = add_ops(3, 51728, &ro);
    assert!(ops.contains(&XsOp::Write(
        "/local/domain/0/backend/vbd/3/51728/mode".into(),
        "r".into()
    )));
    // A target without a leading slash is under /dev, as Xen's block script has it.
    assert!(ops.contains(&XsOp::Write(
        "/local/domain/0/backend/vbd/3/51728/params".into(),
        "/dev/vdb".into()
    )));
    assert_eq!(
        remove_ops(3, 51728),
        vec![
            XsOp::Rm("/local/domain/3/device/vbd/51728".into()),
            XsOp::Rm("/local/domain/0/backend/vbd/3/51728".into()),
        ]
    );
}

#[test]
fn stored_json_has_libxls_defaults() {
    let d = parse(&["/dev/vdb,raw,xvda,rw"]).unwrap();
    assert_eq!(
        render(&to_json(&d, true)),
        "{\n    \"pdev_path\": \"/dev/vdb\",\n    \"vdev\": \"xvda\",\n    \"backend\": \"phy\",\n    \
         \"format\": \"raw\",\n    \"readwrite\": 1,\n    \"discard_enable\": \"True\",\n    \
         \"specification\": \"xen\",\n    \"colo_enable\": \"False\",\n    \
         \"colo_restore_enable\": \"False\",\n    \"trusted\": \"True\"\n}\n"
    );
}

/// Whatever the bytes, the scanner ends, and without panicking.
#[test]
fn never_panics() {
    let alphabet: Vec<&str> = vec![
        ",",
        "=",
        ":",
        " ",
        "\n",
        "\t",
        "a",
        "z",
        "0",
        "9",
        "-",
        "_",
        "/",
        "é",
        "€",
        "raw",
        "phy:",
        "target=",
        "vdev=",
        "format=",
        "access=",
        "cdrom",
        "devtype=",
        "xvda",
        "hdc:",
        "colo-port=",
        "iscsi:",
        "q",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let n = (next() % 12) as usize;
        let spec: String = (0..n)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if let Ok(d) = parse(&[&spec]) {
            let _ = xenia_problem(&d);
            if let Some(v) = d.vdev.as_deref() {
                let _ = dev_number(v);
            }
        }
    }
}

#[test]
fn a_released_domains_index_entries_go() {
    let d = parse(&["/images/a.img,raw,xvda,rw"]).unwrap();
    let r = parse(&["/dev/vdc,raw,xvdb,ro"]).unwrap();
    // A store of the nodes a domain with both disks has.
    let mut nodes: alloc::collections::BTreeMap<String, String> = Default::default();
    for (devid, disk) in [(51712, &d), (51728, &r)] {
        for op in add_ops(5, devid, disk)
            .into_iter()
            .chain(index_ops(5, devid, disk))
        {
            if let XsOp::Write(p, v) = op {
                nodes.insert(p, v);
            }
        }
    }
    assert_eq!(
        nodes
            .get("/tool/xenia/disks/images/a@2eimg/writer")
            .map(String::as_str),
        Some("5-51712")
    );
    struct Nodes(alloc::collections::BTreeMap<String, String>);
    impl ReadStore for Nodes {
        fn directory(&mut self, p: &str) -> Option<Vec<String>> {
            let prefix = format!("{p}/");
            let mut names: Vec<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|r| r.split('/').next().unwrap_or("").to_string())
                .collect();
            names.dedup();
            Some(names)
        }
        fn read(&mut self, p: &str) -> Option<Vec<u8>> {
            self.0.get(p).map(|v| v.clone().into_bytes())
        }
    }
    let ops = index_release_ops(5, &mut Nodes(nodes));
    assert_eq!(
        ops,
        vec![
            XsOp::Rm("/tool/xenia/disks/images/a@2eimg/writer".into()),
            XsOp::Rm("/tool/xenia/disks/images/a@2eimg/5-51712".into()),
            XsOp::Rm("/tool/xenia/disks/dev/vdc/5-51728".into()),
        ]
    );
    assert!(index_release_ops(6, &mut Nodes(Default::default())).is_empty());
}
