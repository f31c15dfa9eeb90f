// bench-native's first instructions: the multiboot2 header and the 32-bit entry, the same
// technique as the hypervisor's boot/entry.s. Intel syntax (included with `global_asm!`).
//
// GRUB enters `bench_start32` in 32-bit protected mode with paging off, EAX = the multiboot2
// magic and EBX = the physical address of the boot information (Multiboot2 spec §3.3). This
// code checks for long mode, identity-maps the first 4 GiB with 2 MiB pages in bootstrap
// tables, enters long mode and calls `bench_main(info)` on the kernel stack. The Rust code
// replaces these tables with its own at once (`paging::init`).

.set MB2_MAGIC,            0xE85250D6
.set MB2_ARCH_I386,        0
.set MB2_BOOTLOADER_MAGIC, 0x36D76289
.set PAGE_PRESENT_RW,      0x3
.set PAGE_PS,              0x80
.set CR4_PAE,              1 << 5
.set CR0_PE_WP_PG,         (1 << 0) | (1 << 16) | (1 << 31)
.set MSR_EFER,             0xC0000080
.set EFER_LME,             1 << 8

// ---- multiboot2 header (Multiboot2 spec §3.1), 8-byte aligned in the first 32 KiB ----
.section .multiboot2_header, "a"
.balign 8
bench_mb2_header_start:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long bench_mb2_header_end - bench_mb2_header_start
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (bench_mb2_header_end - bench_mb2_header_start))
    // end tag
    .balign 8
    .word 0
    .word 0
    .long 8
bench_mb2_header_end:

// ---- the 32-bit entry ----
.section .boot.text, "ax"
.code32
.global bench_start32
bench_start32:
    cli
    cld
    mov esp, offset bench_kernel_stack_top
    mov esi, ebx                       // keep the boot information pointer
    cmp eax, MB2_BOOTLOADER_MAGIC
    jne 9f

    // Long mode: CPUID.80000001h:EDX.LM[bit 29] (Intel SDM Vol. 2A, CPUID). Every CPU with
    // CPUID leaf 0x80000001 has CPUID itself; QEMU's do.
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb 9f
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz 9f

    // Page directories: 4 x 512 entries of 2 MiB pages, identity for the first 4 GiB.
    mov edi, offset bench_boot_pd
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, PAGE_PRESENT_RW | PAGE_PS
    mov edx, ecx
    shr edx, 11                        // high dword of (ecx << 21)
    mov [edi + ecx * 8], eax
    mov [edi + ecx * 8 + 4], edx
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov edi, offset bench_boot_pdpt
    mov eax, offset bench_boot_pd
    or eax, PAGE_PRESENT_RW
    mov [edi], eax
    add eax, 4096
    mov [edi + 8], eax
    add eax, 4096
    mov [edi + 16], eax
    add eax, 4096
    mov [edi + 24], eax

    mov edi, offset bench_boot_pml4
    mov eax, offset bench_boot_pdpt
    or eax, PAGE_PRESENT_RW
    mov [edi], eax

    // Enter long mode (Intel SDM Vol. 3A §10.8.5).
    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    mov eax, offset bench_boot_pml4
    mov cr3, eax
    mov ecx, MSR_EFER
    rdmsr
    or eax, EFER_LME
    wrmsr
    mov eax, cr0
    or eax, CR0_PE_WP_PG
    mov cr0, eax

    lgdt [bench_boot_gdt_ptr]
    // jmp far 0x08:bench_start64, encoded by hand: the assembler's far-jump syntax varies.
    .byte 0xEA
    .long bench_start64
    .word 0x08

    // Not started by multiboot2, or no long mode: nothing to print with, stop.
9:
    cli
    hlt
    jmp 9b

.code64
bench_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + bench_kernel_stack_top]
    xor ebp, ebp                       // end of the frame-pointer chain
    mov edi, esi                       // arg 0: physical address of the boot information
    call bench_main
8:
    cli
    hlt
    jmp 8b

.section .boot.data, "aw"
.balign 16
bench_boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF           // 0x08: 64-bit code, DPL 0
    .quad 0x00CF92000000FFFF           // 0x10: data, DPL 0
bench_boot_gdt_end:
bench_boot_gdt_ptr:
    .word bench_boot_gdt_end - bench_boot_gdt - 1
    .long bench_boot_gdt

// Bootstrap tables and stacks, zeroed by the loader (ELF .bss).
.section .bss.bench_boot, "aw", @nobits
.balign 4096
bench_boot_pml4:
    .skip 4096
bench_boot_pdpt:
    .skip 4096
bench_boot_pd:
    .skip 4 * 4096

// The kernel's stack (ring 0, everything but traps from ring 3).
.balign 4096
    .skip 64 * 1024
.global bench_kernel_stack_top
bench_kernel_stack_top:
