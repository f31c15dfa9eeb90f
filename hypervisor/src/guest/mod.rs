//! Running guests: what happens when a guest traps into the hypervisor.

use crate::arch::x86_64::trap::TrapFrame;

/// A trap from a guest: hypercall, exception, interrupt or SYSCALL.
pub fn trap(frame: &mut TrapFrame) {
    // No guest runs yet: anything arriving here is a hypervisor bug.
    panic!(
        "trap from a guest (vector {:#x}) but no guest is running",
        frame.vector
    );
}
