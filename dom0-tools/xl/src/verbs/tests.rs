//! The verbs against a fake system: messages, refusals and cleanups.

use std::collections::BTreeMap;

use dom0_tools::builder::Step;
use guest_abi::domctl::{DomctlGetdomaininfo, XEN_DOMINF_BLOCKED, XEN_DOMINF_PAUSED};

use super::*;
use dom0_tools::DOM0_NAME;

#[derive(Default)]
struct Fake {
    domains: Vec<DomainInfo>,
    names: Vec<ListEntry>,
    files: BTreeMap<String, Vec<u8>>,
    free_pages: u64,
    /// The next build fails with this.
    build_error: Option<BuildError>,
    adopt_error: Option<Errno>,
    /// What happened, in order.
    log: Vec<String>,
    built_cfg: Option<(String, u64, bool, String)>,
    adopted: Vec<Record>,
    credit: BTreeMap<DomId, DomctlSchedCredit>,
    /// The domain ignores shutdown requests.
    stubborn: bool,
    console: Vec<u8>,
    slept_ms: u64,
    /// Frames offlined and pending (`None`: the hypervisor does not know the sysctl).
    offline: Option<(u64, u64)>,
    /// Host CPUs (0: 2).
    nr_cpus: u32,
    /// vCPUs per domain (absent: 1).
    nr_vcpus: BTreeMap<DomId, u32>,
    /// Hard and soft masks set (absent: all).
    affinity: BTreeMap<(DomId, u32), (u64, u64)>,
    /// The affinity domctls answer `ENOSYS`.
    no_affinity: bool,
    /// xenstore nodes written, in order.
    xs: Vec<(String, String)>,
    /// xenstore writes fail with this.
    xs_error: Option<Errno>,
    /// The absolute nodes each domain watches (`xs_watched`).
    watched: Vec<(DomId, String)>,
    /// dom0's kernel's records, by domain.
    records: BTreeMap<DomId, Record>,
    /// The hypervisor refuses debug keys with this.
    keys_error: Option<Errno>,
    /// The cpupool's parameters cannot be read.
    no_pool_params: bool,
    /// The xenstore nodes of devices (`/device/`, `/backend/`, `/tool/`), by path.
    tree: BTreeMap<String, String>,
    /// Permissions set, by path.
    perms: BTreeMap<String, Vec<String>>,
    /// The store has transactions.
    tx_support: bool,
    /// This many commits conflict (`EAGAIN`) before one succeeds.
    tx_conflicts: u32,
    /// The tree when the open transaction began (restored by an abort or a conflict).
    tx_snapshot: Option<BTreeMap<String, String>>,
    /// Commits that succeeded.
    tx_commits: u32,
    /// A backend told to close (state 5) closes (state 6) when next looked at.
    backend_closes: bool,
    /// What dom0 has at each path disks may name.
    targets: BTreeMap<String, TargetKind>,
}

/// Whether `path` is one of the device nodes the fake keeps in its tree.
fn device_node(path: &str) -> bool {
    path.contains("/device/") || path.contains("/backend/") || path.starts_with("/tool/")
}

fn dinfo(dom: DomId, flags: u32, mib: u64) -> DomainInfo {
    dom0_tools::control::domain_info(&DomctlGetdomaininfo {
        domain: dom,
        flags,
        tot_pages: mib * 256,
        max_pages: mib * 256,
        nr_online_vcpus: 1,
        handle: [dom as u8; 16],
        ..Default::default()
    })
}

impl Fake {
    fn new() -> Fake {
        let mut f = Fake {
            free_pages: 512 * 256,
            ..Default::default()
        };
        f.domains.push(dinfo(0, XEN_DOMINF_BLOCKED, 256));
        f.add(3, "hello", 32);
        f.records.insert(
            3,
            Record {
                name: "hello".into(),
                config: "/etc/xen/hello.cfg".into(),
                overrides: vec!["cmdline=\"x=1\"".into()],
            },
        );
        f.files.insert(
            "/etc/xen/hello.cfg".into(),
            b"name = \"hello\"\nkernel = \"/boot/echo.elf\"\nmemory = 32\n\
              on_crash = \"preserve\"\n"
                .to_vec(),
        );
        f.files.insert(
            "/etc/xen/web.cfg".into(),
            b"name = \"web\"\nkernel = \"/boot/web.elf\"\nmemory = 64\nbogus = 1\n".to_vec(),
        );
        f.files.insert("/boot/web.elf".into(), b"ELF".to_vec());
        for (path, kind) in [
            ("/dev/vdb", TargetKind::Block),
            ("/dev/vdc", TargetKind::Block),
            ("/images/a.img", TargetKind::File),
            ("/dev", TargetKind::Other),
        ] {
            f.targets.insert(path.into(), kind);
        }
        f
    }

    fn add(&mut self, dom: DomId, name: &str, mib: u64) {
        self.domains.push(dinfo(dom, XEN_DOMINF_BLOCKED, mib));
        self.names.push(ListEntry {
            dom: dom.into(),
            name: name.into(),
            created_ns: 3_600_000_000_000,
        });
    }
}

impl System for Fake {
    fn domains(&mut self) -> Result<Vec<DomainInfo>, Errno> {
        Ok(self.domains.clone())
    }
    fn names(&mut self) -> Result<Vec<ListEntry>, Errno> {
        Ok(self.names.clone())
    }
    fn physinfo(&mut self) -> Result<SysctlPhysinfo, Errno> {
        let nr_cpus = if self.nr_cpus == 0 { 2 } else { self.nr_cpus };
        Ok(SysctlPhysinfo {
            nr_cpus,
            max_cpu_id: nr_cpus - 1,
            total_pages: 1024 * 256,
            free_pages: self.free_pages,
            ..Default::default()
        })
    }
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory (os error 2)".into())
    }
    fn build(&mut self, cfg: &DomainConfig<'_>) -> Result<NewDomain, BuildError> {
        self.log.push("build".into());
        self.built_cfg = Some((
            cfg.name.into(),
            cfg.memory_kib / 1024,
            cfg.start_paused,
            cfg.cmdline.into(),
        ));
        if let Some(e) = self.build_error.take() {
            return Err(e);
        }
        let dom = 7;
        let flags = if cfg.start_paused {
            guest_abi::domctl::XEN_DOMINF_PAUSED
        } else {
            0
        };
        let mut info = dinfo(dom, flags, cfg.memory_kib / 1024);
        info.handle = cfg.handle;
        self.domains.push(info);
        Ok(NewDomain {
            dom,
            console: None,
            store: None,
        })
    }
    fn adopt(&mut self, new: &NewDomain, record: &[u8]) -> Result<(), Errno> {
        self.log.push(format!("adopt {}", new.dom));
        if let Some(e) = self.adopt_error {
            return Err(e);
        }
        let r = Record::decode(record).expect("a valid record");
        self.names.push(ListEntry {
            dom: new.dom.into(),
            name: r.name.clone(),
            created_ns: 0,
        });
        self.records.insert(new.dom, r.clone());
        self.adopted.push(r);
        Ok(())
    }
    fn forget(&mut self, dom: DomId) -> Result<(), Errno> {
        self.log.push(format!("forget {dom}"));
        let before = self.names.len();
        self.names.retain(|n| n.dom != u32::from(dom));
        if before == self.names.len() {
            Err(Errno::ESRCH)
        } else {
            Ok(())
        }
    }
    fn destroy(&mut self, dom: DomId) -> Result<(), Errno> {
        self.log.push(format!("destroy {dom}"));
        self.domains.retain(|d| d.dom != dom);
        Ok(())
    }
    fn pause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.log.push(format!("pause {dom}"));
        Ok(())
    }
    fn unpause(&mut self, dom: DomId) -> Result<(), Errno> {
        let d = self.domains.iter().find(|d| d.dom == dom).unwrap();
        if d.paused { Ok(()) } else { Err(Errno::EINVAL) }
    }
    fn remote_shutdown(&mut self, dom: DomId, reason: u32) -> Result<(), Errno> {
        self.log.push(format!("shutdown {dom} {reason}"));
        if !self.stubborn {
            self.domains.retain(|d| d.dom != dom);
        }
        Ok(())
    }
    fn sched_get(&mut self, dom: DomId) -> Result<DomctlSchedCredit, Errno> {
        Ok(*self.credit.entry(dom).or_insert(DomctlSchedCredit {
            weight: 256,
            cap: 0,
        }))
    }
    fn sched_put(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno> {
        if credit.cap > 100 {
            return Err(Errno::EINVAL);
        }
        self.credit.insert(dom, credit);
        Ok(())
    }
    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno> {
        self.log.push(format!("max_mem {dom} {kib}"));
        Ok(())
    }
    fn vcpu_info(&mut self, dom: DomId, vcpu: u32) -> Result<DomctlGetvcpuinfo, Errno> {
        let n = self.nr_vcpus.get(&dom).copied().unwrap_or(1);
        if vcpu >= n || !self.domains.iter().any(|d| d.dom == dom) {
            return Err(Errno::ESRCH);
        }
        Ok(DomctlGetvcpuinfo {
            vcpu,
            online: 1,
            blocked: 1,
            ..Default::default()
        })
    }
    fn vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        nr_bits: u32,
    ) -> Result<(Vec<u8>, Vec<u8>), Errno> {
        if self.no_affinity {
            return Err(Errno::ENOSYS);
        }
        self.vcpu_info(dom, vcpu).map_err(|_| Errno::EINVAL)?;
        let (h, s) = self
            .affinity
            .get(&(dom, vcpu))
            .copied()
            .unwrap_or((u64::MAX, u64::MAX));
        let bytes = (nr_bits as usize).div_ceil(8);
        let map = |m: u64| m.to_le_bytes()[..bytes.min(8)].to_vec();
        Ok((map(h), map(s)))
    }
    fn set_vcpu_affinity(
        &mut self,
        dom: DomId,
        vcpu: u32,
        hard: Option<&[u8]>,
        soft: Option<&[u8]>,
    ) -> Result<(), Errno> {
        self.vcpu_info(dom, vcpu).map_err(|_| Errno::EINVAL)?;
        let mask = |m: &[u8]| {
            let mut raw = [0u8; 8];
            let n = m.len().min(8);
            raw[..n].copy_from_slice(&m[..n]);
            u64::from_le_bytes(raw)
        };
        let nr_cpus = self.physinfo()?.nr_cpus;
        let online = (1u64 << nr_cpus) - 1;
        let old = self
            .affinity
            .get(&(dom, vcpu))
            .copied()
            .unwrap_or((u64::MAX, u64::MAX));
        let h = hard.map_or(old.0, mask);
        if h & online == 0 {
            return Err(Errno::EINVAL);
        }
        let s = soft.map_or(old.1, mask);
        self.log.push(format!("pin {dom}.{vcpu} {h:#x} {s:#x}"));
        self.affinity.insert((dom, vcpu), (h, s));
        Ok(())
    }
    fn read_console(
        &mut self,
        index: Option<u32>,
        clear: bool,
        buf: &mut [u8],
    ) -> Result<(usize, u32), Errno> {
        let from = index.unwrap_or(0) as usize;
        let n = buf.len().min(self.console.len().saturating_sub(from));
        buf[..n].copy_from_slice(&self.console[from..from + n]);
        if clear {
            self.log.push("clear".into());
        }
        Ok((n, (from + n) as u32))
    }
    fn version_lines(&mut self) -> String {
        xlfmt::info_line("xen_major", 4)
    }
    fn node_lines(&mut self) -> String {
        xlfmt::node_lines("fake", "0.1.0-xenia-dom0", "#1", "x86_64")
    }
    fn mem_offline_info(&mut self) -> Result<(u64, u64), Errno> {
        self.offline.ok_or(Errno::ENOSYS)
    }
    fn now_ns(&mut self) -> u64 {
        // Time passes only while xl sleeps.
        3_725_000_000_000 + self.slept_ms * 1_000_000
    }
    fn wall_s(&mut self) -> u64 {
        13 * 3600
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.slept_ms += ms;
    }
    fn random16(&mut self) -> [u8; 16] {
        [0xff; 16]
    }
    fn xs_write(&mut self, path: &str, value: &str) -> Result<(), Errno> {
        if let Some(e) = self.xs_error {
            return Err(e);
        }
        self.xs.push((path.into(), value.into()));
        if device_node(path) {
            self.tree.insert(path.into(), value.into());
        }
        Ok(())
    }
    fn xs_watched(&mut self, dom: DomId, path: &str) -> Result<bool, Errno> {
        Ok(self.watched.iter().any(|(d, p)| *d == dom && p == path))
    }
    fn xs_read(&mut self, path: &str) -> Result<Vec<u8>, Errno> {
        if device_node(path) {
            let v = self.tree.get(path).ok_or(Errno::ENOENT)?;
            if self.backend_closes && path.ends_with("/state") && v == "5" {
                self.tree.insert(path.into(), "6".into());
                return Ok(b"6".to_vec());
            }
            return Ok(v.clone().into_bytes());
        }
        // Every domain but 7 has a home.
        if path.starts_with("/local/domain/7/") {
            return Err(Errno::ENOENT);
        }
        Ok(b"3".to_vec())
    }
    fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, Errno> {
        let prefix = format!("{path}/");
        let mut names: Vec<String> = self
            .tree
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or("").to_string())
            .collect();
        names.dedup();
        if names.is_empty() && !self.tree.contains_key(path) {
            return Err(Errno::ENOENT);
        }
        Ok(names)
    }
    fn xs_rm(&mut self, path: &str) -> Result<(), Errno> {
        self.log.push(format!("rm {path}"));
        let prefix = format!("{path}/");
        self.tree
            .retain(|k, _| k != path && !k.starts_with(&prefix));
        Ok(())
    }
    fn xs_mkdir(&mut self, path: &str) -> Result<(), Errno> {
        self.tree.entry(path.into()).or_default();
        Ok(())
    }
    fn xs_set_perms(&mut self, path: &str, perms: &[String]) -> Result<(), Errno> {
        self.perms.insert(path.into(), perms.to_vec());
        Ok(())
    }
    fn xs_begin(&mut self) -> Result<(), Errno> {
        if !self.tx_support {
            return Err(Errno::ENOSYS);
        }
        assert!(self.tx_snapshot.is_none(), "transactions nested");
        self.tx_snapshot = Some(self.tree.clone());
        Ok(())
    }
    fn xs_end(&mut self, commit: bool) -> Result<(), Errno> {
        let snapshot = self.tx_snapshot.take().expect("no transaction open");
        if !commit {
            self.tree = snapshot;
            return Ok(());
        }
        if self.tx_conflicts > 0 {
            self.tx_conflicts -= 1;
            self.tree = snapshot;
            return Err(Errno::EAGAIN);
        }
        self.tx_commits += 1;
        Ok(())
    }
    fn stat_target(&mut self, path: &str) -> Result<TargetKind, Errno> {
        self.targets.get(path).copied().ok_or(Errno::ENOENT)
    }
    fn record(&mut self, dom: DomId) -> Result<Record, Errno> {
        self.records.get(&dom).cloned().ok_or(Errno::ESRCH)
    }
    fn rename(&mut self, dom: DomId, name: &str) -> Result<(), Errno> {
        if name == DOM0_NAME
            || self
                .names
                .iter()
                .any(|n| n.name == name && n.dom != u32::from(dom))
        {
            return Err(Errno::EEXIST);
        }
        let r = self.records.get_mut(&dom).ok_or(Errno::ESRCH)?;
        r.name = name.into();
        for n in self.names.iter_mut().filter(|n| n.dom == u32::from(dom)) {
            n.name = name.into();
        }
        self.log.push(format!("rename {dom} {name}"));
        Ok(())
    }
    fn debug_keys(&mut self, keys: &[u8]) -> Result<(), Errno> {
        if let Some(e) = self.keys_error {
            return Err(e);
        }
        self.log
            .push(format!("keys {}", String::from_utf8_lossy(keys)));
        Ok(())
    }
    fn sched_credit_params(&mut self, pool: u32) -> Result<(u32, u32, u32), Errno> {
        if pool != 0 {
            return Err(Errno::ESRCH);
        }
        if self.no_pool_params {
            return Err(Errno::ENOSYS);
        }
        Ok((30, 0, 0))
    }
}

/// Runs `f` and returns (result, stdout, stderr).
fn run<T>(
    sys: &mut Fake,
    f: impl FnOnce(&mut Fake, &mut Io<'_>) -> VerbResult<T>,
) -> (VerbResult<T>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let r = f(
        sys,
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    (
        r,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn create(
    sys: &mut Fake,
    cfg: &str,
    over: &[&str],
    paused: bool,
) -> (VerbResult<DomId>, String, String) {
    let over: Vec<String> = over.iter().map(|s| s.to_string()).collect();
    let opts = CreateOpts {
        paused,
        ..CreateOpts::default()
    };
    run(sys, |s, io| super::create(s, io, cfg, &over, opts))
}

#[test]
fn create_succeeds_and_hands_the_domain_over() {
    let mut f = Fake::new();
    let (r, out, err) = create(&mut f, "web.cfg", &["memory=48"], false);
    assert_eq!(r, Ok(7));
    assert_eq!(out, "Domain web created with id 7\n");
    assert_eq!(
        err,
        "Parsing config from /etc/xen/web.cfg\n\
         xl: warning: /etc/xen/web.cfg:4: unknown key 'bogus' ignored\n"
    );
    assert_eq!(f.built_cfg, Some(("web".into(), 48, false, String::new())));
    assert_eq!(
        f.adopted,
        [Record {
            name: "web".into(),
            config: "/etc/xen/web.cfg".into(),
            overrides: vec!["memory=48".into()],
        }]
    );
    assert_eq!(f.log, ["build", "adopt 7"]);
}

#[test]
fn create_paused() {
    let mut f = Fake::new();
    let (r, out, _) = create(&mut f, "/etc/xen/web.cfg", &[], true);
    assert_eq!(r, Ok(7));
    assert_eq!(
        out,
        "Domain web created with id 7, paused (`xl unpause web` starts it)\n"
    );
    assert!(f.built_cfg.unwrap().2, "start_paused");
}

#[test]
fn create_with_cpus_places_vcpus_before_they_run() {
    // One list for every vCPU: built paused, pinned, then started.
    let mut f = Fake::new();
    f.nr_vcpus.insert(7, 2);
    let (r, out, _) = create(&mut f, "web.cfg", &["vcpus=2", "cpus=\"1\""], false);
    assert_eq!(r, Ok(7), "{out}");
    assert!(
        f.built_cfg.as_ref().unwrap().2,
        "built paused, to be pinned first"
    );
    assert_eq!(f.affinity[&(7, 0)].0 & 0b11, 0b10);
    assert_eq!(f.affinity[&(7, 1)].0 & 0b11, 0b10);
    assert_eq!(out, "Domain web created with id 7\n");
    // A list per vCPU; a vCPU past the list keeps every CPU; cpus_soft likewise.
    let mut f = Fake::new();
    f.nr_vcpus.insert(7, 3);
    let (r, _, _) = create(
        &mut f,
        "web.cfg",
        &["vcpus=3", "cpus=[\"1\", \"0\"]", "cpus_soft=\"0\""],
        true,
    );
    assert_eq!(r, Ok(7));
    assert_eq!(f.affinity[&(7, 0)].0 & 0b11, 0b10);
    assert_eq!(f.affinity[&(7, 1)].0 & 0b11, 0b01);
    assert_eq!(f.affinity[&(7, 2)].0, u64::MAX, "no hard list for vCPU 2");
    assert_eq!(
        f.affinity[&(7, 2)].1 & 0b11,
        0b01,
        "cpus_soft for every vCPU"
    );
}

#[test]
fn create_with_bad_cpus_says_why() {
    // Syntax: refused while parsing, with the line, nothing built.
    let mut f = Fake::new();
    let (r, _, _) = create(&mut f, "web.cfg", &["cpus=\"1-x\""], false);
    let e = r.unwrap_err();
    assert!(e.contains("'cpus': Invalid pcpu range: 1-x."), "{e}");
    assert!(f.log.is_empty(), "{:?}", f.log);
    // No CPU of this host (2 CPUs) in the list: the domain is destroyed again.
    let mut f = Fake::new();
    let (r, _, _) = create(&mut f, "web.cfg", &["cpus=\"5\""], false);
    let e = r.unwrap_err();
    assert!(e.contains("cannot pin vCPU 0 as cpus= says"), "{e}");
    assert!(e.contains("domain 7 was destroyed again"), "{e}");
    assert!(f.log.contains(&"destroy 7".to_string()), "{:?}", f.log);
}

#[test]
fn create_refusals_build_nothing() {
    let mut f = Fake::new();
    let (r, _, err) = create(&mut f, "nope.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot read config file nope.cfg (looked for /nope.cfg and /etc/xen/nope.cfg): \
         No such file or directory (os error 2)"
    );
    assert_eq!(err, "");

    let (r, _, _) = create(&mut f, "web.cfg", &["memory=abc"], false);
    let e = r.unwrap_err();
    assert!(
        e.starts_with("cannot create a domain from /etc/xen/web.cfg: <command line>:1:"),
        "{e}"
    );

    let (r, _, _) = create(&mut f, "web.cfg", &["name=\"hello\""], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"hello\": a domain named \"hello\" already exists; pick another name \
         (name=... on the command line)"
    );

    let (r, _, _) = create(&mut f, "web.cfg", &["memory=1024"], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"web\": it needs 1024 MiB but only 512 MiB are free (lower memory= or \
         destroy a domain first)"
    );

    f.files.remove("/boot/web.elf");
    let (r, _, _) = create(&mut f, "web.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"web\": /etc/xen/web.cfg:2: cannot read kernel /boot/web.elf: No such \
         file or directory (os error 2)"
    );
    assert!(f.log.is_empty(), "{:?}", f.log);
}

#[test]
fn create_reports_build_failures() {
    let mut f = Fake::new();
    f.build_error = Some(BuildError::Hypervisor {
        step: Step::Populate,
        errno: Errno::ENOMEM,
    });
    let (r, _, _) = create(&mut f, "web.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"web\": the hypervisor refused giving it memory: ENOMEM (12)"
    );
    assert_eq!(f.log, ["build"]);
}

#[test]
fn a_refused_adoption_destroys_the_domain() {
    let mut f = Fake::new();
    f.adopt_error = Some(Errno::ENOSPC);
    let (r, _, _) = create(&mut f, "web.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"web\": the dom0 kernel refused to take it over (ENOSPC (28)), so domain \
         7 was destroyed again; check `xl dmesg` and try again"
    );
    assert_eq!(f.log, ["build", "adopt 7", "destroy 7"]);
    assert!(!f.domains.iter().any(|d| d.dom == 7));
}

fn list_of(f: &mut Fake, opts: ListOpts, which: Option<&str>) -> (VerbResult, String, String) {
    run(f, |s, io| list(s, io, opts, which))
}

#[test]
fn list_names_domains() {
    let mut f = Fake::new();
    f.domains.push(dinfo(9, XEN_DOMINF_PAUSED, 16));
    let (r, out, _) = list_of(&mut f, ListOpts::default(), None);
    r.unwrap();
    assert_eq!(
        out,
        "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
         Domain-0                                     0   256     1     -b----       0.0\n\
         hello                                        3    32     1     -b----       0.0\n\
         (unnamed)                                    9    16     1     --p---       0.0\n"
    );
    let (r, out, _) = list_of(&mut f, ListOpts::default(), Some("hello"));
    r.unwrap();
    assert_eq!(out.lines().count(), 2);
    let (r, _, _) = list_of(&mut f, ListOpts::default(), Some("web"));
    assert_eq!(r.unwrap_err(), "no domain named \"web\"; see `xl list`");
}

#[test]
fn list_columns() {
    let mut f = Fake::new();
    let every = ListOpts {
        long: false,
        columns: dom0_tools::xlfmt::ListColumns {
            verbose: true,
            context: true,
            cpupool: true,
            numa: true,
        },
    };
    let (r, out, _) = list_of(&mut f, every, Some("hello"));
    r.unwrap();
    // Rendered by C's printf from Xen's formats (see xlfmt's tests).
    let header = concat!(
        "Name                                        ID   Mem VCPUs\tState\tTime(s)",
        "   UUID                            Reason-Code\tSecurity Label",
        "         Cpupool NODE Affinity\n"
    );
    let row = concat!(
        "hello                                        3    32     1     -b----       0.0 ",
        "03030303-0303-0303-0303-030303030303        -                -          Pool-0 all\n"
    );
    assert_eq!(out, format!("{header}{row}"));
}

#[test]
fn list_long_shows_the_configuration() {
    let mut f = Fake::new();
    f.nr_vcpus.insert(3, 2);
    let long = ListOpts {
        long: true,
        ..ListOpts::default()
    };
    let (r, out, err) = list_of(&mut f, long, Some("3"));
    r.unwrap();
    assert_eq!(err, "");
    assert_eq!(
        out,
        r#"[
    {
        "domid": 3,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "hello",
                "uuid": "03030303-0303-0303-0303-030303030303"
            },
            "b_info": {
                "max_vcpus": 2,
                "avail_vcpus": [
                    0,
                    1
                ],
                "max_memkb": 32768,
                "target_memkb": 32768,
                "sched_params": {
                    "sched": "credit",
                    "weight": 256,
                    "cap": 0
                },
                "kernel": "/boot/echo.elf",
                "cmdline": "x=1",
                "type.pv": {

                },
                "arch_arm": {

                },
                "arch_x86": {

                }
            },
            "on_reboot": "restart",
            "on_crash": "preserve",
            "on_soft_reset": "restart"
        }
    }
]

"#
    );
    // dom0: the hypervisor's facts only; a record whose file went away: a warning.
    f.files.remove("/etc/xen/hello.cfg");
    let (r, out, err) = list_of(&mut f, long, None);
    r.unwrap();
    assert!(out.contains("\"name\": \"Domain-0\""), "{out}");
    assert!(!out.contains("kernel"), "{out}");
    assert!(
        err.starts_with("xl: warning: domain 3 was made from /etc/xen/hello.cfg, which cannot"),
        "{err}"
    );
}

#[test]
fn destroy_forgets_and_refuses_dom0() {
    let mut f = Fake::new();
    let (r, _, err) = run(&mut f, |s, io| destroy(s, io, "hello", false));
    r.unwrap();
    assert_eq!(err, "");
    assert_eq!(f.log, ["destroy 3", "forget 3"]);
    // dom0 without -f: Xen's words, reported (main adds nothing), no call.
    let (r, _, err) = run(&mut f, |s, io| destroy(s, io, "0", false));
    assert_eq!(r.unwrap_err(), "");
    assert_eq!(
        err,
        "Not destroying domain 0; use -f to force.\nThis can only be done when using a \
         disaggregated hardware domain and toolstack.\n\n"
    );
    assert_eq!(f.log.len(), 2);
    let (r, _, _) = run(&mut f, |s, io| destroy(s, io, "3", true));
    assert_eq!(r.unwrap_err(), "no domain with id 3; see `xl list`");
}

#[test]
fn shutdown_and_wait() {
    let mut f = Fake::new();
    let (r, _, err) = run(&mut f, |s, io| shutdown(s, io, Some("hello"), false, 1));
    r.unwrap();
    assert_eq!(
        err,
        "Shutting down domain 3\nWaiting for 1 domains\nDomain 3 has been shut down, reason code 0\n"
    );
    assert_eq!(f.log, ["shutdown 3 0"]);

    let mut f = Fake::new();
    f.stubborn = true;
    let (r, _, _) = run(&mut f, |s, io| shutdown(s, io, Some("3"), true, 1));
    assert!(r.unwrap_err().contains("not shut down after 60 s"));
    assert_eq!(f.slept_ms, WAIT_LIMIT_MS, "bounded");
    assert_eq!(f.log, ["shutdown 3 1"]);

    // dom0 is refused by name; -a passes it by.
    let mut f = Fake::new();
    assert!(
        run(&mut f, |s, io| shutdown(s, io, Some("0"), false, 0))
            .0
            .is_err()
    );
    f.add(5, "web", 16);
    let (r, _, err) = run(&mut f, |s, io| shutdown(s, io, None, false, 2));
    r.unwrap();
    assert_eq!(f.log, ["shutdown 3 0", "shutdown 5 0"]);
    assert_eq!(
        err,
        "Shutting down domain 3\nShutting down domain 5\nWaiting for 2 domains\n\
         Domain 3 has been destroyed\nDomain 5 has been destroyed\n"
    );
}

#[test]
fn shutdown_wait_sees_the_reason() {
    // A domain left shut down (on_poweroff=preserve): -w reports its reason, -ww keeps
    // waiting for it to go.
    let mut f = Fake::new();
    f.stubborn = true;
    let i = f.domains.iter().position(|d| d.dom == 3).unwrap();
    f.domains[i].shutdown = Some(guest_abi::sched::SHUTDOWN_REBOOT);
    let (r, _, err) = run(&mut f, |s, io| shutdown(s, io, Some("hello"), true, 1));
    r.unwrap();
    assert!(
        err.ends_with("Domain 3 has been shut down, reason code 1\n"),
        "{err}"
    );
    let (r, _, err) = run(&mut f, |s, io| shutdown(s, io, Some("hello"), true, 2));
    assert!(r.unwrap_err().contains("not gone after 60 s"));
    assert!(
        err.contains("reason code 1\nDomain 3 continue waiting for death\n"),
        "{err}"
    );
}

#[test]
fn unpause_says_why() {
    let mut f = Fake::new();
    assert_eq!(
        pause(&mut f, "hello", false).unwrap_err(),
        "cannot unpause domain 3 (hello): it is not paused"
    );
    pause(&mut f, "hello", true).unwrap();
    assert!(pause(&mut f, "Domain-0", true).is_err());
}

fn credit(f: &mut Fake, args: &[&str]) -> (VerbResult, String, String) {
    let mut all = vec!["xl", "sched-credit"];
    all.extend_from_slice(args);
    let crate::cli::Parsed::Run(i) = crate::cli::parse(all) else {
        panic!("{args:?}")
    };
    let crate::cli::Command::SchedCredit(o) = i.command else {
        panic!()
    };
    run(f, |s, io| sched_credit(s, io, &o))
}

#[test]
fn sched_credit_show_and_set() {
    let mut f = Fake::new();
    let (r, out, _) = credit(&mut f, &[]);
    r.unwrap();
    assert_eq!(
        out,
        "Cpupool Pool-0: tslice=30ms ratelimit=0us migration-delay=0us\n\
         Name                                ID Weight  Cap\n\
         Domain-0                             0    256    0\n\
         hello                                3    256    0\n"
    );
    let (r, out, _) = credit(&mut f, &["-s"]);
    r.unwrap();
    assert_eq!(
        out,
        "Cpupool Pool-0: tslice=30ms ratelimit=0us migration-delay=0us\n"
    );
    let (r, out, _) = credit(&mut f, &["-s", "-p", "0"]);
    r.unwrap();
    assert!(out.starts_with("Cpupool Pool-0: "));
    let (r, _, err) = credit(&mut f, &["-s", "-p", "Pool-1"]);
    assert_eq!(
        (r.unwrap_err().as_str(), err.as_str()),
        ("", "unknown cpupool 'Pool-1'\n")
    );
    let (r, _, err) = credit(&mut f, &["-s", "-t", "10"]);
    assert_eq!(r.unwrap_err(), "");
    assert!(
        err.ends_with("\nlibxl_sched_credit_params_set failed.\n"),
        "{err}"
    );
    f.no_pool_params = true;
    let (r, out, err) = credit(&mut f, &["-s"]);
    r.unwrap();
    assert_eq!(out, "Cpupool Pool-0: [sched params unavailable]\n");
    assert_eq!(err, "libxl_sched_credit_params_get failed.\n");

    let (r, _, _) = credit(&mut f, &["-d", "hello", "-w", "512"]);
    r.unwrap();
    assert_eq!(
        f.credit[&3],
        DomctlSchedCredit {
            weight: 512,
            cap: 0
        }
    );
    let (r, out, _) = credit(&mut f, &["-d", "hello"]);
    r.unwrap();
    assert_eq!(
        out,
        "Name                                ID Weight  Cap\n\
         hello                                3    512    0\n"
    );
    let (r, _, _) = credit(&mut f, &["-d", "hello", "-c", "150"]);
    let e = r.unwrap_err();
    assert!(e.contains("at most 100 per vCPU"), "{e}");
    assert!(
        e.ends_with("\nlibxl_domain_sched_params_set failed."),
        "{e}"
    );
    for bad in ["0", "x", "70000"] {
        let (r, _, _) = credit(&mut f, &["-d", "hello", "-w", bad]);
        assert!(
            r.unwrap_err().contains("the weight must be 1 to 65535"),
            "{bad}"
        );
    }
    let (r, _, _) = credit(&mut f, &["-d", "hello", "-c", "-1"]);
    assert!(r.unwrap_err().contains("the cap must be"));
}

#[test]
fn memory_verbs_are_honest() {
    let mut f = Fake::new();
    let e = mem_set(&mut f, "hello", "64m").unwrap_err();
    assert!(e.contains("balloon driver"), "{e}");
    assert!(
        f.xs.is_empty(),
        "no target written for a domain that does not listen"
    );
    mem_set(&mut f, "hello", "32m").unwrap();
    mem_max(&mut f, "hello", "64m").unwrap();
    assert_eq!(f.log, ["max_mem 3 65536"]);
    assert!(
        mem_max(&mut f, "hello", "16m")
            .unwrap_err()
            .contains("already has")
    );
    assert!(
        mem_max(&mut f, "hello", "lots")
            .unwrap_err()
            .contains("invalid memory size")
    );
}

#[test]
fn dmesg_reads_everything_then_clears() {
    let mut f = Fake::new();
    f.console = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (r, out, _) = run(&mut f, |s, io| dmesg(s, io, true));
    r.unwrap();
    assert_eq!(out.as_bytes(), &f.console[..]);
    assert_eq!(f.log, ["clear"]);
}

#[test]
fn info_vcpu_list_uptime() {
    let mut f = Fake::new();
    let (r, out, _) = run(&mut f, |s, io| info(s, io, false, None));
    r.unwrap();
    // xl's order: uname's lines, physinfo's, xen_version's, xend_config_format.
    let keys: Vec<&str> = out
        .lines()
        .map(|l| l.split(':').next().unwrap_or("").trim_end())
        .collect();
    assert_eq!(
        keys,
        [
            "host",
            "release",
            "version",
            "machine",
            "nr_cpus",
            "max_cpu_id",
            "nr_nodes",
            "cores_per_socket",
            "threads_per_core",
            "cpu_mhz",
            "hw_caps",
            "virt_caps",
            "total_memory",
            "free_memory",
            "sharing_freed_memory",
            "sharing_used_memory",
            "outstanding_claims",
            "free_cpus",
            "xen_major",
            "xend_config_format",
        ],
        "{out}"
    );
    assert!(
        out.starts_with(
            "host                   : fake\nrelease                : 0.1.0-xenia-dom0\n"
        )
    );
    assert!(out.ends_with("xen_major              : 4\nxend_config_format     : 4\n"));
    // One field, by prefix: its value only.
    let (r, out, _) = run(&mut f, |s, io| info(s, io, false, Some("nr_cpus")));
    r.unwrap();
    assert_eq!(out, "2\n");
    let (r, out, _) = run(&mut f, |s, io| info(s, io, false, Some("xend")));
    r.unwrap();
    assert_eq!(out, "4\n");
    // -n: the topology and NUMA sections after free_cpus, before the Xen lines.
    let (r, out, _) = run(&mut f, |s, io| info(s, io, true, None));
    r.unwrap();
    let topo = out.find("cpu_topology").unwrap();
    assert!(out.find("free_cpus").unwrap() < topo && topo < out.find("xen_major").unwrap());
    assert!(out.contains("numa_info              :\n"), "{out}");
    // With the offlining count, its line comes last, after every line Xen's xl has.
    f.offline = Some((2, 1));
    let (r, out, _) = run(&mut f, |s, io| info(s, io, false, None));
    r.unwrap();
    assert!(
        out.ends_with("xend_config_format     : 4\nofflined_pages         : 2\n"),
        "{out}"
    );
    f.offline = None;

    let (r, out, _) = run(&mut f, |s, io| vcpu_list(s, io, &["hello".into()]));
    r.unwrap();
    assert_eq!(
        out.lines().nth(1).unwrap(),
        "hello                                3     0    0   -b-       0.0  all / all"
    );

    let (r, out, err) = run(&mut f, |s, io| uptime(s, io, false, &[]));
    r.unwrap();
    assert_eq!(
        out,
        "Name                                ID Uptime\nDomain-0                             0  1:02:05\n\
         hello                                3  0:02:05\n"
    );
    assert!(err.is_empty(), "{err}");
}

#[test]
fn vcpu_pin_and_list() {
    let mut f = Fake::new();
    f.nr_cpus = 4;
    f.nr_vcpus.insert(3, 2);
    let list = |f: &mut Fake| {
        let (r, out, _) = run(f, |s, io| vcpu_list(s, io, &["hello".into()]));
        r.unwrap();
        out
    };
    assert_eq!(
        list(&mut f).lines().nth(1).unwrap(),
        "hello                                3     0    0   -b-       0.0  all / all"
    );

    // One vCPU to CPU 2; then every vCPU with Xen's syntax, soft too.
    let (r, out, err) = run(&mut f, |s, _| vcpu_pin(s, "hello", "1", "2", None));
    r.unwrap();
    assert!(out.is_empty() && err.is_empty(), "{out}{err}");
    assert_eq!(f.log.last().unwrap(), "pin 3.1 0x4 0xffffffffffffffff");
    let out = list(&mut f);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].ends_with("  all / all"), "{out}");
    assert!(lines[2].ends_with("  2 / all"), "{out}");

    let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "3", "all", "0-3,^2", Some("1")));
    r.unwrap();
    let out = list(&mut f);
    for line in out.lines().skip(1) {
        assert!(line.ends_with("  0-1,3 / 1"), "{out}");
    }
    // `-` leaves the hard mask, a missing soft list leaves the soft one.
    let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "hello", "0", "-", Some("all")));
    r.unwrap();
    assert_eq!(f.log.last().unwrap(), "pin 3.0 0xb 0xff");
    let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "hello", "0", "all", None));
    r.unwrap();
    assert_eq!(f.log.last().unwrap(), "pin 3.0 0xff 0xff");

    // Refusals: the message says why, nothing changes.
    let before = f.log.len();
    for (vcpu, hard, want) in [
        ("x", "1", "Error: Invalid argument x as VCPU."),
        ("0", "1-", "Invalid pcpu range: 1-."),
        ("0", "^all", "Can't combine \"^\" and \"all\"."),
    ] {
        let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "hello", vcpu, hard, None));
        assert_eq!(r.unwrap_err(), want);
    }
    let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "hello", "0", "^1", None));
    let e = r.unwrap_err();
    assert!(e.starts_with("Could not set affinity for vcpu `0'"), "{e}");
    let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "hello", "5", "1", None));
    assert!(r.unwrap_err().contains("vcpu `5'"));
    let (r, _, _) = run(&mut f, |s, _| vcpu_pin(s, "nosuch", "0", "1", None));
    assert!(r.is_err());
    assert_eq!(f.log.len(), before, "a refusal changed something");

    // A hypervisor without the affinity domctls: every vCPU shows `all`.
    f.no_affinity = true;
    let out = list(&mut f);
    assert!(
        out.lines().nth(2).unwrap().ends_with("  all / all"),
        "{out}"
    );
}

#[test]
fn helpers() {
    assert_eq!(config_candidates("/a/b.cfg"), ["/a/b.cfg"]);
    assert_eq!(config_candidates("./b.cfg"), ["/b.cfg", "/etc/xen/b.cfg"]);
    let u = uuid_v4([0; 16]);
    assert_eq!(uuid_string(&u), "00000000-0000-4000-8000-000000000000");
}

#[test]
fn vcpu_set_writes_availability() {
    let mut f = Fake::new();
    f.nr_cpus = 4;
    f.nr_vcpus.insert(3, 4);
    vcpu_set(&mut f, "hello", "1", true).unwrap();
    let want = |n: u32| -> Vec<(String, String)> {
        (0..4)
            .map(|v| {
                (
                    format!("/local/domain/3/cpu/{v}/availability"),
                    (if v < n { "online" } else { "offline" }).to_string(),
                )
            })
            .collect()
    };
    assert_eq!(f.xs, want(1));
    f.xs.clear();
    vcpu_set(&mut f, "3", "4", true).unwrap();
    assert_eq!(f.xs, want(4));
}

#[test]
fn vcpu_set_refusals() {
    let mut f = Fake::new();
    f.nr_cpus = 2;
    f.nr_vcpus.insert(3, 4);
    let err =
        |f: &mut Fake, count: &str, check: bool| vcpu_set(f, "hello", count, check).unwrap_err();
    assert_eq!(err(&mut f, "x", true), "Error: Invalid argument.");
    assert_eq!(err(&mut f, "-1", true), "Error: Invalid argument.");
    assert_eq!(
        err(&mut f, "0", true),
        "Requested 0 VCPUs!\nlibxl_set_vcpuonline failed domid=3 max_vcpus=0, rc: -6"
    );
    assert_eq!(
        err(&mut f, "5", false),
        "Requested 5 VCPUs, however maxcpus is 4!\nlibxl_set_vcpuonline failed domid=3 max_vcpus=5, rc: -6"
    );
    assert_eq!(
        err(&mut f, "3", true),
        "You are overcommmitting! You have 2 physical CPUs and want 3 vCPUs! Aborting, use --ignore-host to continue"
    );
    assert!(f.xs.is_empty(), "nothing written: {:?}", f.xs);
    vcpu_set(&mut f, "hello", "3", false).unwrap();
    assert_eq!(f.xs.len(), 4);
    assert!(
        vcpu_set(&mut f, "Domain-0", "1", true)
            .unwrap_err()
            .contains("Domain-0")
    );
    f.add(7, "foreign", 16);
    let e = vcpu_set(&mut f, "foreign", "1", false).unwrap_err();
    assert!(
        e.contains("domain 7 has no xenstore home /local/domain/7"),
        "{e}"
    );
    f.xs_error = Some(Errno::EACCES);
    let e = vcpu_set(&mut f, "hello", "2", false).unwrap_err();
    assert!(
        e.starts_with("libxl_set_vcpuonline failed domid=3 max_vcpus=2, rc: -3"),
        "{e}"
    );
}

#[test]
fn create_quiet_dry_run_and_debug() {
    // Quiet: nothing said on success; the domain is made.
    let mut f = Fake::new();
    let over = vec!["memory=48".to_string()];
    let quiet = CreateOpts {
        quiet: true,
        ..CreateOpts::default()
    };
    let (r, out, err) = run(&mut f, |s, io| {
        super::create(s, io, "web.cfg", &over, quiet)
    });
    assert_eq!(r, Ok(7));
    assert_eq!(out, "");
    assert_eq!(
        err,
        "xl: warning: /etc/xen/web.cfg:4: unknown key 'bogus' ignored\n"
    );

    // Dry run: the configuration as libxl's JSON, nothing built or handed over.
    let mut f = Fake::new();
    let (r, out, err) = run(&mut f, |s, io| {
        create_dry_run(s, io, "web.cfg", &over, false)
    });
    r.unwrap();
    assert!(f.log.is_empty(), "{:?}", f.log);
    assert!(
        err.starts_with("Parsing config from /etc/xen/web.cfg\n"),
        "{err}"
    );
    assert!(
        out.starts_with(
            "{\n    \"c_info\": {\n        \"type\": \"pv\",\n        \"name\": \"web\",\n        \
             \"uuid\": \"ffffffff-ffff-4fff-bfff-ffffffffffff\"\n    },\n    \"b_info\": {\n        \
             \"max_vcpus\": 1,\n        \"avail_vcpus\": [\n            0\n        ],\n        \
             \"max_memkb\": 49152,\n        \"target_memkb\": 49152,\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("        \"kernel\": \"/boot/web.elf\",\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "    },\n    \"on_reboot\": \"restart\",\n    \"on_soft_reset\": \"restart\"\n}\n"
        ),
        "{out}"
    );
    // A refused configuration is refused by the dry run too.
    let (r, _, _) = run(&mut f, |s, io| {
        create_dry_run(s, io, "web.cfg", &["memory=x".into()], true)
    });
    let e = r.unwrap_err();
    assert!(
        e.starts_with("cannot create a domain from /etc/xen/web.cfg: <command line>:1:"),
        "{e}"
    );

    // Held (`create -c`): built paused, announced as created (not as paused): the caller
    // starts it once the console is attached.
    let mut f = Fake::new();
    let hold = CreateOpts {
        hold: true,
        ..CreateOpts::default()
    };
    let (r, out, _) = run(&mut f, |s, io| super::create(s, io, "web.cfg", &[], hold));
    let dom = r.unwrap();
    assert!(out.contains(&format!("created with id {dom}\n")), "{out}");
    assert!(!out.contains("paused"), "{out}");
    let held = f.domains.iter().find(|d| d.dom == dom).unwrap();
    assert!(held.paused, "{held:?}");
    // Debug: the same JSON on stderr, then the domain is made.
    let mut f = Fake::new();
    let debug = CreateOpts {
        debug: true,
        ..CreateOpts::default()
    };
    let (r, _, err) = run(&mut f, |s, io| super::create(s, io, "web.cfg", &[], debug));
    assert_eq!(r, Ok(7));
    assert!(err.contains("\"c_info\": {\n"), "{err}");
    assert_eq!(f.log, ["build", "adopt 7"]);
}

#[test]
fn domid_domname_vm_list() {
    let mut f = Fake::new();
    f.domains.push(dinfo(9, 0, 16));
    let (r, out, _) = run(&mut f, |s, io| domid(s, io, "hello"));
    r.unwrap();
    assert_eq!(out, "3\n");
    let (r, out, _) = run(&mut f, |s, io| domid(s, io, "Domain-0"));
    r.unwrap();
    assert_eq!(out, "0\n");
    for name in ["nope", "(unnamed)"] {
        let (r, out, err) = run(&mut f, |s, io| domid(s, io, name));
        assert_eq!((r.unwrap_err().as_str(), out.as_str()), ("", ""));
        assert_eq!(
            err,
            format!("Can't get domid of domain name '{name}', maybe this domain does not exist.\n")
        );
    }
    for (id, want) in [("3", "hello\n"), ("0", "Domain-0\n"), (" 3x", "hello\n")] {
        let (r, out, _) = run(&mut f, |s, io| domname(s, io, id));
        r.unwrap();
        assert_eq!(out, want, "{id:?}");
    }
    let (r, _, err) = run(&mut f, |s, io| domname(s, io, "x"));
    assert_eq!(
        (r.unwrap_err().as_str(), err.as_str()),
        ("", "Invalid domain id.\n\n")
    );
    // A domain without a name (not made by xl), and ids past uint32_t, as C converts them.
    for (id, shown) in [("9", "9"), ("4294967299", "3")] {
        let (r, out, err) = run(&mut f, |s, io| domname(s, io, id));
        if shown == "3" {
            r.unwrap();
            assert_eq!(out, "hello\n");
            continue;
        }
        assert_eq!(r.unwrap_err(), "");
        assert_eq!(
            err,
            format!(
                "Can't get domain name of domain id '{shown}', maybe this domain does not exist.\n"
            )
        );
    }
    let (r, out, _) = run(&mut f, vm_list);
    r.unwrap();
    assert_eq!(
        out,
        "UUID                                  ID    name\n\
         00000000-0000-0000-0000-000000000000  0    Domain-0                      \n\
         03030303-0303-0303-0303-030303030303  3    hello                         \n\
         09090909-0909-0909-0909-090909090909  9    (unnamed)                     \n"
    );
}

#[test]
fn rename_through_dom0s_kernel() {
    let mut f = Fake::new();
    f.add(5, "web", 16);
    let (r, _, err) = run(&mut f, |s, io| rename(s, io, "hello", "echo1"));
    r.unwrap();
    assert_eq!(err, "");
    assert_eq!(f.log, ["rename 3 echo1"]);
    assert_eq!(f.records[&3].name, "echo1");
    let (r, out, _) = run(&mut f, |s, io| domid(s, io, "echo1"));
    r.unwrap();
    assert_eq!(out, "3\n");
    // Refusals: Xenia's reason, then Xen's line; nothing changes.
    for (dom, new, why) in [
        (
            "echo1",
            "web",
            "xl: a domain named \"web\" already exists\n",
        ),
        (
            "echo1",
            "Domain-0",
            "xl: a domain named \"Domain-0\" already exists\n",
        ),
        (
            "echo1",
            "12",
            "xl: \"12\" is all digits and would read as a domain id\n",
        ),
        (
            "echo1",
            "a b",
            "xl: \"a b\" contains ' ', which names may not\n",
        ),
        ("echo1", "", "xl: a domain name cannot be empty\n"),
        ("0", "dom0", "xl: dom0 is always Domain-0 under Xenia\n"),
        (
            "web",
            "w2",
            "xl: dom0's kernel keeps no record of domain 5 (xl did not create it), so it has no name to change\n",
        ),
    ] {
        let (r, _, err) = run(&mut f, |s, io| rename(s, io, dom, new));
        assert_eq!(r.unwrap_err(), "", "{new}");
        assert_eq!(err, format!("{why}Can't rename domain '{dom}'.\n"));
    }
    assert_eq!(f.log, ["rename 3 echo1"]);
    let (r, _, _) = run(&mut f, |s, io| rename(s, io, "nope", "x"));
    assert_eq!(r.unwrap_err(), "no domain named \"nope\"; see `xl list`");
}

#[test]
fn sysrq_and_debug_keys() {
    let mut f = Fake::new();
    sysrq(&mut f, "hello", 's').unwrap();
    assert_eq!(
        f.xs,
        [("/local/domain/3/control/sysrq".to_string(), "s".to_string())]
    );
    f.xs_error = Some(Errno::EACCES);
    assert!(
        sysrq(&mut f, "hello", 's')
            .unwrap_err()
            .contains("xenstore refused")
    );
    let (r, _, _) = run(&mut f, |s, io| debug_keys(s, io, "qm"));
    r.unwrap();
    assert_eq!(f.log, ["keys qm"]);
    f.keys_error = Some(Errno::EINVAL);
    let (r, _, err) = run(&mut f, |s, io| debug_keys(s, io, "q"));
    assert_eq!(r.unwrap_err(), "");
    assert_eq!(
        err,
        "xl: the hypervisor said EINVAL (22)\ncannot send debug keys: q\n"
    );
}

#[test]
fn vcpu_pin_force_and_dry_run() {
    let mut f = Fake::new();
    f.nr_cpus = 4;
    f.nr_vcpus.insert(3, 2);
    let force = PinOpts {
        force: true,
        dry_run: false,
    };
    assert_eq!(
        vcpu_pin_with(&mut f, None, "hello", "all", "1", None, force).unwrap_err(),
        "Error: --force and 'all' as VCPU not allowed."
    );
    vcpu_pin_with(&mut f, None, "hello", "1", "1", None, force).unwrap();
    assert_eq!(f.log.last().unwrap(), "pin 3.1 0x2 0xffffffffffffffff");
    let dry = PinOpts {
        force: false,
        dry_run: true,
    };
    let before = f.log.len();
    for (hard, soft, want) in [
        ("0-1", None, "cpumap: 0-1\n"),
        ("-", Some("2"), "cpumap: - 2\n"),
        ("all", Some("-"), "cpumap: all\n"),
    ] {
        let (r, out, _) = run(&mut f, |s, io| {
            vcpu_pin_with(s, Some(io), "hello", "0", hard, soft, dry)
        });
        r.unwrap();
        assert_eq!(out, want);
    }
    assert_eq!(f.log.len(), before, "a dry run changed something");
}

#[test]
fn create_with_uuid_and_a_disk_then_list_it() {
    let mut f = Fake::new();
    f.files.insert(
        "/etc/xen/uu.cfg".into(),
        b"name = \"uu\"\nkernel = \"/boot/web.elf\"\nmemory = 16\n\
          uuid = \"6F9619FF-8B86-D011-B42D-00C04FC964FF\"\n\
          vtpm = [ \"backend=0\" ]\nmemroy = 16\n"
            .to_vec(),
    );
    let (r, out, err) = create(&mut f, "uu.cfg", &[], false);
    assert_eq!(r, Ok(7));
    assert_eq!(out, "Domain uu created with id 7\n");
    assert_eq!(
        err,
        "Parsing config from /etc/xen/uu.cfg\n\
         xl: warning: /etc/xen/uu.cfg:5: 'vtpm' is not implemented by Xenia (ignored): \
         the domain will have no virtual TPM\n\
         xl: warning: /etc/xen/uu.cfg:6: unknown key 'memroy' ignored\n"
    );
    let uuid = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let built = f.domains.iter().find(|d| d.dom == 7).unwrap();
    assert_eq!(uuid_string(&built.handle), uuid);
    f.records.insert(7, f.adopted[0].clone());

    // list -v: the UUID column.
    let verbose = ListOpts {
        long: false,
        columns: dom0_tools::xlfmt::ListColumns {
            verbose: true,
            ..Default::default()
        },
    };
    let (r, out, _) = list_of(&mut f, verbose, Some("uu"));
    r.unwrap();
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .contains(&format!(" {uuid}        -")),
        "{out}"
    );

    // list -l: libxl's JSON, read back.
    let long = ListOpts {
        long: true,
        ..ListOpts::default()
    };
    let (r, out, err) = list_of(&mut f, long, None);
    r.unwrap();
    assert_eq!(err, "");
    let all = json::parse(&out).expect("xl list -l prints JSON");
    let json::Json::Array(domains) = &all else {
        panic!("not an array: {out}");
    };
    let ids: Vec<_> = domains.iter().map(|d| d.get("domid").cloned()).collect();
    assert_eq!(
        ids,
        [0, 3, 7].map(|i| Some(json::Json::Int(i))),
        "one object per domain"
    );
    let uu = domains[2].get("config").unwrap();
    assert_eq!(
        uu.keys(),
        ["c_info", "b_info", "on_reboot", "on_soft_reset"]
    );
    let c_info = uu.get("c_info").unwrap();
    assert_eq!(c_info.keys(), ["type", "name", "uuid"]);
    assert_eq!(c_info.get("type"), Some(&json::Json::str("pv")));
    assert_eq!(c_info.get("name"), Some(&json::Json::str("uu")));
    assert_eq!(c_info.get("uuid"), Some(&json::Json::str(uuid)));
    let b_info = uu.get("b_info").unwrap();
    assert_eq!(
        b_info.keys(),
        [
            "max_vcpus",
            "avail_vcpus",
            "max_memkb",
            "target_memkb",
            "sched_params",
            "kernel",
            "type.pv",
            "arch_arm",
            "arch_x86"
        ]
    );
    assert_eq!(b_info.get("max_vcpus"), Some(&json::Json::Int(1)));
    assert_eq!(
        b_info.get("avail_vcpus"),
        Some(&json::Json::Array(vec![json::Json::Int(0)]))
    );
    assert_eq!(b_info.get("max_memkb"), Some(&json::Json::Int(16384)));
    assert_eq!(b_info.get("target_memkb"), Some(&json::Json::Int(16384)));
    assert_eq!(
        b_info.get("kernel"),
        Some(&json::Json::str("/boot/web.elf"))
    );
    assert_eq!(uu.get("on_reboot"), Some(&json::Json::str("restart")));

    // Domain-0 as Xen shows it: its stub configuration (no UUID while it is nil, no vCPU
    // fields), with its memory and scheduler parameters.
    let dom0 = domains[0].get("config").unwrap();
    assert_eq!(dom0.keys(), ["c_info", "b_info"]);
    assert_eq!(dom0.get("c_info").unwrap().keys(), ["type", "name"]);
    assert_eq!(
        dom0.get("c_info").unwrap().get("name"),
        Some(&json::Json::str("Domain-0"))
    );
    let b_info = dom0.get("b_info").unwrap();
    assert_eq!(
        b_info.keys(),
        [
            "max_memkb",
            "target_memkb",
            "sched_params",
            "type.pv",
            "arch_arm",
            "arch_x86"
        ]
    );
    assert_eq!(b_info.get("max_memkb"), Some(&json::Json::Int(256 * 1024)));

    // The dry run shows the UUID the domain would get; builder="hvm" is refused as
    // type="hvm" is, and a bad UUID names its line.
    let (r, out, _) = run(&mut f, |s, io| {
        create_dry_run(s, io, "uu.cfg", &["name=\"vv\"".into()], true)
    });
    r.unwrap();
    assert!(out.contains(&format!("\"uuid\": \"{uuid}\"")), "{out}");
    let (r, _, _) = create(&mut f, "uu.cfg", &["builder=\"hvm\""], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create a domain from /etc/xen/uu.cfg: <command line>:1: builder = \"hvm\" \
         is not supported by Xenia (only \"pv\", which builder = \"generic\" selects)"
    );
    let (r, _, _) = create(
        &mut f,
        "uu.cfg",
        &["name=\"vv\"", "uuid=\"6f9619ff\""],
        false,
    );
    assert_eq!(
        r.unwrap_err(),
        "cannot create a domain from /etc/xen/uu.cfg: <command line>:2: 'uuid' must be 32 hex \
         digits grouped 8-4-4-4-12 (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got \"6f9619ff\""
    );
    assert_eq!(f.log, ["build", "adopt 7"], "nothing more built");
}

#[test]
fn json_has_the_vcpu_affinities_xl_would_store() {
    let mut f = Fake::new();
    f.files.insert(
        "/etc/xen/pin.cfg".into(),
        b"name = \"pin\"\nkernel = \"/boot/web.elf\"\nmemory = 16\nvcpus = 2\nmaxvcpus = 3\n\
          cpus = \"1\"\ncpus_soft = [ \"0\", \"all\", \"^0\", \"1\" ]\n"
            .to_vec(),
    );
    let (r, out, _) = run(&mut f, |s, io| create_dry_run(s, io, "pin.cfg", &[], true));
    r.unwrap();
    let config = json::parse(&out).unwrap();
    let b_info = config.get("b_info").unwrap();
    assert_eq!(
        b_info.keys()[..6],
        [
            "max_vcpus",
            "avail_vcpus",
            "vcpu_hard_affinity",
            "vcpu_soft_affinity",
            "numa_placement",
            "max_memkb"
        ]
    );
    let maps = |cpus: &[&[i64]]| {
        json::Json::Array(
            cpus.iter()
                .map(|c| json::Json::Array(c.iter().map(|&n| json::Json::Int(n)).collect()))
                .collect(),
        )
    };
    // Every vCPU up to maxvcpus gets the one list; a list per vCPU stops at maxvcpus; the
    // host's 2 CPUs make one-byte maps, all of whose bits `all` sets, as libxl's.
    assert_eq!(
        b_info.get("vcpu_hard_affinity"),
        Some(&maps(&[&[1], &[1], &[1]]))
    );
    assert_eq!(
        b_info.get("vcpu_soft_affinity"),
        Some(&maps(&[&[0], &[0, 1, 2, 3, 4, 5, 6, 7], &[]]))
    );
    assert_eq!(
        b_info.get("numa_placement"),
        Some(&json::Json::str("False"))
    );
    // Any cpus_soft=, even an empty list, turns the placement off.
    let (r, out, _) = run(&mut f, |s, io| {
        create_dry_run(s, io, "pin.cfg", &["cpus_soft=\"\"".into()], true)
    });
    r.unwrap();
    let config = json::parse(&out).unwrap();
    let b_info = config.get("b_info").unwrap();
    assert_eq!(
        b_info.get("numa_placement"),
        Some(&json::Json::str("False"))
    );
    // One list for all in cpus= alone leaves the placement to libxl.
    let (r, out, _) = run(&mut f, |s, io| {
        create_dry_run(s, io, "web.cfg", &["cpus=\"0\"".into()], true)
    });
    r.unwrap();
    let b_info = json::parse(&out).unwrap().get("b_info").cloned().unwrap();
    assert_eq!(b_info.get("vcpu_hard_affinity"), Some(&maps(&[&[0]])));
    assert_eq!(b_info.get("vcpu_soft_affinity"), None);
    assert_eq!(b_info.get("numa_placement"), None);
}

mod block;
mod network;

/// A minimal ELF-64 image whose only content is a `PT_NOTE` segment with Xen's notes
/// `(type, value)`.
fn elf_with_notes(notes: &[(u32, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, desc) in notes {
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        body.extend_from_slice(&t.to_le_bytes());
        body.extend_from_slice(b"Xen\0");
        body.extend_from_slice(desc);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut elf = vec![0u8; 120];
    elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[0x12..0x14].copy_from_slice(&0x3Eu16.to_le_bytes()); // EM_X86_64
    elf[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    elf[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes());
    elf[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    elf[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    elf[72..80].copy_from_slice(&120u64.to_le_bytes());
    elf[96..104].copy_from_slice(&(body.len() as u64).to_le_bytes());
    elf[104..112].copy_from_slice(&(body.len() as u64).to_le_bytes());
    elf[112..120].copy_from_slice(&4u64.to_le_bytes());
    elf.extend(body);
    elf
}

#[test]
fn a_xen_pv_kernel_the_hypervisor_cannot_run_is_refused_by_name() {
    use guest_abi::elfnote::{
        XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION,
    };
    let config = b"name = \"linux\"\ntype = \"pv\"\nkernel = \"/boot/vmlinux\"\n\
          ramdisk = \"/boot/initrd.img\"\nextra = \"console=hvc0\"\nmemory = 64\n";
    let kernel = |features: &[u8]| {
        elf_with_notes(&[
            (XEN_ELFNOTE_GUEST_OS, b"linux\0"),
            (XEN_ELFNOTE_GUEST_VERSION, b"2.6\0"),
            (XEN_ELFNOTE_FEATURES, features),
        ])
    };
    // What the Xen PV mode provides passes xl's check; a hypervisor without the mode refuses
    // it when the builder asks for the mode, and xl names the file.
    let mut f = Fake::new();
    f.files.insert("/etc/xen/linux.cfg".into(), config.to_vec());
    f.files
        .insert("/boot/initrd.img".into(), b"initrd".to_vec());
    f.files.insert(
        "/boot/vmlinux".into(),
        kernel(b"!writable_page_tables|pae_pgdir_above_4gb\0"),
    );
    f.build_error = Some(BuildError::XenPvKernel {
        kernel: "Linux 2.6".into(),
        missing: vec!["writable_page_tables".into()],
    });
    let (r, _, _) = create(&mut f, "linux.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"linux\": /boot/vmlinux is a Xen PV kernel (Linux 2.6) that requires \
         features Xenia does not provide: writable_page_tables; the Xen PV guest mode \
         (DESIGN.md §12) is not implemented yet, so Xenia runs only kernels built for its own \
         ring-1 ABI"
    );
    assert_eq!(f.log, ["build"], "{:?}", f.log);
    // A feature even the Xen PV mode lacks is refused before the ramdisk is read.
    let mut f = Fake::new();
    f.files.insert("/etc/xen/linux.cfg".into(), config.to_vec());
    f.files.insert(
        "/boot/vmlinux".into(),
        kernel(b"!writable_page_tables|!supervisor_mode_kernel\0"),
    );
    let (r, _, _) = create(&mut f, "linux.cfg", &[], false);
    assert_eq!(
        r.unwrap_err(),
        "cannot create \"linux\": the kernel requires features Xenia does not provide: \
         supervisor_mode_kernel"
    );
    assert!(f.log.is_empty(), "nothing built: {:?}", f.log);
}

/// A domain whose kernel watches `memory/target` (Linux's balloon) gets its target written,
/// in KiB, as Xen's xl writes it; a target above the limit raises the limit first, one
/// below it leaves the limit; a refused write is reported with the node.
#[test]
fn mem_set_writes_the_target_of_a_domain_that_listens() {
    let mut f = Fake::new();
    f.watched.push((3, "/local/domain/3/memory/target".into()));
    mem_set(&mut f, "hello", "16m").unwrap();
    assert_eq!(
        f.xs,
        [(
            "/local/domain/3/memory/target".to_string(),
            "16384".to_string()
        )]
    );
    assert!(f.log.is_empty(), "the limit stays: {:?}", f.log);
    mem_set(&mut f, "3", "48m").unwrap();
    assert_eq!(f.log, ["max_mem 3 49152"]);
    assert_eq!(f.xs.last().map(|(_, v)| v.as_str()), Some("49152"));
    f.xs_error = Some(Errno::EACCES);
    let e = mem_set(&mut f, "hello", "20m").unwrap_err();
    assert!(e.contains("memory/target") && e.contains("EACCES"), "{e}");
    // Another domain's watch is not this one's.
    let mut g = Fake::new();
    g.watched.push((0, "/local/domain/3/memory/target".into()));
    assert!(
        mem_set(&mut g, "hello", "16m")
            .unwrap_err()
            .contains("balloon")
    );
}
