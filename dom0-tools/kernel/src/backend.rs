//! What dom0 keeps for the domains `xl create` handed over (`/dev/xen/xenia`): their names
//! and configurations, their console backends, and what to do when they shut down.
//!
//! **Consoles.** Each adopted domain's console ring (Xen's `xencons_interface`) is read and
//! written through Xenia's frame-copy domctls; nothing of the domU is mapped in dom0. Output
//! is appended to a bounded history ([`HISTORY_MAX`] bytes, oldest dropped), whether or not
//! anyone is attached, and the ring's consumer index is advanced so the domU never stalls
//! on a full ring. Input queued by an attached `xl console` is copied into the input ring
//! as space allows. A ring whose indexes are impossible (a hostile or broken domU) is read
//! as empty and its indexes reset to what the backend can vouch for.
//!
//! **Shutdowns.** On `VIRQ_DOM_EXC` every record's domain is looked at: a domain that
//! shut down gets its `on_poweroff` / `on_reboot` / `on_crash` action (dom0-tools
//! `lifecycle`, with its restart-loop guard); a domain that is gone loses its record. The
//! event is taken at the next [`service`], whether or not dom0 blocked in between (see
//! there), so the action is applied before the shell reads its next command.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use dom0_tools::builder::{self, DomainConfig};
use dom0_tools::devices::{ListEntry, Record};
use dom0_tools::lifecycle::{self, Decision, RestartGuard};
use dom0_tools::xlcfg::{self, Action, DomainSpec};
use guest_abi::Errno;
use guest_abi::calls;
use guest_abi::types::{DomId, Mfn};
use spin::Mutex;
use xenia_guest_rt::events;
use xenia_guest_rt::time::now_ns;

use dom0_tools::hypervisor::Hypervisor;

use dom0_tools::xen::Xen;

use crate::direct::{Direct, xen};
use crate::{fs, tprintln};

/// Console output kept per domain.
pub const HISTORY_MAX: usize = 16 * 1024;
/// Console input queued per domain and not yet taken by it.
const INPUT_MAX: usize = 4096;

/// `struct xencons_interface` offsets (guest-abi `console`).
const IN_SIZE: u32 = 1024;
const OUT_SIZE: u32 = 2048;
const OUT_AT: usize = 1024;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3076;
const OUT_CONS: usize = 3080;
const RING_BYTES: usize = 3088;

/// One domain's console backend.
struct Console {
    mfn: u64,
    /// dom0's end of the console channel.
    port: u32,
    /// Events seen on `port` when last serviced.
    seen: u32,
    /// Output kept, ending at byte `total` of everything the domain wrote.
    history: VecDeque<u8>,
    total: u64,
    /// Input for the domain.
    input: VecDeque<u8>,
    /// The ring can no longer be reached (the domain is gone).
    dead: bool,
}

/// An adopted domain.
struct Adopted {
    record: Record,
    spec: DomainSpec,
    console: Option<Console>,
    /// Its shutdown was acted upon already.
    handled: bool,
    /// System time when it was adopted.
    created_ns: u64,
}

static DOMS: Mutex<BTreeMap<DomId, Adopted>> = Mutex::new(BTreeMap::new());
/// The kept output of the last domains that went ([`GRAVE_MAX`]), with its end position: an
/// attached `xl console` reads what a domain printed last even if it powered off and was
/// destroyed first (`xl create -c` of a short-lived domain). Domain IDs are not reused soon
/// (the hypervisor's rover), so an ID here is the domain that went.
static GRAVE: Mutex<VecDeque<(DomId, VecDeque<u8>, u64)>> = Mutex::new(VecDeque::new());
/// Gone domains whose output is kept.
const GRAVE_MAX: usize = 4;
static GUARDS: Mutex<BTreeMap<String, RestartGuard>> = Mutex::new(BTreeMap::new());
static DOM_EXC_SEEN: AtomicU32 = AtomicU32::new(0);

/// The configuration a record names, parsed again from the initrd (which is read-only, so
/// it is the one `xl create` used).
fn spec_of(record: &Record) -> Result<DomainSpec, String> {
    // As `xl create` read it: `//` and `..` resolved, and `/dev/null` empty (a configuration
    // made only of key=value overrides, as on Xen).
    let path = xenia_dom0::files::normalize("/", &record.config);
    let text = if path == "/dev/null" {
        alloc::borrow::Cow::Borrowed(&[][..])
    } else {
        fs::file(&path).ok_or_else(|| {
            alloc::format!(
                "{}: no such file in dom0's root (restart needs it)",
                record.config
            )
        })?
    };
    let overrides: Vec<&str> = record.overrides.iter().map(String::as_str).collect();
    xlcfg::parse_domain_config(&record.config, &text, &overrides)
        .map(|p| p.spec)
        .map_err(|e| alloc::format!("{e}"))
}

/// `XENIA_IOCTL_ADOPT`: takes over domain `dom` with its console and its xenstore ring
/// (each `(mfn, port)` of the domU's end). Errors are negative errnos.
pub fn adopt(
    dom: DomId,
    record: Record,
    console: Option<(u64, u32)>,
    store: Option<(u64, u32)>,
) -> Result<(), i64> {
    if dom == 0 || DOMS.lock().contains_key(&dom) {
        return Err(-(Errno::EEXIST as i64));
    }
    // The reason goes to the operator's terminal: xl only learns EINVAL.
    let mut spec = spec_of(&record).map_err(|why| {
        crate::tprintln!(
            "dom0: cannot take over domain {dom} ({}): {why}",
            record.name
        );
        -(Errno::EINVAL as i64)
    })?;
    // The record's name wins over the file's: a domain renamed by `xl rename` keeps its
    // new name when it is restarted.
    spec.name.clone_from(&record.name);
    if let Some((mfn, remote)) = store {
        let facts = crate::store::DomainFacts {
            name: &spec.name,
            vcpus: spec.vcpus,
            max_vcpus: spec.maxvcpus,
            target_kib: spec.memory_mib.saturating_mul(1024),
            static_max_kib: spec.maxmem_mib.saturating_mul(1024),
            console,
        };
        crate::store::introduce(dom, mfn, remote, &facts)?;
    }
    let console = match console {
        None => None,
        Some((mfn, remote)) => {
            let port = calls::evtchn_bind_interdomain(dom, remote).map_err(|e| {
                // The store was introduced above: nothing of it may outlive a failed adopt
                // (a hostile kernel can make this bind fail by closing its console port).
                if store.is_some() {
                    crate::store::release(dom);
                }
                -(e as i64)
            })?;
            Some(Console {
                mfn,
                port,
                seen: u32::MAX,
                history: VecDeque::new(),
                total: 0,
                input: VecDeque::new(),
                dead: false,
            })
        }
    };
    DOMS.lock().insert(
        dom,
        Adopted {
            record,
            spec,
            console,
            handled: false,
            created_ns: now_ns(),
        },
    );
    service();
    Ok(())
}

/// `XENIA_IOCTL_FORGET`.
pub fn forget(dom: DomId) -> Result<(), i64> {
    let gone = DOMS.lock().remove(&dom).ok_or(-(Errno::ESRCH as i64))?;
    crate::store::release(dom);
    if let Some(c) = gone.console {
        let _ = calls::evtchn_close(c.port);
        let mut grave = GRAVE.lock();
        if grave.len() == GRAVE_MAX {
            grave.pop_front();
        }
        // alloc: at most GRAVE_MAX histories of HISTORY_MAX bytes.
        grave.push_back((dom, c.history, c.total));
    }
    Ok(())
}

/// `XENIA_IOCTL_RENAME`: domain `dom` is called `name` from now on (its record, hence `xl
/// list` and restarts, and its xenstore `name`). Errors are negative errnos: `EINVAL` for a
/// name `devices::name_problem` refuses, `EEXIST` for dom0's or another domain's name,
/// `ESRCH` for a domain without a record.
pub fn rename(dom: DomId, name: &str) -> Result<(), i64> {
    if dom0_tools::devices::name_problem(name).is_some() {
        return Err(-(Errno::EINVAL as i64));
    }
    {
        let mut doms = DOMS.lock();
        if name == dom0_tools::DOM0_NAME
            || doms
                .iter()
                .any(|(&other, a)| other != dom && a.record.name == name)
        {
            return Err(-(Errno::EEXIST as i64));
        }
        let a = doms.get_mut(&dom).ok_or(-(Errno::ESRCH as i64))?;
        a.record.name = name.into();
        a.spec.name = name.into();
    }
    crate::store::set_name(dom, name);
    Ok(())
}

/// `XENIA_IOCTL_RECORD`: the record kept for `dom`, encoded.
pub fn record(dom: DomId) -> Option<Vec<u8>> {
    DOMS.lock().get(&dom).map(|a| a.record.encode())
}

/// `XENIA_IOCTL_LIST`.
pub fn list() -> Vec<ListEntry> {
    DOMS.lock()
        .iter()
        .map(|(&dom, a)| ListEntry {
            dom: dom.into(),
            name: a.record.name.clone(),
            created_ns: a.created_ns,
        })
        .collect()
}

/// Whether dom0 keeps a console for `dom`.
pub fn has_console(dom: DomId) -> bool {
    DOMS.lock().get(&dom).is_some_and(|a| a.console.is_some())
}

/// Console output of `dom` from byte `from` on (clamped to what is kept): the bytes and
/// the position after them. `None` when there is no such console.
pub fn output_since(dom: DomId, from: u64, max: usize) -> Option<(Vec<u8>, u64)> {
    let doms = DOMS.lock();
    let Some(c) = doms.get(&dom).and_then(|a| a.console.as_ref()) else {
        // Gone: what it printed last, then end of file.
        let grave = GRAVE.lock();
        let (_, history, total) = grave.iter().find(|(d, _, _)| *d == dom)?;
        let start = total - history.len() as u64;
        let from = from.clamp(start, *total);
        if from == *total {
            return None;
        }
        let bytes: Vec<u8> = history
            .iter()
            .skip((from - start) as usize)
            .take(max)
            .copied()
            .collect();
        return Some((bytes.clone(), from + bytes.len() as u64));
    };
    let start = c.total - c.history.len() as u64;
    let from = from.clamp(start, c.total);
    let skip = (from - start) as usize;
    let bytes: Vec<u8> = c.history.iter().skip(skip).take(max).copied().collect();
    let next = from + bytes.len() as u64;
    Some((bytes, next))
}

/// Where the kept output of `dom` starts (what an attaching reader sees first).
pub fn history_start(dom: DomId) -> Option<u64> {
    let doms = DOMS.lock();
    match doms.get(&dom) {
        Some(a) => {
            let c = a.console.as_ref()?;
            Some(c.total - c.history.len() as u64)
        }
        None => GRAVE
            .lock()
            .iter()
            .find(|(d, _, _)| *d == dom)
            .map(|(_, h, total)| total - h.len() as u64),
    }
}

/// Whether output past `from` is waiting for `dom` (or the console is gone, which a reader
/// learns by reading).
pub fn output_ready(dom: DomId, from: u64) -> bool {
    DOMS.lock()
        .get(&dom)
        .and_then(|a| a.console.as_ref())
        .is_none_or(|c| c.total > from || c.dead)
}

/// Queues `bytes` as console input for `dom`; returns how many were taken.
pub fn send_input(dom: DomId, bytes: &[u8]) -> Option<usize> {
    let n = {
        let mut doms = DOMS.lock();
        let c = doms.get_mut(&dom)?.console.as_mut()?;
        let n = bytes.len().min(INPUT_MAX - c.input.len());
        c.input.extend(&bytes[..n]);
        n
    };
    service();
    Some(n)
}

/// Looks at every backend: shutdowns first if `VIRQ_DOM_EXC` fired, then the consoles.
///
/// The order is what makes every shutdown acted upon: pending events are counted first
/// ([`crate::wait::take_events`]: an event still pending in `shared_info` has not moved
/// any counter, and dom0 would otherwise count it only when it next blocks), then the
/// counter is read and remembered, then the domains are scanned. A shutdown announced
/// during the scan moves the counter past the value remembered, so the next call scans
/// again; one announced before it is visible to the scan (the hypervisor records the
/// shutdown before it raises `VIRQ_DOM_EXC`). Events that coalesce into one count are one
/// scan of every domain, which is all they need.
pub fn service() {
    crate::wait::take_events();
    let exc = crate::wait::dom_exc_events();
    // The consoles first: a domain that printed and powered off has its last output kept
    // before its shutdown action may destroy it.
    {
        let mut hv = xen();
        let mut doms = DOMS.lock();
        for (&dom, a) in doms.iter_mut() {
            if let Some(c) = a.console.as_mut() {
                service_console(&mut hv, dom, c);
            }
        }
    }
    if DOM_EXC_SEEN.swap(exc, Ordering::SeqCst) != exc {
        check_domains();
    }
}

fn read_u32(page: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]])
}

fn service_console(hv: &mut Xen<Direct>, dom: DomId, c: &mut Console) {
    if c.dead {
        return;
    }
    let events = events::count(c.port);
    // Ports past the runtime's counters are always looked at.
    let fresh = events != c.seen || c.port as usize >= events::TRACKED_PORTS;
    if !fresh && c.input.is_empty() {
        return;
    }
    c.seen = events;
    let mut page = [0u8; RING_BYTES];
    if hv.read_frame(dom, Mfn(c.mfn), 0, &mut page).is_err() {
        c.dead = true;
        return;
    }
    let mut notify = false;
    // Output.
    let out_cons = read_u32(&page, OUT_CONS);
    let out_prod = read_u32(&page, OUT_CONS + 4);
    let pending = out_prod.wrapping_sub(out_cons);
    if pending != 0 {
        let (from, n) = if pending > OUT_SIZE {
            // Impossible indexes: take the ring's worth the producer claims last.
            (out_prod.wrapping_sub(OUT_SIZE), OUT_SIZE)
        } else {
            (out_cons, pending)
        };
        for i in 0..n {
            let b = page[OUT_AT + (from.wrapping_add(i) % OUT_SIZE) as usize];
            if c.history.len() == HISTORY_MAX {
                c.history.pop_front();
            }
            c.history.push_back(b);
        }
        c.total += u64::from(n);
        let _ = hv.write_frame(dom, Mfn(c.mfn), OUT_CONS, &out_prod.to_le_bytes());
        notify = true;
    }
    // Input.
    if !c.input.is_empty() {
        let in_cons = read_u32(&page, IN_CONS);
        let in_prod = read_u32(&page, IN_PROD);
        let used = in_prod.wrapping_sub(in_cons);
        let space = IN_SIZE.saturating_sub(used) as usize;
        let n = space.min(c.input.len());
        let mut prod = in_prod;
        let mut ok = true;
        for _ in 0..n {
            let b = c.input.pop_front().unwrap_or(0);
            let at = (prod % IN_SIZE) as usize;
            ok &= hv.write_frame(dom, Mfn(c.mfn), at, &[b]).is_ok();
            prod = prod.wrapping_add(1);
        }
        if n > 0 && ok {
            let _ = hv.write_frame(dom, Mfn(c.mfn), IN_PROD, &prod.to_le_bytes());
            notify = true;
        }
    }
    if notify {
        let _ = calls::evtchn_send(c.port);
    }
}

/// Acts on domains that shut down; drops records of domains that are gone.
fn check_domains() {
    let mut hv = xen();
    let doms: Vec<DomId> = DOMS.lock().keys().copied().collect();
    for dom in doms {
        let info = hv.domain_info(dom);
        let (reason, handle) = match info {
            Err(Errno::ESRCH) => {
                let _ = forget(dom);
                continue;
            }
            Err(_) => continue,
            Ok(info) => match info.shutdown_reason() {
                Some(r) => (r, info.handle),
                None => continue,
            },
        };
        let (name, decision) = {
            let mut doms = DOMS.lock();
            let Some(a) = doms.get_mut(&dom) else {
                continue;
            };
            if a.handled {
                continue;
            }
            a.handled = true;
            (a.record.name.clone(), lifecycle::decide(&a.spec, reason))
        };
        let now_s = now_ns() / 1_000_000_000;
        let (decision, message) = GUARDS
            .lock()
            .entry(name.clone())
            .or_default()
            .apply(decision, &name, now_s);
        if let Some(m) = message {
            tprintln!("dom0: {m}");
        }
        match decision {
            Decision::Leave | Decision::Act(Action::Preserve) => {}
            Decision::Act(Action::Destroy) => {
                let _ = hv.destroy(dom);
                let _ = forget(dom);
            }
            Decision::Act(Action::Restart) => restart(&mut hv, dom, &name, handle),
        }
    }
}

/// Destroys `dom` and builds it again from its configuration, under the same name and
/// with the same `handle` (UUID): xl restarts a domain from its stored configuration,
/// whose `c_info.uuid` is the one the domain was made with (`uuid=` or a random one).
fn restart(hv: &mut Xen<Direct>, dom: DomId, name: &str, handle: [u8; 16]) {
    let Some(old) = DOMS.lock().remove(&dom) else {
        return;
    };
    if let Some(c) = &old.console {
        let _ = calls::evtchn_close(c.port);
    }
    crate::store::release(dom);
    let _ = hv.destroy(dom);
    let disks = old.spec.disks.clone();
    let nics = old.spec.nics.clone();
    match rebuild(hv, &old.spec, handle) {
        Ok(built) => {
            let console = built.console().map(|c| (c.mfn.0, c.evtchn));
            let store = built.store().map(|s| (s.mfn.0, s.evtchn));
            let built_dom = built.dom();
            let history = old.console.map(|c| (c.history, c.total));
            let adopted = adopt(built_dom, old.record, console, store).is_ok();
            // Its disks and vifs again, as `xl create` gave them (built paused for this),
            // then start it. The old domain's backends went with its release above.
            if !disks.is_empty() || !nics.is_empty() {
                give_disks(built_dom, &disks, name);
                give_nics(built_dom, &nics, name);
                let _ = hv.unpause(built_dom);
            }
            if adopted
                && let Some((h, total)) = history
                && let Some(c) = DOMS
                    .lock()
                    .get_mut(&built_dom)
                    .and_then(|a| a.console.as_mut())
            {
                // The new console continues the old one's history.
                let mut h = h;
                h.extend(c.history.drain(..));
                while h.len() > HISTORY_MAX {
                    h.pop_front();
                }
                c.total += total;
                c.history = h;
            }
            tprintln!("dom0: domain \"{name}\" restarted as domain {built_dom}");
        }
        Err(e) => tprintln!("dom0: restarting domain \"{name}\" failed: {e}"),
    }
}

fn rebuild(
    hv: &mut Xen<Direct>,
    spec: &DomainSpec,
    handle: [u8; 16],
) -> Result<builder::Started, String> {
    let kernel = fs::file(&spec.kernel)
        .ok_or_else(|| alloc::format!("{}: no such file in dom0's root", spec.kernel))?;
    let ramdisk = match &spec.ramdisk {
        Some(p) => {
            Some(fs::file(p).ok_or_else(|| alloc::format!("{p}: no such file in dom0's root"))?)
        }
        None => None,
    };
    let mut cfg = DomainConfig::new(&spec.name, &kernel, spec.memory_mib);
    cfg.handle = handle;
    cfg.ramdisk = ramdisk.as_deref();
    cfg.cmdline = spec.cmdline.as_deref().unwrap_or("");
    cfg.max_memory_kib = spec.maxmem_mib.saturating_mul(1024);
    cfg.vcpus = spec.maxvcpus;
    cfg.online_vcpus = spec.vcpus;
    cfg.weight = spec.cpu_weight;
    cfg.cap = spec.cap;
    // Started once its disks' and vifs' nodes are written.
    cfg.start_paused = !spec.disks.is_empty() || !spec.nics.is_empty();
    // `create`, as `xl create`: a ring-1 kernel is built as before, a Xen PV kernel (Linux's
    // bzImage) is streamed into the domain's frames instead of unpacked into dom0's memory.
    builder::create(hv, &cfg).map_err(|e| alloc::format!("{e}"))
}

/// Writes the xenstore nodes of restarted domain `dom`'s disks (those of its
/// configuration; `xl block-attach`'s are not in it and are not given again).
fn give_disks(dom: DomId, disks: &[dom0_tools::disk::Disk], name: &str) {
    use dom0_tools::disk;
    for d in disks {
        let vdev = d.vdev.as_deref().unwrap_or("");
        let Some(devid) = disk::dev_number(vdev) else {
            continue;
        };
        let mut ops = disk::add_ops(dom, devid, d);
        ops.extend(disk::index_ops(dom, devid, d));
        if let Err(e) = crate::store::apply(&ops) {
            tprintln!("dom0: restarted domain \"{name}\" gets no disk {vdev} (xenstore: {e})");
        }
    }
}

/// Writes the xenstore nodes of restarted domain `dom`'s vifs (those of its configuration,
/// with the ids `xl create` gave them and, their MACs being made from the domain's name,
/// the same addresses; `xl network-attach`'s are not in it and are not given again).
fn give_nics(dom: DomId, nics: &[dom0_tools::vif::Nic], name: &str) {
    use dom0_tools::vif;
    for n in nics {
        let devid = n.devid.unwrap_or(0);
        let n = vif::resolve(n, name, devid);
        let mut ops = vif::add_ops(dom, devid, &n);
        // The old domain's index entries went with its release.
        ops.extend(vif::index_ops(dom, devid, &n));
        if let Err(e) = crate::store::apply(&ops) {
            tprintln!("dom0: restarted domain \"{name}\" gets no vif {devid} (xenstore: {e})");
        }
    }
}
