//! What dom0 needs from the hypervisor to drive a disk (issue 15, DESIGN §11): its I/O
//! ports, device memory through `DOMID_IO`, device interrupts as event channels, and
//! machine-contiguous buffers from `XENMEM_exchange`; and that no other domain has any of it.
//! The test dom0 (dom0test `devaccess`, `devaccess_domu`) does the work and the checks.

use crate::runner::Context;

use super::domains::dom0test;

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(240);

/// dom0 reads PCI configuration space, maps the VGA device's BARs through `DOMID_IO` (RAM,
/// the APICs, the HPET and the hypervisor's frames refused), takes the keyboard controller's
/// interrupt as an event (one event per EOI while the line stays asserted), and exchanges 16
/// frames for one machine-contiguous order-4 extent; the hypervisor's ports fault.
pub fn dom0(ctx: &Context) -> Result<(), String> {
    dom0test(ctx, "devaccess", TIMEOUT, &["devaccess: "], false)
}

/// A domU's `physdev_op`, `EVTCHNOP_bind_pirq`, `DOMID_IO` mappings and exchange of dom0's
/// memory get `EPERM`; its `in`/`out` on PCI and keyboard ports raise #GP.
pub fn domu_eperm(ctx: &Context) -> Result<(), String> {
    dom0test(ctx, "devaccess_domu", TIMEOUT, &["devaccess d"], false)
}
