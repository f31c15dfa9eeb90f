//! Xen's split block device protocol (`io/blkif.h`, `io/ring.h`, `io/xenbus.h`,
//! `io/protocols.h`): the request and response of the shared ring, the ring's layout for
//! the 64-bit ABI, and the `XenbusState` values both ends write in xenstore.
//!
//! # The handshake
//!
//! The toolstack writes the backend's directory
//! `/local/domain/0/backend/vbd/<domid>/<devid>` (`frontend`, `frontend-id`, `params`,
//! `mode`, `state` = 1, ...) and the frontend's `/local/domain/<domid>/device/vbd/<devid>`
//! (`backend`, `backend-id`, `state` = 1, `virtual-device`). The backend (dom0's kernel)
//! opens the device and writes `sectors`, `sector-size`, `physical-sector-size`, `info`
//! ([`VDISK_READONLY`] for `mode = r`), `feature-flush-cache`, `feature-barrier`,
//! `feature-discard` where the device discards, and `max-ring-page-order` = 0, then `state` =
//! [`XenbusState::InitWait`]. The frontend grants one page ([`BLKIF_RING_SIZE`] entries,
//! header [`SRING_HEADER`]) to the backend, allocates an unbound event channel for it, writes
//! `ring-ref`, `event-channel`, `protocol` = [`XEN_IO_PROTO_ABI_X86_64`] and `state` =
//! [`XenbusState::Initialised`]; the backend reads them, starts serving and writes
//! [`XenbusState::Connected`]. `Closing` from either side ends it; the backend writes
//! `Closed` once it let go of the ring.
//!
//! # A request
//!
//! The frontend fills a [`BlkifRequest`] at `req_prod % BLKIF_RING_SIZE`, advances
//! `req_prod` (after the entry, with a write barrier) and notifies the channel when
//! `req_event` says the backend waits. Reads and writes name up to
//! [`BLKIF_MAX_SEGMENTS_PER_REQUEST`] segments, each a granted page and the 512-byte sectors
//! `first_sect..=last_sect` inside it, transferred in order from `sector_number` on (sectors
//! here are always 512 bytes, whatever the device's `sector-size`). The backend answers with a
//! [`BlkifResponse`] at `rsp_prod` (same `id` and `operation`, a `BLKIF_RSP_*` status), in
//! any order.
//!
//! **Xenia's backend** moves segment data with `GNTTABOP_copy` (nothing of the frontend is
//! mapped in dom0) and has no indirect descriptors (`feature-max-indirect-segments` is not
//! written); it checks every request before acting on it (see dom0's kernel library,
//! `xenia_dom0::blkback`).

/// Read sectors into the segments.
pub const BLKIF_OP_READ: u8 = 0;
/// Write the segments to sectors.
pub const BLKIF_OP_WRITE: u8 = 1;
/// A write ordered after everything before it and made durable (`feature-barrier`).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Make every completed write durable (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Reserved (was `BLKIF_OP_TRIM` once).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// Discard sectors ([`BlkifRequestDiscard`], `feature-discard`).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// A request whose segments are in granted pages of their own (`feature-max-indirect-segments`).
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments of a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Pages of segments of an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// `flag` of a discard: erase securely (only with `discard-secure`).
pub const BLKIF_DISCARD_SECURE: u8 = 1;

/// Response status: not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// Response status: failed.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Response status: done.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `info` bit: a CD-ROM.
pub const VDISK_CDROM: u32 = 0x1;
/// `info` bit: removable medium.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `info` bit: read-only (writes get [`BLKIF_RSP_ERROR`]).
pub const VDISK_READONLY: u32 = 0x4;

/// The unit of `sector_number`, `first_sect` and `last_sect`.
pub const SECTOR_SIZE: u64 = 512;
/// 512-byte sectors in a page.
pub const SECTORS_PER_PAGE: u8 = 8;

/// `protocol` of a 64-bit x86 frontend (`XEN_IO_PROTO_ABI_X86_64`, the native one here).
pub const XEN_IO_PROTO_ABI_X86_64: &str = "x86_64-abi";
/// `protocol` of a 32-bit x86 frontend (not served by Xenia).
pub const XEN_IO_PROTO_ABI_X86_32: &str = "x86_32-abi";

/// Bytes of the shared ring's header (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`,
/// then padding).
pub const SRING_HEADER: usize = 64;
/// Offset of `req_prod` (written by the frontend).
pub const SRING_REQ_PROD: usize = 0;
/// Offset of `req_event` (written by the backend: notify when `req_prod` passes it).
pub const SRING_REQ_EVENT: usize = 4;
/// Offset of `rsp_prod` (written by the backend).
pub const SRING_RSP_PROD: usize = 8;
/// Offset of `rsp_event` (written by the frontend: notify when `rsp_prod` passes it).
pub const SRING_RSP_EVENT: usize = 12;
/// Size of one ring entry: the union of a request and a response.
pub const BLKIF_ENTRY_SIZE: usize = 112;
/// Entries in a one-page ring (`__CONST_RING_SIZE(blkif, 4096)`): the largest power of two
/// that fits, 32.
pub const BLKIF_RING_SIZE: u32 = ring_size(4096, BLKIF_ENTRY_SIZE);

/// `__CONST_RING_SIZE`: entries of `entry` bytes in `bytes` after the header, rounded down
/// to a power of two.
pub const fn ring_size(bytes: usize, entry: usize) -> u32 {
    let n = (bytes - SRING_HEADER) / entry;
    if n == 0 {
        return 0;
    }
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Offset in the ring page of entry `idx` (any free-running index).
pub const fn entry_offset(idx: u32) -> usize {
    SRING_HEADER + (idx % BLKIF_RING_SIZE) as usize * BLKIF_ENTRY_SIZE
}

/// `RING_REQUEST_PROD_OVERFLOW`'s test: whether a frontend claiming `req_prod` while the
/// backend produced `rsp_prod` responses claims more requests than the ring holds.
pub const fn req_prod_overflow(req_prod: u32, rsp_prod: u32) -> bool {
    req_prod.wrapping_sub(rsp_prod) > BLKIF_RING_SIZE
}

/// `RING_NEED_NOTIFY`'s test: after moving a producer from `old` to `new`, whether the other
/// end asked (its event index `event`) to be told.
pub const fn need_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// One segment of a request (Xen's `struct blkif_request_segment`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct BlkifRequestSegment {
    /// The granted page.
    pub gref: u32,
    /// First 512-byte sector of the page transferred.
    pub first_sect: u8,
    /// Last one (inclusive).
    pub last_sect: u8,
    /// Padding.
    pub _pad: u16,
}

/// A read, write, barrier or flush (Xen's `struct blkif_request`, 112 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Segments used (1..=11 for reads and writes, 0 for a flush).
    pub nr_segments: u8,
    /// The device (`virtual-device`), informational.
    pub handle: u16,
    /// The frontend's, echoed in the response.
    pub id: u64,
    /// First 512-byte sector.
    pub sector_number: u64,
    /// The segments.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// A discard (Xen's `struct blkif_request_discard`, the same entry read differently).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct BlkifRequestDiscard {
    /// [`BLKIF_OP_DISCARD`].
    pub operation: u8,
    /// [`BLKIF_DISCARD_SECURE`] or 0.
    pub flag: u8,
    /// The device.
    pub handle: u16,
    /// Echoed in the response.
    pub id: u64,
    /// First 512-byte sector.
    pub sector_number: u64,
    /// Sectors to discard.
    pub nr_sectors: u64,
}

/// An indirect request (Xen's `struct blkif_request_indirect`; Xenia's backend answers
/// [`BLKIF_RSP_EOPNOTSUPP`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct BlkifRequestIndirect {
    /// [`BLKIF_OP_INDIRECT`].
    pub operation: u8,
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    /// Segments, in the indirect pages.
    pub nr_segments: u16,
    /// Echoed in the response.
    pub id: u64,
    /// First 512-byte sector.
    pub sector_number: u64,
    /// The device.
    pub handle: u16,
    /// Pages holding the segments.
    pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
}

/// A response (Xen's `struct blkif_response`, 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct BlkifResponse {
    /// The request's `id`.
    pub id: u64,
    /// The request's `operation`.
    pub operation: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
}

fn u16_at(b: &[u8; BLKIF_ENTRY_SIZE], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8; BLKIF_ENTRY_SIZE], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; BLKIF_ENTRY_SIZE], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Offset of `seg` in [`BlkifRequest`].
const SEG_AT: usize = 24;

impl BlkifRequest {
    /// The request an entry's bytes hold (every bit pattern is one).
    pub fn from_bytes(b: &[u8; BLKIF_ENTRY_SIZE]) -> Self {
        let mut seg = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
        for (i, s) in seg.iter_mut().enumerate() {
            let at = SEG_AT + 8 * i;
            *s = BlkifRequestSegment {
                gref: u32_at(b, at),
                first_sect: b[at + 4],
                last_sect: b[at + 5],
                _pad: 0,
            };
        }
        Self {
            operation: b[0],
            nr_segments: b[1],
            handle: u16_at(b, 2),
            id: u64_at(b, 8),
            sector_number: u64_at(b, 16),
            seg,
        }
    }

    /// The entry's bytes.
    pub fn to_bytes(&self) -> [u8; BLKIF_ENTRY_SIZE] {
        let mut b = [0u8; BLKIF_ENTRY_SIZE];
        b[0] = self.operation;
        b[1] = self.nr_segments;
        b[2..4].copy_from_slice(&self.handle.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.sector_number.to_le_bytes());
        for (i, s) in self.seg.iter().enumerate() {
            let at = SEG_AT + 8 * i;
            b[at..at + 4].copy_from_slice(&s.gref.to_le_bytes());
            b[at + 4] = s.first_sect;
            b[at + 5] = s.last_sect;
        }
        b
    }
}

impl BlkifRequestDiscard {
    /// The discard an entry's bytes hold.
    pub fn from_bytes(b: &[u8; BLKIF_ENTRY_SIZE]) -> Self {
        Self {
            operation: b[0],
            flag: b[1],
            handle: u16_at(b, 2),
            id: u64_at(b, 8),
            sector_number: u64_at(b, 16),
            nr_sectors: u64_at(b, 24),
        }
    }

    /// The entry's bytes.
    pub fn to_bytes(&self) -> [u8; BLKIF_ENTRY_SIZE] {
        let mut b = [0u8; BLKIF_ENTRY_SIZE];
        b[0] = self.operation;
        b[1] = self.flag;
        b[2..4].copy_from_slice(&self.handle.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.sector_number.to_le_bytes());
        b[24..32].copy_from_slice(&self.nr_sectors.to_le_bytes());
        b
    }
}

impl BlkifResponse {
    /// Bytes of a response in its entry.
    pub const SIZE: usize = 16;

    /// The response's bytes (the start of an entry).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8] = self.operation;
        b[10..12].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// The response the first bytes of an entry hold.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[0..8]);
        Self {
            id: u64::from_le_bytes(id),
            operation: b[8],
            status: i16::from_le_bytes([b[10], b[11]]),
        }
    }
}

/// `enum xenbus_state`: where each end of a device is in the handshake (the `state` node).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum XenbusState {
    /// No state (a missing or unreadable node).
    Unknown = 0,
    /// Being set up.
    Initialising = 1,
    /// The backend waits for the frontend's details (ring, channel).
    InitWait = 2,
    /// The frontend's details are written.
    Initialised = 3,
    /// Serving.
    Connected = 4,
    /// Being shut down.
    Closing = 5,
    /// Shut down.
    Closed = 6,
    /// Being reconfigured.
    Reconfiguring = 7,
    /// Reconfigured.
    Reconfigured = 8,
}

impl XenbusState {
    /// The state a node's value names (`Unknown` for anything else, as Xen's
    /// `xenbus_read_driver_state`).
    pub fn parse(value: &[u8]) -> Self {
        let v = core::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim_end_matches('\0').trim().parse::<u32>().ok());
        match v {
            Some(1) => Self::Initialising,
            Some(2) => Self::InitWait,
            Some(3) => Self::Initialised,
            Some(4) => Self::Connected,
            Some(5) => Self::Closing,
            Some(6) => Self::Closed,
            Some(7) => Self::Reconfiguring,
            Some(8) => Self::Reconfigured,
            _ => Self::Unknown,
        }
    }

    /// The node's value for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "0",
            Self::Initialising => "1",
            Self::InitWait => "2",
            Self::Initialised => "3",
            Self::Connected => "4",
            Self::Closing => "5",
            Self::Closed => "6",
            Self::Reconfiguring => "7",
            Self::Reconfigured => "8",
        }
    }
}

/// The `virtual-device` number of a Xen disk name (`xvda` = 51712, `xvdb` = 51728, ...; up
/// to `xvdp`, Xen's 202 major with 16 minors a disk), `None` for others.
pub fn xvd_devid(name: &str) -> Option<u32> {
    let letter = name.strip_prefix("xvd")?;
    let b = letter.as_bytes();
    if b.len() != 1 || !(b'a'..=b'p').contains(&b[0]) {
        return None;
    }
    Some((202 << 8) | (u32::from(b[0] - b'a') << 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn numbers_match_xen() {
        assert_eq!(
            [
                BLKIF_OP_READ,
                BLKIF_OP_WRITE,
                BLKIF_OP_WRITE_BARRIER,
                BLKIF_OP_FLUSH_DISKCACHE,
                BLKIF_OP_RESERVED_1,
                BLKIF_OP_DISCARD,
                BLKIF_OP_INDIRECT
            ],
            [0, 1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            (BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY),
            (-2, -1, 0)
        );
        assert_eq!((VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY), (1, 2, 4));
        assert_eq!(BLKIF_MAX_SEGMENTS_PER_REQUEST, 11);
        assert_eq!(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, 8);
        assert_eq!(XenbusState::Closed as u32, 6);
        assert_eq!(XenbusState::Reconfigured as u32, 8);
        assert_eq!(XEN_IO_PROTO_ABI_X86_64, "x86_64-abi");
        assert_eq!(xvd_devid("xvda"), Some(51712));
        assert_eq!(xvd_devid("xvdb"), Some(51728));
        assert_eq!(xvd_devid("xvdq"), None);
        assert_eq!(xvd_devid("hda"), None);
    }

    #[test]
    fn layouts_match_xen() {
        assert_eq!(size_of::<BlkifRequestSegment>(), 8);
        assert_eq!(offset_of!(BlkifRequestSegment, first_sect), 4);
        assert_eq!(offset_of!(BlkifRequestSegment, last_sect), 5);
        assert_eq!(size_of::<BlkifRequest>(), BLKIF_ENTRY_SIZE);
        assert_eq!(offset_of!(BlkifRequest, nr_segments), 1);
        assert_eq!(offset_of!(BlkifRequest, handle), 2);
        assert_eq!(offset_of!(BlkifRequest, id), 8);
        assert_eq!(offset_of!(BlkifRequest, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequest, seg), SEG_AT);
        assert!(size_of::<BlkifRequestDiscard>() <= BLKIF_ENTRY_SIZE);
        assert_eq!(offset_of!(BlkifRequestDiscard, nr_sectors), 24);
        assert!(size_of::<BlkifRequestIndirect>() <= BLKIF_ENTRY_SIZE);
        assert_eq!(offset_of!(BlkifRequestIndirect, nr_segments), 2);
        assert_eq!(offset_of!(BlkifRequestIndirect, id), 8);
        assert_eq!(offset_of!(BlkifRequestIndirect, handle), 24);
        assert_eq!(offset_of!(BlkifRequestIndirect, indirect_grefs), 28);
        assert_eq!(size_of::<BlkifResponse>(), BlkifResponse::SIZE);
        assert_eq!(offset_of!(BlkifResponse, operation), 8);
        assert_eq!(offset_of!(BlkifResponse, status), 10);
        // `union blkif_sring_entry` is the larger of the two; the ring is 32 entries after a
        // 64-byte header (`__CONST_RING_SIZE(blkif, 4096)` in Linux is 32).
        assert_eq!(BLKIF_RING_SIZE, 32);
        assert_eq!(entry_offset(0), 64);
        assert_eq!(entry_offset(33), 64 + 112);
        assert!(entry_offset(31) + BLKIF_ENTRY_SIZE <= 4096);
    }

    #[test]
    fn entries_round_trip() {
        let mut r = BlkifRequest {
            operation: BLKIF_OP_WRITE,
            nr_segments: 2,
            handle: 51712,
            id: 0x1122_3344_5566_7788,
            sector_number: 0xABCD,
            ..Default::default()
        };
        r.seg[0] = BlkifRequestSegment {
            gref: 9,
            first_sect: 1,
            last_sect: 7,
            _pad: 0,
        };
        r.seg[10].gref = 0xFFFF_FFFF;
        assert_eq!(BlkifRequest::from_bytes(&r.to_bytes()), r);
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: 1,
            handle: 3,
            id: 5,
            sector_number: 8,
            nr_sectors: 16,
        };
        assert_eq!(BlkifRequestDiscard::from_bytes(&d.to_bytes()), d);
        let p = BlkifResponse {
            id: 77,
            operation: 3,
            status: BLKIF_RSP_EOPNOTSUPP,
        };
        assert_eq!(BlkifResponse::from_bytes(&p.to_bytes()), p);
    }

    #[test]
    fn ring_arithmetic() {
        assert!(!req_prod_overflow(32, 0));
        assert!(req_prod_overflow(33, 0));
        assert!(!req_prod_overflow(5, u32::MAX - 10));
        assert!(req_prod_overflow(u32::MAX, 0));
        // Producer moved 10 -> 12, the other end wants to hear at 11: notify.
        assert!(need_notify(10, 12, 11));
        assert!(!need_notify(10, 12, 13));
        assert!(need_notify(u32::MAX, 1, 0));
    }

    #[test]
    fn states_parse() {
        assert_eq!(XenbusState::parse(b"4"), XenbusState::Connected);
        assert_eq!(XenbusState::parse(b"3\0"), XenbusState::Initialised);
        assert_eq!(XenbusState::parse(b"x"), XenbusState::Unknown);
        assert_eq!(XenbusState::parse(b"9"), XenbusState::Unknown);
        for s in 0..=8u32 {
            let st = XenbusState::parse(alloc_free(s).as_bytes());
            assert_eq!(st as u32, s);
            assert_eq!(st.as_str(), alloc_free(s));
        }
    }

    fn alloc_free(s: u32) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][s as usize]
    }
}
