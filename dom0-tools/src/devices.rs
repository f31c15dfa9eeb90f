//! The interface of dom0's devices, shared by the dom0 kernel (which
//! serves them) and the tools (which use them through `ioctl`, `read`,
//! `write` and `poll`).
//!
//! - **`/dev/xen/privcmd`** takes Linux's `IOCTL_PRIVCMD_HYPERCALL`
//!   (`struct privcmd_hypercall`: the hypercall number and five arguments;
//!   the ioctl returns what the hypercall returned). Pointers in the
//!   arguments are the calling process's addresses: the process's address
//!   space is the current one while the kernel makes the call, so the
//!   hypervisor copies straight from and to it. The kernel passes only the
//!   calls a toolstack needs ([`privcmd_policy`]); anything that could
//!   change dom0's own page tables or event channels under the kernel is
//!   refused with `EPERM`. Foreign memory is reached the Xenia way (the
//!   write-frame and read-frame domctls), not by mapping it.
//! - **`/dev/xen/evtchn`** takes Linux's evtchn ioctls (bind a VIRQ, bind
//!   an interdomain port, unbind, notify, reset). `read` returns the ports
//!   that fired as native-endian `u32`s (and masks them); `write` of `u32`s
//!   unmasks them again. `poll` says readable when a port fired.
//! - **`/dev/xen/xenbus`** is xenstore, as on Linux: write whole
//!   `xsd_sockmsg` requests (guest-abi `xenstore`), read the replies and
//!   watch events; one store connection per descriptor, as dom0.
//! - **`/dev/xen/xenia`** is Xenia's own: the toolstack services the dom0
//!   kernel keeps because there is no daemon to keep them. `xl create`
//!   hands a new domain over with [`XENIA_IOCTL_ADOPT`] (its name, its
//!   on_poweroff/on_reboot/on_crash actions, how to rebuild it, and its
//!   console); from then on the kernel runs the domain's console backend
//!   (keeping its recent output whether or not anyone is attached) and
//!   carries out the actions when the domain shuts down.
//!   [`XENIA_IOCTL_LIST`] reads the names back and [`XENIA_IOCTL_RECORD`] one
//!   whole record (`xl list -l`); [`XENIA_IOCTL_RENAME`] renames a domain
//!   (`xl rename`); [`XENIA_IOCTL_FORGET`] drops a record (after `xl destroy`); [`XENIA_IOCTL_CONSOLE`] turns the
//!   descriptor into a console: `read` returns the domain's output (first
//!   what was kept), `write` sends it input, `poll` says readable when
//!   output is waiting.

use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::console::CONSOLEIO_WRITE;
use guest_abi::event::{EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_STATUS};
use guest_abi::hypercall::{
    HYPERVISOR_CONSOLE_IO, HYPERVISOR_DOMCTL, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_MEMORY_OP,
    HYPERVISOR_MMUEXT_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_SYSCTL, HYPERVISOR_XEN_VERSION,
};
use guest_abi::memory::{
    XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_INCREASE_RESERVATION,
    XENMEM_MAXIMUM_RESERVATION, XENMEM_POPULATE_PHYSMAP, XENMEM_XENIA_CHECK_FRAME_TABLE,
};
use guest_abi::sched::SCHEDOP_REMOTE_SHUTDOWN;
use guest_abi::types::DOMID_SELF;

/// Linux's `_IOC(dir, type, nr, size)` for `_IOC_NONE`.
const fn ioc_none(kind: u8, nr: u8, size: usize) -> u64 {
    ((size as u64) << 16) | ((kind as u64) << 8) | nr as u64
}

/// `IOCTL_PRIVCMD_HYPERCALL` (Linux `include/uapi/xen/privcmd.h`).
pub const IOCTL_PRIVCMD_HYPERCALL: u64 = ioc_none(b'P', 0, 48);

/// `struct privcmd_hypercall`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PrivcmdHypercall {
    /// The hypercall number.
    pub op: u64,
    /// Its arguments.
    pub arg: [u64; 5],
}

/// `IOCTL_EVTCHN_BIND_VIRQ` (`struct { u32 virq; }`; returns the port).
pub const IOCTL_EVTCHN_BIND_VIRQ: u64 = ioc_none(b'E', 0, 4);
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN` (`struct { u32 remote_domain, remote_port; }`;
/// returns the local port).
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u64 = ioc_none(b'E', 1, 8);
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT` (`struct { u32 remote_domain; }`).
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u64 = ioc_none(b'E', 2, 4);
/// `IOCTL_EVTCHN_UNBIND` (`struct { u32 port; }`).
pub const IOCTL_EVTCHN_UNBIND: u64 = ioc_none(b'E', 3, 4);
/// `IOCTL_EVTCHN_NOTIFY` (`struct { u32 port; }`).
pub const IOCTL_EVTCHN_NOTIFY: u64 = ioc_none(b'E', 4, 4);
/// `IOCTL_EVTCHN_RESET` (no argument).
pub const IOCTL_EVTCHN_RESET: u64 = ioc_none(b'E', 5, 0);

/// `/dev/xen/xenia`: hand a new domain over ([`AdoptArgs`]).
pub const XENIA_IOCTL_ADOPT: u64 = ioc_none(b'X', 0, core::mem::size_of::<AdoptArgs>());
/// `/dev/xen/xenia`: read the records ([`BufferArgs`]); returns the number
/// of bytes written, lines of [`ListEntry::encode`].
pub const XENIA_IOCTL_LIST: u64 = ioc_none(b'X', 1, core::mem::size_of::<BufferArgs>());
/// `/dev/xen/xenia`: forget a domain's record (argument: the domain id,
/// by value). `ESRCH` when there is none.
pub const XENIA_IOCTL_FORGET: u64 = ioc_none(b'X', 2, 0);
/// `/dev/xen/xenia`: attach this descriptor to a domain's console
/// (argument: the domain id, by value). `ESRCH` when the kernel keeps no
/// console for it.
pub const XENIA_IOCTL_CONSOLE: u64 = ioc_none(b'X', 3, 0);

/// `/dev/xen/xenia`: rename the domain a record is kept for ([`RenameArgs`]). `ESRCH`
/// when the kernel keeps no record of it, `EINVAL` for a name [`name_problem`] refuses,
/// `EEXIST` when another domain (or dom0) has the name. The kernel changes its record (a
/// restart keeps the new name) and the domain's `name` node in xenstore.
pub const XENIA_IOCTL_RENAME: u64 = ioc_none(b'X', 4, core::mem::size_of::<RenameArgs>());
/// `/dev/xen/xenia`: read the [`Record`] kept for a domain ([`RecordArgs`]); returns the
/// number of bytes written ([`Record::encode`]). `ESRCH` when there is none, `ERANGE`
/// when the buffer is too small.
pub const XENIA_IOCTL_RECORD: u64 = ioc_none(b'X', 5, core::mem::size_of::<RecordArgs>());

/// The path of each device.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";
/// See [`PRIVCMD_PATH`].
pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";
/// See [`PRIVCMD_PATH`].
pub const XENIA_PATH: &str = "/dev/xen/xenia";
/// xenstore, as on Linux: write whole `xsd_sockmsg` requests, read the
/// replies and watch events (guest-abi `xenstore`).
pub const XENBUS_PATH: &str = "/dev/xen/xenbus";

/// [`XENIA_IOCTL_ADOPT`]'s argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct AdoptArgs {
    /// The domain.
    pub dom: u32,
    /// The domain's end of its console event channel (unbound, for dom0),
    /// or `u32::MAX` for no console.
    pub console_port: u32,
    /// Machine frame of its console ring.
    pub console_mfn: u64,
    /// The domain's end of its xenstore channel (unbound, for dom0), or
    /// `u32::MAX` for no store.
    pub store_port: u32,
    /// Padding.
    pub _pad: u32,
    /// Machine frame of its xenstore ring.
    pub store_mfn: u64,
    /// Address and length of the domain's [`Record`], encoded.
    pub record: u64,
    /// See `record`.
    pub record_len: u64,
}

/// [`XENIA_IOCTL_RENAME`]'s argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RenameArgs {
    /// The domain.
    pub dom: u32,
    /// Padding.
    pub _pad: u32,
    /// Address and length of the new name (UTF-8, no terminator).
    pub name: u64,
    /// See `name`; at most [`MAX_NAME`].
    pub name_len: u64,
}

/// [`XENIA_IOCTL_RECORD`]'s argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RecordArgs {
    /// The domain.
    pub dom: u32,
    /// Padding.
    pub _pad: u32,
    /// Address and length of the buffer for the encoded record.
    pub buf: u64,
    /// See `buf`.
    pub len: u64,
}

/// Longest domain name, in bytes.
pub const MAX_NAME: usize = 64;

/// Why a domain name is refused: names are what xl prints in its columns and what its
/// arguments match, so they are printable ASCII without blanks or `/`, not all digits
/// (that would read as an id), and at most [`MAX_NAME`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty.
    Empty,
    /// Longer than [`MAX_NAME`] bytes.
    TooLong,
    /// All digits.
    AllDigits,
    /// This character is not allowed.
    Char(char),
}

/// What is wrong with `name` as a domain name, if anything. Whether it is taken is the
/// caller's question.
pub fn name_problem(name: &str) -> Option<NameProblem> {
    if name.is_empty() {
        return Some(NameProblem::Empty);
    }
    if name.len() > MAX_NAME {
        return Some(NameProblem::TooLong);
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(NameProblem::AllDigits);
    }
    name.chars()
        .find(|c| !c.is_ascii_graphic() || *c == '/')
        .map(NameProblem::Char)
}

/// A user buffer: address and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BufferArgs {
    /// Address.
    pub buf: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Longest encoded [`Record`] the kernel accepts.
pub const MAX_RECORD: usize = 4096;

/// What the kernel keeps about a domain `xl create` handed over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Its name.
    pub name: String,
    /// The configuration file it was made from (to rebuild it on restart).
    pub config: String,
    /// The `key=value` overrides given on xl's command line.
    pub overrides: Vec<String>,
}

impl Record {
    /// Lines `name\t<name>`, `config\t<path>` and one `override\t<kv>` per
    /// override. Tabs and newlines cannot occur in names, paths or
    /// overrides xl accepts; [`Record::decode`] refuses them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (key, value) in [("name", &self.name), ("config", &self.config)]
            .into_iter()
            .chain(self.overrides.iter().map(|o| ("override", o)))
        {
            out.push_str(key);
            out.push('\t');
            out.push_str(value);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// The record `bytes` encode; `None` when they are not one (not UTF-8,
    /// a line without a tab, an unknown key, a missing or empty name, or
    /// longer than [`MAX_RECORD`]).
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() > MAX_RECORD {
            return None;
        }
        let text = core::str::from_utf8(bytes).ok()?;
        let mut r = Record::default();
        for line in text.lines() {
            let (key, value) = line.split_once('\t')?;
            if value.contains('\t') {
                return None;
            }
            match key {
                "name" => r.name = value.into(),
                "config" => r.config = value.into(),
                "override" => r.overrides.push(value.into()),
                _ => return None,
            }
        }
        (!r.name.is_empty()).then_some(r)
    }
}

/// One line of [`XENIA_IOCTL_LIST`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The domain.
    pub dom: u32,
    /// Its name.
    pub name: String,
    /// System time (nanoseconds since boot) when dom0's kernel took it over: when it was
    /// created, or last restarted.
    pub created_ns: u64,
}

impl ListEntry {
    /// `<dom>\t<name>\t<created_ns>\n`.
    pub fn encode(&self) -> String {
        alloc::format!("{}\t{}\t{}\n", self.dom, self.name, self.created_ns)
    }

    /// Every entry of a [`XENIA_IOCTL_LIST`] answer; lines that do not
    /// parse are skipped.
    pub fn decode_all(bytes: &[u8]) -> Vec<ListEntry> {
        core::str::from_utf8(bytes)
            .unwrap_or("")
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (d, n, t) = (f.next()?, f.next()?, f.next()?);
                if f.next().is_some() {
                    return None;
                }
                Some(ListEntry {
                    dom: d.parse().ok()?,
                    name: n.into(),
                    created_ns: t.parse().ok()?,
                })
            })
            .collect()
    }
}

/// What dom0's kernel does with a hypercall a process asks for through privcmd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Make it.
    Allow,
    /// Refuse it with `EPERM`.
    Deny,
    /// Make it only if the domain ID (a `u16`) at this address of the process names
    /// another domain than dom0 (not 0, not `DOMID_SELF`); `EFAULT` if it cannot be read.
    IfForeignAt(u64),
    /// A `domctl` whose `struct xen_domctl` is at this address: make it if
    /// [`domctl_allowed`] says so for its `cmd` (bytes 0–3) and `domain` (bytes 8–9).
    DomctlAt(u64),
}

/// Whether a process may issue `domctl` `cmd` on `domain`: everything but Xenia's frame
/// copies into and out of dom0's own memory (which would let a program rewrite the
/// kernel under it; other domains' frames are what the builder and backends copy).
pub fn domctl_allowed(cmd: u32, domain: u16) -> bool {
    use guest_abi::domctl::{XEN_DOMCTL_XENIA_READ_FRAME, XEN_DOMCTL_XENIA_WRITE_FRAME};
    let frame_copy = cmd == XEN_DOMCTL_XENIA_WRITE_FRAME || cmd == XEN_DOMCTL_XENIA_READ_FRAME;
    !frame_copy || is_foreign(domain.into())
}

/// Whether `dom` names a domain other than dom0 itself.
pub fn is_foreign(dom: u64) -> bool {
    dom != 0 && dom != u64::from(DOMID_SELF)
}

/// The privcmd policy for `call`: control operations pass; `memory_op` reservation changes,
/// `mmuext_op` and `alloc_unbound` only on another domain's behalf; the read-only queries
/// (and Xenia's frame-table check) pass; `sched_op` only as `remote_shutdown` (the hypervisor refuses dom0 as its target);
/// `console_io` only to write. Everything else could change dom0's own page tables, memory
/// or event channels under its kernel, and is refused.
pub fn privcmd_policy(call: &PrivcmdHypercall) -> Policy {
    let a = call.arg;
    let allow = |yes: bool| if yes { Policy::Allow } else { Policy::Deny };
    match call.op {
        HYPERVISOR_DOMCTL => Policy::DomctlAt(a[0]),
        HYPERVISOR_SYSCTL | HYPERVISOR_XEN_VERSION => Policy::Allow,
        HYPERVISOR_MEMORY_OP => match a[0] as u32 {
            XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
                // `struct xen_memory_reservation`: domid at byte 24.
                Policy::IfForeignAt(a[1].wrapping_add(24))
            }
            // Queries; the frame-table check only reads (and logs) the table.
            XENMEM_CURRENT_RESERVATION
            | XENMEM_MAXIMUM_RESERVATION
            | XENMEM_XENIA_CHECK_FRAME_TABLE => Policy::Allow,
            _ => Policy::Deny,
        },
        HYPERVISOR_MMUEXT_OP => allow(is_foreign(a[3] & 0xffff)),
        HYPERVISOR_EVENT_CHANNEL_OP => match a[0] as u32 {
            // `struct evtchn_alloc_unbound`: dom first.
            EVTCHNOP_ALLOC_UNBOUND => Policy::IfForeignAt(a[1]),
            EVTCHNOP_STATUS => Policy::Allow,
            _ => Policy::Deny,
        },
        HYPERVISOR_SCHED_OP => allow(a[0] as u32 == SCHEDOP_REMOTE_SHUTDOWN),
        HYPERVISOR_CONSOLE_IO => allow(a[0] as u32 == CONSOLEIO_WRITE),
        _ => Policy::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_ioctl_numbers() {
        // Values Linux's headers produce (checked against a Linux build).
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x0004_4500);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
        assert_eq!(IOCTL_EVTCHN_RESET, 0x4505);
        assert_eq!(core::mem::size_of::<PrivcmdHypercall>(), 48);
        assert_eq!(core::mem::size_of::<AdoptArgs>(), 48);
        assert_eq!(XENIA_IOCTL_ADOPT, 0x0030_5800);
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("web-01.a_b"), None);
        assert_eq!(name_problem(""), Some(NameProblem::Empty));
        assert_eq!(name_problem("42"), Some(NameProblem::AllDigits));
        assert_eq!(name_problem("4x"), None);
        assert_eq!(name_problem("a b"), Some(NameProblem::Char(' ')));
        assert_eq!(name_problem("a/b"), Some(NameProblem::Char('/')));
        assert_eq!(name_problem("a\tb"), Some(NameProblem::Char('\t')));
        assert_eq!(name_problem("é"), Some(NameProblem::Char('é')));
        assert_eq!(name_problem(&"x".repeat(MAX_NAME)), None);
        assert_eq!(
            name_problem(&"x".repeat(MAX_NAME + 1)),
            Some(NameProblem::TooLong)
        );
        assert_eq!(core::mem::size_of::<RenameArgs>(), 24);
        assert_eq!(core::mem::size_of::<RecordArgs>(), 24);
        assert_ne!(XENIA_IOCTL_RENAME, XENIA_IOCTL_RECORD);
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            name: "web".into(),
            config: "/etc/xen/web.cfg".into(),
            overrides: alloc::vec!["memory=64".into(), "vcpus=2".into()],
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
    }

    #[test]
    fn record_refusals() {
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(b"name\t\n"), None);
        assert_eq!(Record::decode(b"name\tx\nbogus\ty\n"), None);
        assert_eq!(Record::decode(b"name x\n"), None);
        assert_eq!(Record::decode(&[0xff, 0xfe]), None);
        assert_eq!(Record::decode(&alloc::vec![b'a'; MAX_RECORD + 1]), None);
    }

    #[test]
    fn list_round_trip() {
        let e = [
            ListEntry {
                dom: 1,
                name: "a".into(),
                created_ns: 0,
            },
            ListEntry {
                dom: 12,
                name: "b c".into(),
                created_ns: 5_000_000_000,
            },
        ];
        let bytes: String = e.iter().map(ListEntry::encode).collect();
        assert_eq!(ListEntry::decode_all(bytes.as_bytes()), e.to_vec());
        assert!(ListEntry::decode_all(b"x\ty\t1\n\n3\n4\tn\n5\tn\t1\t2\n").is_empty());
    }

    fn call(op: u64, arg: [u64; 5]) -> Policy {
        privcmd_policy(&PrivcmdHypercall { op, arg })
    }

    #[test]
    fn privcmd_policy_protects_dom0() {
        use guest_abi::hypercall::{
            HYPERVISOR_GRANT_TABLE_OP, HYPERVISOR_MMU_UPDATE, HYPERVISOR_SET_TRAP_TABLE,
            HYPERVISOR_UPDATE_VA_MAPPING,
        };
        // Control operations pass; a domctl is looked at.
        assert_eq!(
            call(HYPERVISOR_DOMCTL, [0x1000, 0, 0, 0, 0]),
            Policy::DomctlAt(0x1000)
        );
        use guest_abi::domctl::{XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_XENIA_WRITE_FRAME};
        assert!(domctl_allowed(XEN_DOMCTL_PAUSEDOMAIN, 3));
        assert!(domctl_allowed(XEN_DOMCTL_XENIA_WRITE_FRAME, 3));
        assert!(!domctl_allowed(XEN_DOMCTL_XENIA_WRITE_FRAME, 0));
        assert!(!domctl_allowed(XEN_DOMCTL_XENIA_WRITE_FRAME, DOMID_SELF));
        assert_eq!(call(HYPERVISOR_SYSCTL, [0x1000, 0, 0, 0, 0]), Policy::Allow);
        // dom0's own mappings, traps and grants never.
        for op in [
            HYPERVISOR_MMU_UPDATE,
            HYPERVISOR_UPDATE_VA_MAPPING,
            HYPERVISOR_SET_TRAP_TABLE,
            HYPERVISOR_GRANT_TABLE_OP,
            9999,
        ] {
            assert_eq!(call(op, [0; 5]), Policy::Deny, "op {op}");
        }
        // mmuext_op only with a foreign domain.
        for (dom, want) in [
            (0, Policy::Deny),
            (u64::from(DOMID_SELF), Policy::Deny),
            (3, Policy::Allow),
        ] {
            assert_eq!(call(HYPERVISOR_MMUEXT_OP, [0x10, 1, 0, dom, 0]), want);
        }
        // Reservation changes: the domid is read from the struct.
        let populate = u64::from(XENMEM_POPULATE_PHYSMAP);
        assert_eq!(
            call(HYPERVISOR_MEMORY_OP, [populate, 0x1000, 0, 0, 0]),
            Policy::IfForeignAt(0x1018)
        );
        let current = u64::from(XENMEM_CURRENT_RESERVATION);
        assert_eq!(
            call(HYPERVISOR_MEMORY_OP, [current, 0x1000, 0, 0, 0]),
            Policy::Allow
        );
        assert_eq!(call(HYPERVISOR_MEMORY_OP, [12, 0, 0, 0, 0]), Policy::Deny);
        let check = u64::from(XENMEM_XENIA_CHECK_FRAME_TABLE);
        assert_eq!(
            call(HYPERVISOR_MEMORY_OP, [check, 0, 0, 0, 0]),
            Policy::Allow
        );
        // Event channels: alloc_unbound for another domain, status; not bind or close.
        let alloc = u64::from(EVTCHNOP_ALLOC_UNBOUND);
        assert_eq!(
            call(HYPERVISOR_EVENT_CHANNEL_OP, [alloc, 0x2000, 0, 0, 0]),
            Policy::IfForeignAt(0x2000)
        );
        assert_eq!(
            call(HYPERVISOR_EVENT_CHANNEL_OP, [3, 0, 0, 0, 0]),
            Policy::Deny
        );
        // sched_op: remote shutdown only; console: write only.
        assert_eq!(call(HYPERVISOR_SCHED_OP, [4, 0, 0, 0, 0]), Policy::Allow);
        assert_eq!(call(HYPERVISOR_SCHED_OP, [1, 0, 0, 0, 0]), Policy::Deny);
        assert_eq!(call(HYPERVISOR_CONSOLE_IO, [0, 0, 0, 0, 0]), Policy::Allow);
        assert_eq!(call(HYPERVISOR_CONSOLE_IO, [1, 0, 0, 0, 0]), Policy::Deny);
        assert!(is_foreign(1) && !is_foreign(0) && !is_foreign(0x7ff0));
    }
}
