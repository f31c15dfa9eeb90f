//! Xen's split network device protocol (`io/netif.h`, `io/ring.h`): the requests and
//! responses of the transmit and receive rings, their layout for the 64-bit ABI, and the
//! xenstore keys both ends write.
//!
//! # The handshake
//!
//! The toolstack writes the backend's directory `/local/domain/0/backend/vif/<domid>/<devid>`
//! (`frontend`, `frontend-id`, `online` = 1, `state` = 1, `mac`, `bridge`, `handle`, `type` =
//! `vif`) and the frontend's `/local/domain/<domid>/device/vif/<devid>` (`backend`,
//! `backend-id`, `handle`, `mac`, `state` = 1). The backend writes its features
//! ([`FEATURE_RX_COPY`] = 1, [`FEATURE_RX_FLIP`] = 0, ...) and `state` = `InitWait`
//! ([`crate::blkif::XenbusState`]). The frontend grants one page for each ring
//! ([`NET_TX_RING_SIZE`], [`NET_RX_RING_SIZE`] entries after the 64-byte header
//! [`crate::blkif::SRING_HEADER`]), allocates one unbound event channel for the backend,
//! writes `tx-ring-ref`, `rx-ring-ref`, `event-channel`, `request-rx-copy` = 1 (the only
//! receive mode Xen's current backends serve) and `state` = `Initialised`; the backend reads
//! them, starts serving and writes `Connected`.
//!
//! # Transmit (frontend to backend)
//!
//! A frame is one or more [`NetifTxRequest`] slots: the first carries the frame's whole
//! `size`, each names a granted page, an `offset` and (after the first) its own byte count;
//! [`NETTXF_MORE_DATA`] says another slot follows. The backend copies the bytes out with
//! `GNTTABOP_copy` and answers every slot with a [`NetifTxResponse`] (same `id`), `status`
//! [`NETIF_RSP_OKAY`], [`NETIF_RSP_ERROR`] or [`NETIF_RSP_DROPPED`]; slots after the first
//! answer [`NETIF_RSP_NULL`] where the backend has nothing to say of them.
//!
//! # Receive (backend to frontend)
//!
//! The frontend posts empty granted pages as [`NetifRxRequest`]s. For each frame the backend
//! copies the bytes into the next posted page(s) and answers a [`NetifRxResponse`] with the
//! same `id`, the `offset` of the data in the page and `status` = the byte count (negative:
//! an error). No posted page: the frame is dropped (counted), never queued without bound.

/// `feature-rx-copy`: the backend copies received frames into the frontend's pages.
pub const FEATURE_RX_COPY: &str = "feature-rx-copy";
/// `feature-rx-flip`: page flipping (never offered by Xenia: 0).
pub const FEATURE_RX_FLIP: &str = "feature-rx-flip";
/// `feature-sg`: frames of several slots.
pub const FEATURE_SG: &str = "feature-sg";
/// `request-rx-copy`: the frontend asks for copying receive.
pub const REQUEST_RX_COPY: &str = "request-rx-copy";
/// `feature-rx-notify`: the frontend notifies when it posts receive buffers.
pub const FEATURE_RX_NOTIFY: &str = "feature-rx-notify";
/// Frontend key: the transmit ring's grant reference.
pub const TX_RING_REF: &str = "tx-ring-ref";
/// Frontend key: the receive ring's grant reference.
pub const RX_RING_REF: &str = "rx-ring-ref";
/// Frontend key: the event channel for both rings.
pub const EVENT_CHANNEL: &str = "event-channel";

/// Transmit flag: the checksum is blank (to be filled in; offload).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// Transmit flag: the checksum is known good.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// Transmit flag: another slot of this frame follows.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// Transmit flag: a [`NetifExtraInfo`] slot follows.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// Receive flag: the checksum is known good.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// Receive flag: the checksum is blank.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// Receive flag: another slot of this frame follows.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// Receive flag: a [`NetifExtraInfo`] slot follows.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// Receive flag: a GSO prefix slot.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// Response status: dropped (e.g. no room).
pub const NETIF_RSP_DROPPED: i16 = -2;
/// Response status: failed (bad grant, bad size, ...).
pub const NETIF_RSP_ERROR: i16 = -1;
/// Response status: done.
pub const NETIF_RSP_OKAY: i16 = 0;
/// Response status: no response (a slot after the first of a frame).
pub const NETIF_RSP_NULL: i16 = 1;

/// Extra info type: none.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// Extra info type: GSO.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// Extra info type: add a multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// Extra info type: remove a multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// Extra info flag: another extra info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// The largest Ethernet frame without FCS at MTU 1500 (`ETH_FRAME_LEN`).
pub const ETH_FRAME_LEN: usize = 1514;
/// Slots a backend must accept for one frame (`XEN_NETBK_LEGACY_SLOTS_MAX`).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;

/// Bytes of one transmit ring entry: the union of [`NetifTxRequest`] (12) and
/// [`NetifTxResponse`] (4).
pub const NET_TX_ENTRY_SIZE: usize = 12;
/// Bytes of one receive ring entry: the union of [`NetifRxRequest`] (8) and
/// [`NetifRxResponse`] (8).
pub const NET_RX_ENTRY_SIZE: usize = 8;
/// Entries of the one-page transmit ring (`__CONST_RING_SIZE(netif_tx, 4096)`): 256.
pub const NET_TX_RING_SIZE: u32 = crate::blkif::ring_size(4096, NET_TX_ENTRY_SIZE);
/// Entries of the one-page receive ring (`__CONST_RING_SIZE(netif_rx, 4096)`): 256.
pub const NET_RX_RING_SIZE: u32 = crate::blkif::ring_size(4096, NET_RX_ENTRY_SIZE);

/// Offset in the transmit ring page of entry `idx` (any free-running index).
pub const fn tx_entry_offset(idx: u32) -> usize {
    crate::blkif::SRING_HEADER + (idx % NET_TX_RING_SIZE) as usize * NET_TX_ENTRY_SIZE
}

/// Offset in the receive ring page of entry `idx` (any free-running index).
pub const fn rx_entry_offset(idx: u32) -> usize {
    crate::blkif::SRING_HEADER + (idx % NET_RX_RING_SIZE) as usize * NET_RX_ENTRY_SIZE
}

/// One transmit slot (Xen's `struct netif_tx_request`, 12 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct NetifTxRequest {
    /// The granted page holding the bytes.
    pub gref: u32,
    /// Offset of the bytes in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// The frontend's, echoed in the response.
    pub id: u16,
    /// First slot: the whole frame's bytes; later slots: this slot's bytes.
    pub size: u16,
}

impl NetifTxRequest {
    /// Bytes in the ring.
    pub const SIZE: usize = 12;

    /// The little-endian bytes of the entry.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4..6].copy_from_slice(&self.offset.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..10].copy_from_slice(&self.id.to_le_bytes());
        b[10..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    /// The request an entry's bytes hold.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16_at(4),
            flags: u16_at(6),
            id: u16_at(8),
            size: u16_at(10),
        }
    }
}

/// A transmit response (Xen's `struct netif_tx_response`, 4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct NetifTxResponse {
    /// The request's `id`.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

impl NetifTxResponse {
    /// Bytes in the ring.
    pub const SIZE: usize = 4;

    /// The little-endian bytes of the entry.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// The response an entry's first bytes hold.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        Self {
            id: u16::from_le_bytes([b[0], b[1]]),
            status: i16::from_le_bytes([b[2], b[3]]),
        }
    }
}

/// A posted receive buffer (Xen's `struct netif_rx_request`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct NetifRxRequest {
    /// The frontend's, echoed in the response.
    pub id: u16,
    /// Padding.
    pub _pad: u16,
    /// The granted (writable) page.
    pub gref: u32,
}

impl NetifRxRequest {
    /// Bytes in the ring.
    pub const SIZE: usize = 8;

    /// The little-endian bytes of the entry.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[4..8].copy_from_slice(&self.gref.to_le_bytes());
        b
    }

    /// The request an entry's bytes hold.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        Self {
            id: u16::from_le_bytes([b[0], b[1]]),
            _pad: 0,
            gref: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// A received frame's slot (Xen's `struct netif_rx_response`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct NetifRxResponse {
    /// The request's `id`.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes received (> 0), or a `NETIF_RSP_*` error (< 0).
    pub status: i16,
}

impl NetifRxResponse {
    /// Bytes in the ring.
    pub const SIZE: usize = 8;

    /// The little-endian bytes of the entry.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..6].copy_from_slice(&self.flags.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// The response an entry's bytes hold.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            id: u16_at(0),
            offset: u16_at(2),
            flags: u16_at(4),
            status: u16_at(6) as i16,
        }
    }
}

/// An extra info slot (Xen's `struct netif_extra_info`, 8 bytes): `type`, `flags`, then 6
/// bytes of the type's data (for the multicast types, the MAC address).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub kind: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The type's data.
    pub data: [u8; 6],
}

const _: () = {
    assert!(core::mem::size_of::<NetifTxRequest>() == NetifTxRequest::SIZE);
    assert!(core::mem::size_of::<NetifTxResponse>() == NetifTxResponse::SIZE);
    assert!(core::mem::size_of::<NetifRxRequest>() == NetifRxRequest::SIZE);
    assert!(core::mem::size_of::<NetifRxResponse>() == NetifRxResponse::SIZE);
    assert!(core::mem::size_of::<NetifExtraInfo>() == 8);
    assert!(NET_TX_RING_SIZE == 256);
    assert!(NET_RX_RING_SIZE == 256);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let t = NetifTxRequest {
            gref: 0x1234_5678,
            offset: 0x0ffe,
            flags: NETTXF_MORE_DATA,
            id: 77,
            size: 1514,
        };
        assert_eq!(NetifTxRequest::from_bytes(&t.to_bytes()), t);
        let r = NetifRxResponse {
            id: 3,
            offset: 10,
            flags: NETRXF_DATA_VALIDATED,
            status: NETIF_RSP_ERROR,
        };
        assert_eq!(NetifRxResponse::from_bytes(&r.to_bytes()), r);
        let q = NetifRxRequest {
            id: 9,
            _pad: 0,
            gref: 42,
        };
        assert_eq!(NetifRxRequest::from_bytes(&q.to_bytes()), q);
        let s = NetifTxResponse { id: 5, status: -2 };
        assert_eq!(NetifTxResponse::from_bytes(&s.to_bytes()), s);
        assert_eq!(tx_entry_offset(256), 64);
        assert_eq!(rx_entry_offset(257), 72);
        assert_eq!(tx_entry_offset(255), 64 + 255 * 12);
    }
}
