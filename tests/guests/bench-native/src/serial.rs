//! COM1 (115200 8n1, no interrupts), `println!`, and powering the machine off.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu::{inb, outb, outw};

/// COM1's base port.
const COM1: u16 = 0x3F8;
/// Line status register: transmitter holding register empty (PC16550D data sheet).
const LSR_THRE: u8 = 0x20;
/// Polls of the line status before a byte is sent anyway (QEMU's UART is always ready).
const TX_SPINS: u32 = 100_000;

/// QEMU's `isa-debug-exit` port as the harness configures it (xenia-tests `DEBUG_EXIT_PORT`).
const DEBUG_EXIT_PORT: u16 = 0xF4;
/// Written to `isa-debug-exit`: clean power-off (QEMU status 33, the harness's
/// `EXIT_POWEROFF`).
pub const EXIT_POWEROFF: u8 = 0x10;
/// Written to `isa-debug-exit`: a fatal error (QEMU status 35).
pub const EXIT_FATAL: u8 = 0x11;
/// QEMU `-machine pc`'s PIIX4 PM1a control block, and SLP_EN with the S5 sleep type its DSDT
/// gives (0): the ACPI soft-off used when there is no `isa-debug-exit`.
const PIIX4_PM1A_CNT: u16 = 0x604;
const PM1_SLP_EN_S5: u16 = 0x2000;

/// Whether the command line asked for `isa-debug-exit` (the harness's `debug-exit` word).
static DEBUG_EXIT: AtomicBool = AtomicBool::new(false);

/// Sets COM1 to 115200 8n1 with FIFOs on and interrupts off.
pub fn init() {
    // SAFETY: the kernel owns COM1; these writes program only the UART.
    unsafe {
        outb(COM1 + 1, 0x00); // IER: no interrupts
        outb(COM1 + 3, 0x80); // LCR: DLAB
        outb(COM1, 0x01); // DLL: divisor 1 = 115200 baud
        outb(COM1 + 1, 0x00); // DLM
        outb(COM1 + 3, 0x03); // LCR: 8n1
        outb(COM1 + 2, 0xC7); // FCR: enable and clear the FIFOs
        outb(COM1 + 4, 0x03); // MCR: DTR, RTS
    }
}

/// Powers off through `isa-debug-exit` when asked to on the command line.
pub fn set_debug_exit(on: bool) {
    DEBUG_EXIT.store(on, Ordering::Relaxed);
}

fn put(byte: u8) {
    // SAFETY: the kernel owns COM1; reading LSR and writing THR only send a byte.
    unsafe {
        for _ in 0..TX_SPINS {
            if inb(COM1 + 5) & LSR_THRE != 0 {
                break;
            }
        }
        outb(COM1, byte);
    }
}

/// The console: bytes to COM1, `\n` as `\r\n`.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

/// Prints to COM1 (one CPU, interrupts never print: no lock needed).
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::serial::Serial, $($arg)*);
    }};
}

/// Ends the run: `isa-debug-exit` with `code` when the command line said `debug-exit`, else
/// ACPI soft-off (which QEMU reports as status 0 whatever `code` was).
pub fn power_off(code: u8) -> ! {
    // SAFETY: the machine ends here; nothing after these writes relies on any state.
    unsafe {
        if DEBUG_EXIT.load(Ordering::Relaxed) {
            outb(DEBUG_EXIT_PORT, code);
        }
        outw(PIIX4_PM1A_CNT, PM1_SLP_EN_S5);
    }
    loop {
        crate::cpu::disable_interrupts();
        // SAFETY: halting with interrupts off stops this CPU for good, which is the intent.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}
