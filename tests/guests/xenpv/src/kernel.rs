//! The kernel proper: entry, notes, trap stubs, user-mode snippets and the checks.
//!
//! Every exception handler, the event, syscall and failsafe callbacks share one stub shape:
//! record the vector, `rax` and the ten words at the stack pointer (Xen's bounce frame:
//! `rcx, r11, [error,] rip, cs, rflags, rsp, ss`), mask events, and resume the check that was
//! running (`xp_run`'s recovery point). A check runs a snippet with `xp_run` and looks at what
//! was recorded.

use core::arch::{asm, global_asm};
use core::fmt::Write;

use guest_abi::elfnote::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION,
    XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET,
    XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};
use guest_abi::hypercall as nr;
use guest_abi::memory::{
    MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MmuextOp, UVMF_INVLPG,
};
use guest_abi::selectors::{
    FLAT_KERNEL_CS64, FLAT_KERNEL_SS64, FLAT_USER_CS64, FLAT_USER_SS64, KERNEL_DS, SEGBASE_FS,
    SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL,
};
use guest_abi::start_info::StartInfo;
use guest_abi::trap::{IretContext, TrapInfo};

/// Where pseudo-physical frame 0 is mapped (linker.ld).
const VIRT_BASE: u64 = 0xFFFF_FFFF_8000_0000;
/// Where the user page table maps the user code page: L4 slot 1, which the kernel's table
/// leaves empty.
const USER_VA: u64 = 0x80_0000_0000;
/// Pseudo-vectors the stubs record for the callbacks.
const VEC_EVENT: u64 = 0x100;
const VEC_SYSCALL: u64 = 0x101;
const VEC_FAILSAFE: u64 = 0x102;
/// The vector `xp_syscall_alt` records (a second syscall callback).
const VEC_SYSCALL_ALT: u64 = 0x103;
const PTE_P: u64 = 1;
const PTE_RW: u64 = 2;
const PTE_U: u64 = 4;
const RFLAGS_IF: u64 = 1 << 9;
const PF_USER: u64 = 1 << 2;
const PF_PRESENT: u64 = 1;
/// The kernel's GS marker (its GS base points at `KERNEL_MARK`), and the user one (at the end
/// of the user code page).
const KERNEL_MARK_VALUE: u64 = 0x4B45_524E_454C_4753;
const USER_MARK_VALUE: u64 = 0x5553_4552_4753_0000;
const USER_MARK_OFFSET: u64 = 0xFF8;

global_asm!(
    ".macro XP_NOTE type",
    "    .balign 4",
    "    .long 4",
    "    .long 7f - 6f",
    "    .long \\type",
    "    .asciz \"Xen\"",
    "6:",
    ".endm",
    ".macro XP_NOTE_END",
    "7:",
    "    .balign 4",
    ".endm",
    ".pushsection .note.Xen, \"a\", @note",
    "XP_NOTE {guest_os}",
    "    .asciz \"xenia-xenpv-test\"",
    "XP_NOTE_END",
    "XP_NOTE {guest_version}",
    "    .asciz \"0.1\"",
    "XP_NOTE_END",
    "XP_NOTE {xen_version}",
    "    .asciz \"xen-3.0\"",
    "XP_NOTE_END",
    "XP_NOTE {loader}",
    "    .asciz \"generic\"",
    "XP_NOTE_END",
    // As Linux's: Xen's PV ABI, page-table writes emulated.
    "XP_NOTE {features}",
    "    .asciz \"!writable_page_tables|pae_pgdir_above_4gb\"",
    "XP_NOTE_END",
    "XP_NOTE {virt_base}",
    "    .quad {virt_base_value}",
    "XP_NOTE_END",
    "XP_NOTE {paddr_offset}",
    "    .quad 0",
    "XP_NOTE_END",
    "XP_NOTE {entry}",
    "    .quad _start",
    "XP_NOTE_END",
    "XP_NOTE {hypercall_page}",
    "    .quad xp_hypercall_page",
    "XP_NOTE_END",
    ".popsection",
    ".pushsection .text.hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".globl xp_hypercall_page",
    "xp_hypercall_page:",
    "    .fill 4096, 1, 0",
    ".popsection",
    guest_os = const XEN_ELFNOTE_GUEST_OS,
    guest_version = const XEN_ELFNOTE_GUEST_VERSION,
    xen_version = const XEN_ELFNOTE_XEN_VERSION,
    loader = const XEN_ELFNOTE_LOADER,
    features = const XEN_ELFNOTE_FEATURES,
    virt_base = const XEN_ELFNOTE_VIRT_BASE,
    virt_base_value = const VIRT_BASE,
    paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    entry = const XEN_ELFNOTE_ENTRY,
    hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
);

// Stacks and the stubs' record. 64 bytes past each stack top stay mapped so that a stub's
// ten-word copy of a frame at the very top reads plain memory.
global_asm!(
    ".pushsection .bss.xp, \"aw\", @nobits",
    ".balign 16",
    ".globl xp_trap_vector, xp_trap_rax, xp_trap_words, xp_trap_regs, xp_trap_rsp",
    ".globl xp_recovery_rsp, xp_recovery_rip",
    ".globl xp_vcpu_info, xp_boot_stack_top, xp_kernel_stack_top",
    "xp_trap_vector: .skip 8",
    "xp_trap_rax: .skip 8",
    "xp_trap_words: .skip 80",
    // rbx, rcx, rdx, rsi, rdi, rbp, r8..r15 as the stub found them.
    "xp_trap_regs: .skip 112",
    // rsp as the stub found it (where the frame it copies is).
    "xp_trap_rsp: .skip 8",
    "xp_recovery_rsp: .skip 8",
    "xp_recovery_rip: .skip 8",
    "xp_vcpu_info: .skip 8",
    ".balign 16",
    // 64 KiB: the SMP section keeps a few 5 KiB vcpu_guest_contexts on it.
    ".skip 65536",
    "xp_boot_stack_top:",
    ".skip 64",
    ".skip 16384",
    "xp_kernel_stack_top:",
    ".skip 64",
    ".popsection",
);

// Entry (kernel mode, ring 3, rsi = start_info), the stubs, `xp_run` and the snippets.
global_asm!(
    ".pushsection .text.entry, \"ax\", @progbits",
    ".globl _start",
    "_start:",
    "    lea rsp, [rip + xp_boot_stack_top]",
    "    mov rdi, rsi",
    "    call {main}",
    "    ud2",
    ".popsection",
    "",
    ".macro XP_STUB name, vec",
    ".globl \\name",
    "\\name:",
    "    mov [rip + xp_trap_rax], rax",
    "    mov [rip + xp_trap_rsp], rsp",
    "    mov [rip + xp_trap_regs], rbx",
    "    mov [rip + xp_trap_regs + 8], rcx",
    "    mov [rip + xp_trap_regs + 16], rdx",
    "    mov [rip + xp_trap_regs + 24], rsi",
    "    mov [rip + xp_trap_regs + 32], rdi",
    "    mov [rip + xp_trap_regs + 40], rbp",
    "    .irp i, 8,9,10,11,12,13,14,15",
    "    mov [rip + xp_trap_regs + (\\i - 2) * 8], r\\i",
    "    .endr",
    "    mov qword ptr [rip + xp_trap_vector], \\vec",
    "    .irp i, 0,1,2,3,4,5,6,7,8,9",
    "    mov rax, [rsp + \\i * 8]",
    "    mov [rip + xp_trap_words + \\i * 8], rax",
    "    .endr",
    "    mov rax, [rip + xp_vcpu_info]",
    "    mov byte ptr [rax + 1], 1",
    "    mov rsp, [rip + xp_recovery_rsp]",
    "    jmp [rip + xp_recovery_rip]",
    ".endm",
    ".text",
    "XP_STUB xp_trap_bp, 3",
    "XP_STUB xp_trap_ud, 6",
    "XP_STUB xp_trap_nm, 7",
    "XP_STUB xp_trap_gp, 13",
    "XP_STUB xp_trap_pf, 14",
    "XP_STUB xp_event, {vec_event}",
    "XP_STUB xp_syscall, {vec_syscall}",
    "XP_STUB xp_syscall_alt, {vec_syscall_alt}",
    "XP_STUB xp_failsafe, {vec_failsafe}",
    "",
    // xp_run(code, rbx, r12): runs `code` with rbx and r12 set; returns the vector recorded
    // by a stub that resumed it, or NO_TRAP if `code` returned.
    ".globl xp_run",
    "xp_run:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rip + xp_recovery_rsp], rsp",
    "    lea rax, [rip + 2f]",
    "    mov [rip + xp_recovery_rip], rax",
    "    mov qword ptr [rip + xp_trap_vector], -1",
    "    mov rbx, rsi",
    "    mov r12, rdx",
    "    call rdi",
    "2:",
    "    mov rsp, [rip + xp_recovery_rsp]",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    mov rax, [rip + xp_trap_vector]",
    "    ret",
    "",
    // Kernel-mode snippets.
    ".globl xp_k_ud, xp_k_ud_insn, xp_k_block, xp_k_iret, xp_k_fpu, xp_k_fpu_insn",
    "xp_k_fpu:",
    "xp_k_fpu_insn:",
    "    xorps xmm0, xmm0",
    "    ret",
    "xp_k_ud:",
    "    mov rcx, 0x1111",
    "    mov r11, 0x2222",
    "xp_k_ud_insn:",
    "    ud2",
    // rbx: the vcpu_info. Unmask events and block: the timer's event enters the callback.
    "xp_k_block:",
    "    mov byte ptr [rbx + 1], 0",
    "    mov eax, {sched_op}",
    "    mov edi, 1",
    "    xor esi, esi",
    "    syscall",
    "    ret",
    // rbx: an iret_context. HYPERVISOR_iret with it at rsp.
    "xp_k_iret:",
    "    mov rsp, rbx",
    "    mov eax, {iret}",
    "    syscall",
    // Where the kernel's `syscall` put rcx (what an `iret` with VGCF_in_syscall keeps).
    ".globl xp_k_iret_after",
    "xp_k_iret_after:",
    "    ud2",
    // The same with every other register set to a pattern (`REG_PATTERN` plus its number,
    // rbx and r12 as `xp_run` set them): what the program and the kernel see of them.
    ".globl xp_k_iret_regs",
    "xp_k_iret_regs:",
    "    movabs rdx, {pattern} + 2",
    "    movabs rsi, {pattern} + 3",
    "    movabs rdi, {pattern} + 4",
    "    movabs rbp, {pattern} + 5",
    "    .irp i, 8,9,10,11,13,14,15",
    "    movabs r\\i, {pattern} + \\i - 2",
    "    .endr",
    "    mov rsp, rbx",
    "    mov eax, {iret}",
    "    syscall",
    "    ud2",
    "",
    // User-mode snippets, copied to the user page (position-independent).
    ".globl xp_user_start, xp_u_syscall, xp_u_read, xp_u_gs, xp_u_gs_load, xp_u_ud, xp_u_rcx, xp_user_end",
    "xp_user_start:",
    "xp_u_syscall:",
    "    syscall",
    "    ud2",
    "xp_u_read:",
    "    mov rax, [r12]",
    "    ud2",
    "xp_u_gs:",
    "    mov rax, gs:[0]",
    "    syscall",
    "    ud2",
    // GS loaded with a selector in user mode (the base becomes the descriptor's, 0).
    "xp_u_gs_load:",
    "    mov eax, {user_ss}",
    "    mov gs, ax",
    "    syscall",
    "    ud2",
    "xp_u_ud:",
    "    ud2",
    // rcx and r11 as the iret left them, kept in rdx and r8 across the program's syscall.
    "xp_u_rcx:",
    "    mov rdx, rcx",
    "    mov r8, r11",
    "    syscall",
    "    ud2",
    "xp_user_end:",
    main = sym main,
    vec_event = const VEC_EVENT,
    vec_syscall = const VEC_SYSCALL,
    vec_syscall_alt = const VEC_SYSCALL_ALT,
    vec_failsafe = const VEC_FAILSAFE,
    sched_op = const nr::HYPERVISOR_SCHED_OP,
    iret = const nr::HYPERVISOR_IRET,
    user_ss = const FLAT_USER_SS64,
    pattern = const REG_PATTERN,
);

/// What `xp_k_iret_regs` puts in the registers it sets (plus each one's place in
/// `xp_trap_regs`).
const REG_PATTERN: u64 = 0x5EED_0000_0000_0000;

unsafe extern "C" {
    static xp_trap_rax: u64;
    static xp_trap_words: [u64; 10];
    static xp_trap_regs: [u64; 14];
    static xp_trap_rsp: u64;
    static mut xp_vcpu_info: u64;
    static xp_kernel_stack_top: u8;
    fn xp_run(code: u64, rbx: u64, r12: u64) -> u64;
    static xp_hypercall_page: [u8; 4096];
    fn xp_trap_bp();
    fn xp_trap_ud();
    fn xp_trap_nm();
    fn xp_k_fpu();
    fn xp_k_fpu_insn();
    fn xp_trap_gp();
    fn xp_trap_pf();
    fn xp_event();
    fn xp_syscall();
    fn xp_syscall_alt();
    fn xp_k_iret_after();
    fn xp_u_rcx();
    fn xp_failsafe();
    fn xp_k_ud();
    fn xp_k_ud_insn();
    fn xp_k_block();
    fn xp_k_iret();
    fn xp_k_iret_regs();
    fn xp_user_start();
    fn xp_u_syscall();
    fn xp_u_read();
    fn xp_u_gs();
    fn xp_u_gs_load();
    fn xp_u_ud();
    fn xp_user_end();
}

/// The kernel's GS marker.
static KERNEL_MARK: u64 = KERNEL_MARK_VALUE;

/// A hypercall: `syscall` from kernel mode with Xen's 64-bit convention. Every argument
/// register may come back changed (a continuation rewrites them).
fn hypercall(number: u64, a: [u64; 5]) -> i64 {
    let ret: u64;
    // SAFETY: `syscall` from this kernel's mode is a hypercall; the hypervisor changes only
    // rax (the result), rcx and r11 (clobbered) and possibly the argument registers, all
    // declared here. Arguments that are pointers point at this kernel's own memory.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number => ret,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => _,
            inlateout("r10") a[3] => _,
            inlateout("r8") a[4] => _,
            out("rcx") _,
            out("r11") _,
        )
    };
    ret as i64
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        hypercall(
            nr::HYPERVISOR_CONSOLE_IO,
            [
                u64::from(guest_abi::console::CONSOLEIO_WRITE),
                s.len() as u64,
                s.as_ptr() as u64,
                0,
                0,
            ],
        );
        Ok(())
    }
}

macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!($crate::kernel::Console, $($arg)*);
    }};
}

mod base;
mod gdt;
mod smp;

/// Prints `PASS name` or `FAIL name: why`.
fn check(name: &str, ok: bool, why: core::fmt::Arguments<'_>) {
    if ok {
        say!("PASS {name}");
    } else {
        say!("FAIL {name}: {why}");
    }
}

/// The last recorded frame words and `rax`.
fn recorded() -> ([u64; 10], u64) {
    // SAFETY: written only by the stubs, which ran to completion before xp_run returned.
    unsafe {
        (
            core::ptr::read_volatile(&raw const xp_trap_words),
            core::ptr::read_volatile(&raw const xp_trap_rax),
        )
    }
}

/// The hypercall page's address.
fn addr_of_page() -> u64 {
    &raw const xp_hypercall_page as u64
}

/// The address of one of the asm labels.
fn addr(f: unsafe extern "C" fn()) -> u64 {
    f as *const () as u64
}

/// The top of the stack bounces from user mode go to (`stack_switch`).
fn kernel_stack() -> u64 {
    &raw const xp_kernel_stack_top as u64
}

fn run(code: unsafe extern "C" fn(), rbx: u64, r12: u64) -> u64 {
    // SAFETY: the snippets are this kernel's own code and either return or trap into a stub
    // that resumes at xp_run's recovery point with its saved stack.
    unsafe { xp_run(addr(code), rbx, r12) }
}

/// `MSR_GS_BASE` and `MSR_SHADOW_GS_BASE` (the other mode's base, Xen's `gs_base_user` in
/// kernel mode).
const MSR_GS_BASE: u32 = 0xC000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xC000_0102;

/// The kernel's `rdmsr` (ring 3: the hypervisor emulates it, as Xen does for a PV kernel).
fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdmsr` in ring 3 traps; the hypervisor answers it and returns after it.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn gs_word() -> u64 {
    let v: u64;
    // SAFETY: GS points at one of this kernel's markers (set before each use).
    unsafe { asm!("mov {}, gs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

/// What this kernel knows of its memory.
struct Mem {
    mfn_list: u64,
}

impl Mem {
    fn mfn_of(&self, va: u64) -> u64 {
        let pfn = (va - VIRT_BASE) >> 12;
        // SAFETY: the p2m list is mapped by the builder and covers every pfn of the domain;
        // `va` is one of this kernel's own pages.
        unsafe { core::ptr::read_volatile((self.mfn_list as *const u64).add(pfn as usize)) }
    }

    /// The kernel address of machine frame `mfn`, one of this domain's first `nr_pages`
    /// (found in the p2m list; the builder maps the bootstrap tables in the kernel's range).
    fn va_of(&self, si: &StartInfo, mfn: u64) -> Option<u64> {
        (0..si.nr_pages.min(1 << 20))
            .find(|&pfn| {
                // SAFETY: as in `mfn_of`: `pfn` is below `nr_pages`.
                let found = unsafe {
                    core::ptr::read_volatile((self.mfn_list as *const u64).add(pfn as usize))
                };
                found == mfn
            })
            .map(|pfn| VIRT_BASE + (pfn << 12))
    }

    /// The machine address of the L1 entry that maps kernel address `va` in the kernel's
    /// bootstrap tables (`start_info.pt_base`), for an `mmu_update` of it.
    fn pte_machine_address(&self, si: &StartInfo, va: u64) -> Option<u64> {
        let mut table = si.pt_base;
        let mut mfn = self.mfn_of(table);
        for shift in [39u32, 30, 21] {
            // SAFETY: `table` is one of the bootstrap tables, mapped read-only in the
            // kernel's range; the index is below 512.
            let e = unsafe {
                core::ptr::read_volatile((table + ((va >> shift) & 511) * 8) as *const u64)
            };
            if e & PTE_P == 0 {
                return None;
            }
            mfn = (e >> 12) & 0xFF_FFFF_FFFF;
            table = self.va_of(si, mfn)?;
        }
        Some((mfn << 12) + ((va >> 12) & 511) * 8)
    }
}

fn mmuext(cmd: u32, arg1: u64) -> i64 {
    let op = MmuextOp { cmd, arg1, arg2: 0 };
    hypercall(
        nr::HYPERVISOR_MMUEXT_OP,
        [
            &raw const op as u64,
            1,
            0,
            u64::from(guest_abi::types::DOMID_SELF),
            0,
        ],
    )
}

fn write_u64(va: u64, value: u64) {
    // SAFETY: `va` is one of this kernel's writable pages (the padding), not yet a table.
    unsafe { core::ptr::write_volatile(va as *mut u64, value) };
}

fn iret_to_user(ctx: &IretContext, r12: u64) -> u64 {
    run(xp_k_iret, ctx as *const IretContext as u64, r12)
}

fn user_context(offset: u64) -> IretContext {
    IretContext {
        rax: nr::HYPERVISOR_CONSOLE_IO,
        r11: 0x3333,
        rcx: 0x4444,
        flags: 0,
        rip: USER_VA + offset,
        cs: u64::from(FLAT_USER_CS64),
        rflags: RFLAGS_IF | 2,
        rsp: USER_VA + 0x800,
        ss: u64::from(FLAT_USER_SS64),
    }
}

extern "C" fn main(start_info: u64) -> ! {
    // SAFETY: rsi at entry points at this domain's start_info page, mapped by the builder.
    let si = unsafe { &*(start_info as *const StartInfo) };
    // Xen's start of day does not map shared_info: map it, as Linux does, over a page of the
    // padding past the bootstrap tables and stack (`shared_info` is a machine address).
    let shared = ((si.pt_base + si.nr_pt_frames * 4096 + 4096 + 4095) & !4095) + 0x10000 + 8 * 4096;
    let mapped = hypercall(
        nr::HYPERVISOR_UPDATE_VA_MAPPING,
        [
            shared,
            si.shared_info | PTE_P | PTE_RW | PTE_U,
            UVMF_INVLPG,
            0,
            0,
        ],
    );
    let vcpu_info = shared; // vCPU 0's vcpu_info opens shared_info.
    // SAFETY: written once here, read by the stubs.
    unsafe { core::ptr::write_volatile(&raw mut xp_vcpu_info, vcpu_info) };
    let mem = Mem {
        mfn_list: si.mfn_list,
    };
    let cmdline = {
        let end = si.cmd_line.iter().position(|&b| b == 0).unwrap_or(0);
        core::str::from_utf8(&si.cmd_line[..end]).unwrap_or("")
    };
    say!("xenpv: start (cmdline {cmdline:?})");
    check(
        "shared_info_mapped",
        mapped == 0,
        format_args!("update_va_mapping of shared_info: {mapped}"),
    );

    // 1. Hypercalls by syscall.
    let version = hypercall(
        nr::HYPERVISOR_XEN_VERSION,
        [u64::from(guest_abi::version::XENVER_VERSION), 0, 0, 0, 0],
    );
    check(
        "hypercall_by_syscall",
        version > 0,
        format_args!("xen_version returned {version}"),
    );

    // 1b. The hypercall page the hypervisor filled: Xen's syscall stubs, and a call through
    // one of them.
    // SAFETY: the page is this kernel's text, filled before it started.
    let page = unsafe { core::ptr::read_volatile(&raw const xp_hypercall_page) };
    let expected = guest_abi::hypercall::xen_pv_hypercall_page_image();
    let stub = addr_of_page() + 17 * 32;
    let through: i64;
    // SAFETY: stub 17 is `xen_version` (checked just below before its result counts): it
    // keeps rcx and r11 and returns with `ret`; rdi is the first argument.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") u64::from(guest_abi::version::XENVER_VERSION) => _,
            lateout("rax") through,
            out("rsi") _, out("rdx") _, out("r10") _, out("r8") _,
        )
    };
    check(
        "hypercall_page",
        page == expected && through == version,
        format_args!(
            "page as Xen's: {}, xen_version through it {through} (direct {version})",
            page == expected
        ),
    );

    // 2. Trap table, callbacks, kernel stack.
    let traps = [
        TrapInfo::new(3, 3, false, addr(xp_trap_bp)),
        TrapInfo::new(6, 0, false, addr(xp_trap_ud)),
        TrapInfo::new(7, 0, false, addr(xp_trap_nm)),
        TrapInfo::new(13, 0, false, addr(xp_trap_gp)),
        TrapInfo::new(14, 0, false, addr(xp_trap_pf)),
        TrapInfo::END,
    ];
    let mut traps = traps;
    for t in &mut traps[..5] {
        t.cs = FLAT_KERNEL_CS64;
    }
    let r1 = hypercall(
        nr::HYPERVISOR_SET_TRAP_TABLE,
        [traps.as_ptr() as u64, 0, 0, 0, 0],
    );
    let r2 = hypercall(
        nr::HYPERVISOR_SET_CALLBACKS,
        [addr(xp_event), addr(xp_failsafe), addr(xp_syscall), 0, 0],
    );
    let kstack = &raw const xp_kernel_stack_top as u64;
    let r3 = hypercall(
        nr::HYPERVISOR_STACK_SWITCH,
        [u64::from(FLAT_KERNEL_SS64), kstack, 0, 0, 0],
    );
    check(
        "trap_table_callbacks_stack",
        r1 == 0 && r2 == 0 && r3 == 0,
        format_args!("set_trap_table {r1}, set_callbacks {r2}, stack_switch {r3}"),
    );

    // 3. An exception in kernel mode: Xen's frame, CS with RPL 0, events masked (bits 32-39).
    let v = run(xp_k_ud, 0, 0);
    let (w, _) = recorded();
    let ok = v == 6
        && w[0] == 0x1111
        && w[1] == 0x2222
        && w[2] == addr(xp_k_ud_insn)
        && w[3] == u64::from(FLAT_KERNEL_CS64 & !3) | (1 << 32)
        && w[4] & RFLAGS_IF == 0
        && w[6] == u64::from(FLAT_KERNEL_SS64);
    check(
        "kernel_exception_frame",
        ok,
        format_args!("vector {v:#x}, frame {:x?}", &w[..7]),
    );

    // 4. GS: the kernel's base, and the user's kept for user mode.
    let user_gs = USER_VA + USER_MARK_OFFSET;
    let g1 = hypercall(
        nr::HYPERVISOR_SET_SEGMENT_BASE,
        [
            u64::from(SEGBASE_GS_KERNEL),
            &raw const KERNEL_MARK as u64,
            0,
            0,
            0,
        ],
    );
    let g2 = hypercall(
        nr::HYPERVISOR_SET_SEGMENT_BASE,
        [u64::from(SEGBASE_GS_USER), user_gs, 0, 0, 0],
    );
    let seen = gs_word();
    check(
        "gs_kernel_base",
        g1 == 0 && g2 == 0 && seen == KERNEL_MARK_VALUE,
        format_args!("set_segment_base {g1} {g2}, gs:[0] {seen:#x}"),
    );

    // 5. The user page table: pages from the padding after the boot stack.
    let base = (si.pt_base + si.nr_pt_frames * 4096 + 4096 + 4095) & !4095;
    let [l4, l3, l2, l1, code] = [0u64, 1, 2, 3, 4].map(|i| base + 0x10000 + i * 4096);
    for page in [l4, l3, l2, l1, code] {
        for i in 0..512 {
            write_u64(page + i * 8, 0);
        }
    }
    let user_len = addr(xp_user_end) - addr(xp_user_start);
    for i in 0..user_len {
        // SAFETY: both ranges are this kernel's: its text and a padding page.
        unsafe {
            let b = core::ptr::read_volatile((addr(xp_user_start) + i) as *const u8);
            core::ptr::write_volatile((code + i) as *mut u8, b);
        }
    }
    write_u64(code + USER_MARK_OFFSET, USER_MARK_VALUE);
    // Hostile first: a page that is no page table, and a frame not the domain's.
    let bad1 = mmuext(MMUEXT_NEW_USER_BASEPTR, mem.mfn_of(code));
    let bad2 = mmuext(MMUEXT_NEW_USER_BASEPTR, 0xF_FFFF_FFFF);
    check(
        "hostile_user_l4_refused",
        bad1 < 0 && bad2 < 0,
        format_args!("data page {bad1}, foreign frame {bad2}"),
    );
    write_u64(l1, mem.mfn_of(code) << 12 | PTE_P | PTE_U);
    write_u64(l2, mem.mfn_of(l1) << 12 | PTE_P | PTE_RW | PTE_U);
    write_u64(l3, mem.mfn_of(l2) << 12 | PTE_P | PTE_RW | PTE_U);
    write_u64(l4 + 8, mem.mfn_of(l3) << 12 | PTE_P | PTE_RW | PTE_U);
    let mut ro = 0;
    for page in [l4, l3, l2, l1] {
        let r = hypercall(
            nr::HYPERVISOR_UPDATE_VA_MAPPING,
            [
                page,
                mem.mfn_of(page) << 12 | PTE_P | PTE_U,
                UVMF_INVLPG,
                0,
                0,
            ],
        );
        if r != 0 {
            ro = r;
        }
    }
    let pin = mmuext(MMUEXT_PIN_L4_TABLE, mem.mfn_of(l4));
    let set = mmuext(MMUEXT_NEW_USER_BASEPTR, mem.mfn_of(l4));
    check(
        "new_user_baseptr",
        ro == 0 && pin == 0 && set == 0,
        format_args!("update_va_mapping {ro}, pin {pin}, new_user_baseptr {set}"),
    );

    // 5b. The base-pointer switch Linux makes at each context switch (`xen_write_cr3`: one
    // `mmuext_op` of NEW_BASEPTR and NEW_USER_BASEPTR, the hypervisor's short way since
    // session 14) answers as the ordinary path: what it takes works, what it must refuse is
    // refused, and a refused second item keeps the first one's change.
    let kernel_l4 = mem.mfn_of(si.pt_base);
    let user_l4 = mem.mfn_of(l4);
    fn pair(a: (u32, u64), b: (u32, u64), done: Option<&mut u32>) -> i64 {
        let ops = [
            MmuextOp {
                cmd: a.0,
                arg1: a.1,
                arg2: 0,
            },
            MmuextOp {
                cmd: b.0,
                arg1: b.1,
                arg2: 0,
            },
        ];
        let done = done.map_or(0, |d| d as *mut u32 as u64);
        hypercall(
            nr::HYPERVISOR_MMUEXT_OP,
            [
                ops.as_ptr() as u64,
                2,
                done,
                u64::from(guest_abi::types::DOMID_SELF),
                0,
            ],
        )
    }
    let (k, u) = (MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR);
    // Linux's pair, twice (the second changes nothing), and with a `done` count.
    let same = pair((k, kernel_l4), (u, user_l4), None);
    let again = pair((k, kernel_l4), (u, user_l4), None);
    let mut done = 0u32;
    let counted = pair((k, kernel_l4), (u, user_l4), Some(&mut done));
    // A kernel table that is a writable data page, a frame outside memory, a frame of the
    // hypervisor's (the first megabyte), each refused with nothing changed; then a good first
    // item with a refused second: the error, the first kept.
    let data_page = pair((k, mem.mfn_of(code)), (u, user_l4), None);
    let outside = pair((k, 0xF_FFFF_FFFF), (u, user_l4), None);
    let hypervisors = mmuext(MMUEXT_NEW_BASEPTR, 0x100);
    let second_bad = pair((k, kernel_l4), (u, mem.mfn_of(code)), None);
    // The user table is still in force for user mode (the later checks go there), set again.
    let reset = mmuext(MMUEXT_NEW_USER_BASEPTR, user_l4);
    check(
        "base_switch_checked",
        same == 0
            && again == 0
            && counted == 0
            && done == 2
            && data_page < 0
            && outside < 0
            && hypervisors < 0
            && second_bad < 0
            && reset == 0,
        format_args!(
            "pair {same} {again} {counted} done {done}; data page {data_page}, outside \
             {outside}, hypervisor's {hypervisors}, second refused {second_bad}, reset {reset}"
        ),
    );

    // 6. To user mode by iret, back by syscall: the syscall callback's frame.
    let off = |f: unsafe extern "C" fn()| addr(f) - addr(xp_user_start);
    let v = iret_to_user(&user_context(off(xp_u_syscall)), 0);
    let (w, rax) = recorded();
    let next = USER_VA + off(xp_u_syscall) + 2;
    let ok = v == VEC_SYSCALL
        && w[0] == next
        && w[1] & RFLAGS_IF != 0
        && w[2] == next
        && w[3] == u64::from(FLAT_USER_CS64)
        && w[4] & RFLAGS_IF != 0
        && w[5] == USER_VA + 0x800
        && w[6] == u64::from(FLAT_USER_SS64);
    check(
        "user_syscall_frame",
        ok,
        format_args!("vector {v:#x}, frame {:x?}", &w[..7]),
    );
    check(
        "user_syscall_is_not_a_hypercall",
        v == VEC_SYSCALL && rax == nr::HYPERVISOR_CONSOLE_IO,
        format_args!("vector {v:#x}, rax {rax:#x}"),
    );

    // 7. GS in user mode is the user's; back in kernel mode the kernel's again.
    let v = iret_to_user(&user_context(off(xp_u_gs)), 0);
    let (_, rax) = recorded();
    let back = gs_word();
    check(
        "gs_swapped_on_mode_changes",
        v == VEC_SYSCALL && rax == USER_MARK_VALUE && back == KERNEL_MARK_VALUE,
        format_args!("vector {v:#x}, user gs:[0] {rax:#x}, kernel gs:[0] {back:#x}"),
    );
    // The kernel's `rdmsr` of both bases (emulated with Xen's answers) after those mode
    // changes: the live one is the kernel's, `MSR_SHADOW_GS_BASE` the user's; then the
    // user's set again while in kernel mode, and read back.
    let (live, shadow) = (rdmsr(MSR_GS_BASE), rdmsr(MSR_SHADOW_GS_BASE));
    let user_gs2 = USER_VA + USER_MARK_OFFSET - 8;
    let set = hypercall(
        nr::HYPERVISOR_SET_SEGMENT_BASE,
        [u64::from(SEGBASE_GS_USER), user_gs2, 0, 0, 0],
    );
    let (live2, shadow2) = (rdmsr(MSR_GS_BASE), rdmsr(MSR_SHADOW_GS_BASE));
    check(
        "gs_bases_by_rdmsr",
        live == &raw const KERNEL_MARK as u64
            && shadow == USER_VA + USER_MARK_OFFSET
            && set == 0
            && live2 == live
            && shadow2 == user_gs2,
        format_args!(
            "live {live:#x}, shadow {shadow:#x}; after set_segment_base {set}: live {live2:#x}, \
             shadow {shadow2:#x}"
        ),
    );
    // The program loads GS with a selector (its base becomes 0) and makes a system call:
    // in kernel mode again, `MSR_SHADOW_GS_BASE` is that 0 (the base the mode change put
    // aside, not the one last given to `set_segment_base`), the kernel's base still live.
    let v = iret_to_user(&user_context(off(xp_u_gs_load)), 0);
    let (live3, shadow3, back3) = (rdmsr(MSR_GS_BASE), rdmsr(MSR_SHADOW_GS_BASE), gs_word());
    check(
        "gs_user_base_after_selector_load",
        v == VEC_SYSCALL
            && live3 == &raw const KERNEL_MARK as u64
            && shadow3 == 0
            && back3 == KERNEL_MARK_VALUE,
        format_args!(
            "vector {v:#x}, live {live3:#x}, shadow {shadow3:#x}, kernel gs:[0] {back3:#x}"
        ),
    );
    // Put back for the checks below.
    hypercall(
        nr::HYPERVISOR_SET_SEGMENT_BASE,
        [
            u64::from(SEGBASE_GS_USER),
            USER_VA + USER_MARK_OFFSET,
            0,
            0,
            0,
        ],
    );

    // 8. User mode reading the kernel: not mapped in the user table, a user #PF.
    let target = &raw const KERNEL_MARK as u64;
    let v = iret_to_user(&user_context(off(xp_u_read)), target);
    let (w, _) = recorded();
    // SAFETY: vcpu_info.arch.cr2 is at byte 16 of the vcpu_info (guest-abi `VcpuInfo`).
    let cr2 = unsafe { core::ptr::read_volatile((vcpu_info + 16) as *const u64) };
    let ok = v == 14
        && w[2] & PF_USER != 0
        && w[2] & PF_PRESENT == 0
        && w[3] == USER_VA + off(xp_u_read)
        && w[4] == u64::from(FLAT_USER_CS64)
        && cr2 == target;
    check(
        "user_access_to_kernel_faults",
        ok,
        format_args!("vector {v:#x}, cr2 {cr2:#x}, frame {:x?}", &w[..8]),
    );

    // 9. An exception in user mode.
    let v = iret_to_user(&user_context(off(xp_u_ud)), 0);
    let (w, _) = recorded();
    let ok = v == 6
        && w[2] == USER_VA + off(xp_u_ud)
        && w[3] == u64::from(FLAT_USER_CS64)
        && w[6] == u64::from(FLAT_USER_SS64);
    check(
        "user_exception_frame",
        ok,
        format_args!("vector {v:#x}, frame {:x?}", &w[..7]),
    );

    // 10. An event through the event callback: VIRQ_TIMER, a deadline already past.
    let mut bind = guest_abi::event::EvtchnBindVirq {
        virq: guest_abi::event::VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let b = hypercall(
        nr::HYPERVISOR_EVENT_CHANNEL_OP,
        [
            u64::from(guest_abi::event::EVTCHNOP_BIND_VIRQ),
            &raw mut bind as u64,
            0,
            0,
            0,
        ],
    );
    let t = hypercall(nr::HYPERVISOR_SET_TIMER_OP, [1, 0, 0, 0, 0]);
    let v = run(xp_k_block, vcpu_info, 0);
    let (w, _) = recorded();
    let ok = b == 0
        && t == 0
        && v == VEC_EVENT
        && w[3] == u64::from(FLAT_KERNEL_CS64 & !3)
        && w[4] & RFLAGS_IF != 0
        && w[6] == u64::from(FLAT_KERNEL_SS64);
    check(
        "event_callback_frame",
        ok,
        format_args!("bind {b}, timer {t}, vector {v:#x}, frame {:x?}", &w[..7]),
    );

    // 10b. The virtual CR0.TS: fpu_taskswitch(1), then an SSE instruction is a #NM in the
    // kernel's table, and once it was delivered the FPU is usable again (Xen clears TS).
    let ts = hypercall(nr::HYPERVISOR_FPU_TASKSWITCH, [1, 0, 0, 0, 0]);
    let v1 = run(xp_k_fpu, 0, 0);
    let (w, _) = recorded();
    let v2 = run(xp_k_fpu, 0, 0);
    check(
        "fpu_taskswitch",
        ts == 0 && v1 == 7 && w[2] == addr(xp_k_fpu_insn) && v2 == u64::MAX,
        format_args!(
            "fpu_taskswitch {ts}, first {v1:#x} at {:#x}, second {v2:#x}",
            w[2]
        ),
    );

    // 11. Hostile arguments refused without harm.
    let non_canonical = 0x8000_0000_0000_0000;
    let fs = hypercall(
        nr::HYPERVISOR_SET_SEGMENT_BASE,
        [u64::from(SEGBASE_FS), non_canonical, 0, 0, 0],
    );
    let sel = hypercall(
        nr::HYPERVISOR_SET_SEGMENT_BASE,
        [
            u64::from(SEGBASE_GS_USER_SEL),
            u64::from(KERNEL_DS),
            0,
            0,
            0,
        ],
    );
    let stack = hypercall(
        nr::HYPERVISOR_STACK_SWITCH,
        [u64::from(FLAT_KERNEL_SS64), non_canonical, 0, 0, 0],
    );
    check(
        "hostile_arguments_refused",
        fs < 0 && sel < 0 && stack < 0,
        format_args!("fs base {fs}, ring-1 gs selector {sel}, stack {stack}"),
    );
    // Debug registers on the hypervisor's addresses, an I/O breakpoint, GD: EPERM, as Xen.
    let dr = |reg: u64, value: u64| hypercall(nr::HYPERVISOR_SET_DEBUGREG, [reg, value, 0, 0, 0]);
    let (d0, d7io, d7gd, d6) = (
        dr(0, 0xFFFF_8000_0000_1000),
        dr(7, 0x2_0401),
        dr(7, 1 << 13),
        dr(6, 1 << 32),
    );
    check(
        "hostile_debugregs_refused",
        d0 == -1 && d7io == -1 && d7gd == -1 && d6 == -22,
        format_args!(
            "dr0 on the hypervisor {d0}, dr7 I/O breakpoint {d7io}, GD {d7gd}, dr6 above 32 bits {d6}"
        ),
    );
    // 11b. iret frames the CPU would refuse: the #GP it raises, delivered to this kernel with
    // the frame's registers (Xen's fault on its own iretq), not a crash.
    let ks = &raw const xp_kernel_stack_top as u64;
    let bad = |cs: u16, ss: u16, rip: u64| IretContext {
        rax: 0,
        r11: 0x5555,
        rcx: 0x6666,
        flags: 0,
        rip,
        cs: u64::from(cs),
        // IF clear: events stay masked (an event left pending by the checks above would
        // otherwise be delivered first, on top of the #GP).
        rflags: 2,
        rsp: ks,
        ss: u64::from(ss),
    };
    let hv_cs = guest_abi::selectors::HYPERVISOR_CS | 0xe000;
    let good_rip = addr(xp_k_ud_insn);
    let mut wrong = 0u32;
    for (i, (ctx, code)) in [
        (bad(hv_cs, FLAT_KERNEL_SS64, good_rip), u64::from(hv_cs)),
        // CS with RPL 0, as Linux hands back a kernel frame: the return stays in kernel mode.
        (
            bad(FLAT_KERNEL_CS64 & !3, hv_cs, good_rip),
            u64::from(hv_cs),
        ),
        (
            bad(FLAT_KERNEL_CS64 & !3, FLAT_KERNEL_SS64, non_canonical),
            0,
        ),
    ]
    .iter()
    .enumerate()
    {
        let v = run(xp_k_iret, ctx as *const IretContext as u64, 0);
        let (w, _) = recorded();
        let ok = v == 13
            && w[0] == 0x6666
            && w[1] == 0x5555
            && w[2] == *code
            && w[3] == ctx.rip
            && w[4] & 0xFFFF == ctx.cs & !3
            && w[6] == ks
            && w[7] == ctx.ss | 3;
        if !ok {
            say!("xenpv: bad iret {i}: vector {v:#x}, frame {:x?}", &w[..8]);
            wrong |= 1 << i;
        }
    }
    check(
        "iret_refused_frame_gp",
        wrong == 0,
        format_args!("frames not answered by #GP as the CPU would: {wrong:#b} (cs, ss, rip)"),
    );

    // 11c. Its own GDT in force, the failsafe callback, descriptors refused.
    gdt::run_checks(
        &mem,
        vcpu_info,
        base + 0x10000 + 7 * 4096,
        base + 0x10000 + 9 * 4096,
        l4,
    );
    gdt::ldt_checks(&mem, base + 0x10000 + 10 * 4096, base + 0x10000 + 9 * 4096);

    // 12. A second vCPU (when the domain has one).
    smp::run(&smp::Setup {
        mem: &mem,
        shared,
        kernel_l4: si.pt_base,
        user_l4: l4,
        data_page: code,
        gdt_page: base + 0x10000 + 5 * 4096,
        bad_gdt_page: base + 0x10000 + 6 * 4096,
    });

    // 14. The short ways of a system call (the hypervisor's `guest::fast_pv`): round trips
    // user -> kernel -> user, each frame right while the kept translations are reused; frames
    // that go the ordinary way (refused returns to user mode, an event the return unmasks).
    fast_path_checks(off(xp_u_syscall), u64::from(hv_cs), shared);
    stub_checks();

    // 15. The pCPU's kept copies of the user table (`entry::load_guest_root`, kept while the
    // frame table's root generation holds): entries removed and put back, in the user L4
    // and in the L1 below it (which the copy shares), are seen by each return to user mode.
    root_copy_checks(&mem, [l4, l1, code], off(xp_u_syscall));

    // 16. Attacks on the base-pointer short way and the kept copies of L4 tables (session
    // 14's review): the list remapped, a second item read through the new table, references
    // balanced, an L4 rewritten while plain memory.
    base::run_checks(
        &mem,
        si,
        &base::Pages {
            first: base + 0x10000 + 20 * 4096,
            user_l4: l4,
            spare_user_l4: base + 0x10000 + 26 * 4096,
            syscall_offset: off(xp_u_syscall),
        },
    );
    say!("xenpv: done");

    // 13. What the hypervisor must answer by crashing this domain.
    if let Some(what) = cmdline.split(' ').find_map(|w| w.strip_prefix("hostile=")) {
        say!("xenpv: hostile {what}");
        match what {
            "no_user_l4" => {
                let r = mmuext(MMUEXT_NEW_USER_BASEPTR, 0);
                say!("xenpv: user table dropped ({r})");
                iret_to_user(&user_context(off(xp_u_syscall)), 0);
            }
            "syscall_stack_became_pt" => {
                // A kernel stack in a data page takes a system call's frame; then the page
                // becomes a page table (read-only, pinned as an L1): the next system call's
                // frame must not be written there (the hypervisor's kept translation is
                // stale), and with no stack to write to the domain is crashed.
                let page = base + 0x10000 + 11 * 4096;
                for i in 0..512 {
                    write_u64(page + i * 8, 0);
                }
                let sw = hypercall(
                    nr::HYPERVISOR_STACK_SWITCH,
                    [u64::from(FLAT_KERNEL_SS64), page + 4096, 0, 0, 0],
                );
                // Events masked: the event left pending by the checks is not taken first.
                let masked = IretContext {
                    rflags: 2,
                    ..user_context(off(xp_u_syscall))
                };
                let v = iret_to_user(&masked, 0);
                // The frame's words would be entries of the table: cleared again.
                for i in 0..512 {
                    write_u64(page + i * 8, 0);
                }
                let ro = hypercall(
                    nr::HYPERVISOR_UPDATE_VA_MAPPING,
                    [
                        page,
                        mem.mfn_of(page) << 12 | PTE_P | PTE_U,
                        UVMF_INVLPG,
                        0,
                        0,
                    ],
                );
                let pin = mmuext(guest_abi::memory::MMUEXT_PIN_L1_TABLE, mem.mfn_of(page));
                say!(
                    "xenpv: stack_switch {sw}, syscall {v:#x}; the stack page made an L1: {ro} {pin}"
                );
                if sw != 0 || v != VEC_SYSCALL || ro != 0 || pin != 0 {
                    say!("FAIL hostile_{what}: the set-up failed");
                }
                iret_to_user(&masked, 0);
            }
            "syscall_stack_retyped_in_batch" => {
                // As above, but the page becomes a page table the other way (Xen PV: a frame
                // is typed when an entry of a table above points to it, no pin), in one
                // `mmu_update` batch: its writable mapping made read-only by the first
                // request, an entry of a pinned, empty L2 pointed at it by the second. The
                // next system call's frame must not be written into the new L1.
                let page = base + 0x10000 + 11 * 4096;
                let l2 = base + 0x10000 + 12 * 4096;
                for at in [page, l2] {
                    for i in 0..512 {
                        write_u64(at + i * 8, 0);
                    }
                }
                let ro_l2 = hypercall(
                    nr::HYPERVISOR_UPDATE_VA_MAPPING,
                    [l2, mem.mfn_of(l2) << 12 | PTE_P | PTE_U, UVMF_INVLPG, 0, 0],
                );
                let pin_l2 = mmuext(guest_abi::memory::MMUEXT_PIN_L2_TABLE, mem.mfn_of(l2));
                let sw = hypercall(
                    nr::HYPERVISOR_STACK_SWITCH,
                    [u64::from(FLAT_KERNEL_SS64), page + 4096, 0, 0, 0],
                );
                let masked = IretContext {
                    rflags: 2,
                    ..user_context(off(xp_u_syscall))
                };
                let v = iret_to_user(&masked, 0);
                for i in 0..512 {
                    write_u64(page + i * 8, 0);
                }
                let pte = mem.pte_machine_address(si, page);
                let reqs = [
                    guest_abi::memory::MmuUpdate {
                        ptr: pte.unwrap_or(0) | guest_abi::memory::MMU_NORMAL_PT_UPDATE,
                        val: mem.mfn_of(page) << 12 | PTE_P | PTE_U,
                    },
                    guest_abi::memory::MmuUpdate {
                        ptr: mem.mfn_of(l2) << 12 | guest_abi::memory::MMU_NORMAL_PT_UPDATE,
                        val: mem.mfn_of(page) << 12 | PTE_P | PTE_RW | PTE_U,
                    },
                ];
                let mut done = 0u64;
                let batch = hypercall(
                    nr::HYPERVISOR_MMU_UPDATE,
                    [
                        reqs.as_ptr() as u64,
                        2,
                        &raw mut done as u64,
                        u64::from(guest_abi::types::DOMID_SELF),
                        0,
                    ],
                );
                say!(
                    "xenpv: L2 read-only {ro_l2}, pinned {pin_l2}; stack_switch {sw}, syscall \
                     {v:#x}; the stack page made an L1 by one batch: {batch} ({done} done, \
                     entry at {pte:x?})"
                );
                if ro_l2 != 0
                    || pin_l2 != 0
                    || sw != 0
                    || v != VEC_SYSCALL
                    || batch != 0
                    || done != 2
                {
                    say!("FAIL hostile_{what}: the set-up failed");
                }
                iret_to_user(&masked, 0);
            }
            _ => say!("xenpv: unknown hostile request"),
        }
        say!("FAIL hostile_{what}: still running");
    }
    let reason = guest_abi::sched::SchedShutdown {
        reason: guest_abi::sched::SHUTDOWN_POWEROFF,
    };
    hypercall(
        nr::HYPERVISOR_SCHED_OP,
        [
            u64::from(guest_abi::sched::SCHEDOP_SHUTDOWN),
            &raw const reason as u64,
            0,
            0,
            0,
        ],
    );
    loop {
        core::hint::spin_loop();
    }
}

/// `mmu_update` of one entry (machine address `ptr`) to `val`.
fn mmu_update_one(ptr: u64, val: u64) -> i64 {
    let req = guest_abi::memory::MmuUpdate {
        ptr: ptr | guest_abi::memory::MMU_NORMAL_PT_UPDATE,
        val,
    };
    let mut done = 0u64;
    hypercall(
        nr::HYPERVISOR_MMU_UPDATE,
        [
            &raw const req as u64,
            1,
            &raw mut done as u64,
            u64::from(guest_abi::types::DOMID_SELF),
            0,
        ],
    )
}

/// Check 15 (`main`): the user table's `l4`, its `l1` and the `code` page it maps at
/// `USER_VA`; `syscall_offset` is `xp_u_syscall`'s offset in the user page.
fn root_copy_checks(mem: &Mem, [l4, l1, code]: [u64; 3], syscall_offset: u64) {
    let masked = IretContext {
        rflags: 2,
        ..user_context(syscall_offset)
    };
    // A user #PF at the program's first instruction (not present), or its system call.
    let fetch_fault = |v: u64| {
        let (w, _) = recorded();
        v == 14 && w[2] & PF_USER != 0 && w[2] & PF_PRESENT == 0 && w[3] == USER_VA + syscall_offset
    };
    let mut wrong = 0u32;
    // Once to keep the user table's copy on this pCPU, then each entry cut and put back.
    wrong |= u32::from(iret_to_user(&masked, 0) != VEC_SYSCALL);
    // SAFETY: the user L4 is one of this kernel's padding pages, mapped read-only.
    let l4_entry = unsafe { core::ptr::read_volatile((l4 + 8) as *const u64) };
    for (bit, (ptr, value)) in [
        (mem.mfn_of(l4) << 12 | 8, l4_entry),
        (mem.mfn_of(l1) << 12, mem.mfn_of(code) << 12 | PTE_P | PTE_U),
    ]
    .into_iter()
    .enumerate()
    {
        // The TLB is the guest's to flush (a user translation may be kept across the
        // switches of table); the hypervisor's copies are not.
        let cut = mmu_update_one(ptr, 0) | mmuext(guest_abi::memory::MMUEXT_TLB_FLUSH_LOCAL, 0);
        let v = iret_to_user(&masked, 0);
        if cut != 0 || !fetch_fault(v) {
            say!(
                "xenpv: entry at {ptr:#x} cut ({cut}): vector {v:#x}, frame {:x?}",
                &recorded().0[..5]
            );
            wrong |= 2 << (2 * bit);
        }
        let back = mmu_update_one(ptr, value);
        let v = iret_to_user(&masked, 0);
        if back != 0 || v != VEC_SYSCALL {
            say!("xenpv: entry at {ptr:#x} put back ({back}): vector {v:#x}");
            wrong |= 4 << (2 * bit);
        }
    }
    check(
        "user_table_changes_seen",
        wrong == 0,
        format_args!("{wrong:#b} (warm-up, then for the L4 and the L1 entry: cut, put back)"),
    );
}

/// `HYPERVISOR_STACK_SWITCH` to `sp`.
fn stack_switch(sp: u64) -> i64 {
    hypercall(
        nr::HYPERVISOR_STACK_SWITCH,
        [u64::from(FLAT_KERNEL_SS64), sp, 0, 0, 0],
    )
}

/// Runs kernel snippet `code` with `ctx` copied 256 bytes below `sp`, the kernel stack in
/// force, so that the `iret_context` and the bounce frame of the program's system call that
/// follows are in one page, as Linux has them (what the hypervisor's entry stub,
/// `xenia_pv_fast`, takes; the ordinary way takes the first trips, which find the page).
fn iret_near_stack(code: unsafe extern "C" fn(), ctx: &IretContext, sp: u64) -> u64 {
    let at = sp - 0x100;
    // SAFETY: 72 bytes of this kernel's own kernel stack, which nothing uses while the
    // snippets run (the bounce frame goes 56 bytes below `sp`).
    unsafe { core::ptr::write_volatile(at as *mut IretContext, *ctx) };
    run(code, at, 0)
}

/// Check 14b (`main`): round trips the hypervisor's entry stub takes, each a case of its own:
/// a program's `syscall` with the `iret` hypercall's number, the `iret`'s rcx and r11 with
/// and without VGCF_in_syscall, events unmasked, and the bounce frame following the kernel
/// stack (`stack_switch` directly and in a multicall) and the syscall callback
/// (`CALLBACKOP_REGISTER`) within the page it keeps. Each case several times: the first
/// trips go the ordinary way, the others the stub's.
fn stub_checks() {
    let off = |f: unsafe extern "C" fn()| addr(f) - addr(xp_user_start);
    let ks = kernel_stack();
    let page = (ks & !0xFFF) - 0x1000;
    let sp = page + 0x800;
    let switched = stack_switch(sp);
    let masked = IretContext {
        rflags: 2,
        ..user_context(off(xp_u_syscall))
    };

    // A program's system call numbered as the `iret` hypercall is bounced to the kernel.
    let ctx = IretContext {
        rax: nr::HYPERVISOR_IRET,
        ..masked
    };
    let mut wrong = 0;
    for _ in 0..6 {
        let v = iret_near_stack(xp_k_iret, &ctx, sp);
        let (_, rax) = recorded();
        wrong += u32::from(v != VEC_SYSCALL || rax != nr::HYPERVISOR_IRET);
    }
    check(
        "user_syscall_23_bounced",
        wrong == 0 && switched == 0,
        format_args!("{wrong} of 6 not bounced (stack_switch {switched})"),
    );

    // The program's rcx and r11: the context's, or the kernel's own with VGCF_in_syscall.
    let ctx = IretContext {
        rip: USER_VA + off(xp_u_rcx),
        ..masked
    };
    let mut wrong = 0;
    for flags in [0, guest_abi::trap::VGCF_IN_SYSCALL] {
        let ctx = IretContext { flags, ..ctx };
        for i in 0..6 {
            let v = iret_near_stack(xp_k_iret, &ctx, sp);
            // SAFETY: written only by the stubs, which ran to completion before xp_run returned.
            let regs = unsafe { core::ptr::read_volatile(&raw const xp_trap_regs) };
            let (rcx, r11) = (regs[2], regs[6]);
            let ok = v == VEC_SYSCALL
                && if flags == 0 {
                    (rcx, r11) == (ctx.rcx, ctx.r11)
                } else {
                    rcx == addr(xp_k_iret_after) && r11 != ctx.r11
                };
            if !ok && wrong == 0 {
                say!(
                    "xenpv: rcx/r11, flags {flags:#x}, trip {i}: vector {v:#x}, {rcx:#x} {r11:#x}"
                );
            }
            wrong += u32::from(!ok);
        }
    }
    check(
        "iret_rcx_r11_unless_in_syscall",
        wrong == 0,
        format_args!("{wrong} of 12 round trips"),
    );

    // Events unmasked with none pending (the one left pending by the checks before is put
    // aside meanwhile): the frames show the mask clear. An event that arrives meanwhile
    // (its callback, not the system call's) is a trip that does not count.
    // SAFETY: this vCPU's vcpu_info, mapped by `main`; only the byte is read and written.
    let info = unsafe { xp_vcpu_info } as *mut u8;
    // SAFETY: as above.
    let pending = unsafe { core::ptr::read_volatile(info) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(info, 0) };
    let unmasked = IretContext {
        rflags: RFLAGS_IF | 2,
        ..masked
    };
    let (mut wrong, mut good) = (0, 0);
    for _ in 0..10 {
        let v = iret_near_stack(xp_k_iret, &unmasked, sp);
        let (w, _) = recorded();
        if v == VEC_EVENT {
            continue;
        }
        if v == VEC_SYSCALL && w[3] == u64::from(FLAT_USER_CS64) && w[4] & RFLAGS_IF != 0 {
            good += 1;
        } else {
            wrong += 1;
        }
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(info, pending) };
    check(
        "unmasked_round_trips",
        wrong == 0 && good >= 6,
        format_args!("{good} right, {wrong} wrong of 10"),
    );

    // The bounce frame follows the kernel stack within the page, set directly and in a
    // multicall, and the callback follows CALLBACKOP_REGISTER.
    let mut wrong = 0u32;
    let trips = |sp: u64, vector: u64| {
        let mut wrong = 0u32;
        for _ in 0..4 {
            let v = iret_near_stack(xp_k_iret, &masked, sp);
            // SAFETY: written only by the stubs, which ran to completion before xp_run returned.
            let rsp = unsafe { core::ptr::read_volatile(&raw const xp_trap_rsp) };
            wrong += u32::from(v != vector || rsp != (sp & !0xF) - 56);
        }
        wrong
    };
    let sp2 = page + 0x900;
    wrong += u32::from(stack_switch(sp2) != 0) + trips(sp2, VEC_SYSCALL);
    let sp3 = page + 0x880;
    let mut entry = nr::MulticallEntry {
        op: nr::HYPERVISOR_STACK_SWITCH,
        result: -1,
        args: [u64::from(FLAT_KERNEL_SS64), sp3, 0, 0, 0, 0],
    };
    let r = hypercall(
        nr::HYPERVISOR_MULTICALL,
        [&raw mut entry as u64, 1, 0, 0, 0],
    );
    wrong += u32::from(r != 0 || entry.result != 0) + trips(sp3, VEC_SYSCALL);
    let register = |handler: u64| {
        let reg = guest_abi::callback::CallbackRegister {
            callback_type: guest_abi::callback::CALLBACKTYPE_SYSCALL,
            flags: 0,
            address: handler,
        };
        hypercall(
            nr::HYPERVISOR_CALLBACK_OP,
            [
                u64::from(guest_abi::callback::CALLBACKOP_REGISTER),
                &raw const reg as u64,
                0,
                0,
                0,
            ],
        )
    };
    wrong += u32::from(register(addr(xp_syscall_alt)) != 0) + trips(sp3, VEC_SYSCALL_ALT);
    wrong += u32::from(register(addr(xp_syscall)) != 0) + trips(sp3, VEC_SYSCALL);
    let back = stack_switch(ks);
    check(
        "bounce_follows_stack_and_callback",
        wrong == 0 && back == 0,
        format_args!("{wrong} wrong (stack_switch back {back})"),
    );
}

/// Check 14 (`main`): `syscall_offset` is `xp_u_syscall`'s offset in the user page,
/// `hv_cs` the hypervisor's code selector.
fn fast_path_checks(syscall_offset: u64, hv_cs: u64, shared: u64) {
    let next = USER_VA + syscall_offset + 2;
    // Events masked (IF clear in the return frame): the event the checks above left pending
    // stays pending, and the frames show the mask (IF clear, the mask in bits 32-39 of CS).
    let masked = IretContext {
        rflags: 2,
        ..user_context(syscall_offset)
    };
    let mut wrong = 0u32;
    for i in 0..200 {
        let v = iret_to_user(&masked, 0);
        let (w, rax) = recorded();
        let ok = v == VEC_SYSCALL
            && rax == nr::HYPERVISOR_CONSOLE_IO
            && w[0] == next
            && w[2] == next
            && w[3] == u64::from(FLAT_USER_CS64) | 1 << 32
            && w[4] & RFLAGS_IF == 0
            && w[5] == USER_VA + 0x800
            && w[6] == u64::from(FLAT_USER_SS64);
        if !ok && wrong == 0 {
            say!(
                "xenpv: round trip {i}: vector {v:#x}, rax {rax:#x}, frame {:x?}",
                &w[..7]
            );
        }
        wrong += u32::from(!ok);
    }
    check(
        "syscall_round_trips",
        wrong == 0,
        format_args!("{wrong} of 200 round trips with a wrong frame"),
    );

    // The registers across both trips (the `iret` to the program, its `syscall` back to the
    // kernel): each the same on the kernel's side as the kernel left it, but rax, which
    // the `iret_context` gives, and rcx and r11, which the `syscall` instruction itself
    // sets. As Linux has them, the `iret_context` and the bounce frame are in one page of
    // the kernel stack (the middle of one, for this check), which the hypervisor's short
    // ways keep: the first trips may go the ordinary way, the others the entry stub's.
    let ks = kernel_stack();
    let sp = (ks & !0xFFF) - 0x800;
    let switched = hypercall(
        nr::HYPERVISOR_STACK_SWITCH,
        [u64::from(FLAT_KERNEL_SS64), sp, 0, 0, 0],
    );
    let context = sp - 0x100;
    // SAFETY: 72 bytes in the middle of this kernel's own kernel stack, which nothing uses
    // while the snippets run (the bounce frame goes 56 bytes below `sp`).
    unsafe { core::ptr::write_volatile(context as *mut IretContext, masked) };
    let mut wrong = u32::from(switched != 0);
    for i in 0..8 {
        let v = run(xp_k_iret_regs, context, 0x1212);
        let (_, rax) = recorded();
        // SAFETY: written only by the stubs, which ran to completion before xp_run returned.
        let regs = unsafe { core::ptr::read_volatile(&raw const xp_trap_regs) };
        let want = |at: usize| REG_PATTERN + at as u64;
        let ok = v == VEC_SYSCALL
            && rax == masked.rax
            && regs[0] == context
            && (2..=5).all(|at| regs[at] == want(at))
            // r8..r15 but r11 (index 9; the `syscall` instruction's RFLAGS), r12 xp_run's.
            && (6..14).all(|at| at == 9 || regs[at] == if at == 10 { 0x1212 } else { want(at) });
        if !ok && wrong == 0 {
            say!("xenpv: registers, round trip {i}: vector {v:#x}, rax {rax:#x}, {regs:x?}");
        }
        wrong += u32::from(!ok);
    }
    let back = hypercall(
        nr::HYPERVISOR_STACK_SWITCH,
        [u64::from(FLAT_KERNEL_SS64), ks, 0, 0, 0],
    );
    check(
        "registers_kept_across_system_call",
        wrong == 0 && back == 0,
        format_args!(
            "{wrong} of 8 round trips changed a register (stack_switch {switched}, {back})"
        ),
    );

    // Kernel stacks on the hypervisor's addresses (the read-only M2P, the entry area, the
    // hypervisor's image): refused, so no frame can ever be pushed there.
    let refused = [
        0xFFFF_8000_0000_2000u64,
        0xFFFF_8080_0000_9000,
        0xFFFF_8100_0000_2000,
    ]
    .map(|sp| {
        hypercall(
            nr::HYPERVISOR_STACK_SWITCH,
            [u64::from(FLAT_KERNEL_SS64), sp, 0, 0, 0],
        )
    });
    let v = iret_to_user(&masked, 0);
    let (w, _) = recorded();
    check(
        "stack_switch_hypervisor_refused",
        refused.iter().all(|&r| r < 0) && v == VEC_SYSCALL && w[5] == USER_VA + 0x800,
        format_args!("stack_switch {refused:?}, then a system call: {v:#x}"),
    );

    // Returns to user mode the CPU would refuse: a non-canonical rip, the hypervisor's code
    // selector with RPL 3. The #GP the CPU raises, from user mode (Xen's fault on its own
    // iretq), not a crash, and nothing of the frame reaches iretq.
    let ctx = |cs: u64, rip: u64| IretContext {
        rax: 0,
        r11: 0x5555,
        rcx: 0x6666,
        flags: 0,
        rip,
        cs,
        // IF clear: a pending event is not delivered first.
        rflags: 2,
        rsp: USER_VA + 0x800,
        ss: u64::from(FLAT_USER_SS64),
    };
    let mut bad = 0u32;
    for (i, (c, code)) in [
        (ctx(u64::from(FLAT_USER_CS64), 0x8000_0000_0000_0000), 0),
        (ctx(hv_cs | 3, USER_VA + syscall_offset), hv_cs),
    ]
    .iter()
    .enumerate()
    {
        let v = iret_to_user(c, 0);
        let (w, _) = recorded();
        let ok = v == 13
            && w[0] == 0x6666
            && w[1] == 0x5555
            && w[2] == *code
            && w[3] == c.rip
            && w[4] & 0xFFFF == c.cs
            && w[6] == USER_VA + 0x800
            && w[7] == u64::from(FLAT_USER_SS64);
        if !ok {
            say!(
                "xenpv: bad user iret {i}: vector {v:#x}, frame {:x?}",
                &w[..8]
            );
            bad |= 1 << i;
        }
    }
    check(
        "iret_user_refused_frame_gp",
        bad == 0,
        format_args!("user-mode frames not answered by #GP: {bad:#b} (rip, cs)"),
    );

    // An event pending while events are masked (the timer's, a deadline already past) is
    // delivered as the iret to user mode unmasks them, before the program's first
    // instruction: the event callback's frame is the program's.
    // Nothing pending first, as in `gdt`'s timer check: a port still pending from the checks
    // before (with two vCPUs, `smp` clears vCPU 0's upcall flag by hand but not the ports)
    // would keep the timer's event from raising the upcall flag again (Xen's
    // `evtchn_set_pending`), and the return would find nothing to deliver.
    // SAFETY: vCPU 0's vcpu_info (byte 0 upcall pending, byte 8 the selector word) and the
    // pending bitmap (byte 2048) are in this domain's shared_info page, mapped; the
    // hypervisor updates them atomically too.
    unsafe {
        core::ptr::write_volatile(shared as *mut u8, 0);
        (*((shared + 8) as *const core::sync::atomic::AtomicU64))
            .store(0, core::sync::atomic::Ordering::SeqCst);
        for i in 0..8 {
            (*((shared + 2048 + 8 * i) as *const core::sync::atomic::AtomicU64))
                .store(0, core::sync::atomic::Ordering::SeqCst);
        }
    }
    let t = hypercall(nr::HYPERVISOR_SET_TIMER_OP, [1, 0, 0, 0, 0]);
    let v = iret_to_user(&user_context(syscall_offset), 0);
    let (w, _) = recorded();
    check(
        "iret_delivers_pending_event",
        t == 0
            && v == VEC_EVENT
            && w[2] == USER_VA + syscall_offset
            && w[3] & 0xFFFF == u64::from(FLAT_USER_CS64)
            && w[5] == USER_VA + 0x800,
        format_args!("timer {t}, vector {v:#x}, frame {:x?}", &w[..7]),
    );
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("FAIL panic: {info}");
    loop {
        core::hint::spin_loop();
    }
}
