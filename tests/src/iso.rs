//! Building bootable images: a staging tree (`boot/xenia.elf`, `boot/grub/grub.cfg`, the
//! modules in `boot/`) turned into an ISO by `grub-mkrescue` that boots on BIOS and on UEFI:
//! `grub-mkrescue` puts in GRUB for every platform installed under `/usr/lib/grub/`, and
//! [`GRUB_PLATFORMS`] must both be there (Debian's `grub-pc-bin` and `grub-efi-amd64-bin`).
//! The one `grub.cfg` serves both (see `boot/grub.cfg.in`).
//!
//! `grub-mkrescue` takes about a second, so images are cached: next to `<image>.iso` lies
//! `<image>.iso.inputs`, a manifest with the size and FNV-1a hash of every staged file
//! (including the rendered `grub.cfg`). The image is rebuilt only when the manifest changes.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::grub::{self, ModuleEntry};
use crate::workspace::{DOM0_ARTIFACT, HYPERVISOR_ARTIFACT, INITRD_ARTIFACT, Workspace};

/// The hypervisor command line of the default image (`cargo xtask iso` / `run`): dom0 gets a
/// fixed 64 MiB (its tools and initrd need far less), so the rest of the machine is free for
/// the domains `xl` creates.
pub const DEFAULT_HV_OPTIONS: &str = "dom0_mem=64M";

/// The GRUB platforms every image carries: the directory `grub-mkrescue` takes each from and
/// the Debian package that installs it. `i386-pc` boots from a PC BIOS (El Torito), and
/// `x86_64-efi` from UEFI firmware (the ISO's EFI system partition image).
pub const GRUB_PLATFORMS: [(&str, &str); 2] = [
    ("/usr/lib/grub/i386-pc", "grub-pc-bin"),
    ("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"),
];

/// Fails, saying what to install, when a platform of [`GRUB_PLATFORMS`] is missing: an
/// image without it would not boot on that firmware.
pub fn check_grub_platforms() -> Result<(), String> {
    let missing: Vec<&str> = GRUB_PLATFORMS
        .iter()
        .filter(|(dir, _)| !Path::new(dir).is_dir())
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "GRUB's files for {} are missing, so the image would not boot on {}: run `cargo xtask \
         iso` (it installs the host tools) or `sudo apt-get install -y {}`",
        missing.join(" and "),
        if missing.len() == 2 {
            "BIOS or UEFI"
        } else if missing[0] == "grub-pc-bin" {
            "BIOS"
        } else {
            "UEFI"
        },
        missing.join(" ")
    ))
}

/// A module of the default image, taken from the artifact directory.
#[derive(Clone, Copy, Debug)]
pub struct DefaultModule {
    /// File name in `<target>/xenia/` (and in the image's `/boot/`).
    pub artifact: &'static str,
    /// The command line the module receives.
    pub cmdline: &'static str,
}

/// The modules of the default image, in `module2` order: the dom0 kernel (`xenia-dom0`),
/// then its initrd, which the hypervisor hands to dom0 (`start_info.mod_start`/`mod_len`):
/// `/bin/xl`, `/bin/xen-hptool`, `/etc/xen/*.cfg` and the demo guest kernels in `/boot/` (see `cargo xtask
/// build`, which writes it).
pub const DEFAULT_MODULES: &[DefaultModule] = &[
    DefaultModule {
        artifact: DOM0_ARTIFACT,
        cmdline: "",
    },
    DefaultModule {
        artifact: INITRD_ARTIFACT,
        cmdline: "",
    },
];

/// A multiboot2 module: a file and the command line it receives (see [`crate::grub`] for the
/// command lines GRUB can pass unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The file on the build host; it appears in the image as `/boot/<file name>`.
    pub path: PathBuf,
    /// The command line the module receives.
    pub cmdline: String,
}

impl Module {
    /// A module loaded from `path` with `cmdline`.
    pub fn new(path: impl Into<PathBuf>, cmdline: impl Into<String>) -> Module {
        Module {
            path: path.into(),
            cmdline: cmdline.into(),
        }
    }

    /// The module's file name in the image's `/boot/`.
    pub fn file_name(&self) -> Result<&str, String> {
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                format!(
                    "module path {} has no usable file name",
                    self.path.display()
                )
            })?;
        grub::check_boot_file_name(name)?;
        Ok(name)
    }
}

/// The file name `path` has in the image's `/boot/`.
fn boot_file_name(path: &Path) -> Result<&str, String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no usable file name", path.display()))?;
    grub::check_boot_file_name(name)?;
    Ok(name)
}

/// What goes into an image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The hypervisor ELF file.
    pub hypervisor: PathBuf,
    /// The hypervisor's command line.
    pub hv_options: String,
    /// Modules in `module2` order.
    pub modules: Vec<Module>,
    /// ACPI tables GRUB's `acpi` command adds to the firmware's before the hypervisor is
    /// loaded (each staged as `/boot/<file name>`). GRUB copies the firmware's tables and
    /// these, as they are (no checksum is corrected), into new RSDT/XSDT and a new RSDP that
    /// the multiboot2 ACPI tags then give. Empty for every real image.
    pub acpi_tables: Vec<PathBuf>,
    /// GRUB's `gfxpayload` for the hypervisor (`text` in the template: VGA text mode on BIOS),
    /// e.g. `1024x768x32` for a VBE framebuffer.
    pub gfxpayload: Option<String>,
}

impl ImageSpec {
    /// The default image: the built hypervisor with [`DEFAULT_HV_OPTIONS`] and
    /// [`DEFAULT_MODULES`].
    pub fn default_image(ws: &Workspace) -> Result<ImageSpec, String> {
        let hypervisor = ws.require_artifact(HYPERVISOR_ARTIFACT)?;
        let modules = DEFAULT_MODULES
            .iter()
            .map(|m| Ok(Module::new(ws.require_artifact(m.artifact)?, m.cmdline)))
            .collect::<Result<_, String>>()?;
        Ok(ImageSpec {
            hypervisor,
            hv_options: DEFAULT_HV_OPTIONS.to_string(),
            modules,
            acpi_tables: Vec::new(),
            gfxpayload: None,
        })
    }

    /// The `grub.cfg` of this image.
    pub fn grub_cfg(&self) -> Result<String, String> {
        let mut entries = Vec::with_capacity(self.modules.len());
        for module in &self.modules {
            entries.push(ModuleEntry {
                file_name: module.file_name()?,
                cmdline: &module.cmdline,
            });
        }
        let cfg = grub::render(grub::TEMPLATE, &self.hv_options, &entries)?;
        let mut acpi = Vec::with_capacity(self.acpi_tables.len());
        for table in &self.acpi_tables {
            acpi.push(format!("acpi /boot/{}", boot_file_name(table)?));
        }
        let cfg = grub::insert_before_multiboot2(&cfg, &acpi);
        match &self.gfxpayload {
            None => Ok(cfg),
            Some(mode) => grub::set_gfxpayload(&cfg, mode),
        }
    }

    /// The staged files (path relative to the staging root, contents), reading the inputs.
    fn files(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let read = |path: &Path, what: &str| {
            fs::read(path).map_err(|e| match e.kind() {
                ErrorKind::NotFound if what == "hypervisor" => format!(
                    "the hypervisor image {} does not exist: run `cargo xtask build` first",
                    path.display()
                ),
                _ => format!("cannot read {what} {}: {e}", path.display()),
            })
        };
        let mut files = vec![
            (
                format!("boot/{HYPERVISOR_ARTIFACT}"),
                read(&self.hypervisor, "hypervisor")?,
            ),
            (
                "boot/grub/grub.cfg".to_string(),
                self.grub_cfg()?.into_bytes(),
            ),
        ];
        for table in &self.acpi_tables {
            files.push((
                format!("boot/{}", boot_file_name(table)?),
                read(table, "ACPI table")?,
            ));
        }
        for module in &self.modules {
            let dest = format!("boot/{}", module.file_name()?);
            if files.iter().any(|(d, _)| *d == dest) {
                return Err(format!(
                    "two modules are called {dest:?} in the image; give them distinct file names"
                ));
            }
            files.push((dest, read(&module.path, "module")?));
        }
        Ok(files)
    }
}

/// A built (or reused) image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The ISO file.
    pub iso: PathBuf,
    /// False when the cached image was still up to date.
    pub rebuilt: bool,
    /// Time spent in `grub-mkrescue` (zero when not rebuilt).
    pub mkrescue_time: Duration,
}

/// Builds the image `spec` at `iso`, staging its files under `staging` (which is replaced),
/// unless `iso` was already built from identical inputs.
pub fn build_image(spec: &ImageSpec, staging: &Path, iso: &Path) -> Result<Image, String> {
    let files = spec.files()?;
    let manifest = manifest(&files);
    let stamp = with_suffix(iso, ".inputs");
    if iso.is_file() && fs::read(&stamp).is_ok_and(|old| old == manifest.as_bytes()) {
        return Ok(Image {
            iso: iso.to_path_buf(),
            rebuilt: false,
            mkrescue_time: Duration::ZERO,
        });
    }

    let io = |what: &str, path: &Path, e: std::io::Error| {
        format!("cannot {what} {}: {e}", path.display())
    };
    match fs::remove_file(&stamp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", &stamp, e)),
        _ => {}
    }
    match fs::remove_dir_all(staging) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", staging, e)),
        _ => {}
    }
    for (rel, contents) in &files {
        let path = staging.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        }
        fs::write(&path, contents).map_err(|e| io("write", &path, e))?;
    }

    check_grub_platforms()?;
    let partial = with_suffix(iso, ".partial");
    let started = Instant::now();
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&partial)
        .arg(staging)
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                "grub-mkrescue is not installed: run `cargo xtask iso` (it installs \
                 the host tools) or `sudo apt-get install -y grub-common grub-pc-bin \
                 grub-efi-amd64-bin xorriso mtools`"
                    .to_string()
            }
            _ => format!("cannot run grub-mkrescue: {e}"),
        })?;
    let mkrescue_time = started.elapsed();
    if !output.status.success() {
        let _ = fs::remove_file(&partial);
        return Err(format!(
            "grub-mkrescue failed ({}) building {}:\n{}{}",
            output.status,
            iso.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::rename(&partial, iso).map_err(|e| io("create", iso, e))?;
    fs::write(&stamp, manifest).map_err(|e| io("write", &stamp, e))?;
    Ok(Image {
        iso: iso.to_path_buf(),
        rebuilt: true,
        mkrescue_time,
    })
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The cache key of a staging tree: one line per file.
fn manifest(files: &[(String, Vec<u8>)]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(rel, data)| format!("{:016x} {:>10} {rel}\n", fnv1a64(data), data.len()))
        .collect();
    lines.sort();
    // v2: images carry GRUB for UEFI too; a v1 (BIOS-only) image is rebuilt.
    let mut out = String::from("xenia image inputs v2\n");
    for (dir, _) in GRUB_PLATFORMS {
        out.push_str(&format!("platform {dir}\n"));
    }
    out.extend(lines);
    out
}

/// 64-bit FNV-1a: fast enough for megabytes, and only guards a cache.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/iso.rs");

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn manifest_changes_with_any_input() {
        let files = |cfg: &str, elf: &[u8]| {
            vec![
                ("boot/grub/grub.cfg".to_string(), cfg.as_bytes().to_vec()),
                ("boot/xenia.elf".to_string(), elf.to_vec()),
            ]
        };
        let base = manifest(&files("a", b"elf"));
        assert_eq!(base, manifest(&files("a", b"elf")));
        assert_ne!(base, manifest(&files("b", b"elf")));
        assert_ne!(base, manifest(&files("a", b"elF")));
    }

    #[test]
    fn missing_inputs_say_what_to_do() {
        let spec = ImageSpec {
            hypervisor: PathBuf::from("/nonexistent/xenia.elf"),
            hv_options: String::new(),
            modules: vec![],
            acpi_tables: vec![],
            gfxpayload: None,
        };
        let err = build_image(
            &spec,
            Path::new("/nonexistent/iso"),
            Path::new("/nonexistent/x.iso"),
        )
        .unwrap_err();
        assert!(err.contains("run `cargo xtask build`"), "{err}");

        let spec = ImageSpec {
            hypervisor: PathBuf::from(THIS_FILE),
            ..spec
        };
        let with_module = ImageSpec {
            modules: vec![Module::new("/nonexistent/dom0", "")],
            ..spec.clone()
        };
        let err = with_module.files().unwrap_err();
        assert!(
            err.contains("cannot read module /nonexistent/dom0"),
            "{err}"
        );
        let twice = ImageSpec {
            modules: vec![Module::new(THIS_FILE, ""), Module::new(THIS_FILE, "")],
            ..spec
        };
        assert!(twice.files().unwrap_err().contains("distinct file names"));
    }

    #[test]
    fn default_image_is_dom0_and_its_initrd() {
        let spec = ImageSpec {
            hypervisor: PathBuf::from(THIS_FILE),
            hv_options: DEFAULT_HV_OPTIONS.to_string(),
            modules: DEFAULT_MODULES
                .iter()
                .map(|m| Module::new(format!("/x/{}", m.artifact), m.cmdline))
                .collect(),
            acpi_tables: vec![],
            gfxpayload: None,
        };
        let cfg = spec.grub_cfg().unwrap();
        let lines: Vec<&str> = cfg.lines().map(str::trim).collect();
        let kernel = lines
            .iter()
            .position(|l| *l == "multiboot2 /boot/xenia.elf dom0_mem=64M")
            .unwrap_or_else(|| panic!("no hypervisor line in\n{cfg}"));
        assert_eq!(
            lines[kernel + 1..kernel + 3],
            ["module2 /boot/dom0.elf", "module2 /boot/initrd.cpio"],
            "{cfg}"
        );
    }
}
