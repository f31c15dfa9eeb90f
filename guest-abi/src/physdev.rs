//! Physical devices for dom0: `physdev_op(cmd, arg)` (Xen's `physdev.h`).
//!
//! Only the hardware domain (dom0) drives physical devices; every command
//! here fails with `EPERM` for any other domain. What dom0 gets, as in Xen:
//!
//! * **I/O ports** through its pCPU's TSS I/O permission bitmap: every port
//!   except those the hypervisor keeps (COM1, the PICs, the PIT and port
//!   0x61, the reset and ACPI PM ports). PCI configuration mechanism #1
//!   (0xCF8–0xCFF) is dom0's. There is no command for it: `in`/`out` simply
//!   work in dom0's ring 1 (and, because dom0's kernel returns to ring 3
//!   with its own `iretq`, in dom0's ring-3 processes too).
//! * **MMIO** through `mmu_update` with `foreigndom` =
//!   [`DOMID_IO`](crate::types::DOMID_IO): the entry's frame is then a
//!   machine frame of I/O memory, accepted only when it is neither RAM nor
//!   the hypervisor's (local APIC, I/O APIC, HPET, ...).
//! * **Interrupts** as event channels: [`PHYSDEVOP_SETUP_GSI`] sets a GSI's
//!   trigger mode and polarity, [`PHYSDEVOP_MAP_PIRQ`] with
//!   [`MAP_PIRQ_TYPE_GSI`] gives it a PIRQ number,
//!   `EVTCHNOP_BIND_PIRQ` ([`EvtchnBindPirq`](crate::event::EvtchnBindPirq))
//!   binds the PIRQ to a port delivered to vCPU 0. A level-triggered pin is
//!   masked from the interrupt until dom0 calls [`PHYSDEVOP_EOI`], so an
//!   interrupt storm cannot keep the hypervisor busy.
//!   [`PHYSDEVOP_IRQ_STATUS_QUERY`] says whether an EOI is needed.
//! * **Machine-contiguous buffers** for DMA through `XENMEM_exchange`
//!   ([`MemoryExchange`](crate::memory::MemoryExchange)).

use crate::types::DomId;

/// `PHYSDEVOP_eoi` ([`PhysdevEoi`]): the guest has serviced PIRQ `irq`;
/// unmask its pin.
pub const PHYSDEVOP_EOI: u32 = 12;
/// `PHYSDEVOP_irq_status_query` ([`PhysdevIrqStatusQuery`]).
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// `PHYSDEVOP_set_iopl` (Xen). Xenia never raises IOPL (ring 1 could then
/// execute `cli`); fails with `ENOSYS`.
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
/// `PHYSDEVOP_set_iobitmap` (Xen). Dom0's bitmap is fixed; `ENOSYS`.
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
/// `PHYSDEVOP_map_pirq` ([`PhysdevMapPirq`]).
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// `PHYSDEVOP_unmap_pirq` ([`PhysdevUnmapPirq`]).
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
/// `PHYSDEVOP_setup_gsi` ([`PhysdevSetupGsi`]): a GSI's trigger mode and polarity, before
/// it is mapped or while its PIRQ is not bound; `EEXIST` once bound.
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
/// `PHYSDEVOP_get_free_pirq` (Xen; not implemented by Xenia: `ENOSYS`).
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
/// Register a guest frame as the bitmap of PIRQs that need an EOI (Xen's
/// `PHYSDEVOP_pirq_eoi_gmfn_v2`; argument [`PhysdevPirqEoiGmfn`]). For a domain other than
/// dom0 Xenia checks the frame is the caller's and answers 0, as Xen does: such a domain
/// has no PIRQs, so the bitmap stays all zeros. dom0 gets `ENOSYS` (it EOIs with
/// [`PHYSDEVOP_EOI`]).
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;

/// Argument of [`PHYSDEVOP_SET_IOPL`] (Xen's `struct physdev_set_iopl`): the kernel's
/// virtual I/O privilege level, 0–3 (`EINVAL` above). At 1 or more the kernel's port I/O is
/// emulated: reads give all ones, writes are dropped (a domain has no ports).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevSetIopl {
    /// IN: the level, 0–3.
    pub iopl: u32,
}

/// Argument of [`PHYSDEVOP_PIRQ_EOI_GMFN_V2`] (Xen's `struct physdev_pirq_eoi_gmfn`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevPirqEoiGmfn {
    /// IN: the frame (a machine frame number: Xenia's guests are not translated).
    pub gmfn: u64,
}

/// [`PhysdevMapPirq::kind`]: an MSI (not implemented by Xenia).
pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
/// [`PhysdevMapPirq::kind`]: a GSI (an I/O APIC input); `index` is the GSI.
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
/// [`PhysdevMapPirq::kind`]: unknown (Xen).
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
/// [`PhysdevMapPirq::kind`]: an MSI with a PCI segment (Xen).
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
/// [`PhysdevMapPirq::kind`]: several MSIs (Xen).
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// [`PhysdevIrqStatusQuery::flags`]: the guest must call [`PHYSDEVOP_EOI`]
/// after servicing the interrupt.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// [`PhysdevIrqStatusQuery::flags`]: the IRQ is shared by several guests.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// [`PhysdevSetupGsi::triggering`]: edge-triggered (ACPI's encoding, as
/// Linux's dom0 passes it).
pub const GSI_TRIGGER_EDGE: u8 = 0;
/// [`PhysdevSetupGsi::triggering`]: level-triggered.
pub const GSI_TRIGGER_LEVEL: u8 = 1;
/// [`PhysdevSetupGsi::polarity`]: active high.
pub const GSI_POLARITY_HIGH: u8 = 0;
/// [`PhysdevSetupGsi::polarity`]: active low.
pub const GSI_POLARITY_LOW: u8 = 1;

/// Argument of [`PHYSDEVOP_EOI`] (Xen's `struct physdev_eoi`, 4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevEoi {
    /// IN: the PIRQ.
    pub irq: u32,
}

/// Argument of [`PHYSDEVOP_IRQ_STATUS_QUERY`] (Xen's `struct
/// physdev_irq_status_query`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevIrqStatusQuery {
    /// IN: the PIRQ.
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*`.
    pub flags: u32,
}

/// Argument of [`PHYSDEVOP_MAP_PIRQ`] (Xen's `struct physdev_map_pirq`, 40
/// bytes). Xen names the second field `type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevMapPirq {
    /// IN: the domain that gets the PIRQ (`DOMID_SELF` or dom0's own id).
    pub domid: DomId,
    /// Padding (Xen's implicit padding).
    pub _pad0: u16,
    /// IN: `MAP_PIRQ_TYPE_*` (Xenia: [`MAP_PIRQ_TYPE_GSI`] only).
    pub kind: i32,
    /// IN: the GSI for [`MAP_PIRQ_TYPE_GSI`].
    pub index: i32,
    /// IN: the PIRQ wanted, or -1 to let the hypervisor choose; OUT: the
    /// PIRQ.
    pub pirq: i32,
    /// IN: PCI bus (MSI only).
    pub bus: i32,
    /// IN: PCI device and function (MSI only).
    pub devfn: i32,
    /// IN: MSI-X entry (MSI only).
    pub entry_nr: i32,
    /// Padding (Xen's implicit padding).
    pub _pad1: u32,
    /// IN: MSI-X table base (MSI only).
    pub table_base: u64,
}

/// Argument of [`PHYSDEVOP_UNMAP_PIRQ`] (Xen's `struct physdev_unmap_pirq`,
/// 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevUnmapPirq {
    /// IN: the domain (`DOMID_SELF` or dom0's own id).
    pub domid: DomId,
    /// Padding (Xen's implicit padding).
    pub _pad0: u16,
    /// IN: the PIRQ.
    pub pirq: i32,
}

/// Argument of [`PHYSDEVOP_SETUP_GSI`] (Xen's `struct physdev_setup_gsi`, 8
/// bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PhysdevSetupGsi {
    /// IN: the GSI (I/O APIC input).
    pub gsi: i32,
    /// IN: [`GSI_TRIGGER_EDGE`] or [`GSI_TRIGGER_LEVEL`].
    pub triggering: u8,
    /// IN: [`GSI_POLARITY_HIGH`] or [`GSI_POLARITY_LOW`].
    pub polarity: u8,
    /// Padding (Xen's implicit padding).
    pub _pad0: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        assert_eq!(
            [
                PHYSDEVOP_IRQ_STATUS_QUERY,
                PHYSDEVOP_SET_IOPL,
                PHYSDEVOP_SET_IOBITMAP,
                PHYSDEVOP_EOI,
                PHYSDEVOP_MAP_PIRQ,
                PHYSDEVOP_UNMAP_PIRQ,
                PHYSDEVOP_SETUP_GSI,
                PHYSDEVOP_GET_FREE_PIRQ
            ],
            [5, 6, 7, 12, 13, 14, 21, 23]
        );
        assert_eq!(
            [
                MAP_PIRQ_TYPE_MSI,
                MAP_PIRQ_TYPE_GSI,
                MAP_PIRQ_TYPE_UNKNOWN,
                MAP_PIRQ_TYPE_MSI_SEG,
                MAP_PIRQ_TYPE_MULTI_MSI
            ],
            [0, 1, 2, 3, 4]
        );
        assert_eq!([XENIRQSTAT_NEEDS_EOI, XENIRQSTAT_SHARED], [1, 2]);
    }

    #[test]
    fn layouts() {
        assert_layout!(PhysdevEoi, 4, 4, { irq: 0 });
        assert_layout!(PhysdevIrqStatusQuery, 8, 4, { irq: 0, flags: 4 });
        assert_layout!(PhysdevMapPirq, 40, 8, {
            domid: 0,
            kind: 4,
            index: 8,
            pirq: 12,
            bus: 16,
            devfn: 20,
            entry_nr: 24,
            table_base: 32,
        });
        assert_layout!(PhysdevUnmapPirq, 8, 4, { domid: 0, pirq: 4 });
        assert_layout!(PhysdevSetupGsi, 8, 4, { gsi: 0, triggering: 4, polarity: 5 });
    }
}
