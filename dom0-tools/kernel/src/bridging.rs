//! The learning bridge's decisions (Xen's `xenbr0`, Linux's `net/bridge`), as plain data: which
//! port a frame goes to, what the bridge has learned, what it keeps queued and what it drops.
//! The kernel's `bridge` module holds one [`Bridge`] under a lock and gives it the time; the
//! ports' owners (the NIC driver, dom0's own IP stack, netback) push frames in with
//! [`Bridge::input`] and pull theirs out with [`Bridge::pop`].
//!
//! **Forwarding** is Linux's: the source MAC of every frame is learned on the port it came in
//! by (forgotten after [`AGEING_NS`] without a frame from it, Linux's default 300 s); a
//! unicast frame to a learned MAC goes to that port only, and a broadcast, multicast or
//! unknown unicast frame is flooded to every port; never back to the port it came from (a
//! frame whose destination was learned on its own port is dropped, as Linux does). Frames
//! from a multicast or all-zero source are dropped (Linux's `is_valid_ether_addr`), and so is
//! the IEEE 802.1D link-local group `01:80:c2:00:00:0X` (STP and pause frames: a bridge
//! without STP does not forward them).
//!
//! **What it trusts.** Nothing: any port may be a domain's and send any bytes. A frame shorter
//! than an Ethernet header ([`MIN_FRAME`]) or longer than [`MAX_FRAME`] is dropped and counted.
//! Memory is bounded everywhere: at most [`MAX_PORTS`] ports (Linux's `BR_MAX_PORTS`), at most
//! [`MAX_MACS`] learned addresses (past it nothing new is learned: those destinations are
//! flooded), per port at most [`QUEUE_FRAMES`] queued frames, and over all queues at most
//! [`QUEUED_BYTES`] of frame memory; a frame past a bound is dropped and counted on the port it
//! was for. Every allocation is fallible (`try_reserve`): a heap that is full drops the frame.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// The shortest frame: destination, source, EtherType.
pub const MIN_FRAME: usize = 14;
/// The longest frame without its FCS at an MTU of 1500 (Linux's `ETH_FRAME_LEN`).
pub const MAX_FRAME: usize = 1514;
/// Frames queued for one port at most.
pub const QUEUE_FRAMES: usize = 256;
/// Memory all queues may hold together (each frame counted at its heap block, the next power of
/// two of its length: the kernel's heap is a buddy allocator).
pub const QUEUED_BYTES: usize = 2 << 20;
/// Ports at most (Linux's `BR_MAX_PORTS`).
pub const MAX_PORTS: usize = 1024;
/// Learned addresses at most.
pub const MAX_MACS: usize = 4096;
/// Learned addresses one port may hold at most: half the table, so that no single port (a
/// hostile host on `eth0`'s network sending made-up sources) can fill it, after which
/// nothing new is learned and every other station's unicast is flooded to every port, the
/// hostile one included. With netback's antispoofing a vif holds one address; `eth0` holds at
/// most this many, and the others (at most [`MAX_PORTS`] - 1 ports) fit in the rest.
pub const MAX_MACS_PER_PORT: usize = MAX_MACS / 2;
/// A learned address is forgotten after this long without a frame from it (Linux's default
/// `ageing_time`, 300 s).
pub const AGEING_NS: u64 = 300_000_000_000;
/// How often the whole table is swept for aged entries (lookups check the age too).
const SWEEP_NS: u64 = 1_000_000_000;

/// A port's counters, in `/proc/net/dev`'s terms: `rx` is what the port gave the bridge, `tx`
/// what the bridge queued for it and it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames the port gave the bridge.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames from the port the bridge refused (size, source address).
    pub rx_dropped: u64,
    /// Frames the port took out of its queue.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames for the port that were dropped (queue full, memory bound, buffer too small).
    pub tx_dropped: u64,
}

/// A port as `brctl show` and `/proc/net/dev` see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Its identity.
    pub id: u32,
    /// Its name (`eth0`, `xenbr0`, `vif3.0`).
    pub name: String,
    /// Its counters.
    pub stats: PortStats,
    /// Frames waiting for it.
    pub queued: usize,
}

struct Port {
    name: String,
    queue: VecDeque<Vec<u8>>,
    stats: PortStats,
    /// Addresses learned on it (entries of the table naming it).
    learned: usize,
}

/// One address fewer learned on `port`.
fn unlearn(ports: &mut BTreeMap<u32, Port>, port: u32) {
    if let Some(p) = ports.get_mut(&port) {
        p.learned = p.learned.saturating_sub(1);
    }
}

struct Learned {
    port: u32,
    seen_ns: u64,
    /// Pinned to its port ([`Bridge::pin`], Linux's `static sticky` entry): never aged,
    /// never moved by a frame from another port carrying it as source.
    sticky: bool,
}

/// The bridge: its ports, its forwarding database and its queues.
pub struct Bridge {
    ports: BTreeMap<u32, Port>,
    next_id: u32,
    fdb: BTreeMap<Mac, Learned>,
    queued_frames: usize,
    queued_bytes: usize,
    last_sweep_ns: u64,
    /// Addresses not learned because the table was full.
    pub not_learned: u64,
}

impl Default for Bridge {
    fn default() -> Self {
        Self::new()
    }
}

/// What a frame counts against [`QUEUED_BYTES`].
fn charge(len: usize) -> usize {
    len.next_power_of_two()
}

fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// IEEE 802.1D's reserved group addresses `01:80:c2:00:00:00`..`0f`.
fn is_link_local(mac: &Mac) -> bool {
    mac[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && mac[5] & 0xf0 == 0
}

/// Queues a copy of `frame` for `port` within the bounds, or drops it and counts it; `frames`
/// and `bytes` are the bridge's totals. Every allocation here is fallible.
fn enqueue(port: &mut Port, frames: &mut usize, bytes: &mut usize, frame: &[u8]) {
    let cost = charge(frame.len());
    if port.queue.len() >= QUEUE_FRAMES || *bytes + cost > QUEUED_BYTES {
        port.stats.tx_dropped += 1;
        return;
    }
    let mut copy = Vec::new();
    if copy.try_reserve_exact(frame.len()).is_err() || port.queue.try_reserve(1).is_err() {
        port.stats.tx_dropped += 1;
        return;
    }
    copy.extend_from_slice(frame);
    port.queue.push_back(copy);
    *frames += 1;
    *bytes += cost;
}

impl Bridge {
    /// An empty bridge.
    pub const fn new() -> Bridge {
        Bridge {
            ports: BTreeMap::new(),
            next_id: 1,
            fdb: BTreeMap::new(),
            queued_frames: 0,
            queued_bytes: 0,
            last_sweep_ns: 0,
            not_learned: 0,
        }
    }

    /// Adds a port called `name`; `None` when [`MAX_PORTS`] are attached. Identities are never
    /// reused, so a stale one names no port.
    pub fn attach(&mut self, name: &str) -> Option<u32> {
        if self.ports.len() >= MAX_PORTS || self.next_id == u32::MAX {
            return None;
        }
        let mut owned = String::new();
        owned.try_reserve_exact(name.len()).ok()?;
        owned.push_str(name);
        let id = self.next_id;
        self.next_id += 1;
        self.ports.insert(
            id,
            Port {
                name: owned,
                queue: VecDeque::new(),
                stats: PortStats::default(),
                learned: 0,
            },
        );
        Some(id)
    }

    /// Forgets port `id`, its queued frames and every address learned on it.
    pub fn detach(&mut self, id: u32) {
        if let Some(port) = self.ports.remove(&id) {
            for frame in &port.queue {
                self.queued_frames -= 1;
                self.queued_bytes -= charge(frame.len());
            }
        }
        self.fdb.retain(|_, l| l.port != id);
    }

    /// A frame arrived on port `from` at system time `now_ns`: learns its source and queues it
    /// for its destination (see the module's rules).
    pub fn input(&mut self, from: u32, frame: &[u8], now_ns: u64) {
        let Some(port) = self.ports.get_mut(&from) else {
            return;
        };
        let mac = |at: usize| -> Mac {
            let mut m = [0; 6];
            m.copy_from_slice(&frame[at..at + 6]);
            m
        };
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            port.stats.rx_dropped += 1;
            return;
        }
        let (dst, src) = (mac(0), mac(6));
        if is_multicast(&src) || src == [0; 6] || is_link_local(&dst) {
            port.stats.rx_dropped += 1;
            return;
        }
        port.stats.rx_packets += 1;
        port.stats.rx_bytes += frame.len() as u64;
        self.sweep(now_ns);
        self.learn(src, from, now_ns);
        if !is_multicast(&dst)
            && let Some(to) = self.lookup(&dst, now_ns)
        {
            // Linux drops a frame whose destination lives on the port it came from.
            if to != from {
                self.enqueue(to, frame);
            }
            return;
        }
        for (_, port) in self.ports.iter_mut().filter(|(id, _)| **id != from) {
            enqueue(port, &mut self.queued_frames, &mut self.queued_bytes, frame);
        }
    }

    fn learn(&mut self, src: Mac, port: u32, now_ns: u64) {
        let room = self
            .ports
            .get(&port)
            .is_some_and(|p| p.learned < MAX_MACS_PER_PORT);
        if let Some(l) = self.fdb.get_mut(&src) {
            if l.port == port {
                l.seen_ns = now_ns;
                return;
            }
            if l.sticky {
                // Another port claims a pinned address (a host on eth0's network taking a
                // domain's MAC): not learned; the frame is still forwarded, as Linux does.
                self.not_learned += 1;
                return;
            }
            // Moved: learned on its new port if that port has room, else forgotten (its
            // traffic floods) rather than kept on a port it left.
            let old = l.port;
            if room {
                l.port = port;
                l.seen_ns = now_ns;
                if let Some(p) = self.ports.get_mut(&port) {
                    p.learned += 1;
                }
            } else {
                self.fdb.remove(&src);
                self.not_learned += 1;
            }
            unlearn(&mut self.ports, old);
        } else if self.fdb.len() < MAX_MACS && room {
            if let Some(p) = self.ports.get_mut(&port) {
                p.learned += 1;
            }
            // alloc: a B-tree node at most now and then; the table is bounded by MAX_MACS.
            self.fdb.insert(
                src,
                Learned {
                    port,
                    seen_ns: now_ns,
                    sticky: false,
                },
            );
        } else {
            self.not_learned += 1;
        }
    }

    fn lookup(&mut self, dst: &Mac, now_ns: u64) -> Option<u32> {
        let l = self.fdb.get(dst)?;
        if !l.sticky && now_ns.saturating_sub(l.seen_ns) >= AGEING_NS {
            let port = l.port;
            self.fdb.remove(dst);
            unlearn(&mut self.ports, port);
            return None;
        }
        Some(l.port)
    }

    /// Forgets aged addresses, at most once a [`SWEEP_NS`].
    fn sweep(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.last_sweep_ns) < SWEEP_NS {
            return;
        }
        self.last_sweep_ns = now_ns;
        let ports = &mut self.ports;
        self.fdb.retain(|_, l| {
            let keep = l.sticky || now_ns.saturating_sub(l.seen_ns) < AGEING_NS;
            if !keep {
                unlearn(ports, l.port);
            }
            keep
        });
    }

    fn enqueue(&mut self, to: u32, frame: &[u8]) {
        if let Some(port) = self.ports.get_mut(&to) {
            enqueue(port, &mut self.queued_frames, &mut self.queued_bytes, frame);
        }
    }

    /// Takes the next frame queued for `id` into `buf`; its length. A frame longer than `buf`
    /// is dropped (counted) and the next one is tried.
    pub fn pop(&mut self, id: u32, buf: &mut [u8]) -> Option<usize> {
        let port = self.ports.get_mut(&id)?;
        while let Some(frame) = port.queue.pop_front() {
            self.queued_frames -= 1;
            self.queued_bytes -= charge(frame.len());
            if frame.len() > buf.len() {
                port.stats.tx_dropped += 1;
                continue;
            }
            buf[..frame.len()].copy_from_slice(&frame);
            port.stats.tx_packets += 1;
            port.stats.tx_bytes += frame.len() as u64;
            return Some(frame.len());
        }
        None
    }

    /// Whether a frame waits for `id`.
    pub fn pending(&self, id: u32) -> bool {
        self.ports.get(&id).is_some_and(|p| !p.queue.is_empty())
    }

    /// Whether any port has a frame waiting.
    pub fn busy(&self) -> bool {
        self.queued_frames > 0
    }

    /// Frames and heap bytes queued over all ports.
    pub fn queued(&self) -> (usize, usize) {
        (self.queued_frames, self.queued_bytes)
    }

    /// The ports, in the order they were attached.
    pub fn ports(&self) -> Vec<PortInfo> {
        self.ports
            .iter()
            .map(|(&id, p)| PortInfo {
                id,
                name: p.name.clone(),
                stats: p.stats,
                queued: p.queue.len(),
            })
            .collect()
    }

    /// The port a MAC was learned on (and not aged at `now_ns`).
    pub fn port_of(&self, mac: &Mac, now_ns: u64) -> Option<u32> {
        self.fdb
            .get(mac)
            .filter(|l| l.sticky || now_ns.saturating_sub(l.seen_ns) < AGEING_NS)
            .map(|l| l.port)
    }

    /// Addresses learned.
    pub fn macs(&self) -> usize {
        self.fdb.len()
    }

    /// Pins `mac` to port `id` (Linux's `bridge fdb add <mac> dev <port> master static
    /// sticky`): unicast to it goes to that port from now on, before any frame from it; it
    /// never ages, and a frame from another port with it as source does not move it. netback
    /// pins a vif's configured MAC (the only source it lets the domain send), so that neither
    /// another domain nor a host on the physical network can take a domain's traffic. `false`
    /// (nothing changed) when the port is unknown, the address is multicast or zero, it is
    /// pinned to another port already, or the table has no room.
    pub fn pin(&mut self, id: u32, mac: Mac) -> bool {
        if !self.ports.contains_key(&id) || is_multicast(&mac) || mac == [0; 6] {
            return false;
        }
        match self.fdb.get_mut(&mac) {
            Some(l) if l.sticky => return l.port == id,
            Some(l) => {
                let old = l.port;
                l.port = id;
                l.sticky = true;
                unlearn(&mut self.ports, old);
            }
            None => {
                if self.fdb.len() >= MAX_MACS {
                    return false;
                }
                // alloc: a B-tree node at most now and then; the table is bounded by MAX_MACS.
                self.fdb.insert(
                    mac,
                    Learned {
                        port: id,
                        seen_ns: 0,
                        sticky: true,
                    },
                );
            }
        }
        if let Some(p) = self.ports.get_mut(&id) {
            p.learned += 1;
        }
        true
    }

    /// Addresses learned on port `id`.
    pub fn learned_on(&self, id: u32) -> usize {
        self.ports.get(&id).map_or(0, |p| p.learned)
    }
}

/// `brctl show`'s table for one bridge: name, bridge id (priority 8000 and the MAC), STP off,
/// then the interfaces, one a line, sorted as Linux lists them (by name).
pub fn brctl_show(bridge: &str, mac: &Mac, ports: &[PortInfo]) -> String {
    let mut names: Vec<&str> = ports
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| *n != bridge)
        .collect();
    names.sort_unstable();
    let id = alloc::format!(
        "8000.{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    let mut s = String::from("bridge name\tbridge id\t\tSTP enabled\tinterfaces\n");
    s.push_str(&alloc::format!(
        "{bridge}\t\t{id}\tno\t\t{}\n",
        names.first().copied().unwrap_or("")
    ));
    for n in names.iter().skip(1) {
        s.push_str(&alloc::format!("\t\t\t\t\t\t\t{n}\n"));
    }
    s
}

/// `/proc/net/dev` in Linux's layout (`dev_seq_show`): two header lines, then one line per
/// interface: name, then receive bytes, packets, errs, drop, fifo, frame, compressed,
/// multicast, and transmit bytes, packets, errs, drop, fifo, colls, carrier, compressed.
/// `rows` are (name, counters seen from the interface: what it received and sent).
pub fn proc_net_dev(rows: &[(String, PortStats)]) -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for (name, st) in rows {
        s.push_str(&alloc::format!(
            "{name:>6}: {:>7} {:>7} {:>4} {:>4} {:>4} {:>5} {:>10} {:>9} {:>8} {:>7} {:>4} {:>4} {:>4} {:>5} {:>7} {:>10}\n",
            st.rx_bytes,
            st.rx_packets,
            0,
            st.rx_dropped,
            0,
            0,
            0,
            0,
            st.tx_bytes,
            st.tx_packets,
            0,
            st.tx_dropped,
            0,
            0,
            0,
            0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x00, 0x16, 0x3e, 0, 0, 0xa];
    const B: Mac = [0x00, 0x16, 0x3e, 0, 0, 0xb];
    const C: Mac = [0x00, 0x16, 0x3e, 0, 0, 0xc];
    const BCAST: Mac = [0xff; 6];
    const SEC: u64 = 1_000_000_000;

    fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
        let mut f = alloc::vec![0u8; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12] = 0x08;
        if len > 14 {
            f[14] = len as u8;
        }
        f
    }

    fn drain(b: &mut Bridge, id: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_FRAME];
        while let Some(n) = b.pop(id, &mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    fn three() -> (Bridge, u32, u32, u32) {
        let mut b = Bridge::new();
        let p1 = b.attach("eth0").unwrap();
        let p2 = b.attach("vif1.0").unwrap();
        let p3 = b.attach("vif2.0").unwrap();
        (b, p1, p2, p3)
    }

    #[test]
    fn unknown_unicast_floods_then_learned_goes_to_one_port() {
        let (mut b, p1, p2, p3) = three();
        b.input(p1, &frame(B, A, 60), 0);
        assert_eq!(drain(&mut b, p1).len(), 0, "never back to the source");
        assert_eq!(drain(&mut b, p2).len(), 1);
        assert_eq!(drain(&mut b, p3).len(), 1);
        // B answers: A is known, so only p1 gets it; B is learned on p2.
        b.input(p2, &frame(A, B, 60), SEC);
        assert_eq!(drain(&mut b, p1), [frame(A, B, 60)]);
        assert!(
            drain(&mut b, p3).is_empty(),
            "a frame for A never reaches p3"
        );
        b.input(p1, &frame(B, A, 100), 2 * SEC);
        assert_eq!(drain(&mut b, p2), [frame(B, A, 100)]);
        assert!(drain(&mut b, p3).is_empty());
        assert_eq!(b.port_of(&A, 2 * SEC), Some(p1));
        assert_eq!(b.port_of(&B, 2 * SEC), Some(p2));
        assert!(!b.busy());
    }

    #[test]
    fn broadcast_and_multicast_flood_to_all_but_the_source() {
        let (mut b, p1, p2, p3) = three();
        b.input(p2, &frame(BCAST, B, 42), 0);
        let mcast = [0x01, 0x00, 0x5e, 0, 0, 1];
        b.input(p2, &frame(mcast, B, 42), 0);
        assert_eq!(drain(&mut b, p1).len(), 2);
        assert_eq!(drain(&mut b, p3).len(), 2);
        assert!(drain(&mut b, p2).is_empty());
        // A multicast destination is flooded even if someone sent from it (it is not learned).
        assert_eq!(b.port_of(&mcast, 0), None);
    }

    #[test]
    fn a_frame_for_a_mac_on_its_own_port_is_dropped() {
        let (mut b, p1, p2, p3) = three();
        b.input(p1, &frame(BCAST, A, 60), 0);
        b.input(p1, &frame(BCAST, C, 60), 0);
        drain(&mut b, p2);
        drain(&mut b, p3);
        b.input(p1, &frame(C, A, 60), 0);
        for p in [p1, p2, p3] {
            assert!(drain(&mut b, p).is_empty());
        }
    }

    #[test]
    fn learned_addresses_age_after_300_seconds() {
        let (mut b, p1, p2, p3) = three();
        b.input(p2, &frame(BCAST, B, 60), 0);
        drain(&mut b, p1);
        drain(&mut b, p3);
        b.input(p1, &frame(B, A, 60), 299 * SEC);
        assert_eq!(drain(&mut b, p2).len(), 1);
        assert!(drain(&mut b, p3).is_empty());
        // 300 s after B last spoke, B is unknown again: flooded.
        b.input(p1, &frame(B, A, 60), 300 * SEC);
        assert_eq!(drain(&mut b, p2).len(), 1);
        assert_eq!(drain(&mut b, p3).len(), 1);
        assert_eq!(b.port_of(&B, 300 * SEC), None);
        // A was refreshed at 300 s and stays.
        assert_eq!(b.port_of(&A, 599 * SEC), Some(p1));
        // The sweep forgets addresses nobody looks up.
        b.input(p3, &frame(BCAST, C, 60), 700 * SEC);
        assert_eq!(b.macs(), 1);
    }

    #[test]
    fn a_moved_address_is_learned_on_its_new_port() {
        let (mut b, p1, p2, p3) = three();
        b.input(p2, &frame(BCAST, B, 60), 0);
        b.input(p3, &frame(BCAST, B, 60), SEC);
        assert_eq!(b.port_of(&B, SEC), Some(p3));
        drain(&mut b, p1);
        drain(&mut b, p2);
        drain(&mut b, p3);
        b.input(p1, &frame(B, A, 60), 2 * SEC);
        assert_eq!(drain(&mut b, p3).len(), 1);
        assert!(drain(&mut b, p2).is_empty());
    }

    #[test]
    fn hostile_sizes_and_sources_are_dropped_and_counted() {
        let (mut b, p1, p2, p3) = three();
        b.input(p1, &[0u8; 13], 0);
        b.input(p1, &[], 0);
        b.input(p1, &frame(BCAST, A, MAX_FRAME + 1), 0);
        b.input(p1, &frame(BCAST, A, 65536), 0);
        b.input(p1, &frame(BCAST, BCAST, 60), 0); // multicast source
        b.input(p1, &frame(BCAST, [0; 6], 60), 0); // zero source
        b.input(p1, &frame([0x01, 0x80, 0xc2, 0, 0, 0], A, 60), 0); // STP
        assert!(!b.busy());
        assert_eq!(b.macs(), 0);
        let st = b.ports()[0].stats;
        assert_eq!((st.rx_dropped, st.rx_packets), (7, 0));
        // The extremes that are allowed pass.
        b.input(p1, &frame(BCAST, A, MIN_FRAME), 0);
        b.input(p1, &frame(BCAST, A, MAX_FRAME), 0);
        assert_eq!(drain(&mut b, p2).len(), 2);
        drain(&mut b, p3);
        // A port that does not exist is ignored.
        b.input(999, &frame(BCAST, A, 60), 0);
        assert!(!b.busy());
    }

    #[test]
    fn queues_are_bounded_per_port_and_in_memory() {
        let (mut b, p1, p2, p3) = three();
        for i in 0..QUEUE_FRAMES + 10 {
            b.input(p1, &frame(BCAST, A, 60 + i % 8), 0);
        }
        assert_eq!(drain(&mut b, p2).len(), QUEUE_FRAMES);
        let st = b.ports().into_iter().find(|p| p.id == p2).unwrap().stats;
        assert_eq!(st.tx_dropped, 10);
        assert_eq!(st.tx_packets, QUEUE_FRAMES as u64);
        drain(&mut b, p3);
        // With many ports, the memory bound stops the flood before the per-port bounds do.
        let mut many = Bridge::new();
        let src = many.attach("vif9.0").unwrap();
        let ports: Vec<u32> = (0..100)
            .map(|i| many.attach(&alloc::format!("vif{i}.0")).unwrap())
            .collect();
        for _ in 0..QUEUE_FRAMES {
            many.input(src, &frame(BCAST, A, MAX_FRAME), 0);
        }
        let (_, bytes) = many.queued();
        assert!(bytes <= QUEUED_BYTES);
        let dropped: u64 = many.ports().iter().map(|p| p.stats.tx_dropped).sum();
        assert!(dropped > 0);
        for p in ports {
            drain(&mut many, p);
        }
        assert_eq!(many.queued(), (0, 0));
    }

    #[test]
    fn detach_forgets_the_port_its_queue_and_its_addresses() {
        let (mut b, p1, p2, p3) = three();
        b.input(p2, &frame(BCAST, B, 60), 0);
        b.input(p1, &frame(BCAST, A, 60), 0);
        assert!(b.pending(p2));
        b.detach(p2);
        assert!(!b.pending(p2));
        assert_eq!(b.port_of(&B, 0), None);
        assert_eq!(b.pop(p2, &mut [0; MAX_FRAME]), None);
        // Frames for B flood to the ports left; none goes to the detached one.
        drain(&mut b, p1);
        drain(&mut b, p3);
        b.input(p1, &frame(B, A, 60), 0);
        assert_eq!(drain(&mut b, p3).len(), 1);
        assert!(!b.busy());
        assert_eq!(b.queued(), (0, 0));
        // A new port never gets the old identity.
        let p4 = b.attach("vif1.0").unwrap();
        assert_ne!(p4, p2);
        b.input(p2, &frame(BCAST, B, 60), 0);
        assert!(!b.busy(), "a stale port sends nothing");
    }

    #[test]
    fn the_port_limit_is_linuxs() {
        let mut b = Bridge::new();
        for i in 0..MAX_PORTS {
            assert!(b.attach(&alloc::format!("vif{i}.0")).is_some());
        }
        assert_eq!(b.attach("one-too-many"), None);
        b.detach(1);
        assert!(b.attach("again").is_some());
    }

    #[test]
    fn the_mac_table_is_bounded() {
        let (mut b, p1, p2, p3) = three();
        for i in 0..MAX_MACS + 5 {
            let src = [0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            // Two ports, each up to its own bound, fill the table.
            let from = if i % 2 == 0 { p1 } else { p2 };
            b.input(from, &frame(BCAST, src, 60), 0);
            drain(&mut b, p1);
            drain(&mut b, p2);
            drain(&mut b, p3);
        }
        assert_eq!(b.macs(), MAX_MACS);
        assert_eq!(b.not_learned, 5);
        assert_eq!(b.learned_on(p1) + b.learned_on(p2), MAX_MACS);
    }

    /// Red team: a port sending from ever new sources (a hostile network on eth0; a domain
    /// is held to its own MAC by netback) cannot fill the table: a station that arrives
    /// afterwards, or whose entry aged meanwhile, is still learned, so unicast to it is not
    /// flooded to the attacker's port. Before the per-port bound, the attacker's 4096 sources
    /// filled the table and C's traffic went to every port.
    #[test]
    fn one_port_cannot_fill_the_table() {
        let (mut b, p1, p2, p3) = three();
        b.input(p2, &frame(BCAST, B, 60), 0);
        for i in 0..MAX_MACS + 100 {
            let src = [0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            b.input(p1, &frame(BCAST, src, 60), SEC);
            drain(&mut b, p2);
            drain(&mut b, p3);
        }
        assert_eq!(b.learned_on(p1), MAX_MACS_PER_PORT);
        assert_eq!(b.not_learned as usize, MAX_MACS + 100 - MAX_MACS_PER_PORT);
        // A newcomer on p3 is learned; B's entry ages and is learned again.
        let later = AGEING_NS + 2 * SEC;
        b.input(p3, &frame(BCAST, C, 60), later);
        b.input(p2, &frame(BCAST, B, 60), later);
        drain(&mut b, p1);
        drain(&mut b, p2);
        drain(&mut b, p3);
        assert_eq!(b.port_of(&C, later), Some(p3));
        assert_eq!(b.port_of(&B, later), Some(p2));
        // Unicast between them reaches only its port: nothing for the attacker.
        b.input(p2, &frame(C, B, 60), later);
        b.input(p3, &frame(B, C, 60), later);
        assert!(drain(&mut b, p1).is_empty());
        assert_eq!(drain(&mut b, p3).len(), 1);
        assert_eq!(drain(&mut b, p2).len(), 1);
        // Ageing and detaching give the attacker's addresses back.
        assert_eq!(b.learned_on(p1), 0);
        b.input(p1, &frame(BCAST, A, 60), later);
        assert_eq!(b.learned_on(p1), 1);
        b.detach(p1);
        assert_eq!(b.macs(), 2);
    }

    /// Red team: a pinned address (a vif's MAC) is not taken by a frame from another port
    /// with it as source (a host on eth0's network spoofing a domain): unicast to it still
    /// goes to its vif only, at any age; detach forgets it.
    #[test]
    fn a_pinned_address_stays_on_its_port() {
        let (mut b, p1, p2, p3) = three();
        assert!(b.pin(p2, A));
        // Known before A sent anything.
        b.input(p3, &frame(A, C, 60), 0);
        assert_eq!(drain(&mut b, p2).len(), 1);
        assert!(drain(&mut b, p1).is_empty());
        // eth0 claims A: not moved, the claim still forwarded (flooded broadcast).
        b.input(p1, &frame(BCAST, A, 60), SEC);
        assert_eq!(b.port_of(&A, SEC), Some(p2));
        drain(&mut b, p2);
        drain(&mut b, p3);
        let late = 10 * AGEING_NS;
        b.input(p3, &frame(A, C, 60), late);
        assert_eq!(drain(&mut b, p2).len(), 1);
        assert!(drain(&mut b, p1).is_empty());
        // Pinned once only; bad addresses refused; a learned entry is taken over.
        assert!(!b.pin(p3, A));
        assert!(b.pin(p2, A));
        assert!(!b.pin(p2, BCAST));
        assert!(!b.pin(p2, [0; 6]));
        assert!(!b.pin(99, B));
        b.input(p1, &frame(BCAST, B, 60), late);
        assert!(b.pin(p3, B));
        assert_eq!((b.learned_on(p1), b.learned_on(p3)), (0, 2));
        b.detach(p2);
        assert_eq!(b.port_of(&A, late), None);
    }

    /// An address moving to a port that holds its bound is forgotten, not left on the port
    /// it left; the counts follow moves.
    #[test]
    fn a_move_to_a_full_port_forgets_the_address() {
        let (mut b, p1, p2, p3) = three();
        for i in 0..MAX_MACS_PER_PORT {
            let src = [0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            b.input(p1, &frame(BCAST, src, 60), 0);
        }
        b.input(p2, &frame(BCAST, A, 60), 0);
        b.input(p3, &frame(BCAST, B, 60), 0);
        b.input(p3, &frame(BCAST, A, 60), 0);
        assert_eq!((b.learned_on(p2), b.learned_on(p3)), (0, 2));
        b.input(p1, &frame(BCAST, A, 60), 0);
        assert_eq!(b.port_of(&A, 0), None);
        assert_eq!((b.learned_on(p1), b.learned_on(p3)), (MAX_MACS_PER_PORT, 1));
    }

    #[test]
    fn a_small_buffer_drops_the_frame_and_takes_the_next() {
        let (mut b, p1, p2, _) = three();
        b.input(p1, &frame(BCAST, A, 200), 0);
        b.input(p1, &frame(BCAST, A, 60), 0);
        let mut small = [0u8; 100];
        assert_eq!(b.pop(p2, &mut small), Some(60));
        assert_eq!(b.ports()[1].stats.tx_dropped, 1);
    }

    #[test]
    fn brctl_and_proc_net_dev_layouts() {
        let (b, ..) = three();
        let mut ports = b.ports();
        ports.push(PortInfo {
            id: 9,
            name: "xenbr0".into(),
            stats: PortStats::default(),
            queued: 0,
        });
        let show = brctl_show("xenbr0", &[0x52, 0x54, 0, 0x12, 0x34, 0x56], &ports);
        assert_eq!(
            show,
            "bridge name\tbridge id\t\tSTP enabled\tinterfaces\n\
             xenbr0\t\t8000.525400123456\tno\t\teth0\n\
             \t\t\t\t\t\t\tvif1.0\n\t\t\t\t\t\t\tvif2.0\n"
        );
        let st = PortStats {
            rx_bytes: 4194304,
            rx_packets: 2900,
            tx_dropped: 3,
            ..PortStats::default()
        };
        let dev = proc_net_dev(&[("eth0".into(), st)]);
        let line = dev.lines().nth(2).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], "eth0:");
        assert_eq!(fields[1], "4194304");
        assert_eq!(fields[2], "2900");
        assert_eq!(fields[12], "3");
        assert_eq!(fields.len(), 17);
    }

    use proptest::prelude::*;

    /// What a random run does: input a frame (from port index, to MAC index, length), pop
    /// for a port, detach and re-attach a port, or let time pass.
    #[derive(Clone, Debug)]
    enum Op {
        Input(usize, usize, usize),
        Pop(usize),
        Replace(usize),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4usize, 0..6usize, 0..1600usize).prop_map(|(p, m, l)| Op::Input(p, m, l)),
            3 => (0..4usize).prop_map(Op::Pop),
            1 => (0..4usize).prop_map(Op::Replace),
            1 => (0..400u64).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever the ports send: a frame never comes back to the port it came from, a
        /// frame to a unicast MAC last heard on another port (within the ageing time) reaches
        /// only that port, and the queue accounting always matches the queues.
        #[test]
        fn forwarding_invariants(ops in proptest::collection::vec(op(), 1..200)) {
            // MAC i is station i on port i % 4; index 5 is broadcast.
            let station = |i: usize| -> Mac {
                if i == 5 { BCAST } else { [0x00, 0x16, 0x3e, 0, 1, i as u8] }
            };
            let mut b = Bridge::new();
            let mut ports: Vec<u32> = (0..4).map(|i| b.attach(&alloc::format!("p{i}")).unwrap()).collect();
            let mut now = 0u64;
            let mut buf = [0u8; MAX_FRAME];
            for op in ops {
                match op {
                    Op::Input(p, m, len) => {
                        let src = station(p);
                        let dst = station(m);
                        let expect = (m != 5).then(|| b.port_of(&dst, now)).flatten();
                        let before: Vec<usize> = b.ports().iter().map(|i| i.queued).collect();
                        let mut f = if len < MIN_FRAME { alloc::vec![0xffu8; len] } else { frame(dst, src, len) };
                        if f.len() > 15 {
                            f[14] = p as u8;
                        }
                        b.input(ports[p], &f, now);
                        let after: Vec<usize> = b.ports().iter().map(|i| i.queued).collect();
                        let id_of: Vec<u32> = b.ports().iter().map(|i| i.id).collect();
                        for (k, id) in id_of.iter().enumerate() {
                            let grew = after[k] > before[k];
                            if *id == ports[p] {
                                prop_assert!(!grew, "a frame went back to its source");
                            }
                            if let Some(to) = expect && *id != to {
                                prop_assert!(!grew, "a unicast frame reached a port it was not for");
                            }
                        }
                    }
                    Op::Pop(p) => {
                        if let Some(n) = b.pop(ports[p], &mut buf) && n > 15 {
                            prop_assert_ne!(buf[14] as usize, p, "popped on its own source port");
                        }
                    }
                    Op::Replace(p) => {
                        b.detach(ports[p]);
                        prop_assert_eq!(b.port_of(&station(p), now), None);
                        ports[p] = b.attach(&alloc::format!("p{p}")).unwrap();
                    }
                    Op::Wait(s) => now += s * SEC,
                }
                let learned: usize = ports.iter().map(|&p| b.learned_on(p)).sum();
                prop_assert_eq!(learned, b.macs());
                let queued: usize = b.ports().iter().map(|i| i.queued).sum();
                prop_assert_eq!(b.queued().0, queued);
                prop_assert_eq!(b.busy(), queued > 0);
                prop_assert!(b.queued().1 <= QUEUED_BYTES);
            }
            for &p in &ports {
                while b.pop(p, &mut buf).is_some() {}
            }
            prop_assert_eq!(b.queued(), (0, 0));
        }
    }
}
