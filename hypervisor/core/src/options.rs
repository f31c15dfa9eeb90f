//! The hypervisor command line: the `multiboot2` line of the GRUB entry, after the image path.
//!
//! The syntax is Xen's (`docs/misc/xen-command-line.pandoc`), so that a line written for Xen
//! means the same here: whitespace-separated `key=value` options and bare flags; booleans that
//! take `0|1|no|yes|off|on|false|true|disable|enable` or a `no-` prefix; sizes with Xen's
//! suffixes and its odd default unit (KiB). Only the handful of options Xenia implements are
//! known; anything else is reported and skipped.
//!
//! The line is typed by an administrator and passed on by a boot loader, so nothing in it is
//! trusted: an unknown option, a bad value or stray quotes produce a [`Diagnostic`] and the
//! default, never a panic or a refusal to boot. Parsing borrows from the line and needs no heap.

use core::fmt;
use log::LevelFilter;

/// Where the hypervisor's own console output goes (Xen's `console=`): COM1, the screen (VGA
/// text mode or the boot loader's framebuffer), both, or neither.
///
/// The option is about the hypervisor's log. dom0's console always goes to COM1 (it is the
/// operator's way in), and to the screen unless the screen is left alone: the screen and the
/// PS/2 keyboard are the hypervisor's unless `console=` names `com1` without `vga`, in which
/// case both stay untouched for dom0 (as under Xen, whose `console=com1` leaves the VGA and
/// the keyboard to dom0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    /// The log goes to the first serial port.
    pub com1: bool,
    /// The log goes to the screen.
    pub vga: bool,
}

impl Console {
    /// `console=com1,vga`, the default: both, where both exist.
    pub const BOTH: Console = Console {
        com1: true,
        vga: true,
    };
    /// `console=com1`.
    pub const COM1: Console = Console {
        com1: true,
        vga: false,
    };
    /// `console=vga`.
    pub const VGA: Console = Console {
        com1: false,
        vga: true,
    };
    /// `console=none`: the log goes nowhere but the dmesg ring.
    pub const NONE: Console = Console {
        com1: false,
        vga: false,
    };

    /// Whether the hypervisor takes the screen and the keyboard (see the type's docs).
    pub fn owns_screen(self) -> bool {
        self.vga || !self.com1
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::BOTH
    }
}

/// Dom0's memory, from Xen's `dom0_mem=[min:<size>,][max:<size>,][<size>]`. All in bytes; the
/// domain builder rounds to whole pages and decides what to do when they disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dom0Mem {
    /// Dom0 gets at least this much, even if that leaves little for the hypervisor.
    pub min: Option<u64>,
    /// Dom0 gets at most this much.
    pub max: Option<u64>,
    /// What dom0 starts with.
    pub amount: Option<u64>,
}

/// A deliberate ring-0 fault, to test the hypervisor's fault reporting. Never for production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Execute `ud2` (invalid opcode, #UD).
    Ud,
    /// Touch an unmapped address (page fault, #PF).
    Pf,
    /// Single-step one instruction with an unusable stack (#DB, dropped on its own stack).
    Db,
}

/// Everything the command line can set. `Default` is what an empty line means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `console=com1|vga|com1,vga|none`.
    pub console: Console,
    /// `loglvl=none|error|warning|info|debug|all[/<rate-limited level>]`; the rate-limited
    /// level is checked but has no effect (Xenia does not rate-limit).
    pub loglvl: LevelFilter,
    /// `dom0_mem=`; `None` lets the domain builder choose.
    pub dom0_mem: Option<Dom0Mem>,
    /// `debug-exit`: leave through the ISA debug-exit device instead of halting, so that a test
    /// run under QEMU ends with a status.
    pub debug_exit: bool,
    /// `selftest=ud|pf|db`.
    pub selftest: Option<SelfTest>,
    /// `noreboot`: halt instead of rebooting after a crash, so the messages stay on screen.
    pub noreboot: bool,
    /// `maxcpus=<n>`: at most this many CPUs are started, the boot CPU included (Xen's option);
    /// `None` starts every CPU the firmware lists.
    pub max_cpus: Option<u32>,
    /// `bootscrub=<bool>` (Xen's, default on): zero every free frame once at boot, so that
    /// memory handed to domains later need not be cleared then (`bootscrub=idle` is read as
    /// on, with a note: Xenia has no idle scrubbing).
    pub bootscrub: bool,
    /// `conswitch=<char>[x]` (Xen's): the serial-input switch character (Ctrl-`<char>`, Ctrl-A
    /// by default; `None` with `` ` ``: no switching), and whether input starts with the
    /// hypervisor (`x`) rather than dom0.
    pub conswitch: (Option<u8>, bool),
    /// `console_timestamps=none|date|datems|boot|raw` (Xen's; a boolean says `date` or
    /// `none`, a bare flag `date`): how the hypervisor's console lines are stamped.
    pub console_timestamps: crate::time::Stamps,
    /// `xenpv_fastpath=<bool>` (Xenia's, default on): the entry stub answers a Xen PV
    /// guest's system calls and `iret` hypercalls itself when nothing else is due, instead
    /// of the trap path (the same checks, fewer instructions); off sends them all down the
    /// trap path, for comparison or if the short way is ever suspected.
    pub xenpv_fastpath: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            console: Console::BOTH,
            loglvl: LevelFilter::Info,
            dom0_mem: None,
            debug_exit: false,
            selftest: None,
            noreboot: false,
            max_cpus: None,
            bootscrub: true,
            conswitch: (Some(crate::conswitch::CTRL_A), false),
            console_timestamps: crate::time::Stamps::None,
            xenpv_fastpath: true,
        }
    }
}

/// Something about the command line worth telling the administrator. Parsing always goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diagnostic<'a> {
    /// An option Xenia does not know (or a `no-` prefix on one that is not a boolean).
    Unknown {
        /// The option as written.
        token: &'a str,
    },
    /// A known option with a value it cannot take; the option keeps its previous value.
    BadValue {
        /// The option name as written (including any `no-` prefix).
        key: &'a str,
        /// The value as written, quotes removed.
        value: &'a str,
        /// What was expected.
        reason: &'static str,
    },
    /// A value Xen accepts but Xenia does not implement; it is skipped.
    Unsupported {
        /// The option name.
        key: &'a str,
        /// The unsupported part of the value.
        value: &'a str,
        /// What Xenia does instead.
        reason: &'static str,
    },
    /// An option given more than once; as in Xen, the last one wins.
    Duplicate {
        /// The option name.
        key: &'a str,
    },
    /// A quote that is never closed; the option runs to the end of the line.
    UnterminatedQuote {
        /// The option as written.
        token: &'a str,
    },
}

impl fmt::Display for Diagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::Unknown { token } => {
                write!(f, "unknown hypervisor option '{token}' ignored")
            }
            Diagnostic::BadValue { key, value, reason } => write!(
                f,
                "bad value '{value}' for option '{key}': {reason}; keeping the default"
            ),
            Diagnostic::Unsupported { key, value, reason } => write!(
                f,
                "unsupported value '{value}' for option '{key}' ignored: {reason}"
            ),
            Diagnostic::Duplicate { key } => write!(
                f,
                "hypervisor option '{key}' given more than once; the last one wins"
            ),
            Diagnostic::UnterminatedQuote { token } => write!(
                f,
                "unterminated quote in hypervisor option '{token}'; it runs to the end of the line"
            ),
        }
    }
}

const LOGLVL_EXPECTED: &str = "expected one of none, error, warning, info, debug, all";
const BOOL_EXPECTED: &str =
    "expected one of 0, 1, no, yes, off, on, false, true, disable, enable, or no value";
const SIZE_EXPECTED: &str = "expected a number with an optional B, K, M, G or T suffix (K if none)";
const SIZE_OVERFLOW: &str = "size does not fit in 64 bits";

/// The options Xenia knows, for spotting duplicates.
#[derive(Clone, Copy)]
enum Key {
    Console,
    Loglvl,
    Dom0Mem,
    DebugExit,
    Selftest,
    Noreboot,
    Maxcpus,
    Bootscrub,
    Conswitch,
    ConsoleTimestamps,
    XenpvFastpath,
}

impl Key {
    fn from_name(name: &str) -> Option<Key> {
        Some(match name {
            "console" => Key::Console,
            "loglvl" => Key::Loglvl,
            "dom0_mem" => Key::Dom0Mem,
            "debug-exit" => Key::DebugExit,
            "selftest" => Key::Selftest,
            "noreboot" => Key::Noreboot,
            "maxcpus" => Key::Maxcpus,
            "bootscrub" => Key::Bootscrub,
            "conswitch" => Key::Conswitch,
            "console_timestamps" => Key::ConsoleTimestamps,
            "xenpv_fastpath" => Key::XenpvFastpath,
            _ => return None,
        })
    }

    fn is_boolean(self) -> bool {
        matches!(
            self,
            Key::DebugExit | Key::Noreboot | Key::Bootscrub | Key::XenpvFastpath
        )
    }

    fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// Parses the command line, calling `report` for each thing worth telling. Never fails: what
/// cannot be understood keeps its default.
pub fn parse<'a>(cmdline: &'a str, mut report: impl FnMut(Diagnostic<'a>)) -> Options {
    let mut options = Options::default();
    let mut seen = 0u16;
    for (position, (token, terminated)) in Tokens(cmdline).enumerate() {
        // GRUB 2 leaves the image path out of the multiboot2 line, but other loaders (and GRUB's
        // multiboot1 path) put it first; no option starts with '/', so skip it quietly.
        if position == 0 && token.starts_with('/') {
            continue;
        }
        if !terminated {
            report(Diagnostic::UnterminatedQuote { token });
        }
        let option = unquote(token);
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(unquote(value))),
            None => (option, None),
        };
        let (key, negated) = match Key::from_name(name) {
            Some(key) => (key, false),
            None => match name.strip_prefix("no-").and_then(Key::from_name) {
                Some(key) if key.is_boolean() => (key, true),
                _ => {
                    report(Diagnostic::Unknown { token });
                    continue;
                }
            },
        };
        if seen & key.bit() != 0 {
            report(Diagnostic::Duplicate { key: name });
        }
        seen |= key.bit();
        let bad = |reason| Diagnostic::BadValue {
            key: name,
            value: value.unwrap_or(""),
            reason,
        };
        if let Err(reason) = apply(&mut options, key, negated, value, name, &mut report) {
            report(bad(reason));
        }
    }
    options
}

/// Sets option `key` from `value` (`None` for a bare flag); on error nothing is changed.
fn apply<'a>(
    options: &mut Options,
    key: Key,
    negated: bool,
    value: Option<&'a str>,
    name: &'a str,
    report: &mut impl FnMut(Diagnostic<'a>),
) -> Result<(), &'static str> {
    if matches!(key, Key::Bootscrub) && !negated && value == Some("idle") {
        report(Diagnostic::Unsupported {
            key: name,
            value: "idle",
            reason: "free memory is scrubbed at boot instead",
        });
        options.bootscrub = true;
        return Ok(());
    }
    if matches!(key, Key::ConsoleTimestamps) {
        use crate::time::Stamps;
        options.console_timestamps = match value {
            None | Some("") | Some("date") => Stamps::Date,
            Some("datems") => Stamps::DateMs,
            Some("boot") => Stamps::Boot,
            Some("raw") => Stamps::Raw,
            Some("none") => Stamps::None,
            Some(v) => match parse_bool(v) {
                Some(true) => Stamps::Date,
                Some(false) => Stamps::None,
                None => return Err("expected none, date, datems, boot or raw"),
            },
        };
        return Ok(());
    }
    if key.is_boolean() {
        let on = match (negated, value) {
            // Xen reads a bare flag and an empty value (`flag=`) alike, as "on".
            (false, None | Some("")) => true,
            (false, Some(v)) => parse_bool(v).ok_or(BOOL_EXPECTED)?,
            (true, None) => false,
            // Xen calls this undefined; say so rather than guess which way it inverts.
            (true, Some(_)) => return Err("a 'no-' option takes no value"),
        };
        match key {
            Key::DebugExit => options.debug_exit = on,
            Key::Bootscrub => options.bootscrub = on,
            Key::XenpvFastpath => options.xenpv_fastpath = on,
            _ => options.noreboot = on,
        }
        return Ok(());
    }
    let value = value.ok_or("a value is required")?;
    match key {
        Key::Console => options.console = parse_console(name, value, report)?,
        Key::Loglvl => options.loglvl = parse_loglvl(value)?,
        Key::Dom0Mem => options.dom0_mem = Some(parse_dom0_mem(value)?),
        Key::Selftest => {
            options.selftest = Some(match value {
                "ud" => SelfTest::Ud,
                "pf" => SelfTest::Pf,
                "db" => SelfTest::Db,
                _ => return Err("expected ud, pf or db"),
            })
        }
        Key::Maxcpus => options.max_cpus = Some(parse_max_cpus(value)?),
        Key::Conswitch => {
            options.conswitch = crate::conswitch::parse_conswitch(value)
                .ok_or("expected a letter (or `), optionally followed by x")?
        }
        Key::DebugExit
        | Key::Noreboot
        | Key::Bootscrub
        | Key::ConsoleTimestamps
        | Key::XenpvFastpath => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

/// `maxcpus=`: a CPU count, decimal or `0x` hexadecimal as Xen's `integer_param` reads it. Zero
/// is refused: the boot CPU always runs, so the smallest meaningful limit is 1.
fn parse_max_cpus(value: &str) -> Result<u32, &'static str> {
    const EXPECTED: &str = "expected a number of CPUs, at least 1";
    let n = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => value.parse::<u32>(),
    }
    .map_err(|_| EXPECTED)?;
    if n == 0 { Err(EXPECTED) } else { Ok(n) }
}

/// Xen's `parse_bool` (`xen/common/kernel.c`): exact, lower-case words only.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "on" | "yes" | "true" | "enable" => Some(true),
        "0" | "no" | "off" | "false" | "disable" => Some(false),
        _ => None,
    }
}

/// `console=`: a comma-separated list like Xen's: `com1` and `vga` add a console, `none` adds
/// nothing (so `none` alone silences the log), anything else Xen knows (`com2`, `dbgp`, ...)
/// is reported and skipped.
fn parse_console<'a>(
    key: &'a str,
    value: &'a str,
    report: &mut impl FnMut(Diagnostic<'a>),
) -> Result<Console, &'static str> {
    let mut console = Console::NONE;
    for item in value.split(',') {
        match item {
            "com1" => console.com1 = true,
            "vga" => console.vga = true,
            "none" | "" => {}
            other => report(Diagnostic::Unsupported {
                key,
                value: other,
                reason: "Xenia drives com1 and vga",
            }),
        }
    }
    if value.split(',').all(str::is_empty) {
        return Err("expected com1, vga, com1,vga or none");
    }
    Ok(console)
}

/// `loglvl=<level>[/<rate-limited level>]` (Xen's `parse_loglvl`, `drivers/char/console.c`).
fn parse_loglvl(value: &str) -> Result<LevelFilter, &'static str> {
    let level = |word| {
        Ok(match word {
            "none" => LevelFilter::Off,
            "error" => LevelFilter::Error,
            "warning" => LevelFilter::Warn,
            "info" => LevelFilter::Info,
            "debug" => LevelFilter::Debug,
            "all" => LevelFilter::Trace,
            _ => return Err(LOGLVL_EXPECTED),
        })
    };
    match value.split_once('/') {
        Some((normal, rate_limited)) => {
            level(rate_limited)?;
            level(normal)
        }
        None => level(value),
    }
}

/// `dom0_mem=`: comma-separated items `min:<size>`, `max:<size>` and `<size>`, in any order, the
/// last of each kind winning (Xen's `parse_dom0_mem`, `xen/arch/x86/dom0_build.c`).
fn parse_dom0_mem(value: &str) -> Result<Dom0Mem, &'static str> {
    let mut mem = Dom0Mem::default();
    for item in value.split(',') {
        let (slot, size) = if let Some(size) = item.strip_prefix("min:") {
            (&mut mem.min, size)
        } else if let Some(size) = item.strip_prefix("max:") {
            (&mut mem.max, size)
        } else {
            (&mut mem.amount, item)
        };
        // Xen also takes "all but <size>" and percentages of host memory; until Xenia does,
        // refusing them beats misreading them.
        if size.starts_with('-') || size.contains(['%', '+']) {
            return Err("negative, percentage and '+' amounts are not supported by Xenia");
        }
        *slot = Some(parse_size(size)?);
    }
    Ok(mem)
}

/// A size the way Xen's `parse_size_and_unit` (`xen/common/lib.c`) reads it: a C-style number
/// (`0x` hexadecimal, leading `0` octal, else decimal), then an optional case-insensitive unit
/// `B`, `K`, `M`, `G` or `T` (powers of 1024). A bare number counts in KiB, as in Xen. Unlike
/// Xen, a size that does not fit in 64 bits is an error instead of silently wrapping. Also as
/// in Xen, a `b` after a hexadecimal number is one more digit, not the byte unit.
///
/// # Errors
///
/// A message saying what was expected, for [`Diagnostic::BadValue`].
pub fn parse_size(text: &str) -> Result<u64, &'static str> {
    let bytes = text.as_bytes();
    let (radix, digits) = match bytes {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &text[2..]),
        [b'0', ..] => (8, text),
        [d, ..] if d.is_ascii_digit() => (10, text),
        _ => return Err(SIZE_EXPECTED),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let mut number: u64 = 0;
    for c in digits[..end].chars() {
        // `find` above stopped at the first non-digit, so every char here is a digit.
        let digit = u64::from(c.to_digit(radix).unwrap_or(0));
        number = number
            .checked_mul(u64::from(radix))
            .and_then(|n| n.checked_add(digit))
            .ok_or(SIZE_OVERFLOW)?;
    }
    let shift = match &digits[end..] {
        "" => 10,
        "b" | "B" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        _ => return Err(SIZE_EXPECTED),
    };
    number.checked_mul(1 << shift).ok_or(SIZE_OVERFLOW)
}

/// Strips one pair of quotes around `text`, or a lone opening quote when it was never closed.
fn unquote(text: &str) -> &str {
    let Some(quote) = text.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
        return text;
    };
    let inner = &text[1..];
    inner.strip_suffix(quote).unwrap_or(inner)
}

/// Splits the line at ASCII whitespace outside quotes. Yields each token and whether its quotes
/// were all closed. Working on bytes is safe for slicing: whitespace and quotes are ASCII, and no
/// byte of a multi-byte UTF-8 character is.
struct Tokens<'a>(&'a str);

impl<'a> Iterator for Tokens<'a> {
    type Item = (&'a str, bool);

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.0.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() {
            self.0 = line;
            return None;
        }
        let mut quote = None;
        let mut end = line.len();
        for (i, b) in line.bytes().enumerate() {
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None if b == b'"' || b == b'\'' => quote = Some(b),
                None if b.is_ascii_whitespace() => {
                    end = i;
                    break;
                }
                None => {}
            }
        }
        self.0 = &line[end..];
        Some((&line[..end], quote.is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    /// Parses `line`, returning the options and the diagnostics as display strings.
    fn run(line: &str) -> (Options, Vec<String>) {
        let mut messages = Vec::new();
        let options = parse(line, |d| messages.push(d.to_string()));
        (options, messages)
    }

    fn quiet(line: &str) -> Options {
        let (options, messages) = run(line);
        assert!(messages.is_empty(), "{line:?}: {messages:?}");
        options
    }

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn empty_and_blank_lines_give_defaults() {
        for line in ["", " ", "\t\t", "  \n \r\n "] {
            assert_eq!(quiet(line), Options::default());
        }
        let d = Options::default();
        assert_eq!(d.console, Console::BOTH);
        assert_eq!(d.loglvl, LevelFilter::Info);
        assert_eq!(d.dom0_mem, None);
        assert!(!d.debug_exit && !d.noreboot);
        assert!(d.bootscrub, "Xen's default");
        assert_eq!(d.selftest, None);
    }

    /// `console_timestamps`: Xen's values, a boolean, or a bare flag for `date`.
    #[test]
    fn console_timestamps_as_xen_reads_them() {
        use crate::time::Stamps;
        for (line, want) in [
            ("console_timestamps", Stamps::Date),
            ("console_timestamps=date", Stamps::Date),
            ("console_timestamps=datems", Stamps::DateMs),
            ("console_timestamps=boot", Stamps::Boot),
            ("console_timestamps=raw", Stamps::Raw),
            ("console_timestamps=none", Stamps::None),
            ("console_timestamps=yes", Stamps::Date),
            ("console_timestamps=0", Stamps::None),
        ] {
            assert_eq!(quiet(line).console_timestamps, want, "{line}");
        }
        let (o, messages) = run("console_timestamps=weekly");
        assert_eq!(o.console_timestamps, Stamps::None);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(Options::default().console_timestamps, Stamps::None);
    }

    /// `xenpv_fastpath`: a boolean, on by default.
    #[test]
    fn xenpv_fastpath() {
        assert!(quiet("").xenpv_fastpath, "on by default");
        assert!(!quiet("xenpv_fastpath=off").xenpv_fastpath);
        assert!(!quiet("no-xenpv_fastpath").xenpv_fastpath);
        assert!(run("xenpv_fastpath=0 xenpv_fastpath").0.xenpv_fastpath);
        let (o, m) = run("xenpv_fastpath=maybe");
        assert!(o.xenpv_fastpath, "a bad value keeps the default");
        assert_eq!(m.len(), 1, "{m:?}");
    }

    /// `bootscrub`: a Xen boolean; `idle`, which Xenia lacks, is read as on and said so.
    #[test]
    fn bootscrub() {
        assert!(!quiet("bootscrub=off").bootscrub);
        assert!(!quiet("no-bootscrub").bootscrub);
        assert!(
            run("bootscrub=no bootscrub").0.bootscrub,
            "the last one wins"
        );
        let (o, m) = run("bootscrub=idle");
        assert!(o.bootscrub);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].contains("idle") && m[0].contains("scrubbed at boot"),
            "{m:?}"
        );
    }

    #[test]
    fn a_full_line() {
        let o = quiet(
            "console=com1 loglvl=all dom0_mem=min:512M,max:2G,1G debug-exit selftest=pf noreboot \
             maxcpus=2 bootscrub=0 conswitch=bx console_timestamps=boot xenpv_fastpath=0",
        );
        assert_eq!(
            o,
            Options {
                console: Console::COM1,
                loglvl: LevelFilter::Trace,
                dom0_mem: Some(Dom0Mem {
                    min: Some(512 * MIB),
                    max: Some(2 * GIB),
                    amount: Some(GIB)
                }),
                debug_exit: true,
                selftest: Some(SelfTest::Pf),
                noreboot: true,
                max_cpus: Some(2),
                bootscrub: false,
                conswitch: (Some(2), true),
                console_timestamps: crate::time::Stamps::Boot,
                xenpv_fastpath: false,
            }
        );
    }

    #[test]
    fn maxcpus() {
        assert_eq!(Options::default().max_cpus, None);
        assert_eq!(quiet("maxcpus=1").max_cpus, Some(1));
        assert_eq!(quiet("maxcpus=64").max_cpus, Some(64));
        assert_eq!(quiet("maxcpus=0x10").max_cpus, Some(16));
        for bad in [
            "maxcpus=0",
            "maxcpus=-1",
            "maxcpus=two",
            "maxcpus=",
            "maxcpus=4x",
        ] {
            let (o, m) = run(bad);
            assert_eq!(o.max_cpus, None, "{bad}");
            assert_eq!(m.len(), 1, "{bad}: {m:?}");
            assert!(m[0].contains("expected a number of CPUs"), "{bad}: {m:?}");
        }
        let (o, m) = run("maxcpus");
        assert_eq!((o.max_cpus, m.len()), (None, 1));
        // The last one wins, as for every option.
        let (o, m) = run("maxcpus=4 maxcpus=2");
        assert_eq!((o.max_cpus, m.len()), (Some(2), 1));
    }

    #[test]
    fn separators_are_any_ascii_whitespace() {
        let o = quiet("\tloglvl=debug   \t noreboot\n\rdebug-exit ");
        assert_eq!(o.loglvl, LevelFilter::Debug);
        assert!(o.noreboot && o.debug_exit);
    }

    #[test]
    fn image_path_first_is_skipped() {
        assert!(quiet("/boot/xenia.elf noreboot").noreboot);
        assert_eq!(quiet("/boot/xenia.elf"), Options::default());
        // Only in first place: later it is an unknown option.
        let (_, m) = run("noreboot /boot/xenia.elf");
        assert_eq!(m, ["unknown hypervisor option '/boot/xenia.elf' ignored"]);
    }

    #[test]
    fn unknown_options_are_reported_as_written() {
        let (o, m) = run("frobnicate=3 loglvl=error x \"q=a b\" =5 =");
        assert_eq!(o.loglvl, LevelFilter::Error);
        assert_eq!(
            m,
            [
                "unknown hypervisor option 'frobnicate=3' ignored",
                "unknown hypervisor option 'x' ignored",
                "unknown hypervisor option '\"q=a b\"' ignored",
                "unknown hypervisor option '=5' ignored",
                "unknown hypervisor option '=' ignored",
            ]
        );
    }

    #[test]
    fn keys_are_case_sensitive_like_xen() {
        let (o, m) = run("LOGLVL=all");
        assert_eq!(o, Options::default());
        assert_eq!(m, ["unknown hypervisor option 'LOGLVL=all' ignored"]);
    }

    #[test]
    fn loglvl_levels() {
        for (word, level) in [
            ("none", LevelFilter::Off),
            ("error", LevelFilter::Error),
            ("warning", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("all", LevelFilter::Trace),
        ] {
            assert_eq!(quiet(&alloc::format!("loglvl={word}")).loglvl, level);
            // The rate-limited level is accepted and has no effect.
            assert_eq!(quiet(&alloc::format!("loglvl={word}/none")).loglvl, level);
        }
    }

    #[test]
    fn loglvl_bad_values_keep_the_default() {
        for (line, value) in [
            ("loglvl=x", "x"),
            ("loglvl=", ""),
            ("loglvl=Info", "Info"),
            ("loglvl=info/", "info/"),
            ("loglvl=/info", "/info"),
            ("loglvl=debug/bogus", "debug/bogus"),
            ("loglvl=debug/info/all", "debug/info/all"),
        ] {
            let (o, m) = run(line);
            assert_eq!(o.loglvl, LevelFilter::Info, "{line}");
            assert_eq!(
                m,
                [alloc::format!(
                    "bad value '{value}' for option 'loglvl': expected one of none, error, \
                     warning, info, debug, all; keeping the default"
                )]
            );
        }
        let (_, m) = run("loglvl");
        assert_eq!(
            m,
            ["bad value '' for option 'loglvl': a value is required; keeping the default"]
        );
    }

    #[test]
    fn booleans_take_xen_values() {
        for (text, want) in [
            ("1", true),
            ("on", true),
            ("yes", true),
            ("true", true),
            ("enable", true),
            ("0", false),
            ("no", false),
            ("off", false),
            ("false", false),
            ("disable", false),
        ] {
            assert_eq!(parse_bool(text), Some(want));
            assert_eq!(quiet(&alloc::format!("debug-exit={text}")).debug_exit, want);
            assert_eq!(quiet(&alloc::format!("noreboot={text}")).noreboot, want);
        }
        for text in ["", "2", "Yes", "TRUE", "y", "n", "onn", "enabled"] {
            assert_eq!(parse_bool(text), None, "{text}");
        }
    }

    #[test]
    fn boolean_forms() {
        assert!(quiet("debug-exit").debug_exit);
        // Xen reads an empty value as a bare flag.
        assert!(quiet("debug-exit=").debug_exit);
        assert!(!quiet("no-debug-exit").debug_exit);
        assert!(!quiet("no-noreboot").noreboot);
        let (o, m) = run("noreboot=maybe");
        assert!(!o.noreboot);
        assert_eq!(
            m,
            [
                "bad value 'maybe' for option 'noreboot': expected one of 0, 1, no, yes, off, on, \
              false, true, disable, enable, or no value; keeping the default"
            ]
        );
        let (o, m) = run("no-debug-exit=yes");
        assert!(!o.debug_exit);
        assert_eq!(
            m,
            [
                "bad value 'yes' for option 'no-debug-exit': a 'no-' option takes no value; \
              keeping the default"
            ]
        );
        // `no-` only applies to booleans.
        let (_, m) = run("no-loglvl no-frob no-");
        assert_eq!(
            m,
            [
                "unknown hypervisor option 'no-loglvl' ignored",
                "unknown hypervisor option 'no-frob' ignored",
                "unknown hypervisor option 'no-' ignored",
            ]
        );
    }

    #[test]
    fn duplicates_last_one_wins() {
        let (o, m) = run("loglvl=debug loglvl=error noreboot no-noreboot");
        assert_eq!(o.loglvl, LevelFilter::Error);
        assert!(!o.noreboot);
        assert_eq!(
            m,
            [
                "hypervisor option 'loglvl' given more than once; the last one wins",
                "hypervisor option 'no-noreboot' given more than once; the last one wins",
            ]
        );
        // A bad repeat keeps the earlier good value.
        let (o, _) = run("loglvl=debug loglvl=bogus");
        assert_eq!(o.loglvl, LevelFilter::Debug);
    }

    #[test]
    fn console_values() {
        assert_eq!(quiet("console=com1").console, Console::COM1);
        assert_eq!(quiet("console=vga").console, Console::VGA);
        assert_eq!(quiet("console=com1,vga").console, Console::BOTH);
        assert_eq!(quiet("console=vga,com1").console, Console::BOTH);
        assert_eq!(quiet("console=none").console, Console::NONE);
        assert_eq!(quiet("console=none,com1").console, Console::COM1);
        assert_eq!(quiet("console=com1,").console, Console::COM1);
        assert!(!Console::COM1.owns_screen());
        assert!(Console::NONE.owns_screen() && Console::VGA.owns_screen());
        assert!(Console::BOTH.owns_screen());
        let (o, m) = run("console=com2");
        assert_eq!(o.console, Console::NONE);
        assert_eq!(
            m,
            ["unsupported value 'com2' for option 'console' ignored: Xenia drives com1 and vga"]
        );
        let (o, m) = run("console=vga,com2,none,dbgp");
        assert_eq!(o.console, Console::VGA);
        assert_eq!(m.len(), 2);
        let (o, m) = run("console=none console=,");
        assert_eq!(o.console, Console::NONE);
        assert_eq!(
            m,
            [
                "hypervisor option 'console' given more than once; the last one wins",
                "bad value ',' for option 'console': expected com1, vga, com1,vga or none; keeping the default",
            ]
        );
    }

    #[test]
    fn selftest_values() {
        assert_eq!(quiet("selftest=ud").selftest, Some(SelfTest::Ud));
        assert_eq!(quiet("selftest=pf").selftest, Some(SelfTest::Pf));
        assert_eq!(quiet("selftest=db").selftest, Some(SelfTest::Db));
        let (o, m) = run("selftest=gp selftest");
        assert_eq!(o.selftest, None);
        assert_eq!(
            m,
            [
                "bad value 'gp' for option 'selftest': expected ud, pf or db; keeping the default",
                "hypervisor option 'selftest' given more than once; the last one wins",
                "bad value '' for option 'selftest': a value is required; keeping the default",
            ]
        );
    }

    #[test]
    fn sizes_follow_xen() {
        for (text, bytes) in [
            ("0", 0),
            ("1", 1024),
            ("512", 512 * 1024),
            ("4096B", 4096),
            ("4096b", 4096),
            ("1k", 1024),
            ("1K", 1024),
            ("512M", 512 * MIB),
            ("512m", 512 * MIB),
            ("2G", 2 * GIB),
            ("2g", 2 * GIB),
            ("1T", 1 << 40),
            ("1t", 1 << 40),
            ("0x10M", 16 * MIB),
            ("0X10m", 16 * MIB),
            ("0x1000", 0x1000 * 1024),
            ("010M", 8 * MIB),
            ("00", 0),
            ("0B", 0),
            ("16777215T", 16_777_215 << 40),
            ("18446744073709551615B", u64::MAX),
            // As in Xen, 'b' after 0x is a hex digit, not the byte unit.
            ("0x1b", 0x1b * 1024),
            ("0x3fffffffffffffK", 0x3f_ffff_ffff_ffff << 10),
            ("01777777777777777777777b", u64::MAX),
            ("18014398509481983", 18_014_398_509_481_983 << 10),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_reject_garbage_and_overflow() {
        for text in [
            "", "M", "-1", "+1", " 1", "1 ", "1MB", "1KiB", "1P", "1.5G", "0x", "0xg", "09", "08M",
            "1M2", "ten", "1e3", "½G", "１G",
        ] {
            assert_eq!(parse_size(text), Err(SIZE_EXPECTED), "{text:?}");
        }
        for text in [
            "16777216T",
            "18446744073709551616B",
            "18014398509481984",
            "99999999999999999999999999999999999",
            "0x10000000000000000b",
            "0xffffffffffffffffb",
            "0x4000000000000000K",
        ] {
            assert_eq!(parse_size(text), Err(SIZE_OVERFLOW), "{text}");
        }
    }

    #[test]
    fn dom0_mem_forms() {
        let mem = |line| quiet(line).dom0_mem.unwrap();
        assert_eq!(
            mem("dom0_mem=1G"),
            Dom0Mem {
                amount: Some(GIB),
                ..Dom0Mem::default()
            }
        );
        assert_eq!(
            mem("dom0_mem=max:2G"),
            Dom0Mem {
                max: Some(2 * GIB),
                ..Dom0Mem::default()
            }
        );
        assert_eq!(
            mem("dom0_mem=1G,min:256M"),
            Dom0Mem {
                min: Some(256 * MIB),
                amount: Some(GIB),
                ..Dom0Mem::default()
            }
        );
        // Within the value too, the last of a kind wins (as in Xen).
        assert_eq!(mem("dom0_mem=1G,2G").amount, Some(2 * GIB));
        // A bare number is KiB.
        assert_eq!(mem("dom0_mem=524288").amount, Some(512 * MIB));
    }

    #[test]
    fn dom0_mem_bad_values_keep_the_default() {
        for line in [
            "dom0_mem=",
            "dom0_mem",
            "dom0_mem=1G,",
            "dom0_mem=,1G",
            "dom0_mem=min:",
            "dom0_mem=min:1G,max",
            "dom0_mem=mid:1G",
            "dom0_mem=-1G",
            "dom0_mem=50%",
            "dom0_mem=1G+10%",
            "dom0_mem=max:-512M",
            "dom0_mem=99999999999T",
            "dom0_mem=min:1G,bogus",
        ] {
            let (o, m) = run(line);
            assert_eq!(o.dom0_mem, None, "{line}");
            assert_eq!(m.len(), 1, "{line}: {m:?}");
            assert!(m[0].starts_with("bad value '"), "{m:?}");
            assert!(m[0].contains("for option 'dom0_mem'"), "{m:?}");
        }
        let (_, m) = run("dom0_mem=50%");
        assert_eq!(
            m,
            [
                "bad value '50%' for option 'dom0_mem': negative, percentage and '+' amounts are \
              not supported by Xenia; keeping the default"
            ]
        );
        let (_, m) = run("dom0_mem=99999999999T");
        assert_eq!(
            m,
            [
                "bad value '99999999999T' for option 'dom0_mem': size does not fit in 64 bits; \
              keeping the default"
            ]
        );
    }

    #[test]
    fn quotes_group_and_are_stripped() {
        assert_eq!(quiet("loglvl=\"debug\"").loglvl, LevelFilter::Debug);
        assert_eq!(quiet("loglvl='debug'").loglvl, LevelFilter::Debug);
        assert_eq!(quiet("\"loglvl=debug\"").loglvl, LevelFilter::Debug);
        assert_eq!(
            quiet("\"dom0_mem=1G\" noreboot").dom0_mem.unwrap().amount,
            Some(GIB)
        );
        // A quoted value with a space is one token.
        let (o, m) = run("console=\"com1 none\" noreboot");
        assert!(o.noreboot);
        assert_eq!(
            m,
            [
                "unsupported value 'com1 none' for option 'console' ignored: Xenia drives com1 and vga"
            ]
        );
        // The other quote character is plain text inside quotes.
        let (_, m) = run("x=\"it's\" y");
        assert_eq!(
            m,
            [
                "unknown hypervisor option 'x=\"it's\"' ignored",
                "unknown hypervisor option 'y' ignored",
            ]
        );
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        let (o, m) = run("noreboot loglvl=\"debug debug-exit");
        assert!(o.noreboot && !o.debug_exit);
        assert_eq!(o.loglvl, LevelFilter::Info);
        assert_eq!(
            m,
            [
                "unterminated quote in hypervisor option 'loglvl=\"debug debug-exit'; it runs to \
                 the end of the line",
                "bad value 'debug debug-exit' for option 'loglvl': expected one of none, error, \
                 warning, info, debug, all; keeping the default",
            ]
        );
        let (o, m) = run("loglvl=\"all");
        assert_eq!(o.loglvl, LevelFilter::Trace);
        assert_eq!(m.len(), 1);
        let (_, m) = run("\"");
        assert_eq!(
            m,
            [
                "unterminated quote in hypervisor option '\"'; it runs to the end of the line",
                "unknown hypervisor option '\"' ignored",
            ]
        );
    }

    #[test]
    fn non_ascii_is_handled() {
        let (o, m) = run("lоglvl=all noreboot ünïcödé=✓ loglvl=\u{a0}debug");
        assert!(o.noreboot);
        assert_eq!(o.loglvl, LevelFilter::Info);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0], "unknown hypervisor option 'lоglvl=all' ignored");
        // Non-breaking space is not ASCII whitespace: it stays part of the value.
        assert!(m[2].starts_with("bad value '\u{a0}debug'"));
    }

    #[test]
    fn very_long_lines() {
        let mut line = String::new();
        for _ in 0..10_000 {
            line.push_str("noreboot ");
        }
        line.push_str("loglvl=debug ");
        line.push_str(&"x".repeat(100_000));
        let mut count = 0;
        let o = parse(&line, |_| count += 1);
        assert!(o.noreboot);
        assert_eq!(o.loglvl, LevelFilter::Debug);
        // 9,999 duplicates and one unknown.
        assert_eq!(count, 10_000);
    }

    #[test]
    fn diagnostics_borrow_from_the_line() {
        let line = String::from("frob");
        let mut tokens = Vec::new();
        parse(&line, |d| {
            if let Diagnostic::Unknown { token } = d {
                tokens.push(token);
            }
        });
        assert_eq!(tokens, ["frob"]);
        assert!(core::ptr::eq(tokens[0], &line[..]));
    }

    /// Deterministic xorshift64* so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// No input panics, and every diagnostic quotes text that is really in the line.
    #[test]
    fn fuzz_never_panics() {
        const PIECES: &[&str] = &[
            "loglvl",
            "dom0_mem",
            "console",
            "debug-exit",
            "noreboot",
            "selftest",
            "bootscrub",
            "idle",
            "conswitch",
            "no-",
            "=",
            "=",
            ",",
            "/",
            ":",
            "min:",
            "max:",
            "\"",
            "'",
            " ",
            "\t",
            "0x",
            "0",
            "9",
            "K",
            "M",
            "T",
            "b",
            "%",
            "-",
            "+",
            "all",
            "com1",
            "none",
            "ud",
            "é",
            "\u{0}",
            "\u{fffd}",
        ];
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for round in 0..20_000 {
            let line = if round % 2 == 0 {
                let bytes: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                (0..rng.next() % 16)
                    .map(|_| PIECES[(rng.next() % PIECES.len() as u64) as usize])
                    .collect()
            };
            parse(&line, |d| {
                let text = match d {
                    Diagnostic::Unknown { token } | Diagnostic::UnterminatedQuote { token } => {
                        token
                    }
                    Diagnostic::BadValue { key, .. }
                    | Diagnostic::Unsupported { key, .. }
                    | Diagnostic::Duplicate { key } => key,
                };
                assert!(line.contains(text), "{line:?} {d:?}");
                let _ = d.to_string();
            });
        }
        for round in 0..5_000 {
            let text: String = (0..rng.next() % 24)
                .map(|_| PIECES[(rng.next() % PIECES.len() as u64) as usize])
                .collect();
            let _ = parse_size(&text);
            let digits: String = (0..round % 40)
                .map(|_| char::from(b'0' + (rng.next() % 10) as u8))
                .collect();
            let _ = parse_size(&digits);
        }
    }
}
