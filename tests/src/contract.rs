//! The hypervisor's boot-log contract: the lines scenarios rely on, and parsers for them.
//!
//! In order, the hypervisor logs:
//!
//! 1. `Xenia <version>` (its first line),
//! 2. any warnings, each a line starting `warning: `,
//! 3. `cpu: <vendor> <brand>, features: <list>` where the list holds `+name`/`-name` items,
//!    first [`FEATURE_ORDER`] in that order, possibly more after,
//! 4. `memory: <N> MiB usable`,
//! 5. `cpus: <n> online` ([`cpus_online`]), after a warning line for each CPU that could not
//!    be started, with the reason, and for each MADT processor entry that was skipped,
//! 6. per module `module <i>: <bytes> bytes, cmdline "<text>"`; then, with no module,
//!    [`NO_DOM0`], else the hypervisor builds dom0 from module 0.
//!
//! Somewhere along the way the APIC timer calibration logs a line starting [`APIC_TIMER`].
//! An unknown option `NAME` gives [`unknown_option_warning`]`(NAME)` and the boot goes on. A
//! fatal exception prints `fatal exception: vector <n> (#<mnemonic>)`, a line with `rip 0x`,
//! for #PF `cr2 0x<address>`, and `call trace:`. A CPU without long mode gets
//! [`NO_LONG_MODE`] and a halt.

/// The line that ends a boot without modules.
pub const NO_DOM0: &str = "no dom0 module given; powering off";
/// The line that ends a boot with modules, until the dom0 builder exists.
/// Start of the line the hypervisor logs when it cannot build dom0 (then exit 37).
pub const DOM0_ERROR: &str = "error: dom0: ";
/// What the 32-bit entry code prints on a CPU without long mode before halting.
pub const NO_LONG_MODE: &str =
    "Xenia: this CPU does not support 64-bit long mode (x86-64); halting.";
/// Prefix of warning lines.
pub const WARNING: &str = "warning: ";
/// Prefix of the CPU line.
pub const CPU: &str = "cpu: ";
/// Prefix of the memory line.
pub const MEMORY: &str = "memory: ";
/// Prefix of the APIC timer calibration line.
pub const APIC_TIMER: &str = "apic: timer";
/// Prefix of the line counting the CPUs online.
pub const CPUS: &str = "cpus: ";

/// The line saying `n` CPUs are online.
pub fn cpus_online(n: u32) -> String {
    format!("cpus: {n} online")
}

/// What the warning for a CPU that could not be started contains (`warning: cpu with APIC ID
/// <id>: not started: <reason>`).
pub const CPU_NOT_STARTED: &str = ": not started: ";

/// The count in a `cpus: <n> online` line, if `line` is one.
pub fn parse_cpus_line(line: &str) -> Option<u32> {
    line.strip_prefix(CPUS)?
        .strip_suffix(" online")?
        .parse()
        .ok()
}

/// Start of the fatal-exception diagnostic.
pub const FATAL_EXCEPTION: &str = "fatal exception: ";
/// Heading of the stack trace in the fatal-exception diagnostic.
pub const CALL_TRACE: &str = "call trace:";

/// What marks a serial line as a failure of the hypervisor, wherever it appears in the line
/// (a guest's line that quotes one is as suspicious as the hypervisor's own): a panic, an
/// exception in ring 0, and the two forms of a failed frame-table consistency check (the
/// check's own verdict and any error the frame table logs). Every scenario rejects them
/// unless it provokes one on purpose and says so ([`crate::Machine::tolerate`]).
pub const REJECTED: [&str; 4] = [
    HYPERVISOR_PANIC,
    FATAL_EXCEPTION_MARK,
    FRAME_TABLE_INCONSISTENT,
    FRAME_TABLE_ERROR,
];
/// Start of the hypervisor's panic message (`hypervisor/src/start.rs`, the panic handler).
pub const HYPERVISOR_PANIC: &str = "hypervisor panic";
/// Any mention of a fatal exception ([`FATAL_EXCEPTION`] without its colon, so that a
/// reworded diagnostic is still caught).
pub const FATAL_EXCEPTION_MARK: &str = "fatal exception";
/// The frame-table check's failure verdict (`frame table check: INCONSISTENT: <why>`).
pub const FRAME_TABLE_INCONSISTENT: &str = "INCONSISTENT";
/// An error logged by or about the frame table.
pub const FRAME_TABLE_ERROR: &str = "error: frame table";

/// The lines of `log` that contain one of [`REJECTED`] other than those in `tolerated`,
/// with their 1-based line numbers.
pub fn rejected_lines<'a>(log: &'a str, tolerated: &[&str]) -> Vec<(usize, &'a str)> {
    log.lines()
        .enumerate()
        .filter(|(_, line)| {
            REJECTED
                .iter()
                .any(|mark| !tolerated.contains(mark) && line.contains(mark))
        })
        .map(|(i, line)| (i + 1, line))
        .collect()
}

/// The features the CPU line lists first, in this order.
pub const FEATURE_ORDER: [&str; 10] = [
    "pcid", "x2apic", "smep", "smap", "umip", "fsgsbase", "nx", "1g", "svm", "vmx",
];

/// The warning for an unknown hypervisor option, `name` being the token as given.
pub fn unknown_option_warning(name: &str) -> String {
    format!("warning: unknown hypervisor option '{name}' ignored")
}

/// The first line of a fatal-exception diagnostic for `vector` (`mnemonic` like `#PF`).
pub fn fatal_exception(vector: u8, mnemonic: &str) -> String {
    format!("fatal exception: vector {vector} ({mnemonic})")
}

/// The version in a banner line `Xenia <version>`, if `line` is one.
pub fn banner_version(line: &str) -> Option<&str> {
    let version = line.strip_prefix("Xenia ")?;
    let ok =
        version.starts_with(|c: char| c.is_ascii_digit()) && !version.contains(char::is_whitespace);
    ok.then_some(version)
}

/// A parsed CPU line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuLine {
    /// CPUID vendor string, e.g. `AuthenticAMD`.
    pub vendor: String,
    /// Brand string, e.g. `QEMU TCG CPU version 2.5+`.
    pub brand: String,
    /// Features in the order listed, with whether the CPU has them.
    pub features: Vec<(String, bool)>,
}

impl CpuLine {
    /// Whether the line lists `name` as present (`Some(true)`), absent, or not at all.
    pub fn has(&self, name: &str) -> Option<bool> {
        self.features
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, on)| on)
    }

    /// Checks each `(feature, present)` pair, reporting all mismatches at once.
    pub fn expect(&self, want: &[(&str, bool)]) -> Result<(), String> {
        let sign = |on: bool| if on { '+' } else { '-' };
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|&(name, on)| match self.has(name) {
                Some(got) if got == on => None,
                Some(got) => Some(format!("{}{name} (expected {}{name})", sign(got), sign(on))),
                None => Some(format!("{name} missing (expected {}{name})", sign(on))),
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("CPU features differ: {}", wrong.join(", ")))
        }
    }
}

/// Parses `cpu: <vendor> <brand>, features: <list>`, checking the feature order.
pub fn parse_cpu_line(line: &str) -> Result<CpuLine, String> {
    let bad = |why: &str| Err(format!("malformed CPU line {line:?}: {why}"));
    let Some(rest) = line.strip_prefix(CPU) else {
        return bad("it does not start with \"cpu: \"");
    };
    let Some((ident, list)) = rest.rsplit_once(", features:") else {
        return bad("no \", features:\"");
    };
    let (vendor, brand) = ident.trim().split_once(' ').unwrap_or((ident.trim(), ""));
    if vendor.is_empty() {
        return bad("no vendor");
    }
    let mut features = Vec::new();
    for item in list.split_whitespace() {
        let (on, name) = match item.split_at(item.len().min(1)) {
            ("+", name) if !name.is_empty() => (true, name),
            ("-", name) if !name.is_empty() => (false, name),
            _ => return bad(&format!("feature item {item:?} is not +name or -name")),
        };
        features.push((name.to_string(), on));
    }
    let listed: Vec<&str> = features
        .iter()
        .take(FEATURE_ORDER.len())
        .map(|(n, _)| n.as_str())
        .collect();
    if listed != FEATURE_ORDER {
        return bad(&format!(
            "the features must start with {} in that order",
            FEATURE_ORDER.join(" ")
        ));
    }
    Ok(CpuLine {
        vendor: vendor.to_string(),
        brand: brand.trim().to_string(),
        features,
    })
}

/// Parses `memory: <N> MiB usable` into N.
pub fn parse_memory_line(line: &str) -> Result<u64, String> {
    line.strip_prefix(MEMORY)
        .and_then(|rest| rest.strip_suffix(" MiB usable"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!("malformed memory line {line:?}: expected \"memory: <N> MiB usable\"")
        })
}

/// A parsed module line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleLine {
    /// The module's index, from 0.
    pub index: usize,
    /// Its size.
    pub bytes: u64,
    /// Its command line.
    pub cmdline: String,
}

/// Parses `module <i>: <bytes> bytes, cmdline "<text>"`. The hypervisor writes the text with
/// Rust's `escape_debug` (`"` as `\"`, `\` as `\\`, control characters as `\n`, `\u{..}`),
/// which is undone here; text without quotes and backslashes reads the same either way.
pub fn parse_module_line(line: &str) -> Result<ModuleLine, String> {
    let parsed = (|| {
        let rest = line.strip_prefix("module ")?;
        let (index, rest) = rest.split_once(": ")?;
        let (bytes, rest) = rest.split_once(" bytes, cmdline \"")?;
        let cmdline = unescape_debug(rest.strip_suffix('"')?)?;
        Some(ModuleLine {
            index: index.parse().ok()?,
            bytes: bytes.parse().ok()?,
            cmdline,
        })
    })();
    parsed.ok_or_else(|| {
        format!("malformed module line {line:?}: expected \"module <i>: <bytes> bytes, cmdline \\\"<text>\\\"\"")
    })
}

/// Undoes Rust's `escape_debug`; `None` for a malformed escape.
pub fn unescape_debug(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '0' => '\0',
            c @ ('\\' | '"' | '\'') => c,
            'u' => {
                let rest = chars.as_str().strip_prefix('{')?;
                let (hex, after) = rest.split_once('}')?;
                chars = after.chars();
                char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
            }
            _ => return None,
        });
    }
    Some(out)
}

/// A line of dom0's console output as the hypervisor shows it.
pub fn guest_line(text: &str) -> String {
    format!("(d0) {text}")
}

/// The line logged when domain `id` stops for `reason` (`poweroff`, `reboot`, `crash`, ...).
pub fn domain_shut_down(id: u16, reason: &str) -> String {
    format!("domain {id} shut down: {reason}")
}

/// Start of the line logged when the hypervisor crashes domain `id`.
pub fn domain_crashed(id: u16) -> String {
    format!("error: domain {id} crashed: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: &str = "cpu: AuthenticAMD QEMU TCG CPU version 2.5+, features: -pcid -x2apic +smep +smap +umip +fsgsbase +nx +1g +svm -vmx +extra";

    #[test]
    fn cpu_line() {
        let cpu = parse_cpu_line(MAX).unwrap();
        assert_eq!(cpu.vendor, "AuthenticAMD");
        assert_eq!(cpu.brand, "QEMU TCG CPU version 2.5+");
        assert_eq!(cpu.has("smep"), Some(true));
        assert_eq!(cpu.has("pcid"), Some(false));
        assert_eq!(cpu.has("extra"), Some(true));
        assert_eq!(cpu.has("avx512"), None);
        cpu.expect(&[("smep", true), ("pcid", false)]).unwrap();
        let err = cpu
            .expect(&[("smep", false), ("vmx", true), ("avx512", true)])
            .unwrap_err();
        assert_eq!(
            err,
            "CPU features differ: +smep (expected -smep), -vmx (expected +vmx), avx512 missing (expected +avx512)"
        );
    }

    #[test]
    fn malformed_cpu_lines() {
        assert!(
            parse_cpu_line("cpu: X, features: +pcid")
                .unwrap_err()
                .contains("in that order")
        );
        let swapped = MAX.replace("-pcid -x2apic", "-x2apic -pcid");
        assert!(
            parse_cpu_line(&swapped)
                .unwrap_err()
                .contains("in that order")
        );
        assert!(
            parse_cpu_line(&MAX.replace("+nx", "nx"))
                .unwrap_err()
                .contains("\"nx\"")
        );
        assert!(parse_cpu_line(&MAX.replace("+nx", "+")).is_err());
        assert!(parse_cpu_line("cpu: AuthenticAMD").is_err());
        assert!(parse_cpu_line("memory: 1 MiB usable").is_err());
    }

    #[test]
    fn memory_line() {
        assert_eq!(parse_memory_line("memory: 255 MiB usable"), Ok(255));
        assert!(parse_memory_line("memory: 255MiB usable").is_err());
        assert!(parse_memory_line("memory: x MiB usable").is_err());
    }

    #[test]
    fn module_line() {
        assert_eq!(
            parse_module_line(r#"module 1: 1234 bytes, cmdline "console=hvc0 "foo=a b"""#),
            Ok(ModuleLine {
                index: 1,
                bytes: 1234,
                cmdline: r#"console=hvc0 "foo=a b""#.into()
            })
        );
        let cmdline = r#"console=hvc0 "foo=a b" back\slash"#;
        let escaped = format!("module 2: 5 bytes, cmdline \"{}\"", cmdline.escape_debug());
        assert_eq!(parse_module_line(&escaped).unwrap().cmdline, cmdline);
        assert_eq!(
            parse_module_line(r#"module 0: 0 bytes, cmdline """#)
                .unwrap()
                .cmdline,
            ""
        );
        assert!(parse_module_line("module 0: 12 bytes").is_err());
        assert!(parse_module_line(r#"module x: 12 bytes, cmdline "a""#).is_err());
    }

    #[test]
    fn unescaping() {
        for text in ["plain", r#"q"uo'te\back"#, "tab\tnl\ncr\r\0 bell\u{7} é"] {
            let escaped: String = text.escape_debug().collect();
            assert_eq!(unescape_debug(&escaped).as_deref(), Some(text), "{escaped}");
        }
        assert_eq!(unescape_debug(r"\q"), None);
        assert_eq!(unescape_debug(r"\"), None);
        assert_eq!(unescape_debug(r"\u{zz}"), None);
    }

    #[test]
    fn rejected_lines_anywhere() {
        let log = "Xenia 0.1.0\n\
                   memory: 255 MiB usable\n\
                   (d0) all fine\n\
                   \n\
                   hypervisor panic: at src/x.rs:1\n\
                   error: frame table: frame 5 has 2 type references\n\
                   mm: frame table check: INCONSISTENT: frame 7\n\
                   (d0) the guest saw a fatal exception: vector 6 (#UD)\n\
                   frame table check: consistent (65536 frames)\n\
                   inconsistent in lower case is a word, not the verdict";
        let lines = |tolerated: &[&str]| {
            rejected_lines(log, tolerated)
                .iter()
                .map(|&(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(&[]), [5, 6, 7, 8]);
        assert_eq!(lines(&[FATAL_EXCEPTION_MARK]), [5, 6, 7]);
        assert_eq!(lines(&REJECTED), Vec::<usize>::new());
        assert_eq!(
            rejected_lines(log, &[HYPERVISOR_PANIC, FRAME_TABLE_ERROR])[0],
            (7, "mm: frame table check: INCONSISTENT: frame 7")
        );
        assert!(rejected_lines("frame table check: consistent (1 frames)\n", &[]).is_empty());
        // The exact diagnostic heading and a panic without a newline at the end count too.
        assert_eq!(rejected_lines(&fatal_exception(14, "#PF"), &[]).len(), 1);
        assert_eq!(
            rejected_lines("ok\nhypervisor panic: x", &[]),
            [(2, "hypervisor panic: x")]
        );
    }

    #[test]
    fn cpus_line() {
        assert_eq!(cpus_online(4), "cpus: 4 online");
        assert_eq!(parse_cpus_line("cpus: 4 online"), Some(4));
        assert_eq!(parse_cpus_line(&cpus_online(1)), Some(1));
        for bad in [
            "cpus: four online",
            "cpus: 4",
            "cpu: 4 online",
            "cpus:  online",
        ] {
            assert_eq!(parse_cpus_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn banner_and_messages() {
        assert_eq!(banner_version("Xenia 0.1.0"), Some("0.1.0"));
        assert_eq!(banner_version("Xenia: this CPU"), None);
        assert_eq!(banner_version("Xenia 0.1.0 extra"), None);
        assert_eq!(
            unknown_option_warning("frobnicate=3"),
            "warning: unknown hypervisor option 'frobnicate=3' ignored"
        );
        assert_eq!(
            fatal_exception(14, "#PF"),
            "fatal exception: vector 14 (#PF)"
        );
    }
}
