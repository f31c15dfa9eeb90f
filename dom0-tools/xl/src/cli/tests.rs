//! The command line against Xen's xl: words, statuses and what each verb receives.

use super::*;

fn parsed(args: &[&str]) -> Parsed {
    let mut all = vec!["xl"];
    all.extend_from_slice(args);
    parse(all)
}

fn cmd(args: &[&str]) -> Command {
    match parsed(args) {
        Parsed::Run(i) => i.command,
        Parsed::Exit(e) => panic!("{args:?}: {e:?}"),
    }
}

fn exit(args: &[&str]) -> Exit {
    match parsed(args) {
        Parsed::Exit(e) => e,
        Parsed::Run(i) => panic!("{args:?} should not run: {i:?}"),
    }
}

#[test]
fn table_is_xens() {
    // 92 verbs in Xen 4.17's table on x86 with save/restore; names unique.
    assert_eq!(table::VERBS.len(), 92);
    let mut names: Vec<&str> = table::VERBS.iter().map(|v| v.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 92);
    let xenia: Vec<&str> = table::VERBS
        .iter()
        .filter(|v| v.xenia)
        .map(|v| v.name)
        .collect();
    assert_eq!(xenia.len(), 30, "{xenia:?}");
    // Every verb the table marks as Xenia's parses (with enough arguments).
    for v in table::VERBS.iter().filter(|v| v.xenia) {
        let args = ["x", "y", "z", "w"].map(String::from);
        let got = parse_verb(v, &args, Global::default());
        if let Err(e) = &got {
            assert!(!e.stderr.contains("a bug in xl"), "{}: {e:?}", v.name);
        }
    }
}

#[test]
fn help_lists_xenias_verbs_in_xens_format() {
    let all = help_all();
    assert!(all.starts_with(
        "Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n\n \
         create              Create a domain from config file <filename>\n \
         list                List information about all/some domains\n \
         destroy             Terminate a domain immediately\n"
    ));
    assert!(all.contains("\n debug-keys          Send debug keys to Xen\n"));
    assert!(all.ends_with(" uptime              Print uptime for all/some domains\n"));
    assert!(!all.contains(" restore "), "only what Xenia implements");
    for args in [&["help"][..], &["--help"], &["-h"], &["help", "help"]] {
        assert_eq!(exit(args), Exit::out(all.clone(), 0), "{args:?}");
    }
    // No verb: the list, and status 1, as Xen's xl.
    assert_eq!(exit(&[]), Exit::out(all.clone(), 1));
    assert_eq!(exit(&["-v"]), Exit::out(all, 1));
}

#[test]
fn verb_help_as_xen_prints_it() {
    let list = "Usage: xl [-vtT] list [options] [Domain]\n\n\n\
                List information about all/some domains.\n\n\
                Options:\n\n\
                -l, --long              Output all VM details\n\
                -v, --verbose           Prints out UUIDs and security context\n\
                -Z, --context           Prints out security context\n\
                -c, --cpupool           Prints the cpupool the domain is in\n\
                -n, --numa              Prints out NUMA node affinity\n";
    for args in [
        &["help", "list"][..],
        &["list", "-h"],
        &["list", "--help"],
        &["list", "--he"],
        &["li", "-h"],
        &["list", "-h", "-x"],
        &["list", "--help=1"],
    ] {
        assert_eq!(exit(args), Exit::out(list.into(), 0), "{args:?}");
    }
    // `f` for verbs that modify, `N` for those with a dry run; no option text: none.
    assert_eq!(
        exit(&["pause", "-h"]).stdout,
        "Usage: xl [-vtTf] pause <Domain>\n\nPause execution of a domain.\n\n"
    );
    assert!(
        exit(&["help", "create"])
            .stdout
            .starts_with("Usage: xl [-vtTfN] create <ConfigFile> [options] [vars]\n\n")
    );
    assert_eq!(
        exit(&["help", "frobnicate"]),
        Exit::out("command \"frobnicate\" not implemented\n".into(), 0)
    );
}

#[test]
fn verbs_xenia_lacks_and_unknown_words() {
    for (word, verb) in [
        ("restore", "restore"),
        ("save", "save"),
        ("migrate", "migrate"),
        ("vtpm-attach", "vtpm-attach"),
        ("cpupool-list", "cpupool-list"),
        ("rest", "restore"),
    ] {
        assert_eq!(
            exit(&[word, "x"]),
            Exit::err(format!("xl: '{verb}' is not implemented by Xenia\n"), 1),
            "{word}"
        );
    }
    assert_eq!(
        exit(&["help", "restore"]),
        Exit::err("xl: 'restore' is not implemented by Xenia\n".into(), 1)
    );
    for word in ["frobnicate", "s", "h", "cpupool", "-"] {
        assert_eq!(
            exit(&[word]),
            Exit::err("command not implemented\n".into(), 1),
            "{word}"
        );
    }
}

#[test]
fn prefixes_name_one_verb() {
    assert_eq!(lookup("li").map(|v| v.name), Some("list"));
    assert_eq!(lookup("list").map(|v| v.name), Some("list"));
    // `vcpu-list` is exact although... nothing else; `vcpu` is ambiguous.
    assert_eq!(lookup("vcpu"), None);
    // An exact name wins over the longer names it prefixes.
    assert_eq!(lookup("create").map(|v| v.name), Some("create"));
    assert_eq!(lookup("top").map(|v| v.name), Some("top"));
    assert_eq!(lookup("sched-credit").map(|v| v.name), Some("sched-credit"));
    assert_eq!(
        lookup("sched-credit2").map(|v| v.name),
        Some("sched-credit2")
    );
    assert_eq!(lookup(""), None);
    assert!(matches!(cmd(&["destr", "3"]), Command::Destroy { .. }));
}

#[test]
fn global_options() {
    let Parsed::Run(i) = parsed(&["-vN", "create", "a.cfg"]) else {
        panic!()
    };
    assert!(i.dry_run);
    assert!(matches!(
        i.command,
        Command::Create(Create { dry_run: true, .. })
    ));
    assert_eq!(
        exit(&["-N", "list"]),
        Exit::err("command does not implement -N (dryrun) option\n".into(), 1)
    );
    assert_eq!(
        exit(&["-x", "list"]),
        Exit::err(
            "xl: invalid option -- 'x'\nunknown global option\n".into(),
            1
        )
    );
    assert!(matches!(
        cmd(&["-f", "-t", "-T", "--", "list"]),
        Command::List(_)
    ));
}

#[test]
fn usage_errors_in_xens_words() {
    let e = exit(&["destroy"]);
    assert_eq!(e.stderr, "'xl destroy' requires at least 1 argument.\n\n");
    assert!(
        e.stdout
            .starts_with("Usage: xl [-vtTf] destroy [options] <Domain>\n")
    );
    assert_eq!(e.status, 2);
    let e = exit(&["vcpu-pin", "a", "0"]);
    assert_eq!(e.stderr, "'xl vcpu-pin' requires at least 3 arguments.\n\n");
    assert_eq!(e.status, 2);
    assert_eq!(
        exit(&["list", "-x"]),
        Exit::err("option `x' not supported.\n".into(), 2)
    );
    assert_eq!(
        exit(&["list", "--bogus"]),
        Exit::err("option `' not supported.\n".into(), 2)
    );
    assert_eq!(
        exit(&["sched-credit", "-d"]),
        Exit::err("option `d' not supported.\n".into(), 2)
    );
    // Options are Xen's: `uptime --short` is not one.
    assert_eq!(exit(&["uptime", "--short"]).status, 2);
    // `list` takes one domain at most: its help, status 1.
    let e = exit(&["list", "a", "b"]);
    assert!(e.stdout.starts_with("Usage: xl [-vtT] list "));
    assert_eq!((e.stderr.as_str(), e.status), ("", 1));
    assert_eq!(
        exit(&["shutdown"]),
        Exit::err("You must specify -a or a domain id.\n\n".into(), 1)
    );
    assert_eq!(
        exit(&["console", "-t", "tty", "h"]),
        Exit::err("console type supported are: pv, serial, vuart\n".into(), 1)
    );
    let e = exit(&["sysrq", "h", "ab"]);
    assert_eq!(e.stderr, "Invalid sysrq.\n\n");
    assert!(
        e.stdout
            .starts_with("Usage: xl [-vtTf] sysrq <Domain> <letter>\n")
    );
    assert_eq!(e.status, 1);
}

#[test]
fn create() {
    assert_eq!(
        cmd(&[
            "create",
            "/etc/xen/h.cfg",
            "-c",
            "-p",
            "memory=32",
            "name=h2"
        ]),
        Command::Create(Create {
            console: true,
            paused: true,
            config: "/etc/xen/h.cfg".into(),
            overrides: vec!["memory=32".into(), "name=h2".into()],
            ..Create::default()
        })
    );
    // Options first, the file anywhere among the settings; -f names it too.
    assert_eq!(
        cmd(&["create", "-qn", "memory=8", "a.cfg"]),
        Command::Create(Create {
            quiet: true,
            dry_run: true,
            config: "a.cfg".into(),
            overrides: vec!["memory=8".into()],
            ..Create::default()
        })
    );
    assert_eq!(
        cmd(&["create", "--defconfig=b.cfg", "-d", "--quiet", "--dryrun"]),
        Command::Create(Create {
            quiet: true,
            dry_run: true,
            debug: true,
            config: "b.cfg".into(),
            ..Create::default()
        })
    );
    // No file: Xen's words and status (ERROR_INVAL); two files: help, status 2.
    assert_eq!(
        exit(&["create", "-p"]),
        Exit::err(
            "Config file not specified and none in save file\n".into(),
            6
        )
    );
    let e = exit(&["create", "a.cfg", "b.cfg"]);
    assert!(e.stdout.starts_with("Usage: xl [-vtTfN] create "));
    assert_eq!(e.status, 2);
    let e = exit(&["create", "-V", "a.cfg"]);
    assert_eq!(e.status, 1);
    assert!(
        e.stderr.contains("create -V is not implemented by Xenia"),
        "{e:?}"
    );
}

#[test]
fn list_shutdown_destroy() {
    assert_eq!(
        cmd(&["list", "-vZcn", "hello"]),
        Command::List(List {
            verbose: true,
            context: true,
            cpupool: true,
            numa: true,
            domain: Some("hello".into()),
            ..List::default()
        })
    );
    assert_eq!(
        cmd(&["list", "--long"]),
        Command::List(List {
            long: true,
            ..List::default()
        })
    );
    assert_eq!(
        cmd(&["shutdown", "-a", "-ww", "-F"]),
        Command::Shutdown(Shutdown {
            all: true,
            wait: 2,
            fallback: true,
            ..Shutdown::default()
        })
    );
    assert_eq!(
        cmd(&["reboot", "--wait", "h"]),
        Command::Shutdown(Shutdown {
            reboot: true,
            wait: 1,
            domain: Some("h".into()),
            ..Shutdown::default()
        })
    );
    assert_eq!(
        cmd(&["destroy", "-f", "0"]),
        Command::Destroy {
            force: true,
            domain: "0".into()
        }
    );
}

#[test]
fn sched_credit() {
    assert_eq!(
        cmd(&["sched-credit", "-d", "h", "-w", "512", "--cap=50"]),
        Command::SchedCredit(SchedCredit {
            domain: Some("h".into()),
            weight: Some("512".into()),
            cap: Some("50".into()),
            ..SchedCredit::default()
        })
    );
    assert_eq!(
        cmd(&["sched-credit", "-s", "-p", "Pool-0"]),
        Command::SchedCredit(SchedCredit {
            schedparam: true,
            cpupool: Some("Pool-0".into()),
            ..SchedCredit::default()
        })
    );
    for (args, msg) in [
        (
            &["sched-credit", "-s", "-d", "h"][..],
            "Specifying a cpupool or schedparam is not allowed with domain options.\n",
        ),
        (&["sched-credit", "-w", "5"], "Must specify a domain.\n"),
        (
            &["sched-credit", "-t", "5"],
            "Must specify schedparam to set schedule parameter values.\n",
        ),
    ] {
        assert_eq!(exit(args), Exit::err(msg.into(), 1), "{args:?}");
    }
}

#[test]
fn small_verbs() {
    assert_eq!(
        cmd(&["domid", "hello"]),
        Command::Domid {
            name: "hello".into()
        }
    );
    assert_eq!(cmd(&["domname", "3"]), Command::Domname { id: "3".into() });
    assert_eq!(
        cmd(&["rename", "a", "b"]),
        Command::Rename {
            domain: "a".into(),
            new_name: "b".into()
        }
    );
    assert_eq!(
        cmd(&["sysrq", "a", "s"]),
        Command::Sysrq {
            domain: "a".into(),
            key: 's'
        }
    );
    assert_eq!(
        cmd(&["debug-keys", "qm"]),
        Command::DebugKeys { keys: "qm".into() }
    );
    assert_eq!(cmd(&["vm-list"]), Command::VmList);
    assert_eq!(
        cmd(&["info", "xen_version"]),
        Command::Info {
            numa: false,
            field: Some("xen_version".into())
        }
    );
    assert_eq!(cmd(&["dmesg", "--clear"]), Command::Dmesg { clear: true });
    assert_eq!(
        cmd(&["vcpu-pin", "-f", "3", "1", "-", "^1"]),
        Command::VcpuPin {
            force: true,
            domain: "3".into(),
            vcpu: "1".into(),
            hard: "-".into(),
            soft: Some("^1".into())
        }
    );
    assert_eq!(
        cmd(&["vcpu-set", "-i", "g", "3"]),
        Command::VcpuSet {
            ignore_host: true,
            domain: "g".into(),
            count: "3".into()
        }
    );
    assert_eq!(
        cmd(&["uptime", "-s", "a", "b"]),
        Command::Uptime {
            short: true,
            domains: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(cmd(&["top"]), Command::Top { delay: 3 });
    assert_eq!(cmd(&["top", "-d", "2"]), Command::Top { delay: 2 });
    assert_eq!(exit(&["top", "-d", "0"]).status, 1);
    assert_eq!(
        cmd(&["console", "-t", "pv", "-n", "0", "h"]),
        Command::Console {
            kind: Some("pv".into()),
            num: Some("0".into()),
            domain: "h".into()
        }
    );
    assert_eq!(
        cmd(&["mem-set", "h", "64m"]),
        Command::MemSet {
            domain: "h".into(),
            memory: "64m".into()
        }
    );
}

#[test]
fn odd_input_never_panics() {
    // Every verb Xenia implements, and one it lacks, with awkward arguments: each parse
    // ends in a command or an exit, never a panic.
    let odd = [
        "",
        "-",
        "--",
        "-é",
        "--é",
        "é",
        "-d",
        "--domain",
        "--=",
        "-:",
        "-h",
        "=",
        "a=b",
        "-ww",
        "-0",
        "\u{0}",
        "--help=x",
        "99999999999999999999",
        "-t",
        "all",
    ];
    let verbs: Vec<&str> = table::VERBS
        .iter()
        .filter(|v| v.xenia)
        .map(|v| v.name)
        .chain(["restore", "help", "zz", "-N", "-x", "--help"])
        .collect();
    for verb in verbs {
        for a in odd {
            for b in odd {
                let _ = parsed(&[verb, a, b]);
                let _ = parsed(&[a, verb, b]);
            }
        }
    }
}

#[test]
fn block_verbs_as_xens() {
    let run = |args: &[&str]| match parse(std::iter::once("xl").chain(args.iter().copied())) {
        Parsed::Run(i) => i,
        Parsed::Exit(e) => panic!("{args:?}: {e:?}"),
    };
    let i = run(&[
        "-N",
        "block-attach",
        "0",
        "format=raw",
        "vdev=hda",
        "target=/x",
    ]);
    assert!(i.dry_run);
    assert_eq!(
        i.command,
        Command::BlockAttach {
            domain: "0".into(),
            spec: vec!["format=raw".into(), "vdev=hda".into(), "target=/x".into()],
        }
    );
    assert_eq!(
        run(&["block-list", "a", "b"]).command,
        Command::BlockList {
            domains: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(
        run(&["block-detach", "--force", "a", "xvda"]).command,
        Command::BlockDetach {
            force: true,
            domain: "a".into(),
            device: "xvda".into(),
        }
    );
    assert_eq!(
        exit(&["block-attach", "a"]).stderr,
        "'xl block-attach' requires at least 2 arguments.\n\n"
    );
    // block-list and block-detach take no -N.
    assert_eq!(exit(&["-N", "block-list", "a"]).status, 1);
}
