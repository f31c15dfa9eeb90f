//! `xl list`: the table (Xen's `list_domains`, with the columns `-v`, `-Z`, `-c` and `-n`
//! add) and, with `-l`, each domain's configuration as libxl's JSON (Xen's
//! `list_domains_details`): what the hypervisor reports (vCPUs, memory, UUID, scheduler
//! parameters) and, for a domain `xl create` made, what its configuration says (kernel,
//! ramdisk, command line, `on_*` actions), read again from the file and settings dom0's
//! kernel recorded.

use dom0_tools::control::DomainInfo;
use dom0_tools::json::{self, ConfigView, Json};
use dom0_tools::xlcfg;
use dom0_tools::xlfmt::{self, ListColumns, ListExtras};
use guest_abi::Errno;

use super::{
    Io, POOL_0, System, VerbResult, cpu_map_bits, find, named_domains, set_affinity_view,
    uuid_string,
};

/// `xl list`'s options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    /// `-l`: the configurations as JSON (the columns are then ignored, as by Xen).
    pub long: bool,
    /// The columns `-v`, `-Z`, `-c`, `-n` add.
    pub columns: ListColumns,
}

/// `xl list [-l] [-v] [-Z] [-c] [-n] [domain]`.
pub fn list(
    sys: &mut impl System,
    io: &mut Io<'_>,
    opts: ListOpts,
    which: Option<&str>,
) -> VerbResult {
    let chosen = match which {
        None => named_domains(sys)?,
        Some(arg) => vec![find(sys, arg)?],
    };
    if opts.long {
        let mut all = Vec::new();
        for (name, d) in &chosen {
            let config = json::domain_config(&view(sys, io, name, d));
            all.push(Json::Map(vec![
                ("domid".into(), Json::Int(i64::from(d.dom))),
                ("config".into(), config),
            ]));
        }
        // xl `puts` the generator's output, which ends in a newline already.
        let _ = writeln!(io.out, "{}", json::render(&Json::Array(all)));
        return Ok(());
    }
    let cols = opts.columns;
    // One NUMA node (`physinfo` says how many; Xen's MAX_NUMNODES bounds it), which every
    // domain may use.
    const MAX_NUMNODES: u32 = 64;
    let nodes = sys
        .physinfo()
        .map_or(1, |p| p.nr_nodes.clamp(1, MAX_NUMNODES)) as usize;
    let node_affinity = xlfmt::cpu_bitmap(&vec![0xff; nodes.div_ceil(8)], nodes);
    let mut out = xlfmt::list_header_with(cols);
    out.push('\n');
    for (name, d) in &chosen {
        let uuid = uuid_string(&d.handle);
        let extras = ListExtras {
            uuid: &uuid,
            label: "-",
            pool: POOL_0,
            node_affinity: &node_affinity,
        };
        out += &xlfmt::list_line_with(name, d, cols, extras);
        out.push('\n');
    }
    let _ = write!(io.out, "{out}");
    Ok(())
}

/// What is known of domain `d`'s configuration. A domain whose configuration cannot be
/// read again (its file changed or went away) is shown with the hypervisor's facts only,
/// and a warning says so.
///
/// Domain-0 is shown as Xen shows it: Xen's stored configuration of dom0 is the stub
/// `xen-init-dom0` writes (its type and UUID), which `libxl_retrieve_domain_configuration`
/// completes with the name, memory and scheduler parameters but not its vCPUs (it sizes
/// `avail_vcpus` by the stub's `max_vcpus`, 0): so no vCPU fields.
fn view(sys: &mut impl System, io: &mut Io<'_>, name: &str, d: &DomainInfo) -> ConfigView {
    let mut max_vcpus = 0;
    let mut avail_vcpus = Vec::new();
    let vcpus_shown = if d.dom == 0 { 0 } else { xlcfg::MAX_VCPUS };
    for v in 0..vcpus_shown {
        match sys.vcpu_info(d.dom, v) {
            Ok(info) => {
                max_vcpus += 1;
                if info.online != 0 {
                    avail_vcpus.push(v);
                }
            }
            Err(_) => break,
        }
    }
    let mut view = ConfigView {
        name: xlfmt::display_name(d.dom, name).to_string(),
        // The nil UUID is libxl's default, which its JSON leaves out.
        uuid: (d.handle != [0; 16]).then(|| uuid_string(&d.handle)),
        max_vcpus,
        avail_vcpus,
        max_memkb: d.max_pages.saturating_mul(4),
        target_memkb: d.tot_pages.saturating_mul(4),
        sched: sys
            .sched_get(d.dom)
            .ok()
            .map(|c| (u32::from(c.weight), u32::from(c.cap))),
        ..ConfigView::default()
    };
    // The disks as xenstore has them (libxl's stored configuration follows attaches and
    // detaches too), with the defaults libxl stores.
    view.disks = super::block::disks_of(sys, d.dom)
        .iter()
        .map(|(_, disk)| dom0_tools::disk::to_json(disk, true))
        .collect();
    // The vifs likewise, from dom0's backend nodes.
    view.nics = super::network::nics_of(sys, d.dom)
        .iter()
        .map(dom0_tools::vif::to_json)
        .collect();
    let record = match sys.record(d.dom) {
        Ok(r) => r,
        // No record: a domain xl did not create (or dom0); nothing more is known.
        Err(Errno::ESRCH) => return view,
        Err(e) => {
            let _ = writeln!(
                io.err,
                "xl: warning: cannot read dom0's record of domain {} ({e}); its kernel, \
                 command line and on_* actions are left out",
                d.dom
            );
            return view;
        }
    };
    let spec = sys.read_file(&record.config).and_then(|text| {
        let over: Vec<&str> = record.overrides.iter().map(String::as_str).collect();
        xlcfg::parse_domain_config(&record.config, &text, &over)
            .map(|p| p.spec)
            .map_err(|e| e.to_string())
    });
    match spec {
        Ok(spec) => {
            if let Ok(bits) = cpu_map_bits(sys) {
                set_affinity_view(&mut view, &spec, bits);
            }
            view.kernel = Some(spec.kernel);
            view.cmdline = spec.cmdline;
            view.ramdisk = spec.ramdisk;
            view.actions = Some([spec.on_poweroff, spec.on_reboot, spec.on_crash]);
        }
        Err(why) => {
            let _ = writeln!(
                io.err,
                "xl: warning: domain {} was made from {}, which cannot be read again ({why}); \
                 its kernel, command line and on_* actions are left out",
                d.dom, record.config
            );
        }
    }
    view
}
