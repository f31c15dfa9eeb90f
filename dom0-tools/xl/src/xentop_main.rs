//! `xentop`: Xen's table of domains, in dom0's initrd beside `xl` (which runs the same code
//! for `xl top`, as Xen's execs `xentop`).
//!
//! Parses the command line ([`xl::top::args`]), opens dom0's devices and runs the loop
//! ([`xl::top::live`]). Help, version and command-line errors need no hypervisor; anywhere
//! but Xenia's dom0 the tool says what libxenstat would and why, and exits with status 1.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use xl::real::Real;
use xl::top::args::{self, Parsed};
use xl::top::live;

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let program = argv.next().unwrap_or_else(|| "xentop".into());
    let rest: Vec<String> = argv.collect();
    let options = match args::parse(&program, &rest) {
        Parsed::Run(o) => o,
        Parsed::Exit {
            stdout,
            stderr,
            status,
        } => {
            // glibc's complaint comes first, on stderr, then the usage on stdout.
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            let _ = std::io::stdout().write_all(stdout.as_bytes());
            return ExitCode::from(status);
        }
    };
    let result = Real::open_as("xentop")
        .map_err(|why| format!("Failed to initialize xenstat library\nxentop: {why}\n"))
        .and_then(|mut real| live::run(&mut real, &options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            let _ = std::io::stderr().write_all(msg.as_bytes());
            ExitCode::FAILURE
        }
    }
}
