//! ELF notes that describe a paravirtual kernel to the domain builder.
//!
//! A kernel image carries notes named `"Xen"` (the name is Xen's, kept for
//! porting) in a `PT_NOTE` segment. Each note is an [`ElfNoteHeader`], the
//! NUL-terminated name padded to 4 bytes, and the descriptor padded to 4
//! bytes (System V ABI, "Note Section"). Numeric descriptors are 4 or 8 bytes
//! long, strings are NUL-terminated ASCII. Type numbers are Xen's
//! (`xen/include/public/elfnote.h`).
//!
//! What Xenia's builder reads:
//!
//! | note | value | use |
//! |---|---|---|
//! | [`XEN_ELFNOTE_ENTRY`] | virtual address | where the kernel starts; defaults to the ELF entry point |
//! | [`XEN_ELFNOTE_HYPERCALL_PAGE`] | virtual address | page the builder fills with hypercall stubs; optional |
//! | [`XEN_ELFNOTE_VIRT_BASE`] | virtual address | virtual address of pseudo-physical 0; defaults to 0 |
//! | [`XEN_ELFNOTE_PADDR_OFFSET`] | number | subtracted from ELF physical addresses; defaults to 0 |
//! | [`XEN_ELFNOTE_GUEST_OS`], [`XEN_ELFNOTE_GUEST_VERSION`] | string | shown by the tools |
//! | [`XEN_ELFNOTE_XEN_VERSION`] | string `"xen-3.0"` | interface generation, as for Xen |
//! | [`XEN_ELFNOTE_LOADER`] | string `"generic"` | as for Xen |
//!
//! The toolstack's builder also reads [`XEN_ELFNOTE_FEATURES`] as Xen does (`!` marks a
//! required feature; a kernel requiring `writable_page_tables` is a Xen PV kernel, refused until
//! Xenia has that guest mode), [`XEN_ELFNOTE_SUPPORTED_FEATURES`], [`XEN_ELFNOTE_INIT_P2M`],
//! [`XEN_ELFNOTE_MOD_START_PFN`], [`XEN_ELFNOTE_PAE_MODE`], [`XEN_ELFNOTE_HV_START_LOW`],
//! [`XEN_ELFNOTE_SUSPEND_CANCEL`], [`XEN_ELFNOTE_BSD_SYMTAB`] and [`XEN_ELFNOTE_PHYS32_ENTRY`],
//! to describe such kernels. Other types are accepted and ignored.

/// The note name, without its terminating NUL.
pub const XEN_ELFNOTE_NAME: &str = "Xen";
/// The note name as stored in the image: with its NUL, 4 bytes, no padding
/// needed.
pub const XEN_ELFNOTE_NAME_BYTES: [u8; 4] = *b"Xen\0";

/// Value of [`XEN_ELFNOTE_XEN_VERSION`] a kernel should carry.
pub const XEN_ELFNOTE_XEN_VERSION_VALUE: &str = "xen-3.0";
/// Value of [`XEN_ELFNOTE_LOADER`] a kernel should carry.
pub const XEN_ELFNOTE_LOADER_VALUE: &str = "generic";

/// Free-form `NAME=VALUE` string.
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Virtual address of the entry point.
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the page to fill with hypercall stubs.
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual address at which pseudo-physical address 0 is mapped.
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// Offset between ELF physical addresses and pseudo-physical addresses.
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Hypervisor interface generation the kernel was written for (string).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Name of the guest operating system (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Version of the guest operating system (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type (string).
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// PAE mode (32-bit guests only; string).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// Feature names the kernel supports or requires (string).
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// Whether the kernel wants its symbol table loaded (string).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest address the hypervisor hole may start at.
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// Mask/value pairs recognising L1 entries that carry valid MFNs.
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// Whether the kernel supports cooperative suspend cancellation.
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address at which the initial p2m list should be mapped.
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// Whether the kernel accepts an initrd given by PFN rather than mapped.
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Feature bitmap the kernel supports (numeric).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point (PVH; not used by Xenia).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The fixed header of an ELF note (`Elf64_Nhdr`; its fields are 32-bit in
/// ELF64 too).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct ElfNoteHeader {
    /// Length of the name, including its terminating NUL (4 for `"Xen"`).
    pub namesz: u32,
    /// Length of the descriptor, without padding.
    pub descsz: u32,
    /// Note type: one of the `XEN_ELFNOTE_*` values.
    pub n_type: u32,
}

/// Rounds a name or descriptor length up to the 4-byte alignment notes use.
pub const fn note_padded(len: u32) -> u32 {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_types_match_xen() {
        let xen = [
            XEN_ELFNOTE_INFO,
            XEN_ELFNOTE_ENTRY,
            XEN_ELFNOTE_HYPERCALL_PAGE,
            XEN_ELFNOTE_VIRT_BASE,
            XEN_ELFNOTE_PADDR_OFFSET,
            XEN_ELFNOTE_XEN_VERSION,
            XEN_ELFNOTE_GUEST_OS,
            XEN_ELFNOTE_GUEST_VERSION,
            XEN_ELFNOTE_LOADER,
            XEN_ELFNOTE_PAE_MODE,
            XEN_ELFNOTE_FEATURES,
            XEN_ELFNOTE_BSD_SYMTAB,
            XEN_ELFNOTE_HV_START_LOW,
            XEN_ELFNOTE_L1_MFN_VALID,
            XEN_ELFNOTE_SUSPEND_CANCEL,
            XEN_ELFNOTE_INIT_P2M,
            XEN_ELFNOTE_MOD_START_PFN,
            XEN_ELFNOTE_SUPPORTED_FEATURES,
            XEN_ELFNOTE_PHYS32_ENTRY,
        ];
        for (i, t) in xen.into_iter().enumerate() {
            assert_eq!(t as usize, i);
        }
    }

    #[test]
    fn header_and_name() {
        assert_layout!(ElfNoteHeader, 12, 4, { namesz: 0, descsz: 4, n_type: 8 });
        assert_eq!(XEN_ELFNOTE_NAME_BYTES.len() as u32, note_padded(4));
        assert_eq!(&XEN_ELFNOTE_NAME_BYTES[..3], XEN_ELFNOTE_NAME.as_bytes());
        assert_eq!(note_padded(5), 8);
        assert_eq!(note_padded(8), 8);
    }
}
