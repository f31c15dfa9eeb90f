//! CPU topology as `XEN_SYSCTL_physinfo` reports it: threads per core and cores per
//! socket, from the APIC IDs of the online CPUs and the ID layout CPUID describes.
//! Pure, host-tested; `arch::x86_64::cpu::topology_shifts` reads CPUID.
//!
//! An APIC ID is split into fields (Intel SDM Vol. 3A §9.9 "Programming considerations
//! for hardware multi-threading capable processors"): its low `smt` bits number the
//! thread within its core, the bits up to `package` the core within its package, the
//! rest the package (socket). Like Xen's `physinfo`, the counts are those of CPU 0's core
//! and socket among the CPUs online, not the most the package could hold.

/// How many low APIC-ID bits number the threads of a core (`smt`) and the logical
/// processors of a package (`package`, ≥ `smt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shifts {
    /// Bits of the thread within its core.
    pub smt: u32,
    /// Bits of the logical processor within its package.
    pub package: u32,
}

/// One CPUID answer: `(eax, ebx, ecx, edx)`.
pub type CpuidRegs = (u32, u32, u32, u32);

/// CPUID leaf 0xB level type of an SMT level (SDM Vol. 2A, CPUID leaf 0BH, `ECX[15:8]`).
const LEVEL_SMT: u32 = 1;
/// The most leaf-0xB subleaves read (the SDM names SMT and core; later CPUs add a few).
const MAX_LEVELS: u32 = 8;

/// Bits needed to number `n` things: ⌈log2 n⌉ (0 for 0 and 1).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// The APIC-ID layout, read through `cpuid(leaf, subleaf)`.
///
/// In order: leaf 0xB (x2APIC topology: each level's `EAX[4:0]` is the shift to the next
/// level's ID; the last valid level's is the package's), else leaf 1's HTT flag and
/// `EBX[23:16]` (logical processors per package) with the cores per package from leaf 4
/// `EAX[31:26]` + 1 (Intel) or leaf 0x8000_0008 ECX (AMD APM Vol. 3, CPUID Fn8000_0008:
/// ApicIdSize in `ECX[15:12]`, else NC in `ECX[7:0]` + 1); without HTT every CPU is a package
/// of its own.
pub fn shifts(cpuid: impl Fn(u32, u32) -> CpuidRegs) -> Shifts {
    let max_leaf = cpuid(0, 0).0;
    if max_leaf >= 0xB && cpuid(0xB, 0).1 & 0xffff != 0 {
        let mut s = Shifts::default();
        for level in 0..MAX_LEVELS {
            let (eax, ebx, ecx, _) = cpuid(0xB, level);
            let kind = (ecx >> 8) & 0xff;
            if kind == 0 || ebx & 0xffff == 0 {
                break;
            }
            let shift = eax & 0x1f;
            if kind == LEVEL_SMT {
                s.smt = shift;
            }
            s.package = shift;
        }
        s.package = s.package.max(s.smt);
        return s;
    }
    let (_, ebx1, _, edx1) = cpuid(1, 0);
    const HTT: u32 = 1 << 28;
    if edx1 & HTT == 0 {
        return Shifts::default();
    }
    let logical = (ebx1 >> 16) & 0xff;
    let package = bits_for(logical);
    let max_ext = cpuid(0x8000_0000, 0).0;
    let cores = if max_leaf >= 4 && (cpuid(4, 0).0 & 0x1f) != 0 {
        (cpuid(4, 0).0 >> 26) + 1
    } else if max_ext >= 0x8000_0008 {
        let ecx = cpuid(0x8000_0008, 0).2;
        match (ecx >> 12) & 0xf {
            0 => (ecx & 0xff) + 1,
            size => 1u32.checked_shl(size).unwrap_or(u32::MAX),
        }
    } else {
        1
    };
    Shifts {
        smt: package.saturating_sub(bits_for(cores)),
        package,
    }
}

/// Threads per core and cores per socket as Xen's `physinfo` has them (CPU 0's
/// siblings online; cores = CPU 0's package mates / threads per core), and the number
/// of sockets with a CPU online. `apic_ids[0]` is CPU 0's; an empty list is one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// CPUs online in CPU 0's core.
    pub threads_per_core: u32,
    /// Cores with a CPU online in CPU 0's package.
    pub cores_per_socket: u32,
    /// Packages with a CPU online.
    pub sockets: u32,
}

/// Counts the topology of the CPUs `apic_ids` under layout `s`.
pub fn count(apic_ids: &[u32], s: Shifts) -> Topology {
    let Some(&first) = apic_ids.first() else {
        return Topology {
            threads_per_core: 1,
            cores_per_socket: 1,
            sockets: 1,
        };
    };
    let core_of = |id: u32| id.checked_shr(s.smt).unwrap_or(0);
    let package_of = |id: u32| id.checked_shr(s.package).unwrap_or(0);
    let threads = apic_ids
        .iter()
        .filter(|&&id| core_of(id) == core_of(first))
        .count() as u32;
    let in_package = apic_ids
        .iter()
        .filter(|&&id| package_of(id) == package_of(first))
        .count() as u32;
    // Each package counted at its first CPU (no allocation: at most 64 CPUs).
    let sockets = apic_ids
        .iter()
        .enumerate()
        .filter(|&(i, &id)| {
            !apic_ids[..i]
                .iter()
                .any(|&e| package_of(e) == package_of(id))
        })
        .count() as u32;
    Topology {
        threads_per_core: threads.max(1),
        cores_per_socket: (in_package / threads.max(1)).max(1),
        sockets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPUID that answers leaf 0xB with SMT shift `smt` and package shift `pkg`.
    fn leaf_b(smt: u32, pkg: u32) -> impl Fn(u32, u32) -> CpuidRegs {
        move |leaf, sub| match (leaf, sub) {
            (0, _) => (0xd, 0, 0, 0),
            (0xB, 0) => (smt, 1, LEVEL_SMT << 8, 0),
            (0xB, 1) => (pkg, 4, (2 << 8) | 1, 0),
            _ => (0, 0, 0, 0),
        }
    }

    #[test]
    fn leaf_b_layout() {
        assert_eq!(shifts(leaf_b(1, 4)), Shifts { smt: 1, package: 4 });
        assert_eq!(shifts(leaf_b(0, 0)), Shifts { smt: 0, package: 0 });
    }

    #[test]
    fn legacy_layouts() {
        // Leaf 1 says 8 logical per package, leaf 4 says 4 cores: 2 threads each.
        let intel = |leaf, _| match leaf {
            0 => (4, 0, 0, 0),
            1 => (0, 8 << 16, 0, 1 << 28),
            4 => ((3 << 26) | 1, 0, 0, 0),
            _ => (0, 0, 0, 0),
        };
        assert_eq!(shifts(intel), Shifts { smt: 1, package: 3 });
        // AMD: 4 logical, NC = 3 (4 cores), no ApicIdSize: one thread per core.
        let amd = |leaf, _| match leaf {
            0 => (1, 0, 0, 0),
            1 => (0, 4 << 16, 0, 1 << 28),
            0x8000_0000 => (0x8000_0008, 0, 0, 0),
            0x8000_0008 => (0, 0, 3, 0),
            _ => (0, 0, 0, 0),
        };
        assert_eq!(shifts(amd), Shifts { smt: 0, package: 2 });
        // No HTT: every CPU its own package; a hostile leaf 1 changes nothing.
        let single = |leaf, _| match leaf {
            1 => (0, 0xff << 16, 0, 0),
            _ => (0, 0, 0, 0),
        };
        assert_eq!(shifts(single), Shifts::default());
        // Absurd values saturate instead of overflowing.
        let absurd = |leaf, _| match leaf {
            0 => (1, 0, 0, 0),
            1 => (0, 0xff << 16, 0, 1 << 28),
            0x8000_0000 => (0x8000_0008, 0, 0, 0),
            0x8000_0008 => (0, 0, 0xf << 12, 0),
            _ => (0, 0, 0, 0),
        };
        assert_eq!(shifts(absurd), Shifts { smt: 0, package: 8 });
    }

    #[test]
    fn qemu_default_smp_4_is_four_sockets() {
        // `-smp 4`: APIC IDs 0..3, leaf 0xB with both shifts 0.
        let t = count(&[0, 1, 2, 3], shifts(leaf_b(0, 0)));
        assert_eq!(
            t,
            Topology {
                threads_per_core: 1,
                cores_per_socket: 1,
                sockets: 4
            }
        );
    }

    #[test]
    fn cores_and_threads() {
        // `-smp 8,sockets=2,cores=2,threads=2`: IDs 0..3 and 4..7.
        let s = Shifts { smt: 1, package: 2 };
        let t = count(&[0, 1, 2, 3, 4, 5, 6, 7], s);
        assert_eq!(
            (t.threads_per_core, t.cores_per_socket, t.sockets),
            (2, 2, 2)
        );
        // Only the CPUs online count (Xen's cpu_sibling_mask is of online CPUs).
        let t = count(&[0, 2, 4], s);
        assert_eq!(
            (t.threads_per_core, t.cores_per_socket, t.sockets),
            (1, 2, 2)
        );
        assert_eq!(count(&[], s).threads_per_core, 1);
        // Shifts of 32 or more do not overflow.
        let t = count(
            &[5, 9],
            Shifts {
                smt: 40,
                package: 40,
            },
        );
        assert_eq!(
            (t.threads_per_core, t.cores_per_socket, t.sockets),
            (2, 1, 1)
        );
    }
}
