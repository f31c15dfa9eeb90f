//! `xenbr0`, dom0's learning bridge (DESIGN §11): the NIC (`eth0`), dom0's own IP stack
//! (`xenbr0`) and every vif (`vif<domid>.<devid>`, netback's) are its ports. The forwarding
//! itself is the library's [`xenia_dom0::bridging::Bridge`]; this module holds the one bridge
//! under a lock and gives it the time.
//!
//! **Pull model.** Nothing calls into a port while the bridge's lock is held: a port's owner
//! pushes what it received with [`input`] and, in its own `service()` (run from
//! `kernel::service()`), pops what the bridge queued for it with [`pop`]. `kernel::service()`
//! runs the services again, a bounded number of times, while [`busy`] says a frame waits.

use alloc::string::String;
use alloc::vec::Vec;

use spin::Mutex;
use xenia_dom0::bridging::{Bridge, PortInfo};

/// The bridge's name.
pub const NAME: &str = "xenbr0";

/// A port of the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortId(pub u32);

static BRIDGE: Mutex<Bridge> = Mutex::new(Bridge::new());

/// The MAC address the bridge is known by (`brctl show`'s bridge id): dom0's own, the NIC's.
static MAC: Mutex<[u8; 6]> = Mutex::new([0; 6]);

/// Adds the port `name` (`"vif<domid>.<devid>"`, `"eth0"`, `"xenbr0"` for dom0's own); `None`
/// when the bridge has no room for another port.
pub fn attach(name: &str) -> Option<PortId> {
    let id = BRIDGE.lock().attach(name).map(PortId);
    if id.is_none() {
        crate::tprintln!("{NAME}: no room for port {name}");
    }
    id
}

/// Forgets the port, its queued frames and every MAC learned on it.
#[allow(dead_code)] // netback's (a vif going away)
pub fn detach(id: PortId) {
    BRIDGE.lock().detach(id.0);
}

/// A frame arrived on `from`: learns its source MAC and queues it for its destination (or
/// floods it), never back to `from`. Frames shorter than 14 bytes or longer than 1514 are
/// dropped and counted.
pub fn input(from: PortId, frame: &[u8]) {
    let now = xenia_guest_rt::time::now_ns();
    BRIDGE.lock().input(from.0, frame, now);
}

/// Pins `mac` to port `id` (a static, sticky entry: never aged, never moved by another
/// port's frames; [`xenia_dom0::bridging::Bridge::pin`]); netback's, with a vif's MAC.
/// `false` when it could not.
pub fn pin(id: PortId, mac: [u8; 6]) -> bool {
    BRIDGE.lock().pin(id.0, mac)
}

/// The next frame queued for `id`, copied into `buf` (per-port queue of at most 256 frames; a
/// full queue drops the new frame and counts it).
pub fn pop(id: PortId, buf: &mut [u8]) -> Option<usize> {
    BRIDGE.lock().pop(id.0, buf)
}

/// Whether a frame waits for `id`.
pub fn pending(id: PortId) -> bool {
    BRIDGE.lock().pending(id.0)
}

/// Whether some port has a frame waiting: dom0's service loop runs the services again before
/// blocking.
pub fn busy() -> bool {
    BRIDGE.lock().busy()
}

/// The ports and their counters.
pub fn ports() -> Vec<PortInfo> {
    BRIDGE.lock().ports()
}

/// Records the bridge's MAC (the NIC's, as Linux takes the lowest port's).
pub fn set_mac(mac: [u8; 6]) {
    *MAC.lock() = mac;
}

/// The bridge's MAC.
pub fn mac() -> [u8; 6] {
    *MAC.lock()
}

/// `brctl show`'s text.
pub fn brctl_show() -> String {
    xenia_dom0::bridging::brctl_show(NAME, &mac(), &ports())
}
