//! The 8253/8254 PIT, used only to time an interval for calibration (channel 2, gated
//! through port 0x61, so no interrupt is involved), and the legacy 8259 PICs, which are
//! masked so that only the local APIC delivers interrupts.

use core::time::Duration;

use x86_64::instructions::port::Port;

/// The PIT's input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
const CHANNEL2_DATA: u16 = 0x42;
const COMMAND: u16 = 0x43;
const GATE_PORT: u16 = 0x61;
const GATE_ENABLE: u8 = 1 << 0;
const SPEAKER: u8 = 1 << 1;
const OUT2: u8 = 1 << 5;
/// 10 ms: long enough for a precise count, short enough for boot time.
const INTERVAL_TICKS: u16 = (PIT_HZ / 100) as u16;

fn outb(port: u16, value: u8) {
    // SAFETY: the PIT and PIC ports only affect timer and interrupt-controller state,
    // which the hypervisor owns.
    unsafe { Port::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: reading port 0x61 has no side effects.
    unsafe { Port::new(port).read() }
}

/// Masks both 8259 PICs after moving them to vectors 0xE0–0xEF, so that a spurious
/// legacy interrupt can never look like a CPU exception or a guest's software interrupt.
pub fn disable_legacy_pic() {
    let base = super::trap::LEGACY_PIC_BASE;
    for (cmd, data, offset, cascade) in [(0x20, 0x21, base, 4), (0xA0, 0xA1, base + 8, 2)] {
        outb(cmd, 0x11); // ICW1: init, ICW4 follows
        outb(data, offset); // ICW2: vector offset
        outb(data, cascade); // ICW3
        outb(data, 0x01); // ICW4: 8086 mode
        outb(data, 0xFF); // OCW1: mask everything
    }
}

/// Runs `start` and measures, with PIT channel 2 in one-shot mode, a 10 ms interval
/// that begins right after it. Returns the interval's length.
pub fn time_interval(start: impl FnOnce()) -> Result<Duration, &'static str> {
    let gate = inb(GATE_PORT);
    outb(GATE_PORT, (gate & !SPEAKER) & !GATE_ENABLE);
    outb(COMMAND, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
    outb(CHANNEL2_DATA, INTERVAL_TICKS as u8);
    outb(CHANNEL2_DATA, (INTERVAL_TICKS >> 8) as u8);
    // Mode 0 drives OUT2 low as soon as the mode is set (Intel 8254 data sheet, "Mode 0:
    // interrupt on terminal count"). High here means no PIT answers: QEMU's `pit=off`, or a
    // machine without the legacy timer, where port 0x61 reads all ones.
    if inb(GATE_PORT) & OUT2 != 0 {
        outb(GATE_PORT, gate);
        return Err("there is no PIT (its channel 2 output does not follow the count)");
    }
    start();
    outb(GATE_PORT, (gate & !SPEAKER) | GATE_ENABLE);
    // OUT2 rises when the count reaches zero. Bound the wait: a machine without a PIT
    // must not hang the boot.
    let mut polls = 0u64;
    while inb(GATE_PORT) & OUT2 == 0 {
        polls += 1;
        if polls > 50_000_000 {
            outb(GATE_PORT, gate);
            return Err("the PIT did not count down");
        }
        core::hint::spin_loop();
    }
    outb(GATE_PORT, gate);
    Ok(Duration::from_nanos(
        u64::from(INTERVAL_TICKS) * 1_000_000_000 / PIT_HZ,
    ))
}
