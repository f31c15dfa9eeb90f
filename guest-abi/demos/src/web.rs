//! The `web` demo's network services over `smoltcp`, independent of netfront: the demo
//! kernel (`src/bin/web.rs`) hands it a [`Link`] (netfront) and the time; the tests hand it
//! a wire to a second smoltcp interface on the host.
//!
//! - An address by DHCP (or a fixed one), printed once configured.
//! - HTTP on port [`HTTP_PORT`]: any `GET`/`HEAD` gets a small page with the domain's
//!   name, its uptime and a request counter ([`page`]); [`HTTP_SOCKETS`] connections at a
//!   time, one request each (`Connection: close`).
//! - Discard (RFC 863) on TCP port [`DISCARD_PORT`]: reads and drops everything (a
//!   throughput sink).
//! - Character generator (RFC 864) on TCP port [`CHARGEN_PORT`]: sends its 72-character
//!   lines until the peer closes (a throughput source).
//! - Echo replies to ping: smoltcp's interface answers ICMP echo requests itself; and, when
//!   given a target ([`Web::ping`]), an echo request to it every [`PING_EVERY`].
//! - A count of the frames that arrived for another unicast address ([`Adapter::foreign`]):
//!   a bridge should never deliver one.
//!
//! Every socket buffer is in [`Buffers`], which the caller keeps (on its stack: a domU has
//! no heap).

use core::fmt::Write as _;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, icmp, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address,
    Ipv4Cidr,
};

/// The HTTP port.
pub const HTTP_PORT: u16 = 80;
/// The discard service's port (RFC 863).
pub const DISCARD_PORT: u16 = 9;
/// The character generator's port (RFC 864).
pub const CHARGEN_PORT: u16 = 19;
/// HTTP connections served at once.
pub const HTTP_SOCKETS: usize = 4;
/// The largest Ethernet frame handled (no FCS).
pub const FRAME: usize = 1514;
/// Bytes of a request kept (the request line and headers; the rest is read and dropped).
pub const REQUEST_MAX: usize = 1024;
const HTTP_TX: usize = 2048;
/// Bytes of the bulk sockets' buffers (discard's receive, chargen's send): past 64 KiB, so
/// that TCP window scaling lets more be in flight (the path through dom0 is latency-bound:
/// 256 KiB took the domU from 10..13 to 16..23 MB/s in and 8..14 to 12..16 MB/s out).
const BULK: usize = 256 * 1024;
const SOCKETS: usize = HTTP_SOCKETS + 5;
/// The local TCP port of [`Web::push`]'s connection.
pub const PUSH_LOCAL_PORT: u16 = 40_009;
/// The ICMP identifier of the demo's pings.
pub const PING_IDENT: u16 = 0x5845;
/// How often a ping goes out.
pub const PING_EVERY: Duration = Duration::from_millis(1000);

/// A network interface that moves whole Ethernet frames (netfront in the demo).
pub trait Link {
    /// Whether [`Link::send`] would take a frame now.
    fn can_send(&mut self) -> bool;
    /// Sends `frame`; `false`: dropped.
    fn send(&mut self, frame: &[u8]) -> bool;
    /// The next received frame, copied into `buf`: its length.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// A [`Link`] as a smoltcp [`Device`].
pub struct Adapter<L> {
    /// The link.
    pub link: L,
    rx: [u8; FRAME],
    tx: [u8; FRAME],
    /// Frames smoltcp wanted to send that the link refused.
    pub tx_dropped: u64,
    /// Frames received for another unicast address than `mac`.
    pub foreign: u64,
    mac: [u8; 6],
}

impl<L: Link> Adapter<L> {
    /// Wraps `link`, whose address is `mac`.
    pub fn new(link: L, mac: [u8; 6]) -> Self {
        Adapter {
            link,
            rx: [0; FRAME],
            tx: [0; FRAME],
            tx_dropped: 0,
            foreign: 0,
            mac,
        }
    }
}

/// A received frame.
pub struct RxToken<'a>(&'a [u8]);

/// Room for a frame to send.
pub struct TxToken<'a, L> {
    link: &'a mut L,
    buf: &'a mut [u8; FRAME],
    dropped: &'a mut u64,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<L: Link> phy::TxToken for TxToken<'_, L> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(FRAME);
        let r = f(&mut self.buf[..len]);
        if !self.link.send(&self.buf[..len]) {
            *self.dropped += 1;
        }
        r
    }
}

impl<L: Link> Device for Adapter<L> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, L>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_, L>)> {
        let n = self.link.recv(&mut self.rx)?;
        // Multicast and broadcast have the group bit (the first byte's lowest) set.
        if n >= 6 && self.rx[0] & 1 == 0 && self.rx[..6] != self.mac {
            self.foreign += 1;
        }
        Some((
            RxToken(&self.rx[..n]),
            TxToken {
                link: &mut self.link,
                buf: &mut self.tx,
                dropped: &mut self.tx_dropped,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_, L>> {
        if !self.link.can_send() {
            return None;
        }
        Some(TxToken {
            link: &mut self.link,
            buf: &mut self.tx,
            dropped: &mut self.tx_dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = FRAME;
        c
    }
}

/// The socket buffers of [`Web`] (about 540 KiB: keep it on a big enough stack).
pub struct Buffers<'a> {
    sockets: [SocketStorage<'a>; SOCKETS],
    http_rx: [[u8; 512]; HTTP_SOCKETS],
    http_tx: [[u8; HTTP_TX]; HTTP_SOCKETS],
    discard_rx: [u8; BULK],
    discard_tx: [u8; 64],
    chargen_rx: [u8; 512],
    chargen_tx: [u8; BULK],
    push_rx: [u8; 512],
    push_tx: [u8; BULK],
    icmp_rx_meta: [icmp::PacketMetadata; 4],
    icmp_rx: [u8; 1024],
    icmp_tx_meta: [icmp::PacketMetadata; 4],
    icmp_tx: [u8; 1024],
}

impl Default for Buffers<'_> {
    fn default() -> Self {
        Buffers {
            sockets: [SocketStorage::EMPTY; SOCKETS],
            http_rx: [[0; 512]; HTTP_SOCKETS],
            http_tx: [[0; HTTP_TX]; HTTP_SOCKETS],
            discard_rx: [0; BULK],
            discard_tx: [0; 64],
            chargen_rx: [0; 512],
            chargen_tx: [0; BULK],
            push_rx: [0; 512],
            push_tx: [0; BULK],
            icmp_rx_meta: [icmp::PacketMetadata::EMPTY; 4],
            icmp_rx: [0; 1024],
            icmp_tx_meta: [icmp::PacketMetadata::EMPTY; 4],
            icmp_tx: [0; 1024],
        }
    }
}

/// A request being read on one HTTP connection.
#[derive(Clone, Copy)]
struct Request {
    bytes: [u8; REQUEST_MAX],
    len: usize,
    answered: bool,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`: the page.
    Get,
    /// `HEAD`: the page's headers.
    Head,
    /// Anything else: 405.
    Other,
}

/// The method of a complete request (its head ends with an empty line), or `None` while it
/// is incomplete. A head longer than [`REQUEST_MAX`] counts as complete.
pub fn parse_request(bytes: &[u8]) -> Option<Method> {
    let complete = bytes.windows(4).any(|w| w == b"\r\n\r\n")
        || bytes.windows(2).any(|w| w == b"\n\n")
        || bytes.len() >= REQUEST_MAX;
    if !complete {
        return None;
    }
    Some(if bytes.starts_with(b"GET ") {
        Method::Get
    } else if bytes.starts_with(b"HEAD ") {
        Method::Head
    } else {
        Method::Other
    })
}

/// Writes into a byte slice, cutting what does not fit.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            return Err(core::fmt::Error);
        }
        Ok(())
    }
}

/// The HTML-safe characters of `name` (anything else becomes `?`).
struct Safe<'a>(&'a str);

impl core::fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in self.0.chars() {
            let ok = c.is_ascii_alphanumeric() || "-_. ".contains(c);
            f.write_char(if ok { c } else { '?' })?;
        }
        Ok(())
    }
}

/// The whole HTTP response to `method` (status line, headers, the page for `GET`) into
/// `out`: its length. The page names the domain, its uptime and which request this is.
pub fn page(method: Method, name: &str, uptime_ms: u64, request: u64, out: &mut [u8]) -> usize {
    let mut body = [0u8; 512];
    let mut b = Out {
        buf: &mut body,
        len: 0,
    };
    let _ = write!(
        b,
        "<!DOCTYPE html>\n<html><head><title>{name} on Xenia</title></head><body>\n\
         <h1>{name}</h1>\n<p>A Xenia domU serving HTTP with smoltcp over netfront.</p>\n\
         <p>domain: {name}</p>\n<p>uptime: {}.{:03} s</p>\n<p>request: {request}</p>\n\
         </body></html>\n",
        uptime_ms / 1000,
        uptime_ms % 1000,
        name = Safe(name),
    );
    let body_len = b.len;
    let mut o = Out { buf: out, len: 0 };
    let (status, len) = match method {
        Method::Get | Method::Head => ("200 OK", body_len),
        Method::Other => ("405 Method Not Allowed", 0),
    };
    let _ = write!(
        o,
        "HTTP/1.0 {status}\r\nServer: xenia-web\r\nContent-Type: text/html\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    if method == Method::Get {
        let _ = o.write_str(core::str::from_utf8(&body[..body_len]).unwrap_or(""));
    }
    o.len
}

/// RFC 864's pattern: line `k` is the 72 printable characters from `' ' + k % 95` on,
/// wrapping, then CR LF. Fills `buf` with the stream from byte `at` on; the next `at`.
pub fn chargen(at: u64, buf: &mut [u8]) -> u64 {
    const LINE: u64 = 74;
    let mut pos = at;
    for b in buf.iter_mut() {
        let line = pos / LINE;
        let col = pos % LINE;
        *b = match col {
            72 => b'\r',
            73 => b'\n',
            c => b' ' + ((line + c) % 95) as u8,
        };
        pos += 1;
    }
    pos
}

/// What changed in a [`Web::poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// The address DHCP gave (or `Some` once for a fixed one).
    pub configured: Option<Ipv4Cidr>,
    /// An echo reply to the demo's ping: its sequence number and round trip in
    /// microseconds.
    pub pong: Option<(u16, i64)>,
    /// DHCP took the address away.
    pub deconfigured: bool,
    /// HTTP requests answered in this poll.
    pub answered: u32,
    /// The push ([`Web::push`]) ended: the bytes the peer acknowledged and the time from the
    /// connection's start in microseconds, or `None` in `bytes`' place if it failed.
    pub pushed: Option<(Option<u64>, i64)>,
}

/// A push to another host's discard service ([`Web::push`]).
#[derive(Clone, Copy, Debug)]
struct Push {
    target: Ipv4Address,
    bytes: u64,
    sent: u64,
    started: Option<Instant>,
    closing: bool,
    done: bool,
}

/// The demo's interface and services.
pub struct Web<'a> {
    iface: Interface,
    sockets: SocketSet<'a>,
    dhcp: Option<SocketHandle>,
    http: [SocketHandle; HTTP_SOCKETS],
    requests_in: [Request; HTTP_SOCKETS],
    discard: SocketHandle,
    chargen: SocketHandle,
    chargen_at: u64,
    pinger: SocketHandle,
    pusher: SocketHandle,
    push: Option<Push>,
    ping: Option<Ipv4Address>,
    ping_seq: u16,
    ping_next: Instant,
    ping_sent: [Instant; 8],
    clock: Option<fn() -> Instant>,
    fixed: Option<Ipv4Cidr>,
    started: Instant,
    name: [u8; 64],
    name_len: usize,
    /// HTTP requests answered so far.
    pub requests: u64,
    /// Bytes the discard service took.
    pub discarded: u64,
}

impl<'a> Web<'a> {
    /// The interface on `device` with Ethernet address `mac`, named `name` on the page; its
    /// address by DHCP, or `fixed` (with a default route through `gateway`). `seed` seeds
    /// smoltcp's choices (TCP sequence numbers, DHCP transaction ids).
    #[allow(clippy::too_many_arguments)]
    pub fn new<D: Device>(
        bufs: &'a mut Buffers<'a>,
        device: &mut D,
        mac: [u8; 6],
        name: &str,
        fixed: Option<(Ipv4Cidr, Ipv4Address)>,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, device, now);
        if let Some((cidr, gw)) = fixed {
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::Ipv4(cidr));
            });
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        let Buffers {
            sockets,
            http_rx,
            http_tx,
            discard_rx,
            discard_tx,
            chargen_rx,
            chargen_tx,
            push_rx,
            push_tx,
            icmp_rx_meta,
            icmp_rx,
            icmp_tx_meta,
            icmp_tx,
        } = bufs;
        let mut set = SocketSet::new(&mut sockets[..]);
        let mut http_rx = http_rx.iter_mut();
        let mut http_tx = http_tx.iter_mut();
        let http = core::array::from_fn(|_| {
            let (rx, tx) = (http_rx.next(), http_tx.next());
            let (Some(rx), Some(tx)) = (rx, tx) else {
                unreachable!("one buffer pair per socket");
            };
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(&mut rx[..]),
                tcp::SocketBuffer::new(&mut tx[..]),
            );
            set.add(s)
        });
        let mut d = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut discard_rx[..]),
            tcp::SocketBuffer::new(&mut discard_tx[..]),
        );
        // A sink for throughput runs: every segment acknowledged at once (smoltcp delays
        // ACKs 10 ms by default).
        d.set_ack_delay(None);
        let discard = set.add(d);
        let chargen = set.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut chargen_rx[..]),
            tcp::SocketBuffer::new(&mut chargen_tx[..]),
        ));
        let pusher = set.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut push_rx[..]),
            tcp::SocketBuffer::new(&mut push_tx[..]),
        ));
        let pinger = set.add(icmp::Socket::new(
            icmp::PacketBuffer::new(&mut icmp_rx_meta[..], &mut icmp_rx[..]),
            icmp::PacketBuffer::new(&mut icmp_tx_meta[..], &mut icmp_tx[..]),
        ));
        let dhcp = fixed.is_none().then(|| set.add(dhcpv4::Socket::new()));
        let mut n = [0u8; 64];
        let name_len = name.len().min(n.len());
        n[..name_len].copy_from_slice(&name.as_bytes()[..name_len]);
        Web {
            iface,
            sockets: set,
            dhcp,
            http,
            requests_in: [Request {
                bytes: [0; REQUEST_MAX],
                len: 0,
                answered: false,
            }; HTTP_SOCKETS],
            discard,
            chargen,
            chargen_at: 0,
            pinger,
            pusher,
            push: None,
            ping: None,
            ping_seq: 0,
            ping_next: now,
            ping_sent: [now; 8],
            clock: None,
            fixed: fixed.map(|(c, _)| c),
            started: now,
            name: n,
            name_len,
            requests: 0,
            discarded: 0,
        }
    }

    /// The interface's IPv4 address, once it has one.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        self.iface
            .ip_addrs()
            .iter()
            .map(|a| match a {
                IpCidr::Ipv4(c) => *c,
            })
            .next()
    }

    /// Pings `target` every [`PING_EVERY`] from now on (once the interface has an address);
    /// replies come as [`Events::pong`].
    pub fn ping(&mut self, target: Ipv4Address) {
        self.ping = Some(target);
        let s = self.sockets.get_mut::<icmp::Socket>(self.pinger);
        if !s.is_open() {
            let _ = s.bind(icmp::Endpoint::Ident(PING_IDENT));
        }
    }

    /// Once the interface has an address, connects to `target`'s discard service (TCP port
    /// [`DISCARD_PORT`]), sends `bytes` of the character generator's stream and closes; the
    /// end comes as [`Events::pushed`] once the peer acknowledged everything (domU-to-domU
    /// throughput across the bridge).
    pub fn push(&mut self, target: Ipv4Address, bytes: u64) {
        self.push = Some(Push {
            target,
            bytes,
            sent: 0,
            started: None,
            closing: false,
            done: false,
        });
    }

    /// Times pings with `clock` (read when each echo is sent and each reply taken) rather
    /// than the `now` a poll was given, which a whole poll shares.
    pub fn set_clock(&mut self, clock: fn() -> Instant) {
        self.clock = Some(clock);
    }

    /// The interface, for callers that add sockets of their own.
    pub fn iface(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// Moves frames and serves the services; what changed.
    pub fn poll<D: Device>(&mut self, now: Instant, device: &mut D) -> Events {
        let mut ev = Events::default();
        if let Some(fixed) = self.fixed.take() {
            ev.configured = Some(fixed);
        }
        // Until nothing moves (bounded: the device holds a bounded number of frames).
        for _ in 0..64 {
            let moved = self.iface.poll(now, device, &mut self.sockets) != PollResult::None;
            self.dhcp_events(&mut ev);
            let served =
                self.serve(now, &mut ev) | self.pinging(now, &mut ev) | self.pushing(now, &mut ev);
            if !moved && !served {
                break;
            }
        }
        ev
    }

    /// How long the caller may sleep before the next [`Web::poll`] (a frame arriving
    /// wakes it sooner).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.iface.poll_delay(now, &self.sockets)
    }

    fn dhcp_events(&mut self, ev: &mut Events) {
        let Some(h) = self.dhcp else { return };
        match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => {}
            Some(dhcpv4::Event::Configured(c)) => {
                let addr = c.address;
                let router = c.router;
                self.iface.update_ip_addrs(|a| {
                    a.clear();
                    let _ = a.push(IpCidr::Ipv4(addr));
                });
                match router {
                    Some(r) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                ev.configured = Some(addr);
            }
            Some(dhcpv4::Event::Deconfigured) => {
                self.iface.update_ip_addrs(|a| a.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                ev.deconfigured = true;
            }
        }
    }

    /// Moves the push along: connects, fills the send buffer, closes, notes the end;
    /// whether anything was done.
    fn pushing(&mut self, now: Instant, ev: &mut Events) -> bool {
        let Some(mut p) = self.push else {
            return false;
        };
        if p.done || self.address().is_none() {
            return false;
        }
        let clock = self.clock.map_or(now, |c| c());
        let s = self.sockets.get_mut::<tcp::Socket>(self.pusher);
        let mut did = false;
        match p.started {
            None => {
                if s.connect(
                    self.iface.context(),
                    (p.target, DISCARD_PORT),
                    PUSH_LOCAL_PORT,
                )
                .is_err()
                {
                    p.done = true;
                    ev.pushed = Some((None, 0));
                } else {
                    p.started = Some(clock);
                }
                did = true;
            }
            Some(started) => {
                while p.sent < p.bytes && s.can_send() {
                    let at = p.sent;
                    let left = p.bytes - at;
                    let n = s
                        .send(|b| {
                            let n = b.len().min(left as usize);
                            chargen(at, &mut b[..n]);
                            (n, n)
                        })
                        .unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    p.sent += n as u64;
                    did = true;
                }
                if p.sent == p.bytes && !p.closing {
                    s.close();
                    p.closing = true;
                    did = true;
                }
                let state = s.state();
                if p.closing
                    && matches!(
                        state,
                        tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed
                    )
                {
                    // Our FIN was acknowledged, so was every byte before it.
                    p.done = true;
                    ev.pushed = Some((Some(p.sent), (clock - started).total_micros() as i64));
                    did = true;
                } else if state == tcp::State::Closed && !p.closing {
                    // Refused or reset.
                    p.done = true;
                    ev.pushed = Some((None, (clock - started).total_micros() as i64));
                    did = true;
                }
            }
        }
        self.push = Some(p);
        did
    }

    /// Sends the next echo request when due, takes replies; whether anything was done.
    fn pinging(&mut self, now: Instant, ev: &mut Events) -> bool {
        let Some(target) = self.ping else {
            return false;
        };
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        let mut did = false;
        let have_address = self.address().is_some();
        let s = self.sockets.get_mut::<icmp::Socket>(self.pinger);
        if have_address && now >= self.ping_next && s.can_send() {
            let seq = self.ping_seq;
            let repr = Icmpv4Repr::EchoRequest {
                ident: PING_IDENT,
                seq_no: seq,
                data: b"xenia-web-ping",
            };
            if let Ok(buf) = s.send(repr.buffer_len(), IpAddress::Ipv4(target)) {
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
                self.ping_sent[usize::from(seq) % 8] = self.clock.map_or(now, |c| c());
                self.ping_seq = seq.wrapping_add(1);
                self.ping_next = now + PING_EVERY;
                did = true;
            }
        }
        while let Ok((data, from)) = s.recv() {
            did = true;
            if from != IpAddress::Ipv4(target) {
                continue;
            }
            let Ok(p) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) = Icmpv4Repr::parse(&p, &caps)
                && ident == PING_IDENT
                && (1..=8).contains(&self.ping_seq.wrapping_sub(seq_no))
            {
                let rtt = self.clock.map_or(now, |c| c()) - self.ping_sent[usize::from(seq_no) % 8];
                ev.pong = Some((seq_no, rtt.total_micros() as i64));
            }
        }
        did
    }

    /// Serves every TCP socket once; whether anything was done.
    fn serve(&mut self, now: Instant, ev: &mut Events) -> bool {
        let mut did = false;
        let uptime_ms = (now - self.started).total_millis();
        for i in 0..HTTP_SOCKETS {
            let s = self.sockets.get_mut::<tcp::Socket>(self.http[i]);
            let r = &mut self.requests_in[i];
            if !s.is_open() {
                // Ready for the next connection.
                r.len = 0;
                r.answered = false;
                let _ = s.listen(HTTP_PORT);
                did = true;
                continue;
            }
            if s.can_recv() {
                let room = &mut r.bytes[r.len..];
                let got = if room.is_empty() {
                    // Past what is kept: read and drop.
                    s.recv(|b| (b.len(), b.len())).unwrap_or(0)
                } else {
                    s.recv_slice(room).unwrap_or(0)
                };
                r.len += got.min(REQUEST_MAX - r.len);
                did |= got > 0;
            }
            if r.answered {
                continue;
            }
            if let Some(method) = parse_request(&r.bytes[..r.len]) {
                let mut out = [0u8; HTTP_TX];
                let name = core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?");
                let n = page(method, name, uptime_ms, self.requests + 1, &mut out);
                if s.send_queue() == 0 && s.can_send() {
                    let _ = s.send_slice(&out[..n]);
                    s.close();
                    r.answered = true;
                    self.requests += 1;
                    ev.answered += 1;
                    did = true;
                }
            } else if s.state() == tcp::State::CloseWait {
                // The peer closed before a whole request.
                s.close();
                did = true;
            }
        }
        let d = self.sockets.get_mut::<tcp::Socket>(self.discard);
        if !d.is_open() {
            let _ = d.listen(DISCARD_PORT);
        }
        while d.can_recv() {
            let n = d.recv(|b| (b.len(), b.len())).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.discarded += n as u64;
            did = true;
        }
        if d.state() == tcp::State::CloseWait {
            d.close();
        }
        let c = self.sockets.get_mut::<tcp::Socket>(self.chargen);
        if !c.is_open() {
            self.chargen_at = 0;
            let _ = c.listen(CHARGEN_PORT);
        }
        // Whatever the peer sends is ignored (RFC 864); its close ends the stream.
        while c.can_recv() {
            if c.recv(|b| (b.len(), b.len())).unwrap_or(0) == 0 {
                break;
            }
        }
        if c.state() == tcp::State::CloseWait {
            c.close();
        } else if c.can_send() {
            let mut at = self.chargen_at;
            let sent = c
                .send(|room| {
                    at = chargen(at, room);
                    (room.len(), room.len())
                })
                .unwrap_or(0);
            self.chargen_at += sent as u64;
            did |= sent > 0;
        }
        did
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::vec::Vec;

    /// One end of a wire: frames it sends go to the other end's queue.
    struct End {
        out: Rc<RefCell<VecDeque<Vec<u8>>>>,
        inq: Rc<RefCell<VecDeque<Vec<u8>>>>,
        room: usize,
    }

    impl Link for End {
        fn can_send(&mut self) -> bool {
            self.out.borrow().len() < self.room
        }
        fn send(&mut self, frame: &[u8]) -> bool {
            if !self.can_send() {
                return false;
            }
            self.out.borrow_mut().push_back(frame.to_vec());
            true
        }
        fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
            let f = self.inq.borrow_mut().pop_front()?;
            buf[..f.len()].copy_from_slice(&f);
            Some(f.len())
        }
    }

    fn wire() -> (End, End) {
        let a = Rc::new(RefCell::new(VecDeque::new()));
        let b = Rc::new(RefCell::new(VecDeque::new()));
        (
            End {
                out: a.clone(),
                inq: b.clone(),
                room: 64,
            },
            End {
                out: b,
                inq: a,
                room: 64,
            },
        )
    }

    #[test]
    fn requests_are_recognised_when_complete() {
        assert_eq!(parse_request(b"GET / HTTP/1.0\r\n"), None);
        assert_eq!(parse_request(b"GET / HTTP/1.0\r\n\r\n"), Some(Method::Get));
        assert_eq!(
            parse_request(b"HEAD / HTTP/1.1\nHost: x\n\n"),
            Some(Method::Head)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\n\r\n"),
            Some(Method::Other)
        );
        assert_eq!(parse_request(&[b'a'; REQUEST_MAX]), Some(Method::Other));
    }

    #[test]
    fn the_page_names_the_domain_and_counts() {
        let mut out = [0u8; HTTP_TX];
        let n = page(Method::Get, "web<1>", 61_234, 7, &mut out);
        let text = core::str::from_utf8(&out[..n]).unwrap();
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(text.contains("domain: web?1?"), "escaped: {text}");
        assert!(text.contains("uptime: 61.234 s"));
        assert!(text.contains("request: 7"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(text.contains(&std::format!("Content-Length: {}\r\n", body.len())));
        let n = page(Method::Head, "web", 0, 1, &mut out);
        assert!(
            core::str::from_utf8(&out[..n])
                .unwrap()
                .ends_with("\r\n\r\n")
        );
        let n = page(Method::Other, "web", 0, 1, &mut out);
        assert!(
            core::str::from_utf8(&out[..n])
                .unwrap()
                .starts_with("HTTP/1.0 405")
        );
    }

    #[test]
    fn chargen_follows_rfc_864() {
        let mut b = [0u8; 148];
        assert_eq!(chargen(0, &mut b), 148);
        assert_eq!(&b[..3], b" !\"");
        assert_eq!(&b[72..75], b"\r\n!");
        // The stream is the same whatever the chunks.
        let mut c = [0u8; 148];
        let at = chargen(0, &mut c[..50]);
        chargen(at, &mut c[50..]);
        assert_eq!(b, c);
    }

    /// A host-side client interface on the other end of the wire.
    struct Client {
        iface: Interface,
        dev: Adapter<End>,
    }

    const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 2, 20);
    const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

    fn client(end: End) -> Client {
        let mut dev = Adapter::new(end, [2, 0, 0, 0, 0, 2]);
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress([
            2, 0, 0, 0, 0, 2,
        ])));
        let mut iface = Interface::new(config, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(CLIENT.into(), 24));
        });
        Client { iface, dev }
    }

    /// Runs both ends until `done` says so (bounded: simulated time, 10 ms a step).
    fn run<'a>(
        web: &mut Web<'a>,
        wdev: &mut Adapter<End>,
        c: &mut Client,
        cs: &mut SocketSet<'_>,
        mut step: impl FnMut(&mut SocketSet<'_>, &mut Web<'a>) -> bool,
        t: &mut Instant,
    ) {
        for _ in 0..5000 {
            *t += Duration::from_millis(10);
            web.poll(*t, wdev);
            c.iface.poll(*t, &mut c.dev, cs);
            if step(cs, web) {
                return;
            }
        }
        panic!("no progress");
    }

    fn http_get(
        web: &mut Web<'_>,
        wdev: &mut Adapter<End>,
        c: &mut Client,
        t: &mut Instant,
        port: u16,
    ) -> std::string::String {
        let mut rx = [0u8; 4096];
        let mut tx = [0u8; 1024];
        let mut storage = [SocketStorage::EMPTY; 1];
        let mut cs = SocketSet::new(&mut storage[..]);
        let h = cs.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        ));
        cs.get_mut::<tcp::Socket>(h)
            .connect(c.iface.context(), (SERVER, 80), port)
            .unwrap();
        let mut sent = false;
        let mut got = Vec::new();
        run(
            web,
            wdev,
            c,
            &mut cs,
            |cs, _| {
                let s = cs.get_mut::<tcp::Socket>(h);
                if s.can_send() && !sent {
                    s.send_slice(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
                    sent = true;
                }
                while s.can_recv() {
                    s.recv(|b| {
                        got.extend_from_slice(b);
                        (b.len(), ())
                    })
                    .unwrap();
                }
                if sent && !s.may_recv() {
                    s.close();
                    return true;
                }
                false
            },
            t,
        );
        std::string::String::from_utf8(got).unwrap()
    }

    /// Runs `f` on a thread with a stack big enough for two [`Web`]s.
    fn big_stack(f: fn()) {
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_push_reaches_another_webs_discard() {
        big_stack(push_reaches_discard);
    }

    fn push_reaches_discard() {
        let (a, b) = wire();
        let (ma, mb) = ([0, 0x16, 0x3e, 0, 0, 1], [0, 0x16, 0x3e, 0, 0, 2]);
        let (mut da, mut db) = (Adapter::new(a, ma), Adapter::new(b, mb));
        let mut ba = std::boxed::Box::new(Buffers::default());
        let mut bb = std::boxed::Box::new(Buffers::default());
        let mut t = Instant::from_secs(100);
        let cidr = |a| Some((Ipv4Cidr::new(a, 24), SERVER));
        let mut wa = Web::new(&mut ba, &mut da, ma, "a", cidr(CLIENT), 1, t);
        let mut wb = Web::new(&mut bb, &mut db, mb, "b", cidr(SERVER), 2, t);
        const BYTES: u64 = 300_000;
        wa.push(SERVER, BYTES);
        let mut pushed = None;
        for _ in 0..20_000 {
            t += Duration::from_millis(1);
            pushed = pushed.or(wa.poll(t, &mut da).pushed);
            wb.poll(t, &mut db);
            if pushed.is_some() && wb.discarded == BYTES {
                break;
            }
        }
        let (bytes, us) = pushed.expect("the push ended");
        assert_eq!(bytes, Some(BYTES));
        assert!(us > 0);
        assert_eq!(wb.discarded, BYTES);
        // Once: no second push.
        for _ in 0..100 {
            t += Duration::from_millis(1);
            assert_eq!(wa.poll(t, &mut da).pushed, None);
        }
    }

    #[test]
    fn a_push_to_nobody_fails() {
        big_stack(push_refused);
    }

    fn push_refused() {
        let (a, b) = wire();
        let (ma, mb) = ([0, 0x16, 0x3e, 0, 0, 1], [0, 0x16, 0x3e, 0, 0, 2]);
        let (mut da, mut db) = (Adapter::new(a, ma), Adapter::new(b, mb));
        let mut ba = std::boxed::Box::new(Buffers::default());
        let mut t = Instant::from_secs(100);
        let mut wa = Web::new(
            &mut ba,
            &mut da,
            ma,
            "a",
            Some((Ipv4Cidr::new(CLIENT, 24), SERVER)),
            1,
            t,
        );
        // The peer answers with a plain smoltcp interface without a discard service: RST.
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mb)));
        let mut iface = Interface::new(config, &mut db, t);
        iface.update_ip_addrs(|x| {
            let _ = x.push(IpCidr::new(SERVER.into(), 24));
        });
        let mut storage = [SocketStorage::EMPTY; 1];
        let mut none = SocketSet::new(&mut storage[..]);
        wa.push(SERVER, 1000);
        for _ in 0..20_000 {
            t += Duration::from_millis(1);
            if let Some((bytes, _)) = wa.poll(t, &mut da).pushed {
                assert_eq!(bytes, None);
                return;
            }
            iface.poll(t, &mut db, &mut none);
        }
        panic!("the refused push never ended");
    }

    #[test]
    fn http_discard_and_chargen_over_a_wire() {
        let (a, b) = wire();
        let mac = [0, 0x16, 0x3e, 1, 2, 3];
        let mut wdev = Adapter::new(a, mac);
        let mut bufs = std::boxed::Box::new(Buffers::default());
        let mut t = Instant::from_secs(100);
        let mut web = Web::new(
            &mut bufs,
            &mut wdev,
            mac,
            "web",
            Some((Ipv4Cidr::new(SERVER, 24), CLIENT)),
            1,
            t,
        );
        assert_eq!(
            web.poll(t, &mut wdev).configured,
            Some(Ipv4Cidr::new(SERVER, 24))
        );
        let mut c = client(b);
        let first = http_get(&mut web, &mut wdev, &mut c, &mut t, 40000);
        assert!(first.starts_with("HTTP/1.0 200 OK"), "{first}");
        assert!(
            first.contains("domain: web") && first.contains("request: 1"),
            "{first}"
        );
        let second = http_get(&mut web, &mut wdev, &mut c, &mut t, 40001);
        assert!(second.contains("request: 2"), "{second}");
        assert_eq!(web.requests, 2);

        // Discard: 200 KB in, all counted.
        let mut rx = [0u8; 1024];
        let mut tx = std::vec![0u8; 32 * 1024];
        let mut storage = [SocketStorage::EMPTY; 2];
        let mut cs = SocketSet::new(&mut storage[..]);
        let h = cs.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        ));
        cs.get_mut::<tcp::Socket>(h)
            .connect(c.iface.context(), (SERVER, DISCARD_PORT), 40002)
            .unwrap();
        let mut left = 200_000usize;
        run(
            &mut web,
            &mut wdev,
            &mut c,
            &mut cs,
            |cs, web| {
                let s = cs.get_mut::<tcp::Socket>(h);
                if s.can_send() && left > 0 {
                    left -= s
                        .send(|b| {
                            let n = b.len().min(left);
                            (n, n)
                        })
                        .unwrap();
                }
                web.discarded == 200_000
            },
            &mut t,
        );

        // Chargen: 100 KB out, the RFC's pattern.
        let mut rx2 = std::vec![0u8; 32 * 1024];
        let mut tx2 = [0u8; 64];
        let h2 = cs.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx2[..]),
            tcp::SocketBuffer::new(&mut tx2[..]),
        ));
        cs.get_mut::<tcp::Socket>(h2)
            .connect(c.iface.context(), (SERVER, CHARGEN_PORT), 40003)
            .unwrap();
        let mut got = Vec::new();
        run(
            &mut web,
            &mut wdev,
            &mut c,
            &mut cs,
            |cs, _| {
                let s = cs.get_mut::<tcp::Socket>(h2);
                while s.can_recv() {
                    s.recv(|b| {
                        got.extend_from_slice(b);
                        (b.len(), ())
                    })
                    .unwrap();
                }
                got.len() >= 100_000
            },
            &mut t,
        );
        let mut want = std::vec![0u8; got.len()];
        chargen(0, &mut want);
        assert_eq!(got, want);

        // Ping the client: its interface answers.
        web.ping(CLIENT);
        let mut pongs = Vec::new();
        let mut none = [SocketStorage::EMPTY; 1];
        let mut cs = SocketSet::new(&mut none[..]);
        for _ in 0..500 {
            t += Duration::from_millis(10);
            if let Some(p) = web.poll(t, &mut wdev).pong {
                pongs.push(p.0);
            }
            c.iface.poll(t, &mut c.dev, &mut cs);
        }
        assert!(pongs.len() >= 3 && pongs[..3] == [0, 1, 2], "{pongs:?}");
        assert_eq!(wdev.foreign, 0);
        assert_eq!(wdev.tx_dropped, 0);
    }

    #[test]
    fn frames_for_another_unicast_address_are_counted() {
        let (a, b) = wire();
        let mut dev = Adapter::new(a, [0, 0x16, 0x3e, 1, 2, 3]);
        let mut other = b;
        let mut frame = [0u8; 60];
        for dst in [
            [0xff; 6],
            [0x01, 0, 0x5e, 0, 0, 1],
            [0, 0x16, 0x3e, 1, 2, 3],
            [0, 0x16, 0x3e, 1, 2, 4],
        ] {
            frame[..6].copy_from_slice(&dst);
            assert!(other.send(&frame));
        }
        while let Some((rx, _)) = dev.receive(Instant::ZERO) {
            phy::RxToken::consume(rx, |_| ());
        }
        assert_eq!(dev.foreign, 1);
    }
}
