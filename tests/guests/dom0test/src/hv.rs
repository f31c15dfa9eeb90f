//! The hypervisor as the test dom0 reaches it: dom0-tools' [`Xen`] (the handle xl and
//! dom0's kernel use, host-tested there) over direct hypercalls that count the calls and
//! remember the last one the hypervisor refused, with its arguments, so that a test that
//! sees a build fail can say exactly which call was refused, with what
//! ([`Recorded::last_failure`]).

use alloc::format;
use alloc::string::String;
use core::fmt;

use dom0_tools::xen::{Raw, Xen};
use guest_abi::Errno;
use guest_abi::domctl::XenDomctl;
use guest_abi::hypercall::{HYPERVISOR_DOMCTL, HYPERVISOR_SYSCTL, hypercall5};
use guest_abi::sysctl::XenSysctl;

/// A hypercall the hypervisor refused: what was asked, with its arguments, and the answer.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The call and its arguments.
    pub call: String,
    /// What the hypervisor returned.
    pub errno: Errno,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned -{:?}", self.call, self.errno)
    }
}

/// Direct hypercalls, counted, with the last refusal kept.
#[derive(Default)]
pub struct Recorder {
    /// Hypercalls made, for the per-cycle costs the tests print.
    pub calls: u64,
    last_failure: Option<Failure>,
}

/// What a refused call was, for [`Failure::call`].
fn describe(op: u64, arg: &[u64; 5]) -> String {
    match op {
        HYPERVISOR_DOMCTL => {
            // SAFETY: `Xen` passes a live `XenDomctl` as the first argument of every domctl,
            // borrowed for the duration of the call this runs within.
            let d = unsafe { &*(arg[0] as *const XenDomctl) };
            format!("domctl cmd {:#x} domain {}", d.cmd, d.domain)
        }
        HYPERVISOR_SYSCTL => {
            // SAFETY: as above, with a `XenSysctl`.
            let s = unsafe { &*(arg[0] as *const XenSysctl) };
            format!("sysctl cmd {}", s.cmd)
        }
        _ => format!(
            "hypercall {op} ({:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
            arg[0], arg[1], arg[2], arg[3], arg[4]
        ),
    }
}

impl Raw for Recorder {
    fn hypercall(&mut self, op: u64, arg: [u64; 5]) -> Result<u64, Errno> {
        self.calls += 1;
        // SAFETY: `Xen` makes control calls and memory, MMU-extension and event-channel calls
        // on the domUs the tests build; their pointers name dom0test memory that lives across
        // the call. None of them changes dom0test's own mappings.
        let r =
            Errno::decode_result(unsafe { hypercall5(op, arg[0], arg[1], arg[2], arg[3], arg[4]) });
        if let Err(errno) = r {
            self.last_failure = Some(Failure {
                call: describe(op, &arg),
                errno,
            });
        }
        r
    }
}

/// dom0test's handle.
pub type Xenia = Xen<Recorder>;

/// A new handle.
pub fn xenia() -> Xenia {
    Xen::new(Recorder::default())
}

/// The recording part of the handle.
pub trait Recorded {
    /// The last call the hypervisor refused, if any.
    fn last_failure(&self) -> Option<&Failure>;
    /// Forgets the last failure (before a step whose failures the caller wants to see).
    fn clear_failure(&mut self);
    /// Hypercalls made so far.
    fn calls(&self) -> u64;
}

impl Recorded for Xenia {
    fn last_failure(&self) -> Option<&Failure> {
        self.raw.last_failure.as_ref()
    }

    fn clear_failure(&mut self) {
        self.raw.last_failure = None;
    }

    fn calls(&self) -> u64 {
        self.raw.calls
    }
}

/// `XEN_SYSCTL_XENIA_HEAP_INFO`: the hypervisor's heap (bytes under the allocator and in
/// use) and what is charged to `dom` (`DOMID_INVALID`: nobody). `ENOSYS` from a hypervisor
/// that does not have it.
pub fn heap_info(
    hv: &mut Xenia,
    dom: guest_abi::types::DomId,
) -> Result<guest_abi::sysctl::SysctlXeniaHeapInfo, Errno> {
    use guest_abi::sysctl::{SysctlXeniaHeapInfo, XEN_SYSCTL_XENIA_HEAP_INFO};
    let arg = SysctlXeniaHeapInfo {
        domid: dom,
        ..SysctlXeniaHeapInfo::default()
    };
    let mut op = XenSysctl::new(XEN_SYSCTL_XENIA_HEAP_INFO, &arg);
    hv.sysctl(&mut op)?;
    Ok(op.payload())
}
