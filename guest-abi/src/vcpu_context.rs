//! A vCPU's full register context (`vcpu_guest_context`), as the toolstack
//! sets it with [`XEN_DOMCTL_SETVCPUCONTEXT`](crate::domctl::XEN_DOMCTL_SETVCPUCONTEXT)
//! and reads it with [`XEN_DOMCTL_GETVCPUCONTEXT`](crate::domctl::XEN_DOMCTL_GETVCPUCONTEXT).
//!
//! The layout is Xen's x86-64 `struct vcpu_guest_context`
//! (`xen/include/public/arch-x86/xen.h`, 5168 bytes) with Xen's x86-64
//! `struct cpu_user_regs` (`arch-x86/xen-x86_64.h`, 200 bytes) inside, so a
//! toolstack that knows Xen's PV builder fills it the same way. Xenia's
//! fixed GDT, ring-1 kernel and single page table per address space make
//! some fields meaningless; `setvcpucontext` treats every field as follows,
//! and checks the whole context before it changes anything.
//!
//! # Honoured
//!
//! | field | meaning under Xenia |
//! |---|---|
//! | `flags` | [`VGCF_IN_KERNEL`] must be set (vCPUs start in kernel mode); [`VGCF_ONLINE`] makes the vCPU runnable (without it the vCPU stays down); [`VGCF_FAILSAFE_DISABLES_EVENTS`] and [`VGCF_SYSCALL_DISABLES_EVENTS`] give the failsafe and syscall callbacks the `CALLBACKF_MASK_EVENTS` flag |
//! | `user_regs` `rax` … `r15`, `rip`, `rsp` | loaded as given (a new kernel: `rip` the entry, `rsp` the stack top, `rsi` the `start_info` address, the rest 0) |
//! | `user_regs.rflags` | loaded with `IF` forced set and `IOPL` forced 0, as for every guest; `VM`, `RF`, `NT`, `VIF`, `VIP` cleared; bit 1 set |
//! | `user_regs.cs`, `ss` | must be [`KERNEL_CS`](crate::selectors::KERNEL_CS) and [`KERNEL_SS`](crate::selectors::KERNEL_SS) |
//! | `user_regs.ds`, `es` | 0 or [`KERNEL_DS`](crate::selectors::KERNEL_DS) |
//! | `user_regs.fs`, `gs` | must be 0: bases come from `fs_base` and `gs_base_user` |
//! | `trap_ctxt` | entry *v* is vector *v*'s handler, as if registered with `set_trap_table` (same checks; entries with address 0 are absent; the `vector` field is ignored) |
//! | `kernel_ss`, `kernel_sp` | the ring-1 stack for entries from ring 3, as `stack_switch` sets it; both 0 for none yet |
//! | `ctrlreg[3]` | the L4 page table, as a machine address in Xen's `xen_pfn_to_cr3` format ([`xen_pfn_to_cr3`]): a frame of the domain that validates as an L4 |
//! | `event_callback_eip`, `failsafe_callback_eip`, `syscall_callback_eip` | the callbacks, as `callback_register` sets them; 0 for none |
//! | `fs_base`, `gs_base_user` | the FS and GS bases, as `set_segment_base` sets them |
//!
//! # Ignored
//!
//! `fpu_ctxt` (the vCPU starts with the FPU in its reset state, as dom0's
//! does); `user_regs.error_code`, `entry_vector` (Xen-private) and
//! `saved_upcall_mask` (a new vCPU always starts with events masked, as the
//! porting guide says); `ctrlreg` other than 1 and 3 (the hypervisor owns
//! CR0 and CR4; CR2 lives in `vcpu_info`); `debugreg` (Xenia has no guest
//! debug registers yet).
//!
//! # Refused (`EINVAL`)
//!
//! * [`VGCF_I387_VALID`] (loading an FPU image is not supported yet) and
//!   [`VGCF_IN_SYSCALL`](crate::trap::VGCF_IN_SYSCALL), or a clear
//!   [`VGCF_IN_KERNEL`];
//! * non-zero `ldt_base` or `ldt_ents` (no LDT), `gdt_frames` or
//!   `gdt_ents` (the GDT is fixed, see [`selectors`](crate::selectors));
//! * non-zero `ctrlreg[1]`: Xen's separate user page table, which Xenia does
//!   not have (`MMUEXT_NEW_USER_BASEPTR` is refused likewise);
//! * non-zero `vm_assist` (Xenia offers no VM assists) or `gs_base_kernel`
//!   (Xenia has one GS base);
//! * any selector or trap entry outside the rules above, a callback or
//!   `rip` that is not a canonical address outside the hypervisor's range,
//!   or an L4 that is not the domain's or does not validate.
//!
//! `getvcpucontext` fills the honoured fields with the vCPU's current state
//! and zeroes the rest.
//!
//! # Xen PV domains
//!
//! For a domain in Xen's PV mode (`XEN_DOMCTL_XENIA_SET_GUEST_MODE`) the
//! tables above are Xenia's ring-1 rules; the context is taken as Xen's
//! `arch_set_info_guest` takes it for a 64-bit PV vCPU instead: Xen's flat
//! kernel selectors or the context's own GDT entries (RPL raised to 3),
//! `gdt_frames`/`gdt_ents` checked and held as `set_gdt` does, `ctrlreg[1]`
//! the user-mode L4, `gs_base_kernel` and `gs_base_user` both kept,
//! `debugreg` as Xen checks it, `vm_assist` ignored after vCPU 0; an LDT and
//! `VGCF_i387_valid` are still refused. The hypervisor's
//! `guest::xenpv::install_context` documents each rule.

use crate::trap::TrapInfo;

/// [`VcpuGuestContext::flags`]: `fpu_ctxt` holds a valid FXSAVE image.
/// Refused by Xenia's `setvcpucontext`.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// [`VcpuGuestContext::flags`]: the vCPU is in kernel mode. Required.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// [`VcpuGuestContext::flags`]: entering the failsafe callback masks events.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// [`VcpuGuestContext::flags`]: entering the syscall callback masks events.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// [`VcpuGuestContext::flags`]: the vCPU is up (runnable once the domain is
/// unpaused).
pub const VGCF_ONLINE: u64 = 1 << 5;

/// Size of [`VcpuGuestContext::fpu_ctxt`]: an FXSAVE area.
pub const FPU_CTXT_SIZE: usize = 512;

/// Index of the page-table base in [`VcpuGuestContext::ctrlreg`].
pub const CTRLREG_CR3: usize = 3;
/// Index of Xen's user page-table base in [`VcpuGuestContext::ctrlreg`]
/// (x86-64 PV); must be 0 under Xenia.
pub const CTRLREG_USER_CR3: usize = 1;

/// The CR3 value naming the page table in frame `pfn` (Xen's x86-64
/// `xen_pfn_to_cr3`): the frame's machine address. For a PV domain the
/// frame is a machine frame.
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << crate::types::PAGE_SHIFT
}

/// The frame a CR3 value names (Xen's x86-64 `xen_cr3_to_pfn`).
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> crate::types::PAGE_SHIFT
}

/// General-purpose and segment registers of a vCPU (Xen's x86-64 `struct
/// cpu_user_regs`, 200 bytes). Selectors are 16 bits with explicit padding.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[allow(missing_docs)] // The register names are the documentation.
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Xen-private: ignored.
    pub error_code: u32,
    /// Xen-private: ignored.
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u16,
    pub _pad0: u16,
    /// Xen: the event mask to restore (`rflags.IF == !saved_upcall_mask`).
    /// Ignored by Xenia's `setvcpucontext`: a new vCPU starts masked.
    pub saved_upcall_mask: u8,
    pub _pad1: [u8; 3],
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u16,
    pub _pad2: [u16; 3],
    pub es: u16,
    pub _pad3: [u16; 3],
    pub ds: u16,
    pub _pad4: [u16; 3],
    pub fs: u16,
    pub _pad5: [u16; 3],
    pub gs: u16,
    pub _pad6: [u16; 3],
}

/// A vCPU's complete context (Xen's x86-64 `struct vcpu_guest_context`, 5168
/// bytes). See the [module documentation](self) for what Xenia does with
/// each field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct VcpuGuestContext {
    /// FXSAVE image of the x87/SSE state. Ignored.
    pub fpu_ctxt: [u8; FPU_CTXT_SIZE],
    /// `VGCF_*`.
    pub flags: u64,
    /// The registers.
    pub user_regs: CpuUserRegs,
    /// The virtual IDT: entry *v* for vector *v*.
    pub trap_ctxt: [TrapInfo; 256],
    /// LDT linear address: must be 0.
    pub ldt_base: u64,
    /// LDT entries: must be 0.
    pub ldt_ents: u64,
    /// GDT machine frames: must be 0 (Xenia's GDT is fixed).
    pub gdt_frames: [u64; 16],
    /// GDT entries: must be 0.
    pub gdt_ents: u64,
    /// Ring-1 stack segment for entries from ring 3 (`KERNEL_SS`, or 0).
    pub kernel_ss: u64,
    /// Ring-1 stack pointer for entries from ring 3 (0: none yet).
    pub kernel_sp: u64,
    /// CR0 to CR7: only [`CTRLREG_CR3`] is used; [`CTRLREG_USER_CR3`] must
    /// be 0.
    pub ctrlreg: [u64; 8],
    /// DR0 to DR7: ignored.
    pub debugreg: [u64; 8],
    /// Event callback address (0: none).
    pub event_callback_eip: u64,
    /// Failsafe callback address (0: none).
    pub failsafe_callback_eip: u64,
    /// Syscall callback address (0: none).
    pub syscall_callback_eip: u64,
    /// Bitmap of `VMASST_TYPE_*` assists: must be 0.
    pub vm_assist: u64,
    /// FS base.
    pub fs_base: u64,
    /// Xen's kernel GS base: must be 0 (Xenia has one GS base).
    pub gs_base_kernel: u64,
    /// The GS base ([`SEGBASE_GS_USER`](crate::selectors::SEGBASE_GS_USER)).
    pub gs_base_user: u64,
}

impl VcpuGuestContext {
    /// An all-zero context: the starting point for a builder.
    pub const fn new() -> Self {
        Self {
            fpu_ctxt: [0; FPU_CTXT_SIZE],
            flags: 0,
            user_regs: CpuUserRegs {
                r15: 0,
                r14: 0,
                r13: 0,
                r12: 0,
                rbp: 0,
                rbx: 0,
                r11: 0,
                r10: 0,
                r9: 0,
                r8: 0,
                rax: 0,
                rcx: 0,
                rdx: 0,
                rsi: 0,
                rdi: 0,
                error_code: 0,
                entry_vector: 0,
                rip: 0,
                cs: 0,
                _pad0: 0,
                saved_upcall_mask: 0,
                _pad1: [0; 3],
                rflags: 0,
                rsp: 0,
                ss: 0,
                _pad2: [0; 3],
                es: 0,
                _pad3: [0; 3],
                ds: 0,
                _pad4: [0; 3],
                fs: 0,
                _pad5: [0; 3],
                gs: 0,
                _pad6: [0; 3],
            },
            trap_ctxt: [TrapInfo::END; 256],
            ldt_base: 0,
            ldt_ents: 0,
            gdt_frames: [0; 16],
            gdt_ents: 0,
            kernel_ss: 0,
            kernel_sp: 0,
            ctrlreg: [0; 8],
            debugreg: [0; 8],
            event_callback_eip: 0,
            failsafe_callback_eip: 0,
            syscall_callback_eip: 0,
            vm_assist: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
        }
    }

    /// The machine frame of the L4 page table in `ctrlreg[3]`.
    pub const fn l4_mfn(&self) -> crate::types::Mfn {
        crate::types::Mfn(xen_cr3_to_pfn(self.ctrlreg[CTRLREG_CR3]))
    }

    /// Sets `ctrlreg[3]` to the L4 page table in machine frame `mfn`.
    pub fn set_l4_mfn(&mut self, mfn: crate::types::Mfn) {
        self.ctrlreg[CTRLREG_CR3] = xen_pfn_to_cr3(mfn.0);
    }
}

impl Default for VcpuGuestContext {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Mfn;

    #[test]
    fn flags_match_xen() {
        assert_eq!(VGCF_I387_VALID, 1);
        assert_eq!(VGCF_IN_KERNEL, 4);
        assert_eq!(VGCF_FAILSAFE_DISABLES_EVENTS, 8);
        assert_eq!(VGCF_SYSCALL_DISABLES_EVENTS, 16);
        assert_eq!(VGCF_ONLINE, 32);
        assert_eq!(crate::trap::VGCF_IN_SYSCALL, 256);
    }

    #[test]
    fn cpu_user_regs_layout_matches_xen() {
        assert_layout!(CpuUserRegs, 200, 8, {
            r15: 0,
            r14: 8,
            r13: 16,
            r12: 24,
            rbp: 32,
            rbx: 40,
            r11: 48,
            r10: 56,
            r9: 64,
            r8: 72,
            rax: 80,
            rcx: 88,
            rdx: 96,
            rsi: 104,
            rdi: 112,
            error_code: 120,
            entry_vector: 124,
            rip: 128,
            cs: 136,
            saved_upcall_mask: 140,
            rflags: 144,
            rsp: 152,
            ss: 160,
            es: 168,
            ds: 176,
            fs: 184,
            gs: 192,
        });
    }

    #[test]
    fn vcpu_guest_context_layout_matches_xen() {
        assert_layout!(VcpuGuestContext, 5168, 8, {
            fpu_ctxt: 0,
            flags: 512,
            user_regs: 520,
            trap_ctxt: 720,
            ldt_base: 4816,
            ldt_ents: 4824,
            gdt_frames: 4832,
            gdt_ents: 4960,
            kernel_ss: 4968,
            kernel_sp: 4976,
            ctrlreg: 4984,
            debugreg: 5048,
            event_callback_eip: 5112,
            failsafe_callback_eip: 5120,
            syscall_callback_eip: 5128,
            vm_assist: 5136,
            fs_base: 5144,
            gs_base_kernel: 5152,
            gs_base_user: 5160,
        });
    }

    #[test]
    fn cr3_format() {
        assert_eq!(xen_pfn_to_cr3(0x1234), 0x123_4000);
        assert_eq!(xen_cr3_to_pfn(0x123_4000), 0x1234);
        let mut c = VcpuGuestContext::default();
        assert_eq!(c, VcpuGuestContext::new());
        c.set_l4_mfn(Mfn(0xABCDE));
        assert_eq!(c.ctrlreg[3], 0xABCD_E000);
        assert_eq!(c.l4_mfn(), Mfn(0xABCDE));
    }
}
