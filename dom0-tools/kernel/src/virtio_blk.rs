//! dom0's virtio-blk driver: `virtio-drivers`' `VirtIOBlk` over its PCI transport (the
//! modern capabilities, in a memory BAR mapped with [`crate::dma::map_mmio`]), with configuration
//! space through ports ([`crate::pcibus::Ports`]) and DMA through [`crate::dma::XenHal`].
//!
//! **Interrupts.** The device's INTx pin, routed by the firmware to the GSI in its interrupt
//! line register (level-triggered, active high on QEMU's PC, as its MADT says), becomes a
//! PIRQ (`PHYSDEVOP_setup_gsi`, `PHYSDEVOP_map_pirq`) bound to an event channel
//! (`EVTCHNOP_bind_pirq`). A request is queued, then dom0 blocks until the used ring moves,
//! woken by the event (and at least every [`TICK_NS`], so a lost event costs latency, not the
//! request); each interrupt is acknowledged at the device (reading its ISR lowers the line)
//! and then at the hypervisor (`PHYSDEVOP_eoi` unmasks the pin). Every request has a bound
//! ([`REQUEST_NS`]): a device that does not answer in time is marked broken and every later
//! request fails with `EIO`. dom0's command line `virtio_blk=poll` (or a failure to set up the
//! interrupt) polls the used ring instead, spinning.
//!
//! The wait looks at the device only, not at dom0's backends (`crate::service`), so that a
//! backend that serves a domU from there can call [`crate::blockdev`] without finding the
//! disk's lock held by the request it interrupted.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use guest_abi::physdev::{GSI_POLARITY_HIGH, GSI_TRIGGER_LEVEL};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use xenia_dom0::block::{BlockError, SECTOR, disk_name, size_text};
use xenia_dom0::pci::{BarKind, COMMAND_MASTER, COMMAND_MEMORY, ConfigSpace, Function, reg};
use xenia_guest_rt::events;
use xenia_guest_rt::time::{NS_PER_MS, now_ns};

use crate::blockdev::{self, DevId, Disk};
use crate::dma::XenHal;
use crate::pcibus::Ports;

/// Red Hat's PCI vendor ID, virtio's.
const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-blk: transitional (0x1001) and modern (0x1042) device IDs.
const BLK_DEVICES: [u16; 2] = [0x1001, 0x1042];

/// The longest a request may take (TCG is slow; a real disk answers in milliseconds).
const REQUEST_NS: u64 = 10_000 * NS_PER_MS;
/// The longest dom0 blocks between two looks at the used ring.
const TICK_NS: u64 = 5 * NS_PER_MS;
/// The largest transfer in one request (virtio-drivers takes one buffer per request; the
/// pool bounces at most this much).
const CHUNK: usize = 64 << 10;
const PAGE: u64 = 4096;

/// Whether the drivers poll instead of waiting for interrupts (`virtio_blk=poll`).
pub static POLL: AtomicBool = AtomicBool::new(false);

/// The disks' interrupts: GSI, device name, and the count taken, for `/proc/interrupts`.
static INTERRUPTS: spin::Mutex<alloc::vec::Vec<(u32, String, &'static AtomicU64)>> =
    spin::Mutex::new(alloc::vec::Vec::new());

/// `/proc/interrupts`' rows: GSI, count, device.
pub fn interrupts() -> alloc::vec::Vec<(u32, u64, String)> {
    INTERRUPTS
        .lock()
        .iter()
        .map(|(gsi, name, count)| (*gsi, count.load(Ordering::Relaxed), name.clone()))
        .collect()
}

/// The GSIs bound so far: GSI, PIRQ, event channel (disks on one GSI share them).
static BOUND: spin::Mutex<alloc::vec::Vec<(u32, u32, u32)>> =
    spin::Mutex::new(alloc::vec::Vec::new());

/// A disk's interrupt: its PIRQ and event channel.
#[derive(Clone, Copy)]
struct Irq {
    pirq: u32,
    port: u32,
    /// The event count already handled.
    seen: u32,
    /// Interrupts taken.
    taken: &'static AtomicU64,
}

/// One virtio-blk disk.
struct VirtioDisk {
    blk: VirtIOBlk<XenHal, PciTransport>,
    irq: Option<Irq>,
    sectors: u64,
    read_only: bool,
    broken: bool,
    /// Kernel address of the transfer buffer (see [`VirtioDisk::data`]).
    data: u64,
    /// Its machine address (the buffer is machine-contiguous).
    data_ma: u64,
    req: BlkReq,
    resp: BlkResp,
}

impl VirtioDisk {
    /// Waits until the device has put a request in the used ring, within [`REQUEST_NS`].
    fn wait_used(&mut self) -> Result<(), BlockError> {
        let deadline = now_ns() + REQUEST_NS;
        loop {
            crate::wait::take_events();
            self.take_interrupt();
            if self.blk.peek_used().is_some() {
                return Ok(());
            }
            let now = now_ns();
            if now >= deadline {
                self.broken = true;
                crate::tprintln!(
                    "virtio_blk: the device did not answer within 10 s; disk marked broken"
                );
                return Err(BlockError::Timeout);
            }
            match self.irq {
                Some(irq) if events::count(irq.port) == irq.seen => {
                    let masked = events::masked();
                    crate::wait::arm_timer(deadline.min(now + TICK_NS), now);
                    let _ = guest_abi::calls::sched_block();
                    if masked {
                        events::mask();
                    }
                }
                Some(_) => {}
                None => core::hint::spin_loop(),
            }
        }
    }

    /// Acknowledges an interrupt that arrived: at the device, then at the hypervisor.
    fn take_interrupt(&mut self) {
        let Some(irq) = self.irq.as_mut() else {
            return;
        };
        let count = events::count(irq.port);
        if count != irq.seen {
            irq.seen = count;
            let pirq = irq.pirq;
            irq.taken.fetch_add(1, Ordering::Relaxed);
            let _ = self.blk.ack_interrupt();
            // A network card on the same line is lowered too, or the EOI brings the interrupt
            // straight back while its frames wait for dom0's next service.
            crate::virtio_net::ack_shared(pirq);
            let _ = guest_abi::calls::physdev_eoi(pirq);
        }
    }

    /// The disk's transfer buffer: [`CHUNK`] bytes of the DMA pool, machine-contiguous, so
    /// that the device never writes anywhere else.
    fn data(&mut self) -> &'static mut [u8] {
        // SAFETY: `data` is this disk's own pool allocation of CHUNK bytes, mapped writable for
        // the kernel's lifetime; only this disk, under its lock, makes slices of it, one at a
        // time (each dropped before the next is made).
        unsafe { core::slice::from_raw_parts_mut(self.data as *mut u8, CHUNK) }
    }

    /// Reads `len` bytes (at most [`CHUNK`], whole sectors) at `sector` into the transfer
    /// buffer.
    fn read_dma(&mut self, sector: u64, len: usize) -> Result<(), BlockError> {
        let data = &mut self.data()[..len];
        // A device that leaves the status alone must not look successful.
        self.resp = BlkResp::default();
        // SAFETY: `req`, `data` and `resp` are the disk's own and not touched until the
        // request completes below; after a timeout the disk is broken and they are never
        // used again, so a late answer writes only there.
        let token = unsafe {
            self.blk
                .read_blocks_nb(sector as usize, &mut self.req, data, &mut self.resp)
        }
        .map_err(|_| BlockError::Io)?;
        self.wait_used()?;
        let data = &mut self.data()[..len];
        // SAFETY: the same buffers as queued above.
        let done = unsafe {
            self.blk
                .complete_read_blocks(token, &self.req, data, &mut self.resp)
        };
        status(done, &self.resp)
    }

    /// Writes the transfer buffer's first `len` bytes (at most [`CHUNK`], whole sectors) at
    /// `sector`.
    fn write_dma(&mut self, sector: u64, len: usize) -> Result<(), BlockError> {
        let data = &self.data()[..len];
        self.resp = BlkResp::default();
        // SAFETY: as for `read_dma`.
        let token = unsafe {
            self.blk
                .write_blocks_nb(sector as usize, &mut self.req, data, &mut self.resp)
        }
        .map_err(|_| BlockError::Io)?;
        self.wait_used()?;
        let data = &self.data()[..len];
        // SAFETY: the same buffers as queued above.
        let done = unsafe {
            self.blk
                .complete_write_blocks(token, &self.req, data, &mut self.resp)
        };
        status(done, &self.resp)
    }

    fn usable(&self) -> Result<(), BlockError> {
        if self.broken {
            Err(BlockError::Io)
        } else {
            Ok(())
        }
    }
}

/// A response status as a block error.
fn status(result: virtio_drivers::Result, resp: &BlkResp) -> Result<(), BlockError> {
    match (result, resp.status()) {
        (Ok(()), RespStatus::OK) => Ok(()),
        (_, RespStatus::UNSUPPORTED) => Err(BlockError::Unsupported),
        _ => Err(BlockError::Io),
    }
}

impl Disk for VirtioDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn sector_size(&self) -> u32 {
        SECTOR as u32
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.usable()?;
        for (i, chunk) in buf.chunks_mut(CHUNK).enumerate() {
            let at = sector + (i * CHUNK / SECTOR) as u64;
            self.read_dma(at, chunk.len())?;
            chunk.copy_from_slice(&self.data()[..chunk.len()]);
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.usable()?;
        for (i, chunk) in buf.chunks(CHUNK).enumerate() {
            let at = sector + (i * CHUNK / SECTOR) as u64;
            self.data()[..chunk.len()].copy_from_slice(chunk);
            self.write_dma(at, chunk.len())?;
        }
        Ok(())
    }

    fn read_direct(
        &mut self,
        sector: u64,
        len: usize,
        drain: &mut crate::blockdev::Lend<'_>,
    ) -> Result<(), BlockError> {
        self.usable()?;
        if len > CHUNK || !len.is_multiple_of(SECTOR) {
            return Err(BlockError::OutOfRange);
        }
        self.read_dma(sector, len)?;
        let first = self.data_ma / PAGE;
        drain(first, &mut self.data()[..len])
    }

    fn write_direct(
        &mut self,
        sector: u64,
        len: usize,
        fill: &mut crate::blockdev::Lend<'_>,
    ) -> Result<(), BlockError> {
        self.usable()?;
        if len > CHUNK || !len.is_multiple_of(SECTOR) {
            return Err(BlockError::OutOfRange);
        }
        let first = self.data_ma / PAGE;
        fill(first, &mut self.data()[..len])?;
        self.write_dma(sector, len)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.usable()?;
        // virtio-drivers' flush waits for the device itself (it has no queued form); QEMU
        // answers a flush once its image file is synced.
        self.blk.flush().map_err(|_| BlockError::Io)?;
        self.take_interrupt();
        Ok(())
    }

    fn discard(&mut self, _sector: u64, _count: u64) -> Result<(), BlockError> {
        // virtio-drivers negotiates neither DISCARD nor WRITE_ZEROES.
        Err(BlockError::Unsupported)
    }
}

/// The GSI `f`'s interrupt line names.
fn gsi_of(f: &Function) -> u32 {
    u32::from(f.interrupt_line)
}

/// Sets up the interrupt of `f`: a PIRQ for its GSI, bound to an event channel.
fn setup_irq(f: &Function) -> Result<Irq, String> {
    let (pirq, port) = bind_gsi(f)?;
    Ok(Irq {
        pirq,
        port,
        seen: events::count(port),
        taken: Box::leak(Box::new(AtomicU64::new(0))),
    })
}

/// The PIRQ and event channel of `f`'s GSI, bound on the first call for that GSI (a PCI
/// function of any driver: virtio-net shares these with the disks).
pub fn bind_gsi(f: &Function) -> Result<(u32, u32), String> {
    let gsi = u32::from(f.interrupt_line);
    if f.interrupt_pin == 0 || gsi == 0 || gsi >= 0xff {
        return Err(String::from("no interrupt routed"));
    }
    // PCI INTx lines are shared (QEMU's `pc` machine routes four of them to IRQs 10 and
    // 11): a second device on a GSI already bound uses its PIRQ and port. Disk requests are
    // served one at a time, so only the disk waiting has anything to say when the event
    // comes; each device acknowledges its own, and an EOI another device's handler already
    // made is harmless.
    if let Some(&(_, pirq, port)) = BOUND.lock().iter().find(|(g, _, _)| *g == gsi) {
        return Ok((pirq, port));
    }
    guest_abi::calls::physdev_setup_gsi(gsi, GSI_TRIGGER_LEVEL, GSI_POLARITY_HIGH)
        .map_err(|e| format!("PHYSDEVOP_setup_gsi({gsi}): {e:?}"))?;
    let pirq = guest_abi::calls::physdev_map_pirq_gsi(gsi, None)
        .or_else(|_| guest_abi::calls::physdev_map_pirq_gsi(gsi, Some(gsi)))
        .map_err(|e| format!("PHYSDEVOP_map_pirq(GSI {gsi}): {e:?}"))?;
    let port = guest_abi::calls::evtchn_bind_pirq(pirq, 0)
        .map_err(|e| format!("EVTCHNOP_bind_pirq({pirq}): {e:?}"))?;
    if port as usize >= events::TRACKED_PORTS {
        return Err(format!("event channel {port} beyond the counted ones"));
    }
    BOUND.lock().push((gsi, pirq, port));
    // A pin masked since before dom0 was here waits for an EOI.
    let _ = guest_abi::calls::physdev_eoi(pirq);
    Ok((pirq, port))
}

/// Adds a device's row to `/proc/interrupts`: its GSI, name and the count it keeps.
pub fn count_interrupts(gsi: u32, name: String, taken: &'static AtomicU64) {
    INTERRUPTS.lock().push((gsi, name, taken));
}

/// Starts the driver on `f`, a virtio-blk function, as disk `index`.
fn probe(f: &Function, index: usize) -> Result<(), String> {
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
    let (data_ma, data) =
        crate::dma::alloc(CHUNK / PAGE as usize).ok_or("no DMA pool pages for its buffer")?;
    let mut blk = VirtIOBlk::<XenHal, _>::new(transport).map_err(|e| format!("{e}"))?;
    let sectors = blk.capacity();
    let read_only = blk.readonly();
    let name = disk_name(index);
    let irq = if POLL.load(Ordering::Relaxed) {
        crate::tprintln!("virtio_blk virtio{index}: polling (virtio_blk=poll)");
        None
    } else {
        match setup_irq(f) {
            Ok(irq) => {
                blk.enable_interrupts();
                INTERRUPTS
                    .lock()
                    .push((gsi_of(f), format!("virtio{index}"), irq.taken));
                crate::tprintln!(
                    "virtio_blk virtio{index}: GSI {} -> pirq {} -> event channel {}",
                    f.interrupt_line,
                    irq.pirq,
                    irq.port
                );
                Some(irq)
            }
            Err(why) => {
                crate::tprintln!("virtio_blk virtio{index}: no interrupt ({why}); polling");
                None
            }
        }
    };
    if irq.is_none() {
        blk.disable_interrupts();
    }
    crate::tprintln!(
        "virtio_blk virtio{index}: [{name}] {}{}",
        size_text(sectors, SECTOR as u32),
        if read_only { " (read-only)" } else { "" }
    );
    let disk = VirtioDisk {
        blk,
        irq,
        sectors,
        read_only,
        broken: false,
        data,
        data_ma,
        req: BlkReq::default(),
        resp: BlkResp::default(),
    };
    let dev = blockdev::add_disk(&name, Box::new(disk));
    scan_partitions(dev, &name);
    Ok(())
}

/// Reads the partition table of `dev` and adds its partitions; logs ` vda: vda1 vda2`.
fn scan_partitions(dev: DevId, name: &str) {
    let mut line = format!(" {name}:");
    let sectors = blockdev::info(dev).map_or(0, |i| i.sectors);
    let table =
        xenia_dom0::partition::scan(sectors, |at, buf| blockdev::read(dev, at, buf).is_ok());
    for p in table {
        if let Some(part) = blockdev::add_partition(dev, p.number, p.window)
            && let Some(info) = blockdev::info(part)
        {
            line.push(' ');
            line.push_str(&info.name);
        }
    }
    crate::tprintln!("{line}");
}

/// Finds the virtio-blk functions among the PCI ones and starts a driver on each. Boot only,
/// after [`crate::pcibus::init`] and [`crate::dma::init`].
pub fn init() {
    let mut index = 0;
    for f in crate::pcibus::functions() {
        if f.vendor != VIRTIO_VENDOR || !BLK_DEVICES.contains(&f.device) {
            continue;
        }
        match probe(&f, index) {
            Ok(()) => index += 1,
            Err(why) => crate::tprintln!("virtio_blk {}: not started: {why}", f.bdf),
        }
    }
}
