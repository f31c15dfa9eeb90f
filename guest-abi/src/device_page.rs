//! The device page: how a domU learns what devices it has (DESIGN.md §7).
//!
//! Xen guests find their devices through xenstore. Xenia's xenstore
//! ([`crate::xenstore`]) is young (no daemon on the domain-creation path, so
//! creating the thousandth domain costs what the first did); alongside it the
//! toolstack writes one page at build time that lists the domain's devices, each with
//! what its frontend needs to connect: the backend domain, the event
//! channel, and the shared ring page. This is a Xenia addition with no Xen
//! equivalent.
//!
//! # Where it is
//!
//! A domU's start-of-day region has, right after the `shared_info` page (item
//! 5 of the [porting guide's list](crate#start-of-day-memory)), three more
//! pages that dom0 does not get:
//!
//! | virtual address | page |
//! |---|---|
//! | `rsi + 2 * 4096` ([`console_ring_va`]) | the console ring ([`XenconsInterface`](crate::console::XenconsInterface)), zeroed; also named, Xen's way, by `start_info.console` (frame and event channel). A domain without a console still has the page, zeroed and unused, and `start_info.console` is zero |
//! | `rsi + 3 * 4096` ([`device_page_va`]) | the device page ([`DevicePage`]) |
//! | `rsi + 4 * 4096` ([`store_ring_va`](crate::xenstore::store_ring_va)) | the xenstore ring, zeroed; also named by `start_info.store_mfn` and `store_evtchn` (zero, and the page unused, for a domain built without a store) |
//!
//! where `rsi` is the `start_info` address at entry. All are ordinary
//! pseudo-physical frames of the domain, mapped writable and
//! supervisor-only like the rest of items 1 to 8; the bootstrap page tables
//! follow them. Like the rest of the start-of-day region they are the
//! guest's: it may map them elsewhere (their frames are in the p2m list and
//! in the device entries) and reuse the device page once it has read it.
//!
//! # Contents
//!
//! [`DevicePage`] (4080 bytes at the start of the page): a magic string, a
//! version, a count and that many [`DeviceEntry`] records. The toolstack
//! writes it before the domain first runs and never again; it is plain data
//! the guest reads. Version 1 knows one kind of device, the console
//! ([`DEVICE_CONSOLE`]), whose ring is the page at [`console_ring_va`] and
//! whose backend is dom0; [`DEVICE_VCPU`] entries name the vCPUs to bring
//! up at start. Kinds a guest does not know must be skipped; a
//! version it does not know means the layout changed, and the guest should
//! fall back to `start_info.console`.

use crate::domctl::{Field, Payload, impl_payload};
use crate::event::EvtchnPort;
use crate::types::{DomId, Mfn, PAGE_SIZE, Pfn};

/// [`DevicePage::magic`].
pub const DEVICE_PAGE_MAGIC: [u8; 8] = *b"XENIADEV";
/// [`DevicePage::version`] of the layout defined here.
pub const DEVICE_PAGE_VERSION: u32 = 1;
/// Most entries a device page holds.
pub const DEVICE_PAGE_MAX_DEVICES: usize = 127;

/// [`DeviceEntry::kind`]: a slot not in use.
pub const DEVICE_NONE: u32 = 0;
/// [`DeviceEntry::kind`]: the console. `ring_mfn`/`ring_pfn` name the
/// [`XenconsInterface`](crate::console::XenconsInterface) page, `evtchn` is
/// the guest's end of an unbound channel that the backend (in
/// `backend`, dom0) binds; the guest notifies it after producing output and
/// is notified when input arrives.
pub const DEVICE_CONSOLE: u32 = 1;
/// [`DeviceEntry::kind`]: a vCPU the toolstack wants up from the start
/// (xl.cfg `vcpus`; Xen's xenstore node `cpu/<id>/availability` = `online`).
/// `id` is the vCPU number; the other fields are zero. The domain has
/// `max_vcpus` vCPUs (xl.cfg `maxvcpus`; `VCPUOP_is_up` answers `ENOENT`
/// past the last): the guest brings up, with `VCPUOP_initialise` and
/// `VCPUOP_up`, those that have an entry and leaves the others down. vCPU 0,
/// which the builder starts, is listed too. A device page without any such
/// entry (an older toolstack) means: vCPU 0 only.
pub const DEVICE_VCPU: u32 = 2;

/// Offset of the `shared_info` page from the `start_info` page at start of
/// day, in pages (the porting guide's item 5).
const SHARED_INFO_PAGES: u64 = 1;

/// Where a domU's console ring is mapped at start of day, given the
/// `start_info` address (`rsi` at entry): two pages after it.
pub const fn console_ring_va(start_info_va: u64) -> u64 {
    start_info_va + (SHARED_INFO_PAGES + 1) * PAGE_SIZE as u64
}

/// Where a domU's device page is mapped at start of day, given the
/// `start_info` address (`rsi` at entry): three pages after it.
pub const fn device_page_va(start_info_va: u64) -> u64 {
    start_info_va + (SHARED_INFO_PAGES + 2) * PAGE_SIZE as u64
}

/// One device (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DeviceEntry {
    /// `DEVICE_*`.
    pub kind: u32,
    /// Which device of its kind: 0 for the first (the console is 0).
    pub id: u32,
    /// The domain running the backend (0, dom0, for the console).
    pub backend: DomId,
    /// Padding.
    pub _pad: u16,
    /// The guest's end of the device's event channel.
    pub evtchn: EvtchnPort,
    /// Machine frame of the device's shared ring page.
    pub ring_mfn: Mfn,
    /// Pseudo-physical frame of the same page (at start of day mapped at
    /// `virt_base + ring_pfn * 4096`).
    pub ring_pfn: Pfn,
}
impl_payload!(DeviceEntry {
    kind,
    id,
    backend,
    _pad,
    evtchn,
    ring_mfn,
    ring_pfn,
});

/// The device page (4080 bytes at the start of its page).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct DevicePage {
    /// [`DEVICE_PAGE_MAGIC`].
    pub magic: [u8; 8],
    /// [`DEVICE_PAGE_VERSION`].
    pub version: u32,
    /// How many leading entries of `devices` are in use.
    pub nr_devices: u32,
    /// The devices; entries past `nr_devices` are zero.
    pub devices: [DeviceEntry; DEVICE_PAGE_MAX_DEVICES],
}

impl DevicePage {
    /// An empty page of the current version.
    pub const fn new() -> Self {
        const EMPTY: DeviceEntry = DeviceEntry {
            kind: DEVICE_NONE,
            id: 0,
            backend: 0,
            _pad: 0,
            evtchn: 0,
            ring_mfn: Mfn(0),
            ring_pfn: Pfn(0),
        };
        Self {
            magic: DEVICE_PAGE_MAGIC,
            version: DEVICE_PAGE_VERSION,
            nr_devices: 0,
            devices: [EMPTY; DEVICE_PAGE_MAX_DEVICES],
        }
    }

    /// Whether the magic and version are the ones defined here.
    pub fn is_valid(&self) -> bool {
        self.magic == DEVICE_PAGE_MAGIC && self.version == DEVICE_PAGE_VERSION
    }

    /// The entries in use (at most [`DEVICE_PAGE_MAX_DEVICES`], whatever
    /// `nr_devices` claims).
    pub fn entries(&self) -> &[DeviceEntry] {
        let n = (self.nr_devices as usize).min(DEVICE_PAGE_MAX_DEVICES);
        &self.devices[..n]
    }

    /// The first device of `kind` with number `id`.
    pub fn find(&self, kind: u32, id: u32) -> Option<&DeviceEntry> {
        self.entries().iter().find(|d| d.kind == kind && d.id == id)
    }

    /// Appends `entry`; `false` if the page is full.
    pub fn push(&mut self, entry: DeviceEntry) -> bool {
        let n = self.nr_devices as usize;
        match self.devices.get_mut(n) {
            Some(slot) => {
                *slot = entry;
                self.nr_devices += 1;
                true
            }
            None => false,
        }
    }

    /// The whole page as the guest finds it: the structure's bytes
    /// (little-endian, `repr(C)` offsets) followed by zeros.
    pub fn to_bytes(&self) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        self.magic
            .put(&mut page[core::mem::offset_of!(DevicePage, magic)..]);
        self.version
            .put(&mut page[core::mem::offset_of!(DevicePage, version)..]);
        self.nr_devices
            .put(&mut page[core::mem::offset_of!(DevicePage, nr_devices)..]);
        let entries = core::mem::offset_of!(DevicePage, devices);
        let size = core::mem::size_of::<DeviceEntry>();
        for (i, d) in self.devices.iter().enumerate() {
            d.put(&mut page[entries + i * size..]);
        }
        page
    }

    /// The structure held in the first 4080 bytes of `bytes` (any bytes give
    /// a value); `None` if `bytes` is shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..core::mem::size_of::<DevicePage>())?;
        let entries = core::mem::offset_of!(DevicePage, devices);
        let size = core::mem::size_of::<DeviceEntry>();
        Some(Self {
            magic: Field::get(&bytes[core::mem::offset_of!(DevicePage, magic)..]),
            version: Field::get(&bytes[core::mem::offset_of!(DevicePage, version)..]),
            nr_devices: Field::get(&bytes[core::mem::offset_of!(DevicePage, nr_devices)..]),
            devices: core::array::from_fn(|i| {
                DeviceEntry::decode_prefix(&bytes[entries + i * size..]).unwrap_or_default()
            }),
        })
    }
}

impl Default for DevicePage {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_layout!(DeviceEntry, 32, 8, {
            kind: 0,
            id: 4,
            backend: 8,
            evtchn: 12,
            ring_mfn: 16,
            ring_pfn: 24,
        });
        assert_layout!(DevicePage, 4080, 8, {
            magic: 0,
            version: 8,
            nr_devices: 12,
            devices: 16,
        });
        assert!(core::mem::size_of::<DevicePage>() <= PAGE_SIZE);
    }

    #[test]
    fn positions_follow_shared_info() {
        let si = 0xFFFF_FFFF_8123_4000;
        assert_eq!(
            crate::start_info::StartInfo::shared_info_va(si),
            si + 0x1000
        );
        assert_eq!(console_ring_va(si), si + 0x2000);
        assert_eq!(device_page_va(si), si + 0x3000);
    }

    #[test]
    fn bytes_round_trip() {
        let mut page = DevicePage::new();
        assert!(page.is_valid());
        assert!(page.entries().is_empty());
        let console = DeviceEntry {
            kind: DEVICE_CONSOLE,
            id: 0,
            backend: 0,
            _pad: 0,
            evtchn: 3,
            ring_mfn: Mfn(0x12345),
            ring_pfn: Pfn(0x678),
        };
        assert!(page.push(console));
        let bytes = page.to_bytes();
        assert_eq!(&bytes[..8], b"XENIADEV");
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        assert_eq!(bytes[12..16], 1u32.to_le_bytes());
        assert_eq!(bytes[16..20], DEVICE_CONSOLE.to_le_bytes());
        assert_eq!(bytes[28..32], 3u32.to_le_bytes());
        assert_eq!(bytes[32..40], 0x12345u64.to_le_bytes());
        assert_eq!(bytes[40..48], 0x678u64.to_le_bytes());
        assert!(bytes[48..].iter().all(|&b| b == 0));
        let back = DevicePage::from_bytes(&bytes).unwrap();
        assert_eq!(back, page);
        assert_eq!(back.find(DEVICE_CONSOLE, 0), Some(&console));
        assert_eq!(back.find(DEVICE_CONSOLE, 1), None);
        assert_eq!(DevicePage::from_bytes(&bytes[..4000]), None);
    }

    #[test]
    fn hostile_counts_are_bounded() {
        let mut page = DevicePage::new();
        for _ in 0..DEVICE_PAGE_MAX_DEVICES {
            assert!(page.push(DeviceEntry::default()));
        }
        assert!(!page.push(DeviceEntry::default()), "full");
        page.nr_devices = u32::MAX;
        assert_eq!(page.entries().len(), DEVICE_PAGE_MAX_DEVICES);
        let garbage = DevicePage::from_bytes(&[0xFF; PAGE_SIZE]).unwrap();
        assert!(!garbage.is_valid());
        assert_eq!(garbage.entries().len(), DEVICE_PAGE_MAX_DEVICES);
    }
}
