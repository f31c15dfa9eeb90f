//! netback's decisions, as plain data (guest-abi [`netif`](guest_abi::netif)): whether the
//! slots a frontend put in its transmit ring make a frame the backend may copy, what its
//! ring indexes claim, and where a virtual interface's nodes are in xenstore. The kernel's
//! `netback` module applies them with grant copies, the bridge and the store.
//!
//! **What it trusts.** Nothing of the frontend: the slots are 12-byte entries copied out of
//! the shared ring and checked here, whole frame at a time, before any byte of data is
//! copied; the producer indexes are claims checked against what the backend itself
//! consumed and answered.
//!
//! **Xen's rules** (Linux's `xen-netback`, `xenvif_tx_build_gops`, `xenvif_get_extras`,
//! `xenvif_count_requests`): a slot whose bytes cross its page, a frame that claims more
//! slots than were published, [`FATAL_SLOTS`] slots or more, an extra-info slot of an
//! unknown type and a producer more than a ring ahead are the frontend's fault beyond
//! doubt: its interface stops being served (Linux's `xenvif_fatal_tx_err`). A frame with
//! more than [`XEN_NETIF_NR_SLOTS_MIN`] slots, a slot larger than what the frame has left,
//! a frame shorter than an Ethernet header or longer than [`ETH_FRAME_LEN`], or an extra the
//! backend did not offer (GSO, multicast control) is dropped: every slot answers
//! `NETIF_RSP_ERROR` and the ring goes on.

use alloc::format;
use alloc::string::String;

use guest_abi::netif::{
    ETH_FRAME_LEN, NETTXF_CSUM_BLANK, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, NetifTxRequest,
    XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
    XEN_NETIF_EXTRA_TYPE_MCAST_DEL, XEN_NETIF_NR_SLOTS_MIN,
};

/// Where the toolstack writes the backends of virtual network interfaces.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vif";
/// The bridge a vif may name (`bridge` node); the only one dom0 has.
pub const BRIDGE: &str = "xenbr0";
/// Bytes of an Ethernet header: a shorter frame is refused.
pub const ETH_HLEN: usize = 14;
/// Slots from which a frame is taken as malicious (Linux's `fatal_skb_slots` default,
/// `FATAL_SKB_SLOTS_DEFAULT`).
pub const FATAL_SLOTS: usize = 20;
/// `XEN_NETIF_EXTRA_TYPE_HASH`: a hash the frontend computed; ignored.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// Extra-info types are below this (`XEN_NETIF_EXTRA_TYPE_MAX`).
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// Extra-info slots a frame may carry: one of each type.
pub const MAX_EXTRAS: usize = (XEN_NETIF_EXTRA_TYPE_MAX - 1) as usize;
/// Slots one frame may take at most (first, extras, data slots below [`FATAL_SLOTS`]).
pub const MAX_FRAME_SLOTS: usize = 1 + MAX_EXTRAS + FATAL_SLOTS;
/// Bytes of a page: no slot's bytes may leave theirs.
pub const PAGE_SIZE: usize = 4096;

/// Bytes to copy for a frame: a piece of one granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Piece {
    /// The frontend's grant reference.
    pub gref: u32,
    /// Offset in its page.
    pub offset: u16,
    /// Bytes (may be 0).
    pub len: u16,
}

/// What a slot of a checked frame is, for its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// The first slot or a data slot: answered with the frame's status.
    #[default]
    Data,
    /// An extra-info slot: answered `NETIF_RSP_NULL`.
    Extra,
}

/// Why a frame is dropped (every slot answered `NETIF_RSP_ERROR`; the ring goes on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than [`XEN_NETIF_NR_SLOTS_MIN`] slots.
    TooManySlots(usize),
    /// A slot larger than what the first slot's `size` leaves.
    SlotTooLarge {
        /// The slot's index in the frame.
        slot: usize,
        /// Its size.
        size: u16,
        /// Bytes the frame had left.
        left: u16,
    },
    /// Shorter than an Ethernet header.
    TooShort(u16),
    /// Longer than [`ETH_FRAME_LEN`].
    TooLong(u16),
    /// An extra the backend did not offer (GSO, multicast control).
    ExtraNotOffered(u8),
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::TooManySlots(n) => write!(
                f,
                "{n} slots, more than {XEN_NETIF_NR_SLOTS_MIN}: frame dropped"
            ),
            Refusal::SlotTooLarge { slot, size, left } => write!(
                f,
                "slot {slot} has {size} bytes, the frame only {left} left: frame dropped"
            ),
            Refusal::TooShort(n) => write!(f, "frame of {n} bytes, shorter than {ETH_HLEN}"),
            Refusal::TooLong(n) => write!(f, "frame of {n} bytes, longer than {ETH_FRAME_LEN}"),
            Refusal::ExtraNotOffered(t) => write!(f, "extra info of type {t} was not offered"),
        }
    }
}

/// Why the interface stops being served (Linux's `xenvif_fatal_tx_err`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// The frame's slots run past what the producer published.
    Incomplete {
        /// Slots the frame needs at least.
        needs: usize,
        /// Slots published.
        published: u32,
    },
    /// [`FATAL_SLOTS`] slots or more.
    Malicious(usize),
    /// A slot's bytes leave its page.
    CrossesPage {
        /// The slot's index in the frame.
        slot: usize,
        /// Its offset.
        offset: u16,
        /// Its size.
        size: u16,
    },
    /// An extra-info slot of type 0, unknown, or given twice.
    BadExtra(u8),
    /// The producer index claims more than a ring's worth.
    ProducerAhead {
        /// The claim.
        req_prod: u32,
        /// What the backend answered so far.
        rsp_prod: u32,
    },
}

impl core::fmt::Display for Fatal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fatal::Incomplete { needs, published } => write!(
                f,
                "a frame asks for {needs} slots, only {published} published"
            ),
            Fatal::Malicious(n) => write!(f, "a frame of {n} slots or more (malicious)"),
            Fatal::CrossesPage { slot, offset, size } => write!(
                f,
                "slot {slot} crosses its page (offset {offset}, size {size})"
            ),
            Fatal::BadExtra(t) => write!(f, "extra info of type {t} (invalid or repeated)"),
            Fatal::ProducerAhead { req_prod, rsp_prod } => write!(
                f,
                "req_prod {req_prod} is more than a ring ahead of rsp_prod {rsp_prod}"
            ),
        }
    }
}

/// A frame as checked: how many slots it takes, what each is, and whether it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxFrame {
    /// Slots taken from the ring (first, extras, data slots).
    pub slots: usize,
    /// What each of the first `slots` is.
    pub roles: [Role; MAX_FRAME_SLOTS],
    /// The pieces to copy, in order, or why the frame is dropped.
    pub verdict: Result<Pieces, Refusal>,
}

/// The bytes of an accepted frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pieces {
    /// The pieces (the first `nr`).
    pub pieces: [Piece; XEN_NETIF_NR_SLOTS_MIN],
    /// Pieces used.
    pub nr: usize,
    /// The frame's length (their sum).
    pub len: usize,
    /// `NETTXF_csum_blank`: the frontend left its TCP or UDP checksum partial (Linux's
    /// netfront does for every such frame, checksum offload being assumed of a backend);
    /// [`fill_checksum`] completes it before the frame leaves the vif.
    pub csum_blank: bool,
}

/// Checks the frame starting at the first of `published` slots (`slot(i)` is the `i`-th
/// published request from there), by the rules in the module's doc.
pub fn check_tx(slot: impl Fn(u32) -> NetifTxRequest, published: u32) -> Result<TxFrame, Fatal> {
    let first = slot(0);
    let mut roles = [Role::Data; MAX_FRAME_SLOTS];
    let mut at: usize = 1;
    let mut refused: Option<Refusal> = None;
    // Extra-info slots follow the first.
    if first.flags & NETTXF_EXTRA_INFO != 0 {
        let mut seen = [false; XEN_NETIF_EXTRA_TYPE_MAX as usize];
        loop {
            if at as u32 >= published {
                return Err(Fatal::Incomplete {
                    needs: at + 1,
                    published,
                });
            }
            // An extra is 8 bytes at the start of a slot: type, flags, data.
            let b = slot(at as u32).to_bytes();
            let (kind, flags) = (b[0], b[1]);
            if kind == 0 || kind >= XEN_NETIF_EXTRA_TYPE_MAX || seen[kind as usize] {
                return Err(Fatal::BadExtra(kind));
            }
            seen[kind as usize] = true;
            roles[at] = Role::Extra;
            at += 1;
            if matches!(
                kind,
                XEN_NETIF_EXTRA_TYPE_GSO
                    | XEN_NETIF_EXTRA_TYPE_MCAST_ADD
                    | XEN_NETIF_EXTRA_TYPE_MCAST_DEL
            ) && refused.is_none()
            {
                refused = Some(Refusal::ExtraNotOffered(kind));
            }
            if flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                break;
            }
        }
    }
    // Data slots after the first (and its extras), as Linux counts them.
    let mut pieces = [Piece::default(); XEN_NETIF_NR_SLOTS_MIN];
    let mut left = first.size;
    let mut data_slots = 1usize;
    let mut more = first.flags & NETTXF_MORE_DATA != 0;
    while more {
        if data_slots >= FATAL_SLOTS {
            return Err(Fatal::Malicious(data_slots + 1));
        }
        if at as u32 >= published {
            return Err(Fatal::Incomplete {
                needs: at + 1,
                published,
            });
        }
        let s = slot(at as u32);
        if usize::from(s.offset) + usize::from(s.size) > PAGE_SIZE {
            return Err(Fatal::CrossesPage {
                slot: data_slots,
                offset: s.offset,
                size: s.size,
            });
        }
        if refused.is_none() && data_slots >= XEN_NETIF_NR_SLOTS_MIN {
            refused = Some(Refusal::TooManySlots(data_slots + 1));
        }
        if refused.is_none() && s.size > left {
            refused = Some(Refusal::SlotTooLarge {
                slot: data_slots,
                size: s.size,
                left,
            });
        }
        if refused.is_none() {
            pieces[data_slots] = Piece {
                gref: s.gref,
                offset: s.offset,
                len: s.size,
            };
            left -= s.size;
        }
        roles[at] = Role::Data;
        more = s.flags & NETTXF_MORE_DATA != 0;
        at += 1;
        data_slots += 1;
    }
    let frame = TxFrame {
        slots: at,
        roles,
        verdict: Err(Refusal::TooShort(0)),
    };
    if let Some(d) = refused {
        return Ok(TxFrame {
            verdict: Err(d),
            ..frame
        });
    }
    if usize::from(first.size) < ETH_HLEN {
        return Ok(TxFrame {
            verdict: Err(Refusal::TooShort(first.size)),
            ..frame
        });
    }
    if usize::from(first.size) > ETH_FRAME_LEN {
        return Ok(TxFrame {
            verdict: Err(Refusal::TooLong(first.size)),
            ..frame
        });
    }
    // What the other slots left is the first slot's own bytes.
    if usize::from(first.offset) + usize::from(left) > PAGE_SIZE {
        return Err(Fatal::CrossesPage {
            slot: 0,
            offset: first.offset,
            size: left,
        });
    }
    pieces[0] = Piece {
        gref: first.gref,
        offset: first.offset,
        len: left,
    };
    Ok(TxFrame {
        verdict: Ok(Pieces {
            pieces,
            nr: data_slots,
            len: usize::from(first.size),
            csum_blank: first.flags & NETTXF_CSUM_BLANK != 0,
        }),
        ..frame
    })
}

/// What a ring's `req_prod` claims, given the backend's own consumer index and response
/// producer, for a ring of `size` entries: how many requests are new, or the reason the
/// claim is impossible (more outstanding than the ring holds, or a producer behind the
/// consumer; Linux's "Impossible number of requests").
pub fn new_requests(req_prod: u32, req_cons: u32, rsp_prod: u32, size: u32) -> Result<u32, Fatal> {
    let outstanding = req_prod.wrapping_sub(rsp_prod);
    let new = req_prod.wrapping_sub(req_cons);
    if outstanding <= size && new <= outstanding {
        Ok(new)
    } else {
        Err(Fatal::ProducerAhead { req_prod, rsp_prod })
    }
}

/// A device named by a path under [`BACKEND_ROOT`]: `(domid, devid)` for
/// `.../vif/<domid>/<devid>` and anything below it, `None` for other paths.
pub fn device_of(path: &str) -> Option<(u16, u32)> {
    let rest = path.strip_prefix(BACKEND_ROOT)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let dom = parts.next()?.parse().ok()?;
    let dev = parts.next()?.parse().ok()?;
    Some((dom, dev))
}

/// The backend directory of interface `devid` of domain `dom`.
pub fn backend_path(dom: u16, devid: u32) -> String {
    format!("{BACKEND_ROOT}/{dom}/{devid}")
}

/// The frontend directory the toolstack names for it (`/local/domain/<dom>/device/vif/<devid>`).
pub fn frontend_path(dom: u16, devid: u32) -> String {
    format!("/local/domain/{dom}/device/vif/{devid}")
}

/// Where `xenbus_dev_fatal` puts the error of a backend device: `error/<backend path>` under
/// dom0's home, node `error`.
pub fn error_dir(dom: u16, devid: u32) -> String {
    format!("/local/domain/0/error/backend/vif/{dom}/{devid}")
}

/// The errors of every interface of `dom` (removed with the domain).
pub fn error_root(dom: u16) -> String {
    format!("/local/domain/0/error/backend/vif/{dom}")
}

/// The bridge port's name, as Xen's hotplug script names the interface (`vif<dom>.<devid>`).
pub fn port_name(dom: u16, devid: u32) -> String {
    format!("vif{dom}.{devid}")
}

/// The interface's MAC from its backend directory's `mac` node (the toolstack's, which the
/// domain cannot write), as Linux's netback reads it (`xen_net_read_mac`): six groups of one
/// or two hex digits; a multicast or all-zero address is refused as well, since no frame may
/// come from one.
pub fn backend_mac(text: &str) -> Option<[u8; 6]> {
    let mac = dom0_tools::vif::parse_mac(text.trim())?;
    (mac[0] & 1 == 0 && mac != [0; 6]).then_some(mac)
}

/// Antispoofing (what Xen's `vif-bridge` script sets up with `ebtables` when asked to, done
/// here always): a frame a domain sends may carry only its interface's own MAC as source,
/// so that it can neither take over another domain's address on the bridge (the bridge
/// learns sources) nor fill the bridge's address table with made-up ones.
pub fn source_allowed(frame: &[u8], mac: &[u8; 6]) -> bool {
    frame.get(6..12) == Some(&mac[..])
}

/// Completes the TCP or UDP checksum of an IPv4 `frame` (Ethernet II, no VLAN tag) sent
/// with `NETTXF_csum_blank`, as Linux's netback does (`skb_checksum_setup`): the checksum
/// over the pseudo-header and the segment the IP header bounds. Anything else (not IPv4,
/// a fragment, another protocol, lengths that do not fit the frame) is left as it is and
/// `false` returned: the frame goes on, and its receiver drops it if the checksum is wrong.
pub fn fill_checksum(frame: &mut [u8]) -> bool {
    const IPV4: [u8; 2] = [0x08, 0x00];
    if frame.len() < ETH_HLEN + 20 || frame[12..14] != IPV4 {
        return false;
    }
    let ip = &frame[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // More fragments, or an offset: not a whole segment.
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || frag != 0 {
        return false;
    }
    let (proto, at) = match ip[9] {
        6 => (6u8, 16usize),
        17 => (17u8, 6usize),
        _ => return false,
    };
    let seg_len = total - ihl;
    if seg_len < at + 2 {
        return false;
    }
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let hi = u32::from(c[0]) << 8;
            sum += hi | c.get(1).map_or(0, |&l| u32::from(l));
        }
    };
    add(&ip[12..20]);
    add(&[0, proto]);
    add(&(seg_len as u16).to_be_bytes());
    let start = ETH_HLEN + ihl;
    frame[start + at] = 0;
    frame[start + at + 1] = 0;
    add(&frame[start..start + seg_len]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut c = !(sum as u16);
    // UDP sends a computed 0 as 0xffff (0 means no checksum).
    if c == 0 && proto == 17 {
        c = 0xffff;
    }
    frame[start + at..start + at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {

    /// A UDP datagram (10.0.2.15:68 -> 10.0.2.2:67, "hello") and a TCP segment with a
    /// blank checksum get the checksums a packet capture computes; other frames are left.
    #[test]
    fn blank_checksums_are_filled() {
        fn frame(proto: u8, payload: &[u8]) -> alloc::vec::Vec<u8> {
            let mut f = alloc::vec![0u8; 14];
            f[12] = 0x08;
            let total = (20 + payload.len()) as u16;
            f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0]);
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[10, 0, 2, 15, 10, 0, 2, 2]);
            f.extend_from_slice(payload);
            f
        }
        // One's-complement sum of pseudo-header and segment: 0xffff when right.
        fn verify(f: &[u8], proto: u8) -> u16 {
            let seg = &f[34..];
            let mut sum: u32 = 0;
            let mut words = alloc::vec::Vec::new();
            words.extend_from_slice(&f[26..34]);
            words.extend_from_slice(&[0, proto]);
            words.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            words.extend_from_slice(seg);
            if words.len() % 2 == 1 {
                words.push(0);
            }
            for c in words.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            sum as u16
        }
        let mut udp = frame(
            17,
            &[
                0, 68, 0, 67, 0, 13, 0x12, 0x34, b'h', b'e', b'l', b'l', b'o',
            ],
        );
        assert!(fill_checksum(&mut udp));
        assert_eq!(verify(&udp, 17), 0xffff);
        assert_ne!(&udp[40..42], &[0x12, 0x34]);
        let mut tcp = frame(
            6,
            &[
                0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0xaa, 0xbb, 0,
                0, b'x',
            ],
        );
        assert!(fill_checksum(&mut tcp));
        assert_eq!(verify(&tcp, 6), 0xffff);
        // ICMP, a fragment, a lying length, ARP: left alone.
        let icmp = frame(1, &[8, 0, 0, 0]);
        let mut f = icmp.clone();
        assert!(!fill_checksum(&mut f));
        assert_eq!(f, icmp);
        let mut frag = frame(17, &[0, 68, 0, 67, 0, 8, 0, 0]);
        frag[20] = 0x20;
        assert!(!fill_checksum(&mut frag));
        let mut long = frame(17, &[0, 68, 0, 67, 0, 8, 0, 0]);
        long[16..18].copy_from_slice(&1500u16.to_be_bytes());
        assert!(!fill_checksum(&mut long));
        let mut arp = alloc::vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!fill_checksum(&mut arp));
        assert!(!fill_checksum(&mut [0u8; 10]));
    }
    use super::*;
    use alloc::vec::Vec;
    use guest_abi::netif::NET_TX_RING_SIZE;
    use proptest::prelude::*;

    fn req(gref: u32, offset: u16, flags: u16, size: u16) -> NetifTxRequest {
        NetifTxRequest {
            gref,
            offset,
            flags,
            id: gref as u16,
            size,
        }
    }

    fn run(slots: &[NetifTxRequest]) -> Result<TxFrame, Fatal> {
        check_tx(|i| slots[i as usize], slots.len() as u32)
    }

    fn extra(kind: u8, flags: u8) -> NetifTxRequest {
        let mut b = [0u8; 12];
        b[0] = kind;
        b[1] = flags;
        NetifTxRequest::from_bytes(&b)
    }

    #[test]
    fn one_slot_frames() {
        let f = run(&[req(7, 100, 0, 60)]).unwrap();
        assert_eq!(f.slots, 1);
        let p = f.verdict.unwrap();
        assert_eq!((p.nr, p.len), (1, 60));
        assert_eq!(
            p.pieces[0],
            Piece {
                gref: 7,
                offset: 100,
                len: 60
            }
        );
        assert_eq!(
            run(&[req(7, 0, 0, 1514)]).unwrap().verdict.unwrap().len,
            1514
        );
        assert_eq!(
            run(&[req(7, 0, 0, 13)]).unwrap().verdict,
            Err(Refusal::TooShort(13))
        );
        assert_eq!(
            run(&[req(7, 0, 0, 1515)]).unwrap().verdict,
            Err(Refusal::TooLong(1515))
        );
        assert_eq!(
            run(&[req(7, 4000, 0, 200)]),
            Err(Fatal::CrossesPage {
                slot: 0,
                offset: 4000,
                size: 200
            })
        );
    }

    #[test]
    fn several_slots() {
        let f = run(&[
            req(1, 0, NETTXF_MORE_DATA, 1000),
            req(2, 10, NETTXF_MORE_DATA, 300),
            req(3, 4000, 0, 96),
            req(9, 0, 0, 60),
        ])
        .unwrap();
        assert_eq!(f.slots, 3);
        let p = f.verdict.unwrap();
        assert_eq!((p.nr, p.len), (3, 1000));
        assert_eq!(p.pieces[0].len, 604);
        assert_eq!(
            p.pieces[1],
            Piece {
                gref: 2,
                offset: 10,
                len: 300
            }
        );
        assert_eq!(
            p.pieces[2],
            Piece {
                gref: 3,
                offset: 4000,
                len: 96
            }
        );
        // A slot larger than the frame has left: dropped, the slots still taken.
        let f = run(&[req(1, 0, NETTXF_MORE_DATA, 100), req(2, 0, 0, 101)]).unwrap();
        assert_eq!(f.slots, 2);
        assert!(matches!(
            f.verdict,
            Err(Refusal::SlotTooLarge { slot: 1, .. })
        ));
        // Past the page: fatal.
        assert!(matches!(
            run(&[req(1, 0, NETTXF_MORE_DATA, 100), req(2, 4090, 0, 10)]),
            Err(Fatal::CrossesPage { slot: 1, .. })
        ));
        // More slots than published.
        assert_eq!(
            run(&[req(1, 0, NETTXF_MORE_DATA, 100)]),
            Err(Fatal::Incomplete {
                needs: 2,
                published: 1
            })
        );
    }

    fn chain(n: usize) -> Vec<NetifTxRequest> {
        let mut v: Vec<NetifTxRequest> = (0..n)
            .map(|i| {
                req(
                    i as u32,
                    0,
                    NETTXF_MORE_DATA,
                    if i == 0 { 1400 } else { 10 },
                )
            })
            .collect();
        v[n - 1].flags = 0;
        v
    }

    #[test]
    fn slot_counts() {
        let f = run(&chain(18)).unwrap();
        assert_eq!(f.verdict.unwrap().nr, 18);
        let f = run(&chain(19)).unwrap();
        assert_eq!(
            (f.slots, f.verdict.map(|_| ())),
            (19, Err(Refusal::TooManySlots(19)))
        );
        let f = run(&chain(20)).unwrap();
        assert_eq!(f.slots, 20);
        assert!(f.verdict.is_err());
        assert_eq!(run(&chain(21)), Err(Fatal::Malicious(21)));
        assert_eq!(run(&chain(200)), Err(Fatal::Malicious(21)));
    }

    #[test]
    fn extras() {
        let f = run(&[
            req(1, 0, NETTXF_EXTRA_INFO | NETTXF_MORE_DATA, 100),
            extra(XEN_NETIF_EXTRA_TYPE_HASH, 0),
            req(2, 0, 0, 40),
        ])
        .unwrap();
        assert_eq!(f.slots, 3);
        assert_eq!(f.roles[..3], [Role::Data, Role::Extra, Role::Data]);
        assert_eq!(f.verdict.unwrap().pieces[1].gref, 2);
        let f = run(&[
            req(1, 0, NETTXF_EXTRA_INFO, 100),
            extra(XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE),
            extra(XEN_NETIF_EXTRA_TYPE_HASH, 0),
        ])
        .unwrap();
        assert_eq!(f.slots, 3);
        assert_eq!(f.verdict, Err(Refusal::ExtraNotOffered(1)));
        assert_eq!(
            run(&[req(1, 0, NETTXF_EXTRA_INFO, 100), extra(0, 0)]),
            Err(Fatal::BadExtra(0))
        );
        assert_eq!(
            run(&[req(1, 0, NETTXF_EXTRA_INFO, 100), extra(9, 0)]),
            Err(Fatal::BadExtra(9))
        );
        assert_eq!(
            run(&[
                req(1, 0, NETTXF_EXTRA_INFO, 100),
                extra(4, XEN_NETIF_EXTRA_FLAG_MORE),
                extra(4, 0)
            ]),
            Err(Fatal::BadExtra(4))
        );
        assert!(matches!(
            run(&[
                req(1, 0, NETTXF_EXTRA_INFO, 100),
                extra(4, XEN_NETIF_EXTRA_FLAG_MORE)
            ]),
            Err(Fatal::Incomplete { .. })
        ));
    }

    #[test]
    fn ring_claims() {
        let n = NET_TX_RING_SIZE;
        assert_eq!(new_requests(0, 0, 0, n), Ok(0));
        assert_eq!(new_requests(256, 0, 0, n), Ok(256));
        assert!(new_requests(257, 0, 0, n).is_err());
        assert!(new_requests(10, 12, 12, n).is_err());
        assert_eq!(new_requests(3, u32::MAX - 2, u32::MAX - 2, n), Ok(6));
    }

    #[test]
    fn paths() {
        assert_eq!(
            device_of("/local/domain/0/backend/vif/3/0/state"),
            Some((3, 0))
        );
        assert_eq!(device_of("/local/domain/0/backend/vif/3"), None);
        assert_eq!(device_of("/local/domain/0/backend/vbd/3/0"), None);
        assert_eq!(backend_path(3, 1), "/local/domain/0/backend/vif/3/1");
        assert_eq!(frontend_path(3, 1), "/local/domain/3/device/vif/1");
        assert_eq!(port_name(3, 1), "vif3.1");
        assert_eq!(error_dir(3, 1), "/local/domain/0/error/backend/vif/3/1");
    }

    #[test]
    fn antispoofing() {
        let mac = [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03];
        assert_eq!(backend_mac("00:16:3e:01:02:03"), Some(mac));
        assert_eq!(backend_mac("0:16:3e:1:2:3\n"), Some(mac));
        for bad in [
            "",
            "00:16:3e:01:02",
            "00:16:3e:01:02:03:04",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "00:16:3e:01:02:0g",
            "00:16:3e:01:02:003",
        ] {
            assert_eq!(backend_mac(bad), None, "{bad:?}");
        }
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&mac);
        assert!(source_allowed(&frame, &mac));
        // Another domain's address, or one made up, as source.
        frame[11] ^= 1;
        assert!(!source_allowed(&frame, &mac));
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        assert!(!source_allowed(&frame, &mac));
        // Too short to carry a source at all.
        assert!(!source_allowed(&frame[..11], &mac));
        assert!(source_allowed(&[&[0xffu8; 6][..], &mac[..]].concat(), &mac));
    }

    proptest! {
        /// Whatever the slots, an accepted frame is 14..=1514 bytes, made of at most 18
        /// pieces that each stay in their page and add up to it, and never takes more slots
        /// than were published.
        #[test]
        fn accepted_frames_stay_inside(
            raw in proptest::collection::vec(any::<[u8; 12]>(), 1..30),
            published in 1u32..30,
        ) {
            let slots: Vec<NetifTxRequest> = raw.iter().map(NetifTxRequest::from_bytes).collect();
            let published = published.min(slots.len() as u32);
            if let Ok(f) = check_tx(|i| slots[i as usize], published) {
                    prop_assert!(f.slots >= 1 && f.slots as u32 <= published);
                    prop_assert!(f.slots <= MAX_FRAME_SLOTS);
                    if let Ok(p) = f.verdict {
                        prop_assert!((ETH_HLEN..=ETH_FRAME_LEN).contains(&p.len));
                        prop_assert!(p.nr >= 1 && p.nr <= XEN_NETIF_NR_SLOTS_MIN);
                        let mut sum = 0usize;
                        for q in &p.pieces[..p.nr] {
                            prop_assert!(usize::from(q.offset) + usize::from(q.len) <= PAGE_SIZE);
                            sum += usize::from(q.len);
                        }
                        prop_assert_eq!(sum, p.len);
                    }
            }
        }
    }
}
