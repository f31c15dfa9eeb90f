//! `xen-hptool`: Xen's CPU and memory hot-plug tool (`tools/misc/xen-hptool.c`), the verbs
//! and their output, host-testable behind [`Hotplug`]. The binary (`src/hptool_main.rs`)
//! wires it to the hypervisor.
//!
//! The verbs and their wording are Xen's, with these differences: every message ends with a
//! newline (two of Xen's do not); an error is printed as Xen's `error %x` of the negative
//! errno (libxc gives Xen's tool -1 there); and a frame owned by a domain is not exchanged
//! (Xen's tool suspends the guest and swaps the page, `xc_exchange_page`; Xenia has no
//! page exchange): the offline stays pending until the domain frees the frame, and the tool
//! says so with [`PENDING_OWNED`]'s line and succeeds.

use std::io::Write;

use dom0_tools::xen::{Raw, Xen};
use guest_abi::Errno;
use guest_abi::sysctl::{
    PG_OFFLINE_ANONYMOUS, PG_OFFLINE_BROKEN, PG_OFFLINE_FAILED, PG_OFFLINE_NOT_CONV_RAM,
    PG_OFFLINE_OFFLINED, PG_OFFLINE_OWNED, PG_OFFLINE_OWNER_SHIFT, PG_OFFLINE_PENDING,
    PG_OFFLINE_STATUS_BROKEN, PG_OFFLINE_STATUS_MASK, PG_OFFLINE_STATUS_OFFLINE_PENDING,
    PG_OFFLINE_STATUS_OFFLINED, PG_OFFLINE_XENPAGE, PG_ONLINE_BROKEN, PG_ONLINE_FAILED,
    PG_ONLINE_ONLINED, SYSCTL_PAGE_OFFLINE, SYSCTL_PAGE_ONLINE, SYSCTL_QUERY_PAGE_OFFLINE,
};

/// What the tool asks of the hypervisor.
pub trait Hotplug {
    /// `XEN_SYSCTL_page_offline_op` `cmd` on one frame: the answer and the status word.
    fn page_offline(&mut self, cmd: u32, mfn: u32) -> (Result<(), Errno>, u32);
    /// `XEN_SYSCTL_cpu_hotplug` (`online` true: `XEN_SYSCTL_CPU_HOTPLUG_ONLINE`).
    fn cpu_hotplug(&mut self, cpu: u32, online: bool) -> Result<(), Errno>;
    /// The C library's text for errno `code` (`strerror`).
    fn strerror(&self, code: i32) -> String;
}

/// The hypervisor itself, through any [`Raw`] hypercall path.
impl<R: Raw> Hotplug for Xen<R> {
    fn page_offline(&mut self, cmd: u32, mfn: u32) -> (Result<(), Errno>, u32) {
        Xen::page_offline(self, cmd, mfn)
    }

    fn cpu_hotplug(&mut self, cpu: u32, online: bool) -> Result<(), Errno> {
        Xen::cpu_hotplug(self, cpu, online)
    }

    fn strerror(&self, code: i32) -> String {
        strerror(code)
    }
}

/// The C library's text for errno `code`, without Rust's ` (os error N)` suffix.
pub fn strerror(code: i32) -> String {
    let text = std::io::Error::from_raw_os_error(code).to_string();
    match text.rsplit_once(" (os error ") {
        Some((msg, _)) => msg.to_string(),
        None => text,
    }
}

/// Xenia's wording for a frame a domain owns whose offline is now pending (Xen's tool
/// exchanges the page instead).
pub const PENDING_OWNED: &str = "offline pending, this page is DOM";

/// The line added when the hypervisor answers `EOPNOTSUPP` to `XEN_SYSCTL_cpu_hotplug`.
pub const CPU_HOTPLUG_UNSUPPORTED: &str = "xen-hptool: this hypervisor cannot take CPUs offline or bring them back yet \
     (XEN_SYSCTL_cpu_hotplug is not supported); every CPU started at boot stays online";

/// The line added when the hypervisor refuses to offline a CPU with `EBUSY` (Xenia's answer
/// for CPU 0 and for the last online CPU; the hypervisor's log says which).
pub const CPU_OFFLINE_BUSY: &str = "xen-hptool: CPU 0 (the boot CPU) and the last online CPU \
     cannot be taken offline";

/// Xen's help text (printed on standard error).
pub const HELP: &str = "xen-hptool: Xen CPU/memory hotplug tool\n\
Usage: xen-hptool <command> [args]\n\
Commands:\n  \
help                     display this help\n  \
cpu-online    <cpuid>    online CPU <cpuid>\n  \
cpu-offline   <cpuid>    offline CPU <cpuid>\n  \
mem-online    <mfn>      online MEMORY <mfn>\n  \
mem-offline   <mfn>      offline MEMORY <mfn>\n  \
mem-status    <mfn>      query Memory status<mfn>\n";

/// The verbs, in Xen's order: a command is the first whose name starts with the argument
/// (Xen compares `strlen(argv[1])` characters), so `mem-o` is `mem-online`.
const VERBS: [&str; 6] = [
    "help",
    "cpu-online",
    "cpu-offline",
    "mem-status",
    "mem-online",
    "mem-offline",
];

/// A command line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`, or no command: the help, on standard error, status 0 (as Xen's tool).
    Help,
    /// `cpu-online <cpu>` (`online` true) or `cpu-offline <cpu>`.
    Cpu {
        /// The CPU.
        cpu: u32,
        /// Online or offline.
        online: bool,
    },
    /// `mem-status <mfn>`.
    MemStatus(u32),
    /// `mem-online <mfn>`.
    MemOnline(u32),
    /// `mem-offline <mfn>`.
    MemOffline(u32),
}

/// Parses `xen-hptool args...` (`args` without the program name). A refused command line
/// gives the text for standard error and the exit status.
pub fn parse(args: &[String]) -> Result<Command, (String, u8)> {
    let Some(verb) = args.first() else {
        return Ok(Command::Help);
    };
    let Some(&name) = VERBS.iter().find(|v| v.starts_with(verb.as_str())) else {
        return Err((
            format!("Unrecognised command '{verb}' -- try 'xen-hptool help'\n"),
            1,
        ));
    };
    if name == "help" {
        return Ok(Command::Help);
    }
    let [arg] = &args[1..] else {
        return Err((HELP.into(), 1));
    };
    if let Some(online) = match name {
        "cpu-online" => Some(true),
        "cpu-offline" => Some(false),
        _ => None,
    } {
        // Xen reads the CPU with `atoi`, which makes CPU 0 of any word: refused here.
        let cpu = arg.parse().map_err(|_| {
            (
                format!("xen-hptool: '{arg}' is not a CPU number (decimal, as `xl info` counts)\n"),
                1,
            )
        })?;
        return Ok(Command::Cpu { cpu, online });
    }
    // Xen reads the frame number with `%lx`: hexadecimal, `0x` allowed. Xen's tool would
    // take the leading digits of anything; a frame number that is not all hexadecimal, or
    // does not fit the sysctl's 32 bits, is refused here.
    let digits = arg
        .strip_prefix("0x")
        .or_else(|| arg.strip_prefix("0X"))
        .unwrap_or(arg);
    let mfn = u32::from_str_radix(digits, 16).map_err(|_| {
        (
            format!(
                "xen-hptool: '{arg}' is not a machine frame number (hexadecimal, at most \
                 ffffffff)\n"
            ),
            1,
        )
    })?;
    Ok(match name {
        "mem-status" => Command::MemStatus(mfn),
        "mem-online" => Command::MemOnline(mfn),
        _ => Command::MemOffline(mfn),
    })
}

/// Carries out `command`; returns the exit status (Xen's `!!ret`).
pub fn execute(
    hp: &mut impl Hotplug,
    command: &Command,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let failed = match *command {
        Command::Help => {
            let _ = err.write_all(HELP.as_bytes());
            false
        }
        Command::Cpu { cpu: n, online } => cpu(hp, n, online, out, err),
        Command::MemStatus(mfn) => mem_status(hp, mfn, out, err),
        Command::MemOnline(mfn) => mem_online(hp, mfn, out, err),
        Command::MemOffline(mfn) => mem_offline(hp, mfn, out, err),
    };
    u8::from(failed)
}

/// Runs `xen-hptool args...` (`args` without the program name): [`parse`], then
/// [`execute`]; returns the exit status.
pub fn run(hp: &mut impl Hotplug, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match parse(args) {
        Ok(command) => execute(hp, &command, out, err),
        Err((text, status)) => {
            let _ = err.write_all(text.as_bytes());
            status
        }
    }
}

/// Xen's `error %x` of a failed call: the negative errno, as hexadecimal.
fn code(e: Errno) -> String {
    format!("{:x}", -e.code())
}

fn mem_status(hp: &mut impl Hotplug, mfn: u32, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let _ = writeln!(out, "Querying MEMORY mfn {mfn:x} status");
    match hp.page_offline(SYSCTL_QUERY_PAGE_OFFLINE, mfn) {
        (Err(e), _) => {
            let _ = writeln!(err, "Querying page mfn {mfn:x} failed, error {}", code(e));
            true
        }
        (Ok(()), status) => {
            let mut line = format!("Memory Status {status:x}: [");
            if status & PG_OFFLINE_STATUS_OFFLINE_PENDING != 0 {
                line += " PAGE_OFFLINE_PENDING ";
            }
            if status & PG_OFFLINE_STATUS_BROKEN != 0 {
                line += " PAGE_BROKEND  ";
            }
            if status & PG_OFFLINE_STATUS_OFFLINED != 0 {
                line += " PAGE_OFFLINED ";
            } else {
                line += " PAGE_ONLINED ";
            }
            let _ = writeln!(out, "{line}]");
            false
        }
    }
}

fn mem_online(hp: &mut impl Hotplug, mfn: u32, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let _ = writeln!(out, "Prepare to online MEMORY mfn {mfn:x}");
    match hp.page_offline(SYSCTL_PAGE_ONLINE, mfn) {
        (Err(e), _) => {
            let _ = writeln!(err, "Onlining page mfn {mfn:x} failed, error {}", code(e));
            true
        }
        (Ok(()), status) if status & (PG_ONLINE_FAILED | PG_ONLINE_BROKEN) != 0 => {
            let _ = writeln!(
                err,
                "Onlining page mfn {mfn:x} is broken, Memory online failed"
            );
            true
        }
        (Ok(()), status) if status & PG_ONLINE_ONLINED != 0 => {
            let _ = writeln!(out, "Memory mfn {mfn:x} onlined successfully");
            false
        }
        (Ok(()), _) => {
            let _ = writeln!(out, "Memory is already onlined!");
            false
        }
    }
}

fn mem_offline(hp: &mut impl Hotplug, mfn: u32, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let _ = writeln!(out, "Prepare to offline MEMORY mfn {mfn:x}");
    let (result, status) = hp.page_offline(SYSCTL_PAGE_OFFLINE, mfn);
    if let Err(e) = result {
        let _ = writeln!(err, "Offlining page mfn {mfn:x} failed, error {}", code(e));
        // Xen's tests, in Xen's order (FAILED alone takes the first branch).
        if status & (PG_OFFLINE_XENPAGE | PG_OFFLINE_FAILED) != 0 {
            let _ = writeln!(err, "XEN_PAGE is not permitted be offlined");
        } else if status & (PG_OFFLINE_FAILED | PG_OFFLINE_NOT_CONV_RAM) != 0 {
            let _ = writeln!(err, "RESERVED RAM is not permitted to be offlined");
        }
        return true;
    }
    match status & PG_OFFLINE_STATUS_MASK {
        PG_OFFLINE_OFFLINED => {
            let _ = writeln!(
                out,
                "Memory mfn {mfn:x} offlined successfully, current state is [PG_OFFLINE_OFFLINED]"
            );
            if status & PG_OFFLINE_BROKEN != 0 {
                let _ = writeln!(
                    out,
                    "And this offlined PAGE is already marked broken before!"
                );
            }
            false
        }
        PG_OFFLINE_FAILED => {
            let _ = writeln!(err, "Memory mfn {mfn:x} offline failed");
            if status & PG_OFFLINE_ANONYMOUS != 0 {
                let _ = writeln!(err, "the memory is an anonymous page!");
            }
            true
        }
        PG_OFFLINE_PENDING if status & PG_OFFLINE_XENPAGE != 0 => {
            let _ = writeln!(
                err,
                "Memory mfn {mfn:x} offlined succssefully,this page is xen page, current state \
                 is [PG_OFFLINE_PENDING, PG_OFFLINE_XENPAGE]"
            );
            true
        }
        PG_OFFLINE_PENDING if status & PG_OFFLINE_OWNED != 0 => {
            let dom = status >> PG_OFFLINE_OWNER_SHIFT;
            let _ = writeln!(
                out,
                "Memory mfn {mfn:x} {PENDING_OWNED}{dom} page, current state is \
                 [PG_OFFLINE_PENDING, PG_OFFLINE_OWNED]"
            );
            false
        }
        _ => false,
    }
}

fn cpu(
    hp: &mut impl Hotplug,
    cpu: u32,
    online: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    let (verb, done) = if online {
        ("online", "onlined")
    } else {
        ("offline", "offlined")
    };
    let _ = writeln!(out, "Prepare to {verb} CPU {cpu}");
    match hp.cpu_hotplug(cpu, online) {
        Ok(()) => {
            let _ = writeln!(out, "CPU {cpu} {done} successfully");
            false
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "CPU {cpu} {verb} failed (error {}: {})",
                e.code(),
                hp.strerror(e.code())
            );
            if e == Errno::EOPNOTSUPP {
                let _ = writeln!(err, "{CPU_HOTPLUG_UNSUPPORTED}");
            }
            if e == Errno::EBUSY && !online {
                let _ = writeln!(err, "{CPU_OFFLINE_BUSY}");
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a script; records the calls.
    struct Fake {
        answer: (Result<(), Errno>, u32),
        calls: Vec<(u32, u32)>,
        cpu_calls: Vec<(u32, bool)>,
        /// What `cpu_hotplug` answers.
        cpu_answer: Result<(), Errno>,
    }

    impl Hotplug for Fake {
        fn page_offline(&mut self, cmd: u32, mfn: u32) -> (Result<(), Errno>, u32) {
            self.calls.push((cmd, mfn));
            self.answer
        }
        fn cpu_hotplug(&mut self, cpu: u32, online: bool) -> Result<(), Errno> {
            self.cpu_calls.push((cpu, online));
            self.cpu_answer
        }
        fn strerror(&self, code: i32) -> String {
            super::strerror(code)
        }
    }

    fn run_with(
        answer: (Result<(), Errno>, u32),
        args: &[&str],
    ) -> (u8, String, String, Vec<(u32, u32)>) {
        let mut hp = Fake {
            answer,
            calls: Vec::new(),
            cpu_calls: Vec::new(),
            cpu_answer: Err(Errno::EOPNOTSUPP),
        };
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(&mut hp, &args, &mut out, &mut err);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            hp.calls,
        )
    }

    #[test]
    fn offline_free_frame() {
        let (s, out, err, calls) =
            run_with((Ok(()), PG_OFFLINE_OFFLINED), &["mem-offline", "1a2b"]);
        assert_eq!(s, 0);
        assert_eq!(calls, [(SYSCTL_PAGE_OFFLINE, 0x1a2b)]);
        assert_eq!(
            out,
            "Prepare to offline MEMORY mfn 1a2b\nMemory mfn 1a2b offlined successfully, current \
             state is [PG_OFFLINE_OFFLINED]\n"
        );
        assert_eq!(err, "");
    }

    #[test]
    fn offline_owned_frame_is_pending() {
        let status = PG_OFFLINE_PENDING | PG_OFFLINE_OWNED | 3 << PG_OFFLINE_OWNER_SHIFT;
        let (s, out, _, _) = run_with((Ok(()), status), &["mem-offline", "0x77"]);
        assert_eq!(s, 0);
        assert!(
            out.contains("Memory mfn 77 offline pending, this page is DOM3 page"),
            "{out}"
        );
    }

    #[test]
    fn offline_xen_page_refused() {
        let status = PG_OFFLINE_FAILED | PG_OFFLINE_XENPAGE | 0x7FF2 << PG_OFFLINE_OWNER_SHIFT;
        let (s, _, err, _) = run_with((Err(Errno::EPERM), status), &["mem-offline", "10"]);
        assert_eq!(s, 1);
        assert_eq!(
            err,
            "Offlining page mfn 10 failed, error ffffffff\nXEN_PAGE is not permitted be offlined\n"
        );
    }

    #[test]
    fn status_and_online() {
        let (_, out, _, _) = run_with((Ok(()), PG_OFFLINE_STATUS_OFFLINED), &["mem-status", "5"]);
        assert_eq!(
            out,
            "Querying MEMORY mfn 5 status\nMemory Status 2: [ PAGE_OFFLINED ]\n"
        );
        let (_, out, _, _) = run_with((Ok(()), PG_OFFLINE_STATUS_OFFLINE_PENDING), &["mem-s", "5"]);
        assert_eq!(
            out,
            "Querying MEMORY mfn 5 status\nMemory Status 8: [ PAGE_OFFLINE_PENDING  PAGE_ONLINED ]\n"
        );
        let (_, out, _, _) = run_with((Ok(()), 0), &["mem-status", "5"]);
        assert!(
            out.ends_with("Memory Status 0: [ PAGE_ONLINED ]\n"),
            "{out}"
        );
        let (s, out, _, calls) = run_with((Ok(()), PG_ONLINE_ONLINED), &["mem-online", "5"]);
        assert_eq!((s, calls[0].0), (0, SYSCTL_PAGE_ONLINE));
        assert_eq!(
            out,
            "Prepare to online MEMORY mfn 5\nMemory mfn 5 onlined successfully\n"
        );
        let (_, out, _, _) = run_with((Ok(()), 0), &["mem-online", "5"]);
        assert!(out.ends_with("Memory is already onlined!\n"));
        let (s, _, err, _) = run_with((Err(Errno::EINVAL), 0), &["mem-status", "ffffff"]);
        assert_eq!(s, 1);
        assert_eq!(err, "Querying page mfn ffffff failed, error ffffffea\n");
    }

    #[test]
    fn command_line() {
        let (s, _, err, calls) = run_with((Ok(()), 0), &[]);
        assert_eq!(s, 0);
        assert!(err.starts_with("xen-hptool: Xen CPU/memory hotplug tool\n"));
        assert!(calls.is_empty());
        let (s, _, err, _) = run_with((Ok(()), 0), &["frob"]);
        assert_eq!(
            (s, err.as_str()),
            (1, "Unrecognised command 'frob' -- try 'xen-hptool help'\n")
        );
        let (s, _, _, calls) = run_with((Ok(()), 0), &["mem-offline", "zz"]);
        assert_eq!(s, 1);
        assert!(calls.is_empty(), "no frame number, no call");
        let (s, _, _, _) = run_with((Ok(()), 0), &["mem-offline"]);
        assert_eq!(s, 1);
        let (s, _, err, _) = run_with((Ok(()), 0), &["mem-status", "1", "2"]);
        assert!(
            (s, err.starts_with("xen-hptool: Xen CPU")) == (1, true),
            "{err}"
        );
    }

    #[test]
    fn bad_numbers_are_refused_before_any_call() {
        for bad in ["zz", "", "0x", "0x0x5", "-1", "1 2", "100000000", "12g"] {
            let (s, out, err, calls) = run_with((Ok(()), 0), &["mem-offline", bad]);
            assert_eq!(s, 1, "{bad:?}");
            assert!(calls.is_empty() && out.is_empty(), "{bad:?}: no call");
            assert_eq!(
                err,
                format!(
                    "xen-hptool: '{bad}' is not a machine frame number (hexadecimal, at most \
                     ffffffff)\n"
                )
            );
        }
        for good in ["0xffffffff", "0XAb", "ab", "0"] {
            let (s, _, _, calls) = run_with((Ok(()), 0), &["mem-status", good]);
            assert_eq!((s, calls.len()), (0, 1), "{good:?}");
        }
        let (s, _, err, _) = run_with((Ok(()), 0), &["cpu-offline", "three"]);
        assert_eq!(s, 1);
        assert_eq!(
            err,
            "xen-hptool: 'three' is not a CPU number (decimal, as `xl info` counts)\n"
        );
        assert_eq!(
            parse(&["cpu-on".into(), "2".into()]),
            Ok(Command::Cpu {
                cpu: 2,
                online: true
            })
        );
        // Xen's prefix rule: `mem-o` is `mem-online`, the first verb it matches.
        assert_eq!(
            parse(&["mem-o".into(), "5".into()]),
            Ok(Command::MemOnline(5))
        );
    }

    /// Runs `args` against a fake whose `cpu_hotplug` answers `answer`: status, standard
    /// output and error, and the calls.
    fn run_cpu(answer: Result<(), Errno>, args: &[&str]) -> (u8, String, String, Vec<(u32, bool)>) {
        let mut hp = Fake {
            answer: (Ok(()), 0),
            calls: Vec::new(),
            cpu_calls: Vec::new(),
            cpu_answer: answer,
        };
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(&mut hp, &args, &mut out, &mut err);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            hp.cpu_calls,
        )
    }

    #[test]
    fn cpu_offline_and_online_with_xens_messages() {
        let (s, out, err, calls) = run_cpu(Ok(()), &["cpu-offline", "3"]);
        assert_eq!((s, err.as_str()), (0, ""));
        assert_eq!(calls, [(3, false)]);
        assert_eq!(
            out,
            "Prepare to offline CPU 3\nCPU 3 offlined successfully\n"
        );
        let (s, out, _, calls) = run_cpu(Ok(()), &["cpu-online", "3"]);
        assert_eq!(s, 0);
        assert_eq!(calls, [(3, true)]);
        assert_eq!(out, "Prepare to online CPU 3\nCPU 3 onlined successfully\n");

        // CPU 0: refused, with the reason.
        let (s, out, err, _) = run_cpu(Err(Errno::EBUSY), &["cpu-offline", "0"]);
        assert_eq!((s, out.as_str()), (1, "Prepare to offline CPU 0\n"));
        assert!(err.starts_with("CPU 0 offline failed (error 16: "), "{err}");
        assert!(err.ends_with(&format!("{CPU_OFFLINE_BUSY}\n")), "{err}");
        // A CPU that does not exist, or onlining one that is online: Xen's line alone.
        let (s, _, err, _) = run_cpu(Err(Errno::EINVAL), &["cpu-online", "9"]);
        assert_eq!(s, 1);
        assert!(err.starts_with("CPU 9 online failed (error 22: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn cpu_hotplug_not_supported_says_so() {
        let mut hp = Fake {
            answer: (Ok(()), 0),
            calls: Vec::new(),
            cpu_calls: Vec::new(),
            cpu_answer: Err(Errno::EOPNOTSUPP),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let s = run(
            &mut hp,
            &["cpu-offline".into(), "3".into()],
            &mut out,
            &mut err,
        );
        assert_eq!(s, 1);
        assert_eq!(hp.cpu_calls, [(3, false)]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Prepare to offline CPU 3\n"
        );
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with("CPU 3 offline failed (error 95: "), "{err}");
        assert!(
            err.ends_with(&format!("{CPU_HOTPLUG_UNSUPPORTED}\n")),
            "{err}"
        );
        let (s, out, _, _) = run_with((Ok(()), 0), &["cpu-online", "1"]);
        assert_eq!((s, out.as_str()), (1, "Prepare to online CPU 1\n"));
    }

    #[test]
    fn strerror_is_the_c_librarys_text() {
        let text = strerror(1);
        assert!(!text.contains("os error") && !text.is_empty(), "{text}");
    }
}
