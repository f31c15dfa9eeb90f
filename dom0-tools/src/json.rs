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
//! than libxl's: the ones it has are printed where libxl puts them; `max_vcpus`,
//! `avail_vcpus`, the memory sizes and the scheduler's weight and cap are always known
//! and always printed (libxl's stored configuration has them too, once it has filled in
//! its defaults).

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
    /// `c_info.uuid`, formatted (`None`: not printed).
    pub uuid: Option<String>,
    /// `b_info.max_vcpus`.
    pub max_vcpus: u32,
    /// `b_info.avail_vcpus`: the vCPUs online.
    pub avail_vcpus: Vec<u32>,
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
    let mut b_info = alloc::vec![
        (String::from("max_vcpus"), Json::Int(i64::from(v.max_vcpus))),
        (
            String::from("avail_vcpus"),
            Json::Array(
                v.avail_vcpus
                    .iter()
                    .map(|&i| Json::Int(i64::from(i)))
                    .collect(),
            ),
        ),
        (
            String::from("max_memkb"),
            Json::Int(v.max_memkb.min(i64::MAX as u64) as i64),
        ),
        (
            String::from("target_memkb"),
            Json::Int(v.target_memkb.min(i64::MAX as u64) as i64),
        ),
    ];
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
    fn domain_config_in_libxl_order() {
        let v = ConfigView {
            name: "web".into(),
            uuid: Some("00000000-0000-0000-0000-000000000001".into()),
            max_vcpus: 2,
            avail_vcpus: vec![0, 1],
            max_memkb: 32768,
            target_memkb: 16384,
            sched: Some((256, 0)),
            kernel: Some("/boot/echo.elf".into()),
            cmdline: Some("quiet".into()),
            ramdisk: None,
            actions: Some([Action::Destroy, Action::Restart, Action::Preserve]),
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
        // Nothing known beyond the hypervisor's facts: no actions, no paths.
        let bare = render(&domain_config(&ConfigView {
            name: "Domain-0".into(),
            ..ConfigView::default()
        }));
        assert!(bare.contains("\"avail_vcpus\": [\n\n        ],"), "{bare}");
        assert!(
            bare.ends_with("    }\n}\n") && !bare.contains("on_"),
            "{bare}"
        );
    }
}
