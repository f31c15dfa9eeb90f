//! # kv: a demo domU that keeps a key-value store on its disk
//!
//! A demo guest of Xenia's default image (`/boot/kv.elf`, started by
//! `xl create /etc/xen/kv.cfg`). Its disk `xvda` is a virtual block device served by dom0's
//! blkback; the runtime's `blkfront` connects to it through xenstore. Attach with
//! `xl console kv` and type:
//!
//! ```text
//! put colour dark blue
//! kv: ok
//! get colour
//! kv: colour = dark blue
//! list
//! kv: colour
//! kv: 1 key
//! del colour
//! kv: deleted colour
//! ```
//!
//! Every `put` and `del` writes one sector and flushes before it answers, so what it
//! answered survives the domain: destroy it, create it again, and `get` finds the value.
//! The format on disk and the command parser are `xenia_demos::kv`, unit-tested on the host.
//!
//! On the build host (`cargo test --workspace`) this is an empty program.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
#[path = "../domu.rs"]
mod domu;

#[cfg(target_os = "none")]
use xenia_demos::kv::{self, Command, SLOT_BYTES, SLOTS};
#[cfg(target_os = "none")]
use xenia_demos::line::{Edit, LineEditor};
#[cfg(target_os = "none")]
use xenia_guest_rt::blkfront::{Blkfront, probe};
#[cfg(target_os = "none")]
use xenia_guest_rt::xenbus::Xenbus;
#[cfg(target_os = "none")]
use xenia_guest_rt::{console, events, println};

#[cfg(target_os = "none")]
xenia_guest_rt::entry!(main);

#[cfg(target_os = "none")]
fn str(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap_or("?")
}

/// The slot holding `key`, and the first empty one.
#[cfg(target_os = "none")]
fn find(disk: &mut Blkfront, key: &[u8]) -> Result<(Option<u64>, Option<u64>), ()> {
    let mut found = None;
    let mut empty = None;
    let mut s = [0u8; SLOT_BYTES];
    for i in 0..SLOTS {
        disk.read(kv::slot_sector(i), &mut s).map_err(|_| ())?;
        match kv::decode(&s) {
            Some((k, _)) if k == key => {
                found = Some(i);
                break;
            }
            None if empty.is_none() => empty = Some(i),
            _ => {}
        }
    }
    Ok((found, empty))
}

#[cfg(target_os = "none")]
fn run(disk: &mut Blkfront, line: &[u8]) {
    let mut s = [0u8; SLOT_BYTES];
    match kv::parse(line) {
        Command::Help => println!("kv: commands: put <key> <value>, get <key>, del <key>, list"),
        Command::Unknown => println!("kv: unknown command (try help)"),
        Command::Put(k, v) => {
            let slot = match kv::encode(k, v) {
                Ok(slot) => slot,
                Err(e) => return println!("kv: cannot store that ({e:?})"),
            };
            let Ok((found, empty)) = find(disk, k) else {
                return println!("kv: disk error");
            };
            let Some(i) = found.or(empty) else {
                return println!("kv: full ({SLOTS} keys)");
            };
            match disk
                .write(kv::slot_sector(i), &slot)
                .and_then(|()| disk.flush())
            {
                Ok(()) => println!("kv: ok"),
                Err(e) => println!("kv: disk error ({e:?})"),
            }
        }
        Command::Get(k) => match find(disk, k) {
            Ok((Some(i), _)) => {
                let _ = disk.read(kv::slot_sector(i), &mut s);
                if let Some((k, v)) = kv::decode(&s) {
                    println!("kv: {} = {}", str(k), str(v));
                }
            }
            Ok((None, _)) => println!("kv: no such key: {}", str(k)),
            Err(()) => println!("kv: disk error"),
        },
        Command::Del(k) => match find(disk, k) {
            Ok((Some(i), _)) => {
                let zero = [0u8; SLOT_BYTES];
                match disk
                    .write(kv::slot_sector(i), &zero)
                    .and_then(|()| disk.flush())
                {
                    Ok(()) => println!("kv: deleted {}", str(k)),
                    Err(e) => println!("kv: disk error ({e:?})"),
                }
            }
            Ok((None, _)) => println!("kv: no such key: {}", str(k)),
            Err(()) => println!("kv: disk error"),
        },
        Command::List => {
            let mut n = 0;
            for i in 0..SLOTS {
                if disk.read(kv::slot_sector(i), &mut s).is_err() {
                    return println!("kv: disk error");
                }
                if let Some((k, _)) = kv::decode(&s) {
                    println!("kv: {}", str(k));
                    n += 1;
                }
            }
            println!("kv: {n} key{}", if n == 1 { "" } else { "s" });
        }
    }
}

/// The demo, with events masked.
#[cfg(target_os = "none")]
fn main() -> ! {
    domu::start();
    let mut bus = match Xenbus::connect() {
        Ok(b) => b,
        Err(e) => {
            println!("kv: no xenstore ({e:?}); nothing to do");
            xenia_guest_rt::check::shutdown(guest_abi::sched::ShutdownReason::Poweroff)
        }
    };
    let mut ids = [0u32; 4];
    if probe(&mut bus, &mut ids) == 0 {
        println!("kv: no disk (add disk = [ '...vdev=xvda...' ] to the configuration)");
        xenia_guest_rt::check::shutdown(guest_abi::sched::ShutdownReason::Poweroff)
    }
    let mut disk = match Blkfront::connect(&mut bus, ids[0]) {
        Ok(d) => d,
        Err(e) => {
            println!("kv: the disk did not connect ({e:?})");
            xenia_guest_rt::check::shutdown(guest_abi::sched::ShutdownReason::Poweroff)
        }
    };
    println!(
        "kv: ready: {} sectors on device {}{}; type help",
        disk.sectors(),
        disk.devid(),
        if disk.read_only() { ", read-only" } else { "" }
    );
    let terminal = console::ring_port().is_some();
    let mut editor = LineEditor::new();
    let mut buf = [0u8; 64];
    loop {
        let n = console::read(&mut buf);
        if n == 0 {
            events::block_until(None);
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
                    let mut line = [0u8; 512];
                    let n = text.len().min(line.len());
                    line[..n].copy_from_slice(&text[..n]);
                    run(&mut disk, &line[..n]);
                }
            }
        }
    }
}

/// On the build host this is an empty program.
#[cfg(not(target_os = "none"))]
fn main() {}
