//! blkback's decisions, as plain data (guest-abi [`blkif`](guest_abi::blkif)): what a
//! frontend's request asks for and whether it may, what its ring indexes claim, where a
//! device's nodes are in xenstore, and when a refusal is logged. The kernel's `blkback`
//! module applies them with grant copies, the block devices and the store.
//!
//! **What it trusts.** Nothing of the frontend: every request is a 112-byte entry copied out
//! of the shared ring, checked here whole before anything is read, written or copied; the
//! ring's `req_prod` is a claim checked against what the backend itself produced.

use alloc::format;
use alloc::string::String;

use guest_abi::blkif::{
    BLKIF_ENTRY_SIZE, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RING_SIZE, BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR, BlkifRequest, BlkifRequestDiscard, SECTORS_PER_PAGE,
};

/// Where the toolstack writes the backends of virtual block devices.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vbd";

/// The device a frontend's requests go to: its length in 512-byte sectors and whether it
/// may be written (the device's own flag and the toolstack's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// 512-byte sectors.
    pub sectors: u64,
    /// Writes (and discards) are refused.
    pub read_only: bool,
}

/// One segment of a checked request: the frontend's page and the bytes of it that move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    /// The frontend's grant reference.
    pub gref: u32,
    /// Byte offset in its page.
    pub offset: u16,
    /// Bytes (a multiple of 512).
    pub len: u16,
}

/// What a checked request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read `nr` segments' worth of sectors from `sector` on into the segments, in order.
    Read {
        /// First 512-byte sector.
        sector: u64,
        /// The segments (the first `nr`).
        segs: [Segment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
        /// Segments used.
        nr: usize,
    },
    /// Write them; `flush` for a barrier (flushed before and after).
    Write {
        /// First 512-byte sector.
        sector: u64,
        /// The segments (the first `nr`).
        segs: [Segment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
        /// Segments used.
        nr: usize,
        /// A barrier: durable when answered.
        flush: bool,
    },
    /// Flush the device's cache.
    Flush,
    /// Discard `count` sectors at `sector`.
    Discard {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u64,
    },
}

impl Action {
    /// Bytes the request moves (0 for a flush or discard).
    pub fn bytes(&self) -> u64 {
        match self {
            Action::Read { segs, nr, .. } | Action::Write { segs, nr, .. } => {
                segs[..*nr].iter().map(|s| u64::from(s.len)).sum()
            }
            _ => 0,
        }
    }
}

/// Why a request is refused, with the status it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An operation Xenia's backend does not do (indirect, reserved, unknown).
    Unsupported(u8),
    /// No segments, or more than 11.
    SegmentCount(u8),
    /// A segment whose sectors are not `first <= last < 8`.
    BadSegment(usize),
    /// Sectors past the device's end (or a range that overflows).
    OutOfRange,
    /// A write or discard on a read-only device.
    ReadOnly,
}

impl Refusal {
    /// The response status (`BLKIF_RSP_*`).
    pub fn status(self) -> i16 {
        match self {
            Refusal::Unsupported(_) => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Unsupported(op) => write!(f, "operation {op} not supported"),
            Refusal::SegmentCount(n) => write!(f, "{n} segments"),
            Refusal::BadSegment(i) => write!(f, "segment {i} has bad sector bounds"),
            Refusal::OutOfRange => write!(f, "sectors beyond the device"),
            Refusal::ReadOnly => write!(f, "write to a read-only device"),
        }
    }
}

/// Checks the request an entry's bytes hold against the device: the operation is one the
/// backend does and the device allows, a read or write has 1..=11 segments each within its
/// page (`first_sect <= last_sect < 8`), and every sector lies on the device.
pub fn check(entry: &[u8; BLKIF_ENTRY_SIZE], disk: Geometry) -> Result<Action, Refusal> {
    let op = entry[0];
    match op {
        BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER => {
            let req = BlkifRequest::from_bytes(entry);
            let write = op != BLKIF_OP_READ;
            if write && disk.read_only {
                return Err(Refusal::ReadOnly);
            }
            let nr = usize::from(req.nr_segments);
            if nr == 0 || nr > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(Refusal::SegmentCount(req.nr_segments));
            }
            let mut segs = [Segment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            let mut total: u64 = 0;
            for (i, s) in req.seg[..nr].iter().enumerate() {
                if s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE {
                    return Err(Refusal::BadSegment(i));
                }
                let n = u64::from(s.last_sect - s.first_sect) + 1;
                total += n;
                segs[i] = Segment {
                    gref: s.gref,
                    offset: u16::from(s.first_sect) * 512,
                    len: (n * 512) as u16,
                };
            }
            in_range(req.sector_number, total, disk)?;
            Ok(if write {
                Action::Write {
                    sector: req.sector_number,
                    segs,
                    nr,
                    flush: op == BLKIF_OP_WRITE_BARRIER,
                }
            } else {
                Action::Read {
                    sector: req.sector_number,
                    segs,
                    nr,
                }
            })
        }
        BLKIF_OP_FLUSH_DISKCACHE => Ok(Action::Flush),
        BLKIF_OP_DISCARD => {
            let d = BlkifRequestDiscard::from_bytes(entry);
            if disk.read_only {
                return Err(Refusal::ReadOnly);
            }
            in_range(d.sector_number, d.nr_sectors, disk)?;
            Ok(Action::Discard {
                sector: d.sector_number,
                count: d.nr_sectors,
            })
        }
        // BLKIF_OP_INDIRECT, BLKIF_OP_RESERVED_1 and anything else.
        _ => Err(Refusal::Unsupported(op)),
    }
}

fn in_range(sector: u64, count: u64, disk: Geometry) -> Result<(), Refusal> {
    match sector.checked_add(count) {
        Some(end) if end <= disk.sectors => Ok(()),
        _ => Err(Refusal::OutOfRange),
    }
}

/// What a ring's `req_prod` claims, given the backend's own `req_cons` and `rsp_prod`:
/// how many new requests there are, or `None` when the claim is impossible (more requests
/// outstanding than the ring holds, Xen's `RING_REQUEST_PROD_OVERFLOW`, or a producer
/// behind the consumer).
pub fn new_requests(req_prod: u32, req_cons: u32, rsp_prod: u32) -> Option<u32> {
    let outstanding = req_prod.wrapping_sub(rsp_prod);
    let new = req_prod.wrapping_sub(req_cons);
    (outstanding <= BLKIF_RING_SIZE && new <= outstanding).then_some(new)
}

/// A device named by a path under [`BACKEND_ROOT`]: `(domid, devid)` for
/// `.../vbd/<domid>/<devid>` and anything below it, `None` for other paths.
pub fn device_of(path: &str) -> Option<(u16, u32)> {
    let rest = path.strip_prefix(BACKEND_ROOT)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let dom = parts.next()?.parse().ok()?;
    let dev = parts.next()?.parse().ok()?;
    Some((dom, dev))
}

/// The backend directory of device `devid` of domain `dom`.
pub fn backend_path(dom: u16, devid: u32) -> String {
    format!("{BACKEND_ROOT}/{dom}/{devid}")
}

/// The frontend directory the toolstack names for it (`/local/domain/<dom>/device/vbd/<devid>`).
pub fn frontend_path(dom: u16, devid: u32) -> String {
    format!("/local/domain/{dom}/device/vbd/{devid}")
}

/// Whether a `mode` node's value lets the frontend write (`w`, as libxl writes it; `rw` too).
pub fn mode_writable(mode: &[u8]) -> Option<bool> {
    match mode {
        b"w" | b"rw" => Some(true),
        b"r" | b"ro" => Some(false),
        _ => None,
    }
}

/// A log line per device at most every [`LogLimit::PERIOD_NS`]; the lines held back are
/// counted and reported with the next one.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogLimit {
    last_ns: Option<u64>,
    held: u32,
}

impl LogLimit {
    /// One line a second.
    pub const PERIOD_NS: u64 = 1_000_000_000;

    /// Whether a line may be written at `now_ns`; if so, the lines held back since the last
    /// one (which the line should mention).
    pub fn allow(&mut self, now_ns: u64) -> Option<u32> {
        match self.last_ns {
            Some(t) if now_ns.saturating_sub(t) < Self::PERIOD_NS => {
                self.held = self.held.saturating_add(1);
                None
            }
            _ => {
                self.last_ns = Some(now_ns);
                Some(core::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_abi::blkif::{
        BLKIF_OP_INDIRECT, BLKIF_OP_RESERVED_1, BLKIF_RSP_OKAY, BlkifRequestSegment,
    };
    use proptest::prelude::*;

    const DISK: Geometry = Geometry {
        sectors: 2048,
        read_only: false,
    };

    fn req(op: u8, sector: u64, segs: &[(u32, u8, u8)]) -> [u8; BLKIF_ENTRY_SIZE] {
        let mut r = BlkifRequest {
            operation: op,
            nr_segments: segs.len() as u8,
            handle: 51712,
            id: 42,
            sector_number: sector,
            ..Default::default()
        };
        for (i, &(gref, first_sect, last_sect)) in segs.iter().enumerate() {
            r.seg[i] = BlkifRequestSegment {
                gref,
                first_sect,
                last_sect,
                _pad: 0,
            };
        }
        r.to_bytes()
    }

    #[test]
    fn good_requests_are_read_as_asked() {
        let a = check(&req(BLKIF_OP_WRITE, 8, &[(9, 0, 7), (10, 2, 3)]), DISK).unwrap();
        let Action::Write {
            sector,
            segs,
            nr,
            flush,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!((sector, nr, flush), (8, 2, false));
        assert_eq!(
            segs[1],
            Segment {
                gref: 10,
                offset: 1024,
                len: 1024
            }
        );
        assert_eq!(a.bytes(), 4096 + 1024);
        // The last sector of the device.
        assert!(check(&req(BLKIF_OP_READ, 2047, &[(1, 5, 5)]), DISK).is_ok());
        assert_eq!(
            check(&req(BLKIF_OP_FLUSH_DISKCACHE, 0, &[]), DISK),
            Ok(Action::Flush)
        );
        assert!(matches!(
            check(&req(BLKIF_OP_WRITE_BARRIER, 0, &[(1, 0, 0)]), DISK),
            Ok(Action::Write { flush: true, .. })
        ));
    }

    #[test]
    fn bad_requests_are_refused() {
        let eleven = [(1, 0, 7); 11];
        assert!(check(&req(BLKIF_OP_READ, 0, &eleven), DISK).is_ok());
        let mut twelve = req(BLKIF_OP_READ, 0, &eleven);
        twelve[1] = 12;
        assert_eq!(check(&twelve, DISK), Err(Refusal::SegmentCount(12)));
        assert_eq!(
            check(&req(BLKIF_OP_READ, 0, &[]), DISK),
            Err(Refusal::SegmentCount(0))
        );
        assert_eq!(
            check(&req(BLKIF_OP_READ, 0, &[(1, 4, 3)]), DISK),
            Err(Refusal::BadSegment(0))
        );
        assert_eq!(
            check(&req(BLKIF_OP_READ, 0, &[(1, 0, 7), (1, 0, 8)]), DISK),
            Err(Refusal::BadSegment(1))
        );
        assert_eq!(
            check(&req(BLKIF_OP_READ, 2047, &[(1, 0, 1)]), DISK),
            Err(Refusal::OutOfRange)
        );
        assert_eq!(
            check(&req(BLKIF_OP_WRITE, u64::MAX, &[(1, 0, 1)]), DISK),
            Err(Refusal::OutOfRange)
        );
        let ro = Geometry {
            read_only: true,
            ..DISK
        };
        assert_eq!(
            check(&req(BLKIF_OP_WRITE, 0, &[(1, 0, 0)]), ro),
            Err(Refusal::ReadOnly)
        );
        assert!(check(&req(BLKIF_OP_READ, 0, &[(1, 0, 0)]), ro).is_ok());
        let discard = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: 0,
            handle: 0,
            id: 1,
            sector_number: 0,
            nr_sectors: 8,
        }
        .to_bytes();
        assert_eq!(check(&discard, ro), Err(Refusal::ReadOnly));
        assert!(check(&discard, DISK).is_ok());
        for op in [BLKIF_OP_INDIRECT, BLKIF_OP_RESERVED_1, 200] {
            let r = check(&req(op, 0, &[(1, 0, 0)]), DISK).unwrap_err();
            assert_eq!(r, Refusal::Unsupported(op));
            assert_eq!(r.status(), BLKIF_RSP_EOPNOTSUPP);
        }
        assert_ne!(Refusal::OutOfRange.status(), BLKIF_RSP_OKAY);
    }

    #[test]
    fn ring_claims() {
        assert_eq!(new_requests(0, 0, 0), Some(0));
        assert_eq!(new_requests(32, 0, 0), Some(32));
        assert_eq!(new_requests(33, 0, 0), None);
        assert_eq!(new_requests(10, 12, 12), None);
        assert_eq!(new_requests(u32::MAX, 0, 0), None);
        assert_eq!(new_requests(3, u32::MAX - 2, u32::MAX - 2), Some(6));
    }

    #[test]
    fn paths() {
        assert_eq!(
            device_of("/local/domain/0/backend/vbd/3/51712/state"),
            Some((3, 51712))
        );
        assert_eq!(
            device_of("/local/domain/0/backend/vbd/3/51712"),
            Some((3, 51712))
        );
        assert_eq!(device_of("/local/domain/0/backend/vbd/3"), None);
        assert_eq!(device_of("/local/domain/0/backend/vbdx/3/1"), None);
        assert_eq!(device_of("/local/domain/0/backend/vbd/x/1"), None);
        assert_eq!(
            backend_path(3, 51712),
            "/local/domain/0/backend/vbd/3/51712"
        );
        assert_eq!(frontend_path(3, 51712), "/local/domain/3/device/vbd/51712");
        assert_eq!(mode_writable(b"w"), Some(true));
        assert_eq!(mode_writable(b"r"), Some(false));
        assert_eq!(mode_writable(b"x"), None);
    }

    #[test]
    fn log_lines_are_limited() {
        let mut l = LogLimit::default();
        assert_eq!(l.allow(0), Some(0));
        assert_eq!(l.allow(10), None);
        assert_eq!(l.allow(LogLimit::PERIOD_NS - 1), None);
        assert_eq!(l.allow(LogLimit::PERIOD_NS), Some(2));
        assert_eq!(l.allow(LogLimit::PERIOD_NS + 1), None);
    }

    proptest! {
        /// Whatever the bytes, a request is accepted only if everything it touches lies on
        /// the device and in its pages, and a read-only device is never written.
        #[test]
        fn accepted_requests_stay_inside(
            bytes in proptest::collection::vec(any::<u8>(), BLKIF_ENTRY_SIZE),
            op in 0u8..8,
            nr in 0u8..14,
            sectors in 0u64..4096,
            read_only: bool,
            near_end: bool,
        ) {
            let mut entry = [0u8; BLKIF_ENTRY_SIZE];
            entry.copy_from_slice(&bytes);
            entry[0] = op;
            entry[1] = nr;
            if near_end {
                entry[16..24].copy_from_slice(&sectors.saturating_sub(3).to_le_bytes());
            }
            let disk = Geometry { sectors, read_only };
            match check(&entry, disk) {
                Ok(Action::Read { sector, segs, nr }) | Ok(Action::Write { sector, segs, nr, .. }) => {
                    prop_assert!((1..=11).contains(&nr));
                    let write = matches!(check(&entry, disk), Ok(Action::Write { .. }));
                    prop_assert!(!(write && read_only));
                    let mut total = 0u64;
                    for s in &segs[..nr] {
                        prop_assert!(s.len > 0 && s.len % 512 == 0);
                        prop_assert!(u32::from(s.offset) + u32::from(s.len) <= 4096);
                        total += u64::from(s.len) / 512;
                    }
                    prop_assert!(sector + total <= sectors);
                }
                Ok(Action::Discard { sector, count }) => {
                    prop_assert!(!read_only);
                    prop_assert!(sector.checked_add(count).is_some_and(|e| e <= sectors));
                }
                Ok(Action::Flush) => prop_assert_eq!(op, BLKIF_OP_FLUSH_DISKCACHE),
                Err(r) => prop_assert!(r.status() < 0),
            }
        }

        /// The claim check never accepts more than a ring's worth.
        #[test]
        fn claims_are_bounded(req_prod: u32, cons_back in 0u32..64, rsp_back in 0u32..64) {
            let req_cons = req_prod.wrapping_sub(cons_back);
            let rsp_prod = req_cons.wrapping_sub(rsp_back);
            if let Some(n) = new_requests(req_prod, req_cons, rsp_prod) {
                prop_assert!(n <= BLKIF_RING_SIZE);
                prop_assert_eq!(n, cons_back);
            }
        }
    }
}
