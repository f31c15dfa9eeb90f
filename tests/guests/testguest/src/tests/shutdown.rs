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

use guest_abi::calls;
use guest_abi::hypercall::HYPERVISOR_SET_TRAP_TABLE;
use guest_abi::sched::ShutdownReason;
use xenia_guest_rt::check::{Ret, TestResult, error, report};
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
