//! What the CPU can do, read once with CPUID (Intel SDM Vol. 2A, "CPUID").

use core::arch::x86_64::{__cpuid, __cpuid_count};

pub use crate::cpuinfo::{CpuInfo, Features};

/// Reads vendor, brand string and the features Xenia cares about.
pub fn identify() -> CpuInfo {
    let leaf0 = __cpuid(0);
    let max_leaf = leaf0.eax;
    let mut vendor = [0u8; 12];
    vendor[0..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    vendor[8..12].copy_from_slice(&leaf0.ecx.to_le_bytes());

    let max_ext = __cpuid(0x8000_0000).eax;
    let mut brand = [0u8; 48];
    if max_ext >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let r = __cpuid(leaf);
            for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
                let at = i * 16 + j * 4;
                brand[at..at + 4].copy_from_slice(&reg.to_le_bytes());
            }
        }
    }

    let mut f = Features::empty();
    let l1 = __cpuid(1);
    f.set(Features::PCID, l1.ecx & (1 << 17) != 0);
    f.set(Features::X2APIC, l1.ecx & (1 << 21) != 0);
    f.set(Features::VMX, l1.ecx & (1 << 5) != 0);
    f.set(Features::TSC_DEADLINE, l1.ecx & (1 << 24) != 0);
    f.set(Features::APIC, l1.edx & (1 << 9) != 0);
    f.set(Features::TSC, l1.edx & (1 << 4) != 0);
    if max_leaf >= 7 {
        let l7 = __cpuid_count(7, 0);
        f.set(Features::FSGSBASE, l7.ebx & (1 << 0) != 0);
        f.set(Features::SMEP, l7.ebx & (1 << 7) != 0);
        f.set(Features::SMAP, l7.ebx & (1 << 20) != 0);
        f.set(Features::UMIP, l7.ecx & (1 << 2) != 0);
    }
    if max_ext >= 0x8000_0001 {
        let e1 = __cpuid(0x8000_0001);
        f.set(Features::NX, e1.edx & (1 << 20) != 0);
        f.set(Features::PAGE_1G, e1.edx & (1 << 26) != 0);
        f.set(Features::SVM, e1.ecx & (1 << 2) != 0);
    }
    if max_ext >= 0x8000_0007 {
        f.set(
            Features::INVARIANT_TSC,
            __cpuid(0x8000_0007).edx & (1 << 8) != 0,
        );
    }

    // CPUID 15h (TSC / core crystal clock ratio and, when reported, the crystal's frequency,
    // which is also the local APIC timer's input: SDM Vol. 3B §18.7.3) and 16h (base MHz).
    let leaf15 = (max_leaf >= 0x15).then(|| {
        let l = __cpuid(0x15);
        (l.eax, l.ebx, l.ecx)
    });
    let base_mhz = (max_leaf >= 0x16).then(|| __cpuid(0x16).eax & 0xffff);
    let intel_model = (&vendor == b"GenuineIntel").then(|| {
        // Display family and model (SDM Vol. 2A, CPUID leaf 01H, Figure 3-6).
        let eax = l1.eax;
        let family = (eax >> 8) & 0xf;
        let model = (eax >> 4) & 0xf;
        let ext_model = (eax >> 16) & 0xf;
        let ext_family = (eax >> 20) & 0xff;
        let display_family = if family == 0xf {
            family + ext_family
        } else {
            family
        };
        let display_model = if family == 0x6 || family == 0xf {
            (ext_model << 4) | model
        } else {
            model
        };
        (display_family, display_model)
    });
    let clock = xenia_core::calibrate::cpuid_clock(&xenia_core::calibrate::CpuidLeaves {
        leaf15,
        base_mhz,
        intel_model,
    });

    CpuInfo {
        vendor,
        brand,
        features: f,
        clock,
    }
}

/// The APIC-ID layout of this CPU's package (`xenia_core::topology::shifts` over CPUID).
pub fn topology_shifts() -> xenia_core::topology::Shifts {
    xenia_core::topology::shifts(|leaf, sub| {
        let r = __cpuid_count(leaf, sub);
        (r.eax, r.ebx, r.ecx, r.edx)
    })
}

/// Whether the CPU supports the execute-disable bit (before `identify` runs).
pub fn has_nx() -> bool {
    __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).edx & (1 << 20) != 0
}
