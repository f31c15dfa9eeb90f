//! The stack a Linux x86-64 program starts on, as the dom0 kernel builds it
//! for each process it runs (DESIGN.md §7).
//!
//! From `rsp` upwards, as the System V x86-64 ABI and Linux lay it out:
//! `argc`; the `argv` pointers and a null; the `envp` pointers and a null;
//! the auxiliary vector as (type, value) pairs ending with `AT_NULL`; then
//! the strings and the 16 random bytes `AT_RANDOM` points at. `rsp` is
//! 16-byte aligned. musl's start code reads exactly this: it finds its TLS
//! template through `AT_PHDR`/`AT_PHNUM`, the page size through
//! `AT_PAGESZ` and its stack-protector seed through `AT_RANDOM`.
//!
//! Pure computation over byte strings, so it is tested on the host; the
//! kernel copies [`StackImage::bytes`] to `[rsp, top)` of the new process.

use alloc::vec::Vec;

/// End of the auxiliary vector.
pub const AT_NULL: u64 = 0;
/// Address of the program headers.
pub const AT_PHDR: u64 = 3;
/// Size of one program header.
pub const AT_PHENT: u64 = 4;
/// Number of program headers.
pub const AT_PHNUM: u64 = 5;
/// The page size.
pub const AT_PAGESZ: u64 = 6;
/// The program's entry point.
pub const AT_ENTRY: u64 = 9;
/// Real, effective user and group ids.
pub const AT_UID: u64 = 11;
/// Effective user id.
pub const AT_EUID: u64 = 12;
/// Real group id.
pub const AT_GID: u64 = 13;
/// Effective group id.
pub const AT_EGID: u64 = 14;
/// Whether the program runs with raised privilege (0: no).
pub const AT_SECURE: u64 = 23;
/// Address of 16 random bytes.
pub const AT_RANDOM: u64 = 25;
/// The address of the vDSO's ELF header (Linux `AT_SYSINFO_EHDR`).
pub const AT_SYSINFO_EHDR: u64 = 33;

/// Most bytes the arguments, environment and vector may take together, as
/// Linux's default `ARG_MAX` (a quarter of an 8 MiB stack).
pub const MAX_STACK_IMAGE: usize = 2 * 1024 * 1024;

/// Why no stack could be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackError {
    /// An argument or environment string contains a NUL byte (`EINVAL`).
    NulInString,
    /// Everything together is larger than [`MAX_STACK_IMAGE`] (`E2BIG`).
    TooBig,
    /// `top` is not 16-byte aligned or too low for the image.
    BadTop,
    /// The caller passed `AT_NULL` or `AT_RANDOM`, which this module adds.
    ReservedAux(u64),
}

/// The initial stack of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImage {
    /// The stack pointer to start the program with (16-byte aligned).
    pub rsp: u64,
    /// The bytes of `[rsp, top)`.
    pub bytes: Vec<u8>,
}

/// Builds the stack for a program given its arguments, environment and
/// auxiliary vector (without `AT_RANDOM` and `AT_NULL`, which are added),
/// ending at `top` (16-byte aligned, exclusive).
pub fn build(
    top: u64,
    argv: &[&[u8]],
    envp: &[&[u8]],
    aux: &[(u64, u64)],
    random: [u8; 16],
) -> Result<StackImage, StackError> {
    if !top.is_multiple_of(16) {
        return Err(StackError::BadTop);
    }
    if let Some(&(t, _)) = aux.iter().find(|(t, _)| *t == AT_NULL || *t == AT_RANDOM) {
        return Err(StackError::ReservedAux(t));
    }
    if argv.iter().chain(envp).any(|s| s.contains(&0)) {
        return Err(StackError::NulInString);
    }
    // The string area: random bytes first (at the top), then the strings.
    let strings: usize = argv
        .iter()
        .chain(envp)
        .try_fold(16usize, |acc, s| acc.checked_add(s.len())?.checked_add(1))
        .ok_or(StackError::TooBig)?;
    let words = 1 + (argv.len() + 1) + (envp.len() + 1) + 2 * (aux.len() + 2);
    let vector = words.checked_mul(8).ok_or(StackError::TooBig)?;
    let string_area = strings.next_multiple_of(16);
    let total = (string_area + vector).next_multiple_of(16);
    if total > MAX_STACK_IMAGE {
        return Err(StackError::TooBig);
    }
    let rsp = top.checked_sub(total as u64).ok_or(StackError::BadTop)?;
    let mut bytes = alloc::vec![0u8; total];

    // Strings, placed from the start of the string area upwards.
    let area_start = total - string_area;
    let mut at = area_start;
    let random_va = rsp + at as u64;
    bytes[at..at + 16].copy_from_slice(&random);
    at += 16;
    let mut place = |s: &[u8]| {
        let va = rsp + at as u64;
        bytes[at..at + s.len()].copy_from_slice(s);
        at += s.len() + 1; // the NUL is already there
        va
    };
    let argv_va: Vec<u64> = argv.iter().map(|s| place(s)).collect();
    let envp_va: Vec<u64> = envp.iter().map(|s| place(s)).collect();

    // The vector, from rsp upwards.
    let mut words_out: Vec<u64> = Vec::with_capacity(words);
    words_out.push(argv.len() as u64);
    words_out.extend(&argv_va);
    words_out.push(0);
    words_out.extend(&envp_va);
    words_out.push(0);
    for &(t, v) in aux {
        words_out.extend([t, v]);
    }
    words_out.extend([AT_RANDOM, random_va, AT_NULL, 0]);
    for (i, w) in words_out.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    Ok(StackImage { rsp, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use proptest::prelude::*;

    /// Reads the image back the way musl's start code does.
    struct Parsed {
        argv: Vec<Vec<u8>>,
        envp: Vec<Vec<u8>>,
        aux: Vec<(u64, u64)>,
    }

    fn parse(img: &StackImage) -> Parsed {
        let top = img.rsp + img.bytes.len() as u64;
        let word = |va: u64| {
            let o = (va - img.rsp) as usize;
            u64::from_le_bytes(img.bytes[o..o + 8].try_into().unwrap())
        };
        let string = |va: u64| {
            assert!(
                va >= img.rsp && va < top,
                "pointer {va:#x} outside the stack"
            );
            let o = (va - img.rsp) as usize;
            let len = img.bytes[o..].iter().position(|&b| b == 0).expect("NUL");
            img.bytes[o..o + len].to_vec()
        };
        let mut p = img.rsp;
        let argc = word(p);
        p += 8;
        let mut argv = vec![];
        for _ in 0..argc {
            argv.push(string(word(p)));
            p += 8;
        }
        assert_eq!(word(p), 0, "argv not null-terminated");
        p += 8;
        let mut envp = vec![];
        while word(p) != 0 {
            envp.push(string(word(p)));
            p += 8;
        }
        p += 8;
        let mut aux = vec![];
        loop {
            let (t, v) = (word(p), word(p + 8));
            p += 16;
            if t == AT_NULL {
                break;
            }
            aux.push((t, v));
        }
        Parsed { argv, envp, aux }
    }

    #[test]
    fn a_typical_program() {
        let top = 0x7fff_ffff_f000;
        let img = build(
            top,
            &[b"/bin/xl", b"list"],
            &[b"PATH=/bin", b"TERM=vt100"],
            &[(AT_PAGESZ, 4096), (AT_PHDR, 0x40_0040), (AT_PHNUM, 7)],
            [0xa5; 16],
        )
        .unwrap();
        assert_eq!(img.rsp % 16, 0);
        assert_eq!(img.rsp + img.bytes.len() as u64, top);
        let p = parse(&img);
        assert_eq!(p.argv, [b"/bin/xl".to_vec(), b"list".to_vec()]);
        assert_eq!(p.envp, [b"PATH=/bin".to_vec(), b"TERM=vt100".to_vec()]);
        assert_eq!(
            &p.aux[..3],
            &[(AT_PAGESZ, 4096), (AT_PHDR, 0x40_0040), (AT_PHNUM, 7)]
        );
        let (t, random_va) = p.aux[3];
        assert_eq!(t, AT_RANDOM);
        let o = (random_va - img.rsp) as usize;
        assert_eq!(&img.bytes[o..o + 16], &[0xa5; 16]);
    }

    #[test]
    fn refusals() {
        let top = 0x10_0000;
        assert_eq!(
            build(top + 8, &[], &[], &[], [0; 16]),
            Err(StackError::BadTop)
        );
        assert_eq!(
            build(64, &[b"x"], &[], &[], [0; 16]),
            Err(StackError::BadTop)
        );
        assert_eq!(
            build(top, &[b"a\0b"], &[], &[], [0; 16]),
            Err(StackError::NulInString)
        );
        assert_eq!(
            build(top, &[], &[b"A=\0"], &[], [0; 16]),
            Err(StackError::NulInString)
        );
        assert_eq!(
            build(top, &[], &[], &[(AT_RANDOM, 1)], [0; 16]),
            Err(StackError::ReservedAux(AT_RANDOM))
        );
        assert_eq!(
            build(top, &[], &[], &[(AT_NULL, 0)], [0; 16]),
            Err(StackError::ReservedAux(AT_NULL))
        );
        let big = vec![b'x'; MAX_STACK_IMAGE];
        assert_eq!(
            build(top << 8, &[&big], &[], &[], [0; 16]),
            Err(StackError::TooBig)
        );
    }

    #[test]
    fn no_arguments_at_all() {
        let img = build(0x8000, &[], &[], &[], [1; 16]).unwrap();
        let p = parse(&img);
        assert!(p.argv.is_empty() && p.envp.is_empty());
        assert_eq!(p.aux.len(), 1);
        assert_eq!(img.rsp % 16, 0);
    }

    proptest! {
        #[test]
        fn round_trip(
            argv in proptest::collection::vec("[a-zA-Z0-9=/ ._-]{0,40}", 0..12),
            envp in proptest::collection::vec("[A-Z_]{1,8}=[a-z0-9]{0,20}", 0..8),
            nr_aux in 0usize..6,
            top_pages in 16u64..1024,
        ) {
            let top = top_pages * 4096;
            let a: Vec<&[u8]> = argv.iter().map(|s: &String| s.as_bytes()).collect();
            let e: Vec<&[u8]> = envp.iter().map(|s: &String| s.as_bytes()).collect();
            let aux: Vec<(u64, u64)> = (0..nr_aux as u64).map(|i| (AT_PHDR + i, i * 3)).collect();
            let img = build(top, &a, &e, &aux, [7; 16]).unwrap();
            prop_assert_eq!(img.rsp % 16, 0);
            prop_assert_eq!(img.rsp + img.bytes.len() as u64, top);
            let p = parse(&img);
            prop_assert_eq!(p.argv, argv.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>());
            prop_assert_eq!(p.envp, envp.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>());
            prop_assert_eq!(&p.aux[..nr_aux], &aux[..]);
            prop_assert_eq!(p.aux[nr_aux].0, AT_RANDOM);
        }
    }
}
