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
//!   calls a toolstack needs ([`privcmd_allowed`]); anything that could
//!   change dom0's own page tables or event channels under the kernel is
//!   refused with `EPERM`. Foreign memory is reached the Xenia way (the
//!   write-frame and read-frame domctls), not by mapping it.
//! - **`/dev/xen/evtchn`** takes Linux's evtchn ioctls (bind a VIRQ, bind
//!   an interdomain port, unbind, notify, reset). `read` returns the ports
//!   that fired as native-endian `u32`s (and masks them); `write` of `u32`s
//!   unmasks them again. `poll` says readable when a port fired.
//! - **`/dev/xen/xenia`** is Xenia's own: the toolstack services the dom0
//!   kernel keeps because there is no daemon to keep them. `xl create`
//!   hands a new domain over with [`XENIA_IOCTL_ADOPT`] (its name, its
//!   on_poweroff/on_reboot/on_crash actions, how to rebuild it, and its
//!   console); from then on the kernel runs the domain's console backend
//!   (keeping its recent output whether or not anyone is attached) and
//!   carries out the actions when the domain shuts down.
//!   [`XENIA_IOCTL_LIST`] reads the records back; [`XENIA_IOCTL_FORGET`]
//!   drops one (after `xl destroy`); [`XENIA_IOCTL_CONSOLE`] turns the
//!   descriptor into a console: `read` returns the domain's output (first
//!   what was kept), `write` sends it input, `poll` says readable when
//!   output is waiting.

use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::hypercall::{
    HYPERVISOR_CONSOLE_IO, HYPERVISOR_DOMCTL, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_MEMORY_OP,
    HYPERVISOR_MMUEXT_OP, HYPERVISOR_SCHED_OP, HYPERVISOR_SYSCTL, HYPERVISOR_XEN_VERSION,
};

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

/// The path of each device.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";
/// See [`PRIVCMD_PATH`].
pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";
/// See [`PRIVCMD_PATH`].
pub const XENIA_PATH: &str = "/dev/xen/xenia";

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
    /// Address and length of the domain's [`Record`], encoded.
    pub record: u64,
    /// See `record`.
    pub record_len: u64,
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

/// Whether dom0's kernel passes hypercall `op` from a process
/// (`/dev/xen/privcmd`). Control operations pass; so do the memory,
/// MMU-extension and event-channel operations, whose sub-operations the
/// kernel checks further with [`privcmd_foreign_only`].
pub fn privcmd_allowed(op: u64) -> bool {
    matches!(
        op,
        HYPERVISOR_DOMCTL
            | HYPERVISOR_SYSCTL
            | HYPERVISOR_XEN_VERSION
            | HYPERVISOR_CONSOLE_IO
            | HYPERVISOR_MEMORY_OP
            | HYPERVISOR_MMUEXT_OP
            | HYPERVISOR_EVENT_CHANNEL_OP
            | HYPERVISOR_SCHED_OP
    )
}

/// Hypercalls that a process may make only on another domain's behalf: a
/// `memory_op`, `mmuext_op` or `event_channel_op` aimed at dom0 itself
/// would change the kernel's memory or ports under it.
pub fn privcmd_foreign_only(op: u64) -> bool {
    matches!(
        op,
        HYPERVISOR_MEMORY_OP | HYPERVISOR_MMUEXT_OP | HYPERVISOR_EVENT_CHANNEL_OP
    )
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
        assert_eq!(core::mem::size_of::<AdoptArgs>(), 32);
        assert_eq!(XENIA_IOCTL_ADOPT, 0x0020_5800);
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

    #[test]
    fn privcmd_policy() {
        assert!(privcmd_allowed(HYPERVISOR_DOMCTL));
        assert!(!privcmd_allowed(
            guest_abi::hypercall::HYPERVISOR_MMU_UPDATE
        ));
        assert!(!privcmd_allowed(
            guest_abi::hypercall::HYPERVISOR_SET_TRAP_TABLE
        ));
        assert!(privcmd_foreign_only(HYPERVISOR_MEMORY_OP));
        assert!(!privcmd_foreign_only(HYPERVISOR_DOMCTL));
    }
}
