//! The kernel's own way to the hypervisor: `dom0_tools::xen::Xen` (the same calls xl makes
//! through privcmd, host-tested there) over direct hypercalls.

use dom0_tools::xen::{Raw, Xen};
use guest_abi::Errno;
use guest_abi::hypercall::hypercall5;

/// Hypercalls made by the kernel itself.
pub struct Direct;

impl Raw for Direct {
    fn hypercall(&mut self, op: u64, arg: [u64; 5]) -> Result<u64, Errno> {
        if op == guest_abi::hypercall::HYPERVISOR_DOMCTL && arg[0] != 0 {
            // SAFETY: `Xen` passes the address of its `XenDomctl` (kernel memory, live and
            // unchanged across the call): its first word is `cmd`, bytes 8..10 `domain`.
            let (cmd, dom) = unsafe {
                let p = arg[0] as *const u8;
                (
                    (p as *const u32).read_unaligned(),
                    (p.add(8) as *const u16).read_unaligned(),
                )
            };
            // The hypervisor revokes dom0's mappings of a destroyed domain's grants: the
            // kernel unmaps them first.
            if cmd == guest_abi::domctl::XEN_DOMCTL_DESTROYDOMAIN {
                crate::grantmap::before_destroy(dom);
            }
        }
        // SAFETY: `Xen` makes control, memory, MMU-extension and event-channel calls on
        // other domains (domctl, sysctl, populate, pin, alloc_unbound), whose pointers name
        // kernel memory that lives across the call (its own locals and vectors); none of
        // them changes the kernel's own mappings.
        Errno::decode_result(unsafe { hypercall5(op, arg[0], arg[1], arg[2], arg[3], arg[4]) })
    }
}

/// A handle on the hypervisor.
pub fn xen() -> Xen<Direct> {
    Xen::new(Direct)
}
