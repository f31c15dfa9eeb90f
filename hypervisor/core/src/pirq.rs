//! Physical IRQs of the hardware domain (DESIGN.md §11): which GSI each PIRQ stands for,
//! which event channel it is bound to, and whether its pin waits for the guest's EOI. Xen's
//! `struct pirq` and `physdev_map_pirq`/`evtchn_bind_pirq`/`PHYSDEVOP_eoi`, for GSIs only.
//!
//! The table decides; the hypervisor's I/O APIC code does what it says (program a pin, mask
//! it, unmask it). A mapped PIRQ holds one of [`SLOTS`] interrupt vectors, its slot index
//! being the vector's offset, so the interrupt handler finds its GSI without a search.
//!
//! Every interrupt leaves its pin masked until the guest's `PHYSDEVOP_eoi`
//! ([`PirqTable::interrupt`], [`PirqTable::eoi`]), edge-triggered or level-triggered alike:
//! an interrupt storm costs the hypervisor one interrupt per EOI the guest makes, never
//! more. So [`XENIRQSTAT_NEEDS_EOI`] is set for every PIRQ. (Xen spares edge-triggered pins
//! the EOI; an edge that arrives while its pin is masked is then lost on real hardware —
//! QEMU's I/O APIC keeps it — which a driver that reads its device's status on every event
//! does not notice.)

use guest_abi::errno::Errno;
use guest_abi::event::EvtchnPort;
use guest_abi::physdev::{
    GSI_POLARITY_HIGH, GSI_POLARITY_LOW, GSI_TRIGGER_EDGE, GSI_TRIGGER_LEVEL, XENIRQSTAT_NEEDS_EOI,
};

/// PIRQ numbers are below this (Xen's `nr_pirqs` for a small machine).
pub const NR_PIRQS: u32 = 256;
/// PIRQs mapped at once: one interrupt vector each.
pub const SLOTS: usize = 16;
/// GSIs the table knows (the I/O APIC's inputs; the hypervisor refuses those beyond its
/// I/O APIC's redirection table).
pub const MAX_GSIS: usize = 64;

/// How a GSI is wired: trigger mode and polarity (ACPI's encoding, `PHYSDEVOP_setup_gsi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsiMode {
    pub level: bool,
    pub active_low: bool,
}

impl GsiMode {
    /// From `PHYSDEVOP_setup_gsi`'s fields; `EINVAL` for values ACPI does not define.
    pub fn from_abi(triggering: u8, polarity: u8) -> Result<GsiMode, Errno> {
        let level = match triggering {
            GSI_TRIGGER_EDGE => false,
            GSI_TRIGGER_LEVEL => true,
            _ => return Err(Errno::EINVAL),
        };
        let active_low = match polarity {
            GSI_POLARITY_HIGH => false,
            GSI_POLARITY_LOW => true,
            _ => return Err(Errno::EINVAL),
        };
        Ok(GsiMode { level, active_low })
    }
}

/// One mapped PIRQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pirq {
    pub pirq: u32,
    pub gsi: u32,
    /// The event channel it is bound to (`EVTCHNOP_bind_pirq`).
    pub port: Option<EvtchnPort>,
    /// An interrupt came and the pin stays masked until `PHYSDEVOP_eoi`.
    pub awaiting_eoi: bool,
}

/// What the caller does to the pin after an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Nothing changes.
    Keep,
    /// Mask GSI `gsi`.
    Mask(u32),
    /// Unmask GSI `gsi` (programmed for slot `slot`).
    Unmask { gsi: u32, slot: usize },
}

/// The hardware domain's PIRQs and GSI modes.
#[derive(Clone, Debug)]
pub struct PirqTable {
    slots: [Option<Pirq>; SLOTS],
    modes: [Option<GsiMode>; MAX_GSIS],
}

impl Default for PirqTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PirqTable {
    pub const fn new() -> PirqTable {
        PirqTable {
            slots: [None; SLOTS],
            modes: [None; MAX_GSIS],
        }
    }

    fn slot_of(&self, pirq: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.is_some_and(|p| p.pirq == pirq))
    }

    /// The PIRQ in slot `slot`, if one is mapped there.
    pub fn in_slot(&self, slot: usize) -> Option<Pirq> {
        *self.slots.get(slot)?
    }

    /// PIRQ `pirq`, if mapped, with its slot.
    pub fn get(&self, pirq: u32) -> Option<(usize, Pirq)> {
        let slot = self.slot_of(pirq)?;
        Some((slot, self.slots[slot]?))
    }

    /// The mode `PHYSDEVOP_setup_gsi` gave `gsi`, if any.
    pub fn mode(&self, gsi: u32) -> Option<GsiMode> {
        *self.modes.get(gsi as usize)?
    }

    /// `PHYSDEVOP_setup_gsi`: records `gsi`'s mode for when it is mapped. `EINVAL` for a GSI
    /// beyond `nr_gsis`, `EEXIST` while it is mapped (its pin is programmed; Xen refuses a
    /// change then too).
    pub fn setup_gsi(&mut self, gsi: u32, mode: GsiMode, nr_gsis: u32) -> Result<(), Errno> {
        if gsi >= nr_gsis.min(MAX_GSIS as u32) {
            return Err(Errno::EINVAL);
        }
        if self.slots.iter().flatten().any(|p| p.gsi == gsi) {
            return Err(Errno::EEXIST);
        }
        self.modes[gsi as usize] = Some(mode);
        Ok(())
    }

    /// `PHYSDEVOP_map_pirq` (GSI): a PIRQ for `gsi`, `want` if given, else `gsi` itself if
    /// free, else the lowest free number from 16 up (below that the numbers are the legacy
    /// IRQs'). Returns the PIRQ and its slot (the caller programs the pin, masked). A GSI
    /// already mapped answers with its PIRQ when `want` is none or that PIRQ (Xen's
    /// `map_domain_pirq` is idempotent), `EEXIST` when `want` names another. `EINVAL` for a
    /// GSI beyond `nr_gsis` or a PIRQ beyond [`NR_PIRQS`]; `EEXIST` if `want` is taken;
    /// `ENOSPC` when every slot is in use.
    pub fn map_gsi(
        &mut self,
        gsi: u32,
        want: Option<u32>,
        nr_gsis: u32,
    ) -> Result<(u32, usize, bool), Errno> {
        if gsi >= nr_gsis.min(MAX_GSIS as u32) {
            return Err(Errno::EINVAL);
        }
        if want.is_some_and(|p| p >= NR_PIRQS) {
            return Err(Errno::EINVAL);
        }
        if let Some(slot) = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|p| p.gsi == gsi))
        {
            let existing = self.slots[slot].map_or(0, |p| p.pirq);
            return match want {
                Some(p) if p != existing => Err(Errno::EEXIST),
                _ => Ok((existing, slot, false)),
            };
        }
        let pirq = match want {
            Some(p) if self.slot_of(p).is_some() => return Err(Errno::EEXIST),
            Some(p) => p,
            None if gsi < NR_PIRQS && self.slot_of(gsi).is_none() => gsi,
            None => (16..NR_PIRQS)
                .find(|&p| self.slot_of(p).is_none())
                .ok_or(Errno::ENOSPC)?,
        };
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Errno::ENOSPC)?;
        self.slots[slot] = Some(Pirq {
            pirq,
            gsi,
            port: None,
            awaiting_eoi: false,
        });
        Ok((pirq, slot, true))
    }

    /// `PHYSDEVOP_unmap_pirq`: forgets `pirq`. Returns its GSI (whose pin the caller masks
    /// and frees) and the port it was bound to (which the caller closes: Xen unbinds by
    /// force too). `EINVAL` if it is not mapped.
    pub fn unmap(&mut self, pirq: u32) -> Result<(u32, Option<EvtchnPort>), Errno> {
        let slot = self.slot_of(pirq).ok_or(Errno::EINVAL)?;
        let p = self.slots[slot].take().ok_or(Errno::EINVAL)?;
        Ok((p.gsi, p.port))
    }

    /// `EVTCHNOP_bind_pirq`: `pirq` notifies `port` from now on; its pin is unmasked (Xen's
    /// `pirq_guest_bind` starts the IRQ). `EINVAL` if `pirq` is not mapped, `EEXIST` if it
    /// is bound already.
    pub fn bind(&mut self, pirq: u32, port: EvtchnPort) -> Result<Pin, Errno> {
        let slot = self.slot_of(pirq).ok_or(Errno::EINVAL)?;
        let p = self.slots[slot].as_mut().ok_or(Errno::EINVAL)?;
        if p.port.is_some() {
            return Err(Errno::EEXIST);
        }
        p.port = Some(port);
        p.awaiting_eoi = false;
        Ok(Pin::Unmask { gsi: p.gsi, slot })
    }

    /// Whether `pirq` is mapped and not bound (checked before a port is taken for it).
    pub fn bindable(&self, pirq: u32) -> Result<(), Errno> {
        match self.get(pirq) {
            None => Err(Errno::EINVAL),
            Some((_, p)) if p.port.is_some() => Err(Errno::EEXIST),
            Some(_) => Ok(()),
        }
    }

    /// `EVTCHNOP_close` of the port `pirq` is bound to: the binding goes and the pin is
    /// masked. Nothing if `pirq` is not mapped (unmapped since).
    pub fn unbind(&mut self, pirq: u32) -> Pin {
        let Some(slot) = self.slot_of(pirq) else {
            return Pin::Keep;
        };
        match self.slots[slot].as_mut() {
            Some(p) => {
                p.port = None;
                p.awaiting_eoi = false;
                Pin::Mask(p.gsi)
            }
            None => Pin::Keep,
        }
    }

    /// An interrupt arrived on slot `slot`'s vector (its pin is masked already): the PIRQ now
    /// waits for its EOI. Returns the PIRQ and port to raise, if one is bound.
    pub fn interrupt(&mut self, slot: usize) -> Option<(u32, EvtchnPort)> {
        let p = self.slots.get_mut(slot)?.as_mut()?;
        p.awaiting_eoi = true;
        Some((p.pirq, p.port?))
    }

    /// `PHYSDEVOP_eoi`: the guest serviced `pirq`; unmask its pin if an interrupt left it
    /// masked and it is still bound. `EINVAL` if it is not mapped.
    pub fn eoi(&mut self, pirq: u32) -> Result<Pin, Errno> {
        let slot = self.slot_of(pirq).ok_or(Errno::EINVAL)?;
        let p = self.slots[slot].as_mut().ok_or(Errno::EINVAL)?;
        if !p.awaiting_eoi {
            return Ok(Pin::Keep);
        }
        p.awaiting_eoi = false;
        Ok(if p.port.is_some() {
            Pin::Unmask { gsi: p.gsi, slot }
        } else {
            Pin::Keep
        })
    }

    /// `PHYSDEVOP_irq_status_query`: `XENIRQSTAT_*` of `pirq`. `EINVAL` if it is not mapped.
    pub fn status(&self, pirq: u32) -> Result<u32, Errno> {
        self.slot_of(pirq).ok_or(Errno::EINVAL)?;
        Ok(XENIRQSTAT_NEEDS_EOI)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVEL: GsiMode = GsiMode {
        level: true,
        active_low: false,
    };

    #[test]
    fn modes_follow_acpi_and_refuse_the_rest() {
        assert_eq!(
            GsiMode::from_abi(1, 1),
            Ok(GsiMode {
                level: true,
                active_low: true
            })
        );
        assert_eq!(
            GsiMode::from_abi(0, 0),
            Ok(GsiMode {
                level: false,
                active_low: false
            })
        );
        assert_eq!(GsiMode::from_abi(2, 0), Err(Errno::EINVAL));
        assert_eq!(GsiMode::from_abi(0, 7), Err(Errno::EINVAL));
    }

    #[test]
    fn map_bind_interrupt_eoi_unmap() {
        let mut t = PirqTable::new();
        t.setup_gsi(11, LEVEL, 24).unwrap();
        assert_eq!(t.mode(11), Some(LEVEL));
        assert_eq!(t.setup_gsi(24, LEVEL, 24), Err(Errno::EINVAL));
        let (pirq, slot, new) = t.map_gsi(11, None, 24).unwrap();
        assert_eq!((pirq, new), (11, true));
        // Mapping again is idempotent; naming another PIRQ for it is not.
        assert_eq!(t.map_gsi(11, None, 24), Ok((11, slot, false)));
        assert_eq!(t.map_gsi(11, Some(40), 24), Err(Errno::EEXIST));
        assert_eq!(t.setup_gsi(11, LEVEL, 24), Err(Errno::EEXIST));
        // Not bound: an interrupt raises nothing, but the pin waits for an EOI.
        assert_eq!(t.interrupt(slot), None);
        assert_eq!(t.eoi(11), Ok(Pin::Keep));
        assert_eq!(t.bind(11, 5), Ok(Pin::Unmask { gsi: 11, slot }));
        assert_eq!(t.bind(11, 6), Err(Errno::EEXIST));
        assert_eq!(t.bindable(11), Err(Errno::EEXIST));
        assert_eq!(t.status(11), Ok(XENIRQSTAT_NEEDS_EOI));
        // A storm: each interrupt needs an EOI before the pin is unmasked again; EOIs
        // without an interrupt do nothing.
        for _ in 0..3 {
            assert_eq!(t.interrupt(slot), Some((11, 5)));
            assert_eq!(t.interrupt(slot), Some((11, 5)));
            assert_eq!(t.eoi(11), Ok(Pin::Unmask { gsi: 11, slot }));
            assert_eq!(t.eoi(11), Ok(Pin::Keep));
        }
        assert_eq!(t.unbind(11), Pin::Mask(11));
        assert_eq!(t.unbind(12), Pin::Keep);
        assert_eq!(t.bind(11, 7), Ok(Pin::Unmask { gsi: 11, slot }));
        assert_eq!(t.unmap(11), Ok((11, Some(7))));
        assert_eq!(t.unmap(11), Err(Errno::EINVAL));
        assert_eq!(t.eoi(11), Err(Errno::EINVAL));
        assert_eq!(t.status(11), Err(Errno::EINVAL));
        assert_eq!(t.interrupt(slot), None);
    }

    #[test]
    fn pirq_numbers_and_slots_are_bounded() {
        let mut t = PirqTable::new();
        assert_eq!(t.map_gsi(1, Some(NR_PIRQS), 24), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(1, Some(100), 24).map(|m| m.0), Ok(100));
        assert_eq!(t.map_gsi(2, Some(100), 24), Err(Errno::EEXIST));
        // GSI 2 wants PIRQ 2 (free).
        assert_eq!(t.map_gsi(2, None, 24).map(|m| m.0), Ok(2));
        // PIRQ 3 taken by hand: GSI 3 gets the lowest free number from 16.
        assert_eq!(t.map_gsi(4, Some(3), 24).map(|m| m.0), Ok(3));
        assert_eq!(t.map_gsi(3, None, 24).map(|m| m.0), Ok(16));
        let mut gsi = 5;
        while t.slots.iter().any(Option::is_none) {
            t.map_gsi(gsi, None, 64).unwrap();
            gsi += 1;
        }
        assert_eq!(t.map_gsi(gsi, None, 64), Err(Errno::ENOSPC));
        assert_eq!(t.map_gsi(64, None, 64), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(70, None, 100), Err(Errno::EINVAL));
        assert_eq!(t.interrupt(SLOTS), None);
        assert_eq!(t.in_slot(SLOTS), None);
    }
}
