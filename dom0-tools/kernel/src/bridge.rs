//! The bridge (`xenbr0`) joining dom0's ports: a stand-in with the interface of helper
//! "nic"'s learning bridge, so that netback can be built and tested on its own branch. It
//! floods every frame to every other port (no MAC learning), with bounded queues; the
//! learning bridge replaces it at merge.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;

/// A port of the bridge.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortId(pub u32);

/// Ports at most.
const PORTS: usize = 64;
/// Frames queued per port at most.
const QUEUE: usize = 256;
const MIN_FRAME: usize = 14;
const MAX_FRAME: usize = 1514;

struct Port {
    id: u32,
    _name: String,
    queue: VecDeque<Vec<u8>>,
    dropped: u64,
}

struct Bridge {
    ports: Vec<Port>,
    next: u32,
    bad: u64,
}

static BRIDGE: Mutex<Bridge> = Mutex::new(Bridge {
    ports: Vec::new(),
    next: 1,
    bad: 0,
});

/// Adds a port named `name`; `None` when the bridge has no room for another.
pub fn attach(name: &str) -> Option<PortId> {
    let mut b = BRIDGE.lock();
    if b.ports.len() >= PORTS || b.ports.try_reserve(1).is_err() {
        return None;
    }
    let mut n = String::new();
    n.try_reserve(name.len()).ok()?;
    n.push_str(name);
    let id = b.next;
    b.next = b.next.wrapping_add(1).max(1);
    b.ports.push(Port {
        id,
        _name: n,
        queue: VecDeque::new(),
        dropped: 0,
    });
    Some(PortId(id))
}

/// Forgets port `id` and its queued frames.
pub fn detach(id: PortId) {
    BRIDGE.lock().ports.retain(|p| p.id != id.0);
}

/// A frame arrived on `from`: queued for every other port.
pub fn input(from: PortId, frame: &[u8]) {
    let mut b = BRIDGE.lock();
    if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
        b.bad += 1;
        return;
    }
    for p in b.ports.iter_mut().filter(|p| p.id != from.0) {
        let mut f = Vec::new();
        if p.queue.len() >= QUEUE
            || f.try_reserve_exact(frame.len()).is_err()
            || p.queue.try_reserve(1).is_err()
        {
            p.dropped += 1;
            continue;
        }
        f.extend_from_slice(frame);
        p.queue.push_back(f);
    }
}

/// The next frame queued for `id`, copied into `buf` (cut to its length); its length.
pub fn pop(id: PortId, buf: &mut [u8]) -> Option<usize> {
    let mut b = BRIDGE.lock();
    let p = b.ports.iter_mut().find(|p| p.id == id.0)?;
    let f = p.queue.pop_front()?;
    let n = f.len().min(buf.len());
    buf[..n].copy_from_slice(&f[..n]);
    Some(n)
}

/// Whether a frame waits for `id`.
pub fn pending(id: PortId) -> bool {
    BRIDGE
        .lock()
        .ports
        .iter()
        .any(|p| p.id == id.0 && !p.queue.is_empty())
}

/// Whether some port has a frame waiting.
pub fn busy() -> bool {
    BRIDGE.lock().ports.iter().any(|p| !p.queue.is_empty())
}
