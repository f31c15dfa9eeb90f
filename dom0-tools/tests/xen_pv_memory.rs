//! dom0's memory while the builder loads Debian's kernel (issue 18): the bzImage is
//! decompressed straight into the new domain's frames, so the builder's high-water mark is
//! a buffer, not the 51 MiB image. Measured as the growth of this process's peak resident
//! set (`VmHWM`, Linux's `/proc/self/status`) across one build against a hypervisor that
//! discards what is written; its own process, so no other test's memory counts.
//! Skipped (with a message) when `cargo xtask build` did not fetch the kernel.

use dom0_tools::builder::{self, DomainConfig, Started};
use dom0_tools::hypervisor::{CreateConfig, Hypervisor};
use guest_abi::Errno;
use guest_abi::domctl::{DomctlSchedCredit, XENIA_GUEST_MODE_XEN_PV};
use guest_abi::event::EvtchnPort;
use guest_abi::types::{DomId, Mfn, Pfn};
use guest_abi::vcpu_context::VcpuGuestContext;
use xenia_pvboot::layout::Level;

/// A hypervisor with the Xen PV mode that keeps nothing: frames are numbers, writes are
/// counted and dropped.
#[derive(Default)]
struct Discard {
    written: u64,
    mode: Option<u32>,
}

impl Hypervisor for Discard {
    fn create_domain(&mut self, _: &CreateConfig) -> Result<DomId, Errno> {
        Ok(1)
    }
    fn set_max_mem(&mut self, _: DomId, _: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn set_max_vcpus(&mut self, _: DomId, _: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn set_sched_credit(&mut self, _: DomId, _: DomctlSchedCredit) -> Result<(), Errno> {
        Ok(())
    }
    fn populate(&mut self, _: DomId, pfns: &[Pfn]) -> Result<Vec<Mfn>, Errno> {
        Ok(pfns.iter().map(|p| Mfn(0x10_0000 + p.0)).collect())
    }
    fn write_frame(&mut self, _: DomId, _: Mfn, _: usize, bytes: &[u8]) -> Result<(), Errno> {
        self.written += bytes.len() as u64;
        Ok(())
    }
    fn pin_table(&mut self, _: DomId, _: Mfn, _: Level) -> Result<(), Errno> {
        Ok(())
    }
    fn alloc_unbound(&mut self, _: DomId, _: DomId) -> Result<EvtchnPort, Errno> {
        Ok(1)
    }
    fn shared_info_frame(&mut self, _: DomId) -> Result<Mfn, Errno> {
        Ok(Mfn(0x42))
    }
    fn set_vcpu_context(&mut self, _: DomId, _: u32, _: &VcpuGuestContext) -> Result<(), Errno> {
        Ok(())
    }
    fn unpause(&mut self, _: DomId) -> Result<(), Errno> {
        Ok(())
    }
    fn destroy(&mut self, _: DomId) -> Result<(), Errno> {
        Ok(())
    }
    fn set_guest_mode(&mut self, _: DomId, mode: u32) -> Result<(), Errno> {
        self.mode = Some(mode);
        Ok(())
    }
    fn hypercall_init(&mut self, _: DomId, _: Mfn) -> Result<(), Errno> {
        Ok(())
    }
}

/// This process's peak resident set, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn debian_file(prefix: &str) -> Option<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("target/debian/root");
    for package in std::fs::read_dir(&root).ok()?.flatten() {
        for file in std::fs::read_dir(package.path().join("boot"))
            .ok()?
            .flatten()
        {
            if file.file_name().to_string_lossy().starts_with(prefix) {
                return std::fs::read(file.path()).ok();
            }
        }
    }
    None
}

#[test]
fn loading_debians_kernel_costs_a_buffer_not_the_image() {
    let Some(vmlinuz) = debian_file("vmlinuz-") else {
        eprintln!("skipped: no Debian kernel under target/debian (cargo xtask build fetches it)");
        return;
    };
    let ramdisk = vec![0x5a; 2 << 20];
    let cfg = DomainConfig {
        ramdisk: Some(&ramdisk),
        cmdline: "console=hvc0",
        ..DomainConfig::new("debian", &vmlinuz, 256)
    };
    let mut hv = Discard::default();
    let before = vm_hwm_kib();
    let started = builder::create(&mut hv, &cfg).expect("Debian's kernel builds");
    let growth = vm_hwm_kib().saturating_sub(before);
    assert!(matches!(started, Started::XenPv(_)));
    assert_eq!(hv.mode, Some(XENIA_GUEST_MODE_XEN_PV));
    // Every byte of the 51 MiB image's segments went to the domain.
    assert!(hv.written > 40 << 20, "only {} bytes written", hv.written);
    println!(
        "Debian kernel ({} KiB bzImage): {} KiB written into the domain, builder high-water \
         growth {growth} KiB",
        vmlinuz.len() >> 10,
        hv.written >> 10
    );
    // lz4's 8 MiB chunk buffer (twice at most: headers, then load), the p2m list and the
    // headers; the unpacked image alone would be 51 MiB.
    assert!(
        growth < 20 << 10,
        "the builder's peak grew by {growth} KiB: it holds the image"
    );
}
