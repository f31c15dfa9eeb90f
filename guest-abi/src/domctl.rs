//! Domain-control command numbers (`domctl`), as constants only.
//!
//! `domctl` is the toolstack's interface for creating and managing domains;
//! only a privileged domain (dom0) may issue it. Xenia numbers its commands as
//! Xen does (`xen/include/public/domctl.h`) so that tools keep their
//! vocabulary; the argument structures are defined with the toolstack and
//! are not Xen-compatible in general.

/// Create a domain.
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// Destroy a domain.
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// Pause a domain.
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// Unpause a domain.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// Get information about a domain.
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// Set a vCPU's pCPU affinity.
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// Shadow paging control.
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
/// Set a domain's memory limit.
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// Set a vCPU's register context.
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// Get a vCPU's register context.
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// Get information about a vCPU.
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// Set the number of vCPUs.
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// Scheduler parameters (weight, cap).
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// Set the domain's handle (UUID).
pub const XEN_DOMCTL_SETDOMAINHANDLE: u32 = 17;
/// Enable or disable debugging.
pub const XEN_DOMCTL_SETDEBUGGING: u32 = 18;
/// Grant or revoke an IRQ.
pub const XEN_DOMCTL_IRQ_PERMISSION: u32 = 19;
/// Grant or revoke an MMIO range.
pub const XEN_DOMCTL_IOMEM_PERMISSION: u32 = 20;
/// Grant or revoke an I/O-port range.
pub const XEN_DOMCTL_IOPORT_PERMISSION: u32 = 21;
/// Fill a domain's hypercall page.
pub const XEN_DOMCTL_HYPERCALL_INIT: u32 = 22;
/// Continuation of a soft reset.
pub const XEN_DOMCTL_SOFT_RESET_CONT: u32 = 23;
/// Set the wall-clock offset.
pub const XEN_DOMCTL_SETTIMEOFFSET: u32 = 24;
/// Get a vCPU's pCPU affinity.
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;
/// Resume a suspended domain.
pub const XEN_DOMCTL_RESUMEDOMAIN: u32 = 27;
/// Send a virtual trigger (NMI, reset, …).
pub const XEN_DOMCTL_SENDTRIGGER: u32 = 28;
/// Subscribe to a domain's state changes.
pub const XEN_DOMCTL_SUBSCRIBE: u32 = 29;
/// Set a paravirtual domain's address size.
pub const XEN_DOMCTL_SET_ADDRESS_SIZE: u32 = 35;
/// Get a paravirtual domain's address size.
pub const XEN_DOMCTL_GET_ADDRESS_SIZE: u32 = 36;
/// Set the target domain of a device-model domain.
pub const XEN_DOMCTL_SET_TARGET: u32 = 46;
/// Get the types of a list of frames.
pub const XEN_DOMCTL_GETPAGEFRAMEINFO3: u32 = 61;
/// Route a global VIRQ to another domain.
pub const XEN_DOMCTL_SET_VIRQ_HANDLER: u32 = 66;
/// Soft reset.
pub const XEN_DOMCTL_SOFT_RESET: u32 = 79;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let xen = [
            (XEN_DOMCTL_CREATEDOMAIN, 1),
            (XEN_DOMCTL_DESTROYDOMAIN, 2),
            (XEN_DOMCTL_PAUSEDOMAIN, 3),
            (XEN_DOMCTL_UNPAUSEDOMAIN, 4),
            (XEN_DOMCTL_GETDOMAININFO, 5),
            (XEN_DOMCTL_SETVCPUAFFINITY, 9),
            (XEN_DOMCTL_SHADOW_OP, 10),
            (XEN_DOMCTL_MAX_MEM, 11),
            (XEN_DOMCTL_SETVCPUCONTEXT, 12),
            (XEN_DOMCTL_GETVCPUCONTEXT, 13),
            (XEN_DOMCTL_GETVCPUINFO, 14),
            (XEN_DOMCTL_MAX_VCPUS, 15),
            (XEN_DOMCTL_SCHEDULER_OP, 16),
            (XEN_DOMCTL_SETDOMAINHANDLE, 17),
            (XEN_DOMCTL_SETDEBUGGING, 18),
            (XEN_DOMCTL_IRQ_PERMISSION, 19),
            (XEN_DOMCTL_IOMEM_PERMISSION, 20),
            (XEN_DOMCTL_IOPORT_PERMISSION, 21),
            (XEN_DOMCTL_HYPERCALL_INIT, 22),
            (XEN_DOMCTL_SOFT_RESET_CONT, 23),
            (XEN_DOMCTL_SETTIMEOFFSET, 24),
            (XEN_DOMCTL_GETVCPUAFFINITY, 25),
            (XEN_DOMCTL_RESUMEDOMAIN, 27),
            (XEN_DOMCTL_SENDTRIGGER, 28),
            (XEN_DOMCTL_SUBSCRIBE, 29),
            (XEN_DOMCTL_SET_ADDRESS_SIZE, 35),
            (XEN_DOMCTL_GET_ADDRESS_SIZE, 36),
            (XEN_DOMCTL_SET_TARGET, 46),
            (XEN_DOMCTL_GETPAGEFRAMEINFO3, 61),
            (XEN_DOMCTL_SET_VIRQ_HANDLER, 66),
            (XEN_DOMCTL_SOFT_RESET, 79),
        ];
        for (ours, theirs) in xen {
            assert_eq!(ours, theirs);
        }
    }
}
