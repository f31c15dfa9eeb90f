//! What GRUB tells us, read from the multiboot2 boot information with the `multiboot2`
//! crate and copied into owned values, so nothing later depends on the loader's memory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::arch::x86_64::layout::DIRECTMAP_BASE;
use crate::mm::memmap::{EntryKind, PhysRange, RawEntry};

pub struct Module {
    pub range: PhysRange,
    pub cmdline: String,
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
        let (start, end) = (u64::from(m.start_address()), u64::from(m.end_address()));
        if end < start {
            problems.push(alloc::format!(
                "module {i}: ends ({end:#x}) before it starts ({start:#x}); ignored"
            ));
            continue;
        }
        let cmdline = match m.cmdline() {
            Ok(s) => s.to_string(),
            Err(e) => {
                problems.push(alloc::format!(
                    "module {i}: command line unreadable ({e}); using an empty one"
                ));
                String::new()
            }
        };
        modules.push(Module {
            range: PhysRange { start, end },
            cmdline,
        });
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
        mbi,
        acpi_root,
        screen,
        problems,
    })
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
