//! PCI configuration space through configuration mechanism #1: the function's address in port
//! 0xCF8, its register in port 0xCFC (dom0's by the hypervisor's TSS I/O bitmap; DESIGN §11,
//! `guest-abi/src/physdev.rs`). The enumeration itself is the library's
//! ([`xenia_dom0::pci`]); this module reaches the ports, logs what it found as Linux does, and
//! keeps the list for the drivers and `/proc/bus/pci/devices`.

use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};
use xenia_dom0::pci::{self, Bdf, ConfigSpace, Function};

/// The address port.
const CONFIG_ADDRESS: u16 = 0xcf8;
/// The data port.
const CONFIG_DATA: u16 = 0xcfc;

/// Reads a 32-bit port.
fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: reading ports 0xCF8/0xCFC changes no memory; the hypervisor grants dom0 these
    // ports in its I/O bitmap (without it this raises #GP, which dom0's trap handler reports).
    unsafe {
        core::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Writes a 32-bit port.
fn outl(port: u16, value: u32) {
    // SAFETY: as for `inl`; a configuration write changes a device, never dom0's memory.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags));
    }
}

/// Serialises the two-step port protocol (address, then data).
static PORTS: Mutex<()> = Mutex::new(());

/// Configuration space through ports 0xCF8/0xCFC.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports;

impl ConfigSpace for Ports {
    fn read32(&mut self, at: Bdf, offset: u8) -> u32 {
        let _held = PORTS.lock();
        outl(CONFIG_ADDRESS, at.cf8_address(offset));
        inl(CONFIG_DATA)
    }

    fn write32(&mut self, at: Bdf, offset: u8, value: u32) {
        let _held = PORTS.lock();
        outl(CONFIG_ADDRESS, at.cf8_address(offset));
        outl(CONFIG_DATA, value);
    }
}

/// The address of `df` in the library's terms.
pub fn bdf(df: DeviceFunction) -> Bdf {
    Bdf {
        bus: df.bus,
        device: df.device,
        function: df.function,
    }
}

impl ConfigurationAccess for Ports {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        Ports.read32(bdf(df), register_offset)
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        self.write32(bdf(df), register_offset, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Ports
    }
}

/// The functions found at boot.
static FOUND: Mutex<Vec<Function>> = Mutex::new(Vec::new());

/// Whether configuration mechanism #1 answers: the address port reads back what was written
/// (Linux's `pci_check_type1`).
fn present() -> bool {
    let _held = PORTS.lock();
    outl(CONFIG_ADDRESS, 0x8000_0000);
    let back = inl(CONFIG_ADDRESS);
    outl(CONFIG_ADDRESS, 0);
    back == 0x8000_0000
}

/// Enumerates the PCI functions and logs them. Boot only.
pub fn init() {
    if !present() {
        crate::tprintln!("PCI: configuration mechanism #1 does not answer; no PCI devices");
        return;
    }
    crate::tprintln!("PCI: Using configuration type 1 for base access");
    let found = pci::scan(&mut Ports);
    for f in &found {
        for line in f.linux_lines() {
            crate::tprintln!("{line}");
        }
    }
    *FOUND.lock() = found;
}

/// The functions found at boot.
pub fn functions() -> Vec<Function> {
    FOUND.lock().clone()
}

/// `/proc/bus/pci/devices`: one line per function.
pub fn proc_devices() -> String {
    let mut text = String::new();
    for f in FOUND.lock().iter() {
        text.push_str(&f.proc_line());
        text.push('\n');
    }
    text
}
