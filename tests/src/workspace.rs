//! Where things are: the workspace root, the target directory and Xenia's build artifacts.

use std::path::{Path, PathBuf};

/// File name of the hypervisor image in the artifact directory and in the ISO's `/boot/`.
pub const HYPERVISOR_ARTIFACT: &str = "xenia.elf";
/// The hypervisor built with debug assertions and the lock-order checks (profile `checked`).
pub const CHECKED_HYPERVISOR_ARTIFACT: &str = "xenia-checked.elf";

/// File name of the dom0 kernel (`xenia-dom0`) in the artifact directory and the ISO's `/boot/`.
pub const DOM0_ARTIFACT: &str = "dom0.elf";

/// File name of dom0's initrd (a cpio "newc" archive that `cargo xtask build` writes: `xl`,
/// the domain configurations, the demo guest kernels) in the artifact directory and the
/// ISO's `/boot/`.
pub const INITRD_ARTIFACT: &str = "initrd.cpio";
/// The scenarios' initrd: the default one plus the test program `/bin/probe`.
pub const TEST_INITRD_ARTIFACT: &str = "initrd-test.cpio";

/// The paths of one checkout of the workspace.
///
/// Everything Xenia-specific that the build produces lives in `<target>/xenia/` (the
/// *artifact directory*): the kernels (`xenia.elf`, `dom0.elf`, guest kernels), dom0's
/// `initrd.cpio`, the default image
/// `xenia.iso` with its staging tree `iso/`, and one directory per scenario under `scenarios/`.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    target: PathBuf,
}

impl Workspace {
    /// The workspace rooted at `root` (the directory holding the workspace `Cargo.toml`).
    ///
    /// The target directory is `$CARGO_TARGET_DIR` when that is set (relative to `root` if it is
    /// relative), else `<root>/target`, as for cargo itself.
    pub fn new(root: impl Into<PathBuf>) -> Workspace {
        let root = root.into();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        Workspace { root, target }
    }

    /// The workspace this crate was compiled in (the parent of `tests/`).
    pub fn from_build_location() -> Workspace {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        Workspace::new(manifest_dir.parent().unwrap_or(manifest_dir))
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cargo's target directory.
    pub fn target_dir(&self) -> &Path {
        &self.target
    }

    /// `<target>/xenia`: the artifact directory.
    pub fn artifact_dir(&self) -> PathBuf {
        self.target.join("xenia")
    }

    /// The path of the artifact called `name` (which may not exist yet).
    pub fn artifact(&self, name: &str) -> PathBuf {
        self.artifact_dir().join(name)
    }

    /// The path of the artifact called `name`, or an error telling how to build it.
    pub fn require_artifact(&self, name: &str) -> Result<PathBuf, String> {
        let path = self.artifact(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} does not exist: run `cargo xtask build` first",
                path.display()
            ))
        }
    }

    /// The hypervisor image (`<target>/xenia/xenia.elf`).
    pub fn hypervisor(&self) -> PathBuf {
        self.artifact(HYPERVISOR_ARTIFACT)
    }

    /// Staging tree of the default image.
    pub fn default_iso_staging(&self) -> PathBuf {
        self.artifact_dir().join("iso")
    }

    /// The default image (`<target>/xenia/xenia.iso`).
    pub fn default_iso(&self) -> PathBuf {
        self.artifact_dir().join("xenia.iso")
    }

    /// The working directory of the scenario (or machine) called `name`.
    pub fn scenario_dir(&self, name: &str) -> PathBuf {
        self.artifact_dir().join("scenarios").join(name)
    }
}

/// Debian's Xen PV Linux kernel (a bzImage), copied to the artifact directory by `cargo xtask
/// build` when it could fetch the package (issue 18); absent otherwise.
pub const DEBIAN_KERNEL_ARTIFACT: &str = "debian-vmlinuz";
/// The initramfs `cargo xtask build` makes for it (busybox, the Xen block and net modules,
/// `/init`); absent without the package.
pub const DEBIAN_INITRD_ARTIFACT: &str = "debian-initrd.img";
