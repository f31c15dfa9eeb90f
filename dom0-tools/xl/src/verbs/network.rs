//! Network interfaces (Xen's `xl_nic.c` and libxl's `libxl_nic.c`/`libxl_device.c`): giving
//! a domain a vif at `create` and with `network-attach`, `network-list`, `network-detach`.
//!
//! A vif is a pair of xenstore directories, the frontend's under the domain's home
//! (`device/vif/<devid>`, the domain's, readable by dom0, but for `mtu`, dom0's) and the
//! backend's under dom0's (`backend/vif/<domid>/<devid>`, dom0's, readable by the domain),
//! written as libxl writes them ([`dom0_tools::vif::add_ops`]) in one xenstore transaction
//! (made again on `EAGAIN`, as for disks). xl reads back only dom0's nodes to know which
//! vifs a domain has and what they are: the frontend's directory is the domain's to write.

use dom0_tools::vif::{self, Nic};
use guest_abi::types::DomId;

use super::block::{Refusal, apply, close_backend, in_transaction};
use super::{Io, System, VerbResult, find, reported};

/// The device ids of domain `dom`'s vifs, from dom0's backend directory.
fn devids_of(sys: &mut impl System, dom: DomId) -> Vec<u32> {
    let dir = format!("/local/domain/0/backend/vif/{dom}");
    vif::devids(&sys.xs_directory(&dir).unwrap_or_default())
}

/// Gives domain `dom` (named `name`) the interface `nic` (which `xenia_problem` accepted):
/// its device id is `devid=` or the next after the highest the domain has (libxl's
/// `libxl__device_nextid`), its defaults libxl's with a MAC made from `name` and the id
/// ([`vif::resolve`]); in one transaction, the device is checked new to the domain
/// (libxl's `device already exists in xenstore`) and the nodes written. Returns the
/// device id; the error is what xl prints.
pub fn attach(sys: &mut impl System, dom: DomId, name: &str, nic: &Nic) -> Result<u32, String> {
    let devid = match nic.devid {
        Some(d) => d,
        None => match devids_of(sys, dom).last() {
            None => 0,
            Some(&last) if last < vif::DEVID_MAX => last + 1,
            Some(_) => return Err("no device id is left for a vif".to_string()),
        },
    };
    let nic = vif::resolve(nic, name, devid);
    if let Some(why) = vif::xenia_problem(&nic) {
        return Err(why);
    }
    let fe = vif::frontend_path(dom, devid);
    let be = vif::backend_path(dom, devid);
    let mut ops = vif::add_ops(dom, devid, &nic);
    ops.extend(vif::index_ops(dom, devid, &nic));
    let mac = nic.mac.unwrap_or_default();
    let index = vif::mac_index_path(&mac);
    let r = in_transaction(sys, |sys| {
        if sys.xs_read(&be).is_ok() || sys.xs_read(&fe).is_ok() {
            return Err(Refusal::Said(
                "device already exists in xenstore".to_string(),
            ));
        }
        // A live vif with this MAC (its backend still holds it) refuses it; a stale
        // entry is overwritten with the nodes.
        if let Some((d, n)) = sys
            .xs_read(&index)
            .ok()
            .as_deref()
            .and_then(vif::parse_holder)
            && (d, n) != (dom, devid)
            && holds(sys, d, n, &mac)
        {
            return Err(Refusal::Said(format!(
                "mac={} is in use by domain {d}'s vif {n}: give this vif another mac=",
                vif::mac_text(&mac)
            )));
        }
        apply(sys, &ops)?;
        Ok(())
    });
    match r {
        Ok(()) => Ok(devid),
        Err(Refusal::Said(why)) => Err(why),
        Err(Refusal::Store(e)) => Err(format!(
            "xenstore refused the nodes of vif {devid} ({e}): is this Xenia's dom0?"
        )),
    }
}

/// Whether domain `dom`'s vif `devid` holds `mac` (dom0's backend node says so).
fn holds(sys: &mut impl System, dom: DomId, devid: u32, mac: &[u8; 6]) -> bool {
    let path = format!("{}/mac", vif::backend_path(dom, devid));
    let read = sys.xs_read(&path).ok();
    read.as_deref()
        .and_then(|m| core::str::from_utf8(m).ok())
        .and_then(vif::parse_mac)
        .as_ref()
        == Some(mac)
}

/// The vifs of domain `dom`, read back from dom0's backend nodes as libxl's
/// `libxl__nic_from_xenstore` does (MAC, bridge, script, ip, mtu, type), with their ids.
/// A backend without a readable MAC is left out.
pub fn nics_of(sys: &mut impl System, dom: DomId) -> Vec<Nic> {
    let mut out = Vec::new();
    for devid in devids_of(sys, dom) {
        let be = vif::backend_path(dom, devid);
        let mut read = |key: &str| -> Option<String> {
            sys.xs_read(&format!("{be}/{key}"))
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let Some(mac) = read("mac").as_deref().and_then(vif::parse_mac) else {
            continue;
        };
        let mtu = read("mtu")
            .and_then(|m| m.parse().ok())
            .unwrap_or(vif::MTU_DEFAULT);
        out.push(Nic {
            devid: Some(devid),
            mtu: Some(mtu),
            mac: Some(mac),
            ip: read("ip"),
            bridge: read("bridge"),
            script: read("script"),
            gatewaydev: read("gatewaydev"),
            nictype: vif::NicType::Vif,
            trusted: Some(true),
            ..Nic::default()
        });
    }
    out
}

/// `xl network-list <Domain(s)>`: xl's columns (`Idx BE Mac Addr. handle state evt-ch
/// tx-/rx-ring-ref BE-path`) for each vif of each domain; the state, event channel and ring
/// references are the frontend's (-1 until the frontend writes them), the MAC and the
/// backend path dom0's. The backend is always dom0. A bad domain is reported and skipped.
pub fn network_list(sys: &mut impl System, io: &mut Io<'_>, domains: &[String]) -> VerbResult {
    let _ = writeln!(
        io.out,
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    );
    for arg in domains {
        let Ok((_, d)) = find(sys, arg) else {
            let _ = writeln!(io.err, "{arg} is an invalid domain identifier");
            continue;
        };
        for nic in nics_of(sys, d.dom) {
            let devid = nic.devid.unwrap_or(0);
            let fe = vif::frontend_path(d.dom, devid);
            let be = vif::backend_path(d.dom, devid);
            let mut num = |key: &str| -> i64 {
                sys.xs_read(&format!("{fe}/{key}"))
                    .ok()
                    .and_then(|v| String::from_utf8_lossy(&v).trim().parse::<u64>().ok())
                    .map_or(-1, |n| n as u32 as i32 as i64)
            };
            let (state, evtch) = (num("state"), num("event-channel"));
            let (tx, rx) = (num("tx-ring-ref"), num("rx-ring-ref"));
            let _ = writeln!(
                io.out,
                "{:<3} {:<2} {}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}",
                devid as i32,
                0,
                vif::mac_text(&nic.mac.unwrap_or_default()),
                devid as i32,
                state,
                evtch,
                tx,
                rx,
                be
            );
        }
    }
    Ok(())
}

/// `xl [-N] network-attach <Domain> <vifspec>...`: the components are one vif (xl's
/// `parse_nic_config` on each); with `-N` the vif is printed as libxl's JSON
/// (`vif: {...}`) and nothing is attached.
pub fn network_attach(
    sys: &mut impl System,
    io: &mut Io<'_>,
    domain: &str,
    spec: &[String],
    dry_run: bool,
) -> VerbResult {
    let specs: Vec<&str> = spec.iter().map(String::as_str).collect();
    let parsed = match vif::parse("command line", &specs) {
        Ok(p) => p,
        Err(why) => return Err(reported(io, &format!("{why}\n"))),
    };
    for w in &parsed.warnings {
        let _ = writeln!(io.err, "{w}");
    }
    let nic = parsed.nic;
    if dry_run {
        let json = dom0_tools::json::render(&vif::to_json(&nic));
        let _ = writeln!(io.out, "vif: {json}");
        return Ok(());
    }
    let Ok((name, dom)) = find(sys, domain) else {
        return Err(reported(
            io,
            &format!("{domain} is an invalid domain identifier\n"),
        ));
    };
    let failed = |io: &mut Io<'_>, why: &str| {
        reported(
            io,
            &format!(
                "libxl: error: libxl_device.c: Domain {}:{why}\nlibxl_device_nic_add failed.\n",
                dom.dom
            ),
        )
    };
    if dom.dom == 0 {
        return Err(failed(
            io,
            "Xenia's dom0 serves vifs and gives none to itself (its own port on the bridge is \
             xenbr0)",
        ));
    }
    if let Some(why) = vif::xenia_problem(&nic) {
        return Err(failed(io, &why));
    }
    attach(sys, dom.dom, &name, &nic)
        .map(|_| ())
        .map_err(|why| failed(io, &why))
}

/// `xl network-detach [-f] <Domain> <DevId|mac>` (libxl's `libxl_device_nic_remove`, or
/// `destroy` with `-f`, which Xen's xl does not have and block-detach does). Without
/// `-f`: the backend is told to go offline and close (`online` 0, `state` 5, in one
/// transaction), and xl waits up to libxl's 10 s for `state` 6; only then are both
/// directories removed; a backend that does not close leaves the vif attached and the
/// verb failed. With `-f`: the frontend's directory goes first, the backend is told to
/// close, and its directory is removed without waiting. A device with a colon is a MAC,
/// otherwise a device id; one the domain does not have is xl's `Unknown device`.
pub fn network_detach(
    sys: &mut impl System,
    io: &mut Io<'_>,
    domain: &str,
    device: &str,
    force: bool,
) -> VerbResult {
    let (_, dom) = find(sys, domain)?;
    let nics = nics_of(sys, dom.dom);
    // A colon makes it a MAC (Xen's test), else a device id, in canonical decimal.
    let mac = vif::parse_mac(device);
    let id = vif::devids(&[device.to_string()]).first().copied();
    let wanted = |n: &&Nic| {
        if device.contains(':') {
            mac.is_some() && n.mac == mac
        } else {
            id.is_some() && n.devid == id
        }
    };
    let Some((devid, mac)) = nics
        .iter()
        .find(wanted)
        .map(|n| (n.devid.unwrap_or(0), n.mac))
    else {
        return Err(reported(io, &format!("Unknown device {device}.\n")));
    };
    let failed = |io: &mut Io<'_>, why: String| {
        reported(
            io,
            &format!(
                "libxl: error: libxl_device.c: Domain {}:{why}\nlibxl_device_nic_del failed.\n",
                dom.dom
            ),
        )
    };
    let fe = vif::frontend_path(dom.dom, devid);
    let be = vif::backend_path(dom.dom, devid);
    if let Err(why) = close_backend(sys, &fe, &be, force, "network-detach") {
        return Err(failed(io, why));
    }
    // The MAC's index entry goes with the backend (were it left, it would be stale).
    let mut ops = vif::remove_ops(dom.dom, devid);
    if let Some(mac) = mac {
        let index = vif::mac_index_path(&mac);
        if sys
            .xs_read(&index)
            .ok()
            .as_deref()
            .and_then(vif::parse_holder)
            == Some((dom.dom, devid))
        {
            ops.push(dom0_tools::disk::XsOp::Rm(index));
        }
    }
    in_transaction(sys, |sys| apply(sys, &ops).map_err(Refusal::Store))
        .map_err(|_| failed(io, format!("unable to remove {fe} and {be}")))
}
