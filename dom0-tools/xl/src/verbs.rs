//! What each of xl's verbs does, over a [`System`]: the hypervisor, the
//! dom0 kernel's `/dev/xen/xenia` records and the initrd's files. The
//! real system is in `main.rs`; the tests use a fake, so every message and
//! every cleanup path here is checked on the build host.
//!
//! A verb writes its output to `io.out`, warnings to `io.err`, and returns
//! `Err(message)` when it fails: `main` prints `xl: <message>` on stderr
//! and exits with status 1. Where Xen's xl has its own words for a failure, the verb
//! prints them itself and returns [`reported`]'s empty message, which `main` does not
//! print again.
//!
//! The verbs added for Xen's table are in [`names`] (`domid`, `domname`, `rename`,
//! `vm-list`), [`listing`] (`list` and its columns and JSON), [`keys`] (`sysrq`,
//! `debug-keys`), [`sched`] (`sched-credit` with its cpupool), [`block`] (disks: `disk=`
//! at create, `block-list`, `block-attach`, `block-detach`) and [`network`] (vifs: `vif=` at
//! create, `network-list`, `network-attach`, `network-detach`).

pub mod block;
pub mod keys;
pub mod listing;
pub mod names;
pub mod network;
pub mod sched;

pub use block::{TargetKind, block_attach, block_detach, block_list};
pub use keys::{debug_keys, sysrq};
pub use listing::{ListOpts, list};
pub use names::{domid, domname, rename, vm_list};
pub use network::{network_attach, network_detach, network_list};
pub use sched::{sched_credit, sched_line};

use std::io::Write;

use dom0_tools::builder::{self, BuildError, ConsoleRing, DomainConfig, StoreRing};
use dom0_tools::control::DomainInfo;
use dom0_tools::devices::{ListEntry, MAX_RECORD, Record};
use dom0_tools::xlcfg::{self, DomainSpec};
use dom0_tools::{DOM0_NAME, json, xlfmt};
use guest_abi::Errno;
use guest_abi::domctl::{DomctlGetvcpuinfo, DomctlSchedCredit};
use guest_abi::sched::{SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use guest_abi::sysctl::SysctlPhysinfo;
use guest_abi::types::DomId;
use guest_abi::xenstore::{VCPU_OFFLINE, VCPU_ONLINE};

use crate::target::{self, Known};

/// Everything xl's verbs ask of the outside world.
pub trait System {
    /// Every domain, in id order.
    fn domains(&mut self) -> Result<Vec<DomainInfo>, Errno>;
    /// The dom0 kernel's records of the domains xl created
    /// (`XENIA_IOCTL_LIST`).
    fn names(&mut self) -> Result<Vec<ListEntry>, Errno>;
    /// `physinfo`.
    fn physinfo(&mut self) -> Result<SysctlPhysinfo, Errno>;
    /// The contents of file `path`, or why it cannot be read.
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String>;
    /// Builds (and, unless `cfg.start_paused`, starts) a domain with
    /// `dom0_tools::builder::create`, which destroys it on failure.
    fn build(&mut self, cfg: &DomainConfig<'_>) -> Result<NewDomain, BuildError>;
    /// Hands a new domain to the dom0 kernel (`XENIA_IOCTL_ADOPT`) with
    /// its encoded [`Record`].
    fn adopt(&mut self, new: &NewDomain, record: &[u8]) -> Result<(), Errno>;
    /// Drops the kernel's record of `dom` (`XENIA_IOCTL_FORGET`).
    fn forget(&mut self, dom: DomId) -> Result<(), Errno>;
    /// `destroydomain`.
    fn destroy(&mut self, dom: DomId) -> Result<(), Errno>;
    /// `pausedomain`.
    fn pause(&mut self, dom: DomId) -> Result<(), Errno>;
    /// `unpausedomain`.
    fn unpause(&mut self, dom: DomId) -> Result<(), Errno>;
    /// `SCHEDOP_remote_shutdown`.
    fn remote_shutdown(&mut self, dom: DomId, reason: u32) -> Result<(), Errno>;
    /// Credit-scheduler weight and cap.
    fn sched_get(&mut self, dom: DomId) -> Result<DomctlSchedCredit, Errno>;
    /// Sets them.
    fn sched_put(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno>;
    /// `max_mem`, in KiB.
    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno>;
    /// `getvcpuinfo`.
    fn vcpu_info(&mut self, dom: DomId, vcpu: u32) -> Result<DomctlGetvcpuinfo, Errno>;
    /// `getvcpuaffinity`: hard and soft bitmaps of `nr_bits` bits.
    fn vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        nr_bits: u32,
    ) -> Result<(Vec<u8>, Vec<u8>), Errno>;
    /// `setvcpuaffinity` with the masks given (`None`: unchanged).
    fn set_vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        hard: Option<&[u8]>,
        soft: Option<&[u8]>,
    ) -> Result<(), Errno>;
    /// `readconsole` (see [`dom0_tools::xen::Xen::read_console`]).
    fn read_console(
        &mut self,
        index: Option<u32>,
        clear: bool,
        buf: &mut [u8],
    ) -> Result<(usize, u32), Errno>;
    /// `xen_version` answers for `xl info`: lines already formatted.
    fn version_lines(&mut self) -> String;
    /// `xl info`'s `host`, `release`, `version` and `machine` lines (from `uname`).
    fn node_lines(&mut self) -> String;
    /// Frames offlined and frames pending (Xenia's sysctl); `ENOSYS` where unknown.
    fn mem_offline_info(&mut self) -> Result<(u64, u64), Errno> {
        Err(Errno::ENOSYS)
    }
    /// Monotonic time in nanoseconds (dom0's uptime).
    fn now_ns(&mut self) -> u64;
    /// Wall-clock seconds since 1970.
    fn wall_s(&mut self) -> u64;
    /// Waits `ms` milliseconds.
    fn sleep_ms(&mut self, ms: u64);
    /// 16 random bytes (a new domain's UUID).
    fn random16(&mut self) -> [u8; 16];
    /// Writes a xenstore node as dom0 (`XS_WRITE` on `/dev/xen/xenbus`).
    fn xs_write(&mut self, path: &str, value: &str) -> Result<(), Errno>;
    /// Reads a xenstore node as dom0 (`XS_READ`).
    fn xs_read(&mut self, path: &str) -> Result<Vec<u8>, Errno>;
    /// Whether domain `dom` watches the absolute node `path` or an ancestor of it (Xenia's
    /// `XS_CONTROL` command `watched`): a balloon driver watches `memory/target`.
    fn xs_watched(&mut self, dom: DomId, path: &str) -> Result<bool, Errno>;
    /// The children of a xenstore node (`XS_DIRECTORY`).
    fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, Errno>;
    /// Removes a xenstore node and everything below it (`XS_RM`).
    fn xs_rm(&mut self, path: &str) -> Result<(), Errno>;
    /// Makes a xenstore node (`XS_MKDIR`).
    fn xs_mkdir(&mut self, path: &str) -> Result<(), Errno>;
    /// Sets a node's permissions (`XS_SET_PERMS`), each as `xs_wire` writes it (`n5`,
    /// `r0`: access letter, then domain; the first is the owner's).
    fn xs_set_perms(&mut self, path: &str, perms: &[String]) -> Result<(), Errno>;
    /// Starts a xenstore transaction that the `xs_*` calls until [`System::xs_end`] are
    /// part of (`XS_TRANSACTION_START`); `ENOSYS` when the store has none.
    fn xs_begin(&mut self) -> Result<(), Errno>;
    /// Ends it (`XS_TRANSACTION_END`), committing or not; `EAGAIN` when it conflicted with
    /// another and nothing of it was kept.
    fn xs_end(&mut self, commit: bool) -> Result<(), Errno>;
    /// What is at `path` in dom0 (a disk's target), following links.
    fn stat_target(&mut self, path: &str) -> Result<TargetKind, Errno>;
    /// The record the dom0 kernel keeps for `dom` (`XENIA_IOCTL_RECORD`); `ESRCH` when
    /// it keeps none.
    fn record(&mut self, dom: DomId) -> Result<Record, Errno>;
    /// Renames `dom` in the dom0 kernel's record and xenstore (`XENIA_IOCTL_RENAME`).
    fn rename(&mut self, dom: DomId, name: &str) -> Result<(), Errno>;
    /// `XEN_SYSCTL_debug_keys`.
    fn debug_keys(&mut self, keys: &[u8]) -> Result<(), Errno>;
    /// The credit scheduler's parameters of cpupool `pool`: `(tslice_ms, ratelimit_us,
    /// vcpu_migr_delay_us)` (`XEN_SYSCTL_scheduler_op`).
    fn sched_credit_params(&mut self, pool: u32) -> Result<(u32, u32, u32), Errno>;
}

/// What xl keeps of a built domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewDomain {
    /// Its id.
    pub dom: DomId,
    /// Its console.
    pub console: Option<ConsoleRing>,
    /// Its xenstore ring.
    pub store: Option<StoreRing>,
}

/// Where a verb writes.
pub struct Io<'a> {
    /// Its output.
    pub out: &'a mut dyn Write,
    /// Warnings and progress, as Xen's xl prints them on stderr.
    pub err: &'a mut dyn Write,
}

/// A verb's result: `Err` is the message `main` prints after `xl: `, or empty when the
/// verb printed Xen's words itself ([`reported`]).
pub type VerbResult<T = ()> = Result<T, String>;

/// Prints `text` on stderr as it is (Xen's xl's own words for a failure, with their
/// newlines) and returns the empty message that tells `main` the failure was reported.
pub fn reported(io: &mut Io<'_>, text: &str) -> String {
    let _ = write!(io.err, "{text}");
    String::new()
}

/// The name xl gives Xenia's one cpupool.
pub const POOL_0: &str = "Pool-0";

/// The name of a domain the kernel keeps no record of.
pub const UNNAMED: &str = "(unnamed)";

/// Every domain with its name.
pub fn named_domains(sys: &mut impl System) -> VerbResult<Vec<(String, DomainInfo)>> {
    let doms = sys
        .domains()
        .map_err(|e| format!("cannot list the domains: the hypervisor said {e}"))?;
    let names = sys.names().map_err(|e| {
        format!("cannot read the domain names from /dev/xen/xenia ({e}); is this Xenia's dom0?")
    })?;
    Ok(doms
        .into_iter()
        .map(|d| {
            let name = if d.dom == 0 {
                DOM0_NAME.to_string()
            } else {
                names
                    .iter()
                    .find(|n| u32::from(d.dom) == n.dom)
                    .map_or_else(|| UNNAMED.to_string(), |n| n.name.clone())
            };
            (name, d)
        })
        .collect())
}

fn known(domains: &[(String, DomainInfo)]) -> Vec<Known> {
    domains
        .iter()
        .map(|(name, d)| Known {
            id: d.dom,
            name: name.clone(),
        })
        .collect()
}

/// The domain `arg` names, with its name and state.
pub fn find(sys: &mut impl System, arg: &str) -> VerbResult<(String, DomainInfo)> {
    let all = named_domains(sys)?;
    let id = target::resolve(arg, &known(&all)).map_err(|e| e.to_string())?;
    Ok(all
        .into_iter()
        .find(|(_, d)| d.dom == id)
        .expect("resolve returns a listed id"))
}

fn not_dom0(what: &str, d: &DomainInfo) -> VerbResult {
    if d.dom == 0 {
        return Err(format!(
            "cannot {what} Domain-0: it runs xl itself (to stop dom0, type `poweroff` or `reboot` at its prompt)"
        ));
    }
    Ok(())
}

// --- create ---

/// Where xl looks for a config file: as given when absolute; otherwise
/// relative to `/` (dom0's working directory), then in `/etc/xen/`, as
/// Xen's xl looks in its config directory.
pub fn config_candidates(path: &str) -> Vec<String> {
    if path.starts_with('/') {
        vec![path.to_string()]
    } else {
        let rel = path.trim_start_matches("./");
        vec![format!("/{rel}"), format!("/etc/xen/{rel}")]
    }
}

/// Memory in MiB from a page count.
fn pages_mib(pages: u64) -> u64 {
    pages / 256
}

/// How `xl create` goes about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateOpts {
    /// `-p`: leave the domain paused.
    pub paused: bool,
    /// `-q`: say nothing on success (neither `Parsing config from` nor `created`).
    pub quiet: bool,
    /// `-d`: print the configuration (as `create -n` does) on stderr before creating.
    pub debug: bool,
    /// Build it paused without saying so: the caller starts it (`create -c` attaches the
    /// console first, so that nothing the domain prints is missed).
    pub hold: bool,
}

/// Reads and parses the config file and settings, saying `Parsing config from` unless
/// `quiet`, and printing the parser's warnings: the path it was found at and the result.
fn read_config(
    sys: &mut impl System,
    io: &mut Io<'_>,
    config: &str,
    overrides: &[String],
    quiet: bool,
) -> VerbResult<(String, xlcfg::Parsed)> {
    if config.contains(['\t', '\n']) {
        return Err(format!(
            "the config path {config:?} contains a tab or newline; rename the file"
        ));
    }
    let candidates = config_candidates(config);
    let mut found = None;
    let mut why = String::new();
    for c in &candidates {
        match sys.read_file(c) {
            Ok(bytes) => {
                found = Some((c.clone(), bytes));
                break;
            }
            Err(e) => {
                if why.is_empty() {
                    why = e;
                }
            }
        }
    }
    let Some((path, text)) = found else {
        return Err(format!(
            "cannot read config file {config} (looked for {}): {why}",
            candidates.join(" and ")
        ));
    };
    if !quiet {
        let _ = writeln!(io.err, "Parsing config from {path}");
    }
    if let Some(o) = overrides.iter().find(|o| o.contains(['\t', '\n'])) {
        return Err(format!(
            "the setting {o:?} contains a tab or newline, which settings may not"
        ));
    }
    let over: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let parsed = xlcfg::parse_domain_config(&path, &text, &over)
        .map_err(|e| format!("cannot create a domain from {path}: {e}"))?;
    for w in &parsed.warnings {
        let _ = writeln!(io.err, "xl: warning: {w}");
    }
    Ok((path, parsed))
}

/// The configuration a new domain gets, as `xl create -n` prints it; `map_bits` is the
/// size of the host's CPU maps (`None`: unknown, and the affinities left out).
fn spec_view(spec: &DomainSpec, uuid: &[u8; 16], map_bits: Option<usize>) -> json::ConfigView {
    let mut view = json::ConfigView {
        name: spec.name.clone(),
        uuid: Some(uuid_string(uuid)),
        max_vcpus: spec.maxvcpus,
        avail_vcpus: (0..spec.vcpus).collect(),
        max_memkb: spec.maxmem_mib.saturating_mul(1024),
        target_memkb: spec.memory_mib.saturating_mul(1024),
        sched: Some((u32::from(spec.cpu_weight), u32::from(spec.cap))),
        kernel: Some(spec.kernel.clone()),
        cmdline: spec.cmdline.clone(),
        ramdisk: spec.ramdisk.clone(),
        actions: Some([spec.on_poweroff, spec.on_reboot, spec.on_crash]),
        disks: spec
            .disks
            .iter()
            .map(|d| dom0_tools::disk::to_json(d, false))
            .collect(),
        nics: spec.nics.iter().map(dom0_tools::vif::to_json).collect(),
        ..json::ConfigView::default()
    };
    if let Some(bits) = map_bits {
        set_affinity_view(&mut view, spec, bits);
    }
    view
}

/// `b_info.vcpu_hard_affinity`, `vcpu_soft_affinity` and `numa_placement` as xl's
/// `parse_vcpu_affinity` fills them from `cpus=` and `cpus_soft=`: one CPU list gives every
/// vCPU (up to `maxvcpus`) the same map, a list of lists one map per entry (at most
/// `maxvcpus`); each map has `map_bits` bits rounded up to a byte, as libxl's (so `all`
/// sets the whole byte). A list per vCPU in `cpus=`, or any `cpus_soft=`, turns xl's
/// automatic NUMA placement off.
pub(crate) fn set_affinity_view(view: &mut json::ConfigView, spec: &DomainSpec, map_bits: usize) {
    let maps = |p: &Option<xlcfg::CpuPlacement>| -> Vec<Vec<u32>> {
        let lists: Vec<&str> = match p {
            None => Vec::new(),
            Some(xlcfg::CpuPlacement::All(list)) => vec![list.as_str(); spec.maxvcpus as usize],
            Some(xlcfg::CpuPlacement::PerVcpu(lists)) => lists
                .iter()
                .take(spec.maxvcpus as usize)
                .map(String::as_str)
                .collect(),
        };
        lists
            .iter()
            .map(|list| {
                let map = xlfmt::parse_cpu_list(list, map_bits).unwrap_or_default();
                (0..map.len() * 8)
                    .filter(|&cpu| map[cpu / 8] & (1 << (cpu % 8)) != 0)
                    .map(|cpu| cpu as u32)
                    .collect()
            })
            .collect()
    };
    view.vcpu_hard_affinity = maps(&spec.cpus);
    view.vcpu_soft_affinity = maps(&spec.cpus_soft);
    let per_vcpu = matches!(spec.cpus, Some(xlcfg::CpuPlacement::PerVcpu(_)));
    if per_vcpu || spec.cpus_soft.is_some() {
        view.numa_placement = Some(false);
    }
}

/// `xl create -n` (or `xl -N create`): parses the configuration and prints it as libxl's
/// JSON on stdout, as Xen's dry run does; creates nothing.
pub fn create_dry_run(
    sys: &mut impl System,
    io: &mut Io<'_>,
    config: &str,
    overrides: &[String],
    quiet: bool,
) -> VerbResult {
    let (_, parsed) = read_config(sys, io, config, overrides, quiet)?;
    let uuid = new_handle(sys, &parsed.spec);
    let bits = cpu_map_bits(sys).ok();
    let _ = write!(
        io.out,
        "{}",
        json::render(&json::domain_config(&spec_view(&parsed.spec, &uuid, bits)))
    );
    Ok(())
}

/// The message for a build error `e` of kernel `path`: a Xen PV kernel is named by its file,
/// so that the operator sees which kernel is meant.
fn refusal(path: &str, e: BuildError, fail: &impl Fn(String) -> String) -> String {
    match e {
        BuildError::XenPvKernel { kernel, missing } => {
            fail(builder::xen_pv_refusal(path, &kernel, &missing))
        }
        e => fail(e.to_string()),
    }
}

/// `xl create`: returns the new domain's id.
pub fn create(
    sys: &mut impl System,
    io: &mut Io<'_>,
    config: &str,
    overrides: &[String],
    opts: CreateOpts,
) -> VerbResult<DomId> {
    let paused = opts.paused;
    let (path, parsed) = read_config(sys, io, config, overrides, opts.quiet)?;
    let kernel_at = parsed.kernel_at;
    let spec = parsed.spec;
    let record = Record {
        name: spec.name.clone(),
        config: path.clone(),
        overrides: overrides.to_vec(),
    }
    .encode();
    if record.len() > MAX_RECORD {
        return Err(format!(
            "cannot create \"{}\": its config path and settings take {} bytes, more than the {MAX_RECORD} the dom0 kernel keeps; use fewer key=value settings",
            spec.name,
            record.len()
        ));
    }

    let all = named_domains(sys)?;
    target::check_new_name(&spec.name, &known(&all))
        .map_err(|e| format!("cannot create \"{}\": {e}", spec.name))?;
    check_memory(sys, &spec)?;

    let fail = |what: String| format!("cannot create \"{}\": {what}", spec.name);
    let kernel = sys.read_file(&spec.kernel).map_err(|e| {
        fail(format!(
            "{kernel_at}: cannot read kernel {}: {e}",
            spec.kernel
        ))
    })?;
    // The kernel is checked before the ramdisk is read: a kernel Xenia cannot run is refused
    // without dom0 holding both (Debian's is 14 MB, its initramfs 2 MB).
    // Other errors are the build's to report (it checks the kernel again, whole).
    // What was learnt is kept for the build, which then need not stream a bzImage again.
    let inspected = match builder::inspect_checked(&kernel) {
        Ok(i) => Some(i),
        Err(e @ (BuildError::XenPvKernel { .. } | BuildError::MissingFeatures(_))) => {
            return Err(refusal(&spec.kernel, e, &fail));
        }
        Err(_) => None,
    };
    let ramdisk = match &spec.ramdisk {
        Some(r) => Some(
            sys.read_file(r)
                .map_err(|e| fail(format!("cannot read its ramdisk {r}: {e}")))?,
        ),
        None => None,
    };
    // Targets first: a missing one is told before anything is built.
    for d in &spec.disks {
        let path = dom0_tools::disk::target_path(d.pdev_path.as_deref().unwrap_or(""));
        let vdev = d.vdev.as_deref().unwrap_or("");
        if let Some(why) = block::target_problem(&path, sys.stat_target(&path)) {
            return Err(fail(format!("disk {vdev}: {why}")));
        }
    }
    let handle = new_handle(sys, &spec);
    if opts.debug {
        let bits = cpu_map_bits(sys).ok();
        let _ = write!(
            io.err,
            "{}",
            json::render(&json::domain_config(&spec_view(&spec, &handle, bits)))
        );
    }
    let cfg = DomainConfig {
        handle,
        ramdisk: ramdisk.as_deref(),
        cmdline: spec.cmdline.as_deref().unwrap_or(""),
        max_memory_kib: spec.maxmem_mib.saturating_mul(1024),
        vcpus: spec.maxvcpus,
        online_vcpus: spec.vcpus,
        weight: spec.cpu_weight,
        cap: spec.cap,
        // With `cpus=`, the vCPUs are placed before the domain first runs (libxl sets the
        // affinity at build time too).
        // Disks and vifs too: their nodes are there before the domain's kernel first looks
        // (libxl adds devices before it unpauses).
        start_paused: paused
            || opts.hold
            || spec.cpus.is_some()
            || spec.cpus_soft.is_some()
            || !spec.disks.is_empty()
            || !spec.nics.is_empty(),
        inspected: inspected.as_ref(),
        ..DomainConfig::new(&spec.name, &kernel, spec.memory_mib)
    };
    let built = sys
        .build(&cfg)
        .map_err(|e| refusal(&spec.kernel, e, &fail))?;
    if let Err(e) = sys.adopt(&built, &record) {
        let dom = built.dom;
        return Err(match sys.destroy(dom) {
            Ok(()) => fail(format!(
                "the dom0 kernel refused to take it over ({e}), so domain {dom} was destroyed again; \
                 check `xl dmesg` and try again"
            )),
            Err(e2) => fail(format!(
                "the dom0 kernel refused to take it over ({e}) and destroying domain {dom} failed \
                 too ({e2}); remove it with `xl destroy {dom}`"
            )),
        });
    }
    if spec.cpus.is_some()
        || spec.cpus_soft.is_some()
        || !spec.disks.is_empty()
        || !spec.nics.is_empty()
    {
        let placed = place_vcpus(sys, built.dom, &spec).and_then(|()| {
            for d in &spec.disks {
                block::attach(sys, built.dom, d)
                    .map_err(|why| format!("disk {}: {why}", d.vdev.as_deref().unwrap_or("")))?;
            }
            for n in &spec.nics {
                network::attach(sys, built.dom, &spec.name, n)
                    .map_err(|why| format!("vif {}: {why}", n.devid.unwrap_or_default()))?;
            }
            if paused || opts.hold {
                Ok(())
            } else {
                sys.unpause(built.dom)
                    .map_err(|e| format!("cannot start it: the hypervisor said {e}"))
            }
        });
        if let Err(why) = placed {
            let dom = built.dom;
            let destroyed = sys.destroy(dom);
            if destroyed.is_ok() {
                // Its record, and with it the nodes written so far (dom0's kernel removes
                // them when it forgets a domain).
                let _ = sys.forget(dom);
            }
            return Err(match destroyed {
                Ok(()) => fail(format!("{why}; domain {dom} was destroyed again")),
                Err(e) => fail(format!(
                    "{why}, and destroying domain {dom} failed ({e}): remove it with `xl destroy {dom}`"
                )),
            });
        }
    }
    if !opts.quiet {
        let how = if paused {
            format!(", paused (`xl unpause {}` starts it)", spec.name)
        } else {
            String::new()
        };
        let _ = writeln!(
            io.out,
            "Domain {} created with id {}{how}",
            spec.name, built.dom
        );
    }
    Ok(built.dom)
}

/// How many bits a CPU map of this host has (libxl sizes them by `max_cpu_id + 1`).
pub(crate) fn cpu_map_bits(sys: &mut impl System) -> Result<usize, String> {
    let phys = sys
        .physinfo()
        .map_err(|e| format!("cannot read the host's CPUs: the hypervisor said {e}"))?;
    Ok(phys.max_cpu_id.saturating_add(1).max(phys.nr_cpus).max(1) as usize)
}

/// Sets the hard and soft affinity of each of `dom`'s vCPUs as xl.cfg's `cpus=` and
/// `cpus_soft=` say (a vCPU without a list keeps every CPU).
fn place_vcpus(sys: &mut impl System, dom: DomId, spec: &DomainSpec) -> Result<(), String> {
    let map_bits = cpu_map_bits(sys)?;
    let map = |p: &Option<xlcfg::CpuPlacement>, v: u32| -> Result<Option<Vec<u8>>, String> {
        match p.as_ref().and_then(|p| p.for_vcpu(v)) {
            None => Ok(None),
            Some(list) => xlfmt::parse_cpu_list(list, map_bits).map(Some),
        }
    };
    for v in 0..spec.maxvcpus {
        let hard = map(&spec.cpus, v)?;
        let soft = map(&spec.cpus_soft, v)?;
        if hard.is_none() && soft.is_none() {
            continue;
        }
        sys.set_vcpu_affinity(dom, v, hard.as_deref(), soft.as_deref())
            .map_err(|e| {
                let why = if e == Errno::EINVAL {
                    " (no online CPU of this host in the list)"
                } else {
                    ""
                };
                format!("cannot pin vCPU {v} as cpus= says: the hypervisor said {e}{why}")
            })?;
    }
    Ok(())
}

/// Refuses a domain that cannot fit the free memory.
fn check_memory(sys: &mut impl System, spec: &DomainSpec) -> VerbResult {
    let p = sys
        .physinfo()
        .map_err(|e| format!("cannot read the host's free memory: the hypervisor said {e}"))?;
    let free = pages_mib(p.free_pages.saturating_sub(p.outstanding_pages));
    if spec.memory_mib > free {
        return Err(format!(
            "cannot create \"{}\": it needs {} MiB but only {free} MiB are free \
             (lower memory= or destroy a domain first)",
            spec.name, spec.memory_mib
        ));
    }
    Ok(())
}

/// The handle (UUID) a new domain gets: `uuid=` when the configuration gives one (as
/// xl's `parse_config_data`), otherwise a random one.
fn new_handle(sys: &mut impl System, spec: &DomainSpec) -> [u8; 16] {
    spec.uuid.unwrap_or_else(|| uuid_v4(sys.random16()))
}

/// A random (version 4, RFC 4122 variant) UUID from 16 random bytes.
pub fn uuid_v4(mut b: [u8; 16]) -> [u8; 16] {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// A UUID as `8-4-4-4-12` lowercase hex.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    )
}

// --- domain controls ---

/// `xl destroy [-f]`. Without `-f` dom0 is refused in Xen's words; with it the
/// hypervisor is asked, and refuses (Xenia's dom0 is both the hardware domain and the
/// toolstack, the case Xen's `-f` is not for).
pub fn destroy(sys: &mut impl System, io: &mut Io<'_>, arg: &str, force: bool) -> VerbResult {
    let (name, d) = find(sys, arg)?;
    if d.dom == 0 && !force {
        return Err(reported(
            io,
            "Not destroying domain 0; use -f to force.\n\
             This can only be done when using a disaggregated hardware domain and toolstack.\n\n",
        ));
    }
    sys.destroy(d.dom).map_err(|e| {
        let why = if d.dom == 0 {
            ": Xenia's dom0 is its hardware domain and runs this toolstack"
        } else {
            ""
        };
        format!(
            "cannot destroy domain {} ({name}): the hypervisor said {e}{why}",
            d.dom
        )
    })?;
    match sys.forget(d.dom) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            let _ = writeln!(
                io.err,
                "xl: warning: domain {} was destroyed but the dom0 kernel kept its record ({e})",
                d.dom
            );
        }
    }
    Ok(())
}

/// `xl pause` / `xl unpause`.
pub fn pause(sys: &mut impl System, arg: &str, pause: bool) -> VerbResult {
    let (name, d) = find(sys, arg)?;
    let verb = if pause { "pause" } else { "unpause" };
    not_dom0(verb, &d)?;
    let r = if pause {
        sys.pause(d.dom)
    } else {
        sys.unpause(d.dom)
    };
    r.map_err(|e| match (pause, e) {
        (false, Errno::EINVAL) if d.shutdown.is_some() => format!(
            "cannot unpause domain {} ({name}): it has shut down; destroy it or create it again",
            d.dom
        ),
        (false, Errno::EINVAL) => {
            format!("cannot unpause domain {} ({name}): it is not paused", d.dom)
        }
        _ => format!(
            "cannot {verb} domain {} ({name}): the hypervisor said {e}",
            d.dom
        ),
    })
}

/// How long `shutdown -w` / `reboot -w` wait before giving up.
pub const WAIT_LIMIT_MS: u64 = 60_000;
const WAIT_STEP_MS: u64 = 100;

/// `xl shutdown` / `xl reboot` (Xen's `main_shutdown_or_reboot`): one domain, or with
/// `all` every domain but dom0; `wait` 1 waits until each has shut down (or is gone), 2
/// until each is gone, as `-w` and `-ww` do. Messages on stderr, in Xen's words.
pub fn shutdown(
    sys: &mut impl System,
    io: &mut Io<'_>,
    which: Option<&str>,
    reboot: bool,
    wait: u8,
) -> VerbResult {
    let targets: Vec<(String, DomainInfo)> = match which {
        Some(arg) => {
            let (name, d) = find(sys, arg)?;
            let verb = if reboot { "reboot" } else { "shut down" };
            not_dom0(verb, &d)?;
            vec![(name, d)]
        }
        None => named_domains(sys)?
            .into_iter()
            .filter(|(_, d)| d.dom != 0)
            .collect(),
    };
    for (name, d) in &targets {
        request_shutdown(sys, io, name, d, reboot)?;
    }
    if wait == 0 {
        return Ok(());
    }
    let _ = writeln!(io.err, "Waiting for {} domains", targets.len());
    // Each domain still waited for, and whether its shutdown was seen already (with `-ww`,
    // the wait goes on until it is gone).
    let mut pending: Vec<(&DomainInfo, bool)> = targets.iter().map(|(_, d)| (d, false)).collect();
    let mut waited = 0;
    while !pending.is_empty() {
        let now = sys
            .domains()
            .map_err(|e| format!("cannot list the domains: {e}"))?;
        pending.retain_mut(|(d, seen)| {
            // Gone, or (after a reboot the kernel carried out) a new domain in its place.
            let live = now
                .iter()
                .find(|x| x.dom == d.dom && x.handle == d.handle && !x.dying);
            match live {
                // Gone before its shutdown was seen, when only the shutdown was waited for:
                // dom0's kernel destroyed it at once (on_poweroff=destroy), which Xen's xl
                // would have seen as a shutdown first.
                None if !*seen && wait == 1 => {
                    let _ = writeln!(io.err, "Domain {} has been shut down, reason code 0", d.dom);
                    false
                }
                None => {
                    let _ = writeln!(io.err, "Domain {} has been destroyed", d.dom);
                    false
                }
                Some(x) => match x.shutdown {
                    Some(reason) if !*seen => {
                        let _ = writeln!(
                            io.err,
                            "Domain {} has been shut down, reason code {reason}",
                            d.dom
                        );
                        if wait == 1 {
                            return false;
                        }
                        let _ = writeln!(io.err, "Domain {} continue waiting for death", d.dom);
                        *seen = true;
                        true
                    }
                    _ => true,
                },
            }
        });
        if pending.is_empty() {
            break;
        }
        if waited >= WAIT_LIMIT_MS {
            let ids: Vec<String> = pending.iter().map(|(d, _)| d.dom.to_string()).collect();
            let first = &ids[0];
            return Err(format!(
                "domain(s) {} not {} after {} s; a kernel may ignore the request: `xl destroy \
                 {first}` stops a domain at once",
                ids.join(", "),
                if wait == 1 { "shut down" } else { "gone" },
                WAIT_LIMIT_MS / 1000,
            ));
        }
        sys.sleep_ms(WAIT_STEP_MS);
        waited += WAIT_STEP_MS;
    }
    Ok(())
}

/// Asks domain `d` to shut down or reboot (`SCHEDOP_remote_shutdown`), saying so first.
fn request_shutdown(
    sys: &mut impl System,
    io: &mut Io<'_>,
    name: &str,
    d: &DomainInfo,
    reboot: bool,
) -> VerbResult {
    let verb = if reboot { "reboot" } else { "shut down" };
    let reason = if reboot {
        SHUTDOWN_REBOOT
    } else {
        SHUTDOWN_POWEROFF
    };
    let _ = writeln!(
        io.err,
        "{} domain {}",
        if reboot { "Rebooting" } else { "Shutting down" },
        d.dom
    );
    sys.remote_shutdown(d.dom, reason).map_err(|e| match e {
        Errno::ENOSYS => format!(
            "cannot {verb} domain {} ({name}): this hypervisor does not implement \
             SCHEDOP_remote_shutdown; use `xl destroy {}`",
            d.dom, d.dom
        ),
        e => format!(
            "cannot {verb} domain {} ({name}): the hypervisor said {e}",
            d.dom
        ),
    })
}

// --- host information ---

/// `xl info [-n] [field]`: Xen's lines in Xen's order (xl's `print_info`); with `field`, the
/// values of the lines whose key starts with it (xl's `maybe_printf`), and with `-n` the
/// topology and NUMA sections, which xl prints whatever the field.
pub fn info(sys: &mut impl System, io: &mut Io<'_>, numa: bool, field: Option<&str>) -> VerbResult {
    let p = sys
        .physinfo()
        .map_err(|e| format!("cannot read the host's information: the hypervisor said {e}"))?;
    let select = |lines: String| match field {
        Some(f) => xlfmt::info_select(&lines, f),
        None => lines,
    };
    let mut out = select(sys.node_lines());
    // Every CPU is in Pool-0, the one cpupool: none is free.
    out += &select(xlfmt::physinfo_lines(&p, 4096, 0));
    if numa {
        let mib = |pages: u64| (pages * 4096) >> 20;
        out += &xlfmt::numa_lines(p.nr_cpus, mib(p.total_pages), mib(p.free_pages));
    }
    let mut tail = sys.version_lines();
    tail += &xlfmt::info_line("xend_config_format", 4);
    // Xenia's line, last so that every line before it is Xen's: xl has no offlined count.
    if let Ok((offlined, _)) = sys.mem_offline_info() {
        tail += &xlfmt::info_line("offlined_pages", offlined);
    }
    out += &select(tail);
    let _ = write!(io.out, "{out}");
    Ok(())
}

/// `xl dmesg [-c]`: the whole ring, read in chunks.
pub fn dmesg(sys: &mut impl System, io: &mut Io<'_>, clear: bool) -> VerbResult {
    let mut buf = vec![0u8; 16 * 1024];
    let mut index = None;
    // The ring is 64 KiB; the bound only guards against a hypervisor that
    // keeps answering.
    for _ in 0..1024 {
        let (n, next) = sys
            .read_console(index, false, &mut buf)
            .map_err(|e| format!("cannot read the hypervisor's log: {e}"))?;
        if n == 0 {
            break;
        }
        let _ = io.out.write_all(&buf[..n]);
        index = Some(next);
    }
    if clear {
        sys.read_console(index, true, &mut buf[..0])
            .map_err(|e| format!("cannot clear the hypervisor's log: {e}"))?;
    }
    Ok(())
}

/// `xl vcpu-list [domains...]`.
pub fn vcpu_list(sys: &mut impl System, io: &mut Io<'_>, which: &[String]) -> VerbResult {
    let all = named_domains(sys)?;
    let k = known(&all);
    let ids: Vec<DomId> = if which.is_empty() {
        all.iter().map(|(_, d)| d.dom).collect()
    } else {
        which
            .iter()
            .map(|w| target::resolve(w, &k).map_err(|e| e.to_string()))
            .collect::<VerbResult<_>>()?
    };
    // Maps as wide as the highest CPU id (libxl's `libxl_get_max_cpus`), printed over the
    // CPUs online (xl's `print_bitmap(map, physinfo.nr_cpus)`).
    let phys = sys.physinfo().unwrap_or_default();
    let nr_cpus = (phys.nr_cpus as usize).max(1);
    let map_bits = phys.max_cpu_id.saturating_add(1).max(phys.nr_cpus).max(1);
    let every = vec![0xffu8; (map_bits as usize).div_ceil(8)];
    let mut out = xlfmt::vcpu_list_header();
    out.push('\n');
    for id in ids {
        let name = all
            .iter()
            .find(|(_, d)| d.dom == id)
            .map_or("", |(n, _)| n.as_str());
        for v in 0..xlcfg::MAX_VCPUS {
            match sys.vcpu_info(id, v) {
                Ok(info) => {
                    // A hypervisor without the affinity domctls runs every vCPU anywhere.
                    let (hard, soft) = sys
                        .vcpu_affinity(id, v, map_bits)
                        .unwrap_or_else(|_| (every.clone(), every.clone()));
                    out += &xlfmt::vcpu_line(name, id, &info, &hard, &soft, nr_cpus);
                    out.push('\n');
                }
                Err(_) => break,
            }
        }
    }
    let _ = write!(io.out, "{out}");
    Ok(())
}

/// `xl vcpu-pin <domain> <vcpu|all> <hard|-> [soft|-]` (Xen's `vcpupin`): the CPU lists in
/// xl's syntax ([`xlfmt::parse_cpu_list`]); `-` or a missing soft list leaves that mask as it
/// is. Prints nothing on success.
pub fn vcpu_pin(
    sys: &mut impl System,
    domain: &str,
    vcpu: &str,
    hard: &str,
    soft: Option<&str>,
) -> VerbResult {
    vcpu_pin_with(sys, None, domain, vcpu, hard, soft, PinOpts::default())
}

/// `xl vcpu-pin`'s options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinOpts {
    /// `-f`: Xen undoes a pinning the guest's kernel overrode; Xenia's kernels override
    /// none, so it pins as without, but refuses `all` as Xen does.
    pub force: bool,
    /// The global `-N`: print the maps (`cpumap: <hard|->[ <soft>]`), change nothing.
    pub dry_run: bool,
}

/// [`vcpu_pin`] with its options; `io` is needed for the dry run's output.
pub fn vcpu_pin_with(
    sys: &mut impl System,
    io: Option<&mut Io<'_>>,
    domain: &str,
    vcpu: &str,
    hard: &str,
    soft: Option<&str>,
    opts: PinOpts,
) -> VerbResult {
    let (_, d) = find(sys, domain)?;
    // Xen reads the vCPU with strtol: a number first, else `all`.
    let vcpus: Vec<u32> = match crate::cli::getopt::strtol(vcpu) {
        Some(n) if n >= 0 => vec![u32::try_from(n).unwrap_or(u32::MAX)],
        _ if vcpu != "all" => return Err(format!("Error: Invalid argument {vcpu} as VCPU.")),
        _ if opts.force => return Err("Error: --force and 'all' as VCPU not allowed.".into()),
        _ => (0..xlcfg::MAX_VCPUS)
            .take_while(|&v| sys.vcpu_info(d.dom, v).is_ok())
            .collect(),
    };
    let map_bits = cpu_map_bits(sys)?;
    let parse = |list: Option<&str>| match list {
        None | Some("-") => Ok(None),
        Some(l) => xlfmt::parse_cpu_list(l, map_bits).map(Some),
    };
    let hard = parse(Some(hard))?;
    let soft = parse(soft)?;
    if opts.dry_run {
        let show = |m: &Option<Vec<u8>>| m.as_ref().map(|m| xlfmt::cpu_bitmap(m, map_bits));
        let mut line = format!("cpumap: {}", show(&hard).unwrap_or_else(|| "-".into()));
        if let Some(s) = show(&soft) {
            line = format!("{line} {s}");
        }
        if let Some(io) = io {
            let _ = writeln!(io.out, "{line}");
        }
        return Ok(());
    }
    if hard.is_none() && soft.is_none() {
        return Ok(());
    }
    for v in vcpus {
        sys.set_vcpu_affinity(d.dom, v, hard.as_deref(), soft.as_deref())
            .map_err(|e| {
                let why = if e == Errno::EINVAL {
                    " (no such vCPU, or no online CPU in the hard affinity)"
                } else {
                    ""
                };
                format!("Could not set affinity for vcpu `{v}': the hypervisor said {e}{why}.")
            })?;
    }
    Ok(())
}

/// libxl's `ERROR_FAIL` and `ERROR_INVAL`, which xl prints in its messages.
const ERROR_FAIL: i32 = -3;
const ERROR_INVAL: i32 = -6;

/// `xl vcpu-set [-i] <domain> <count>` (Xen's `vcpuset` and libxl's
/// `libxl_set_vcpuonline` for a PV domain): writes `cpu/<n>/availability` under the
/// domain's home, `online` for vCPUs `0..count` and `offline` for the rest of its
/// `maxvcpus`; the guest's xenstore watch does the rest. `count` must be 1 to `maxvcpus`,
/// and more vCPUs than the host has CPUs are refused unless `check_host` is off (`-i`), as
/// Xen's xl does. Xen writes the nodes in one transaction; Xenia's store has none yet, so
/// the guest may see them change one by one (it reconciles each time).
pub fn vcpu_set(sys: &mut impl System, domain: &str, count: &str, check_host: bool) -> VerbResult {
    let (_, d) = find(sys, domain)?;
    not_dom0("set the vCPUs of", &d)?;
    let n: u32 = count
        .parse()
        .ok()
        .filter(|&n: &u32| n <= i32::MAX as u32)
        .ok_or_else(|| String::from("Error: Invalid argument."))?;
    let max = (0..xlcfg::MAX_VCPUS)
        .take_while(|&v| sys.vcpu_info(d.dom, v).is_ok())
        .count() as u32;
    let failed = |rc: i32| {
        format!(
            "libxl_set_vcpuonline failed domid={} max_vcpus={n}, rc: {rc}",
            d.dom
        )
    };
    if check_host {
        let host = sys.physinfo().map(|p| p.nr_cpus).unwrap_or(0);
        if n > d.online_vcpus && n > host {
            return Err(format!(
                "You are overcommmitting! You have {host} physical CPUs and want {n} vCPUs! \
                 Aborting, use --ignore-host to continue"
            ));
        }
    }
    if n == 0 {
        return Err(format!("Requested 0 VCPUs!\n{}", failed(ERROR_INVAL)));
    }
    if n > max {
        return Err(format!(
            "Requested {n} VCPUs, however maxcpus is {max}!\n{}",
            failed(ERROR_INVAL)
        ));
    }
    // A domain the toolstack did not hand over has no home in the store, and nobody in it
    // would look at the nodes.
    let home = format!("/local/domain/{}", d.dom);
    if let Err(e) = sys.xs_read(&format!("{home}/domid")) {
        return Err(format!(
            "{}\n(domain {} has no xenstore home {home}: {e}; only domains made by `xl create` have one)",
            failed(ERROR_FAIL),
            d.dom
        ));
    }
    for v in 0..max {
        let path = format!("{home}/cpu/{v}/availability");
        let value = if v < n { VCPU_ONLINE } else { VCPU_OFFLINE };
        sys.xs_write(&path, value).map_err(|e| {
            format!(
                "{}\n(xenstore refused {path} = {value}: {e}; was the domain made by this xl?)",
                failed(ERROR_FAIL)
            )
        })?;
    }
    Ok(())
}

/// `xl mem-set`: as Xen's (`libxl_set_memory_target`), the domain's `memory/target` is
/// written, in KiB, and its balloon driver gives memory back or takes more, as it can; the
/// limit (`mem-max`) is raised first when the target is above it. Only for a domain whose
/// kernel listens: some connection of it watches `memory/target` or an ancestor (Linux's
/// `xen-balloon` does, at boot). Xenia's own guests have no balloon driver: for them the
/// write would change nothing, so xl says so instead, as before.
pub fn mem_set(sys: &mut impl System, arg: &str, memory: &str) -> VerbResult {
    let kib = crate::memsize::parse_kib(memory)?;
    let (name, d) = find(sys, arg)?;
    let have = d.tot_pages.saturating_mul(4);
    let target = format!("/local/domain/{}/memory/target", d.dom);
    // A store that cannot answer (an older one: `ENOSYS`) is taken as "nobody listens".
    let listens = sys.xs_watched(d.dom, &target).unwrap_or(false);
    if !listens {
        if kib == have {
            return Ok(());
        }
        return Err(format!(
            "cannot set the memory of domain {} ({name}) to {} MiB: changing a running \
             domain's memory needs a balloon driver in its kernel, and this one does not watch \
             memory/target (Linux's xen-balloon does; Xenia guests have none yet); it keeps \
             its {} MiB (mem-max still changes its limit; to resize, create it again with \
             memory=...)",
            d.dom,
            kib / 1024,
            have / 1024
        ));
    }
    let limit = d.max_pages.saturating_mul(4);
    if kib > limit {
        sys.set_max_mem(d.dom, kib).map_err(|e| {
            format!(
                "cannot set the memory of domain {} ({name}) to {} MiB: raising its limit \
                 from {} MiB, the hypervisor said {e}",
                d.dom,
                kib / 1024,
                limit / 1024
            )
        })?;
    }
    sys.xs_write(&target, &kib.to_string()).map_err(|e| {
        format!(
            "cannot set the memory of domain {} ({name}): xenstore refused {target}: {e}",
            d.dom
        )
    })
}

/// `xl mem-max`: the limit the hypervisor enforces.
pub fn mem_max(sys: &mut impl System, arg: &str, memory: &str) -> VerbResult {
    let kib = crate::memsize::parse_kib(memory)?;
    let (name, d) = find(sys, arg)?;
    not_dom0("change the memory limit of", &d)?;
    let have = d.tot_pages.saturating_mul(4);
    if kib < have {
        return Err(format!(
            "cannot set the memory limit of domain {} ({name}) to {} KiB: it already has {have} \
             KiB, and without a balloon driver it cannot give memory back",
            d.dom, kib
        ));
    }
    sys.set_max_mem(d.dom, kib).map_err(|e| {
        format!(
            "cannot set the memory limit of domain {} ({name}): the hypervisor said {e}",
            d.dom
        )
    })
}

/// `xl uptime [-s] [domains...]`: dom0 since boot, other domains since dom0's kernel
/// took them over (created or last restarted). A domain the kernel keeps no record of has
/// no known start and is left out, with a note on stderr.
pub fn uptime(sys: &mut impl System, io: &mut Io<'_>, short: bool, which: &[String]) -> VerbResult {
    let all = named_domains(sys)?;
    let k = known(&all);
    let ids: Vec<DomId> = if which.is_empty() {
        all.iter().map(|(_, d)| d.dom).collect()
    } else {
        which
            .iter()
            .map(|w| target::resolve(w, &k).map_err(|e| e.to_string()))
            .collect::<VerbResult<_>>()?
    };
    let now = sys.now_ns();
    let names = sys.names().unwrap_or_default();
    let wall = sys.wall_s();
    let mut out = if short {
        String::new()
    } else {
        xlfmt::uptime_header()
    };
    let mut unknown = Vec::new();
    for id in ids {
        let (name, since) = if id == 0 {
            (DOM0_NAME.to_string(), 0)
        } else {
            match names.iter().find(|n| n.dom == u32::from(id)) {
                Some(n) => (n.name.clone(), n.created_ns),
                None => {
                    unknown.push(id.to_string());
                    continue;
                }
            }
        };
        let up = now.saturating_sub(since) / 1_000_000_000;
        out += &if short {
            xlfmt::uptime_short_line(wall % 86_400, &name, id, up)
        } else {
            xlfmt::uptime_line(&name, id, up)
        };
    }
    let _ = write!(io.out, "{out}");
    if !unknown.is_empty() {
        let _ = writeln!(
            io.err,
            "xl: uptime of domain(s) {} not shown: dom0's kernel keeps no record of when they started",
            unknown.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
