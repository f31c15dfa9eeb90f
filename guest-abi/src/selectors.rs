//! Segment selectors of Xenia's fixed GDT, and segment bases.
//!
//! Xenia gives every vCPU of its own (ring-1) ABI the same GDT, which lives
//! read-only in the hypervisor's per-pCPU entry area. Such a guest neither
//! supplies nor changes a GDT: it uses the selectors below (`set_gdt` is
//! `ENOSYS` for it). A kernel in Xen's PV mode may give its own GDT with
//! `set_gdt` (and an LDT with `MMUEXT_SET_LDT`), as on Xen: its frames then
//! take the place of pages 0–13 while its vCPU runs, Xen's reserved page stays
//! above them.
//!
//! | index | selector | descriptor | used by |
//! |---|---|---|---|
//! | 0 | `0x00` | null | — |
//! | 1 | [`HYPERVISOR_CS`] `0x08` | 64-bit code, DPL 0 | none since the hypervisor runs on `0xe008` |
//! | 2 | [`HYPERVISOR_DS`] `0x10` | data, DPL 0 | none since the hypervisor runs on `0xe010` |
//! | 3 | [`KERNEL_CS`] `0x19` | 64-bit code, DPL 1 | guest kernel |
//! | 4 | [`KERNEL_DS`] = [`KERNEL_SS`] `0x21` | data, DPL 1 | guest kernel |
//! | 5 | [`USER_DS`] = [`USER_SS`] `0x2b` | data, DPL 3 | guest programs |
//! | 6 | [`USER_CS`] `0x33` | 64-bit code, DPL 3 | guest programs |
//! | 7–8 | [`TSS_SELECTOR`] `0x38` | 64-bit TSS (16 bytes) | hardware |
//!
//! The GDT goes on to Xen's reserved page at byte 0xe000 (pages 1–13 are null
//! descriptors), with Xen's flat selectors for guests in Xen's PV mode:
//! [`FLAT_RING3_CS32`] `0xe023`, [`FLAT_RING3_DS32`] `0xe02b`, [`FLAT_RING3_CS64`]
//! `0xe033`, and the hypervisor's own 0xe008/0xe010 (Xen's `__HYPERVISOR_CS`
//! and `__HYPERVISOR_DS`, what it runs on). For ring-1 vCPUs that page holds
//! only the hypervisor's two descriptors.
//!
//! The low byte of each guest selector equals the low byte of Xen's flat
//! selector for the same role (`FLAT_RING1_CS` `0xe019`, `FLAT_RING1_DS`
//! `0xe021`, `FLAT_RING3_DS64`/`SS64` `0xe02b`, `FLAT_RING3_CS64` `0xe033`),
//! so RPL and role line up with what a Xen port expects; only Xen's high GDT
//! index is gone. User data before user code, eight bytes apart, is also the
//! order `SYSRET` requires (Intel SDM Vol. 2B, SYSRET): the hypervisor's
//! `STAR` MSR uses it to return to ring 3.

/// Builds a selector from a GDT index and a requested privilege level
/// (Intel SDM Vol. 3A §3.4.2).
pub const fn selector(index: u16, rpl: u16) -> u16 {
    (index << 3) | (rpl & 3)
}

/// Number of 8-byte slots in Xenia's GDT (the TSS descriptor takes two).
pub const GDT_ENTRIES: usize = 9;

/// Hypervisor code segment (index 1, ring 0). Never valid in guest state.
pub const HYPERVISOR_CS: u16 = selector(1, 0);
/// Hypervisor data and stack segment (index 2, ring 0). Never valid in guest
/// state.
pub const HYPERVISOR_DS: u16 = selector(2, 0);
/// Guest kernel code segment: 64-bit, ring 1 (index 3, RPL 1). The kernel
/// runs with this CS, and every trap-table and callback entry targets it.
pub const KERNEL_CS: u16 = selector(3, 1);
/// Guest kernel data segment (index 4, RPL 1).
pub const KERNEL_DS: u16 = selector(4, 1);
/// Guest kernel stack segment: the same descriptor as [`KERNEL_DS`]. This is
/// the `ss` argument of `stack_switch`.
pub const KERNEL_SS: u16 = KERNEL_DS;
/// Guest user data segment: ring 3 (index 5, RPL 3).
pub const USER_DS: u16 = selector(5, 3);
/// Guest user stack segment: the same descriptor as [`USER_DS`].
pub const USER_SS: u16 = USER_DS;
/// Guest user code segment: 64-bit, ring 3 (index 6, RPL 3).
pub const USER_CS: u16 = selector(6, 3);
/// The task-state segment (index 7; the descriptor spans indexes 7 and 8).
pub const TSS_SELECTOR: u16 = selector(7, 0);

/// Privilege level of the guest kernel.
pub const KERNEL_RPL: u16 = 1;
/// Privilege level of guest programs.
pub const USER_RPL: u16 = 3;

/// Whether a CS value saved in a trap frame belongs to guest user mode. A
/// ported kernel must test this (`cs & 3 == 3`) rather than "`cs & 3 != 0`",
/// because its own code runs at RPL 1.
pub const fn is_user_cs(cs: u64) -> bool {
    cs & 3 == USER_RPL as u64
}

// Xen's flat selectors (`arch-x86/xen-x86_64.h`), for guests in Xen's 64-bit PV
// mode (`XENIA_GUEST_MODE_XEN_PV`): they lie in Xen's reserved GDT page (index
// 0x1c00 on, selector 0xe000), which Xenia's GDT has too. Such a kernel runs in
// ring 3 with the same selectors as its programs; the hypervisor keeps track of
// which of the two modes a vCPU is in.

/// Xen's ring-3 compatibility-mode code selector (`FLAT_RING3_CS32`).
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Xen's ring-3 64-bit code selector (`FLAT_RING3_CS64`).
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Xen's ring-3 data selector (`FLAT_RING3_DS32`).
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// Xen's ring-3 64-bit data selector: null (`FLAT_RING3_DS64`).
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// Xen's ring-3 stack selector (`FLAT_RING3_SS32`).
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// Xen's ring-3 64-bit stack selector (`FLAT_RING3_SS64`).
pub const FLAT_RING3_SS64: u16 = 0xe02b;
/// A Xen PV kernel's code selector (`FLAT_KERNEL_CS64`).
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
/// A Xen PV kernel's data selector (`FLAT_KERNEL_DS64`).
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
/// A Xen PV kernel's stack selector (`FLAT_KERNEL_SS64`).
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
/// A Xen PV guest's user code selector (`FLAT_USER_CS64`).
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
/// A Xen PV guest's user 32-bit code selector (`FLAT_USER_CS32`).
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
/// A Xen PV guest's user stack selector (`FLAT_USER_SS64`).
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
/// First byte of Xen's reserved GDT page (`FIRST_RESERVED_GDT_BYTE`): a Xen PV
/// guest's own GDT (`set_gdt`) may use the 14 pages below it.
pub const FIRST_RESERVED_GDT_BYTE: u16 = 0xe000;

// `set_segment_base(which, base)` selectors. The numbers are Xen's
// (`arch-x86/xen-x86_64.h`); the meaning of the GS ones differs, see below.

/// Set the FS base to `base`. The FS base is live in ring 1 and ring 3 alike;
/// a kernel switches it itself when it switches processes (a ring-1 kernel
/// cannot write `IA32_FS_BASE`).
pub const SEGBASE_FS: u32 = 0;
/// Set the GS base to `base`.
///
/// Xenia keeps one GS base per vCPU, live in ring 1 and ring 3 alike, and
/// never switches it on its own: the fast trap and the guest's own `iretq`
/// move between rings without the hypervisor, so it could not keep a separate
/// kernel value in place. A kernel that wants per-CPU data finds it another
/// way (for instance from the top of its stack).
pub const SEGBASE_GS_USER: u32 = 1;
/// Xen's separate kernel GS base. Not provided by Xenia (see
/// [`SEGBASE_GS_USER`]): the call fails with `EOPNOTSUPP`, so a port that
/// relies on it fails at boot rather than later.
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// Load the selector in `base[15:0]` into GS. The GS base becomes the
/// descriptor's (zero for every Xenia data selector).
pub const SEGBASE_GS_USER_SEL: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_the_fixed_values() {
        assert_eq!(HYPERVISOR_CS, 0x08);
        assert_eq!(HYPERVISOR_DS, 0x10);
        assert_eq!(KERNEL_CS, 0x19);
        assert_eq!(KERNEL_DS, 0x21);
        assert_eq!(KERNEL_SS, 0x21);
        assert_eq!(USER_DS, 0x2b);
        assert_eq!(USER_SS, 0x2b);
        assert_eq!(USER_CS, 0x33);
        assert_eq!(TSS_SELECTOR, 0x38);
        assert_eq!(usize::from(TSS_SELECTOR >> 3) + 2, GDT_ENTRIES);
    }

    #[test]
    fn low_bytes_match_xen_flat_selectors() {
        const FLAT_RING1_CS: u16 = 0xe019;
        const FLAT_RING1_DS: u16 = 0xe021;
        const FLAT_RING3_DS64: u16 = 0xe02b;
        const FLAT_RING3_CS64: u16 = 0xe033;
        assert_eq!(KERNEL_CS, FLAT_RING1_CS & 0xff);
        assert_eq!(KERNEL_DS, FLAT_RING1_DS & 0xff);
        assert_eq!(USER_DS, FLAT_RING3_DS64 & 0xff);
        assert_eq!(USER_CS, FLAT_RING3_CS64 & 0xff);
    }

    #[test]
    fn sysret_layout() {
        // SYSRET to 64-bit mode loads SS = base + 8 and CS = base + 16, RPL 3.
        let base = USER_DS - 8 - 3;
        assert_eq!(base + 8 + 3, USER_SS);
        assert_eq!(base + 16 + 3, USER_CS);
    }

    #[test]
    fn user_mode_test_uses_rpl_3() {
        assert!(is_user_cs(USER_CS as u64));
        assert!(!is_user_cs(KERNEL_CS as u64));
    }

    #[test]
    fn segbase_numbers_match_xen() {
        assert_eq!(
            [
                SEGBASE_FS,
                SEGBASE_GS_USER,
                SEGBASE_GS_KERNEL,
                SEGBASE_GS_USER_SEL
            ],
            [0, 1, 2, 3]
        );
    }
}
