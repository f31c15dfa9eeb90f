//! The commands against the store itself (no dom0 needed): output formats, messages and
//! exit codes as Xen's `xenstore_client.c` gives them.

use std::collections::VecDeque;

use guest_abi::Errno;
use guest_abi::xenstore::{XS_ERROR, XS_WATCH_EVENT, XsdSockmsg, error_from};
use xenia_xenstore::{Access, ConnId, DOM0, Perm, Quota, Store};
use xenstore_cli::{Bus, Io, run, sanitise, unsanitise};

struct StoreBus {
    store: Store,
    conn: ConnId,
    events: VecDeque<(String, String)>,
    /// Requests made (to see transactions used).
    log: Vec<(u32, u32)>,
}

fn split(mut b: &[u8]) -> Vec<(XsdSockmsg, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(h) = XsdSockmsg::from_bytes(b) {
        let end = XsdSockmsg::SIZE + h.len as usize;
        out.push((h, b[XsdSockmsg::SIZE..end].to_vec()));
        b = &b[end..];
    }
    out
}

impl Bus for StoreBus {
    fn request(&mut self, t: u32, tx: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        self.log.push((t, tx));
        let mut m = XsdSockmsg {
            msg_type: t,
            req_id: 5,
            tx_id: tx,
            len: payload.len() as u32,
        }
        .to_bytes()
        .to_vec();
        m.extend_from_slice(payload);
        self.store.feed(self.conn, &m);
        let out = self.store.take_output(self.conn, usize::MAX);
        let mut reply = Err(Errno::EIO);
        for (h, body) in split(&out) {
            if h.msg_type == XS_WATCH_EVENT {
                let mut p = body.split(|&b| b == 0);
                let mut s = || String::from_utf8_lossy(p.next().unwrap_or(&[])).into_owned();
                self.events.push_back((s(), s()));
            } else if h.msg_type == XS_ERROR {
                reply = Err(error_from(&body));
            } else {
                reply = Ok(body);
            }
        }
        reply
    }

    fn watch_event(&mut self) -> Result<(String, String), Errno> {
        self.events.pop_front().ok_or(Errno::EIO)
    }
}

fn bus() -> StoreBus {
    let mut store = Store::new(Quota::DEFAULT);
    store
        .write(DOM0, "/local/domain/0/name", b"Domain-0")
        .unwrap();
    store.write(DOM0, "/local/domain/3/name", b"guest").unwrap();
    store
        .write(DOM0, "/local/domain/3/memory/target", b"8192")
        .unwrap();
    store
        .set_perms(
            DOM0,
            "/local/domain/3",
            &[Perm::new(DOM0, Access::None), Perm::new(3, Access::Read)],
        )
        .unwrap();
    let conn = store.connect(DOM0);
    StoreBus {
        store,
        conn,
        events: VecDeque::new(),
        log: Vec::new(),
    }
}

/// Runs `line` (program name first) on `b`: exit code, stdout, stderr.
fn sh(b: &mut StoreBus, line: &[&str]) -> (i32, String, String) {
    sh_width(b, line, None)
}

fn sh_width(b: &mut StoreBus, line: &[&str], columns: Option<usize>) -> (i32, String, String) {
    let argv: Vec<String> = line.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let short = argv[0].rsplit('/').next().unwrap().to_string();
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        argv0: argv[0].clone(),
        short,
        columns,
    };
    let code = run(&argv, b, &mut io);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn read_write_rm_list_exists() {
    let mut b = bus();
    assert_eq!(
        sh(&mut b, &["xenstore-read", "/local/domain/3/name"]),
        (0, "guest\n".into(), "".into())
    );
    assert_eq!(
        sh(
            &mut b,
            &[
                "xenstore-read",
                "-p",
                "/local/domain/3/name",
                "/local/domain/0/name"
            ]
        ),
        (
            0,
            "/local/domain/3/name: guest\n/local/domain/0/name: Domain-0\n".into(),
            "".into()
        )
    );
    assert_eq!(
        sh(&mut b, &["xenstore-read", "/nope"]),
        (
            1,
            "".into(),
            "xenstore-read: couldn't read path /nope\n".into()
        )
    );
    assert_eq!(
        sh(
            &mut b,
            &["xenstore-write", "/tool/a", "1", "/tool/b", "two\\n"]
        )
        .0,
        0
    );
    assert_eq!(b.store.read(DOM0, "/tool/b"), Ok(b"two\n".to_vec()));
    assert_eq!(sh(&mut b, &["xenstore-read", "/tool/b"]).1, "two\\n\n");
    assert_eq!(
        sh(&mut b, &["xenstore-write", "/tool/a"]),
        (
            1,
            "".into(),
            "xenstore-write: Usage: xenstore-write [-h] [-R] key value [...]\n".into()
        )
    );
    assert_eq!(
        sh(&mut b, &["xenstore-list", "/tool"]),
        (0, "a\nb\n".into(), "".into())
    );
    assert_eq!(
        sh(&mut b, &["xenstore-list", "-p", "/tool"]).1,
        "/tool/a\n/tool/b\n"
    );
    assert_eq!(
        sh(&mut b, &["xenstore-list", "-p", "/"]).1,
        "/local\n/tool\n"
    );
    assert_eq!(
        sh(&mut b, &["xenstore-list", "/nope"]),
        (
            1,
            "".into(),
            "xenstore-list: could not list path /nope\n".into()
        )
    );
    assert_eq!(
        sh(&mut b, &["xenstore-exists", "/tool/a"]),
        (0, "".into(), "".into())
    );
    assert_eq!(
        sh(&mut b, &["xenstore-exists", "/tool/zz"]),
        (1, "".into(), "".into())
    );
    assert_eq!(sh(&mut b, &["xenstore-rm", "/tool/a"]).0, 0);
    assert_eq!(b.store.read(DOM0, "/tool/a"), Err(Errno::ENOENT));
    // -t removes parents left empty.
    sh(&mut b, &["xenstore-write", "/deep/x/y/z", "v"]);
    assert_eq!(sh(&mut b, &["xenstore-rm", "-t", "/deep/x/y/z"]).0, 0);
    assert_eq!(b.store.read(DOM0, "/deep"), Err(Errno::ENOENT));
    // The multi-call form, and a mode it does not know.
    assert_eq!(sh(&mut b, &["xenstore", "read", "/tool/b"]).1, "two\\n\n");
    assert_eq!(
        sh(&mut b, &["xenstore", "frob", "/x"]),
        (1, "".into(), "xenstore: unknown mode frob\n\n".into())
    );
    assert_eq!(
        sh(&mut b, &["/usr/bin/xenstore"]),
        (
            1,
            "".into(),
            "xenstore: Usage: /usr/bin/xenstore <mode> [-h] [...]\n".into()
        )
    );
    // Several keys or any rm/list/exists/chmod: in a transaction.
    assert!(
        b.log
            .iter()
            .any(|&(t, _)| t == guest_abi::xenstore::XS_TRANSACTION_START)
    );
    assert!(b.log.iter().any(|&(_, tx)| tx != 0));
}

#[test]
fn ls_as_xen_prints_it() {
    let mut b = bus();
    let (code, out, _) = sh(&mut b, &["xenstore-ls", "/local/domain/3"]);
    assert_eq!(code, 0);
    // Children in name order (Xen's store keeps them in creation order).
    assert_eq!(out, "memory = \"\"\n target = \"8192\"\nname = \"guest\"\n");
    let (_, out, _) = sh(&mut b, &["xenstore-ls", "-p", "/local/domain/3"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[2],
        "name = \"guest\" . . . . . . . . . . . . . . . . . . . . . . .  (n0)"
    );
    assert_eq!(lines[2].find("  (").unwrap(), 60);
    assert_eq!(
        lines[1],
        " target = \"8192\" . . . . . . . . . . . . . . . . . . . . . .  (n0)"
    );
    let (_, out, _) = sh(&mut b, &["xenstore-ls", "-f", "/local/domain/3"]);
    assert_eq!(
        out,
        "/local/domain/3/memory = \"\"\n/local/domain/3/memory/target = \"8192\"\n/local/domain/3/name = \"guest\"\n"
    );
    // A value too wide for the terminal is cut.
    b.store.write(DOM0, "/w/long", &[b'x'; 100]).unwrap();
    let (_, out, _) = sh_width(&mut b, &["xenstore-ls", "/w"], Some(40));
    assert_eq!(out, format!("long = \"{}\\...\"\n", "x".repeat(38 - 8 - 4)));
    // Whole tree from `/` by default; a missing path is an error.
    let (_, out, _) = sh(&mut b, &["xenstore-ls"]);
    assert!(
        out.starts_with("local = \"\"\n domain = \"\"\n  0 = \"\"\n   name = \"Domain-0\"\n"),
        "{out}"
    );
    assert_eq!(
        sh(&mut b, &["xenstore-ls", "/nope"]),
        (
            1,
            "".into(),
            "xenstore-ls: xs_directory (/nope): No such file or directory\n".into()
        )
    );
}

#[test]
fn chmod_and_watch() {
    let mut b = bus();
    b.store.write(DOM0, "/c/a/b", b"v").unwrap();
    assert_eq!(sh(&mut b, &["xenstore-chmod", "/c/a", "b3", "r4"]).0, 0);
    assert_eq!(
        b.store.get_perms(DOM0, "/c/a"),
        Ok(vec![Perm::new(3, Access::Both), Perm::new(4, Access::Read)])
    );
    assert_eq!(sh(&mut b, &["xenstore-chmod", "-r", "/c", "n5"]).0, 0);
    assert_eq!(
        b.store.get_perms(DOM0, "/c/a/b"),
        Ok(vec![Perm::new(5, Access::None)])
    );
    assert_eq!(sh(&mut b, &["xenstore-chmod", "-u", "/c/a/b", "r0"]).0, 0);
    assert_eq!(
        b.store.get_perms(DOM0, "/c"),
        Ok(vec![Perm::new(0, Access::Read)])
    );
    assert_eq!(
        sh(&mut b, &["xenstore-chmod", "/c", "x1"]),
        (
            1,
            "".into(),
            "xenstore-chmod: Invalid permission specification: 'x'\n".into()
        )
    );
    assert_eq!(
        sh(&mut b, &["xenstore-chmod", "/nope", "n0"]),
        (
            1,
            "".into(),
            "xenstore-chmod: Error occurred setting permissions on '/nope': No such file or directory\n"
                .into()
        )
    );
    // The watch fires once at once; the path is printed per event.
    assert_eq!(
        sh(&mut b, &["xenstore-watch", "-n", "1", "/c/a"]),
        (0, "/c/a\n".into(), "".into())
    );
    b.store.write(DOM0, "/c/a/new", b"1").unwrap();
    b.events.extend(
        split(&b.store.take_output(b.conn, usize::MAX))
            .into_iter()
            .map(|(_, p)| {
                let s: Vec<String> = p
                    .split(|&x| x == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                (s[0].clone(), s[1].clone())
            }),
    );
    assert_eq!(
        sh(&mut b, &["xenstore-watch", "-n", "1", "/other"]).1,
        "/c/a/new\n"
    );
}

#[test]
fn values_are_quoted_as_xen_quotes_them() {
    let v = b"a\\b\tc\x01\x7f\xff";
    assert_eq!(sanitise(v), "a\\\\b\\tc\\001\\x7f\\xff");
    assert_eq!(unsanitise(&sanitise(v)), v);
}
