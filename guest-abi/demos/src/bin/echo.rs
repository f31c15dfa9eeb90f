//! # echo: a demo domU that says back what you type
//!
//! One of the two demo guests of Xenia's default image (`/boot/echo.elf` in dom0's initrd,
//! started by `xl create /etc/xen/hello.cfg` or `/etc/xen/echo.cfg`). Attach to its console
//! with `xl console <name>`, type a line, and it answers:
//!
//! ```text
//! echo: type a line and I will say it back
//! hello there
//! echo: hello there
//! ```
//!
//! Typed characters are echoed as they arrive (backspace erases), and every line ending in
//! CR or LF is answered with `echo: <line>`. It runs until the domain is destroyed.
//!
//! It is a complete PV domU kernel and a good one to copy: the runtime (`xenia-guest-rt`)
//! boots, installs traps and the event callback, and drives the **console ring** shared
//! with dom0's console backend (`src/domu.rs` switches to it); this file is the demo
//! proper. It sleeps in `SCHEDOP_block` whenever there is no input, so an idle
//! echo costs no CPU. The line editing is `xenia_demos::line`, unit-tested on the host.
//!
//! **vCPUs.** With `vcpus=N` in its configuration, echo brings up vCPUs 1 to N−1 (they
//! idle) and follows `xl vcpu-set`: the runtime's `hotplug`
//! handler watches xenstore's `cpu/<n>/availability` and takes vCPUs down or up, and echo
//! says so on its console (`echo: vCPU 2 down`).
//!
//! Command line: `console=hypervisor` writes to the hypervisor's log (`console_io`)
//! instead of the ring; a domU cannot read that way, so echo then only prints its banner.
//! Booted as dom0 (the first module after the hypervisor) it reads and writes the serial
//! line through `console_io`, which is how `cargo xtask test` can run it without a backend.
//!
//! On the build host (`cargo test --workspace`) this is an empty program.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
#[path = "../domu.rs"]
mod domu;

#[cfg(target_os = "none")]
use guest_abi::start_info::SIF_INITDOMAIN;
#[cfg(target_os = "none")]
use xenia_demos::line::{Edit, LineEditor};
#[cfg(target_os = "none")]
use xenia_guest_rt::hotplug::{self, Change, Hotplug};
#[cfg(target_os = "none")]
use xenia_guest_rt::xenbus::Xenbus;
#[cfg(target_os = "none")]
use xenia_guest_rt::{console, events, println, smp};

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(main);

/// The demo, with events masked.
#[cfg(target_os = "none")]
fn main() -> ! {
    let si = domu::start();
    println!("echo: type a line and I will say it back");
    // Echoing each character is for a terminal attached to the ring (`xl console`); the
    // hypervisor console is line-based and shows only whole lines.
    let terminal = console::ring_port().is_some();
    if !terminal && si.flags & SIF_INITDOMAIN == 0 {
        println!("echo: this console cannot be read (console_io is write-only for a domU)");
    }
    for v in 1..smp::vcpus_at_start() {
        if let Err(e) = smp::start(v, hotplug::idle) {
            println!("echo: vCPU {v} did not start ({e:?})");
        }
    }
    // vCPU hot-plug needs the store; a domain built without one runs without it.
    let mut hotplug =
        Xenbus::connect()
            .ok()
            .and_then(|bus| match Hotplug::new(bus, hotplug::idle) {
                Ok(h) => Some(h),
                Err(e) => {
                    println!("echo: no vCPU hot-plug (xenstore watch refused: {e:?})");
                    None
                }
            });
    let mut editor = LineEditor::new();
    let mut buf = [0u8; 64];
    loop {
        let mut more = false;
        if let Some(h) = hotplug.as_mut() {
            more = h.poll(|c| match c {
                Change::Down(v) => println!("echo: vCPU {v} down"),
                Change::Up(v) => println!("echo: vCPU {v} up"),
                Change::Late(v) => println!("echo: vCPU {v} did not stop in time"),
                Change::Failed(v, e) => println!("echo: vCPU {v}: {e:?}"),
            });
        }
        // Events are masked: input that arrives after this read leaves its event pending,
        // and block_until returns at once instead of sleeping through it.
        let n = console::read(&mut buf);
        if n == 0 {
            if !more {
                events::block_until(None);
            }
            continue;
        }
        for &byte in &buf[..n] {
            match editor.feed(byte) {
                Edit::Nothing => {}
                Edit::Echo(c) if terminal => console::write_raw(&[c]),
                Edit::Erase if terminal => console::write_raw(b"\x08 \x08"),
                Edit::Echo(_) | Edit::Erase => {}
                Edit::Line(text) => {
                    if terminal {
                        console::write_raw(b"\r\n");
                    }
                    // LineEditor keeps printable ASCII only, so this is always UTF-8.
                    let text = core::str::from_utf8(text).unwrap_or("?");
                    println!("echo: {text}");
                }
            }
        }
    }
}

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
