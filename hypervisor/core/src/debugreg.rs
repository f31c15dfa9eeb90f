//! `set_debugreg(reg, value)`: Xen's checks on a paravirtual guest's debug registers, pure
//! (the hypervisor keeps the values per vCPU and loads them while the vCPU runs).
//!
//! - DR0–DR3 must be addresses the guest may use (`EPERM` otherwise): a breakpoint on the
//!   hypervisor's own addresses would trap the hypervisor.
//! - DR4 and DR5 are DR6 and DR7 (a PV guest has no CR4.DE).
//! - DR6 and DR7 take 32 bits (`EINVAL` above); their reserved bits are forced to their
//!   architectural values, as Xen's `x86_adj_dr{6,7}_rsvd` do.
//! - DR7 may not set GD (a #DB on every debug-register access, which only the hypervisor makes)
//!   nor an I/O breakpoint (R/W = 10b, which needs CR4.DE, which a PV guest has not): `EPERM`.
//! - Any other register: `EINVAL`.

use guest_abi::errno::Errno;

/// DR6 with no condition reported.
pub const DR6_DEFAULT: u64 = 0xFFFF_0FF0;
/// DR7 with nothing enabled.
pub const DR7_DEFAULT: u64 = 0x400;
/// DR6 bits that report conditions: B0–B3, BD, BS, BT.
pub const DR6_STATUS: u64 = 0xE00F;
/// DR7's L0–L3 and G0–G3: a breakpoint is armed.
pub const DR7_ENABLES: u64 = 0xFF;
/// DR7.GD.
pub const DR7_GD: u64 = 1 << 13;
/// DR7 bits that must be 0 (11, 12, 14, 15) once bit 10, which must be 1, is set.
const DR7_RESERVED_ZERO: u64 = (1 << 11) | (1 << 12) | (1 << 14) | (1 << 15);

/// Where a `set_debugreg` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// DR0–DR3.
    Address(usize),
    /// DR6.
    Status,
    /// DR7.
    Control,
}

/// Checks `set_debugreg(reg, value)`; `guest_address` says whether an address is the
/// guest's to use. Returns where the value goes and the value as it is kept.
pub fn check(
    reg: u64,
    value: u64,
    guest_address: impl Fn(u64) -> bool,
) -> Result<(Target, u64), Errno> {
    match reg {
        0..=3 if guest_address(value) => Ok((Target::Address(reg as usize), value)),
        0..=3 => Err(Errno::EPERM),
        4 | 6 if value >> 32 != 0 => Err(Errno::EINVAL),
        4 | 6 => Ok((Target::Status, (value & DR6_STATUS) | DR6_DEFAULT)),
        5 | 7 if value >> 32 != 0 => Err(Errno::EINVAL),
        5 | 7 => {
            if value & DR7_GD != 0 || (0..4).any(|i| (value >> (16 + 4 * i)) & 3 == 0b10) {
                return Err(Errno::EPERM);
            }
            Ok((Target::Control, (value | DR7_DEFAULT) & !DR7_RESERVED_ZERO))
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Which kept value `get_debugreg(reg)` answers with (`None`: `EINVAL`).
pub fn source(reg: u64) -> Option<Target> {
    match reg {
        0..=3 => Some(Target::Address(reg as usize)),
        4 | 6 => Some(Target::Status),
        5 | 7 => Some(Target::Control),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(va: u64) -> bool {
        va < 0x0000_8000_0000_0000
    }

    #[test]
    fn addresses_must_be_the_guests() {
        assert_eq!(check(0, 0x1000, guest), Ok((Target::Address(0), 0x1000)));
        assert_eq!(
            check(3, 0x7fff_ffff_f000, guest),
            Ok((Target::Address(3), 0x7fff_ffff_f000))
        );
        assert_eq!(check(1, 0xffff_8100_0000_0000, guest), Err(Errno::EPERM));
        assert_eq!(
            check(2, 0x8000_0000_0000, guest),
            Err(Errno::EPERM),
            "non-canonical"
        );
    }

    #[test]
    fn status_and_control_are_normalised() {
        assert_eq!(check(6, 0, guest), Ok((Target::Status, DR6_DEFAULT)));
        // Bit 12 is reserved (0).
        assert_eq!(
            check(4, 0xFFFF_FFFF, guest),
            Ok((Target::Status, 0xFFFF_EFFF))
        );
        assert_eq!(check(6, 1 << 32, guest), Err(Errno::EINVAL));
        assert_eq!(check(7, 0, guest), Ok((Target::Control, DR7_DEFAULT)));
        // L0, write, 4 bytes; reserved bits 11, 12, 14, 15 dropped, bit 10 set.
        assert_eq!(
            check(7, 0x000D_D801, guest),
            Ok((Target::Control, 0x000D_0401))
        );
        assert_eq!(check(5, 0x1, guest), Ok((Target::Control, 0x401)));
        assert_eq!(check(7, 1 << 32, guest), Err(Errno::EINVAL));
    }

    #[test]
    fn gd_and_io_breakpoints_are_refused() {
        assert_eq!(check(7, DR7_GD, guest), Err(Errno::EPERM));
        for i in 0..4 {
            let io = 0b10 << (16 + 4 * i);
            assert_eq!(
                check(7, io | 1 << (2 * i), guest),
                Err(Errno::EPERM),
                "DR{i} I/O"
            );
            assert_eq!(
                check(7, io, guest),
                Err(Errno::EPERM),
                "DR{i} I/O, disabled"
            );
        }
        assert_eq!(check(8, 0, guest), Err(Errno::EINVAL));
        assert_eq!(check(u64::MAX, 0, guest), Err(Errno::EINVAL));
    }

    #[test]
    fn reads() {
        assert_eq!(source(2), Some(Target::Address(2)));
        assert_eq!(
            (source(4), source(6)),
            (Some(Target::Status), Some(Target::Status))
        );
        assert_eq!(
            (source(5), source(7)),
            (Some(Target::Control), Some(Target::Control))
        );
        assert_eq!(source(8), None);
    }
}
