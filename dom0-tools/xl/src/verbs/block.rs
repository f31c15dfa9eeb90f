//! Disks (Xen's `xl_block.c` and libxl's `libxl_disk.c`/`libxl_device.c`): giving a
//! domain a disk at `create` and with `block-attach`, `block-list`, `block-detach`.
//!
//! A disk is a pair of xenstore directories, the frontend's under the domain's home
//! (`device/vbd/<devid>`, the domain's, readable by dom0) and the backend's under dom0's
//! (`backend/vbd/<domid>/<devid>`, dom0's, readable by the domain), written as libxl
//! writes them ([`dom0_tools::disk::add_ops`]) in one xenstore transaction when the store
//! has transactions (a conflict, `EAGAIN`, makes the whole attach again, at most
//! [`TX_ATTEMPTS`] times), as plain writes when it answers `ENOSYS`.
//!
//! **Sharing.** Xen's block hotplug script refuses a device that a guest already uses
//! read-write, or read-write when a guest uses it at all, scanning every backend. A scan
//! costs the thousandth creation a thousand reads, so xl keeps an index instead, under
//! [`disk::INDEX`]: a node `<target>/<domid>-<devid>` per use (`r` or `w`) and
//! `<target>/writer` naming the writer. An entry whose backend is gone (a domain
//! destroyed, a disk detached) is stale: found when it is looked at, it is removed. A
//! read-only attach reads one node; a writable one lists the target's users, who are at
//! most one writer or the readers that will refuse it.

use dom0_tools::disk::{self, Disk, XsOp, index_dir, index_ops};
use guest_abi::Errno;
use guest_abi::types::DomId;

use super::{Io, System, VerbResult, find, reported};

/// How many times an attach is made again when its transaction conflicts.
pub const TX_ATTEMPTS: u32 = 16;
/// How often `block-detach` and `network-detach` look at the backend's state while they
/// wait.
const POLL_MS: u64 = 50;
/// The longest target path xl accepts (the index node must fit xenstore's path limit).
const TARGET_MAX: usize = 1024;

/// What dom0 finds at a disk's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A block device (`/dev/vdb`).
    Block,
    /// A regular file (an image).
    File,
    /// Something else (a directory, a character device, ...).
    Other,
}

/// Why an attach did not happen.
#[derive(Debug)]
pub(super) enum Refusal {
    /// xenstore said this.
    Store(Errno),
    /// libxl's or the block script's words.
    Said(String),
}

impl From<Errno> for Refusal {
    fn from(e: Errno) -> Self {
        Refusal::Store(e)
    }
}

/// Applies `ops` as dom0 (a missing node to remove is no error).
pub(super) fn apply(sys: &mut impl System, ops: &[XsOp]) -> Result<(), Errno> {
    for op in ops {
        match op {
            XsOp::Rm(p) => match sys.xs_rm(p) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            },
            XsOp::Mkdir(p) => sys.xs_mkdir(p)?,
            XsOp::SetPerms(p, perms) => {
                let text: Vec<String> = perms
                    .iter()
                    .map(|&(dom, a)| format!("{}{dom}", char::from(a)))
                    .collect();
                sys.xs_set_perms(p, &text)?;
            }
            XsOp::Write(p, v) => sys.xs_write(p, v)?,
        }
    }
    Ok(())
}

/// Runs `f` in a xenstore transaction (made again when it conflicts), or without one when
/// the store has none.
pub(super) fn in_transaction<S: System>(
    sys: &mut S,
    mut f: impl FnMut(&mut S) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    for _ in 0..TX_ATTEMPTS {
        let tx = match sys.xs_begin() {
            Ok(()) => true,
            Err(Errno::ENOSYS) => false,
            Err(e) => return Err(Refusal::Store(e)),
        };
        let r = f(sys);
        if !tx {
            return r;
        }
        match r {
            Err(e) => {
                let _ = sys.xs_end(false);
                return Err(e);
            }
            Ok(()) => match sys.xs_end(true) {
                Ok(()) => return Ok(()),
                Err(Errno::EAGAIN) => continue,
                Err(e) => return Err(Refusal::Store(e)),
            },
        }
    }
    Err(Refusal::Store(Errno::EAGAIN))
}

/// Whether index entry `user` (`<domid>-<devid>`) still names a backend on `path` (with
/// mode `w` when `writer`).
fn live(sys: &mut impl System, user: &str, path: &str, writer: bool) -> bool {
    let Some((dom, devid)) = user.split_once('-') else {
        return false;
    };
    let (Ok(dom), Ok(devid)) = (dom.parse::<DomId>(), devid.parse::<u32>()) else {
        return false;
    };
    let be = disk::backend_path(dom, devid);
    let params = sys.xs_read(&format!("{be}/params"));
    if params.as_deref() != Ok(path.as_bytes()) {
        return false;
    }
    !writer || sys.xs_read(&format!("{be}/mode")).as_deref() == Ok(b"w")
}

/// Xen's sharing rule over the index: a live user of `target` that `d` may not share it
/// with is a refusal; stale entries met on the way are removed.
fn check_sharing(sys: &mut impl System, d: &Disk) -> Result<(), Refusal> {
    let target = d.pdev_path.as_deref().unwrap_or("");
    let path = disk::target_path(target);
    let dir = index_dir(target);
    let refused = || Refusal::Said(disk::in_use_message(target, d.readwrite));
    if d.readwrite {
        let users = match sys.xs_directory(&dir) {
            Ok(u) => u,
            Err(Errno::ENOENT) => Vec::new(),
            // More users than one reply holds: that many readers refuse a writer anyway.
            Err(Errno::E2BIG) => return Err(refused()),
            Err(e) => return Err(Refusal::Store(e)),
        };
        for u in users.iter().filter(|u| *u != "writer") {
            if live(sys, u, &path, false) {
                return Err(refused());
            }
            sys.xs_rm(&format!("{dir}/{u}"))?;
        }
        let _ = sys.xs_rm(&format!("{dir}/writer"));
    } else if let Ok(w) = sys.xs_read(&format!("{dir}/writer")) {
        let w = String::from_utf8_lossy(&w).into_owned();
        if live(sys, &w, &path, true) {
            return Err(refused());
        }
        sys.xs_rm(&format!("{dir}/writer"))?;
        sys.xs_rm(&format!("{dir}/{w}"))?;
    }
    Ok(())
}

/// What is wrong with `path` as a disk's target, given what dom0 found there: Xen's block
/// script's `does not exist` and `is not a block device`. An image file is refused too:
/// Xen's script would put a loop device over it, and Xenia's dom0 has none (its root lives
/// in RAM, so an image there would not outlive the machine anyway); blkback serves dom0's
/// own disks. `None` for a block device.
pub fn target_problem(path: &str, found: Result<TargetKind, Errno>) -> Option<String> {
    match found {
        Ok(TargetKind::Block) => None,
        Ok(TargetKind::File | TargetKind::Other) => Some(format!(
            "{path} is not a block device: Xenia's block backend serves dom0's disks \
             (/dev/vd*); see /proc/partitions"
        )),
        Err(Errno::ENOENT) => Some(format!("{path} does not exist.")),
        Err(e) => Some(format!("{path}: cannot be looked at ({e})")),
    }
}

/// Gives domain `dom` the disk `d` (which `xenia_problem` accepted): checks its target in
/// dom0 ([`target_problem`]), then, in one transaction, that the device is new to the
/// domain (libxl's `device already exists in xenstore`) and that sharing allows it, and
/// writes the nodes. The error is what xl prints.
pub fn attach(sys: &mut impl System, dom: DomId, d: &Disk) -> Result<(), String> {
    let vdev = d.vdev.clone().unwrap_or_default();
    let devid = disk::dev_number(&vdev)
        .ok_or_else(|| format!("Invalid or unsupported virtual disk identifier {vdev}"))?;
    let target = d.pdev_path.as_deref().unwrap_or("");
    let path = disk::target_path(target);
    if path.len() > TARGET_MAX {
        return Err(format!(
            "{}...: a target path longer than {TARGET_MAX} bytes",
            &path[..path.floor_char_boundary(40)]
        ));
    }
    if let Some(why) = target_problem(&path, sys.stat_target(&path)) {
        return Err(why);
    }
    let fe = disk::frontend_path(dom, devid);
    let mut ops = disk::add_ops(dom, devid, d);
    ops.extend(index_ops(dom, devid, d));
    let r = in_transaction(sys, |sys| {
        if sys.xs_read(&fe).is_ok() {
            return Err(Refusal::Said(
                "device already exists in xenstore".to_string(),
            ));
        }
        check_sharing(sys, d)?;
        apply(sys, &ops)?;
        Ok(())
    });
    match r {
        Ok(()) => Ok(()),
        Err(Refusal::Said(why)) => Err(why),
        Err(Refusal::Store(e)) => Err(format!(
            "xenstore refused the nodes of disk {vdev} ({e}): is this Xenia's dom0?"
        )),
    }
}

/// The disks of domain `dom`, read back from its backends as libxl's
/// `libxl__disk_from_xenstore` does (target, vdev, mode), with their device numbers.
pub fn disks_of(sys: &mut impl System, dom: DomId) -> Vec<(u32, Disk)> {
    // dom0's directory, not the domain's: a domain may remove its frontends.
    let dir = format!("/local/domain/0/backend/vbd/{dom}");
    let mut ids: Vec<u32> = sys
        .xs_directory(&dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    for devid in ids {
        let be = disk::backend_path(dom, devid);
        let read = |sys: &mut _, key: &str| -> Option<String> {
            System::xs_read(sys, &format!("{be}/{key}"))
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let (Some(params), Some(vdev)) = (read(sys, "params"), read(sys, "dev")) else {
            continue;
        };
        let mode = read(sys, "mode").unwrap_or_default();
        out.push((
            devid,
            Disk {
                pdev_path: Some(params),
                vdev: Some(vdev),
                backend: disk::Backend::Phy,
                format: disk::Format::Raw,
                readwrite: mode.contains('w'),
                ..Disk::default()
            },
        ));
    }
    out
}

/// `xl block-list <Domain(s)>`: xl's columns (`Vdev BE handle state evt-ch ring-ref
/// BE-path`) for each disk of each domain, the state, event channel and ring reference
/// being the frontend's (-1 until the frontend writes them). The backend is always dom0. A bad domain is reported and
/// skipped, as xl does.
pub fn block_list(sys: &mut impl System, io: &mut Io<'_>, domains: &[String]) -> VerbResult {
    let _ = writeln!(
        io.out,
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
        "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"
    );
    for arg in domains {
        let Ok((_, d)) = find(sys, arg) else {
            let _ = writeln!(io.err, "{arg} is an invalid domain identifier");
            continue;
        };
        // The devices dom0 serves the domain (its own directory could be emptied by the
        // domain), each with its frontend's state.
        let be_dir = format!("/local/domain/0/backend/vbd/{}", d.dom);
        let mut ids: Vec<u32> = sys
            .xs_directory(&be_dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        ids.sort_unstable();
        for devid in ids {
            let fe = disk::frontend_path(d.dom, devid);
            // The backend's path as the toolstack made it, not as the frontend's `backend`
            // node says (the domain may write there what it likes); dom0's `frontend` node
            // shows the backend is there.
            let be = disk::backend_path(d.dom, devid);
            if sys.xs_read(&format!("{be}/frontend")).is_err() {
                continue;
            }
            let be_id = 0;
            let mut num = |key: &str| -> i64 {
                sys.xs_read(&format!("{fe}/{key}"))
                    .ok()
                    .and_then(|v| String::from_utf8_lossy(&v).trim().parse::<u64>().ok())
                    .map_or(-1, |n| n as u32 as i32 as i64)
            };
            let (state, evtch, rref) = (num("state"), num("event-channel"), num("ring-ref"));
            let _ = writeln!(
                io.out,
                "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
                devid as i32, be_id, d.dom, state, evtch, rref, be
            );
        }
    }
    Ok(())
}

/// `xl [-N] block-attach <Domain> <disk-spec-component(s)>...`: the components are one
/// disk (xl's `parse_disk_config_multistring`); with `-N` the disk is printed as libxl's
/// JSON (`disk: {...}`) and nothing is attached.
pub fn block_attach(
    sys: &mut impl System,
    io: &mut Io<'_>,
    domain: &str,
    spec: &[String],
    dry_run: bool,
) -> VerbResult {
    let specs: Vec<&str> = spec.iter().map(String::as_str).collect();
    let d = match disk::parse(&specs) {
        Ok(d) => d,
        Err(lines) => {
            let text: String = lines
                .iter()
                .map(|l| format!("command line: {l}\n"))
                .collect();
            return Err(reported(io, &text));
        }
    };
    if dry_run {
        let json = dom0_tools::json::render(&disk::to_json(&d, false));
        let _ = writeln!(io.out, "disk: {json}");
        return Ok(());
    }
    let Ok((_, dom)) = find(sys, domain) else {
        return Err(reported(
            io,
            &format!("{domain} is an invalid domain identifier\n"),
        ));
    };
    let failed = |io: &mut Io<'_>, why: &str| {
        reported(
            io,
            &format!(
                "libxl: error: libxl_device.c: Domain {}:{why}\nlibxl_device_disk_add failed.\n",
                dom.dom
            ),
        )
    };
    if dom.dom == 0 {
        return Err(failed(
            io,
            "Xenia's dom0 serves disks and gives none to itself (its own disks are /dev/vd*)",
        ));
    }
    if let Some(why) = disk::xenia_problem(&d) {
        return Err(failed(io, &why));
    }
    attach(sys, dom.dom, &d).map_err(|why| failed(io, &why))
}

/// libxl's device removal up to the point where the directories may go: the backend at
/// `be` is told to go offline and close (`online` 0, `state` 5 unless it is 6 already, in
/// one transaction; with `force` the frontend's directory `fe` is removed first), then,
/// without `force`, xl waits for `state` 6 (or the backend gone) up to libxl's 10 s by
/// dom0's clock, and by a count of looks should the clock not move. The error is libxl's
/// words (`rc -9` on time-out, naming `verb -f`).
pub(super) fn close_backend(
    sys: &mut impl System,
    fe: &str,
    be: &str,
    force: bool,
    verb: &str,
) -> Result<(), String> {
    let state_path = format!("{be}/state");
    let closing = format!("{}", disk::STATE_CLOSING);
    let closed = format!("{}", disk::STATE_CLOSED);
    let r = in_transaction(sys, |sys| {
        if force {
            match sys.xs_rm(fe) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(Refusal::Store(e)),
            }
        }
        let Ok(state) = sys.xs_read(&state_path) else {
            // The backend is gone already: only the frontend is left to clean.
            return Ok(());
        };
        sys.xs_write(&format!("{be}/online"), "0")?;
        if state != closed.as_bytes() {
            sys.xs_write(&state_path, &closing)?;
        }
        Ok(())
    });
    if let Err(r) = r {
        return Err(match r {
            Refusal::Said(s) => s,
            Refusal::Store(e) => format!("unable to write to xenstore path {state_path} ({e})"),
        });
    }
    if force {
        return Ok(());
    }
    let start = sys.now_ns();
    for look in 0.. {
        match sys.xs_read(&state_path) {
            Ok(s) if s == closed.as_bytes() => break,
            Err(Errno::ENOENT) => break,
            _ => {}
        }
        let waited_ms = sys.now_ns().saturating_sub(start) / 1_000_000;
        if waited_ms >= disk::DESTROY_TIMEOUT_MS || look >= 4 * disk::DESTROY_TIMEOUT_MS / POLL_MS {
            return Err(format!(
                "unable to remove device with path {be} - rc -9 (the backend did not close \
                 within {} s; `xl {verb} -f` removes it anyway)",
                disk::DESTROY_TIMEOUT_MS / 1000
            ));
        }
        sys.sleep_ms(POLL_MS);
    }
    Ok(())
}

/// `xl block-detach [-f] <Domain> <VirtualDevice>` (libxl's `safe_remove`, or `destroy`
/// with `-f`). Without `-f`: the backend is told to go offline and close (`online` 0,
/// `state` 5, in one transaction), and xl waits up to libxl's 10 s for it to reach
/// `state` 6; only then are both directories removed; a backend that does not close
/// leaves the disk attached and the verb failed. With `-f`: the frontend's directory goes
/// first, the backend is told to close, and its directory is removed without waiting.
/// The device is a vdev (`xvda`) or its number (`51712`).
pub fn block_detach(
    sys: &mut impl System,
    io: &mut Io<'_>,
    domain: &str,
    vdev: &str,
    force: bool,
) -> VerbResult {
    let (_, dom) = find(sys, domain)?;
    // Known by dom0's nodes (the frontend's the domain may have removed).
    let fe_exists = |sys: &mut _, devid| {
        System::xs_read(
            sys,
            &format!("{}/frontend", disk::backend_path(dom.dom, devid)),
        )
        .is_ok()
    };
    let Some(devid) = disk::dev_number(vdev).filter(|&n| fe_exists(sys, n)) else {
        return Err(reported(
            io,
            &format!("Error: Device {vdev} not connected.\n"),
        ));
    };
    let which = if force { "destroy" } else { "safe_remove" };
    let failed = |io: &mut Io<'_>, why: String| {
        reported(
            io,
            &format!(
                "libxl: error: libxl_device.c: Domain {}:{why}\nlibxl_device_disk_{which} failed.\n",
                dom.dom
            ),
        )
    };
    let fe = disk::frontend_path(dom.dom, devid);
    let be = disk::backend_path(dom.dom, devid);
    if let Err(why) = close_backend(sys, &fe, &be, force, "block-detach") {
        return Err(failed(io, why));
    }
    // The index entry goes with the backend (were it left, the next look would find it
    // stale and remove it).
    let mut ops = disk::remove_ops(dom.dom, devid);
    if let Ok(params) = sys.xs_read(&format!("{be}/params")) {
        let dir = index_dir(&String::from_utf8_lossy(&params));
        let user = format!("{}-{devid}", dom.dom);
        if sys.xs_read(&format!("{dir}/writer")).as_deref() == Ok(user.as_bytes()) {
            ops.push(XsOp::Rm(format!("{dir}/writer")));
        }
        ops.push(XsOp::Rm(format!("{dir}/{user}")));
    }
    in_transaction(sys, |sys| apply(sys, &ops).map_err(Refusal::Store))
        .map_err(|_| failed(io, format!("unable to remove {fe} and {be}")))
}
