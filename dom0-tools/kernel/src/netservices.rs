//! dom0's own IP endpoint, apart from where its frames go: a `smoltcp` interface with dom0's
//! address ([`crate::netconf`]), answering ping (smoltcp's echo replies), and two of the
//! standard TCP services for the throughput bench: **discard** (port 9, RFC 863: reads and
//! drops everything) and **chargen** (port 19, RFC 864: lines of characters until the peer
//! closes). The kernel's `netstack` gives it the bridge's port `xenbr0` as its device; the
//! host tests give it another smoltcp interface as its peer.
//!
//! **Bounds.** [`SOCKETS`] sockets a service, each with 64 KiB in the direction the service
//! moves bytes and 1 KiB in the other (260 KiB in all): at most four connections exist, a
//! fifth SYN gets a reset. A socket whose connection ended listens again, and chargen's next
//! connection starts the pattern from its beginning. A connection that moves no byte for
//! [`IDLE`] (a peer that connects and sends nothing, or never opens its window to chargen)
//! is reset, so that nobody on the network keeps the four connections for ever. ACKs are not delayed: the bench
//! measures the link, not smoltcp's delayed ACK against dom0's wake-ups.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use crate::netconf::IpConfig;

/// The discard service's port (RFC 863).
pub const DISCARD_PORT: u16 = 9;
/// The character generator's port (RFC 864).
pub const CHARGEN_PORT: u16 = 19;
/// Sockets per service.
pub const SOCKETS: usize = 2;
/// The buffer of the direction a service moves its bytes in (discard's receive, chargen's
/// send): 64 KiB, the largest window without scaling.
const BUFFER: usize = 64 << 10;
/// The other direction's buffer.
const IDLE_BUFFER: usize = 1 << 10;
/// A connection that moved no byte for this long is reset.
pub const IDLE: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);

/// What the services did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections the discard service accepted.
    pub discard_connections: u64,
    /// Bytes it dropped.
    pub discarded: u64,
    /// Connections the chargen service accepted.
    pub chargen_connections: u64,
    /// Bytes it queued for sending.
    pub generated: u64,
    /// Connections reset after [`IDLE`] without a byte moved.
    pub idle_resets: u64,
}

/// What a socket serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Discard,
    Chargen,
}

/// A served socket.
struct Served {
    handle: SocketHandle,
    service: Service,
    /// Chargen: the next byte's position in the pattern.
    pos: u64,
    /// Whether it had a connection at the last look.
    active: bool,
    /// When its connection last moved a byte (or began).
    last: Instant,
}

/// dom0's interface and its services.
pub struct Services {
    iface: Interface,
    sockets: SocketSet<'static>,
    served: Vec<Served>,
    config: IpConfig,
    counters: Counters,
}

/// Byte `pos` of RFC 864's pattern: lines of 72 printable characters, each starting one
/// character further along the 95 printable ones, ended by CR LF.
pub fn chargen_byte(pos: u64) -> u8 {
    let (line, col) = (pos / 74, pos % 74);
    match col {
        72 => b'\r',
        73 => b'\n',
        _ => b' ' + ((line + col) % 95) as u8,
    }
}

impl Services {
    /// The interface with MAC `mac` and `config`'s address and default route, on `device`,
    /// its services listening. `seed` seeds smoltcp's initial sequence numbers and ports.
    pub fn new(
        config: IpConfig,
        mac: [u8; 6],
        seed: u64,
        device: &mut impl Device,
        now: Instant,
    ) -> Services {
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, device, now);
        let [a, b, c, d] = config.addr;
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(
                Ipv4Address::new(a, b, c, d).into(),
                config.prefix,
            ));
        });
        if let Some([a, b, c, d]) = config.gateway {
            let _ = iface
                .routes_mut()
                .add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
        }
        let mut sockets = SocketSet::new(Vec::new());
        let mut served = Vec::new();
        for service in [Service::Discard, Service::Chargen] {
            for _ in 0..SOCKETS {
                let (rx, tx) = match service {
                    Service::Discard => (BUFFER, IDLE_BUFFER),
                    Service::Chargen => (IDLE_BUFFER, BUFFER),
                };
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; rx]),
                    tcp::SocketBuffer::new(vec![0; tx]),
                );
                s.set_ack_delay(None);
                served.push(Served {
                    handle: sockets.add(s),
                    service,
                    pos: 0,
                    active: false,
                    last: now,
                });
            }
        }
        let mut services = Services {
            iface,
            sockets,
            served,
            config,
            counters: Counters::default(),
        };
        services.serve(now);
        services
    }

    /// The address it was given.
    pub fn config(&self) -> IpConfig {
        self.config
    }

    /// What the services did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Takes what `device` received, serves the sockets, sends what they have; returns when
    /// smoltcp next wants to run without a frame arriving (a retransmission, a segment the
    /// window held back), if ever.
    pub fn poll(&mut self, now: Instant, device: &mut impl Device) -> Option<Instant> {
        self.iface.poll(now, device, &mut self.sockets);
        self.serve(now);
        self.iface.poll(now, device, &mut self.sockets);
        // A connection the last poll ended listens again now, not when the next frame comes.
        self.serve(now);
        // Woken when an idle connection is due to be reset, too.
        let idle = self
            .served
            .iter()
            .filter(|s| s.active)
            .map(|s| s.last + IDLE)
            .min();
        match (self.iface.poll_at(now, &self.sockets), idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts, reads and writes on the services' sockets; resets idle connections.
    fn serve(&mut self, now: Instant) {
        for served in &mut self.served {
            let s = self.sockets.get_mut::<tcp::Socket>(served.handle);
            let up = s.is_active();
            if up && !served.active {
                served.last = now;
                match served.service {
                    Service::Discard => self.counters.discard_connections += 1,
                    Service::Chargen => self.counters.chargen_connections += 1,
                }
            }
            served.active = up;
            if up && s.is_open() && now >= served.last + IDLE {
                // Nothing moved for too long: a reset, and the socket listens again below
                // at the next look.
                s.abort();
                served.active = false;
                self.counters.idle_resets += 1;
                continue;
            }
            if !s.is_open() {
                // The connection ended (or the socket is new): listen again.
                s.abort();
                served.pos = 0;
                let port = match served.service {
                    Service::Discard => DISCARD_PORT,
                    Service::Chargen => CHARGEN_PORT,
                };
                let _ = s.listen(port);
                continue;
            }
            // Whatever arrives is dropped (chargen ignores it too, as RFC 864 says).
            while s.can_recv() {
                match s.recv(|b| (b.len(), b.len())) {
                    Ok(n) if n > 0 => {
                        served.last = now;
                        if served.service == Service::Discard {
                            self.counters.discarded += n as u64;
                        }
                    }
                    _ => break,
                }
            }
            if served.service == Service::Chargen && s.can_send() {
                let pos = served.pos;
                if let Ok(n) = s.send(|b| {
                    for (k, byte) in b.iter_mut().enumerate() {
                        *byte = chargen_byte(pos + k as u64);
                    }
                    (b.len(), b.len())
                }) {
                    if n > 0 {
                        served.last = now;
                    }
                    served.pos += n as u64;
                    self.counters.generated += n as u64;
                }
            }
            // The peer closed its side: close ours (chargen stops sending).
            if s.state() == tcp::State::CloseWait {
                s.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use smoltcp::phy::{DeviceCapabilities, Medium, RxToken, TxToken};
    use smoltcp::socket::icmp;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};

    /// One end of a cable: what it receives is the other end's `out`.
    struct End {
        inbox: VecDeque<Vec<u8>>,
        out: Vec<Vec<u8>>,
    }

    struct Rx(Vec<u8>);
    struct Tx<'a>(&'a mut Vec<Vec<u8>>);

    impl RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    impl TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut b = vec![0; len];
            let r = f(&mut b);
            self.0.push(b);
            r
        }
    }

    impl Device for End {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;
        fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
            let f = self.inbox.pop_front()?;
            Some((Rx(f), Tx(&mut self.out)))
        }
        fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
            Some(Tx(&mut self.out))
        }
        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = 1514;
            caps
        }
    }

    fn end() -> End {
        End {
            inbox: VecDeque::new(),
            out: Vec::new(),
        }
    }

    const DOM0_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const PEER_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 1];

    /// dom0's services and a peer at 10.0.2.20 on one cable.
    struct Net {
        dom0: Services,
        dom0_end: End,
        peer: Interface,
        peer_end: End,
        sockets: SocketSet<'static>,
        now: Instant,
    }

    impl Net {
        fn new() -> Net {
            let mut dom0_end = end();
            let mut peer_end = end();
            let now = Instant::from_millis(1);
            let dom0 = Services::new(crate::netconf::DEFAULT, DOM0_MAC, 7, &mut dom0_end, now);
            let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(PEER_MAC)));
            cfg.random_seed = 9;
            let mut peer = Interface::new(cfg, &mut peer_end, now);
            peer.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(Ipv4Address::new(10, 0, 2, 20).into(), 24));
            });
            Net {
                dom0,
                dom0_end,
                peer,
                peer_end,
                sockets: SocketSet::new(Vec::new()),
                now,
            }
        }

        /// Moves frames both ways until nothing moves (bounded).
        fn pump(&mut self) {
            for _ in 0..10_000 {
                self.now += smoltcp::time::Duration::from_millis(1);
                self.dom0.poll(self.now, &mut self.dom0_end);
                self.peer
                    .poll(self.now, &mut self.peer_end, &mut self.sockets);
                let a: Vec<_> = self.dom0_end.out.drain(..).collect();
                let b: Vec<_> = self.peer_end.out.drain(..).collect();
                if a.is_empty() && b.is_empty() {
                    return;
                }
                self.peer_end.inbox.extend(a);
                self.dom0_end.inbox.extend(b);
            }
        }

        fn connect(&mut self, port: u16, local: u16) -> SocketHandle {
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 65536]),
                tcp::SocketBuffer::new(vec![0; 65536]),
            );
            let h = self.sockets.add(s);
            let cx = self.peer.context();
            self.sockets
                .get_mut::<tcp::Socket>(h)
                .connect(cx, (Ipv4Address::new(10, 0, 2, 15), port), local)
                .unwrap();
            h
        }
    }

    #[test]
    fn answers_ping() {
        let mut net = Net::new();
        let h = net.sockets.add(icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        ));
        net.sockets
            .get_mut::<icmp::Socket>(h)
            .bind(icmp::Endpoint::Ident(0x1234))
            .unwrap();
        let echo = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: b"xenia",
        };
        let dom0 = IpAddress::v4(10, 0, 2, 15);
        {
            let s = net.sockets.get_mut::<icmp::Socket>(h);
            let mut buf = s.send(echo.buffer_len(), dom0).unwrap();
            let mut pkt = Icmpv4Packet::new_unchecked(&mut buf);
            echo.emit(&mut pkt, &smoltcp::phy::ChecksumCapabilities::default());
        }
        // The first send waits for ARP; the pump resolves it and the request goes out.
        for _ in 0..3 {
            net.pump();
        }
        let s = net.sockets.get_mut::<icmp::Socket>(h);
        let (reply, from) = s.recv().expect("an echo reply");
        assert_eq!(from, dom0);
        let pkt = Icmpv4Packet::new_checked(reply).unwrap();
        let repr = Icmpv4Repr::parse(&pkt, &smoltcp::phy::ChecksumCapabilities::default());
        assert!(
            matches!(repr, Ok(Icmpv4Repr::EchoReply { ident: 0x1234, seq_no: 1, data }) if data == b"xenia")
        );
    }

    #[test]
    fn discard_takes_everything_and_listens_again() {
        let mut net = Net::new();
        for round in 1..=3u64 {
            let h = net.connect(DISCARD_PORT, 40000 + round as u16);
            net.pump();
            let mut left = 200_000usize;
            while left > 0 {
                let s = net.sockets.get_mut::<tcp::Socket>(h);
                if let Ok(n) = s.send(|b| {
                    let n = b.len().min(left);
                    b[..n].fill(0x5a);
                    (n, n)
                }) {
                    left -= n;
                }
                net.pump();
            }
            net.sockets.get_mut::<tcp::Socket>(h).close();
            net.pump();
            let s = net.sockets.get::<tcp::Socket>(h);
            // The service closed its side when ours closed.
            assert!(
                !s.is_open() || s.state() == tcp::State::TimeWait,
                "{}",
                s.state()
            );
            let c = net.dom0.counters();
            assert_eq!(c.discarded, 200_000 * round);
            assert_eq!(c.discard_connections, round);
            net.sockets.remove(h);
        }
    }

    #[test]
    fn chargen_sends_the_pattern_from_its_start_on_every_connection() {
        let mut net = Net::new();
        for round in 1..=2u16 {
            let h = net.connect(CHARGEN_PORT, 41000 + round);
            let mut got = Vec::new();
            while got.len() < 100_000 {
                net.pump();
                let s = net.sockets.get_mut::<tcp::Socket>(h);
                while let Ok(n) = s.recv(|b| {
                    got.extend_from_slice(b);
                    (b.len(), b.len())
                }) {
                    if n == 0 {
                        break;
                    }
                }
            }
            let want: Vec<u8> = (0..got.len() as u64).map(chargen_byte).collect();
            assert_eq!(got, want);
            assert_eq!(&got[..3], b" !\"");
            assert_eq!(&got[72..75], b"\r\n!");
            net.sockets.get_mut::<tcp::Socket>(h).abort();
            net.pump();
            net.sockets.remove(h);
        }
        assert_eq!(net.dom0.counters().chargen_connections, 2);
    }

    /// Red team: a peer that opens all four connections and then sends nothing (or never
    /// reads chargen's bytes) holds them only for [`IDLE`]: then they are reset and the
    /// services take new connections. Before the idle reset they were held for ever.
    #[test]
    fn idle_connections_are_reset() {
        let mut net = Net::new();
        let hogs: Vec<_> = (0..2)
            .flat_map(|i| {
                [
                    net.connect(DISCARD_PORT, 45000 + i),
                    net.connect(CHARGEN_PORT, 46000 + i),
                ]
            })
            .collect();
        net.pump();
        // The hogs never read: chargen fills their window and then moves nothing.
        for _ in 0..5 {
            net.pump();
        }
        let busy = net.connect(DISCARD_PORT, 47000);
        net.pump();
        assert!(
            !net.sockets.get::<tcp::Socket>(busy).is_open(),
            "refused while held"
        );
        net.sockets.remove(busy);
        // dom0 asks to be woken when the first idle deadline comes.
        let due = net
            .dom0
            .poll(net.now, &mut net.dom0_end)
            .expect("a wake-up for the idle deadline");
        assert!(due <= net.now + IDLE, "{due} after {}", net.now + IDLE);
        net.now += IDLE;
        net.pump();
        assert_eq!(net.dom0.counters().idle_resets, 4);
        // dom0 let them go (the hogs' ends may ignore a reset outside their window) and
        // takes four new connections.
        drop(hogs);
        let fresh: Vec<_> = (0..2)
            .flat_map(|i| {
                [
                    net.connect(DISCARD_PORT, 48000 + i),
                    net.connect(CHARGEN_PORT, 49000 + i),
                ]
            })
            .collect();
        net.pump();
        for h in fresh {
            assert_eq!(
                net.sockets.get::<tcp::Socket>(h).state(),
                tcp::State::Established
            );
        }
    }

    #[test]
    fn a_fifth_connection_is_refused_while_four_are_open() {
        let mut net = Net::new();
        let open: Vec<_> = (0..2)
            .flat_map(|i| {
                [
                    net.connect(DISCARD_PORT, 42000 + i),
                    net.connect(CHARGEN_PORT, 43000 + i),
                ]
            })
            .collect();
        net.pump();
        let extra = net.connect(DISCARD_PORT, 44000);
        net.pump();
        assert!(!net.sockets.get::<tcp::Socket>(extra).is_open(), "reset");
        for h in open {
            assert_eq!(
                net.sockets.get::<tcp::Socket>(h).state(),
                tcp::State::Established
            );
        }
    }
}
