//! Writable page tables (Xen's `VMASST_TYPE_writable_pagetables`, its `ptwr` emulation): the
//! pure half. With the assist on, a guest kernel's write to one of its own L1 page tables —
//! mapped read-only, as every page table is — faults; the hypervisor decodes the instruction
//! here ([`decode`]), works out what it does to the entry and the registers ([`apply`]), checks
//! the new entry as `mmu_update` would and steps over the instruction.
//!
//! Only the forms a kernel uses to write a page-table entry are decoded, each on 8 bytes:
//! `mov r/m64, r64` (89), `mov r/m64, imm32` (C7 /0), `xchg r/m64, r64` (87),
//! `cmpxchg r/m64, r64` (0F B1) and `cmpxchg8b m64` (0F C7 /1), with a `lock` prefix where the
//! hardware allows one; and Linux's bit operations on an entry: `and`/`or` of one of its bytes
//! with an immediate (80 /4, 80 /1: `clear_bit`/`set_bit`, as `ptep_set_wrprotect` on every
//! `fork`), `and`/`or` of the whole entry with a sign-extended immediate (83 /4, 83 /1) or a
//! register (21, 09), and `btr`/`bts` with an immediate bit number (0F BA /6, /5:
//! `test_and_clear_bit`, as `ptep_test_and_clear_young`). Linux on one CPU patches its `lock`
//! prefixes into `ds` (3E), which is accepted as well. Everything else — other sizes, other
//! operations, other prefixes, `cmpxchg16b` (two entries at once) — is [`Unsupported`], and
//! the guest gets its #PF. The
//! memory operand is not computed: the fault's address (CR2) is the one written, and an
//! instruction changed under the fault (another vCPU rewriting the code) can only make the
//! guest's own entry wrong, never skip the entry check.

/// What the faulting instruction does to the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mov`: the entry becomes the source.
    Mov(Src),
    /// `xchg`: the entry becomes register `reg`, which gets the old entry.
    Xchg(u8),
    /// `cmpxchg`: if `rax` equals the entry, the entry becomes register `reg` (ZF set),
    /// else `rax` gets the entry (ZF clear); the flags as `cmp rax, entry`.
    Cmpxchg(u8),
    /// `cmpxchg8b`: if `edx:eax` equals the entry, it becomes `ecx:ebx` (ZF set), else
    /// `edx:eax` gets it (ZF clear); only ZF changes.
    Cmpxchg8b,
    /// `and`/`or` of the entry's byte at the fault's offset with an immediate; the flags of
    /// the 8-bit result.
    AndByte(u8),
    OrByte(u8),
    /// `and`/`or` of the whole entry; the flags of the 64-bit result.
    And(Src),
    Or(Src),
    /// `btr`/`bts` of bit `n % 64`: CF gets the old bit.
    Btr(u8),
    Bts(u8),
}

impl Op {
    /// Whether the instruction reaches one byte (anywhere in the entry) rather than all
    /// eight (the fault's address must then be the entry's).
    pub fn is_byte(self) -> bool {
        matches!(self, Op::AndByte(_) | Op::OrByte(_))
    }
}

/// The source of a `mov`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// General register `n` (0 = `rax` … 15 = `r15`, the hardware's numbering).
    Reg(u8),
    /// An immediate, sign-extended to 64 bits.
    Imm(u64),
}

/// A decoded instruction: what it does and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub op: Op,
    pub len: usize,
}

/// Why an instruction is not emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported;

/// The longest x86 instruction.
pub const MAX_LEN: usize = 15;

/// Decodes the instruction at the start of `bytes` (as many as could be read, up to
/// [`MAX_LEN`]).
pub fn decode(bytes: &[u8]) -> Result<Insn, Unsupported> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let at = |i: usize| bytes.get(i).copied().ok_or(Unsupported);
    let mut i = 0;
    let mut lock = false;
    // `lock`, or the `ds` that Linux patches it into on one CPU (ignored in 64-bit mode).
    loop {
        match at(i)? {
            0xF0 => lock = true,
            0x3E => {}
            _ => break,
        }
        i += 1;
    }
    // REX must come last, just before the opcode.
    let rex = match at(i)? {
        r @ 0x40..=0x4F => {
            i += 1;
            r
        }
        _ => 0,
    };
    let wide = rex & 0x8 != 0;
    let rex_r = (rex >> 2) & 1;
    let op = at(i)?;
    i += 1;
    let (kind, modrm_at) = match op {
        0x89 if wide && !lock => (0x89u16, i),
        0xC7 if wide && !lock => (0xC7, i),
        0x87 if wide => (0x87, i),
        0x80 if !wide => (0x80, i),
        0x83 | 0x21 | 0x09 if wide => (u16::from(op), i),
        0x0F => {
            let op2 = at(i)?;
            i += 1;
            match op2 {
                0xB1 if wide => (0x0FB1, i),
                0xC7 if !wide => (0x0FC7, i),
                0xBA if wide => (0x0FBA, i),
                _ => return Err(Unsupported),
            }
        }
        _ => return Err(Unsupported),
    };
    let modrm = at(modrm_at)?;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return Err(Unsupported);
    }
    i = modrm_at + 1;
    // Addressing bytes: a SIB byte, then a displacement.
    let mut disp = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = at(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    } else if md == 0 && rm == 5 {
        // RIP-relative.
        disp = 4;
    }
    i += disp;
    let reg_n = (rex_r << 3) | reg;
    let op = match kind {
        0x89 => Op::Mov(Src::Reg(reg_n)),
        0xC7 if reg == 0 => {
            let imm = [at(i)?, at(i + 1)?, at(i + 2)?, at(i + 3)?];
            i += 4;
            Op::Mov(Src::Imm(i32::from_le_bytes(imm) as i64 as u64))
        }
        0x87 => Op::Xchg(reg_n),
        0x0FB1 => Op::Cmpxchg(reg_n),
        0x0FC7 if reg == 1 => Op::Cmpxchg8b,
        0x80 | 0x83 | 0x0FBA => {
            let imm = at(i)?;
            i += 1;
            let wide_imm = Src::Imm(imm as i8 as i64 as u64);
            match (kind, reg) {
                (0x80, 4) => Op::AndByte(imm),
                (0x80, 1) => Op::OrByte(imm),
                (0x83, 4) => Op::And(wide_imm),
                (0x83, 1) => Op::Or(wide_imm),
                (0x0FBA, 6) => Op::Btr(imm),
                (0x0FBA, 5) => Op::Bts(imm),
                _ => return Err(Unsupported),
            }
        }
        0x21 => Op::And(Src::Reg(reg_n)),
        0x09 => Op::Or(Src::Reg(reg_n)),
        _ => return Err(Unsupported),
    };
    // The instruction must have been read whole.
    if i > bytes.len() {
        return Err(Unsupported);
    }
    Ok(Insn { op, len: i })
}

/// RFLAGS bits the emulated instructions change.
pub mod flags {
    pub const CF: u64 = 1 << 0;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const OF: u64 = 1 << 11;
    /// Those `cmp` sets.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// The flags of `cmp a, b` (`a - b`), in RFLAGS positions.
pub fn cmp_flags(a: u64, b: u64) -> u64 {
    let r = a.wrapping_sub(b);
    let mut f = 0;
    if a < b {
        f |= flags::CF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= flags::PF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= flags::AF;
    }
    if r == 0 {
        f |= flags::ZF;
    }
    if r >> 63 != 0 {
        f |= flags::SF;
    }
    if ((a ^ b) & (a ^ r)) >> 63 != 0 {
        f |= flags::OF;
    }
    f
}

/// The general registers as the emulation sees them (the hardware's numbering: 0 = `rax`,
/// 1 = `rcx`, 2 = `rdx`, 3 = `rbx`, 4 = `rsp`, … 15 = `r15`), and RFLAGS.
pub trait Regs {
    fn get(&self, n: u8) -> u64;
    fn set(&mut self, n: u8, value: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, value: u64);
}

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RBX: u8 = 3;

/// The flags of a logical operation's result `r` of `bits` bits (`and`, `or`): CF and OF
/// clear, SF, ZF and PF from the result (AF is undefined; left clear).
pub fn logic_flags(r: u64, bits: u32) -> u64 {
    let r = if bits == 64 { r } else { r & ((1 << bits) - 1) };
    let mut f = 0;
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= flags::PF;
    }
    if r == 0 {
        f |= flags::ZF;
    }
    if (r >> (bits - 1)) & 1 != 0 {
        f |= flags::SF;
    }
    f
}

/// What `op` writes to an entry holding `old`, with `regs` as they were: `Some(new)` to
/// write, `None` for a compare that failed. `offset` is the byte of the entry the fault
/// names (0 for the 8-byte forms, which the caller checks). The register effects are made in
/// `regs` at once; the caller keeps a copy to put back if the write is then refused (a
/// refused write is a #PF, which leaves the registers as they were).
pub fn apply(op: Op, old: u64, offset: u32, regs: &mut impl Regs) -> Option<u64> {
    let shift = 8 * (offset % 8);
    match op {
        Op::AndByte(imm) | Op::OrByte(imm) => {
            let byte = (old >> shift) as u8;
            let r = if matches!(op, Op::AndByte(_)) {
                byte & imm
            } else {
                byte | imm
            };
            regs.set_rflags((regs.rflags() & !flags::ARITH) | logic_flags(u64::from(r), 8));
            return Some((old & !(0xFF << shift)) | (u64::from(r) << shift));
        }
        Op::And(s) | Op::Or(s) => {
            let v = match s {
                Src::Reg(n) => regs.get(n),
                Src::Imm(v) => v,
            };
            let r = if matches!(op, Op::And(_)) {
                old & v
            } else {
                old | v
            };
            regs.set_rflags((regs.rflags() & !flags::ARITH) | logic_flags(r, 64));
            return Some(r);
        }
        Op::Btr(n) | Op::Bts(n) => {
            let bit = 1u64 << (n % 64);
            let cf = if old & bit != 0 { flags::CF } else { 0 };
            regs.set_rflags((regs.rflags() & !flags::CF) | cf);
            return Some(if matches!(op, Op::Btr(_)) {
                old & !bit
            } else {
                old | bit
            });
        }
        _ => {}
    }
    match op {
        Op::Mov(Src::Reg(n)) => Some(regs.get(n)),
        Op::Mov(Src::Imm(v)) => Some(v),
        Op::Xchg(n) => {
            let new = regs.get(n);
            regs.set(n, old);
            Some(new)
        }
        Op::Cmpxchg(n) => {
            let rax = regs.get(RAX);
            let f = cmp_flags(rax, old);
            regs.set_rflags((regs.rflags() & !flags::ARITH) | f);
            if rax == old {
                Some(regs.get(n))
            } else {
                regs.set(RAX, old);
                None
            }
        }
        Op::Cmpxchg8b => {
            let expected = (regs.get(RDX) << 32) | (regs.get(RAX) & 0xFFFF_FFFF);
            if expected == old {
                regs.set_rflags(regs.rflags() | flags::ZF);
                Some((regs.get(RCX) << 32) | (regs.get(RBX) & 0xFFFF_FFFF))
            } else {
                regs.set_rflags(regs.rflags() & !flags::ZF);
                regs.set(RAX, old & 0xFFFF_FFFF);
                regs.set(RDX, old >> 32);
                None
            }
        }
        Op::AndByte(_) | Op::OrByte(_) | Op::And(_) | Op::Or(_) | Op::Btr(_) | Op::Bts(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R([u64; 16], u64);

    impl Regs for R {
        fn get(&self, n: u8) -> u64 {
            self.0[usize::from(n)]
        }
        fn set(&mut self, n: u8, value: u64) {
            self.0[usize::from(n)] = value;
        }
        fn rflags(&self) -> u64 {
            self.1
        }
        fn set_rflags(&mut self, value: u64) {
            self.1 = value;
        }
    }

    fn d(bytes: &[u8]) -> Result<Insn, Unsupported> {
        decode(bytes)
    }

    #[test]
    fn decodes_the_forms_kernels_use() {
        // mov [rdi], rsi
        assert_eq!(
            d(&[0x48, 0x89, 0x37]),
            Ok(Insn {
                op: Op::Mov(Src::Reg(6)),
                len: 3
            })
        );
        // mov [r8 + 0x10], r9
        assert_eq!(
            d(&[0x4D, 0x89, 0x48, 0x10]),
            Ok(Insn {
                op: Op::Mov(Src::Reg(9)),
                len: 4
            })
        );
        // mov [rax + rcx*8 + 0x12345678], rdx
        assert_eq!(
            d(&[0x48, 0x89, 0x94, 0xC8, 0x78, 0x56, 0x34, 0x12]),
            Ok(Insn {
                op: Op::Mov(Src::Reg(2)),
                len: 8
            })
        );
        // mov [rip + 0x100], rbx
        assert_eq!(
            d(&[0x48, 0x89, 0x1D, 0x00, 0x01, 0x00, 0x00]),
            Ok(Insn {
                op: Op::Mov(Src::Reg(3)),
                len: 7
            })
        );
        // mov qword [rdi], -1 (imm32 sign-extended)
        assert_eq!(
            d(&[0x48, 0xC7, 0x07, 0xFF, 0xFF, 0xFF, 0xFF]),
            Ok(Insn {
                op: Op::Mov(Src::Imm(u64::MAX)),
                len: 7
            })
        );
        // mov qword [rsp + 8], 0 (SIB, disp8)
        assert_eq!(
            d(&[0x48, 0xC7, 0x44, 0x24, 0x08, 0, 0, 0, 0]),
            Ok(Insn {
                op: Op::Mov(Src::Imm(0)),
                len: 9
            })
        );
        // xchg [rdi], rax; lock xchg [rdi], r12
        assert_eq!(
            d(&[0x48, 0x87, 0x07]),
            Ok(Insn {
                op: Op::Xchg(0),
                len: 3
            })
        );
        assert_eq!(
            d(&[0xF0, 0x4C, 0x87, 0x27]),
            Ok(Insn {
                op: Op::Xchg(12),
                len: 4
            })
        );
        // lock cmpxchg [rdi], rsi
        assert_eq!(
            d(&[0xF0, 0x48, 0x0F, 0xB1, 0x37]),
            Ok(Insn {
                op: Op::Cmpxchg(6),
                len: 5
            })
        );
        // lock cmpxchg8b [rdi]
        assert_eq!(
            d(&[0xF0, 0x0F, 0xC7, 0x0F]),
            Ok(Insn {
                op: Op::Cmpxchg8b,
                len: 4
            })
        );
        // Trailing bytes are the next instruction's.
        assert_eq!(d(&[0x48, 0x89, 0x37, 0x90, 0x90]).map(|i| i.len), Ok(3));
    }

    #[test]
    fn linux_bit_operations() {
        // ds; and byte [r15], 0xfd (clear_bit(_PAGE_BIT_RW), UP-patched lock).
        assert_eq!(
            d(&[0x3E, 0x41, 0x80, 0x27, 0xFD]),
            Ok(Insn {
                op: Op::AndByte(0xFD),
                len: 5
            })
        );
        // lock or byte [rdi+1], 0x08; lock btr qword [rdi], 5; and [rdi], rax; or [rdi], -2
        assert_eq!(
            d(&[0xF0, 0x80, 0x4F, 0x01, 0x08]).map(|i| i.op),
            Ok(Op::OrByte(8))
        );
        assert_eq!(
            d(&[0xF0, 0x48, 0x0F, 0xBA, 0x37, 0x05]).map(|i| i.op),
            Ok(Op::Btr(5))
        );
        assert_eq!(
            d(&[0x48, 0x21, 0x07]).map(|i| i.op),
            Ok(Op::And(Src::Reg(0)))
        );
        assert_eq!(
            d(&[0x48, 0x83, 0x0F, 0xFE]).map(|i| i.op),
            Ok(Op::Or(Src::Imm(u64::MAX - 1)))
        );
        assert_eq!(d(&[0x80, 0x07]), Err(Unsupported), "cut short");
        assert_eq!(d(&[0x80, 0x07, 0x01]), Err(Unsupported), "add");
        let mut r = R([0; 16], 0);
        assert_eq!(
            apply(Op::AndByte(0xFD), 0x8000_0000_05e2_8067, 0, &mut r),
            Some(0x8000_0000_05e2_8065)
        );
        assert_eq!(
            apply(Op::OrByte(0x80), 0x0000_0000_0000_0001, 7, &mut r),
            Some(0x8000_0000_0000_0001)
        );
        assert_eq!(r.1 & flags::SF, flags::SF);
        assert_eq!(apply(Op::Btr(5), 0x67, 0, &mut r), Some(0x47));
        assert_eq!(r.1 & flags::CF, flags::CF);
        assert_eq!(apply(Op::Bts(5), 0x47, 0, &mut r), Some(0x67));
        assert_eq!(r.1 & flags::CF, 0);
        r.0[0] = 0xF0;
        assert_eq!(apply(Op::And(Src::Reg(0)), 0x67, 0, &mut r), Some(0x60));
        assert!(Op::AndByte(1).is_byte() && !Op::Btr(1).is_byte());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            &[0x89, 0x37][..],               // 32-bit mov
            &[0x66, 0x48, 0x89, 0x37],       // operand-size prefix
            &[0x48, 0x89, 0xF7],             // register destination
            &[0x48, 0x01, 0x37],             // add
            &[0x48, 0x0F, 0xC7, 0x0F],       // cmpxchg16b
            &[0x48, 0xC7, 0x0F, 0, 0, 0, 0], // C7 /1
            &[0xF0, 0x48, 0x89, 0x37],       // lock mov (#UD on hardware)
            &[0x48, 0x89],                   // cut short
            &[0x48, 0xC7, 0x07, 0xFF, 0xFF], // immediate cut short
            &[0x48, 0x89, 0x94, 0xC8, 0x78], // displacement cut short
            &[0x2E, 0x48, 0x89, 0x37],       // segment prefix
            &[0x48, 0x48, 0x89, 0x37],       // two REX
            &[],
        ] {
            assert_eq!(d(bad), Err(Unsupported), "{bad:x?}");
        }
        // Never longer than 15 bytes, whatever follows.
        let mut long = [0x90u8; 32];
        long[..3].copy_from_slice(&[0x48, 0x89, 0x37]);
        assert_eq!(d(&long).map(|i| i.len), Ok(3));
    }

    #[test]
    fn effects() {
        let mut r = R([0; 16], 0x202);
        r.0[6] = 0x1111;
        assert_eq!(apply(Op::Mov(Src::Reg(6)), 5, 0, &mut r), Some(0x1111));
        assert_eq!(apply(Op::Xchg(6), 5, 0, &mut r), Some(0x1111));
        assert_eq!(r.0[6], 5);
        // cmpxchg: equal writes and sets ZF; unequal loads rax and clears ZF.
        r.0[0] = 7;
        r.0[6] = 9;
        assert_eq!(apply(Op::Cmpxchg(6), 7, 0, &mut r), Some(9));
        assert_ne!(r.1 & flags::ZF, 0);
        assert_eq!(apply(Op::Cmpxchg(6), 8, 0, &mut r), None);
        assert_eq!((r.0[0], r.1 & flags::ZF), (8, 0));
        assert_eq!(r.1 & flags::CF, flags::CF, "7 < 8 borrows");
        assert_eq!(r.1 & 0x202, 0x202, "other flags kept");
        // cmpxchg8b on edx:eax / ecx:ebx.
        let mut r = R([0; 16], 0);
        r.0[RAX as usize] = 0xFFFF_FFFF_0000_0001; // upper half ignored
        r.0[RDX as usize] = 0x2;
        r.0[RBX as usize] = 0x3;
        r.0[RCX as usize] = 0x4;
        assert_eq!(
            apply(Op::Cmpxchg8b, 0x2_0000_0001, 0, &mut r),
            Some(0x4_0000_0003)
        );
        assert_ne!(r.1 & flags::ZF, 0);
        assert_eq!(apply(Op::Cmpxchg8b, 0x5_0000_0006, 0, &mut r), None);
        assert_eq!((r.0[0], r.0[2], r.1 & flags::ZF), (6, 5, 0));
    }

    #[test]
    fn cmp_flags_match_the_hardware_rules() {
        assert_eq!(cmp_flags(5, 5), flags::ZF | flags::PF);
        assert_eq!(
            cmp_flags(0, 1) & (flags::CF | flags::SF),
            flags::CF | flags::SF
        );
        // i64::MIN - 1 overflows.
        assert_ne!(cmp_flags(1 << 63, 1) & flags::OF, 0);
        assert_eq!(cmp_flags(0x10, 0x01) & flags::AF, flags::AF);
    }
}
