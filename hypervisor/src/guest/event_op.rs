//! `event_channel_op`: placeholder until the event-channel module lands.
use guest_abi::errno::Errno;

use crate::domain::Domain;

pub fn dispatch(_dom: &mut Domain, _cmd: u64, _arg: u64) -> Result<u64, Errno> {
    Err(Errno::ENOSYS)
}
