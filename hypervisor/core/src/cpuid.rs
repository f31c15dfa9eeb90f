//! What a paravirtual guest sees of CPUID through Xen's forced-emulation prefix
//! (`ud2; .ascii "xen"; cpuid`, [`FORCED_CPUID`]): the hardware's answer with what a PV guest
//! cannot use hidden, the hypervisor bit set, and Xen's hypervisor leaves at `0x4000_0000`
//! ("XenVMMXenVMM", Xen's layout from `xen/include/public/arch-x86/cpuid.h` and
//! `cpuid_hypervisor_leaves`). Pure: the caller passes the hardware's answers.
//!
//! A PV kernel runs without CR4 or the local APIC and cannot use virtualisation extensions,
//! MONITOR/MWAIT, PCID, global pages, x2APIC or the TSC deadline timer: those are hidden, as in
//! Xen's PV policy. `cpuid` without the prefix is not intercepted (no CPUID faulting): it
//! gives the hardware's answer, which is why Xen PV kernels use the prefix.

/// The forced-emulation prefix and the instruction: `ud2` (0F 0B), "xen", `cpuid` (0F A2).
pub const FORCED_CPUID: [u8; 7] = [0x0F, 0x0B, b'x', b'e', b'n', 0x0F, 0xA2];

/// The first hypervisor leaf.
pub const BASE: u32 = 0x4000_0000;
/// Xen's hypervisor leaves for a PV guest: `BASE` to `BASE + 5`.
pub const LAST: u32 = BASE + 5;

/// "XenVMMXenVMM" in `ebx`, `ecx`, `edx` (`XEN_CPUID_SIGNATURE_*`).
pub const SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];

/// `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD` (leaf 2, `ecx`).
pub const FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;

/// Leaf 1 `ecx` bits hidden: MONITOR, DS-CPL, VMX, SMX, EST, TM2, PDCM, PCID, DCA, x2APIC,
/// TSC deadline.
pub const LEAF1_ECX_HIDDEN: u32 = (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 15)
    | (1 << 17)
    | (1 << 18)
    | (1 << 21)
    | (1 << 24);
/// Leaf 1 `ecx`: running under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 `edx` bits hidden: VME, DE, PSE, APIC, MTRR, PGE, PSE-36, DS, ACPI, TM, PBE.
pub const LEAF1_EDX_HIDDEN: u32 = (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 9)
    | (1 << 12)
    | (1 << 13)
    | (1 << 17)
    | (1 << 21)
    | (1 << 22)
    | (1 << 29)
    | (1 << 31);
/// Leaf 7 sub-leaf 0 `ebx` bits hidden: FSGSBASE, SMEP, INVPCID, SMAP, processor trace (a
/// ring-3 kernel has no CR4 to turn them on). FSGSBASE is one Xen lets a PV kernel turn on
/// when its policy has it; Xenia keeps CR4.FSGSBASE off and the GS bases in its own hands
/// (`set_segment_base`), so it is not in the policy, and Linux, which sets the bit in
/// `cpu_init_exception_handling` when it sees the feature, does not try.
pub const LEAF7_EBX_HIDDEN: u32 = (1 << 0) | (1 << 7) | (1 << 10) | (1 << 20) | (1 << 25);
/// Leaf 7 sub-leaf 0 `ecx` bits hidden: UMIP, PKU, OSPKE, CET shadow stacks, and RDPID (its
/// `IA32_TSC_AUX` is not kept per vCPU, so a kernel's write to it is #GP:
/// `xenia_core::privop`).
pub const LEAF7_ECX_HIDDEN: u32 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 22);
/// Leaf 7 sub-leaf 0 `edx` bits hidden: CET indirect-branch tracking (CR4.CET, as the
/// shadow stacks, is not the kernel's).
pub const LEAF7_EDX_HIDDEN: u32 = 1 << 20;
/// Leaf 0x8000_0001 `ecx` bits hidden: SVM.
pub const EXT1_ECX_HIDDEN: u32 = 1 << 2;
/// Leaf 0x8000_0001 `edx` bits hidden: RDTSCP (as RDPID: Xen offers `IA32_TSC_AUX` only when
/// one of them is shown, and Linux writes it at boot when one is).
pub const EXT1_EDX_HIDDEN: u32 = 1 << 27;

/// What the hypervisor tells the policy about itself and the guest.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// `XENVER_version`'s answer (major << 16 | minor).
    pub version: u32,
    /// The TSC's rate in kHz.
    pub tsc_khz: u32,
    /// Bits of the highest machine address (leaf 5 `ebx`: the highest MFN's bits + 12).
    pub maddr_bits: u32,
}

/// The answer for leaf `leaf`, sub-leaf `subleaf`: `[eax, ebx, ecx, edx]`. `hw` gives the
/// hardware's answer for a leaf and sub-leaf.
pub fn pv_cpuid(
    leaf: u32,
    subleaf: u32,
    host: &Host,
    hw: impl Fn(u32, u32) -> [u32; 4],
) -> [u32; 4] {
    if (BASE..=BASE + 0xFF).contains(&leaf) {
        return hypervisor_leaf(leaf - BASE, subleaf, host);
    }
    let mut r = hw(leaf, subleaf);
    match leaf {
        1 => {
            r[2] = (r[2] & !LEAF1_ECX_HIDDEN) | LEAF1_ECX_HYPERVISOR;
            r[3] &= !LEAF1_EDX_HIDDEN;
        }
        7 if subleaf == 0 => {
            r[1] &= !LEAF7_EBX_HIDDEN;
            r[2] &= !LEAF7_ECX_HIDDEN;
            r[3] &= !LEAF7_EDX_HIDDEN;
        }
        0x8000_0001 => {
            r[2] &= !EXT1_ECX_HIDDEN;
            r[3] &= !EXT1_EDX_HIDDEN;
        }
        _ => {}
    }
    r
}

fn hypervisor_leaf(index: u32, subleaf: u32, host: &Host) -> [u32; 4] {
    match (index, subleaf) {
        (0, _) => [LAST, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]],
        (1, _) => [host.version, 0, 0, 0],
        // One hypercall page; Xen's MSR base; the PV feature flag.
        (2, _) => [1, BASE, FEAT1_MMU_PT_UPDATE_PRESERVE_AD, 0],
        // Time: no emulated TSC, the default mode, the TSC's rate.
        (3, 0) => [0, 0, host.tsc_khz, 0],
        (3, 2) => [0, 0, host.tsc_khz, 0],
        // PV-specific: machine-address width.
        (5, 0) => [0, host.maddr_bits, 0, 0],
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host {
        version: 0x0004_0011,
        tsc_khz: 2_000_000,
        maddr_bits: 40,
    };

    fn all_ones(_: u32, _: u32) -> [u32; 4] {
        [u32::MAX; 4]
    }

    #[test]
    fn hypervisor_leaves_are_xens() {
        let r = pv_cpuid(BASE, 0, &HOST, all_ones);
        assert_eq!(r, [BASE + 5, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e]);
        let sig: alloc::vec::Vec<u8> = r[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(
            pv_cpuid(BASE + 1, 0, &HOST, all_ones),
            [0x0004_0011, 0, 0, 0]
        );
        assert_eq!(pv_cpuid(BASE + 2, 0, &HOST, all_ones), [1, BASE, 1, 0]);
        assert_eq!(pv_cpuid(BASE + 3, 0, &HOST, all_ones)[2], 2_000_000);
        assert_eq!(pv_cpuid(BASE + 5, 0, &HOST, all_ones), [0, 40, 0, 0]);
        assert_eq!(
            pv_cpuid(BASE + 6, 0, &HOST, all_ones),
            [0; 4],
            "beyond the last"
        );
        assert_eq!(pv_cpuid(BASE + 0x80, 0, &HOST, all_ones), [0; 4]);
    }

    #[test]
    fn what_a_pv_guest_cannot_use_is_hidden() {
        let r = pv_cpuid(1, 0, &HOST, all_ones);
        assert_eq!(r[2] & LEAF1_ECX_HIDDEN, 0);
        assert_ne!(r[2] & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(r[2] & (1 << 5), 0, "VMX");
        assert_eq!(r[3] & LEAF1_EDX_HIDDEN, 0);
        assert_ne!(r[3] & (1 << 16), 0, "PAT kept");
        let r = pv_cpuid(7, 0, &HOST, all_ones);
        assert_eq!((r[1] & LEAF7_EBX_HIDDEN, r[2] & LEAF7_ECX_HIDDEN), (0, 0));
        assert_eq!(r[1] & 1, 0, "FSGSBASE");
        assert_eq!(r[3] & LEAF7_EDX_HIDDEN, 0, "IBT");
        assert_eq!(
            pv_cpuid(7, 1, &HOST, all_ones),
            [u32::MAX; 4],
            "other sub-leaves as is"
        );
        assert_eq!(
            pv_cpuid(0x8000_0001, 0, &HOST, all_ones)[2] & EXT1_ECX_HIDDEN,
            0
        );
        let ext1 = pv_cpuid(0x8000_0001, 0, &HOST, all_ones)[3];
        assert_eq!(ext1 & (1 << 27), 0, "RDTSCP");
        assert_ne!(ext1 & (1 << 29), 0, "long mode kept");
        assert_eq!(pv_cpuid(7, 0, &HOST, all_ones)[2] & (1 << 22), 0, "RDPID");
        // The hypervisor bit is set whatever the hardware says.
        assert_ne!(
            pv_cpuid(1, 0, &HOST, |_, _| [0; 4])[2] & LEAF1_ECX_HYPERVISOR,
            0
        );
        // Other leaves pass through.
        assert_eq!(pv_cpuid(0, 0, &HOST, |l, s| [l, s, 7, 8]), [0, 0, 7, 8]);
    }
}
