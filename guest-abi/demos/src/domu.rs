//! What both demos do before their own work (included by each as module `domu`): the
//! runtime's start-up (`xenia-guest-rt`) plus what a domU adds, the console ring.

use guest_abi::event::{VIRQ_CONSOLE, VIRQ_TIMER};
use guest_abi::sched::ShutdownReason;
use guest_abi::start_info::{SIF_INITDOMAIN, StartInfo};
use xenia_demos::cmdline::{self, ConsoleChoice};
use xenia_guest_rt::console::{self, NoRing};
use xenia_guest_rt::{boot, check, events, println, trap};

/// Sets the demo up and returns its `start_info`. Events stay masked, except while asleep
/// in `events::block_until` (so the event callback never interrupts the demo).
pub fn start() -> &'static StartInfo {
    // A demo is not a test: an unexpected exception is reported without a result line.
    trap::set_not_a_test();
    let si = boot::start_info();
    // The timer VIRQ wakes `events::block_until` at its deadline (the console ring waits
    // for the backend with it).
    if events::bind_virq(VIRQ_TIMER).is_err() {
        println!("binding VIRQ_TIMER failed");
        check::shutdown(ShutdownReason::Crash);
    }
    let choice = cmdline::console_choice(si.cmdline_bytes());
    if si.flags & SIF_INITDOMAIN != 0 {
        // dom0 reads the serial line through console_io; VIRQ_CONSOLE says input came.
        let _ = events::bind_virq(VIRQ_CONSOLE);
    } else if choice != Ok(Some(ConsoleChoice::Hypervisor))
        && console::use_ring(si) == Err(NoRing::Disagrees)
    {
        println!("start_info.console and the device page disagree; using console_io");
    }
    if let Err(word) = choice {
        let word = core::str::from_utf8(word).unwrap_or("?");
        println!("unknown console={word} ignored (ring or hypervisor)");
    }
    si
}
