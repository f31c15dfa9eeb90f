//! The kernel's own way to the hypervisor: `dom0_tools::xen::Xen` (the same calls xl makes
//! through privcmd, host-tested there) over direct hypercalls.

use dom0_tools::xen::{Raw, Xen};
use guest_abi::Errno;
use guest_abi::hypercall::hypercall5;

/// Hypercalls made by the kernel itself.
pub struct Direct;

impl Raw for Direct {
    fn hypercall(&mut self, op: u64, arg: [u64; 5]) -> Result<u64, Errno> {
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
