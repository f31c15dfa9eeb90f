//! dom0's own address: [`xenia_dom0::netservices`] (a `smoltcp` interface with ping, discard
//! on TCP 9 and chargen on TCP 19) on the bridge's port `xenbr0` (Linux's bridge device: it
//! carries the NIC's MAC), with the address of [`xenia_dom0::netconf`] (`10.0.2.15/24` via
//! `10.0.2.2`, or dom0's `ip=A.B.C.D/N,gw=E.F.G.H`).
//!
//! Frames move by the bridge's pull model: [`service`] pops what the bridge queued for
//! `xenbr0` (smoltcp's receive) and hands what smoltcp sends to [`crate::bridge::input`].

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use spin::Mutex;
use xenia_dom0::bridging::MAX_FRAME;
use xenia_dom0::netconf::{self, IpConfig};
use xenia_dom0::netservices::{CHARGEN_PORT, Counters, DISCARD_PORT, Services};

use crate::bridge::{self, PortId};

/// The MAC dom0's stack takes when there is no NIC to take it from (locally administered).
const NO_NIC_MAC: [u8; 6] = [0x02, 0x16, 0x3e, 0x00, 0x00, 0x00];

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

struct Stack {
    services: Services,
    dev: Port,
}

static STACK: Mutex<Option<Stack>> = Mutex::new(None);

fn now() -> Instant {
    Instant::from_micros((xenia_guest_rt::time::now_ns() / 1000) as i64)
}

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
    // Linux's bridge keeps its own address as a local entry no frame moves: a host on the
    // network sending with dom0's MAC as source does not take dom0's traffic.
    let _ = bridge::pin(port, mac);
    let mut dev = Port(port);
    let mut seed = [0u8; 8];
    crate::random::fill(&mut seed);
    let services = Services::new(config, mac, u64::from_le_bytes(seed), &mut dev, now());
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
    *STACK.lock() = Some(Stack { services, dev });
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
    let next = st
        .services
        .poll(now(), &mut st.dev)
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
    STACK.lock().as_ref().map(|s| s.services.config())
}

/// What the services did so far.
fn counters() -> Counters {
    STACK
        .lock()
        .as_ref()
        .map(|s| s.services.counters())
        .unwrap_or_default()
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
    let c = counters();
    let services = format!(
        "service port connections bytes\ndiscard {DISCARD_PORT} {} {}\nchargen {CHARGEN_PORT} {} {}\n",
        c.discard_connections, c.discarded, c.chargen_connections, c.generated,
    );
    alloc::vec![
        ("dev", xenia_dom0::bridging::proc_net_dev(&rows)),
        ("bridge", bridge::brctl_show()),
        ("addr", addr),
        ("services", services),
    ]
}
