//! # dom0: the kernel of Xenia's management domain
//!
//! (In progress.) A paravirtual kernel that runs static Linux/musl programs from its initrd in
//! ring 3 and serves them the devices a toolstack needs.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod heap;

#[cfg(target_os = "none")]
fn kernel_main() -> ! {
    heap::init();
    xenia_guest_rt::println!("dom0: starting");
    xenia_guest_rt::check::shutdown(guest_abi::sched::ShutdownReason::Poweroff)
}

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(kernel_main);

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
