//! Consoles: the hypervisor console (`console_io`) and the shared console
//! ring of domUs.
//!
//! `console_io(cmd, count, buffer)` reads or writes the hypervisor's serial
//! console. dom0 uses it as its console: the hypervisor prints dom0's output
//! on the serial line line by line, each line prefixed with `(d0) `, and
//! holds back an unfinished line until its newline arrives (or its buffer
//! fills). A domU's writes go to the hypervisor log, prefixed with the
//! domain, for debugging; domUs cannot read (`EPERM`).
//!
//! A write checks the whole buffer before it prints anything: a buffer the
//! hypervisor cannot read in full fails with `EFAULT` and prints nothing (see
//! the [error rules](crate::hypercall#errors)).
//!
//! A domU's real console is a [`XenconsInterface`] page shared with the
//! console backend in dom0 (its frame and event channel are in
//! `start_info.console`).

use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// `console_io` command: write `count` bytes from `buffer`. Returns the
/// number of bytes written, which is `count`.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `console_io` command: read up to `count` bytes of pending input into
/// `buffer` (dom0 only). Returns the number of bytes read, possibly 0;
/// `VIRQ_CONSOLE` signals new input.
pub const CONSOLEIO_READ: u32 = 1;

/// `console_io` command (Xenia): write `count` bytes from `buffer` to the
/// serial line as they are, without the `(d0) ` prefix or line buffering
/// (dom0 only, `EPERM` otherwise). dom0's kernel uses it for its terminal:
/// prompts without a newline, echo, escape sequences. Returns `count`.
pub const CONSOLEIO_XENIA_WRITE_RAW: u32 = 0x5800;

/// Size of the input (backend to guest) ring.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output (guest to backend) ring.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// The console ring page (Xen's `struct xencons_interface`, 3088 bytes at the
/// start of the page).
///
/// Two single-producer, single-consumer byte rings. Indexes run freely and
/// wrap at 2^32; the byte for index `i` is at `i % size`. The producer writes
/// bytes, then publishes the new producer index (release); the consumer reads
/// the producer index (acquire), then the bytes, then publishes its consumer
/// index (release). After publishing, the side notifies the other through the
/// console event channel.
#[derive(Debug)]
#[repr(C)]
pub struct XenconsInterface {
    /// Input ring: written by the backend, read by the guest.
    pub input: [AtomicU8; XENCONS_IN_SIZE],
    /// Output ring: written by the guest, read by the backend.
    pub output: [AtomicU8; XENCONS_OUT_SIZE],
    /// Consumer index of the input ring (written by the guest).
    pub in_cons: AtomicU32,
    /// Producer index of the input ring (written by the backend).
    pub in_prod: AtomicU32,
    /// Consumer index of the output ring (written by the backend).
    pub out_cons: AtomicU32,
    /// Producer index of the output ring (written by the guest).
    pub out_prod: AtomicU32,
}

impl XenconsInterface {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            input: [const { AtomicU8::new(0) }; XENCONS_IN_SIZE],
            output: [const { AtomicU8::new(0) }; XENCONS_OUT_SIZE],
            in_cons: AtomicU32::new(0),
            in_prod: AtomicU32::new(0),
            out_cons: AtomicU32::new(0),
            out_prod: AtomicU32::new(0),
        }
    }

    /// Producer side of the output ring (the guest): appends as much of
    /// `bytes` as fits and returns how much that was. The caller then
    /// notifies the backend if the result is non-zero.
    pub fn write_output(&self, bytes: &[u8]) -> usize {
        let cons = self.out_cons.load(Ordering::Acquire);
        let prod = self.out_prod.load(Ordering::Relaxed);
        let used = prod.wrapping_sub(cons) as usize;
        // A corrupt consumer index (the other side is not trusted) leaves no
        // room rather than overrunning.
        let room = XENCONS_OUT_SIZE.saturating_sub(used);
        let n = room.min(bytes.len());
        for (i, &b) in bytes[..n].iter().enumerate() {
            let idx = prod.wrapping_add(i as u32) as usize % XENCONS_OUT_SIZE;
            self.output[idx].store(b, Ordering::Relaxed);
        }
        self.out_prod
            .store(prod.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// Consumer side of the input ring (the guest): moves pending input into
    /// `buf` and returns how many bytes that was.
    pub fn read_input(&self, buf: &mut [u8]) -> usize {
        let prod = self.in_prod.load(Ordering::Acquire);
        let cons = self.in_cons.load(Ordering::Relaxed);
        let avail = (prod.wrapping_sub(cons) as usize).min(XENCONS_IN_SIZE);
        let n = avail.min(buf.len());
        for (i, slot) in buf[..n].iter_mut().enumerate() {
            let idx = cons.wrapping_add(i as u32) as usize % XENCONS_IN_SIZE;
            *slot = self.input[idx].load(Ordering::Relaxed);
        }
        self.in_cons
            .store(cons.wrapping_add(n as u32), Ordering::Release);
        n
    }
}

impl Default for XenconsInterface {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        assert_eq!((CONSOLEIO_WRITE, CONSOLEIO_READ), (0, 1));
    }

    #[test]
    fn ring_layout() {
        assert_layout!(XenconsInterface, 3088, 4, {
            input: 0,
            output: 1024,
            in_cons: 3072,
            in_prod: 3076,
            out_cons: 3080,
            out_prod: 3084,
        });
    }

    #[test]
    fn output_ring_wraps_and_fills() {
        let ring = XenconsInterface::new();
        ring.out_prod.store(u32::MAX - 1, Ordering::Relaxed);
        ring.out_cons.store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(ring.write_output(b"abc"), 3);
        assert_eq!(ring.out_prod.load(Ordering::Relaxed), 1);
        let big = [b'x'; XENCONS_OUT_SIZE];
        assert_eq!(ring.write_output(&big), XENCONS_OUT_SIZE - 3);
        assert_eq!(ring.write_output(b"y"), 0);
    }

    #[test]
    fn input_ring_reads_what_was_produced() {
        let ring = XenconsInterface::new();
        for (i, &b) in b"hello".iter().enumerate() {
            ring.input[i].store(b, Ordering::Relaxed);
        }
        ring.in_prod.store(5, Ordering::Release);
        let mut buf = [0u8; 3];
        assert_eq!(ring.read_input(&mut buf), 3);
        assert_eq!(&buf, b"hel");
        assert_eq!(ring.read_input(&mut buf), 2);
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(ring.read_input(&mut buf), 0);
    }
}
