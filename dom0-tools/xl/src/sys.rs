//! The only place xl talks to the kernel below `std`: `ioctl`, `poll` and
//! raw `read`/`write` on descriptors `std` does not own (fd 0, whose `std`
//! handle buffers). Everything else in xl is safe code over these.
#![deny(unsafe_op_in_unsafe_fn)]

use std::os::fd::RawFd;

use guest_abi::Errno;

/// The error of the last failing call, as the hypervisor ABI's errno (the
/// numbers are Linux's on both sides).
fn last_errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .and_then(Errno::from_code)
        .unwrap_or(Errno::EIO)
}

/// `ioctl(fd, request, arg)` with a pointer to `arg`; returns what the
/// ioctl returned (never negative).
pub fn ioctl_ref<T>(fd: RawFd, request: u64, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: `arg` is a live, exclusively borrowed value for the whole call;
    // the kernel reads and writes at most `size_of::<T>()` bytes of it (the
    // size is part of `request`, and each request's type is the one its
    // constant documents). Any pointers inside `arg` are the caller's and
    // point at memory that outlives the call (the caller's borrow rules).
    let ret = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as u64)
    }
}

/// `ioctl(fd, request, value)` with the argument by value.
pub fn ioctl_val(fd: RawFd, request: u64, value: u64) -> Result<u64, Errno> {
    // SAFETY: the argument is an integer, not a pointer: the kernel reads
    // nothing of ours.
    let ret = unsafe { libc::ioctl(fd, request as _, value as libc::c_ulong) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as u64)
    }
}

/// Waits until one of `fds` is readable (or hung up) or `timeout_ms` passes
/// (negative: no limit); returns, per descriptor, whether it is ready.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> Result<Vec<bool>, Errno> {
    let mut set: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `set` is a live array of `set.len()` pollfds, borrowed
        // exclusively for the call; the kernel writes only `revents`.
        let ret = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, timeout_ms) };
        if ret >= 0 {
            break;
        }
        let e = last_errno();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
    Ok(set
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}

/// `read(fd, buf)`: the bytes read (0 at end of file).
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed byte buffer of
        // `buf.len()` bytes; the kernel writes at most that many.
        let ret = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let e = last_errno();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Writes all of `bytes` to `fd`.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live byte slice; the kernel reads at most
        // `bytes.len()` bytes of it.
        let ret = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if ret < 0 {
            let e = last_errno();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        if ret == 0 {
            return Err(Errno::EIO);
        }
        bytes = &bytes[ret as usize..];
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in seconds since 1970.
pub fn realtime_s() -> u64 {
    clock(libc::CLOCK_REALTIME) / 1_000_000_000
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec borrowed exclusively for the call; the
    // kernel writes only it.
    let ret = unsafe { libc::clock_gettime(id, &mut ts) };
    if ret != 0 {
        return 0;
    }
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec.max(0) as u64)
}

/// 16 random bytes from the kernel (the `getrandom` system call); zeros if
/// it has none.
///
/// The system call itself, not musl's `getrandom` function: `std` declares
/// that function as a weak symbol (it falls back to the system call when
/// the symbol is null), and with fat LTO LLVM merges that declaration with
/// `libc::getrandom`'s into one weak one, so the static link does not take
/// `getrandom` from musl's `libc.a` and a direct call jumps to address 0
/// (rust-lang/rust#154439, seen with `gettid`).
pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: `b` is a live 16-byte buffer borrowed exclusively for the
    // call; the kernel writes at most 16 bytes.
    let _ = unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), b.len(), 0u32) };
    b
}

/// What `uname` says of the system, as strings (`unknown` for a field the kernel refused).
pub struct Uname {
    /// The host name.
    pub nodename: String,
    /// The kernel's release.
    pub release: String,
    /// The kernel's version (build) string.
    pub version: String,
    /// The hardware name (`x86_64`).
    pub machine: String,
}

/// `uname`.
pub fn uname() -> Uname {
    // SAFETY: `utsname` is plain bytes; all zeros is a valid value.
    let mut u: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: `u` is a live utsname borrowed exclusively for the call; the kernel writes
    // only it.
    let ok = unsafe { libc::uname(&mut u) } == 0;
    let field = |f: &[libc::c_char]| {
        if !ok {
            return String::from("unknown");
        }
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Uname {
        nodename: field(&u.nodename),
        release: field(&u.release),
        version: field(&u.version),
        machine: field(&u.machine),
    }
}

/// Terminal `fd` with input made raw until this is dropped, as xenconsole and xentop set
/// theirs: keys reach xl as typed (Ctrl-C and Ctrl-] included) and are not echoed. Output
/// keeps `\n` → `\r\n`, so what a domain prints looks as it does outside `xl console`. On
/// anything but a terminal it does nothing.
pub struct RawInput {
    fd: RawFd,
    saved: Option<libc::termios>,
}

impl RawInput {
    /// Makes `fd`'s input raw (if it is a terminal).
    pub fn new(fd: RawFd) -> Self {
        // SAFETY: an all-zero `termios` is a valid value of the plain C struct.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a live, exclusively borrowed termios the call fills.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Self { fd, saved: None };
        }
        let saved = t;
        t.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: `t` is a valid termios the call only reads.
        let set = unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        Self {
            fd,
            saved: (set == 0).then_some(saved),
        }
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: `saved` is the valid termios read in `new`; the call only reads it.
            unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, saved) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random16_comes_from_the_kernel() {
        // Two draws of 128 random bits are equal (or zero, which is what a
        // failed call leaves) with a chance of about 2^-128.
        let (a, b) = (super::random16(), super::random16());
        assert_ne!(a, [0; 16], "getrandom failed");
        assert_ne!(a, b);
    }
}
