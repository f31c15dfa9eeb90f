//! # JSON as xl prints it
//!
//! `xl list -l` and `xl create -n` print a domain's configuration as libxl's JSON (the
//! fields of `libxl_domain_config`, `tools/libs/light/libxl_types.idl`, in its order and
//! spelling), made by yajl's beautifying generator. [`render`] reproduces that generator
//! byte for byte (`yajl_gen.c`: four spaces a level, `"key": value`, a line per element,
//! an empty map or array as an opening line, an empty line and the closing bracket, and a
//! newline after the outermost value); [`domain_config`] builds the configuration from
//! what Xenia knows of a domain.
//!
//! libxl prints a field only when it differs from its default (`gentypes.py`'s
//! `get_default_expr`), and structures always. Xenia's configuration has fewer fields
//! than libxl's: the ones it has are printed where libxl puts them, under the same rule:
//! a nil UUID, `max_vcpus` 0 and an empty `avail_vcpus` are libxl's defaults and left
//! out (that is how Xen shows Domain-0, whose stored configuration is the stub
//! `xen-init-dom0` writes: type and UUID only, the rest filled in from the hypervisor's
//! memory and scheduler figures). The memory sizes and the scheduler's weight and cap are
//! always known and always printed.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::xlcfg::Action;

/// A JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A map, in the order given.
    Map(Vec<(String, Json)>),
    /// An array.
    Array(Vec<Json>),
}

impl Json {
    /// A string value.
    pub fn str(s: &str) -> Json {
        Json::Str(String::from(s))
    }

    /// The value of `key` in a map (the first, should it be there twice).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The keys of a map, in order (none for other values).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Reads back what [`render`] writes (and any JSON made only of objects, arrays, strings
/// and integers): the check that xl's output is JSON, and the way to look inside it.
/// Anything else (`true`, `null`, fractions, trailing text) is an error saying where.
pub fn parse(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        src: text.as_bytes(),
        pos: 0,
    };
    let value = p.value(0)?;
    p.blank();
    if p.pos != p.src.len() {
        return Err(format!("text after the value at byte {}", p.pos));
    }
    Ok(value)
}

/// Nesting [`parse`] accepts (xl's JSON is six levels deep).
const MAX_PARSE_DEPTH: usize = 32;

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn blank(&mut self) {
        while self
            .src
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        self.blank();
        if self.src.get(self.pos) != Some(&b) {
            return Err(format!("expected '{}' at byte {}", char::from(b), self.pos));
        }
        self.pos += 1;
        Ok(())
    }

    /// Whether the next byte (after blanks) is `b`; consumed if so.
    fn eat(&mut self, b: u8) -> bool {
        self.blank();
        let yes = self.src.get(self.pos) == Some(&b);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_PARSE_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_PARSE_DEPTH} at byte {}",
                self.pos
            ));
        }
        self.blank();
        match self.src.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.blank();
                        let key = self.string()?;
                        self.expect(b':')?;
                        entries.push((key, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Json::Map(entries))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Json::Array(items))
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.pos += 1;
                while self.src.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                core::str::from_utf8(&self.src[start..self.pos])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Int)
                    .ok_or_else(|| format!("bad integer at byte {start}"))
            }
            _ => Err(format!("expected a value at byte {}", self.pos)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.pos;
        if self.src.get(self.pos) != Some(&b'"') {
            return Err(format!("expected a string at byte {start}"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                return Err(format!("unterminated string from byte {start}"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let esc = self.src.get(self.pos).copied();
                    self.pos += 1;
                    let c = match esc {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'f') => '\x0c',
                        Some(b'b') => '\x08',
                        Some(b'u') => {
                            let hex = self.src.get(self.pos..self.pos + 4);
                            self.pos += 4;
                            hex.and_then(|h| core::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .ok_or_else(|| {
                                    format!("bad \\u escape in string at byte {start}")
                                })?
                        }
                        _ => return Err(format!("bad escape in string at byte {start}")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b if b < 0x20 => return Err(format!("control byte in string at byte {start}")),
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| format!("string at byte {start} is not UTF-8"))
    }
}

/// `s` as yajl writes a string: quoted, with `"`, `\`, and the control characters
/// escaped (`\n`, `\r`, `\t`, `\f`, `\b` by name, the others as `\u00XX`).
pub fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            '\x0c' => out += "\\f",
            '\x08' => out += "\\b",
            c if (c as u32) < 0x20 => out += &format!("\\u00{:02X}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as yajl's beautifying generator writes it, ending with a newline.
pub fn render(value: &Json) -> String {
    let mut out = String::new();
    write(&mut out, value, 0);
    out.push('\n');
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

/// Writes `value` at `depth`, the cursor already placed (after `": "` or the indent).
fn write(out: &mut String, value: &Json, depth: usize) {
    match value {
        Json::Int(n) => out.push_str(&format!("{n}")),
        Json::Str(s) => out.push_str(&string(s)),
        Json::Map(entries) => {
            out.push_str("{\n");
            for (i, (key, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                indent(out, depth + 1);
                out.push_str(&string(key));
                out.push_str(": ");
                write(out, v, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push('}');
        }
        Json::Array(items) => {
            out.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                indent(out, depth + 1);
                write(out, v, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
    }
}

/// libxl's name for an `on_*` action (`libxl_action_on_shutdown`).
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Destroy => "destroy",
        Action::Restart => "restart",
        Action::Preserve => "preserve",
    }
}

/// What Xenia knows of a domain's configuration, for [`domain_config`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigView {
    /// `c_info.name`.
    pub name: String,
    /// `c_info.uuid`, formatted (`None`: the nil UUID, not printed).
    pub uuid: Option<String>,
    /// `b_info.max_vcpus` (0: not known, not printed).
    pub max_vcpus: u32,
    /// `b_info.avail_vcpus`: the vCPUs online (none: not printed).
    pub avail_vcpus: Vec<u32>,
    /// `b_info.vcpu_hard_affinity`: per vCPU, the CPUs of its `cpus=` map (none: not
    /// printed).
    pub vcpu_hard_affinity: Vec<Vec<u32>>,
    /// `b_info.vcpu_soft_affinity`, from `cpus_soft=` likewise.
    pub vcpu_soft_affinity: Vec<Vec<u32>>,
    /// `b_info.numa_placement` when xl set it (`Some(false)`: a `cpus=` list per vCPU or
    /// any `cpus_soft=` turns automatic placement off), printed as libxl's defbool.
    pub numa_placement: Option<bool>,
    /// `b_info.max_memkb`.
    pub max_memkb: u64,
    /// `b_info.target_memkb`.
    pub target_memkb: u64,
    /// `b_info.sched_params`: the credit scheduler's weight and cap.
    pub sched: Option<(u32, u32)>,
    /// `b_info.kernel`.
    pub kernel: Option<String>,
    /// `b_info.cmdline`.
    pub cmdline: Option<String>,
    /// `b_info.ramdisk`.
    pub ramdisk: Option<String>,
    /// `on_poweroff`, `on_reboot`, `on_crash` (`None`: not known, not printed).
    pub actions: Option<[Action; 3]>,
    /// `disks`: each `libxl_device_disk` already as JSON ([`crate::disk::to_json`]); none:
    /// not printed.
    pub disks: Vec<Json>,
    /// `nics`: each `libxl_device_nic` already as JSON ([`crate::vif::to_json`]); none:
    /// not printed.
    pub nics: Vec<Json>,
}

/// `libxl_domain_config` for `v`, as libxl's JSON generator orders it: `c_info`, `b_info`
/// (with the structures it always prints: `sched_params`, `type.pv`, `arch_arm`,
/// `arch_x86`), then the `on_*` actions other than `destroy` (libxl's default, which it
/// leaves out). A watchdog always destroys under Xenia (`on_watchdog` is left out), and a
/// soft reset does what `on_reboot` says (`on_soft_reset` printed as that).
pub fn domain_config(v: &ConfigView) -> Json {
    let mut c_info = alloc::vec![
        (String::from("type"), Json::str("pv")),
        (String::from("name"), Json::str(&v.name)),
    ];
    if let Some(u) = &v.uuid {
        c_info.push((String::from("uuid"), Json::str(u)));
    }
    let mut b_info = Vec::new();
    if v.max_vcpus != 0 {
        b_info.push((String::from("max_vcpus"), Json::Int(i64::from(v.max_vcpus))));
    }
    if !v.avail_vcpus.is_empty() {
        let online = v.avail_vcpus.iter().map(|&i| Json::Int(i64::from(i)));
        b_info.push((String::from("avail_vcpus"), Json::Array(online.collect())));
    }
    let int = |n: &u32| Json::Int(i64::from(*n));
    for (key, maps) in [
        ("vcpu_hard_affinity", &v.vcpu_hard_affinity),
        ("vcpu_soft_affinity", &v.vcpu_soft_affinity),
    ] {
        if !maps.is_empty() {
            let maps = maps
                .iter()
                .map(|m| Json::Array(m.iter().map(int).collect()));
            b_info.push((String::from(key), Json::Array(maps.collect())));
        }
    }
    if let Some(on) = v.numa_placement {
        let defbool = if on { "True" } else { "False" };
        b_info.push((String::from("numa_placement"), Json::str(defbool)));
    }
    for (key, kib) in [("max_memkb", v.max_memkb), ("target_memkb", v.target_memkb)] {
        b_info.push((
            String::from(key),
            Json::Int(kib.min(i64::MAX as u64) as i64),
        ));
    }
    let sched = match v.sched {
        Some((weight, cap)) => alloc::vec![
            (String::from("sched"), Json::str("credit")),
            (String::from("weight"), Json::Int(i64::from(weight))),
            (String::from("cap"), Json::Int(i64::from(cap))),
        ],
        None => Vec::new(),
    };
    b_info.push((String::from("sched_params"), Json::Map(sched)));
    for (key, value) in [
        ("kernel", &v.kernel),
        ("cmdline", &v.cmdline),
        ("ramdisk", &v.ramdisk),
    ] {
        if let Some(s) = value {
            b_info.push((String::from(key), Json::str(s)));
        }
    }
    for key in ["type.pv", "arch_arm", "arch_x86"] {
        b_info.push((String::from(key), Json::Map(Vec::new())));
    }
    let mut config = alloc::vec![
        (String::from("c_info"), Json::Map(c_info)),
        (String::from("b_info"), Json::Map(b_info)),
    ];
    if !v.disks.is_empty() {
        config.push((String::from("disks"), Json::Array(v.disks.clone())));
    }
    if !v.nics.is_empty() {
        config.push((String::from("nics"), Json::Array(v.nics.clone())));
    }
    if let Some([poweroff, reboot, crash]) = v.actions {
        for (key, a) in [
            ("on_poweroff", poweroff),
            ("on_reboot", reboot),
            ("on_crash", crash),
            ("on_soft_reset", reboot),
        ] {
            if a != Action::Destroy {
                config.push((String::from(key), Json::str(action_name(a))));
            }
        }
    }
    Json::Map(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn yajl_beautified() {
        let v = Json::Map(vec![
            ("a".into(), Json::Int(1)),
            (
                "b".into(),
                Json::Map(vec![(
                    "c".into(),
                    Json::Array(vec![Json::Int(0), Json::Int(-2)]),
                )]),
            ),
            ("e".into(), Json::Map(vec![])),
            ("f".into(), Json::Array(vec![])),
            ("s".into(), Json::str("x\"y\\z\n\t\u{1}é")),
        ]);
        assert_eq!(
            render(&v),
            "{\n    \"a\": 1,\n    \"b\": {\n        \"c\": [\n            0,\n            -2\n        \
             ]\n    },\n    \"e\": {\n\n    },\n    \"f\": [\n\n    ],\n    \"s\": \
             \"x\\\"y\\\\z\\n\\t\\u0001é\"\n}\n"
        );
        assert_eq!(render(&Json::Array(vec![])), "[\n\n]\n");
        assert_eq!(string("\u{1f}\u{8}\u{c}\r"), "\"\\u001F\\b\\f\\r\"");
    }

    #[test]
    fn parsed_back() {
        let v = Json::Map(vec![
            ("a".into(), Json::Int(-12)),
            (
                "b".into(),
                Json::Array(vec![Json::Map(vec![]), Json::Array(vec![])]),
            ),
            ("s".into(), Json::str("x\"y\\z\n\t\u{1}é")),
        ]);
        assert_eq!(parse(&render(&v)), Ok(v.clone()));
        assert_eq!(v.get("a"), Some(&Json::Int(-12)));
        assert_eq!(v.keys(), ["a", "b", "s"]);
        assert_eq!(parse("\"\\u0041\\/\""), Ok(Json::str("A/")));
        for bad in [
            "",
            "true",
            "1.5",
            "{\"a\" 1}",
            "[1,]",
            "[1] x",
            "\"open",
            "{1: 2}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"[".repeat(40)).is_err());
    }

    #[test]
    fn domain_config_in_libxl_order() {
        let v = ConfigView {
            name: "web".into(),
            uuid: Some("00000000-0000-0000-0000-000000000001".into()),
            max_vcpus: 2,
            avail_vcpus: vec![0, 1],
            vcpu_hard_affinity: Vec::new(),
            vcpu_soft_affinity: vec![vec![1], vec![]],
            numa_placement: Some(false),
            max_memkb: 32768,
            target_memkb: 16384,
            sched: Some((256, 0)),
            kernel: Some("/boot/echo.elf".into()),
            cmdline: Some("quiet".into()),
            ramdisk: None,
            actions: Some([Action::Destroy, Action::Restart, Action::Preserve]),
            disks: Vec::new(),
            nics: Vec::new(),
        };
        assert_eq!(
            render(&domain_config(&v)),
            r#"{
    "c_info": {
        "type": "pv",
        "name": "web",
        "uuid": "00000000-0000-0000-0000-000000000001"
    },
    "b_info": {
        "max_vcpus": 2,
        "avail_vcpus": [
            0,
            1
        ],
        "vcpu_soft_affinity": [
            [
                1
            ],
            [

            ]
        ],
        "numa_placement": "False",
        "max_memkb": 32768,
        "target_memkb": 16384,
        "sched_params": {
            "sched": "credit",
            "weight": 256,
            "cap": 0
        },
        "kernel": "/boot/echo.elf",
        "cmdline": "quiet",
        "type.pv": {

        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    },
    "on_reboot": "restart",
    "on_crash": "preserve",
    "on_soft_reset": "restart"
}
"#
        );
        // Domain-0 as Xen shows it: the stub configuration, with memory and scheduler.
        let dom0 = render(&domain_config(&ConfigView {
            name: "Domain-0".into(),
            max_memkb: 65536,
            target_memkb: 65536,
            sched: Some((256, 0)),
            ..ConfigView::default()
        }));
        assert_eq!(
            dom0,
            r#"{
    "c_info": {
        "type": "pv",
        "name": "Domain-0"
    },
    "b_info": {
        "max_memkb": 65536,
        "target_memkb": 65536,
        "sched_params": {
            "sched": "credit",
            "weight": 256,
            "cap": 0
        },
        "type.pv": {

        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    }
}
"#
        );
    }
}
