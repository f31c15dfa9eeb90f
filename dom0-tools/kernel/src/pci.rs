//! PCI enumeration, apart from how configuration space is reached: the kernel reads it through
//! configuration mechanism #1 (ports 0xCF8/0xCFC); the tests here through a model of devices.
//!
//! [`scan`] walks bus 0 and the buses behind PCI-to-PCI bridges (every device, every function
//! of a multi-function device), and reads each function's identity, header type, BARs with
//! their sizes (each BAR written with all ones and restored, with memory and I/O decoding off
//! meanwhile, as Linux's `__pci_read_base` does), interrupt line and pin, and capability list.
//! [`Function::linux_lines`] prints what Linux prints at boot for each
//! (`pci 0000:00:04.0: [1af4:1001] type 00 class 0x010000`, `pci 0000:00:04.0: BAR 0 [io
//! 0xc000-0xc07f]`).
//!
//! Configuration space is the hardware's, and hostile hardware is no reason to crash: a
//! capability list is followed at most 48 steps (Linux's `PCI_FIND_CAP_TTL`) and only at
//! offsets inside the header's 256 bytes; bridges' secondary buses are each scanned once.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A function's address: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number, below 32.
    pub device: u8,
    /// Function number, below 8.
    pub function: u8,
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "0000:{:02x}:{:02x}.{}",
            self.bus, self.device, self.function
        )
    }
}

impl Bdf {
    /// The 32-bit address configuration mechanism #1 writes to port 0xCF8 for register
    /// `offset` (its low two bits dropped) of this function.
    pub fn cf8_address(&self, offset: u8) -> u32 {
        0x8000_0000
            | (u32::from(self.bus) << 16)
            | (u32::from(self.device & 0x1f) << 11)
            | (u32::from(self.function & 7) << 8)
            | u32::from(offset & 0xfc)
    }
}

/// Reaching a function's configuration space, one aligned 32-bit register at a time.
pub trait ConfigSpace {
    /// The register at `offset` (a multiple of 4, below 256).
    fn read32(&mut self, at: Bdf, offset: u8) -> u32;
    /// Writes it.
    fn write32(&mut self, at: Bdf, offset: u8, value: u32);
}

/// Header register offsets (PCI Local Bus Specification 3.0, §6.1).
pub mod reg {
    /// Vendor ID (low 16 bits) and device ID.
    pub const ID: u8 = 0x00;
    /// Command (low 16 bits) and status.
    pub const COMMAND: u8 = 0x04;
    /// Revision (low 8 bits), then programming interface, subclass, class.
    pub const CLASS: u8 = 0x08;
    /// Cache line size, latency timer, header type (bits 16..24), BIST.
    pub const HEADER: u8 = 0x0c;
    /// The first BAR.
    pub const BAR0: u8 = 0x10;
    /// Type 1 (bridge): primary, secondary, subordinate bus numbers.
    pub const BUSES: u8 = 0x18;
    /// Subsystem vendor ID and subsystem ID (type 0).
    pub const SUBSYSTEM: u8 = 0x2c;
    /// The capability list's first offset (low 8 bits).
    pub const CAPABILITIES: u8 = 0x34;
    /// Interrupt line (low 8 bits) and pin (bits 8..16).
    pub const INTERRUPT: u8 = 0x3c;
}

/// Command register: I/O space decoding.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering (the device may do DMA).
pub const COMMAND_MASTER: u16 = 1 << 2;
/// Command register: INTx disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: the function has a capability list.
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB.
    Mem32,
    /// Memory anywhere (the BAR takes two registers).
    Mem64,
}

/// An implemented BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Its index (0..6; a 64-bit BAR has the index of its low half).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Its address (port number for I/O), as assigned by the firmware.
    pub address: u64,
    /// Its size in bytes (a power of two).
    pub size: u64,
}

impl Bar {
    /// The last byte it decodes.
    pub fn end(&self) -> u64 {
        self.address.saturating_add(self.size.saturating_sub(1))
    }
}

/// A capability in a function's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Its ID (0x09 vendor-specific, 0x05 MSI, 0x11 MSI-X, ...).
    pub id: u8,
    /// Its offset in configuration space.
    pub offset: u8,
}

/// A PCI function as found at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class, subclass, programming interface (24 bits).
    pub class: u32,
    /// Revision.
    pub revision: u8,
    /// Header type (0 device, 1 bridge, 2 CardBus), without the multi-function bit.
    pub header_type: u8,
    /// Subsystem vendor and subsystem ID (type 0 headers; 0 otherwise).
    pub subsystem: (u16, u16),
    /// Its implemented BARs.
    pub bars: Vec<Bar>,
    /// Interrupt line as the firmware routed it (the ISA IRQ / GSI; 0xff none).
    pub interrupt_line: u8,
    /// Interrupt pin (1 = INTA# .. 4 = INTD#; 0 none).
    pub interrupt_pin: u8,
    /// Its capabilities, in list order.
    pub capabilities: Vec<Capability>,
}

impl Function {
    /// The BAR with index `index`.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }

    /// What Linux prints at boot for this function: its identity, then one line per BAR.
    pub fn linux_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.push(format!(
            "pci {}: [{:04x}:{:04x}] type {:02x} class {:#08x}",
            self.bdf, self.vendor, self.device, self.header_type, self.class
        ));
        for bar in &self.bars {
            let flags = match (bar.kind, bar.prefetchable) {
                (BarKind::Io, _) | (BarKind::Mem32, false) => "",
                (BarKind::Mem32, true) => " pref",
                (BarKind::Mem64, false) => " 64bit",
                (BarKind::Mem64, true) => " 64bit pref",
            };
            // Linux's `%pR`: ports with at least four hex digits, memory with eight.
            let range = match bar.kind {
                BarKind::Io => format!("io  {:#06x}-{:#06x}", bar.address, bar.end()),
                _ => format!("mem {:#010x}-{:#010x}", bar.address, bar.end()),
            };
            lines.push(format!(
                "pci {}: BAR {} [{range}{flags}]",
                self.bdf, bar.index
            ));
        }
        if self.interrupt_pin != 0 {
            lines.push(format!(
                "pci {}: INT{} routed to IRQ {}",
                self.bdf,
                char::from(b'A' + (self.interrupt_pin.clamp(1, 4) - 1)),
                self.interrupt_line
            ));
        }
        lines
    }

    /// A line of Linux's `/proc/bus/pci/devices`: `bbdf vendordevice irq bar0..bar5
    /// size0..size5` (hex, tab-separated; a BAR's address with its low flag bits).
    pub fn proc_line(&self) -> String {
        let mut line = format!(
            "{:02x}{:02x}\t{:04x}{:04x}\t{:x}",
            self.bdf.bus,
            (self.bdf.device << 3) | self.bdf.function,
            self.vendor,
            self.device,
            self.interrupt_line
        );
        let mut addrs = [0u64; 6];
        let mut sizes = [0u64; 6];
        for bar in &self.bars {
            let flags = match bar.kind {
                BarKind::Io => 1,
                BarKind::Mem32 => 0,
                BarKind::Mem64 => 4,
            } | if bar.prefetchable { 8 } else { 0 };
            if let Some(i) = Some(usize::from(bar.index)).filter(|&i| i < 6) {
                addrs[i] = bar.address | flags;
                sizes[i] = bar.size;
            }
        }
        for a in addrs {
            line.push_str(&format!("\t{a:16x}"));
        }
        for s in sizes {
            line.push_str(&format!("\t{s:16x}"));
        }
        line
    }
}

/// Linux's `PCI_FIND_CAP_TTL`: the longest capability list followed.
const CAP_TTL: usize = 48;

/// Reads function `bdf`, or `None` if nothing answers there (vendor 0xffff).
pub fn probe(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Option<Function> {
    let id = cfg.read32(bdf, reg::ID);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class_rev = cfg.read32(bdf, reg::CLASS);
    let header_type = ((cfg.read32(bdf, reg::HEADER) >> 16) as u8) & 0x7f;
    let bar_count = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let bars = read_bars(cfg, bdf, bar_count);
    let subsystem = if header_type == 0 {
        let s = cfg.read32(bdf, reg::SUBSYSTEM);
        (s as u16, (s >> 16) as u16)
    } else {
        (0, 0)
    };
    let int = cfg.read32(bdf, reg::INTERRUPT);
    Some(Function {
        bdf,
        vendor,
        device: (id >> 16) as u16,
        class: class_rev >> 8,
        revision: class_rev as u8,
        header_type,
        subsystem,
        bars,
        interrupt_line: int as u8,
        interrupt_pin: (int >> 8) as u8,
        capabilities: capabilities(cfg, bdf),
    })
}

/// The function's capability list (empty if its status says it has none).
pub fn capabilities(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Vec<Capability> {
    let mut caps = Vec::new();
    if cfg.read32(bdf, reg::COMMAND) & STATUS_CAP_LIST == 0 {
        return caps;
    }
    let mut at = (cfg.read32(bdf, reg::CAPABILITIES) as u8) & 0xfc;
    for _ in 0..CAP_TTL {
        if at < 0x40 {
            break;
        }
        let head = cfg.read32(bdf, at);
        let id = head as u8;
        if id == 0xff {
            break;
        }
        caps.push(Capability { id, offset: at });
        at = ((head >> 8) as u8) & 0xfc;
    }
    caps
}

/// Sizes BAR register `offset`: writes all ones, reads the mask back, restores the value.
fn size_mask(cfg: &mut impl ConfigSpace, bdf: Bdf, offset: u8, original: u32) -> u32 {
    cfg.write32(bdf, offset, 0xffff_ffff);
    let mask = cfg.read32(bdf, offset);
    cfg.write32(bdf, offset, original);
    mask
}

/// The first `count` BARs of `bdf`, sized with decoding off (restored after).
fn read_bars(cfg: &mut impl ConfigSpace, bdf: Bdf, count: u8) -> Vec<Bar> {
    let mut bars = Vec::new();
    if count == 0 {
        return bars;
    }
    let command = cfg.read32(bdf, reg::COMMAND);
    let decode = u32::from(COMMAND_IO | COMMAND_MEMORY);
    if command & decode != 0 {
        // Only the command half: writing the status half's ones would clear its error bits.
        cfg.write32(bdf, reg::COMMAND, command & 0xffff & !decode);
    }
    let mut index = 0;
    while index < count {
        let offset = reg::BAR0 + 4 * index;
        let low = cfg.read32(bdf, offset);
        let low_mask = size_mask(cfg, bdf, offset, low);
        let this = index;
        index += 1;
        if low & 1 == 1 {
            let mask = low_mask & 0xffff_fffc & 0xffff;
            if mask != 0 {
                bars.push(Bar {
                    index: this,
                    kind: BarKind::Io,
                    prefetchable: false,
                    address: u64::from(low & 0xffff_fffc),
                    size: u64::from(!mask & 0xffff) + 1,
                });
            }
            continue;
        }
        let prefetchable = low & 8 != 0;
        let is64 = (low >> 1) & 3 == 2;
        let (address, mask, kind) = if is64 && index < count {
            let high_offset = offset + 4;
            let high = cfg.read32(bdf, high_offset);
            let high_mask = size_mask(cfg, bdf, high_offset, high);
            index += 1;
            (
                (u64::from(high) << 32) | u64::from(low & !0xf),
                (u64::from(high_mask) << 32) | u64::from(low_mask & !0xf),
                BarKind::Mem64,
            )
        } else {
            (
                u64::from(low & !0xf),
                u64::from(low_mask & !0xf) | 0xffff_ffff_0000_0000,
                BarKind::Mem32,
            )
        };
        if mask & 0xffff_ffff & !0xf == 0 && mask >> 32 == 0 {
            continue;
        }
        if mask == 0xffff_ffff_0000_0000 {
            continue;
        }
        bars.push(Bar {
            index: this,
            kind,
            prefetchable,
            address,
            size: (!mask).wrapping_add(1),
        });
    }
    if command & decode != 0 {
        cfg.write32(bdf, reg::COMMAND, command & 0xffff);
    }
    bars
}

/// Every function on bus 0 and on the buses behind its bridges.
pub fn scan(cfg: &mut impl ConfigSpace) -> Vec<Function> {
    let mut found = Vec::new();
    let mut buses = alloc::vec![0u8];
    let mut seen = [false; 256];
    seen[0] = true;
    while let Some(bus) = buses.pop() {
        for device in 0..32 {
            let first = Bdf {
                bus,
                device,
                function: 0,
            };
            let Some(f0) = probe(cfg, first) else {
                continue;
            };
            let multi = (cfg.read32(first, reg::HEADER) >> 16) & 0x80 != 0;
            let mut functions = alloc::vec![f0];
            if multi {
                for function in 1..8 {
                    let bdf = Bdf {
                        bus,
                        device,
                        function,
                    };
                    functions.extend(probe(cfg, bdf));
                }
            }
            for f in functions {
                if f.header_type == 1 {
                    let secondary = (cfg.read32(f.bdf, reg::BUSES) >> 8) as u8;
                    if !seen[usize::from(secondary)] {
                        seen[usize::from(secondary)] = true;
                        buses.push(secondary);
                    }
                }
                found.push(f);
            }
        }
    }
    found.sort_by_key(|f| f.bdf);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// A model of configuration space: each function's 64 registers, with BARs that answer
    /// all ones by their size mask, as hardware does.
    #[derive(Default)]
    struct Model {
        regs: BTreeMap<Bdf, [u32; 64]>,
        /// (function, BAR register) → the mask of writable address bits.
        masks: BTreeMap<(Bdf, u8), u32>,
        /// Writes seen to the command register.
        command_writes: Vec<u32>,
    }

    impl ConfigSpace for Model {
        fn read32(&mut self, at: Bdf, offset: u8) -> u32 {
            self.regs
                .get(&at)
                .map_or(0xffff_ffff, |r| r[usize::from(offset / 4)])
        }
        fn write32(&mut self, at: Bdf, offset: u8, value: u32) {
            if offset == reg::COMMAND {
                self.command_writes.push(value);
            }
            let mask = self.masks.get(&(at, offset)).copied();
            if let Some(r) = self.regs.get_mut(&at) {
                let slot = &mut r[usize::from(offset / 4)];
                *slot = match mask {
                    // The flag bits are read-only.
                    Some(m) => (value & m) | (*slot & !m & 0xf),
                    // The status half is read-only (write-one-to-clear; no test sets it).
                    None if offset == reg::COMMAND => (*slot & 0xffff_0000) | (value & 0xffff),
                    None => value,
                };
            }
        }
    }

    fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            bus,
            device,
            function,
        }
    }

    /// QEMU's virtio-blk-pci (transitional) at 00:04.0: an I/O BAR 0 of 128 ports, a 4 KiB
    /// memory BAR 1, a 16 KiB 64-bit prefetchable BAR 4; INTA# on IRQ 11; capabilities
    /// MSI-X at 0x98 then vendor-specific at 0x84 and 0x70.
    fn virtio_blk(m: &mut Model, at: Bdf) {
        let mut r = [0u32; 64];
        r[0] = 0x1001_1af4;
        r[1] = 0x0010_0007;
        r[2] = 0x0100_0000;
        r[3] = 0;
        r[4] = 0xc001;
        r[5] = 0xfebd_1000;
        r[8] = 0xfe00_000c;
        r[9] = 0;
        r[11] = 0x0002_1af4;
        r[13] = 0x98;
        r[15] = 0x0000_010b;
        r[0x98 / 4] = 0x0000_8411;
        r[0x84 / 4] = 0x1003_7009;
        r[0x70 / 4] = 0x1001_0009;
        m.regs.insert(at, r);
        m.masks.insert((at, 0x10), 0xffff_ff80);
        m.masks.insert((at, 0x14), 0xffff_f000);
        m.masks.insert((at, 0x18), 0);
        m.masks.insert((at, 0x1c), 0);
        m.masks.insert((at, 0x20), 0xffff_c000);
        m.masks.insert((at, 0x24), 0xffff_ffff);
    }

    #[test]
    fn a_virtio_disk_is_read_as_linux_reads_it() {
        let mut m = Model::default();
        let mut host = [0u32; 64];
        host[0] = 0x1237_8086;
        host[2] = 0x0600_0002;
        m.regs.insert(bdf(0, 0, 0), host);
        virtio_blk(&mut m, bdf(0, 4, 0));
        let found = scan(&mut m);
        assert_eq!(found.len(), 2);
        let f = &found[1];
        assert_eq!((f.vendor, f.device, f.class), (0x1af4, 0x1001, 0x010000));
        assert_eq!(f.subsystem, (0x1af4, 2));
        assert_eq!(
            f.bars,
            [
                Bar {
                    index: 0,
                    kind: BarKind::Io,
                    prefetchable: false,
                    address: 0xc000,
                    size: 0x80
                },
                Bar {
                    index: 1,
                    kind: BarKind::Mem32,
                    prefetchable: false,
                    address: 0xfebd_1000,
                    size: 0x1000
                },
                Bar {
                    index: 4,
                    kind: BarKind::Mem64,
                    prefetchable: true,
                    address: 0xfe00_0000,
                    size: 0x4000
                },
            ]
        );
        assert_eq!((f.interrupt_line, f.interrupt_pin), (11, 1));
        let caps: Vec<(u8, u8)> = f.capabilities.iter().map(|c| (c.id, c.offset)).collect();
        assert_eq!(caps, [(0x11, 0x98), (0x09, 0x84), (0x09, 0x70)]);
        // Sizing restored every BAR, and decoding was off meanwhile and back on after.
        assert_eq!(m.regs[&bdf(0, 4, 0)][4], 0xc001);
        assert_eq!(m.regs[&bdf(0, 4, 0)][8], 0xfe00_000c);
        assert_eq!(m.command_writes, [0x0004, 0x0007]);
        let lines = f.linux_lines();
        assert_eq!(
            lines[0],
            "pci 0000:00:04.0: [1af4:1001] type 00 class 0x010000"
        );
        assert_eq!(lines[1], "pci 0000:00:04.0: BAR 0 [io  0xc000-0xc07f]");
        assert_eq!(
            lines[3],
            "pci 0000:00:04.0: BAR 4 [mem 0xfe000000-0xfe003fff 64bit pref]"
        );
        assert_eq!(lines[4], "pci 0000:00:04.0: INTA routed to IRQ 11");
        assert!(f.proc_line().starts_with("0020\t1af41001\tb\t"));
    }

    #[test]
    fn functions_and_bridges_are_found() {
        let mut m = Model::default();
        // A multi-function device at 00:01 with functions 0 and 3.
        let mut r = [0u32; 64];
        r[0] = 0x7000_8086;
        r[3] = 0x0080_0000;
        m.regs.insert(bdf(0, 1, 0), r);
        let mut r3 = [0u32; 64];
        r3[0] = 0x7113_8086;
        m.regs.insert(bdf(0, 1, 3), r3);
        // A bridge at 00:02.0 to bus 5, where a disk sits; a second bridge also claims bus 5.
        for d in [2, 3] {
            let mut b = [0u32; 64];
            b[0] = 0x0001_1b36;
            b[3] = 0x0001_0000;
            b[6] = 0x0005_0500;
            m.regs.insert(bdf(0, d, 0), b);
        }
        virtio_blk(&mut m, bdf(5, 0, 0));
        // A function-0-less device answers nothing and is skipped.
        let found: Vec<Bdf> = scan(&mut m).iter().map(|f| f.bdf).collect();
        assert_eq!(
            found,
            [
                bdf(0, 1, 0),
                bdf(0, 1, 3),
                bdf(0, 2, 0),
                bdf(0, 3, 0),
                bdf(5, 0, 0)
            ]
        );
    }

    #[test]
    fn hostile_capability_lists_end() {
        let mut m = Model::default();
        let mut r = [0u32; 64];
        r[0] = 0x1001_1af4;
        r[1] = 0x0010_0000;
        r[13] = 0x40;
        // A loop: 0x40 -> 0x44 -> 0x40 ...; and a pointer into the header.
        r[0x40 / 4] = 0x0000_4405;
        r[0x44 / 4] = 0x0000_4009;
        m.regs.insert(bdf(0, 0, 0), r);
        let caps = capabilities(&mut m, bdf(0, 0, 0));
        assert_eq!(caps.len(), CAP_TTL);
        m.regs.get_mut(&bdf(0, 0, 0)).unwrap()[0x44 / 4] = 0x0000_0809;
        assert_eq!(capabilities(&mut m, bdf(0, 0, 0)).len(), 2);
    }

    #[test]
    fn cf8_addresses() {
        assert_eq!(bdf(0, 4, 0).cf8_address(0x3c), 0x8000_203c);
        assert_eq!(bdf(1, 31, 7).cf8_address(0x11), 0x8001_ff10);
    }
}
