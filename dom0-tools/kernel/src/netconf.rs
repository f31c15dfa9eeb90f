//! dom0's own address on `xenbr0`: the plan's default (QEMU's user-mode network,
//! `10.0.2.0/24`: dom0 is `10.0.2.15`, the gateway `10.0.2.2`) and the command line's
//! `ip=A.B.C.D/N,gw=E.F.G.H` that overrides it.

/// An IPv4 address.
pub type Ipv4 = [u8; 4];

/// dom0's address, prefix length and default gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// dom0's address.
    pub addr: Ipv4,
    /// The prefix length (`/24`).
    pub prefix: u8,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4>,
}

/// The plan's default: `10.0.2.15/24`, gateway `10.0.2.2`.
pub const DEFAULT: IpConfig = IpConfig {
    addr: [10, 0, 2, 15],
    prefix: 24,
    gateway: Some([10, 0, 2, 2]),
};

/// `A.B.C.D`.
pub fn parse_ipv4(text: &str) -> Option<Ipv4> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for b in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *b = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `A.B.C.D/N` optionally followed by `,gw=E.F.G.H` (no gateway when it is absent).
pub fn parse(text: &str) -> Option<IpConfig> {
    let (cidr, rest) = match text.split_once(',') {
        Some((c, r)) => (c, Some(r)),
        None => (text, None),
    };
    let (addr, prefix) = cidr.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|&p| (1..=32).contains(&p))?;
    let gateway = match rest {
        None => None,
        Some(r) => Some(parse_ipv4(r.strip_prefix("gw=")?)?),
    };
    Some(IpConfig {
        addr: parse_ipv4(addr)?,
        prefix,
        gateway,
    })
}

/// `10.0.2.15`.
pub fn text(ip: &Ipv4) -> alloc::string::String {
    alloc::format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_forms() {
        assert_eq!(parse("10.0.2.15/24,gw=10.0.2.2"), Some(DEFAULT));
        assert_eq!(
            parse("192.168.1.9/16"),
            Some(IpConfig {
                addr: [192, 168, 1, 9],
                prefix: 16,
                gateway: None
            })
        );
        for bad in [
            "",
            "10.0.2.15",
            "10.0.2.15/33",
            "10.0.2.15/0",
            "10.0.2/24",
            "10.0.2.256/24",
            "10.0.2.15.1/24",
            "10.0.2.15/24,gw=",
            "10.0.2.15/24,via=10.0.2.2",
            "1..2.3/8",
            "+1.2.3.4/8",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(text(&[10, 0, 2, 15]), "10.0.2.15");
    }
}
