// Xenia's benchmark bodies that run in ring 3: one position-independent blob between
// `bench_user_start` and `bench_user_end`, assembled into both benchmark kernels (native,
// `tests/guests/bench-native`, and pv, `tests/guests/bench`) from this one file, so that
// both run the same instructions. Intel syntax (Rust's `global_asm!` default).
//
// The ring-3 interface both kernels provide, through `int 0x80` and `SYSCALL`, chosen by rax
// (the guest runtime's services, `xenia_guest_rt::trap`):
//   rax = 0  exit: the ring-3 run ends; rdi is its result;
//   rax = 2  echo: returns rdi + 1 in rax (the null system call);
//   rax = 3  switch: the kernel loads the other of two address spaces and returns, with
//            the same registers (both spaces map this blob, and the stack, at the same
//            addresses; the process switch benchmark).
// Numeric labels avoid 0 and 1 (Intel syntax would read `1b` as a binary number).
// Every register but rax (and rcx, r11 for SYSCALL) survives a call. Each entry point takes
// its arguments in rdi and rsi, as the kernels' `run` passes them, and needs a stack only
// for nothing: none of them pushes.

.pushsection .text.bench_user, "ax", @progbits
.balign 4096
.global bench_user_start
bench_user_start:

// rdi = iterations: `int 0x80` echo, rdi times. Exit result: the last echo's rax.
.global bench_u_int80
bench_u_int80:
    mov r12, rdi
    xor r13, r13
7:  test r12, r12
    jz 2f
    mov eax, 2
    mov rdi, r13
    int 0x80
    mov r13, rax
    dec r12
    jmp 7b
2:  mov rdi, r13
    xor eax, eax
    int 0x80
    ud2

// rdi = iterations: `SYSCALL` echo, rdi times.
.global bench_u_syscall
bench_u_syscall:
    mov r12, rdi
    xor r13, r13
7:  test r12, r12
    jz 2f
    mov eax, 2
    mov rdi, r13
    syscall
    mov r13, rax
    dec r12
    jmp 7b
2:  mov rdi, r13
    xor eax, eax
    int 0x80
    ud2

// rdi = limit: counts the primes below it by trial division (odd divisors up to the square
// root); exit result: the count. Primes below 2,000,000: 148,933.
.global bench_u_primes
bench_u_primes:
    mov r12, rdi            // limit
    xor r13, r13            // count
    cmp r12, 2
    jbe 5f
    mov r13, 1              // 2 is prime
    mov r14, 3              // candidate
7:  cmp r14, r12
    jae 5f
    mov r15, 3              // divisor
2:  mov rax, r15
    mul r15                 // rdx:rax = divisor^2 (rdx stays 0 for these sizes)
    cmp rax, r14
    ja 4f                   // divisor^2 > candidate: prime
    mov rax, r14
    xor edx, edx
    div r15
    test rdx, rdx
    jz 3f                   // divisible: not prime
    add r15, 2
    jmp 2b
4:  inc r13
3:  add r14, 2
    jmp 7b
5:  mov rdi, r13
    xor eax, eax
    int 0x80
    ud2

// rdi = first address, rsi = pages: writes one byte to each page (4 KiB apart), in order;
// each write to a page not mapped yet faults, and the kernel maps it and returns. Exit
// result: the pages touched.
.global bench_u_touch
bench_u_touch:
    mov r12, rdi
    mov r13, rsi
    xor r14, r14
7:  cmp r14, r13
    jae 2f
    mov byte ptr [r12], 1
    add r12, 4096
    inc r14
    jmp 7b
2:  mov rdi, r14
    xor eax, eax
    int 0x80
    ud2

// rdi = iterations: the switch call, rdi times; each returns in the other address space,
// where the same code goes on. Exit result: 0.
.global bench_u_switch
bench_u_switch:
    mov r12, rdi
7:  test r12, r12
    jz 2f
    mov eax, 3
    int 0x80
    dec r12
    jmp 7b
2:  xor edi, edi
    xor eax, eax
    int 0x80
    ud2

.global bench_user_end
bench_user_end:
.popsection
