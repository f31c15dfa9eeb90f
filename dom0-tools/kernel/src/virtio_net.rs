//! dom0's network card: `virtio-drivers`' `VirtIONetRaw` over its PCI transport (as
//! [`crate::virtio_blk`]), as port `eth0` of the bridge ([`crate::bridge`]).
//!
//! **Buffers.** Every receive and transmit buffer is a half page of the DMA pool
//! ([`crate::dma::alloc`]), so the device only ever writes there and nothing is bounced: up
//! to [`RX_BUFS`] receive buffers stay posted, up to [`TX_BUFS`] frames are in flight. A
//! buffer holds the virtio-net header (12 bytes, `VIRTIO_F_VERSION_1`) and one frame of at
//! most 1514 bytes (no offloads are negotiated: no GSO, no checksum offload, no merged
//! buffers; the crate's feature set).
//!
//! **Interrupts** take the disks' path: the function's INTx GSI becomes a PIRQ bound to an
//! event channel ([`crate::virtio_blk::bind_gsi`], shared when a disk has the same GSI). dom0
//! blocks in its usual wait; the event wakes it, `kernel::service()` runs [`service`], which
//! acknowledges the interrupt (ISR read, then `PHYSDEVOP_eoi`), takes every received frame
//! to the bridge and gives the device the frames the bridge queued for `eth0`. dom0's
//! `virtio_net=poll` (or a failed interrupt setup) leaves interrupts off: the rings are
//! looked at whenever dom0 services its devices, and dom0 blocks at most
//! [`POLL_TICK_NS`] at a time.
//!
//! **What it trusts.** The device (it is QEMU, or hardware dom0 owns): a length it reports is
//! still checked against the buffer before a frame is handed on.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use xenia_dom0::pci::{BarKind, COMMAND_MASTER, COMMAND_MEMORY, ConfigSpace, Function, reg};
use xenia_guest_rt::events;
use xenia_guest_rt::time::NS_PER_MS;

use crate::bridge::{self, PortId};
use crate::dma::XenHal;
use crate::pcibus::Ports;

/// virtio-net: transitional (0x1000) and modern (0x1041) device IDs.
const NET_DEVICES: [u16; 2] = [0x1000, 0x1041];
/// Red Hat's PCI vendor ID, virtio's.
const VIRTIO_VENDOR: u16 = 0x1af4;
/// Descriptors per virtqueue.
const QUEUE: usize = 64;
/// Receive buffers kept posted: a whole queue's worth, so that the device can hold a long
/// burst while dom0 is off the pCPU (a domU it woke runs meanwhile); the frames a domU gets
/// per wake-up, and so the switches per MiB, depend on it. [`RX_BUFS_MIN`] when the DMA pool
/// cannot give that many (disks took it).
pub const RX_BUFS: usize = QUEUE;
// A buffer's index plus 1 fits `Nic::rx_of`'s bytes.
const _: () = assert!(RX_BUFS < 256 && RX_BUFS_MIN <= RX_BUFS);
/// Receive buffers when the pool is short (the driver's first figure).
pub const RX_BUFS_MIN: usize = 32;
/// Frames in flight to the device at most.
pub const TX_BUFS: usize = 16;
/// One buffer: a half page (the header and a 1514-byte frame fit; the crate wants at least
/// 1526 bytes for a receive buffer).
const BUF: usize = 2048;
/// The virtio-net header with `VIRTIO_F_VERSION_1` (`struct virtio_net_hdr`, 12 bytes,
/// virtio 1.2 §5.1.6).
const HDR: usize = 12;
const PAGE: usize = 4096;
/// The longest dom0 blocks between two looks at the rings when polling.
pub const POLL_TICK_NS: u64 = NS_PER_MS;

/// Whether the driver polls instead of taking interrupts (`virtio_net=poll`).
pub static POLL: AtomicBool = AtomicBool::new(false);
/// Whether a card polls now (asked for, or its interrupt could not be set up).
static POLLING: AtomicBool = AtomicBool::new(false);

/// The card's PIRQ (0: none), for a disk that shares its GSI.
static PIRQ: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Lowers the card's interrupt line if it is on `pirq` (a disk's, shared): called by the
/// disk's wait before its EOI, so that frames arriving during a disk request do not bring the
/// shared interrupt straight back after each EOI. The frames stay in the ring for
/// [`service`], which looks at the rings whatever the interrupt says.
pub fn ack_shared(pirq: u32) {
    if pirq == 0 || PIRQ.load(Ordering::Relaxed) != pirq {
        return;
    }
    if let Some(mut guard) = NIC.try_lock()
        && let Some(nic) = guard.as_mut()
    {
        let _ = nic.net.ack_interrupt();
    }
}

/// Whether dom0 must wake often to look at a polled card.
pub fn polling() -> bool {
    POLLING.load(Ordering::Relaxed)
}

/// A DMA buffer: kernel address and whether the device holds it (its token).
#[derive(Clone, Copy)]
struct Slot {
    va: u64,
    token: Option<u16>,
}

impl Slot {
    /// The buffer's bytes.
    fn bytes(&self) -> &'static mut [u8] {
        // SAFETY: `va` is BUF bytes of the DMA pool given to this driver alone at probe and
        // never freed; the driver (under its lock) makes one slice of a slot at a time and
        // never while the device holds it (token set) except to hand the same buffer back to
        // the crate, which only reads its address and length.
        unsafe { core::slice::from_raw_parts_mut(self.va as *mut u8, BUF) }
    }
}

struct Irq {
    pirq: u32,
    port: u32,
    seen: u32,
    taken: &'static AtomicU64,
}

struct Nic {
    net: VirtIONetRaw<XenHal, PciTransport, QUEUE>,
    irq: Option<Irq>,
    port: PortId,
    /// The receive buffers ([`RX_BUFS`], or [`RX_BUFS_MIN`] when the pool was short).
    rx: Vec<Slot>,
    /// For each descriptor (a token), which receive buffer the device holds with it, plus 1
    /// (0: none): a frame's buffer is found at once rather than by a search of them all.
    rx_of: [u8; QUEUE],
    tx: [Slot; TX_BUFS],
    /// Frames the device reported with a length that does not fit (dropped).
    bad: u64,
}

static NIC: spin::Mutex<Option<Nic>> = spin::Mutex::new(None);

impl Nic {
    fn take_interrupt(&mut self) {
        let Some(irq) = self.irq.as_mut() else {
            return;
        };
        let count = events::count(irq.port);
        if count != irq.seen {
            irq.seen = count;
            irq.taken.fetch_add(1, Ordering::Relaxed);
            let _ = self.net.ack_interrupt();
            let _ = guest_abi::calls::physdev_eoi(irq.pirq);
        }
    }

    /// Gives every free receive buffer to the device.
    fn post_rx(&mut self) {
        for (i, slot) in self.rx.iter_mut().enumerate() {
            if slot.token.is_some() {
                continue;
            }
            // SAFETY: the buffer is the slot's own pool memory and not touched again until the
            // device gives it back (`receive_complete` with the same buffer).
            match unsafe { self.net.receive_begin(slot.bytes()) } {
                Ok(token) => {
                    slot.token = Some(token);
                    // Tokens are descriptor indexes (< QUEUE); at most QUEUE (<= 255) buffers.
                    if let Some(e) = self.rx_of.get_mut(usize::from(token)) {
                        *e = (i + 1) as u8;
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Takes the frames the device received to the bridge (at most one ring's worth).
    fn receive(&mut self) -> usize {
        let mut got = 0;
        for _ in 0..self.rx.len() {
            let Some(token) = self.net.poll_receive() else {
                break;
            };
            let at = self
                .rx_of
                .get(usize::from(token))
                .map_or(0, |&e| usize::from(e));
            let Some(slot) = at
                .checked_sub(1)
                .and_then(|i| self.rx.get_mut(i))
                .filter(|s| s.token == Some(token))
            else {
                // Not a token of ours: the device is confused; stop looking this turn.
                break;
            };
            if let Some(e) = self.rx_of.get_mut(usize::from(token)) {
                *e = 0;
            }
            let buf = slot.bytes();
            // SAFETY: the same buffer was given with this token in `post_rx`.
            let done = unsafe { self.net.receive_complete(token, buf) };
            slot.token = None;
            match done {
                Ok((hdr, len)) if hdr.checked_add(len).is_some_and(|end| end <= BUF) => {
                    bridge::input(self.port, &buf[hdr..hdr + len]);
                    got += 1;
                }
                _ => self.bad += 1,
            }
        }
        self.post_rx();
        got
    }

    /// Reaps the frames the device has sent.
    fn reap_tx(&mut self) {
        while let Some(token) = self.net.poll_transmit() {
            let Some(slot) = self.tx.iter_mut().find(|s| s.token == Some(token)) else {
                break;
            };
            // SAFETY: the same buffer was given with this token in `transmit`.
            let _ = unsafe { self.net.transmit_complete(token, slot.bytes()) };
            slot.token = None;
        }
    }

    /// Gives the device the frames the bridge queued for `eth0`, as many as there are free
    /// buffers.
    fn transmit(&mut self) {
        for i in 0..TX_BUFS {
            if self.tx[i].token.is_some() {
                continue;
            }
            let buf = self.tx[i].bytes();
            let Some(len) = bridge::pop(self.port, &mut buf[HDR..]) else {
                return;
            };
            if self.net.fill_buffer_header(buf).is_err() {
                return;
            }
            // SAFETY: the slot's buffer is not touched again until `reap_tx` gives it back.
            match unsafe { self.net.transmit_begin(&buf[..HDR + len]) } {
                Ok(token) => self.tx[i].token = Some(token),
                Err(_) => return,
            }
        }
    }
}

/// Looks at the card: its interrupt, the frames it received, the frames the bridge has for
/// it. Called from `kernel::service()`; a call that finds the driver busy (a nested service)
/// returns at once.
/// Returns how many frames it took from the card.
pub fn service() -> usize {
    let Some(mut guard) = NIC.try_lock() else {
        return 0;
    };
    let Some(nic) = guard.as_mut() else {
        return 0;
    };
    crate::wait::take_events();
    nic.take_interrupt();
    nic.reap_tx();
    let got = nic.receive();
    nic.transmit();
    got
}

/// The card's MAC address, if there is a card.
pub fn mac() -> Option<[u8; 6]> {
    NIC.lock().as_ref().map(|n| n.net.mac_address())
}

/// The receive buffers: [`RX_BUFS`] of them, or [`RX_BUFS_MIN`] if the pool cannot spare
/// that many (a machine with several disks).
fn rx_buffers() -> Option<Vec<Slot>> {
    let mut v = Vec::new();
    v.try_reserve_exact(RX_BUFS).ok()?;
    if let Some(b) = buffers::<RX_BUFS>() {
        v.extend_from_slice(&b);
    } else {
        v.extend_from_slice(&buffers::<RX_BUFS_MIN>()?);
    }
    Some(v)
}

/// Half-page buffers from the DMA pool: `n` of them, two a page.
fn buffers<const N: usize>() -> Option<[Slot; N]> {
    let (_, va) = crate::dma::alloc((N * BUF).div_ceil(PAGE))?;
    Some(core::array::from_fn(|i| Slot {
        va: va + (i * BUF) as u64,
        token: None,
    }))
}

fn setup_irq(f: &Function) -> Result<Irq, String> {
    let (pirq, port) = crate::virtio_blk::bind_gsi(f)?;
    Ok(Irq {
        pirq,
        port,
        seen: events::count(port),
        taken: Box::leak(Box::new(AtomicU64::new(0))),
    })
}

fn probe(f: &Function) -> Result<(), String> {
    for bar in f.bars.iter().filter(|b| b.kind != BarKind::Io) {
        crate::dma::map_mmio(bar.address, bar.size)
            .map_err(|e| format!("cannot map BAR {} ({e})", bar.index))?;
    }
    let mut cfg = Ports;
    let command = cfg.read32(f.bdf, reg::COMMAND) & 0xffff;
    cfg.write32(
        f.bdf,
        reg::COMMAND,
        command | u32::from(COMMAND_MEMORY | COMMAND_MASTER),
    );
    let mut root = PciRoot::new(Ports);
    let df = DeviceFunction {
        bus: f.bdf.bus,
        device: f.bdf.device,
        function: f.bdf.function,
    };
    let transport = PciTransport::new::<XenHal, Ports>(&mut root, df)
        .map_err(|e| format!("virtio transport: {e}"))?;
    let mut net = VirtIONetRaw::<XenHal, _, QUEUE>::new(transport).map_err(|e| format!("{e}"))?;
    let rx = rx_buffers().ok_or("no DMA pool pages for its receive buffers")?;
    let tx = buffers::<TX_BUFS>().ok_or("no DMA pool pages for its transmit buffers")?;
    let mac = net.mac_address();
    let irq = if POLL.load(Ordering::Relaxed) {
        crate::tprintln!("virtio_net eth0: polling (virtio_net=poll)");
        None
    } else {
        match setup_irq(f) {
            Ok(irq) => {
                crate::virtio_blk::count_interrupts(
                    u32::from(f.interrupt_line),
                    String::from("eth0"),
                    irq.taken,
                );
                crate::tprintln!(
                    "virtio_net eth0: GSI {} -> pirq {} -> event channel {}",
                    f.interrupt_line,
                    irq.pirq,
                    irq.port
                );
                Some(irq)
            }
            Err(why) => {
                crate::tprintln!("virtio_net eth0: no interrupt ({why}); polling");
                None
            }
        }
    };
    if let Some(irq) = &irq {
        PIRQ.store(irq.pirq, Ordering::Relaxed);
        net.enable_interrupts();
    } else {
        net.disable_interrupts();
        POLLING.store(true, Ordering::Relaxed);
    }
    let port = bridge::attach("eth0").ok_or("the bridge has no room")?;
    bridge::set_mac(mac);
    crate::tprintln!(
        "virtio_net {}: eth0: {} ({} receive buffers, {} in flight); port of {}",
        f.bdf,
        mac_text(&mac),
        rx.len(),
        TX_BUFS,
        bridge::NAME
    );
    let mut nic = Nic {
        net,
        irq,
        port,
        rx,
        rx_of: [0; QUEUE],
        tx,
        bad: 0,
    };
    nic.post_rx();
    *NIC.lock() = Some(nic);
    Ok(())
}

/// `52:54:00:12:34:56`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// Finds the first virtio-net function and starts the driver on it as `eth0`. Boot only,
/// after [`crate::pcibus::init`] and [`crate::dma::init`].
pub fn init() {
    for f in crate::pcibus::functions() {
        if f.vendor != VIRTIO_VENDOR || !NET_DEVICES.contains(&f.device) {
            continue;
        }
        match probe(&f) {
            Ok(()) => return,
            Err(why) => crate::tprintln!("virtio_net {}: not started: {why}", f.bdf),
        }
    }
}
