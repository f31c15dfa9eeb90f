//! Hypercall numbers, the calling convention, the hypercall page and the raw
//! call primitives.
//!
//! # Calling convention
//!
//! A guest kernel (ring 1) enters the hypervisor with `int 0x82`
//! ([`HYPERCALL_VECTOR`]). The gate has DPL 1, so the same instruction in
//! ring 3 raises #GP, which is delivered to the guest kernel like any other
//! #GP.
//!
//! | register | on entry | on return |
//! |---|---|---|
//! | `rax` | hypercall number (`HYPERVISOR_*`) | result: `>= 0` success, `-errno` failure ([`Errno`](crate::errno::Errno)) |
//! | `rdi`, `rsi` | arguments 1 and 2 | **may change**: a continued batch advances them |
//! | `rdx`, `r10`, `r8` | arguments 3 to 5 | preserved today; treat as clobbered |
//! | every other general-purpose register | — | preserved |
//! | `rflags` | — | status flags undefined; `IF`, `DF`, `IOPL` preserved |
//!
//! A long `mmu_update` or `mmuext_op` batch is *continued*, as in Xen: after
//! a chunk of items the hypervisor advances `rdi` (the list pointer) and
//! `rsi` (the items left) and moves `rip` back onto the `int 0x82`, so that
//! the instruction runs again (events may be delivered in between). The
//! caller therefore sees `rdi` and `rsi` changed when the call returns. No
//! other call changes an argument register today, but like Xen's ABI this
//! one reserves the right: a guest must treat all five argument registers as
//! clobbered by every hypercall. The primitives below declare exactly that
//! (`inout(...) => _`), so a compiler never keeps a value in an argument
//! register across a hypercall.
//!
//! Pointer arguments are guest virtual addresses in the caller's current
//! address space. The hypervisor never dereferences them: it translates them
//! through the guest's page tables, checks that the guest owns the memory and
//! may access it in the way required, and copies. A pointer the hypervisor
//! cannot use makes the hypercall fail with `EFAULT`; it never crashes the
//! hypervisor.
//!
//! Any number the hypervisor does not implement returns `-ENOSYS`. The
//! numbers themselves are Xen's (`xen/include/public/xen.h`), listed here
//! for every hypercall Xen defines so that a port can keep its tables; which
//! of them Xenia implements is a property of the hypervisor, not of this
//! list.
//!
//! # Errors
//!
//! Two rules hold for every hypercall:
//!
//! * A number, or a sub-operation (`cmd`), that the hypervisor does not
//!   implement fails with `ENOSYS`. [`HYPERVISOR_SET_GDT`] is one of them for
//!   a ring-1 guest (it exists for Xen PV guests only).
//! * A guest buffer the call cannot use fails it with `EFAULT`: unmapped, not
//!   the caller's memory, not writable where the call writes, non-canonical,
//!   wrapping past the end of the address space, or reaching into the
//!   hypervisor's reserved range ([`layout`](crate::layout)), even the parts a
//!   guest may itself read (the M2P table, the entry area). A buffer is
//!   checked before the call acts on it, so a call that fails this way has no
//!   effect (`console_io` writes nothing).
//!
//! The other errors, call by call (a call given several bad arguments may
//! report any of their errors):
//!
//! | call | case | result |
//! |---|---|---|
//! | `console_io` | `CONSOLEIO_READ` from a domain other than dom0 | `EPERM` |
//! | | `CONSOLEIO_READ` with count 0 | 0 |
//! | `xen_version` | `XENVER_GET_FEATURES` with `submap_idx >= XENFEAT_NR_SUBMAPS` | `EINVAL` |
//! | | `XENVER_PAGESIZE` with a buffer | `EINVAL` |
//! | | `XENVER_COMMANDLINE` from a domain other than dom0 | 0, `"<denied>"` written |
//! | | `XENVER_BUILD_ID` and the `*2` strings from a domain other than dom0 | `EPERM` |
//! | `set_trap_table` | an entry whose handler is non-canonical or inside the hypervisor's range, whose `cs` is not `KERNEL_CS`, or for [`HYPERCALL_VECTOR`] | `EINVAL`, and no entry of the array is installed |
//! | `stack_switch` | `ss` other than `KERNEL_SS` | `EINVAL` |
//! | | `rsp` non-canonical or inside the hypervisor's range | `EINVAL` |
//! | `callback_op` | an unknown `CALLBACKTYPE_*` | `EINVAL` |
//! | | `CALLBACKOP_REGISTER` with a non-canonical address or one inside the hypervisor's range | `EINVAL` |
//! | | `CALLBACKOP_UNREGISTER` of a type other than NMI | `EINVAL` |
//! | `set_segment_base` | an unknown `which` | `EINVAL` |
//! | | `SEGBASE_GS_KERNEL` | `EOPNOTSUPP` |
//! | | a non-canonical FS or GS base | `EINVAL` |
//! | `set_timer_op` | (none: a deadline in the past fires at once, 0 cancels) | 0 |
//! | `vcpu_op` | a vCPU number the domain does not have | `ENOENT` |
//! | | `VCPUOP_SET_SINGLESHOT_TIMER` with `VCPU_SSHOTTMR_FUTURE` and a deadline that has passed | `ETIME` |
//! | | `VCPUOP_SET_PERIODIC_TIMER` with a period under 1 ms | `EINVAL` |
//! | | `VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA` outside guest addresses (0 unregisters) | `EFAULT` |
//! | `sched_op` | `SCHEDOP_SHUTDOWN` with a reason above `SHUTDOWN_MAX` | `EINVAL` |
//! | | `SCHEDOP_REMOTE_SHUTDOWN` from a domain other than dom0 | `EPERM` |
//! | `physdev_op` | `PHYSDEVOP_SET_IOPL` above 3 | `EINVAL` |
//! | | `PHYSDEVOP_PIRQ_EOI_GMFN_V2` of a frame not the caller's | `EINVAL` |
//! | | an interrupt command or `PHYSDEVOP_GET_FREE_PIRQ` from a domain other than dom0 | `EPERM` |
//! | `vm_assist` | a type other than 0, 1, 2, 3, 5 | `EINVAL` |
//! | `event_channel_op` | a port number `>= EVTCHN_2L_NR_CHANNELS` (every command that takes one) | `EINVAL` |
//! | | `EVTCHNOP_BIND_VIRQ`: `virq >= NR_VIRQS`, or a global VIRQ on a vCPU other than 0 | `EINVAL` |
//! | | `EVTCHNOP_BIND_VIRQ`: the VIRQ is already bound on that vCPU | `EEXIST` |
//! | | `EVTCHNOP_BIND_VIRQ`: a vCPU the domain does not have | `ENOENT` |
//! | | `EVTCHNOP_BIND_INTERDOMAIN`: the remote port is not unbound, or does not accept the caller | `EINVAL` |
//! | | `EVTCHNOP_CLOSE` of a port that is not open (closing twice) | `EINVAL` |
//! | | `EVTCHNOP_SEND` on a port that is not open, or bound to a VIRQ | `EINVAL` |
//! | | `EVTCHNOP_SEND` on an unbound port | 0; the event is dropped |
//! | | `EVTCHNOP_STATUS` of a port in range that is not open | 0, status `EVTCHNSTAT_CLOSED` |
//! | | no free port | `ENOSPC` |
//!
//! Port 0 is never allocated, as in Xen. `EVTCHNOP_STATUS` of an unbound
//! port reports the domain allowed to connect with `DOMID_SELF` resolved to
//! the caller's own domain id; so do the interdomain fields.
//!
//! # Hypercall page
//!
//! If the kernel image carries an `XEN_ELFNOTE_HYPERCALL_PAGE` note, the
//! domain builder fills the page at that virtual address with
//! [`HYPERCALL_PAGE_STUBS`] stubs of [`HYPERCALL_PAGE_STUB_SIZE`] bytes each
//! (see [`hypercall_page_image`]). Stub *N* is at offset `N * 32`:
//!
//! ```text
//! b8 NN NN NN NN    mov  eax, N
//! cd 82             int  0x82
//! c3                ret
//! cc ...            int3 padding to 32 bytes
//! ```
//!
//! so `call hypercall_page + N * 32` performs hypercall *N* with the register
//! convention above. The [`HYPERVISOR_IRET`] stub is different, as in Xen:
//! a guest *jumps* to it (it never returns) with the frame described in
//! [`IretContext`](crate::trap::IretContext) minus the three registers the
//! stub pushes itself:
//!
//! ```text
//! 51                push rcx
//! 41 53             push r11
//! 50                push rax
//! b8 17 00 00 00    mov  eax, 23
//! cd 82             int  0x82
//! cc ...            int3 padding to 32 bytes
//! ```
//!
//! Calling through the page lets a kernel survive a future change of the entry
//! instruction; issuing `int 0x82` directly (as [`hypercall0`] to
//! [`hypercall5`] do) is equally supported.

/// Interrupt vector of the hypercall gate (`int 0x82`, DPL 1).
pub const HYPERCALL_VECTOR: u8 = 0x82;

/// Interrupt vector of the fast system-call trap (`int 0x80`): when the guest
/// kernel registers a handler for it with DPL 3 in its trap table, ring-3
/// code reaches that handler directly, without entering the hypervisor. See
/// [`trap`](crate::trap).
pub const FAST_TRAP_VECTOR: u8 = 0x80;

/// Size in bytes of one stub in the hypercall page.
pub const HYPERCALL_PAGE_STUB_SIZE: usize = 32;

/// Number of stubs in the hypercall page: one page of 32-byte stubs.
pub const HYPERCALL_PAGE_STUBS: usize = crate::types::PAGE_SIZE / HYPERCALL_PAGE_STUB_SIZE;

// Hypercall numbers (`rax`). Argument lists follow each name; "ptr" is a guest
// virtual address.

/// `set_trap_table(ptr traps)`: install virtual IDT entries from an array of
/// [`TrapInfo`](crate::trap::TrapInfo) ended by an entry whose `address` is 0.
pub const HYPERVISOR_SET_TRAP_TABLE: u64 = 0;
/// `mmu_update(ptr reqs, count, ptr done, foreigndom)`: batched checked writes
/// of page-table entries and M2P entries ([`MmuUpdate`](crate::memory::MmuUpdate)).
pub const HYPERVISOR_MMU_UPDATE: u64 = 1;
/// `set_gdt(ptr frames, entries)`: install a guest GDT (Xen). Xenia provides
/// one fixed GDT instead; see [`selectors`](crate::selectors).
pub const HYPERVISOR_SET_GDT: u64 = 2;
/// `stack_switch(ss, rsp)`: set the ring-1 stack used when an interrupt,
/// exception or callback arrives from ring 3 (`TSS.RSP1`).
pub const HYPERVISOR_STACK_SWITCH: u64 = 3;
/// `set_callbacks(event, failsafe, syscall)`: the older form of
/// [`HYPERVISOR_CALLBACK_OP`]; three entry addresses.
pub const HYPERVISOR_SET_CALLBACKS: u64 = 4;
/// `fpu_taskswitch(set)`: set (non-zero) or clear the vCPU's virtual `CR0.TS`. While it
/// is set the vCPU's next x87/SSE/AVX instruction raises #NM, delivered to its trap table;
/// as on Xen, delivering that #NM clears it again, so the handler can use the FPU at once.
/// It belongs to the vCPU: saved and restored when the vCPU is switched, never seen by
/// another vCPU.
pub const HYPERVISOR_FPU_TASKSWITCH: u64 = 5;
/// Obsolete form of `sched_op`; kept for numbering.
pub const HYPERVISOR_SCHED_OP_COMPAT: u64 = 6;
/// `platform_op(ptr op)`: platform management for dom0.
pub const HYPERVISOR_PLATFORM_OP: u64 = 7;
/// `set_debugreg(reg, value)`.
pub const HYPERVISOR_SET_DEBUGREG: u64 = 8;
/// `get_debugreg(reg)`.
pub const HYPERVISOR_GET_DEBUGREG: u64 = 9;
/// `update_descriptor(ma, desc)`: write one GDT/LDT descriptor.
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u64 = 10;
/// `memory_op(cmd, ptr arg)`: reservations and memory maps; `cmd` is a
/// `XENMEM_*` value from [`memory`](crate::memory).
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `multicall(ptr calls, count)`: run a batch of hypercalls, an array of
/// `count` (32 bits) [`MulticallEntry`]. Returns 0 once every entry ran, each
/// entry's own result in its `result` field; `EFAULT` if the array cannot be
/// read or a result cannot be written back. See [`MulticallEntry`] for what
/// each entry may be and how a long batch is continued.
pub const HYPERVISOR_MULTICALL: u64 = 13;
/// `update_va_mapping(va, pte, flags)`: set the L1 entry that maps `va` in the
/// current address space; `flags` are `UVMF_*` from [`memory`](crate::memory).
pub const HYPERVISOR_UPDATE_VA_MAPPING: u64 = 14;
/// `set_timer_op(deadline)`: arm the vCPU's one-shot timer for an absolute
/// system time in nanoseconds (0 cancels); it fires `VIRQ_TIMER`.
pub const HYPERVISOR_SET_TIMER_OP: u64 = 15;
/// Obsolete form of `event_channel_op`; kept for numbering.
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u64 = 16;
/// `xen_version(cmd, ptr arg)`: version and feature queries (`XENVER_*`).
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `console_io(cmd, count, ptr buffer)`: the hypervisor console
/// (`CONSOLEIO_*`).
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// Obsolete form of `physdev_op`; kept for numbering.
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u64 = 19;
/// `grant_table_op(cmd, ptr args, count)`: grant tables (`GNTTABOP_*`).
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = 20;
/// `vm_assist(cmd, type)`: enable or disable an optional behaviour
/// (`VMASST_*`).
pub const HYPERVISOR_VM_ASSIST: u64 = 21;
/// `update_va_mapping_otherdomain(va, pte, flags, domid)`.
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
/// `iret()`: return from an exception, event or callback frame on the guest
/// stack, restoring the event mask atomically; see
/// [`IretContext`](crate::trap::IretContext).
pub const HYPERVISOR_IRET: u64 = 23;
/// `vcpu_op(cmd, vcpu, ptr arg)`: per-vCPU operations (`VCPUOP_*`).
pub const HYPERVISOR_VCPU_OP: u64 = 24;
/// `set_segment_base(which, base)`: set an FS or GS base (`SEGBASE_*`).
pub const HYPERVISOR_SET_SEGMENT_BASE: u64 = 25;
/// `mmuext_op(ptr ops, count, ptr done, foreigndom)`: pin and unpin page
/// tables, switch base pointer, flush TLBs
/// ([`MmuextOp`](crate::memory::MmuextOp)).
pub const HYPERVISOR_MMUEXT_OP: u64 = 26;
/// `xsm_op(ptr op)`: security-module operations.
pub const HYPERVISOR_XSM_OP: u64 = 27;
/// `nmi_op(cmd, ptr arg)`.
pub const HYPERVISOR_NMI_OP: u64 = 28;
/// `sched_op(cmd, ptr arg)`: yield, block, shutdown, poll (`SCHEDOP_*`).
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// `callback_op(cmd, ptr arg)`: register or unregister an entry point
/// (`CALLBACKOP_*`).
pub const HYPERVISOR_CALLBACK_OP: u64 = 30;
/// `xenoprof_op(cmd, ptr arg)`.
pub const HYPERVISOR_XENOPROF_OP: u64 = 31;
/// `event_channel_op(cmd, ptr arg)`: event channels (`EVTCHNOP_*`).
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `physdev_op(cmd, ptr arg)`: physical devices for dom0; the virtual IOPL
/// (`PHYSDEVOP_SET_IOPL`) for any domain.
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;
/// `hvm_op(cmd, ptr arg)`.
pub const HYPERVISOR_HVM_OP: u64 = 34;
/// `sysctl(ptr op)`: system-wide control, dom0 only
/// ([`sysctl`](crate::sysctl)).
pub const HYPERVISOR_SYSCTL: u64 = 35;
/// `domctl(ptr op)`: domain control, dom0 only ([`domctl`](crate::domctl)).
pub const HYPERVISOR_DOMCTL: u64 = 36;
/// `kexec_op(cmd, ptr arg)`.
pub const HYPERVISOR_KEXEC_OP: u64 = 37;
/// `tmem_op(ptr op)`.
pub const HYPERVISOR_TMEM_OP: u64 = 38;
/// `argo_op(cmd, ptr, ptr, a3, a4)`.
pub const HYPERVISOR_ARGO_OP: u64 = 39;
/// `xenpmu_op(cmd, ptr arg)`.
pub const HYPERVISOR_XENPMU_OP: u64 = 40;
/// `dm_op(domid, count, ptr bufs)`.
pub const HYPERVISOR_DM_OP: u64 = 41;
/// `hypfs_op(cmd, ptr path, len, ptr buf, len)`.
pub const HYPERVISOR_HYPFS_OP: u64 = 42;
/// First of the eight architecture-specific hypercall numbers (48 to 55).
pub const HYPERVISOR_ARCH_0: u64 = 48;

/// Offset of the stub for hypercall `nr` in the hypercall page.
pub const fn hypercall_page_offset(nr: u64) -> usize {
    nr as usize * HYPERCALL_PAGE_STUB_SIZE
}

/// Opcode bytes used by the stubs (Intel SDM Vol. 2, instruction set
/// reference).
mod opcode {
    /// `mov eax, imm32` (B8+rd id).
    pub const MOV_EAX_IMM32: u8 = 0xB8;
    /// `int imm8` (CD ib).
    pub const INT_IMM8: u8 = 0xCD;
    /// `ret` (near, C3).
    pub const RET: u8 = 0xC3;
    /// `int3` (CC): padding that traps if ever executed.
    pub const INT3: u8 = 0xCC;
    /// `push rax` (50+rd).
    pub const PUSH_RAX: u8 = 0x50;
    /// `push rcx` (50+rd).
    pub const PUSH_RCX: u8 = 0x51;
    /// REX.B prefix, selecting r8–r15 for the following `push`.
    pub const REX_B: u8 = 0x41;
    /// `push r11` with REX.B (50+rd, rd = 3).
    pub const PUSH_R11_AFTER_REX_B: u8 = 0x53;
}

/// The 32 bytes of stub `nr` of the hypercall page (see the module
/// documentation for the encoding). The hypervisor fills guest hypercall pages
/// from [`hypercall_page_image`], which uses this.
pub const fn hypercall_stub(nr: u32) -> [u8; HYPERCALL_PAGE_STUB_SIZE] {
    let mut stub = [opcode::INT3; HYPERCALL_PAGE_STUB_SIZE];
    let mut i = 0;
    if nr as u64 == HYPERVISOR_IRET {
        // Complete the IretContext on the stack: rax ends up on top.
        stub[0] = opcode::PUSH_RCX;
        stub[1] = opcode::REX_B;
        stub[2] = opcode::PUSH_R11_AFTER_REX_B;
        stub[3] = opcode::PUSH_RAX;
        i = 4;
    }
    let imm = nr.to_le_bytes();
    stub[i] = opcode::MOV_EAX_IMM32;
    stub[i + 1] = imm[0];
    stub[i + 2] = imm[1];
    stub[i + 3] = imm[2];
    stub[i + 4] = imm[3];
    stub[i + 5] = opcode::INT_IMM8;
    stub[i + 6] = HYPERCALL_VECTOR;
    if nr as u64 != HYPERVISOR_IRET {
        stub[i + 7] = opcode::RET;
    }
    stub
}

/// The complete contents of a hypercall page: stub `N` at offset `N * 32`
/// for every `N` below [`HYPERCALL_PAGE_STUBS`].
pub const fn hypercall_page_image() -> [u8; crate::types::PAGE_SIZE] {
    let mut page = [0u8; crate::types::PAGE_SIZE];
    let mut nr = 0;
    while nr < HYPERCALL_PAGE_STUBS {
        let stub = hypercall_stub(nr as u32);
        let mut j = 0;
        while j < HYPERCALL_PAGE_STUB_SIZE {
            page[nr * HYPERCALL_PAGE_STUB_SIZE + j] = stub[j];
            j += 1;
        }
        nr += 1;
    }
    page
}

/// The hypercall page of a kernel in Xen's 64-bit PV mode (`XENIA_GUEST_MODE_XEN_PV`), as
/// Xen writes it (`hypercall_page_initialise_ring3_kernel`): stub *n* at `32 n` is `push rcx;
/// push r11; mov eax, n; syscall; pop r11; pop rcx; ret` (the `syscall` clobbers `rcx` and
/// `r11`, which the stub keeps); the `iret` stub is `push rcx; push r11; push rax; mov eax,
/// 23; syscall`, entered with the rest of the `iret_context` (`flags` first) on the stack,
/// and does not return. The rest of the page is `int3`.
pub const fn xen_pv_hypercall_page_image() -> [u8; crate::types::PAGE_SIZE] {
    let mut page = [0xCCu8; crate::types::PAGE_SIZE];
    let mut nr = 0;
    while nr < HYPERCALL_PAGE_STUBS {
        let at = nr * HYPERCALL_PAGE_STUB_SIZE;
        let n = (nr as u32).to_le_bytes();
        let stub: [u8; 14] = if nr as u64 == HYPERVISOR_IRET {
            [
                0x51, 0x41, 0x53, 0x50, 0xB8, n[0], n[1], n[2], n[3], 0x0F, 0x05, 0xCC, 0xCC, 0xCC,
            ]
        } else {
            [
                0x51, 0x41, 0x53, 0xB8, n[0], n[1], n[2], n[3], 0x0F, 0x05, 0x41, 0x5B, 0x59, 0xC3,
            ]
        };
        let mut j = 0;
        while j < stub.len() {
            page[at + j] = stub[j];
            j += 1;
        }
        nr += 1;
    }
    page
}

#[cfg(target_arch = "x86_64")]
pub use raw::*;

/// The raw `int 0x82` primitives.
///
/// Each returns the raw `rax`; decode it with
/// [`Errno::decode_result`](crate::errno::Errno::decode_result), or use the
/// typed wrappers in [`calls`](crate::calls).
///
/// The `asm!` blocks tell the compiler exactly the ABI above: `rax` is
/// replaced, the argument registers are clobbered (a continued batch
/// rewrites `rdi` and `rsi`; the others are reserved likewise), memory may be
/// read and written (the hypervisor copies to and from the buffers the
/// arguments point to), and the status flags are clobbered. They do not claim
/// `nostack`: when a hypercall returns with an event pending, the hypervisor
/// may deliver the event upcall right away, writing a frame below the
/// caller's `rsp`.
#[cfg(target_arch = "x86_64")]
mod raw {
    use core::arch::asm;

    /// Issues hypercall `nr` with no arguments.
    ///
    /// # Safety
    ///
    /// The hypercall must be one whose effect cannot break the caller's memory
    /// safety (for example one that changes page tables the caller relies on),
    /// or the caller must uphold whatever that hypercall requires. The
    /// instruction only works in ring 1 under Xenia; anywhere else it faults.
    #[inline]
    pub unsafe fn hypercall0(nr: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller upholds the contract of hypercall `nr`; the
        // operands below state the register convention exactly.
        unsafe {
            asm!("int 0x82", inlateout("rax") nr as i64 => ret);
        }
        ret
    }

    /// Issues hypercall `nr` with one argument (in `rdi`).
    ///
    /// # Safety
    ///
    /// As for [`hypercall0`]; in addition, every argument that the hypercall
    /// interprets as a pointer must point to memory laid out as that hypercall
    /// expects, valid for the reads and writes it performs, for the duration
    /// of the call.
    #[inline]
    pub unsafe fn hypercall1(nr: u64, a1: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller upholds the contract of hypercall `nr`, including
        // the validity of pointer arguments.
        unsafe {
            asm!("int 0x82", inlateout("rax") nr as i64 => ret, inout("rdi") a1 => _);
        }
        ret
    }

    /// Issues hypercall `nr` with two arguments (`rdi`, `rsi`).
    ///
    /// # Safety
    ///
    /// As for [`hypercall1`].
    #[inline]
    pub unsafe fn hypercall2(nr: u64, a1: u64, a2: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller upholds the contract of hypercall `nr`, including
        // the validity of pointer arguments.
        unsafe {
            asm!(
                "int 0x82",
                inlateout("rax") nr as i64 => ret,
                inout("rdi") a1 => _,
                inout("rsi") a2 => _,
            );
        }
        ret
    }

    /// Issues hypercall `nr` with three arguments (`rdi`, `rsi`, `rdx`).
    ///
    /// # Safety
    ///
    /// As for [`hypercall1`].
    #[inline]
    pub unsafe fn hypercall3(nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller upholds the contract of hypercall `nr`, including
        // the validity of pointer arguments.
        unsafe {
            asm!(
                "int 0x82",
                inlateout("rax") nr as i64 => ret,
                inout("rdi") a1 => _,
                inout("rsi") a2 => _,
                inout("rdx") a3 => _,
            );
        }
        ret
    }

    /// Issues hypercall `nr` with four arguments (`rdi`, `rsi`, `rdx`,
    /// `r10`).
    ///
    /// # Safety
    ///
    /// As for [`hypercall1`].
    #[inline]
    pub unsafe fn hypercall4(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller upholds the contract of hypercall `nr`, including
        // the validity of pointer arguments.
        unsafe {
            asm!(
                "int 0x82",
                inlateout("rax") nr as i64 => ret,
                inout("rdi") a1 => _,
                inout("rsi") a2 => _,
                inout("rdx") a3 => _,
                inout("r10") a4 => _,
            );
        }
        ret
    }

    /// Issues hypercall `nr` with five arguments (`rdi`, `rsi`, `rdx`, `r10`,
    /// `r8`).
    ///
    /// # Safety
    ///
    /// As for [`hypercall1`].
    #[inline]
    pub unsafe fn hypercall5(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller upholds the contract of hypercall `nr`, including
        // the validity of pointer arguments.
        unsafe {
            asm!(
                "int 0x82",
                inlateout("rax") nr as i64 => ret,
                inout("rdi") a1 => _,
                inout("rsi") a2 => _,
                inout("rdx") a3 => _,
                inout("r10") a4 => _,
                inout("r8") a5 => _,
            );
        }
        ret
    }
}

/// One entry of a `multicall` batch (Xen's `struct multicall_entry`, 64 bytes).
///
/// Each entry is run as if the guest had issued hypercall `op` with `args[0..5]`
/// in `rdi, rsi, rdx, r10, r8` (`args[5]` is not used on x86-64), through the
/// same handlers, with the same checks; its return value (a negative errno on
/// failure) is written to `result`. An entry's failure does not stop the batch.
///
/// - A `multicall` entry (nesting) gets `-EINVAL` and the batch goes on.
/// - An `iret` entry ends the batch: the guest resumes at the frame it names.
/// - An entry that yields or blocks (`SCHEDOP_yield`, `SCHEDOP_block`,
///   `SCHEDOP_poll`) gets its result (0), then the batch is cut short as Xen's
///   preemption check does: the vCPU yields or blocks, and when it runs again
///   the call continues with the next entry.
/// - An entry that is itself continued (a long `mmu_update`, say) has its
///   advanced arguments written back into `args`, and the batch continues from
///   that entry.
/// - Between entries, when an event is waiting to be delivered or after
///   [`MULTICALL_CHUNK`] entries, the call is continued: the guest's argument
///   registers and `rip` are rewound so that `int 0x82` re-issues it on the
///   entries not yet run. A guest sees one call that returns once all ran.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct MulticallEntry {
    /// IN: the hypercall number.
    pub op: u64,
    /// OUT: its return value, a negative errno on failure.
    pub result: i64,
    /// IN: its arguments (`args[5]` unused on x86-64); OUT when the entry was
    /// continued: its advanced arguments.
    pub args: [u64; 6],
}

/// Entries a `multicall` runs before it continues itself, so that a long
/// batch lets events and other vCPUs through.
pub const MULTICALL_CHUNK: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_pv_hypercall_page_is_xens() {
        let page = xen_pv_hypercall_page_image();
        // xen_version (17): push rcx; push r11; mov eax, 17; syscall; pop r11; pop rcx; ret.
        let at = 17 * HYPERCALL_PAGE_STUB_SIZE;
        assert_eq!(
            page[at..at + 14],
            [
                0x51, 0x41, 0x53, 0xB8, 17, 0, 0, 0, 0x0F, 0x05, 0x41, 0x5B, 0x59, 0xC3
            ]
        );
        assert!(page[at + 14..at + 32].iter().all(|&b| b == 0xCC));
        // iret (23): push rcx; push r11; push rax; mov eax, 23; syscall; never returns.
        let at = 23 * HYPERCALL_PAGE_STUB_SIZE;
        assert_eq!(
            page[at..at + 11],
            [0x51, 0x41, 0x53, 0x50, 0xB8, 23, 0, 0, 0, 0x0F, 0x05]
        );
        assert!(page[at + 11..at + 32].iter().all(|&b| b == 0xCC));
        // The last stub.
        let at = (HYPERCALL_PAGE_STUBS - 1) * HYPERCALL_PAGE_STUB_SIZE;
        assert_eq!(page[at + 3..at + 8], [0xB8, 127, 0, 0, 0]);
    }

    #[test]
    fn multicall_entry_layout() {
        assert_layout!(MulticallEntry, 64, 8, { op: 0, result: 8, args: 16 });
    }

    #[test]
    fn numbers_match_xen() {
        let xen = [
            (HYPERVISOR_SET_TRAP_TABLE, 0),
            (HYPERVISOR_MMU_UPDATE, 1),
            (HYPERVISOR_SET_GDT, 2),
            (HYPERVISOR_STACK_SWITCH, 3),
            (HYPERVISOR_SET_CALLBACKS, 4),
            (HYPERVISOR_FPU_TASKSWITCH, 5),
            (HYPERVISOR_SCHED_OP_COMPAT, 6),
            (HYPERVISOR_PLATFORM_OP, 7),
            (HYPERVISOR_SET_DEBUGREG, 8),
            (HYPERVISOR_GET_DEBUGREG, 9),
            (HYPERVISOR_UPDATE_DESCRIPTOR, 10),
            (HYPERVISOR_MEMORY_OP, 12),
            (HYPERVISOR_MULTICALL, 13),
            (HYPERVISOR_UPDATE_VA_MAPPING, 14),
            (HYPERVISOR_SET_TIMER_OP, 15),
            (HYPERVISOR_EVENT_CHANNEL_OP_COMPAT, 16),
            (HYPERVISOR_XEN_VERSION, 17),
            (HYPERVISOR_CONSOLE_IO, 18),
            (HYPERVISOR_PHYSDEV_OP_COMPAT, 19),
            (HYPERVISOR_GRANT_TABLE_OP, 20),
            (HYPERVISOR_VM_ASSIST, 21),
            (HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN, 22),
            (HYPERVISOR_IRET, 23),
            (HYPERVISOR_VCPU_OP, 24),
            (HYPERVISOR_SET_SEGMENT_BASE, 25),
            (HYPERVISOR_MMUEXT_OP, 26),
            (HYPERVISOR_XSM_OP, 27),
            (HYPERVISOR_NMI_OP, 28),
            (HYPERVISOR_SCHED_OP, 29),
            (HYPERVISOR_CALLBACK_OP, 30),
            (HYPERVISOR_XENOPROF_OP, 31),
            (HYPERVISOR_EVENT_CHANNEL_OP, 32),
            (HYPERVISOR_PHYSDEV_OP, 33),
            (HYPERVISOR_HVM_OP, 34),
            (HYPERVISOR_SYSCTL, 35),
            (HYPERVISOR_DOMCTL, 36),
            (HYPERVISOR_KEXEC_OP, 37),
            (HYPERVISOR_TMEM_OP, 38),
            (HYPERVISOR_ARGO_OP, 39),
            (HYPERVISOR_XENPMU_OP, 40),
            (HYPERVISOR_DM_OP, 41),
            (HYPERVISOR_HYPFS_OP, 42),
            (HYPERVISOR_ARCH_0, 48),
        ];
        for (ours, theirs) in xen {
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn ordinary_stub_encoding() {
        let s = hypercall_stub(29);
        assert_eq!(&s[..8], &[0xB8, 29, 0, 0, 0, 0xCD, 0x82, 0xC3]);
        assert!(s[8..].iter().all(|&b| b == 0xCC));

        let s = hypercall_stub(0);
        assert_eq!(&s[..8], &[0xB8, 0, 0, 0, 0, 0xCD, 0x82, 0xC3]);

        let s = hypercall_stub(0x0102_0304);
        assert_eq!(&s[..8], &[0xB8, 0x04, 0x03, 0x02, 0x01, 0xCD, 0x82, 0xC3]);
    }

    #[test]
    fn iret_stub_pushes_the_rest_of_the_frame_and_never_returns() {
        let s = hypercall_stub(HYPERVISOR_IRET as u32);
        assert_eq!(
            &s[..11],
            &[0x51, 0x41, 0x53, 0x50, 0xB8, 23, 0, 0, 0, 0xCD, 0x82]
        );
        assert!(s[11..].iter().all(|&b| b == 0xCC));
        assert!(!s.contains(&0xC3));
    }

    #[test]
    fn page_image_places_stub_n_at_n_times_32() {
        let page = hypercall_page_image();
        assert_eq!(HYPERCALL_PAGE_STUBS, 128);
        for nr in 0..HYPERCALL_PAGE_STUBS {
            let off = hypercall_page_offset(nr as u64);
            assert_eq!(off, nr * 32);
            assert_eq!(page[off..off + 32], hypercall_stub(nr as u32));
        }
        // The stub for sched_op sits at byte 29 * 32 = 928.
        assert_eq!(&page[928..933], &[0xB8, 29, 0, 0, 0]);
    }

    #[test]
    fn vectors() {
        assert_eq!(HYPERCALL_VECTOR, 0x82);
        assert_eq!(FAST_TRAP_VECTOR, 0x80);
    }
}
