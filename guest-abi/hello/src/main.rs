//! # hello: the example Xenia guest kernel
//!
//! The smallest complete paravirtual kernel for Xenia, and the one to copy when you start a
//! port. The guest runtime (`xenia-guest-rt`) gives it the image, `_start`, the trap table,
//! the event callback and the console; this file is what a kernel does with them, in order:
//! say hello from ring 1, handle a trap, take ten ticks of a periodic timer, run code in
//! ring 3 that makes system calls, and power off. With `interactive` on the command line it
//! echoes typed lines until `poweroff` first. Comments cite the porting guide in the
//! `guest_abi` crate docs by section.
//!
//! ```text
//! cargo build --release -p xenia-hello --target x86_64-unknown-none
//! # grub.cfg:  multiboot2 /boot/xenia.elf   module2 /boot/hello.elf some command line
//! ```
//!
//! Each line it prints gets a `(d0) ` prefix from the hypervisor. On the build host (`cargo
//! test --workspace`) it is an empty program.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_abi::event::{VIRQ_CONSOLE, VIRQ_TIMER};
    use guest_abi::{calls, sched::ShutdownReason, trap::BREAKPOINT};
    use xenia_guest_rt::trap::{self, Regs};
    use xenia_guest_rt::{boot, check, console, events, println, probe, time, user};

    /// Period of the timer ("Time"), and how many ticks to take.
    const TICK_MS: u64 = 100;
    const TICK_NS: u64 = TICK_MS * time::NS_PER_MS;
    const TICKS_WANTED: u32 = 10;
    /// hello's system calls from ring 3 (`rax`); the kernel decides what they are.
    const SYS_EXIT: u64 = 0;
    const SYS_HELLO: u64 = 1;

    // Ring-3 code, copied into the user-accessible padding by `user::load` ("Ring 3"): two
    // system calls through SYSCALL, the second one ending the run.
    core::arch::global_asm!(
        ".globl hello_user, hello_user_end",
        "hello_user:",
        "    mov eax, {hello}",
        "    mov edi, 41",
        "    syscall",
        "    mov rdi, rax",
        "    mov eax, {exit}",
        "    syscall",
        "hello_user_end:",
        hello = const SYS_HELLO,
        exit = const SYS_EXIT,
    );
    unsafe extern "C" {
        static hello_user: u8;
        static hello_user_end: u8;
    }

    /// Called by the runtime once the trap table and the event callback are in place, with
    /// events masked ("Entry state").
    pub fn main() -> ! {
        // An exception nobody expects is then reported without a test's result line.
        trap::set_not_a_test();
        let cpl = trap::current_cs() & 3;
        println!("hello from a Xenia guest: running in ring {cpl} (CPL {cpl})");
        let cmdline = core::str::from_utf8(boot::start_info().cmdline_bytes()).unwrap_or("?");
        println!("command line: \"{cmdline}\"");

        // A trap ("Exceptions"): int3 goes to the runtime's handler, which records it and
        // resumes after the instruction because `probe!` said it was expected.
        // SAFETY: int3 only raises #BP, which the armed handler records and returns from.
        let p = unsafe { probe!(BREAKPOINT, "int3") };
        if let Some(e) = p.caught {
            println!("trap handled: int3 (#BP) at {:#x}, resumed", e.regs.rip);
        }

        // Timer events ("Events", "Time"): bind VIRQ_TIMER, start a periodic timer, and
        // sleep in SCHEDOP_block; the event callback counts the port's events.
        let port = events::bind_virq(VIRQ_TIMER).expect("binding VIRQ_TIMER");
        let start = time::now_ns();
        calls::vcpu_set_periodic_timer(0, TICK_NS).expect("starting the timer");
        println!("VIRQ_TIMER bound to event channel {port}; one tick every {TICK_MS} ms");
        let mut printed = 0;
        while printed < TICKS_WANTED {
            events::block_until(None);
            while printed < events::count(port).min(TICKS_WANTED) {
                printed += 1;
                let ms = (time::now_ns() - start) / time::NS_PER_MS;
                println!("tick {printed} ({ms} ms)");
            }
        }
        let _ = calls::vcpu_stop_periodic_timer(0);

        // Ring 3 ("Ring 3"): SYSCALL enters the kernel through the syscall callback.
        trap::register_syscall(true).expect("registering the syscall callback");
        trap::set_syscall_handler(Some(syscall));
        let blob = user::Blob::new(&raw const hello_user, &raw const hello_user_end);
        let exit = user::run(user::load(&blob), 0, 0);
        println!("ring 3 exited with {}", exit.entry.regs.rdi);

        if cmdline.split(' ').any(|w| w == "interactive") {
            echo_console();
        }
        println!("goodbye from the Xenia guest: powering off");
        check::shutdown(ShutdownReason::Poweroff)
    }

    /// hello's system calls: `SYS_HELLO` returns `rdi + 1`; `SYS_EXIT` ends the ring-3 run.
    fn syscall(regs: &mut Regs) -> bool {
        if regs.rax != SYS_HELLO {
            return false;
        }
        println!("ring 3 says hello through SYSCALL (rdi {})", regs.rdi);
        regs.rax = regs.rdi + 1;
        true
    }

    /// Echoes typed lines ("Consoles": dom0 reads the serial line with console_io; a
    /// VIRQ_CONSOLE event says input came) until `poweroff`.
    fn echo_console() {
        events::bind_virq(VIRQ_CONSOLE).expect("binding VIRQ_CONSOLE");
        println!("type a line and press Enter; `poweroff` ends the demo");
        let (mut line, mut len, mut buf) = ([0u8; 80], 0, [0u8; 64]);
        loop {
            // Events are masked: input that arrives after this read leaves its event
            // pending, and block_until (unmask and sleep in one step) returns at once.
            let n = console::read(&mut buf);
            for &b in &buf[..n] {
                match b {
                    b'\r' | b'\n' if &line[..len] == b"poweroff" => return,
                    b'\r' | b'\n' => {
                        println!("you typed: {}", core::str::from_utf8(&line[..len]).unwrap());
                        len = 0;
                    }
                    0x08 | 0x7f => len = len.saturating_sub(1),
                    0x20..=0x7e if len < line.len() => (line[len], len) = (b, len + 1),
                    _ => {}
                }
            }
            if n == 0 {
                events::block_until(None);
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
