//! The shutdown tests: the domain ends the way it asks, or the way a fault it cannot take
//! forces.
//!
//! - `shutdown_poweroff`, `shutdown_reboot`, `shutdown_crash`: print
//!   `about to shut down: <reason>` and call `SCHEDOP_shutdown` with that reason. The scenario
//!   checks the hypervisor's `domain 0 shut down: <reason>` line and QEMU's exit status (33,
//!   39, 37). If the call returns, the test prints `Test result: FAILURE`.
//! - `unhandled_fault`: clears the trap table (a null table pointer), prints
//!   `about to fault with no trap table: reading <addr>`, and reads an unmapped address. The
//!   hypervisor must crash the domain, logging the vector (14) and `rip` (exit status 37). If
//!   the read returns, the test prints `Test result: FAILURE`.
//! - `hypercall_at_canonical_end`: maps the last page of the lower canonical half, puts an
//!   `int 0x82` (`xen_version(XENVER_version)`, a call answered before any lock) in its last
//!   two bytes and runs it, so that the saved return address is the first non-canonical one.
//!   The hypervisor must not `iretq` to it (on Intel CPUs that is a #GP in ring 0, on the
//!   exit path): it crashes the domain, `cannot return to the guest` (exit status 37). If the
//!   guest runs on, the test prints `Test result: FAILURE`.
//! - `syscall_stack_on_page_table`: pins a fresh frame as an (empty) L1, maps it read-only,
//!   points the ring-1 stack for entries from ring 3 at its top (`stack_switch` checks only
//!   the range) and makes a `SYSCALL` from ring 3. The bounce must not write its frame there:
//!   the hypervisor crashes the domain, `cannot write an exception frame` (exit status 37),
//!   on the way answered without a lock (`guest::fast::light_syscall`) as on the ordinary
//!   one. If the callback runs, or the SYSCALL comes back, the test prints
//!   `Test result: FAILURE`.

use guest_abi::calls;
use guest_abi::hypercall::{HYPERVISOR_SET_TRAP_TABLE, HYPERVISOR_XEN_VERSION};
use guest_abi::sched::ShutdownReason;
use guest_abi::version::XENVER_VERSION;
use xenia_guest_rt::check::{Ret, TestResult, error, report};
use xenia_guest_rt::mm::{self, pte, pte::entry};
use xenia_guest_rt::{console, println};

use super::{UNMAPPED, raw};

fn shut_down(reason: ShutdownReason) -> ! {
    println!("about to shut down: {}", reason.name());
    console::flush();
    let ret = calls::sched_shutdown(reason);
    println!(
        "SCHEDOP_shutdown({}) returned {}",
        reason.name(),
        Ret::from_result(ret)
    );
    report(TestResult::Failure)
}

pub fn poweroff() -> ! {
    shut_down(ShutdownReason::Poweroff)
}

pub fn reboot() -> ! {
    shut_down(ShutdownReason::Reboot)
}

pub fn crash() -> ! {
    shut_down(ShutdownReason::Crash)
}

pub fn unhandled_fault() -> ! {
    // SAFETY: a null table pointer clears the trap table (guest-abi `trap`); from here on any
    // exception ends the domain, which is the point.
    let ret = unsafe { raw::call(HYPERVISOR_SET_TRAP_TABLE, [0; 5]) };
    if ret != 0 {
        error(format_args!(
            "set_trap_table(NULL) returned {}: cannot clear the trap table",
            Ret(ret)
        ));
    }
    let rip: u64;
    // SAFETY: computes an address, reads nothing.
    unsafe { core::arch::asm!("lea {0}, [rip + 2f]", "2:", out(reg) rip, options(nomem, nostack)) };
    println!(
        "about to fault with no trap table: reading {UNMAPPED:#x} near rip {rip:#x}; \
         the hypervisor must crash the domain"
    );
    console::flush();
    // SAFETY: the address is unmapped; the read faults and, with no handler, the hypervisor
    // crashes the domain. Nothing is read.
    let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    println!("the read of unmapped {UNMAPPED:#x} returned {value:#x}: the domain was not crashed");
    report(TestResult::Failure)
}

/// The last page of the lower canonical half, and the last two bytes of it.
const LAST_LOWER_PAGE: u64 = 0x7FFF_FFFF_F000;
const LAST_TWO_BYTES: u64 = 0x7FFF_FFFF_FFFE;

pub fn hypercall_at_canonical_end() -> ! {
    let Some((_, mfn)) = mm::fresh_frame() else {
        error(format_args!(
            "no fresh frame to map at {LAST_LOWER_PAGE:#x}"
        ))
    };
    // SAFETY: the page is outside everything Rust code uses.
    if let Err((step, ret)) =
        unsafe { mm::map_page(LAST_LOWER_PAGE, entry(mfn, pte::PRESENT | pte::RW)) }
    {
        error(format_args!(
            "mapping {LAST_LOWER_PAGE:#x}: {step}: {}",
            Ret(ret)
        ))
    }
    // SAFETY: the page was just mapped writable (and executable) for this test.
    unsafe { core::ptr::write_volatile(LAST_TWO_BYTES as *mut [u8; 2], [0xCD, 0x82]) };
    println!(
        "about to make xen_version(XENVER_version) with int 0x82 at {LAST_TWO_BYTES:#x}: \
         the hypervisor must crash the domain rather than return to the non-canonical \
         {:#x}",
        LAST_TWO_BYTES + 2
    );
    console::flush();
    // SAFETY: the call lands on `int 0x82` followed by the end of the canonical half; there
    // is no way back here, which is the point (the domain is crashed).
    unsafe {
        core::arch::asm!(
            "call {target}",
            target = in(reg) LAST_TWO_BYTES,
            in("rax") HYPERVISOR_XEN_VERSION,
            in("rdi") u64::from(XENVER_VERSION),
            clobber_abi("C"),
        )
    };
    println!("the hypercall at {LAST_TWO_BYTES:#x} came back: the domain was not crashed");
    report(TestResult::Failure)
}

pub fn syscall_stack_on_page_table() -> ! {
    use guest_abi::selectors::KERNEL_SS;
    use xenia_guest_rt::mm::Window;
    use xenia_guest_rt::trap::register_syscall;
    use xenia_guest_rt::user;

    let Some((_, mfn)) = mm::fresh_frame() else {
        error(format_args!("no fresh frame to make a page table of"))
    };
    // SAFETY: a fresh frame, used by nothing; an all-zero frame is a valid, empty L1.
    if let Err(ret) = unsafe { mm::fill_frame(mfn, |_| {}) } {
        error(format_args!("zeroing frame {mfn:#x}: {}", Ret(ret)))
    }
    // SAFETY: the frame is empty and mapped nowhere; pinning it changes no mapping.
    let ret = unsafe { mm::pin(1, mfn) };
    if ret != 0 {
        error(format_args!(
            "pinning frame {mfn:#x} as an L1: {}",
            Ret(ret)
        ))
    }
    // SAFETY: slot 0 is this test's alone; a page table may be mapped read-only.
    let window = match unsafe { Window::read_only(0, mfn) } {
        Ok(w) => w,
        Err(ret) => error(format_args!(
            "mapping the L1 {mfn:#x} read-only: {}",
            Ret(ret)
        )),
    };
    let top = window.va() + guest_abi::types::PAGE_SIZE as u64;
    if let Err(e) = register_syscall(true) {
        error(format_args!(
            "registering the syscall callback: {}",
            e.name()
        ))
    }
    let prog = crate::ring3::syscall();
    let base = user::load(&prog.blob);
    // SAFETY: from here on an entry from ring 3 finds no usable stack, which is the point:
    // the next one is the SYSCALL below, which must end the domain.
    if let Err(e) = unsafe { calls::stack_switch(KERNEL_SS, top) } {
        error(format_args!(
            "stack_switch to {top:#x}: {} (it checks only the range)",
            e.name()
        ))
    }
    println!(
        "about to SYSCALL from ring 3 with the kernel stack at {top:#x}, the top of the L1 \
         {mfn:#x} mapped read-only: the hypervisor must crash the domain rather than write \
         the frame there"
    );
    console::flush();
    let exit = user::run(base, user::data(), 0);
    println!(
        "the ring-3 program came back ({:?}): the SYSCALL's frame was written on a page table",
        exit.kind
    );
    report(TestResult::Failure)
}
