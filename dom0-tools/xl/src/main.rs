//! `xl`: dom0's toolstack command.
//!
//! The verbs are parsed here; carrying them out needs `/dev/xen/privcmd`,
//! which only the dom0 kernel provides. Anywhere else (the build host, a
//! kernel without the device) xl says so and exits with status 1 rather
//! than pretending.
#![forbid(unsafe_code)]

use std::process::ExitCode;

const PRIVCMD: &str = "/dev/xen/privcmd";

fn main() -> ExitCode {
    let cli = match xl::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout (status 0) and usage
            // errors to stderr (status 2).
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    if !std::path::Path::new(PRIVCMD).exists() {
        eprintln!(
            "xl: {PRIVCMD} is missing: xl manages domains from Xenia's dom0 and cannot run here \
             (boot the image with `cargo xtask run` and use xl at the dom0# prompt)"
        );
        return ExitCode::FAILURE;
    }
    eprintln!(
        "xl: {:?} is not carried out yet by this build of the toolstack",
        cli.command
    );
    ExitCode::FAILURE
}
