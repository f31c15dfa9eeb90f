//! The 16550 UART on COM1: the hypervisor's console (DESIGN.md §8).
//!
//! Register map from the PC16550D data sheet: THR/RBR at +0, IER +1, FCR +2, LCR +3,
//! MCR +4, LSR +5. Polled, no interrupts.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// How many status polls to wait for the transmitter before dropping a byte: a port
/// without a UART behind it must not hang the hypervisor.
const TX_SPIN_LIMIT: u32 = 100_000;

/// One 16550 UART, identified by its I/O base.
pub struct Serial {
    base: u16,
}

impl Serial {
    /// COM1. Constructing it touches no hardware; `init` programs it.
    pub const fn com1() -> Self {
        Self { base: COM1 }
    }

    fn port(&self, offset: u16) -> Port<u8> {
        Port::new(self.base + offset)
    }

    fn out(&self, offset: u16, value: u8) {
        // SAFETY: the UART's registers have no memory side effects; writing them only
        // changes the serial line, which the hypervisor owns.
        unsafe { self.port(offset).write(value) }
    }

    fn inb(&self, offset: u16) -> u8 {
        // SAFETY: as for `out`; reading LSR/RBR has no effect beyond the UART.
        unsafe { self.port(offset).read() }
    }

    /// 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&self) {
        self.out(1, 0x00); // IER: no interrupts
        self.out(3, 0x80); // LCR: DLAB to reach the divisor
        self.out(0, 0x01); // DLL: 115200 / 1
        self.out(1, 0x00); // DLM
        self.out(3, 0x03); // LCR: 8 data bits, no parity, 1 stop bit
        self.out(2, 0xC7); // FCR: enable and clear FIFOs, 14-byte threshold
        self.out(4, 0x03); // MCR: DTR and RTS
    }

    /// Raises an interrupt when a byte arrives (IER bit 0), and connects the UART's
    /// interrupt line to the PC's interrupt controller (MCR OUT2).
    pub fn enable_receive_interrupt(&self) {
        self.out(4, 0x0B); // MCR: DTR, RTS, OUT2
        self.out(1, 0x01); // IER: received data available
    }

    pub fn write_byte(&self, byte: u8) {
        for _ in 0..TX_SPIN_LIMIT {
            if self.inb(5) & LSR_THR_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.out(0, byte);
    }

    /// Writes `bytes`, turning `\n` into `\r\n` for terminals.
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }

    /// Writes `bytes` as they are: a guest terminal's output, whose line ends its own
    /// driver already made `\r\n` (translating again would send `\r\r\n`).
    pub fn write_raw(&self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&self) -> Option<u8> {
        (self.inb(5) & LSR_DATA_READY != 0).then(|| self.inb(0))
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
