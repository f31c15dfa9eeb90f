//! The Xen PV layout against libxc's rules, restated independently.

use super::*;
use alloc::collections::BTreeSet;
use alloc::vec;

const LINUX: u64 = 0xFFFF_FFFF_8000_0000;
const MIB: u64 = 1 << 20;
const INIT_P2M: u64 = 0x80_0000_0000;

/// Debian 6.1's kernel: text at p_paddr 0x1000000, 51 MiB, INIT_P2M, MOD_START_PFN; a
/// 256 MiB domain with a 2 MiB ramdisk.
fn debian_like() -> Request {
    Request {
        virt_base: LINUX,
        kernel: LINUX + 0x100_0000..LINUX + 0x100_0000 + 51 * MIB + 0x1234,
        nr_pages: 256 * MIB / PAGE,
        ramdisk_len: Some(2 * MIB + 5),
        mod_start_pfn: true,
        init_p2m: Some(INIT_P2M),
    }
}

/// Every leaf a layout's tables map: (canonical va, pfn, writable).
fn leaves(l: &Layout) -> Vec<(u64, u64, bool)> {
    let p2m: Vec<Mfn> = (0..l.nr_pages).map(|p| Mfn(0x10_0000 + p)).collect();
    let images: Vec<TableImage> = l
        .table_images(p2m.as_slice())
        .collect::<Result<_, _>>()
        .unwrap();
    let by_mfn: BTreeMap<u64, &TableImage> = images.iter().map(|t| (t.mfn.0, t)).collect();
    let root = by_mfn[&(0x10_0000 + l.root_table().0)];
    let mut out = vec![];
    let walk_next = |e: u64| by_mfn[&pte::mfn(e)];
    for (i4, &e4) in root.entries.iter().enumerate() {
        if e4 == 0 {
            continue;
        }
        assert_eq!(e4 & pte::TABLE, pte::TABLE);
        for (i3, &e3) in walk_next(e4).entries.iter().enumerate() {
            if e3 == 0 {
                continue;
            }
            for (i2, &e2) in walk_next(e3).entries.iter().enumerate() {
                if e2 == 0 {
                    continue;
                }
                for (i1, &e1) in walk_next(e2).entries.iter().enumerate() {
                    if e1 == 0 {
                        continue;
                    }
                    assert_eq!(e1 & pte::USER, 0, "leaves are supervisor, as libxc's");
                    let masked = ((i4 as u64) << 39)
                        | ((i3 as u64) << 30)
                        | ((i2 as u64) << 21)
                        | ((i1 as u64) << 12);
                    let va = if masked & (1 << 47) != 0 {
                        masked | !VADDR_MASK
                    } else {
                        masked
                    };
                    out.push((va, pte::mfn(e1) - 0x10_0000, e1 & pte::RW != 0));
                }
            }
        }
    }
    out
}

#[test]
fn debian_layout_is_libxcs() {
    let l = plan(&debian_like()).unwrap();
    assert_eq!(
        l.kernel.start,
        LINUX + 0x100_0000,
        "pfns below the kernel are padding"
    );
    // The magic pages follow the kernel directly: no mapped ramdisk, no mapped p2m.
    assert_eq!(l.p2m_mapped, None);
    assert_eq!(l.start_info, l.kernel.end);
    assert_eq!(l.store_ring, l.start_info + PAGE);
    assert_eq!(l.console_ring, l.start_info + 2 * PAGE);
    assert_eq!(l.page_tables.start, l.console_ring + PAGE);
    assert_eq!(l.stack.start, l.page_tables.end);
    assert_eq!(l.mapped_end % BOOTSTRAP_ALIGN, 0);
    assert!(l.mapped_end - l.stack.end >= MIN_PADDING);
    // The ramdisk right past the mapping, by frame, in whole pages.
    let first_after = (l.mapped_end - LINUX) / PAGE;
    assert_eq!(
        l.ramdisk,
        Some(Ramdisk::Unmapped {
            first: Pfn(first_after),
            pages: 513
        })
    );
    assert_eq!(l.ramdisk_len, 513 * PAGE);
    // The p2m at INIT_P2M, 128 pages for 65536 frames, then its own L3, L2 and L1.
    let a = l.p2m_area.unwrap();
    assert_eq!(a.va.start, INIT_P2M);
    assert_eq!(a.va.pages(), 128);
    assert_eq!(a.first, Pfn(first_after + 513));
    assert_eq!(a.frames, 128 + 3);
    assert_eq!(l.used_pages, a.first.0 + a.frames);
    // The initial mapping's tables: one L4, one L3, one L2 and an L1 per 2 MiB.
    let l1s = (l.mapped_end - LINUX) / (2 * MIB);
    assert_eq!(l.nr_pt_frames(), 3 + l1s);
    assert_eq!(l.tables.len() as u64, 3 + l1s + 3);
    let (si, _) = l.start_info(
        Mfn(7),
        (Mfn(8), 2),
        (Mfn(9), 1),
        b"root=/dev/xvda console=hvc0",
    );
    assert!(si.magic.starts_with(b"xen-3.0-x86_64\0"));
    assert_eq!(si.nr_pages, 65536);
    assert_eq!(si.shared_info, 7 * PAGE);
    assert_eq!(si.flags, SIF_MOD_START_PFN);
    assert_eq!(si.mod_start, first_after);
    assert_eq!(si.mod_len, 513 * PAGE);
    assert_eq!(si.mfn_list, INIT_P2M);
    assert_eq!(si.first_p2m_pfn, a.first);
    assert_eq!(si.nr_p2m_frames, 131);
    assert_eq!(si.pt_base, l.page_tables.start);
    assert_eq!(si.nr_pt_frames, l.nr_pt_frames());
    assert_eq!((si.store_mfn, si.store_evtchn), (Mfn(8), 2));
    assert_eq!(si.console.domu_mfn(), Mfn(9));
}

#[test]
fn tables_map_exactly_the_mapping_and_the_p2m_area() {
    for req in [
        debian_like(),
        Request {
            init_p2m: None,
            mod_start_pfn: false,
            ..debian_like()
        },
        Request {
            ramdisk_len: None,
            nr_pages: 96 * MIB / PAGE,
            ..debian_like()
        },
    ] {
        let l = plan(&req).unwrap();
        let got = leaves(&l);
        let tables: BTreeSet<u64> = l.tables.iter().map(|t| t.pfn.0).collect();
        let mut want = vec![];
        let mut va = LINUX;
        while va < l.mapped_end {
            let pfn = (va - LINUX) / PAGE;
            want.push((va, pfn, !tables.contains(&pfn)));
            va += PAGE;
        }
        if let Some(a) = l.p2m_area {
            for i in 0..a.va.pages() {
                want.push((a.va.start + i * PAGE, a.first.0 + i, true));
            }
        }
        let mut got_sorted = got.clone();
        got_sorted.sort_unstable_by_key(|g| (g.0 >> 47, g.0));
        want.sort_unstable_by_key(|g| (g.0 >> 47, g.0));
        assert_eq!(got_sorted.len(), want.len());
        assert!(got_sorted == want, "{req:?}");
        // Every table frame is in the mapping or the p2m area's frames, each used once, and
        // none is the domain's last frame.
        assert_eq!(tables.len(), l.tables.len());
        assert!(l.used_pages < l.nr_pages);
        // The L4 is the first table of the region libxc gives `pt_base`.
        assert_eq!(l.pfn_of(l.page_tables.start), Some(l.root_table()));
        // The in-mapping p2m, when there is one, covers every frame.
        if let Some(r) = l.p2m_mapped {
            assert!(r.len() >= l.nr_pages * 8);
            assert_eq!(l.p2m().0, r.start);
        }
    }
}

#[test]
fn mapped_ramdisk_keeps_its_exact_length() {
    let l = plan(&Request {
        mod_start_pfn: false,
        ..debian_like()
    })
    .unwrap();
    let Some(Ramdisk::Mapped(r)) = l.ramdisk else {
        panic!("{:?}", l.ramdisk)
    };
    assert_eq!(r.start, l.kernel.end);
    assert_eq!(r.pages(), 513);
    assert_eq!(l.ramdisk_len, 2 * MIB + 5);
    let (si, _) = l.start_info(Mfn(1), (Mfn(2), 0), (Mfn(3), 0), b"");
    assert_eq!(si.flags & SIF_MOD_START_PFN, 0);
    assert_eq!((si.mod_start, si.mod_len), (r.start, 2 * MIB + 5));
}

#[test]
fn init_p2m_ignored_where_libxc_ignores_it() {
    for at in [LINUX + 0x1000_0000, INIT_P2M + 1] {
        let l = plan(&Request {
            init_p2m: Some(at),
            ..debian_like()
        })
        .unwrap();
        assert_eq!(l.p2m_area, None);
        assert!(l.p2m_mapped.is_some());
    }
}

#[test]
fn too_small_and_hostile_sizes_are_errors() {
    // The least memory that fits, found by climbing; one page less does not fit.
    let mut n = 1;
    let fit = loop {
        match plan(&Request {
            nr_pages: n,
            ..debian_like()
        }) {
            Ok(l) => break l,
            Err(LayoutError::TooSmall { need_pages, .. }) => n = need_pages.max(n + 1),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(fit.used_pages + 1, n);
    assert!(matches!(
        plan(&Request {
            nr_pages: n - 1,
            ..debian_like()
        }),
        Err(LayoutError::TooSmall { .. })
    ));
    for req in [
        Request {
            ramdisk_len: Some(u64::MAX),
            ..debian_like()
        },
        Request {
            nr_pages: u64::MAX,
            ..debian_like()
        },
        Request {
            kernel: LINUX..LINUX,
            ..debian_like()
        },
        Request {
            kernel: 0..PAGE,
            ..debian_like()
        },
        Request {
            init_p2m: Some(0x7fff_ffff_f000),
            nr_pages: 1 << 40,
            ..debian_like()
        },
        Request {
            virt_base: 0xffff_8000_0000_0000,
            kernel: 0xffff_8000_0000_0000..0xffff_8000_0010_0000,
            ..debian_like()
        },
    ] {
        assert!(plan(&req).is_err(), "{req:?}");
    }
}

#[test]
fn entry_context_is_libxcs() {
    let l = plan(&debian_like()).unwrap();
    let ctx = l.initial_context(LINUX + 0x1234, Mfn(0x55));
    assert_eq!(ctx.user_regs.rip, LINUX + 0x1234);
    assert_eq!(ctx.user_regs.rsp, l.stack.end);
    assert_eq!(ctx.kernel_sp, l.stack.end);
    assert_eq!(ctx.user_regs.rsi, l.start_info);
    assert_eq!(u64::from(ctx.user_regs.cs), FLAT_KERNEL_CS64);
    assert_eq!(ctx.ctrlreg[3] >> 12, 0x55);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the sizes, `plan` either refuses or gives a layout whose tables map the
        /// mapping and the p2m area page for page, and whose frames fit the domain.
        #[test]
        fn any_sizes(
            kstart in 0u64..0x400,
            klen in 1u64..0x4000,
            nr_pages in 0u64..0x2_0000,
            ramdisk in proptest::option::of(0u64..0x80_0000),
            pfn in any::<bool>(),
            p2m in any::<bool>(),
        ) {
            let req = Request {
                virt_base: LINUX,
                kernel: LINUX + kstart * PAGE..LINUX + kstart * PAGE + klen * 97,
                nr_pages,
                ramdisk_len: ramdisk,
                mod_start_pfn: pfn,
                init_p2m: p2m.then_some(INIT_P2M),
            };
            if let Ok(l) = plan(&req) {
                prop_assert!(l.used_pages < nr_pages);
                let got = leaves(&l);
                let mapped = (l.mapped_end - LINUX) / PAGE
                    + l.p2m_area.map_or(0, |a| a.va.pages());
                prop_assert_eq!(got.len() as u64, mapped);
                prop_assert!(got.iter().all(|&(va, pfn, _)| l.pfn_of(va) == Some(Pfn(pfn))));
            }
        }
    }
}
