//! # Disks: Xen's disk specification and the vbd nodes of xenstore
//!
//! [`parse`] reads a `DISKSPEC` (xl-disk-configuration(5)) as Xen's flex scanner does
//! (`tools/libs/util/libxlu_disk_l.l`): at each point the longest of its patterns wins,
//! ties going to the earlier one, patterns with trailing context (`raw:`, `phy:`, ...)
//! counting the context, so the deprecated prefixes take precedence. The parameters are
//! the keyword ones (`format=`, `vdev=`, `access=`, `devtype=`, `backendtype=`, `script=`,
//! ..., `target=` which eats the rest), the flags (`cdrom`, `discard`, `trusted`, ...), the
//! positional `target, format, vdev, access`, and the deprecated `[<format>:]<target>,
//! <vdev>[:<devtype>],<access>`. Every message is Xen's (`config parsing error in disk
//! specification: WHY: near `TEXT' in `SPEC'`), and, as in Xen, scanning goes on
//! after an error, so one spec may give several lines.
//!
//! [`dev_number`] is libxl's `libxl__device_disk_dev_number` (xvd, hd, sd, `d<n>p<m>` and
//! plain numbers; extended ids past `xvdp`), [`xenia_problem`] what Xenia's backend cannot
//! serve (another format than raw, another backend than its in-kernel `phy`, scripts,
//! CD-ROMs), and [`add_ops`] the xenstore operations libxl's `device_disk_add` and
//! `libxl__device_generic_add` make for a vbd, with libxl's permissions. `xl` sends them
//! through `/dev/xen/xenbus`, dom0's kernel applies them itself when it restarts a domain,
//! and blkback reads them.
//!
//! **What it never does.** Panic or allocate without bound on hostile text: a spec is
//! scanned once, left to right.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::json::Json;

/// `libxl_disk_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Not given.
    #[default]
    Unknown,
    /// `qcow`.
    Qcow,
    /// `qcow2`.
    Qcow2,
    /// `vhd`.
    Vhd,
    /// `raw`.
    Raw,
    /// `empty` (a CD-ROM drive with nothing in it).
    Empty,
    /// `qed`.
    Qed,
}

impl Format {
    /// libxl's name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Unknown => "unknown",
            Format::Qcow => "qcow",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vhd",
            Format::Raw => "raw",
            Format::Empty => "empty",
            Format::Qed => "qed",
        }
    }
}

/// `libxl_disk_backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Not given: libxl picks one.
    #[default]
    Unknown,
    /// `phy`: the kernel's blkback (Xenia's).
    Phy,
    /// `tap`.
    Tap,
    /// `qdisk` (QEMU).
    Qdisk,
    /// `standalone`.
    Standalone,
}

impl Backend {
    /// libxl's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Unknown => "unknown",
            Backend::Phy => "phy",
            Backend::Tap => "tap",
            Backend::Qdisk => "qdisk",
            Backend::Standalone => "standalone",
        }
    }
}

/// `libxl_disk_specification`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Specification {
    /// Not given (Xen's).
    #[default]
    Unknown,
    /// `xen`: blkif.
    Xen,
    /// `virtio`.
    Virtio,
}

/// `libxl_device_disk`, the fields a spec can set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// `backend=`: the backend domain's name.
    pub backend_domname: Option<String>,
    /// The target (`pdev_path`).
    pub pdev_path: Option<String>,
    /// The virtual device, as written (`xvda`).
    pub vdev: Option<String>,
    /// `backendtype=`.
    pub backend: Backend,
    /// `format=`.
    pub format: Format,
    /// `script=` (or a deprecated `iscsi:`-style prefix).
    pub script: Option<String>,
    /// A CD-ROM's media can change.
    pub removable: bool,
    /// `access=`: read-write.
    pub readwrite: bool,
    /// `devtype=cdrom`.
    pub is_cdrom: bool,
    /// `direct-io-safe`.
    pub direct_io_safe: bool,
    /// `discard` / `no-discard`.
    pub discard_enable: Option<bool>,
    /// `specification=`.
    pub specification: Specification,
    /// `colo` / `no-colo`.
    pub colo_enable: Option<bool>,
    /// `colo-host=`.
    pub colo_host: Option<String>,
    /// `colo-port=`.
    pub colo_port: i32,
    /// `colo-export=`.
    pub colo_export: Option<String>,
    /// `active-disk=`.
    pub active_disk: Option<String>,
    /// `hidden-disk=`.
    pub hidden_disk: Option<String>,
    /// `trusted` / `untrusted`.
    pub trusted: Option<bool>,
    /// `grant_usage=`.
    pub grant_usage: Option<bool>,
}

/// Scanner state across the specs of one disk (`DiskParseContext`).
struct Ctx<'a> {
    disk: Disk,
    spec: &'a str,
    errors: Vec<String>,
    access_set: bool,
    had_depr_prefix: bool,
}

impl Ctx<'_> {
    fn err(&mut self, near: Option<&str>, message: &str) {
        let near = near.map_or(String::new(), |n| format!(": near `{n}'"));
        self.errors.push(format!(
            "config parsing error in disk specification: {message}{near} in `{}'",
            self.spec
        ));
    }

    fn failed(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `savestring`: an empty earlier value may be replaced, a non-empty one not.
    fn save(&mut self, what: &str, field: Field, value: &str) {
        let slot = match field {
            Field::Target => &mut self.disk.pdev_path,
            Field::Vdev => &mut self.disk.vdev,
            Field::Script => &mut self.disk.script,
            Field::Backend => &mut self.disk.backend_domname,
            Field::ColoHost => &mut self.disk.colo_host,
            Field::ColoExport => &mut self.disk.colo_export,
            Field::ActiveDisk => &mut self.disk.active_disk,
            Field::HiddenDisk => &mut self.disk.hidden_disk,
        };
        if slot.as_deref().is_some_and(|s| !s.is_empty()) {
            self.err(Some(value), &format!("{what} respecified"));
            return;
        }
        *slot = Some(value.to_string());
    }

    fn set_access(&mut self, s: &str) {
        match s {
            "r" | "ro" => self.disk.readwrite = false,
            "rw" | "w" | "" => self.disk.readwrite = true,
            _ => self.err(Some(s), "unknown value for access"),
        }
    }

    fn set_format(&mut self, s: &str) {
        let f = match s {
            "" | "raw" => Format::Raw,
            "qcow" => Format::Qcow,
            "qcow2" => Format::Qcow2,
            "vhd" => Format::Vhd,
            "empty" => Format::Empty,
            "qed" => Format::Qed,
            _ => return self.err(Some(s), "unknown value for format"),
        };
        if self.disk.format != Format::Unknown && self.disk.format != f {
            self.err(Some(s), "format respecified");
        } else {
            self.disk.format = f;
        }
    }

    fn set_backendtype(&mut self, s: &str) {
        let b = match s {
            "phy" => Backend::Phy,
            "tap" => Backend::Tap,
            "qdisk" => Backend::Qdisk,
            "standalone" => Backend::Standalone,
            _ => return self.err(Some(s), "unknown value for backendtype"),
        };
        if self.disk.backend != Backend::Unknown && self.disk.backend != b {
            self.err(Some(s), "backend respecified");
        } else {
            self.disk.backend = b;
        }
    }

    fn set_specification(&mut self, s: &str) {
        let v = match s {
            "xen" => Specification::Xen,
            "virtio" => Specification::Virtio,
            _ => return self.err(Some(s), "unknown value for specification"),
        };
        if self.disk.specification != Specification::Unknown && self.disk.specification != v {
            self.err(Some(s), "specification respecified");
        } else {
            self.disk.specification = v;
        }
    }

    /// `vdev_and_devtype`: `<vdev>:<devtype>`, or nothing done (false) without a colon.
    fn vdev_and_devtype(&mut self, s: &str) -> bool {
        let Some(colon) = s.rfind(':') else {
            return false;
        };
        self.save("vdev", Field::Vdev, &s[..colon]);
        match &s[colon + 1..] {
            "cdrom" => self.disk.is_cdrom = true,
            "disk" => self.disk.is_cdrom = false,
            other => self.err(Some(other), "unknown deprecated type"),
        }
        true
    }

    fn positional(&mut self, text: &str) -> bool {
        if self.failed() {
            // Earlier errors may just lead to this one.
        } else if self.disk.pdev_path.is_none() {
            self.save("target", Field::Target, text);
        } else if !self.had_depr_prefix && self.disk.format == Format::Unknown {
            if self.disk.pdev_path.as_deref() == Some("") && self.vdev_and_devtype(text) {
                self.disk.format = Format::Empty;
            } else {
                self.set_format(text);
            }
        } else if self.disk.vdev.is_none() {
            if !self.vdev_and_devtype(text) {
                self.save("vdev", Field::Vdev, text);
            }
        } else if !self.access_set {
            self.access_set = true;
            self.set_access(text);
        } else {
            self.err(Some(text), "too many positional parameters");
            return false;
        }
        true
    }
}

#[derive(Clone, Copy)]
enum Field {
    Target,
    Vdev,
    Script,
    Backend,
    ColoHost,
    ColoExport,
    ActiveDisk,
    HiddenDisk,
}

/// What a scanner rule does with its text.
#[derive(Clone, Copy)]
enum Rule {
    Blank,
    /// `key=[^,]*,?`: a keyword parameter.
    Key(Key),
    /// A flag (`cdrom,?`, ...), with the text it matched including the comma.
    Flag(Flag),
    /// `devtype=[^,]*,?` other than cdrom and disk.
    BadDevtype,
    /// `target=.*`.
    Target,
    /// `[a-z][-a-z0-9]*=[^,],?`.
    UnknownKey,
    /// `(raw|qcow2?|vhd):`.
    FormatPrefix,
    /// `(iscsi|e?nbd|drbd):`.
    ScriptPrefix,
    /// `tapdisk: tap2?: aio: ioemu: file: phy:`, ignored.
    IgnoredPrefix,
    /// `[a-z][a-z0-9]*:` followed by the end or a character not `[a-z0-9]`.
    UnknownPrefix,
    /// `[^=,]*,|[^=,]+,?`.
    Positional,
    /// `.`: the rest is bad syntax.
    Bad,
}

#[derive(Clone, Copy)]
enum Key {
    Format,
    Access,
    Backend,
    BackendType,
    Specification,
    Vdev,
    Script,
    ColoHost,
    ColoPort,
    ColoExport,
    ActiveDisk,
    HiddenDisk,
}

const KEYS: &[(&str, Key)] = &[
    ("format=", Key::Format),
    ("access=", Key::Access),
    ("backend=", Key::Backend),
    ("backendtype=", Key::BackendType),
    ("specification=", Key::Specification),
    ("vdev=", Key::Vdev),
    ("script=", Key::Script),
    ("colo-host=", Key::ColoHost),
    ("colo-port=", Key::ColoPort),
    ("colo-export=", Key::ColoExport),
    ("active-disk=", Key::ActiveDisk),
    ("hidden-disk=", Key::HiddenDisk),
];

#[derive(Clone, Copy)]
enum Flag {
    Cdrom,
    Disk,
    DirectIoSafe,
    Discard(bool),
    Colo(bool),
    Trusted(bool),
    GrantUsage(bool),
}

/// The flags in the scanner's order (`devtype=cdrom` and `devtype=disk` come before the
/// catch-all `devtype=` error, which is not a flag).
const FLAGS_BEFORE_KEYS: &[(&str, Flag)] = &[
    ("cdrom", Flag::Cdrom),
    ("devtype=cdrom", Flag::Cdrom),
    ("devtype=disk", Flag::Disk),
];
const FLAGS_AFTER_KEYS: &[(&str, Flag)] = &[
    ("direct-io-safe", Flag::DirectIoSafe),
    ("discard", Flag::Discard(true)),
    ("no-discard", Flag::Discard(false)),
    ("colo", Flag::Colo(true)),
    ("no-colo", Flag::Colo(false)),
    ("trusted", Flag::Trusted(true)),
    ("untrusted", Flag::Trusted(false)),
    ("grant_usage=1", Flag::GrantUsage(true)),
    ("grant_usage=0", Flag::GrantUsage(false)),
];

/// `[^,]*,?` after `at`: where it ends.
fn up_to_comma(s: &[u8], at: usize) -> usize {
    let mut end = at;
    while end < s.len() && s[end] != b',' {
        end += 1;
    }
    if end < s.len() {
        end += 1;
    }
    end
}

/// `.*`: flex's dot stops at a newline.
fn line_end(s: &[u8], at: usize) -> usize {
    s[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(s.len(), |p| at + p)
}

/// The rule that wins at the start of `s`: `(rule, length of its text, length counted
/// for the longest match)`.
fn next_rule(s: &[u8]) -> (Rule, usize, usize) {
    // Candidates in the scanner's order; the first of the longest wins.
    let mut best: Option<(Rule, usize, usize)> = None;
    let mut offer = |rule: Rule, text: usize, counted: usize| {
        if counted > 0 && best.is_none_or(|(_, _, c)| counted > c) {
            best = Some((rule, text, counted));
        }
    };
    let blank = s
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n'))
        .count();
    if blank > 0 {
        offer(Rule::Blank, blank, line_end(s, blank).max(blank));
    }
    let comma_opt = |len: usize| {
        if s.get(len) == Some(&b',') {
            len + 1
        } else {
            len
        }
    };
    for &(word, flag) in FLAGS_BEFORE_KEYS {
        if s.starts_with(word.as_bytes()) {
            let n = comma_opt(word.len());
            offer(Rule::Flag(flag), n, n);
        }
    }
    if s.starts_with(b"devtype=") {
        let n = up_to_comma(s, 8);
        offer(Rule::BadDevtype, n, n);
    }
    // `format=` and `access=` come before the devtype rules in the scanner, but no text
    // matches both, so the order between them does not matter.
    for &(word, key) in KEYS {
        if s.starts_with(word.as_bytes()) {
            let n = up_to_comma(s, word.len());
            offer(Rule::Key(key), n, n);
        }
    }
    for &(word, flag) in FLAGS_AFTER_KEYS {
        if s.starts_with(word.as_bytes()) {
            let n = comma_opt(word.len());
            offer(Rule::Flag(flag), n, n);
        }
    }
    if s.starts_with(b"target=") {
        let n = line_end(s, 7);
        offer(Rule::Target, n, n);
    }
    // [a-z][-a-z0-9]*=[^,],?
    if s.first().is_some_and(u8::is_ascii_lowercase) {
        let mut i = 1;
        while s
            .get(i)
            .is_some_and(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            i += 1;
        }
        if s.get(i) == Some(&b'=') && s.get(i + 1).is_some_and(|&b| b != b',' && b != b'\n') {
            let n = comma_opt(i + 2);
            offer(Rule::UnknownKey, n, n);
        }
    }
    // Deprecated prefixes: their trailing context (the rest of the line) counts.
    let rest = line_end(s, 0);
    let prefix = |words: &[&str]| {
        words
            .iter()
            .find(|w| s.starts_with(w.as_bytes()) && s.get(w.len()) == Some(&b':'))
            .map(|w| w.len() + 1)
    };
    if let Some(n) = prefix(&["raw", "qcow2", "qcow", "vhd"]) {
        offer(Rule::FormatPrefix, n, rest);
    }
    if let Some(n) = prefix(&["iscsi", "enbd", "nbd", "drbd"]) {
        offer(Rule::ScriptPrefix, n, rest);
    }
    if let Some(n) = prefix(&["tapdisk", "tap2", "tap", "aio", "ioemu", "file", "phy"]) {
        offer(Rule::IgnoredPrefix, n, rest);
    }
    if s.first().is_some_and(u8::is_ascii_lowercase) {
        let mut i = 1;
        while s
            .get(i)
            .is_some_and(|&b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            i += 1;
        }
        if s.get(i) == Some(&b':') {
            let n = i + 1;
            let counted = match s.get(n) {
                Some(&b) if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'\n') => rest,
                _ => n,
            };
            offer(Rule::UnknownPrefix, n, counted);
        }
    }
    let run = s.iter().take_while(|&&b| b != b'=' && b != b',').count();
    if s.get(run) == Some(&b',') {
        offer(Rule::Positional, run + 1, run + 1);
    } else if run > 0 {
        offer(Rule::Positional, run, run);
    }
    best.unwrap_or((Rule::Bad, 1, 1))
}

/// Reads the specs of one disk (`xlu_disk_parse`: several specs, as `xl block-attach`
/// takes them, fill the same disk). The error lines are Xen's, without the source xl
/// prefixes them with.
pub fn parse(specs: &[&str]) -> Result<Disk, Vec<String>> {
    let mut ctx = Ctx {
        disk: Disk {
            readwrite: true,
            ..Disk::default()
        },
        spec: "",
        errors: Vec::new(),
        access_set: false,
        had_depr_prefix: false,
    };
    for spec in specs {
        ctx.spec = spec;
        scan(&mut ctx, spec);
        if ctx.failed() {
            return Err(ctx.errors);
        }
    }
    let d = &mut ctx.disk;
    if d.format == Format::Unknown {
        d.format = Format::Raw;
    }
    if d.is_cdrom {
        d.removable = true;
        d.readwrite = false;
        if d.pdev_path.as_deref().is_none_or(str::is_empty) {
            d.format = Format::Empty;
        }
    }
    if d.vdev.is_none() {
        ctx.err(None, "no vdev specified");
        return Err(ctx.errors);
    }
    if d.pdev_path.is_none() && !d.removable {
        ctx.err(None, "no target specified (and device not removable)");
        return Err(ctx.errors);
    }
    Ok(ctx.disk)
}

/// One spec through the scanner.
fn scan(ctx: &mut Ctx<'_>, spec: &str) {
    let bytes = spec.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let s = &bytes[at..];
        let (rule, mut len, _) = next_rule(s);
        // The scanner works on bytes; a rule whose text ends inside a character (the one
        // character of an unknown parameter's value) takes the whole character.
        while !spec.is_char_boundary(at + len) {
            len += 1;
        }
        let text = &spec[at..at + len];
        let value = |prefix: usize| text[prefix..].strip_suffix(',').unwrap_or(&text[prefix..]);
        at += len;
        match rule {
            Rule::Blank => {}
            Rule::Key(key) => {
                let eq = text.find('=').map_or(0, |i| i + 1);
                let v = value(eq);
                match key {
                    Key::Format => ctx.set_format(v),
                    Key::Access => ctx.set_access(v),
                    Key::Backend => ctx.save("backend", Field::Backend, v),
                    Key::BackendType => ctx.set_backendtype(v),
                    Key::Specification => ctx.set_specification(v),
                    Key::Vdev => ctx.save("vdev", Field::Vdev, v),
                    Key::Script => ctx.save("script", Field::Script, v),
                    Key::ColoHost => ctx.save("colo-host", Field::ColoHost, v),
                    Key::ColoPort => match atoi(v) {
                        0 => ctx.err(Some(v), "unknown value for colo_port"),
                        port => ctx.disk.colo_port = port,
                    },
                    Key::ColoExport => ctx.save("colo-export", Field::ColoExport, v),
                    Key::ActiveDisk => ctx.save("active-disk", Field::ActiveDisk, v),
                    Key::HiddenDisk => ctx.save("hidden-disk", Field::HiddenDisk, v),
                }
            }
            Rule::Flag(flag) => match flag {
                Flag::Cdrom => ctx.disk.is_cdrom = true,
                Flag::Disk => ctx.disk.is_cdrom = false,
                Flag::DirectIoSafe => ctx.disk.direct_io_safe = true,
                Flag::Discard(on) => ctx.disk.discard_enable = Some(on),
                Flag::Colo(on) => ctx.disk.colo_enable = Some(on),
                Flag::Trusted(on) => ctx.disk.trusted = Some(on),
                Flag::GrantUsage(on) => ctx.disk.grant_usage = Some(on),
            },
            Rule::BadDevtype => ctx.err(Some(text), "unknown value for type"),
            Rule::Target => {
                let v = value(7);
                ctx.save("target", Field::Target, v);
            }
            Rule::UnknownKey => ctx.err(Some(text), "unknown parameter"),
            Rule::FormatPrefix => {
                ctx.had_depr_prefix = true;
                ctx.set_format(&text[..text.len() - 1]);
            }
            Rule::ScriptPrefix => {
                ctx.had_depr_prefix = true;
                let script = format!("block-{}", &text[..text.len() - 1]);
                ctx.save("script", Field::Script, &script);
            }
            Rule::IgnoredPrefix => ctx.had_depr_prefix = true,
            Rule::UnknownPrefix => {
                ctx.err(Some(text), "unknown deprecated disk prefix");
                return;
            }
            Rule::Positional => {
                if !ctx.positional(value(0)) {
                    return;
                }
            }
            Rule::Bad => {
                let end = line_end(bytes, at);
                let near = &spec[at - len..end];
                ctx.err(Some(near), "bad disk syntax");
                return;
            }
        }
    }
}

/// C's `atoi`: leading blanks, a sign, digits; 0 when there are none.
fn atoi(s: &str) -> i32 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in t.bytes().take_while(u8::is_ascii_digit) {
        v = (v * 10 + i64::from(b - b'0')).min(i64::from(i32::MAX) + 1);
    }
    let v = if neg { -v } else { v };
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// libxl's `device_virtdisk_matches`: `<prefix><letters>[<partition>]`, the letters a
/// base-26 number as Linux names its disks (`a`=0, `z`=25, `aa`=26).
fn virtdisk(vdev: &str, prefix: &str, max_index: i64, max_part: i64) -> Option<(i64, i64)> {
    let rest = vdev.strip_prefix(prefix)?;
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let mut index: i64 = -1;
    for b in rest.bytes().take(letters) {
        index = (index + 1) * 26 + i64::from(b - b'a');
        if index > max_index {
            return None;
        }
    }
    // No letter: libxl goes on with index -1, which makes no valid number.
    if index < 0 {
        return None;
    }
    let digits = &rest[letters..];
    if digits.is_empty() {
        return Some((index, 0));
    }
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part: i64 = digits.parse().ok().filter(|&p| p <= max_part)?;
    Some((index, part))
}

/// Major numbers of Linux's disks, as the blkif protocol encodes `virtual-device`.
const XVD_MAJOR: u32 = 202;
const IDE0_MAJOR: u32 = 3;
const IDE1_MAJOR: u32 = 22;
const SCSI_DISK0_MAJOR: u32 = 8;
/// `virtual-device` with this bit is an extended id (`xen-vbd-interface(7)`).
pub const EXTENDED: u32 = 1 << 28;

/// libxl's `libxl__device_disk_dev_number`: the device number a vdev names (its
/// `virtual-device` and the `<devid>` of its xenstore paths), `None` when it names none.
/// `xvda`=51712 (202<<8), `xvdb`=51728; disks past `xvdp` or partitions past 15 use the
/// extended form (1<<28 | disk<<8 | partition); `hd[a-d]` are IDE, `sd[a-p]` SCSI, and a
/// plain number is taken as it is.
pub fn dev_number(vdev: &str) -> Option<u32> {
    if let Some((disk, part)) = d_p_form(vdev).or_else(|| virtdisk(vdev, "xvd", (1 << 20) - 1, 255))
    {
        let (disk, part) = (disk as u32, part as u32);
        return Some(if disk <= 15 && part <= 15 {
            (XVD_MAJOR << 8) | (disk << 4) | part
        } else {
            EXTENDED | (disk << 8) | part
        });
    }
    if let Some(n) = plain_number(vdev) {
        return Some(n);
    }
    if let Some((disk, part)) = virtdisk(vdev, "hd", 3, 63) {
        let major = if disk < 2 { IDE0_MAJOR } else { IDE1_MAJOR };
        return Some((major << 8) | (((disk & 1) as u32) << 6) | part as u32);
    }
    if let Some((disk, part)) = virtdisk(vdev, "sd", 15, 15) {
        return Some((SCSI_DISK0_MAJOR << 8) | ((disk as u32) << 4) | part as u32);
    }
    None
}

/// `sscanf(v, "d%ip%i%n")` taking the whole string, disk below 2^20 and partition below 256.
fn d_p_form(vdev: &str) -> Option<(i64, i64)> {
    let rest = vdev.strip_prefix('d')?;
    let (disk, rest) = scan_int(rest)?;
    let rest = rest.strip_prefix('p')?;
    let (part, rest) = scan_int(rest)?;
    (rest.is_empty() && (0..1 << 20).contains(&disk) && (0..256).contains(&part))
        .then_some((disk, part))
}

/// `%i` for the values that matter here: optional sign, then decimal digits (a leading
/// `0x` or `0` would be hex or octal in C; such numbers are refused rather than misread).
fn scan_int(s: &str) -> Option<(i64, &str)> {
    let (neg, t) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = t.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > 9 || (n > 1 && t.starts_with('0')) {
        return None;
    }
    let v: i64 = t[..n].parse().ok()?;
    Some((if neg { -v } else { v }, &t[n..]))
}

/// `strtoul(v, &end, 0)` with nothing left and at most `INT_MAX`.
fn plain_number(vdev: &str) -> Option<u32> {
    let n = crate::xlcfg::parse_integer(vdev)?;
    if vdev.starts_with('-') || vdev.trim_start() != vdev {
        return None;
    }
    u32::try_from(n).ok().filter(|&n| n <= i32::MAX as u32)
}

/// libxl's `libxl__devid_to_vdev`: the `xvd` name of a device number.
pub fn devid_to_vdev(devid: u32) -> String {
    let (minor, parts) = if devid & EXTENDED == 0 {
        (devid & 0xff, 16)
    } else {
        (devid & !EXTENDED, 256)
    };
    let mut name = Vec::new();
    let mut n = minor / parts;
    loop {
        name.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    name.reverse();
    let mut out = String::from("xvd");
    out.push_str(core::str::from_utf8(&name).unwrap_or(""));
    if minor % parts != 0 {
        out += &format!("{}", minor & (parts - 1));
    }
    out
}

/// The names dom0 answers to as a backend domain (`backend=`).
pub fn is_dom0_name(name: &str) -> bool {
    matches!(name, "0" | "" | crate::DOM0_NAME)
}

/// Why Xenia cannot serve `disk` (its backend is blkback in dom0's kernel, serving raw
/// devices and images), or why libxl would refuse it; `None` when it can. The text
/// completes `cannot attach disk VDEV: `.
pub fn xenia_problem(disk: &Disk) -> Option<String> {
    let vdev = disk.vdev.as_deref().unwrap_or("");
    if dev_number(vdev).is_none() {
        // libxl's words (`device_disk_add`).
        return Some(format!(
            "Invalid or unsupported virtual disk identifier {vdev}"
        ));
    }
    if disk.is_cdrom {
        return Some(
            "devtype=cdrom is not supported by Xenia: its block backend has no removable media"
                .to_string(),
        );
    }
    if disk.format != Format::Raw {
        return Some(format!(
            "format={} is not supported by Xenia: its block backend serves raw devices and \
             images only (format=raw)",
            disk.format.name()
        ));
    }
    if !matches!(disk.backend, Backend::Unknown | Backend::Phy) {
        return Some(format!(
            "backendtype={} is not supported by Xenia: its only block backend is blkback in \
             dom0's kernel (backendtype=phy)",
            disk.backend.name()
        ));
    }
    if disk.specification == Specification::Virtio {
        return Some(
            "specification=virtio is not supported by Xenia: its guests use Xen's blkif \
             (specification=xen)"
                .to_string(),
        );
    }
    if let Some(s) = &disk.script {
        return Some(format!(
            "script={s} is not supported by Xenia: dom0 runs no hotplug scripts, so the \
             target must be a device or file in dom0"
        ));
    }
    if disk.colo_enable == Some(true) {
        return Some("COLO is not supported by Xenia".to_string());
    }
    if let Some(b) = &disk.backend_domname
        && !is_dom0_name(b)
    {
        return Some(format!(
            "backend={b} is not supported by Xenia: disks are served by Domain-0 only"
        ));
    }
    match disk.pdev_path.as_deref() {
        None | Some("") => Some("no target given".to_string()),
        Some(_) => None,
    }
}

/// The path in dom0 a target names: as given when absolute, else under `/dev` (the block
/// hotplug script's `expand_dev`).
pub fn target_path(target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/dev/{target}")
    }
}

/// Whether a disk on `target` with access `readwrite` may not be given while another
/// holds it with access `held_rw` (Xen's block script's `check_sharing`: a read-only user
/// may share with read-only ones, a writer with nobody). Targets are compared by the path
/// in dom0 ([`target_path`]).
pub fn conflicts(target: &str, readwrite: bool, held_target: &str, held_rw: bool) -> bool {
    target_path(target) == target_path(held_target) && (readwrite || held_rw)
}

/// Xen's words for a refused share (the block script's `do_ebusy` for a guest's use).
pub fn in_use_message(target: &str, readwrite: bool) -> String {
    let path = target_path(target);
    if readwrite {
        format!("Device {path} is mounted in a guest domain,\nand so cannot be mounted now.")
    } else {
        format!(
            "Device {path} is mounted read-write in a guest domain,\nand so cannot be mounted \
             read-only now."
        )
    }
}

/// Where the toolstack keeps which domain uses which target, so that the sharing check
/// reads a node or two rather than every backend (Xenia's; Xen's block script scans the
/// backends): `<INDEX>/<target>/<domid>-<devid>` = `r` or `w` per use, and
/// `<INDEX>/<target>/writer` = `<domid>-<devid>` for the writer. Entries outlive their
/// backends (a destroyed domain's are not removed); a user whose backend is gone is stale.
pub const INDEX: &str = "/tool/xenia/disks";

/// The index directory of a target: its absolute path, empty components dropped, every
/// byte outside xenstore's name characters (and `@`, the escape) written `@xx`
/// (`/images/a.img` is `<INDEX>/images/a@2eimg`).
pub fn index_dir(target: &str) -> String {
    let path = target_path(target);
    let mut out = String::from(INDEX);
    for part in path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(char::from(b));
            } else {
                out += &format!("@{b:02x}");
            }
        }
    }
    out
}

/// The index operations for a new use of `d` by `domid`'s device `devid` (written with
/// [`add_ops`]).
pub fn index_ops(domid: u16, devid: u32, d: &Disk) -> Vec<XsOp> {
    let dir = index_dir(d.pdev_path.as_deref().unwrap_or(""));
    let user = format!("{domid}-{devid}");
    let mode = if d.readwrite { "w" } else { "r" };
    let mut ops = alloc::vec![XsOp::Write(format!("{dir}/{user}"), mode.into())];
    if d.readwrite {
        ops.push(XsOp::Write(format!("{dir}/writer"), user));
    }
    ops
}

/// Reading a store as dom0, for [`index_release_ops`].
pub trait ReadStore {
    /// The children of `path`, or `None`.
    fn directory(&mut self, path: &str) -> Option<Vec<String>>;
    /// The value of `path`, or `None`.
    fn read(&mut self, path: &str) -> Option<Vec<u8>>;
}

/// The index entries of domain `domid`'s disks, to remove with its backends when it is
/// destroyed: for each device under `backend/vbd/<domid>`, the use entry of the target its
/// `params` names, and `writer` when it names
/// this device. Without this, a target used read-only by many short-lived domains would
/// gather entries that only a writable attach prunes.
pub fn index_release_ops(domid: u16, store: &mut impl ReadStore) -> Vec<XsOp> {
    let mut ops = Vec::new();
    let dir = format!("/local/domain/0/backend/vbd/{domid}");
    for devid in store.directory(&dir).unwrap_or_default() {
        let Some(params) = store.read(&format!("{dir}/{devid}/params")) else {
            continue;
        };
        let Ok(params) = core::str::from_utf8(&params) else {
            continue;
        };
        let index = index_dir(params);
        let user = format!("{domid}-{devid}");
        if store.read(&format!("{index}/writer")).as_deref() == Some(user.as_bytes()) {
            ops.push(XsOp::Rm(format!("{index}/writer")));
        }
        ops.push(XsOp::Rm(format!("{index}/{user}")));
    }
    ops
}

/// `XenbusStateInitialising`.
pub const STATE_INITIALISING: u32 = 1;
/// `XenbusStateConnected`.
pub const STATE_CONNECTED: u32 = 4;
/// `XenbusStateClosing`.
pub const STATE_CLOSING: u32 = 5;
/// `XenbusStateClosed`.
pub const STATE_CLOSED: u32 = 6;
/// How long `block-detach` waits for the backend to close (libxl's
/// `LIBXL_DESTROY_TIMEOUT`, 10 s).
pub const DESTROY_TIMEOUT_MS: u64 = 10_000;
/// The blkif protocol of a 64-bit x86 PV guest (`XEN_IO_PROTO_ABI_X86_64`).
pub const PROTOCOL_X86_64: &str = "x86_64-abi";

/// A xenstore permission of [`XsOp::SetPerms`]: the domain and its access, as `xs_wire`
/// writes it (`n`, `r`, `w`, `b`); the first names the owner and everyone's access.
pub type XsPerm = (u16, u8);

/// One xenstore operation, made as dom0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsOp {
    /// `XS_RM` (a missing node is no error).
    Rm(String),
    /// `XS_MKDIR`.
    Mkdir(String),
    /// `XS_SET_PERMS`.
    SetPerms(String, Vec<XsPerm>),
    /// `XS_WRITE`.
    Write(String, String),
}

/// `backend/vbd/<domid>/<devid>` under dom0's home.
pub fn backend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/0/backend/vbd/{domid}/{devid}")
}

/// `/local/domain/<domid>/device/vbd/<devid>`.
pub fn frontend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vbd/{devid}")
}

/// The operations that give domain `domid` the disk `disk` (which [`xenia_problem`]
/// accepted) as device `devid`, in libxl's order (`libxl__device_generic_add`): the
/// frontend directory, the domain's own and readable by dom0, with `backend`,
/// `backend-id`, `state`, `virtual-device`, `device-type`, `trusted` and `protocol`; then
/// the backend directory, dom0's and readable by the domain, with `frontend`,
/// `frontend-id`, `params` (the target's absolute path), `online`, `removable`,
/// `bootable`, `state`, `dev`, `type` (`phy`), `mode` (`w` or `r`), `device-type`,
/// `discard-enable` and `specification`. Both states are `XenbusStateInitialising`.
pub fn add_ops(domid: u16, devid: u32, disk: &Disk) -> Vec<XsOp> {
    let fe = frontend_path(domid, devid);
    let be = backend_path(domid, devid);
    let w = |dir: &str, key: &str, value: String| XsOp::Write(format!("{dir}/{key}"), value);
    let flag = |on: bool| if on { "1" } else { "0" }.to_string();
    let target = target_path(disk.pdev_path.as_deref().unwrap_or(""));
    alloc::vec![
        XsOp::Rm(fe.clone()),
        XsOp::Mkdir(fe.clone()),
        XsOp::SetPerms(fe.clone(), alloc::vec![(domid, b'n'), (0, b'r')]),
        w(&fe, "backend", be.clone()),
        w(&fe, "backend-id", "0".to_string()),
        w(&fe, "state", format!("{STATE_INITIALISING}")),
        w(&fe, "virtual-device", format!("{devid}")),
        w(&fe, "device-type", "disk".to_string()),
        w(&fe, "trusted", flag(disk.trusted.unwrap_or(true))),
        w(&fe, "protocol", PROTOCOL_X86_64.to_string()),
        XsOp::Rm(be.clone()),
        XsOp::Mkdir(be.clone()),
        XsOp::SetPerms(be.clone(), alloc::vec![(0, b'n'), (domid, b'r')]),
        w(&be, "frontend", fe.clone()),
        w(&be, "params", target),
        w(&be, "frontend-id", format!("{domid}")),
        w(&be, "online", "1".to_string()),
        w(&be, "removable", flag(disk.removable)),
        w(&be, "bootable", "1".to_string()),
        w(&be, "state", format!("{STATE_INITIALISING}")),
        w(&be, "dev", disk.vdev.clone().unwrap_or_default()),
        w(&be, "type", Backend::Phy.name().to_string()),
        w(
            &be,
            "mode",
            if disk.readwrite { "w" } else { "r" }.to_string()
        ),
        w(&be, "device-type", "disk".to_string()),
        w(
            &be,
            "discard-enable",
            flag(disk.discard_enable.unwrap_or(disk.readwrite))
        ),
        w(&be, "specification", "xen".to_string()),
    ]
}

/// The operations that take device `devid` away from `domid`: both directories.
pub fn remove_ops(domid: u16, devid: u32) -> Vec<XsOp> {
    alloc::vec![
        XsOp::Rm(frontend_path(domid, devid)),
        XsOp::Rm(backend_path(domid, devid)),
    ]
}

/// `libxl_device_disk` as libxl's JSON generator prints it (fields in the IDL's order,
/// each only when it differs from its default). `defaults` fills in what libxl's
/// `setdefault` does before a disk is stored (`xl list -l` shows that; `-N block-attach`
/// and `create -n` show the disk as parsed).
pub fn to_json(disk: &Disk, defaults: bool) -> Json {
    let mut m: Vec<(String, Json)> = Vec::new();
    let mut s = |k: &str, v: &str| m.push((k.to_string(), Json::str(v)));
    if let Some(b) = disk.backend_domname.as_deref() {
        s("backend_domname", b);
    }
    if let Some(p) = disk.pdev_path.as_deref() {
        s("pdev_path", p);
    }
    if let Some(v) = disk.vdev.as_deref() {
        s("vdev", v);
    }
    let backend = match disk.backend {
        Backend::Unknown if defaults => Backend::Phy,
        b => b,
    };
    if backend != Backend::Unknown {
        s("backend", backend.name());
    }
    if disk.format != Format::Unknown {
        s("format", disk.format.name());
    }
    if let Some(sc) = disk.script.as_deref() {
        s("script", sc);
    }
    let defbool = |b: bool| Json::str(if b { "True" } else { "False" });
    for (k, on) in [
        ("removable", disk.removable),
        ("readwrite", disk.readwrite),
        ("is_cdrom", disk.is_cdrom),
    ] {
        if on {
            m.push((k.to_string(), Json::Int(1)));
        }
    }
    if disk.direct_io_safe {
        m.push(("direct_io_safe".to_string(), Json::str("True")));
    }
    let discard = disk.discard_enable.or(defaults.then_some(disk.readwrite));
    if let Some(d) = discard {
        m.push(("discard_enable".to_string(), defbool(d)));
    }
    match disk.specification {
        Specification::Xen => m.push(("specification".to_string(), Json::str("xen"))),
        Specification::Virtio => m.push(("specification".to_string(), Json::str("virtio"))),
        Specification::Unknown if defaults => {
            m.push(("specification".to_string(), Json::str("xen")))
        }
        Specification::Unknown => {}
    }
    let colo = disk.colo_enable.or(defaults.then_some(false));
    if let Some(c) = colo {
        m.push(("colo_enable".to_string(), defbool(c)));
    }
    if defaults {
        m.push(("colo_restore_enable".to_string(), defbool(false)));
    }
    for (k, v) in [
        ("colo_host", &disk.colo_host),
        ("colo_export", &disk.colo_export),
        ("active_disk", &disk.active_disk),
        ("hidden_disk", &disk.hidden_disk),
    ] {
        if k == "colo_export" && disk.colo_port != 0 {
            m.push((
                "colo_port".to_string(),
                Json::Int(i64::from(disk.colo_port)),
            ));
        }
        if let Some(v) = v {
            m.push((k.to_string(), Json::str(v)));
        }
    }
    let trusted = disk.trusted.or(defaults.then_some(true));
    if let Some(t) = trusted {
        m.push(("trusted".to_string(), defbool(t)));
    }
    if let Some(g) = disk.grant_usage {
        m.push(("grant_usage".to_string(), defbool(g)));
    }
    Json::Map(m)
}

#[cfg(test)]
mod tests;
