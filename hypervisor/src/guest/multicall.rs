//! `multicall(calls, count)`: a batch of hypercalls in one entry (Xen's `do_multicall`,
//! `xen/common/multicall.c`; the guest-abi contract is on `MulticallEntry`).
//!
//! Each entry goes through the same handler table as a hypercall of its own, with the
//! entry's number and arguments standing in for the registers ([`Hc::with_entry`]), so it
//! meets exactly the checks it would alone. Then its result is written back, and what the
//! handler asked for beyond a value is honoured as Xen does:
//!
//! - an error is the entry's result, and the batch goes on;
//! - a continuation of the entry (`Ret::Again`) is written into the entry's arguments and
//!   the multicall continues from that entry;
//! - a yield or block (`SCHEDOP_yield`, `block`, `poll`) completes the entry, then cuts the
//!   batch short: the vCPU yields or blocks and, when it runs again, re-issues the call on
//!   the entries left (Xen: the schedule softirq makes the next preemption check fire);
//! - `iret` ends the batch (Xen's `mc_exit`); a shutdown or crash ends it too;
//! - a nested multicall is `EINVAL` in its entry's result.
//!
//! Between entries the call continues itself when an event waits for delivery, after
//! `MULTICALL_CHUNK` entries, or after an exchange (`XENMEM_exchange`, up to 2 MiB of frames
//! zeroed), so a long batch never holds the pCPU for long.

use core::mem::offset_of;
use core::sync::atomic::Ordering;

use guest_abi::errno::Errno;
use guest_abi::hypercall::{MULTICALL_CHUNK, MulticallEntry};

use super::context::{Hc, HcResult, Next, Ret};
use super::mem::{GuestPtr, GuestSlice};

/// Entry arguments passed in registers on x86-64 (`args[5]` is not used).
const REGISTER_ARGS: usize = 5;

/// `multicall(calls, count)`.
pub fn multicall(cx: &mut Hc) -> HcResult {
    if cx.in_multicall() {
        log::debug!(target: "hypercall", "domain {}: nested multicall refused", cx.id());
        return Err(Errno::EINVAL);
    }
    let list = cx.arg(0);
    // Xen's `nr_calls` is 32 bits wide: the upper half of the register is not looked at.
    let count = u64::from(cx.arg(1) as u32);
    let entries = GuestSlice::<MulticallEntry>::new(list, count)?;
    let space = cx.space();
    let [_, _, a2, a3, a4] = cx.args();
    // The registers that re-issue the call on the entries from `at` on.
    let rest = |at: GuestPtr<MulticallEntry>, left: u64| [at.addr(), left, a2, a3, a4];
    for i in 0..count {
        let at = entries.get(i).ok_or(Errno::EFAULT)?;
        if i > 0 && (i % MULTICALL_CHUNK == 0 || events_need_delivery(cx)) {
            return Ok(Ret::Again(rest(at, count - i)));
        }
        let entry: MulticallEntry = space.read(at)?;
        let mut args = [0u64; REGISTER_ARGS];
        args.copy_from_slice(&entry.args[..REGISTER_ARGS]);
        let result = cx.with_entry(entry.op, args, super::hypercall::dispatch);
        let value = match result {
            Err(e) => Errno::encode_result(Err(e)),
            Ok(Ret::Value(v)) => v as i64,
            Ok(Ret::Again(new_args) | Ret::AgainAfter(new_args, _)) => {
                // The entry itself is continued: it is re-run with its advanced arguments.
                space.write(
                    at.field::<[u64; REGISTER_ARGS]>(offset_of!(MulticallEntry, args)),
                    &new_args,
                )?;
                return Ok(Ret::Again(rest(at, count - i)));
            }
            Ok(Ret::Yield | Ret::Block) => 0,
            // `iret` rewrote the frame, or the domain stopped: the batch ends here.
            Ok(r @ (Ret::Resumed | Ret::Stopped)) => return Ok(r),
        };
        space.write(at.field::<i64>(offset_of!(MulticallEntry, result)), &value)?;
        // An exchange does up to its largest chunk of memory work (`mmu::exchange`, which
        // continues itself past that): the batch is continued after one, so that a
        // multicall of exchanges does not hold the world for each in turn.
        let exchange = entry.op == guest_abi::hypercall::HYPERVISOR_MEMORY_OP
            && entry.args[0] == u64::from(guest_abi::memory::XENMEM_EXCHANGE);
        if exchange && i + 1 < count {
            let after = entries.get(i + 1).ok_or(Errno::EFAULT)?;
            return Ok(Ret::Again(rest(after, count - i - 1)));
        }
        let pause = match result {
            Ok(Ret::Yield) => Some(Next::Yield),
            Ok(Ret::Block) => Some(Next::Block),
            _ => None,
        };
        if let Some(next) = pause {
            let left = count - i - 1;
            return Ok(match (left, next) {
                (0, Next::Block) => Ret::Block,
                (0, _) => Ret::Yield,
                _ => {
                    let after = entries.get(i + 1).ok_or(Errno::EFAULT)?;
                    Ret::AgainAfter(rest(after, left), next)
                }
            });
        }
    }
    Ok(Ret::Value(0))
}

/// Whether an event waits to be delivered to the calling vCPU (Xen's
/// `local_events_need_delivery`, half of `hypercall_preempt_check`).
fn events_need_delivery(cx: &mut Hc) -> bool {
    let info = cx.info();
    info.evtchn_upcall_pending.load(Ordering::Acquire) != 0
        && info.evtchn_upcall_mask.load(Ordering::Acquire) == 0
}
