//! `fep`: Xen's forced-emulation prefix, `ud2; .ascii "xen"; cpuid`. The hypervisor answers the
//! `cpuid` with the PV policy instead of delivering the #UD:
//!
//! 1. Leaf `0x4000_0000`: "XenVMMXenVMM", the last leaf `0x4000_0005`; leaf `0x4000_0001`: the
//!    version `xen_version` gives; leaf `0x4000_0002`: one hypercall page at MSR `0x4000_0000`.
//! 2. Leaf 1: the hypervisor bit set, VMX, MONITOR, PCID, x2APIC and the local APIC hidden,
//!    every other bit as the plain `cpuid` gives it.
//! 3. A plain `ud2`, and `ud2; "xen"` followed by anything but `cpuid`, are still #UD.

use guest_abi::hypercall::{HYPERVISOR_XEN_VERSION, hypercall2};
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::probe;
use xenia_guest_rt::trap::INVALID_OPCODE;

/// `cpuid` through the prefix: `[eax, ebx, ecx, edx]`.
fn forced(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: the prefix is emulated as a `cpuid` (if it were not, the #UD would crash the
    // test, which is the failure to report); rbx, which asm may not name, is swapped back.
    unsafe {
        core::arch::asm!(
            "xchg {b}, rbx",
            "ud2",
            ".ascii \"xen\"",
            "cpuid",
            "xchg {b}, rbx",
            b = inout(reg) 0u64 => b,
            inout("rax") u64::from(leaf) => a,
            inout("rcx") u64::from(subleaf) => c,
            out("rdx") d,
        );
    }
    [a as u32, b as u32, c as u32, d as u32]
}

fn native(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn run() -> ! {
    let mut c = Checks::new();
    let r = forced(0x4000_0000, 0);
    let sig: [u8; 12] = {
        let mut s = [0u8; 12];
        s[..4].copy_from_slice(&r[1].to_le_bytes());
        s[4..8].copy_from_slice(&r[2].to_le_bytes());
        s[8..].copy_from_slice(&r[3].to_le_bytes());
        s
    };
    c.check(
        "leaf 0x40000000: XenVMMXenVMM, last leaf 0x40000005",
        &sig == b"XenVMMXenVMM" && r[0] == 0x4000_0005,
        format_args!("{r:x?}"),
    );
    // SAFETY: XENVER_version takes no argument.
    let version = unsafe { hypercall2(HYPERVISOR_XEN_VERSION, 0, 0) };
    let r = forced(0x4000_0001, 0);
    c.check(
        "leaf 0x40000001: the version xen_version gives",
        i64::from(r[0]) == version,
        format_args!("{r:x?}, xen_version {version:#x}"),
    );
    let r = forced(0x4000_0002, 0);
    c.check(
        "leaf 0x40000002: one hypercall page, MSR base 0x40000000",
        r[0] == 1 && r[1] == 0x4000_0000,
        format_args!("{r:x?}"),
    );

    let (f, n) = (forced(1, 0), native(1, 0));
    // The policy's masks (xenia_core::cpuid: LEAF1_ECX_HIDDEN, LEAF1_EDX_HIDDEN).
    let hidden_ecx: u32 = [3, 4, 5, 6, 7, 8, 15, 17, 18, 21, 24]
        .iter()
        .map(|b| 1 << b)
        .sum();
    let hidden_edx: u32 = [1, 2, 3, 9, 12, 13, 17, 21, 22, 29, 31]
        .iter()
        .map(|b| 1 << b)
        .sum();
    c.check(
        "leaf 1: hypervisor bit set; MONITOR, VMX, PCID, x2APIC, APIC, ... hidden; the rest native",
        f[0] == n[0] && f[2] == (n[2] & !hidden_ecx) | (1 << 31) && f[3] == n[3] & !hidden_edx,
        format_args!("forced {f:x?}, native {n:x?}"),
    );

    // SAFETY: a #UD the handler records; nothing else runs.
    let p = unsafe { probe!(INVALID_OPCODE, "ud2") };
    c.check(
        "a plain ud2 is still #UD",
        p.caught.is_some(),
        format_args!("not caught"),
    );
    // SAFETY: as above; the bytes after "xen" are a nop, never reached.
    let p = unsafe { probe!(INVALID_OPCODE, "ud2", ".ascii \"xen\"", "nop") };
    c.check(
        "ud2; \"xen\" before anything but cpuid is #UD",
        p.caught.is_some(),
        format_args!("not caught"),
    );
    c.finish()
}
