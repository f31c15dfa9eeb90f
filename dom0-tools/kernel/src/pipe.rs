//! Pipes (`pipe`, `pipe2`): the buffers behind pipe descriptors. A descriptor holds an end
//! ([`PipeEnd`]); this table holds each pipe's bytes and how many ends of each kind are open
//! in all processes, which [`add`] and [`drop_end`] keep (every descriptor made or copied, by
//! `pipe2`, `dup*` or `fork`, and every one closed, by `close`, `dup2` over it, `execve`'s
//! close-on-exec or the end of a process). A pipe is freed when its last end goes.
//!
//! Reads take what is there (at least one byte) or say the reader must wait; with no writer
//! left they return 0 (end of file). Writes put what fits (at least one byte) or say the
//! writer must wait; with no reader left they fail (`EPIPE`: Linux's `SIGPIPE` default action
//! is not modelled; programs that ignore the signal, as Rust's do, see the same error).

use alloc::collections::{BTreeMap, VecDeque};
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;
use xenia_dom0::files::PipeEnd;

/// Bytes a pipe holds (Linux's default: 16 pages).
pub const CAPACITY: usize = 64 * 1024;
/// Pipes open at once in dom0 (each costs up to [`CAPACITY`]).
pub const MAX_PIPES: usize = 256;

struct Pipe {
    data: VecDeque<u8>,
    readers: u32,
    writers: u32,
}

static PIPES: Mutex<BTreeMap<u32, Pipe>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A new pipe with one reading and one writing end; `None` when [`MAX_PIPES`] are open.
pub fn create() -> Option<u32> {
    let mut pipes = PIPES.lock();
    if pipes.len() >= MAX_PIPES {
        return None;
    }
    let mut id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    while id == 0 || pipes.contains_key(&id) {
        id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    }
    pipes.insert(
        id,
        Pipe {
            data: VecDeque::new(),
            readers: 1,
            writers: 1,
        },
    );
    Some(id)
}

/// One more descriptor holds `end`.
pub fn add(end: PipeEnd) {
    if let Some(p) = PIPES.lock().get_mut(&end.id) {
        if end.write {
            p.writers += 1;
        } else {
            p.readers += 1;
        }
    }
}

/// One descriptor less holds `end`; the pipe goes with its last end.
pub fn drop_end(end: PipeEnd) {
    let mut pipes = PIPES.lock();
    let Some(p) = pipes.get_mut(&end.id) else {
        return;
    };
    if end.write {
        p.writers = p.writers.saturating_sub(1);
    } else {
        p.readers = p.readers.saturating_sub(1);
    }
    if p.readers == 0 && p.writers == 0 {
        pipes.remove(&end.id);
    }
}

/// What a read or write found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This many bytes moved (0 for a read: end of file).
    Done(usize),
    /// Nothing can move now: the caller waits (or answers `EAGAIN`).
    Wait,
    /// A write with no reader left (`EPIPE`).
    Broken,
}

/// Reads into `out` from pipe `id`.
pub fn read(id: u32, out: &mut [u8]) -> Outcome {
    let mut pipes = PIPES.lock();
    let Some(p) = pipes.get_mut(&id) else {
        return Outcome::Done(0);
    };
    if p.data.is_empty() {
        return if p.writers == 0 || out.is_empty() {
            Outcome::Done(0)
        } else {
            Outcome::Wait
        };
    }
    let n = out.len().min(p.data.len());
    for (o, b) in out.iter_mut().zip(p.data.drain(..n)) {
        *o = b;
    }
    Outcome::Done(n)
}

/// Writes `bytes` into pipe `id`, as many as fit.
pub fn write(id: u32, bytes: &[u8]) -> Outcome {
    let mut pipes = PIPES.lock();
    let Some(p) = pipes.get_mut(&id) else {
        return Outcome::Broken;
    };
    if p.readers == 0 {
        return Outcome::Broken;
    }
    if bytes.is_empty() {
        return Outcome::Done(0);
    }
    let room = CAPACITY - p.data.len();
    if room == 0 {
        return Outcome::Wait;
    }
    let n = room.min(bytes.len());
    // alloc: bounded by CAPACITY per pipe and MAX_PIPES pipes.
    p.data.extend(&bytes[..n]);
    Outcome::Done(n)
}

/// Whether a read of pipe `id` would not wait (data, or no writer left).
pub fn readable(id: u32) -> bool {
    PIPES
        .lock()
        .get(&id)
        .is_none_or(|p| !p.data.is_empty() || p.writers == 0)
}

/// Whether a write to pipe `id` would not wait (room, or no reader left).
pub fn writable(id: u32) -> bool {
    PIPES
        .lock()
        .get(&id)
        .is_none_or(|p| p.data.len() < CAPACITY || p.readers == 0)
}
