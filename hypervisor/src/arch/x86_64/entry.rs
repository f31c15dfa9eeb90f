//! The per-pCPU entry area (DESIGN.md §2–§3): the only hypervisor memory mapped while a
//! guest runs, besides the read-only M2P.
//!
//! It sits at the same virtual address on every pCPU (slot 257), backed by different
//! frames per pCPU:
//!
//! | offset | what | hypervisor root | guest root |
//! |---|---|---|---|
//! | 0x0000 | entry stubs (`.entry_text`) | R-X | R-X |
//! | 0x2000 | GDT, TSS, entry constants | RW- | R-- |
//! | 0x3000 | IDT | RW- | R-- |
//! | 0x4000 | dom0's I/O permission bitmap, 8 KiB + the 0xFF end byte (`ioport.rs`; the same frames on every pCPU) | R-- | R-- |
//! | 0x8000 | entry stack (TSS.RSP0), 8 KiB | RW- | RW- |
//! | 0xB000 | NMI stack (IST), 8 KiB | RW- | RW- |
//! | 0xE000 | #DF stack (IST), 8 KiB | RW- | RW- |
//! | 0x11000 | #MC stack (IST), 8 KiB | RW- | RW- |
//! | 0x14000 | this pCPU's `PerCpu` (`percpu.rs`) | RW- | not mapped |
//! | 0x20000 | the GDT, 15 pages (`gdt.rs`): for each vCPU switched in, page 0 this pCPU's Xenia descriptors or a Xen PV guest's own GDT frames in pages 0.., the shared null page, page 14 Xen's reserved page or the hypervisor-only one (`gdt::load_for`) | RW- (page 0, a guest's frames) | R-- (a guest's frames RW-) |
//! | 0x30000 | the LDT area, 16 pages: a Xen PV vCPU's LDT frames (`gdt::load_ldt`), else not mapped or the null page | as the GDT's | as the GDT's |
//!
//! with unmapped guard pages between the stacks. The I/O bitmap lies within 16 KiB of the
//! TSS, so that an `iomap_base` of 0xFFFF points past the TSS limit (no port for anyone)
//! and the bitmap's own offset gives dom0 its ports (`gdt::set_io_ports`). Every vector enters a stub here. From a
//! guest, the stub switches CR3 to the hypervisor root and copies the hardware frame to
//! the pCPU's hypervisor stack, which is not mapped in the guest root, before any Rust
//! code runs (the SYSCALL stub, which has no hardware frame, switches first and builds its
//! frame on the hypervisor stack directly); the way back copies the return frame to the entry stack, loads the guest
//! root and `iretq`s. Entry code reads only the read-only constants and what the CPU or
//! the stub itself wrote after entry (the guest can write the stacks while it runs, but it
//! is not running while the stub is).
//!
//! The boot CPU's entry-area pages and their page tables are statics in the image,
//! mapped before anything else runs, so that early faults are reported through the same
//! stubs; each application processor's come from the frame allocator (`build_ap_area`).

use core::mem::{offset_of, size_of};

use x86_64::structures::paging::{PageTable, PageTableFlags as F};

use super::layout::{ENTRY_AREA_BASE, ENTRY_AREA_SLOT, IMAGE_BASE, phys_to_virt};

pub const PAGE: u64 = 4096;
pub const TEXT_OFFSET: u64 = 0x0000;
pub const TEXT_PAGES: u64 = 2;
pub const CPU_PAGE_OFFSET: u64 = 0x2000;
pub const IDT_OFFSET: u64 = 0x3000;
/// Dom0's I/O permission bitmap (three pages: 8 KiB of bitmap, then the end byte).
pub const IO_BITMAP_OFFSET: u64 = 0x4000;
/// Pages of the I/O bitmap.
pub const IO_BITMAP_PAGES: usize = 3;
pub const ENTRY_STACK_OFFSET: u64 = 0x8000;
pub const NMI_STACK_OFFSET: u64 = 0xB000;
pub const DF_STACK_OFFSET: u64 = 0xE000;
pub const MC_STACK_OFFSET: u64 = 0x11000;
pub const STACK_BYTES: u64 = 0x2000;
/// This pCPU's `PerCpu`: same address on every pCPU, mapped in the hypervisor root only
/// (above the #MC stack's guard page).
pub const PERCPU_OFFSET: u64 = 0x14000;

/// The GDT: [`GDT_PAGES`] pages, so that Xen's flat selectors (0xe023, 0xe02b, 0xe033, in
/// its reserved page 14) are real descriptors for Xen PV guests (DESIGN.md §12).
pub const GDT_OFFSET: u64 = 0x20000;
/// Pages of the GDT: the 14 Xen gives a guest's own GDT, then Xen's reserved page.
pub const GDT_PAGES: u64 = 15;
/// Index of Xen's reserved GDT page (`FIRST_RESERVED_GDT_PAGE`).
pub const XEN_GDT_PAGE: u64 = 14;
/// Xenia's descriptors at the bottom of GDT page 0 (the rest of the page is zero).
pub const GDT_ENTRIES: usize = 16;
/// The LDT area: where the frames of a Xen PV vCPU's LDT (`MMUEXT_SET_LDT`) are mapped while
/// it runs, [`LDT_PAGES`] pages (8192 descriptors, Xen's limit); the null page otherwise.
pub const LDT_OFFSET: u64 = 0x30000;
pub const LDT_PAGES: u64 = 16;

/// Layout of the CPU page: (the GDT used to start it; those bytes are unused), TSS, then
/// the constants the stubs read.
pub const TSS_OFFSET_IN_PAGE: u64 = 128;
pub const CONSTS_OFFSET_IN_PAGE: u64 = 256;

/// Constants the entry stubs read before they leave the guest root (read-only to guests,
/// and readable by ring 1, as every supervisor page is): only what the switch needs. Offsets
/// are fixed in the asm. What the stubs need once they run on the hypervisor root (the
/// hypervisor stack, the guest root's address) lives in this pCPU's
/// [`PerCpu`], at [`PERCPU_OFFSET`] in the entry area, which no guest
/// root maps: a ring-1 attacker learns nothing from this page but the one value it cannot do
/// without.
#[repr(C)]
pub struct EntryConsts {
    /// The hypervisor root's CR3 value; 0 until the real page tables are in place.
    pub hv_cr3: u64,
    /// This pCPU's number.
    pub cpu: u64,
}

const _: () = {
    assert!(offset_of!(EntryConsts, hv_cr3) == 0);
    assert!(size_of::<super::percpu::PerCpu>() <= PAGE as usize);
    assert!(CONSTS_OFFSET_IN_PAGE as usize + size_of::<EntryConsts>() <= PAGE as usize);
    assert!(TSS_OFFSET_IN_PAGE as usize + 104 <= CONSTS_OFFSET_IN_PAGE as usize);
    // The bitmap and its end byte end below TSS offset 0xFFFF (`gdt::NO_IO_PORTS`), and
    // leave a guard page below the entry stack.
    assert!(
        IO_BITMAP_OFFSET + IO_BITMAP_PAGES as u64 * PAGE - CPU_PAGE_OFFSET - TSS_OFFSET_IN_PAGE
            < 0xFFFF
    );
    assert!(IO_BITMAP_OFFSET + (IO_BITMAP_PAGES as u64 + 1) * PAGE <= ENTRY_STACK_OFFSET);
};

/// Pseudo-vector under which a SYSCALL from a guest reaches `guest_trap_dispatch`.
pub const SYSCALL_VECTOR: u64 = 0x100;

pub const fn va(offset: u64) -> u64 {
    ENTRY_AREA_BASE + offset
}

pub fn consts() -> *mut EntryConsts {
    va(CPU_PAGE_OFFSET + CONSTS_OFFSET_IN_PAGE) as *mut EntryConsts
}

// ---- the stubs ----
//
// TrapFrame (trap.rs) layout, from the lowest address: r15 r14 r13 r12 r11 r10 r9 r8 rbp
// rdi rsi rdx rcx rbx rax vector error_code rip cs rflags rsp ss (22 quadwords).
core::arch::global_asm!(
    r#"
.section .entry_text, "ax"
.balign 4096
xenia_ea_origin:
.set EA_CONSTS, xenia_ea_origin + {cpu_page} + {consts}
.set EA_HV_CR3, EA_CONSTS + 0
.set EA_PERCPU, xenia_ea_origin + {percpu}
.set EA_ENTRY_STACK_BOTTOM, xenia_ea_origin + {entry_stack}
.set EA_ENTRY_STACK_TOP, xenia_ea_origin + {entry_stack} + {stack_bytes}
.set EA_RETURN_FRAME, EA_ENTRY_STACK_TOP - 56
.set XENIA_ERRCODE_VECTORS, 0x60227D00

.global xenia_entry_stubs
xenia_entry_stubs:
.set vec, 0
.rept 256
    .balign 16
    .if vec < 32
        .if (XENIA_ERRCODE_VECTORS >> vec) & 1
        .else
            push 0
        .endif
    .else
        push 0
    .endif
    push vec
    jmp xenia_entry_common
    .set vec, vec + 1
.endr

// SYSCALL (from ring 3, or ring 1): CPL 0, guest CR3, the guest's RSP, RIP in RCX,
// RFLAGS in R11, interrupts off (FMASK). Unlike an exception, nothing is on a stack yet:
// the hypervisor root is loaded first (RAX kept in the entry stack's return-frame slot
// meanwhile, the guest's RSP in its bottom word; no stack is used until the hypervisor's),
// and the hardware-style frame is built on the hypervisor stack itself, with no copy from
// the entry stack (issue 18, session 15: 18 instructions of each system call and Xen PV
// hypercall). What is left on the entry stack (the guest's RAX and RSP) is this guest's
// own, and wiped before another domain's vCPU runs here, as below. A Xen PV vCPU's
// system calls and `iret` hypercalls are tried on the short way first (`xenia_pv_fast`).
.global xenia_entry_syscall
xenia_entry_syscall:
    mov [rip + EA_ENTRY_STACK_BOTTOM], rsp
    mov [rip + EA_ENTRY_STACK_TOP - 48], rax
    mov rax, [rip + EA_HV_CR3]
    mov cr3, rax
    // Hypervisor root from here: this pCPU's PerCpu is mapped (hv_stack_top at +0).
    mov rsp, [rip + EA_PERCPU]
    cmp byte ptr [rip + EA_PERCPU + {pc_mode}], {mode_fast}
    ja xenia_pv_fast
xenia_syscall_frame:
    push {user_ds}
    push qword ptr [rip + EA_ENTRY_STACK_BOTTOM]
    mov qword ptr [rip + EA_ENTRY_STACK_BOTTOM], 0
    push r11
    push {user_cs}
    push rcx
    push 0
    push {syscall_vector}
    push qword ptr [rip + EA_ENTRY_STACK_TOP - 48]
    // RSP at the RAX slot, RCX the guest's (its RIP), as `xenia_entry_from_guest` leaves
    // them after its copy.
    jmp xenia_entry_saved_rax

// ---- The short way for a Xen PV vCPU's system calls (issue 18, session 20) ----
//
// A 64-bit Xen PV kernel runs in ring 3, so each system call of its programs is two trips
// through the hypervisor: the program's `syscall`, bounced to the kernel's syscall
// callback in kernel mode, and the kernel's `HYPERVISOR_iret` back to the program. The trap
// path (`guest::fast_pv`) takes each with the world and the domain locked; this stub takes
// the common case of each on the hypervisor root before any Rust code, in Xen's way
// (`lstar_enter`, `switch_to_kernel`, `create_bounce_frame`, `do_iret`), with the same
// checks, and hands anything else to the trap path **before anything has changed**:
//
// - `syscall` from user mode: an event pending and unmasked, no syscall callback or one not
//   canonical, a frame place (16-byte aligned below `kernel_sp`, seven words within one
//   page: `PerCpu::set_bounce_place`) not in the kernel-stack page this pCPU kept
//   (`PerCpu::words_page`: found writable plain memory through the kernel's table at the
//   frame table's current generation, as `fast_pv::guest_words` keeps it);
// - `HYPERVISOR_iret` from kernel mode: an `iret_context` (nine words at `rsp`) not within
//   the kept page (found readable or writable), a return to kernel mode, no user table, a
//   selector pair other than Xen's flat one or the pair `fast_pv::flat_or_checked_refusal`
//   remembered at the current count of descriptor changes, a `rip` or `rsp` not canonical,
//   or an event pending that the return unmasks;
// - for both, anything the trap's end would do (`fast::may_leave_quietly`: a request to
//   this pCPU, a wake-up due, a timer bound below what the APIC is armed for), or the short
//   way turned off (`xenpv_fastpath=0`).
//
// Why no lock is needed. The domain's lock orders the trap path's changes of a vCPU's
// mode, tables, stack and callbacks; none of them is made by another pCPU while the vCPU
// is current here (every remote writer first waits for, or refuses, a vCPU that is on a
// pCPU: docs/review-lockfree-xenpv.md §1, Xen's model), and this pCPU's own Rust code is not
// running (the guest was). So the `Vcpu` at `PerCpu::fast_vcpu` is read and its mode
// written here as the trap path would, and stays the truth: nothing needs to copy a mode
// back. The guest memory written (the bounce frame) and read (the `iret_context`) is
// written or read as `fast::light_syscall` does: a page kept at the current generation
// stays what it was found until this pCPU answers a flush request, which it cannot do
// before it is back in the guest (interrupts off; docs/security.md §3.10). Each word of the
// `iret_context` is read once, copied to the return frame, and checked there. The guest
// root is switched with `entry::load_guest_root`'s protocol (the source published by an
// `xchg`, then the root generation read), or by a call to it.
//
// Registers: RSI the Vcpu (this pCPU's PerCpu at the end), RDX the vcpu_info; RAX, RDI, R8
// and R9 are scratch (the four saved on the hypervisor stack). RCX and R11 stay the
// guest's (a program's RIP and RFLAGS) until the `iret` sets them. The return frame is
// built in the entry stack's return slots, as `xenia_return_to_guest` builds it, and left
// through `xenia_pv_iretq`, which `xenia_entry_common` recognises as it does
// `xenia_guest_iretq`: a fault there is the guest's, as on the way out.
//
// What both ways check first (refused: to 90 below, which restores the five registers).
.macro XENIA_PV_FAST_COMMON
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    // What the trap's end would look at (`fast::may_leave_quietly`).
    cmp dword ptr [rip + EA_PERCPU + {pc_requests}], 0
    jne 90f
    movabs rax, offset {wake_due}
    cmp byte ptr [rax], 0
    jne 90f
    mov rax, [rip + EA_PERCPU + {pc_timer_due}]
    cmp rax, [rip + EA_PERCPU + {pc_armed}]
    jb 90f
    // The Vcpu and its vcpu_info: `guest::entered` records both before the mode that
    // brings a system call here, and `World::switch` takes that mode back with them (so
    // neither is 0 here; looked at all the same, as a refusal costs less than a fault).
    mov rsi, [rip + EA_PERCPU + {pc_vcpu}]
    mov rdx, [rip + EA_PERCPU + {pc_info}]
    test rsi, rsi
    jz 90f
    test rdx, rdx
    jz 90f
    // The kept kernel-stack page: found at this generation, through the kernel's table.
    mov rax, [rip + EA_PERCPU + {pc_generation_at}]
    mov rax, [rax]
    cmp rax, [rip + EA_PERCPU + {pc_words} + 24]
    jne 90f
    mov rax, [rsi + {vc_l4}]
    shl rax, 12
    cmp rax, [rip + EA_PERCPU + {pc_words} + 8]
    jne 90f
.endm

xenia_pv_fast:
    cmp byte ptr [rip + EA_PERCPU + {pc_mode}], {mode_kernel_fast}
    je 50f
    XENIA_PV_FAST_COMMON

    // ---- A program's `syscall`, bounced to the kernel (user mode) ----
    // The mode byte that brought the call here agrees with the vCPU's own (defence in
    // depth: the byte is the only thing that tells a program's system call from the
    // kernel's hypercall).
    cmp byte ptr [rsi + {vc_kernel_mode}], 0
    jne 90f
    movzx r8d, byte ptr [rdx + {vi_mask}]
    test r8d, r8d
    jnz 8f
    cmp byte ptr [rdx + {vi_pending}], 0
    jne 90f
8:
    // The callback (non-zero; `guest::entered` records a callback that is not canonical
    // as none), and the frame's place (`fast_pv::record_kernel_sp`: 16-byte aligned below
    // the kernel stack, within one page) in the kept page, found writable plain memory.
    mov r9, [rip + EA_PERCPU + {pc_syscall}]
    test r9, r9
    jz 90f
    mov rax, [rip + EA_PERCPU + {pc_bounce_key}]
    cmp rax, [rip + EA_PERCPU + {pc_words}]
    jne 90f
    // Nothing refused: from here on the way is taken. The frame, in the direct map.
    mov rdi, [rip + EA_PERCPU + {pc_bounce_sp}]
    mov [rip + EA_ENTRY_STACK_TOP - 16], rdi
    mov eax, edi
    and eax, 4095
    add rax, [rip + EA_PERCPU + {pc_words} + 32]
    // Xen's bounce frame: rcx, r11, rip, cs (the event mask in bits 32..39), rflags (IF the
    // inverse of the mask), rsp, ss.
    mov [rax], rcx
    mov [rax + 8], r11
    mov [rax + 16], rcx
    mov rdi, r8
    shl rdi, 32
    or rdi, {flat_cs}
    mov [rax + 24], rdi
    mov rdi, r11
    and rdi, {not_if}
    test r8d, r8d
    jnz 2f
    or rdi, {rflags_if}
2:
    mov [rax + 32], rdi
    mov rdi, [rip + EA_ENTRY_STACK_BOTTOM]
    mov [rax + 40], rdi
    mov qword ptr [rax + 48], {flat_ss}
    // The handler's frame: the callback in kernel mode on that stack, with Xen's flat
    // selectors and the program's flags less AC, VM, RF, NT, TF and IOPL (`clean_flags`).
    mov [rip + EA_ENTRY_STACK_TOP - 40], r9
    mov qword ptr [rip + EA_ENTRY_STACK_TOP - 32], {flat_cs}
    mov rdi, r11
    and rdi, {syscall_keep}
    or rdi, {rflags_set}
    mov [rip + EA_ENTRY_STACK_TOP - 24], rdi
    mov qword ptr [rip + EA_ENTRY_STACK_TOP - 8], {flat_ss}
    cmp byte ptr [rip + EA_PERCPU + {pc_masks}], 0
    je 3f
    mov byte ptr [rdx + {vi_mask}], 1
3:
    // To kernel mode (`xenpv::toggle_mode`): the mode, the GS bases, the kernel's table.
    mov byte ptr [rsi + {vc_kernel_mode}], 1
    mov byte ptr [rip + EA_PERCPU + {pc_mode}], {mode_kernel_fast}
    swapgs
    mov rax, [rsi + {vc_l4}]
    shl rax, 12
    mov r9d, 1
    jmp 60f

    // ---- The kernel's `HYPERVISOR_iret` back to a program (kernel mode) ----
    // Only that hypercall: the kernel's others go the ordinary way at once.
50:
    cmp qword ptr [rip + EA_ENTRY_STACK_TOP - 48], {hc_iret}
    jne xenia_syscall_frame
    XENIA_PV_FAST_COMMON
    cmp byte ptr [rsi + {vc_kernel_mode}], 1
    jne 90f
    // The `iret_context` at the kernel's `rsp`: 8-byte aligned, within the kept page
    // (found readable or writable).
    mov rax, [rip + EA_ENTRY_STACK_BOTTOM]
    test eax, 7
    jnz 90f
    mov edi, eax
    and edi, 4095
    cmp edi, 4096 - {iret_bytes}
    ja 90f
    and rax, -4096
    or rax, 3
    cmp rax, [rip + EA_PERCPU + {pc_words} + 40]
    jne 90f
    mov rax, [rip + EA_PERCPU + {pc_words} + 32]
    add rax, rdi
    // To user mode only, which has a table.
    cmp qword ptr [rsi + {vc_user_l4}], 0
    je 90f
    // Each word read once, copied to the return frame, checked there. CS and SS: the low
    // 16 bits, RPL 3; CS's own RPL says the return is to user mode.
    movzx r8d, word ptr [rax + 40]
    lea edi, [r8 + 1]
    test dil, 3
    jnz 90f
    movzx r9d, word ptr [rax + 64]
    or r9d, 3
    mov [rip + EA_ENTRY_STACK_TOP - 32], r8
    mov [rip + EA_ENTRY_STACK_TOP - 8], r9
    // The pair remembered at this count of descriptor changes (Linux's own), or Xen's flat
    // one.
    mov edi, r8d
    shl edi, 16
    or edi, r9d
    cmp edi, [rsi + {vc_sel_pair}]
    jne 4f
    movabs rdi, offset {desc_changes}
    mov rdi, [rdi]
    cmp rdi, [rsi + {vc_sel_changes}]
    je 5f
4:
    cmp r8d, {flat_cs}
    jne 90f
    cmp r9d, {flat_ss}
    jne 90f
5:
    // RIP and RSP canonical: bits 63..47 of each all 0 or all 1.
    mov rdi, [rax + 32]
    mov r8, [rax + 56]
    mov [rip + EA_ENTRY_STACK_TOP - 40], rdi
    mov [rip + EA_ENTRY_STACK_TOP - 16], r8
    sar rdi, 47
    sar r8, 47
    inc rdi
    inc r8
    or rdi, r8
    cmp rdi, 1
    ja 90f
    // RFLAGS: the event mask is its inverted IF; an event the return unmasks goes the
    // ordinary way (delivered there, on the way out).
    mov rdi, [rax + 48]
    xor r9d, r9d
    bt edi, 9
    setnc r9b
    jnc 6f
    cmp byte ptr [rdx + {vi_pending}], 0
    jne 90f
6:
    // Nothing refused: from here on the way is taken.
    and rdi, {iret_keep}
    or rdi, {rflags_set}
    mov [rip + EA_ENTRY_STACK_TOP - 24], rdi
    mov rdi, [rax]
    mov [rip + EA_ENTRY_STACK_TOP - 48], rdi
    // RCX and R11 restored unless VGCF_in_syscall.
    test dword ptr [rax + 24], {in_syscall}
    jnz 7f
    mov r11, [rax + 8]
    mov rcx, [rax + 16]
7:
    mov byte ptr [rdx + {vi_mask}], r9b
    // To user mode (`xenpv::toggle_mode`).
    mov byte ptr [rsi + {vc_kernel_mode}], 0
    mov byte ptr [rip + EA_PERCPU + {pc_mode}], {mode_user_fast}
    swapgs
    mov rax, [rsi + {vc_user_l4}]
    shl rax, 12
    xor r9d, r9d

    // ---- Both: the entry counted, the new mode's guest root, back to the guest ----
    // RAX: the new mode's table; R9: 1 for the kernel's, 0 for the user's.
60:
    lock inc qword ptr [rdx + {vi_count}]
    lea rsi, [rip + EA_PERCPU]
    mov byte ptr [rsi + {pc_pending}], 0
    // `entry::load_guest_root(rax)`: the slot this mode's root was in last, if it is kept
    // for this table at this root generation (published first, as there); else the Rust
    // function, and its slot is remembered.
    mov rdi, rax
    movzx r8d, byte ptr [rsi + r9 + {pc_fast_slots}]
    cmp r8d, {root_slots}
    jae 68f
    xchg [rsi + {pc_root_source}], rax
    mov rax, [rsi + {pc_root_generation_at}]
    mov rax, [rax]
    cmp [rsi + r8 * 8 + {pc_root_sources}], rdi
    jne 68f
    cmp [rsi + r8 * 8 + {pc_root_generations}], rax
    jne 68f
    mov rax, [rsi + r8 * 8 + {pc_root_frames}]
    test rax, rax
    jz 68f
    mov [rsi + {pc_guest_cr3}], rax
70:
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    lea rsp, [rip + EA_ENTRY_STACK_TOP - 48]
    mov cr3, rax
    pop rax
// A fault here is the guest's, as at `xenia_guest_iretq` (`xenia_entry_common`).
.global xenia_pv_iretq
xenia_pv_iretq:
    iretq
68:
    call xenia_pv_root_slow
    movzx eax, byte ptr [rsi + {pc_root_recent}]
    mov [rsi + r9 + {pc_fast_slots}], al
    mov rax, [rsi + {pc_guest_cr3}]
    jmp 70b

    // Refused: nothing changed; the trap path takes it.
90:
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    jmp xenia_syscall_frame

// `entry::load_guest_root` for the table at machine address RDI, from `xenia_pv_fast`
// (which keeps RAX, RDI and R8 as scratch): every other register kept.
xenia_pv_root_slow:
    push rcx
    push rdx
    push rsi
    push r9
    push r10
    push r11
    push rbp
    mov rbp, rsp
    and rsp, -16
    cld
    movabs rax, offset {root_slow}
    call rax
    mov rsp, rbp
    pop rbp
    pop r11
    pop r10
    pop r9
    pop rsi
    pop rdx
    pop rcx
    ret

xenia_entry_common:
    test byte ptr [rsp + 24], 3
    jnz xenia_entry_from_guest
    // A fault on the `iretq` to a guest (a selector or RIP the CPU refused in the frame):
    // the guest's fault, as Xen's `exception_with_ints_disabled` makes it, "as if this
    // exception occurred in guest context".
    push rax
    lea rax, [rip + xenia_guest_iretq]
    cmp [rsp + 24], rax
    je 3f
    lea rax, [rip + xenia_pv_iretq]
    cmp [rsp + 24], rax
3:
    pop rax
    je xenia_guest_iret_fault

    // From the hypervisor: stay on this stack; make sure the hypervisor root is loaded
    // (an NMI can land in a stub before its CR3 switch) and restore what was there.
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rbx, cr3
    mov rax, [rip + EA_HV_CR3]
    test rax, rax
    jz 1f
    cmp rax, rbx
    je 1f
    mov cr3, rax
1:
    mov rdi, rsp
    cld
    movabs rax, offset {hv_dispatch}
    call rax
    mov rax, cr3
    cmp rax, rbx
    je 2f
    mov cr3, rbx
2:
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    // An NMI's stack (IST) is readable by the guest running on this pCPU: leave none of the
    // hypervisor's registers there, nor the vector and error code (17 words below the
    // hardware frame; on the hypervisor stack this is dead space, with no red zone).
    mov qword ptr [rsp - 8], 0
    mov qword ptr [rsp - 16], 0
    mov qword ptr [rsp - 24], 0
    mov qword ptr [rsp - 32], 0
    mov qword ptr [rsp - 40], 0
    mov qword ptr [rsp - 48], 0
    mov qword ptr [rsp - 56], 0
    mov qword ptr [rsp - 64], 0
    mov qword ptr [rsp - 72], 0
    mov qword ptr [rsp - 80], 0
    mov qword ptr [rsp - 88], 0
    mov qword ptr [rsp - 96], 0
    mov qword ptr [rsp - 104], 0
    mov qword ptr [rsp - 112], 0
    mov qword ptr [rsp - 120], 0
    mov qword ptr [rsp - 128], 0
    mov qword ptr [rsp - 136], 0
    iretq

xenia_entry_from_guest:
    // Entry stack, guest root: [rsp] vector, +8 error code, +16 rip ... +48 ss.
    push rax
    push rcx
    mov rax, [rip + EA_HV_CR3]
    mov cr3, rax
    // Hypervisor root from here: this pCPU's PerCpu is mapped (hv_stack_top at +0).
    mov rax, [rip + EA_PERCPU]
    mov rcx, [rsp + 64]
    mov [rax - 8], rcx
    mov rcx, [rsp + 56]
    mov [rax - 16], rcx
    mov rcx, [rsp + 48]
    mov [rax - 24], rcx
    mov rcx, [rsp + 40]
    mov [rax - 32], rcx
    mov rcx, [rsp + 32]
    mov [rax - 40], rcx
    mov rcx, [rsp + 24]
    mov [rax - 48], rcx
    mov rcx, [rsp + 16]
    mov [rax - 56], rcx
    mov rcx, [rsp + 8]
    mov [rax - 64], rcx
    mov rcx, [rsp]
    // The entry (or IST) stack is readable by every guest on this pCPU; what this entry
    // left there (rcx, rax, vector, error code, rip, cs, rflags, rsp, ss) is this guest's
    // own, and is wiped before a vCPU of another domain runs here (`scrub_entry_stacks`).
    lea rsp, [rax - 64]
xenia_entry_saved_rax:
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    xor ebp, ebp
    movabs rax, offset {guest_dispatch}
    call rax
    // fall through: return to the guest whose frame is at the top of the stack

// RSP points at a TrapFrame at the top of the hypervisor stack, hypervisor root loaded.
.global xenia_return_to_guest
xenia_return_to_guest:
    lea rcx, [rip + EA_RETURN_FRAME]
    mov rax, [rsp + 21*8]
    mov [rcx + 48], rax
    mov rax, [rsp + 20*8]
    mov [rcx + 40], rax
    mov rax, [rsp + 19*8]
    mov [rcx + 32], rax
    mov rax, [rsp + 18*8]
    mov [rcx + 24], rax
    mov rax, [rsp + 17*8]
    mov [rcx + 16], rax
    mov rax, [rsp + 14*8]
    mov [rcx + 8], rax
    // PerCpu.guest_cr3 (+8).
    mov rax, [rip + EA_PERCPU + 8]
    mov [rcx], rax
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    lea rsp, [rip + EA_RETURN_FRAME]
    pop rax
    mov cr3, rax
    // The entry stack is readable by the guest: leave no machine address on it.
    mov qword ptr [rsp - 8], 0
    pop rax
.global xenia_guest_iretq
xenia_guest_iretq:
    iretq

// The `iretq` above faulted (#GP, #NP or #SS), from ring 0 with the guest root loaded and
// every register the guest's. The frame it refused is still at EA_ENTRY_STACK_TOP - 40 (rip,
// cs, rflags, rsp, ss); the CPU pushed its own below that, 16-byte aligned, so the word
// under the guest's frame is padding and the one under that the CPU's saved SS, both dead:
// the vector and error code go there, and the trap enters as from the guest, with that
// frame (`guest::trap` delivers the fault to the guest's kernel).
xenia_guest_iret_fault:
    push qword ptr [rsp + 8]
    pop qword ptr [rip + EA_ENTRY_STACK_TOP - 48]
    push qword ptr [rsp]
    pop qword ptr [rip + EA_ENTRY_STACK_TOP - 56]
    lea rsp, [rip + EA_ENTRY_STACK_TOP - 56]
    jmp xenia_entry_from_guest
.balign 4096
"#,
    cpu_page = const CPU_PAGE_OFFSET,
    percpu = const PERCPU_OFFSET,
    consts = const CONSTS_OFFSET_IN_PAGE,
    entry_stack = const ENTRY_STACK_OFFSET,
    stack_bytes = const STACK_BYTES,
    user_ds = const guest_abi::selectors::USER_DS as u64,
    user_cs = const guest_abi::selectors::USER_CS as u64,
    syscall_vector = const SYSCALL_VECTOR,
    hv_dispatch = sym super::trap::trap_dispatch,
    guest_dispatch = sym super::trap::guest_trap_dispatch,
    pc_mode = const offset_of!(PerCpu, entered_mode),
    pc_syscall = const offset_of!(PerCpu, entered_syscall),
    pc_masks = const offset_of!(PerCpu, entered_syscall_masks),
    pc_bounce_sp = const offset_of!(PerCpu, bounce_sp),
    pc_bounce_key = const offset_of!(PerCpu, bounce_key),
    pc_fast_slots = const offset_of!(PerCpu, fast_root_slots),
    pc_vcpu = const offset_of!(PerCpu, fast_vcpu),
    pc_info = const offset_of!(PerCpu, entered_info),
    pc_requests = const offset_of!(PerCpu, requests),
    pc_timer_due = const offset_of!(PerCpu, timer_due),
    pc_armed = const offset_of!(PerCpu, armed),
    pc_pending = const offset_of!(PerCpu, entered_pending),
    pc_words = const offset_of!(PerCpu, words_page),
    pc_generation_at = const offset_of!(PerCpu, generation_at),
    pc_root_generation_at = const offset_of!(PerCpu, root_generation_at),
    pc_guest_cr3 = const offset_of!(PerCpu, guest_cr3),
    pc_root_source = const offset_of!(PerCpu, guest_root_source),
    pc_root_sources = const offset_of!(PerCpu, root_sources),
    pc_root_generations = const offset_of!(PerCpu, root_generations),
    pc_root_frames = const offset_of!(PerCpu, root_frames),
    pc_root_recent = const offset_of!(PerCpu, root_recent),
    root_slots = const super::percpu::ROOT_SLOTS,
    mode_fast = const super::percpu::MODE_FAST,
    mode_kernel_fast = const super::percpu::MODE_XEN_PV_KERNEL + super::percpu::MODE_FAST,
    mode_user_fast = const super::percpu::MODE_XEN_PV_USER + super::percpu::MODE_FAST,
    vc_l4 = const offset_of!(Vcpu, l4),
    vc_user_l4 = const offset_of!(Vcpu, user_l4),
    vc_kernel_mode = const offset_of!(Vcpu, kernel_mode),
    vc_sel_pair = const offset_of!(Vcpu, iret_selectors.0),
    vc_sel_changes = const offset_of!(Vcpu, iret_selectors.1),
    vi_pending = const offset_of!(VcpuInfo, evtchn_upcall_pending),
    vi_mask = const offset_of!(VcpuInfo, evtchn_upcall_mask),
    vi_count = const offset_of!(VcpuInfo, arch.pad),
    wake_due = sym crate::guest::WAKE_DUE,
    desc_changes = sym crate::guest::desc::CHANGES,
    root_slow = sym xenpv_fast_root,
    hc_iret = const guest_abi::hypercall::HYPERVISOR_IRET,
    flat_cs = const guest_abi::selectors::FLAT_RING3_CS64 as u64,
    flat_ss = const guest_abi::selectors::FLAT_RING3_SS64 as u64,
    iret_bytes = const 9 * 8,
    rflags_if = const guest_abi::trap::RFLAGS_IF,
    not_if = const !guest_abi::trap::RFLAGS_IF as i64,
    rflags_set = const XENPV_RFLAGS_SET,
    syscall_keep = const XENPV_SYSCALL_KEEP,
    iret_keep = const XENPV_IRET_KEEP,
    in_syscall = const guest_abi::trap::VGCF_IN_SYSCALL,
);

use super::percpu::PerCpu;
use crate::domain::Vcpu;
use guest_abi::shared_info::VcpuInfo;

/// RFLAGS bits (Intel SDM Vol. 1 §3.4.3) for `xenia_pv_fast`'s return frames, as
/// `guest::clean_flags` and `guest::fast_pv` make them: IF and the fixed bit 1 set; of the
/// rest, a system call's handler keeps what is not AC, VM, RF, NT, TF, IOPL, VIF or VIP,
/// and an `iret` what is not IOPL, NT, VM, VIF or VIP (both within the defined 22 bits).
const XENPV_RFLAGS_SET: u64 = (1 << 9) | (1 << 1);
const XENPV_IRET_KEEP: u64 = 0x003F_FFFF & !((3 << 12) | (1 << 14) | (1 << 17) | (3 << 19));
const XENPV_SYSCALL_KEEP: u64 = XENPV_IRET_KEEP & !((1 << 18) | (1 << 16) | (1 << 8));

/// `load_guest_root` for `xenia_pv_fast` when the root it wants is not in the slot it
/// looked at (the table's machine address in `l4`).
extern "C" fn xenpv_fast_root(l4: u64) {
    load_guest_root(crate::mm::Mfn::from_phys(l4));
}

unsafe extern "C" {
    static xenia_entry_stubs: u8;
    static xenia_entry_syscall: u8;
    static xenia_return_to_guest: u8;
    static __entry_text_phys: u8;
    static __entry_text_start: u8;
    static __entry_text_end: u8;
}

/// Address of the stub for `vector` (in the entry area).
pub fn stub(vector: u8) -> u64 {
    (&raw const xenia_entry_stubs) as u64 + u64::from(vector) * 16
}

pub fn syscall_entry() -> u64 {
    (&raw const xenia_entry_syscall) as u64
}

/// Leaves the hypervisor for the guest whose registers are `frame`, on this pCPU's guest root
/// (which `load_guest_root` filled). Never returns: from here on the hypervisor runs only in
/// traps. Refuses (panics on) a frame that would not land in ring 1 or 3, or a pCPU with no
/// guest root yet.
pub fn enter_guest(frame: &super::trap::TrapFrame) -> ! {
    let cpu = super::percpu::this();
    assert!(
        frame.cs & 3 != 0 && frame.ss & 3 != 0,
        "a guest frame must return to ring 1 or 3"
    );
    assert!(
        cpu.guest_cr3.load(core::sync::atomic::Ordering::SeqCst) != 0,
        "no guest root loaded on this pCPU"
    );
    let top = cpu.hv_stack_top.load(core::sync::atomic::Ordering::SeqCst);
    let base = top - size_of::<super::trap::TrapFrame>() as u64;
    // SAFETY: `base..top` is the top of this pCPU's hypervisor stack. Nothing below the
    // caller's frame survives: control never returns here, and the copy is done before
    // RSP moves onto it. The frame returns to ring 1 or 3 (checked above), on the guest root.
    unsafe {
        core::ptr::copy(frame, base as *mut super::trap::TrapFrame, 1);
        // DS and ES start as the kernel's data selector (guest-abi's entry state); the
        // hypervisor never changes them afterwards (long mode ignores them in ring 0).
        core::arch::asm!(
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov rsp, {base}",
            "jmp {ret}",
            ds = in(reg) u64::from(guest_abi::selectors::KERNEL_DS),
            base = in(reg) base,
            ret = in(reg) (&raw const xenia_return_to_guest) as u64,
            options(noreturn)
        );
    }
}

// ---- the boot CPU's pages and the tables that map them ----

#[repr(C, align(4096))]
struct Page([u8; PAGE as usize]);

#[repr(C, align(4096))]
struct BootCpuPages {
    cpu: Page,
    idt: Page,
    entry_stack: [Page; 2],
    nmi_stack: [Page; 2],
    df_stack: [Page; 2],
    mc_stack: [Page; 2],
    percpu: Page,
    gdt: Page,
}

static mut BOOT_CPU_PAGES: BootCpuPages = BootCpuPages {
    cpu: Page([0; 4096]),
    idt: Page([0; 4096]),
    entry_stack: [const { Page([0; 4096]) }; 2],
    nmi_stack: [const { Page([0; 4096]) }; 2],
    df_stack: [const { Page([0; 4096]) }; 2],
    mc_stack: [const { Page([0; 4096]) }; 2],
    percpu: Page([0; 4096]),
    gdt: Page([0; 4096]),
};

/// GDT pages 1–13 of every pCPU: all null descriptors (a guest's own GDT pages will go
/// here with `set_gdt`).
static ZERO_GDT_PAGE: Page = Page([0; 4096]);

/// Dom0's I/O permission bitmap, one copy for every pCPU (`ioport::init` fills it, before
/// any guest runs; it never changes afterwards and is mapped read-only in the entry area).
static mut IO_BITMAP: [Page; IO_BITMAP_PAGES] = [const { Page([0xFF; 4096]) }; IO_BITMAP_PAGES];

/// The I/O bitmap's bytes, for `ioport::init` to fill.
///
/// # Safety
/// Only before any guest runs and before the application processors start (nothing reads
/// the bitmap then), and by one caller at a time.
pub unsafe fn io_bitmap_mut() -> &'static mut [u8; IO_BITMAP_PAGES * PAGE as usize] {
    // SAFETY: `Page` is `repr(C)` and `[Page; 3]` is 3 pages of bytes without padding; the
    // caller guarantees exclusive access.
    unsafe { &mut *((&raw mut IO_BITMAP) as *mut [u8; IO_BITMAP_PAGES * PAGE as usize]) }
}

/// L3, L2, L1 for the hypervisor root's view, then the same for the guest roots' view.
static mut BOOT_CPU_TABLES: [PageTable; 6] = [const { PageTable::new() }; 6];

/// Physical address of a static in the image.
fn image_phys<T>(p: *const T) -> u64 {
    p as u64 - IMAGE_BASE
}

/// Pages of one pCPU's entry area besides the shared stubs, in [`EntryFrames::pages`] order
/// (the order of `BootCpuPages`): CPU page, IDT, then the entry, NMI, #DF and #MC stacks (two
/// pages each), then the `PerCpu` page, then GDT page 0.
pub const AREA_PAGES: usize = 12;
/// Page tables of one pCPU's entry area: L3, L2, L1 of the hypervisor root's view, then the
/// same for the guest roots' view.
pub const AREA_TABLES: usize = 6;
/// Index of the `PerCpu` page in [`EntryFrames::pages`].
const PERCPU_PAGE: usize = 10;
/// Index of GDT page 0 in [`EntryFrames::pages`].
const GDT_PAGE: usize = 11;

/// The frames behind one pCPU's entry area, by physical address. The tables must be zeroed.
pub struct EntryFrames {
    pub pages: [u64; AREA_PAGES],
    pub tables: [u64; AREA_TABLES],
}

/// Fills the entry-area tables of `frames` (stubs shared by every pCPU, the rest
/// `frames`' own) and returns the slot-257 entries of the hypervisor root's and the guest
/// roots' view. Works on the bootstrap tables (frames below 4 GiB) as on the real ones: it
/// writes only through the direct map.
fn map_entry_area(frames: &EntryFrames) -> (u64, u64) {
    let text_phys = (&raw const __entry_text_phys) as u64;
    let text_len = (&raw const __entry_text_end) as u64 - (&raw const __entry_text_start) as u64;
    assert!(
        text_len <= TEXT_PAGES * PAGE,
        "entry stubs outgrew the entry area"
    );
    let page_phys = |index: usize| frames.pages[index];

    // (entry-area offset, physical address, writable in the hypervisor root, writable in
    // guest roots, executable, mapped in guest roots)
    let mut plan: [(u64, u64, bool, bool, bool, bool); 40] =
        [(0, 0, false, false, false, false); 40];
    let mut n = 0;
    for i in 0..text_len.div_ceil(PAGE) {
        plan[n] = (
            TEXT_OFFSET + i * PAGE,
            text_phys + i * PAGE,
            false,
            false,
            true,
            true,
        );
        n += 1;
    }
    plan[n] = (CPU_PAGE_OFFSET, page_phys(0), true, false, false, true);
    plan[n + 1] = (IDT_OFFSET, page_phys(1), true, false, false, true);
    plan[n + 2] = (
        PERCPU_OFFSET,
        page_phys(PERCPU_PAGE),
        true,
        false,
        false,
        false,
    );
    n += 3;
    for p in 0..GDT_PAGES {
        let (phys, hv_w) = match p {
            0 => (page_phys(GDT_PAGE), true),
            XEN_GDT_PAGE => (image_phys(&raw const super::gdt::XEN_RESERVED_GDT), false),
            _ => (image_phys(&raw const ZERO_GDT_PAGE), false),
        };
        plan[n] = (GDT_OFFSET + p * PAGE, phys, hv_w, false, false, true);
        n += 1;
    }
    let bitmap_phys = image_phys(&raw const IO_BITMAP);
    for p in 0..IO_BITMAP_PAGES as u64 {
        plan[n] = (
            IO_BITMAP_OFFSET + p * PAGE,
            bitmap_phys + p * PAGE,
            false,
            false,
            false,
            true,
        );
        n += 1;
    }
    for (k, offset) in [
        ENTRY_STACK_OFFSET,
        NMI_STACK_OFFSET,
        DF_STACK_OFFSET,
        MC_STACK_OFFSET,
    ]
    .into_iter()
    .enumerate()
    {
        for p in 0..2 {
            plan[n] = (
                offset + p * PAGE,
                page_phys(2 + 2 * k + p as usize),
                true,
                true,
                false,
                true,
            );
            n += 1;
        }
    }

    let nx = if super::cpu::has_nx() {
        F::NO_EXECUTE
    } else {
        F::empty()
    };
    let table = |phys: u64| phys_to_virt(phys) as *mut PageTable;
    // SAFETY: the six tables are zeroed frames (or statics) that belong to this entry area
    // and are used by nothing else yet; the direct map covers them (below 4 GiB at boot,
    // anywhere afterwards).
    unsafe {
        for (view, base) in [(0usize, true), (3, false)] {
            let [l3, l2, l1] = [0, 1, 2].map(|i| frames.tables[view + i]);
            (&mut *table(l3))[0].set_addr(x86_64::PhysAddr::new(l2), F::PRESENT | F::WRITABLE);
            (&mut *table(l2))[0].set_addr(x86_64::PhysAddr::new(l1), F::PRESENT | F::WRITABLE);
            let l1 = &mut *table(l1);
            for &(offset, phys, hv_w, guest_w, exec, in_guest) in &plan[..n] {
                if !base && !in_guest {
                    continue;
                }
                let writable = if base { hv_w } else { guest_w };
                let mut flags = F::PRESENT;
                if writable {
                    flags |= F::WRITABLE;
                }
                if !exec {
                    flags |= nx;
                }
                l1[(offset / PAGE) as usize].set_addr(x86_64::PhysAddr::new(phys), flags);
            }
        }
    }
    let flags = (F::PRESENT | F::WRITABLE).bits();
    (frames.tables[0] | flags, frames.tables[3] | flags)
}

/// Writes a fresh `PerCpu` for pCPU `index` into the page at `percpu_phys`, with its
/// slot-257 entries and hypervisor stack.
fn init_percpu(
    percpu_phys: u64,
    index: u64,
    hv_l3: u64,
    guest_l3: u64,
    stack_top: u64,
    gdt_phys: u64,
) {
    use core::sync::atomic::Ordering::SeqCst;
    let cpu = phys_to_virt(percpu_phys) as *mut super::percpu::PerCpu;
    // SAFETY: the page belongs to this pCPU's entry area, which no CPU runs on yet (the
    // boot CPU's: nothing reads it before this returns), and `PerCpu` fits in a page.
    let cpu = unsafe {
        core::ptr::write(cpu, super::percpu::PerCpu::new(index));
        &*cpu
    };
    cpu.hv_slot_entry.store(hv_l3, SeqCst);
    cpu.guest_slot_entry.store(guest_l3, SeqCst);
    cpu.hv_stack_top.store(stack_top, SeqCst);
    cpu.own_gdt_page.store(gdt_phys, SeqCst);
    super::percpu::register(index, phys_to_virt(percpu_phys));
}

/// Builds the boot CPU's entry-area tables and hangs them in the current (bootstrap) root
/// at slot 257. Runs first thing, before the GDT and IDT are loaded.
pub fn install_boot() {
    let pages_phys = image_phys(&raw const BOOT_CPU_PAGES);
    let tables_phys = image_phys(&raw const BOOT_CPU_TABLES);
    // Both statics are arrays of page-sized, page-aligned items.
    let frames = EntryFrames {
        pages: core::array::from_fn(|i| pages_phys + i as u64 * PAGE),
        tables: core::array::from_fn(|i| tables_phys + i as u64 * PAGE),
    };
    let (hv_l3, guest_l3) = map_entry_area(&frames);
    // SAFETY: runs once, on the boot CPU, before anything else uses the entry area; the
    // value is the entry area's L3, built just above from present, correctly flagged tables.
    unsafe {
        let root = x86_64::registers::control::Cr3::read()
            .0
            .start_address()
            .as_u64();
        let root = phys_to_virt(root) as *mut u64;
        core::ptr::write_volatile(root.add(ENTRY_AREA_SLOT as usize), hv_l3);
    }
    // The entry area is mapped from here on: this pCPU's data goes in its private page.
    init_percpu(
        frames.pages[PERCPU_PAGE],
        0,
        hv_l3,
        guest_l3,
        (&raw const super::boot_stack_high_top) as u64,
        frames.pages[GDT_PAGE],
    );
    super::percpu::set_ready();
}

/// An application processor's entry area, built by the boot CPU.
pub struct ApArea {
    /// Its slot-257 entry in the hypervisor root.
    pub hv_slot_entry: u64,
    cpu_page: u64,
}

impl ApArea {
    /// Records `root` (the AP's hypervisor root) where its entry stubs read it.
    pub fn set_hv_cr3(&self, root: u64) {
        let consts = (phys_to_virt(self.cpu_page) + CONSTS_OFFSET_IN_PAGE) as *mut EntryConsts;
        // SAFETY: the CPU page is this AP's own, reached through the direct map; the AP does
        // not run yet.
        unsafe { (*consts).hv_cr3 = root };
    }
}

/// Builds the entry area of application processor `index` from fresh frames (stubs shared,
/// everything else its own, as for the boot CPU) and its `PerCpu`, with `stack_top` as its
/// hypervisor stack. `None` when memory runs out (what was taken is given back).
pub fn build_ap_area(index: u64, stack_top: u64) -> Option<ApArea> {
    use crate::mm::{Mfn, frames};
    let mut taken = [0u64; AREA_PAGES + AREA_TABLES];
    for i in 0..taken.len() {
        match frames::alloc_zeroed() {
            Some(mfn) => taken[i] = mfn.phys(),
            None => {
                for &phys in &taken[..i] {
                    frames::free_contiguous(Mfn::from_phys(phys), 1);
                }
                return None;
            }
        }
    }
    let frames = EntryFrames {
        pages: core::array::from_fn(|i| taken[i]),
        tables: core::array::from_fn(|i| taken[AREA_PAGES + i]),
    };
    let (hv_l3, guest_l3) = map_entry_area(&frames);
    init_percpu(
        frames.pages[PERCPU_PAGE],
        index,
        hv_l3,
        guest_l3,
        stack_top,
        frames.pages[GDT_PAGE],
    );
    // Its guest root now, not at its first guest: what the machine has for guests is the
    // same before and after a domain first runs on this pCPU.
    let Some(guest_root) = frames::alloc_zeroed() else {
        for &phys in &taken {
            frames::free_contiguous(Mfn::from_phys(phys), 1);
        }
        return None;
    };
    if let Some(cpu) = super::percpu::of(index as usize) {
        cpu.guest_root
            .store(guest_root.phys(), core::sync::atomic::Ordering::SeqCst);
        take_root_frames(cpu);
    }
    let consts = (phys_to_virt(frames.pages[0]) + CONSTS_OFFSET_IN_PAGE) as *mut EntryConsts;
    // SAFETY: as in `ApArea::set_hv_cr3`.
    unsafe { (*consts).cpu = index };
    Some(ApArea {
        hv_slot_entry: hv_l3,
        cpu_page: frames.pages[0],
    })
}

/// Physical addresses of the GDT pages every pCPU shares: the null page (GDT pages 1–13
/// when no guest frame is there) and the two reserved pages (page 14): Xen's, for Xen PV
/// vCPUs, and the hypervisor-only one for everyone else (`gdt::RING1_RESERVED_GDT`).
pub fn shared_gdt_pages() -> (u64, u64, u64) {
    (
        image_phys(&raw const ZERO_GDT_PAGE),
        image_phys(&raw const super::gdt::XEN_RESERVED_GDT),
        image_phys(&raw const super::gdt::RING1_RESERVED_GDT),
    )
}

/// Maps GDT page `p` of this pCPU's entry area to the frame at `phys`, in both its
/// hypervisor root's and its guest roots' view, unless it is mapped there already
/// (`PerCpu::gdt_pages`). A guest's own GDT frame (`guest_frame`) is mapped writable, as
/// Xen maps it: only the CPU writes through it (the accessed bit when a selector is loaded);
/// the guest's kernel runs in ring 3 and cannot reach a supervisor page, and the frame
/// holds a `Descriptor` type reference, so no mapping of the guest's can write it. Xenia's
/// own pages stay read-only in guest roots (their descriptors have the accessed bit set).
pub fn map_gdt_page(p: u64, phys: u64, guest_frame: bool) {
    let cpu = super::percpu::this();
    if let Some(slot) = cpu.gdt_pages.get(p as usize) {
        map_area_page(GDT_OFFSET + p * PAGE, slot, phys, guest_frame);
    }
}

/// Maps page `p` of this pCPU's LDT area as [`map_gdt_page`] maps a GDT page.
pub fn map_ldt_page(p: u64, phys: u64, guest_frame: bool) {
    let cpu = super::percpu::this();
    if let Some(slot) = cpu.ldt_pages.get(p as usize) {
        map_area_page(LDT_OFFSET + p * PAGE, slot, phys, guest_frame);
    }
}

/// Maps the entry-area page at `offset` to `phys` in both views (see [`map_gdt_page`]),
/// unless `cache` says it is there already.
fn map_area_page(offset: u64, cache: &core::sync::atomic::AtomicU64, phys: u64, guest_frame: bool) {
    use core::sync::atomic::Ordering::Relaxed;
    let cpu = super::percpu::this();
    if cache.load(Relaxed) == phys {
        return;
    }
    let own = phys == cpu.own_gdt_page.load(Relaxed);
    let nx = if super::cpu::has_nx() {
        F::NO_EXECUTE
    } else {
        F::empty()
    };
    let index = (offset / PAGE) as usize;
    for (entry, writable) in [
        (cpu.hv_slot_entry.load(Relaxed), own || guest_frame),
        (cpu.guest_slot_entry.load(Relaxed), guest_frame),
    ] {
        let table = |phys: u64| phys_to_virt(phys & 0x000F_FFFF_FFFF_F000) as *mut PageTable;
        let mut flags = F::PRESENT | nx;
        if writable {
            flags |= F::WRITABLE;
        }
        // SAFETY: the entry-area tables are this pCPU's own (`map_entry_area` built them: L3
        // entry 0 → L2, L2 entry 0 → L1), reached through the direct map; only this pCPU
        // changes them, and the GDT and LDT pages are looked at only by this pCPU's segment
        // loads, none of which runs while the entry changes (the hypervisor uses only the
        // reserved page's selectors, which are never remapped to a page without them).
        unsafe {
            let l3 = &*table(entry);
            let l2 = &*table(l3[0].addr().as_u64());
            let l1 = &mut *table(l2[0].addr().as_u64());
            l1[index].set_addr(x86_64::PhysAddr::new(phys), flags);
        }
    }
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va(offset)));
    cache.store(phys, Relaxed);
}

/// The slot-257 entry for the hypervisor root of this pCPU.
pub fn hypervisor_slot_entry() -> u64 {
    super::percpu::this()
        .hv_slot_entry
        .load(core::sync::atomic::Ordering::SeqCst)
}

/// The slot-257 entry for the guest root of this pCPU.
pub fn guest_slot_entry() -> u64 {
    super::percpu::this()
        .guest_slot_entry
        .load(core::sync::atomic::Ordering::SeqCst)
}

/// Whether `addr` lies on one of this pCPU's entry-area stacks.
pub fn on_entry_stack(addr: u64) -> bool {
    [
        ENTRY_STACK_OFFSET,
        NMI_STACK_OFFSET,
        DF_STACK_OFFSET,
        MC_STACK_OFFSET,
    ]
    .into_iter()
    .any(|o| (va(o)..va(o) + STACK_BYTES).contains(&addr))
}

/// Recopies this pCPU's guest root if it copies `l4`, whose entries just changed (the frame
/// table's `sync_guest_roots`). With one pCPU this is the only copy; the new contents take
/// effect at the CR3 load on the way back to the guest, which also flushes the TLB.
pub fn refresh_guest_root(l4: crate::mm::Mfn) {
    let cpu = super::percpu::this();
    if cpu
        .guest_root_source
        .load(core::sync::atomic::Ordering::SeqCst)
        == l4.phys()
    {
        load_guest_root(l4);
    }
}

/// Recopies this pCPU's guest root from the L4 it copies, if any (a flush request: that L4
/// may have changed). While this pCPU is idle it copies none.
pub fn recopy_guest_root() {
    let source = super::percpu::this()
        .guest_root_source
        .load(core::sync::atomic::Ordering::SeqCst);
    if source != 0 {
        load_guest_root(crate::mm::Mfn::from_phys(source));
    }
}

/// Words at the top of each stack a guest can enter on (the entry stack, the IST stacks)
/// that the stubs write: from a guest, the hardware frame, the error code and vector, rax and
/// rcx (9 words; the return frame, 7 words, lies within them); an NMI, #DF or #MC taken in
/// the hypervisor, on its IST stack, the same plus all fifteen registers (22 words).
const ENTRY_WORDS: usize = 22;

/// Zeroes what the entry stubs leave on this pCPU's entry and IST stacks (and the SYSCALL
/// stub's scratch word at the entry stack's bottom), which every guest that runs on this
/// pCPU can read (supervisor pages, mapped in every guest root): a guest's registers, or the
/// hypervisor's at an NMI. The scheduler calls this before a vCPU of another domain runs
/// here, so that a guest sees no registers but its own domain's.
pub fn scrub_entry_stacks() {
    for bottom in [
        ENTRY_STACK_OFFSET,
        NMI_STACK_OFFSET,
        DF_STACK_OFFSET,
        MC_STACK_OFFSET,
    ] {
        let top = va(bottom + STACK_BYTES) as *mut u64;
        // SAFETY: the top `ENTRY_WORDS` words of one of this pCPU's entry-area stacks, mapped
        // writable in the hypervisor root; nothing runs on these stacks outside the entry
        // stubs, and this runs in a trap's Rust code, on the hypervisor stack, interrupts off.
        unsafe {
            for i in 1..=ENTRY_WORDS {
                core::ptr::write_volatile(top.sub(i), 0);
            }
        }
    }
    // SAFETY: the entry stack's bottom word (the SYSCALL stub's scratch), as above.
    unsafe { core::ptr::write_volatile(va(ENTRY_STACK_OFFSET) as *mut u64, 0) };
}

/// This pCPU runs no guest any more: its guest root copies nothing (so no flush request
/// reads an L4 that may be gone), and the exit path has nowhere to go until the next
/// `load_guest_root`.
pub fn forget_guest_root() {
    super::percpu::this()
        .guest_root_source
        .store(0, core::sync::atomic::Ordering::SeqCst);
}

/// Gives the boot CPU its guest root and guest-root frames, as [`build_ap_area`] gives each
/// AP its own: before dom0 is built, so that free memory does not change when a guest first
/// runs on the boot CPU. Without it the boot CPU took its six frames at its first guest, and
/// a boot whose first dom0 run happened on an AP took them in the middle of dom0's tests
/// (`smp_churn_4` once read six frames missing, CI, session 16). `false` when memory ran out
/// (the first guest run then tries again).
pub fn take_boot_root_frames() -> bool {
    use core::sync::atomic::Ordering::SeqCst;
    let cpu = super::percpu::this();
    if cpu.guest_root.load(SeqCst) == 0 {
        let Some(frame) = crate::mm::frames::alloc_zeroed() else {
            return false;
        };
        cpu.guest_root.store(frame.phys(), SeqCst);
    }
    take_root_frames(cpu);
    true
}

/// Gives `cpu` its guest-root frames: slot 0 is `guest_root`, the others are taken now if
/// memory allows (a slot without a frame is not used). Once per pCPU, before its first guest,
/// so that what the machine has for guests does not change when a domain first runs.
fn take_root_frames(cpu: &super::percpu::PerCpu) {
    use core::sync::atomic::Ordering::SeqCst;
    cpu.root_frames[0].store(cpu.guest_root.load(SeqCst), SeqCst);
    for slot in &cpu.root_frames[1..] {
        if slot.load(SeqCst) == 0
            && let Some(frame) = crate::mm::frames::alloc_zeroed()
        {
            slot.store(frame.phys(), SeqCst);
        }
    }
}

/// Makes this pCPU's guest root (a top-level table holding the running guest's own entries
/// plus the entry-area slot, DESIGN.md §2.1) a copy of the guest's top-level table
/// `guest_l4`, and the CR3 the exit path loads. The guest's entries in the hypervisor's
/// reserved slots are never copied: those slots hold only the entry area and the read-only
/// M2P.
///
/// The pCPU keeps [`super::percpu::ROOT_SLOTS`] copies: a slot that copies `guest_l4` and
/// was copied at the frame table's current root generation (no L4 entry or unclassified
/// entry written and no L4 or owner changed anywhere since, `mm::ft::root_generation`) is
/// still a true copy, and is
/// loaded as it is (two address spaces switching back and forth copy nothing).
///
/// The search for a kept copy is inlined into the callers (a Xen PV vCPU's every change of
/// mode comes here, twice a system call); a miss, and the first call on a pCPU, take
/// [`load_guest_root_copying`], which searches again and copies (issue 18, session 15: the
/// one function's register saves for the copy were half of a hit's cost).
#[inline]
pub fn load_guest_root(guest_l4: crate::mm::Mfn) {
    use core::sync::atomic::Ordering;
    let cpu = super::percpu::this();
    if cpu.guest_root.load(Ordering::SeqCst) != 0 {
        // As in `load_guest_root_copying`: the source published, then a fence, then the
        // generation and the slots read.
        cpu.guest_root_source
            .store(guest_l4.phys(), Ordering::SeqCst);
        core::sync::atomic::fence(Ordering::SeqCst);
        let generation = crate::mm::ft::root_generation();
        let kept = |i: usize| {
            cpu.root_sources[i].load(Ordering::SeqCst) == guest_l4.phys()
                && cpu.root_generations[i].load(Ordering::SeqCst) == generation
                && cpu.root_frames[i].load(Ordering::SeqCst) != 0
        };
        // The root before the last first (the other half of a system call), then the rest.
        let recent = cpu.root_recent.load(Ordering::Relaxed);
        let before_last = (recent >> 8) as usize;
        let found = if before_last < super::percpu::ROOT_SLOTS && kept(before_last) {
            Some(before_last)
        } else {
            (0..super::percpu::ROOT_SLOTS).find(|&i| kept(i))
        };
        if let Some(i) = found {
            cpu.guest_cr3
                .store(cpu.root_frames[i].load(Ordering::SeqCst), Ordering::SeqCst);
            note_recent(cpu, i);
            return;
        }
    }
    load_guest_root_copying(guest_l4);
}

/// Slot `i` was loaded: the last becomes the one before it (`PerCpu::root_recent`).
#[inline]
fn note_recent(cpu: &super::percpu::PerCpu, i: usize) {
    use core::sync::atomic::Ordering;
    let last = cpu.root_recent.load(Ordering::Relaxed) & 0xFF;
    if last != i as u64 {
        cpu.root_recent
            .store(last << 8 | i as u64, Ordering::Relaxed);
    }
}

/// [`load_guest_root`] when no kept copy is found (or the pCPU has none yet): the whole
/// search again, then a copy into a slot.
#[inline(never)]
fn load_guest_root_copying(guest_l4: crate::mm::Mfn) {
    use super::layout::{FIRST_RESERVED_SLOT, LAST_RESERVED_SLOT};
    use crate::mm::{Mfn, physmem};
    use core::sync::atomic::Ordering;
    let cpu = super::percpu::this();
    if cpu.guest_root.load(Ordering::SeqCst) == 0 {
        let frame = crate::mm::frames::alloc().expect("no memory for the guest root");
        cpu.guest_root.store(frame.phys(), Ordering::SeqCst);
        take_root_frames(cpu);
    }
    // The source is published before the copy is read (and before the generation is): a
    // pCPU that changes an entry of `guest_l4` writes it, bumps the generation, then looks
    // for pCPUs copying it (`ft::DirectMem::sync_guest_roots`, with a fence between). Either
    // it finds this one and sends a flush request, which recopies, or this pCPU sees the new
    // generation (no copy is reused) and its copy reads the new entry; no lock orders the two.
    cpu.guest_root_source
        .store(guest_l4.phys(), Ordering::SeqCst);
    // The table's reads below are plain loads: keep them after the store.
    core::sync::atomic::fence(Ordering::SeqCst);
    // The roots' own generation: it moves with L4 entries and L4 tables, not with the
    // lower tables' updates, which the copy shares by reference.
    let generation = crate::mm::ft::root_generation();
    let usable = |i: usize| cpu.root_frames[i].load(Ordering::SeqCst) != 0;
    // The source first: it is what tells the slots apart (one load for each other slot).
    let kept = (0..super::percpu::ROOT_SLOTS).find(|&i| {
        cpu.root_sources[i].load(Ordering::SeqCst) == guest_l4.phys()
            && usable(i)
            && cpu.root_generations[i].load(Ordering::SeqCst) == generation
    });
    if let Some(i) = kept {
        cpu.guest_cr3
            .store(cpu.root_frames[i].load(Ordering::SeqCst), Ordering::SeqCst);
        note_recent(cpu, i);
        return;
    }
    // A stale copy of the same table is made again in its own slot (two copies of one table
    // would make every later search pass over the stale one first); otherwise the next
    // slot in turn.
    let slot = (0..super::percpu::ROOT_SLOTS)
        .find(|&i| cpu.root_sources[i].load(Ordering::SeqCst) == guest_l4.phys() && usable(i))
        .or_else(|| {
            (0..super::percpu::ROOT_SLOTS)
                .map(|_| {
                    cpu.root_next.fetch_add(1, Ordering::Relaxed) as usize
                        % super::percpu::ROOT_SLOTS
                })
                .find(|&i| usable(i))
        })
        .unwrap_or(0);
    let root = cpu.root_frames[slot].load(Ordering::SeqCst);
    // Invalid while it is rewritten.
    cpu.root_sources[slot].store(0, Ordering::SeqCst);
    // `guest_l4` is the domain's validated top-level table: copied whole, frame to frame
    // (one block copy), then the reserved slots are overwritten with the hypervisor's (the
    // guest's own are zero there, as validation requires). This pCPU runs on the
    // hypervisor root meanwhile: the guest root is loaded only on the way out.
    let root_frame = Mfn::from_phys(root);
    physmem::copy(guest_l4, 0, root_frame, 0, crate::mm::PAGE_SIZE as usize);
    const RESERVED: usize = (LAST_RESERVED_SLOT - FIRST_RESERVED_SLOT + 1) as usize;
    let mut reserved = [0u8; RESERVED * 8];
    // A Xen PV domain's kernel reads the M2P from ring 3 (the L4's owner decides; its mode
    // is fixed before any of its tables is loaded).
    let xen_pv = matches!(
        crate::mm::ft::owner(guest_l4),
        crate::mm::frame_table::Owner::Domain(d) if crate::mm::ft::forced_user(d)
    );
    for (i, word) in reserved.chunks_exact_mut(8).enumerate() {
        let value = match FIRST_RESERVED_SLOT + i as u64 {
            ENTRY_AREA_SLOT => guest_slot_entry(),
            super::layout::RO_M2P_SLOT if xen_pv => crate::mm::m2p::guest_slot_entry_user(),
            super::layout::RO_M2P_SLOT => crate::mm::m2p::guest_slot_entry(),
            _ => 0,
        };
        word.copy_from_slice(&value.to_le_bytes());
    }
    physmem::write(root_frame, FIRST_RESERVED_SLOT as usize * 8, &reserved);
    cpu.root_generations[slot].store(generation, Ordering::SeqCst);
    cpu.root_sources[slot].store(guest_l4.phys(), Ordering::SeqCst);
    cpu.guest_cr3.store(root, Ordering::SeqCst);
    note_recent(cpu, slot);
}
