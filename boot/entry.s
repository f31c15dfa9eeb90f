/*
 * Xenia's first instructions: the multiboot2 header and the 32-bit entry.
 *
 * GRUB enters `start32` in 32-bit protected mode with paging off, EAX = the multiboot2
 * magic and EBX = the physical address of the boot information (Multiboot2 spec §3.3).
 * This code checks that the CPU can run a 64-bit hypervisor, builds bootstrap page
 * tables, enters long mode and jumps to `xenia_start64` in the image linked in the
 * reserved upper range. It is included into the hypervisor crate with `global_asm!`
 * (Intel syntax).
 *
 * Bootstrap tables: one PDPT of four page directories maps the first 4 GiB with 2 MiB
 * pages; top-level slots 0 (identity, for the jump), 258 (the image, linked at
 * IMAGE_BASE + physical) and 262 (the direct map) all point at it. The hypervisor
 * replaces them with its real tables as soon as it has a frame allocator.
 */

.set MB2_MAGIC,            0xE85250D6
.set MB2_ARCH_I386,        0
.set MB2_BOOTLOADER_MAGIC, 0x36D76289

.set COM1,                 0x3F8
.set PAGE_PRESENT_RW,      0x3
.set PAGE_PS,              0x80
.set CR4_PAE,              1 << 5
.set CR0_PE_WP_PG,         (1 << 0) | (1 << 16) | (1 << 31)
.set MSR_EFER,             0xC0000080
.set EFER_LME,             1 << 8
.set EFER_NXE,             1 << 11
.set SLOT_IMAGE,           258
.set SLOT_DIRECTMAP,       262

/* ---- multiboot2 header (Multiboot2 spec §3.1), 8-byte aligned in the first 32 KiB ---- */
.section .multiboot2_header, "a"
.balign 8
mb2_header_start:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header_start
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header_start))
    /* module alignment tag (type 6): modules are page aligned */
    .balign 8
    .word 6
    .word 0
    .long 8
    /* framebuffer tag (type 5), optional (flags bit 0): the screen console draws on what
     * GRUB sets up. No preferred size or depth (0): grub.cfg's `gfxpayload` decides (`text`
     * keeps VGA text mode on BIOS, reported as an EGA-text framebuffer). */
    .balign 8
    .word 5
    .word 1
    .long 20
    .long 0
    .long 0
    .long 0
    /* end tag */
    .balign 8
    .word 0
    .word 0
    .long 8
mb2_header_end:

/* ---- the 32-bit entry ---- */
.section .boot.text, "ax"
.code32
.global start32
start32:
    cli
    cld
    mov esp, offset boot_stack_top
    mov edi, eax                       /* keep the magic */
    mov esi, ebx                       /* keep the boot information pointer */

    call serial_init32

    cmp edi, MB2_BOOTLOADER_MAGIC
    jne not_multiboot2

    /* CPUID is present when EFLAGS.ID (bit 21) can be toggled. */
    pushfd
    pop eax
    mov ecx, eax
    xor eax, 1 << 21
    push eax
    popfd
    pushfd
    pop eax
    push ecx
    popfd
    cmp eax, ecx
    je no_long_mode

    /* Long mode: CPUID.80000001h:EDX.LM[bit 29] (Intel SDM Vol. 2A, CPUID). */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb no_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz no_long_mode
    mov ebp, edx                       /* remember NX (bit 20) for EFER.NXE */

    /* PAE: CPUID.1:EDX.PAE[bit 6]. Every long-mode CPU has it; checked for a clear message. */
    mov eax, 1
    cpuid
    test edx, 1 << 6
    jz no_long_mode

    /* Page directories: 4 x 512 entries of 2 MiB pages, identity for the first 4 GiB. */
    mov edi, offset boot_pd
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 21
    or eax, PAGE_PRESENT_RW | PAGE_PS
    mov edx, ecx
    shr edx, 11                        /* high dword of (ecx << 21) */
    mov [edi + ecx * 8], eax
    mov [edi + ecx * 8 + 4], edx
    inc ecx
    cmp ecx, 2048
    jne 1b

    /* The PDPT points at the four directories. */
    mov edi, offset boot_pdpt
    mov eax, offset boot_pd
    or eax, PAGE_PRESENT_RW
    mov [edi], eax
    add eax, 4096
    mov [edi + 8], eax
    add eax, 4096
    mov [edi + 16], eax
    add eax, 4096
    mov [edi + 24], eax

    /* The top level: identity, image and direct-map slots share the PDPT. */
    mov edi, offset boot_pml4
    mov eax, offset boot_pdpt
    or eax, PAGE_PRESENT_RW
    mov [edi], eax
    mov [edi + SLOT_IMAGE * 8], eax
    mov [edi + SLOT_DIRECTMAP * 8], eax

    /* Enter long mode (Intel SDM Vol. 3A §10.8.5). */
    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, MSR_EFER
    rdmsr
    or eax, EFER_LME
    test ebp, 1 << 20
    jz 2f
    or eax, EFER_NXE
2:
    wrmsr
    mov eax, cr0
    or eax, CR0_PE_WP_PG
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    /* jmp far 0x08:start64_low, encoded by hand: the assembler's far-jump syntax varies. */
    .byte 0xEA
    .long start64_low
    .word 0x08

not_multiboot2:
    mov esi, offset msg_not_multiboot2
    jmp fail32

no_long_mode:
    mov esi, offset msg_no_long_mode
    /* fall through */

/* Print the NUL-terminated string at ESI on COM1, then halt forever. */
fail32:
    call serial_puts32
3:
    cli
    hlt
    jmp 3b

/* 115200 8N1, FIFOs on, interrupts off (PC16550D data sheet, register map). */
serial_init32:
    mov dx, COM1 + 1
    xor al, al
    out dx, al                         /* IER: no interrupts */
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al                         /* LCR: DLAB */
    mov dx, COM1
    mov al, 1
    out dx, al                         /* DLL: divisor 1 = 115200 baud */
    mov dx, COM1 + 1
    xor al, al
    out dx, al                         /* DLM */
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al                         /* LCR: 8N1 */
    mov dx, COM1 + 2
    mov al, 0xC7
    out dx, al                         /* FCR: enable and clear FIFOs */
    mov dx, COM1 + 4
    mov al, 0x03
    out dx, al                         /* MCR: DTR, RTS */
    ret

serial_puts32:
    lodsb
    test al, al
    jz 5f
    mov bl, al
    mov dx, COM1 + 5
    mov ecx, 100000                    /* bounded wait for the transmitter */
4:
    in al, dx
    test al, 0x20
    jnz 6f
    dec ecx
    jnz 4b
6:
    mov dx, COM1
    mov al, bl
    out dx, al
    jmp serial_puts32
5:
    ret

/* ---- 64-bit, still at the low (identity-mapped) address ---- */
.code64
start64_low:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    movabs rax, offset boot_stack_high_top
    mov rsp, rax
    xor ebp, ebp                       /* end of the frame-pointer chain */
    mov edi, esi                       /* arg 0: physical address of the boot information */
    movabs rax, offset xenia_start64
    call rax
7:
    cli
    hlt
    jmp 7b

.section .boot.data, "aw"
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF           /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF           /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

msg_no_long_mode:
    .asciz "\r\nXenia: this CPU does not support 64-bit long mode (x86-64); halting.\r\n"
msg_not_multiboot2:
    .asciz "\r\nXenia: not started by a multiboot2 loader (use GRUB's multiboot2 command); halting.\r\n"

.balign 4096
boot_pml4:
    .fill 512, 8, 0
boot_pdpt:
    .fill 512, 8, 0
boot_pd:
    .fill 2048, 8, 0
boot_stack:
    .fill 1024, 1, 0
boot_stack_top:

/* The stack the hypervisor's Rust code starts on (and keeps for the boot CPU). */
.section .bss.boot_stack, "aw", @nobits
.balign 4096
.global boot_stack_high_bottom
boot_stack_high_bottom:
    .skip 64 * 1024
.global boot_stack_high_top
boot_stack_high_top:
