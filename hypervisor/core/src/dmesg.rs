//! The hypervisor's log ring, later read by `xl dmesg` (Xen's console ring, "conring", read
//! through `XEN_SYSCTL_readconsole`).
//!
//! Every byte ever written has a *position*: a 64-bit counter that only grows. The ring keeps the
//! newest `N` bytes; older ones are overwritten. Readers hold on to a position instead of an index
//! into the buffer, which is what lets an incremental reader (`xl dmesg -c`-style polling) never
//! see a byte twice and learn exactly how many bytes it missed when the writer lapped it.
//!
//! The ring does not allocate and has a `const fn` constructor, so it can live in a `static`
//! before the heap exists; locking is the caller's business (it takes `&mut self` to write).
//! A 64-bit position cannot wrap in practice: at 1 GiB/s of log it takes over 500 years.

use core::fmt;

/// What [`LogRing::read_from`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Bytes copied into the caller's buffer, from its start.
    pub copied: usize,
    /// Position to pass to the next call to continue right after the copied bytes.
    pub next: u64,
    /// Bytes between the requested offset and the first byte copied that were overwritten
    /// before this read (0 when the reader kept up).
    pub skipped: u64,
}

/// A fixed-capacity byte ring that overwrites its oldest bytes when full.
pub struct LogRing<const N: usize> {
    buf: [u8; N],
    /// Position one past the newest byte, i.e. the total number of bytes ever written.
    head: u64,
    /// Bytes before this position were cleared ([`LogRing::clear`], `xl dmesg -c`).
    cleared: u64,
}

impl<const N: usize> LogRing<N> {
    /// Capacity in bytes as a position delta; `usize` always fits in `u64` on the targets we build.
    const CAP: u64 = N as u64;

    /// An empty ring. Usable in a `static` initialiser.
    pub const fn new() -> Self {
        // A zero-sized ring could never hold a byte and would divide by zero on every index.
        const { assert!(N > 0, "a LogRing needs a capacity of at least one byte") };
        Self {
            buf: [0; N],
            head: 0,
            cleared: 0,
        }
    }

    /// Capacity in bytes.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Appends `bytes`, overwriting the oldest bytes once the ring is full.
    pub fn write(&mut self, bytes: &[u8]) {
        // Only the last N bytes of an oversized write can survive; skip the rest without copying.
        let keep = &bytes[bytes.len().saturating_sub(N)..];
        let dropped = (bytes.len() - keep.len()) as u64;
        self.head = self.head.saturating_add(dropped);

        let at = Self::index(self.head);
        let first = keep.len().min(N - at);
        self.buf[at..at + first].copy_from_slice(&keep[..first]);
        self.buf[..keep.len() - first].copy_from_slice(&keep[first..]);
        self.head = self.head.saturating_add(keep.len() as u64);
    }

    /// Number of bytes currently kept (at most `N`).
    pub fn len(&self) -> usize {
        // Bounded by N, so the conversion cannot truncate.
        (self.head - self.oldest()) as usize
    }

    /// Forgets every byte kept (Xen's `XEN_SYSCTL_readconsole` with `clear`): readers see
    /// only what is written from now on. Positions keep counting.
    pub fn clear(&mut self) {
        self.cleared = self.head;
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.head == 0
    }

    /// Bytes overwritten so far: the position of the oldest byte still kept.
    pub fn lost(&self) -> u64 {
        self.oldest()
    }

    /// Position of the oldest byte still kept.
    pub fn oldest(&self) -> u64 {
        self.head.saturating_sub(Self::CAP).max(self.cleared)
    }

    /// Position the next written byte will get (total bytes written so far).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Copies the oldest kept bytes at or after position `offset` into `out`.
    ///
    /// A reader that feeds each result's `next` back in sees every byte at most once, in order;
    /// `skipped` tells it how many bytes it missed because the writer overwrote them first. An
    /// `offset` beyond the head (a confused reader) copies nothing and resynchronises it to the
    /// head rather than failing, since a log reader has nothing better to do.
    pub fn read_from(&self, offset: u64, out: &mut [u8]) -> ReadResult {
        let start = offset.clamp(self.oldest(), self.head);
        let skipped = start.saturating_sub(offset);
        let available = self.head - start;
        let copied = out
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));

        let at = Self::index(start);
        let first = copied.min(N - at);
        out[..first].copy_from_slice(&self.buf[at..at + first]);
        out[first..copied].copy_from_slice(&self.buf[..copied - first]);

        ReadResult {
            copied,
            next: start + copied as u64,
            skipped,
        }
    }

    /// The kept bytes in order, as the two contiguous pieces of the ring (the second may be
    /// empty). Meant for dumping the log from a panic handler without a copy.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let at = Self::index(self.oldest());
        let len = self.len();
        let first = len.min(N - at);
        (&self.buf[at..at + first], &self.buf[..len - first])
    }

    /// Buffer index of a position.
    fn index(position: u64) -> usize {
        // The remainder is below N, so it fits in usize.
        (position % Self::CAP) as usize
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Lets `write!` format straight into the ring, with no intermediate buffer.
impl<const N: usize> fmt::Write for LogRing<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for LogRing<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogRing")
            .field("capacity", &N)
            .field("head", &self.head)
            .field("lost", &self.lost())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::fmt::Write as _;

    /// Everything still kept, read in one go from position 0.
    fn contents<const N: usize>(ring: &LogRing<N>) -> Vec<u8> {
        let mut out = vec![0; N + 8];
        let r = ring.read_from(0, &mut out);
        out.truncate(r.copied);
        out
    }

    /// Deterministic xorshift64* so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn new_ring_is_empty() {
        let ring = LogRing::<16>::new();
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.lost(), 0);
        assert_eq!(ring.capacity(), 16);
        let mut out = [0u8; 4];
        assert_eq!(
            ring.read_from(0, &mut out),
            ReadResult {
                copied: 0,
                next: 0,
                skipped: 0
            }
        );
        assert_eq!(ring.as_slices(), (&[][..], &[][..]));
    }

    #[test]
    fn usable_in_a_static_initialiser() {
        static RING: LogRing<64> = LogRing::new();
        assert!(RING.is_empty());
    }

    #[test]
    fn write_below_capacity_keeps_everything() {
        let mut ring = LogRing::<16>::new();
        ring.write(b"hello ");
        ring.write(b"world");
        assert_eq!(ring.len(), 11);
        assert_eq!(ring.lost(), 0);
        assert_eq!(contents(&ring), b"hello world");
        assert_eq!(ring.head(), 11);
    }

    #[test]
    fn exact_capacity_write_fills_without_loss() {
        let mut ring = LogRing::<8>::new();
        ring.write(b"abcdefgh");
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.lost(), 0);
        assert_eq!(contents(&ring), b"abcdefgh");
        ring.write(b"i");
        assert_eq!(ring.lost(), 1);
        assert_eq!(contents(&ring), b"bcdefghi");
    }

    #[test]
    fn wrap_around_overwrites_oldest() {
        let mut ring = LogRing::<8>::new();
        ring.write(b"abcde");
        ring.write(b"fghij");
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.lost(), 2);
        assert_eq!(contents(&ring), b"cdefghij");
        let (a, b) = ring.as_slices();
        assert_eq!([a, b].concat(), b"cdefghij");
        assert!(!b.is_empty(), "this layout wraps in the buffer");
    }

    #[test]
    fn write_larger_than_capacity_keeps_its_tail() {
        let mut ring = LogRing::<4>::new();
        ring.write(b"xy");
        ring.write(b"0123456789");
        assert_eq!(ring.head(), 12);
        assert_eq!(ring.lost(), 8);
        assert_eq!(contents(&ring), b"6789");
    }

    #[test]
    fn empty_write_changes_nothing() {
        let mut ring = LogRing::<4>::new();
        ring.write(b"");
        assert!(ring.is_empty());
        ring.write(b"abc");
        ring.write(b"");
        assert_eq!(contents(&ring), b"abc");
    }

    #[test]
    fn capacity_one() {
        let mut ring = LogRing::<1>::new();
        ring.write(b"abc");
        assert_eq!(contents(&ring), b"c");
        assert_eq!(ring.lost(), 2);
        let mut out = [0u8; 1];
        let r = ring.read_from(0, &mut out);
        assert_eq!(
            r,
            ReadResult {
                copied: 1,
                next: 3,
                skipped: 2
            }
        );
    }

    #[test]
    fn incremental_reader_sees_each_byte_once() {
        let mut ring = LogRing::<8>::new();
        let mut pos = 0;
        let mut seen = Vec::new();
        let mut out = [0u8; 3];
        ring.write(b"abcd");
        loop {
            let r = ring.read_from(pos, &mut out);
            assert_eq!(r.skipped, 0);
            if r.copied == 0 {
                break;
            }
            seen.extend_from_slice(&out[..r.copied]);
            pos = r.next;
        }
        ring.write(b"efg");
        let r = ring.read_from(pos, &mut out);
        seen.extend_from_slice(&out[..r.copied]);
        assert_eq!(seen, b"abcdefg");
        assert_eq!(r.next, 7);
    }

    #[test]
    fn lapped_reader_learns_how_much_it_missed() {
        let mut ring = LogRing::<4>::new();
        ring.write(b"ab");
        let mut out = [0u8; 8];
        let r = ring.read_from(0, &mut out);
        assert_eq!(&out[..r.copied], b"ab");
        ring.write(b"cdefghij");
        let r2 = ring.read_from(r.next, &mut out);
        assert_eq!(&out[..r2.copied], b"ghij");
        assert_eq!(r2.skipped, 4, "c, d, e, f were overwritten unseen");
        assert_eq!(r2.next, 10);
        assert_eq!(ring.lost(), 6);
    }

    #[test]
    fn offset_in_the_future_resynchronises_to_head() {
        let mut ring = LogRing::<4>::new();
        ring.write(b"ab");
        let mut out = [0u8; 4];
        assert_eq!(
            ring.read_from(100, &mut out),
            ReadResult {
                copied: 0,
                next: 2,
                skipped: 0
            }
        );
        assert_eq!(
            ring.read_from(u64::MAX, &mut out),
            ReadResult {
                copied: 0,
                next: 2,
                skipped: 0
            }
        );
    }

    #[test]
    fn empty_output_buffer_copies_nothing_but_reports_skip() {
        let mut ring = LogRing::<4>::new();
        ring.write(b"abcdef");
        let r = ring.read_from(0, &mut []);
        assert_eq!(
            r,
            ReadResult {
                copied: 0,
                next: 2,
                skipped: 2
            }
        );
    }

    #[test]
    fn fmt_write_formats_into_the_ring() {
        let mut ring = LogRing::<32>::new();
        write!(ring, "(XEN) {} + {} = {}", 1, 2, 1 + 2).unwrap();
        assert_eq!(contents(&ring), b"(XEN) 1 + 2 = 3");
        let debug = alloc::format!("{ring:?}");
        assert!(debug.contains("head: 15"), "{debug}");
    }

    /// Model check: random writes and reads against a plain Vec holding every byte ever written.
    #[test]
    fn random_operations_match_a_model() {
        fn run<const N: usize>(seed: u64) {
            let mut rng = Rng(seed);
            let mut ring = LogRing::<N>::new();
            let mut all: Vec<u8> = Vec::new();
            let mut reader_pos = 0u64;
            let mut reader_seen: Vec<u8> = Vec::new();
            let mut reader_skipped = 0u64;
            for _ in 0..2000 {
                if rng.below(3) != 0 {
                    let len = rng.below(N as u64 * 2 + 2) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    ring.write(&bytes);
                    all.extend_from_slice(&bytes);
                } else {
                    let mut out = vec![0u8; rng.below(N as u64 + 3) as usize];
                    let r = ring.read_from(reader_pos, &mut out);
                    reader_skipped += r.skipped;
                    // The copied bytes are exactly the model's bytes at their positions.
                    let from = (r.next - r.copied as u64) as usize;
                    assert_eq!(&out[..r.copied], &all[from..r.next as usize]);
                    assert_eq!(from as u64, reader_pos + r.skipped);
                    reader_seen.extend_from_slice(&out[..r.copied]);
                    reader_pos = r.next;
                }
                // Ring invariants.
                assert_eq!(ring.head(), all.len() as u64);
                assert_eq!(ring.len(), all.len().min(N));
                assert_eq!(ring.lost(), all.len().saturating_sub(N) as u64);
                let (a, b) = ring.as_slices();
                assert_eq!([a, b].concat(), &all[all.len() - ring.len()..]);
                // Random absolute read from anywhere.
                let off = rng.below(all.len() as u64 + 4);
                let mut out = vec![0u8; N];
                let r = ring.read_from(off, &mut out);
                let start = off.clamp(ring.lost(), ring.head());
                assert_eq!(r.skipped, start - off.min(start));
                assert_eq!(&out[..r.copied], &all[start as usize..r.next as usize]);
            }
            // The incremental reader saw every byte at most once, in order, and accounted for
            // every byte it did not see.
            assert_eq!(reader_seen.len() as u64 + reader_skipped, reader_pos);
        }
        for seed in 1..=20 {
            run::<1>(seed);
            run::<7>(seed);
            run::<64>(seed);
        }
    }

    #[test]
    fn clear_forgets_what_was_kept() {
        let mut r = LogRing::<8>::new();
        r.write(b"abcdef");
        r.clear();
        assert_eq!(r.len(), 0);
        assert_eq!(r.as_slices(), (&b""[..], &b""[..]));
        let mut out = [0u8; 8];
        let got = r.read_from(0, &mut out);
        assert_eq!((got.copied, got.next, got.skipped), (0, 6, 6));
        r.write(b"gh");
        let got = r.read_from(0, &mut out);
        assert_eq!(&out[..got.copied], b"gh");
        assert_eq!(r.len(), 2);
        // Wrapping past the cleared point: the ring's own limit rules again.
        r.write(b"ijklmnopq");
        assert_eq!(r.len(), 8);
        let got = r.read_from(0, &mut out);
        assert_eq!(&out[..got.copied], b"jklmnopq");
    }
}
