//! `linux_abi_domu`: dom0 builds testguest `linux_abi_domu`, which checks from a domU what Xen
//! keeps from one (issue 18: `xen_version`'s denials, `pirq_eoi_gmfn_v2`, `get_free_pirq`,
//! `remote_shutdown`, `set_iopl`); its verdict comes back through the console ring, and every
//! frame comes back when it is destroyed.

use xenia_guest_rt::check::Checks;

use super::{Ctx, Outcome};

/// The domU's memory.
const DOMU_MIB: u64 = 16;

/// `linux_abi_domu`: testguest `linux_abi_domu` as a domU; its verdict from the console ring.
pub fn domu(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    super::domu_verdict(
        ctx,
        c,
        "linux_abi_domu",
        DOMU_MIB,
        "linux_abi",
        "checks all passed",
    )
}
