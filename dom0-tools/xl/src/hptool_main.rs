//! `xen-hptool`: Xen's CPU and memory hot-plug tool, in dom0's initrd beside `xl`.
//!
//! Parses the command line, opens `/dev/xen/privcmd` and runs the verb
//! ([`xl::hptool`], where the logic and its tests are). Help and command-line errors need
//! no hypervisor; anywhere but Xenia's dom0 the tool says so and exits with status 1.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use dom0_tools::xen::Xen;
use xl::hptool::{self, Command};
use xl::real::Privcmd;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let command = match hptool::parse(&args) {
        Ok(command) => command,
        Err((text, status)) => {
            let _ = err.write_all(text.as_bytes());
            return ExitCode::from(status);
        }
    };
    if command == Command::Help {
        let _ = err.write_all(hptool::HELP.as_bytes());
        return ExitCode::SUCCESS;
    }
    match Privcmd::open("xen-hptool") {
        Ok(privcmd) => ExitCode::from(hptool::execute(
            &mut Xen::new(privcmd),
            &command,
            &mut out,
            &mut err,
        )),
        Err(msg) => {
            let _ = writeln!(err, "xen-hptool: {msg}");
            ExitCode::FAILURE
        }
    }
}
