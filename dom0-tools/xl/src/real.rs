//! The real [`System`]: dom0's devices (`/dev/xen/privcmd` for
//! hypercalls, `/dev/xen/xenia` for the kernel's records and consoles) and
//! the initrd's files. Thin glue over [`crate::sys`] and the toolstack's
//! [`Xen`] handle (through [`Privcmd`]); the logic is in [`crate::verbs`].

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

use dom0_tools::builder::{self, BuildError, DomainConfig};
use dom0_tools::control::DomainInfo;
use dom0_tools::devices::{
    AdoptArgs, BufferArgs, IOCTL_PRIVCMD_HYPERCALL, ListEntry, MAX_RECORD, PRIVCMD_PATH,
    PrivcmdHypercall, Record, RecordArgs, RenameArgs, XENBUS_PATH, XENIA_IOCTL_ADOPT,
    XENIA_IOCTL_CONSOLE, XENIA_IOCTL_FORGET, XENIA_IOCTL_LIST, XENIA_IOCTL_RECORD,
    XENIA_IOCTL_RENAME, XENIA_PATH,
};
use dom0_tools::hypervisor::Hypervisor;
use dom0_tools::xlfmt::info_line;
use guest_abi::Errno;
use guest_abi::domctl::{DomctlGetvcpuinfo, DomctlSchedCredit};
use guest_abi::sysctl::SysctlPhysinfo;
use guest_abi::types::DomId;
use guest_abi::version::{
    XENVER_CAPABILITIES, XENVER_CHANGESET, XENVER_COMMANDLINE, XENVER_COMPILE_INFO,
    XENVER_EXTRAVERSION, XENVER_PLATFORM_PARAMETERS, XENVER_VERSION,
};
use guest_abi::xenstore::{
    XENSTORE_PAYLOAD_MAX, XS_DIRECTORY, XS_ERROR, XS_MKDIR, XS_READ, XS_RM, XS_SET_PERMS,
    XS_TRANSACTION_END, XS_TRANSACTION_START, XS_WATCH_EVENT, XS_WRITE, XsdSockmsg, error_from,
};

use crate::sys;
use crate::verbs::{NewDomain, System, TargetKind};
use dom0_tools::xen::{Raw, Xen};

/// Hypercalls through `IOCTL_PRIVCMD_HYPERCALL`.
pub struct Privcmd(File);

impl Raw for Privcmd {
    fn hypercall(&mut self, op: u64, arg: [u64; 5]) -> Result<u64, Errno> {
        let mut call = PrivcmdHypercall { op, arg };
        sys::ioctl_ref(self.0.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL, &mut call)
    }
}

impl Privcmd {
    /// Opens `/dev/xen/privcmd`, or says why not (`who` names the program).
    pub fn open(who: &str) -> Result<Privcmd, String> {
        open_rw(PRIVCMD_PATH).map(Privcmd).map_err(|e| {
            format!("cannot open {PRIVCMD_PATH} ({e}): {who} works from Xenia's dom0 only")
        })
    }
}

/// dom0 as xl sees it.
pub struct Real {
    /// The hypervisor.
    pub xen: Xen<Privcmd>,
    xenia: File,
    /// xl's connection to xenstore, opened at its first request.
    bus: Option<File>,
    /// The transaction the requests are part of (0: none).
    tx: u32,
}

fn open_rw(path: &str) -> std::io::Result<File> {
    File::options().read(true).write(true).open(path)
}

impl Real {
    /// Opens the devices for xl, or says what is missing.
    pub fn open() -> Result<Real, String> {
        Real::open_as("xl")
    }

    /// Opens the devices for the program `who`, or says what is missing.
    pub fn open_as(who: &str) -> Result<Real, String> {
        let privcmd = Privcmd::open(who)?;
        let xenia = open_rw(XENIA_PATH).map_err(|e| {
            format!("cannot open {XENIA_PATH} ({e}): this dom0 kernel does not keep domain records")
        })?;
        Ok(Real {
            xen: Xen::new(privcmd),
            xenia,
            bus: None,
            tx: 0,
        })
    }

    /// A new descriptor attached to `dom`'s console (`XENIA_IOCTL_CONSOLE`).
    pub fn open_console(&self, dom: DomId) -> Result<File, Errno> {
        let f = open_rw(XENIA_PATH).map_err(|e| {
            e.raw_os_error()
                .and_then(Errno::from_code)
                .unwrap_or(Errno::EIO)
        })?;
        sys::ioctl_val(f.as_raw_fd(), XENIA_IOCTL_CONSOLE, dom.into())?;
        Ok(f)
    }

    /// `XENVER_version` and `XENVER_extraversion`: the version number (major in the high
    /// 16 bits) and the extra string; `None` when the hypervisor does not answer.
    fn version_and_extra(&mut self) -> Option<(u64, String)> {
        let (v, _) = self.xen.xen_version::<0>(XENVER_VERSION).ok()?;
        let extra = self
            .xen
            .xen_version::<16>(XENVER_EXTRAVERSION)
            .map(|(_, b)| c_string(&b))
            .unwrap_or_default();
        Some((v, extra))
    }

    /// The hypervisor's version as `xl info`'s `xen_version` and xentop's header show it
    /// (`major.minor` and the extra string, libxenstat's `"%ld.%ld%s"`); empty when the
    /// hypervisor does not answer.
    pub fn version_string(&mut self) -> String {
        self.version_and_extra()
            .map(|(v, extra)| format!("{}.{}{extra}", v >> 16, v & 0xffff))
            .unwrap_or_default()
    }

    fn xenia_fd(&self) -> RawFd {
        self.xenia.as_raw_fd()
    }
}

/// A NUL-terminated string from a buffer.
fn c_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl System for Real {
    fn domains(&mut self) -> Result<Vec<DomainInfo>, Errno> {
        self.xen.domains()
    }

    fn names(&mut self) -> Result<Vec<ListEntry>, Errno> {
        let mut len = 64 * 1024;
        loop {
            let mut buf = vec![0u8; len];
            let mut args = BufferArgs {
                buf: buf.as_mut_ptr() as u64,
                len: buf.len() as u64,
            };
            let n = sys::ioctl_ref(self.xenia_fd(), XENIA_IOCTL_LIST, &mut args)? as usize;
            // A full buffer may mean a cut answer: ask again with more room.
            if n < len || len >= 4 << 20 {
                return Ok(ListEntry::decode_all(&buf[..n.min(len)]));
            }
            len *= 4;
        }
    }

    fn physinfo(&mut self) -> Result<SysctlPhysinfo, Errno> {
        self.xen.physinfo()
    }

    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| e.to_string())
    }

    fn build(&mut self, cfg: &DomainConfig<'_>) -> Result<NewDomain, BuildError> {
        let b = builder::create(&mut self.xen, cfg)?;
        Ok(NewDomain {
            dom: b.dom(),
            console: b.console(),
            store: b.store(),
        })
    }

    fn adopt(&mut self, new: &NewDomain, record: &[u8]) -> Result<(), Errno> {
        let mut args = AdoptArgs {
            dom: new.dom.into(),
            console_port: new.console.map_or(u32::MAX, |c| c.evtchn),
            console_mfn: new.console.map_or(0, |c| c.mfn.0),
            store_port: new.store.map_or(u32::MAX, |s| s.evtchn),
            _pad: 0,
            store_mfn: new.store.map_or(0, |s| s.mfn.0),
            record: record.as_ptr() as u64,
            record_len: record.len() as u64,
        };
        sys::ioctl_ref(self.xenia_fd(), XENIA_IOCTL_ADOPT, &mut args).map(drop)
    }

    fn forget(&mut self, dom: DomId) -> Result<(), Errno> {
        sys::ioctl_val(self.xenia_fd(), XENIA_IOCTL_FORGET, dom.into()).map(drop)
    }

    fn destroy(&mut self, dom: DomId) -> Result<(), Errno> {
        self.xen.destroy(dom)
    }

    fn pause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.xen.pause(dom)
    }

    fn unpause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.xen.unpause(dom)
    }

    fn remote_shutdown(&mut self, dom: DomId, reason: u32) -> Result<(), Errno> {
        self.xen.remote_shutdown(dom, reason)
    }

    fn sched_get(&mut self, dom: DomId) -> Result<DomctlSchedCredit, Errno> {
        self.xen.sched_credit(dom)
    }

    fn sched_put(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno> {
        self.xen.set_sched_credit(dom, credit)
    }

    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno> {
        self.xen.set_max_mem(dom, kib)
    }

    fn vcpu_info(&mut self, dom: DomId, vcpu: u32) -> Result<DomctlGetvcpuinfo, Errno> {
        self.xen.vcpu_info(dom, vcpu)
    }

    fn vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        nr_bits: u32,
    ) -> Result<(Vec<u8>, Vec<u8>), Errno> {
        self.xen.vcpu_affinity(dom, vcpu, nr_bits)
    }

    fn set_vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        hard: Option<&[u8]>,
        soft: Option<&[u8]>,
    ) -> Result<(), Errno> {
        self.xen.set_vcpu_affinity(dom, vcpu, hard, soft)
    }

    fn read_console(
        &mut self,
        index: Option<u32>,
        clear: bool,
        buf: &mut [u8],
    ) -> Result<(usize, u32), Errno> {
        self.xen.read_console(index, clear, buf)
    }

    fn mem_offline_info(&mut self) -> Result<(u64, u64), Errno> {
        self.xen.mem_offline_info()
    }

    fn version_lines(&mut self) -> String {
        let mut out = String::new();
        if let Some((v, extra)) = self.version_and_extra() {
            out += &info_line("xen_major", v >> 16);
            out += &info_line("xen_minor", v & 0xffff);
            out += &info_line("xen_extra", &extra);
            out += &info_line("xen_version", format!("{}.{}{extra}", v >> 16, v & 0xffff));
        }
        if let Ok((_, caps)) = self.xen.xen_version::<1024>(XENVER_CAPABILITIES) {
            out += &info_line("xen_caps", c_string(&caps));
        }
        out += &info_line("xen_scheduler", "credit");
        out += &info_line("xen_pagesize", 4096);
        if let Ok((_, params)) = self.xen.xen_version::<8>(XENVER_PLATFORM_PARAMETERS) {
            let start = u64::from_le_bytes(params);
            out += &info_line("platform_params", format!("virt_start={start:#x}"));
        }
        if let Ok((_, changeset)) = self.xen.xen_version::<64>(XENVER_CHANGESET) {
            out += &info_line("xen_changeset", c_string(&changeset));
        }
        if let Ok((_, cmd)) = self.xen.xen_version::<1024>(XENVER_COMMANDLINE) {
            out += &info_line("xen_commandline", c_string(&cmd));
        }
        // compiler[64], compile_by[16], compile_domain[32], compile_date[32].
        if let Ok((_, c)) = self.xen.xen_version::<144>(XENVER_COMPILE_INFO) {
            out += &info_line("cc_compiler", c_string(&c[..64]));
            out += &info_line("cc_compile_by", c_string(&c[64..80]));
            out += &info_line("cc_compile_domain", c_string(&c[80..112]));
            out += &info_line("cc_compile_date", c_string(&c[112..]));
        }
        // libxl prints an empty build ID when the hypervisor has none (Xenia's has none).
        out += &info_line("build_id", "");
        out
    }

    fn node_lines(&mut self) -> String {
        let u = sys::uname();
        dom0_tools::xlfmt::node_lines(&u.nodename, &u.release, &u.version, &u.machine)
    }

    fn now_ns(&mut self) -> u64 {
        sys::monotonic_ns()
    }

    fn wall_s(&mut self) -> u64 {
        sys::realtime_s()
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn random16(&mut self) -> [u8; 16] {
        sys::random16()
    }

    fn xs_write(&mut self, path: &str, value: &str) -> Result<(), Errno> {
        let mut payload = Vec::from(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(value.as_bytes());
        self.xs_call(XS_WRITE, &payload).map(drop)
    }

    fn xs_watched(&mut self, dom: DomId, path: &str) -> Result<bool, Errno> {
        let payload = format!("watched\0{dom}\0{path}\0");
        match self
            .xs_call(guest_abi::xenstore::XS_CONTROL, payload.as_bytes())?
            .as_slice()
        {
            b"1\0" | b"1" => Ok(true),
            b"0\0" | b"0" => Ok(false),
            _ => Err(Errno::EIO),
        }
    }

    fn xs_read(&mut self, path: &str) -> Result<Vec<u8>, Errno> {
        self.xs_call(XS_READ, &nul_terminated(path))
    }

    fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, Errno> {
        let body = self.xs_call(XS_DIRECTORY, &nul_terminated(path))?;
        Ok(body
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect())
    }

    fn xs_rm(&mut self, path: &str) -> Result<(), Errno> {
        self.xs_call(XS_RM, &nul_terminated(path)).map(drop)
    }

    fn xs_mkdir(&mut self, path: &str) -> Result<(), Errno> {
        self.xs_call(XS_MKDIR, &nul_terminated(path)).map(drop)
    }

    fn xs_set_perms(&mut self, path: &str, perms: &[String]) -> Result<(), Errno> {
        let mut payload = nul_terminated(path);
        for p in perms {
            payload.extend_from_slice(p.as_bytes());
            payload.push(0);
        }
        self.xs_call(XS_SET_PERMS, &payload).map(drop)
    }

    fn xs_begin(&mut self) -> Result<(), Errno> {
        self.tx = 0;
        let body = self.xs_call(XS_TRANSACTION_START, b"\0")?;
        let id = String::from_utf8_lossy(&body);
        self.tx = id.trim_end_matches('\0').parse().map_err(|_| Errno::EIO)?;
        Ok(())
    }

    fn xs_end(&mut self, commit: bool) -> Result<(), Errno> {
        let r = self.xs_call(XS_TRANSACTION_END, if commit { b"T\0" } else { b"F\0" });
        self.tx = 0;
        r.map(drop)
    }

    fn stat_target(&mut self, path: &str) -> Result<TargetKind, Errno> {
        use std::os::unix::fs::FileTypeExt;
        let m = std::fs::metadata(path).map_err(|e| {
            e.raw_os_error()
                .and_then(Errno::from_code)
                .unwrap_or(Errno::EIO)
        })?;
        let t = m.file_type();
        Ok(if t.is_block_device() {
            TargetKind::Block
        } else if t.is_file() {
            TargetKind::File
        } else {
            TargetKind::Other
        })
    }

    fn record(&mut self, dom: DomId) -> Result<Record, Errno> {
        let mut buf = vec![0u8; MAX_RECORD];
        let mut args = RecordArgs {
            dom: dom.into(),
            _pad: 0,
            buf: buf.as_mut_ptr() as u64,
            len: buf.len() as u64,
        };
        let n = sys::ioctl_ref(self.xenia_fd(), XENIA_IOCTL_RECORD, &mut args)? as usize;
        Record::decode(&buf[..n.min(buf.len())]).ok_or(Errno::EIO)
    }

    fn rename(&mut self, dom: DomId, name: &str) -> Result<(), Errno> {
        let mut args = RenameArgs {
            dom: dom.into(),
            _pad: 0,
            name: name.as_ptr() as u64,
            name_len: name.len() as u64,
        };
        sys::ioctl_ref(self.xenia_fd(), XENIA_IOCTL_RENAME, &mut args).map(drop)
    }

    fn debug_keys(&mut self, keys: &[u8]) -> Result<(), Errno> {
        self.xen.debug_keys(keys)
    }

    fn sched_credit_params(&mut self, pool: u32) -> Result<(u32, u32, u32), Errno> {
        self.xen.sched_credit_params(pool)
    }
}

fn nul_terminated(path: &str) -> Vec<u8> {
    let mut payload = Vec::from(path.as_bytes());
    payload.push(0);
    payload
}

impl Real {
    /// One xenstore request on xl's `/dev/xen/xenbus` connection, in the current
    /// transaction: its reply's payload, or the errno an `XS_ERROR` reply names.
    fn xs_call(&mut self, msg_type: u32, payload: &[u8]) -> Result<Vec<u8>, Errno> {
        use std::io::{Read, Write};
        const REQ_ID: u32 = 1;
        if self.bus.is_none() {
            self.bus = Some(open_rw(XENBUS_PATH).map_err(|_| Errno::ENOENT)?);
        }
        let tx_id = self.tx;
        let bus = self.bus.as_mut().ok_or(Errno::ENOENT)?;
        let hdr = XsdSockmsg {
            msg_type,
            req_id: REQ_ID,
            tx_id,
            len: u32::try_from(payload.len()).map_err(|_| Errno::E2BIG)?,
        };
        let mut msg = hdr.to_bytes().to_vec();
        msg.extend_from_slice(payload);
        bus.write_all(&msg).map_err(|_| Errno::EIO)?;
        // Messages until the reply to this request (xl sets no watches, but skip anything
        // else all the same).
        loop {
            let mut h = [0u8; XsdSockmsg::SIZE];
            bus.read_exact(&mut h).map_err(|_| Errno::EIO)?;
            let reply = XsdSockmsg::from_bytes(&h).ok_or(Errno::EIO)?;
            let mut body = vec![0u8; (reply.len as usize).min(XENSTORE_PAYLOAD_MAX)];
            bus.read_exact(&mut body).map_err(|_| Errno::EIO)?;
            if reply.req_id != REQ_ID || reply.msg_type == XS_WATCH_EVENT {
                continue;
            }
            if reply.msg_type == XS_ERROR {
                return Err(error_from(&body));
            }
            return Ok(body);
        }
    }
}
