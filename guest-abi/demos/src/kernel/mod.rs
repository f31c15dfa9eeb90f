//! The demos' bare-metal runtime: everything a small PV domU needs before it can do
//! anything useful, shared by `echo` and `compute` (each includes this directory as its
//! module `kernel`, so each kernel image holds all of it).
//!
//! It follows the porting guide in the `guest_abi` crate docs, whose sections the comments
//! cite, and `guest-abi/hello`, the example to read first. What it adds to `hello` is what a
//! domU needs that dom0 does not: the **console ring** shared with dom0's console backend
//! (`guest_abi::console::XenconsInterface`, found through `start_info.console` and the
//! device page) instead of the hypervisor's `console_io`.
//!
//! - [`image`]: ELF notes, hypercall page, boot stack, `_start`.
//! - [`console`]: `println!` over the console ring (or `console_io`), and reading input.
//! - [`events`]: the event callback, masking, blocking with a deadline.
//! - [`traps`]: exception handlers (report and crash).
//! - [`time`]: system time from the TSC.
//!
//! **Standing assumptions.** One vCPU. The kernel runs with events masked ("interrupts
//! off") at all times except inside [`events::block_until`], which unmasks and sleeps in one
//! hypercall; so the event callback never interrupts kernel code, and checking a condition
//! then blocking cannot miss the event that would change it. The bootstrap mappings the
//! builder made (start_info, shared_info, console ring, device page) are kept for the
//! domain's lifetime: the demos never change their page tables.

// Each demo uses most, not all, of the runtime (only `echo` reads input).
#![allow(dead_code)]

pub mod console;
pub mod events;
pub mod image;
pub mod time;
pub mod traps;

use core::sync::atomic::{AtomicPtr, Ordering};

use guest_abi::calls;
use guest_abi::event::VIRQ_TIMER;
use guest_abi::sched::ShutdownReason;
use guest_abi::shared_info::SharedInfo;
use guest_abi::start_info::StartInfo;

/// Where the kernel is linked (linker.ld) and what the `VIRT_BASE` note says: pseudo-physical
/// address 0 is mapped here. PML4 slot 511, the usual home of a higher-half kernel.
pub const VIRT_BASE: u64 = 0xFFFF_FFFF_8000_0000;

/// The shared_info page. Set once in `kernel_entry`, before anything that reads it can run.
static SHARED_INFO: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());

/// The shared_info page ("Start-of-day memory": mapped by the builder right after
/// start_info).
pub fn shared_info() -> &'static SharedInfo {
    let p = SHARED_INFO.load(Ordering::Acquire);
    assert!(!p.is_null(), "shared_info used before it was set");
    // SAFETY: p is where the builder mapped shared_info read-write for the domain's lifetime
    // (see kernel_entry); every bit pattern is a valid SharedInfo (all atomics).
    unsafe { &*p }
}

/// Called by `_start` on the big stack with the start_info page the builder gave in `rsi`.
/// Sets up traps, events, the timer VIRQ and the console, then runs the demo.
extern "C" fn kernel_entry(si: &'static StartInfo) -> ! {
    if !si.magic_is_valid() {
        // No console is known yet; the hypervisor's log is the only place to say it.
        let _ = calls::console_write(b"start_info has a bad magic: not started by Xenia?\n");
        shut_down(ShutdownReason::Crash);
    }
    let si_va = si as *const StartInfo as u64;
    SHARED_INFO.store(
        StartInfo::shared_info_va(si_va) as *mut SharedInfo,
        Ordering::Release,
    );
    traps::install();
    events::register_callback();
    // The timer VIRQ wakes `events::block_until` at its deadline (`set_timer_op` raises it).
    if calls::evtchn_bind_virq(VIRQ_TIMER, 0).is_err() {
        let _ = calls::console_write(b"binding VIRQ_TIMER failed\n");
        shut_down(ShutdownReason::Crash);
    }
    console::init(si, si_va);
    crate::demo_main(si)
}

/// Powers off, reboots or crashes the domain ("Shutting down"). Does not return.
pub fn shut_down(reason: ShutdownReason) -> ! {
    let _ = calls::sched_shutdown(reason);
    // Only reached if the hypervisor refused: sleep rather than spin (with events masked and
    // no timer this blocks until some event arrives, then again).
    loop {
        let _ = calls::sched_block();
        events::mask();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::println!("panic: {info}");
    console::flush(console::FLUSH_TIMEOUT_NS);
    shut_down(ShutdownReason::Crash)
}
