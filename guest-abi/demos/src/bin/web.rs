//! # web: a demo domU that serves HTTP over its virtual network interface
//!
//! A demo guest of Xenia's default image (`/boot/web.elf`, started by
//! `xl create /etc/xen/web.cfg`). Its interface `vif<domid>.0` is served by dom0's netback
//! and joined to `xenbr0`, dom0's bridge to the machine's network card; the runtime's
//! `netfront` connects to it through xenstore and `smoltcp` runs TCP/IP on it. It:
//!
//! - takes an address by DHCP (on `cargo xtask run`'s QEMU user network the first domU to
//!   ask gets 10.0.2.20, reachable from the host as `http://127.0.0.1:8080/`);
//! - serves a small page on port 80 with the domain's name, its uptime and a request
//!   counter;
//! - answers ping;
//! - runs the discard (TCP 9) and character generator (TCP 19) services, for throughput
//!   measurements.
//!
//! With `ping=<address>` on its command line (`extra=` in the configuration) it also pings
//! that address every second and prints each reply with the number of frames it received
//! that were for another unicast address (a bridge delivers none).
//!
//! With `push=<address>` it connects once to that address's discard service (TCP 9), sends
//! `push_bytes=` bytes (8 MiB by default) and prints `web: pushed <n> bytes to <address> in
//! <t> us`: domU-to-domU throughput across the bridge.
//!
//! With `stats=1` it prints netfront's and the services' counters every 5 s while they
//! change.
//!
//! Console lines (tests wait for them): `web: netfront up, mac 00:16:3e:..`,
//! `web: address 10.0.2.20/24`, `web: serving http on port 80`, `web: request <n>`,
//! `web: ping reply from <address> seq <n> in <t> us (foreign frames: <n>)`.
//! The services are `xenia_demos::web`, unit-tested on the host.
//!
//! On the build host (`cargo test --workspace`) this is an empty program.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
#[path = "../domu.rs"]
mod domu;

#[cfg(target_os = "none")]
mod kernel {
    use smoltcp::time::Instant;
    use xenia_demos::web::{Adapter, Buffers, HTTP_PORT, Link, Web};
    use xenia_guest_rt::netfront::{NetFront, probe};
    use xenia_guest_rt::time::{NS_PER_MS, now_ns, rdtsc};
    use xenia_guest_rt::xenbus::Xenbus;
    use xenia_guest_rt::{check, println};

    /// How often `stats=1` prints the counters.
    const STATS_EVERY_NS: u64 = 5_000 * NS_PER_MS;
    /// Bytes a `push=` sends unless `push_bytes=` says otherwise.
    const PUSH_BYTES: u64 = 8 << 20;

    /// netfront as the services' link.
    struct Vif(NetFront);

    impl Link for Vif {
        fn can_send(&mut self) -> bool {
            self.0.can_send()
        }
        fn send(&mut self, frame: &[u8]) -> bool {
            // The backend is told once per poll (`wait` flushes), not once per frame.
            self.0.queue(frame).is_ok()
        }
        fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
            self.0.recv(buf)
        }
    }

    fn instant() -> Instant {
        Instant::from_micros((now_ns() / 1000) as i64)
    }

    fn give_up(why: core::fmt::Arguments<'_>) -> ! {
        println!("web: {why}; nothing to do");
        check::shutdown(guest_abi::sched::ShutdownReason::Poweroff)
    }

    /// The demo, with events masked.
    pub fn main() -> ! {
        let si = super::domu::start();
        // `ping=<address>`: ping that address every second once the interface has one.
        let ping = xenia_demos::cmdline::value(si.cmdline_bytes(), "ping")
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<core::net::Ipv4Addr>().ok());
        let mut bus = match Xenbus::connect() {
            Ok(b) => b,
            Err(e) => give_up(format_args!("no xenstore ({e:?})")),
        };
        let mut name = [0u8; 64];
        let n = bus.read("name", &mut name).unwrap_or(0).min(name.len());
        let name = core::str::from_utf8(&name[..n]).unwrap_or("web");
        let mut ids = [0u32; 4];
        if probe(&mut bus, &mut ids) == 0 {
            give_up(format_args!(
                "no network interface (add vif = [ 'bridge=xenbr0' ] to the configuration)"
            ));
        }
        let nic = match NetFront::connect(&mut bus, ids[0]) {
            Ok(n) => n,
            Err(e) => give_up(format_args!("vif {} did not connect ({e:?})", ids[0])),
        };
        let mac = nic.mac();
        println!(
            "web: netfront up, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
        );
        let mut dev = Adapter::new(Vif(nic), mac);
        let mut bufs = Buffers::default();
        let mut web = Web::new(&mut bufs, &mut dev, mac, name, None, rdtsc(), instant());
        web.set_clock(instant);
        if let Some(target) = ping {
            web.ping(target);
        }
        // `push=<address>`: send `push_bytes=` (8 MiB by default) to that address's discard
        // service once, and say how long it took.
        let value = |key| {
            xenia_demos::cmdline::value(si.cmdline_bytes(), key)
                .and_then(|v| core::str::from_utf8(v).ok())
        };
        let push = value("push").and_then(|v| v.parse::<core::net::Ipv4Addr>().ok());
        if let Some(target) = push {
            let bytes = value("push_bytes")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(PUSH_BYTES);
            web.push(target, bytes);
        }
        // `stats=1`: the frontend's and the TCP services' counters every 5 s while they move.
        let stats = xenia_demos::cmdline::value(si.cmdline_bytes(), "stats") == Some(b"1");
        let mut next_stats = now_ns() + STATS_EVERY_NS;
        let mut last = dev.link.0.stats();
        let mut serving = false;
        loop {
            let now = instant();
            let ev = web.poll(now, &mut dev);
            if let Some(a) = ev.configured {
                println!("web: address {a}");
                if !serving {
                    println!("web: serving http on port {HTTP_PORT}");
                    serving = true;
                }
            }
            if let (Some((seq, us)), Some(target)) = (ev.pong, ping) {
                println!(
                    "web: ping reply from {target} seq {seq} in {us} us (foreign frames: {})",
                    dev.foreign
                );
            }
            match (ev.pushed, push) {
                (Some((Some(bytes), us)), Some(target)) => println!(
                    "web: pushed {bytes} bytes to {target} in {us} us ({} MB/s)",
                    bytes / (us.max(1) as u64)
                ),
                (Some((None, us)), Some(target)) => {
                    println!("web: push to {target} failed after {us} us")
                }
                _ => {}
            }
            if ev.deconfigured {
                println!("web: address lost");
            }
            for k in 0..ev.answered {
                println!(
                    "web: request {}",
                    web.requests - u64::from(ev.answered - 1 - k)
                );
            }
            if stats && now_ns() >= next_stats {
                next_stats = now_ns() + STATS_EVERY_NS;
                let s = dev.link.0.stats();
                if s != last {
                    last = s;
                    println!(
                        "web: stats: tx {} (errors {}), rx {} (dropped {}), bad responses {}, \
                         link refused {}, foreign {}, discarded {} bytes, events {}, upcalls {}",
                        s.tx_frames,
                        s.tx_errors,
                        s.rx_frames,
                        s.rx_dropped,
                        s.bad,
                        dev.tx_dropped,
                        dev.foreign,
                        web.discarded,
                        xenia_guest_rt::events::count(dev.link.0.port()),
                        xenia_guest_rt::events::upcalls()
                    );
                }
            }
            // Sleep until smoltcp has something to do, a frame arrives or a second passes.
            // No delay after a full poll means frames wait for room in the transmit ring:
            // a transmit completion (an event) or a millisecond ends that sleep.
            let delay_ns = web
                .poll_delay(now)
                .map_or(1000 * NS_PER_MS, |d| d.total_micros() * 1000)
                .clamp(NS_PER_MS, 1000 * NS_PER_MS);
            dev.link.0.wait(now_ns() + delay_ns);
        }
    }
}

#[cfg(target_os = "none")]
use kernel::main;
#[cfg(target_os = "none")]
xenia_guest_rt::entry!(main, boot_stack = 2048 * 1024);

#[cfg(not(target_os = "none"))]
fn main() {}
