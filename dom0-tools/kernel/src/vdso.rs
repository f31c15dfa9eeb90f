//! The vDSO: a one-page ELF shared object mapped into every process, exporting
//! `__vdso_clock_gettime`, so that musl's `clock_gettime` reads the clock in ring 3 rather
//! than making a system call (what Linux does; musl `src/time/clock_gettime.c` finds the
//! symbol through `AT_SYSINFO_EHDR`, `src/internal/vdso.c`).
//!
//! The clock is the hypervisor's: the vCPU's `vcpu_time_info` in `shared_info` (guest-abi
//! `shared_info`: system time is `system_time + ((tsc - tsc_timestamp) << tsc_shift) *
//! tsc_to_system_mul >> 32`, read under the `version` counter) and, for the wall clock,
//! `wc_*` of the same page. The process sees `shared_info` read-only, one page above the
//! vDSO ("vvar", as Linux calls its page), and reads the TSC with `rdtsc` (the hypervisor
//! leaves CR4.TSD clear). The page holds event bits and times only, which the process may
//! read: nothing in it is a secret of dom0's.
//!
//! The object is written in assembler directives below, headers included, so one
//! page-sized blob is the whole of it: an ELF header, a `PT_LOAD` and a `PT_DYNAMIC`
//! program header, the dynamic section (`DT_HASH`, `DT_STRTAB`, `DT_SYMTAB`), a SysV hash
//! table, two symbols (the null one and `__vdso_clock_gettime`), the strings and the code.
//! Virtual addresses inside it are offsets from its start (musl computes the load bias from
//! `PT_LOAD`). No version table: musl then takes the symbol without checking versions. Clocks
//! the code does not serve return `-ENOSYS`, and musl falls back to the system call.
//!
//! Both pages sit in the gap between the top of the mmap region and the stack, where no
//! system call of the process can map, unmap or change anything: the process can neither
//! remove them nor write them.

use core::mem::offset_of;

use guest_abi::shared_info::{SharedInfo, VcpuInfo, VcpuTimeInfo};
use spin::Once;
use xenia_dom0::vm::MMAP_TOP;
use xenia_guest_rt::boot::start_info;
use xenia_guest_rt::mm;

use crate::uspace::{Uspace, leaf_flags};

/// Where the vDSO is mapped in every process; `shared_info` follows it.
pub const BASE: u64 = MMAP_TOP;
/// Where `shared_info` is mapped, read-only.
const VVAR: u64 = BASE + 4096;

/// The vCPU whose time the code reads: processes run on dom0's first vCPU (the shell's).
const VCPU: usize = 0;
/// Offset of that vCPU's `vcpu_time_info` in `shared_info`.
const TIME: usize = offset_of!(SharedInfo, vcpu_info)
    + VCPU * core::mem::size_of::<VcpuInfo>()
    + offset_of!(VcpuInfo, time);

core::arch::global_asm!(
    r#"
    .pushsection .rodata.xenia_vdso, "a"
    .balign 4096
    .globl xenia_vdso_image
xenia_vdso_image:
.Lvdso:
    /* ELF header (System V gABI, ELF-64 Object File Format). */
    .byte 0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0    /* ELFCLASS64, ELFDATA2LSB, EV_CURRENT */
    .quad 0
    .short 3                                    /* ET_DYN */
    .short 62                                   /* EM_X86_64 */
    .long 1                                     /* EV_CURRENT */
    .quad .Lcode - .Lvdso                       /* e_entry */
    .quad .Lphdrs - .Lvdso                      /* e_phoff */
    .quad 0                                     /* e_shoff: no sections */
    .long 0                                     /* e_flags */
    .short 64, 56, 2                            /* e_ehsize, e_phentsize, e_phnum */
    .short 64, 0, 0                             /* e_shentsize, e_shnum, e_shstrndx */
.Lphdrs:
    .long 1, 5                                  /* PT_LOAD, PF_R | PF_X */
    .quad 0, 0, 0                               /* offset, vaddr, paddr */
    .quad 4096, 4096, 4096                      /* filesz, memsz, align */
    .long 2, 4                                  /* PT_DYNAMIC, PF_R */
    .quad .Ldynamic - .Lvdso, .Ldynamic - .Lvdso, .Ldynamic - .Lvdso
    .quad .Ldynamic_end - .Ldynamic, .Ldynamic_end - .Ldynamic, 8
.Ldynamic:
    .quad 4, .Lhash - .Lvdso                    /* DT_HASH */
    .quad 5, .Lstrings - .Lvdso                 /* DT_STRTAB */
    .quad 6, .Lsymbols - .Lvdso                 /* DT_SYMTAB */
    .quad 10, .Lstrings_end - .Lstrings         /* DT_STRSZ */
    .quad 11, 24                                /* DT_SYMENT */
    .quad 0, 0                                  /* DT_NULL */
.Ldynamic_end:
.Lhash:
    .long 1, 2                                  /* nbucket, nchain (= symbols) */
    .long 1                                     /* bucket 0: symbol 1 */
    .long 0, 0                                  /* chains end */
    .balign 8
.Lsymbols:
    .quad 0, 0, 0                               /* the null symbol */
    .long .Lname_cgt - .Lstrings                /* st_name */
    .byte 0x12, 0                               /* STB_GLOBAL | STT_FUNC, STV_DEFAULT */
    .short 1                                    /* st_shndx: defined */
    .quad .Lcode - .Lvdso, .Lcode_end - .Lcode  /* st_value, st_size */
.Lstrings:
    .byte 0
.Lname_cgt:
    .asciz "__vdso_clock_gettime"
.Lstrings_end:

    /* int __vdso_clock_gettime(clockid_t edi, struct timespec *rsi) */
    .balign 16
.Lcode:
    cmp edi, 7
    ja 1f
    mov eax, 1
    mov ecx, edi
    shl eax, cl
    test eax, 0xd2          /* MONOTONIC, MONOTONIC_RAW, MONOTONIC_COARSE, BOOTTIME */
    jnz 2f
    test eax, 0x21          /* REALTIME, REALTIME_COARSE */
    jnz 3f
1:  mov rax, -38            /* -ENOSYS: musl makes the system call */
    ret
2:  call .Lsystem_time
    jmp .Lstore
3:  lea r8, [rip + .Lvdso + 4096 + {wc_version}]
4:  mov edi, [r8]
    test edi, 1
    jnz 5f
    mov r11d, [r8 + {wc_sec} - {wc_version}]
    mov eax, [r8 + {wc_sec_hi} - {wc_version}]
    shl rax, 32
    or r11, rax
    imul r11, r11, 1000000000
    mov eax, [r8 + {wc_nsec} - {wc_version}]
    add r11, rax
    cmp edi, [r8]
    jne 4b
    call .Lsystem_time
    add rax, r11
.Lstore:
    xor edx, edx
    mov ecx, 1000000000
    div rcx
    mov [rsi], rax
    mov [rsi + 8], rdx
    xor eax, eax
    ret
5:  pause
    jmp 4b

    /* rax = system time in nanoseconds; clobbers rcx, rdx, r8, r9, r10. */
.Lsystem_time:
    lea r8, [rip + .Lvdso + 4096 + {time}]
6:  mov r9d, [r8 + {version}]
    test r9d, 1
    jnz 8f
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, [r8 + {tsc_timestamp}]
    movsx ecx, byte ptr [r8 + {tsc_shift}]
    test ecx, ecx
    js 7f
    shl rax, cl
    jmp 9f
7:  neg ecx
    shr rax, cl
9:  mov r10d, [r8 + {mul}]
    mul r10
    shrd rax, rdx, 32
    add rax, [r8 + {system_time}]
    cmp r9d, [r8 + {version}]
    jne 6b
    ret
8:  pause
    jmp 6b
.Lcode_end:
    .skip 4096 - (. - .Lvdso)
    .popsection
    "#,
    wc_version = const offset_of!(SharedInfo, wc_version),
    wc_sec = const offset_of!(SharedInfo, wc_sec),
    wc_nsec = const offset_of!(SharedInfo, wc_nsec),
    wc_sec_hi = const offset_of!(SharedInfo, wc_sec_hi),
    time = const TIME,
    version = const offset_of!(VcpuTimeInfo, version),
    tsc_timestamp = const offset_of!(VcpuTimeInfo, tsc_timestamp),
    system_time = const offset_of!(VcpuTimeInfo, system_time),
    mul = const offset_of!(VcpuTimeInfo, tsc_to_system_mul),
    tsc_shift = const offset_of!(VcpuTimeInfo, tsc_shift),
);

unsafe extern "C" {
    /// The page the assembly above lays out.
    static xenia_vdso_image: [u64; mm::ENTRIES];
}

/// The frame holding the vDSO, shared read-only by every process; `None` if it could not be
/// made (processes then make the system call).
static FRAME: Once<Option<u64>> = Once::new();

/// Makes the vDSO frame. Call once at boot, after the frame pool.
pub fn init() {
    FRAME.call_once(|| {
        let mfn = crate::frames::alloc_one()?;
        // SAFETY: the image is a page of initialised read-only data, never written.
        let image = unsafe { &*core::ptr::addr_of!(xenia_vdso_image) };
        // SAFETY: a pool frame, mapped nowhere; it is never freed (every process maps it).
        match unsafe { mm::fill_frame(mfn, |page| page.copy_from_slice(image)) } {
            Ok(()) => Some(mfn),
            Err(_) => {
                crate::frames::free(&[mfn]);
                None
            }
        }
    });
}

/// Maps the vDSO and `shared_info` into `space` (whose process's areas leave the two pages
/// free); returns the vDSO's address for `AT_SYSINFO_EHDR`, or `None` when there is no vDSO
/// to offer (the process then makes the system call, as without one).
pub fn map(space: &mut Uspace) -> Option<u64> {
    let vdso = (*FRAME.get()?)?;
    if space.is_mapped(BASE) || space.is_mapped(VVAR) {
        // A program whose segments lie there goes without.
        return None;
    }
    if xenia_guest_rt::smp::this_vcpu() != VCPU
        || !core::ptr::eq(
            xenia_guest_rt::smp::info_of(VCPU),
            &xenia_guest_rt::boot::shared().vcpu_info[VCPU],
        )
    {
        // The code reads the first vCPU's slot of shared_info; elsewhere it would read a
        // time the hypervisor no longer keeps.
        return None;
    }
    let shared = start_info().shared_info >> 12;
    space
        .map_foreign(BASE, vdso, leaf_flags(false, true))
        .ok()?;
    space
        .map_foreign(VVAR, shared, leaf_flags(false, false))
        .ok()?;
    Some(BASE)
}
