//! Where a Linux program goes in a process's address space: the plan the
//! dom0 kernel follows to load a static ELF from its initrd (DESIGN.md §7).
//!
//! dom0 runs static programs built for `x86_64-unknown-linux-musl`: plain
//! executables (`ET_EXEC`) at their link addresses, or static PIEs
//! (`ET_DYN` without an interpreter, Rust's default for that target) at
//! [`PIE_BASE`]; musl's start code relocates a PIE itself. Programs that
//! need a dynamic loader are refused with a message that says how to build
//! them instead. The file is untrusted: every size and address is checked.

use alloc::vec::Vec;

use elf::ElfBytes;
use elf::abi;
use elf::endian::LittleEndian;

/// Where a static PIE is placed (Linux's base without randomisation).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// End of the user half the loader may use (exclusive), below the
/// non-canonical hole with a guard page.
pub const USER_END: u64 = 0x7fff_ffff_f000;
/// Lowest address a segment may use: page 0 stays unmapped so that null
/// pointers fault.
pub const USER_START: u64 = 0x1_0000;

const PAGE: u64 = 4096;

/// A PT_LOAD segment, after relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First virtual address (`p_vaddr` plus the load bias).
    pub vaddr: u64,
    /// Bytes in memory; those past `file_size` are zero.
    pub mem_size: u64,
    /// Offset of the bytes in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// Readable / writable / executable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Segment {
    /// The pages it covers: `[start, end)`, page-aligned.
    pub fn pages(&self) -> (u64, u64) {
        (
            self.vaddr & !(PAGE - 1),
            (self.vaddr + self.mem_size).next_multiple_of(PAGE),
        )
    }
}

/// How to lay out a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Added to every link address (0 for `ET_EXEC`).
    pub bias: u64,
    /// The entry point.
    pub entry: u64,
    /// The segments, in file order.
    pub segments: Vec<Segment>,
    /// Address of the program headers in memory (`AT_PHDR`).
    pub phdr: u64,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u64,
    /// Where the heap (`brk`) starts: the page after the highest segment.
    pub brk: u64,
}

/// Why a file is not a program dom0 can run. `Display` is the message the
/// shell prints after the program's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// Not an ELF file, or its headers are cut off or malformed.
    NotElf,
    /// ELF, but not 64-bit little-endian x86-64.
    WrongMachine,
    /// Neither an executable nor a position-independent executable.
    WrongType,
    /// It names a dynamic loader.
    Dynamic,
    /// No PT_LOAD segment.
    NoSegments,
    /// A segment is malformed: outside the file, larger in the file than in
    /// memory, misaligned, outside the user range or overlapping another.
    BadSegment,
    /// The program headers are not inside a loaded segment.
    PhdrNotLoaded,
    /// The entry point is not in an executable segment.
    BadEntry,
}

impl core::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotElf => "not an ELF program",
            Self::WrongMachine => "not a 64-bit x86-64 program",
            Self::WrongType => "not an executable ELF file",
            Self::Dynamic => {
                "dynamically linked; dom0 runs static programs (build for x86_64-unknown-linux-musl)"
            }
            Self::NoSegments => "has nothing to load",
            Self::BadSegment => "has a malformed or out-of-range segment",
            Self::PhdrNotLoaded => "does not load its program headers",
            Self::BadEntry => "has its entry point outside its code",
        })
    }
}

/// Plans the loading of `file`.
pub fn plan(file: &[u8]) -> Result<Plan, ProgramError> {
    let elf = ElfBytes::<LittleEndian>::minimal_parse(file).map_err(|_| ProgramError::NotElf)?;
    let eh = &elf.ehdr;
    if eh.class != elf::file::Class::ELF64 || eh.e_machine != abi::EM_X86_64 {
        return Err(ProgramError::WrongMachine);
    }
    let bias = match eh.e_type {
        abi::ET_EXEC => 0,
        abi::ET_DYN => PIE_BASE,
        _ => return Err(ProgramError::WrongType),
    };
    let phdrs = elf.segments().ok_or(ProgramError::NoSegments)?;
    let mut segments: Vec<Segment> = Vec::new();
    for ph in phdrs.iter() {
        match ph.p_type {
            abi::PT_INTERP => return Err(ProgramError::Dynamic),
            abi::PT_LOAD => {}
            _ => continue,
        }
        let file_end = ph
            .p_offset
            .checked_add(ph.p_filesz)
            .ok_or(ProgramError::BadSegment)?;
        let vaddr = ph
            .p_vaddr
            .checked_add(bias)
            .ok_or(ProgramError::BadSegment)?;
        let vend = vaddr
            .checked_add(ph.p_memsz)
            .ok_or(ProgramError::BadSegment)?;
        if file_end > file.len() as u64
            || ph.p_filesz > ph.p_memsz
            || ph.p_memsz == 0
            || ph.p_vaddr % PAGE != ph.p_offset % PAGE
            || vaddr < USER_START
            || vend.next_multiple_of(PAGE) > USER_END
        {
            return Err(ProgramError::BadSegment);
        }
        let seg = Segment {
            vaddr,
            mem_size: ph.p_memsz,
            file_offset: ph.p_offset,
            file_size: ph.p_filesz,
            read: ph.p_flags & abi::PF_R != 0,
            write: ph.p_flags & abi::PF_W != 0,
            exec: ph.p_flags & abi::PF_X != 0,
        };
        let (s, e) = seg.pages();
        if segments.iter().any(|o| {
            let (os, oe) = o.pages();
            s < oe && os < e
        }) {
            return Err(ProgramError::BadSegment);
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(ProgramError::NoSegments);
    }
    // The headers in memory: where PT_PHDR says, else where the segment
    // holding e_phoff in the file puts them.
    let phnum = u64::from(eh.e_phnum);
    let ph_bytes = phnum * u64::from(eh.e_phentsize);
    let phdr = match phdrs.iter().find(|p| p.p_type == abi::PT_PHDR) {
        Some(p) => p.p_vaddr.checked_add(bias),
        None => segments
            .iter()
            .find(|s| eh.e_phoff >= s.file_offset && eh.e_phoff < s.file_offset + s.file_size)
            .map(|s| s.vaddr + (eh.e_phoff - s.file_offset)),
    }
    .ok_or(ProgramError::PhdrNotLoaded)?;
    let inside = |start: u64, len: u64, need_exec: bool| {
        segments.iter().any(|s| {
            (!need_exec || s.exec)
                && start >= s.vaddr
                && start
                    .checked_add(len)
                    .is_some_and(|e| e <= s.vaddr + s.mem_size)
        })
    };
    if !inside(phdr, ph_bytes, false) {
        return Err(ProgramError::PhdrNotLoaded);
    }
    let entry = eh.e_entry.checked_add(bias).ok_or(ProgramError::BadEntry)?;
    if !inside(entry, 1, true) {
        return Err(ProgramError::BadEntry);
    }
    let brk = segments
        .iter()
        .map(|s| s.pages().1)
        .max()
        .unwrap_or(USER_START);
    Ok(Plan {
        bias,
        entry,
        segments,
        phdr,
        phnum,
        brk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A minimal ELF64 with the given type and (type, flags, offset, vaddr,
    /// filesz, memsz) program headers, headers at offset 64, 4 KiB of file.
    fn elf(e_type: u16, entry: u64, phdrs: &[(u32, u32, u64, u64, u64, u64)]) -> Vec<u8> {
        let mut f = vec![0u8; 8192];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&e_type.to_le_bytes());
        f[18..20].copy_from_slice(&abi::EM_X86_64.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(t, fl, off, va, fsz, msz)) in phdrs.iter().enumerate() {
            let p = 64 + i * 56;
            f[p..p + 4].copy_from_slice(&t.to_le_bytes());
            f[p + 4..p + 8].copy_from_slice(&fl.to_le_bytes());
            f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            f[p + 16..p + 24].copy_from_slice(&va.to_le_bytes());
            f[p + 24..p + 32].copy_from_slice(&va.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&fsz.to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&msz.to_le_bytes());
            f[p + 48..p + 56].copy_from_slice(&PAGE.to_le_bytes());
        }
        f
    }

    const RX: u32 = abi::PF_R | abi::PF_X;
    const RW: u32 = abi::PF_R | abi::PF_W;

    /// A typical static executable: text with the headers, then data+bss.
    fn exec() -> Vec<u8> {
        elf(
            abi::ET_EXEC,
            0x40_0100,
            &[
                (abi::PT_LOAD, RX, 0, 0x40_0000, 4096, 4096),
                (abi::PT_LOAD, RW, 4096, 0x40_1000, 100, 0x3000),
            ],
        )
    }

    #[test]
    fn static_executable() {
        let p = plan(&exec()).unwrap();
        assert_eq!(p.bias, 0);
        assert_eq!(p.entry, 0x40_0100);
        assert_eq!(p.phdr, 0x40_0040);
        assert_eq!(p.phnum, 2);
        assert_eq!(p.brk, 0x40_4000);
        assert_eq!(p.segments.len(), 2);
        assert!(p.segments[0].exec && !p.segments[0].write);
        assert!(p.segments[1].write && !p.segments[1].exec);
        assert_eq!(p.segments[1].pages(), (0x40_1000, 0x40_4000));
    }

    #[test]
    fn static_pie_with_pt_phdr() {
        let f = elf(
            abi::ET_DYN,
            0x200,
            &[
                (abi::PT_PHDR, abi::PF_R, 64, 0x40, 112 + 56, 112 + 56),
                (abi::PT_LOAD, RX, 0, 0, 4096, 4096),
                (abi::PT_LOAD, RW, 4096, 0x1000, 8, 16),
            ],
        );
        // Page 0 of a PIE is fine: it lands at PIE_BASE.
        let p = plan(&f).unwrap();
        assert_eq!(p.bias, PIE_BASE);
        assert_eq!(p.entry, PIE_BASE + 0x200);
        assert_eq!(p.phdr, PIE_BASE + 0x40);
        assert_eq!(p.segments[0].vaddr, PIE_BASE);
        assert_eq!(p.brk, PIE_BASE + 0x2000);
    }

    #[test]
    fn refusals() {
        assert_eq!(plan(b"#!/bin/sh\n"), Err(ProgramError::NotElf));
        assert_eq!(plan(&exec()[..40]), Err(ProgramError::NotElf));
        let mut f = exec();
        f[18] = 3; // EM_386
        assert_eq!(plan(&f), Err(ProgramError::WrongMachine));
        let mut f = exec();
        f[16] = 1; // ET_REL
        assert_eq!(plan(&f), Err(ProgramError::WrongType));
        let interp = elf(
            abi::ET_DYN,
            0x100,
            &[
                (abi::PT_INTERP, abi::PF_R, 200, 200, 20, 20),
                (abi::PT_LOAD, RX, 0, 0, 4096, 4096),
            ],
        );
        let e = plan(&interp).unwrap_err();
        assert_eq!(e, ProgramError::Dynamic);
        assert!(alloc::format!("{e}").contains("x86_64-unknown-linux-musl"));
        assert_eq!(
            plan(&elf(abi::ET_EXEC, 0, &[])),
            Err(ProgramError::NoSegments)
        );
    }

    #[test]
    fn hostile_segments() {
        let bad = |segs: &[(u32, u32, u64, u64, u64, u64)]| {
            plan(&elf(abi::ET_EXEC, 0x40_0100, segs)).unwrap_err()
        };
        let text = (abi::PT_LOAD, RX, 0, 0x40_0000, 4096, 4096);
        // Past the end of the file.
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, 0x40_0000, 9000, 9000)]),
            ProgramError::BadSegment
        );
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, u64::MAX, 0x40_0000, 2, 2)]),
            ProgramError::BadSegment
        );
        // More in the file than in memory.
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, 0x40_0000, 4096, 10)]),
            ProgramError::BadSegment
        );
        // Offset and address not congruent modulo the page size.
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, 0x40_0010, 4096, 4096)]),
            ProgramError::BadSegment
        );
        // In page 0, in the hole or the kernel half, or wrapping.
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, 0, 4096, 4096)]),
            ProgramError::BadSegment
        );
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, USER_END, 4096, 4096)]),
            ProgramError::BadSegment
        );
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, 0xffff_8000_0000_0000, 4096, 4096)]),
            ProgramError::BadSegment
        );
        assert_eq!(
            bad(&[(abi::PT_LOAD, RX, 0, 0x40_0000, 4096, u64::MAX)]),
            ProgramError::BadSegment
        );
        // Overlapping pages.
        assert_eq!(
            bad(&[
                text,
                (abi::PT_LOAD, RW, 4096, 0x40_0000 + 4096 - 4096, 8, 8)
            ]),
            ProgramError::BadSegment
        );
        // Entry in a data segment.
        let f = elf(
            abi::ET_EXEC,
            0x40_1000,
            &[text, (abi::PT_LOAD, RW, 4096, 0x40_1000, 8, 8)],
        );
        assert_eq!(plan(&f), Err(ProgramError::BadEntry));
        // Headers not loaded (the only segment starts past them).
        let f = elf(
            abi::ET_EXEC,
            0x40_1000,
            &[(abi::PT_LOAD, RX, 4096, 0x40_1000, 8, 8)],
        );
        assert_eq!(plan(&f), Err(ProgramError::PhdrNotLoaded));
    }

    #[test]
    fn never_panics_on_garbage() {
        let base = exec();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut f = base.clone();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % 200) as usize;
                f[i] = (seed >> 32) as u8;
            }
            if let Ok(p) = plan(&f) {
                for s in &p.segments {
                    assert!(s.vaddr >= USER_START && s.vaddr + s.mem_size <= USER_END);
                    assert!(s.file_offset + s.file_size <= f.len() as u64);
                }
            }
        }
    }
}
