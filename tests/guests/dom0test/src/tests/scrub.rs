//! `scrub`: memory a destroyed domain held reaches the next domain as zeros (issue 13's
//! scrubbing ahead: the hypervisor wipes a destroyed domain's frames as it frees them and
//! marks them clean, and the next `populate_physmap` does not clear them again, so a wrong
//! clean bit would hand over the old contents). A domain of [`PAGES`] frames is populated
//! (no kernel: it never runs) and every frame must read as zeros (memory scrubbed at boot,
//! `bootscrub`); dom0 fills every frame with a marker through its frame writes; the domain
//! is destroyed; a second domain of the same size is populated and every one of its frames
//! must read as zeros. Most of the second domain's frames must be the first's (the
//! allocator hands back what it was given last), or the test would prove nothing: checked.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use dom0_tools::hypervisor::{CreateConfig, Hypervisor};
use guest_abi::types::{DomId, Mfn, PAGE_SIZE, Pfn};
use xenia_guest_rt::check::Checks;
use xenia_guest_rt::println;

use super::{Ctx, KIB_PER_PAGE, Outcome};

/// Frames of each domain.
const PAGES: u64 = 512;
/// What dom0 writes into the first domain's frames.
const MARKER: u8 = 0xA5;

pub fn run(ctx: &mut Ctx, c: &mut Checks) -> Outcome {
    let (a, a_frames) = match populated(ctx, 0x5C) {
        Ok(d) => d,
        Err(e) => {
            c.check(
                "create and populate the first domain",
                false,
                format_args!("{e}"),
            );
            return Outcome::Ran;
        }
    };
    let dirty = nonzero_frames(ctx, a, &a_frames);
    c.check(
        format_args!("the first domain's {PAGES} frames read as zeros"),
        dirty.as_ref().is_ok_and(|d| d.is_empty()),
        format_args!("{dirty:?}"),
    );
    let page = vec![MARKER; PAGE_SIZE];
    let written = a_frames
        .iter()
        .try_for_each(|&m| ctx.hv.write_frame(a, m, 0, &page));
    c.check(
        "dom0 fills every frame of the first domain with the marker",
        written.is_ok(),
        format_args!("{written:?}"),
    );
    let marked = marked_frames(ctx, a, &a_frames);
    c.check(
        "the marker reads back from every frame",
        marked == Ok(a_frames.len()),
        format_args!("{marked:?} of {}", a_frames.len()),
    );
    if let Err(e) = ctx.destroy(a) {
        c.check("destroy the first domain", false, format_args!("{e}"));
        return Outcome::Ran;
    }
    let (b, b_frames) = match populated(ctx, 0x5D) {
        Ok(d) => d,
        Err(e) => {
            c.check(
                "create and populate the second domain",
                false,
                format_args!("{e}"),
            );
            return Outcome::Ran;
        }
    };
    let reused = b_frames.iter().filter(|m| a_frames.contains(m)).count();
    println!("scrub: {reused} of the second domain's {PAGES} frames were the first's");
    c.check(
        "most of the second domain's frames were the first domain's",
        reused as u64 >= PAGES / 2,
        format_args!("{reused} of {PAGES}"),
    );
    let dirty = nonzero_frames(ctx, b, &b_frames);
    c.check(
        format_args!("the second domain's {PAGES} frames read as zeros"),
        dirty.as_ref().is_ok_and(|d| d.is_empty()),
        format_args!("{dirty:?}"),
    );
    ctx.destroy_all(c, "the second domain", &[b]);
    Outcome::Ran
}

/// A new domain (never run) with [`PAGES`] frames; its ID and its frames.
fn populated(ctx: &mut Ctx, tag: u8) -> Result<(DomId, Vec<Mfn>), String> {
    let dom = ctx
        .hv
        .create_domain(&CreateConfig::new([tag; 16], 1))
        .map_err(|e| format!("createdomain: {e:?}"))?;
    let filled = ctx
        .hv
        .set_max_mem(dom, PAGES * KIB_PER_PAGE)
        .and_then(|()| {
            let pfns: Vec<Pfn> = (0..PAGES).map(Pfn).collect();
            ctx.hv.populate(dom, &pfns)
        });
    match filled {
        Ok(frames) => Ok((dom, frames)),
        Err(e) => {
            let _ = ctx.destroy(dom);
            Err(format!("max_mem and populate_physmap: {e:?}"))
        }
    }
}

/// The frames of `dom` among `frames` that hold a byte other than zero.
fn nonzero_frames(ctx: &mut Ctx, dom: DomId, frames: &[Mfn]) -> Result<Vec<Mfn>, String> {
    let mut page = vec![0u8; PAGE_SIZE];
    let mut dirty = Vec::new();
    for &m in frames {
        ctx.hv
            .read_frame(dom, m, 0, &mut page)
            .map_err(|e| format!("reading frame {:#x}: {e:?}", m.0))?;
        if page.iter().any(|&b| b != 0) {
            dirty.push(m);
        }
    }
    Ok(dirty)
}

/// How many of `frames` (of `dom`) hold the marker in every byte.
fn marked_frames(ctx: &mut Ctx, dom: DomId, frames: &[Mfn]) -> Result<usize, String> {
    let mut page = vec![0u8; PAGE_SIZE];
    let mut n = 0;
    for &m in frames {
        ctx.hv
            .read_frame(dom, m, 0, &mut page)
            .map_err(|e| format!("reading frame {:#x}: {e:?}", m.0))?;
        n += usize::from(page.iter().all(|&b| b == MARKER));
    }
    Ok(n)
}
