//! Disks: create with `disk=`, block-attach, block-list, block-detach, list -l.

use super::*;
use dom0_tools::json::Json;

use super::super::block::target_problem;

const FE7: &str = "/local/domain/7/device/vbd/51712";
const BE7: &str = "/local/domain/0/backend/vbd/7/51712";

fn with_disk_cfg(f: &mut Fake, name: &str, disks: &str) {
    f.files.insert(
        format!("/etc/xen/{name}.cfg"),
        format!("name = \"{name}\"\nkernel = \"/boot/web.elf\"\nmemory = 16\ndisk = [ {disks} ]\n")
            .into_bytes(),
    );
}

fn attach(f: &mut Fake, dom: &str, spec: &[&str]) -> (VerbResult, String, String) {
    let spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
    run(f, |s, io| block_attach(s, io, dom, &spec, false))
}

fn node(f: &Fake, path: &str) -> Option<String> {
    f.tree.get(path).cloned()
}

#[test]
fn create_writes_the_nodes_as_libxl_before_the_domain_runs() {
    let mut f = Fake::new();
    with_disk_cfg(
        &mut f,
        "d",
        "'format=raw, vdev=xvda, access=rw, target=/dev/vdb'",
    );
    let (r, out, err) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(r, Ok(7), "{err}");
    assert_eq!(out, "Domain d created with id 7\n");
    // Built paused, the nodes written, then started (the fake's unpause fails unless the
    // domain was paused).
    assert!(f.built_cfg.as_ref().unwrap().2, "not built paused");
    for (key, value) in [
        ("frontend", FE7),
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
        ("virtual-device", "51712"),
        ("device-type", "disk"),
    ] {
        assert_eq!(
            node(&f, &format!("{FE7}/{key}")).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(f.perms[FE7], ["n7", "r0"]);
    assert_eq!(f.perms[BE7], ["n0", "r7"]);
    // No transactions in this store: plain writes, no commit.
    assert_eq!(f.tx_commits, 0);
}

#[test]
fn create_with_a_paused_domain_leaves_it_paused() {
    let mut f = Fake::new();
    with_disk_cfg(&mut f, "d", "'/dev/vdb,raw,xvda,rw'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], true);
    assert_eq!(r, Ok(7));
    assert!(f.domains.iter().any(|d| d.dom == 7 && d.paused));
    assert!(node(&f, &format!("{BE7}/params")).is_some());
}

#[test]
fn create_refuses_a_missing_target_before_building() {
    let mut f = Fake::new();
    with_disk_cfg(&mut f, "d", "'/dev/vdz,raw,xvda,rw'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"d\": disk xvda: /dev/vdz does not exist."
    );
    assert!(f.log.is_empty(), "{:?}", f.log);
    with_disk_cfg(&mut f, "d", "'/dev,raw,xvda,rw'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"d\": disk xvda: /dev is not a block device: Xenia's block backend \
         serves dom0's disks (/dev/vd*); see /proc/partitions"
    );
    assert!(f.log.is_empty(), "{:?}", f.log);
    // A target without a slash is under /dev.
    with_disk_cfg(&mut f, "d", "'vdb,,xvda', 'vdc,,xvdb'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(r, Ok(7));
}

#[test]
fn an_image_file_is_refused_before_anything_is_built() {
    // At create: nothing built, nothing written.
    let mut f = Fake::new();
    with_disk_cfg(&mut f, "d", "'/dev/vdb,,xvda', '/images/a.img,,xvdb'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"d\": disk xvdb: /images/a.img is not a block device: Xenia's block \
         backend serves dom0's disks (/dev/vd*); see /proc/partitions"
    );
    assert!(f.log.is_empty(), "{:?}", f.log);
    assert!(!f.tree.keys().any(|k| k.contains("/vbd/")), "{:?}", f.tree);
    assert!(!f.tree.keys().any(|k| k.starts_with("/tool/xenia/disks")));
    // At block-attach: refused, nothing written.
    let (r, _, err) = attach(&mut f, "hello", &["/images/a.img,raw,xvda,ro"]);
    assert_eq!(r, Err(String::new()));
    assert_eq!(
        err,
        "libxl: error: libxl_device.c: Domain 3:/images/a.img is not a block device: Xenia's \
         block backend serves dom0's disks (/dev/vd*); see /proc/partitions\n\
         libxl_device_disk_add failed.\n"
    );
    assert!(!f.tree.keys().any(|k| k.contains("/vbd/")), "{:?}", f.tree);
    assert!(!f.tree.keys().any(|k| k.starts_with("/tool/xenia/disks")));
}

#[test]
fn target_problem_says_what_dom0_found() {
    assert_eq!(target_problem("/dev/vdb", Ok(TargetKind::Block)), None);
    for kind in [TargetKind::File, TargetKind::Other] {
        let why = target_problem("/srv/d.img", Ok(kind)).unwrap();
        assert!(
            why.starts_with("/srv/d.img is not a block device: "),
            "{why}"
        );
        assert!(why.contains("/proc/partitions"), "{why}");
    }
    assert_eq!(
        target_problem("/dev/vdz", Err(Errno::ENOENT)).as_deref(),
        Some("/dev/vdz does not exist.")
    );
    assert_eq!(
        target_problem("/dev/vdb", Err(Errno::EACCES)).as_deref(),
        Some("/dev/vdb: cannot be looked at (EACCES (13))")
    );
}

#[test]
fn a_writable_disk_is_refused_to_a_second_domain() {
    let mut f = Fake::new();
    let (r, _, err) = attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]);
    assert_eq!(r, Ok(()), "{err}");
    assert_eq!(
        node(&f, "/local/domain/0/backend/vbd/3/51712/params").as_deref(),
        Some("/dev/vdb")
    );
    with_disk_cfg(&mut f, "d", "'/dev/vdb,raw,xvda,rw'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"d\": disk xvda: Device /dev/vdb is mounted in a guest domain,\n\
         and so cannot be mounted now.; domain 7 was destroyed again"
    );
    // The domain went, and nothing of its disk was written.
    assert!(f.log.contains(&"destroy 7".to_string()));
    assert!(!f.tree.keys().any(|k| k.contains("/vbd/7")), "{:?}", f.tree);
    // Read-only is refused too while a writer has it.
    with_disk_cfg(&mut f, "d", "'/dev/vdb,raw,xvda,ro'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert!(
        r.unwrap_err()
            .contains("Device /dev/vdb is mounted read-write in a guest domain,\nand so cannot be mounted read-only now."),
    );
    // Twice to one domain (another vdev) is refused as well.
    let (r, _, err) = attach(&mut f, "hello", &["/dev/vdb,raw,xvdb,rw"]);
    assert_eq!(r, Err(String::new()));
    assert_eq!(
        err,
        "libxl: error: libxl_device.c: Domain 3:Device /dev/vdb is mounted in a guest domain,\n\
         and so cannot be mounted now.\nlibxl_device_disk_add failed.\n"
    );
    // The same device again: libxl's words.
    let (r, _, err) = attach(&mut f, "hello", &["/dev/vdc,raw,xvda,rw"]);
    assert_eq!(r, Err(String::new()));
    assert!(err.contains("device already exists in xenstore"), "{err}");
}

#[test]
fn read_only_disks_share_and_stale_users_do_not_count() {
    let mut f = Fake::new();
    f.add(4, "other", 16);
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,ro"]).0, Ok(()));
    assert_eq!(attach(&mut f, "other", &["/dev/vdb,raw,xvda,r"]).0, Ok(()));
    assert_eq!(
        node(&f, "/local/domain/0/backend/vbd/4/51712/mode").as_deref(),
        Some("r")
    );
    // A writer is refused while readers have it.
    with_disk_cfg(&mut f, "d", "'/dev/vdb,raw,xvda,w'");
    let (r, _, _) = create(&mut f, "d.cfg", &[], false);
    assert!(r.unwrap_err().contains("is mounted in a guest domain"));
    // The readers' backends vanish (their domains destroyed: dom0's kernel removes the
    // backends); their index entries are stale and a writer is let in.
    f.tree
        .retain(|k, _| !k.starts_with("/local/domain/0/backend/"));
    let (r, _, err) = create(&mut f, "d.cfg", &[], false);
    assert_eq!(r, Ok(7), "{err}");
    assert!(!f.tree.contains_key("/tool/xenia/disks/dev/vdb/3-51712"));
    assert_eq!(
        node(&f, "/tool/xenia/disks/dev/vdb/writer").as_deref(),
        Some("7-51712")
    );
}

#[test]
fn transactions_are_used_and_made_again_on_conflict() {
    let mut f = Fake::new();
    f.tx_support = true;
    f.tx_conflicts = 2;
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]).0, Ok(()));
    assert_eq!(f.tx_commits, 1);
    assert_eq!(
        node(&f, "/local/domain/0/backend/vbd/3/51712/state").as_deref(),
        Some("1")
    );
    // A store that always conflicts: the attach gives up after its attempts, and the
    // nodes were never kept.
    f.tx_conflicts = u32::MAX;
    let (r, _, err) = attach(&mut f, "hello", &["/dev/vdc,raw,xvdb,rw"]);
    assert_eq!(r, Err(String::new()));
    assert!(
        err.contains("xenstore refused the nodes of disk xvdb (EAGAIN"),
        "{err}"
    );
    assert!(
        !f.tree
            .contains_key("/local/domain/0/backend/vbd/3/51728/params")
    );
}

#[test]
fn block_attach_says_what_xen_says() {
    let mut f = Fake::new();
    let (r, _, err) = attach(&mut f, "hello", &["/dev/vdb,qcow9,xvda"]);
    assert_eq!(r, Err(String::new()));
    assert_eq!(
        err,
        "command line: config parsing error in disk specification: unknown value for format: \
         near `qcow9' in `/dev/vdb,qcow9,xvda'\n"
    );
    let (r, _, err) = attach(&mut f, "nosuch", &["/dev/vdb,,xvda"]);
    assert_eq!(r, Err(String::new()));
    assert_eq!(err, "nosuch is an invalid domain identifier\n");
    let (_, _, err) = attach(&mut f, "hello", &["/dev/vdb,qcow2,xvda"]);
    assert!(
        err.contains("format=qcow2 is not supported by Xenia"),
        "{err}"
    );
    assert!(err.ends_with("libxl_device_disk_add failed.\n"));
    let (_, _, err) = attach(&mut f, "hello", &["/dev/nothing,,xvda"]);
    assert!(err.contains("/dev/nothing does not exist."), "{err}");
    let (_, _, err) = attach(&mut f, "0", &["/dev/vdb,,xvda"]);
    assert!(err.contains("gives none to itself"), "{err}");
    // -N: the disk as libxl's JSON, nothing attached.
    let spec: Vec<String> = [
        "format=raw",
        "vdev=hda",
        "access=rw",
        "target=/dev/vg/guest-volume",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (r, out, _) = run(&mut f, |s, io| block_attach(s, io, "0", &spec, true));
    assert_eq!(r, Ok(()));
    assert_eq!(
        out,
        "disk: {\n    \"pdev_path\": \"/dev/vg/guest-volume\",\n    \"vdev\": \"hda\",\n    \
         \"format\": \"raw\",\n    \"readwrite\": 1\n}\n\n"
    );
    assert!(f.tree.is_empty(), "{:?}", f.tree);
}

#[test]
fn block_list_in_xls_columns() {
    let mut f = Fake::new();
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]).0, Ok(()));
    assert_eq!(attach(&mut f, "hello", &["/dev/vdc,raw,xvdb,ro"]).0, Ok(()));
    // The frontend connects its first disk.
    let fe = "/local/domain/3/device/vbd/51712";
    f.tree.insert(format!("{fe}/state"), "4".into());
    f.tree.insert(format!("{fe}/event-channel"), "9".into());
    f.tree.insert(format!("{fe}/ring-ref"), "8".into());
    let doms = vec!["hello".to_string(), "nosuch".to_string(), "0".to_string()];
    let (r, out, err) = run(&mut f, |s, io| block_list(s, io, &doms));
    assert_eq!(r, Ok(()));
    assert_eq!(
        out,
        "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n\
         51712 0   3      4     9      8        /local/domain/0/backend/vbd/3/51712\n\
         51728 0   3      1     -1     -1       /local/domain/0/backend/vbd/3/51728\n"
    );
    assert_eq!(err, "nosuch is an invalid domain identifier\n");
}

#[test]
fn block_detach_waits_for_the_backend_then_removes_the_nodes() {
    let mut f = Fake::new();
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]).0, Ok(()));
    let be = "/local/domain/0/backend/vbd/3/51712";
    let fe = "/local/domain/3/device/vbd/51712";
    // No backend answers: xl waits libxl's 10 s, then fails, the disk still attached.
    let (r, _, err) = run(&mut f, |s, io| block_detach(s, io, "hello", "xvda", false));
    assert_eq!(r, Err(String::new()));
    assert!(
        err.ends_with("libxl_device_disk_safe_remove failed.\n") && err.contains("rc -9"),
        "{err}"
    );
    assert_eq!(f.slept_ms, 10_000);
    assert_eq!(node(&f, &format!("{be}/state")).as_deref(), Some("5"));
    assert_eq!(node(&f, &format!("{be}/online")).as_deref(), Some("0"));
    assert!(f.tree.contains_key(&format!("{fe}/backend")));
    // A backend that closes: both directories go, and the index entry.
    f.backend_closes = true;
    f.slept_ms = 0;
    let (r, _, err) = run(&mut f, |s, io| block_detach(s, io, "hello", "51712", false));
    assert_eq!(r, Ok(()), "{err}");
    assert!(f.slept_ms < 10_000);
    assert!(
        !f.tree
            .keys()
            .any(|k| k.starts_with(be) || k.starts_with(fe))
    );
    assert!(
        !f.tree
            .keys()
            .any(|k| k.starts_with("/tool/xenia/disks/dev/vdb/")),
        "{:?}",
        f.tree
    );
    // Gone now.
    let (r, _, err) = run(&mut f, |s, io| block_detach(s, io, "hello", "xvda", false));
    assert_eq!(r, Err(String::new()));
    assert_eq!(err, "Error: Device xvda not connected.\n");
    // -f: no wait, frontend first.
    f.backend_closes = false;
    f.slept_ms = 0;
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]).0, Ok(()));
    f.log.clear();
    let (r, _, _) = run(&mut f, |s, io| block_detach(s, io, "hello", "xvda", true));
    assert_eq!(r, Ok(()));
    assert_eq!(f.slept_ms, 0);
    assert_eq!(
        f.log.first().map(String::as_str),
        Some(&*format!("rm {fe}"))
    );
    assert!(
        !f.tree
            .keys()
            .any(|k| k.starts_with(be) || k.starts_with(fe))
    );
    // The disk may be given again.
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]).0, Ok(()));
    // Unknown domain: xl's words for it.
    let (r, _, _) = run(&mut f, |s, io| block_detach(s, io, "nosuch", "xvda", false));
    assert!(r.unwrap_err().contains("nosuch"));
}

#[test]
fn list_long_shows_the_disks_as_libxl_stores_them() {
    let mut f = Fake::new();
    with_disk_cfg(&mut f, "d", "'/dev/vdb,raw,xvda,rw'");
    assert_eq!(create(&mut f, "d.cfg", &[], false).0, Ok(7));
    let long = ListOpts {
        long: true,
        ..ListOpts::default()
    };
    let (r, out, _) = run(&mut f, |s, io| list(s, io, long, Some("d")));
    r.unwrap();
    let all = json::parse(&out).expect("JSON");
    let Json::Array(doms) = all else {
        panic!("{out}")
    };
    let config = doms[0].get("config").unwrap();
    assert_eq!(
        config.keys(),
        ["c_info", "b_info", "disks", "on_reboot", "on_soft_reset"]
    );
    let disk = match config.get("disks") {
        Some(Json::Array(d)) => d[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        disk.keys(),
        [
            "pdev_path",
            "vdev",
            "backend",
            "format",
            "readwrite",
            "discard_enable",
            "specification",
            "colo_enable",
            "colo_restore_enable",
            "trusted"
        ]
    );
    assert_eq!(disk.get("pdev_path"), Some(&Json::str("/dev/vdb")));
    // create -n: the disk as parsed.
    let (r, out, _) = run(&mut f, |s, io| create_dry_run(s, io, "d.cfg", &[], true));
    r.unwrap();
    assert!(
        out.contains("\"disks\": [\n        {\n            \"pdev_path\": \"/dev/vdb\""),
        "{out}"
    );
}

/// The domain owns its frontend directory and may write there what it likes, or remove
/// it: xl goes by dom0's nodes.
#[test]
fn a_hostile_frontend_does_not_mislead_xl() {
    let mut f = Fake::new();
    assert_eq!(attach(&mut f, "hello", &["/dev/vdb,raw,xvda,rw"]).0, Ok(()));
    let fe = "/local/domain/3/device/vbd/51712";
    let be = "/local/domain/0/backend/vbd/3/51712";
    f.tree.insert(
        format!("{fe}/backend"),
        "/local/domain/0/backend/vbd/9/1".into(),
    );
    f.tree
        .insert(format!("{fe}/state"), "99999999999999999999".into());
    f.tree.insert(format!("{fe}/ring-ref"), "-5".into());
    let doms = vec!["hello".to_string()];
    let (_, out, _) = run(&mut f, |s, io| block_list(s, io, &doms));
    assert!(
        out.ends_with(&format!("51712 0   3      -1    -1     -1       {be}\n")),
        "{out}"
    );
    // The frontend directory gone: the disk is still listed, and detached.
    f.tree.retain(|k, _| !k.starts_with(fe));
    let (_, out, _) = run(&mut f, |s, io| block_list(s, io, &doms));
    assert_eq!(out.lines().count(), 2, "{out}");
    let (r, _, err) = run(&mut f, |s, io| block_detach(s, io, "hello", "xvda", true));
    assert_eq!(r, Ok(()), "{err}");
    assert!(!f.tree.keys().any(|k| k.starts_with(be)));
}
