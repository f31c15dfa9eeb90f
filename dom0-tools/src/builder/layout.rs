//! The start-of-day layout of a domU: dom0's layout (`xenia_pvboot::layout`)
//! with [`DOMU_EXTRA_PAGES`] extra pages after `shared_info`, the console ring,
//! the device page and the xenstore ring, where guest-abi's porting guide puts
//! them ([`guest_abi::device_page`], [`guest_abi::xenstore`]). `layout::plan_with` places them and sizes the
//! region, the page tables and the padding with them counted. The padding is Xen's when the
//! domain's memory reaches that far, else what of its memory follows the stack
//! ([`Padding::UpToMemory`]): a minimal domU needs no more memory than its start of day.

use core::ops::Range;

use guest_abi::device_page::{console_ring_va, device_page_va};
use guest_abi::xenstore::store_ring_va;
use xenia_pvboot::layout::{self, PAGE, Padding, StartOfDay};

pub use xenia_pvboot::layout::DOMU_EXTRA_PAGES;

use super::BuildError;

/// A domU's start-of-day layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomuLayout {
    /// Everything `xenia_pvboot` describes: regions, table counts, entries.
    pub sod: StartOfDay,
    /// Virtual address of the console ring page: the first extra page.
    pub console_ring: u64,
    /// Virtual address of the device page: the second extra page.
    pub device_page: u64,
    /// Virtual address of the xenstore ring page: the third extra page.
    pub store_ring: u64,
}

/// Plans the start-of-day layout of a domU of `nr_pages` pages whose kernel
/// occupies `kernel` and whose ramdisk is `ramdisk_len` bytes (none when
/// `None` or zero).
pub fn plan(
    kernel: Range<u64>,
    nr_pages: u64,
    ramdisk_len: Option<u64>,
) -> Result<DomuLayout, BuildError> {
    let sod = layout::plan_with(
        kernel,
        nr_pages,
        ramdisk_len,
        DOMU_EXTRA_PAGES,
        Padding::UpToMemory,
    )
    .map_err(BuildError::Layout)?;
    let out = DomuLayout {
        sod,
        console_ring: sod.extra.start,
        device_page: sod.extra.start + PAGE,
        store_ring: sod.extra.start + 2 * PAGE,
    };
    // The guest finds both pages from `start_info`'s address (guest-abi's rule); the
    // layout must agree with it.
    if out.console_ring != console_ring_va(sod.start_info)
        || out.device_page != device_page_va(sod.start_info)
        || out.store_ring != store_ring_va(sod.start_info)
        || sod.extra.pages() != DOMU_EXTRA_PAGES
    {
        return Err(BuildError::Internal(
            "the layout's extra pages are not where guest-abi puts the console ring, device page and store ring",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_abi::types::Pfn;
    use xenia_pvboot::layout::Target;

    const LINUX: u64 = 0xFFFF_FFFF_8000_0000;
    const MIB: u64 = 1 << 20;

    #[test]
    fn extra_pages_follow_shared_info() {
        let kernel = LINUX + 0x100_0000..LINUX + 0x123_4567;
        let dom0 = layout::plan(kernel.clone(), 16 * MIB / PAGE, None, 0).unwrap();
        let domu = plan(kernel, 16 * MIB / PAGE, None).unwrap();
        let sod = domu.sod;
        assert_eq!(sod.kernel, dom0.kernel);
        assert_eq!(sod.initrd, None);
        assert_eq!(sod.p2m, dom0.p2m, "nothing before the extra pages moves");
        assert_eq!(sod.start_info, dom0.start_info);
        assert_eq!(sod.shared_info, dom0.shared_info);
        assert_eq!(domu.console_ring, sod.shared_info + PAGE);
        assert_eq!(domu.device_page, sod.shared_info + 2 * PAGE);
        assert_eq!(domu.store_ring, sod.shared_info + 3 * PAGE);
        assert_eq!(sod.page_tables.start, dom0.page_tables.start + 3 * PAGE);
        assert_eq!(sod.stack.start, sod.page_tables.end);
        assert!(sod.mapped_end - sod.stack.end >= layout::MIN_PADDING);
        assert_eq!(sod.mapped_end % layout::BOOTSTRAP_ALIGN, 0);
    }

    #[test]
    fn ramdisk_keeps_its_length() {
        let kernel = LINUX + 0x100_0000..LINUX + 0x120_0000;
        let domu = plan(kernel, 32 * MIB / PAGE, Some(3 * PAGE + 5)).unwrap();
        let initrd = domu.sod.initrd.unwrap();
        assert_eq!(initrd.start, LINUX + 0x120_0000);
        assert_eq!(initrd.len(), 4 * PAGE);
        assert_eq!(domu.sod.initrd_len, 3 * PAGE + 5);
        assert_eq!(domu.sod.p2m.start, initrd.end);
        assert_eq!(
            plan(LINUX..LINUX + PAGE, 4096, Some(0)).unwrap().sod.initrd,
            None
        );
    }

    #[test]
    fn every_page_is_mapped_once_and_only_tables_are_read_only() {
        let domu = plan(LINUX + 0x10_0000..LINUX + 0x30_0000, 8192, Some(12345)).unwrap();
        let sod = &domu.sod;
        let mut leaves = 0;
        for e in sod.table_entries() {
            if let Target::Page { pfn, writable } = e.target {
                let va = sod.virt_start() + pfn.0 * PAGE;
                assert_eq!(writable, !sod.page_tables.contains(va), "{va:#x}");
                assert_ne!(va, sod.shared_info);
                leaves += 1;
            } else if e.target == Target::SharedInfo {
                leaves += 1;
            }
        }
        assert_eq!(leaves, sod.mapped_pages());
        assert_eq!(
            sod.pfn_of(domu.console_ring),
            Some(Pfn((domu.console_ring - sod.virt_start()) / PAGE))
        );
        assert_eq!(sod.pfn_of(sod.shared_info), None);
    }

    #[test]
    fn too_small_counts_the_extra_pages() {
        // Find the least memory that fits, then check one page less does not.
        let kernel = 0x40_0000..0x40_0000 + 3 * MIB;
        let mut nr = 1;
        loop {
            match plan(kernel.clone(), nr, None) {
                Ok(_) => break,
                Err(BuildError::Layout(layout::LayoutError::TooSmall { need_pages, .. })) => {
                    assert!(need_pages > nr);
                    nr = need_pages;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let fit = plan(kernel.clone(), nr, None).unwrap();
        assert_eq!(fit.sod.mapped_pages(), nr);
        assert!(plan(kernel, nr - 1, None).is_err());
    }

    #[test]
    fn hostile_sizes_are_errors() {
        assert!(matches!(
            plan(LINUX..LINUX + PAGE, 4096, Some(u64::MAX)),
            Err(BuildError::Layout(layout::LayoutError::Overflow))
        ));
        assert!(plan(LINUX..LINUX, 4096, None).is_err());
        assert!(plan(LINUX..LINUX + PAGE, u64::MAX, None).is_err());
    }
}
