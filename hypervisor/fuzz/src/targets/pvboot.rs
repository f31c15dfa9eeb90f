//! `pvboot`: the PV kernel checks and the start-of-day layout, the first code to read what a
//! domain's owner supplies. ELF64 images are generated from the input (program headers with
//! random addresses, sizes and flags, Xen notes), then damaged at random bytes; raw bytes too.
//! `parse` must never panic, and an image it accepts must be what its docs promise: segments
//! sorted, disjoint, inside the file, canonical, clear of the hypervisor's range, within
//! `MAX_KERNEL_SPAN`, the entry in an executable segment; `load_into` writes only inside the
//! image. `plan` on the image (or random ranges) with random sizes must never panic and must
//! give an ordered, page-aligned, canonical layout clear of the hypervisor's range. The same
//! image placed as a Xen PV kernel (`place_xen_pv`, by `p_paddr`) must obey the same rules,
//! and libxc's layout of it (`xenpv::plan`, random sizes, `INIT_P2M` and `MOD_START_PFN`) must
//! fit the domain, and its tables map every page of it to its frame.

use guest_abi::elfnote::{XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_VIRT_BASE};
use guest_abi::types::{Mfn, Pfn};
use xenia_pvboot::boot::P2m;
use xenia_pvboot::elf::{
    ElfError, HYPERVISOR_RESERVED, MAX_KERNEL_SPAN, load_into, notes, parse, place_xen_pv,
};
use xenia_pvboot::layout::{
    BOOTSTRAP_ALIGN, MIN_PADDING, PAGE, is_canonical_range, plan, touches_hypervisor_range,
};
use xenia_pvboot::xenpv;

use crate::engine::{Input, Target};

pub const TARGET: Target = Target {
    name: "pvboot",
    about: "PV kernel ELF checks and loading, start-of-day layout plans",
    run,
    seeds: super::no_seeds,
    max_len: 1024,
};

/// ELF64 sizes (System V ABI): file header, program header.
const EHDR: usize = 64;
const PHDR: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// `ET_EXEC`, `EM_X86_64`.
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
/// Linux's `VIRT_BASE`, less which its segments' `p_paddr` are.
const LINUX_BASE: u64 = 0xffff_ffff_8000_0000;

fn vaddr(input: &mut Input) -> u64 {
    match input.below(8) {
        0..=4 => 0xffff_ffff_8000_0000 + input.below(64) * 0x800,
        5 => 0x40_0000 + input.below(64) * 0x1000,
        6 => HYPERVISOR_RESERVED.start - input.below(4) * PAGE,
        _ => input.u64(),
    }
}

/// An ELF image built from the input: (bytes, the addresses that matter).
fn image(input: &mut Input) -> Vec<u8> {
    let nph = input.below(5) as usize;
    let with_note = input.bool();
    let phnum = nph + usize::from(with_note);
    let data_at = EHDR + phnum * PHDR;
    let data_len = 64 + input.below(512) as usize;
    let mut out = vec![0u8; data_at + data_len];
    let first = vaddr(input);
    let entry = if input.below(4) == 0 {
        vaddr(input)
    } else {
        first + input.below(64)
    };
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // ELFDATA2LSB
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    out[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes());
    out[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    out[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    let linux_paddr = input.bool();
    let mut next = first;
    for i in 0..nph {
        let at = EHDR + i * PHDR;
        let va = if input.below(4) == 0 {
            vaddr(input)
        } else {
            next
        };
        let filesz = input.below(data_len as u64 + 8);
        let memsz = filesz + if input.bool() { input.below(0x3000) } else { 0 };
        next = va.wrapping_add(memsz).wrapping_add(input.below(2) * PAGE);
        let flags = PF_R | if i == 0 || input.bool() { PF_X } else { PF_W };
        // The file offset is congruent to the address modulo the page size, as the ELF
        // specification requires of loadable segments; the file grows to hold the data.
        let offset = if input.below(16) == 0 {
            data_at as u64 + input.below(data_len as u64)
        } else {
            data_at as u64 + va.wrapping_sub(data_at as u64) % PAGE
        };
        let need = (offset + filesz) as usize;
        if out.len() < need && need < 1 << 16 {
            out.resize(need, 0xcc);
        }
        let ph = &mut out[at..at + PHDR];
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[4..8].copy_from_slice(&flags.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&va.to_le_bytes());
        // `p_paddr`: the address, or, as Linux's, the address less its virtual base (what
        // `place_xen_pv` places by).
        let paddr = if linux_paddr {
            va.wrapping_sub(LINUX_BASE)
        } else {
            va
        };
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&filesz.to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&PAGE.to_le_bytes());
    }
    if with_note {
        // Xen notes: namesz 4 ("Xen\0"), descsz 8, a type, the value.
        let at = EHDR + nph * PHDR;
        let mut notes = Vec::new();
        for _ in 0..1 + input.below(3) {
            let other = input.below(20) as u32;
            let ty = input.pick(&[
                XEN_ELFNOTE_ENTRY,
                XEN_ELFNOTE_VIRT_BASE,
                XEN_ELFNOTE_HYPERCALL_PAGE,
                other,
            ]);
            let value = match input.below(4) {
                3 => LINUX_BASE,
                0 => first & !(PAGE - 1),
                1 => first + input.below(4) * PAGE,
                _ => input.u64(),
            };
            notes.extend_from_slice(&4u32.to_le_bytes());
            notes.extend_from_slice(&8u32.to_le_bytes());
            notes.extend_from_slice(&ty.to_le_bytes());
            notes.extend_from_slice(b"Xen\0");
            notes.extend_from_slice(&value.to_le_bytes());
        }
        let offset = out.len() as u64;
        out.extend_from_slice(&notes);
        let ph = &mut out[at..at + PHDR];
        ph[0..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[4..8].copy_from_slice(&PF_R.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        ph[48..56].copy_from_slice(&4u64.to_le_bytes());
    }
    out
}

/// Frame `n` is machine frame `n + 1` for the domain's `nr` frames.
struct Shifted(u64);

impl P2m for Shifted {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        (pfn.0 < self.0).then_some(Mfn(pfn.0 + 1))
    }
}

/// `bytes` placed as a Xen PV kernel, then laid out as libxc does.
fn xen_pv(bytes: &[u8], input: &mut Input) {
    let image_len = if input.below(4) == 0 {
        input.u64()
    } else {
        bytes.len() as u64
    };
    let placed = match place_xen_pv(bytes, image_len, notes(bytes).unwrap_or_default()) {
        Ok(img) => img,
        Err(e) => {
            crate::trace!("pvboot: xen pv: {e}");
            return;
        }
    };
    let mut prev_end = 0u64;
    for (i, s) in placed.segments.iter().enumerate() {
        assert!(
            i == 0 || s.vaddr >= prev_end,
            "placed segments overlap: {placed:x?}"
        );
        prev_end = s.end();
        assert!(
            s.file_size == 0
                || s.file_offset
                    .checked_add(s.file_size)
                    .is_some_and(|e| e <= image_len),
            "placed segment outside the image: {s:x?}"
        );
        assert!(
            is_canonical_range(s.vaddr, s.end()) && !touches_hypervisor_range(s.vaddr, s.end()),
            "placed segment {s:x?}"
        );
        assert!(placed.virt_start <= s.vaddr && s.end() <= placed.virt_end);
    }
    let nr_pages = input.below(1 << 17);
    let req = xenpv::Request {
        virt_base: placed.virt_start,
        kernel: placed.segments.first().map_or(0, |s| s.vaddr)..placed.virt_end,
        nr_pages,
        ramdisk_len: input.bool().then(|| input.below(1 << 26)),
        mod_start_pfn: input.bool(),
        init_p2m: match input.below(3) {
            0 => None,
            1 => Some(0x80_0000_0000),
            _ => Some(input.u64()),
        },
    };
    let Ok(l) = xenpv::plan(&req) else {
        return;
    };
    crate::trace!("pvboot: xen pv planned");
    assert!(l.used_pages < nr_pages, "{l:x?}");
    assert_eq!(l.mapped_end % BOOTSTRAP_ALIGN, 0, "{l:x?}");
    assert!(l.mapped_end - l.stack.end >= MIN_PADDING, "{l:x?}");
    assert!(l.kernel.start <= req.kernel.start && req.kernel.end <= l.kernel.end);
    if l.tables.len() <= 64 {
        let p2m = Shifted(nr_pages);
        for t in l.table_images(&p2m) {
            let t = t.expect("every table frame is the domain's");
            for (i, e) in t.entries.iter().enumerate() {
                if t.level == xenia_pvboot::layout::Level::L1 && *e != 0 {
                    assert!(guest_abi::pte::mfn(*e) <= nr_pages, "entry {i} of {t:?}");
                }
            }
        }
    }
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let bytes = if input.below(8) == 0 {
        input.rest().to_vec()
    } else {
        let mut bytes = image(&mut input);
        for _ in 0..input.below(3) {
            let at = input.index(bytes.len());
            bytes[at] = input.u8();
        }
        bytes
    };
    let kernel = match parse(&bytes) {
        Ok(img) => {
            crate::trace!("pvboot: accepted {} segments", img.segments.len());
            let mut prev_end = 0u64;
            for (i, s) in img.segments.iter().enumerate() {
                assert!(
                    i == 0 || s.vaddr >= prev_end,
                    "segments overlap or are unsorted: {img:x?}"
                );
                prev_end = s.end();
                assert!(
                    s.mem_size >= s.file_size,
                    "file size above memory size: {s:x?}"
                );
                assert!(
                    // A segment with no file data reads nothing: its offset does not matter.
                    s.file_size == 0
                        || s.file_offset
                            .checked_add(s.file_size)
                            .is_some_and(|e| e <= bytes.len() as u64),
                    "segment outside the file: {s:x?}"
                );
                assert!(
                    is_canonical_range(s.vaddr, s.end()),
                    "non-canonical segment {s:x?}"
                );
                assert!(
                    !touches_hypervisor_range(s.vaddr, s.end()),
                    "segment in the hypervisor's range {s:x?}"
                );
                assert!(
                    img.virt_start <= s.vaddr && s.end() <= img.virt_end,
                    "segment outside the image {s:x?}"
                );
            }
            assert!(
                img.virt_end - img.virt_start <= MAX_KERNEL_SPAN,
                "image too large {img:x?}"
            );
            assert!(
                img.segments
                    .iter()
                    .any(|s| s.executable && s.vaddr <= img.entry && img.entry < s.end()),
                "entry outside executable segments"
            );
            let (start, end) = (img.virt_start, img.virt_end);
            let inside =
                |va: u64, len: u64| start <= va && va.checked_add(len).is_some_and(|e| e <= end);
            let r: Result<(), ElfError> = load_into(
                &img,
                &bytes,
                |va, data| {
                    assert!(
                        inside(va, data.len() as u64),
                        "load writes {va:#x}+{:#x} outside the image",
                        data.len()
                    );
                    Ok(())
                },
                |va, len| {
                    assert!(
                        inside(va, len),
                        "load zeroes {va:#x}+{len:#x} outside the image"
                    );
                    Ok(())
                },
            );
            assert!(
                r.is_ok(),
                "loading the image it was parsed from failed: {r:?}"
            );
            img.virt_start..img.virt_end
        }
        Err(e) => {
            crate::trace!("pvboot: {e}");
            let a = input.u64();
            a..a.wrapping_add(input.below(1 << 24))
        }
    };
    let nr_pages = match input.below(4) {
        0 => input.u64(),
        _ => input.below(1 << 20),
    };
    let initrd = match input.below(4) {
        0 => None,
        1 => Some(input.u64()),
        _ => Some(input.below(1 << 24)),
    };
    let extra_pages = input.below(4);
    if let Ok(sod) = plan(kernel.clone(), nr_pages, initrd, extra_pages) {
        crate::trace!("pvboot: planned");
        let start = sod.virt_start();
        let mut regions = vec![sod.kernel];
        regions.extend(sod.initrd);
        regions.push(sod.p2m);
        for r in &regions {
            assert_eq!(
                (r.start % PAGE, r.end % PAGE),
                (0, 0),
                "unaligned region in {sod:x?}"
            );
        }
        for w in regions.windows(2) {
            assert!(w[0].end <= w[1].start, "regions out of order in {sod:x?}");
        }
        assert!(
            sod.p2m.end <= sod.start_info && sod.start_info < sod.shared_info,
            "{sod:x?}"
        );
        assert!(
            sod.shared_info < sod.page_tables.start && sod.page_tables.end <= sod.stack.start,
            "{sod:x?}"
        );
        assert!(sod.stack.end <= sod.mapped_end, "{sod:x?}");
        assert_eq!(
            sod.mapped_end % BOOTSTRAP_ALIGN,
            0,
            "region end not aligned: {sod:x?}"
        );
        assert!(
            sod.mapped_end - sod.stack.end >= MIN_PADDING,
            "padding too small: {sod:x?}"
        );
        assert!(
            is_canonical_range(start, sod.mapped_end),
            "non-canonical layout {sod:x?}"
        );
        assert!(
            !touches_hypervisor_range(start, sod.mapped_end),
            "layout in the hypervisor's range {sod:x?}"
        );
        assert!(
            sod.mapped_pages() <= sod.nr_pages,
            "layout needs more pages than the domain has: {sod:x?}"
        );
        assert!(
            kernel.start >= start && kernel.end <= sod.kernel.end,
            "kernel not covered: {sod:x?}"
        );
        let _ = sod.table_entries().count();
    }
    xen_pv(&bytes, &mut input);
}
