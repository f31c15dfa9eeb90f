//! `physdev_op(cmd, arg)`: the hardware domain's device interrupts (DESIGN.md §11, Xen's
//! `physdev.h`), for GSIs (I/O APIC inputs) only. The PIRQ table (`crate::pirq`) decides;
//! the I/O APIC code (`arch::x86_64::ioapic`) programs, masks and unmasks the pins.
//!
//! Every interrupt command is dom0's: any other domain gets `EPERM` before its argument is
//! read. Two commands are any domain's, as in Xen, for what a Linux domU asks at boot:
//! `PHYSDEVOP_set_iopl` (the kernel's virtual IOPL, which turns on port I/O emulation in
//! `guest::privop`) and, for domains other than dom0, `PHYSDEVOP_pirq_eoi_gmfn_v2`.
//! `PHYSDEVOP_get_free_pirq` is refused like the interrupt commands (`EPERM` for a domU, which
//! has no PIRQs; dom0 maps GSIs with `map_pirq` and has no use for it: `ENOSYS`).
//! GSIs the hypervisor keeps (COM1's, the PIT's, the 8259's) and GSIs beyond the I/O APIC
//! are refused (`EPERM`, `EINVAL`). Commands Xenia does not have are `ENOSYS`, as in Xen.

use core::mem::offset_of;

use guest_abi::errno::Errno;
use guest_abi::physdev as pd;
use guest_abi::types::DOMID_SELF;

use super::context::{Hc, HcResult, Ret};
use crate::arch::x86_64::ioapic;
use crate::domain::Privilege;
use crate::pirq::{GsiMode, Pin};

/// Applies what the PIRQ table said about a pin.
pub fn apply(pin: Pin) {
    match pin {
        Pin::Keep => {}
        Pin::Mask(gsi) => ioapic::set_masked(gsi, true),
        Pin::Unmask { gsi, .. } => ioapic::set_masked(gsi, false),
    }
}

/// A GSI from the guest: `EINVAL` if negative or beyond the I/O APIC, `EPERM` if the
/// hypervisor keeps it.
fn gsi_arg(gsi: i32) -> Result<u32, Errno> {
    let gsi = u32::try_from(gsi).map_err(|_| Errno::EINVAL)?;
    if gsi >= ioapic::nr_gsis() {
        return Err(Errno::EINVAL);
    }
    if ioapic::hypervisor_gsi(gsi) {
        return Err(Errno::EPERM);
    }
    Ok(gsi)
}

/// The `domid` of map and unmap: the caller itself (Xenia has no pass-through to others).
fn own(cx: &Hc, domid: u16) -> Result<(), Errno> {
    if domid == DOMID_SELF || domid == cx.id() {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

pub fn physdev_op(cx: &mut Hc) -> HcResult {
    let cmd = u32::try_from(cx.arg(0)).map_err(|_| Errno::ENOSYS)?;
    match cmd {
        pd::PHYSDEVOP_SET_IOPL => {
            let a = cx.space().read(cx.ptr::<pd::PhysdevSetIopl>(1))?;
            let iopl = u8::try_from(a.iopl)
                .ok()
                .filter(|&l| l <= 3)
                .ok_or(Errno::EINVAL)?;
            cx.vcpu().viopl = iopl;
            return Ok(Ret::Value(0));
        }
        pd::PHYSDEVOP_PIRQ_EOI_GMFN_V2 if cx.me_ref().privilege == Privilege::Guest => {
            let a = cx.space().read(cx.ptr::<pd::PhysdevPirqEoiGmfn>(1))?;
            if !crate::mm::ft::owned_by(crate::mm::Mfn(a.gmfn), cx.id()) {
                return Err(Errno::EINVAL);
            }
            return Ok(Ret::Value(0));
        }
        _ => {}
    }
    if !matches!(
        cmd,
        pd::PHYSDEVOP_SETUP_GSI
            | pd::PHYSDEVOP_MAP_PIRQ
            | pd::PHYSDEVOP_UNMAP_PIRQ
            | pd::PHYSDEVOP_EOI
            | pd::PHYSDEVOP_IRQ_STATUS_QUERY
            | pd::PHYSDEVOP_GET_FREE_PIRQ
    ) {
        return Err(Errno::ENOSYS);
    }
    cx.privileged()?;
    let space = cx.space();
    match cmd {
        pd::PHYSDEVOP_SETUP_GSI => {
            let a = space.read(cx.ptr::<pd::PhysdevSetupGsi>(1))?;
            let gsi = gsi_arg(a.gsi)?;
            let mode = GsiMode::from_abi(a.triggering, a.polarity)?;
            if let Some(slot) = cx.me().pirqs.setup_gsi(gsi, mode, ioapic::nr_gsis())? {
                // Mapped, not bound yet: its pin, still masked, takes the new mode.
                if !ioapic::program(gsi, slot, mode) {
                    return Err(Errno::EINVAL);
                }
            }
        }
        pd::PHYSDEVOP_MAP_PIRQ => {
            let arg = cx.ptr::<pd::PhysdevMapPirq>(1);
            let a = space.read(arg)?;
            own(cx, a.domid)?;
            match a.kind {
                pd::MAP_PIRQ_TYPE_GSI => {}
                pd::MAP_PIRQ_TYPE_MSI | pd::MAP_PIRQ_TYPE_MSI_SEG | pd::MAP_PIRQ_TYPE_MULTI_MSI => {
                    return Err(Errno::EOPNOTSUPP);
                }
                _ => return Err(Errno::EINVAL),
            }
            let gsi = gsi_arg(a.index)?;
            let want = match a.pirq {
                -1 => None,
                p => Some(u32::try_from(p).map_err(|_| Errno::EINVAL)?),
            };
            let pirqs = &mut cx.me().pirqs;
            let (pirq, slot, new) = pirqs.map_gsi(gsi, want, ioapic::nr_gsis())?;
            if new {
                let mode = pirqs.mode(gsi).unwrap_or_else(|| ioapic::default_mode(gsi));
                if !ioapic::program(gsi, slot, mode) {
                    let _ = pirqs.unmap(pirq);
                    return Err(Errno::EINVAL);
                }
                log::info!(
                    target: "physdev",
                    "dom0: GSI {gsi} is PIRQ {pirq} ({}, active {})",
                    if mode.level { "level" } else { "edge" },
                    if mode.active_low { "low" } else { "high" }
                );
            }
            space.write(
                arg.field::<i32>(offset_of!(pd::PhysdevMapPirq, pirq)),
                &(pirq as i32),
            )?;
        }
        pd::PHYSDEVOP_UNMAP_PIRQ => {
            let a = space.read(cx.ptr::<pd::PhysdevUnmapPirq>(1))?;
            own(cx, a.domid)?;
            let pirq = u32::try_from(a.pirq).map_err(|_| Errno::EINVAL)?;
            let dom = cx.me();
            let (slot, _) = dom.pirqs.get(pirq).ok_or(Errno::EINVAL)?;
            let (gsi, port) = dom.pirqs.unmap(pirq)?;
            ioapic::release(slot, gsi);
            if let Some(port) = port
                && dom.events.pirq_delivery(port, pirq).is_some()
            {
                // Unbound by force, as Xen does: the port is closed.
                dom.events.close(port)?;
                crate::event::clear_pending(dom.shared(), port);
            }
        }
        pd::PHYSDEVOP_EOI => {
            let a = space.read(cx.ptr::<pd::PhysdevEoi>(1))?;
            apply(cx.me().pirqs.eoi(a.irq)?);
        }
        pd::PHYSDEVOP_IRQ_STATUS_QUERY => {
            let arg = cx.ptr::<pd::PhysdevIrqStatusQuery>(1);
            let a = space.read(arg)?;
            let flags = cx.me().pirqs.status(a.irq)?;
            space.write(
                arg.field::<u32>(offset_of!(pd::PhysdevIrqStatusQuery, flags)),
                &flags,
            )?;
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(Ret::Value(0))
}
