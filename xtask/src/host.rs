//! The build host: running commands, the Rust toolchain, and the tools images and QEMU need.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// A host tool and the Debian packages that provide it.
pub struct Tool {
    /// What to look for: a command on `PATH`, or an absolute path to a file or directory.
    pub what: &'static str,
    /// The packages that provide it.
    pub packages: &'static [&'static str],
}

/// What `grub-mkrescue` needs to build an ISO that boots on BIOS and on UEFI.
pub const IMAGE_TOOLS: &[Tool] = &[
    Tool {
        what: "grub-mkrescue",
        packages: &["grub-common", "grub-pc-bin", "grub-efi-amd64-bin"],
    },
    // GRUB's BIOS platform files; grub-common alone gives grub-mkrescue without them.
    Tool {
        what: "/usr/lib/grub/i386-pc",
        packages: &["grub-pc-bin"],
    },
    // GRUB's UEFI platform files (the image's EFI system partition; see
    // xenia_tests::iso::GRUB_PLATFORMS).
    Tool {
        what: "/usr/lib/grub/x86_64-efi",
        packages: &["grub-efi-amd64-bin"],
    },
    Tool {
        what: "xorriso",
        packages: &["xorriso"],
    },
    Tool {
        what: "mformat",
        packages: &["mtools"],
    },
];

/// QEMU, to boot images, and OVMF, the UEFI firmware it boots with `run --uefi` and in the
/// `realpc_uefi_*` scenarios.
pub const QEMU_TOOLS: &[Tool] = &[
    Tool {
        what: "qemu-system-x86_64",
        packages: &["qemu-system-x86"],
    },
    Tool {
        what: xenia_tests::machine::OVMF_FIRMWARE,
        packages: &["ovmf"],
    },
];

/// A `cargo` command (the one running xtask) in the workspace root.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` with inherited output; fails if it cannot start or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(cmd)))
    }
}

/// Runs `cmd` with captured output; on failure the error includes that output.
fn run_captured(cmd: &mut Command) -> Result<Output, String> {
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", describe(cmd)))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{} failed ({}):\n{}{}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `program arg...` for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Installs the toolchain, targets and components that `rust-toolchain.toml` pins (rustup
/// does not add missing targets by itself when cargo runs). Quiet unless it fails.
pub fn install_toolchain(root: &Path) -> Result<(), String> {
    let mut rustup = Command::new("rustup");
    rustup
        .args(["toolchain", "install"])
        .current_dir(root)
        // Set by the rustup proxy that started us; it would override rust-toolchain.toml.
        .env_remove("RUSTUP_TOOLCHAIN");
    match run_captured(&mut rustup) {
        Ok(_) => ensure_targets(root),
        Err(_) if which("rustup").is_none() => {
            eprintln!(
                "warning: rustup not found; assuming the toolchain in rust-toolchain.toml and its \
                 targets are installed"
            );
            Ok(())
        }
        Err(e) => Err(format!("installing the Rust toolchain failed: {e}")),
    }
}

/// Adds the targets `rust-toolchain.toml` lists that the toolchain lacks. `rustup toolchain
/// install` (rustup 1.28 and later) installs them with a new toolchain, but a toolchain
/// installed before a target joined the file keeps lacking it, and cargo does not add it.
fn ensure_targets(root: &Path) -> Result<(), String> {
    let file = root.join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let wanted = toolchain_targets(&text);
    let rustup = || {
        let mut cmd = Command::new("rustup");
        cmd.current_dir(root).env_remove("RUSTUP_TOOLCHAIN");
        cmd
    };
    let listed = run_captured(rustup().args(["target", "list", "--installed"]))?;
    let installed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("adding Rust targets: {}...", missing.join(" "));
    run_captured(rustup().args(["target", "add"]).args(&missing))
        .map(drop)
        .map_err(|e| format!("adding the Rust targets failed: {e}"))
}

/// The `targets = [...]` of a `rust-toolchain.toml` (on one line, as ours has it).
fn toolchain_targets(toml: &str) -> Vec<String> {
    toml.lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("targets"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .filter_map(|list| list.trim().strip_prefix('[')?.split(']').next())
        .flat_map(|items| items.split(','))
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Makes sure `tools` are present: installs the missing ones with apt-get when running as
/// root, else fails with the command to run.
pub fn ensure_tools(tools: &[&[Tool]]) -> Result<(), String> {
    let tools: Vec<&Tool> = tools.iter().flat_map(|set| set.iter()).collect();
    let missing = missing_packages(&tools);
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().copied().collect();
    let packages = packages.join(" ");
    if !is_root() || which("apt-get").is_none() {
        return Err(format!(
            "missing host tools; install them with:\n    sudo apt-get install -y {packages}"
        ));
    }
    println!("installing host tools: {packages}...");
    run_captured(Command::new("apt-get").args(["update", "-qq"]))?;
    run_captured(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(missing.iter()),
    )?;
    let still = missing_packages(&tools);
    if still.is_empty() {
        Ok(())
    } else {
        let still: Vec<&str> = still.into_iter().collect();
        Err(format!(
            "apt-get installed {packages} but {} still seem missing",
            still.join(" ")
        ))
    }
}

/// The packages that provide the missing `tools`.
fn missing_packages(tools: &[&Tool]) -> BTreeSet<&'static str> {
    tools
        .iter()
        .filter(|tool| {
            if tool.what.starts_with('/') {
                !Path::new(tool.what).exists()
            } else {
                which(tool.what).is_none()
            }
        })
        .flat_map(|tool| tool.packages.iter().copied())
        .collect()
}

/// The executable `name` on `PATH`.
fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether we run as root (`id -u` prints 0).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_path() {
        assert!(which("sh").is_some());
        assert!(which("surely-no-such-tool-xenia").is_none());
    }

    #[test]
    fn targets_of_the_toolchain_file() {
        let ours = include_str!("../../rust-toolchain.toml");
        let targets = toolchain_targets(ours);
        assert!(
            targets.iter().any(|t| t == "x86_64-unknown-none"),
            "{targets:?}"
        );
        assert!(
            targets.iter().any(|t| t == "x86_64-unknown-linux-musl"),
            "{targets:?}"
        );
        assert_eq!(
            toolchain_targets("[toolchain]\ntargets = [ \"a\",\"b\" ]\ncomponents = [\"c\"]\n"),
            ["a", "b"]
        );
        assert!(toolchain_targets("[toolchain]\nchannel = \"1.95\"\n").is_empty());
    }

    #[test]
    fn missing_tools_map_to_packages() {
        let tools = [
            Tool {
                what: "sh",
                packages: &["dash"],
            },
            Tool {
                what: "surely-no-such-tool-xenia",
                packages: &["b", "a"],
            },
            Tool {
                what: "/surely/no/such/dir",
                packages: &["a", "c"],
            },
        ];
        let tools: Vec<&Tool> = tools.iter().collect();
        assert_eq!(
            missing_packages(&tools).into_iter().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
}
