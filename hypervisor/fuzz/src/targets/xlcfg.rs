//! `xlcfg`: the xl.cfg parser. Settings generated at random (keys, quoted strings with every
//! escape, numbers, nested lists, `+=`) are written out by a writer here and must parse back to
//! exactly themselves; damaged configurations and raw bytes must never panic it, and a
//! configuration it accepts must respect its documented limits.

use dom0_tools::xlcfg::{MAX_VCPUS, Setting, Value, parse_domain_config, parse_settings};

use crate::engine::{Input, Target};

pub const TARGET: Target = Target {
    name: "xlcfg",
    about: "xl.cfg parser: writer round trips, damaged configs and overrides, no panics",
    run,
    seeds,
    max_len: 1024,
};

const SAMPLE: &str = "name = \"guest\"\nkernel = \"/boot/hello.elf\"\nmemory = 64\nmaxmem = 0x80\nvcpus = 2\ncmdline = 'console=hvc0 \\x41'\non_crash = \"preserve\"\ncpu_weight = 256\ncap = 50\nextra = [ \"a\", [ 1, 2 ], ]\n";

fn seeds() -> Vec<Vec<u8>> {
    vec![SAMPLE.as_bytes().to_vec()]
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.below(3) {
        0 => round_trip(&mut input),
        1 => {
            // The sample damaged, with random overrides.
            let mut text = SAMPLE.as_bytes().to_vec();
            for _ in 0..1 + input.below(4) {
                let at = input.index(text.len());
                match input.below(3) {
                    0 => text[at] = input.u8(),
                    1 => {
                        text.remove(at);
                    }
                    _ => text.insert(at, input.pick(b"=+[],;#\"'\\\n 0x9-")),
                }
            }
            let keys = [
                "memory",
                "vcpus",
                "name",
                "on_reboot",
                "cap",
                "kernel",
                "maxmem",
            ];
            let overrides: Vec<String> = (0..input.below(3))
                .map(|_| {
                    let key = input.pick(&keys);
                    format!("{key}={}", String::from_utf8_lossy(input.bytes(8)))
                })
                .collect();
            let refs: Vec<&str> = overrides.iter().map(String::as_str).collect();
            domain_config(&text, &refs);
        }
        _ => {
            let bytes = input.rest();
            let _ = parse_settings("fuzz.cfg", bytes);
            domain_config(bytes, &[]);
        }
    }
}

fn domain_config(text: &[u8], overrides: &[&str]) {
    if let Ok(parsed) = parse_domain_config("fuzz.cfg", text, overrides) {
        let s = parsed.spec;
        assert!((1..=MAX_VCPUS).contains(&s.vcpus), "vcpus {}", s.vcpus);
        assert!(
            s.maxmem_mib >= s.memory_mib,
            "maxmem {} below memory {}",
            s.maxmem_mib,
            s.memory_mib
        );
        assert!(
            s.memory_mib <= dom0_tools::xlcfg::MAX_MEMORY_MIB,
            "memory {}",
            s.memory_mib
        );
        if let Some(c) = &s.cmdline {
            assert!(
                c.len() < guest_abi::start_info::MAX_GUEST_CMDLINE && !c.contains('\0'),
                "cmdline {c:?}"
            );
        }
        assert!(!s.kernel.is_empty(), "accepted without a kernel");
    }
}

fn atom(input: &mut Input) -> String {
    if input.bool() {
        input.u32().to_string()
    } else {
        let chars = [
            'a', 'Z', ' ', '"', '\'', '\\', '\n', '\t', '\u{7}', 'é', '#', ';', '=', ',', ']', '\0',
        ];
        (0..input.below(8)).map(|_| input.pick(&chars)).collect()
    }
}

fn value(input: &mut Input, depth: usize) -> Value {
    if depth < 3 && input.below(4) == 0 {
        Value::List(
            (0..input.below(4))
                .map(|_| value(input, depth + 1))
                .collect(),
        )
    } else {
        Value::Atom(atom(input))
    }
}

/// Writes a value in file syntax: numbers bare, everything else double-quoted with escapes.
fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Atom(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => out.push_str(s),
        Value::Atom(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\u{7}' => out.push_str("\\a"),
                    '\0' => out.push_str("\\x00"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::List(items) => {
            out.push_str("[ ");
            for item in items {
                write_value(item, out);
                out.push_str(", ");
            }
            out.push(']');
        }
    }
}

fn round_trip(input: &mut Input) {
    let keys = ["name", "memory", "a_b", "x.y", "_k9"];
    let settings: Vec<(String, Value, bool)> = (0..input.below(6))
        .map(|_| (input.pick(&keys).to_string(), value(input, 0), input.bool()))
        .collect();
    let mut text = String::new();
    for (k, v, append) in &settings {
        text.push_str(k);
        text.push_str(if *append { " += " } else { " = " });
        write_value(v, &mut text);
        text.push_str(if input.bool() { "\n" } else { " # comment\n\n" });
    }
    let parsed: Vec<Setting> = parse_settings("rt.cfg", text.as_bytes())
        .unwrap_or_else(|e| panic!("own text refused: {e}\n{text}"));
    assert_eq!(parsed.len(), settings.len(), "statement count of\n{text}");
    for (p, (k, v, append)) in parsed.iter().zip(&settings) {
        assert_eq!(
            (&p.key, &p.value, p.append),
            (k, v, *append),
            "round trip of\n{text}"
        );
    }
}
