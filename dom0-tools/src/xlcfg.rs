//! # xl.cfg: domain configuration files
//!
//! Parses Xen's `xl.cfg` syntax (xl.cfg(5); the grammar of Xen's
//! `tools/libs/util/libxlu_cfg*`) into a [`DomainSpec`], the keys of
//! DESIGN.md §7.
//!
//! **Syntax.** One `key = value` (or `key += value`) per line or separated
//! by `;`; `#` starts a comment; blank lines are ignored. A value is a
//! quoted string (`"..."` or `'...'`, both with C escapes as in xl), a bare
//! number, or a list `[ v, v, ]` that may span lines and nest. As in
//! xl, numbers and strings are both *atoms*: `memory = "256"` is as good as
//! `memory = 256`, numbers are read as C's `strtol(s, 0)` does (decimal,
//! `0x` hex, leading-`0` octal), and booleans are numbers (0 or 1).
//!
//! **Decisions where xl leaves room.**
//! * A key given twice: the later value wins, as in xl (whose lookup
//!   finds the newest setting); unlike xl, which is silent, a warning
//!   names both lines. Command-line overrides (`xl create cfg memory=256`)
//!   are applied after the file and replace without a warning: that is
//!   what they are for.
//! * `cmdline`, `root` and `extra` combine as xl's `parse_cmdline`: with
//!   `cmdline` given, `root` and `extra` are ignored with a warning;
//!   otherwise the command line is `root=<root> <extra>`, `root=<root>` or
//!   `<extra>`.
//! * Unknown keys are warnings (`<file>:<line>: unknown key 'foo'
//!   ignored`); everything else wrong is an error naming the file and line.
//! * Keys of xl.cfg(5) that Xenia does not implement are warnings too, but
//!   they say so and what it means for the domain (`<file>:<line>: 'vif'
//!   is not implemented by Xenia (ignored): the domain will have no network
//!   interfaces ...`), so that a real setting left out is not mistaken for a typo
//!   ([`not_implemented`]).
//! * `uuid` must be in libuuid's form (`uuid_parse`, which xl uses: 32 hex
//!   digits grouped 8-4-4-4-12); `builder` is the deprecated spelling of
//!   `type` (`"generic"` is PV, `"hvm"` is refused as `type = "hvm"` is).
//! * `on_*` actions xl knows but Xenia does not implement
//!   (`rename-restart`, `coredump-*`, `soft-reset`) are errors that say so.
//!
//! **What it never does.** Panic, whatever the bytes: nesting is bounded,
//! every number is checked, and non-UTF-8 input is an error.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use guest_abi::domctl::CREDIT_DEFAULT_WEIGHT;
use guest_abi::shared_info::XEN_LEGACY_MAX_VCPUS;
use guest_abi::start_info::MAX_GUEST_CMDLINE;

/// `memory` when the file gives none, in MiB (xl's default).
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// The most memory a domain may be given, in MiB: any size up to this
/// converts to KiB, pages and bytes without overflowing a `u64`.
pub const MAX_MEMORY_MIB: u64 = u64::MAX >> 20;
/// The most vCPUs a Xenia PV domain has (the `vcpu_info` slots in
/// `shared_info`).
pub const MAX_VCPUS: u32 = XEN_LEGACY_MAX_VCPUS as u32;
/// CPU numbers a CPU list may name when it is parsed (the host's limit is checked later).
const MAX_HOST_CPUS: usize = 64;
/// Lists nested deeper than this are refused (xl uses nesting only for
/// vNUMA, two levels).
const MAX_LIST_DEPTH: usize = 8;
/// Where command-line overrides say they come from in messages.
pub const COMMAND_LINE: &str = "<command line>";

/// A parsed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A string or number, as written (strings already unescaped).
    Atom(String),
    /// `[ ... ]`.
    List(Vec<Value>),
}

impl fmt::Display for Value {
    /// How a value is quoted in messages: atoms in double quotes with
    /// control characters escaped, lists by what they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Atom(s) => write!(f, "\"{}\"", s.escape_debug()),
            Value::List(_) => f.write_str("a list"),
        }
    }
}

/// One `key = value` statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Written `+=` (append to the earlier value) rather than `=`.
    pub append: bool,
    /// Line of the key, from 1.
    pub line: u32,
}

/// What to do when a domain powers off, reboots or crashes (`on_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and build it again from the same configuration.
    Restart,
    /// Leave it shut down for inspection.
    Preserve,
}

/// A domain to create, from an xl configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// `name`.
    pub name: String,
    /// `kernel`: the kernel's path.
    pub kernel: String,
    /// `ramdisk`: the initrd's path.
    pub ramdisk: Option<String>,
    /// The command line from `cmdline`, or `root` and `extra`.
    pub cmdline: Option<String>,
    /// `memory`, in MiB.
    pub memory_mib: u64,
    /// `maxmem`, in MiB (`memory_mib` when not given).
    pub maxmem_mib: u64,
    /// `vcpus`: the vCPUs up at start.
    pub vcpus: u32,
    /// `maxvcpus`: the vCPUs the domain has (`vcpus` when not given), at
    /// least `vcpus`.
    pub maxvcpus: u32,
    /// `cpu_weight`.
    pub cpu_weight: u16,
    /// `cap`, percent of one pCPU; 0 for none.
    pub cap: u16,
    /// `cpus`: the pCPUs the vCPUs may run on (hard affinity); `None`: all.
    pub cpus: Option<CpuPlacement>,
    /// `cpus_soft`: the pCPUs the vCPUs prefer (soft affinity); `None`: all.
    pub cpus_soft: Option<CpuPlacement>,
    /// `on_poweroff`.
    pub on_poweroff: Action,
    /// `on_reboot`.
    pub on_reboot: Action,
    /// `on_crash`.
    pub on_crash: Action,
    /// `uuid`: the domain's handle; `None`: a random one is made when it is created.
    pub uuid: Option<[u8; 16]>,
    /// `disk`: the disks, each a spec Xenia's backend can serve ([`crate::disk`]), with
    /// distinct device numbers, in the order given.
    pub disks: Vec<crate::disk::Disk>,
    /// `vif`: the network interfaces, each a spec Xenia's backend can serve
    /// ([`crate::vif`]), in the order given, each with its device id (`devid=`, or the
    /// next after the highest so far, as libxl numbers them).
    pub nics: Vec<crate::vif::Nic>,
}

/// xl.cfg's `cpus=` / `cpus_soft=`: one CPU list for every vCPU (`cpus = "0-3,^1"`), or a
/// list per vCPU (`cpus = ["2", "3"]`: vCPU 0 on CPU 2, vCPU 1 on CPU 3, the others
/// unrestricted), in xl's CPU-list syntax (`dom0_tools::xlfmt::parse_cpu_list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuPlacement {
    /// The same list for every vCPU.
    All(String),
    /// List `n` for vCPU `n`; vCPUs past the end are unrestricted.
    PerVcpu(Vec<String>),
}

impl CpuPlacement {
    /// The CPU list for vCPU `vcpu`, if it has one.
    pub fn for_vcpu(&self, vcpu: u32) -> Option<&str> {
        match self {
            CpuPlacement::All(list) => Some(list),
            CpuPlacement::PerVcpu(lists) => lists.get(vcpu as usize).map(String::as_str),
        }
    }
}

/// A parsed configuration and what was odd but not wrong about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The domain.
    pub spec: DomainSpec,
    /// Warnings, formatted `<file>:<line>: ...`, in the order found.
    pub warnings: Vec<String>,
    /// Where `kernel` was set, `<file>:<line>` (or `<command line>:<n>`), for messages
    /// about the kernel file itself.
    pub kernel_at: String,
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or [`COMMAND_LINE`]).
    pub source: String,
    /// The line, from 1, when the fault has one.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.source, line, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

fn error(source: &str, line: Option<u32>, message: String) -> ConfigError {
    ConfigError {
        source: source.to_string(),
        line,
        message,
    }
}

/// The statements of a configuration file, in order.
pub fn parse_settings(source: &str, text: &[u8]) -> Result<Vec<Setting>, ConfigError> {
    let text = core::str::from_utf8(text).map_err(|e| {
        let line = line_of(text, e.valid_up_to());
        error(source, Some(line), "not valid UTF-8".to_string())
    })?;
    let mut lexer = Lexer {
        src: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut settings = Vec::new();
    loop {
        lexer.skip_blank(true);
        match lexer.peek() {
            None => return Ok(settings),
            Some(b';') => lexer.pos += 1,
            Some(_) => {
                let setting = lexer
                    .statement()
                    .map_err(|(line, msg)| error(source, Some(line), msg))?;
                settings.push(setting);
            }
        }
    }
}

/// A command-line override, `key=value` with the value in file syntax.
/// `index` (from 1) places it in messages.
pub fn parse_override(arg: &str, index: u32) -> Result<Setting, ConfigError> {
    let at = |msg: String| error(COMMAND_LINE, Some(index), msg);
    let mut settings = parse_settings(COMMAND_LINE, arg.as_bytes()).map_err(|e| at(e.message))?;
    if settings.len() != 1 {
        return Err(at(format!(
            "expected one key=value, got \"{}\"",
            arg.escape_debug()
        )));
    }
    let mut setting = settings.remove(0);
    setting.line = index;
    Ok(setting)
}

fn line_of(text: &[u8], pos: usize) -> u32 {
    let newlines = text[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines).unwrap_or(u32::MAX - 1) + 1
}

type LexResult<T> = Result<T, (u32, String)>;

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line = self.line.saturating_add(1);
        }
        Some(b)
    }

    /// Skips spaces, tabs and comments; newlines too when `newlines`.
    fn skip_blank(&mut self, newlines: bool) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' => {
                    self.bump();
                }
                b'\n' if newlines => {
                    self.bump();
                }
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn near(&self) -> String {
        match self.peek() {
            None => "end of file".to_string(),
            Some(b'\n') => "end of line".to_string(),
            Some(_) => {
                let rest = &self.src[self.pos..];
                let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                let shown = String::from_utf8_lossy(&rest[..end.min(20)]);
                format!("'{}'", shown.escape_debug())
            }
        }
    }

    fn statement(&mut self) -> LexResult<Setting> {
        let line = self.line;
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return Err((line, format!("expected a key near {}", self.near())));
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            self.bump();
        }
        let key = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
        self.skip_blank(false);
        let append = match self.peek() {
            Some(b'=') => false,
            Some(b'+') if self.src.get(self.pos + 1) == Some(&b'=') => {
                self.bump();
                true
            }
            _ => {
                return Err((
                    self.line,
                    format!("expected '=' after '{key}' near {}", self.near()),
                ));
            }
        };
        self.bump();
        self.skip_blank(false);
        let value = self.value(0)?;
        self.skip_blank(false);
        match self.peek() {
            None | Some(b'\n') | Some(b';') => Ok(Setting {
                key,
                value,
                append,
                line,
            }),
            Some(_) => Err((
                self.line,
                format!("unexpected text after the value near {}", self.near()),
            )),
        }
    }

    fn value(&mut self, depth: usize) -> LexResult<Value> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.quoted(q).map(Value::Atom),
            Some(b'[') => self.list(depth),
            Some(b) if b.is_ascii_digit() || b == b'-' || b == b'+' => {
                let start = self.pos;
                self.bump();
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
                {
                    self.bump();
                }
                let text = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
                Ok(Value::Atom(text))
            }
            _ => Err((
                self.line,
                format!(
                    "expected a value (\"string\", number or [list]) near {}",
                    self.near()
                ),
            )),
        }
    }

    fn list(&mut self, depth: usize) -> LexResult<Value> {
        let line = self.line;
        if depth >= MAX_LIST_DEPTH {
            return Err((
                line,
                format!("lists nested deeper than {MAX_LIST_DEPTH} levels"),
            ));
        }
        self.bump(); // '['
        let mut items = Vec::new();
        loop {
            self.skip_blank(true);
            match self.peek() {
                Some(b']') => {
                    self.bump();
                    return Ok(Value::List(items));
                }
                None => return Err((line, "unterminated list: no ']'".to_string())),
                Some(_) => {}
            }
            items.push(self.value(depth + 1)?);
            self.skip_blank(true);
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {}
                None => return Err((line, "unterminated list: no ']'".to_string())),
                Some(_) => {
                    return Err((
                        self.line,
                        format!("expected ',' or ']' in list near {}", self.near()),
                    ));
                }
            }
        }
    }

    /// A quoted string with xl's escapes (`libxlu_cfg.c` `dequote`):
    /// `\" \' \\ \a \b \f \n \r \t \v`, `\xHH`, and `\ooo` (octal; xl
    /// reads these digits as decimal, which no one can have meant).
    fn quoted(&mut self, quote: u8) -> LexResult<String> {
        let line = self.line;
        self.bump();
        let mut out = Vec::new();
        loop {
            let b = match self.bump() {
                None | Some(b'\n') => {
                    return Err((line, "unterminated string".to_string()));
                }
                Some(b) => b,
            };
            if b == quote {
                break;
            }
            if b != b'\\' {
                out.push(b);
                continue;
            }
            let esc = match self.bump() {
                None | Some(b'\n') => return Err((line, "unterminated string".to_string())),
                Some(e) => e,
            };
            let byte = match esc {
                b'"' | b'\'' | b'\\' => esc,
                b'a' => 0x07,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                b'x' => self.digits(16, 2, 2, line)?,
                b'0'..=b'7' => {
                    self.pos -= 1;
                    self.digits(8, 1, 3, line)?
                }
                _ => {
                    return Err((
                        line,
                        "invalid character after backslash in quoted string".to_string(),
                    ));
                }
            };
            out.push(byte);
        }
        String::from_utf8(out).map_err(|_| (line, "string is not valid UTF-8".to_string()))
    }

    fn digits(&mut self, radix: u32, min: usize, max: usize, line: u32) -> LexResult<u8> {
        let mut value: u32 = 0;
        let mut n = 0;
        while n < max {
            match self.peek().and_then(|b| char::from(b).to_digit(radix)) {
                Some(d) => {
                    value = value * radix + d;
                    self.bump();
                    n += 1;
                }
                None => break,
            }
        }
        if n < min {
            return Err((
                line,
                "invalid digit in numeric escape in quoted string".to_string(),
            ));
        }
        u8::try_from(value).map_err(|_| (line, "numeric escape above 255".to_string()))
    }
}

/// A number as C's `strtol(text, &end, 0)` reads it with nothing left
/// over: optional sign, then `0x` hex, `0` octal or decimal.
pub fn parse_integer(text: &str) -> Option<i64> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(hex) = t.strip_prefix("0x").or(t.strip_prefix("0X")) {
        (16, hex)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from(u64::from_str_radix(digits, radix).ok()?);
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// The keys [`DomainSpec`] reads (plus `root`, `type` and `builder`, which
/// xl also reads for a PV guest).
const KNOWN_KEYS: &[&str] = &[
    "name",
    "type",
    "builder",
    "uuid",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cpu_weight",
    "cap",
    "cpus",
    "cpus_soft",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "disk",
    "vif",
];

/// The other keys of xl.cfg(5) (Xen's `docs/man/xl.cfg.5.pod.in`), grouped by what it
/// means for the domain that Xenia does not implement them. Keys that only appear inside
/// another key's value (a `disk` spec's `backend=`, `smbios`' `bios_vendor=`) are not
/// keys of the file and are not listed.
const NOT_IMPLEMENTED: &[(&[&str], &str)] = &[
    (
        &[
            "pci",
            "pci_permissive",
            "pci_msitranslate",
            "pci_seize",
            "pci_power_mgmt",
            "gfx_passthru",
            "rdm",
            "rdm_mem_boundary",
            "dtdev",
            "ioports",
            "iomem",
            "irqs",
            "passthrough",
            "e820_host",
        ],
        "the domain will have no passthrough devices and no direct access to hardware",
    ),
    (
        &[
            "vfb",
            "vnc",
            "vnclisten",
            "vncdisplay",
            "vncunused",
            "vncpasswd",
            "sdl",
            "display",
            "xauthority",
            "keymap",
        ],
        "the domain will have no framebuffer, only its text console",
    ),
    (
        &["vkb"],
        "the domain will have no virtual keyboard or pointer",
    ),
    (&["vtpm"], "the domain will have no virtual TPM"),
    (&["p9"], "the domain will have no 9pfs shares"),
    (&["pvcalls"], "the domain will have no PV calls backend"),
    (
        &["channel"],
        "the domain will have no channels, only its console",
    ),
    (
        &["usbctrl", "usbdev"],
        "the domain will have no USB controllers or devices",
    ),
    (&["vdispl"], "the domain will have no virtual displays"),
    (&["vsnd"], "the domain will have no virtual sound cards"),
    (&["virtio"], "the domain will have no virtio devices"),
    (
        &[
            "bootloader",
            "bootloader_args",
            "bootloader_restrict",
            "bootloader_user",
            "firmware",
        ],
        "the domain boots the kernel= given, directly (no bootloader or firmware)",
    ),
    (&["pool"], "the domain runs in Pool-0, Xenia's only cpupool"),
    (&["vnuma"], "the domain will see no virtual NUMA topology"),
    (&["on_watchdog"], "a watchdog timeout destroys the domain"),
    (&["on_soft_reset"], "a soft reset does what on_reboot says"),
    (
        &[
            "seclabel",
            "init_seclabel",
            "device_model_stubdomain_seclabel",
        ],
        "Xenia has no XSM/FLASK, so the domain runs without a security label",
    ),
    (
        &[
            "max_grant_frames",
            "max_maptrack_frames",
            "max_grant_version",
            "max_event_channels",
        ],
        "the domain gets Xenia's default grant-table and event-channel limits",
    ),
    (
        &["xenstore_feature_mask", "xenstore_quota"],
        "the domain gets Xenia's default xenstore features and quotas",
    ),
    (
        &["nomigrate", "xend_suspend_evtchn_compat"],
        "Xenia neither saves, restores nor migrates domains",
    ),
    (
        &["driver_domain"],
        "the domain will not be set up to serve devices to other domains",
    ),
    (
        &[
            "cpuid",
            "msr_relaxed",
            "tsc_mode",
            "rtc_timeoffset",
            "localtime",
        ],
        "the domain gets Xenia's default CPUID, MSR and time settings",
    ),
    (&["vpmu"], "the domain will have no virtual PMU"),
    (
        &["vmtrace_buf_kb"],
        "the domain will have no processor trace buffers",
    ),
    (
        &[
            "device_model_version",
            "device_model_override",
            "device_model_user",
            "device_model_args",
            "device_model_args_pv",
            "device_model_args_hvm",
            "device_model_stubdomain_override",
            "stubdomain_kernel",
            "stubdomain_cmdline",
            "stubdomain_ramdisk",
            "stubdomain_memory",
            "dm_restrict",
        ],
        "Xenia runs no device model (QEMU) for the domain",
    ),
    (
        &[
            "boot",
            "hdtype",
            "hap",
            "oos",
            "shadow_memory",
            "bios",
            "bios_path_override",
            "pae",
            "acpi",
            "acpi_s3",
            "acpi_s4",
            "acpi_laptop_slate",
            "apic",
            "nx",
            "hpet",
            "altp2m",
            "altp2mhvm",
            "altp2m_count",
            "nestedhvm",
            "cpu_hotplug",
            "acpi_firmware",
            "smbios_firmware",
            "smbios",
            "ms_vm_genid",
            "vpt_align",
            "timer_mode",
            "mmio_hole",
            "xen_platform_pci",
            "xen_platform_pci_bar_uc",
            "viridian",
            "hvm_pirq",
            "videoram",
            "stdvga",
            "vga",
            "nographic",
            "spice",
            "spicehost",
            "spiceport",
            "spicetls_port",
            "spicedisable_ticketing",
            "spicepasswd",
            "spiceagent_mouse",
            "spicevdagent",
            "spice_clipboard_sharing",
            "spiceusbredirection",
            "spice_image_compression",
            "spice_streaming_video",
            "serial",
            "soundhw",
            "vkb_device",
            "usb",
            "usbversion",
            "usbdevice",
            "vendor_device",
            "mca_caps",
            "pvshim",
            "pvshim_path",
            "pvshim_cmdline",
            "pvshim_extra",
        ],
        "it is for HVM and PVH guests, and Xenia runs PV guests only",
    ),
    (
        &[
            "gic_version",
            "vuart",
            "sve",
            "llc_colors",
            "nr_spis",
            "trap_unmapped_accesses",
            "arm_sci",
            "tee",
            "device_tree",
        ],
        "it is for Arm guests, and Xenia runs on x86-64",
    ),
];

/// What it means for the domain that Xenia does not implement xl.cfg key `key`; `None`
/// when `key` is not one of xl.cfg(5)'s (or is one Xenia implements).
pub fn not_implemented(key: &str) -> Option<&'static str> {
    NOT_IMPLEMENTED
        .iter()
        .find(|(keys, _)| keys.contains(&key))
        .map(|&(_, meaning)| meaning)
}

/// `text` as libuuid's `uuid_parse` (which xl's `libxl_uuid_from_string` calls) reads
/// a UUID: exactly 36 characters, `-` at offsets 8, 13, 18 and 23 and hex digits (either
/// case) everywhere else; the bytes in the order written.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b
        .iter()
        .enumerate()
        .filter(|&(i, _)| !matches!(i, 8 | 13 | 18 | 23));
    if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    for byte in &mut out {
        let (_, &hi) = digits.next()?;
        let (_, &lo) = digits.next()?;
        let hi = char::from(hi).to_digit(16)?;
        let lo = char::from(lo).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Where a setting was made: source and line.
type Place<'a> = (&'a str, u32);

/// A key's value after every `=`, `+=` and override.
struct Entry<'a> {
    setting: Setting,
    source: &'a str,
    /// Some `+=` contributed (xl refuses `+=` for numbers).
    appended: bool,
}

struct Config<'a> {
    entries: Vec<Entry<'a>>,
    warnings: Vec<String>,
    file: &'a str,
}

impl<'a> Config<'a> {
    fn apply(
        &mut self,
        source: &'a str,
        setting: Setting,
        warn_duplicate: bool,
    ) -> Result<(), ConfigError> {
        if !KNOWN_KEYS.contains(&setting.key.as_str()) {
            let warning = match not_implemented(&setting.key) {
                Some(meaning) => format!(
                    "{source}:{}: '{}' is not implemented by Xenia (ignored): {meaning}",
                    setting.line, setting.key
                ),
                None => format!(
                    "{source}:{}: unknown key '{}' ignored",
                    setting.line, setting.key
                ),
            };
            self.warnings.push(warning);
            return Ok(());
        }
        let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.setting.key == setting.key)
        else {
            self.entries.push(Entry {
                appended: setting.append,
                setting,
                source,
            });
            return Ok(());
        };
        if setting.append {
            let joined = match (&entry.setting.value, setting.value) {
                (Value::Atom(a), Value::Atom(b)) => Value::Atom(a.clone() + &b),
                (Value::List(a), Value::List(b)) => {
                    Value::List(a.iter().cloned().chain(b).collect())
                }
                _ => {
                    return Err(error(
                        source,
                        Some(setting.line),
                        format!(
                            "can't add [list] to \"string\" or vice versa for '{}'",
                            setting.key
                        ),
                    ));
                }
            };
            entry.setting.value = joined;
            entry.setting.line = setting.line;
            entry.source = source;
            entry.appended = true;
        } else {
            if warn_duplicate {
                self.warnings.push(format!(
                    "{source}:{}: '{}' already set at line {}; this later value wins",
                    setting.line, setting.key, entry.setting.line
                ));
            }
            *entry = Entry {
                appended: false,
                setting,
                source,
            };
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&Entry<'a>> {
        self.entries.iter().find(|e| e.setting.key == key)
    }

    /// A string key, with where it was set.
    fn string(&self, key: &str) -> Result<Option<(String, Place<'a>)>, ConfigError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        match &e.setting.value {
            Value::Atom(s) => Ok(Some((s.clone(), (e.source, e.setting.line)))),
            v @ Value::List(_) => Err(error(
                e.source,
                Some(e.setting.line),
                format!("'{key}' must be a string, got {v}"),
            )),
        }
    }

    /// An integer key within `min..=max`; `unit` completes "must be an
    /// integer".
    fn integer(
        &self,
        key: &str,
        unit: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ConfigError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        let at = |msg: String| error(e.source, Some(e.setting.line), msg);
        if e.appended {
            return Err(at(format!("can't use += with numbers for '{key}'")));
        }
        let value = match &e.setting.value {
            Value::Atom(s) => parse_integer(s),
            Value::List(_) => None,
        };
        let Some(n) = value else {
            return Err(at(format!(
                "'{key}' must be an integer{unit}, got {}",
                e.setting.value
            )));
        };
        if n < min || n > max {
            return Err(at(format!("'{key}' must be {min} to {max}, got {n}")));
        }
        Ok(Some(n))
    }

    /// `cpus` or `cpus_soft`: a CPU list, or a list of them (one per vCPU), each checked
    /// with xl's parser (the host's CPUs are checked when the domain is made).
    fn cpu_placement(&self, key: &str) -> Result<Option<CpuPlacement>, ConfigError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        let at = |msg: String| error(e.source, Some(e.setting.line), msg);
        let check = |list: &str| {
            crate::xlfmt::parse_cpu_list(list, MAX_HOST_CPUS)
                .map(drop)
                .map_err(|why| at(format!("'{key}': {why}")))
        };
        match &e.setting.value {
            Value::Atom(list) => {
                check(list)?;
                Ok(Some(CpuPlacement::All(list.clone())))
            }
            Value::List(items) => {
                let mut lists = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Atom(list) = item else {
                        return Err(at(format!(
                            "'{key}' must be a CPU list or a list of CPU lists, got a nested list"
                        )));
                    };
                    check(list)?;
                    lists.push(list.clone());
                }
                Ok(Some(CpuPlacement::PerVcpu(lists)))
            }
        }
    }

    fn action(&self, key: &str, default: Action) -> Result<Action, ConfigError> {
        let Some((s, (source, line))) = self.string(key)? else {
            return Ok(default);
        };
        let at = |msg: String| error(source, Some(line), msg);
        match s.as_str() {
            "destroy" => Ok(Action::Destroy),
            "restart" => Ok(Action::Restart),
            "preserve" => Ok(Action::Preserve),
            "rename-restart" | "coredump-destroy" | "coredump-restart" | "soft-reset" => {
                Err(at(format!(
                    "{key} = \"{s}\" is not supported by Xenia (supported: destroy, restart, preserve)"
                )))
            }
            _ => Err(at(format!(
                "'{key}' must be one of destroy, restart, preserve, rename-restart, \
                 coredump-destroy, coredump-restart, soft-reset, got \"{}\"",
                s.escape_debug()
            ))),
        }
    }

    fn spec(&mut self) -> Result<DomainSpec, ConfigError> {
        let file = self.file;
        if let Some((ty, (source, line))) = self.string("type")?
            && ty != "pv"
        {
            return Err(error(
                source,
                Some(line),
                format!(
                    "type = \"{}\" is not supported by Xenia (only \"pv\")",
                    ty.escape_debug()
                ),
            ));
        }
        // Deprecated since Xen 4.10 in favour of `type`, and still read by xl.
        if let Some((builder, (source, line))) = self.string("builder")? {
            let at = |msg: String| error(source, Some(line), msg);
            match builder.as_str() {
                "generic" => {}
                "hvm" => {
                    return Err(at(
                        "builder = \"hvm\" is not supported by Xenia (only \"pv\", which builder = \"generic\" selects)".to_string(),
                    ));
                }
                other => {
                    return Err(at(format!(
                        "'builder' must be \"generic\" or \"hvm\", got \"{}\"",
                        other.escape_debug()
                    )));
                }
            }
        }
        let uuid = match self.string("uuid")? {
            None => None,
            Some((text, (source, line))) => Some(parse_uuid(&text).ok_or_else(|| {
                error(
                    source,
                    Some(line),
                    format!(
                        "'uuid' must be 32 hex digits grouped 8-4-4-4-12 \
                         (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got \"{}\"",
                        text.escape_debug()
                    ),
                )
            })?),
        };
        let name = match self.string("name")? {
            None => return Err(error(file, None, "no 'name' given".to_string())),
            Some((n, (source, line))) if n.is_empty() || n.chars().any(char::is_control) => {
                return Err(error(
                    source,
                    Some(line),
                    format!(
                        "'name' must be non-empty printable text, got \"{}\"",
                        n.escape_debug()
                    ),
                ));
            }
            Some((n, _)) => n,
        };
        let kernel = match self.string("kernel")? {
            None => return Err(error(file, None, "no 'kernel' given".to_string())),
            Some((k, (source, line))) if k.is_empty() => {
                return Err(error(source, Some(line), "'kernel' is empty".to_string()));
            }
            Some((k, _)) => k,
        };
        let ramdisk = self.string("ramdisk")?.map(|(r, _)| r);
        let cmdline = self.cmdline()?;

        let max_mib = i64::try_from(MAX_MEMORY_MIB).unwrap_or(i64::MAX);
        let memory = self.integer("memory", " (MiB)", 1, max_mib)?;
        let memory_mib = memory.map_or(DEFAULT_MEMORY_MIB, |m| m as u64);
        let maxmem_mib = match self.integer("maxmem", " (MiB)", 1, max_mib)? {
            None => memory_mib,
            Some(m) if (m as u64) < memory_mib => {
                let e = self.get("maxmem").map(|e| (e.source, e.setting.line));
                let (source, line) = e.unwrap_or((file, 0));
                return Err(error(
                    source,
                    Some(line),
                    format!("'maxmem' ({m} MiB) is less than 'memory' ({memory_mib} MiB)"),
                ));
            }
            Some(m) => m as u64,
        };
        let vcpus = self
            .integer("vcpus", "", 1, i64::from(MAX_VCPUS))?
            .map_or(1, |v| v as u32);
        let maxvcpus = match self.integer("maxvcpus", "", 1, i64::from(MAX_VCPUS))? {
            None => vcpus,
            Some(m) if (m as u32) < vcpus => {
                let e = self.get("maxvcpus").map(|e| (e.source, e.setting.line));
                let (source, line) = e.unwrap_or((file, 0));
                return Err(error(
                    source,
                    Some(line),
                    format!("'maxvcpus' ({m}) is less than 'vcpus' ({vcpus})"),
                ));
            }
            Some(m) => m as u32,
        };
        let cpu_weight = self
            .integer("cpu_weight", "", 1, i64::from(u16::MAX))?
            .map_or(CREDIT_DEFAULT_WEIGHT, |w| w as u16);
        // The cap is per domain, in percent of one pCPU: at most all of its vCPUs.
        let cap_max = 100 * i64::from(maxvcpus);
        let cap = self
            .integer("cap", " (percent of a CPU)", 0, cap_max)?
            .map_or(0, |c| c as u16);
        Ok(DomainSpec {
            name,
            kernel,
            ramdisk,
            cmdline,
            memory_mib,
            maxmem_mib,
            vcpus,
            maxvcpus,
            cpu_weight,
            cap,
            cpus: self.cpu_placement("cpus")?,
            cpus_soft: self.cpu_placement("cpus_soft")?,
            on_poweroff: self.action("on_poweroff", Action::Destroy)?,
            on_reboot: self.action("on_reboot", Action::Restart)?,
            on_crash: self.action("on_crash", Action::Destroy)?,
            uuid,
            disks: self.disks()?,
            nics: self.nics()?,
        })
    }

    /// `disk = [ 'spec', ... ]`: each spec read as xl's `parse_disk_config` does, with its
    /// words for a bad spec; then what Xenia cannot serve, a device given twice, and one
    /// target given twice where either is writable (Xen's block script refuses the second).
    fn disks(&self) -> Result<Vec<crate::disk::Disk>, ConfigError> {
        use crate::disk;
        let Some(e) = self.get("disk") else {
            return Ok(Vec::new());
        };
        let at = |msg: String| error(e.source, Some(e.setting.line), msg);
        let Value::List(items) = &e.setting.value else {
            return Err(at(format!(
                "'disk' must be a list of disk specifications, got {}",
                e.setting.value
            )));
        };
        let mut disks: Vec<disk::Disk> = Vec::with_capacity(items.len());
        let mut devids: Vec<u32> = Vec::with_capacity(items.len());
        for item in items {
            let Value::Atom(spec) = item else {
                return Err(at(
                    "'disk' must be a list of disk specifications, got a nested list".to_string(),
                ));
            };
            let d = disk::parse(&[spec]).map_err(|lines| at(lines.join("\n")))?;
            let vdev = d.vdev.clone().unwrap_or_default();
            if let Some(why) = disk::xenia_problem(&d) {
                return Err(at(format!("cannot attach disk {vdev}: {why}")));
            }
            let devid = disk::dev_number(&vdev).unwrap_or(0);
            if let Some(i) = devids.iter().position(|&n| n == devid) {
                let other = disks[i].vdev.as_deref().unwrap_or("");
                return Err(at(format!(
                    "disk {vdev} and disk {other} are the same device ({devid}): each disk needs \
                     a vdev of its own"
                )));
            }
            let target = d.pdev_path.as_deref().unwrap_or("");
            if disks.iter().any(|o| {
                disk::conflicts(
                    target,
                    d.readwrite,
                    o.pdev_path.as_deref().unwrap_or(""),
                    o.readwrite,
                )
            }) {
                return Err(at(format!(
                    "disk {vdev}: {}",
                    disk::in_use_message(target, d.readwrite)
                )));
            }
            devids.push(devid);
            disks.push(d);
        }
        Ok(disks)
    }

    /// `vif = [ 'spec', ... ]`: each spec read as xl's `parse_nic_config` reads it (with its
    /// words for a bad one; xl itself would go on without the bad piece, Xenia refuses the
    /// configuration), then what Xenia cannot serve; device ids as libxl's
    /// `libxl__device_nic_set_devids` gives them (a `devid=` is kept, the others numbered
    /// after the highest before them), and one id given twice refused.
    fn nics(&mut self) -> Result<Vec<crate::vif::Nic>, ConfigError> {
        use crate::vif;
        let Some(e) = self.get("vif") else {
            return Ok(Vec::new());
        };
        let (source, line) = (e.source, e.setting.line);
        let at = |msg: String| error(source, Some(line), msg);
        let Value::List(items) = &e.setting.value else {
            return Err(at(format!(
                "'vif' must be a list of vif specifications, got {}",
                e.setting.value
            )));
        };
        let mut nics: Vec<vif::Nic> = Vec::with_capacity(items.len());
        let mut warnings = Vec::new();
        for item in items {
            let Value::Atom(spec) = item else {
                return Err(at(
                    "'vif' must be a list of vif specifications, got a nested list".to_string(),
                ));
            };
            let p = vif::parse(source, &[spec]).map_err(at)?;
            warnings.extend(
                p.warnings
                    .into_iter()
                    .map(|w| format!("{source}:{line}: {w}")),
            );
            nics.push(p.nic);
        }
        let mut last: Option<u32> = None;
        for n in &nics {
            if let Some(d) = n.devid {
                last = Some(last.map_or(d, |l| l.max(d)));
            }
        }
        let mut given: Vec<u32> = Vec::with_capacity(nics.len());
        for n in &mut nics {
            let devid = match n.devid {
                Some(d) => d,
                None => {
                    let next = last.map_or(Some(0), |l| l.checked_add(1));
                    let Some(next) = next.filter(|&d| d <= vif::DEVID_MAX) else {
                        return Err(at("no device id is left for a vif".to_string()));
                    };
                    last = Some(next);
                    next
                }
            };
            n.devid = Some(devid);
            if let Some(why) = vif::xenia_problem(n) {
                return Err(at(format!("cannot attach vif {devid}: {why}")));
            }
            if given.contains(&devid) {
                return Err(at(format!(
                    "vif {devid} is given twice: each vif needs a devid of its own"
                )));
            }
            given.push(devid);
        }
        self.warnings.extend(warnings);
        Ok(nics)
    }

    /// xl's `parse_cmdline`.
    fn cmdline(&mut self) -> Result<Option<String>, ConfigError> {
        let cmdline = self.string("cmdline")?;
        let root = self.string("root")?;
        let extra = self.string("extra")?;
        let (line, cmdline) = match (cmdline, root, extra) {
            (Some((c, at)), root, extra) => {
                if root.is_some() || extra.is_some() {
                    self.warnings.push(format!(
                        "{}:{}: ignoring root= and extra= in favour of cmdline=",
                        at.0, at.1
                    ));
                }
                (at, c)
            }
            (None, Some((r, at)), Some((x, _))) => (at, format!("root={r} {x}")),
            (None, Some((r, at)), None) => (at, format!("root={r}")),
            (None, None, Some((x, at))) => (at, x),
            (None, None, None) => return Ok(None),
        };
        if cmdline.len() >= MAX_GUEST_CMDLINE || cmdline.contains('\0') {
            return Err(error(
                line.0,
                Some(line.1),
                format!(
                    "the kernel command line must be under {MAX_GUEST_CMDLINE} bytes without NUL"
                ),
            ));
        }
        Ok(Some(cmdline))
    }
}

/// Parses the configuration `text` of file `file`, then applies the
/// command-line `overrides` (`key=value` each) in order.
pub fn parse_domain_config(
    file: &str,
    text: &[u8],
    overrides: &[&str],
) -> Result<Parsed, ConfigError> {
    let mut config = Config {
        entries: Vec::new(),
        warnings: Vec::new(),
        file,
    };
    for setting in parse_settings(file, text)? {
        config.apply(file, setting, true)?;
    }
    for (i, arg) in overrides.iter().enumerate() {
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let setting = parse_override(arg, index)?;
        config.apply(COMMAND_LINE, setting, false)?;
    }
    let spec = config.spec()?;
    let kernel_at = config
        .get("kernel")
        .map(|e| alloc::format!("{}:{}", e.source, e.setting.line))
        .unwrap_or_default();
    Ok(Parsed {
        spec,
        warnings: config.warnings,
        kernel_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn parse(text: &str) -> Result<Parsed, String> {
        parse_domain_config("guest.cfg", text.as_bytes(), &[]).map_err(|e| e.to_string())
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("should be refused")
    }

    const MINIMAL: &str = "name = \"vm1\"\nkernel = \"/boot/vmlinuz\"\n";

    #[test]
    fn defaults_as_xl() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(
            p.spec,
            DomainSpec {
                name: "vm1".into(),
                kernel: "/boot/vmlinuz".into(),
                ramdisk: None,
                cmdline: None,
                memory_mib: 128,
                maxmem_mib: 128,
                vcpus: 1,
                maxvcpus: 1,
                cpu_weight: 256,
                cap: 0,
                cpus: None,
                cpus_soft: None,
                on_poweroff: Action::Destroy,
                on_reboot: Action::Restart,
                on_crash: Action::Destroy,
                uuid: None,
                disks: Vec::new(),
                nics: Vec::new(),
            }
        );
        assert!(p.warnings.is_empty());
        assert_eq!(p.kernel_at, "guest.cfg:2");
    }

    #[test]
    fn cpus_as_xl() {
        let p = parse(&format!(
            "{MINIMAL}cpus = \"0-2,^1\"\ncpus_soft = [\"1\", \"all\"]\n"
        ))
        .unwrap();
        assert_eq!(p.spec.cpus, Some(CpuPlacement::All("0-2,^1".into())));
        let soft = p.spec.cpus_soft.unwrap();
        assert_eq!(
            (soft.for_vcpu(0), soft.for_vcpu(1), soft.for_vcpu(2)),
            (Some("1"), Some("all"), None)
        );
        assert!(err(&format!("{MINIMAL}cpus = \"3-1\"\n")).contains("'cpus': "));
        assert!(err(&format!("{MINIMAL}cpus = [[\"1\"]]\n")).contains("nested list"));
    }

    #[test]
    fn maxvcpus_above_vcpus() {
        let text =
            "name = 'c'\nkernel = '/boot/c'\nmemory = 16\nvcpus = 2\nmaxvcpus = 8\ncap = 800\n";
        let p = parse_domain_config("guest.cfg", text.as_bytes(), &[]).unwrap();
        assert_eq!((p.spec.vcpus, p.spec.maxvcpus, p.spec.cap), (2, 8, 800));
        let p = parse_domain_config("guest.cfg", text.as_bytes(), &["vcpus=8"]).unwrap();
        assert_eq!((p.spec.vcpus, p.spec.maxvcpus), (8, 8));
    }

    #[test]
    fn full_file() {
        let text = "# a guest\n\
            name = 'web' ; type = \"pv\"\n\
            kernel = \"/boot/k\"   # trailing comment\n\
            ramdisk = \"/boot/initrd\"\n\
            extra = \"console=hvc0\"\n\
            memory = 0x100\n\
            maxmem = \"512\"\n\
            vcpus = 4\n\
            cpu_weight = 512\n\
            cap = 400\n\
            on_poweroff = \"preserve\"\n\
            on_reboot = 'destroy'\n\
            on_crash = \"restart\"\n\
            \n\
            disk = [ 'phy:/dev/vg/web,xvda,w',\n\
            \t# comment inside a list\n\
            \t'file:/x,xvdb,r', ]\n";
        let p = parse(text).unwrap();
        let s = &p.spec;
        assert_eq!((s.name.as_str(), s.kernel.as_str()), ("web", "/boot/k"));
        assert_eq!(s.ramdisk.as_deref(), Some("/boot/initrd"));
        assert_eq!(s.cmdline.as_deref(), Some("console=hvc0"));
        assert_eq!((s.memory_mib, s.maxmem_mib, s.vcpus), (256, 512, 4));
        assert_eq!(s.maxvcpus, 4, "maxvcpus defaults to vcpus");
        assert_eq!((s.cpu_weight, s.cap), (512, 400));
        assert_eq!(
            (s.on_poweroff, s.on_reboot, s.on_crash),
            (Action::Preserve, Action::Destroy, Action::Restart)
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let disks: Vec<(&str, &str, bool)> = s
            .disks
            .iter()
            .map(|d| {
                let t = d.pdev_path.as_deref().unwrap_or("");
                (t, d.vdev.as_deref().unwrap_or(""), d.readwrite)
            })
            .collect();
        assert_eq!(
            disks,
            [("/dev/vg/web", "xvda", true), ("/x", "xvdb", false)]
        );
    }

    #[test]
    fn disks_as_xl_reads_them() {
        let p = parse(&format!(
            "{MINIMAL}disk = [ 'format=raw, vdev=xvda, access=rw, target=/dev/vdb',\n\
             '/dev/vdc,raw,xvdb,ro', 'vdev=xvdc, access=r, target=/dev/vdc' ]\n"
        ))
        .unwrap();
        assert_eq!(p.spec.disks.len(), 3);
        assert!(p.spec.disks[0].readwrite && !p.spec.disks[1].readwrite);
        // Xen's words for a bad spec, placed at the key.
        assert_eq!(
            err(&format!("{MINIMAL}disk = [ '/dev/vdb,qcow9,xvda' ]\n")),
            "guest.cfg:3: config parsing error in disk specification: unknown value for format: \
             near `qcow9' in `/dev/vdb,qcow9,xvda'"
        );
        assert_eq!(
            err(&format!("{MINIMAL}disk = [ 'target=/dev/vdb' ]\n")),
            "guest.cfg:3: config parsing error in disk specification: no vdev specified in \
             `target=/dev/vdb'"
        );
        // What Xenia cannot serve is refused, saying what it can.
        assert_eq!(
            err(&format!("{MINIMAL}disk = [ '/img.qcow2,qcow2,xvda' ]\n")),
            "guest.cfg:3: cannot attach disk xvda: format=qcow2 is not supported by Xenia: its \
             block backend serves raw devices and images only (format=raw)"
        );
        assert!(
            err(&format!("{MINIMAL}disk = [ '/x,,xvd' ]\n"))
                .ends_with("Invalid or unsupported virtual disk identifier xvd")
        );
        // One device twice, whatever the spelling.
        assert!(
            err(&format!("{MINIMAL}disk = [ '/a,,xvda', '/b,,d0p0' ]\n"))
                .contains("disk d0p0 and disk xvda are the same device (51712)")
        );
        // One target twice: only read-only with read-only.
        assert_eq!(
            err(&format!(
                "{MINIMAL}disk = [ '/dev/vdb,,xvda', 'vdb,,xvdb,ro' ]\n"
            )),
            "guest.cfg:3: disk xvdb: Device /dev/vdb is mounted read-write in a guest domain,\n\
             and so cannot be mounted read-only now."
        );
        assert!(
            err(&format!(
                "{MINIMAL}disk = [ '/dev/vdb,,xvda,ro', '/dev/vdb,,xvdb' ]\n"
            ))
            .contains("Device /dev/vdb is mounted in a guest domain,")
        );
        assert!(
            parse(&format!(
                "{MINIMAL}disk = [ '/dev/vdb,,xvda,ro', '/dev/vdb,,xvdb,ro' ]\n"
            ))
            .is_ok()
        );
        assert!(err(&format!("{MINIMAL}disk = '/dev/vdb,,xvda'\n")).contains("must be a list"));
        // An override replaces the file's disks, as for any key.
        let p = parse_domain_config(
            "guest.cfg",
            format!("{MINIMAL}disk = [ '/dev/vdb,,xvda' ]\n").as_bytes(),
            &["disk=['/dev/vdc,,xvdb']"],
        )
        .unwrap();
        assert_eq!(p.spec.disks.len(), 1);
        assert_eq!(p.spec.disks[0].vdev.as_deref(), Some("xvdb"));
    }

    #[test]
    fn vifs_as_xl_reads_them() {
        let p = parse(&format!(
            "{MINIMAL}vif = [ 'bridge=xenbr0', 'mac=00:16:3e:00:00:01, devid=5', '' ]\n"
        ))
        .unwrap();
        let ids: Vec<Option<u32>> = p.spec.nics.iter().map(|n| n.devid).collect();
        assert_eq!(ids, [Some(6), Some(5), Some(7)], "libxl's numbering");
        let p = parse(&format!("{MINIMAL}vif = [ '', 'mac=00:16:3e:00:00:01' ]\n")).unwrap();
        let ids: Vec<Option<u32>> = p.spec.nics.iter().map(|n| n.devid).collect();
        assert_eq!(ids, [Some(0), Some(1)]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Xen's words, placed at the key.
        assert_eq!(
            err(&format!("{MINIMAL}vif = [ 'mac=nope' ]\n")),
            "guest.cfg:3: Invalid parameter `mac'."
        );
        assert_eq!(
            err(&format!("{MINIMAL}vif = [ 'rate=10MB' ]\n")),
            "guest.cfg:3: guest.cfg: config parsing error in vif: invalid rate in `10MB'"
        );
        assert_eq!(
            err(&format!("{MINIMAL}vif = [ 'bridge=br1' ]\n")),
            "guest.cfg:3: cannot attach vif 0: bridge=br1 is not supported by Xenia: dom0 \
             has one bridge, xenbr0"
        );
        assert!(
            err(&format!("{MINIMAL}vif = [ 'devid=1', 'devid=1' ]\n"))
                .contains("vif 1 is given twice")
        );
        assert!(err(&format!("{MINIMAL}vif = 'bridge=xenbr0'\n")).contains("must be a list"));
        let p = parse(&format!("{MINIMAL}vif = [ 'netdev=eth0' ]\n")).unwrap();
        assert_eq!(
            p.warnings,
            ["guest.cfg:3: the netdev parameter is deprecated, please use gatewaydev instead"]
        );
        // The last id taken: no next one.
        assert!(
            err(&format!("{MINIMAL}vif = [ 'devid=2147483647', '' ]\n"))
                .contains("no device id is left")
        );
    }

    #[test]
    fn typos_versus_keys_xenia_does_not_implement() {
        let p = parse(&format!(
            "{MINIMAL}memroy = 64
disk = [ 'phy:/dev/vg/a,xvda,w' ]
vtpm = [ '' ]
             pci = [ '01:00.0' ]
vfb = [ 'vnc=1' ]
vkb = [ '' ]
acpi = 1
             gic_version = 'v3'
bootloader = 'pygrub'
Disk = 1
"
        ))
        .unwrap();
        assert_eq!(
            p.warnings,
            [
                "guest.cfg:3: unknown key 'memroy' ignored",
                "guest.cfg:5: 'vtpm' is not implemented by Xenia (ignored): the domain will \
                 have no virtual TPM",
                "guest.cfg:6: 'pci' is not implemented by Xenia (ignored): the domain will \
                 have no passthrough devices and no direct access to hardware",
                "guest.cfg:7: 'vfb' is not implemented by Xenia (ignored): the domain will \
                 have no framebuffer, only its text console",
                "guest.cfg:8: 'vkb' is not implemented by Xenia (ignored): the domain will \
                 have no virtual keyboard or pointer",
                "guest.cfg:9: 'acpi' is not implemented by Xenia (ignored): it is for HVM \
                 and PVH guests, and Xenia runs PV guests only",
                "guest.cfg:10: 'gic_version' is not implemented by Xenia (ignored): it is for \
                 Arm guests, and Xenia runs on x86-64",
                "guest.cfg:11: 'bootloader' is not implemented by Xenia (ignored): the domain \
                 boots the kernel= given, directly (no bootloader or firmware)",
                "guest.cfg:12: unknown key 'Disk' ignored",
            ]
        );
        // A command-line setting is placed as such.
        let p = parse_domain_config("guest.cfg", MINIMAL.as_bytes(), &["vtpm=['']"]).unwrap();
        assert_eq!(
            p.warnings,
            [
                "<command line>:1: 'vtpm' is not implemented by Xenia (ignored): the domain will \
              have no virtual TPM"
            ]
        );
        // No key is both implemented and listed as not, and none is listed twice.
        let mut seen = Vec::new();
        for (keys, _) in NOT_IMPLEMENTED {
            for key in *keys {
                assert!(!KNOWN_KEYS.contains(key), "{key}");
                assert!(!seen.contains(key), "{key} twice");
                seen.push(*key);
            }
        }
    }

    #[test]
    fn uuid_and_builder() {
        let p = parse(&format!(
            "{MINIMAL}uuid = \"6F9619FF-8b86-d011-b42d-00c04fc964ff\"\nbuilder = \"generic\"\n"
        ))
        .unwrap();
        assert_eq!(
            p.spec.uuid,
            Some([
                0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9,
                0x64, 0xff
            ])
        );
        assert!(p.warnings.is_empty());
        for bad in [
            "",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964f",
            "6f9619ff-8b86-d011-b42d-00c04fc964fff",
            "6f9619ff-8b86-d011-b42d_00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964fg",
            "{6f9619ff-8b86-d011-b42d-00c04fc964f}",
            "+f9619ff-8b86-d011-b42d-00c04fc964ff",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
        assert_eq!(
            err(&format!("{MINIMAL}uuid = \"6f9619ff-8b86-d011-b42d\"\n")),
            "guest.cfg:3: 'uuid' must be 32 hex digits grouped 8-4-4-4-12 \
             (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got \"6f9619ff-8b86-d011-b42d\""
        );
        assert_eq!(
            err(&format!("{MINIMAL}uuid = [ 1 ]\n")),
            "guest.cfg:3: 'uuid' must be a string, got a list"
        );
        assert_eq!(
            err(&format!("{MINIMAL}builder = \"hvm\"\n")),
            "guest.cfg:3: builder = \"hvm\" is not supported by Xenia (only \"pv\", which \
             builder = \"generic\" selects)"
        );
        assert_eq!(
            err(&format!("{MINIMAL}builder = \"linux\"\n")),
            "guest.cfg:3: 'builder' must be \"generic\" or \"hvm\", got \"linux\""
        );
    }

    #[test]
    fn values_and_escapes() {
        let s = parse_settings(
            "f",
            b"a = \"x\\ty\\x41\\101\\\"\"\nb = [ 1, [ '2' ], ]\nc += -3",
        )
        .unwrap();
        assert_eq!(s[0].value, Value::Atom("x\tyAA\"".into()));
        assert_eq!(
            s[1].value,
            Value::List(vec![
                Value::Atom("1".into()),
                Value::List(vec![Value::Atom("2".into())])
            ])
        );
        assert_eq!((s[2].key.as_str(), s[2].append, s[2].line), ("c", true, 3));
        assert_eq!(s[2].value, Value::Atom("-3".into()));
    }

    #[test]
    fn integers_as_strtol() {
        assert_eq!(parse_integer("42"), Some(42));
        assert_eq!(parse_integer("0x1F"), Some(31));
        assert_eq!(parse_integer("010"), Some(8));
        assert_eq!(parse_integer("-7"), Some(-7));
        assert_eq!(parse_integer(" 5"), Some(5));
        assert_eq!(parse_integer("0"), Some(0));
        for bad in ["", "abc", "12abc", "0x", "08", "99999999999999999999", "5 "] {
            assert_eq!(parse_integer(bad), None, "{bad}");
        }
    }

    #[test]
    fn cmdline_root_extra_as_xl() {
        let p = parse(&format!(
            "{MINIMAL}root = \"/dev/xvda1\"\nextra = \"quiet\"\n"
        ))
        .unwrap();
        assert_eq!(p.spec.cmdline.as_deref(), Some("root=/dev/xvda1 quiet"));
        let p = parse(&format!("{MINIMAL}root = \"/dev/xvda1\"\n")).unwrap();
        assert_eq!(p.spec.cmdline.as_deref(), Some("root=/dev/xvda1"));
        let p = parse(&format!("{MINIMAL}cmdline = \"a b\"\nextra = \"c\"\n")).unwrap();
        assert_eq!(p.spec.cmdline.as_deref(), Some("a b"));
        assert_eq!(
            p.warnings,
            ["guest.cfg:3: ignoring root= and extra= in favour of cmdline="]
        );
        let p = parse(&format!("{MINIMAL}extra = \"a\"\nextra += \" b\"\n")).unwrap();
        assert_eq!(p.spec.cmdline.as_deref(), Some("a b"));
        let long = "x".repeat(MAX_GUEST_CMDLINE);
        assert_eq!(
            err(&format!("{MINIMAL}cmdline = \"{long}\"\n")),
            "guest.cfg:3: the kernel command line must be under 1024 bytes without NUL"
        );
    }

    #[test]
    fn duplicates_later_wins_with_warning() {
        let p = parse(&format!("{MINIMAL}memory = 64\nmemory = 256\n")).unwrap();
        assert_eq!(p.spec.memory_mib, 256);
        assert_eq!(
            p.warnings,
            ["guest.cfg:4: 'memory' already set at line 3; this later value wins"]
        );
    }

    #[test]
    fn overrides_after_the_file() {
        let p = parse_domain_config(
            "guest.cfg",
            format!("{MINIMAL}memory = 64\n").as_bytes(),
            &["memory=256", "name = 'other'", "on_crash=\"preserve\""],
        )
        .unwrap();
        assert_eq!(p.spec.memory_mib, 256);
        assert_eq!(p.spec.maxmem_mib, 256);
        assert_eq!(p.spec.name, "other");
        assert_eq!(p.spec.on_crash, Action::Preserve);
        assert!(p.warnings.is_empty());

        let e = parse_domain_config("guest.cfg", MINIMAL.as_bytes(), &["memory"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<command line>:1: expected '=' after 'memory' near end of file"
        );
        let e = parse_domain_config("guest.cfg", MINIMAL.as_bytes(), &["vcpus=1", "vcpus=abc"])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "<command line>:2: expected a value (\"string\", number or [list]) near 'abc'"
        );
        let e = parse_domain_config("guest.cfg", MINIMAL.as_bytes(), &["a=1;b=2"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<command line>:1: expected one key=value, got \"a=1;b=2\""
        );
        let e = parse_domain_config("guest.cfg", MINIMAL.as_bytes(), &["vcpus='x'"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<command line>:1: 'vcpus' must be an integer, got \"x\""
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "memory = \"abc\"\n",
                "guest.cfg:3: 'memory' must be an integer (MiB), got \"abc\"",
            ),
            (
                "memory = [1]\n",
                "guest.cfg:3: 'memory' must be an integer (MiB), got a list",
            ),
            (
                "memory = 0\n",
                "guest.cfg:3: 'memory' must be 1 to 17592186044415, got 0",
            ),
            ("vcpus = 0\n", "guest.cfg:3: 'vcpus' must be 1 to 32, got 0"),
            (
                "vcpus = 4\nmaxvcpus = 2\n",
                "guest.cfg:4: 'maxvcpus' (2) is less than 'vcpus' (4)",
            ),
            (
                "maxvcpus = 33\n",
                "guest.cfg:3: 'maxvcpus' must be 1 to 32, got 33",
            ),
            (
                "vcpus = 33\n",
                "guest.cfg:3: 'vcpus' must be 1 to 32, got 33",
            ),
            (
                "cpu_weight = 0\n",
                "guest.cfg:3: 'cpu_weight' must be 1 to 65535, got 0",
            ),
            (
                "cpu_weight = 65536\n",
                "guest.cfg:3: 'cpu_weight' must be 1 to 65535, got 65536",
            ),
            (
                "vcpus = 2\ncap = 201\n",
                "guest.cfg:4: 'cap' must be 0 to 200, got 201",
            ),
            (
                "memory = 256\nmaxmem = 128\n",
                "guest.cfg:4: 'maxmem' (128 MiB) is less than 'memory' (256 MiB)",
            ),
            (
                "memory = 1\nmemory += 2\n",
                "guest.cfg:4: can't use += with numbers for 'memory'",
            ),
            (
                "ramdisk = [ 'a' ]\n",
                "guest.cfg:3: 'ramdisk' must be a string, got a list",
            ),
            (
                "extra = 'a'\nextra += ['b']\n",
                "guest.cfg:4: can't add [list] to \"string\" or vice versa for 'extra'",
            ),
            (
                "on_crash = \"coredump-destroy\"\n",
                "guest.cfg:3: on_crash = \"coredump-destroy\" is not supported by Xenia (supported: destroy, restart, preserve)",
            ),
            (
                "on_reboot = \"soft-reset\"\n",
                "guest.cfg:3: on_reboot = \"soft-reset\" is not supported by Xenia (supported: destroy, restart, preserve)",
            ),
            (
                "on_poweroff = \"explode\"\n",
                "guest.cfg:3: 'on_poweroff' must be one of destroy, restart, preserve, rename-restart, coredump-destroy, coredump-restart, soft-reset, got \"explode\"",
            ),
            (
                "type = \"hvm\"\n",
                "guest.cfg:3: type = \"hvm\" is not supported by Xenia (only \"pv\")",
            ),
            (
                "memory = \n",
                "guest.cfg:3: expected a value (\"string\", number or [list]) near end of line",
            ),
            (
                "memory 5\n",
                "guest.cfg:3: expected '=' after 'memory' near '5'",
            ),
            (
                "memory = 5 6\n",
                "guest.cfg:3: unexpected text after the value near '6'",
            ),
            ("x = \"open\n", "guest.cfg:3: unterminated string"),
            ("x = [ 1,\n 2\n", "guest.cfg:3: unterminated list: no ']'"),
            (
                "x = [ 1 2 ]\n",
                "guest.cfg:3: expected ',' or ']' in list near '2 ]'",
            ),
            (
                "x = \"\\q\"\n",
                "guest.cfg:3: invalid character after backslash in quoted string",
            ),
            (
                "x = \"\\xZZ\"\n",
                "guest.cfg:3: invalid digit in numeric escape in quoted string",
            ),
            ("x = \"\\777\"\n", "guest.cfg:3: numeric escape above 255"),
            ("x = \"\\xff\"\n", "guest.cfg:3: string is not valid UTF-8"),
            ("= 5\n", "guest.cfg:3: expected a key near '= 5'"),
            (
                "x = [[[[[[[[[1]]]]]]]]]\n",
                "guest.cfg:3: lists nested deeper than 8 levels",
            ),
        ];
        for (tail, want) in cases {
            assert_eq!(err(&format!("{MINIMAL}{tail}")), *want, "{tail:?}");
        }
        assert_eq!(err("name = 'a'\n"), "guest.cfg: no 'kernel' given");
        assert_eq!(err("kernel = 'k'\n"), "guest.cfg: no 'name' given");
        assert_eq!(
            err("name = ''\nkernel = 'k'\n"),
            "guest.cfg:1: 'name' must be non-empty printable text, got \"\""
        );
        assert_eq!(
            parse_domain_config("g.cfg", b"name = 'a'\n\xff\n", &[])
                .unwrap_err()
                .to_string(),
            "g.cfg:2: not valid UTF-8"
        );
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn never_panics() {
        const ALPHABET: &[u8] = b"abnx_=+[],;#'\"\\ \t\n0123456789xX-.\xff\xc3";
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..20_000 {
            let len = (rng.next() % 96) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if round % 2 == 0 {
                        ALPHABET[(r % ALPHABET.len() as u64) as usize]
                    } else {
                        r as u8
                    }
                })
                .collect();
            let _ = parse_domain_config("fuzz.cfg", &bytes, &[]);
            let mut with_head = MINIMAL.as_bytes().to_vec();
            with_head.extend_from_slice(&bytes);
            let _ = parse_domain_config("fuzz.cfg", &with_head, &[]);
            let arg = String::from_utf8_lossy(&bytes);
            let _ = parse_domain_config("fuzz.cfg", MINIMAL.as_bytes(), &[&arg]);
        }
    }
}
