//! The hardware values privileged-instruction emulation (`guest::privop`) passes on to a
//! guest kernel, read only where the CPU has them (an absent MSR would #GP in ring 0).

use core::arch::x86_64::__cpuid;

use x86_64::registers::model_specific::Msr;

/// Whether the CPU is Intel's (`MISC_ENABLE` is architectural there, Intel SDM Vol. 4
/// Table 2-2; AMD has no such MSR).
fn intel() -> bool {
    let l = __cpuid(0);
    [l.ebx, l.edx, l.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e]
}

/// `IA32_MISC_ENABLE` (0x1A0), on Intel CPUs.
pub fn misc_enable() -> Option<u64> {
    // SAFETY: the MSR exists on every Intel CPU with long mode (checked just before);
    // reading it changes nothing.
    intel().then(|| unsafe { Msr::new(0x1A0).read() })
}

/// The microcode revision (`IA32_BIOS_SIGN_ID` / AMD's patch level, both 0x8B), as Intel's
/// sequence reads it: write 0, `cpuid`, read (Intel SDM Vol. 3A §10.11.7.1). On other
/// vendors than Intel and AMD, none.
pub fn ucode_rev() -> Option<u64> {
    let l = __cpuid(0);
    let amd = [l.ebx, l.edx, l.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
    if !intel() && !amd {
        return None;
    }
    if intel() {
        // SAFETY: writing 0 to IA32_BIOS_SIGN_ID is how software asks for the revision;
        // it loads nothing.
        unsafe { Msr::new(0x8B).write(0) };
        let _ = __cpuid(1);
    }
    // SAFETY: the MSR exists on Intel and AMD CPUs with long mode; reading changes nothing.
    Some(unsafe { Msr::new(0x8B).read() })
}

/// XCR0, when the hypervisor turned XSAVE on (CR4.OSXSAVE); `None` otherwise (`xgetbv`
/// would raise #UD).
pub fn xcr0() -> Option<u64> {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    if !Cr4::read().contains(Cr4Flags::OSXSAVE) {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: `xgetbv` with ECX = 0 reads XCR0; CR4.OSXSAVE is set (checked above).
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    Some(u64::from(hi) << 32 | u64::from(lo))
}
