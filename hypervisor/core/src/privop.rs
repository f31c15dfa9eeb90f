//! Emulation of the privileged instructions a Xen PV kernel issues (Xen's
//! `xen/arch/x86/pv/emul-priv-op.c`): the pure half. A guest kernel runs below ring 0, so
//! `rdmsr`, `wrmsr`, `mov` from a control register, `xsetbv`, `wbinvd` and port I/O raise
//! #GP; Xen answers them instead of delivering the fault, and Linux relies on those answers.
//! The hypervisor copies the instruction bytes through the guest's own tables (an allegation:
//! they may change under it), [`decode`]s them here, asks [`rdmsr`] / [`wrmsr`] / [`cr4`] what
//! Xen would answer, and steps over the instruction; anything not decoded, or refused, is the
//! guest's #GP, delivered as before.
//!
//! What is decoded (Intel SDM Vol. 2): `rdmsr` (0F 32), `wrmsr` (0F 30), `mov r64, crN`
//! (0F 20 /r, CR0, CR2, CR3, CR4), `mov crN, r64` (0F 22 /r, CR0 and CR4 only), `xsetbv`
//! (0F 01 D1), `wbinvd` (0F 09), `in`/`out` with an immediate port or `dx` (E4–E7, EC–EF),
//! `ins`/`outs` (6C–6F, with `rep`). Legacy prefixes (`66`, `f3`, `f2`, segment overrides)
//! and one REX prefix before the opcode are accepted; anything longer than 15 bytes is not.
//! `invd` is not emulated (#GP, as in Xen, whose PV `validate` hook refuses it).

/// The longest x86 instruction (Intel SDM Vol. 2 §2.1.1).
pub const MAX_LEN: usize = 15;

/// A port access's size in bytes: 1, 2 or 4.
pub type Size = u8;

/// The port of an `in`/`out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// An immediate byte.
    Imm(u8),
    /// The port in `dx`.
    Dx,
}

/// A decoded privileged instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Rdmsr,
    Wrmsr,
    /// `mov reg, crN`: general register `reg` (0 = `rax` … 15) gets control register `cr`.
    ReadCr {
        cr: u8,
        reg: u8,
    },
    /// `mov crN, reg`.
    WriteCr {
        cr: u8,
        reg: u8,
    },
    Xsetbv,
    Wbinvd,
    /// `cli` and `sti`: the virtual interrupt flag (`evtchn_upcall_mask`), for a kernel
    /// that raised its virtual IOPL.
    Cli,
    Sti,
    /// `in al/ax/eax, port`.
    In {
        port: Port,
        size: Size,
    },
    /// `out port, al/ax/eax`.
    Out {
        port: Port,
        size: Size,
    },
    /// `ins` (to `es:rdi`); `rep` repeats it `rcx` times.
    Ins {
        size: Size,
        rep: bool,
    },
    /// `outs` (from `ds:rsi`, or the segment override's); `rep` repeats it.
    Outs {
        size: Size,
        rep: bool,
    },
}

/// A decoded instruction and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub op: Op,
    pub len: usize,
}

/// Why an instruction is not emulated: the guest gets its #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotEmulated;

/// Decodes the instruction at the start of `bytes` (as many as could be read, at most
/// [`MAX_LEN`] are looked at).
pub fn decode(bytes: &[u8]) -> Result<Insn, NotEmulated> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let at = |i: usize| bytes.get(i).copied().ok_or(NotEmulated);
    let mut i = 0;
    let mut opsize16 = false;
    let mut rep = false;
    // Legacy prefixes, any number and order, within the 15 bytes.
    loop {
        match at(i)? {
            0x66 => opsize16 = true,
            0xF3 | 0xF2 => rep = true,
            0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 => {}
            _ => break,
        }
        i += 1;
    }
    // One REX prefix, right before the opcode (REX.B and REX.R extend register numbers).
    let mut rex = 0u8;
    if at(i)? & 0xF0 == 0x40 {
        rex = at(i)?;
        i += 1;
    }
    let size: Size = if opsize16 { 2 } else { 4 };
    let op = at(i)?;
    i += 1;
    let op = match op {
        0xE4..=0xE7 => {
            let port = Port::Imm(at(i)?);
            i += 1;
            let size = if op & 1 == 0 { 1 } else { size };
            if op & 2 == 0 {
                Op::In { port, size }
            } else {
                Op::Out { port, size }
            }
        }
        0xEC..=0xEF => {
            let size = if op & 1 == 0 { 1 } else { size };
            if op & 2 == 0 {
                Op::In {
                    port: Port::Dx,
                    size,
                }
            } else {
                Op::Out {
                    port: Port::Dx,
                    size,
                }
            }
        }
        0xFA => Op::Cli,
        0xFB => Op::Sti,
        0x6C..=0x6F => {
            let size = if op & 1 == 0 { 1 } else { size };
            if op & 2 == 0 {
                Op::Ins { size, rep }
            } else {
                Op::Outs { size, rep }
            }
        }
        0x0F => {
            let op2 = at(i)?;
            i += 1;
            match op2 {
                0x30 => Op::Wrmsr,
                0x32 => Op::Rdmsr,
                0x09 => Op::Wbinvd,
                0x01 => {
                    if at(i)? != 0xD1 {
                        return Err(NotEmulated);
                    }
                    i += 1;
                    Op::Xsetbv
                }
                0x20 | 0x22 => {
                    // ModRM: the register form only (mod is ignored by the CPU for these
                    // and always treated as 11b, Intel SDM Vol. 2B "MOV—Move to/from
                    // Control Registers").
                    let modrm = at(i)?;
                    i += 1;
                    let cr = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
                    let reg = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
                    match (op2, cr) {
                        (0x20, 0 | 2 | 3 | 4) => Op::ReadCr { cr, reg },
                        (0x22, 0 | 4) => Op::WriteCr { cr, reg },
                        _ => return Err(NotEmulated),
                    }
                }
                _ => return Err(NotEmulated),
            }
        }
        _ => return Err(NotEmulated),
    };
    // `rep` means something only on ins/outs; on the others the CPU ignores it, as here.
    Ok(Insn { op, len: i })
}

/// MSR numbers (Intel SDM Vol. 4, Xen's `msr-index.h`).
pub mod msr {
    pub const TSC: u32 = 0x10;
    pub const APIC_BASE: u32 = 0x1B;
    pub const UCODE_REV: u32 = 0x8B;
    pub const PLATFORM_INFO: u32 = 0xCE;
    pub const MISC_FEATURES_ENABLES: u32 = 0x140;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1A0;
    pub const PAT: u32 = 0x277;
    pub const PERF_CAPABILITIES: u32 = 0x345;
    pub const SPEC_CTRL: u32 = 0x48;
    pub const EFER: u32 = 0xC000_0080;
    pub const STAR: u32 = 0xC000_0081;
    pub const LSTAR: u32 = 0xC000_0082;
    pub const FS_BASE: u32 = 0xC000_0100;
    pub const GS_BASE: u32 = 0xC000_0101;
    pub const SHADOW_GS_BASE: u32 = 0xC000_0102;
    pub const TSC_AUX: u32 = 0xC000_0103;
}

/// `APIC_BASE`: enabled, at the default address, BSP on vCPU 0 (Xen: "Linux PV guests will
/// attempt to read APIC_BASE").
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_DEFAULT_PHYS_BASE: u64 = 0xFEE0_0000;

/// Xen's fixed PAT (`XEN_MSR_PAT`): WB, WT, UC-, UC, WC, WP, UC, UC.
pub const XEN_MSR_PAT: u64 = 0x0000_0501_0007_0406;

/// `MISC_ENABLE` bits Xen changes (`guest_misc_enable`).
pub const MISC_ENABLE_PERF_AVAIL: u64 = 1 << 7;
pub const MISC_ENABLE_BTS_UNAVAIL: u64 = 1 << 11;
pub const MISC_ENABLE_PEBS_UNAVAIL: u64 = 1 << 12;
pub const MISC_ENABLE_MONITOR_ENABLE: u64 = 1 << 18;
pub const MISC_ENABLE_XTPR_DISABLE: u64 = 1 << 23;

/// EFER bits a guest may see (Xen's `EFER_KNOWN_MASK` without SVME and AIBRSE): SCE, LME,
/// LMA, NXE, LMSLE, FFXSE.
pub const EFER_VISIBLE: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 13) | (1 << 14);

/// What the guest sees of `MISC_ENABLE` given the hardware's value (Xen's
/// `guest_misc_enable`).
pub fn guest_misc_enable(hw: u64) -> u64 {
    (hw & !(MISC_ENABLE_PERF_AVAIL | MISC_ENABLE_MONITOR_ENABLE))
        | MISC_ENABLE_BTS_UNAVAIL
        | MISC_ENABLE_PEBS_UNAVAIL
        | MISC_ENABLE_XTPR_DISABLE
}

/// What the MSR answers need from the hypervisor: the hardware's values and the vCPU's.
pub trait MsrEnv {
    /// The calling vCPU's index (vCPU 0 is the BSP).
    fn vcpu_id(&self) -> usize;
    /// The hardware's EFER.
    fn efer(&self) -> u64;
    /// The hardware's `MISC_ENABLE`, if it has one.
    fn misc_enable(&self) -> Option<u64>;
    /// The microcode revision, if the CPU reports one.
    fn ucode_rev(&self) -> Option<u64>;
    /// The TSC now.
    fn tsc(&self) -> u64;
    /// The vCPU's FS and GS bases.
    fn fs_base(&self) -> u64;
    fn gs_base(&self) -> u64;
    /// The GS base of the other mode (`MSR_SHADOW_GS_BASE`: the user one while in kernel
    /// mode), for a Xen PV kernel; `None` (#GP) for a ring-1 one, which has a single GS base.
    fn shadow_gs_base(&self) -> Option<u64> {
        None
    }
}

/// A `wrmsr` Xen accepts, and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing (the value written is the one the guest reads back, or Xen drops it).
    Ignore,
    /// `set_segment_base(SEGBASE_FS, value)`.
    FsBase(u64),
    /// `set_segment_base(SEGBASE_GS_USER, value)` (in a ring-1 kernel the one GS base).
    GsBase(u64),
}

/// Whether `va` is canonical with 48-bit addresses.
fn canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_FFFF
}

/// Xen's answer to `rdmsr` of `msr` from a PV kernel: `None` is #GP (Xen's default for an
/// MSR it does not list, since 4.15: no guest reads a host MSR it was not given).
pub fn rdmsr(msr: u32, env: &impl MsrEnv) -> Option<u64> {
    Some(match msr {
        msr::APIC_BASE => {
            APIC_BASE_ENABLE
                | APIC_DEFAULT_PHYS_BASE
                | if env.vcpu_id() == 0 { APIC_BASE_BSP } else { 0 }
        }
        msr::FS_BASE => env.fs_base(),
        msr::GS_BASE => env.gs_base(),
        msr::SHADOW_GS_BASE => env.shadow_gs_base()?,
        msr::TSC => env.tsc(),
        msr::EFER => env.efer() & EFER_VISIBLE,
        msr::PAT => XEN_MSR_PAT,
        msr::MISC_ENABLE => guest_misc_enable(env.misc_enable()?),
        msr::UCODE_REV => env.ucode_rev()?,
        // No extra capabilities; no CPUID faulting offered, none enabled.
        msr::PERF_CAPABILITIES | msr::PLATFORM_INFO | msr::MISC_FEATURES_ENABLES => 0,
        _ => return None,
    })
}

/// Xen's answer to `wrmsr` of `value` to `msr` from a PV kernel: `None` is #GP. Everything
/// that would reach the hypervisor's own entry points or speculation controls (`LSTAR`,
/// `STAR`, `SYSENTER_*`, `SPEC_CTRL`, `TSC_AUX`, `APIC_BASE`, `PAT`) is refused, as is any
/// write that changes `EFER` or `MISC_ENABLE` (Linux writes back what it read).
pub fn wrmsr(msr: u32, value: u64, env: &impl MsrEnv) -> Option<Write> {
    match msr {
        msr::FS_BASE if canonical(value) => Some(Write::FsBase(value)),
        msr::GS_BASE if canonical(value) => Some(Write::GsBase(value)),
        msr::EFER if value == env.efer() & EFER_VISIBLE => Some(Write::Ignore),
        msr::MISC_ENABLE if Some(value) == env.misc_enable().map(guest_misc_enable) => {
            Some(Write::Ignore)
        }
        // Intel's "write 0, cpuid, read" sequence for the microcode revision.
        msr::UCODE_REV if value == 0 => Some(Write::Ignore),
        _ => None,
    }
}

/// CR0.TS (Intel SDM Vol. 3A §2.5).
pub const CR0_TS: u64 = 1 << 3;

/// CR4 bits a PV kernel sees of the hypervisor's (Xen's `PV_CR4_GUEST_VISIBLE_MASK` and
/// OSXSAVE, which Xenia leaves as the hypervisor set it): PAE, MCE, OSFXSR, OSXMMEXCPT,
/// OSXSAVE.
pub const CR4_VISIBLE: u64 = (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 18);

/// CR4 bits Linux's `xen_write_cr4` clears before writing and Xen ignores: PSE, PGE, PCE.
pub const CR4_IGNORED: u64 = (1 << 4) | (1 << 7) | (1 << 8);

/// The CR4 a PV kernel reads, from the hardware's.
pub fn cr4(hw: u64) -> u64 {
    hw & CR4_VISIBLE
}

/// Whether a `mov cr4` of `value` is accepted: only one that changes nothing the kernel sees
/// (Xenia gives a PV kernel no CR4 bit of its own; Linux writes back what it read, give or
/// take the bits in [`CR4_IGNORED`]).
pub fn cr4_write_ok(value: u64, hw: u64) -> bool {
    value & !CR4_IGNORED == cr4(hw)
}

/// What a `mov cr0` of `value` does: `Some(ts)` sets the virtual CR0.TS (as
/// `fpu_taskswitch`) when nothing else changes from `current` (what the guest reads); `None`
/// is #GP (Xen: "Attempt to change unmodifiable CR0 flags").
pub fn cr0_write(value: u64, current: u64) -> Option<bool> {
    ((value ^ current) & !CR0_TS == 0).then_some(value & CR0_TS != 0)
}

/// XCR0 bits (Intel SDM Vol. 1 §13.3): x87, SSE, AVX.
pub const XCR0_X87: u64 = 1 << 0;

/// Whether `xsetbv` of `value` to XCR `index` is accepted: XCR0 only, and only its present
/// value. Xenia saves a vCPU's FPU state with `fxsave`, so a vCPU may not widen XCR0 (its
/// AVX state would leak to the next vCPU) nor narrow it (it is the pCPU's, shared).
pub fn xsetbv_ok(index: u32, value: u64, current: u64) -> bool {
    index == 0 && value & XCR0_X87 != 0 && value == current
}

/// What a port read gives a domain with no access to the port (Xen: all ones), merged into
/// `rax` as the instruction would: `al`/`ax` keep the rest of the register, `eax` clears the
/// upper half.
pub fn port_read_result(rax: u64, size: Size) -> u64 {
    match size {
        1 => rax | 0xFF,
        2 => rax | 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

/// How many iterations of a `rep ins`/`rep outs` are done before the guest resumes at the
/// same instruction with `rcx` lowered (as the CPU may stop between iterations for an
/// interrupt): the hypervisor's time per trap stays bounded whatever `rcx` is.
pub const REP_CHUNK: u64 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    struct Env;
    impl MsrEnv for Env {
        fn vcpu_id(&self) -> usize {
            0
        }
        fn efer(&self) -> u64 {
            0xD01 | (1 << 12) // SCE, LME, LMA, NXE, and SVME (hidden)
        }
        fn misc_enable(&self) -> Option<u64> {
            Some(0x850089 | MISC_ENABLE_MONITOR_ENABLE)
        }
        fn ucode_rev(&self) -> Option<u64> {
            Some(0x1_0000_0000)
        }
        fn tsc(&self) -> u64 {
            1234
        }
        fn fs_base(&self) -> u64 {
            0x1000
        }
        fn gs_base(&self) -> u64 {
            0x2000
        }
    }

    fn d(bytes: &[u8]) -> Result<Insn, NotEmulated> {
        decode(bytes)
    }

    #[test]
    fn decodes_the_plain_forms() {
        assert_eq!(
            d(&[0x0F, 0x32]),
            Ok(Insn {
                op: Op::Rdmsr,
                len: 2
            })
        );
        assert_eq!(
            d(&[0x0F, 0x30]),
            Ok(Insn {
                op: Op::Wrmsr,
                len: 2
            })
        );
        assert_eq!(
            d(&[0x0F, 0x09]),
            Ok(Insn {
                op: Op::Wbinvd,
                len: 2
            })
        );
        assert_eq!(
            d(&[0x0F, 0x01, 0xD1]),
            Ok(Insn {
                op: Op::Xsetbv,
                len: 3
            })
        );
        // mov rax, cr3 / mov r9, cr0 (REX.B) / mov cr4, rbx
        assert_eq!(
            d(&[0x0F, 0x20, 0xD8]),
            Ok(Insn {
                op: Op::ReadCr { cr: 3, reg: 0 },
                len: 3
            })
        );
        assert_eq!(
            d(&[0x41, 0x0F, 0x20, 0xC1]),
            Ok(Insn {
                op: Op::ReadCr { cr: 0, reg: 9 },
                len: 4
            })
        );
        assert_eq!(
            d(&[0x0F, 0x22, 0xE3]),
            Ok(Insn {
                op: Op::WriteCr { cr: 4, reg: 3 },
                len: 3
            })
        );
        assert_eq!(
            d(&[0xE4, 0x61]),
            Ok(Insn {
                op: Op::In {
                    port: Port::Imm(0x61),
                    size: 1
                },
                len: 2
            })
        );
        assert_eq!(
            d(&[0x66, 0xEF]),
            Ok(Insn {
                op: Op::Out {
                    port: Port::Dx,
                    size: 2
                },
                len: 2
            })
        );
        assert_eq!(
            d(&[0xF3, 0x6D]),
            Ok(Insn {
                op: Op::Ins { size: 4, rep: true },
                len: 2
            })
        );
        assert_eq!(
            d(&[0x6E]),
            Ok(Insn {
                op: Op::Outs {
                    size: 1,
                    rep: false
                },
                len: 1
            })
        );
    }

    #[test]
    fn cli_and_sti() {
        assert_eq!(
            d(&[0xFA]),
            Ok(Insn {
                op: Op::Cli,
                len: 1
            })
        );
        assert_eq!(
            d(&[0xFB]),
            Ok(Insn {
                op: Op::Sti,
                len: 1
            })
        );
        assert_eq!(
            d(&[0x66, 0xFA]),
            Ok(Insn {
                op: Op::Cli,
                len: 2
            })
        );
    }

    #[test]
    fn refuses_what_it_does_not_emulate() {
        // invd, clts, hlt, mov cr3 (a write), mov cr8, lgdt, xgetbv, a lone prefix.
        for bytes in [
            &[0x0F, 0x08][..],
            &[0x0F, 0x06],
            &[0xF4],
            &[0x0F, 0x22, 0xD8],
            &[0x44, 0x0F, 0x20, 0xC0],
            &[0x0F, 0x01, 0x10],
            &[0x0F, 0x01, 0xD0],
            &[0x66],
            &[],
        ] {
            assert_eq!(d(bytes), Err(NotEmulated), "{bytes:x?}");
        }
    }

    #[test]
    fn the_fifteen_byte_limit_holds() {
        // 13 prefixes and rdmsr: 15 bytes, fine; 14 prefixes: 16, refused.
        let mut b = [0x66u8; 16];
        b[13] = 0x0F;
        b[14] = 0x32;
        assert_eq!(
            d(&b[..15]),
            Ok(Insn {
                op: Op::Rdmsr,
                len: 15
            })
        );
        let mut b = [0x2Eu8; 16];
        b[14] = 0x0F;
        b[15] = 0x32;
        assert_eq!(d(&b), Err(NotEmulated));
        // A truncated instruction (the next page unreadable) is not guessed at.
        assert_eq!(d(&[0x0F]), Err(NotEmulated));
        assert_eq!(d(&[0xE4]), Err(NotEmulated));
    }

    #[test]
    fn msr_reads_are_xens() {
        assert_eq!(rdmsr(msr::APIC_BASE, &Env), Some(0xFEE0_0900));
        assert_eq!(rdmsr(msr::EFER, &Env), Some(0xD01));
        assert_eq!(rdmsr(msr::PAT, &Env), Some(XEN_MSR_PAT));
        assert_eq!(
            rdmsr(msr::MISC_ENABLE, &Env),
            Some(0x81_1809) // PERF_AVAIL, MONITOR cleared; BTS/PEBS_UNAVAIL, XTPR_DISABLE set
        );
        assert_eq!(rdmsr(msr::FS_BASE, &Env), Some(0x1000));
        assert_eq!(rdmsr(msr::PLATFORM_INFO, &Env), Some(0));
        for m in [
            msr::LSTAR,
            msr::STAR,
            msr::SYSENTER_EIP,
            msr::SPEC_CTRL,
            msr::TSC_AUX,
            0x200, // MTRRphysBase0: MTRRs are hidden from PV kernels
            0x4000_0000,
        ] {
            assert_eq!(rdmsr(m, &Env), None, "{m:#x}");
        }
    }

    #[test]
    fn msr_writes_are_refused_unless_harmless() {
        for m in [
            msr::LSTAR,
            msr::STAR,
            msr::SYSENTER_CS,
            msr::SYSENTER_ESP,
            msr::SYSENTER_EIP,
            msr::SPEC_CTRL,
            msr::TSC_AUX,
            msr::APIC_BASE,
            msr::PAT,
        ] {
            assert_eq!(wrmsr(m, 0, &Env), None, "{m:#x}");
        }
        assert_eq!(wrmsr(msr::EFER, 0xD01, &Env), Some(Write::Ignore));
        assert_eq!(wrmsr(msr::EFER, 0x501, &Env), None);
        assert_eq!(
            wrmsr(msr::FS_BASE, 0x7000, &Env),
            Some(Write::FsBase(0x7000))
        );
        assert_eq!(wrmsr(msr::GS_BASE, 1 << 47, &Env), None);
        assert_eq!(wrmsr(msr::UCODE_REV, 0, &Env), Some(Write::Ignore));
        assert_eq!(wrmsr(msr::UCODE_REV, 1, &Env), None);
        let misc = rdmsr(msr::MISC_ENABLE, &Env).unwrap();
        assert_eq!(wrmsr(msr::MISC_ENABLE, misc, &Env), Some(Write::Ignore));
        assert_eq!(wrmsr(msr::MISC_ENABLE, misc ^ 1, &Env), None);
    }

    #[test]
    fn control_registers() {
        assert_eq!(cr0_write(0x8005_003B, 0x8005_0033), Some(true));
        assert_eq!(cr0_write(0x8005_0033, 0x8005_003B), Some(false));
        assert_eq!(cr0_write(0, 0x8005_0033), None);
        let hw = 0x0034_06F0; // with PGE, OSXSAVE, FSGSBASE...
        assert_eq!(cr4(hw), hw & CR4_VISIBLE);
        assert!(cr4_write_ok(cr4(hw), hw));
        assert!(cr4_write_ok(cr4(hw) | (1 << 7), hw));
        assert!(!cr4_write_ok(0, hw));
        assert!(!cr4_write_ok(cr4(hw) | (1 << 20), hw)); // SMEP
    }

    #[test]
    fn xsetbv_and_ports() {
        assert!(xsetbv_ok(0, 3, 3));
        assert!(!xsetbv_ok(0, 7, 3));
        assert!(!xsetbv_ok(0, 1, 3));
        assert!(!xsetbv_ok(1, 3, 3));
        assert!(!xsetbv_ok(0, 2, 2));
        assert_eq!(
            port_read_result(0x1234_5678_9ABC_DE00, 1),
            0x1234_5678_9ABC_DEFF
        );
        assert_eq!(
            port_read_result(0x1234_5678_9ABC_0000, 2),
            0x1234_5678_9ABC_FFFF
        );
        assert_eq!(port_read_result(0x1234_5678_0000_0000, 4), 0xFFFF_FFFF);
    }
}
