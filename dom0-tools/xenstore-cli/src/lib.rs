//! Xen's xenstore client commands (`tools/xs-clients/xenstore_client.c`): one program that
//! is `xenstore-read`, `xenstore-write`, `xenstore-rm`, `xenstore-exists`, `xenstore-list`,
//! `xenstore-ls`, `xenstore-chmod` and `xenstore-watch` by the name it is run under (or
//! `xenstore <mode> ...`), with Xen's options, output formats, messages and exit codes.
//! Like Xen's, the commands that touch several nodes (or always, for `rm`, `list`,
//! `exists`, `chmod`) run in a transaction and start again on `EAGAIN`.
//!
//! The logic here talks to a [`Bus`]: `/dev/xen/xenbus` in dom0 (`main.rs`), the store
//! itself in the host tests.

use std::io::Write;

use guest_abi::Errno;
use guest_abi::xenstore::{
    XS_DIRECTORY, XS_GET_PERMS, XS_READ, XS_RM, XS_SET_PERMS, XS_TRANSACTION_END,
    XS_TRANSACTION_START, XS_WATCH, XS_WRITE,
};

/// A connection to the store.
pub trait Bus {
    /// Sends a request of `msg_type` in transaction `tx` (0: none) and returns its reply's
    /// payload, or the error an `XS_ERROR` reply names.
    fn request(&mut self, msg_type: u32, tx: u32, payload: &[u8]) -> Result<Vec<u8>, Errno>;
    /// Waits for the next watch event: its path and token.
    fn watch_event(&mut self) -> Result<(String, String), Errno>;
}

/// What the C library's `strerror` says for `e` (glibc's wording, as Xen's dom0 prints).
pub fn strerror(e: Errno) -> &'static str {
    match e {
        Errno::ENOENT => "No such file or directory",
        Errno::EACCES => "Permission denied",
        Errno::EINVAL => "Invalid argument",
        Errno::EEXIST => "File exists",
        Errno::EISDIR => "Is a directory",
        Errno::ENOMEM => "Cannot allocate memory",
        Errno::ENOSPC => "No space left on device",
        Errno::EIO => "Input/output error",
        Errno::ENOTEMPTY => "Directory not empty",
        Errno::ENOSYS => "Function not implemented",
        Errno::EROFS => "Read-only file system",
        Errno::EBUSY => "Device or resource busy",
        Errno::EAGAIN => "Resource temporarily unavailable",
        Errno::EISCONN => "Transport endpoint is already connected",
        Errno::E2BIG => "Argument list too long",
        Errno::ETIMEDOUT => "Connection timed out",
        Errno::EPERM => "Operation not permitted",
        _ => "Unknown error",
    }
}

/// The commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Chmod,
    Exists,
    List,
    Ls,
    Read,
    Rm,
    Write,
    Watch,
}

fn lookup_mode(m: &str) -> Option<Mode> {
    Some(match m {
        "read" => Mode::Read,
        "chmod" => Mode::Chmod,
        "exists" => Mode::Exists,
        "list" => Mode::List,
        "ls" => Mode::Ls,
        "rm" => Mode::Rm,
        "write" => Mode::Write,
        "watch" => Mode::Watch,
        _ => return None,
    })
}

/// Xen's quoting of a value that may hold any byte (`sanitise_value`).
pub fn sanitise(v: &[u8]) -> String {
    let mut s = String::with_capacity(v.len());
    for &c in v {
        match c {
            b' '..=b'~' if c != b'\\' => s.push(c as char),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\\' => s.push_str("\\\\"),
            c if c < 0o10 => s.push_str(&format!("\\{c:03o}")),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// The reverse of [`sanitise`] (`unsanitise_value`).
pub fn unsanitise(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = b.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match e {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let digits: Vec<u8> = b[i..]
                    .iter()
                    .take(2)
                    .take_while(|d| d.is_ascii_hexdigit())
                    .copied()
                    .collect();
                i += digits.len();
                let v = u8::from_str_radix(std::str::from_utf8(&digits).unwrap_or("0"), 16);
                out.push(v.unwrap_or(b'x'));
            }
            b'0'..=b'7' => {
                i -= 1;
                let digits: Vec<u8> = b[i..]
                    .iter()
                    .take(3)
                    .take_while(|d| (b'0'..=b'7').contains(d))
                    .copied()
                    .collect();
                i += digits.len();
                let v = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("0"), 8);
                out.push(v.unwrap_or(0) as u8);
            }
            other => out.push(other),
        }
    }
    out
}

fn path_arg(p: &str) -> Vec<u8> {
    let mut v = p.as_bytes().to_vec();
    v.push(0);
    v
}

/// NUL-terminated strings of a reply.
fn strings(reply: &[u8]) -> Vec<String> {
    let body = reply.strip_suffix(&[0]).unwrap_or(reply);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Where output and diagnostics go, and the program's names.
pub struct Io<'a> {
    /// Standard output (written at the end, as Xen's client buffers it).
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// `argv[0]` as given (usage messages name it).
    pub argv0: String,
    /// Its last component (diagnostics start with it).
    pub short: String,
    /// The terminal's width, if standard output is one.
    pub columns: Option<usize>,
}

/// Exit the command with a message (`errx`).
struct Exit(i32);

impl Io<'_> {
    fn warnx(&mut self, msg: &str) {
        let _ = writeln!(self.err, "{}: {msg}", self.short);
    }

    fn errx(&mut self, code: i32, msg: &str) -> Exit {
        self.warnx(msg);
        Exit(code)
    }

    fn usage(&mut self, code: i32, mode: Option<Mode>, incl_mode: bool) -> Exit {
        let p = self.argv0.clone();
        let m = |s: &str| {
            if incl_mode {
                format!("{s} ")
            } else {
                String::new()
            }
        };
        let text = match mode {
            None => format!("Usage: {p} <mode> [-h] [...]"),
            Some(Mode::Read) => format!("Usage: {p} {}[-h] [-p] [-R] key [...]", m("read")),
            Some(Mode::Write) => format!("Usage: {p} {}[-h] [-R] key value [...]", m("write")),
            Some(Mode::Rm) => format!("Usage: {p} {}[-h] [-t] key [...]", m("rm")),
            Some(Mode::Exists) => format!("Usage: {p} {}[-h] key", m("exists")),
            Some(Mode::List) => format!("Usage: {p} {}[-h] [-p] key [...]", m("list")),
            Some(Mode::Ls) => format!("Usage: {p} {}[-h] [-f] [-p] [path]", m("ls")),
            Some(Mode::Chmod) => {
                format!(
                    "Usage: {p} {}[-h] [-u] [-r] key <mode [modes...]>",
                    m("chmod")
                )
            }
            Some(Mode::Watch) => format!("Usage: {p} {}[-h] [-n NR] key", m("watch")),
        };
        self.errx(code, &text)
    }
}

#[derive(Default)]
struct Opts {
    prefix: bool,
    tidy: bool,
    upto: bool,
    recurse: bool,
    raw: bool,
    flat: bool,
    nr_watches: Option<i64>,
    depth: Option<i64>,
}

/// Runs the command line `argv` (program name first) against `bus`: its exit code.
pub fn run(argv: &[String], bus: &mut dyn Bus, io: &mut Io) -> i32 {
    match run_inner(argv, bus, io) {
        Ok(code) | Err(Exit(code)) => code,
    }
}

fn run_inner(argv: &[String], bus: &mut dyn Bus, io: &mut Io) -> Result<i32, Exit> {
    let command = io.short.clone();
    let (mode_name, rest) = match command.strip_prefix("xenstore-") {
        Some(m) => (m.to_string(), &argv[1.min(argv.len())..]),
        None if argv.len() < 2 => return Err(io.usage(1, None, false)),
        None => (argv[1].clone(), &argv[2..]),
    };
    let incl_mode = !command.starts_with("xenstore-");
    let Some(mode) = lookup_mode(&mode_name) else {
        return Err(io.errx(1, &format!("unknown mode {mode_name}\n")));
    };
    // getopt_long("hfspturn:Rd:"), permuting: options anywhere until `--`.
    let mut o = Opts::default();
    let mut args: Vec<String> = Vec::new();
    let mut it = rest.iter();
    let mut only_args = false;
    while let Some(a) = it.next() {
        if only_args || !a.starts_with('-') || a == "-" {
            args.push(a.clone());
            continue;
        }
        if a == "--" {
            only_args = true;
            continue;
        }
        let (letters, long) = match a.strip_prefix("--") {
            Some(l) => {
                let (name, val) = l.split_once('=').map_or((l, None), |(n, v)| (n, Some(v)));
                let c = match name {
                    "help" => 'h',
                    "flat" => 'f',
                    "prefix" => 'p',
                    "tidy" => 't',
                    "upto" => 'u',
                    "recurse" => 'r',
                    "number" => 'n',
                    "raw" => 'R',
                    "depth" => 'd',
                    _ => {
                        io.warnx(&format!("unrecognized option '{a}'"));
                        continue;
                    }
                };
                (c.to_string(), val.map(str::to_string))
            }
            None => (a[1..].to_string(), None),
        };
        let chars: Vec<char> = letters.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            let takes = matches!(c, 'n' | 'd');
            let mut value = None;
            if takes {
                let attached: String = chars[k..].iter().collect();
                k = chars.len();
                value = if let Some(v) = long.clone() {
                    Some(v)
                } else if !attached.is_empty() && a.starts_with("--").eq(&false) {
                    Some(attached)
                } else if let Some(v) = it.next() {
                    Some(v.clone())
                } else {
                    io.warnx(&format!("option requires an argument -- '{c}'"));
                    continue;
                };
            }
            let atoi = |v: &Option<String>| {
                let t = v.as_deref().unwrap_or("").trim_start();
                let end = t
                    .char_indices()
                    .find(|&(i, ch)| !(ch.is_ascii_digit() || (i == 0 && ch == '-')))
                    .map_or(t.len(), |(i, _)| i);
                t[..end].parse::<i64>().unwrap_or(0)
            };
            match c {
                'h' => return Err(io.usage(0, Some(mode), incl_mode)),
                'f' if mode == Mode::Ls => o.flat = true,
                'p' if matches!(mode, Mode::Read | Mode::List | Mode::Ls) => o.prefix = true,
                't' if mode == Mode::Rm => o.tidy = true,
                'u' if mode == Mode::Chmod => o.upto = true,
                'r' if mode == Mode::Chmod => o.recurse = true,
                'n' if mode == Mode::Watch => o.nr_watches = Some(atoi(&value)),
                'R' if matches!(mode, Mode::Read | Mode::Write) => o.raw = true,
                'd' if mode == Mode::Watch => o.depth = Some(atoi(&value)),
                'f' | 'p' | 't' | 'u' | 'r' | 'n' | 'R' | 'd' => {
                    return Err(io.usage(1, Some(mode), incl_mode));
                }
                's' => {}
                other => io.warnx(&format!("invalid option -- '{other}'")),
            }
        }
    }
    match mode {
        Mode::Ls => {}
        Mode::Write if args.len() % 2 == 1 => return Err(io.usage(1, Some(mode), incl_mode)),
        _ if args.is_empty() => return Err(io.usage(1, Some(mode), incl_mode)),
        _ => {}
    }
    let transaction = match mode {
        Mode::Read => args.len() > 1,
        Mode::Write => args.len() > 2,
        Mode::Ls | Mode::Watch => false,
        _ => true,
    };
    if mode == Mode::Ls && args.is_empty() {
        args.push("/".into());
    }
    let mut width = io.columns.map_or(80, |c| c.saturating_sub(2));
    let mut desired = 60;
    if o.flat {
        width = i32::MAX as usize / 2;
        desired = 0;
    }
    loop {
        let tx = if transaction {
            match bus.request(XS_TRANSACTION_START, 0, b"\0") {
                Ok(r) => strings(&r)
                    .first()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                Err(_) => return Err(io.errx(1, "couldn't start transaction")),
            }
        } else {
            0
        };
        let mut out = Vec::new();
        let ret = perform(mode, &args, &o, bus, tx, io, &mut out, width, desired)?;
        if transaction {
            let how: &[u8] = if ret == 0 { b"T\0" } else { b"F\0" };
            match bus.request(XS_TRANSACTION_END, tx, how) {
                Ok(_) => {}
                Err(Errno::EAGAIN) if ret == 0 => continue,
                Err(_) => return Err(io.errx(1, "couldn't end transaction")),
            }
        }
        let _ = io.out.write_all(&out);
        return Ok(ret);
    }
}

#[allow(clippy::too_many_arguments)]
fn perform(
    mode: Mode,
    args: &[String],
    o: &Opts,
    bus: &mut dyn Bus,
    tx: u32,
    io: &mut Io,
    out: &mut Vec<u8>,
    width: usize,
    desired: usize,
) -> Result<i32, Exit> {
    let mut i = 0;
    while i < args.len() {
        let path = &args[i];
        match mode {
            Mode::Read => {
                let Ok(v) = bus.request(XS_READ, tx, &path_arg(path)) else {
                    io.warnx(&format!("couldn't read path {path}"));
                    return Ok(1);
                };
                if o.prefix {
                    out.extend_from_slice(format!("{path}: ").as_bytes());
                }
                if o.raw {
                    out.extend_from_slice(&v);
                } else {
                    out.extend_from_slice(sanitise(&v).as_bytes());
                    out.push(b'\n');
                }
                i += 1;
            }
            Mode::Write => {
                let spec = &args[i + 1];
                let v = if o.raw {
                    spec.as_bytes().to_vec()
                } else {
                    unsanitise(spec)
                };
                let mut p = path.as_bytes().to_vec();
                p.push(0);
                p.extend_from_slice(&v);
                if bus.request(XS_WRITE, tx, &p).is_err() {
                    io.warnx(&format!("could not write path {path}"));
                    return Ok(1);
                }
                i += 2;
            }
            Mode::Rm => {
                let mut p = path.clone();
                loop {
                    if bus.request(XS_RM, tx, &path_arg(&p)).is_err() {
                        io.warnx(&format!("could not remove path {p}"));
                        return Ok(1);
                    }
                    if !o.tidy {
                        break;
                    }
                    // Up through parents left empty, without a value.
                    let Some(at) = p.rfind('/') else { break };
                    p.truncate(at);
                    let empty_value = bus
                        .request(XS_READ, tx, &path_arg(&p))
                        .is_ok_and(|v| v.is_empty());
                    let no_children = empty_value
                        && bus
                            .request(XS_DIRECTORY, tx, &path_arg(&p))
                            .is_ok_and(|l| strings(&l).is_empty());
                    if !no_children {
                        break;
                    }
                }
                i += 1;
            }
            Mode::Exists => {
                if bus.request(XS_READ, tx, &path_arg(path)).is_err() {
                    return Ok(1);
                }
                i += 1;
            }
            Mode::List => {
                let Ok(l) = bus.request(XS_DIRECTORY, tx, &path_arg(path)) else {
                    io.warnx(&format!("could not list path {path}"));
                    return Ok(1);
                };
                let pref = if o.prefix && path == "/" { "" } else { path };
                for name in strings(&l) {
                    if o.prefix {
                        out.extend_from_slice(format!("{pref}/").as_bytes());
                    }
                    out.extend_from_slice(format!("{name}\n").as_bytes());
                }
                i += 1;
            }
            Mode::Ls => {
                // `do_ls` prints as it goes.
                let mut text = Vec::new();
                let r = ls(bus, path, 0, o, width, desired, &mut text, io);
                let _ = io.out.write_all(&text);
                r?;
                i += 1;
            }
            Mode::Chmod => {
                let mut perms = Vec::new();
                for spec in &args[i + 1..] {
                    let c = spec.chars().next().unwrap_or('\0');
                    if !matches!(c, 'n' | 'r' | 'w' | 'b') {
                        return Err(io.errx(1, &format!("Invalid permission specification: '{c}'")));
                    }
                    let digits: String = spec[c.len_utf8()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let id: u32 = digits.parse().unwrap_or(0);
                    perms.push(format!("{c}{id}"));
                }
                chmod(bus, tx, path, &perms, o.upto, o.recurse, io)?;
                return Ok(0);
            }
            Mode::Watch => {
                for w in &args[i..] {
                    if let Some(d) = o.depth.filter(|&d| d >= 0) {
                        // Watch depths are not served (Xen's store has them).
                        return Err(
                            io.errx(1, &format!("Unable to add watch on {w} with depth {d}\n"))
                        );
                    }
                    let mut p = path_arg(w);
                    p.extend_from_slice(&path_arg(w));
                    if bus.request(XS_WATCH, 0, &p).is_err() {
                        return Err(io.errx(1, &format!("Unable to add watch on {w}\n")));
                    }
                }
                let max = o.nr_watches.unwrap_or(-1);
                let mut count = 0;
                while max < 0 || count < max {
                    if let Ok((path, _)) = bus.watch_event() {
                        let _ = writeln!(io.out, "{path}");
                        let _ = io.out.flush();
                    } else {
                        // The connection is gone: nothing more will come.
                        return Ok(1);
                    }
                    count += 1;
                }
                return Ok(0);
            }
        }
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn ls(
    bus: &mut dyn Bus,
    path: &str,
    depth: usize,
    o: &Opts,
    width: usize,
    desired: usize,
    out: &mut Vec<u8>,
    io: &mut Io,
) -> Result<(), Exit> {
    const TAG_LEN: usize = 8; // ` = "..."`
    let names = match bus.request(XS_DIRECTORY, 0, &path_arg(path)) {
        Ok(l) => strings(&l),
        Err(Errno::ENOENT) if depth > 0 => return Ok(()),
        Err(e) => {
            let _ = io.out.write_all(out);
            out.clear();
            return Err(io.errx(1, &format!("xs_directory ({path}): {}", strerror(e))));
        }
    };
    for name in names {
        let sep = if path.ends_with('/') { "" } else { "/" };
        let newpath = format!("{path}{sep}{name}");
        let mut line = String::new();
        let mut wid = 0;
        if o.flat {
            line.push_str(&newpath);
        } else {
            line.push_str(&" ".repeat(depth));
            wid = depth;
            let shown: String = name
                .chars()
                .take(width.saturating_sub(TAG_LEN + wid))
                .collect();
            wid += shown.len();
            line.push_str(&shown);
        }
        match bus.request(XS_READ, 0, &path_arg(&newpath)) {
            Err(_) => line.push(':'),
            Ok(v) => {
                let s = sanitise(&v);
                if width < wid + v.len() + TAG_LEN {
                    let cut: String = s
                        .chars()
                        .take(width.saturating_sub(TAG_LEN + wid))
                        .collect();
                    line.push_str(&format!(" = \"{cut}\\...\""));
                } else {
                    let part = format!(" = \"{s}\"");
                    wid += part.len();
                    line.push_str(&part);
                    if o.prefix {
                        line.push(' ');
                        wid += 1;
                        while wid < desired.min(width) {
                            line.push(if wid & 1 == 1 { '.' } else { ' ' });
                            wid += 1;
                        }
                    }
                }
            }
        }
        if o.prefix {
            match bus.request(XS_GET_PERMS, 0, &path_arg(&newpath)) {
                Ok(p) => line.push_str(&format!("  ({})", strings(&p).join(","))),
                Err(e) => {
                    let _ = io.out.write_all(out);
                    out.clear();
                    io.warnx(&format!(
                        "\ncould not access permissions for {name}: {}",
                        strerror(e)
                    ));
                }
            }
        }
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
        ls(bus, &newpath, depth + 1, o, width, desired, out, io)?;
    }
    Ok(())
}

fn chmod(
    bus: &mut dyn Bus,
    tx: u32,
    path: &str,
    perms: &[String],
    upto: bool,
    recurse: bool,
    io: &mut Io,
) -> Result<(), Exit> {
    if path.is_empty() {
        return Ok(());
    }
    let mut p = path_arg(path);
    for perm in perms {
        p.extend_from_slice(&path_arg(perm));
    }
    if let Err(e) = bus.request(XS_SET_PERMS, tx, &p) {
        return Err(io.errx(
            1,
            &format!(
                "Error occurred setting permissions on '{path}': {}",
                strerror(e)
            ),
        ));
    }
    if upto {
        let Some(at) = path.rfind('/') else {
            return Err(io.errx(
                1,
                &format!("Unable to locate path separator '/' in '{path}'"),
            ));
        };
        chmod(bus, tx, &path[..at], perms, true, false, io)?;
    }
    if recurse && let Ok(l) = bus.request(XS_DIRECTORY, tx, &path_arg(path)) {
        for child in strings(&l) {
            chmod(bus, tx, &format!("{path}/{child}"), perms, false, true, io)?;
        }
    }
    Ok(())
}
