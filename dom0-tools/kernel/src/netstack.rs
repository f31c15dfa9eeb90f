//! dom0's own address: a `smoltcp` interface that is the bridge's port `xenbr0` (Linux's
//! bridge device: it carries the NIC's MAC), with the address of [`xenia_dom0::netconf`]
//! (`10.0.2.15/24` via `10.0.2.2`, or dom0's `ip=A.B.C.D/N,gw=E.F.G.H`). It answers ping
//! (smoltcp's echo replies) and serves two of the standard TCP services, for the throughput
//! bench: **discard** (port 9, RFC 863: reads and drops everything) and **chargen** (port
//! 19, RFC 864: sends lines of characters until the peer closes). Each has [`SOCKETS`]
//! sockets, so that a new connection is taken while an old one closes; a socket whose
//! connection ended listens again.
//!
//! Frames move by the bridge's pull model: [`service`] pops what the bridge queued for
//! `xenbr0` (smoltcp's receive) and hands what smoltcp sends to [`crate::bridge::input`].

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};
use spin::Mutex;
use xenia_dom0::bridging::MAX_FRAME;
use xenia_dom0::netconf::{self, IpConfig};

use crate::bridge::{self, PortId};

/// The discard service's port (RFC 863).
pub const DISCARD_PORT: u16 = 9;
/// The character generator's port (RFC 864).
pub const CHARGEN_PORT: u16 = 19;
/// Sockets per service.
const SOCKETS: usize = 2;
/// The buffer of the direction a service moves its bytes in (discard's receive, chargen's
/// send): 64 KiB, the largest window without scaling.
const BUFFER: usize = 64 << 10;
/// The other direction's buffer.
const IDLE_BUFFER: usize = 1 << 10;
/// The MAC dom0's stack takes when there is no NIC to take it from (locally administered).
const NO_NIC_MAC: [u8; 6] = [0x02, 0x16, 0x3e, 0x00, 0x00, 0x00];

/// Bytes the discard service dropped, over all connections.
pub static DISCARDED: AtomicU64 = AtomicU64::new(0);
/// Bytes the chargen service sent.
pub static GENERATED: AtomicU64 = AtomicU64::new(0);
/// Connections each service accepted: discard, chargen.
pub static ACCEPTED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The bridge port as smoltcp's device.
struct Port(PortId);

struct Rx {
    buf: [u8; MAX_FRAME],
    len: usize,
}

struct Tx(PortId);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.buf[..self.len])
    }
}

impl TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = [0u8; MAX_FRAME];
        // smoltcp builds at most the MTU it was given (`capabilities`).
        let len = len.min(MAX_FRAME);
        let r = f(&mut buf[..len]);
        bridge::input(self.0, &buf[..len]);
        r
    }
}

impl Device for Port {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx)> {
        let mut rx = Rx {
            buf: [0; MAX_FRAME],
            len: 0,
        };
        rx.len = bridge::pop(self.0, &mut rx.buf)?;
        Some((rx, Tx(self.0)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx> {
        Some(Tx(self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }
}

/// What a socket serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Discard,
    Chargen,
}

struct Stack {
    iface: Interface,
    dev: Port,
    sockets: SocketSet<'static>,
    served: Vec<(SocketHandle, Service)>,
    /// Per chargen socket, the next byte's position in the pattern.
    chargen_pos: Vec<u64>,
    config: IpConfig,
}

static STACK: Mutex<Option<Stack>> = Mutex::new(None);

fn now() -> Instant {
    Instant::from_micros((xenia_guest_rt::time::now_ns() / 1000) as i64)
}

/// Byte `pos` of RFC 864's pattern: lines of 72 printable characters, each starting one
/// character further along the 95 printable ones, ended by CR LF.
fn chargen_byte(pos: u64) -> u8 {
    let (line, col) = (pos / 74, pos % 74);
    match col {
        72 => b'\r',
        73 => b'\n',
        _ => b' ' + ((line + col) % 95) as u8,
    }
}

impl Stack {
    /// Accepts, reads and writes on the services' sockets.
    fn serve(&mut self) {
        for (i, &(handle, service)) in self.served.iter().enumerate() {
            let s = self.sockets.get_mut::<tcp::Socket>(handle);
            if !s.is_open() {
                // The connection ended (or the socket is new): listen again; chargen's next
                // connection starts the pattern from its beginning.
                s.abort();
                self.chargen_pos[i] = 0;
                let port = match service {
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
                        if service == Service::Discard {
                            DISCARDED.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    _ => break,
                }
            }
            if service == Service::Chargen && s.can_send() {
                let pos = &mut self.chargen_pos[i];
                if let Ok(n) = s.send(|b| {
                    for (k, byte) in b.iter_mut().enumerate() {
                        *byte = chargen_byte(*pos + k as u64);
                    }
                    (b.len(), b.len())
                }) {
                    *pos += n as u64;
                    GENERATED.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            // The peer closed its side: close ours (chargen stops sending).
            if s.state() == tcp::State::CloseWait {
                s.close();
            }
        }
    }

    /// Counts connections that became established since the last look.
    fn count_accepts(&mut self, was: &mut [bool]) {
        for (i, &(handle, service)) in self.served.iter().enumerate() {
            let s = self.sockets.get::<tcp::Socket>(handle);
            let up = s.is_active();
            if up && !was[i] {
                ACCEPTED[service as usize].fetch_add(1, Ordering::Relaxed);
            }
            was[i] = up;
        }
    }
}

/// Whether each served socket had a connection at the last look.
static ACTIVE: Mutex<[bool; 2 * SOCKETS]> = Mutex::new([false; 2 * SOCKETS]);

/// Starts dom0's stack on the bridge's port `xenbr0` with `config`. Boot only, after the NIC
/// (whose MAC it takes).
pub fn init(config: IpConfig) {
    let Some(port) = bridge::attach(bridge::NAME) else {
        return;
    };
    let mac = crate::virtio_net::mac().unwrap_or(NO_NIC_MAC);
    if crate::virtio_net::mac().is_none() {
        bridge::set_mac(mac);
    }
    let mut dev = Port(port);
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let mut seed = [0u8; 8];
    crate::random::fill(&mut seed);
    cfg.random_seed = u64::from_le_bytes(seed);
    let mut iface = Interface::new(cfg, &mut dev, now());
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
            // The direction a service does not use gets a token buffer: discard never sends,
            // and chargen drops what it reads.
            let (rx, tx) = match service {
                Service::Discard => (BUFFER, IDLE_BUFFER),
                Service::Chargen => (IDLE_BUFFER, BUFFER),
            };
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; rx]),
                tcp::SocketBuffer::new(vec![0; tx]),
            );
            // Acknowledge at once: the bench measures the link, not smoltcp's delayed ACK
            // against dom0's wake-ups.
            s.set_ack_delay(None);
            served.push((sockets.add(s), service));
        }
    }
    crate::tprintln!(
        "{}: {}/{} via {} ({}); discard on TCP port {DISCARD_PORT}, chargen on {CHARGEN_PORT}",
        bridge::NAME,
        netconf::text(&config.addr),
        config.prefix,
        config.gateway.map_or_else(
            || alloc::string::String::from("no gateway"),
            |g| netconf::text(&g)
        ),
        crate::virtio_net::mac_text(&mac),
    );
    let mut stack = Stack {
        iface,
        dev,
        sockets,
        served,
        chargen_pos: vec![0; 2 * SOCKETS],
        config,
    };
    stack.serve();
    *STACK.lock() = Some(stack);
}

/// Runs the stack: what the bridge queued for `xenbr0`, the services, what they send. It does
/// nothing (one look at the bridge) unless a frame waits for `xenbr0` or one of smoltcp's
/// timers is due: dom0 services its devices at every wait, and most of those waits have
/// nothing for the network. A nested call (from a service run inside this one) returns at
/// once.
pub fn service() {
    let Some(mut guard) = STACK.try_lock() else {
        return;
    };
    let Some(st) = guard.as_mut() else {
        return;
    };
    let now_ns = xenia_guest_rt::time::now_ns();
    if !bridge::pending(st.dev.0) && now_ns < NEXT_POLL_NS.load(Ordering::Relaxed) {
        return;
    }
    let t = now();
    let Stack {
        iface,
        dev,
        sockets,
        ..
    } = st;
    iface.poll(t, dev, sockets);
    if let Some(mut active) = ACTIVE.try_lock() {
        st.count_accepts(&mut active[..]);
    }
    st.serve();
    let Stack {
        iface,
        dev,
        sockets,
        ..
    } = st;
    iface.poll(t, dev, sockets);
    // A connection the last poll ended listens again now, not when the next frame comes.
    st.serve();
    let next = st
        .iface
        .poll_at(now(), &st.sockets)
        .map_or(u64::MAX, |at| at.total_micros().max(0) as u64 * 1000);
    NEXT_POLL_NS.store(next, Ordering::Relaxed);
}

/// System time (ns) at which smoltcp next wants to run without a frame arriving (a
/// retransmission, a segment the window held back); `u64::MAX`: never.
static NEXT_POLL_NS: AtomicU64 = AtomicU64::new(0);

/// System time (ns) by which the stack wants to run again (a retransmission, a delayed
/// segment), if any.
pub fn poll_at_ns() -> Option<u64> {
    let at = NEXT_POLL_NS.load(Ordering::Relaxed);
    (at != u64::MAX).then_some(at)
}

/// dom0's address, for `/proc/net/addr`.
pub fn config() -> Option<IpConfig> {
    STACK.lock().as_ref().map(|s| s.config)
}

/// The files of `/proc/net`: `dev` (Linux's layout: every port of the bridge as an interface,
/// `xenbr0` seen from dom0's side, so that what dom0 sent is its transmit count), `bridge`
/// (`brctl show`'s table), `addr` (`ip addr`'s gist) and `services` (the discard and chargen
/// counters).
pub fn proc_net() -> Vec<(&'static str, alloc::string::String)> {
    use alloc::format;
    use alloc::string::String;
    let ports = bridge::ports();
    let rows: Vec<(String, xenia_dom0::bridging::PortStats)> = ports
        .iter()
        .map(|p| {
            let mut st = p.stats;
            if p.name == bridge::NAME {
                // The port's "rx" is what dom0's stack gave the bridge: the interface sent it.
                core::mem::swap(&mut st.rx_bytes, &mut st.tx_bytes);
                core::mem::swap(&mut st.rx_packets, &mut st.tx_packets);
                core::mem::swap(&mut st.rx_dropped, &mut st.tx_dropped);
            }
            (p.name.clone(), st)
        })
        .collect();
    let mac = crate::virtio_net::mac_text(&bridge::mac());
    let mut addr = String::new();
    for (i, p) in ports.iter().enumerate() {
        let master = if p.name == bridge::NAME {
            String::new()
        } else {
            format!(" master {}", bridge::NAME)
        };
        addr.push_str(&format!(
            "{}: {}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500{master} state UP\n",
            i + 1,
            p.name
        ));
        if p.name == bridge::NAME || p.name == "eth0" {
            addr.push_str(&format!("    link/ether {mac} brd ff:ff:ff:ff:ff:ff\n"));
        }
        if p.name == bridge::NAME
            && let Some(c) = config()
        {
            addr.push_str(&format!(
                "    inet {}/{} scope global {}\n",
                netconf::text(&c.addr),
                c.prefix,
                bridge::NAME
            ));
        }
    }
    if let Some(IpConfig {
        gateway: Some(g), ..
    }) = config()
    {
        addr.push_str(&format!(
            "default via {} dev {}\n",
            netconf::text(&g),
            bridge::NAME
        ));
    }
    let services = format!(
        "service port connections bytes\ndiscard {DISCARD_PORT} {} {}\nchargen {CHARGEN_PORT} {} {}\n",
        ACCEPTED[0].load(Ordering::Relaxed),
        DISCARDED.load(Ordering::Relaxed),
        ACCEPTED[1].load(Ordering::Relaxed),
        GENERATED.load(Ordering::Relaxed),
    );
    alloc::vec![
        ("dev", xenia_dom0::bridging::proc_net_dev(&rows)),
        ("bridge", bridge::brctl_show()),
        ("addr", addr),
        ("services", services),
    ]
}
