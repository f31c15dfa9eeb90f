//! Domain control (`domctl`): how the toolstack creates, builds, runs and
//! destroys domains.
//!
//! `domctl(op)` takes the address of one [`XenDomctl`] (Xen's `struct
//! xen_domctl`, 144 bytes): a command, the interface version, the target
//! domain and a 128-byte union holding the command's argument structure.
//! Command numbers and argument layouts are Xen's
//! (`xen/include/public/domctl.h`, x86-64); this module defines the commands
//! Xenia implements, and their semantics below are the contract between the
//! hypervisor and the toolstack (`dom0-tools`).
//!
//! # Rules for every command
//!
//! * Only a privileged domain (dom0) may issue `domctl`: anyone else gets
//!   `EPERM`.
//! * `interface_version` must be [`XEN_DOMCTL_INTERFACE_VERSION`]; any other
//!   value fails with `EACCES`, as on Xen. The value is Xenia's own, so a tool
//!   built against Xen's headers is refused rather than misunderstood.
//! * An unknown or unimplemented command fails with `ENOSYS`.
//! * `domain` must name an existing domain (`ESRCH` otherwise), except for
//!   [`XEN_DOMCTL_CREATEDOMAIN`]. A command that would stop, destroy or
//!   rebuild the caller itself fails with `EINVAL`.
//! * The hypervisor reads the whole structure once, acts, and writes the
//!   whole structure back on success (OUT fields filled, the rest as read).
//!   An unreadable or unwritable `op` fails with `EFAULT`.
//! * Reserved and padding fields are ignored on input and written as zero.
//!
//! # The commands Xenia implements
//!
//! | command | argument | what it does |
//! |---|---|---|
//! | [`XEN_DOMCTL_CREATEDOMAIN`] | [`DomctlCreatedomain`] | creates a paused, empty domain; its id comes back in [`XenDomctl::domain`] |
//! | [`XEN_DOMCTL_DESTROYDOMAIN`] | none | kills the domain and frees everything it holds |
//! | [`XEN_DOMCTL_PAUSEDOMAIN`], [`XEN_DOMCTL_UNPAUSEDOMAIN`] | none | the toolstack's pause count |
//! | [`XEN_DOMCTL_GETDOMAININFO`] | [`DomctlGetdomaininfo`] (OUT) | state, memory, time of one domain |
//! | [`XEN_DOMCTL_MAX_MEM`] | [`DomctlMaxMem`] | memory limit |
//! | [`XEN_DOMCTL_SETVCPUCONTEXT`], [`XEN_DOMCTL_GETVCPUCONTEXT`] | [`DomctlVcpucontext`] | a vCPU's registers ([`VcpuGuestContext`](crate::vcpu_context::VcpuGuestContext)) |
//! | [`XEN_DOMCTL_GETVCPUINFO`] | [`DomctlGetvcpuinfo`] | one vCPU's state and time |
//! | [`XEN_DOMCTL_MAX_VCPUS`] | [`DomctlMaxVcpus`] | allocates the vCPUs |
//! | [`XEN_DOMCTL_SCHEDULER_OP`] | [`DomctlSchedulerOp`] | credit-scheduler weight and cap |
//! | [`XEN_DOMCTL_SETVCPUAFFINITY`], [`XEN_DOMCTL_GETVCPUAFFINITY`] | [`DomctlVcpuaffinity`] | the pCPUs a vCPU may run on (`xl vcpu-pin`, `xl vcpu-list`) |
//!
//! ## `createdomain`
//!
//! IN: [`DomctlCreatedomain`]; `domain` is the id wanted, or 0 (or any value
//! at or above [`DOMID_FIRST_RESERVED`](crate::types::DOMID_FIRST_RESERVED))
//! to let the hypervisor pick the lowest free id. OUT: `domain` holds the new
//! id. `EEXIST` if the id asked for is taken, `ENOSPC` if no id is free,
//! `EINVAL` for a field Xenia does not support (see each field), `ENOMEM`.
//!
//! The new domain is **paused** (pause count 1, held for the toolstack; the
//! first [`XEN_DOMCTL_UNPAUSEDOMAIN`] lets it run), owns no memory
//! (`tot_pages` 0, `max_pages` 0), has no vCPUs until
//! [`XEN_DOMCTL_MAX_VCPUS`], no event channels, and one `shared_info` frame:
//! allocated, zeroed, owned by the domain but not one of its pseudo-physical
//! frames and not counted in `tot_pages`, reported in
//! [`DomctlGetdomaininfo::shared_info_frame`]. Its `vcpu_info` event masks
//! start set (events masked at first entry, as the porting guide promises).
//! It is not privileged.
//!
//! ## Building the domain
//!
//! Between `createdomain` and the first unpause, the toolstack fills the
//! domain with ordinary hypercalls that name it as a *foreign* domain, each of
//! which requires the caller to be privileged (`EPERM` otherwise):
//!
//! * `memory_op(XENMEM_populate_physmap)` with `domid` = the domain: allocates
//!   zeroed frames for the listed PFNs, gives them to the domain, sets their
//!   M2P entries, counts them in `tot_pages` (`ENOMEM` past `max_pages`)
//!   and keeps `shared_info.arch.max_pfn` at the highest populated PFN plus
//!   one (dom0's builder sets it to dom0's page count);
//! * `mmu_update` with `foreigndom` = the domain, so that dom0 may map the
//!   domain's (writable-type) frames into its own page tables and copy the
//!   kernel, p2m list, `start_info` and page tables in;
//! * `mmuext_op(MMUEXT_PIN_L4_TABLE)` with `foreigndom` = the domain:
//!   validates the bootstrap page tables against the *domain's* ownership
//!   (its frames and its `shared_info` frame) and pins them;
//! * `event_channel_op(EVTCHNOP_alloc_unbound)` with `dom` = the domain and
//!   `remote_dom` = 0: the console's event channel, which dom0's console
//!   backend later binds.
//!
//! ## `setvcpucontext`
//!
//! IN: [`DomctlVcpucontext`]: `vcpu` below the domain's vCPU count (`EINVAL`
//! otherwise) and `ctxt` the address, in the caller, of a
//! [`VcpuGuestContext`](crate::vcpu_context::VcpuGuestContext) (`EFAULT` if
//! unreadable, `EINVAL` if 0). The domain must be paused (`EBUSY`
//! otherwise). The context is checked as a whole before anything changes
//! (`EINVAL` for a field Xenia refuses; see
//! [`vcpu_context`](crate::vcpu_context) for which fields are honoured,
//! ignored and refused). The L4 in `ctrlreg[3]` must be a frame of the
//! domain that validates as an L4 table (it normally is pinned already);
//! the vCPU takes a base-pointer reference on it, as `MMUEXT_NEW_BASEPTR`
//! does. With `VGCF_ONLINE` the vCPU becomes runnable, so it runs when the
//! domain is unpaused; it enters the guest exactly as dom0's vCPU 0 does (the
//! porting guide's entry state), with the registers given.
//!
//! ## `setvcpuaffinity`, `getvcpuaffinity`
//!
//! IN: [`DomctlVcpuaffinity`]: `vcpu` below the domain's vCPU count
//! (`EINVAL` otherwise); `flags` [`XEN_VCPUAFFINITY_HARD`] and/or
//! [`XEN_VCPUAFFINITY_SOFT`] (`EINVAL` if neither, or an unknown bit;
//! [`XEN_VCPUAFFINITY_FORCE`] is accepted and means nothing, as Xenia has no
//! `SCHEDOP_pin_override`); for each flag given, the matching
//! [`XenctlBitmap`]: `bitmap` the address, in the caller, of `nr_bits`
//! bits (bit *n* of byte *n* / 8 is pCPU *n*), `nr_bits` from 1 to
//! [`XENCTL_BITMAP_MAX_BITS`] (`EINVAL` otherwise). An unreadable or
//! unwritable bitmap is `EFAULT`.
//!
//! `setvcpuaffinity` reads the bitmaps (bits beyond the hypervisor's CPUs
//! are ignored). A hard mask with no online pCPU is `EINVAL` and changes
//! nothing; otherwise the vCPU runs and waits only on online pCPUs of its
//! hard mask from then on (a vCPU running elsewhere is moved at once). The
//! soft mask is recorded and reported but does not steer the scheduler
//! (Xen's credit1 prefers soft-affine pCPUs). On success the bitmaps are
//! written back with the effective masks, as Xen does: hard ∧ online, and
//! soft ∧ hard ∧ online. `getvcpuaffinity` writes the masks as set (all ones
//! for a vCPU never pinned), whatever is online. Bits past the hypervisor's
//! CPUs are written as zero, up to `nr_bits` rounded up to whole bytes.
//!
//! ## Destroying
//!
//! `destroydomain` marks the domain dying (`XEN_DOMINF_DYING`), stops its
//! vCPUs, closes its event channels (the remote ends become unbound), drops
//! its pins and base pointers and frees every frame it owns once nothing
//! else refers to it; the id is reusable once the domain has gone.
//! Destroying a domain that is half built is the toolstack's only cleanup
//! and must always succeed for an existing domain.

use crate::types::DomId;

/// Xenia's domctl interface version: [`XenDomctl::interface_version`] must
/// hold exactly this, else the hypervisor answers `EACCES` (Xen's rule).
///
/// Xen's own values are small (`0x17` for Xen 4.19); Xenia's carry `0x5800`
/// in the high half, its mark for its own numbers (as in
/// [`XENMEM_XENIA_FRAME_COUNTS`](crate::memory::XENMEM_XENIA_FRAME_COUNTS)),
/// and a revision in the low half, bumped whenever a structure of this
/// module changes incompatibly.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x5800_0001;

/// Create a domain ([`DomctlCreatedomain`]).
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// Destroy a domain (no argument).
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// Pause a domain (no argument).
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// Unpause a domain (no argument).
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// Get information about a domain ([`DomctlGetdomaininfo`]).
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// Set a vCPU's pCPU affinity.
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// Shadow paging control.
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
/// Set a domain's memory limit ([`DomctlMaxMem`]).
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// Set a vCPU's register context ([`DomctlVcpucontext`]).
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// Get a vCPU's register context ([`DomctlVcpucontext`]).
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// Get information about a vCPU ([`DomctlGetvcpuinfo`]).
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// Set the number of vCPUs ([`DomctlMaxVcpus`]).
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// Scheduler parameters: weight, cap ([`DomctlSchedulerOp`]).
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// Set the domain's handle (UUID).
pub const XEN_DOMCTL_SETDOMAINHANDLE: u32 = 17;
/// Enable or disable debugging.
pub const XEN_DOMCTL_SETDEBUGGING: u32 = 18;
/// Grant or revoke an IRQ.
pub const XEN_DOMCTL_IRQ_PERMISSION: u32 = 19;
/// Grant or revoke an MMIO range.
pub const XEN_DOMCTL_IOMEM_PERMISSION: u32 = 20;
/// Grant or revoke an I/O-port range.
pub const XEN_DOMCTL_IOPORT_PERMISSION: u32 = 21;
/// Fill a domain's hypercall page.
pub const XEN_DOMCTL_HYPERCALL_INIT: u32 = 22;
/// Continuation of a soft reset.
pub const XEN_DOMCTL_SOFT_RESET_CONT: u32 = 23;
/// Set the wall-clock offset.
pub const XEN_DOMCTL_SETTIMEOFFSET: u32 = 24;
/// Get a vCPU's pCPU affinity.
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;
/// Resume a suspended domain.
pub const XEN_DOMCTL_RESUMEDOMAIN: u32 = 27;
/// Send a virtual trigger (NMI, reset, …).
pub const XEN_DOMCTL_SENDTRIGGER: u32 = 28;
/// Subscribe to a domain's state changes.
pub const XEN_DOMCTL_SUBSCRIBE: u32 = 29;
/// Set a paravirtual domain's address size.
pub const XEN_DOMCTL_SET_ADDRESS_SIZE: u32 = 35;
/// Get a paravirtual domain's address size.
pub const XEN_DOMCTL_GET_ADDRESS_SIZE: u32 = 36;
/// Set the target domain of a device-model domain.
pub const XEN_DOMCTL_SET_TARGET: u32 = 46;
/// Get the types of a list of frames.
pub const XEN_DOMCTL_GETPAGEFRAMEINFO3: u32 = 61;
/// Route a global VIRQ to another domain.
pub const XEN_DOMCTL_SET_VIRQ_HANDLER: u32 = 66;
/// Soft reset.
pub const XEN_DOMCTL_SOFT_RESET: u32 = 79;

/// A domain's handle: a UUID chosen by the toolstack (Xen's
/// `xen_domain_handle_t`). The hypervisor stores it and reports it; it
/// means nothing to it.
pub type XenDomainHandle = [u8; 16];

// ---------------------------------------------------------------------------
// Byte encoding of the union members.
// ---------------------------------------------------------------------------

/// Size of the argument union of [`XenDomctl`] and
/// [`XenSysctl`](crate::sysctl::XenSysctl) (Xen's `uint8_t pad[128]` member).
pub const PAYLOAD_SIZE: usize = 128;

/// The 128-byte argument union of `domctl` and `sysctl`, 8-byte aligned as
/// Xen's union of `uint64_aligned_t`-holding structures is.
///
/// It is kept as bytes: read and write it as the structure its command names
/// with [`XenDomctl::payload`] and [`XenDomctl::set_payload`] (or the
/// `sysctl` equivalents), which encode with the structure's own field
/// offsets. Every bit pattern is valid.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(8))]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct PayloadBytes(pub [u8; PAYLOAD_SIZE]);

impl Default for PayloadBytes {
    fn default() -> Self {
        Self([0; PAYLOAD_SIZE])
    }
}

/// A structure that travels as bytes in the argument union of `domctl` or
/// `sysctl`, or as an element of an array the hypervisor fills (for
/// instance the records of `XEN_SYSCTL_getdomaininfolist`).
///
/// The encoding is the structure's `repr(C)` layout, little-endian, with
/// padding and the rest of the union zero. It is written field by field
/// from the field offsets, so neither side needs `unsafe` to cross between
/// bytes and the typed structure.
pub trait Payload: Sized {
    /// The union bytes holding `self`.
    fn encode(&self) -> [u8; PAYLOAD_SIZE];

    /// The structure held in union bytes `raw` (any bytes give a value).
    fn decode(raw: &[u8; PAYLOAD_SIZE]) -> Self;

    /// The structure held in the first `size_of::<Self>()` bytes of `bytes`,
    /// for instance one element of an array; `None` if `bytes` is shorter.
    fn decode_prefix(bytes: &[u8]) -> Option<Self> {
        let n = core::mem::size_of::<Self>();
        let mut raw = [0u8; PAYLOAD_SIZE];
        raw.get_mut(..n)?.copy_from_slice(bytes.get(..n)?);
        Some(Self::decode(&raw))
    }

    /// The first `size_of::<Self>()` bytes of [`Payload::encode`]: the
    /// structure alone, as an array element.
    fn encode_prefix(&self, out: &mut [u8]) -> Option<()> {
        let n = core::mem::size_of::<Self>();
        out.get_mut(..n)?.copy_from_slice(self.encode().get(..n)?);
        Some(())
    }
}

/// One field's little-endian bytes at the start of a slice. Implemented for
/// the integer types, arrays of fields and nested payload structures; the
/// slices it is given are always long enough (the callers are generated by
/// `impl_payload!`, whose structures are checked to fit the union).
pub(crate) trait Field: Sized {
    fn put(&self, out: &mut [u8]);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, out: &mut [u8]) {
                out[..core::mem::size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                let mut raw = [0u8; core::mem::size_of::<$t>()];
                raw.copy_from_slice(&bytes[..core::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64, i32, i64);

impl<T: Field, const N: usize> Field for [T; N] {
    fn put(&self, out: &mut [u8]) {
        let size = core::mem::size_of::<T>();
        for (i, item) in self.iter().enumerate() {
            item.put(&mut out[i * size..]);
        }
    }
    fn get(bytes: &[u8]) -> Self {
        let size = core::mem::size_of::<T>();
        core::array::from_fn(|i| T::get(&bytes[i * size..]))
    }
}

impl Field for crate::types::Mfn {
    fn put(&self, out: &mut [u8]) {
        self.0.put(out)
    }
    fn get(bytes: &[u8]) -> Self {
        Self(u64::get(bytes))
    }
}

impl Field for crate::types::Pfn {
    fn put(&self, out: &mut [u8]) {
        self.0.put(out)
    }
    fn get(bytes: &[u8]) -> Self {
        Self(u64::get(bytes))
    }
}

/// Implements [`Payload`] (and `Field`, for nesting) for a `repr(C)`
/// structure from the list of *all* its fields, padding fields included: the
/// decoder is a struct literal, so a field left out does not compile. The
/// structure must fit the 128-byte union, which is checked at compile time.
macro_rules! impl_payload {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl $crate::domctl::Payload for $ty {
            fn encode(&self) -> [u8; $crate::domctl::PAYLOAD_SIZE] {
                const {
                    assert!(core::mem::size_of::<$ty>() <= $crate::domctl::PAYLOAD_SIZE)
                };
                let mut out = [0u8; $crate::domctl::PAYLOAD_SIZE];
                $(
                    $crate::domctl::Field::put(
                        &self.$field,
                        &mut out[core::mem::offset_of!($ty, $field)..],
                    );
                )*
                out
            }

            fn decode(raw: &[u8; $crate::domctl::PAYLOAD_SIZE]) -> Self {
                Self {
                    $(
                        $field: $crate::domctl::Field::get(
                            &raw[core::mem::offset_of!($ty, $field)..],
                        ),
                    )*
                }
            }
        }

        impl $crate::domctl::Field for $ty {
            fn put(&self, out: &mut [u8]) {
                let n = core::mem::size_of::<$ty>();
                out[..n].copy_from_slice(&$crate::domctl::Payload::encode(self)[..n]);
            }
            fn get(bytes: &[u8]) -> Self {
                let n = core::mem::size_of::<$ty>();
                let mut raw = [0u8; $crate::domctl::PAYLOAD_SIZE];
                raw[..n].copy_from_slice(&bytes[..n]);
                $crate::domctl::Payload::decode(&raw)
            }
        }
    };
}
pub(crate) use impl_payload;

/// A command structure with nothing in it, for the commands that take no
/// argument (`destroydomain`, `pausedomain`, `unpausedomain`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NoArgument;

impl Payload for NoArgument {
    fn encode(&self) -> [u8; PAYLOAD_SIZE] {
        [0; PAYLOAD_SIZE]
    }
    fn decode(_raw: &[u8; PAYLOAD_SIZE]) -> Self {
        NoArgument
    }
}

// ---------------------------------------------------------------------------
// The request.
// ---------------------------------------------------------------------------

/// The argument of `domctl` (Xen's `struct xen_domctl`, 144 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
pub struct XenDomctl {
    /// IN: `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// IN: [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// IN: the target domain. IN/OUT for `createdomain`: the id wanted (0
    /// for any), then the id given.
    pub domain: DomId,
    /// Padding.
    pub _pad: [u16; 3],
    /// IN/OUT: the command's argument structure.
    pub u: PayloadBytes,
}

impl XenDomctl {
    /// A request for `cmd` on `domain` with argument `arg`, at the current
    /// interface version.
    pub fn new(cmd: u32, domain: DomId, arg: &impl Payload) -> Self {
        Self {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            _pad: [0; 3],
            u: PayloadBytes(arg.encode()),
        }
    }

    /// Whether `interface_version` is the one this ABI defines (the
    /// hypervisor answers `EACCES` otherwise).
    pub const fn version_matches(&self) -> bool {
        self.interface_version == XEN_DOMCTL_INTERFACE_VERSION
    }

    /// The union read as `T` (the structure `cmd` names).
    pub fn payload<T: Payload>(&self) -> T {
        T::decode(&self.u.0)
    }

    /// Replaces the union with `arg`.
    pub fn set_payload(&mut self, arg: &impl Payload) {
        self.u = PayloadBytes(arg.encode());
    }
}

// ---------------------------------------------------------------------------
// Xenia's own domctls (numbers from 0x5800, which Xen does not use).
// ---------------------------------------------------------------------------

/// Xenia: copy bytes from the caller into a frame of another domain
/// ([`DomctlXeniaWriteFrame`]). The domain must own the frame, and the frame
/// must be able to take the writable type (never a validated page table): the
/// builder writes page tables before it pins them, and a backend writes the
/// indexes of a shared ring. This replaces Xen's foreign mappings on those
/// paths: nothing of another domain is ever mapped into dom0, so destroying a
/// domain never waits for dom0 to unmap.
pub const XEN_DOMCTL_XENIA_WRITE_FRAME: u32 = 0x5800;
/// Xenia: copy bytes from a frame of another domain to the caller (the same
/// structure, [`DomctlXeniaWriteFrame`], with `buffer` the destination). The
/// domain must own the frame; any frame type may be read.
pub const XEN_DOMCTL_XENIA_READ_FRAME: u32 = 0x5801;

/// Xenia: sets a domain's guest mode before its first vCPU context is installed.
///
/// The payload is a `u32`, one of [`XENIA_GUEST_MODE_RING1`] or
/// [`XENIA_GUEST_MODE_XEN_PV`]. Privileged (dom0 only); `EINVAL` for any
/// other value, `EBUSY` once a vCPU of the domain was given a context
/// (`setvcpucontext`): the mode decides how that context is read.
pub const XEN_DOMCTL_XENIA_SET_GUEST_MODE: u32 = 0x5802;
/// Payload `u32` mode: Xenia's ring-1 ABI (the default).
pub const XENIA_GUEST_MODE_RING1: u32 = 0;
/// Payload `u32` mode: Xen's 64-bit PV ABI, the kernel in ring 3.
pub const XENIA_GUEST_MODE_XEN_PV: u32 = 1;

/// Argument of [`XEN_DOMCTL_XENIA_SET_GUEST_MODE`] (8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlXeniaGuestMode {
    /// IN: [`XENIA_GUEST_MODE_RING1`] or [`XENIA_GUEST_MODE_XEN_PV`].
    pub mode: u32,
    /// Padding, zero.
    pub _pad: u32,
}
impl_payload!(DomctlXeniaGuestMode { mode, _pad });

/// Argument of [`XEN_DOMCTL_HYPERCALL_INIT`] (Xen's `struct xen_domctl_hypercall_init`, 8
/// bytes).
///
/// Fills the page in machine frame `gmfn` of the domain (a frame it owns that can be
/// written: never a page table) with the hypercall stubs of its guest mode:
/// [`hypercall_page_image`](crate::hypercall::hypercall_page_image) (`int 0x82`) for
/// Xenia's ring-1 ABI, [`xen_pv_hypercall_page_image`](crate::hypercall::xen_pv_hypercall_page_image)
/// (`syscall`) for Xen's PV mode. `EINVAL` for the caller itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlHypercallInit {
    /// IN: the frame (a PV guest's frame numbers are machine frames).
    pub gmfn: u64,
}
impl_payload!(DomctlHypercallInit { gmfn });

/// Argument of [`XEN_DOMCTL_XENIA_WRITE_FRAME`] (24 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlXeniaWriteFrame {
    /// IN: machine frame of the target domain.
    pub mfn: u64,
    /// IN: byte offset in the frame.
    pub offset: u32,
    /// IN: bytes to copy; `offset + len` must not exceed the page.
    pub len: u32,
    /// IN: virtual address, in the caller, of the bytes.
    pub buffer: u64,
}
impl_payload!(DomctlXeniaWriteFrame {
    mfn,
    offset,
    len,
    buffer
});

// ---------------------------------------------------------------------------
// createdomain.
// ---------------------------------------------------------------------------

/// [`DomctlCreatedomain::flags`]: an HVM guest. Xenia runs PV guests only:
/// `EINVAL`.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// [`DomctlCreatedomain::flags`]: use hardware-assisted paging (HVM only):
/// `EINVAL`.
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// [`DomctlCreatedomain::flags`]: tboot memory integrity over S3: `EINVAL`.
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// [`DomctlCreatedomain::flags`]: no out-of-sync shadows (HVM only):
/// `EINVAL`.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// [`DomctlCreatedomain::flags`]: a xenstore domain. Xenia has no xenstore:
/// `EINVAL`.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// [`DomctlCreatedomain::flags`]: may use the IOMMU: `EINVAL`.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// [`DomctlCreatedomain::flags`]: nested virtualization: `EINVAL`.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// [`DomctlCreatedomain::flags`]: expose the vPMU: `EINVAL`.
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;

/// Mask of the grant-table version in [`DomctlCreatedomain::grant_opts`].
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xF;

/// Architecture-specific part of domain creation (Xen's x86 `struct
/// xen_arch_domainconfig`, 8 bytes). Both fields must be 0 for a PV domain
/// (`EINVAL` otherwise): Xenia emulates no devices for its guests.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct ArchDomainconfig {
    /// `XEN_X86_EMU_*` devices to emulate: must be 0.
    pub emulation_flags: u32,
    /// `XEN_X86_*` miscellaneous options: must be 0.
    pub misc_flags: u32,
}
impl_payload!(ArchDomainconfig {
    emulation_flags,
    misc_flags
});

/// Argument of [`XEN_DOMCTL_CREATEDOMAIN`] (Xen's `struct
/// xen_domctl_createdomain`, Xen 4.19 layout, 68 bytes). All IN.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlCreatedomain {
    /// Security label for XSM. Xenia has no XSM: ignored.
    pub ssidref: u32,
    /// The domain's UUID: stored, reported by `getdomaininfo`.
    pub handle: XenDomainHandle,
    /// `XEN_DOMCTL_CDF_*`. Every flag names something Xenia does not
    /// provide, so this must be 0 (`EINVAL` otherwise).
    pub flags: u32,
    /// `XEN_DOMCTL_IOMMU_*`: must be 0 (`EINVAL`).
    pub iommu_opts: u32,
    /// Number of vCPUs the domain will have, at least 1 (`EINVAL`
    /// otherwise, or when above the hypervisor's limit).
    /// [`XEN_DOMCTL_MAX_VCPUS`] must later name the same number.
    pub max_vcpus: u32,
    /// Highest event-channel port the domain may use; clamped to the 2-level
    /// limit ([`EVTCHN_2L_NR_CHANNELS`](crate::event::EVTCHN_2L_NR_CHANNELS)
    /// - 1). 0 leaves the domain unable to allocate ports, as on Xen.
    pub max_evtchn_port: u32,
    /// Most grant-table frames, or negative for the hypervisor's default.
    pub max_grant_frames: i32,
    /// Most maptrack frames, or negative for the hypervisor's default.
    pub max_maptrack_frames: i32,
    /// Grant options: the low 4 bits are the highest grant-table version the
    /// domain may use; Xenia has version 1 only, so 0 (default) or 1 are
    /// accepted, anything else is `EINVAL`.
    pub grant_opts: u32,
    /// Alternate-p2m options (HVM only): must be 0 (`EINVAL`).
    pub altp2m_opts: u32,
    /// Per-vCPU trace buffer size (HVM only): must be 0 (`EINVAL`).
    pub vmtrace_size: u32,
    /// CPU pool: must be 0, the only pool (`ENOENT` otherwise).
    pub cpupool_id: u32,
    /// Architecture-specific options: must be zero.
    pub arch: ArchDomainconfig,
}
impl_payload!(DomctlCreatedomain {
    ssidref,
    handle,
    flags,
    iommu_opts,
    max_vcpus,
    max_evtchn_port,
    max_grant_frames,
    max_maptrack_frames,
    grant_opts,
    altp2m_opts,
    vmtrace_size,
    cpupool_id,
    arch,
});

// ---------------------------------------------------------------------------
// getdomaininfo.
// ---------------------------------------------------------------------------

/// [`DomctlGetdomaininfo::flags`]: the domain is being destroyed.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// [`DomctlGetdomaininfo::flags`]: an HVM guest (never under Xenia).
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// [`DomctlGetdomaininfo::flags`]: the guest has shut down; the reason is in
/// the shutdown-code bits ([`DomctlGetdomaininfo::shutdown_reason`]).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// [`DomctlGetdomaininfo::flags`]: paused by the toolstack.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// [`DomctlGetdomaininfo::flags`]: every vCPU is blocked waiting for an
/// event.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// [`DomctlGetdomaininfo::flags`]: some vCPU is running on a pCPU now.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// [`DomctlGetdomaininfo::flags`]: being debugged.
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// [`DomctlGetdomaininfo::flags`]: a xenstore domain (never under Xenia).
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// [`DomctlGetdomaininfo::flags`]: uses hardware-assisted paging (never
/// under Xenia).
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// Mask of the shutdown code, after shifting by
/// [`XEN_DOMINF_SHUTDOWNSHIFT`].
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
/// Position of the shutdown code (`SHUTDOWN_*`) in the flags.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// [`DomctlGetdomaininfo::max_vcpu_id`] of a domain without vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

/// Argument of [`XEN_DOMCTL_GETDOMAININFO`], and the record of
/// `XEN_SYSCTL_getdomaininfolist` (Xen's `struct xen_domctl_getdomaininfo`,
/// 112 bytes). All OUT.
///
/// `getdomaininfo` reports exactly the domain named in
/// [`XenDomctl::domain`] (`ESRCH` if there is none); to walk all domains use
/// `XEN_SYSCTL_getdomaininfolist`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlGetdomaininfo {
    /// The domain's id (also echoed in [`XenDomctl::domain`]).
    pub domain: DomId,
    /// Padding.
    pub pad1: u16,
    /// `XEN_DOMINF_*`, with the shutdown code in bits 16 to 23.
    pub flags: u32,
    /// Pages the domain owns (its pseudo-physical frames; not the
    /// `shared_info` frame).
    pub tot_pages: u64,
    /// Most pages it may own ([`XEN_DOMCTL_MAX_MEM`]).
    pub max_pages: u64,
    /// Pages claimed but not yet allocated: always 0 under Xenia.
    pub outstanding_pages: u64,
    /// Pages shared copy-on-write: always 0 under Xenia.
    pub shr_pages: u64,
    /// Pages paged out: always 0 under Xenia.
    pub paged_pages: u64,
    /// Machine frame of the domain's `shared_info` page (a GMFN in Xen's
    /// words; for a PV domain the machine frame).
    pub shared_info_frame: u64,
    /// CPU time the domain's vCPUs have consumed, in nanoseconds.
    pub cpu_time: u64,
    /// vCPUs currently up.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id, or [`XEN_INVALID_MAX_VCPU_ID`] with no vCPUs.
    pub max_vcpu_id: u32,
    /// XSM label: 0 under Xenia.
    pub ssidref: u32,
    /// The UUID given at creation.
    pub handle: XenDomainHandle,
    /// CPU pool: 0 under Xenia.
    pub cpupool: u32,
    /// Width of the guest-physical address space: 0 for a PV domain.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// The architecture options given at creation.
    pub arch_config: ArchDomainconfig,
}
impl_payload!(DomctlGetdomaininfo {
    domain,
    pad1,
    flags,
    tot_pages,
    max_pages,
    outstanding_pages,
    shr_pages,
    paged_pages,
    shared_info_frame,
    cpu_time,
    nr_online_vcpus,
    max_vcpu_id,
    ssidref,
    handle,
    cpupool,
    gpaddr_bits,
    pad2,
    arch_config,
});

impl DomctlGetdomaininfo {
    /// The guest's shutdown reason (`SHUTDOWN_*`), if it has shut down.
    pub const fn shutdown_reason(&self) -> Option<u32> {
        if self.flags & XEN_DOMINF_SHUTDOWN != 0 {
            Some((self.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK)
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------
// max_mem, vcpucontext, getvcpuinfo, max_vcpus.
// ---------------------------------------------------------------------------

/// Argument of [`XEN_DOMCTL_MAX_MEM`] (Xen's `struct xen_domctl_max_mem`,
/// 8 bytes).
///
/// Sets `max_pages` to `max_memkb / 4` (whole pages, rounded down). `EINVAL`
/// if that is below the pages the domain already owns.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlMaxMem {
    /// IN: the limit in KiB.
    pub max_memkb: u64,
}
impl_payload!(DomctlMaxMem { max_memkb });

/// Argument of [`XEN_DOMCTL_SETVCPUCONTEXT`] and
/// [`XEN_DOMCTL_GETVCPUCONTEXT`] (Xen's `struct xen_domctl_vcpucontext`,
/// 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlVcpucontext {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// Padding.
    pub _pad: u32,
    /// IN: virtual address, in the caller, of a
    /// [`VcpuGuestContext`](crate::vcpu_context::VcpuGuestContext) that
    /// `setvcpucontext` reads and `getvcpucontext` writes.
    pub ctxt: u64,
}
impl_payload!(DomctlVcpucontext { vcpu, _pad, ctxt });

/// Argument of [`XEN_DOMCTL_GETVCPUINFO`] (Xen's `struct
/// xen_domctl_getvcpuinfo`, 24 bytes). `EINVAL` if the vCPU does not exist.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlGetvcpuinfo {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: 1 if the vCPU is up.
    pub online: u8,
    /// OUT: 1 if it is blocked waiting for an event.
    pub blocked: u8,
    /// OUT: 1 if it is running on a pCPU now.
    pub running: u8,
    /// Padding.
    pub _pad: u8,
    /// OUT: CPU time it has consumed, in nanoseconds.
    pub cpu_time: u64,
    /// OUT: the pCPU it runs or last ran on.
    pub cpu: u32,
    /// Padding.
    pub _pad2: u32,
}
impl_payload!(DomctlGetvcpuinfo {
    vcpu,
    online,
    blocked,
    running,
    _pad,
    cpu_time,
    cpu,
    _pad2,
});

/// [`DomctlVcpuaffinity::flags`]: the hard affinity, where the vCPU may run
/// (Xen's `XEN_VCPUAFFINITY_HARD`).
pub const XEN_VCPUAFFINITY_HARD: u32 = 1 << 0;
/// [`DomctlVcpuaffinity::flags`]: the soft affinity, where it prefers to run
/// (Xen's `XEN_VCPUAFFINITY_SOFT`). Recorded, not used by Xenia's scheduler.
pub const XEN_VCPUAFFINITY_SOFT: u32 = 1 << 1;
/// [`DomctlVcpuaffinity::flags`]: undo a `SCHEDOP_pin_override` (Xen's
/// `XEN_VCPUAFFINITY_FORCE`); accepted and ignored.
pub const XEN_VCPUAFFINITY_FORCE: u32 = 1 << 2;

/// Most bits a [`XenctlBitmap`] may hold: one page's worth. Xen has no fixed
/// bound; the toolstack sizes its maps by `max_cpu_id + 1`.
pub const XENCTL_BITMAP_MAX_BITS: u32 = 4096 * 8;

/// A bitmap in the caller's memory (Xen's `struct xenctl_bitmap`, 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct XenctlBitmap {
    /// IN: virtual address, in the caller, of `(nr_bits + 7) / 8` bytes.
    pub bitmap: u64,
    /// IN: how many bits the bitmap holds.
    pub nr_bits: u32,
    /// Padding.
    pub _pad: u32,
}
impl_payload!(XenctlBitmap {
    bitmap,
    nr_bits,
    _pad
});

/// Argument of [`XEN_DOMCTL_SETVCPUAFFINITY`] and
/// [`XEN_DOMCTL_GETVCPUAFFINITY`] (Xen's `struct xen_domctl_vcpuaffinity`, 40
/// bytes). The module docs have the rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlVcpuaffinity {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// IN: [`XEN_VCPUAFFINITY_HARD`], [`XEN_VCPUAFFINITY_SOFT`] (either or
    /// both), [`XEN_VCPUAFFINITY_FORCE`].
    pub flags: u32,
    /// IN/OUT: the hard mask (the bitmap's contents are IN for set, OUT for
    /// both).
    pub cpumap_hard: XenctlBitmap,
    /// IN/OUT: the soft mask, likewise.
    pub cpumap_soft: XenctlBitmap,
}
impl_payload!(DomctlVcpuaffinity {
    vcpu,
    flags,
    cpumap_hard,
    cpumap_soft
});

/// Argument of [`XEN_DOMCTL_MAX_VCPUS`] (Xen's `struct
/// xen_domctl_max_vcpus`, 4 bytes).
///
/// Creates vCPUs `0..max`, all down: each comes up when its context is set
/// with `VGCF_ONLINE` (or, later, through `VCPUOP_up` from the guest). As on
/// Xen, `max` must equal [`DomctlCreatedomain::max_vcpus`] (`EINVAL`
/// otherwise); repeating the call with the same value does nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlMaxVcpus {
    /// IN: number of vCPUs.
    pub max: u32,
}
impl_payload!(DomctlMaxVcpus { max });

// ---------------------------------------------------------------------------
// scheduler_op.
// ---------------------------------------------------------------------------

/// Scheduler id: the credit scheduler, Xenia's only one.
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// Scheduler id: credit2 (not in Xenia).
pub const XEN_SCHEDULER_CREDIT2: u32 = 6;
/// Scheduler id: ARINC 653 (not in Xenia).
pub const XEN_SCHEDULER_ARINC653: u32 = 7;
/// Scheduler id: RTDS (not in Xenia).
pub const XEN_SCHEDULER_RTDS: u32 = 8;
/// Scheduler id: null (not in Xenia).
pub const XEN_SCHEDULER_NULL: u32 = 9;

/// [`DomctlSchedulerOp::cmd`]: set the domain's parameters.
pub const XEN_DOMCTL_SCHEDOP_PUTINFO: u32 = 0;
/// [`DomctlSchedulerOp::cmd`]: get the domain's parameters.
pub const XEN_DOMCTL_SCHEDOP_GETINFO: u32 = 1;
/// [`DomctlSchedulerOp::cmd`]: set per-vCPU parameters (`EINVAL` for the
/// credit scheduler, as on Xen).
pub const XEN_DOMCTL_SCHEDOP_PUTVCPUINFO: u32 = 2;
/// [`DomctlSchedulerOp::cmd`]: get per-vCPU parameters (`EINVAL` for the
/// credit scheduler).
pub const XEN_DOMCTL_SCHEDOP_GETVCPUINFO: u32 = 3;

/// The credit scheduler's weight when none is given (DESIGN.md §5).
pub const CREDIT_DEFAULT_WEIGHT: u16 = 256;
/// [`DomctlSchedCredit::cap`] in a `putinfo`: leave the cap as it is.
pub const CREDIT_CAP_UNCHANGED: u16 = u16::MAX;

/// Credit-scheduler parameters of a domain (Xen's `struct
/// xen_domctl_sched_credit`, 4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlSchedCredit {
    /// Relative share of CPU time, 1 to 65535 ([`CREDIT_DEFAULT_WEIGHT`] by
    /// default). In a `putinfo`, 0 leaves the weight unchanged.
    pub weight: u16,
    /// Most CPU time, in percent of one pCPU; 0 is no cap. In a `putinfo`,
    /// [`CREDIT_CAP_UNCHANGED`] leaves the cap unchanged, and a cap above
    /// 100 times the domain's vCPU count is `EINVAL`.
    pub cap: u16,
}
impl_payload!(DomctlSchedCredit { weight, cap });

/// Argument of [`XEN_DOMCTL_SCHEDULER_OP`] (Xen's `struct
/// xen_domctl_scheduler_op`, 24 bytes).
///
/// `sched_id` must be [`XEN_SCHEDULER_CREDIT`] (`EINVAL` otherwise);
/// `putinfo` sets the weight and cap in [`DomctlSchedulerOp::credit`],
/// `getinfo` writes them there.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct DomctlSchedulerOp {
    /// IN: `XEN_SCHEDULER_*`.
    pub sched_id: u32,
    /// IN: `XEN_DOMCTL_SCHEDOP_*`.
    pub cmd: u32,
    /// IN/OUT: Xen's per-scheduler union (16 bytes). For the credit
    /// scheduler its first 4 bytes are a [`DomctlSchedCredit`]; use the
    /// accessors.
    pub u: [u64; 2],
}
impl_payload!(DomctlSchedulerOp { sched_id, cmd, u });

impl DomctlSchedulerOp {
    /// A credit-scheduler request `cmd` carrying `credit`.
    pub fn credit(cmd: u32, credit: DomctlSchedCredit) -> Self {
        let mut op = Self {
            sched_id: XEN_SCHEDULER_CREDIT,
            cmd,
            u: [0; 2],
        };
        op.set_credit_params(credit);
        op
    }

    /// The union read as credit-scheduler parameters.
    pub const fn credit_params(&self) -> DomctlSchedCredit {
        DomctlSchedCredit {
            weight: self.u[0] as u16,
            cap: (self.u[0] >> 16) as u16,
        }
    }

    /// Writes credit-scheduler parameters into the union.
    pub fn set_credit_params(&mut self, credit: DomctlSchedCredit) {
        self.u = [u64::from(credit.weight) | u64::from(credit.cap) << 16, 0];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen() {
        let xen = [
            (XEN_DOMCTL_CREATEDOMAIN, 1),
            (XEN_DOMCTL_DESTROYDOMAIN, 2),
            (XEN_DOMCTL_PAUSEDOMAIN, 3),
            (XEN_DOMCTL_UNPAUSEDOMAIN, 4),
            (XEN_DOMCTL_GETDOMAININFO, 5),
            (XEN_DOMCTL_SETVCPUAFFINITY, 9),
            (XEN_DOMCTL_SHADOW_OP, 10),
            (XEN_DOMCTL_MAX_MEM, 11),
            (XEN_DOMCTL_SETVCPUCONTEXT, 12),
            (XEN_DOMCTL_GETVCPUCONTEXT, 13),
            (XEN_DOMCTL_GETVCPUINFO, 14),
            (XEN_DOMCTL_MAX_VCPUS, 15),
            (XEN_DOMCTL_SCHEDULER_OP, 16),
            (XEN_DOMCTL_SETDOMAINHANDLE, 17),
            (XEN_DOMCTL_SETDEBUGGING, 18),
            (XEN_DOMCTL_IRQ_PERMISSION, 19),
            (XEN_DOMCTL_IOMEM_PERMISSION, 20),
            (XEN_DOMCTL_IOPORT_PERMISSION, 21),
            (XEN_DOMCTL_HYPERCALL_INIT, 22),
            (XEN_DOMCTL_SOFT_RESET_CONT, 23),
            (XEN_DOMCTL_SETTIMEOFFSET, 24),
            (XEN_DOMCTL_GETVCPUAFFINITY, 25),
            (XEN_DOMCTL_RESUMEDOMAIN, 27),
            (XEN_DOMCTL_SENDTRIGGER, 28),
            (XEN_DOMCTL_SUBSCRIBE, 29),
            (XEN_DOMCTL_SET_ADDRESS_SIZE, 35),
            (XEN_DOMCTL_GET_ADDRESS_SIZE, 36),
            (XEN_DOMCTL_SET_TARGET, 46),
            (XEN_DOMCTL_GETPAGEFRAMEINFO3, 61),
            (XEN_DOMCTL_SET_VIRQ_HANDLER, 66),
            (XEN_DOMCTL_SOFT_RESET, 79),
        ];
        for (ours, theirs) in xen {
            assert_eq!(ours, theirs);
        }
        assert_eq!(
            (
                XEN_VCPUAFFINITY_HARD,
                XEN_VCPUAFFINITY_SOFT,
                XEN_VCPUAFFINITY_FORCE
            ),
            (1, 2, 4)
        );
        assert_eq!(core::mem::size_of::<XenctlBitmap>(), 16);
        assert_eq!(core::mem::size_of::<DomctlVcpuaffinity>(), 40);
        assert_eq!(core::mem::offset_of!(DomctlVcpuaffinity, cpumap_hard), 8);
        assert_eq!(core::mem::offset_of!(DomctlVcpuaffinity, cpumap_soft), 24);
        let a = DomctlVcpuaffinity {
            vcpu: 3,
            flags: 1,
            cpumap_hard: XenctlBitmap {
                bitmap: 0x1234,
                nr_bits: 8,
                _pad: 0,
            },
            cpumap_soft: XenctlBitmap {
                bitmap: 0x5678,
                nr_bits: 16,
                _pad: 0,
            },
        };
        let raw = a.encode();
        assert_eq!(&raw[8..10], &[0x34, 0x12]);
        assert_eq!(raw[16], 8);
        assert_eq!(&raw[24..26], &[0x78, 0x56]);
        assert_eq!(raw[32], 16);
        assert_eq!(DomctlVcpuaffinity::decode(&raw), a);
        let flags = [
            (XEN_DOMCTL_CDF_HVM, 1),
            (XEN_DOMCTL_CDF_HAP, 2),
            (XEN_DOMCTL_CDF_S3_INTEGRITY, 4),
            (XEN_DOMCTL_CDF_OOS_OFF, 8),
            (XEN_DOMCTL_CDF_XS_DOMAIN, 16),
            (XEN_DOMCTL_CDF_IOMMU, 32),
            (XEN_DOMCTL_CDF_NESTED_VIRT, 64),
            (XEN_DOMCTL_CDF_VPMU, 128),
            (XEN_DOMINF_DYING, 1),
            (XEN_DOMINF_HVM_GUEST, 2),
            (XEN_DOMINF_SHUTDOWN, 4),
            (XEN_DOMINF_PAUSED, 8),
            (XEN_DOMINF_BLOCKED, 16),
            (XEN_DOMINF_RUNNING, 32),
            (XEN_DOMINF_DEBUGGED, 64),
            (XEN_DOMINF_XS_DOMAIN, 128),
            (XEN_DOMINF_HAP, 256),
            (XEN_DOMINF_SHUTDOWNMASK, 255),
            (XEN_DOMINF_SHUTDOWNSHIFT, 16),
            (XEN_SCHEDULER_CREDIT, 5),
            (XEN_SCHEDULER_CREDIT2, 6),
            (XEN_SCHEDULER_ARINC653, 7),
            (XEN_SCHEDULER_RTDS, 8),
            (XEN_SCHEDULER_NULL, 9),
            (XEN_DOMCTL_SCHEDOP_PUTINFO, 0),
            (XEN_DOMCTL_SCHEDOP_GETINFO, 1),
            (XEN_DOMCTL_SCHEDOP_PUTVCPUINFO, 2),
            (XEN_DOMCTL_SCHEDOP_GETVCPUINFO, 3),
            (XEN_DOMCTL_GRANT_VERSION_MASK, 15),
        ];
        for (ours, theirs) in flags {
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn layouts_match_xen() {
        assert_layout!(XenDomctl, 144, 8, {
            cmd: 0,
            interface_version: 4,
            domain: 8,
            _pad: 10,
            u: 16,
        });
        assert_layout!(PayloadBytes, 128, 8, {});
        assert_layout!(ArchDomainconfig, 8, 4, { emulation_flags: 0, misc_flags: 4 });
        assert_layout!(DomctlCreatedomain, 68, 4, {
            ssidref: 0,
            handle: 4,
            flags: 20,
            iommu_opts: 24,
            max_vcpus: 28,
            max_evtchn_port: 32,
            max_grant_frames: 36,
            max_maptrack_frames: 40,
            grant_opts: 44,
            altp2m_opts: 48,
            vmtrace_size: 52,
            cpupool_id: 56,
            arch: 60,
        });
        assert_layout!(DomctlGetdomaininfo, 112, 8, {
            domain: 0,
            pad1: 2,
            flags: 4,
            tot_pages: 8,
            max_pages: 16,
            outstanding_pages: 24,
            shr_pages: 32,
            paged_pages: 40,
            shared_info_frame: 48,
            cpu_time: 56,
            nr_online_vcpus: 64,
            max_vcpu_id: 68,
            ssidref: 72,
            handle: 76,
            cpupool: 92,
            gpaddr_bits: 96,
            pad2: 97,
            arch_config: 104,
        });
        assert_layout!(DomctlMaxMem, 8, 8, { max_memkb: 0 });
        assert_layout!(DomctlVcpucontext, 16, 8, { vcpu: 0, ctxt: 8 });
        assert_layout!(DomctlGetvcpuinfo, 24, 8, {
            vcpu: 0,
            online: 4,
            blocked: 5,
            running: 6,
            cpu_time: 8,
            cpu: 16,
        });
        assert_layout!(DomctlMaxVcpus, 4, 4, { max: 0 });
        assert_layout!(DomctlSchedCredit, 4, 2, { weight: 0, cap: 2 });
        assert_layout!(DomctlSchedulerOp, 24, 8, { sched_id: 0, cmd: 4, u: 8 });
    }

    #[test]
    fn version_is_xenias_own() {
        assert_eq!(XEN_DOMCTL_INTERFACE_VERSION >> 16, 0x5800);
        let d = XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, 3, &NoArgument);
        assert!(d.version_matches());
        let xen_tool = XenDomctl {
            interface_version: 0x17,
            ..d
        };
        assert!(!xen_tool.version_matches());
    }

    /// Reads a little-endian integer of `N` bytes at `off`.
    fn le<const N: usize>(bytes: &[u8], off: usize) -> u64 {
        let mut v = 0u64;
        for i in (0..N).rev() {
            v = v << 8 | u64::from(bytes[off + i]);
        }
        v
    }

    #[test]
    fn createdomain_encodes_at_xens_offsets() {
        let c = DomctlCreatedomain {
            ssidref: 0x1111_1111,
            handle: [0xA5; 16],
            flags: 0x2222_2222,
            iommu_opts: 0x3333_3333,
            max_vcpus: 4,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: -2,
            grant_opts: 1,
            altp2m_opts: 0x4444_4444,
            vmtrace_size: 0x5555_5555,
            cpupool_id: 0x6666_6666,
            arch: ArchDomainconfig {
                emulation_flags: 0x7777_7777,
                misc_flags: 0x8888_8888,
            },
        };
        let d = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0, &c);
        let b = &d.u.0;
        assert_eq!(le::<4>(b, 0), 0x1111_1111);
        assert_eq!(&b[4..20], &[0xA5; 16]);
        assert_eq!(le::<4>(b, 20), 0x2222_2222);
        assert_eq!(le::<4>(b, 28), 4);
        assert_eq!(le::<4>(b, 32), 1023);
        assert_eq!(le::<4>(b, 36), 0xFFFF_FFFF);
        assert_eq!(le::<4>(b, 40), 0xFFFF_FFFE);
        assert_eq!(le::<4>(b, 44), 1);
        assert_eq!(le::<4>(b, 56), 0x6666_6666);
        assert_eq!(le::<4>(b, 60), 0x7777_7777);
        assert_eq!(le::<4>(b, 64), 0x8888_8888);
        assert!(
            b[68..].iter().all(|&x| x == 0),
            "the rest of the union is zero"
        );
        assert_eq!(d.payload::<DomctlCreatedomain>(), c);
    }

    #[test]
    fn getdomaininfo_round_trips_and_decodes_flags() {
        let info = DomctlGetdomaininfo {
            domain: 7,
            flags: XEN_DOMINF_SHUTDOWN | XEN_DOMINF_PAUSED | 3 << XEN_DOMINF_SHUTDOWNSHIFT,
            tot_pages: 4096,
            max_pages: 8192,
            shared_info_frame: 0x1234,
            cpu_time: 1_500_000_000,
            nr_online_vcpus: 2,
            max_vcpu_id: 1,
            handle: [9; 16],
            gpaddr_bits: 0,
            ..Default::default()
        };
        let raw = info.encode();
        assert_eq!(le::<2>(&raw, 0), 7);
        assert_eq!(le::<8>(&raw, 8), 4096);
        assert_eq!(le::<8>(&raw, 16), 8192);
        assert_eq!(le::<8>(&raw, 48), 0x1234);
        assert_eq!(le::<8>(&raw, 56), 1_500_000_000);
        assert_eq!(le::<4>(&raw, 64), 2);
        assert_eq!(&raw[76..92], &[9; 16]);
        assert_eq!(DomctlGetdomaininfo::decode(&raw), info);
        assert_eq!(info.shutdown_reason(), Some(3));
        assert_eq!(DomctlGetdomaininfo::default().shutdown_reason(), None);

        // As an array element: 112 bytes, no more.
        let mut array = [0u8; 224];
        info.encode_prefix(&mut array[112..]).unwrap();
        assert_eq!(
            DomctlGetdomaininfo::decode_prefix(&array[112..]),
            Some(info)
        );
        assert_eq!(DomctlGetdomaininfo::decode_prefix(&array[..111]), None);
        assert_eq!(info.encode_prefix(&mut [0u8; 100]), None);
    }

    #[test]
    fn small_payloads() {
        let m = DomctlMaxMem {
            max_memkb: 0x1_0000_0000,
        };
        assert_eq!(le::<8>(&m.encode(), 0), 0x1_0000_0000);
        let v = DomctlVcpucontext {
            vcpu: 3,
            _pad: 0,
            ctxt: 0xFFFF_8880_0000_1000,
        };
        assert_eq!(le::<4>(&v.encode(), 0), 3);
        assert_eq!(le::<8>(&v.encode(), 8), 0xFFFF_8880_0000_1000);
        let i = DomctlGetvcpuinfo {
            vcpu: 1,
            online: 1,
            blocked: 0,
            running: 1,
            cpu_time: 42,
            cpu: 2,
            ..Default::default()
        };
        let raw = i.encode();
        assert_eq!((raw[4], raw[5], raw[6]), (1, 0, 1));
        assert_eq!(le::<8>(&raw, 8), 42);
        assert_eq!(le::<4>(&raw, 16), 2);
        assert_eq!(DomctlGetvcpuinfo::decode(&raw), i);
        assert_eq!(le::<4>(&DomctlMaxVcpus { max: 8 }.encode(), 0), 8);
        assert_eq!(NoArgument.encode(), [0; PAYLOAD_SIZE]);
    }

    #[test]
    fn scheduler_op_carries_credit_parameters() {
        let op = DomctlSchedulerOp::credit(
            XEN_DOMCTL_SCHEDOP_PUTINFO,
            DomctlSchedCredit {
                weight: 512,
                cap: 50,
            },
        );
        let raw = op.encode();
        assert_eq!(le::<4>(&raw, 0), 5);
        assert_eq!(le::<4>(&raw, 4), 0);
        assert_eq!(le::<2>(&raw, 8), 512, "credit.weight at the union's start");
        assert_eq!(le::<2>(&raw, 10), 50, "credit.cap after it");
        let back = DomctlSchedulerOp::decode(&raw);
        assert_eq!(
            back.credit_params(),
            DomctlSchedCredit {
                weight: 512,
                cap: 50
            }
        );
        let mut d = XenDomctl::new(XEN_DOMCTL_SCHEDULER_OP, 4, &op);
        assert_eq!(d.payload::<DomctlSchedulerOp>(), op);
        d.set_payload(&NoArgument);
        assert_eq!(d.u, PayloadBytes::default());
    }

    #[test]
    fn any_bytes_decode() {
        let raw = [0xFF; PAYLOAD_SIZE];
        let info = DomctlGetdomaininfo::decode(&raw);
        assert_eq!(info.domain, 0xFFFF);
        assert_eq!(info.max_vcpu_id, XEN_INVALID_MAX_VCPU_ID);
        let c = DomctlCreatedomain::decode(&raw);
        assert_eq!(c.max_grant_frames, -1);
        let _ = DomctlSchedulerOp::decode(&raw).credit_params();
    }
}
