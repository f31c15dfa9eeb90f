//! `fep`: Xen's forced-emulation prefix, `ud2; .ascii "xen"; cpuid`. The hypervisor answers the
//! `cpuid` with the PV policy instead of delivering the #UD:
//!
//! 1. Leaf `0x4000_0000`: "XenVMMXenVMM", the last leaf `0x4000_0005`; leaf `0x4000_0001`: the
//!    version `xen_version` gives; leaf `0x4000_0002`: one hypercall page at MSR `0x4000_0000`.
//! 2. Leaf 1: the hypervisor bit set, VMX, MONITOR, PCID, x2APIC and the local APIC hidden,
//!    every other bit as the plain `cpuid` gives it.
//! 3. A plain `ud2`, and `ud2; "xen"` followed by anything but `cpuid`, are still #UD.
//! 4. Red team: ring 3 at the end of a user page whose next page is the kernel's only, holding
//!    the rest of the prefix: #UD at the `ud2` (the hypervisor reads ring 3's instruction
//!    through user mappings only), not a `cpuid` emulated from kernel memory.

use guest_abi::hypercall::{HYPERVISOR_XEN_VERSION, hypercall2};
use xenia_guest_rt::check::{Checks, Ret, error};
use xenia_guest_rt::mm::{self, pte};
use xenia_guest_rt::trap::{self, ExitKind, INVALID_OPCODE, PAGE_FAULT};
use xenia_guest_rt::{probe, user};

/// Two pages outside everything Rust code uses: a user page, then a kernel-only one.
const USER_PAGE: u64 = 0x5E00_0000_0000;

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
    user_prefix_across_pages(&mut c);
    c.finish()
}

/// 4.: `ud2; "xe"` in the last 4 bytes of a user page, `"n"; cpuid` at the start of the
/// kernel-only page after it; ring 3 runs it.
fn user_prefix_across_pages(c: &mut Checks) {
    let mut maps = [None, None];
    for (i, flags) in [pte::PRESENT | pte::RW | pte::USER, pte::PRESENT | pte::RW]
        .into_iter()
        .enumerate()
    {
        let Some((_, mfn)) = mm::fresh_frame() else {
            error(format_args!("no fresh frame"));
        };
        let va = USER_PAGE + 4096 * i as u64;
        // SAFETY: the page is outside everything Rust code uses.
        match unsafe { mm::map_page(va, pte::entry(mfn, flags)) } {
            Ok(m) => maps[i] = Some(m),
            Err((step, r)) => error(format_args!("mapping {va:#x}: {step}: {}", Ret(r))),
        }
    }
    let at = USER_PAGE + 4096 - 4;
    // SAFETY: both pages were just mapped writable for this test (ring 1 may write both).
    unsafe {
        core::ptr::write_volatile(at as *mut [u8; 4], [0x0F, 0x0B, b'x', b'e']);
        core::ptr::write_volatile((at + 4) as *mut [u8; 3], [b'n', 0x0F, 0xA2]);
    }
    trap::expect([INVALID_OPCODE, PAGE_FAULT]);
    let exit = user::run_at(at, user::stack_top(), 0, 0);
    c.check(
        "ring 3: a prefix whose end lies in a kernel-only page is #UD at the ud2",
        exit.kind == ExitKind::Fault(INVALID_OPCODE) && exit.entry.regs.rip == at,
        format_args!("{:?} at rip {:#x}", exit.kind, exit.entry.regs.rip),
    );
    for m in maps.iter().rev().flatten() {
        // SAFETY: ring 3 is done with the pages.
        if let Err((step, r)) = unsafe { mm::unmap_page(m) } {
            error(format_args!("unmapping: {step}: {}", Ret(r)));
        }
    }
}
