//! Why the machine stops: clean power-off, failure, reboot (DESIGN.md §8), and the code each
//! reason is reported with. The hypervisor's `power` module does the stopping.
//!
//! With the `debug-exit` option the hypervisor reports how it stopped through QEMU's
//! isa-debug-exit device at port 0xf4; QEMU then exits with `(code << 1) | 1`.

/// Why the machine stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Nothing went wrong: dom0 powered off, or there was nothing to run.
    PowerOff,
    /// A hypervisor panic or an exception in the hypervisor.
    HypervisorFailure,
    /// dom0 crashed.
    Dom0Crashed,
    /// dom0 asked for a reboot.
    Dom0Reboot,
    /// The frame table's consistency check failed when dom0 stopped: whatever dom0's
    /// reason, the run is not clean.
    FrameTableInconsistent,
}

impl ExitReason {
    /// The value written to the isa-debug-exit port.
    pub const fn debug_exit_code(self) -> u8 {
        match self {
            ExitReason::PowerOff => 0x10,
            ExitReason::HypervisorFailure => 0x11,
            ExitReason::Dom0Crashed => 0x12,
            ExitReason::Dom0Reboot => 0x13,
            ExitReason::FrameTableInconsistent => 0x14,
        }
    }

    /// The exit status QEMU reports for that value.
    pub const fn qemu_status(self) -> i32 {
        ((self.debug_exit_code() as i32) << 1) | 1
    }
}

#[cfg(test)]
mod tests {
    use super::ExitReason::*;

    #[test]
    fn exit_status_table() {
        assert_eq!(PowerOff.qemu_status(), 33);
        assert_eq!(HypervisorFailure.qemu_status(), 35);
        assert_eq!(Dom0Crashed.qemu_status(), 37);
        assert_eq!(Dom0Reboot.qemu_status(), 39);
        assert_eq!(FrameTableInconsistent.qemu_status(), 41);
    }
}
