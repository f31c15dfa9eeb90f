//! # What `xl` prints
//!
//! Xen's `xl` output, byte for byte, so scripts written for Xen read
//! Xenia's: `xl list` and `xl uptime` (Xen's `tools/xl/xl_info.c`),
//! `xl vcpu-list` (`xl_vcpu.c`, with `print_bitmap` from `xl_utils.c`) and
//! the `key : value` lines of `xl info`.
//!
//! The C originals print seconds with `%.1f` of `(float)ns / 1e9`; here
//! they are rounded to the nearest tenth in integers (no floating point in
//! the dom0 kernel). The two differ only where `float`'s 24-bit mantissa
//! moves a value across a rounding boundary.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use guest_abi::domctl::DomctlGetvcpuinfo;
use guest_abi::sched::SHUTDOWN_POWEROFF;
use guest_abi::sysctl::SysctlPhysinfo;
use guest_abi::types::DomId;

use crate::control::DomainInfo;

/// `xl list`'s header line (without its newline).
pub const LIST_HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// `xl list`'s fifth State letter, by shutdown reason (`SHUTDOWN_*` as
/// index): xl's `shutdown_reason_letters`.
const SHUTDOWN_LETTERS: &[u8] = b"-rscwS";

/// Nanoseconds in a tenth of a second.
const NS_PER_TENTH: u64 = 100_000_000;

/// The name `xl` shows for a domain: `Domain-0` for dom0, else `name`.
pub fn display_name(dom: DomId, name: &str) -> &str {
    if dom == 0 { crate::DOM0_NAME } else { name }
}

/// `xl list`'s State column as xl builds it: `r`unning, `b`locked,
/// `p`aused, `s`hut down, the shutdown reason (`-` poweroff, `r`eboot,
/// `s`uspend, `c`rash, `w`atchdog, `S` soft reset, `?` beyond), `d`ying.
pub fn list_state(info: &DomainInfo) -> [u8; 6] {
    let flag = |on: bool, c: u8| if on { c } else { b'-' };
    let reason = info.shutdown.unwrap_or(SHUTDOWN_POWEROFF);
    let letter = usize::try_from(reason)
        .ok()
        .and_then(|r| SHUTDOWN_LETTERS.get(r).copied())
        .unwrap_or(b'?');
    [
        flag(info.running, b'r'),
        flag(info.blocked, b'b'),
        flag(info.paused, b'p'),
        flag(info.shutdown.is_some(), b's'),
        letter,
        flag(info.dying, b'd'),
    ]
}

/// Seconds from nanoseconds as `%<width>.1f`, rounded to the tenth.
fn seconds(ns: u64, width: usize) -> String {
    let tenths = ns / NS_PER_TENTH + u64::from(ns % NS_PER_TENTH >= NS_PER_TENTH / 2);
    format!("{:>width$}", format!("{}.{}", tenths / 10, tenths % 10))
}

/// One `xl list` row (without its newline):
/// `"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"`.
pub fn list_line(name: &str, info: &DomainInfo) -> String {
    let state = list_state(info);
    format!(
        "{:<40} {:>5} {:>5} {:>5}     {}  {}",
        display_name(info.dom, name),
        info.dom,
        info.memory_mib(),
        info.online_vcpus,
        String::from_utf8_lossy(&state),
        seconds(info.cpu_time_ns, 8)
    )
}

/// The whole of `xl list`: header and one line per domain, each ending in
/// a newline.
pub fn list<'a>(domains: impl IntoIterator<Item = (&'a str, &'a DomainInfo)>) -> String {
    let mut out = String::from(LIST_HEADER);
    out.push('\n');
    for (name, info) in domains {
        out.push_str(&list_line(name, info));
        out.push('\n');
    }
    out
}

/// The columns `xl list -v`, `-Z`, `-c` and `-n` add (Xen's `list_domains`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListColumns {
    /// `-v`: UUID, shutdown reason code, security label.
    pub verbose: bool,
    /// `-Z`: security label.
    pub context: bool,
    /// `-c`: cpupool.
    pub cpupool: bool,
    /// `-n`: NUMA node affinity.
    pub numa: bool,
}

/// What the extra columns of one `xl list` row show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListExtras<'a> {
    /// The domain's UUID (`-v`), formatted.
    pub uuid: &'a str,
    /// Its security label (`-v`, `-Z`): `-` without an XSM policy, as under Xenia.
    pub label: &'a str,
    /// Its cpupool's name (`-c`).
    pub pool: &'a str,
    /// Its node affinity as [`cpu_bitmap`] writes a map (`-n`).
    pub node_affinity: &'a str,
}

/// `xl list`'s header with the columns `cols` adds (without its newline).
pub fn list_header_with(cols: ListColumns) -> String {
    let mut out = String::from(LIST_HEADER);
    if cols.verbose {
        out.push_str("   UUID                            Reason-Code\tSecurity Label");
    }
    if cols.context && !cols.verbose {
        out.push_str("   Security Label");
    }
    if cols.cpupool {
        out.push_str("         Cpupool");
    }
    if cols.numa {
        out.push_str(" NODE Affinity");
    }
    out
}

/// One `xl list` row with the columns `cols` adds (without its newline): after the
/// usual row, `" %s"` UUID and `" %8x"` shutdown reason (`" %8s"` `-` while running) for
/// `-v`; `" %16s"` label for `-v` or `-Z`; `"%16s"` pool for `-c`; `' '` and the node
/// map for `-n`.
pub fn list_line_with(
    name: &str,
    info: &DomainInfo,
    cols: ListColumns,
    x: ListExtras<'_>,
) -> String {
    let mut out = list_line(name, info);
    if cols.verbose {
        let _ = write!(out, " {}", x.uuid);
        match info.shutdown {
            Some(reason) => {
                let _ = write!(out, " {reason:8x}");
            }
            None => {
                let _ = write!(out, " {:>8}", "-");
            }
        }
    }
    if cols.verbose || cols.context {
        let _ = write!(out, " {:>16}", x.label);
    }
    if cols.cpupool {
        let _ = write!(out, "{:>16}", x.pool);
    }
    if cols.numa {
        let _ = write!(out, " {}", x.node_affinity);
    }
    out
}

/// `xl vm-list`'s header (with its newline).
pub const VM_LIST_HEADER: &str = "UUID                                  ID    name\n";

/// One `xl vm-list` row (with its newline): `UUID "  %d    %-30s\n"`.
pub fn vm_list_line(uuid: &str, dom: DomId, name: &str) -> String {
    format!("{uuid}  {dom}    {:<30}\n", display_name(dom, name))
}

/// The line `xl sched-credit` prints for a cpupool (with its newline): its credit
/// parameters, or that they could not be read.
pub fn sched_credit_pool_line(pool: &str, params: Option<(u32, u32, u32)>) -> String {
    match params {
        Some((tslice_ms, ratelimit_us, migr_delay_us)) => format!(
            "Cpupool {pool}: tslice={tslice_ms}ms ratelimit={ratelimit_us}us \
             migration-delay={migr_delay_us}us\n"
        ),
        None => format!("Cpupool {pool}: [sched params unavailable]\n"),
    }
}

/// A CPU bitmap as xl's `print_bitmap` writes it: `all` when every one of
/// the `nr_cpus` bits is set, `none` when none is, else ranges such as
/// `0-3,6`. Bytes missing from `map` count as clear.
pub fn cpu_bitmap(map: &[u8], nr_cpus: usize) -> String {
    let bit = |i: usize| map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
    let mut out = String::new();
    let mut i = 0;
    while i < nr_cpus {
        if !bit(i) {
            i += 1;
            continue;
        }
        let first = i;
        while i < nr_cpus && bit(i) {
            i += 1;
        }
        if first == 0 && i == nr_cpus {
            return String::from("all");
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{first}");
        if i - 1 > first {
            let _ = write!(out, "-{}", i - 1);
        }
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

/// A CPU list in xl's syntax (`cpurange_parse`) as a bitmap of `nr_cpus` bits: items
/// separated by commas, each `all`, a CPU `n` or a range `a-b`, and `^` before a CPU or a
/// range removes it (`0-3,^2` is 0, 1 and 3; `^1` alone is empty). Items are applied in
/// order; CPUs at or past `nr_cpus` are ignored, as libxl's bitmap does. The error is xl's
/// message. NUMA forms (`node:`, `nodes:`) are not taken: Xenia's hosts have one node.
pub fn parse_cpu_list(list: &str, nr_cpus: usize) -> Result<Vec<u8>, String> {
    let mut map = alloc::vec![0u8; nr_cpus.div_ceil(8)];
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let (not, range) = match item.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        if range == "all" {
            if not {
                return Err(String::from("Can't combine \"^\" and \"all\"."));
            }
            map.iter_mut().for_each(|b| *b = 0xff);
            continue;
        }
        let invalid = || format!("Invalid pcpu range: {range}.");
        let number = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            t.parse::<usize>().map_err(|_| invalid())
        };
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(range)?;
                (n, n)
            }
        };
        if b < a {
            return Err(invalid());
        }
        for cpu in a..=b.min(nr_cpus.saturating_sub(1)) {
            if cpu >= nr_cpus {
                break;
            }
            let byte = &mut map[cpu / 8];
            if not {
                *byte &= !(1 << (cpu % 8));
            } else {
                *byte |= 1 << (cpu % 8);
            }
        }
    }
    Ok(map)
}

/// `xl vcpu-list`'s header line (without its newline):
/// `"%-32s %5s %5s %5s %5s %9s %s"`.
pub fn vcpu_list_header() -> String {
    format!(
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
    )
}

/// One `xl vcpu-list` row (without its newline), from a `getvcpuinfo`
/// answer and the vCPU's hard and soft affinity bitmaps over `nr_cpus`.
pub fn vcpu_line(
    name: &str,
    dom: DomId,
    vcpu: &DomctlGetvcpuinfo,
    hard: &[u8],
    soft: &[u8],
    nr_cpus: usize,
) -> String {
    let mut out = format!(
        "{:<32} {:>5} {:>5}",
        display_name(dom, name),
        dom,
        vcpu.vcpu
    );
    if vcpu.online == 0 {
        out.push_str("    -   --p ");
    } else {
        let flag = |on: u8, c: char| if on != 0 { c } else { '-' };
        let _ = write!(
            out,
            "{:>5} {:>3}{}- ",
            vcpu.cpu,
            flag(vcpu.running, 'r'),
            flag(vcpu.blocked, 'b')
        );
    }
    let _ = write!(
        out,
        "{}  {} / {}",
        seconds(vcpu.cpu_time, 9),
        cpu_bitmap(hard, nr_cpus),
        cpu_bitmap(soft, nr_cpus)
    );
    out
}

/// One `xl info` line (with its newline): the key padded to 23 columns,
/// `": "`, the value.
pub fn info_line(key: &str, value: impl core::fmt::Display) -> String {
    format!("{key:<23}: {value}\n")
}

/// The host lines of `xl info` that `physinfo` answers, in xl's order
/// (`output_physinfo`): CPUs, topology, clock, and memory in MiB.
pub fn physinfo_lines(p: &SysctlPhysinfo, page_size: u64, free_cpus: u32) -> String {
    let per_mib = ((1u64 << 20) / page_size.max(1)).max(1);
    let caps = p.hw_cap.map(|w| format!("{w:08x}")).join(":");
    let mut out = String::new();
    out += &info_line("nr_cpus", p.nr_cpus);
    out += &info_line("max_cpu_id", p.max_cpu_id);
    out += &info_line("nr_nodes", p.nr_nodes);
    out += &info_line("cores_per_socket", p.cores_per_socket);
    out += &info_line("threads_per_core", p.threads_per_core);
    out += &info_line(
        "cpu_mhz",
        format!("{}.{:03}", p.cpu_khz / 1000, p.cpu_khz % 1000),
    );
    out += &info_line("hw_caps", caps);
    out += &virt_caps_line(p.capabilities);
    out += &info_line("total_memory", p.total_pages / per_mib);
    let free = p.free_pages.saturating_sub(p.outstanding_pages);
    out += &info_line("free_memory", free / per_mib);
    // No page sharing in Xenia (nor in a Xen without it configured): zero, as Xen prints.
    out += &info_line("sharing_freed_memory", 0);
    out += &info_line("sharing_used_memory", 0);
    out += &info_line("outstanding_claims", p.outstanding_pages / per_mib);
    out += &info_line("free_cpus", free_cpus);
    out
}

/// `virt_caps`, as Xen 4.17's xl builds it: no space after the colon, then ` <name>` for each
/// capability bit set, in xl's order (`XEN_SYSCTL_PHYSCAP_*`; the two directio names depend
/// on hvm/pv as xl's do).
pub fn virt_caps_line(caps: u32) -> String {
    use guest_abi::sysctl as sc;
    let has = |bit: u32| caps & bit != 0;
    let names = [
        (has(sc::XEN_SYSCTL_PHYSCAP_PV), " pv"),
        (has(sc::XEN_SYSCTL_PHYSCAP_HVM), " hvm"),
        (
            has(sc::XEN_SYSCTL_PHYSCAP_HVM) && has(sc::XEN_SYSCTL_PHYSCAP_DIRECTIO),
            " hvm_directio",
        ),
        (
            has(sc::XEN_SYSCTL_PHYSCAP_PV) && has(sc::XEN_SYSCTL_PHYSCAP_DIRECTIO),
            " pv_directio",
        ),
        (has(sc::XEN_SYSCTL_PHYSCAP_HAP), " hap"),
        (has(sc::XEN_SYSCTL_PHYSCAP_SHADOW), " shadow"),
        (
            has(sc::XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE),
            " iommu_hap_pt_share",
        ),
        (has(sc::XEN_SYSCTL_PHYSCAP_VMTRACE), " vmtrace"),
        (has(sc::XEN_SYSCTL_PHYSCAP_VPMU), " vpmu"),
        (has(sc::XEN_SYSCTL_PHYSCAP_GNTTAB_V1), " gnttab-v1"),
        (has(sc::XEN_SYSCTL_PHYSCAP_GNTTAB_V2), " gnttab-v2"),
    ];
    let mut out = String::from("virt_caps              :");
    for (on, name) in names {
        if on {
            out.push_str(name);
        }
    }
    out.push('\n');
    out
}

/// `xl info`'s first four lines (xl's `output_nodeinfo`, from `uname`).
pub fn node_lines(host: &str, release: &str, version: &str, machine: &str) -> String {
    let mut out = info_line("host", host);
    out += &info_line("release", release);
    out += &info_line("version", version);
    out += &info_line("machine", machine);
    out
}

/// `xl info -n`'s topology and NUMA sections (xl's `output_topologyinfo` and
/// `output_numainfo`) for a host of `nr_cpus` CPUs, one socket, one core each and one node of
/// `total_mib`/`free_mib`, and no PCI devices known: what Xenia's hypervisor describes.
pub fn numa_lines(nr_cpus: u32, total_mib: u64, free_mib: u64) -> String {
    let mut out = String::from("cpu_topology           :\ncpu:    core    socket     node\n");
    for cpu in 0..nr_cpus {
        out += &format!("{cpu:>3}:    {cpu:>4}     {:>4}     {:>4}\n", 0, 0);
    }
    out += "device topology        :\ndevice           node\n";
    out += "No device topology data available\n";
    out += "numa_info              :\nnode:    memsize    memfree    distances\n";
    out += &format!(
        "{:>4}:    {total_mib:>6}     {free_mib:>6}      {}\n",
        0, 10
    );
    out
}

/// `xl info <name>`: the values of the lines of `info` whose key starts
/// with `name`, as xl's `maybe_printf` selects them.
pub fn info_select(info: &str, name: &str) -> String {
    let mut out = String::new();
    for line in info.split_inclusive('\n') {
        if let Some(colon) = line.find(':')
            && line.starts_with(name)
            && line[colon + 1..].starts_with(' ')
        {
            out.push_str(&line[colon + 2..]);
        }
    }
    out
}

/// An uptime as xl's `uptime_to_string`: `[D day(s), ]HH:MM:SS` with the
/// hours space-padded to two, or without seconds when `short`.
pub fn uptime_string(secs: u64, short: bool) -> String {
    let (day, rest) = (secs / 86_400, secs % 86_400);
    let (hour, min, sec) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let days = match day {
        0 => String::new(),
        1 => String::from("1 day, "),
        d => format!("{d} days, "),
    };
    if short {
        format!("{days}{hour:>2}:{min:02}")
    } else {
        format!("{days}{hour:>2}:{min:02}:{sec:02}")
    }
}

/// `xl uptime`'s header (with its newline): `"%-33s %4s %s"`.
pub fn uptime_header() -> String {
    format!("{:<33} {:>4} {}\n", "Name", "ID", "Uptime")
}

/// One `xl uptime` row (with its newline): `"%-33s %4d %s"`.
pub fn uptime_line(name: &str, dom: DomId, secs: u64) -> String {
    format!(
        "{:<33} {:>4} {}\n",
        display_name(dom, name),
        dom,
        uptime_string(secs, false)
    )
}

/// One `xl uptime -s` row (with its newline): `" %s up %s, %s (%d)"`,
/// the first field the wall-clock time of day `now_of_day` (seconds since
/// midnight) as `HH:MM:SS`.
pub fn uptime_short_line(now_of_day: u64, name: &str, dom: DomId, secs: u64) -> String {
    let t = now_of_day % 86_400;
    format!(
        " {:02}:{:02}:{:02} up {}, {} ({})\n",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        uptime_string(secs, true),
        display_name(dom, name),
        dom
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_abi::domctl::{
        DomctlGetdomaininfo, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_PAUSED,
        XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNSHIFT,
    };
    use guest_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET};

    use crate::control::domain_info;

    fn dom(domain: DomId, flags: u32, mib: u64, vcpus: u32, ns: u64) -> DomainInfo {
        domain_info(&DomctlGetdomaininfo {
            domain,
            flags,
            tot_pages: mib * 256,
            nr_online_vcpus: vcpus,
            cpu_time: ns,
            ..Default::default()
        })
    }

    fn shutdown(reason: u32) -> u32 {
        XEN_DOMINF_SHUTDOWN | reason << XEN_DOMINF_SHUTDOWNSHIFT
    }

    #[test]
    fn xl_list_exact() {
        // Expected lines from C's printf with xl's format.
        let d0 = dom(0, XEN_DOMINF_RUNNING, 1024, 4, 12_340_000_000);
        let web = dom(
            7,
            XEN_DOMINF_PAUSED | XEN_DOMINF_DYING | shutdown(SHUTDOWN_CRASH),
            64,
            1,
            50_000_000,
        );
        assert_eq!(
            list([("ignored", &d0), ("web", &web)]),
            "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
             Domain-0                                     0  1024     4     r-----      12.3\n\
             web                                          7    64     1     --pscd       0.1\n"
        );
    }

    #[test]
    fn xl_list_columns_exact() {
        // Expected lines rendered from Xen's format strings by C's printf.
        let d0 = dom(0, XEN_DOMINF_RUNNING, 1024, 4, 12_340_000_000);
        let web = dom(7, shutdown(SHUTDOWN_CRASH), 64, 1, 50_000_000);
        let all = ListColumns {
            verbose: true,
            context: true,
            cpupool: true,
            numa: true,
        };
        assert_eq!(
            list_header_with(all),
            "Name                                        ID   Mem VCPUs\tState\tTime(s)   \
             UUID                            Reason-Code\tSecurity Label         Cpupool NODE Affinity"
        );
        let x = ListExtras {
            uuid: "00000000-0000-0000-0000-000000000000",
            label: "-",
            pool: "Pool-0",
            node_affinity: "all",
        };
        assert_eq!(
            list_line_with("x", &d0, all, x),
            "Domain-0                                     0  1024     4     r-----      12.3 \
             00000000-0000-0000-0000-000000000000        -                -          Pool-0 all"
        );
        let v = ListColumns {
            verbose: true,
            ..ListColumns::default()
        };
        assert_eq!(
            list_line_with("web", &web, v, x),
            "web                                          7    64     1     ---sc-       0.1 \
             00000000-0000-0000-0000-000000000000        3                -"
        );
        let z = ListColumns {
            context: true,
            ..ListColumns::default()
        };
        assert_eq!(
            list_header_with(z),
            "Name                                        ID   Mem VCPUs\tState\tTime(s)   Security Label"
        );
        assert!(list_line_with("web", &web, z, x).ends_with("       0.1                -"));
        assert_eq!(list_header_with(ListColumns::default()), LIST_HEADER);
        assert_eq!(
            vm_list_line("00000000-0000-0000-0000-000000000007", 7, "web"),
            "00000000-0000-0000-0000-000000000007  7    web                           \n"
        );
        assert_eq!(
            sched_credit_pool_line("Pool-0", Some((30, 1000, 0))),
            "Cpupool Pool-0: tslice=30ms ratelimit=1000us migration-delay=0us\n"
        );
        assert_eq!(
            sched_credit_pool_line("Pool-0", None),
            "Cpupool Pool-0: [sched params unavailable]\n"
        );
    }

    #[test]
    fn state_letters_as_xl() {
        let state = |flags| list_state(&dom(1, flags, 1, 1, 0));
        assert_eq!(&state(XEN_DOMINF_BLOCKED), b"-b----");
        assert_eq!(&state(shutdown(SHUTDOWN_POWEROFF)), b"---s--");
        assert_eq!(&state(shutdown(SHUTDOWN_REBOOT)), b"---sr-");
        assert_eq!(&state(shutdown(2)), b"---ss-");
        assert_eq!(&state(shutdown(4)), b"---sw-");
        assert_eq!(&state(shutdown(SHUTDOWN_SOFT_RESET)), b"---sS-");
        assert_eq!(&state(shutdown(200)), b"---s?-");
    }

    #[test]
    fn seconds_round_to_tenths() {
        assert_eq!(seconds(0, 8), "     0.0");
        assert_eq!(seconds(49_999_999, 8), "     0.0");
        assert_eq!(seconds(1_250_000_000, 8), "     1.3");
        assert_eq!(seconds(123_456_789_000_000, 8), "123456.8");
        assert_eq!(seconds(u64::MAX, 8), "18446744073.7");
    }

    #[test]
    fn cpu_lists_as_xl_parses_them() {
        let p = |s: &str, n: usize| parse_cpu_list(s, n);
        assert_eq!(p("all", 4), Ok(vec![0xff]));
        assert_eq!(p("2", 4), Ok(vec![0x04]));
        assert_eq!(p("0-2,5", 8), Ok(vec![0x27]));
        assert_eq!(p("0-3,^2", 4), Ok(vec![0x0b]));
        assert_eq!(p("all,^1", 4), Ok(vec![0xfd]));
        assert_eq!(p("^1", 4), Ok(vec![0x00]), "a removal alone leaves nothing");
        assert_eq!(p("1,^1,1", 4), Ok(vec![0x02]), "in order");
        assert_eq!(p("7-9", 16), Ok(vec![0x80, 0x03]));
        assert_eq!(p("3-100", 4), Ok(vec![0x08]), "past the CPUs: ignored");
        assert_eq!(p("9", 4), Ok(vec![0x00]));
        assert_eq!(p("", 4), Ok(vec![0x00]));
        for bad in [
            "x",
            "1-",
            "-1",
            "3-1",
            "1-2-3",
            "1 ",
            "+1",
            "node:0",
            "^",
            "99999999999999999999999",
        ] {
            assert_eq!(
                p(bad, 4),
                Err(format!(
                    "Invalid pcpu range: {}.",
                    bad.trim_start_matches('^')
                )),
                "{bad}"
            );
        }
        assert_eq!(p("^all", 4), Err("Can't combine \"^\" and \"all\".".into()));
        // What is parsed formats back the same way.
        assert_eq!(cpu_bitmap(&p("0-3,^2", 4).unwrap(), 4), "0-1,3");
        assert_eq!(cpu_bitmap(&p("all", 4).unwrap(), 4), "all");
    }

    #[test]
    fn bitmaps_as_print_bitmap() {
        assert_eq!(cpu_bitmap(&[0x0f], 4), "all");
        assert_eq!(cpu_bitmap(&[0xff], 4), "all");
        assert_eq!(cpu_bitmap(&[0x00], 4), "none");
        assert_eq!(cpu_bitmap(&[0x0b], 4), "0-1,3");
        assert_eq!(cpu_bitmap(&[0x0e], 4), "1-3");
        assert_eq!(cpu_bitmap(&[0x05], 8), "0,2");
        assert_eq!(cpu_bitmap(&[0x80, 0x01], 16), "7-8");
        assert_eq!(cpu_bitmap(&[0xff], 16), "0-7");
        assert_eq!(cpu_bitmap(&[], 0), "none");
    }

    #[test]
    fn vcpu_list_exact() {
        assert_eq!(
            vcpu_list_header(),
            "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
        );
        let online = DomctlGetvcpuinfo {
            vcpu: 1,
            online: 1,
            running: 1,
            cpu: 3,
            cpu_time: 1_250_010_000,
            ..Default::default()
        };
        assert_eq!(
            vcpu_line("web", 7, &online, &[0x0f], &[0x0b], 4),
            "web                                  7     1    3   r--       1.3  all / 0-1,3"
        );
        let offline = DomctlGetvcpuinfo {
            vcpu: 2,
            ..Default::default()
        };
        assert_eq!(
            vcpu_line("web", 7, &offline, &[], &[0xff], 4),
            "web                                  7     2    -   --p       0.0  none / all"
        );
    }

    #[test]
    fn xl_info_lines() {
        assert_eq!(info_line("xen_major", 4), "xen_major              : 4\n");
        let p = SysctlPhysinfo {
            nr_cpus: 4,
            max_cpu_id: 3,
            nr_nodes: 1,
            cores_per_socket: 2,
            threads_per_core: 2,
            cpu_khz: 2_400_005,
            total_pages: 4 << 18,
            free_pages: 3 << 18,
            hw_cap: [0xbfebfbff, 0x7ffafbff, 0, 0, 0, 0, 0, 0],
            capabilities: guest_abi::sysctl::XEN_SYSCTL_PHYSCAP_PV
                | guest_abi::sysctl::XEN_SYSCTL_PHYSCAP_GNTTAB_V1,
            ..Default::default()
        };
        let info = physinfo_lines(&p, 4096, 0);
        assert_eq!(
            info,
            "nr_cpus                : 4\n\
             max_cpu_id             : 3\n\
             nr_nodes               : 1\n\
             cores_per_socket       : 2\n\
             threads_per_core       : 2\n\
             cpu_mhz                : 2400.005\n\
             hw_caps                : bfebfbff:7ffafbff:00000000:00000000:00000000:00000000:00000000:00000000\n\
             virt_caps              : pv gnttab-v1\n\
             total_memory           : 4096\n\
             free_memory            : 3072\n\
             sharing_freed_memory   : 0\n\
             sharing_used_memory    : 0\n\
             outstanding_claims     : 0\n\
             free_cpus              : 0\n"
        );
        assert_eq!(info_select(&info, "nr_cpus"), "4\n");
        assert_eq!(info_select(&info, "cpu_"), "2400.005\n");
        assert_eq!(info_select(&info, "nope"), "");
        // QEMU's `-smp 4` (one socket of four cores) and a TSC of 2308.05 MHz: the kHz
        // are zero-padded to three digits, as xl's `%d.%03d`.
        let p = SysctlPhysinfo {
            nr_cpus: 4,
            max_cpu_id: 3,
            nr_nodes: 1,
            cores_per_socket: 4,
            threads_per_core: 1,
            cpu_khz: 2_308_050,
            ..Default::default()
        };
        let info = physinfo_lines(&p, 4096, 0);
        assert_eq!(info_select(&info, "cores_per_socket"), "4\n");
        assert_eq!(info_select(&info, "threads_per_core"), "1\n");
        assert_eq!(info_select(&info, "cpu_mhz"), "2308.050\n");
        let p = SysctlPhysinfo { cpu_khz: 999, ..p };
        assert_eq!(
            info_select(&physinfo_lines(&p, 4096, 0), "cpu_mhz"),
            "0.999\n"
        );
        // Every capability: xl's order and names, the directio names by pv/hvm.
        assert_eq!(virt_caps_line(0), "virt_caps              :\n");
        assert_eq!(
            virt_caps_line(u32::MAX),
            "virt_caps              : pv hvm hvm_directio pv_directio hap shadow \
             iommu_hap_pt_share vmtrace vpmu gnttab-v1 gnttab-v2\n"
        );
    }

    /// `xl info`'s uname lines and `-n`'s sections, against xl's format strings
    /// (`"%3d:    %4d     %4d     %4d"`, `"%4d:    %6lu     %6lu      %d"`).
    #[test]
    fn xl_info_node_and_numa() {
        assert_eq!(
            node_lines("h", "r", "v", "x86_64"),
            "host                   : h\nrelease                : r\n\
             version                : v\nmachine                : x86_64\n"
        );
        assert_eq!(
            numa_lines(2, 512, 300),
            "cpu_topology           :\ncpu:    core    socket     node\n  \
             0:       0        0        0\n  1:       1        0        0\n\
             device topology        :\ndevice           node\nNo device topology data available\n\
             numa_info              :\nnode:    memsize    memfree    distances\n   \
             0:       512        300      10\n"
        );
    }

    #[test]
    fn uptime_exact() {
        assert_eq!(uptime_string(0, false), " 0:00:00");
        assert_eq!(uptime_string(3_725, false), " 1:02:05");
        assert_eq!(uptime_string(86_400 + 36_000, false), "1 day, 10:00:00");
        assert_eq!(
            uptime_string(2 * 86_400 + 3 * 3600 + 4 * 60 + 5, true),
            "2 days,  3:04"
        );
        assert_eq!(
            uptime_header(),
            "Name                                ID Uptime\n"
        );
        assert_eq!(
            uptime_line("x", 0, 2 * 86_400 + 3 * 3600 + 4 * 60 + 5),
            "Domain-0                             0 2 days,  3:04:05\n"
        );
        assert_eq!(
            uptime_short_line(13 * 3600 + 5 * 60 + 9, "web", 7, 90),
            " 13:05:09 up  0:01, web (7)\n"
        );
    }
}
