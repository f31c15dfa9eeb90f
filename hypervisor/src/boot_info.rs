//! What GRUB tells us, read from the multiboot2 boot information with the `multiboot2`
//! crate and copied into owned values, so nothing later depends on the loader's memory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::arch::x86_64::layout::DIRECTMAP_BASE;
use crate::mm::memmap::{EntryKind, PhysRange, RawEntry, module_range};

pub struct Module {
    pub range: PhysRange,
    pub cmdline: String,
}

pub struct BootInfo {
    pub cmdline: String,
    pub modules: Vec<Module>,
    pub memory: Vec<RawEntry>,
    /// Where the boot information itself lies (kept out of the frame allocator until
    /// it has been copied, which is now: it is excluded anyway, to be safe).
    pub mbi: PhysRange,
    /// ACPI root table (address, entry size) from the loader's RSDP copy.
    pub acpi_root: Option<(u64, usize)>,
    /// Problems found on the way, for the caller to log once logging is configured.
    pub problems: Vec<String>,
}

/// The hypervisor's command line as booted, without the image's path that GRUB puts first
/// (Xen's `cmdline_cook`): what `xen_version(XENVER_commandline)` and `xl info` report.
static COMMAND_LINE: spin::Once<String> = spin::Once::new();

/// Records the command line (once, at boot).
pub fn set_command_line(raw: &str) {
    COMMAND_LINE.call_once(|| cooked_command_line(raw).to_string());
}

/// The command line recorded at boot (empty before).
pub fn command_line() -> &'static str {
    COMMAND_LINE.get().map_or("", String::as_str)
}

/// `raw` without a leading image path (a first word starting with `/`) and outer blanks.
fn cooked_command_line(raw: &str) -> &str {
    let raw = raw.trim();
    match raw.split_once(char::is_whitespace) {
        Some((first, rest)) if first.starts_with('/') => rest.trim_start(),
        None if raw.starts_with('/') => "",
        _ => raw,
    }
}

/// Reads the boot information at physical address `mbi_phys`.
pub fn parse(mbi_phys: u32) -> Result<BootInfo, String> {
    let info = crate::arch::x86_64::boot::multiboot_info(mbi_phys).map_err(|e| {
        alloc::format!("the multiboot2 boot information at {mbi_phys:#x} is malformed: {e}")
    })?;
    let mut problems = Vec::new();

    let cmdline = match info.command_line_tag().map(|t| t.cmdline()) {
        None => String::new(),
        Some(Ok(s)) => s.to_string(),
        Some(Err(e)) => {
            problems.push(alloc::format!(
                "hypervisor command line unreadable ({e}); using defaults"
            ));
            String::new()
        }
    };

    let mut modules = Vec::new();
    for (i, m) in info.module_tags().enumerate() {
        let Some(range) = module_range(m.start_address(), m.end_address()) else {
            problems.push(alloc::format!(
                "module {i}: ends ({:#x}) before it starts ({:#x}); ignored",
                m.end_address(),
                m.start_address()
            ));
            continue;
        };
        let cmdline = match m.cmdline() {
            Ok(s) => s.to_string(),
            Err(e) => {
                problems.push(alloc::format!(
                    "module {i}: command line unreadable ({e}); using an empty one"
                ));
                String::new()
            }
        };
        modules.push(Module { range, cmdline });
    }

    let memory = match info.memory_map_tag() {
        Some(tag) => tag
            .memory_areas()
            .iter()
            .map(|a| RawEntry {
                base: a.start_address(),
                len: a.size(),
                kind: EntryKind::from_multiboot2(a.typ().val()),
            })
            .collect(),
        None => {
            problems.push("no memory map from the loader".to_string());
            Vec::new()
        }
    };

    let acpi_root = match (info.rsdp_v2_tag(), info.rsdp_v1_tag()) {
        (Some(v2), _) if v2.checksum_is_valid() && v2.xsdt_address() != 0 => {
            Some((v2.xsdt_address() as u64, 8))
        }
        (_, Some(v1)) if v1.checksum_is_valid() => Some((v1.rsdt_address() as u64, 4)),
        _ => None,
    };

    let mbi = PhysRange {
        start: info.start_address() as u64 - DIRECTMAP_BASE,
        end: info.end_address() as u64 - DIRECTMAP_BASE,
    };
    Ok(BootInfo {
        cmdline,
        modules,
        memory,
        mbi,
        acpi_root,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::cooked_command_line;

    #[test]
    fn command_line_loses_the_image_path() {
        assert_eq!(
            cooked_command_line("/boot/xenia.elf console=com1 dom0_mem=64M"),
            "console=com1 dom0_mem=64M"
        );
        assert_eq!(
            cooked_command_line("  /boot/xenia.elf  noreboot "),
            "noreboot"
        );
        assert_eq!(cooked_command_line("/boot/xenia.elf"), "");
        assert_eq!(
            cooked_command_line("noreboot loglvl=all"),
            "noreboot loglvl=all"
        );
        assert_eq!(cooked_command_line(""), "");
    }
}
