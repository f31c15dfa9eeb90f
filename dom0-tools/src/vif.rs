//! # Network interfaces: Xen's vif specification and the vif nodes of xenstore
//!
//! [`parse`] reads a `VIFSPEC` (xl-network-configuration(5)) as xl's `parse_nic_config`
//! does: comma-separated `key=value` parameters and the flags `trusted`/`untrusted`, each
//! checked as xl checks it (`mac=` six hex groups, `type=` `vif` or `ioemu`, `devid=` and
//! `mtu=` numbers, `rate=` with libxlutil's `xlu_vif_parse_rate`), every message in xl's
//! or libxlutil's words (`Invalid parameter `mac'.`, `unrecognized argument `foo'`,
//! `command line: config parsing error in vif: invalid rate in `10MB'`).
//!
//! [`xenia_problem`] is what Xenia cannot serve (an emulated card, another hotplug script
//! than `vif-bridge`, rate limiting, VLANs, COLO, another bridge than `xenbr0`, another
//! backend than dom0, frames larger than the bridge carries); [`resolve`] fills in libxl's
//! defaults (`libxl__device_nic_setdefault`: `bridge` `xenbr0`, the `vif-bridge` script,
//! `mtu` 1500, type `vif`, trusted), except the MAC, which libxl draws at random and Xenia
//! derives from the domain's name and the device's index ([`generated_mac`], in Xen's
//! `00:16:3e` range), so a domain destroyed and created again, or restarted, keeps its
//! address (and its DHCP lease). [`add_ops`] are the xenstore operations of libxl's
//! `libxl__device_nic_add` (`libxl__set_xenstore_nic` through `libxl__device_generic_add`)
//! with libxl's permissions; `xl` sends them through `/dev/xen/xenbus`, dom0's kernel applies
//! them itself when it restarts a domain, and netback reads them.
//!
//! **What it never does.** Panic or allocate without bound on hostile text: a spec is
//! split once, each piece looked at once, every number parsed with checked arithmetic.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::disk::XsOp;
use crate::json::Json;

/// The bridge a vif joins when `bridge=` is not given (libxl's default), and the only one
/// dom0 has.
pub const DEFAULT_BRIDGE: &str = "xenbr0";
/// Where Xen's hotplug scripts live (`XEN_SCRIPT_DIR`); libxl writes `script` as an
/// absolute path under it.
pub const SCRIPT_DIR: &str = "/etc/xen/scripts";
/// The only hotplug script whose work Xenia does: netback joins the vif to the bridge
/// itself.
pub const SCRIPT_VIF_BRIDGE: &str = "vif-bridge";
/// libxl's `LIBXL_DEVICE_NIC_MTU_DEFAULT`.
pub const MTU_DEFAULT: u32 = 1500;
/// The largest MTU Xenia's bridge carries: its frames are at most
/// [`guest_abi::netif::ETH_FRAME_LEN`] bytes, 14 of them the Ethernet header.
pub const MTU_MAX: u32 = (guest_abi::netif::ETH_FRAME_LEN - 14) as u32;
/// The smallest MTU an IPv4 interface may have (RFC 791: every host takes 68-byte
/// datagrams).
pub const MTU_MIN: u32 = 68;
/// Xen's organizationally unique identifier, the first three bytes of the MACs it makes.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];
/// The longest value of a free-text parameter (`bridge=`, `ip=`, `gatewaydev=`, ...)
/// Xenia writes to xenstore.
pub const VALUE_MAX: usize = 255;
/// The longest interface name (`vifname=`): Linux's `IFNAMSIZ` less its NUL.
pub const IFNAME_MAX: usize = 15;
/// The largest device id (`libxl_devid` is a C `int`).
pub const DEVID_MAX: u32 = i32::MAX as u32;
/// The default replenishment interval of `rate=` (libxlutil's 50 ms).
const RATE_INTERVAL_DEFAULT_US: u32 = 50_000;

/// `libxl_nic_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NicType {
    /// Not given.
    #[default]
    Unknown,
    /// `ioemu`: an emulated card (HVM guests).
    VifIoemu,
    /// `vif`: Xen's paravirtual netif.
    Vif,
}

impl NicType {
    /// libxl's name (`libxl_nic_type_to_string`).
    pub fn name(self) -> &'static str {
        match self {
            NicType::Unknown => "unknown",
            NicType::VifIoemu => "vif_ioemu",
            NicType::Vif => "vif",
        }
    }
}

/// `libxl_device_nic`, the fields a spec can set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nic {
    /// `backend=`: the backend domain's name.
    pub backend_domname: Option<String>,
    /// `devid=` (libxl's -1 when not given: the next free one).
    pub devid: Option<u32>,
    /// `mtu=` (libxl's 0 when not given: 1500).
    pub mtu: Option<u32>,
    /// `vlan=`.
    pub vlan: Option<String>,
    /// `model=`.
    pub model: Option<String>,
    /// `mac=` (libxl's all-zero when not given: one is made).
    pub mac: Option<[u8; 6]>,
    /// `ip=`.
    pub ip: Option<String>,
    /// `bridge=`.
    pub bridge: Option<String>,
    /// `vifname=`.
    pub ifname: Option<String>,
    /// `script=`.
    pub script: Option<String>,
    /// `type=`.
    pub nictype: NicType,
    /// `rate=`: bytes per interval and the interval in microseconds.
    pub rate: Option<(u64, u32)>,
    /// `gatewaydev=` (or the deprecated `netdev=`).
    pub gatewaydev: Option<String>,
    /// The first COLO parameter given (`forwarddev=`, `colo_*=`), which Xenia refuses.
    pub colo: Option<String>,
    /// `trusted` / `untrusted`.
    pub trusted: Option<bool>,
}

/// A spec as xl read it: the interface and what xl said on the way without refusing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The interface.
    pub nic: Nic,
    /// xl's notes (`the netdev parameter is deprecated, ...`).
    pub warnings: Vec<String>,
}

/// xl's message for a bad value of `key`.
fn invalid(key: &str) -> String {
    format!("Invalid parameter `{key}'.")
}

/// xl's `parse_ulong`, stricter: digits only (xl would read `12abc` as 12), and at most
/// `u32::MAX`.
fn parse_ulong(text: &str) -> Result<u32, String> {
    let ok = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| format!("xl: failed to convert \"{text}\" to number"))
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`: six groups of one or two hex digits separated by
/// colons, nothing else (xl's `strtoul` loop, without its reading past the end).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut groups = text.split(':');
    for byte in &mut mac {
        let g = groups.next()?;
        if g.is_empty() || g.len() > 2 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(g, 16).ok()?;
    }
    groups.next().is_none().then_some(mac)
}

/// libxl's `LIBXL_MAC_FMT`: lowercase, two digits a byte.
pub fn mac_text(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// `source: config parsing error in vif: WHY in `TEXT'` (libxlutil's `xlu__vif_err`).
fn rate_err(source: &str, why: &str, text: &str) -> String {
    format!("{source}: config parsing error in vif: {why} in `{text}'")
}

/// Leading decimal digits of `s` as a number (`None`: more than `u64` holds) and the rest.
fn leading_number(s: &str) -> (Option<u64>, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut v: Option<u64> = Some(0);
    for b in s[..n].bytes() {
        v = v
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(u64::from(b - b'0')));
    }
    (v, &s[n..])
}

/// libxlutil's `xlu_vif_parse_rate`: `RATE/s[@INTERVAL]`, the rate in bytes or bits with
/// an optional `K`, `M` or `G` (powers of 1000), the interval in `s`, `ms` or `us`
/// (default 50 ms). Gives the bytes per interval and the interval in microseconds.
pub fn parse_rate(source: &str, rate: &str) -> Result<(u64, u32), String> {
    let (bytes, interval) = match rate.split_once('@') {
        Some((b, i)) => (b, Some(i)),
        None => (rate, None),
    };
    if bytes.is_empty() {
        return Err(rate_err(source, "no rate specified", rate));
    }
    // ^[0-9]+[GMK]?[Bb]/s$
    let (n, unit) = leading_number(bytes);
    let unit_ok = matches!(
        unit,
        "B/s" | "b/s" | "KB/s" | "Kb/s" | "MB/s" | "Mb/s" | "GB/s" | "Gb/s"
    );
    if unit.len() == bytes.len() || !unit_ok {
        return Err(rate_err(source, "invalid rate", bytes));
    }
    let mut bytes_per_sec = match n {
        Some(n) if n != 0 && n <= u64::from(u32::MAX) => n,
        _ => return Err(rate_err(source, "rate overflow", bytes)),
    };
    bytes_per_sec *= match unit.as_bytes()[0] {
        b'G' => 1_000_000_000,
        b'M' => 1_000_000,
        b'K' => 1_000,
        _ => 1,
    };
    if unit.contains('b') {
        bytes_per_sec /= 8;
    }
    let mut interval_us = RATE_INTERVAL_DEFAULT_US;
    if let Some(i) = interval {
        // ^[0-9]+[mu]?s?$
        let (n, unit) = leading_number(i);
        if unit.len() == i.len() || !matches!(unit, "" | "s" | "m" | "ms" | "u" | "us") {
            return Err(rate_err(source, "invalid replenishment interval", i));
        }
        let n = match n {
            Some(n) if n != 0 && n <= u64::from(u32::MAX) => n,
            _ => return Err(rate_err(source, "replenishment interval overflow", i)),
        };
        let us = match unit.as_bytes().first() {
            None | Some(b's') => n * 1_000_000,
            Some(b'm') => n * 1_000,
            _ => n,
        };
        interval_us = u32::try_from(us)
            .map_err(|_| rate_err(source, "replenishment interval overflow", i))?;
    }
    let product = bytes_per_sec
        .checked_mul(u64::from(interval_us))
        .ok_or_else(|| rate_err(source, "rate overflow", rate))?;
    Ok((product / 1_000_000, interval_us))
}

/// xl's `MATCH_OPTION`: the value after `key=`.
fn option<'a>(piece: &'a str, key: &str) -> Option<&'a str> {
    piece.strip_prefix(key)?.strip_prefix('=')
}

/// Reads a vif spec given as one or more components (a config file's list item is one;
/// `xl network-attach` takes several), each split at commas, blanks around the pieces
/// dropped and empty pieces skipped (xl's `strtok`). `source` names where the text came
/// from in libxlutil's messages (`command line`, the config file). The first bad piece
/// ends the reading with xl's words for it.
pub fn parse(source: &str, specs: &[&str]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let nic = &mut p.nic;
    let pieces = specs
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    for piece in pieces {
        let s = |v: &str| Some(v.to_string());
        if let Some(v) = option(piece, "type") {
            nic.nictype = match v {
                "vif" => NicType::Vif,
                "ioemu" => NicType::VifIoemu,
                _ => return Err(invalid("type")),
            };
        } else if let Some(v) = option(piece, "mac") {
            nic.mac = Some(parse_mac(v).ok_or_else(|| invalid("mac"))?);
        } else if let Some(v) = option(piece, "bridge") {
            nic.bridge = s(v);
        } else if let Some(v) = option(piece, "netdev") {
            p.warnings.push(
                "the netdev parameter is deprecated, please use gatewaydev instead".to_string(),
            );
            nic.gatewaydev = s(v);
        } else if let Some(v) = option(piece, "gatewaydev") {
            nic.gatewaydev = s(v);
        } else if let Some(v) = option(piece, "ip") {
            nic.ip = s(v);
        } else if let Some(v) = option(piece, "script") {
            nic.script = s(v);
        } else if let Some(v) = option(piece, "backend") {
            nic.backend_domname = s(v);
        } else if let Some(v) = option(piece, "vifname") {
            nic.ifname = s(v);
        } else if let Some(v) = option(piece, "model") {
            nic.model = s(v);
        } else if let Some(v) = option(piece, "rate") {
            nic.rate = Some(parse_rate(source, v)?);
        } else if option(piece, "accel").is_some() {
            p.warnings
                .push("the accel parameter for vifs is currently not supported".to_string());
        } else if let Some(v) = option(piece, "devid") {
            nic.devid = Some(parse_ulong(v)?);
        } else if let Some(v) = option(piece, "mtu") {
            nic.mtu = Some(parse_ulong(v)?);
        } else if let Some(v) = option(piece, "vlan") {
            nic.vlan = s(v);
        } else if piece == "trusted" {
            nic.trusted = Some(true);
        } else if piece == "untrusted" {
            nic.trusted = Some(false);
        } else if let Some((key, _)) = piece.split_once('=')
            && (key == "forwarddev" || key.starts_with("colo_"))
            && key.len() < 40
        {
            nic.colo.get_or_insert_with(|| key.to_string());
        } else {
            return Err(format!("unrecognized argument `{piece}'"));
        }
    }
    Ok(p)
}

/// Whether `script` names the `vif-bridge` script (by name, or its path under
/// [`SCRIPT_DIR`]).
fn is_vif_bridge(script: &str) -> bool {
    script == SCRIPT_VIF_BRIDGE
        || script
            .strip_prefix(SCRIPT_DIR)
            .and_then(|r| r.strip_prefix('/'))
            == Some(SCRIPT_VIF_BRIDGE)
}

/// Why Xenia cannot serve `nic` (its backend is netback in dom0's kernel, joined to the one
/// bridge, `xenbr0`), or why libxl would refuse it; `None` when it can. The text completes
/// `cannot attach vif DEVID: `.
pub fn xenia_problem(nic: &Nic) -> Option<String> {
    if nic.nictype == NicType::VifIoemu {
        // libxl's words (`libxl__device_nic_setdefault`).
        return Some(
            "trying to create PV or PVH guest with an emulated interface (type=ioemu is for \
             HVM guests; Xenia runs PV guests, whose vifs are type=vif)"
                .to_string(),
        );
    }
    if let Some(m) = &nic.model {
        return Some(format!(
            "model={m} is not supported by Xenia: it names the card emulated for an HVM \
             guest, and Xenia's guests are PV, with Xen's netif (leave model= out)"
        ));
    }
    if let Some(s) = &nic.script
        && !is_vif_bridge(s)
    {
        return Some(format!(
            "script={s} is not supported by Xenia: dom0 runs no hotplug scripts, netback joins \
             the vif to the bridge itself (script={SCRIPT_VIF_BRIDGE}'s work)"
        ));
    }
    if nic.rate.is_some() {
        return Some(
            "rate= is not supported by Xenia: its netback does no rate limiting".to_string(),
        );
    }
    if let Some(v) = &nic.vlan {
        return Some(format!(
            "vlan={v} is not supported by Xenia: its bridge carries no VLANs"
        ));
    }
    if let Some(k) = &nic.colo {
        return Some(format!("{k}=: COLO is not supported by Xenia"));
    }
    if let Some(b) = &nic.backend_domname
        && !crate::disk::is_dom0_name(b)
    {
        return Some(format!(
            "backend={b} is not supported by Xenia: vifs are served by Domain-0 only"
        ));
    }
    if let Some(b) = &nic.bridge
        && b != DEFAULT_BRIDGE
    {
        return Some(format!(
            "bridge={b} is not supported by Xenia: dom0 has one bridge, {DEFAULT_BRIDGE}"
        ));
    }
    if let Some(m) = nic.mtu
        && m != 0
        && !(MTU_MIN..=MTU_MAX).contains(&m)
    {
        return Some(format!(
            "mtu={m} is not supported by Xenia: its bridge carries frames of at most {} \
             bytes (mtu {MTU_MIN} to {MTU_MAX})",
            guest_abi::netif::ETH_FRAME_LEN
        ));
    }
    if let Some(mac) = &nic.mac
        && mac[0] & 1 != 0
    {
        return Some(format!(
            "mac={}: a multicast address (first byte odd) cannot be an interface's",
            mac_text(mac)
        ));
    }
    if let Some(d) = nic.devid
        && d > DEVID_MAX
    {
        return Some(format!("devid={d}: a device id is at most {DEVID_MAX}"));
    }
    if let Some(n) = &nic.ifname
        && (n.is_empty()
            || n.len() > IFNAME_MAX
            || n == "."
            || n == ".."
            || !n
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':'))
    {
        return Some(format!(
            "vifname={n}: an interface name is 1 to {IFNAME_MAX} printable characters, \
             without '/' or ':'"
        ));
    }
    for (key, v) in [("ip", &nic.ip), ("gatewaydev", &nic.gatewaydev)] {
        if let Some(v) = v
            && (v.len() > VALUE_MAX || v.bytes().any(|b| b.is_ascii_control()))
        {
            return Some(format!(
                "{key}=: at most {VALUE_MAX} bytes, without control characters"
            ));
        }
    }
    None
}

/// FNV-1a (64 bits): a small, fixed hash (the MAC must not change between builds or
/// machines, so no seeded hasher).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .into_iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The MAC of device `devid` of the domain named `name` when the spec gives none: Xen's
/// OUI and 23 bits of a hash of the name and the index (libxl draws them at random, with
/// the top bit of the fourth byte clear as here). Distinct names may share one (one in
/// about eight million per pair): give `mac=` where that matters.
pub fn generated_mac(name: &str, devid: u32) -> [u8; 6] {
    let h = fnv1a(
        name.bytes()
            .chain(core::iter::once(0))
            .chain(devid.to_le_bytes()),
    )
    .to_le_bytes();
    [XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], h[0] & 0x7f, h[1], h[2]]
}

/// `nic` with libxl's defaults (`libxl__device_nic_setdefault`) as device `devid` of the
/// domain named `name`: its MAC ([`generated_mac`] when none or all-zero was given), `mtu`
/// 1500, `bridge` `xenbr0`, `script` `/etc/xen/scripts/vif-bridge`, type `vif`, trusted.
/// libxl's `model` default (`rtl8139`, for HVM guests) is left out.
pub fn resolve(nic: &Nic, name: &str, devid: u32) -> Nic {
    let mut n = nic.clone();
    n.devid = Some(devid);
    if n.mac.is_none_or(|m| m == [0; 6]) {
        n.mac = Some(generated_mac(name, devid));
    }
    if n.mtu.is_none_or(|m| m == 0) {
        n.mtu = Some(MTU_DEFAULT);
    }
    n.bridge.get_or_insert_with(|| DEFAULT_BRIDGE.to_string());
    n.script = Some(format!("{SCRIPT_DIR}/{SCRIPT_VIF_BRIDGE}"));
    n.nictype = NicType::Vif;
    n.trusted.get_or_insert(true);
    n
}

/// `backend/vif/<domid>/<devid>` under dom0's home.
pub fn backend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}/{devid}")
}

/// `/local/domain/<domid>/device/vif/<devid>`.
pub fn frontend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vif/{devid}")
}

/// The device ids of `domid`'s vifs, as listed under its backend directory (dom0's: the
/// domain may empty its own), in order; names that are not ids are skipped.
pub fn devids(children: &[String]) -> Vec<u32> {
    let mut ids: Vec<u32> = children
        .iter()
        // Canonical decimal only: no sign, no leading zero.
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && (*s == "0" || !s.starts_with('0')))
        .filter_map(|s| s.parse().ok())
        .filter(|&d| d <= DEVID_MAX)
        .collect();
    ids.sort_unstable();
    ids
}

/// The value `hotplug-status` starts with. libxl writes `""` so that the backend waits for
/// the hotplug script (`vif-bridge` writes `connected` once the vif is on the bridge);
/// Xenia runs no script, and netback joins the bridge as it connects, so the toolstack
/// writes what the script would have (a Linux-style netback, which waits for
/// `connected`, then goes on).
pub const HOTPLUG_CONNECTED: &str = "connected";

/// The operations that give domain `domid` the interface `nic` (which [`xenia_problem`]
/// accepted and [`resolve`] completed) as device `devid`, in libxl's order
/// (`libxl__device_nic_add`, `libxl__set_xenstore_nic`, `libxl__device_generic_add`): the
/// frontend directory, the domain's own and readable by dom0, with `backend`,
/// `backend-id`, `state`, `handle`, `mac`, `trusted`, and `mtu` (dom0's, readable by the
/// domain: the domain may not change it); then the backend directory, dom0's and readable
/// by the domain, with `frontend`, `frontend-id`, `online`, `state`, `script`,
/// `vifname`, `mac`, `ip`, `gatewaydev`, `mtu` (when not 1500), `bridge`, `handle`,
/// `type` (`vif`) and `hotplug-status`. Both states are `XenbusStateInitialising`.
pub fn add_ops(domid: u16, devid: u32, nic: &Nic) -> Vec<XsOp> {
    let fe = frontend_path(domid, devid);
    let be = backend_path(domid, devid);
    let w = |dir: &str, key: &str, value: String| XsOp::Write(format!("{dir}/{key}"), value);
    let mac = mac_text(&nic.mac.unwrap_or([0; 6]));
    let mtu = nic.mtu.unwrap_or(MTU_DEFAULT);
    let init = format!("{}", crate::disk::STATE_INITIALISING);
    let mut ops = alloc::vec![
        XsOp::Rm(fe.clone()),
        XsOp::Mkdir(fe.clone()),
        XsOp::SetPerms(fe.clone(), alloc::vec![(domid, b'n'), (0, b'r')]),
        w(&fe, "backend", be.clone()),
        w(&fe, "backend-id", "0".to_string()),
        w(&fe, "state", init.clone()),
        w(&fe, "handle", format!("{devid}")),
        w(&fe, "mac", mac.clone()),
        w(
            &fe,
            "trusted",
            if nic.trusted.unwrap_or(true) {
                "1"
            } else {
                "0"
            }
            .to_string()
        ),
        w(&fe, "mtu", format!("{mtu}")),
        XsOp::SetPerms(format!("{fe}/mtu"), alloc::vec![(0, b'n'), (domid, b'r')]),
        XsOp::Rm(be.clone()),
        XsOp::Mkdir(be.clone()),
        XsOp::SetPerms(be.clone(), alloc::vec![(0, b'n'), (domid, b'r')]),
        w(&be, "frontend", fe.clone()),
        w(&be, "frontend-id", format!("{domid}")),
        w(&be, "online", "1".to_string()),
        w(&be, "state", init),
        w(
            &be,
            "script",
            nic.script
                .clone()
                .unwrap_or_else(|| format!("{SCRIPT_DIR}/{SCRIPT_VIF_BRIDGE}"))
        ),
    ];
    if let Some(n) = &nic.ifname {
        ops.push(w(&be, "vifname", n.clone()));
    }
    ops.push(w(&be, "mac", mac));
    for (key, v) in [("ip", &nic.ip), ("gatewaydev", &nic.gatewaydev)] {
        if let Some(v) = v {
            ops.push(w(&be, key, v.clone()));
        }
    }
    if mtu != MTU_DEFAULT {
        ops.push(w(&be, "mtu", format!("{mtu}")));
    }
    let bridge = nic.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE);
    ops.push(w(&be, "bridge", bridge.to_string()));
    ops.push(w(&be, "handle", format!("{devid}")));
    ops.push(w(&be, "type", NicType::Vif.name().to_string()));
    ops.push(w(&be, "hotplug-status", HOTPLUG_CONNECTED.to_string()));
    ops
}

/// Where the toolstack keeps which vif holds which MAC, so that two live vifs never share
/// one (the bridge learns a MAC on one port: a second holder would get none of its frames,
/// or the first's) without reading every domain's vifs at each creation (Xenia's; Xen does
/// not check): `<MAC_INDEX>/<12 hex digits>` = `<domid>-<devid>`, dom0's only. An entry
/// whose vif is gone, or holds another MAC now, is stale: overwritten when met.
pub const MAC_INDEX: &str = "/tool/xenia/macs";

/// The index node of `mac`.
pub fn mac_index_path(mac: &[u8; 6]) -> String {
    let mut out = String::from(MAC_INDEX);
    out.push('/');
    for b in mac {
        out += &format!("{b:02x}");
    }
    out
}

/// The holder an index entry names: `(domid, devid)`.
pub fn parse_holder(text: &[u8]) -> Option<(u16, u32)> {
    let (d, n) = core::str::from_utf8(text).ok()?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(d) && digits(n)).then_some(())?;
    Some((d.parse().ok()?, n.parse().ok()?))
}

/// The index operation that records device `devid` of `domid` as the holder of `nic`'s MAC
/// (written with [`add_ops`], after the check that no live vif holds it).
pub fn index_ops(domid: u16, devid: u32, nic: &Nic) -> Vec<XsOp> {
    alloc::vec![XsOp::Write(
        mac_index_path(&nic.mac.unwrap_or([0; 6])),
        format!("{domid}-{devid}")
    )]
}

/// The index entries of domain `domid`'s vifs, to remove with its backends when it is
/// destroyed: for each device under `backend/vif/<domid>`, the entry of the MAC its `mac`
/// names, when that entry names this device.
pub fn index_release_ops(domid: u16, store: &mut impl crate::disk::ReadStore) -> Vec<XsOp> {
    let mut ops = Vec::new();
    let dir = format!("/local/domain/0/backend/vif/{domid}");
    for devid in devids(&store.directory(&dir).unwrap_or_default()) {
        let mac = store
            .read(&format!("{dir}/{devid}/mac"))
            .and_then(|m| parse_mac(core::str::from_utf8(&m).ok()?));
        let Some(mac) = mac else {
            continue;
        };
        let path = mac_index_path(&mac);
        if store.read(&path).as_deref().and_then(parse_holder) == Some((domid, devid)) {
            ops.push(XsOp::Rm(path));
        }
    }
    ops
}

/// The operations that take device `devid` away from `domid`: both directories.
pub fn remove_ops(domid: u16, devid: u32) -> Vec<XsOp> {
    alloc::vec![
        XsOp::Rm(frontend_path(domid, devid)),
        XsOp::Rm(backend_path(domid, devid)),
    ]
}

/// `libxl_device_nic` as libxl's JSON generator prints it (fields in the IDL's order, each
/// only when it differs from its default): `xl -N network-attach` and `xl create -n` show
/// a spec as parsed, `xl list -l` a [`resolve`]d one.
pub fn to_json(nic: &Nic) -> Json {
    let mut m: Vec<(String, Json)> = Vec::new();
    let int = |m: &mut Vec<(String, Json)>, k: &str, v: Option<u64>| {
        if let Some(v) = v.filter(|&v| v != 0 || k == "devid") {
            m.push((k.to_string(), Json::Int(v.min(i64::MAX as u64) as i64)));
        }
    };
    let s = |m: &mut Vec<(String, Json)>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.push((k.to_string(), Json::str(v)));
        }
    };
    s(&mut m, "backend_domname", &nic.backend_domname);
    int(&mut m, "devid", nic.devid.map(u64::from));
    int(&mut m, "mtu", nic.mtu.map(u64::from));
    s(&mut m, "vlan", &nic.vlan);
    s(&mut m, "model", &nic.model);
    s(
        &mut m,
        "mac",
        &nic.mac.filter(|m| *m != [0; 6]).map(|m| mac_text(&m)),
    );
    s(&mut m, "ip", &nic.ip);
    s(&mut m, "bridge", &nic.bridge);
    s(&mut m, "ifname", &nic.ifname);
    s(&mut m, "script", &nic.script);
    if nic.nictype != NicType::Unknown {
        m.push(("nictype".to_string(), Json::str(nic.nictype.name())));
    }
    if let Some((bytes, us)) = nic.rate {
        int(&mut m, "rate_bytes_per_interval", Some(bytes));
        int(&mut m, "rate_interval_usecs", Some(u64::from(us)));
    }
    s(&mut m, "gatewaydev", &nic.gatewaydev);
    if let Some(t) = nic.trusted {
        m.push((
            "trusted".to_string(),
            Json::str(if t { "True" } else { "False" }),
        ));
    }
    Json::Map(m)
}

#[cfg(test)]
mod tests;
