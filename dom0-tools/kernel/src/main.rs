//! # dom0: the kernel of Xenia's management domain
//!
//! A paravirtual kernel (ring 1) that runs the toolstack: static Linux programs built for
//! `x86_64-unknown-linux-musl` — first of all `xl` — from its initrd, in ring 3, each in an
//! address space of its own, with the Linux system calls they use (DESIGN.md §7). It serves
//! them the devices a toolstack needs (`/dev/xen/privcmd`, `/dev/xen/evtchn`,
//! `/dev/xen/xenbus` for xenstore, and
//! `/dev/xen/xenia` for what a daemon would keep on Xen: domain names, console backends,
//! shutdown actions) and offers a small shell on the serial console.
//!
//! **Boot.** GRUB's first module is this kernel, the second its initrd (a cpio newc archive,
//! handed over by the hypervisor in `start_info.mod_start`/`mod_len`). The kernel takes the
//! frames past its bootstrap mappings as the pool processes are made from (`frames`),
//! binds the VIRQs it waits for (`wait`) and starts the shell.
//!
//! **Command line.** `trace=syscalls` logs every system call of every program (number,
//! first three arguments, result), for porting programs to dom0. `virtio_net=poll` polls the
//! network card instead of taking its interrupt; `ip=A.B.C.D/N,gw=E.F.G.H` sets dom0's
//! address on the bridge `xenbr0` (default `10.0.2.15/24` via `10.0.2.2`).
//!
//! **The shell** (`init`): prompt `dom0# `, line editing (backspace, Ctrl-U, Ctrl-C), words
//! split as a POSIX shell would for quotes; `help` lists the programs in `/bin`;
//! `time <command>` reports how long the command took; `poweroff` and `reboot` shut dom0
//! down, and with it the machine (the hypervisor's rule); anything else runs `/bin/<word>`
//! (or the path given) with the words as arguments, and a non-zero exit status or a fault is
//! reported.
//!
//! **Parts** (modules of this binary, built for the bare-metal target only): `process`
//! (loading and running a program), `uspace` (its page tables), `sys` (system calls and
//! devices), `vdso` (the clocks in ring 3), `backend` (domU consoles and shutdown actions), `store` (xenstore on the
//! domains' rings and `/dev/xen/xenbus`), `term` (the terminal), `fs`
//! (the initrd), `direct` (hypercalls on other domains), `grantmap` (other domains' granted
//! pages mapped in the kernel, unmapped before any `destroydomain`), `virtio_net` (the network card,
//! port `eth0`), `bridge` (the learning bridge `xenbr0`), `netstack` (dom0's own address on
//! it, with `smoltcp`). What these decide with plain, safe Rust (the initrd format, files, program layout,
//! address-space areas, the shell's line editor) is this crate's library, `xenia_dom0`
//! (`src/lib.rs`), tested on the build host; the domain builder and the Xen handle are the
//! toolstack library, `dom0_tools`.
//!
//! It is built on `xenia-guest-rt` (guest-abi/rt: entry, trap table, event callback, ring-3
//! entry), the runtime every Xenia kernel starts on. On the build host this is an empty
//! program.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod backend;
#[cfg(target_os = "none")]
mod blkback;
#[cfg(target_os = "none")]
mod blockdev;
#[cfg(target_os = "none")]
mod blockfile;
#[cfg(target_os = "none")]
mod bridge;
#[cfg(target_os = "none")]
mod direct;
#[cfg(target_os = "none")]
mod dma;
#[cfg(target_os = "none")]
mod frames;
#[cfg(target_os = "none")]
mod fs;
#[cfg(target_os = "none")]
mod fscalls;
#[cfg(target_os = "none")]
mod grantmap;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod netback;
#[cfg(target_os = "none")]
mod netstack;
#[cfg(target_os = "none")]
mod pcibus;
#[cfg(target_os = "none")]
mod pipe;
#[cfg(target_os = "none")]
mod process;
#[cfg(target_os = "none")]
mod random;
#[cfg(target_os = "none")]
mod store;
#[cfg(target_os = "none")]
mod sys;
#[cfg(target_os = "none")]
#[macro_use]
mod term;
#[cfg(target_os = "none")]
mod uspace;
#[cfg(target_os = "none")]
mod vdso;
#[cfg(target_os = "none")]
mod virtio_blk;
#[cfg(target_os = "none")]
mod virtio_net;
#[cfg(target_os = "none")]
mod wait;
#[cfg(target_os = "none")]
mod xsclient;

#[cfg(target_os = "none")]
mod kernel {
    use alloc::string::String;
    use alloc::vec::Vec;

    use guest_abi::sched::ShutdownReason;
    use guest_abi::start_info::SIF_MOD_START_PFN;
    use xenia_dom0::shell::{self, Input, LineEditor, PROMPT};
    use xenia_guest_rt::boot::{VIRT_BASE, start_info};
    use xenia_guest_rt::trap;

    use crate::{backend, blkback, frames, fs, heap, netback, process, store, term, vdso, wait};

    /// Looks at everything that may have changed while dom0 was busy or blocked: terminal
    /// input and the domUs' backends.
    pub fn service() {
        crate::wait::servicing();
        term::pump();
        backend::service();
        store::service();
        blkback::service();
        net();
    }

    /// Rounds of the network's services per [`service`] at most while the bridge still holds
    /// frames or the card still delivers them (a port whose owner cannot take its frames now
    /// must not keep dom0 from blocking).
    const NET_ROUNDS: usize = 8;

    /// The bridge's ports, each popping what the bridge queued for it: the NIC and dom0's
    /// own stack; again while frames wait or the card gave some, within [`NET_ROUNDS`]; then
    /// the domUs' notifications.
    fn net() {
        for _ in 0..NET_ROUNDS {
            let got = crate::virtio_net::service();
            crate::netstack::service();
            netback::service();
            // Again while the card still delivers (frames came in while this round ran): the
            // domUs hear of them all at once, below.
            if !crate::bridge::busy() && got == 0 {
                break;
            }
        }
        // The domUs hear of their frames once the round is done (`netback::flush`).
        netback::flush();
    }

    /// dom0's network: the NIC (`virtio_net=poll` on the command line: no interrupts), the
    /// bridge `xenbr0` and dom0's own address on it (`ip=A.B.C.D/N,gw=E.F.G.H`; by default
    /// the plan's 10.0.2.15/24 via 10.0.2.2).
    fn network(cmdline: &[u8]) {
        if xenia_guest_rt::cmdline::value(cmdline, "virtio_net") == Some(b"poll") {
            crate::virtio_net::POLL.store(true, core::sync::atomic::Ordering::Relaxed);
        }
        if crate::dma::ready() {
            crate::virtio_net::init();
        }
        let config = match xenia_guest_rt::cmdline::value(cmdline, "ip") {
            None => xenia_dom0::netconf::DEFAULT,
            Some(text) => match core::str::from_utf8(text)
                .ok()
                .and_then(xenia_dom0::netconf::parse)
            {
                Some(c) => c,
                None => {
                    tprintln!(
                        "dom0: ip=: expected A.B.C.D/N or A.B.C.D/N,gw=E.F.G.H; using the default"
                    );
                    xenia_dom0::netconf::DEFAULT
                }
            },
        };
        crate::netstack::init(config);
    }

    /// PCI, the DMA pool and the virtio-blk disks, before any process runs (`virtio_blk=poll`
    /// on the command line: no interrupts; `dma=exchange`: the pool made by `XENMEM_exchange`
    /// even when dom0's frames are contiguous already; `dma=bounce`: every buffer outside the
    /// pool bounced).
    fn disks(cmdline: &[u8]) {
        crate::pcibus::init();
        if !crate::pcibus::functions()
            .iter()
            .any(|f| f.vendor == 0x1af4)
        {
            return;
        }
        let dma = xenia_guest_rt::cmdline::value(cmdline, "dma");
        let exchange = dma == Some(b"exchange");
        if dma == Some(b"bounce") {
            crate::dma::FORCE_BOUNCE.store(true, core::sync::atomic::Ordering::Relaxed);
        }
        match crate::dma::init(exchange) {
            Ok(crate::dma::Made::Contiguous(mfn)) => tprintln!(
                "dom0: DMA pool: {} KiB at machine {:#x} (machine-contiguous already)",
                crate::dma::POOL_PAGES * 4,
                mfn << 12
            ),
            Ok(crate::dma::Made::Exchanged(mfn)) => tprintln!(
                "dom0: DMA pool: {} KiB at machine {:#x} (made contiguous by XENMEM_exchange)",
                crate::dma::POOL_PAGES * 4,
                mfn << 12
            ),
            Err(why) => {
                tprintln!("dom0: no DMA pool ({why}); no disks");
                return;
            }
        }
        if xenia_guest_rt::cmdline::value(cmdline, "virtio_blk") == Some(b"poll") {
            crate::virtio_blk::POLL.store(true, core::sync::atomic::Ordering::Relaxed);
        }
        crate::virtio_blk::init();
        crate::blockfile::register_nodes();
    }

    /// The initrd GRUB loaded as the second module, if any.
    fn initrd() -> &'static [u8] {
        let si = start_info();
        if si.mod_len == 0 {
            return &[];
        }
        let start = if si.flags & SIF_MOD_START_PFN != 0 {
            VIRT_BASE + si.mod_start * 4096
        } else {
            si.mod_start
        };
        // SAFETY: the builder maps the module inside dom0's bootstrap region, read-write
        // and never remapped; nothing writes it afterwards.
        unsafe { core::slice::from_raw_parts(start as *const u8, si.mod_len as usize) }
    }

    fn fatal(what: &str) -> ! {
        tprintln!("dom0: {what}; stopping");
        xenia_guest_rt::check::shutdown(ShutdownReason::Crash)
    }

    pub fn main() -> ! {
        heap::init();
        trap::set_not_a_test();
        // Events stay unmasked while dom0's kernel serves a program's system call (the
        // callback only counts them), so that a program's ring 3 keeps them unmasked
        // through its calls and an event can interrupt it (Ctrl-C; `process::user_event`).
        if let Err(e) = trap::register_syscall(false) {
            fatal(&alloc::format!(
                "cannot register the system-call entry ({e:?})"
            ));
        }
        if let Err(e) = wait::init() {
            fatal(&alloc::format!("cannot bind its VIRQs ({e:?})"));
        }
        frames::init();
        vdso::init();
        process::init();
        let raw = &start_info().cmd_line;
        let cmdline = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        if xenia_guest_rt::cmdline::value(cmdline, "trace") == Some(b"syscalls") {
            crate::sys::TRACE.store(true, core::sync::atomic::Ordering::Relaxed);
            trap::set_syscall_handler(Some(crate::sys::traced));
            tprintln!("dom0: tracing every system call (trace=syscalls)");
        }
        disks(cmdline);
        network(cmdline);
        match fs::init(initrd()) {
            Ok(n) => tprintln!(
                "dom0: initrd with {n} entries, in a root in memory (tmpfs, {} KiB for changes)",
                fs::ROOT_BYTES / 1024
            ),
            Err(fs::InitError::Archive(e)) => tprintln!(
                "dom0: the initrd is not a cpio newc archive ({e}, {}); no programs",
                xenia_dom0::cpio::where_in(initrd(), &e)
            ),
            Err(fs::InitError::TooBig(e)) => tprintln!(
                "dom0: the initrd does not fit dom0's root ({} inodes, {} KiB of metadata; \
                 errno {}); no programs",
                fs::ROOT_INODES,
                fs::ROOT_BYTES / 1024,
                -e
            ),
        }
        let (free, _) = frames::counts();
        let builtin = xenia_guest_rt::cmdline::value(cmdline, "shell") == Some(b"builtin");
        if !builtin && fs::exists(CONSOLE_SHELL) {
            tprintln!(
                "dom0: {} MiB for programs; {CONSOLE_SHELL} (busybox ash) on the console, \
                 `xl list` to begin",
                free / 256
            );
            console_shell();
        } else {
            tprintln!(
                "dom0: {} MiB for programs; type `help` for the programs, `xl list` to begin",
                free / 256
            );
        }
        builtin_shell()
    }

    /// The console's shell when the initrd has one (Debian's busybox ash, as a login
    /// shell): started again whenever it ends, as a getty would; the built-in shell takes
    /// over if it cannot be run, or ends at once three times in a row.
    const CONSOLE_SHELL: &str = "/bin/sh";

    /// What the console shell starts with: `PS1` also comes from `/etc/profile`, which a
    /// user may edit.
    const CONSOLE_ENV: &[&[u8]] = &[
        b"PATH=/bin:/sbin:/usr/bin:/usr/sbin",
        b"HOME=/",
        b"TERM=vt100",
        b"SHELL=/bin/sh",
        b"USER=root",
        b"LOGNAME=root",
        b"PS1=dom0# ",
    ];

    fn console_shell() {
        let argv = [String::from("-sh")];
        let mut quick = 0;
        loop {
            let start = xenia_guest_rt::time::now_ns();
            match process::run(CONSOLE_SHELL, &argv, CONSOLE_ENV) {
                Ok(ended) => {
                    let why = shell::report("sh", ended)
                        .unwrap_or_else(|| String::from("sh: exited with status 0"));
                    let short = xenia_guest_rt::time::now_ns() - start < 1_000_000_000;
                    quick = if short { quick + 1 } else { 0 };
                    if quick == 3 {
                        tprintln!(
                            "dom0: the console shell ended three times at once ({why}); \
                             the built-in shell takes over"
                        );
                        return;
                    }
                    tprintln!("dom0: the console shell ended ({why}); starting it again");
                }
                Err(e) => {
                    tprintln!(
                        "dom0: cannot run {CONSOLE_SHELL} ({e}); the built-in shell takes over"
                    );
                    return;
                }
            }
        }
    }

    /// The kernel's own shell: one program per line, `help`, `poweroff`, `reboot`, `time`.
    fn builtin_shell() -> ! {
        let mut editor = LineEditor::new();
        loop {
            term::print(PROMPT);
            let Some(line) = read_line(&mut editor) else {
                continue;
            };
            run_line(&line);
        }
    }

    /// Reads a line with the editor; `None` if it was abandoned.
    fn read_line(editor: &mut LineEditor) -> Option<String> {
        let mut echo = Vec::new();
        loop {
            wait::until(u64::MAX, term::has_input);
            let mut b = [0u8; 1];
            while term::take(&mut b) == 1 {
                echo.clear();
                let input = editor.feed(b[0], &mut echo);
                term::write_raw(&echo);
                match input {
                    Input::Pending => {}
                    Input::Line(l) => return Some(l),
                    Input::Cancelled => return None,
                }
            }
        }
    }

    fn run_line(line: &str) {
        // `time <command>`: how long the program took, from load to exit, in system time
        // (QEMU's virtual time under `-icount`; `cargo xtask bench` reads it).
        if let Some(rest) = line.trim_start().strip_prefix("time ") {
            let start = xenia_guest_rt::time::now_ns();
            run_line(rest);
            let ns = xenia_guest_rt::time::now_ns() - start;
            tprintln!("time: {}.{:06} ms", ns / 1_000_000, ns % 1_000_000);
            return;
        }
        let words = match shell::split_args(line) {
            Ok(w) => w,
            Err(why) => {
                tprintln!("dom0: {why}");
                return;
            }
        };
        let Some(first) = words.first() else {
            return;
        };
        match first.as_str() {
            "poweroff" | "reboot" if words.len() == 1 => {
                let reason = if first == "poweroff" {
                    ShutdownReason::Poweroff
                } else {
                    ShutdownReason::Reboot
                };
                tprintln!("dom0: {first}");
                xenia_guest_rt::check::shutdown(reason)
            }
            _ => {}
        }
        // The network's listings, as the console shell's `/etc/profile` defines them.
        match (first.as_str(), words.get(1).map(String::as_str)) {
            ("brctl", None | Some("show")) => {
                term::print(&crate::bridge::brctl_show());
                return;
            }
            ("ip", Some("a" | "addr" | "address")) => {
                if let Some((_, addr)) = crate::netstack::proc_net()
                    .into_iter()
                    .find(|(n, _)| *n == "addr")
                {
                    term::print(&addr);
                }
                return;
            }
            _ => {}
        }
        if first == "help" {
            let programs = fs::programs();
            let programs: Vec<&str> = programs.iter().map(String::as_str).collect();
            term::print(&shell::help(&programs));
            return;
        }
        let path = if first.contains('/') {
            first.clone()
        } else {
            alloc::format!("/bin/{first}")
        };
        if !fs::exists(&path) {
            tprintln!("dom0: {first}: command not found (type `help` for the list)");
            return;
        }
        match process::run(&path, &words, process::ENV) {
            Ok(ended) => {
                if let Some(msg) = shell::report(first, ended) {
                    tprintln!("{msg}");
                }
            }
            Err(e) => tprintln!("dom0: {e}"),
        }
    }
}

#[cfg(target_os = "none")]
pub use kernel::service;

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(kernel::main);

/// On the build host there is no kernel to run.
#[cfg(not(target_os = "none"))]
fn main() {}
