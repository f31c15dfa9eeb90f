//! The domain builder: turns a kernel image and a [`DomainConfig`] into a
//! running paravirtual domU.
//!
//! It does for a domU what the hypervisor does for dom0
//! (`hypervisor/src/domain/build.rs`), with the same checks, layout and
//! start-of-day plan from `xenia-pvboot` (`layout::plan` places everything,
//! `boot` says what the page tables, `start_info` and vCPU 0 hold), through
//! the [`Hypervisor`] trait; what is the builder's own is only how it
//! reaches the new domain's memory:
//!
//! 1. check the configuration, the kernel image (`elf::parse`) and its
//!    required features, and plan the start-of-day layout ([`layout`]):
//!    nothing exists yet, so a refusal here leaves nothing to clean up;
//! 2. create the domain (paused), set its memory limit, vCPU count and
//!    credit-scheduler weight and cap;
//! 3. populate pseudo-physical frames `0..nr_pages` and learn the
//!    `shared_info` frame; allocate the console's and the xenstore ring's
//!    event channels (unbound, for dom0);
//! 4. write, into the new frames: the kernel's segments, its hypercall page,
//!    the ramdisk, the p2m list, `start_info` (flags 0: an unprivileged
//!    domU; the console's and the store's frames and channels), the zeroed
//!    console and store rings, the device page and the bootstrap page tables (frames are zero when
//!    populated, so `.bss` and the padding need no writes);
//! 5. pin the bootstrap L4 (which validates the tables as the domain's),
//!    set vCPU 0's context (`xenia_pvboot::boot::initial_context`) and unpause (unless
//!    [`DomainConfig::start_paused`]).
//!
//! Any failure after the domain exists destroys it, once, so a failed build
//! leaves nothing behind ([`BuildError::NotCleanedUp`] reports the rare case
//! where even that fails).

pub mod bzimage;
pub mod layout;
pub mod load_xen_pv;
pub mod xenpv;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_xen_pv;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use guest_abi::Errno;
use guest_abi::device_page::{DEVICE_CONSOLE, DEVICE_VCPU, DeviceEntry, DevicePage};
use guest_abi::domctl::{CREDIT_DEFAULT_WEIGHT, DomctlSchedCredit, XenDomainHandle};
use guest_abi::event::EvtchnPort;
use guest_abi::hypercall::hypercall_page_image;
use guest_abi::start_info::{MAX_GUEST_CMDLINE, StartInfoConsole};
use guest_abi::types::{DomId, Mfn, PAGE_SIZE, Pfn};
use xenia_pvboot::boot::{self, BootError, Frames};
use xenia_pvboot::elf::{self, ElfError, KernelImage};
use xenia_pvboot::layout::{LayoutError, Level, PAGE};

use crate::hypervisor::{CreateConfig, Hypervisor};
pub use layout::DomuLayout;
pub use load_xen_pv::BuiltXenPv;

/// The domain that runs every domU's console backend.
pub const CONSOLE_BACKEND: DomId = 0;
/// The domain that serves xenstore (inside its kernel, DESIGN §11).
pub const STORE_BACKEND: DomId = 0;

/// How many frames one populate request asks for: bounds the size of a
/// hypercall argument whatever the domain's size.
pub const POPULATE_BATCH: usize = 1024;

/// KiB per page.
const KIB_PER_PAGE: u64 = PAGE / 1024;

/// A domU to build: xl's configuration keys, already parsed.
#[derive(Clone, Copy)]
pub struct DomainConfig<'a> {
    /// The domain's name (`name`). The hypervisor does not store names and
    /// the builder does not use it: it is the caller's, for its messages and
    /// records.
    pub name: &'a str,
    /// The domain's UUID (all zero when the configuration gives none).
    pub handle: XenDomainHandle,
    /// The kernel's ELF image (`kernel`).
    pub kernel: &'a [u8],
    /// The initial ramdisk (`ramdisk`), if any.
    pub ramdisk: Option<&'a [u8]>,
    /// The kernel command line (`cmdline`/`extra`), at most 1023 bytes and
    /// without NUL.
    pub cmdline: &'a str,
    /// Memory at start, in KiB (xl's `memory` is in MiB; the builder takes any whole
    /// number of pages, so that minimal domains need not be a MiB apart).
    pub memory_kib: u64,
    /// Memory limit, in KiB (xl's `maxmem`), at least `memory_kib`: what `max_mem` gets.
    pub max_memory_kib: u64,
    /// Number of vCPUs the domain has (`maxvcpus`, or `vcpus` without it):
    /// its `max_vcpus`. The builder starts vCPU 0, as on Xen.
    pub vcpus: u32,
    /// How many of them the guest should bring up at start (`vcpus`), 1 to
    /// `vcpus`: vCPUs `0..online_vcpus` are listed in the device page
    /// ([`DEVICE_VCPU`]).
    pub online_vcpus: u32,
    /// Credit-scheduler weight (`cpu_weight`), 1 to 65535.
    pub weight: u16,
    /// Credit-scheduler cap in percent of a pCPU (`cap`), 0 for none, at
    /// most 100 per vCPU.
    pub cap: u16,
    /// Whether the domain gets a console.
    pub console: bool,
    /// Whether the domain gets a xenstore ring (`start_info.store_mfn` and
    /// `store_evtchn`; served by dom0's kernel once `xl` hands the domain
    /// over). Without, both fields are zero.
    pub store: bool,
    /// Leave the domain paused once built (`xl create -p`): everything is
    /// in place but vCPU 0 does not run until `unpausedomain`.
    pub start_paused: bool,
    /// What [`inspect_checked`] found in `kernel`, when the caller already asked (`xl` does,
    /// before it reads the ramdisk), so that [`create`] does not stream a bzImage's headers
    /// again. It must be of this `kernel`.
    pub inspected: Option<&'a Inspected>,
}

impl<'a> DomainConfig<'a> {
    /// A domain named `name` running `kernel` in `memory_mib` MiB (xl's
    /// unit), with xl's defaults for the rest: one vCPU, weight 256, no cap,
    /// a console, no ramdisk, an empty command line, `maxmem` equal to
    /// `memory`.
    pub fn new(name: &'a str, kernel: &'a [u8], memory_mib: u64) -> Self {
        Self::in_kib(name, kernel, memory_mib.saturating_mul(1024))
    }

    /// [`DomainConfig::new`] with the memory in KiB (a whole number of
    /// pages, or [`DomainConfig::check`] refuses it).
    pub fn in_kib(name: &'a str, kernel: &'a [u8], memory_kib: u64) -> Self {
        Self {
            name,
            handle: [0; 16],
            kernel,
            ramdisk: None,
            cmdline: "",
            memory_kib,
            max_memory_kib: memory_kib,
            vcpus: 1,
            online_vcpus: 1,
            weight: CREDIT_DEFAULT_WEIGHT,
            cap: 0,
            console: true,
            store: true,
            start_paused: false,
            inspected: None,
        }
    }

    /// The domain's memory in pages.
    pub fn nr_pages(&self) -> u64 {
        self.memory_kib / KIB_PER_PAGE
    }

    /// The `max_mem` limit in KiB.
    pub fn max_mem_kib(&self) -> u64 {
        self.max_memory_kib
    }

    /// What `createdomain` gets from this configuration.
    pub fn create_config(&self) -> CreateConfig {
        CreateConfig::new(self.handle, self.vcpus)
    }

    /// The credit-scheduler parameters.
    pub fn credit(&self) -> DomctlSchedCredit {
        DomctlSchedCredit {
            weight: self.weight,
            cap: self.cap,
        }
    }

    /// Checks everything about the configuration that does not need the
    /// kernel image.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.memory_kib == 0 {
            return Err(ConfigError::NoMemory);
        }
        for kib in [self.memory_kib, self.max_memory_kib] {
            if !kib.is_multiple_of(KIB_PER_PAGE) {
                return Err(ConfigError::NotWholePages { kib });
            }
        }
        if self.max_memory_kib < self.memory_kib {
            return Err(ConfigError::MaxMemBelowMemory {
                memory_kib: self.memory_kib,
                max_memory_kib: self.max_memory_kib,
            });
        }
        // The p2m list alone (8 bytes a page) must fit the address space.
        if (self.max_memory_kib / KIB_PER_PAGE)
            .checked_mul(8)
            .is_none()
        {
            return Err(ConfigError::TooMuchMemory {
                kib: self.max_memory_kib,
            });
        }
        if self.vcpus == 0 || self.online_vcpus == 0 {
            return Err(ConfigError::NoVcpus);
        }
        if self.online_vcpus > self.vcpus {
            return Err(ConfigError::MaxVcpusBelowVcpus {
                vcpus: self.online_vcpus,
                max_vcpus: self.vcpus,
            });
        }
        if self.weight == 0 {
            return Err(ConfigError::BadWeight);
        }
        if u64::from(self.cap) > 100 * u64::from(self.vcpus) {
            return Err(ConfigError::BadCap {
                cap: self.cap,
                vcpus: self.vcpus,
            });
        }
        if self.cmdline.len() >= MAX_GUEST_CMDLINE {
            return Err(ConfigError::CmdlineTooLong {
                len: self.cmdline.len(),
            });
        }
        if self.cmdline.contains('\0') {
            return Err(ConfigError::CmdlineHasNul);
        }
        Ok(())
    }
}

impl fmt::Debug for DomainConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The images are shown by size: they can be megabytes.
        f.debug_struct("DomainConfig")
            .field("name", &self.name)
            .field("handle", &self.handle)
            .field("kernel_len", &self.kernel.len())
            .field("ramdisk_len", &self.ramdisk.map(<[u8]>::len))
            .field("cmdline", &self.cmdline)
            .field("memory_kib", &self.memory_kib)
            .field("max_memory_kib", &self.max_memory_kib)
            .field("vcpus", &self.vcpus)
            .field("weight", &self.weight)
            .field("cap", &self.cap)
            .field("console", &self.console)
            .field("store", &self.store)
            .field("start_paused", &self.start_paused)
            .field("inspected", &self.inspected.is_some())
            .finish()
    }
}

/// A memory size for messages: whole MiB as xl writes them, else KiB.
#[derive(Clone, Copy, Debug)]
pub struct Kib(pub u64);

impl fmt::Display for Kib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1024) {
            write!(f, "{} MiB", self.0 / 1024)
        } else {
            write!(f, "{} KiB", self.0)
        }
    }
}

/// What is wrong with a [`DomainConfig`]: the configuration's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `memory` is 0.
    NoMemory,
    /// A memory size that is not a whole number of pages.
    NotWholePages {
        /// The size, in KiB.
        kib: u64,
    },
    /// `maxmem` is below `memory`.
    MaxMemBelowMemory {
        /// `memory`, in KiB.
        memory_kib: u64,
        /// `maxmem`, in KiB.
        max_memory_kib: u64,
    },
    /// More memory than any domain could have.
    TooMuchMemory {
        /// The amount asked for, in KiB.
        kib: u64,
    },
    /// `vcpus` is 0.
    NoVcpus,
    /// `maxvcpus` is below `vcpus`.
    MaxVcpusBelowVcpus {
        /// `vcpus`: online at start.
        vcpus: u32,
        /// `maxvcpus`.
        max_vcpus: u32,
    },
    /// `cpu_weight` is 0.
    BadWeight,
    /// `cap` is above 100 per vCPU.
    BadCap {
        /// The cap.
        cap: u16,
        /// The vCPU count.
        vcpus: u32,
    },
    /// The command line does not fit `start_info`.
    CmdlineTooLong {
        /// Its length.
        len: usize,
    },
    /// The command line contains a NUL byte.
    CmdlineHasNul,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::NoMemory => f.write_str("memory must be at least 1 MiB"),
            ConfigError::NotWholePages { kib } => write!(
                f,
                "{kib} KiB is not a whole number of {KIB_PER_PAGE} KiB pages"
            ),
            ConfigError::MaxMemBelowMemory {
                memory_kib,
                max_memory_kib,
            } => write!(
                f,
                "maxmem ({}) is below memory ({})",
                Kib(max_memory_kib),
                Kib(memory_kib)
            ),
            ConfigError::TooMuchMemory { kib } => {
                write!(f, "{} is more than a domain can have", Kib(kib))
            }
            ConfigError::NoVcpus => f.write_str("vcpus must be at least 1"),
            ConfigError::MaxVcpusBelowVcpus { vcpus, max_vcpus } => {
                write!(f, "maxvcpus ({max_vcpus}) is less than vcpus ({vcpus})")
            }
            ConfigError::BadWeight => f.write_str("cpu_weight must be between 1 and 65535"),
            ConfigError::BadCap { cap, vcpus } => write!(
                f,
                "cap {cap} is above 100 per vCPU ({vcpus} vCPUs allow {})",
                100 * u64::from(vcpus)
            ),
            ConfigError::CmdlineTooLong { len } => write!(
                f,
                "the command line is {len} bytes; at most {} fit",
                MAX_GUEST_CMDLINE - 1
            ),
            ConfigError::CmdlineHasNul => f.write_str("the command line contains a NUL byte"),
        }
    }
}

/// A step of the build that asks the hypervisor for something, for
/// [`BuildError::Hypervisor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `createdomain`.
    CreateDomain,
    /// `max_mem`.
    SetMaxMem,
    /// `max_vcpus`.
    SetMaxVcpus,
    /// `scheduler_op`.
    SetScheduler,
    /// `populate_physmap`.
    Populate,
    /// `getdomaininfo` for the `shared_info` frame.
    SharedInfoFrame,
    /// `alloc_unbound` for the console.
    AllocConsoleChannel,
    /// `alloc_unbound` for the xenstore ring.
    AllocStoreChannel,
    /// Copying into the domain's frames.
    WriteFrame,
    /// Pinning the bootstrap L4.
    PinL4,
    /// `setvcpucontext` for vCPU 0.
    SetVcpuContext,
    /// `unpausedomain`.
    Unpause,
    /// `XEN_DOMCTL_XENIA_SET_GUEST_MODE` (Xen PV kernels).
    SetGuestMode,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::CreateDomain => "creating the domain",
            Step::SetMaxMem => "setting its memory limit",
            Step::SetMaxVcpus => "setting its vCPU count",
            Step::SetScheduler => "setting its scheduler parameters",
            Step::Populate => "giving it memory",
            Step::SharedInfoFrame => "looking up its shared_info frame",
            Step::AllocConsoleChannel => "allocating its console event channel",
            Step::AllocStoreChannel => "allocating its xenstore event channel",
            Step::WriteFrame => "writing into its memory",
            Step::PinL4 => "pinning its bootstrap page tables",
            Step::SetVcpuContext => "setting vCPU 0's registers",
            Step::Unpause => "unpausing it",
            Step::SetGuestMode => "setting its guest mode to Xen PV",
        })
    }
}

/// Why a domain could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The configuration is unusable.
    Config(ConfigError),
    /// The kernel image is unusable.
    Elf(ElfError),
    /// The kernel requires features Xenia does not provide.
    MissingFeatures(Vec<String>),
    /// The kernel is a bzImage that could not be unpacked.
    BzImage(bzimage::BzImageError),
    /// The kernel requires a Xen feature that neither Xen nor Xenia knows.
    UnknownFeature(xenpv::UnknownFeature),
    /// The kernel was built for Xen's x86-64 PV ABI, which Xenia does not run yet
    /// (DESIGN.md §12).
    XenPvKernel {
        /// What it is (`Linux 6.1.0-48-cloud-amd64, an lz4-compressed bzImage`).
        kernel: String,
        /// The features it requires that Xenia lacks, by Xen's names.
        missing: Vec<String>,
    },
    /// The start-of-day layout does not fit (most often: too little memory
    /// for the kernel and ramdisk).
    Layout(LayoutError),
    /// A Xen PV kernel's start of day (libxc's layout) does not fit.
    XenPvLayout(xenia_pvboot::xenpv::LayoutError),
    /// The hypervisor refused a step.
    Hypervisor {
        /// The step.
        step: Step,
        /// The hypervisor's error.
        errno: Errno,
    },
    /// The hypervisor answered something the builder cannot use.
    BadReply {
        /// The step.
        step: Step,
        /// What was wrong.
        detail: String,
    },
    /// A consistency check of the builder's own arithmetic failed (a bug).
    Internal(&'static str),
    /// The start-of-day plan does not fit the frames obtained (a bug).
    Plan(BootError),
    /// The build failed and destroying the half-built domain failed too: the
    /// domain still exists.
    NotCleanedUp {
        /// The domain left behind.
        dom: DomId,
        /// Why `destroydomain` failed.
        errno: Errno,
        /// Why the build failed.
        cause: Box<BuildError>,
    },
}

impl BuildError {
    /// The error for `step` failing with `errno`.
    pub fn hv(step: Step) -> impl Fn(Errno) -> BuildError {
        move |errno| BuildError::Hypervisor { step, errno }
    }
}

impl From<ElfError> for BuildError {
    fn from(e: ElfError) -> Self {
        BuildError::Elf(e)
    }
}

impl From<BootError> for BuildError {
    fn from(e: BootError) -> Self {
        BuildError::Plan(e)
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        BuildError::Config(e)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => write!(f, "bad configuration: {e}"),
            BuildError::Elf(e) => write!(f, "the kernel image is not usable: {e}"),
            BuildError::MissingFeatures(list) => write!(
                f,
                "the kernel requires features Xenia does not provide: {}",
                list.join(", ")
            ),
            BuildError::BzImage(e) => write!(f, "the kernel image is not usable: {e}"),
            BuildError::UnknownFeature(e) => write!(f, "{e}"),
            BuildError::XenPvKernel { kernel, missing } => {
                f.write_str(&xen_pv_refusal("the kernel", kernel, missing))
            }
            BuildError::Layout(LayoutError::TooSmall {
                need_pages,
                have_pages,
                ..
            }) => write!(
                f,
                "memory of {} is too small for this kernel and ramdisk: the start-of-day \
                 region needs {} ({need_pages} pages)",
                Kib(have_pages * KIB_PER_PAGE),
                Kib(need_pages * KIB_PER_PAGE)
            ),
            BuildError::Layout(e) => write!(f, "{e}"),
            BuildError::XenPvLayout(e) => write!(f, "{e}"),
            BuildError::Hypervisor { step, errno } => {
                write!(f, "the hypervisor refused {step}: {errno}")
            }
            BuildError::BadReply { step, detail } => {
                write!(
                    f,
                    "unexpected answer from the hypervisor while {step}: {detail}"
                )
            }
            BuildError::Internal(what) => write!(f, "domain builder bug: {what}"),
            BuildError::Plan(e) => write!(f, "domain builder bug: {e}"),
            BuildError::NotCleanedUp { dom, errno, cause } => write!(
                f,
                "{cause}; destroying the half-built domain {dom} failed too ({errno}), so it \
                 still exists"
            ),
        }
    }
}

/// Why a Xen PV kernel is refused, for the kernel file `path` (`/boot/debian/vmlinuz`, or
/// "the kernel"): what it is (`kernel`, [`xenpv::KernelInfo`]'s description) and the
/// features it requires that Xenia lacks.
pub fn xen_pv_refusal(path: &str, kernel: &str, missing: &[String]) -> String {
    format!(
        "{path} is a Xen PV kernel ({kernel}) that requires features Xenia does not provide: \
         {}; the Xen PV guest mode (DESIGN.md §12) is not implemented yet, so Xenia runs only \
         kernels built for its own ring-1 ABI",
        missing.join(", ")
    )
}

/// The console of a built domain, for its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleRing {
    /// Machine frame of the ring page.
    pub mfn: Mfn,
    /// Its pseudo-physical frame.
    pub pfn: Pfn,
    /// The domain's end of the event channel, unbound, for dom0 to bind.
    pub evtchn: EvtchnPort,
}

/// The xenstore ring of a built domain, for the store (Xen's
/// `XS_INTRODUCE`: ring frame and the domain's end of the channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRing {
    /// Machine frame of the ring page.
    pub mfn: Mfn,
    /// The domain's end of the event channel, unbound, for dom0 to bind.
    pub evtchn: EvtchnPort,
}

/// A domain that was built and is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// Its id.
    pub dom: DomId,
    /// Its memory, in pages.
    pub nr_pages: u64,
    /// Where it started.
    pub entry: u64,
    /// Virtual address of its `start_info` page (`rsi` at entry).
    pub start_info_va: u64,
    /// Its console, if it has one.
    pub console: Option<ConsoleRing>,
    /// Its xenstore ring, if it has one.
    pub store: Option<StoreRing>,
    /// Machine frame of its device page.
    pub device_page: Mfn,
    /// Machine frame of its `shared_info` page.
    pub shared_info: Mfn,
    /// Its start-of-day layout.
    pub layout: DomuLayout,
}

/// Everything decided before the domain exists.
struct Plan {
    /// The ELF image unpacked from a bzImage (`None`: the configuration's bytes are ELF).
    unpacked: Option<Vec<u8>>,
    image: KernelImage,
    layout: DomuLayout,
    nr_pages: u64,
    max_mem_kib: u64,
}

/// Checks `cfg` and its kernel and plans the layout. Touches nothing.
fn prepare(cfg: &DomainConfig<'_>) -> Result<Plan, BuildError> {
    cfg.check()?;
    let nr_pages = cfg.nr_pages();
    let max_mem_kib = cfg.max_mem_kib();
    // `xl` inspected and checked the kernel already (`DomainConfig::inspected`): not twice.
    let checked;
    let info = match cfg.inspected {
        Some(i) => &i.info,
        None => {
            checked = check_kernel(cfg.kernel)?;
            &checked
        }
    };
    if info.abi() == xenpv::GuestAbi::XenPv {
        // `build` loads ring-1 kernels; [`create`] loads this one.
        return Err(BuildError::XenPvKernel {
            kernel: info.to_string(),
            missing: xenpv::feature_names(info.features.missing()),
        });
    }
    // A kernel that passed is loaded whole: a bzImage is unpacked now.
    let unpacked = if bzimage::is_bzimage(cfg.kernel) {
        Some(bzimage::unpack(cfg.kernel).map_err(BuildError::BzImage)?)
    } else {
        None
    };
    let image = elf::parse(unpacked.as_deref().unwrap_or(cfg.kernel))?;
    let layout = layout::plan(
        image.virt_start..image.virt_end,
        nr_pages,
        cfg.ramdisk.map(|r| r.len() as u64),
    )?;
    Ok(Plan {
        unpacked,
        image,
        layout,
        nr_pages,
        max_mem_kib,
    })
}

/// Reads what the builder needs to know of `kernel` before loading it: its Xen notes and
/// features and, for a bzImage, its release and compression. A bzImage is streamed, not
/// unpacked: only the ELF header, the program headers and the note segments are kept
/// (`streamed_headers`), so that dom0 need not hold a 50 MiB image to learn it cannot run it.
/// Touches nothing.
pub fn inspect(kernel: &[u8]) -> Result<xenpv::KernelInfo, BuildError> {
    inspect_with_headers(kernel).map(|(info, _)| info)
}

/// A kernel inspected and checked ([`inspect_checked`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// What it is.
    pub info: xenpv::KernelInfo,
    /// A bzImage's streamed headers and notes.
    headers: Option<Vec<u8>>,
}

/// [`check_kernel`], keeping what a build needs ([`DomainConfig::inspected`]).
pub fn inspect_checked(kernel: &[u8]) -> Result<Inspected, BuildError> {
    let (info, headers) = inspect_with_headers(kernel)?;
    check_features(&info)?;
    Ok(Inspected { info, headers })
}

/// [`inspect`], with, for a bzImage, the compact image its notes were read from (the ELF
/// and program headers, then the notes: `streamed_headers`), so that a builder need not
/// stream the image's start twice.
fn inspect_with_headers(kernel: &[u8]) -> Result<(xenpv::KernelInfo, Option<Vec<u8>>), BuildError> {
    let (notes, packed, release, headers) = if bzimage::is_bzimage(kernel) {
        let bz = bzimage::parse(kernel).map_err(BuildError::BzImage)?;
        let (notes, headers) = streamed_headers(&bz)?;
        (notes, Some(bz.compression), bz.release, Some(headers))
    } else {
        (elf::notes(kernel)?, None, None, None)
    };
    let features = xenpv::features(&notes).map_err(BuildError::UnknownFeature)?;
    let info = xenpv::KernelInfo {
        packed,
        release,
        notes,
        features,
    };
    Ok((info, headers))
}

/// [`inspect`], then the builder's refusal of a kernel that requires features Xenia lacks:
/// [`BuildError::XenPvKernel`] for a kernel built for Xen's PV ABI, else
/// [`BuildError::MissingFeatures`]. `xl` calls it before reading the ramdisk.
pub fn check_kernel(kernel: &[u8]) -> Result<xenpv::KernelInfo, BuildError> {
    let info = inspect(kernel)?;
    check_features(&info)?;
    Ok(info)
}

/// [`check_kernel`]'s rule on an inspected kernel.
fn check_features(info: &xenpv::KernelInfo) -> Result<(), BuildError> {
    // A Xen PV kernel is checked against what the Xen PV guest mode provides; whether the
    // hypervisor has that mode is learnt when the domain is made ([`create`]).
    let missing = match info.abi() {
        xenpv::GuestAbi::XenPv => info.features.missing_in_xen_pv(),
        xenpv::GuestAbi::Xenia => info.features.missing(),
    };
    if missing == 0 {
        return Ok(());
    }
    Err(BuildError::MissingFeatures(xenpv::feature_names(missing)))
}

/// A domain [`create`] built and started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// A kernel of Xenia's ring-1 ABI.
    Ring1(Built),
    /// A kernel of Xen's x86-64 PV ABI (Linux).
    XenPv(BuiltXenPv),
}

impl Started {
    /// Its id.
    pub fn dom(&self) -> DomId {
        match self {
            Started::Ring1(b) => b.dom,
            Started::XenPv(b) => b.dom,
        }
    }

    /// Its console, if it has one.
    pub fn console(&self) -> Option<ConsoleRing> {
        match self {
            Started::Ring1(b) => b.console,
            Started::XenPv(b) => b.console,
        }
    }

    /// Its xenstore ring, if it has one.
    pub fn store(&self) -> Option<StoreRing> {
        match self {
            Started::Ring1(b) => b.store,
            Started::XenPv(b) => b.store,
        }
    }
}

/// Builds and starts the domain `cfg` describes, whichever ABI its kernel was built for:
/// [`build`] for Xenia's ring-1 ABI, libxc's layout and the Xen PV guest mode for Xen's
/// (`load_xen_pv`). On error nothing is left behind. A hypervisor without the Xen PV mode
/// refuses a Xen PV kernel with [`BuildError::XenPvKernel`], after tearing the empty domain
/// down.
pub fn create(hv: &mut impl Hypervisor, cfg: &DomainConfig<'_>) -> Result<Started, BuildError> {
    cfg.check()?;
    let checked;
    let i = match cfg.inspected {
        Some(i) => i,
        None => {
            checked = inspect_checked(cfg.kernel)?;
            &checked
        }
    };
    match i.info.abi() {
        xenpv::GuestAbi::Xenia => build(hv, cfg).map(Started::Ring1),
        xenpv::GuestAbi::XenPv => {
            load_xen_pv::build(hv, cfg, &i.info, i.headers.clone()).map(Started::XenPv)
        }
    }
}

/// How much of the start of an unpacked image [`streamed_headers`] keeps: the ELF header and
/// the program headers are there in every kernel (Linux: 64 bytes and 5 × 56).
const STREAMED_PREFIX: usize = 64 << 10;
/// Most note bytes [`streamed_headers`] keeps (Linux's are 512 bytes).
const STREAMED_NOTES: u64 = 64 << 10;

/// The Xen notes of the ELF image inside `bz`, streamed: the first [`STREAMED_PREFIX`] bytes
/// are kept, the `PT_NOTE` segments their program headers name are captured as they stream
/// by, and decompression stops after the last. `elf::notes` then reads a compact image made
/// of the prefix and the captured notes (their program headers pointed at the copies, the
/// section headers dropped), with every check it makes on a whole image. Returns the notes
/// and that compact image (its file and `PT_LOAD` program headers are the image's, for
/// `elf::place_xen_pv`).
fn streamed_headers(
    bz: &bzimage::BzImage<'_>,
) -> Result<(xenia_pvboot::elf::XenNotes, Vec<u8>), BuildError> {
    /// A note segment to capture: where it is in the image, its length, its program header.
    struct Wanted {
        offset: u64,
        len: u64,
        phdr: usize,
        bytes: Vec<u8>,
    }
    let mut prefix: Vec<u8> = Vec::new();
    let mut wanted: Option<Vec<Wanted>> = None;
    let mut at = 0u64;
    bzimage::stream(bz.compression, bz.payload, &mut |chunk| {
        if prefix.len() < STREAMED_PREFIX {
            let take = (STREAMED_PREFIX - prefix.len()).min(chunk.len());
            prefix.extend_from_slice(&chunk[..take]);
        }
        if wanted.is_none() && prefix.len() == STREAMED_PREFIX {
            wanted = Some(
                note_segments(&prefix)
                    .into_iter()
                    .map(|(phdr, offset, len)| Wanted {
                        offset,
                        len: len.min(STREAMED_NOTES),
                        phdr,
                        bytes: Vec::new(),
                    })
                    .collect(),
            );
        }
        let end = at + chunk.len() as u64;
        let mut done = true;
        if let Some(list) = wanted.as_mut() {
            for w in list.iter_mut() {
                let (from, to) = (w.offset.max(at), (w.offset + w.len).min(end));
                if from < to {
                    w.bytes
                        .extend_from_slice(&chunk[(from - at) as usize..(to - at) as usize]);
                }
                done &= w.offset + w.len <= end;
            }
        } else {
            done = false;
        }
        at = end;
        !done
    })
    .map_err(BuildError::BzImage)?;
    let Some(list) = wanted else {
        // The whole image was shorter than the prefix: it is all here.
        return Ok((elf::notes(&prefix)?, prefix));
    };
    let mut compact = prefix;
    for w in list {
        let offset = compact.len() as u64;
        compact.extend_from_slice(&w.bytes);
        // `note_segments` read this program header from the prefix, so it is there.
        if let Some(field) = compact.get_mut(w.phdr + 8..w.phdr + 16) {
            field.copy_from_slice(&offset.to_le_bytes());
        }
    }
    // No section headers: they lie past the prefix.
    if compact.len() >= 0x40 {
        compact[0x28..0x30].fill(0);
        compact[0x3C..0x40].fill(0);
    }
    Ok((elf::notes(&compact)?, compact))
}

/// The `PT_NOTE` program headers of the ELF-64 image that starts with `prefix`, as far as
/// `prefix` holds them: (offset of the program header in the image, `p_offset`, `p_filesz`).
/// Anything malformed yields fewer; `elf::notes` reports it.
fn note_segments(prefix: &[u8]) -> Vec<(usize, u64, u64)> {
    const PT_NOTE: u32 = 4;
    const PHDR_SIZE: usize = 56;
    let u16_at = |at: usize| {
        prefix
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        prefix
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        prefix
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phnum)) = (u64_at(0x20), u16_at(0x38)) else {
        return Vec::new();
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return Vec::new();
    };
    (0..usize::from(phnum))
        .filter_map(|i| {
            let ph = phoff.checked_add(i.checked_mul(PHDR_SIZE)?)?;
            (u32_at(ph)? == PT_NOTE).then_some((ph, u64_at(ph + 8)?, u64_at(ph + 32)?))
        })
        .collect()
}

/// Builds and starts the domain `cfg` describes. On error nothing is left
/// behind (see [`BuildError::NotCleanedUp`] for the exception).
pub fn build(hv: &mut impl Hypervisor, cfg: &DomainConfig<'_>) -> Result<Built, BuildError> {
    let plan = prepare(cfg)?;
    let dom = hv
        .create_domain(&cfg.create_config())
        .map_err(BuildError::hv(Step::CreateDomain))?;
    fill(hv, dom, cfg, &plan).map_err(|cause| match hv.destroy(dom) {
        Ok(()) => cause,
        Err(errno) => BuildError::NotCleanedUp {
            dom,
            errno,
            cause: Box::new(cause),
        },
    })
}

/// Everything after `createdomain`.
fn fill<H: Hypervisor>(
    hv: &mut H,
    dom: DomId,
    cfg: &DomainConfig<'_>,
    plan: &Plan,
) -> Result<Built, BuildError> {
    let sod = &plan.layout.sod;
    hv.set_max_mem(dom, plan.max_mem_kib)
        .map_err(BuildError::hv(Step::SetMaxMem))?;
    hv.set_max_vcpus(dom, cfg.vcpus)
        .map_err(BuildError::hv(Step::SetMaxVcpus))?;
    hv.set_sched_credit(dom, cfg.credit())
        .map_err(BuildError::hv(Step::SetScheduler))?;

    let p2m = populate(hv, dom, plan.nr_pages)?;
    let shared_info = hv
        .shared_info_frame(dom)
        .map_err(BuildError::hv(Step::SharedInfoFrame))?;
    let frames = Frames {
        p2m: p2m.as_slice(),
        shared_info,
    };
    let console_pfn = sod
        .pfn_of(plan.layout.console_ring)
        .ok_or(BuildError::Internal("the console ring is not mapped"))?;
    let device_pfn = sod
        .pfn_of(plan.layout.device_page)
        .ok_or(BuildError::Internal("the device page is not mapped"))?;
    let console = if cfg.console {
        let evtchn = hv
            .alloc_unbound(dom, CONSOLE_BACKEND)
            .map_err(BuildError::hv(Step::AllocConsoleChannel))?;
        Some(ConsoleRing {
            mfn: frames.mfn(console_pfn)?,
            pfn: console_pfn,
            evtchn,
        })
    } else {
        None
    };
    let store = if cfg.store {
        let pfn = sod
            .pfn_of(plan.layout.store_ring)
            .ok_or(BuildError::Internal("the store ring is not mapped"))?;
        let evtchn = hv
            .alloc_unbound(dom, STORE_BACKEND)
            .map_err(BuildError::hv(Step::AllocStoreChannel))?;
        Some(StoreRing {
            mfn: frames.mfn(pfn)?,
            evtchn,
        })
    } else {
        None
    };

    let mut mem = Memory {
        hv: &mut *hv,
        dom,
        frames,
        sod,
    };
    load_kernel(
        &mut mem,
        plan.unpacked.as_deref().unwrap_or(cfg.kernel),
        &plan.image,
    )?;
    if let (Some(region), Some(bytes)) = (sod.initrd, cfg.ramdisk) {
        mem.write(region.start, bytes)?;
    }
    write_p2m(&mut mem, &p2m)?;
    let console_field = console.map_or(StartInfoConsole::default(), |c| {
        StartInfoConsole::domu(c.mfn, c.evtchn)
    });
    // Flags 0: not privileged, not the initial domain. `check` bounded the
    // command line's length, so nothing is cut.
    let (mut si, _) = boot::start_info(sod, shared_info, 0, console_field, cfg.cmdline.as_bytes());
    if let Some(s) = store {
        si.store_mfn = s.mfn;
        si.store_evtchn = s.evtchn;
        // Zeroed explicitly, as the console ring: the store relies on it.
        mem.write(plan.layout.store_ring, &[0; PAGE_SIZE])?;
    }
    mem.write(sod.start_info, &boot::start_info_bytes(&si))?;
    if console.is_some() {
        // Populated frames are zero already; the ring is zeroed explicitly
        // because its backend relies on it.
        mem.write(plan.layout.console_ring, &[0; PAGE_SIZE])?;
    }
    let mut devices = DevicePage::new();
    if let Some(c) = console {
        devices.push(DeviceEntry {
            kind: DEVICE_CONSOLE,
            id: 0,
            backend: CONSOLE_BACKEND,
            _pad: 0,
            evtchn: c.evtchn,
            ring_mfn: c.mfn,
            ring_pfn: c.pfn,
        });
    }
    // The vCPUs to bring up at start (`vcpus`): Xen's `cpu/<n>/availability`.
    for id in 0..cfg.online_vcpus {
        if !devices.push(DeviceEntry {
            kind: DEVICE_VCPU,
            id,
            ..DeviceEntry::default()
        }) {
            return Err(BuildError::Internal("the device page is full"));
        }
    }
    mem.write(plan.layout.device_page, &devices.to_bytes())?;
    for table in boot::page_tables(sod, frames) {
        let table = table?;
        mem.write_frame(table.mfn, &table.to_bytes())?;
    }

    let l4 = boot::root_table(sod, &frames)?;
    hv.pin_table(dom, l4, Level::L4)
        .map_err(BuildError::hv(Step::PinL4))?;
    let ctx = boot::initial_context(plan.image.entry, sod, l4);
    hv.set_vcpu_context(dom, 0, &ctx)
        .map_err(BuildError::hv(Step::SetVcpuContext))?;
    if !cfg.start_paused {
        hv.unpause(dom).map_err(BuildError::hv(Step::Unpause))?;
    }

    Ok(Built {
        dom,
        nr_pages: plan.nr_pages,
        entry: plan.image.entry,
        start_info_va: sod.start_info,
        console,
        store,
        device_page: frames.mfn(device_pfn)?,
        shared_info,
        layout: plan.layout,
    })
}

/// Backs pseudo-physical frames `0..nr_pages` with machine frames, in
/// batches; returns the p2m list.
fn populate<H: Hypervisor>(hv: &mut H, dom: DomId, nr_pages: u64) -> Result<Vec<Mfn>, BuildError> {
    let too_big = BuildError::Internal("the domain's page count does not fit memory");
    let total = usize::try_from(nr_pages).map_err(|_| too_big.clone())?;
    let mut p2m = Vec::new();
    p2m.try_reserve_exact(total).map_err(|_| too_big)?;
    let mut batch = Vec::with_capacity(POPULATE_BATCH.min(total));
    while p2m.len() < total {
        let first = p2m.len() as u64;
        let n = POPULATE_BATCH.min(total - p2m.len()) as u64;
        batch.clear();
        batch.extend((first..first + n).map(Pfn));
        let mfns = hv
            .populate(dom, &batch)
            .map_err(BuildError::hv(Step::Populate))?;
        if mfns.len() != batch.len() {
            return Err(BuildError::BadReply {
                step: Step::Populate,
                detail: format!("{} frames for {} pfns", mfns.len(), batch.len()),
            });
        }
        p2m.extend(mfns);
    }
    Ok(p2m)
}

/// Copies the kernel's segments and fills its hypercall page.
fn load_kernel<H: Hypervisor>(
    mem: &mut Memory<'_, H>,
    bytes: &[u8],
    image: &KernelImage,
) -> Result<(), BuildError> {
    let sod = mem.sod;
    elf::load_into(
        image,
        bytes,
        |va, data| mem.write(va, data),
        |va, len| {
            // Populated frames are zero: only check that the range is mapped.
            let mapped = |va: u64| sod.pfn_of(va).is_some();
            if mapped(va) && mapped(va + len - 1) {
                Ok(())
            } else {
                Err(BuildError::Internal(
                    "a segment's bss is outside the layout",
                ))
            }
        },
    )?;
    if let Some(page) = image.notes.hypercall_page {
        mem.write(page, &hypercall_page_image())?;
    }
    Ok(())
}

/// Writes the p2m list, a page at a time.
fn write_p2m<H: Hypervisor>(mem: &mut Memory<'_, H>, p2m: &[Mfn]) -> Result<(), BuildError> {
    let per_page = PAGE_SIZE / 8;
    let mut page = Vec::with_capacity(PAGE_SIZE);
    for (i, chunk) in p2m.chunks(per_page).enumerate() {
        page.clear();
        for mfn in chunk {
            page.extend_from_slice(&mfn.0.to_le_bytes());
        }
        mem.write(mem.sod.p2m.start + (i * PAGE_SIZE) as u64, &page)?;
    }
    Ok(())
}

/// The new domain's memory, reached through the hypervisor.
struct Memory<'a, H> {
    hv: &'a mut H,
    dom: DomId,
    frames: Frames<'a>,
    sod: &'a xenia_pvboot::layout::StartOfDay,
}

impl<H: Hypervisor> Memory<'_, H> {
    /// Copies `data` to guest virtual address `va` of the bootstrap mapping,
    /// a page at a time.
    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), BuildError> {
        let mut done = 0;
        while done < data.len() {
            let at = va + done as u64;
            let offset = (at % PAGE) as usize;
            let n = (PAGE_SIZE - offset).min(data.len() - done);
            let pfn = self.sod.pfn_of(at).ok_or(BuildError::Internal(
                "a write outside the start-of-day mapping",
            ))?;
            let mfn = self.frames.mfn(pfn)?;
            self.hv
                .write_frame(self.dom, mfn, offset, &data[done..done + n])
                .map_err(BuildError::hv(Step::WriteFrame))?;
            done += n;
        }
        Ok(())
    }

    /// Writes a whole frame.
    fn write_frame(&mut self, mfn: Mfn, page: &[u8]) -> Result<(), BuildError> {
        self.hv
            .write_frame(self.dom, mfn, 0, page)
            .map_err(BuildError::hv(Step::WriteFrame))
    }
}
