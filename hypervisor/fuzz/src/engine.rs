//! The fuzzing engine: a small, coverage-less, single-threaded mutation fuzzer on stable Rust.
//!
//! # Why not cargo-fuzz, AFL or bolero
//!
//! cargo-fuzz (libFuzzer) needs `-Z sanitizer=fuzzer`, i.e. a nightly toolchain, and this
//! project pins one stable toolchain (`rust-toolchain.toml`) that its machines cannot replace.
//! AFL (`cargo afl`) needs the AFL++ runtime and an LLVM plugin built on the machine, and
//! bolero's fuzzing engines are libFuzzer, AFL and honggfuzz again; its stable mode is a
//! random test driver without coverage. So the engine is this file: what matters most for the
//! targets here is not coverage feedback but *throughput* and *structure* — every target
//! decodes its bytes into a well-formed operation sequence (or a structured file it then
//! damages), so random bytes already reach deep states, and millions of them per target are
//! cheap.
//!
//! # How it works
//!
//! Inputs are byte strings. Each execution either draws fresh random bytes (a quarter of the
//! time) or mutates an entry of the target's seed corpus with a stack of byte-level mutations
//! (bit flips, interesting values, insertions, deletions, copies, splices with another seed).
//! The target decodes the bytes with [`Input`] — which reads zeros once the bytes run out, so
//! every string is a valid input — runs, and panics if an invariant breaks. A panic is caught,
//! the input is minimised (chunks removed, bytes zeroed, while the same panic location
//! persists), written to `target/fuzz/crashes/<target>/`, and reported with the command that
//! replays it. The random generator is xoshiro256** seeded from `--seed`, so a run is
//! reproducible given its seed and its time budget's execution count.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A fuzz target.
pub struct Target {
    /// Name on the command line.
    pub name: &'static str,
    /// One line saying what it checks.
    pub about: &'static str,
    /// Runs one input; panics if an invariant breaks.
    pub run: fn(&[u8]),
    /// Inputs to mutate besides fresh random bytes (may be empty).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Longest input generated.
    pub max_len: usize,
}

/// Reads a target's input as typed values. Past the end every read gives zero, so any byte
/// string decodes (like `arbitrary::Unstructured`, without the dependency).
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A value below `n` (`n > 0`), from as few bytes as `n` needs.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let raw = if n <= 1 << 8 {
            u64::from(self.u8())
        } else if n <= 1 << 16 {
            u64::from(self.u16())
        } else if n <= 1 << 32 {
            u64::from(self.u32())
        } else {
            self.u64()
        };
        raw % n
    }

    /// An index below `n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Up to `max` bytes, as many as remain.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(max).min(self.data.len());
        self.pos = end.max(self.pos);
        &self.data[start..end]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }
}

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: fast, and good enough to
/// drive mutations.
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Below `n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Values that sit on boundaries parsers and counters get wrong.
const INTERESTING: [u64; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1000,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

/// Applies one to four random mutations to `data`, keeping it at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        if data.is_empty() {
            let mut fresh = vec![0; 1 + rng.below(16)];
            rng.fill(&mut fresh);
            data.extend_from_slice(&fresh);
        }
        let len = data.len();
        let at = rng.below(len);
        match rng.below(9) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next_u64() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let width = [1, 2, 4, 8][rng.below(4)];
                for (i, b) in v.iter().take(width).enumerate() {
                    if let Some(slot) = data.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let mut extra = vec![0; 1 + rng.below(32)];
                rng.fill(&mut extra);
                data.splice(at..at, extra);
            }
            4 => {
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            5 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let chunk = data[from..from + n].to_vec();
                let to = rng.below(len);
                data.splice(to..to, chunk);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
            }
            7 => data[at] = data[at].wrapping_add(1 + rng.below(8) as u8),
            _ => data[at] = data[at].wrapping_sub(1 + rng.below(8) as u8),
        }
    }
    data.truncate(max_len);
}

/// How a run went.
pub struct Outcome {
    /// Inputs executed.
    pub execs: u64,
    /// Wall time spent fuzzing (not minimising).
    pub elapsed: Duration,
    /// The first failure, if any.
    pub failure: Option<Failure>,
}

/// A failing input.
pub struct Failure {
    /// As found.
    pub input: Vec<u8>,
    /// Minimised: still fails at the same place.
    pub minimized: Vec<u8>,
    /// The panic message of the minimised input, with its location.
    pub message: String,
}

thread_local! {
    /// The last panic caught by [`quiet_hook`]: "location: message".
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records panics instead of printing them, while fuzzing.
fn quiet_hook(info: &panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("(non-string panic)")
    };
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{location}: {message}")));
}

/// Runs `target` on `data`; the panic's "location: message" if it panicked. Needs the quiet
/// hook installed to see the message.
fn try_run(target: &Target, data: &[u8]) -> Result<(), String> {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    match panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data))) {
        Ok(()) => Ok(()),
        Err(_) => Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| String::from("panic"))),
    }
}

/// The location part of a panic description: two panics with the same location are taken to
/// be the same failure while minimising (messages often embed changing values).
fn location(message: &str) -> &str {
    message.split(": ").next().unwrap_or(message)
}

/// Fuzzes `target` for `time` (or until `max_execs`), starting from `seed`. Stops at the
/// first failure and minimises it within `minimize_time`.
pub fn fuzz(
    target: &Target,
    seed: u64,
    time: Duration,
    max_execs: Option<u64>,
    minimize_time: Duration,
    mut progress: impl FnMut(u64, Duration),
) -> Outcome {
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(quiet_hook));
    let mut rng = Rng::new(seed);
    let corpus = (target.seeds)();
    let start = Instant::now();
    let mut last_report = start;
    let mut execs = 0u64;
    let mut data = Vec::with_capacity(target.max_len);
    let mut failure = None;
    // Every seed once, unmutated, first.
    let mut pending_seeds = corpus.clone();
    loop {
        if execs.is_multiple_of(64) {
            let now = Instant::now();
            if now.duration_since(start) >= time || max_execs.is_some_and(|m| execs >= m) {
                break;
            }
            if now.duration_since(last_report) >= Duration::from_secs(10) {
                progress(execs, now.duration_since(start));
                last_report = now;
            }
        }
        data.clear();
        if let Some(s) = pending_seeds.pop() {
            data.extend_from_slice(&s);
        } else if corpus.is_empty() || rng.below(4) == 0 {
            // Mostly short inputs: short operation sequences fail fastest and minimise best.
            let len = if rng.below(2) == 0 {
                rng.below(target.max_len.min(256) + 1)
            } else {
                rng.below(target.max_len + 1)
            };
            data.resize(len, 0);
            rng.fill(&mut data);
        } else {
            data.extend_from_slice(&corpus[rng.below(corpus.len())]);
            mutate(&mut rng, &mut data, &corpus, target.max_len);
        }
        execs += 1;
        if let Err(message) = try_run(target, &data) {
            let elapsed = start.elapsed();
            let (minimized, message) = minimize(target, &data, &message, minimize_time);
            failure = Some(Failure {
                input: data.clone(),
                minimized,
                message,
            });
            panic::set_hook(previous_hook);
            return Outcome {
                execs,
                elapsed,
                failure,
            };
        }
    }
    panic::set_hook(previous_hook);
    Outcome {
        execs,
        elapsed: start.elapsed(),
        failure: failure.take(),
    }
}

/// Shrinks `data`, which fails with `message`, while it keeps failing at the same location:
/// removes chunks of halving sizes, then zeroes bytes. Returns the smallest input found and its
/// message. Needs the quiet hook installed.
fn minimize(target: &Target, data: &[u8], message: &str, time: Duration) -> (Vec<u8>, String) {
    let start = Instant::now();
    let want = location(message).to_string();
    let mut best = data.to_vec();
    let mut best_message = message.to_string();
    let still_fails = |candidate: &[u8], best_message: &mut String| match try_run(target, candidate)
    {
        Err(m) if location(&m) == want => {
            *best_message = m;
            true
        }
        _ => false,
    };
    let mut chunk = best.len().div_ceil(2).max(1);
    while chunk >= 1 && start.elapsed() < time {
        let mut i = 0;
        let mut shrunk = false;
        while i < best.len() && start.elapsed() < time {
            let mut candidate = best.clone();
            candidate.drain(i..(i + chunk).min(best.len()));
            if still_fails(&candidate, &mut best_message) {
                best = candidate;
                shrunk = true;
            } else {
                i += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    for i in 0..best.len() {
        if start.elapsed() >= time {
            break;
        }
        if best[i] != 0 {
            let mut candidate = best.clone();
            candidate[i] = 0;
            if still_fails(&candidate, &mut best_message) {
                best = candidate;
            }
        }
    }
    (best, best_message)
}

/// Whether `XENIA_FUZZ_TRACE` is set: targets then print each operation (for `--replay`).
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("XENIA_FUZZ_TRACE").is_some())
}

/// Prints an operation when tracing.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::engine::tracing() {
            eprintln!($($arg)*);
        }
    };
}
