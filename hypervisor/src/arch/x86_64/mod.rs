//! x86-64 PCs: boot entry, descriptor tables, traps, paging, APIC, PIT, power.
//!
//! Standing assumptions: everything here runs in ring 0 on the boot CPU, except `smp`'s AP
//! start-up, which runs the per-pCPU `init` code (GDT, IDT, protections, local APIC) on each
//! application processor; `init` code runs once per pCPU with interrupts disabled.

pub mod frame;
pub mod layout;

#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod hpet;
#[cfg(target_os = "none")]
pub mod i8042;
#[cfg(target_os = "none")]
pub mod ioapic;
#[cfg(target_os = "none")]
pub mod ioport;
#[cfg(target_os = "none")]
pub mod ipi;
#[cfg(target_os = "none")]
pub mod msr;
#[cfg(target_os = "none")]
pub mod paging;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod pit;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod screen;
#[cfg(target_os = "none")]
pub mod serial;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod trap;

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("../../../../boot/entry.s"));

#[cfg(target_os = "none")]
unsafe extern "C" {
    pub(crate) static boot_stack_high_bottom: u8;
    pub(crate) static boot_stack_high_top: u8;
}

/// Whether `addr` lies on the boot CPU's hypervisor stack.
#[cfg(target_os = "none")]
pub fn boot_stack_contains(addr: u64) -> bool {
    let bottom = (&raw const boot_stack_high_bottom) as u64;
    let top = (&raw const boot_stack_high_top) as u64;
    (bottom..top).contains(&addr)
}

/// Turns on the protections the CPU offers (SDM Vol. 3A §2.5, §4.6): write protection
/// in ring 0, SMEP (no ring below 3 executes a user page), UMIP (guests cannot read
/// descriptor-table addresses), and the FPU/SSE state bits guests will need.
///
/// SMAP stays off on purpose: it would only ever act on guests, since the hypervisor's
/// own tables hold no user pages, and it would make a ring-1 kernel fault on every
/// access to its processes' memory. Global pages (PGE) stay off too: a global TLB entry
/// for a hypervisor page would outlive the switch to a guest's root.
#[cfg(target_os = "none")]
pub fn enable_protections(features: crate::cpuinfo::Features) {
    use crate::cpuinfo::Features;
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

    let mut cr4 = Cr4::read();
    cr4 |= Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE;
    cr4 -= Cr4Flags::PAGE_GLOBAL | Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    for (feature, flag) in [
        (
            Features::SMEP,
            Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION,
        ),
        (Features::UMIP, Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION),
    ] {
        if features.contains(feature) {
            cr4 |= flag;
        }
    }
    // SAFETY: every bit set is supported (checked above or architectural on x86-64) and
    // none changes how the hypervisor's own code or mappings behave: it has no user
    // pages and touches none.
    unsafe {
        Cr4::write(cr4);
        // WP: ring 0 honours read-only pages. NE: x87 errors raise #MF (native reporting).
        // MP with EM clear: x87/SSE usable, and CR0.TS (fpu_taskswitch) raises #NM.
        // AM: ring-3 code with RFLAGS.AC set gets #AC on misaligned accesses, as natively.
        Cr0::update(|f| {
            *f |= Cr0Flags::WRITE_PROTECT
                | Cr0Flags::NUMERIC_ERROR
                | Cr0Flags::MONITOR_COPROCESSOR
                | Cr0Flags::ALIGNMENT_MASK;
            *f -= Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED;
        });
    }
}

/// Saving and restoring a vCPU's CPU state that the entry stubs do not: CR0.TS, x87/SSE,
/// the data segment selectors and the FS and GS bases. Every piece of CPU state a guest can
/// change without a hypercall is here (docs/security.md lists them): nothing of one vCPU
/// survives into the next, and nothing a guest set can fault the hypervisor.
#[cfg(target_os = "none")]
impl crate::domain::Vcpu {
    pub fn save_cpu_state(&mut self) {
        use x86_64::registers::control::{Cr0, Cr0Flags};
        // The guest may have left CR0.TS set (`fpu_taskswitch`): remember it as its own and
        // clear it, or the fxsave64 below raises #NM in ring 0.
        self.fpu_ts = Cr0::read().contains(Cr0Flags::TASK_SWITCHED);
        clts();
        // SAFETY: `fpu` is a 512-byte, 16-aligned area owned by this vCPU; fxsave64 only
        // writes it, and CR0.TS is clear. The hypervisor never uses x87/SSE itself, so the
        // registers are the guest's.
        unsafe {
            core::arch::asm!("fxsave64 [{0}]", in(reg) self.fpu.0.as_mut_ptr(), options(nostack))
        };
        let mut sel = [0u16; 4];
        // SAFETY: reading segment registers has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs",
                out(reg) sel[0], out(reg) sel[1], out(reg) sel[2], out(reg) sel[3],
                options(nomem, nostack, preserves_flags)
            )
        };
        self.data_selectors = sel;
        self.fs_base = x86_64::registers::model_specific::FsBase::read().as_u64();
        self.gs_base = x86_64::registers::model_specific::GsBase::read().as_u64();
        if self.xen_pv {
            // The other mode's base lives in `KERNEL_GS_BASE` while the vCPU is loaded.
            self.gs_base_other = other_gs_base();
        }
        if self.dr7 & crate::debugreg::DR7_ENABLES != 0 {
            self.dr6 |= read_dr6() & crate::debugreg::DR6_STATUS;
            // Disarmed before anything else runs here.
            write_debugreg(7, crate::debugreg::DR7_DEFAULT);
            write_debugreg(6, crate::debugreg::DR6_DEFAULT);
        }
    }

    /// Returns the data selectors (DS, ES, FS, GS) that could not be loaded, each replaced
    /// by the null selector (0 where all loaded): for a Xen PV vCPU, those its GDT in force
    /// no longer gives as a loadable segment (`gdt::data_loadable`; the guest changed the
    /// descriptor with `update_descriptor` since it loaded the selector). Xen answers that
    /// with the failsafe callback (`xenpv::failsafe`).
    pub fn load_cpu_state(&self) -> [u16; 4] {
        clts();
        // SAFETY: the area holds a state saved by fxsave64 or `FpuState::reset` (valid
        // reserved bits, MXCSR without reserved bits set), so fxrstor64 cannot fault; CR0.TS
        // is clear.
        unsafe {
            core::arch::asm!("fxrstor64 [{0}]", in(reg) self.fpu.0.as_ptr(), options(nostack))
        };
        let sel = if self.xen_pv {
            // Checked against the GDT in force, which the switch path just put there, and
            // which no one changes meanwhile (`update_descriptor` takes the domain's lock,
            // held here).
            self.data_selectors
                .map(|s| if gdt::data_loadable(s) { s } else { 0 })
        } else {
            self.data_selectors.map(sanitize_data_selector)
        };
        let mut failed = [0u16; 4];
        for i in 0..4 {
            if sel[i] != self.data_selectors[i] && self.xen_pv {
                failed[i] = self.data_selectors[i];
            }
        }
        // SAFETY: each selector is null, one of the guest data descriptors of Xenia's page
        // 0 (sanitize_data_selector), or for a Xen PV vCPU one its GDT in force gives as a
        // present data or readable code segment (`lar`), which ring 0 may load; the hypervisor does not use
        // DS, ES, FS or GS in long mode. FS and GS bases are written after, since loading
        // the selectors resets them.
        unsafe {
            core::arch::asm!(
                "mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}", "mov gs, {3:x}",
                in(reg) sel[0], in(reg) sel[1], in(reg) sel[2], in(reg) sel[3],
                options(nostack, preserves_flags)
            )
        };
        x86_64::registers::model_specific::FsBase::write(x86_64::VirtAddr::new_truncate(
            self.fs_base,
        ));
        x86_64::registers::model_specific::GsBase::write(x86_64::VirtAddr::new_truncate(
            self.gs_base,
        ));
        // A Xen PV vCPU's other GS base, for `swap_gs` at its mode changes; nothing of another
        // vCPU's stays there for anyone else.
        set_other_gs_base(if self.xen_pv { self.gs_base_other } else { 0 });
        set_task_switched(self.fpu_ts);
        self.load_debugregs();
        failed
    }

    /// Puts this vCPU's debug registers in the CPU if it has a breakpoint armed, else makes
    /// sure none is (DR7 as at reset).
    pub fn load_debugregs(&self) {
        if self.dr7 & crate::debugreg::DR7_ENABLES == 0 {
            write_debugreg(7, crate::debugreg::DR7_DEFAULT);
            return;
        }
        for (n, &v) in self.dr.iter().enumerate() {
            write_debugreg(n as u8, v);
        }
        write_debugreg(6, self.dr6);
        write_debugreg(7, self.dr7);
    }
}

/// Writes debug register `n` (0–3, 6 or 7).
#[cfg(target_os = "none")]
pub fn write_debugreg(n: u8, value: u64) {
    // SAFETY: DR0–DR3 hold addresses checked to be the guest's (`xenia_core::debugreg::check`,
    // so no breakpoint lies on the hypervisor's own addresses); DR6 and DR7 values are
    // normalised there (no GD, no I/O breakpoints, reserved bits as required); a #DB the
    // hypervisor takes from a guest's breakpoint is dropped on its own stack
    // (`trap::debug_in_hypervisor`).
    unsafe {
        match n {
            0 => core::arch::asm!("mov dr0, {}", in(reg) value, options(nostack)),
            1 => core::arch::asm!("mov dr1, {}", in(reg) value, options(nostack)),
            2 => core::arch::asm!("mov dr2, {}", in(reg) value, options(nostack)),
            3 => core::arch::asm!("mov dr3, {}", in(reg) value, options(nostack)),
            6 => core::arch::asm!("mov dr6, {}", in(reg) value, options(nostack)),
            7 => core::arch::asm!("mov dr7, {}", in(reg) value, options(nostack)),
            _ => {}
        }
    }
}

/// Reads DR6.
#[cfg(target_os = "none")]
pub fn read_dr6() -> u64 {
    let v: u64;
    // SAFETY: reading DR6 has no side effects (DR7.GD is never set).
    unsafe { core::arch::asm!("mov {}, dr6", out(reg) v, options(nostack, nomem)) };
    v
}

/// A data selector as ring 0 may load it: a guest data descriptor of the GDT with an RPL
/// its DPL admits (Intel SDM Vol. 3A §5.7: DPL >= max(CPL, RPL)), which is every selector
/// the CPU let a guest load; anything else becomes null.
#[cfg(target_os = "none")]
fn sanitize_data_selector(sel: u16) -> u16 {
    use guest_abi::selectors::{FLAT_RING3_DS32, KERNEL_DS, USER_DS};
    let (index, rpl) = (sel & !3, sel & 3);
    let dpl_ok = |ds: u16| index == ds & !3 && rpl <= ds & 3;
    if dpl_ok(KERNEL_DS) || dpl_ok(USER_DS) || dpl_ok(FLAT_RING3_DS32) {
        sel
    } else {
        0
    }
}

/// Clears CR0.TS.
#[cfg(target_os = "none")]
pub fn clts() {
    set_task_switched(false);
}

/// Sets or clears CR0.TS: with it set, the next x87/SSE instruction raises #NM (Intel SDM
/// Vol. 3A §2.5). Only guest code may run with it set.
#[cfg(target_os = "none")]
pub fn set_task_switched(set: bool) {
    use x86_64::registers::control::{Cr0, Cr0Flags};
    // SAFETY: CR0.TS affects only x87/SSE instructions, which the hypervisor never
    // executes except in save_cpu_state/load_cpu_state, which clear it first.
    unsafe { Cr0::update(|f| f.set(Cr0Flags::TASK_SWITCHED, set)) };
}

/// MSRs for SYSCALL from guests (Intel SDM Vol. 3B §2.2.1, Vol. 2B SYSCALL): SYSCALL enters
/// at `entry` (the entry area's stub) with the hypervisor's code selector; IF, TF, DF, AC and
/// NT are cleared on entry.
#[cfg(target_os = "none")]
pub fn enable_syscall(entry: u64) {
    use x86_64::registers::model_specific::{Efer, EferFlags, Msr};
    const STAR: u32 = 0xC000_0081;
    const LSTAR: u32 = 0xC000_0082;
    const CSTAR: u32 = 0xC000_0083;
    const FMASK: u32 = 0xC000_0084;
    const MASK: u64 = (1 << 9) | (1 << 8) | (1 << 10) | (1 << 18) | (1 << 14);
    // SYSCALL enters on Xen's hypervisor selectors (CS 0xe008, SS 0xe010), in the GDT's
    // reserved page, which every vCPU's GDT keeps (`gdt::load_for`).
    let star =
        (u64::from(gdt::HV_CS) << 32) | (u64::from(guest_abi::selectors::KERNEL_DS & !3) << 48);
    // SAFETY: `entry` is the entry stub, mapped in every root; the selectors are the
    // hypervisor's own; enabling SCE only makes SYSCALL reach that stub.
    unsafe {
        // SYSENTER is never an entry: a zero CS makes it #GP whatever firmware or an
        // earlier kernel left in these MSRs (Intel SDM Vol. 2B, SYSENTER).
        Msr::new(0x174).write(0);
        Msr::new(STAR).write(star);
        Msr::new(LSTAR).write(entry);
        Msr::new(CSTAR).write(entry);
        Msr::new(FMASK).write(MASK);
        Efer::update(|f| *f |= EferFlags::SYSTEM_CALL_EXTENSIONS);
    }
}

/// Loads guest data selector `sel` into GS (`set_segment_base(SEGBASE_GS_USER_SEL)`): null,
/// or one of the guest data selectors, else `false` and nothing changes.
#[cfg(target_os = "none")]
pub fn load_guest_gs(sel: u16) -> bool {
    use guest_abi::selectors::{FLAT_RING3_DS32, KERNEL_DS, USER_DS};
    if ![0, KERNEL_DS, USER_DS, FLAT_RING3_DS32].contains(&sel) {
        return false;
    }
    // SAFETY: a null or guest data selector; loading it changes only GS, which the
    // hypervisor does not use.
    unsafe { core::arch::asm!("mov gs, {0:x}", in(reg) sel, options(nostack, preserves_flags)) };
    true
}

/// The `swapgs` of a Xen PV vCPU's change between kernel and user mode
/// (`guest::xenpv::toggle_mode`, as Xen's `toggle_guest_mode`): the live GS base (the
/// `GS_BASE` MSR) and the other mode's (`KERNEL_GS_BASE`, which holds it while the vCPU is
/// loaded: [`Vcpu::load_cpu_state`](crate::domain::Vcpu::load_cpu_state)) trade places. One
/// instruction where a read and a write of `GS_BASE` took about 18 (issue 18, session 19).
/// The hypervisor itself never uses GS, and no guest reaches `KERNEL_GS_BASE` (`swapgs`,
/// `rdmsr` and `wrmsr` are privileged; a Xen PV kernel's `rdmsr` of it is emulated from
/// [`other_gs_base`]).
#[cfg(target_os = "none")]
#[inline(always)]
pub fn swap_gs() {
    // SAFETY: swaps two MSRs that hold only the running guest's GS bases; nothing in the
    // hypervisor reads GS or its base.
    unsafe { core::arch::asm!("swapgs", options(nostack, preserves_flags, nomem)) };
}

/// The GS base of the mode not in force of the Xen PV vCPU loaded on this pCPU
/// (`KERNEL_GS_BASE`, see [`swap_gs`]).
#[cfg(target_os = "none")]
pub fn other_gs_base() -> u64 {
    x86_64::registers::model_specific::KernelGsBase::read().as_u64()
}

/// Sets [`other_gs_base`] (a canonical base: the callers check, `VirtAddr::new_truncate`
/// would otherwise make it so).
#[cfg(target_os = "none")]
pub fn set_other_gs_base(base: u64) {
    x86_64::registers::model_specific::KernelGsBase::write(x86_64::VirtAddr::new_truncate(base));
}
