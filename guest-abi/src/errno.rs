//! Error codes: Xen's public `errno.h` values as one enum.
//!
//! A hypercall returns its result in `rax`: zero or a positive value on
//! success, the negation of one of these codes on failure. The numbers are
//! Xen's, which are in turn x86 Linux's, so a port can pass them through to
//! its own error space unchanged.
//!
//! The hypervisor maps its `Result<u64, Errno>` onto `rax` once, with
//! [`Errno::encode_result`]; a guest maps `rax` back once, with
//! [`Errno::decode_result`].

use core::fmt;

/// One error code of the hypercall ABI.
///
/// The discriminant is the positive code; the hypercall return value is its
/// negation.
#[allow(non_camel_case_types)] // The C names are the point: they grep across Xen, Linux and here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(i32)]
pub enum Errno {
    /// The caller lacks the privilege for this operation.
    EPERM = 1,
    /// The named object (domain, port, grant, …) does not exist.
    ENOENT = 2,
    /// No such domain or vCPU.
    ESRCH = 3,
    /// Interrupted. Hypervisor-internal in Xen's header: Xenia never returns it
    /// to a guest.
    EINTR = 4,
    /// An I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// An argument list or batch is too long.
    E2BIG = 7,
    /// A kernel image or other executable could not be understood.
    ENOEXEC = 8,
    /// A handle (event-channel port, grant handle, …) is not valid.
    EBADF = 9,
    /// No child (kept for numbering parity).
    ECHILD = 10,
    /// Try again later: a resource is temporarily unavailable.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Access to an object was denied.
    EACCES = 13,
    /// A guest address could not be read or written (unmapped, not owned, or
    /// not writable).
    EFAULT = 14,
    /// The object is in use.
    EBUSY = 16,
    /// The object already exists (for instance a VIRQ already bound).
    EEXIST = 17,
    /// The operation would cross domains where it must not.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// The object is a directory (kept for numbering parity).
    EISDIR = 21,
    /// An argument is invalid.
    EINVAL = 22,
    /// A global table is full.
    ENFILE = 23,
    /// A per-domain table is full (for instance no free event-channel port).
    EMFILE = 24,
    /// No space left.
    ENOSPC = 28,
    /// The object is read-only.
    EROFS = 30,
    /// Too many links or references.
    EMLINK = 31,
    /// An argument is outside the domain of the operation.
    EDOM = 33,
    /// A result or argument is out of range.
    ERANGE = 34,
    /// The operation would deadlock.
    EDEADLK = 35,
    /// A name is too long.
    ENAMETOOLONG = 36,
    /// No lock available.
    ENOLCK = 37,
    /// The hypercall or sub-operation is not implemented.
    ENOSYS = 38,
    /// The object is not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// A timer deadline has already passed (`VCPU_SSHOTTMR_FUTURE`).
    ETIME = 62,
    /// A malformed message.
    EBADMSG = 74,
    /// A value does not fit its type.
    EOVERFLOW = 75,
    /// An illegal byte sequence.
    EILSEQ = 84,
    /// The operation must be restarted. Hypervisor-internal in Xen's header:
    /// Xenia never returns it to a guest.
    ERESTART = 85,
    /// Not a socket (kept for numbering parity).
    ENOTSOCK = 88,
    /// The operation is valid but not supported here.
    EOPNOTSUPP = 95,
    /// The address is already in use.
    EADDRINUSE = 98,
    /// The address cannot be assigned.
    EADDRNOTAVAIL = 99,
    /// No buffer space: a caller-supplied buffer is too small.
    ENOBUFS = 105,
    /// Already connected.
    EISCONN = 106,
    /// Not connected.
    ENOTCONN = 107,
    /// A wait timed out.
    ETIMEDOUT = 110,
}

impl Errno {
    /// Every code, in ascending numeric order.
    pub const ALL: [Errno; 46] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EIO,
        Errno::ENXIO,
        Errno::E2BIG,
        Errno::ENOEXEC,
        Errno::EBADF,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EXDEV,
        Errno::ENODEV,
        Errno::EISDIR,
        Errno::EINVAL,
        Errno::ENFILE,
        Errno::EMFILE,
        Errno::ENOSPC,
        Errno::EROFS,
        Errno::EMLINK,
        Errno::EDOM,
        Errno::ERANGE,
        Errno::EDEADLK,
        Errno::ENAMETOOLONG,
        Errno::ENOLCK,
        Errno::ENOSYS,
        Errno::ENOTEMPTY,
        Errno::ENODATA,
        Errno::ETIME,
        Errno::EBADMSG,
        Errno::EOVERFLOW,
        Errno::EILSEQ,
        Errno::ERESTART,
        Errno::ENOTSOCK,
        Errno::EOPNOTSUPP,
        Errno::EADDRINUSE,
        Errno::EADDRNOTAVAIL,
        Errno::ENOBUFS,
        Errno::EISCONN,
        Errno::ENOTCONN,
        Errno::ETIMEDOUT,
    ];

    /// Xen's alias for [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;

    /// Xen's alias for [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// The positive code, as in C's `errno`.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The code for a positive `errno` value, if it is one of ours.
    pub const fn from_code(code: i32) -> Option<Errno> {
        Some(match code {
            1 => Errno::EPERM,
            2 => Errno::ENOENT,
            3 => Errno::ESRCH,
            4 => Errno::EINTR,
            5 => Errno::EIO,
            6 => Errno::ENXIO,
            7 => Errno::E2BIG,
            8 => Errno::ENOEXEC,
            9 => Errno::EBADF,
            10 => Errno::ECHILD,
            11 => Errno::EAGAIN,
            12 => Errno::ENOMEM,
            13 => Errno::EACCES,
            14 => Errno::EFAULT,
            16 => Errno::EBUSY,
            17 => Errno::EEXIST,
            18 => Errno::EXDEV,
            19 => Errno::ENODEV,
            21 => Errno::EISDIR,
            22 => Errno::EINVAL,
            23 => Errno::ENFILE,
            24 => Errno::EMFILE,
            28 => Errno::ENOSPC,
            30 => Errno::EROFS,
            31 => Errno::EMLINK,
            33 => Errno::EDOM,
            34 => Errno::ERANGE,
            35 => Errno::EDEADLK,
            36 => Errno::ENAMETOOLONG,
            37 => Errno::ENOLCK,
            38 => Errno::ENOSYS,
            39 => Errno::ENOTEMPTY,
            61 => Errno::ENODATA,
            62 => Errno::ETIME,
            74 => Errno::EBADMSG,
            75 => Errno::EOVERFLOW,
            84 => Errno::EILSEQ,
            85 => Errno::ERESTART,
            88 => Errno::ENOTSOCK,
            95 => Errno::EOPNOTSUPP,
            98 => Errno::EADDRINUSE,
            99 => Errno::EADDRNOTAVAIL,
            105 => Errno::ENOBUFS,
            106 => Errno::EISCONN,
            107 => Errno::ENOTCONN,
            110 => Errno::ETIMEDOUT,
            _ => return None,
        })
    }

    /// The value the hypervisor puts in `rax` to report this error: the
    /// negated code.
    pub const fn to_return(self) -> i64 {
        -(self as i64)
    }

    /// The error a raw hypercall return value reports, if it is a negated code
    /// of ours. Zero, positive values and unknown negative values give `None`.
    pub const fn from_return(ret: i64) -> Option<Errno> {
        if ret >= 0 || ret < -(i32::MAX as i64) {
            return None;
        }
        Errno::from_code(-ret as i32)
    }

    /// Decodes a raw hypercall return value.
    ///
    /// Non-negative values are success and are returned as they are. A
    /// negative value that is not one of the codes above is a breach of the
    /// ABI by the hypervisor; it decodes as [`Errno::EIO`] so that callers
    /// still see a failure.
    pub const fn decode_result(ret: i64) -> Result<u64, Errno> {
        if ret >= 0 {
            return Ok(ret as u64);
        }
        match Errno::from_return(ret) {
            Some(e) => Err(e),
            None => Err(Errno::EIO),
        }
    }

    /// Encodes a hypercall result for `rax`: the value itself on success, the
    /// negated code on failure.
    ///
    /// A success value must stay below 2^63, or the guest would read it as an
    /// error; no Xen-compatible hypercall returns one that large. In debug
    /// builds a larger value panics; in release builds it is clamped to
    /// `i64::MAX`.
    pub fn encode_result(result: Result<u64, Errno>) -> i64 {
        match result {
            Ok(v) => {
                debug_assert!(
                    v <= i64::MAX as u64,
                    "hypercall success value {v:#x} looks negative"
                );
                i64::try_from(v).unwrap_or(i64::MAX)
            }
            Err(e) => e.to_return(),
        }
    }

    /// The C name of the code, for instance `"EINVAL"`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::ENXIO => "ENXIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EXDEV => "EXDEV",
            Errno::ENODEV => "ENODEV",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::ENFILE => "ENFILE",
            Errno::EMFILE => "EMFILE",
            Errno::ENOSPC => "ENOSPC",
            Errno::EROFS => "EROFS",
            Errno::EMLINK => "EMLINK",
            Errno::EDOM => "EDOM",
            Errno::ERANGE => "ERANGE",
            Errno::EDEADLK => "EDEADLK",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOLCK => "ENOLCK",
            Errno::ENOSYS => "ENOSYS",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ENODATA => "ENODATA",
            Errno::ETIME => "ETIME",
            Errno::EBADMSG => "EBADMSG",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EILSEQ => "EILSEQ",
            Errno::ERESTART => "ERESTART",
            Errno::ENOTSOCK => "ENOTSOCK",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EADDRINUSE => "EADDRINUSE",
            Errno::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::ENOBUFS => "ENOBUFS",
            Errno::EISCONN => "EISCONN",
            Errno::ENOTCONN => "ENOTCONN",
            Errno::ETIMEDOUT => "ETIMEDOUT",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl From<Errno> for i64 {
    fn from(e: Errno) -> i64 {
        e.to_return()
    }
}

impl TryFrom<i32> for Errno {
    type Error = i32;

    /// Converts a positive `errno` code; the unknown code comes back as the
    /// error.
    fn try_from(code: i32) -> Result<Self, i32> {
        Errno::from_code(code).ok_or(code)
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of Xen's public `errno.h`, written out independently of the
    /// enum so that a typo in either shows up.
    const XEN_ERRNO_H: [(&str, i32); 46] = [
        ("EPERM", 1),
        ("ENOENT", 2),
        ("ESRCH", 3),
        ("EINTR", 4),
        ("EIO", 5),
        ("ENXIO", 6),
        ("E2BIG", 7),
        ("ENOEXEC", 8),
        ("EBADF", 9),
        ("ECHILD", 10),
        ("EAGAIN", 11),
        ("ENOMEM", 12),
        ("EACCES", 13),
        ("EFAULT", 14),
        ("EBUSY", 16),
        ("EEXIST", 17),
        ("EXDEV", 18),
        ("ENODEV", 19),
        ("EISDIR", 21),
        ("EINVAL", 22),
        ("ENFILE", 23),
        ("EMFILE", 24),
        ("ENOSPC", 28),
        ("EROFS", 30),
        ("EMLINK", 31),
        ("EDOM", 33),
        ("ERANGE", 34),
        ("EDEADLK", 35),
        ("ENAMETOOLONG", 36),
        ("ENOLCK", 37),
        ("ENOSYS", 38),
        ("ENOTEMPTY", 39),
        ("ENODATA", 61),
        ("ETIME", 62),
        ("EBADMSG", 74),
        ("EOVERFLOW", 75),
        ("EILSEQ", 84),
        ("ERESTART", 85),
        ("ENOTSOCK", 88),
        ("EOPNOTSUPP", 95),
        ("EADDRINUSE", 98),
        ("EADDRNOTAVAIL", 99),
        ("ENOBUFS", 105),
        ("EISCONN", 106),
        ("ENOTCONN", 107),
        ("ETIMEDOUT", 110),
    ];

    #[test]
    fn codes_match_xen() {
        for (e, (name, code)) in Errno::ALL.iter().zip(XEN_ERRNO_H) {
            assert_eq!(e.name(), name);
            assert_eq!(e.code(), code, "{name}");
        }
        assert_eq!(Errno::EWOULDBLOCK.code(), 11);
        assert_eq!(Errno::EDEADLOCK.code(), 35);
    }

    #[test]
    fn all_is_sorted_and_complete() {
        assert!(Errno::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
        let known = (0..=200).filter(|&c| Errno::from_code(c).is_some()).count();
        assert_eq!(known, Errno::ALL.len());
    }

    #[test]
    fn round_trip_through_the_return_register() {
        for e in Errno::ALL {
            let raw = Errno::encode_result(Err(e));
            assert_eq!(raw, -(e.code() as i64));
            assert_eq!(Errno::from_return(raw), Some(e));
            assert_eq!(Errno::decode_result(raw), Err(e));
            assert_eq!(Errno::from_code(e.code()), Some(e));
            assert_eq!(Errno::try_from(e.code()), Ok(e));
            assert_eq!(i64::from(e), raw);
        }
    }

    #[test]
    fn success_values_pass_through() {
        for v in [0u64, 1, 0x0004_0011, i64::MAX as u64] {
            assert_eq!(Errno::decode_result(Errno::encode_result(Ok(v))), Ok(v));
        }
    }

    #[test]
    fn unknown_negative_values_are_still_failures() {
        assert_eq!(Errno::from_return(-15), None);
        assert_eq!(Errno::decode_result(-15), Err(Errno::EIO));
        assert_eq!(Errno::decode_result(i64::MIN), Err(Errno::EIO));
        assert_eq!(Errno::from_return(0), None);
        assert_eq!(Errno::from_return(22), None);
        assert_eq!(Errno::try_from(15), Err(15));
    }
}
