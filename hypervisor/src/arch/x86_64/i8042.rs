//! The PS/2 keyboard controller (Intel 8042; IBM PC/AT Technical Reference, "Keyboard
//! Controller"), which the hypervisor owns when it owns the screen (DESIGN.md §13): its data
//! port 0x60 and status/command port 0x64 are then out of dom0's I/O bitmap, and IRQ 1 comes to
//! the boot CPU (`ioapic::route_keyboard`). The firmware leaves the keyboard enabled, scancode
//! translation to set 1 on and IRQ 1 enabled in the command byte; nothing is reprogrammed.

use x86_64::instructions::port::Port;

/// Data port: scancodes in, bytes to the device out.
pub const DATA: u16 = 0x60;
/// Status register (read) and command register (write).
pub const STATUS: u16 = 0x64;
/// Status bit 0: the output buffer holds a byte for the host.
const STATUS_OUTPUT_FULL: u8 = 1 << 0;
/// Status bit 5: that byte is from the auxiliary (mouse) port, not the keyboard.
const STATUS_AUX: u8 = 1 << 5;

fn inb(port: u16) -> u8 {
    // SAFETY: the controller's ports are the hypervisor's (taken out of dom0's bitmap when the
    // keyboard is), and reading the status or data port has no effect beyond the controller.
    unsafe { Port::<u8>::new(port).read() }
}

/// Whether a controller answers: a machine without one (legacy-free) reads all ones.
pub fn present() -> bool {
    inb(STATUS) != 0xFF
}

/// The next keyboard byte waiting, if any. Mouse bytes are read and dropped (the hypervisor
/// has no use for a mouse), a few at most per call.
pub fn try_read() -> Option<u8> {
    for _ in 0..16 {
        let status = inb(STATUS);
        if status == 0xFF || status & STATUS_OUTPUT_FULL == 0 {
            return None;
        }
        let byte = inb(DATA);
        if status & STATUS_AUX == 0 {
            return Some(byte);
        }
    }
    None
}

/// Drops what the controller holds (keys pressed during boot), at most `bound` bytes.
pub fn drain(bound: usize) {
    for _ in 0..bound {
        if try_read().is_none() {
            return;
        }
    }
}
