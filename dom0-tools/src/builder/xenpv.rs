//! Telling a kernel built for Xen's x86-64 PV ABI (Linux, Mini-OS, XTF) from one built for
//! Xenia's ring-1 ABI, by its ELF notes (DESIGN.md §12).
//!
//! Both kinds carry Xen's notes. What sets them apart is `XEN_ELFNOTE_FEATURES`: every Xen
//! x86-64 PV kernel requires `writable_page_tables` (`!writable_page_tables`), a feature of
//! Xen's PV mode (page-table writes trapped and emulated) that Xenia's ring-1 ABI does not
//! have; Xenia's own kernels require nothing. Features are read as Xen's
//! `elf_xen_parse_features` reads them (`libelf-dominfo.c`): `|`-separated names, a leading
//! `!` for a required one, an unknown required name an error, an unknown optional name
//! ignored; `XEN_ELFNOTE_SUPPORTED_FEATURES` adds a bitmap of optional ones.
//!
//! Xenia has no Xen PV guest mode yet, so such a kernel is recognised, described (what it is,
//! which release, which features it requires that Xenia lacks) and refused before anything is
//! created.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use xenia_pvboot::elf::XenNotes;

use super::bzimage::Compression;

/// `XENFEAT_*` numbers and names that may appear in `XEN_ELFNOTE_FEATURES`, as Xen's
/// `elf_xen_feature_names` lists them (`xen/include/public/features.h`).
pub const FEATURE_NAMES: [(u32, &str); 7] = [
    (XENFEAT_WRITABLE_PAGE_TABLES, "writable_page_tables"),
    (1, "writable_descriptor_tables"),
    (2, "auto_translated_physmap"),
    (3, "supervisor_mode_kernel"),
    (XENFEAT_PAE_PGDIR_ABOVE_4GB, "pae_pgdir_above_4gb"),
    (8, "hvm_callback_vector"),
    (XENFEAT_DOM0, "dom0"),
];

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_dom0`.
pub const XENFEAT_DOM0: u32 = 11;

/// The features Xenia's ring-1 ABI provides (`xenia_pvboot::features::SUPPORTED_FEATURES`
/// as a bitmap): `pae_pgdir_above_4gb` (meaningless for 64-bit guests) and `dom0`.
pub const RING1_FEATURES: u32 = (1 << XENFEAT_PAE_PGDIR_ABOVE_4GB) | (1 << XENFEAT_DOM0);

/// The features Xenia provides to a kernel in its Xen PV guest mode (DESIGN.md §12): those of
/// the ring-1 ABI and Xen's writable page tables (`VMASST_TYPE_writable_pagetables`).
pub const XEN_PV_FEATURES: u32 = RING1_FEATURES | (1 << XENFEAT_WRITABLE_PAGE_TABLES);

/// Longest feature name Xen compares (its buffer is 64 bytes with the NUL).
const MAX_FEATURE_NAME: usize = 63;

/// A kernel's Xen features: bitmaps of `XENFEAT_*` numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Features it can use (required ones included).
    pub supported: u32,
    /// Features it cannot run without.
    pub required: u32,
}

impl Features {
    /// The required features Xenia's ring-1 ABI lacks.
    pub fn missing(&self) -> u32 {
        self.required & !RING1_FEATURES
    }

    /// The required features Xenia lacks even in its Xen PV guest mode.
    pub fn missing_in_xen_pv(&self) -> u32 {
        self.required & !XEN_PV_FEATURES
    }
}

/// The name of `XENFEAT_*` number `bit`, or its number.
pub fn feature_name(bit: u32) -> String {
    FEATURE_NAMES
        .iter()
        .find(|&&(b, _)| b == bit)
        .map_or_else(|| format!("feature {bit}"), |&(_, n)| n.into())
}

/// The names of the features set in `mask`, in number order.
pub fn feature_names(mask: u32) -> Vec<String> {
    (0..32)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(feature_name)
        .collect()
}

/// A required feature Xen does not know either (Xen refuses such a kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFeature(pub String);

impl fmt::Display for UnknownFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the kernel requires feature \"{}\", which neither Xen nor Xenia knows",
            self.0.escape_debug()
        )
    }
}

/// Reads a `XEN_ELFNOTE_FEATURES` string as Xen's `elf_xen_parse_features` does.
pub fn parse_features(text: &str) -> Result<Features, UnknownFeature> {
    let mut features = Features::default();
    for item in text.split('|') {
        // Xen compares at most 63 bytes of each name.
        let item = item.get(..MAX_FEATURE_NAME).unwrap_or(item);
        if item.is_empty() {
            continue;
        }
        let (required, name) = match item.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, item),
        };
        match FEATURE_NAMES.iter().find(|&&(_, n)| n == name) {
            Some(&(bit, _)) => {
                features.supported |= 1 << bit;
                if required {
                    features.required |= 1 << bit;
                }
            }
            None if required => return Err(UnknownFeature(name.into())),
            None => {}
        }
    }
    Ok(features)
}

/// The features `notes` declare: `XEN_ELFNOTE_FEATURES` and `XEN_ELFNOTE_SUPPORTED_FEATURES`.
pub fn features(notes: &XenNotes) -> Result<Features, UnknownFeature> {
    let mut f = parse_features(notes.features.as_deref().unwrap_or(""))?;
    f.supported |= notes.supported_features.unwrap_or(0);
    Ok(f)
}

/// Which ABI a kernel was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestAbi {
    /// Xenia's ring-1 ABI (guest-abi): what the builder loads today.
    Xenia,
    /// Xen's x86-64 PV ABI: the kernel requires `writable_page_tables`.
    XenPv,
}

/// The ABI of a kernel with `features`.
pub fn guest_abi(features: &Features) -> GuestAbi {
    if features.required & (1 << XENFEAT_WRITABLE_PAGE_TABLES) != 0 {
        GuestAbi::XenPv
    } else {
        GuestAbi::Xenia
    }
}

/// What a builder knows of a kernel image before loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    /// How the ELF image was packed: `None` for a plain ELF file, else the bzImage's payload
    /// compression.
    pub packed: Option<Compression>,
    /// The kernel's release, from the bzImage's version string (`6.1.0-48-cloud-amd64`).
    pub release: Option<String>,
    /// Its Xen notes.
    pub notes: XenNotes,
    /// Its features.
    pub features: Features,
}

impl KernelInfo {
    /// Which ABI it was built for.
    pub fn abi(&self) -> GuestAbi {
        guest_abi(&self.features)
    }
}

impl fmt::Display for KernelInfo {
    /// What the kernel is, for messages: `Linux 6.1.0-48-cloud-amd64, an lz4-compressed
    /// bzImage`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = match self.notes.guest_os.as_deref() {
            Some("linux") => "Linux",
            Some(os) if !os.is_empty() => os,
            _ => "unnamed kernel",
        };
        f.write_str(os)?;
        match (&self.release, &self.notes.guest_version) {
            (Some(r), _) => write!(f, " {r}")?,
            (None, Some(v)) if !v.is_empty() => write!(f, " {v}")?,
            _ => {}
        }
        match self.packed {
            None => Ok(()),
            Some(Compression::None) => f.write_str(", an uncompressed bzImage"),
            Some(c) => {
                let article = if matches!(
                    c,
                    Compression::Xz | Compression::Lzma | Compression::Lz4 | Compression::Lzo
                ) {
                    "an"
                } else {
                    "a"
                };
                write!(f, ", {article} {}-compressed bzImage", c.name())
            }
        }
    }
}

/// `XEN_ELFNOTE_GUEST_OS` of Xenia's Xen PV test kernel (`tests/guests/xenpv`).
pub const XEN_PV_TEST_GUEST_OS: &str = "xenia-xenpv-test";

/// Whether `info` is Xenia's Xen PV test kernel: a Xen PV kernel (it requires
/// `writable_page_tables`, as Linux) whose `XEN_ELFNOTE_GUEST_OS` is
/// [`XEN_PV_TEST_GUEST_OS`]. Until the loader for Linux's image lands (issue 18), it is
/// the one Xen PV kernel the builder starts, with Xenia's start-of-day layout.
pub fn is_xen_pv_test_kernel(info: &KernelInfo) -> bool {
    info.abi() == GuestAbi::XenPv && info.notes.guest_os.as_deref() == Some(XEN_PV_TEST_GUEST_OS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn features_as_xen_reads_them() {
        assert_eq!(parse_features(""), Ok(Features::default()));
        // Linux's note.
        let linux = parse_features("!writable_page_tables|pae_pgdir_above_4gb").unwrap();
        assert_eq!(linux.required, 1 << XENFEAT_WRITABLE_PAGE_TABLES);
        assert_eq!(
            linux.supported,
            (1 << XENFEAT_WRITABLE_PAGE_TABLES) | (1 << XENFEAT_PAE_PGDIR_ABOVE_4GB)
        );
        assert_eq!(guest_abi(&linux), GuestAbi::XenPv);
        assert_eq!(feature_names(linux.missing()), ["writable_page_tables"]);
        // Unknown optional names are ignored; unknown required ones refused, as by Xen.
        assert_eq!(
            parse_features("fancy|dom0"),
            Ok(Features {
                supported: 1 << XENFEAT_DOM0,
                required: 0
            })
        );
        assert_eq!(
            parse_features("dom0|!fancy"),
            Err(UnknownFeature("fancy".into()))
        );
        // Empty items (a trailing `|`) are nothing.
        assert_eq!(
            parse_features("dom0||").unwrap().supported,
            1 << XENFEAT_DOM0
        );
        // What Xenia's ring-1 ABI provides is not missing.
        let ours = parse_features("!pae_pgdir_above_4gb|!dom0").unwrap();
        assert_eq!(ours.missing(), 0);
        assert_eq!(guest_abi(&ours), GuestAbi::Xenia);
        let several = parse_features("!auto_translated_physmap|!writable_descriptor_tables");
        assert_eq!(
            feature_names(several.unwrap().missing()),
            ["writable_descriptor_tables", "auto_translated_physmap"]
        );
        // Xen compares at most 63 bytes of a name.
        let long = "x".repeat(200);
        assert!(parse_features(&long).is_ok());
    }

    #[test]
    fn supported_features_bitmap_adds_optional_ones() {
        let notes = XenNotes {
            features: Some("!writable_page_tables".into()),
            supported_features: Some(0x8801),
            ..XenNotes::default()
        };
        let f = features(&notes).unwrap();
        assert_eq!(f.required, 1);
        assert_eq!(f.supported, 0x8801);
        assert_eq!(feature_name(15), "feature 15");
    }

    #[test]
    fn description() {
        let mut info = KernelInfo {
            packed: Some(Compression::Lz4),
            release: Some("6.1.0-48-cloud-amd64".into()),
            notes: XenNotes {
                guest_os: Some("linux".into()),
                guest_version: Some("2.6".into()),
                ..XenNotes::default()
            },
            features: Features::default(),
        };
        assert_eq!(
            info.to_string(),
            "Linux 6.1.0-48-cloud-amd64, an lz4-compressed bzImage"
        );
        info.packed = Some(Compression::Gzip);
        info.release = None;
        assert_eq!(info.to_string(), "Linux 2.6, a gzip-compressed bzImage");
        info.packed = None;
        info.notes.guest_os = Some("Mini-OS".into());
        assert_eq!(info.to_string(), "Mini-OS 2.6");
        let _ = vec![0u8; 0];
    }

    /// Debian's kernel, when `cargo xtask build` fetched it: a Xen PV kernel that requires
    /// `writable_page_tables`, with Linux's notes.
    #[test]
    fn debian_kernel_is_recognised() {
        let Some(vmlinuz) = super::super::bzimage::tests::debian_vmlinuz() else {
            std::eprintln!(
                "skipped: no Debian kernel under target/debian (cargo xtask build fetches it)"
            );
            return;
        };
        let info = super::super::inspect(&vmlinuz).unwrap();
        // The streamed notes are the notes of the whole image.
        let whole = super::super::bzimage::unpack(&vmlinuz).unwrap();
        assert_eq!(info.notes, xenia_pvboot::elf::notes(&whole).unwrap());
        assert_eq!(info.abi(), GuestAbi::XenPv);
        assert_eq!(
            feature_names(info.features.missing()),
            ["writable_page_tables"]
        );
        let n = &info.notes;
        assert_eq!(n.guest_os.as_deref(), Some("linux"));
        assert_eq!(n.xen_version.as_deref(), Some("xen-3.0"));
        assert_eq!(n.loader.as_deref(), Some("generic"));
        assert_eq!(n.virt_base, Some(0xFFFF_FFFF_8000_0000));
        assert_eq!(n.init_p2m, Some(0x80_0000_0000));
        assert_eq!(n.mod_start_pfn, Some(1));
        // Linux 6.1 since 6.1.115 has no HYPERCALL_PAGE note: it makes its hypercalls with
        // `syscall`/`vmcall` stubs of its own, chosen at boot.
        assert!(n.entry.is_some() && n.phys32_entry.is_some());
        std::eprintln!("Debian kernel's notes: {n:?}");
        assert!(n.supported_features.is_some_and(|f| f & 1 != 0));
        let text = info.to_string();
        assert!(
            text.starts_with("Linux 6.") && text.contains("-cloud-amd64, an lz4"),
            "{text}"
        );
    }
}
