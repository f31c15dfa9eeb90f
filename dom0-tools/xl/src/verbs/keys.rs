//! Keys sent elsewhere: `xl sysrq` (a letter in the domain's `control/sysrq` xenstore
//! node, as libxl's `libxl_send_sysrq` writes it; a kernel that watches the node acts on
//! it, one that does not ignores it) and `xl debug-keys` (the hypervisor's debug keys, as
//! if typed after the Ctrl-A switch; what they print is in `xl dmesg`).

use super::{Io, System, VerbResult, find, reported};

/// `xl sysrq <domain> <letter>`.
pub fn sysrq(sys: &mut impl System, arg: &str, key: char) -> VerbResult {
    let (name, d) = find(sys, arg)?;
    let path = format!("/local/domain/{}/control/sysrq", d.dom);
    sys.xs_write(&path, &key.to_string()).map_err(|e| {
        format!(
            "cannot send sysrq '{key}' to domain {} ({name}): xenstore refused {path} ({e}); \
             only domains made by `xl create` have a xenstore home",
            d.dom
        )
    })
}

/// `xl debug-keys <keys>`.
pub fn debug_keys(sys: &mut impl System, io: &mut Io<'_>, keys: &str) -> VerbResult {
    sys.debug_keys(keys.as_bytes()).map_err(|e| {
        reported(
            io,
            &format!("xl: the hypervisor said {e}\ncannot send debug keys: {keys}\n"),
        )
    })
}
