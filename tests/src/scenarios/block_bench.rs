//! `block_bench_short`: the bounded version of `cargo xtask bench --only block`
//! ([`crate::blockbench`]): one round over 2 MiB in wall time (QEMU's clock following the
//! host's), dom0 on `/dev/vdb` directly, then a domU through blkfront/blkback on the same
//! device. The ratio against the goal is a note, not a check: wall time on a shared host is
//! noisy, and `-icount` gives no throughput (see [`crate::blockbench`]).

use std::time::Duration;

use crate::blockbench::{self, REQUEST};
use crate::iso::DEFAULT_HV_OPTIONS;
use crate::machine::DiskImage;
use crate::runner::Context;

/// Requests of [`REQUEST`] bytes: about 2 MiB.
const REQUESTS: u64 = (2 << 20) / REQUEST;

/// One round: both sides' figures exist and parse, the domU passes its checks (every request
/// reads back what it wrote); the figures are notes.
pub fn short(ctx: &Context) -> Result<(), String> {
    let dir = ctx.work_dir()?;
    let vda = DiskImage::create(dir.join("vda.img"), 1 << 20)?;
    let vdb = blockbench::image(dir.join("vdb.img"), 4 << 20)?;
    let machine = ctx.machine().memory_mib(512).hv_options(DEFAULT_HV_OPTIONS);
    let machine = blockbench::machine(ctx.workspace(), machine, "", &[vda.path(), vdb.path()])?;
    let mut vm = machine.boot()?;
    vm.wait_for("dom0# ", Duration::from_secs(180))?;
    let r = blockbench::round(&mut vm, "bench", REQUESTS);
    vm.kill();
    let r = r?;
    if [
        r.dom0_write_ns,
        r.dom0_read_ns,
        r.domu_write_ns,
        r.domu_read_ns,
    ]
    .contains(&0)
    {
        return Err(format!("a figure is zero: {r:?}"));
    }
    for line in blockbench::report(&r, "wall time") {
        ctx.note(line);
    }
    Ok(())
}
