//! xentop's command line, as Xen 4.17's reads it with glibc's `getopt_long` (`opterr`
//! left on, so glibc words the complaint) and acts on each option in order: `-h` prints the
//! usage and `-V` the version, and both exit 0 at once; an option that is not known or
//! lacks its value is reported by glibc, then the usage is printed and xentop exits with
//! status 0 (its `case '?'` shares `-h`'s exit). Numbers are read with `atoi`.

use crate::cli::getopt::{self, Fault, HasArg, LongOpt};

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-d`: seconds between samples (default 3; `atoi`, so a word is 0).
    pub delay: u32,
    /// `-b`: batch mode, no screen control and no keys; each sample printed whole.
    pub batch: bool,
    /// `-i`: how many samples before exiting (`None`: until `q`). xentop counts down
    /// after each sample and stops at 0, so `-i 0` runs (almost) forever, as there.
    pub iterations: Option<u32>,
    /// `-n`: each domain's networks under its row (none under Xenia).
    pub networks: bool,
    /// `-x`: each domain's block devices under its row (none under Xenia).
    pub vbds: bool,
    /// `-r`: the header before each domain.
    pub repeat_header: bool,
    /// `-v`: each domain's vCPU times under its row.
    pub vcpus: bool,
    /// `-f`: names not cut to ten characters.
    pub full_name: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            delay: 3,
            batch: false,
            iterations: None,
            networks: false,
            vbds: false,
            repeat_header: false,
            vcpus: false,
            full_name: false,
        }
    }
}

/// What to do: run, or print and exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these options.
    Run(Options),
    /// Print these and exit with `status`.
    Exit {
        /// For standard output.
        stdout: String,
        /// For standard error.
        stderr: String,
        /// The exit status.
        status: u8,
    },
}

/// xentop's `sopts`.
const SHORT: &str = "hVnxrvd:bi:f";

/// xentop's `lopts`.
const LONG: &[LongOpt] = &[
    long("help", HasArg::No, 'h'),
    long("version", HasArg::No, 'V'),
    long("networks", HasArg::No, 'n'),
    long("vbds", HasArg::No, 'x'),
    long("repeat-header", HasArg::No, 'r'),
    long("vcpus", HasArg::No, 'v'),
    long("delay", HasArg::Required, 'd'),
    long("batch", HasArg::No, 'b'),
    long("iterations", HasArg::Required, 'i'),
    long("full-name", HasArg::No, 'f'),
];

const fn long(name: &'static str, has_arg: HasArg, val: char) -> LongOpt {
    LongOpt { name, has_arg, val }
}

/// xentop's `usage(program)` (Xen 4.17; the tab in `-b`'s line is Xen's).
pub fn usage(program: &str) -> String {
    format!(
        "Usage: {program} [OPTION]\n\
         Displays ongoing information about xen vm resources \n\n\
         -h, --help           display this help and exit\n\
         -V, --version        output version information and exit\n\
         -d, --delay=SECONDS  seconds between updates (default 3)\n\
         -n, --networks       output vif network data\n\
         -x, --vbds           output vbd block device data\n\
         -r, --repeat-header  repeat table header before each domain\n\
         -v, --vcpus          output vcpu data\n\
         -b, --batch\t     output in batch mode, no user input accepted\n\
         -i, --iterations     number of iterations before exiting\n\
         -f, --full-name      output the full domain name (not truncated)\n\
         \n\
         Report bugs to <xen-devel@lists.xen.org>.\n"
    )
}

/// xentop's `version()`.
pub const VERSION: &str = "xentop 1.0\n\
    Written by Judy Fischbach, David Hendricks, Josh Triplett\n\
    \n\
    Copyright (C) 2005  International Business Machines  Corp\n\
    This is free software; see the source for copying conditions.There is NO\n\
    warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.\n";

/// C's `atoi` as xentop uses it, stored in an `unsigned int` (so `-1` wraps).
fn atoi(s: &str) -> u32 {
    getopt::strtol(s).map_or(0, |v| v as i32 as u32)
}

/// glibc's complaint for a command-line fault, with `program` as `argv[0]`.
pub fn complaint(program: &str, fault: &Fault) -> String {
    match fault {
        Fault::Invalid(c) => format!("{program}: invalid option -- '{c}'\n"),
        Fault::NeedsValue(c) => format!("{program}: option requires an argument -- '{c}'\n"),
        Fault::UnrecognizedLong(arg) => format!("{program}: unrecognized option '{arg}'\n"),
        Fault::AmbiguousLong(arg, names) => {
            let mut s = format!("{program}: option '{arg}' is ambiguous; possibilities:");
            for n in names {
                s += &format!(" '--{n}'");
            }
            s + "\n"
        }
        Fault::LongTakesNoValue(name) => {
            format!("{program}: option '--{name}' doesn't allow an argument\n")
        }
        Fault::LongNeedsValue(name) => {
            format!("{program}: option '--{name}' requires an argument\n")
        }
    }
}

/// Reads xentop's command line: `program` is `argv[0]`, `args` what follows it.
pub fn parse(program: &str, args: &[String]) -> Parsed {
    let parsed = getopt::getopt(args, SHORT, LONG);
    let mut o = Options::default();
    let exit = |stdout: String, stderr: String| Parsed::Exit {
        stdout,
        stderr,
        status: 0,
    };
    for (c, value) in &parsed.options {
        let value = value.as_deref().unwrap_or("");
        match c {
            'h' => return exit(usage(program), String::new()),
            'V' => return exit(VERSION.into(), String::new()),
            'n' => o.networks = true,
            'x' => o.vbds = true,
            'r' => o.repeat_header = true,
            'v' => o.vcpus = true,
            'd' => o.delay = atoi(value),
            'b' => o.batch = true,
            'i' => o.iterations = Some(atoi(value)),
            _ => o.full_name = true,
        }
    }
    if let Some(fault) = &parsed.fault {
        return exit(usage(program), complaint(program, fault));
    }
    // Operands are left alone, as getopt leaves them.
    Parsed::Run(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("xentop", &args)
    }

    fn run(args: &[&str]) -> Options {
        match p(args) {
            Parsed::Run(o) => o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn exit(args: &[&str]) -> (String, String, u8) {
        match p(args) {
            Parsed::Exit {
                stdout,
                stderr,
                status,
            } => (stdout, stderr, status),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn batch_options() {
        let o = run(&["-b", "-i", "2", "-d", "1"]);
        assert_eq!(
            o,
            Options {
                delay: 1,
                batch: true,
                iterations: Some(2),
                ..Options::default()
            }
        );
        assert_eq!(run(&["-bi2", "-d1"]), o);
        assert_eq!(run(&["--batch", "--iterations=2", "--delay", "1"]), o);
        assert_eq!(run(&["--bat", "--it", "2", "--de=1"]), o);
        assert_eq!(run(&[]), Options::default());
        let all = run(&["-nxrvf"]);
        assert!(all.networks && all.vbds && all.repeat_header && all.vcpus && all.full_name);
        // atoi: a word is 0, trailing junk is ignored, -1 wraps in the unsigned int.
        assert_eq!(run(&["-d", "soon"]).delay, 0);
        assert_eq!(run(&["-d", "5s"]).delay, 5);
        assert_eq!(run(&["-i", "-1"]).iterations, Some(u32::MAX));
    }

    #[test]
    fn help_and_version() {
        let (out, err, status) = exit(&["-h"]);
        assert_eq!((err.as_str(), status), ("", 0));
        assert!(out.starts_with("Usage: xentop [OPTION]\nDisplays ongoing information"));
        assert!(out.contains("-b, --batch\t     output in batch mode"));
        assert_eq!(exit(&["--help"]).0, out);
        // In order: what comes first wins.
        assert_eq!(exit(&["-V", "-h"]).0, VERSION);
        assert_eq!(exit(&["-b", "--vers"]).0, VERSION);
        assert!(VERSION.starts_with("xentop 1.0\nWritten by"));
    }

    #[test]
    fn bad_options_as_glibc_says_and_status_0() {
        let usage = usage("xentop");
        let cases: &[(&[&str], &str)] = &[
            (&["-k"], "xentop: invalid option -- 'k'\n"),
            (
                &["-b", "-d"],
                "xentop: option requires an argument -- 'd'\n",
            ),
            (&["--frob=1"], "xentop: unrecognized option '--frob=1'\n"),
            (
                &["--v"],
                "xentop: option '--v' is ambiguous; possibilities: '--version' '--vbds' '--vcpus'\n",
            ),
            (
                &["--batch=1"],
                "xentop: option '--batch' doesn't allow an argument\n",
            ),
            (
                &["--delay"],
                "xentop: option '--delay' requires an argument\n",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(exit(args), (usage.clone(), want.to_string(), 0), "{args:?}");
        }
        // `-h` before the fault is help; after it, the fault is reported.
        assert_eq!(exit(&["-h", "-k"]).1, "");
        assert_eq!(exit(&["-k", "-h"]).1, "xentop: invalid option -- 'k'\n");
    }
}
