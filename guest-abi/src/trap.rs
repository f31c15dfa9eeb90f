//! Exceptions and software interrupts: the virtual IDT, the frame a handler
//! finds on its stack, and the `iret` hypercall.
//!
//! # The trap table
//!
//! A guest kernel registers its handlers with `set_trap_table`, passing an
//! array of [`TrapInfo`] that ends with an entry whose `address` is 0. Each
//! entry replaces the handler for its vector; vectors not named keep theirs.
//! A null array pointer clears the whole table. Entries must name
//! [`KERNEL_CS`](crate::selectors::KERNEL_CS) as their code selector.
//!
//! Vectors [`NMI`], [`DOUBLE_FAULT`] and [`MACHINE_CHECK`] belong to the
//! hypervisor and are never delivered through the table; their entries are
//! ignored. [`HYPERCALL_VECTOR`](crate::hypercall::HYPERCALL_VECTOR) cannot
//! be registered.
//!
//! # Delivery
//!
//! When an exception belongs to the guest (every fault raised by guest code,
//! other than those the hypervisor emulates), the hypervisor delivers it to
//! the registered handler as the CPU would deliver it to a ring-1 handler
//! through an IDT gate:
//!
//! * If the guest was in ring 3, the frame goes on the ring-1 stack last set
//!   with `stack_switch`; if it was in ring 1, just below its current `rsp`,
//!   aligned down to 16 bytes (Intel SDM Vol. 3A §6.14.2). Guest kernels must
//!   not use a red zone.
//! * The frame has the hardware format ([`TrapFrame`]): from the lowest
//!   address, the error code for the vectors that have one (Intel SDM Vol. 3A
//!   §6.15), then `rip`, `cs`, `rflags`, `rsp`, `ss`.
//! * `cs` and `ss` are the selectors the guest was really using: RPL 1 for
//!   kernel code, RPL 3 for user code (see
//!   [`is_user_cs`](crate::selectors::is_user_cs)).
//! * `IF` in the saved `rflags` is the guest's *virtual* interrupt flag at the
//!   time of the exception, that is `evtchn_upcall_mask == 0`. (The real
//!   `IF` is always set while a guest runs.)
//! * For a page fault the faulting address is in
//!   `vcpu_info.arch.cr2`, written just before delivery.
//! * If the entry has [`TI_MASK_EVENTS`], `evtchn_upcall_mask` is set on entry
//!   (an interrupt gate); otherwise it is left alone (a trap gate).
//! * The handler starts with `CS` = `KERNEL_CS`, `SS` = `KERNEL_SS`, every
//!   general-purpose register as it was when the exception occurred, and
//!   `rflags` as it was except that `TF`, `NT` and `RF` are clear (as the
//!   CPU clears them when it enters a handler, Intel SDM Vol. 3A §6.12.1).
//!   The handler therefore does not single-step itself; to stop
//!   single-stepping the interrupted code it clears `TF` in the saved frame.
//! * Traps report the address of the next instruction: `int3` (#BP), `int1`
//!   (`icebp`, #DB), a single-step #DB, `into`; faults report the faulting
//!   instruction (Intel SDM Vol. 3A §6.5).
//!
//! If the handler is missing or the frame cannot be written (the stack is not
//! mapped writable), the domain is crashed: the hypervisor logs a line that
//! names the vector and the guest `rip`, and shuts the domain down with
//! reason `crash`.
//!
//! # Software interrupts and the fast trap
//!
//! `int n` from guest code reaches the handler for `n` only if the entry's
//! DPL ([`TI_DPL_MASK`]) admits the caller's ring; otherwise the guest gets a
//! #GP with error code `n << 3 | 2` (IDT, not external), as on hardware (the
//! hypervisor passes on the error code the CPU reported; QEMU's TCG reports
//! `n << 4 | 2`). This
//! applies to `int3` and `into` as well (Intel SDM Vol. 3A §6.12.1.1): give
//! the [`BREAKPOINT`] and [`OVERFLOW`] entries DPL 3, as native kernels do,
//! or `int3` in the kernel itself raises #GP. `int1` (`icebp`) is not
//! checked against any DPL. `int 0x82` from ring 3 thus raises #GP with
//! error code `0x412`.
//!
//! The vectors a guest may use for its own software interrupts are `0x20` to
//! `0xDF` (except [`HYPERCALL_VECTOR`](crate::hypercall::HYPERCALL_VECTOR)),
//! besides [`BREAKPOINT`] and [`OVERFLOW`]; `0xE0` to `0xFF` belong to the
//! hypervisor, and `int n` on them, or on any other exception vector, raises
//! #GP whatever the guest's entry says.
//!
//! An entry for [`FAST_TRAP_VECTOR`] (`int 0x80`) with DPL 3, the kernel code
//! selector and [`TI_MASK_EVENTS`] clear is special: the hypervisor loads it
//! into the real IDT (as a trap gate of DPL 3 targeting ring 1) whenever it
//! runs the vCPU, and points `TSS.RSP1` at the `stack_switch` stack. A ring-3
//! `int 0x80` then reaches the guest kernel directly, in hardware, with the
//! frame described above and without entering the hypervisor (the vCPU's
//! [entry count](crate::shared_info::ArchVcpuInfo::entry_count) does not
//! move). An entry that does not qualify is delivered the slow way, through
//! the hypervisor, with the same frame.
//!
//! Because the CPU itself performs that ring-3-to-ring-1 transition, it also
//! does what it does on every privilege change in 64-bit mode: it loads `SS`
//! with a null selector whose RPL is the new CPL (`0x1`, Intel SDM Vol. 3A
//! §6.14.4). The handler's stack works normally; a kernel that later relies on
//! the value of `SS` (or leaves ring 1 through a path other than `iretq`)
//! reloads it with [`KERNEL_SS`](crate::selectors::KERNEL_SS) first. The same
//! holds for `DS` and `ES`, which `iretq` to ring 3 leaves null unless the
//! kernel loaded user selectors before.
//!
//! # Returning
//!
//! A handler may return with its own `iretq`: from ring 1 the CPU returns to
//! ring 1 or ring 3 as the frame says. `iretq` in ring 1 cannot change the
//! interrupt flag, so a handler that had events masked clears
//! `evtchn_upcall_mask` itself first and then checks
//! `evtchn_upcall_pending`. Alternatively it jumps to the `iret` hypercall
//! stub (or pushes `rcx`, `r11`, `rax` and issues hypercall
//! [`HYPERVISOR_IRET`](crate::hypercall::HYPERVISOR_IRET) itself), which
//! restores the frame and sets `evtchn_upcall_mask` from the frame's `IF`
//! in one step; see [`IretContext`].
//!
//! [`FAST_TRAP_VECTOR`]: crate::hypercall::FAST_TRAP_VECTOR

/// Divide error (#DE). Vector numbers are from Intel SDM Vol. 3A §6.3.1,
/// Table 6-1.
pub const DIVIDE_ERROR: u8 = 0;
/// Debug exception (#DB).
pub const DEBUG: u8 = 1;
/// Non-maskable interrupt: the hypervisor's.
pub const NMI: u8 = 2;
/// Breakpoint (#BP, `int3`).
pub const BREAKPOINT: u8 = 3;
/// Overflow (#OF, `into`).
pub const OVERFLOW: u8 = 4;
/// BOUND range exceeded (#BR).
pub const BOUND_RANGE: u8 = 5;
/// Invalid opcode (#UD).
pub const INVALID_OPCODE: u8 = 6;
/// Device not available (#NM).
pub const DEVICE_NOT_AVAILABLE: u8 = 7;
/// Double fault (#DF): the hypervisor's.
pub const DOUBLE_FAULT: u8 = 8;
/// Invalid TSS (#TS); has an error code.
pub const INVALID_TSS: u8 = 10;
/// Segment not present (#NP); has an error code.
pub const SEGMENT_NOT_PRESENT: u8 = 11;
/// Stack-segment fault (#SS); has an error code.
pub const STACK_SEGMENT_FAULT: u8 = 12;
/// General protection (#GP); has an error code. Also what a guest gets for a
/// privileged instruction the hypervisor does not emulate.
pub const GENERAL_PROTECTION: u8 = 13;
/// Page fault (#PF); has an error code; address in `vcpu_info.arch.cr2`.
pub const PAGE_FAULT: u8 = 14;
/// x87 floating-point error (#MF).
pub const X87_FLOATING_POINT: u8 = 16;
/// Alignment check (#AC); has an error code.
pub const ALIGNMENT_CHECK: u8 = 17;
/// Machine check (#MC): the hypervisor's.
pub const MACHINE_CHECK: u8 = 18;
/// SIMD floating-point exception (#XM).
pub const SIMD_FLOATING_POINT: u8 = 19;
/// Control-protection exception (#CP); has an error code.
pub const CONTROL_PROTECTION: u8 = 21;

/// Whether the CPU pushes an error code for exception `vector` (Intel SDM
/// Vol. 3A §6.15). The hypervisor writes one in exactly these cases.
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// Mask of the privilege-level field of [`TrapInfo::flags`]: the least
/// privileged ring allowed to raise the vector with `int n` (0: none, 1 or 2:
/// the kernel, 3: everyone).
pub const TI_DPL_MASK: u8 = 0x3;
/// Flag of [`TrapInfo::flags`]: set `evtchn_upcall_mask` when entering the
/// handler (Xen's `TI_SET_IF`).
pub const TI_MASK_EVENTS: u8 = 0x4;

/// One virtual IDT entry (Xen's `struct trap_info`, 16 bytes).
///
/// Written by the guest in the array it passes to `set_trap_table`; the
/// hypervisor copies the array and keeps its own table.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct TrapInfo {
    /// Vector number.
    pub vector: u8,
    /// [`TI_DPL_MASK`] bits and [`TI_MASK_EVENTS`].
    pub flags: u8,
    /// Code selector of the handler: [`KERNEL_CS`](crate::selectors::KERNEL_CS).
    pub cs: u16,
    /// Virtual address of the handler; 0 ends the array.
    pub address: u64,
}

impl TrapInfo {
    /// An entry for `vector` at `address` in the kernel code segment.
    pub const fn new(vector: u8, dpl: u8, mask_events: bool, address: u64) -> Self {
        let flags = (dpl & TI_DPL_MASK) | if mask_events { TI_MASK_EVENTS } else { 0 };
        Self {
            vector,
            flags,
            cs: crate::selectors::KERNEL_CS,
            address,
        }
    }

    /// The array terminator.
    pub const END: TrapInfo = TrapInfo {
        vector: 0,
        flags: 0,
        cs: 0,
        address: 0,
    };

    /// The least privileged ring that may raise this vector with `int n`.
    pub const fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }

    /// Whether entering the handler masks events.
    pub const fn masks_events(&self) -> bool {
        self.flags & TI_MASK_EVENTS != 0
    }

    /// Whether this entry ends the array.
    pub const fn is_end(&self) -> bool {
        self.address == 0
    }

    /// Whether this entry qualifies for the direct `int 0x80` path (see the
    /// module documentation).
    pub const fn is_fast_trap(&self) -> bool {
        self.vector == crate::hypercall::FAST_TRAP_VECTOR
            && self.dpl() == 3
            && !self.masks_events()
            && self.cs == crate::selectors::KERNEL_CS
            && self.address != 0
    }
}

/// The hardware-format frame the hypervisor writes on the guest kernel stack
/// for exceptions without an error code, events and callbacks (lowest address
/// first). For exceptions with an error code, a `u64` error code sits just
/// below it, at the frame's lowest address.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct TrapFrame {
    /// Address of the interrupted instruction (of the next one for traps and
    /// software interrupts).
    pub rip: u64,
    /// Interrupted code selector, zero-extended.
    pub cs: u64,
    /// Interrupted `rflags`, with `IF` replaced by the virtual interrupt flag.
    pub rflags: u64,
    /// Interrupted stack pointer.
    pub rsp: u64,
    /// Interrupted stack selector, zero-extended.
    pub ss: u64,
}

/// The interrupt-enable flag in `rflags` (Intel SDM Vol. 1 §3.4.3).
pub const RFLAGS_IF: u64 = 1 << 9;

/// Flag of [`IretContext::flags`]: the frame came from the syscall callback;
/// return to user mode restoring only `rax`, `rip`, `rflags` and `rsp`
/// (`rcx`, `r11` are discarded and `cs`/`ss` become the user selectors),
/// which lets the hypervisor use `SYSRET`.
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// What the `iret` hypercall expects at the guest's `rsp` when it issues
/// `int 0x82` (Xen's `struct iret_context`, 72 bytes, lowest address first).
///
/// A handler that returns through the hypercall page jumps to the `iret` stub
/// with `flags` at `rsp`; the stub pushes `rcx`, `r11` and `rax`. Without
/// [`VGCF_IN_SYSCALL`] the hypervisor restores `rax`, `r11`, `rcx`, `rip`,
/// `cs`, `rflags`, `rsp`, `ss`, and sets `evtchn_upcall_mask` to the inverse
/// of `rflags.IF`, in one step. Every other register keeps the value it had
/// at the hypercall. `cs` must be `KERNEL_CS` or `USER_CS` and `ss` the
/// matching data selector, or, with `KERNEL_CS`, the null selector of RPL 1
/// (`1`) that a fast trap leaves in `SS` (see
/// [the porting guide](crate::porting#ss-after-a-fast-trap-and-in-an-upcall-that-interrupted-one));
/// anything else crashes the domain. The hypercall does not return.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct IretContext {
    /// Value for `rax`.
    pub rax: u64,
    /// Value for `r11`.
    pub r11: u64,
    /// Value for `rcx`.
    pub rcx: u64,
    /// [`VGCF_IN_SYSCALL`] or 0.
    pub flags: u64,
    /// Return address.
    pub rip: u64,
    /// Return code selector.
    pub cs: u64,
    /// Return `rflags`; `IF` is the virtual interrupt flag to restore.
    pub rflags: u64,
    /// Return stack pointer.
    pub rsp: u64,
    /// Return stack selector.
    pub ss: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_info_layout() {
        assert_layout!(TrapInfo, 16, 8, { vector: 0, flags: 1, cs: 2, address: 8 });
    }

    #[test]
    fn iret_context_layout() {
        assert_layout!(IretContext, 72, 8, {
            rax: 0,
            r11: 8,
            rcx: 16,
            flags: 24,
            rip: 32,
            cs: 40,
            rflags: 48,
            rsp: 56,
            ss: 64,
        });
        assert_eq!(VGCF_IN_SYSCALL, 256);
    }

    #[test]
    fn trap_frame_is_the_hardware_frame() {
        assert_layout!(TrapFrame, 40, 8, { rip: 0, cs: 8, rflags: 16, rsp: 24, ss: 32 });
        // The tail of the iret context is a hardware frame.
        assert_eq!(
            core::mem::offset_of!(IretContext, rip) + core::mem::size_of::<TrapFrame>(),
            core::mem::size_of::<IretContext>()
        );
    }

    #[test]
    fn flags_and_fast_trap() {
        let e = TrapInfo::new(0x80, 3, false, 0xFFFF_FFFF_8000_1000);
        assert_eq!(e.flags, 3);
        assert_eq!(e.cs, 0x19);
        assert!(e.is_fast_trap());
        assert!(!TrapInfo::new(0x80, 3, true, 0x1000).is_fast_trap());
        assert!(!TrapInfo::new(0x80, 1, false, 0x1000).is_fast_trap());
        assert!(!TrapInfo::new(0x81, 3, false, 0x1000).is_fast_trap());
        let pf = TrapInfo::new(PAGE_FAULT, 0, true, 0x2000);
        assert_eq!(pf.flags, 4);
        assert!(pf.masks_events() && pf.dpl() == 0);
        assert!(TrapInfo::END.is_end());
    }

    #[test]
    fn error_code_vectors() {
        let with: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];
        for v in 0..32u8 {
            assert_eq!(has_error_code(v), with.contains(&v), "vector {v}");
        }
    }
}
