//! The builder against the fake hypervisor: what ends up in the frames, the
//! vCPU context, and cleanup after a failure at every step.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use guest_abi::device_page::{DEVICE_CONSOLE, DEVICE_VCPU, DeviceEntry, DevicePage};
use guest_abi::elfnote::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_VIRT_BASE,
};
use guest_abi::hypercall::hypercall_page_image;
use guest_abi::selectors::{KERNEL_CS, KERNEL_DS, KERNEL_SS};
use guest_abi::start_info::{START_INFO_MAGIC, StartInfo};
use guest_abi::trap::RFLAGS_IF;
use guest_abi::types::{Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::{VGCF_IN_KERNEL, VGCF_ONLINE};
use xenia_pvboot::layout::Level;

use super::*;
use crate::fake::{FakeHv, Op};
use guest_abi::pte::{PRESENT as PTE_PRESENT, RW as PTE_WRITABLE, USER as PTE_USER};

const BASE: u64 = 0xFFFF_FFFF_8000_0000;
const TEXT: u64 = BASE + 0x10_0000;
const DATA: u64 = BASE + 0x10_4000;
const ENTRY: u64 = TEXT + 0x10;
const HYPERCALL_PAGE: u64 = TEXT + 0x1000;
const TEXT_LEN: usize = 0x3000;
const DATA_FILE: usize = 0x1800;
const DATA_MEM: u64 = 0x5000;

// --- A small kernel image, written field by field (System V ABI, ELF-64). ---

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

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

fn text_bytes() -> Vec<u8> {
    (0..TEXT_LEN).map(|i| (i % 251) as u8).collect()
}

fn data_bytes() -> Vec<u8> {
    (0..DATA_FILE).map(|i| (i % 13) as u8 | 0x80).collect()
}

/// A Linux-like kernel: text (with the hypercall page in it), data with bss,
/// and a note segment with the entry, virtual base, hypercall page and
/// features.
fn kernel(features: &str) -> Vec<u8> {
    let notes = [
        note(XEN_ELFNOTE_VIRT_BASE, &BASE.to_le_bytes()),
        note(XEN_ELFNOTE_ENTRY, &ENTRY.to_le_bytes()),
        note(XEN_ELFNOTE_HYPERCALL_PAGE, &HYPERCALL_PAGE.to_le_bytes()),
        note(XEN_ELFNOTE_FEATURES, &[features.as_bytes(), b"\0"].concat()),
    ]
    .concat();
    // (type, flags, file offset, vaddr, filesz, memsz)
    let phdrs = [
        (
            PT_LOAD,
            PF_R | PF_X,
            0x1000u64,
            TEXT,
            TEXT_LEN as u64,
            TEXT_LEN as u64,
        ),
        (
            PT_LOAD,
            PF_R | PF_W,
            0x4000,
            DATA,
            DATA_FILE as u64,
            DATA_MEM,
        ),
        (
            PT_NOTE,
            PF_R,
            0x6000,
            0,
            notes.len() as u64,
            notes.len() as u64,
        ),
    ];
    let mut out = vec![0u8; 0x6000 + notes.len()];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // physical, as Linux's
    out[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    for (i, &(p_type, flags, offset, vaddr, filesz, memsz)) in phdrs.iter().enumerate() {
        let at = 64 + i * 56;
        let mut ph = Vec::new();
        ph.extend_from_slice(&p_type.to_le_bytes());
        ph.extend_from_slice(&flags.to_le_bytes());
        for v in [
            offset,
            vaddr,
            vaddr.wrapping_sub(BASE),
            filesz,
            memsz,
            0x1000,
        ] {
            ph.extend_from_slice(&v.to_le_bytes());
        }
        out[at..at + 56].copy_from_slice(&ph);
    }
    out[0x1000..0x1000 + TEXT_LEN].copy_from_slice(&text_bytes());
    out[0x4000..0x4000 + DATA_FILE].copy_from_slice(&data_bytes());
    out[0x6000..].copy_from_slice(&notes);
    out
}

fn ramdisk() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

const CMDLINE: &str = "console=hvc0 root=/dev/ram0";

fn config<'a>(kernel: &'a [u8], ramdisk: &'a [u8]) -> DomainConfig<'a> {
    DomainConfig {
        ramdisk: Some(ramdisk),
        cmdline: CMDLINE,
        max_memory_kib: 32 * 1024,
        vcpus: 3,
        online_vcpus: 2,
        weight: 512,
        cap: 150,
        handle: [0x42; 16],
        ..DomainConfig::new("guest", kernel, 16)
    }
}

// --- Reading the built domain back through the fake. ---

/// Bytes at guest virtual `va` of the bootstrap mapping, through the p2m.
fn read(hv: &FakeHv, built: &Built, va: u64, len: usize) -> Vec<u8> {
    let p2m = &hv.domains[&built.dom].p2m;
    let sod = &built.layout.sod;
    let mut out = Vec::with_capacity(len);
    let mut at = va;
    while out.len() < len {
        let pfn = sod.pfn_of(at).expect("mapped");
        let page = hv.page(p2m[&pfn]);
        let off = (at % PAGE) as usize;
        let n = (PAGE_SIZE - off).min(len - out.len());
        out.extend_from_slice(&page[off..off + n]);
        at += n as u64;
    }
    out
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

#[test]
fn builds_a_domain() {
    let (k, r) = (kernel("pae_pgdir_above_4gb|!dom0"), ramdisk());
    let mut hv = FakeHv::new();
    let built = build(&mut hv, &config(&k, &r)).unwrap();
    let d = &hv.domains[&built.dom];
    let sod = built.layout.sod;

    // The domain: created with the configuration, sized, scheduled, running.
    let cfg = d.cfg.unwrap();
    assert_eq!(
        (cfg.handle, cfg.max_vcpus, cfg.max_evtchn_port),
        ([0x42; 16], 3, 1023)
    );
    assert_eq!(d.max_pages, 32 * 256);
    assert_eq!(d.p2m.len(), 16 * 256);
    assert_eq!(d.vcpus, 3);
    assert_eq!(
        d.credit,
        Some(DomctlSchedCredit {
            weight: 512,
            cap: 150
        })
    );
    assert!(!d.paused);
    assert_eq!(built.nr_pages, 4096);
    assert_eq!(built.entry, ENTRY);
    assert_eq!(built.shared_info, d.shared_info);

    // The call sequence: set-up first, unpause last, nothing written after
    // the pin, and the console channel offered to dom0.
    let ops: Vec<Op> = hv.calls.iter().map(|(op, _)| *op).collect();
    assert_eq!(ops[..4], [Op::Create, Op::MaxMem, Op::MaxVcpus, Op::Sched]);
    assert_eq!(ops.iter().filter(|&&op| op == Op::Populate).count(), 4);
    let pin = ops.iter().position(|&op| op == Op::Pin).unwrap();
    assert!(ops[pin..].iter().all(|&op| op != Op::Write));
    assert_eq!(ops[pin..], [Op::Pin, Op::SetContext, Op::Unpause]);
    assert!(!ops.contains(&Op::Destroy));
    assert!(hv.calls[1..].iter().all(|&(_, dom)| dom == built.dom));
    // The console's channel, then the store's, both offered to dom0.
    assert_eq!(d.ports, [(1, 0), (2, 0)]);

    // The kernel: segments at their addresses, bss zero, hypercall page filled.
    assert_eq!(
        read(&hv, &built, TEXT, TEXT_LEN)[..0x1000],
        text_bytes()[..0x1000]
    );
    assert_eq!(
        read(&hv, &built, HYPERCALL_PAGE, PAGE_SIZE),
        hypercall_page_image()
    );
    assert_eq!(
        read(&hv, &built, TEXT + 0x2000, 0x1000),
        text_bytes()[0x2000..]
    );
    assert_eq!(read(&hv, &built, DATA, DATA_FILE), data_bytes());
    assert!(
        read(
            &hv,
            &built,
            DATA + DATA_FILE as u64,
            (DATA_MEM as usize) - DATA_FILE
        )
        .iter()
        .all(|&b| b == 0)
    );
    // Segments sit at pfn (vaddr - VIRT_BASE) / 4096.
    let text_pfn = Pfn((TEXT - BASE) / PAGE);
    assert_eq!(hv.page(d.p2m[&text_pfn])[..16], text_bytes()[..16]);

    // The ramdisk after the kernel.
    let initrd = sod.initrd.unwrap();
    assert_eq!(initrd.start, sod.kernel.end);
    assert_eq!(read(&hv, &built, initrd.start, r.len()), r);

    // The p2m list: every frame, in pfn order.
    let p2m_bytes = read(&hv, &built, sod.p2m.start, 4096 * 8);
    for (pfn, mfn) in &d.p2m {
        assert_eq!(u64_at(&p2m_bytes, pfn.0 as usize * 8), mfn.0);
    }

    // start_info.
    let si = read(
        &hv,
        &built,
        built.start_info_va,
        core::mem::size_of::<StartInfo>(),
    );
    let console = built.console.unwrap();
    assert_eq!(&si[..START_INFO_MAGIC.len()], START_INFO_MAGIC);
    assert_eq!(u64_at(&si, 32), 4096, "nr_pages");
    assert_eq!(u64_at(&si, 40), d.shared_info.addr(), "shared_info");
    assert_eq!(u32_at(&si, 48), 0, "flags: an unprivileged domU");
    let store = built.store.unwrap();
    assert_eq!(u64_at(&si, 56), store.mfn.0, "store_mfn");
    assert_eq!(u32_at(&si, 64), store.evtchn, "store_evtchn");
    assert_eq!(store.evtchn, 2);
    let ring_va = guest_abi::xenstore::store_ring_va(built.start_info_va);
    assert!(
        read(&hv, &built, ring_va, PAGE_SIZE)
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(u64_at(&si, 72), console.mfn.0, "console.domU.mfn");
    assert_eq!(u32_at(&si, 80), console.evtchn, "console.domU.evtchn");
    assert_eq!(u64_at(&si, 88), sod.page_tables.start, "pt_base");
    assert_eq!(u64_at(&si, 96), sod.table_counts.total(), "nr_pt_frames");
    assert_eq!(u64_at(&si, 104), sod.p2m.start, "mfn_list");
    assert_eq!(u64_at(&si, 112), initrd.start, "mod_start");
    assert_eq!(u64_at(&si, 120), r.len() as u64, "mod_len");
    assert_eq!(
        &si[128..128 + CMDLINE.len() + 1],
        [CMDLINE.as_bytes(), b"\0"].concat()
    );
    let parsed = StartInfo {
        pt_base: u64_at(&si, 88),
        nr_pt_frames: u64_at(&si, 96),
        ..StartInfo::new()
    };
    assert_eq!(parsed.padding_start(), sod.stack.end);
    assert_eq!(parsed.padding_end(), sod.mapped_end);

    // The console ring and the device page, at their fixed places.
    assert_eq!(built.layout.console_ring, built.start_info_va + 2 * PAGE);
    assert_eq!(built.layout.device_page, built.start_info_va + 3 * PAGE);
    assert_eq!(console.mfn, d.p2m[&console.pfn]);
    assert_eq!(sod.pfn_of(built.layout.console_ring), Some(console.pfn));
    assert!(hv.frames.contains_key(&console.mfn), "zeroed explicitly");
    assert!(hv.page(console.mfn).iter().all(|&b| b == 0));
    let devices =
        DevicePage::from_bytes(&read(&hv, &built, built.layout.device_page, PAGE_SIZE)).unwrap();
    assert!(devices.is_valid());
    // The console and the two vCPUs to bring up at start (of three).
    assert_eq!(devices.entries().len(), 3);
    for v in 0..2 {
        let e = devices.find(DEVICE_VCPU, v).unwrap();
        assert_eq!(
            *e,
            DeviceEntry {
                kind: DEVICE_VCPU,
                id: v,
                ..DeviceEntry::default()
            }
        );
    }
    assert_eq!(devices.find(DEVICE_VCPU, 2), None);
    let c = devices.find(DEVICE_CONSOLE, 0).unwrap();
    assert_eq!((c.backend, c.evtchn), (0, console.evtchn));
    assert_eq!((c.ring_mfn, c.ring_pfn), (console.mfn, console.pfn));
    assert_eq!(hv.page(built.device_page), devices.to_bytes());

    // The page tables: pinned L4, every page of the region mapped to its
    // frame with the porting guide's permissions, nothing else mapped.
    let l4 = d.p2m[&sod.root_table()];
    assert_eq!(d.pinned, [(l4, Level::L4)]);
    assert_eq!(d.tables.len() as u64, sod.table_counts.total());
    let mut va = sod.virt_start();
    while va < sod.mapped_end {
        let (mfn, flags, user) = hv.walk(l4, va).unwrap_or_else(|| panic!("{va:#x}"));
        assert_ne!(flags & PTE_PRESENT, 0);
        if va == sod.shared_info {
            assert_eq!(mfn, d.shared_info);
        } else {
            assert_eq!(mfn, d.p2m[&sod.pfn_of(va).unwrap()], "{va:#x}");
        }
        let table = sod.page_tables.contains(va);
        assert_eq!(flags & PTE_WRITABLE != 0, !table, "{va:#x} writable");
        assert_eq!(d.tables.contains_key(&mfn), table);
        assert_eq!(flags & PTE_USER != 0, va >= sod.stack.end, "{va:#x} user");
        assert_eq!(user, va >= sod.stack.end);
        va += PAGE;
    }
    assert_eq!(hv.walk(l4, sod.mapped_end), None);
    assert_eq!(hv.walk(l4, sod.virt_start() - PAGE), None);

    // And they are, byte for byte, the tables `xenia_pvboot::boot` plans: the same plan the
    // hypervisor writes for dom0 from the same layout.
    let p2m: Vec<Mfn> = d.p2m.values().copied().collect();
    assert!(d.p2m.keys().copied().eq((0..p2m.len() as u64).map(Pfn)));
    let frames = xenia_pvboot::boot::Frames {
        p2m: p2m.as_slice(),
        shared_info: d.shared_info,
    };
    let mut planned = 0;
    for t in xenia_pvboot::boot::page_tables(&sod, frames) {
        let t = t.unwrap();
        assert_eq!(hv.page(t.mfn), t.to_bytes(), "{t:?}");
        planned += 1;
    }
    assert_eq!(planned, d.tables.len());

    // vCPU 0: the porting guide's entry state.
    let ctx = &d.contexts[&0];
    assert_eq!(d.contexts.len(), 1, "only vCPU 0 starts");
    assert_eq!(ctx.flags, VGCF_IN_KERNEL | VGCF_ONLINE);
    let regs = &ctx.user_regs;
    assert_eq!(regs.rip, ENTRY);
    assert_eq!(regs.rsp, sod.stack.end);
    assert_eq!(regs.rsp % PAGE, 0);
    assert_eq!(regs.rsi, built.start_info_va);
    assert_eq!((regs.rax, regs.rdi, regs.rbp, regs.r15), (0, 0, 0, 0));
    assert_eq!((regs.cs, regs.ss), (KERNEL_CS, KERNEL_SS));
    assert_eq!(
        (regs.ds, regs.es, regs.fs, regs.gs),
        (KERNEL_DS, KERNEL_DS, 0, 0)
    );
    assert_eq!(regs.rflags, RFLAGS_IF | 2);
    assert_eq!(regs.saved_upcall_mask, 1, "events masked");
    assert_eq!(ctx.ctrlreg[3], l4.addr());
    assert_eq!(ctx.ctrlreg[1], 0);
    assert!(ctx.trap_ctxt.iter().all(|t| t.address == 0));
    assert_eq!((ctx.kernel_ss, ctx.kernel_sp), (0, 0));
    assert_eq!(ctx.event_callback_eip, 0);
    assert_eq!((ctx.gdt_ents, ctx.ldt_ents, ctx.vm_assist), (0, 0, 0));
}

#[test]
fn a_domain_without_console_or_ramdisk() {
    let k = kernel("");
    let mut hv = FakeHv::new();
    let cfg = DomainConfig {
        console: false,
        store: false,
        ..DomainConfig::new("quiet", &k, 8)
    };
    let built = build(&mut hv, &cfg).unwrap();
    let d = &hv.domains[&built.dom];
    assert_eq!(built.console, None);
    assert_eq!(built.store, None);
    assert!(d.ports.is_empty(), "no console or store channel");
    assert!(!hv.calls.iter().any(|(op, _)| *op == Op::AllocUnbound));
    let si = read(&hv, &built, built.start_info_va, 1168);
    assert_eq!((u64_at(&si, 72), u64_at(&si, 80)), (0, 0), "no console");
    assert_eq!((u64_at(&si, 56), u64_at(&si, 64)), (0, 0), "no store");
    assert_eq!((u64_at(&si, 112), u64_at(&si, 120)), (0, 0), "no ramdisk");
    assert_eq!(si[128], 0, "empty command line");
    let devices =
        DevicePage::from_bytes(&read(&hv, &built, built.layout.device_page, PAGE_SIZE)).unwrap();
    assert!(devices.is_valid());
    // No console; vCPU 0, the one vCPU, to be up.
    assert_eq!(devices.entries().len(), 1);
    assert!(devices.find(DEVICE_VCPU, 0).is_some());
    assert_eq!(built.layout.sod.initrd, None);
    assert_eq!(
        d.credit,
        Some(DomctlSchedCredit {
            weight: 256,
            cap: 0
        })
    );
    assert_eq!(d.max_pages, 8 * 256);
}

#[test]
fn start_paused_leaves_the_domain_paused() {
    let k = kernel("");
    let mut hv = FakeHv::new();
    let cfg = DomainConfig {
        start_paused: true,
        ..DomainConfig::new("held", &k, 8)
    };
    let built = build(&mut hv, &cfg).unwrap();
    assert!(hv.domains[&built.dom].paused);
    assert!(!hv.calls.iter().any(|(op, _)| *op == Op::Unpause));
    assert!(
        hv.domains[&built.dom].contexts.contains_key(&0),
        "ready to run"
    );
    let running = build(&mut hv, &DomainConfig::new("runs", &k, 8)).unwrap();
    assert!(!hv.domains[&running.dom].paused);
}

#[test]
fn two_domains_get_their_own_frames() {
    let k = kernel("");
    let mut hv = FakeHv::new();
    let a = build(&mut hv, &DomainConfig::new("a", &k, 8)).unwrap();
    let b = build(&mut hv, &DomainConfig::new("b", &k, 8)).unwrap();
    assert_ne!(a.dom, b.dom);
    let frames = |dom| -> alloc::collections::BTreeSet<Mfn> {
        hv.domains[&dom].p2m.values().copied().collect()
    };
    assert!(frames(a.dom).is_disjoint(&frames(b.dom)));
    assert_ne!(a.console.unwrap().mfn, b.console.unwrap().mfn);
}

/// How many hypervisor calls a successful build of `cfg` makes.
fn calls_of_a_good_build(cfg: &DomainConfig<'_>) -> usize {
    let mut hv = FakeHv::new();
    build(&mut hv, cfg).unwrap();
    hv.calls.len()
}

#[test]
fn a_failure_at_any_step_destroys_the_domain_once() {
    let (k, r) = (kernel(""), ramdisk());
    let cfg = config(&k, &r);
    let total = calls_of_a_good_build(&cfg);
    assert!(total > 20, "{total} calls");
    for fail in 0..total {
        let mut hv = FakeHv::new();
        hv.fail_at = Some(fail);
        let err = build(&mut hv, &cfg).unwrap_err();
        let (failed_op, _) = hv.calls[fail];
        let BuildError::Hypervisor { step, errno } = &err else {
            panic!("call {fail}: {err:?}");
        };
        assert_eq!(*errno, guest_abi::Errno::ENOMEM);
        let expected_step = match failed_op {
            Op::Create => Step::CreateDomain,
            Op::MaxMem => Step::SetMaxMem,
            Op::MaxVcpus => Step::SetMaxVcpus,
            Op::Sched => Step::SetScheduler,
            Op::Populate => Step::Populate,
            Op::SharedInfo => Step::SharedInfoFrame,
            Op::AllocUnbound if hv.calls[..fail].iter().any(|(o, _)| *o == Op::AllocUnbound) => {
                Step::AllocStoreChannel
            }
            Op::AllocUnbound => Step::AllocConsoleChannel,
            Op::Write => Step::WriteFrame,
            Op::Pin => Step::PinL4,
            Op::SetContext => Step::SetVcpuContext,
            Op::Unpause => Step::Unpause,
            Op::GuestMode => Step::SetGuestMode,
            Op::Destroy => unreachable!(),
        };
        assert_eq!(*step, expected_step, "call {fail}");
        assert_eq!(
            hv.calls.len(),
            fail + 1 + usize::from(fail > 0),
            "call {fail}: stops at once"
        );
        let destroys: Vec<_> = hv
            .calls
            .iter()
            .filter(|(op, _)| *op == Op::Destroy)
            .collect();
        if fail == 0 {
            assert!(destroys.is_empty(), "nothing to destroy when create fails");
        } else {
            assert_eq!(destroys, [&(Op::Destroy, 1)], "call {fail}");
            assert_eq!(
                hv.calls.last(),
                Some(&(Op::Destroy, 1)),
                "destroy comes last"
            );
        }
        assert!(hv.domains.is_empty(), "call {fail}: a domain left behind");
        assert!(
            hv.owner.is_empty() && hv.frames.is_empty(),
            "call {fail}: frames left"
        );
    }
}

#[test]
fn a_failed_cleanup_is_reported() {
    let k = kernel("");
    let mut hv = FakeHv::new();
    hv.fail_at = Some(4);
    hv.fail_destroy = true;
    let err = build(&mut hv, &DomainConfig::new("stuck", &k, 8)).unwrap_err();
    let BuildError::NotCleanedUp { dom, errno, cause } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*dom, *errno), (1, guest_abi::Errno::EBUSY));
    assert!(matches!(
        **cause,
        BuildError::Hypervisor {
            step: Step::Populate,
            ..
        }
    ));
    assert!(hv.domains.contains_key(&1));
    let msg = err.to_string();
    assert!(
        msg.contains("giving it memory") && msg.contains("still exists"),
        "{msg}"
    );
}

#[test]
fn a_short_populate_answer_is_refused() {
    let k = kernel("");
    let mut hv = FakeHv::new();
    hv.short_populate = true;
    let err = build(&mut hv, &DomainConfig::new("short", &k, 8)).unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::BadReply {
                step: Step::Populate,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(hv.domains.is_empty());
}

#[test]
fn refusals_before_creation_touch_nothing() {
    let good = kernel("");
    let needs_writable_descriptors = kernel("!writable_descriptor_tables|dom0");
    let needs_unknown = kernel("writable_page_tables|!teleport");
    let needs_writable_pt = kernel("!writable_page_tables|pae_pgdir_above_4gb");
    let long_cmdline = "x".repeat(1024);
    type Expect = fn(&BuildError) -> bool;
    let cases: Vec<(DomainConfig<'_>, Expect)> = vec![
        (DomainConfig::new("garbage", b"not an elf", 8), |e| {
            matches!(e, BuildError::Elf(_))
        }),
        (DomainConfig::new("features", &needs_writable_pt, 8), |e| {
            *e == BuildError::XenPvKernel {
                kernel: "unnamed kernel".into(),
                missing: vec!["writable_page_tables".to_string()],
            }
        }),
        (
            DomainConfig::new("descriptors", &needs_writable_descriptors, 8),
            |e| *e == BuildError::MissingFeatures(vec!["writable_descriptor_tables".to_string()]),
        ),
        (DomainConfig::new("unknown", &needs_unknown, 8), |e| {
            *e == BuildError::UnknownFeature(super::xenpv::UnknownFeature("teleport".into()))
        }),
        (DomainConfig::new("tiny", &good, 1), |e| {
            matches!(e, BuildError::Layout(LayoutError::TooSmall { .. }))
        }),
        (DomainConfig::new("none", &good, 0), |e| {
            *e == BuildError::Config(ConfigError::NoMemory)
        }),
        (DomainConfig::in_kib("odd", &good, 8 * 1024 + 2), |e| {
            *e == BuildError::Config(ConfigError::NotWholePages { kib: 8 * 1024 + 2 })
        }),
        (
            DomainConfig {
                max_memory_kib: 8 * 1024 + 1,
                ..DomainConfig::new("oddmax", &good, 8)
            },
            |e| *e == BuildError::Config(ConfigError::NotWholePages { kib: 8 * 1024 + 1 }),
        ),
        (
            DomainConfig {
                max_memory_kib: 4 * 1024,
                ..DomainConfig::new("max", &good, 8)
            },
            |e| matches!(e, BuildError::Config(ConfigError::MaxMemBelowMemory { .. })),
        ),
        (
            DomainConfig {
                vcpus: 0,
                ..DomainConfig::new("novcpu", &good, 8)
            },
            |e| *e == BuildError::Config(ConfigError::NoVcpus),
        ),
        (
            DomainConfig {
                vcpus: 2,
                online_vcpus: 3,
                ..DomainConfig::new("maxvcpus", &good, 8)
            },
            |e| {
                *e == BuildError::Config(ConfigError::MaxVcpusBelowVcpus {
                    vcpus: 3,
                    max_vcpus: 2,
                })
            },
        ),
        (
            DomainConfig {
                weight: 0,
                ..DomainConfig::new("weight", &good, 8)
            },
            |e| *e == BuildError::Config(ConfigError::BadWeight),
        ),
        (
            DomainConfig {
                cap: 101,
                ..DomainConfig::new("cap", &good, 8)
            },
            |e| {
                matches!(
                    e,
                    BuildError::Config(ConfigError::BadCap { cap: 101, vcpus: 1 })
                )
            },
        ),
        (
            DomainConfig {
                cmdline: &long_cmdline,
                ..DomainConfig::new("cmdline", &good, 8)
            },
            |e| *e == BuildError::Config(ConfigError::CmdlineTooLong { len: 1024 }),
        ),
        (
            DomainConfig {
                cmdline: "a\0b",
                ..DomainConfig::new("nul", &good, 8)
            },
            |e| *e == BuildError::Config(ConfigError::CmdlineHasNul),
        ),
        (
            DomainConfig {
                max_memory_kib: u64::MAX - 3,
                ..DomainConfig::new("huge", &good, 8)
            },
            |e| matches!(e, BuildError::Config(ConfigError::TooMuchMemory { .. })),
        ),
    ];
    for (cfg, expected) in cases {
        let mut hv = FakeHv::new();
        let err = build(&mut hv, &cfg).unwrap_err();
        assert!(expected(&err), "{}: {err:?}", cfg.name);
        assert!(hv.calls.is_empty(), "{}: {:?}", cfg.name, hv.calls);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn a_1023_byte_command_line_fits() {
    let k = kernel("");
    let line = "y".repeat(1023);
    let mut hv = FakeHv::new();
    let built = build(
        &mut hv,
        &DomainConfig {
            cmdline: &line,
            ..DomainConfig::new("long", &k, 8)
        },
    )
    .unwrap();
    let si = read(&hv, &built, built.start_info_va, 1168);
    assert_eq!(&si[128..128 + 1023], line.as_bytes());
    assert_eq!(si[128 + 1023], 0);
}

#[test]
fn a_domain_as_small_as_its_start_of_day() {
    // Climb from one page to the least memory the layout fits, as dom0test's density does.
    let k = kernel("");
    let mut pages = 1u64;
    let built = loop {
        let mut hv = FakeHv::new();
        let cfg = DomainConfig {
            console: false,
            store: false,
            ..DomainConfig::in_kib("small", &k, pages * 4)
        };
        match build(&mut hv, &cfg) {
            Ok(b) => break (b, hv),
            Err(BuildError::Layout(LayoutError::TooSmall { need_pages, .. })) => {
                assert!(hv.calls.is_empty(), "refused before anything exists");
                assert!(need_pages > pages);
                pages = need_pages;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (built, hv) = built;
    let sod = &built.layout.sod;
    assert!(
        pages < 1024,
        "{pages} pages: under 4 MiB, Xen's least region"
    );
    assert_eq!(built.nr_pages, pages);
    assert_eq!(
        sod.mapped_pages(),
        pages,
        "every page is in the start of day"
    );
    assert_eq!(sod.mapped_end, sod.stack.end, "no padding left");
    let d = &hv.domains[&built.dom];
    assert_eq!(
        d.max_pages, pages,
        "max_mem in KiB is the memory to the page"
    );
    assert_eq!(d.p2m.len() as u64, pages);
    let si = read(&hv, &built, built.start_info_va, 1168);
    let parsed = StartInfo {
        pt_base: u64_at(&si, 88),
        nr_pt_frames: u64_at(&si, 96),
        nr_pages: u64_at(&si, 32),
        ..StartInfo::new()
    };
    assert_eq!(parsed.nr_pages, pages);
    assert_eq!(parsed.padding_start(), sod.stack.end);
    assert_eq!(parsed.padding_end_within(sod.virt_start()), sod.mapped_end);
    // One page less does not fit.
    let mut hv = FakeHv::new();
    let cfg = DomainConfig {
        console: false,
        store: false,
        ..DomainConfig::in_kib("smaller", &k, (pages - 1) * 4)
    };
    assert!(matches!(
        build(&mut hv, &cfg),
        Err(BuildError::Layout(LayoutError::TooSmall { .. }))
    ));
}

#[test]
fn messages_name_the_culprit() {
    let e = BuildError::Layout(LayoutError::TooSmall {
        need_pages: 1030,
        have_pages: 256,
        kernel_pages: 300,
    });
    assert_eq!(
        e.to_string(),
        "memory of 1 MiB is too small for this kernel and ramdisk: the start-of-day region \
         needs 4120 KiB (1030 pages)"
    );
    let e = BuildError::Config(ConfigError::MaxMemBelowMemory {
        memory_kib: 8192,
        max_memory_kib: 1000,
    });
    assert_eq!(
        e.to_string(),
        "bad configuration: maxmem (1000 KiB) is below memory (8 MiB)"
    );
    let e = BuildError::Hypervisor {
        step: Step::PinL4,
        errno: guest_abi::Errno::EINVAL,
    };
    assert_eq!(
        e.to_string(),
        "the hypervisor refused pinning its bootstrap page tables: EINVAL (22)"
    );
}
