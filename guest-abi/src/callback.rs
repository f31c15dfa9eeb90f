//! Callbacks: guest entry points the hypervisor enters for events and system
//! calls (`callback_op`).
//!
//! A guest registers each entry point with
//! `callback_op(CALLBACKOP_REGISTER, &CallbackRegister)`. Every callback is
//! entered in ring 1 with a hardware-format frame
//! ([`TrapFrame`](crate::trap::TrapFrame), no error code) on the kernel stack,
//! chosen as for exceptions (see [`trap`](crate::trap)), and with every
//! general-purpose register as it was when the guest was interrupted.
//!
//! * [`CALLBACKTYPE_EVENT`]: the event upcall, Xenia's equivalent of an
//!   external interrupt. Entered when `evtchn_upcall_pending` is set and
//!   `evtchn_upcall_mask` is clear, on the next return to the guest (a vCPU
//!   running on another pCPU is interrupted so that this happens promptly).
//!   The hypervisor sets `evtchn_upcall_mask` on entry.
//! * [`CALLBACKTYPE_SYSCALL`]: `SYSCALL` executed in ring 3. The frame holds
//!   the user `rip` (the return address), `cs` = `USER_CS`, `rflags`,
//!   `rsp` and `ss` = `USER_SS`; `rcx` and `r11` hold what `SYSCALL` put in
//!   them (return address and `rflags`), as natively. The kernel returns with
//!   `iretq` or the `iret` hypercall; ring 1 cannot execute `SYSRET`. With
//!   [`CALLBACKF_MASK_EVENTS`] the hypervisor masks events on entry, as
//!   setting `IF` in the `SFMASK` MSR would natively.
//! * [`CALLBACKTYPE_FAILSAFE`]: accepted for compatibility and never entered:
//!   where Xen would enter it (state that cannot be restored on return to
//!   the guest), Xenia crashes the domain.
//! * [`CALLBACKTYPE_NMI`]: accepted for compatibility and never entered:
//!   Xenia does not deliver NMIs to guests.
//!
//! Other types fail with `EINVAL`.

/// The event upcall.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// Entered when the hypervisor cannot restore guest state (Xen); see the
/// module documentation.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// `SYSCALL` from ring 3 (64-bit programs).
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Obsolete number of the `SYSENTER` callback (Xen).
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// NMI notification (Xen).
pub const CALLBACKTYPE_NMI: u16 = 4;
/// `SYSENTER` from 32-bit programs (Xen).
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// `SYSCALL` from 32-bit programs (Xen).
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// Flag of [`CallbackRegister::flags`]: mask events on entry. Ignored for the
/// event and NMI callbacks, which always mask.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// `callback_op` command: register an entry point ([`CallbackRegister`]).
pub const CALLBACKOP_REGISTER: u32 = 0;
/// `callback_op` command: unregister one ([`CallbackUnregister`]). As in
/// Xen, only the NMI callback can be unregistered; other types fail with
/// `EINVAL`.
pub const CALLBACKOP_UNREGISTER: u32 = 1;

/// Argument of `CALLBACKOP_REGISTER` (Xen's `struct callback_register`,
/// 16 bytes). Written by the guest; copied by the hypervisor.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub callback_type: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Virtual address of the entry point, in `KERNEL_CS`.
    pub address: u64,
}

/// Argument of `CALLBACKOP_UNREGISTER` (Xen's `struct callback_unregister`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct CallbackUnregister {
    /// `CALLBACKTYPE_*`.
    pub callback_type: u16,
    /// Must be zero.
    pub unused: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        assert_eq!(CALLBACKTYPE_EVENT, 0);
        assert_eq!(CALLBACKTYPE_FAILSAFE, 1);
        assert_eq!(CALLBACKTYPE_SYSCALL, 2);
        assert_eq!(CALLBACKTYPE_SYSENTER_DEPRECATED, 3);
        assert_eq!(CALLBACKTYPE_NMI, 4);
        assert_eq!(CALLBACKTYPE_SYSENTER, 5);
        assert_eq!(CALLBACKTYPE_SYSCALL32, 7);
        assert_eq!(CALLBACKF_MASK_EVENTS, 1);
        assert_eq!((CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER), (0, 1));
    }

    #[test]
    fn layouts() {
        assert_layout!(CallbackRegister, 16, 8, { callback_type: 0, flags: 2, address: 8 });
        assert_layout!(CallbackUnregister, 4, 2, { callback_type: 0, unused: 2 });
    }
}
