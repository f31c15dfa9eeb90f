//! Xen's forced-emulation prefix: `ud2; .ascii "xen"; cpuid` (`xenia_core::cpuid::FORCED_CPUID`)
//! raises #UD, and the hypervisor answers the `cpuid` with the PV policy
//! (`xenia_core::cpuid::pv_cpuid`) instead of delivering the #UD: how Xen PV kernels learn what
//! they may use and that they run on Xen (its hypervisor leaves at `0x4000_0000`). From kernel
//! and user mode alike, as Xen's `pv_emulate_forced_invalid_op`. Any other #UD is delivered.

use core::arch::x86_64::__cpuid_count;

use guest_abi::errno::Errno;

use super::context::Hc;
use super::mem::{self, AddressSpace};
use crate::cpuid::{self as policy, FORCED_CPUID};
use crate::mm::{Mfn, PAGE_SIZE, physmem};

/// Emulates the forced `cpuid` at the guest's `rip`, if that is what raised this #UD; `true`
/// if done (the guest resumes after it).
pub fn emulate(cx: &mut Hc) -> bool {
    let rip = cx.regs().rip;
    let user = super::xenpv::caller_in_user_mode(cx);
    let mut code = [0u8; FORCED_CPUID.len()];
    if read_code(&cx.space(), rip, user, &mut code).is_err() || code != FORCED_CPUID {
        return false;
    }
    let host = policy::Host {
        version: guest_abi::version::XENIA_VERSION,
        tsc_khz: u32::try_from(crate::arch::x86_64::time::tsc_hz() / 1000).unwrap_or(u32::MAX),
        maddr_bits: 64 - crate::mm::ft::frames().saturating_sub(1).leading_zeros() + 12,
    };
    let regs = cx.regs();
    let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
    let r = policy::pv_cpuid(leaf, subleaf, &host, |l, s| {
        let r = __cpuid_count(l, s);
        [r.eax, r.ebx, r.ecx, r.edx]
    });
    regs.rax = u64::from(r[0]);
    regs.rbx = u64::from(r[1]);
    regs.rcx = u64::from(r[2]);
    regs.rdx = u64::from(r[3]);
    regs.rip = rip.wrapping_add(FORCED_CPUID.len() as u64);
    true
}

/// Reads the instruction bytes at `rip` as the mode that ran them could: from user mode, only
/// through user-accessible mappings (red team, session 10: a ring-3 `ud2` at the end of a user
/// page made the hypervisor compare the kernel-only page after it with the prefix, an oracle
/// on kernel memory, and step ring 3 into that page). Xen reads through the user's own tables.
pub(super) fn read_code(
    space: &AddressSpace,
    rip: u64,
    user: bool,
    out: &mut [u8],
) -> Result<(), Errno> {
    if !mem::range_ok(rip, out.len() as u64) {
        return Err(Errno::EFAULT);
    }
    let mut done = 0;
    while done < out.len() {
        let va = rip + done as u64; // within the range checked above
        let chunk = ((PAGE_SIZE - va % PAGE_SIZE) as usize).min(out.len() - done);
        let phys = space.translate(va, false, user)?;
        physmem::read(
            Mfn::from_phys(phys),
            (phys % PAGE_SIZE) as usize,
            &mut out[done..done + chunk],
        );
        done += chunk;
    }
    Ok(())
}
