//! The Xen PV builder (`load_xen_pv`) against the fake hypervisor: libxc's layout in the
//! frames, streaming a bzImage into them, the refusal when the hypervisor lacks the mode,
//! and cleanup after a failure at every step.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use guest_abi::domctl::XENIA_GUEST_MODE_XEN_PV;
use guest_abi::elfnote::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_INIT_P2M,
    XEN_ELFNOTE_MOD_START_PFN, XEN_ELFNOTE_VIRT_BASE,
};
use guest_abi::start_info::{SIF_MOD_START_PFN, StartInfo};
use guest_abi::types::{Mfn, PAGE_SIZE, Pfn};
use xenia_pvboot::xenpv::{FLAT_KERNEL_CS64, Ramdisk};

use super::bzimage::tests::{bzimage, gzip, with_size};
use super::*;
use crate::fake::{FakeHv, Op};

const BASE: u64 = 0xFFFF_FFFF_8000_0000;
/// Linux's text: physical 16 MiB.
const TEXT_PADDR: u64 = 0x100_0000;
const TEXT_LEN: u64 = 0x3000;
/// A `.data..percpu`-like segment: `p_vaddr` 0, placed by `p_paddr`.
const PERCPU_PADDR: u64 = 0x100_4000;
const PERCPU_LEN: u64 = 0x1800;
const BSS_PADDR: u64 = 0x100_6000;
const ENTRY: u64 = BASE + TEXT_PADDR + 0x40;
const INIT_P2M: u64 = 0x80_0000_0000;

fn note(note_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&note_type.to_le_bytes());
    out.extend_from_slice(b"Xen\0");
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn fill(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A Linux-like Xen PV kernel: text, a percpu segment at `p_vaddr` 0, a data segment with
/// bss, and Linux's notes (`!writable_page_tables`, `INIT_P2M`, `MOD_START_PFN`).
fn xen_pv_kernel(init_p2m: bool, mod_start_pfn: bool) -> Vec<u8> {
    xen_pv_kernel_with(
        "!writable_page_tables|pae_pgdir_above_4gb",
        init_p2m,
        mod_start_pfn,
    )
}

/// [`xen_pv_kernel`] with `features` as its `XEN_ELFNOTE_FEATURES`.
fn xen_pv_kernel_with(features: &str, init_p2m: bool, mod_start_pfn: bool) -> Vec<u8> {
    let mut notes = vec![
        note(XEN_ELFNOTE_GUEST_OS, b"linux\0"),
        note(XEN_ELFNOTE_VIRT_BASE, &BASE.to_le_bytes()),
        note(XEN_ELFNOTE_ENTRY, &ENTRY.to_le_bytes()),
        note(XEN_ELFNOTE_FEATURES, &[features.as_bytes(), b"\0"].concat()),
    ];
    if init_p2m {
        notes.push(note(XEN_ELFNOTE_INIT_P2M, &INIT_P2M.to_le_bytes()));
    }
    if mod_start_pfn {
        notes.push(note(XEN_ELFNOTE_MOD_START_PFN, &1u32.to_le_bytes()));
    }
    let notes = notes.concat();
    const PT_LOAD: u32 = 1;
    const PT_NOTE: u32 = 4;
    // (type, flags, offset, vaddr, paddr, filesz, memsz)
    let phdrs = [
        (
            PT_LOAD,
            5u32,
            0x1000u64,
            BASE + TEXT_PADDR,
            TEXT_PADDR,
            TEXT_LEN,
            TEXT_LEN,
        ),
        (PT_LOAD, 6, 0x4000, 0, PERCPU_PADDR, PERCPU_LEN, PERCPU_LEN),
        (
            PT_LOAD,
            6,
            0x6000,
            BASE + BSS_PADDR,
            BSS_PADDR,
            0x800,
            0x5000,
        ),
        (
            PT_NOTE,
            4,
            0x7000,
            0,
            0,
            notes.len() as u64,
            notes.len() as u64,
        ),
    ];
    let mut out = vec![0u8; 0x7000 + notes.len()];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&62u16.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&TEXT_PADDR.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    for (i, &(t, flags, offset, vaddr, paddr, filesz, memsz)) in phdrs.iter().enumerate() {
        let at = 64 + i * 56;
        let mut ph = Vec::new();
        ph.extend_from_slice(&t.to_le_bytes());
        ph.extend_from_slice(&flags.to_le_bytes());
        let align = if t == PT_NOTE { 4 } else { 0x1000 };
        for v in [offset, vaddr, paddr, filesz, memsz, align] {
            ph.extend_from_slice(&v.to_le_bytes());
        }
        out[at..at + 56].copy_from_slice(&ph);
    }
    out[0x1000..0x4000].copy_from_slice(&fill(TEXT_LEN, 1));
    out[0x4000..0x5800].copy_from_slice(&fill(PERCPU_LEN, 2));
    out[0x6000..0x6800].copy_from_slice(&fill(0x800, 3));
    out[0x7000..].copy_from_slice(&notes);
    out
}

fn ramdisk() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn config<'a>(kernel: &'a [u8], ramdisk: &'a [u8]) -> DomainConfig<'a> {
    DomainConfig {
        ramdisk: Some(ramdisk),
        cmdline: "root=/dev/xvda console=hvc0",
        ..DomainConfig::new("linux", kernel, 64)
    }
}

fn with_mode() -> FakeHv {
    let mut hv = FakeHv::new();
    hv.xen_pv_mode = true;
    hv
}

/// `len` bytes from frame `pfn` of `dom`, byte `offset` on.
fn read_pfn(hv: &FakeHv, dom: DomId, pfn: Pfn, offset: u64, len: usize) -> Vec<u8> {
    let p2m = &hv.domains[&dom].p2m;
    let mut out = Vec::new();
    let mut at = offset;
    while out.len() < len {
        let page = hv.page(p2m[&Pfn(pfn.0 + at / PAGE)]);
        let from = (at % PAGE) as usize;
        let n = (PAGE_SIZE - from).min(len - out.len());
        out.extend_from_slice(&page[from..from + n]);
        at += n as u64;
    }
    out
}

fn read_va(hv: &FakeHv, b: &BuiltXenPv, va: u64, len: usize) -> Vec<u8> {
    let pfn = b.layout.pfn_of(va).expect("mapped");
    read_pfn(hv, b.dom, pfn, va % PAGE, len)
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

#[test]
fn without_the_mode_the_kernel_is_refused_and_nothing_is_left() {
    let (k, r) = (xen_pv_kernel(true, true), ramdisk());
    let mut hv = FakeHv::new();
    let err = create(&mut hv, &config(&k, &r)).unwrap_err();
    assert_eq!(
        err,
        BuildError::XenPvKernel {
            kernel: "Linux".into(),
            missing: vec!["writable_page_tables".to_string()],
        }
    );
    assert_eq!(
        hv.calls,
        [(Op::Create, 0), (Op::GuestMode, 1), (Op::Destroy, 1)],
        "the mode is asked for first, and the empty domain destroyed"
    );
    assert!(hv.domains.is_empty());
    assert!(hv.owner.is_empty(), "every frame returned");
    assert!(err.to_string().contains("Xen PV guest mode"), "{err}");
}

/// Builds `kernel` and checks every part of libxc's layout in the frames.
fn check_built(kernel: &[u8], init_p2m: bool, mod_start_pfn: bool) {
    let r = ramdisk();
    let mut hv = with_mode();
    let cfg = config(kernel, &r);
    let Started::XenPv(b) = create(&mut hv, &cfg).unwrap() else {
        panic!("not built as Xen PV")
    };
    let d = &hv.domains[&b.dom];
    assert_eq!(d.guest_mode, XENIA_GUEST_MODE_XEN_PV);
    assert!(!d.paused);
    assert_eq!(d.p2m.len() as u64, 64 * 256);
    let l = &b.layout;
    // Segments at p_paddr + VIRT_BASE, the percpu one included; bss zero.
    assert_eq!(
        read_va(&hv, &b, BASE + TEXT_PADDR, TEXT_LEN as usize),
        fill(TEXT_LEN, 1)
    );
    assert_eq!(
        read_va(&hv, &b, BASE + PERCPU_PADDR, PERCPU_LEN as usize),
        fill(PERCPU_LEN, 2)
    );
    assert_eq!(read_va(&hv, &b, BASE + BSS_PADDR, 0x800), fill(0x800, 3));
    assert!(
        read_va(&hv, &b, BASE + BSS_PADDR + 0x800, 0x4800)
            .iter()
            .all(|&x| x == 0)
    );
    assert_eq!(l.kernel.start, BASE + TEXT_PADDR);
    // start_info as Xen's.
    let si = read_va(&hv, &b, l.start_info, core::mem::size_of::<StartInfo>());
    assert!(si.starts_with(b"xen-3.0-x86_64\0"));
    let at = |f: usize| u64_at(&si, f);
    use core::mem::offset_of;
    assert_eq!(at(offset_of!(StartInfo, nr_pages)), 64 * 256);
    assert_eq!(at(offset_of!(StartInfo, shared_info)), b.shared_info.addr());
    assert_eq!(at(offset_of!(StartInfo, pt_base)), l.page_tables.start);
    assert_eq!(at(offset_of!(StartInfo, nr_pt_frames)), l.nr_pt_frames());
    let flags = u32::from_le_bytes(si[offset_of!(StartInfo, flags)..][..4].try_into().unwrap());
    let store = b.store.unwrap();
    let console = b.console.unwrap();
    assert_eq!(at(offset_of!(StartInfo, store_mfn)), store.mfn.0);
    assert_eq!(at(offset_of!(StartInfo, console)), console.mfn.0);
    assert_eq!(d.p2m[&l.pfn_of(l.store_ring).unwrap()], store.mfn);
    assert_eq!(d.p2m[&l.pfn_of(l.console_ring).unwrap()], console.mfn);
    let cmd = &si[offset_of!(StartInfo, cmd_line)..][..28];
    assert_eq!(cmd, b"root=/dev/xvda console=hvc0\0");
    // The ramdisk.
    let mod_start = at(offset_of!(StartInfo, mod_start));
    let mod_len = at(offset_of!(StartInfo, mod_len));
    if mod_start_pfn {
        assert_eq!(flags, SIF_MOD_START_PFN, "{:?}", l.ramdisk);
        assert_eq!(
            mod_start,
            (l.mapped_end - BASE) / PAGE,
            "right past the mapping"
        );
        assert_eq!(mod_len, 3 * PAGE);
        assert_eq!(read_pfn(&hv, b.dom, Pfn(mod_start), 0, r.len()), r);
    } else {
        assert_eq!(flags, 0);
        assert_eq!(mod_len, r.len() as u64);
        assert!(matches!(l.ramdisk, Some(Ramdisk::Mapped(_))));
        assert_eq!(read_va(&hv, &b, mod_start, r.len()), r);
    }
    // The p2m list: every frame, in order, where start_info says.
    let mfn_list = at(offset_of!(StartInfo, mfn_list));
    let (first, frames) = (
        at(offset_of!(StartInfo, first_p2m_pfn)),
        at(offset_of!(StartInfo, nr_p2m_frames)),
    );
    let list = if init_p2m {
        assert_eq!(mfn_list, INIT_P2M);
        assert_eq!(
            frames,
            32 + 3,
            "16384 entries and an L3, an L2 and an L1 of their own"
        );
        read_pfn(&hv, b.dom, Pfn(first), 0, 64 * 256 * 8)
    } else {
        assert_eq!((first, frames), (0, 0));
        read_va(&hv, &b, mfn_list, 64 * 256 * 8)
    };
    for (pfn, mfn) in &d.p2m {
        assert_eq!(u64_at(&list, pfn.0 as usize * 8), mfn.0);
    }
    // The tables were pinned (the fake validates them) and vCPU 0 starts as libxc's.
    let l4 = d.p2m[&l.root_table()];
    assert!(d.pinned.contains(&(l4, xenia_pvboot::layout::Level::L4)));
    let ctx = d.contexts[&0];
    assert_eq!(ctx.user_regs.rip, ENTRY);
    assert_eq!(ctx.user_regs.rsp, l.stack.end);
    assert_eq!(ctx.user_regs.rsi, l.start_info);
    assert_eq!(u64::from(ctx.user_regs.cs), FLAT_KERNEL_CS64);
    assert_eq!(ctx.ctrlreg[3] >> 12, l4.0);
    // The p2m area is mapped by the pinned tables: walk INIT_P2M.
    if init_p2m {
        let mut table = l4;
        for shift in [39, 30, 21, 12] {
            let e = hv.entries(table)[((INIT_P2M >> shift) & 511) as usize];
            assert_ne!(e & 1, 0, "present at shift {shift}");
            table = Mfn(guest_abi::pte::mfn(e));
        }
        assert_eq!(table, d.p2m[&Pfn(first)]);
    }
}

#[test]
fn an_elf_kernel_is_laid_out_as_libxc() {
    for (p2m, pfn) in [(true, true), (false, false), (true, false), (false, true)] {
        check_built(&xen_pv_kernel(p2m, pfn), p2m, pfn);
    }
}

#[test]
fn a_bzimage_is_streamed_into_the_frames() {
    let elf = xen_pv_kernel(true, true);
    let bz = bzimage(&with_size(gzip(&elf), &elf));
    check_built(&bz, true, true);
    // A payload whose trailer promises more than comes out is refused, the domain gone.
    let mut short = with_size(gzip(&elf), &elf);
    let n = short.len();
    short[n - 4..].copy_from_slice(&(elf.len() as u32 + 1).to_le_bytes());
    let bz = bzimage(&short);
    let r = ramdisk();
    let mut hv = with_mode();
    let err = create(&mut hv, &config(&bz, &r)).unwrap_err();
    assert!(matches!(err, BuildError::BzImage(_)), "{err:?}");
    assert!(hv.domains.is_empty() && hv.owner.is_empty());
}

#[test]
fn a_failure_at_any_step_destroys_the_domain_once() {
    let (k, r) = (xen_pv_kernel(true, true), ramdisk());
    let cfg = config(&k, &r);
    let mut good = with_mode();
    create(&mut good, &cfg).unwrap();
    let calls = good.calls.len();
    for fail in 0..calls {
        let mut hv = with_mode();
        hv.fail_at = Some(fail);
        let err = create(&mut hv, &cfg).unwrap_err();
        assert!(
            matches!(err, BuildError::Hypervisor { .. }),
            "call {fail}: {err:?}"
        );
        assert!(hv.domains.is_empty(), "call {fail}");
        assert!(hv.owner.is_empty(), "call {fail}: frames left");
        let destroys = hv.calls.iter().filter(|(o, _)| *o == Op::Destroy).count();
        assert_eq!(destroys, usize::from(fail > 0), "call {fail}");
    }
}

#[test]
fn too_little_memory_is_refused_before_creation() {
    let (k, r) = (xen_pv_kernel(true, true), ramdisk());
    let mut hv = with_mode();
    let err = create(&mut hv, &DomainConfig::new("tiny", &k, 16)).unwrap_err();
    assert!(matches!(err, BuildError::XenPvLayout(_)), "{err:?}");
    assert!(hv.calls.is_empty());
    let _ = r;
}

#[test]
fn features_beyond_the_mode_are_refused_by_name() {
    let k = xen_pv_kernel_with("!writable_page_tables|!supervisor_mode_kernel", true, true);
    let mut hv = with_mode();
    let err = create(&mut hv, &DomainConfig::new("x", &k, 64)).unwrap_err();
    assert!(
        matches!(&err, BuildError::MissingFeatures(m) if m.iter().any(|f| f == "supervisor_mode_kernel")),
        "{err:?}"
    );
    assert!(hv.calls.is_empty());
}

#[test]
fn debian_kernel_is_laid_out_as_libxc() {
    let Some(vmlinuz) = super::bzimage::tests::debian_vmlinuz() else {
        std::eprintln!(
            "skipped: no Debian kernel under target/debian (cargo xtask build fetches it)"
        );
        return;
    };
    let r = ramdisk();
    let cfg = DomainConfig {
        ramdisk: Some(&r),
        ..DomainConfig::new("debian", &vmlinuz, 256)
    };
    let info = check_kernel(&vmlinuz).unwrap();
    let plan = load_xen_pv::prepare(&cfg, &info, None).unwrap();
    let (image, l) = (plan_image(&plan), plan_layout(&plan));
    // Text at 16 MiB; `.data..percpu` (p_vaddr 0) placed at its p_paddr past VIRT_BASE.
    assert_eq!(image.segments[0].vaddr, BASE + 0x100_0000);
    assert!(image.segments.iter().all(|s| s.vaddr >= BASE));
    assert_eq!(l.p2m_area.unwrap().va.start, INIT_P2M);
    assert!(matches!(l.ramdisk, Some(Ramdisk::Unmapped { .. })));
    assert!(l.mapped_end - l.stack.end >= 512 << 10);
    // And it builds, streamed into the fake's frames, with the mode.
    let mut hv = with_mode();
    let Started::XenPv(b) = create(&mut hv, &cfg).unwrap() else {
        panic!()
    };
    let seg = &image.segments[0];
    let head = read_va(&hv, &b, seg.vaddr, 64);
    let whole = super::bzimage::unpack(&vmlinuz).unwrap();
    assert_eq!(head, whole[seg.file_offset as usize..][..64]);
    let last = image.segments.last().unwrap();
    assert_eq!(
        read_va(&hv, &b, last.vaddr, last.file_size.min(4096) as usize),
        whole[last.file_offset as usize..][..last.file_size.min(4096) as usize]
    );
}

fn plan_image<'a>(p: &'a load_xen_pv::PlanXenPv<'_>) -> &'a xenia_pvboot::elf::KernelImage {
    p.image()
}

fn plan_layout<'a>(p: &'a load_xen_pv::PlanXenPv<'_>) -> &'a xenia_pvboot::xenpv::Layout {
    p.layout()
}

#[test]
fn an_inspection_handed_over_gives_the_same_domain() {
    let elf = xen_pv_kernel(true, true);
    let bz = bzimage(&with_size(gzip(&elf), &elf));
    let r = ramdisk();
    let inspected = inspect_checked(&bz).unwrap();
    let (mut a, mut b) = (with_mode(), with_mode());
    let plain = create(&mut a, &config(&bz, &r)).unwrap();
    let handed = create(
        &mut b,
        &DomainConfig {
            inspected: Some(&inspected),
            ..config(&bz, &r)
        },
    )
    .unwrap();
    assert_eq!(plain, handed);
    assert_eq!(a.frames, b.frames);
}
