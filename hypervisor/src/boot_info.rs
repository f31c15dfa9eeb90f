//! What GRUB tells us, read from the multiboot2 boot information with the `multiboot2`
//! crate and copied into owned values, so nothing later depends on the loader's memory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use multiboot2::TagType;

use crate::arch::x86_64::layout::DIRECTMAP_BASE;
use crate::mm::efimap::{self, MapSource};
use crate::mm::memmap::{EntryKind, PhysRange, RawEntry, module_range};

pub struct Module {
    pub range: PhysRange,
    pub cmdline: String,
}

/// The firmware that started the loader, as the multiboot2 tags tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// No EFI tag: a PC BIOS (or a loader that says nothing of EFI). The legacy areas (the
    /// BIOS ROM at 0xE0000 where the RSDP may be found, VGA memory) may be assumed.
    Bios,
    /// GRUB ran as a UEFI application: it passes the EFI system table (tag 12, or tag 11 for
    /// 32-bit firmware) and the EFI memory map (tag 17). No legacy BIOS area is assumed.
    Uefi {
        /// Physical address of the EFI system table, if the loader gave it.
        system_table: Option<u64>,
        /// Whether the firmware's boot services are still running (multiboot2 tag 18: only
        /// when the kernel's header asks for it, which Xenia's does not).
        boot_services: bool,
    },
}

impl Firmware {
    /// Whether the legacy BIOS areas below 1 MiB may be assumed.
    pub fn has_legacy_bios(self) -> bool {
        self == Firmware::Bios
    }
}

impl core::fmt::Display for Firmware {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Firmware::Bios => f.write_str("BIOS (no EFI tags from the loader)"),
            Firmware::Uefi {
                system_table,
                boot_services,
            } => {
                f.write_str("UEFI")?;
                if let Some(at) = system_table {
                    write!(f, ", system table at {at:#x}")?;
                }
                if *boot_services {
                    f.write_str(", boot services NOT exited")?;
                }
                f.write_str("; no legacy BIOS areas assumed")
            }
        }
    }
}

/// The screen GRUB left, from the multiboot2 framebuffer tag.
#[derive(Clone, Copy, Debug)]
pub enum Screen {
    /// VGA text mode (the EGA-text framebuffer type): 16-bit cells at `address`.
    Text { address: u64, cols: u32, rows: u32 },
    /// A linear RGB framebuffer (VBE on BIOS, GOP on UEFI).
    Pixels {
        address: u64,
        pitch: u32,
        width: u32,
        height: u32,
        format: xenia_core::screen::PixelFormat,
    },
}

pub struct BootInfo {
    pub cmdline: String,
    pub modules: Vec<Module>,
    pub memory: Vec<RawEntry>,
    /// Which map `memory` comes from.
    pub memory_source: MapSource,
    /// What started the loader.
    pub firmware: Firmware,
    /// Where the boot information itself lies (kept out of the frame allocator until
    /// it has been copied, which is now: it is excluded anyway, to be safe).
    pub mbi: PhysRange,
    /// ACPI root table (address, entry size) from the loader's RSDP copy.
    pub acpi_root: Option<(u64, usize)>,
    /// The screen, if the loader reported one the console can draw on.
    pub screen: Option<Screen>,
    /// Problems found on the way, for the caller to log once logging is configured.
    pub problems: Vec<String>,
}

/// The firmware found at boot (see [`set_firmware`]).
static FIRMWARE: spin::Once<Firmware> = spin::Once::new();

/// Records the firmware (once, at boot), for the code that must know whether legacy BIOS
/// areas exist (the RSDP scan; a screen console choosing VGA text or a framebuffer).
pub fn set_firmware(firmware: Firmware) {
    FIRMWARE.call_once(|| firmware);
}

/// The firmware recorded at boot; [`Firmware::Bios`] before.
pub fn firmware() -> Firmware {
    FIRMWARE.get().copied().unwrap_or(Firmware::Bios)
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

    let multiboot2_map = info.memory_map_tag().map(|tag| {
        tag.memory_areas()
            .iter()
            .map(|a| RawEntry {
                base: a.start_address(),
                len: a.size(),
                kind: EntryKind::from_multiboot2(a.typ().val()),
            })
            .collect::<Vec<_>>()
    });
    // The EFI map's payload, read as bytes (the `multiboot2` crate's own iterator asserts on a
    // malformed tag; `efimap` checks it instead).
    let efi_map = info
        .tags()
        .find(|t| t.header().typ.get() == TagType::EfiMmap.val())
        .map(|t| t.payload());
    let boot_services = info.efi_bs_not_exited_tag().is_some();
    let system_table = info
        .efi_sdt64_tag()
        .map(|t| t.sdt_address() as u64)
        .or_else(|| info.efi_sdt32_tag().map(|t| t.sdt_address() as u64));
    let firmware = if system_table.is_some() || efi_map.is_some() || boot_services {
        Firmware::Uefi {
            system_table,
            boot_services,
        }
    } else {
        Firmware::Bios
    };
    // With boot services running the EFI map is stale as soon as the firmware allocates.
    if boot_services {
        problems.push(
            "the loader left UEFI boot services running (multiboot2 tag 18), which Xenia's \
             header does not ask for; the EFI memory map is not used and the firmware may still \
             own memory the multiboot2 map calls free"
                .to_string(),
        );
    }
    let efi_map = efi_map.filter(|_| !boot_services);
    let (memory, memory_source, map_problems) = efimap::choose(multiboot2_map, efi_map);
    problems.extend(
        map_problems
            .into_iter()
            .map(|p| alloc::format!("memory map: {p}")),
    );
    if memory_source == MapSource::None {
        problems.push("no memory map from the loader".to_string());
    }

    let acpi_root = match (info.rsdp_v2_tag(), info.rsdp_v1_tag()) {
        (Some(v2), _) if v2.checksum_is_valid() && v2.xsdt_address() != 0 => {
            Some((v2.xsdt_address() as u64, 8))
        }
        (_, Some(v1)) if v1.checksum_is_valid() => Some((v1.rsdt_address() as u64, 4)),
        _ => None,
    };

    // GRUB passes the RSDP whenever the firmware has ACPI; another loader on UEFI may pass
    // only the system table, whose configuration table names the RSDP too.
    let acpi_root = match (acpi_root, system_table) {
        (None, Some(table)) => match rsdp_from_efi(table) {
            Ok(root) => {
                problems.push(
                    "acpi: the loader gave no ACPI RSDP tag; the RSDP came from the EFI system \
                     table"
                        .to_string(),
                );
                Some(root)
            }
            Err(why) => {
                problems.push(alloc::format!(
                    "acpi: the loader gave no ACPI RSDP tag, and {why}"
                ));
                None
            }
        },
        (root, _) => root,
    };

    let screen = match info.framebuffer_tag() {
        None => None,
        Some(Err(e)) => {
            problems.push(alloc::format!(
                "framebuffer of an unknown type ({e:?}); no screen"
            ));
            None
        }
        Some(Ok(fb)) => screen(fb).unwrap_or_else(|why| {
            problems.push(alloc::format!("framebuffer: {why}; no screen"));
            None
        }),
    };

    let mbi = PhysRange {
        start: info.start_address() as u64 - DIRECTMAP_BASE,
        end: info.end_address() as u64 - DIRECTMAP_BASE,
    };
    Ok(BootInfo {
        cmdline,
        modules,
        memory,
        memory_source,
        firmware,
        mbi,
        acpi_root,
        screen,
        problems,
    })
}

/// The ACPI root table named by the RSDP that the EFI configuration table points at, through
/// the system table at `table`. Runs before the hypervisor's page tables, while the bootstrap
/// direct map covers the first 4 GiB (where firmware puts these tables).
fn rsdp_from_efi(table: u64) -> Result<(u64, usize), String> {
    use crate::arch::x86_64::paging::firmware_bytes;
    use xenia_core::efi;
    let system = firmware_bytes(table, efi::SYSTEM_TABLE_LEN)
        .ok_or_else(|| alloc::format!("the EFI system table at {table:#x} is not mapped"))?;
    let (config, len) = efi::configuration_table(system)?;
    let config = firmware_bytes(config, len).ok_or_else(|| {
        alloc::format!("the EFI configuration table at {config:#x} is not mapped")
    })?;
    let rsdp = efi::acpi_rsdp(config)
        .ok_or_else(|| "the EFI configuration table names no ACPI RSDP".to_string())?;
    firmware_bytes(rsdp, 36)
        .and_then(crate::acpi::root_table)
        .ok_or_else(|| alloc::format!("the RSDP at {rsdp:#x} named by EFI is invalid"))
}

/// The screen a framebuffer tag describes, if the console can draw on it: text mode, or RGB
/// at 16, 24 or 32 bits per pixel (an indexed-colour mode is refused).
fn screen(fb: &multiboot2::FramebufferTag) -> Result<Option<Screen>, String> {
    use multiboot2::FramebufferType;
    let (width, height, pitch) = (fb.width(), fb.height(), fb.pitch());
    if fb.address() == 0 || width == 0 || height == 0 {
        return Err(alloc::format!(
            "{width}x{height} at {:#x} is empty",
            fb.address()
        ));
    }
    match fb.buffer_type() {
        Ok(FramebufferType::Text) => Ok(Some(Screen::Text {
            address: fb.address(),
            cols: width,
            rows: height,
        })),
        Ok(FramebufferType::RGB { red, green, blue }) => {
            let bytes = usize::from(fb.bpp()).div_ceil(8);
            if !matches!(bytes, 2..=4) || u64::from(pitch) < u64::from(width) * bytes as u64 {
                return Err(alloc::format!(
                    "{width}x{height}, {} bits per pixel, pitch {pitch}: not a layout the console draws",
                    fb.bpp()
                ));
            }
            Ok(Some(Screen::Pixels {
                address: fb.address(),
                pitch,
                width,
                height,
                format: xenia_core::screen::PixelFormat {
                    bytes,
                    red: (red.position, red.size),
                    green: (green.position, green.size),
                    blue: (blue.position, blue.size),
                },
            }))
        }
        Ok(FramebufferType::Indexed { .. }) => {
            Err("an indexed-colour mode (set gfxpayload to a 32-bit mode)".to_string())
        }
        Err(e) => Err(alloc::format!("unknown type {e:?}")),
    }
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
