//! The porting guide, part two: building a kernel image, the errors of the
//! memory hypercalls, a ring-3 address space step by step, events and the
//! `iret` hypercall, what `SS` holds when, SMP guests, and disks.
//!
//! The [crate docs](crate) give the overview (start of day, entry state,
//! hypercalls, exceptions, events); this module holds the recipes a porting
//! trial found missing. It contains no code, only documentation and
//! compiled examples.
//!
//! # Building a kernel image
//!
//! ## What the target gives
//!
//! Build for Rust's `x86_64-unknown-none` target. It already provides what a
//! ring-1 kernel needs from the compiler: `no_std` with `core` and `alloc`,
//! the `kernel` code model (code and statics in the top 2 GiB of the address
//! space, addressed with sign-extended 32-bit displacements), the red zone
//! disabled (exception and event frames are pushed just below the
//! interrupted `rsp`, see [`trap`](crate::trap)), soft-float (the compiler
//! emits no x87/SSE code, so only code that asks for it touches the FPU),
//! `panic = "abort"`, inline stack probes, and `rust-lld` as the linker.
//!
//! What it does *not* give: by default it compiles position-independent code
//! and links a *static PIE* (`ET_DYN`). Both builders accept only `ET_EXEC`
//! images loaded at their link addresses (the ELF rules below), and nothing
//! relocates a kernel before its first instruction. So:
//!
//! * compile with `-C relocation-model=static`: absolute addresses, no GOT;
//! * link with `--no-pie` and your own linker script (`-T`), and with
//!   `-z max-page-size=4096` so that segments are aligned to 4 KiB pages, not
//!   to the linker's default 2 MiB.
//!
//! In the kernel's crate (`.cargo/config.toml` of the workspace, or
//! `RUSTFLAGS`):
//!
//! ```toml
//! [target.x86_64-unknown-none]
//! rustflags = ["-C", "relocation-model=static"]
//! ```
//!
//! and a `build.rs` that passes the link arguments only when building for
//! the bare-metal target (a host build of the workspace then needs nothing):
//!
//! ```no_run
//! // The body of `fn main` in the build.rs of a kernel crate whose binary is
//! // called `mykernel`.
//! let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
//! let script = std::path::Path::new(&dir).join("linker.ld");
//! println!("cargo:rerun-if-changed={}", script.display());
//! if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
//!     println!("cargo:rustc-link-arg-bin=mykernel=-T{}", script.display());
//!     println!("cargo:rustc-link-arg-bin=mykernel=--no-pie");
//!     println!("cargo:rustc-link-arg-bin=mykernel=-zmax-page-size=4096");
//! }
//! ```
//!
//! (Xenia's own guests link with `--no-pie` and keep `*(.got .got.*)` in
//! their data segment instead of passing `relocation-model=static`: the
//! linker then fills the GOT with final addresses. Either works; the static
//! relocation model is the simpler one to reason about.)
//!
//! ## The linker script
//!
//! Three `PT_LOAD` segments (code, read-only data, data and bss) and one
//! `PT_NOTE` segment over the Xen notes, linked at `VIRT_BASE`, each
//! section's load (physical) address its virtual address minus `VIRT_BASE`.
//! The complete, commented version is the one the example guest `hello`
//! links with (its `build.rs` names it); its shape:
//!
//! ```text
//! ENTRY(_start)
//! VIRT_BASE = 0xFFFFFFFF80000000;   /* pseudo-physical 0; PML4 slot 511 */
//!
//! PHDRS
//! {
//!     text   PT_LOAD FLAGS(5);    /* R X */
//!     rodata PT_LOAD FLAGS(4);    /* R   */
//!     data   PT_LOAD FLAGS(6);    /* R W */
//!     note   PT_NOTE FLAGS(4);    /* the Xen notes */
//! }
//!
//! SECTIONS
//! {
//!     . = VIRT_BASE;
//!     .text : AT(ADDR(.text) - VIRT_BASE) {
//!         KEEP(*(.text.hypercall_page))  /* page aligned: first in .text */
//!         KEEP(*(.text.entry))
//!         *(.text .text.*)
//!     } :text
//!     . = ALIGN(4096);
//!     .rodata : AT(ADDR(.rodata) - VIRT_BASE) { *(.rodata .rodata.*) } :rodata
//!     .note.Xen : AT(ADDR(.note.Xen) - VIRT_BASE) { KEEP(*(.note.Xen)) } :rodata :note
//!     . = ALIGN(4096);
//!     .data : AT(ADDR(.data) - VIRT_BASE) { *(.data .data.*) } :data
//!     .bss : AT(ADDR(.bss) - VIRT_BASE) { *(.bss .bss.*) *(COMMON) } :data
//!     /DISCARD/ : { *(.eh_frame .eh_frame_hdr .comment .note.GNU-stack) }
//! }
//! ```
//!
//! The notes themselves ([`elfnote`](crate::elfnote): at least
//! `XEN_ELFNOTE_ENTRY`, and `XEN_ELFNOTE_VIRT_BASE` and
//! `XEN_ELFNOTE_HYPERCALL_PAGE` if used) are emitted from the kernel's code
//! into `.note.Xen`, as the [worked example](crate#a-worked-example) does.
//!
//! ## The rules the builders enforce
//!
//! Both builders (the hypervisor for dom0, the toolstack for every other
//! domain) run the same checks (`xenia-pvboot`'s `elf` and `layout`
//! modules); a kernel that breaks one is refused with a message naming it:
//!
//! * ELF64, little-endian, `EM_X86_64`, `ET_EXEC`, at most 64 program
//!   headers.
//! * Every non-empty `PT_LOAD` segment is placed at its **`p_vaddr`**. Its
//!   `p_paddr` is not used, and `XEN_ELFNOTE_PADDR_OFFSET` is checked for
//!   form only: Xen places segments at `p_paddr - PADDR_OFFSET + VIRT_BASE`,
//!   which is the same address for an image linked as above (`p_paddr =
//!   p_vaddr - VIRT_BASE`, `PADDR_OFFSET` 0), so keep that relation for
//!   images that must also boot on Xen.
//! * Segments lie inside the file, have `p_filesz <= p_memsz`, have
//!   `p_vaddr` and `p_offset` equal modulo 4096, do not overlap, are
//!   canonical and stay outside the hypervisor's range
//!   [`HYPERVISOR_VIRT_START`](crate::layout::HYPERVISOR_VIRT_START)..[`HYPERVISOR_VIRT_END`](crate::layout::HYPERVISOR_VIRT_END).
//!   The image spans at most 1 GiB from its first page to the end of its
//!   last segment.
//! * The entry point (`XEN_ELFNOTE_ENTRY`, else `e_entry`) lies in a segment
//!   with `PF_X`.
//! * `VIRT_BASE` (`XEN_ELFNOTE_VIRT_BASE`), if given, is page aligned,
//!   canonical, outside the hypervisor's range and at or below the lowest
//!   segment. Pseudo-physical frame 0 is mapped there; without the note,
//!   at the lowest segment's page. Pseudo-physical frame `p` of the bootstrap
//!   region is then at `VIRT_BASE + p * 4096` (the region, and the memory
//!   below the first segment, are the domain's first frames).
//! * `XEN_ELFNOTE_HYPERCALL_PAGE`, if given, is page aligned and inside a
//!   segment.
//! * Notes are read from `PT_NOTE` segments; `SHT_NOTE` sections are read
//!   only if no segment held a Xen note. A malformed note is an error.
//! * Every feature the kernel marks required (`!name` in
//!   `XEN_ELFNOTE_FEATURES`) must be one Xenia provides
//!   (`pae_pgdir_above_4gb`, `dom0`).
//! * The whole start-of-day region ([crate docs](crate#start-of-day-memory),
//!   from `VIRT_BASE` to the 4 MiB boundary after the padding) must be
//!   canonical, outside the hypervisor's range and no larger than the
//!   domain's memory.
//!
//! # Errno tables
//!
//! The two rules of [`hypercall`](crate::hypercall#errors) hold (unknown
//! command `ENOSYS`; unusable guest buffer `EFAULT`, before the call acts).
//! The tables give the rest, as the hypervisor implements it
//! (`hypervisor/src/guest/mmu.rs` and the frame table,
//! `hypervisor/core/src/mm/frame_table.rs`). For the batch calls the first
//! failing item ends the batch, earlier items stay done, and `*done` counts
//! them.
//!
//! **Why was it refused?** Boot the hypervisor with `loglvl=debug` and every
//! refused page-table update is logged with the entry and the rule it broke,
//! for example
//!
//! ```text
//! debug: d0: mmu_update refused (EINVAL): L4 entry 256 of frame 0x10c0 := 0x1487: L4 slots 256-271 belong to the hypervisor; ...
//! debug: d0: mmuext_op pin refused (EINVAL): frame 0x484 (now non-table): the table must be ...
//! ```
//!
//! ## Entry validation (all three page-table calls)
//!
//! Every new entry written into a page table in use (validated), and every
//! entry of a table being validated (pinned, made a base pointer, or linked
//! from a higher table), is checked; bits are those of [`pte`](crate::pte):
//!
//! | refusal | errno |
//! |---|---|
//! | present entry with a disallowed bit: `PWT`, `PCD`, bit 7 (`PAT`/`PS`), `G` above L1, bit 62 in L1, `NX` when the CPU has no NX, an address bit at or above the machine's physical-address width | `EINVAL` |
//! | L1 entry mapping a frame the domain does not own (another domain's, the hypervisor's, a free one), mapping writable a frame in use as a page table, or a frame whose reference count is full | `EBUSY` |
//! | L1 entry mapping a frame outside RAM (MMIO, holes) | `EPERM` |
//! | L2–L4 entry pointing at a frame the domain does not own, or one that cannot take the next level's type (already in use as something else, mapped writable, or recursive) | `EINVAL` |
//! | an L4 entry in slots 256–271, or an update of one | `EINVAL` |
//! | not-present entry whose address field names RAM (the L1TF mitigation: write 0 to clear an entry) | `EINVAL` |
//! | clearing an L1 entry installed by `GNTTABOP_map_grant_ref` (unmap it through the grant table) | `EINVAL` |
//!
//! ## `mmu_update(reqs, count, done, foreigndom)`
//!
//! | case | result |
//! |---|---|
//! | `count` above 2^32 - 1 | `EINVAL` |
//! | `foreigndom` neither [`DOMID_SELF`](crate::types::DOMID_SELF) nor the caller's id (dom0 included: no foreign mappings) | `ESRCH` |
//! | `reqs` array or `done` unusable | `EFAULT`, nothing done |
//! | `MMU_NORMAL_PT_UPDATE`, `MMU_PT_UPDATE_PRESERVE_AD`: `ptr` not 8-byte aligned | `EINVAL` |
//! | the same: the frame is not the caller's | `EINVAL` |
//! | the same: the frame is a page table that is not validated (typed but not in use) | `EINVAL` |
//! | the same: the new entry fails entry validation (above) | as above |
//! | the same: the frame is no page table: it is written as plain memory if it can be writable; a descriptor page cannot | `EINVAL` |
//! | `MMU_MACHPHYS_UPDATE` of a frame the caller does not own | `EPERM` |
//! | command 3 (not defined) | `ENOSYS` |
//!
//! ## `update_va_mapping(va, val, flags)`
//!
//! Changes the L1 entry that maps `va` in the *current* address space (the
//! vCPU's base pointer).
//!
//! | case | result |
//! |---|---|
//! | `va` non-canonical or in the hypervisor's range | `EINVAL` |
//! | flush type `UVMF_FLUSHTYPE_MASK` (3) | `EINVAL` |
//! | a table on the walk to `va` is not the caller's, not present, or a superpage | `EINVAL` |
//! | the L1 found is not in use as an L1 (not validated) | `EINVAL` |
//! | `val` fails entry validation | as above |
//!
//! `UVMF_TLB_FLUSH` and `UVMF_INVLPG` (with `UVMF_LOCAL`, `UVMF_ALL` or a
//! `UVMF_MULTI` bitmap) are accepted and honoured; a `UVMF_MULTI` bitmap that
//! cannot be read is `EFAULT`, before the mapping is looked at.
//!
//! ## `mmuext_op(ops, count, done, foreigndom)`
//!
//! | case | result |
//! |---|---|
//! | `count` above 2^32 - 1 | `EINVAL` |
//! | `foreigndom` not the caller (`DOMID_SELF` or its id), unless the caller is dom0 and names an existing domain | `ESRCH` |
//! | `ops` array or `done` unusable | `EFAULT`, nothing done |
//! | `MMUEXT_PIN_L1_TABLE`..`MMUEXT_PIN_L4_TABLE`: frame not the domain's, already pinned, already in use as another type, or mapped writable | `EINVAL` |
//! | the same: an entry fails validation | the entry's errno (above) |
//! | `MMUEXT_UNPIN_TABLE` of a frame not pinned or not the domain's | `EINVAL` |
//! | with a foreign `foreigndom` (dom0 only): any command but pin and unpin | `EINVAL` |
//! | `MMUEXT_NEW_BASEPTR` of a frame that is not the caller's or cannot be (validated as) an L4 | `EINVAL`, or the entry's errno |
//! | `MMUEXT_INVLPG_*` of a non-canonical address | `EINVAL` |
//! | `MMUEXT_TLB_FLUSH_MULTI`, `MMUEXT_INVLPG_MULTI`: the vCPU bitmap at `arg2` unreadable (null included) | `EFAULT` |
//! | `MMUEXT_TLB_FLUSH_*` otherwise | 0 |
//! | `MMUEXT_CLEAR_PAGE`, `MMUEXT_COPY_PAGE`: a frame not the caller's, or a destination that cannot be writable (a page table) | `EINVAL` |
//! | `MMUEXT_NEW_USER_BASEPTR` (Xenia has one page table per process) | `EINVAL` |
//! | `MMUEXT_SET_LDT`: an address not page-aligned, more than 8192 entries, or a table outside the guest's range | `EINVAL` |
//! | `MMUEXT_SET_LDT` otherwise (a non-empty LDT is not loaded yet: its selectors fault) | 0 |
//! | `MMUEXT_FLUSH_CACHE*`, `MMUEXT_MARK_SUPER`, `MMUEXT_UNMARK_SUPER` | `ENOSYS` |
//!
//! ## `memory_op(cmd, arg)`
//!
//! | case | result |
//! |---|---|
//! | a command not listed here (`XENMEM_increase_reservation`, `exchange`, `add_to_physmap`, ...) | `ENOSYS` |
//! | `XENMEM_memory_map` with `nr_entries` 0 | `EINVAL`; otherwise one E820 RAM entry of `max_pages` pages, `nr_entries` set to 1 |
//! | `XENMEM_current_reservation`, `XENMEM_maximum_reservation` of another domain: not dom0 | `EPERM` |
//! | the same: no such domain | `ESRCH` |
//! | `XENMEM_populate_physmap`: `extent_order` not 0 | `EINVAL` |
//! | the same: `domid` another domain and the caller is not dom0 | `EPERM`; dom0 naming no domain: `ESRCH` |
//! | the same: memory or the domain's maximum runs out | the number populated so far (fewer than asked) |
//! | `XENMEM_decrease_reservation`: `extent_order` not 0 | `EINVAL` |
//! | the same: `domid` not the caller | `ESRCH` |
//! | the same: a frame still mapped, pinned, a base pointer, written by the hypervisor, or not the caller's | stops there: the number released so far |
//! | [`XENMEM_XENIA_CHECK_FRAME_TABLE`](crate::memory::XENMEM_XENIA_CHECK_FRAME_TABLE) from a domain other than dom0 | `EPERM`; an inconsistency found: `EIO` |
//!
//! `XENMEM_maximum_ram_page`, `XENMEM_machphys_mapping` and
//! [`XENMEM_XENIA_FRAME_COUNTS`](crate::memory::XENMEM_XENIA_FRAME_COUNTS)
//! fail only with `EFAULT`.
//!
//! ## `foreigndom`
//!
//! Pass [`DOMID_SELF`](crate::types::DOMID_SELF) (0x7FF0), or the domain's
//! own id, to `mmu_update` and `mmuext_op`: a guest kernel always acts on its
//! own tables. Only dom0's domain builder names another domain, and only to
//! pin and unpin the new domain's bootstrap L4 with `mmuext_op`; Xenia has
//! no foreign mappings, so `mmu_update` refuses any other domain
//! (`ESRCH`), dom0's calls included.
//!
//! # A ring-3 address space, step by step
//!
//! A kernel builds each process's page tables out of its own memory, fills
//! them while they are ordinary writable pages, makes them read-only, and
//! only then hands them to the hypervisor, which validates them. The
//! hypervisor never allocates a page table for a guest.
//!
//! 1. **Frames.** Page-table frames are pseudo-physical frames of the domain,
//!    like any other memory. At start of day everything from the bootstrap
//!    stack's end to the end of the mapped region is free (the padding,
//!    [`StartInfo::padding_start`](crate::start_info::StartInfo::padding_start)
//!    to [`padding_end`](crate::start_info::StartInfo::padding_end)), and so
//!    is every frame above the mapped region, up to `nr_pages`. A frame's
//!    machine number, which page-table entries hold, is `mfn_list[pfn]`
//!    (`start_info.mfn_list`, one `u64` per frame); the reverse is the M2P
//!    table at [`MACH2PHYS_VIRT_START`](crate::layout::MACH2PHYS_VIRT_START).
//!    A frame the bootstrap region maps is at `VIRT_BASE + pfn * 4096`; frames
//!    above it must be mapped before they can be written.
//! 2. **Fill.** Zero each frame and write its entries through its ordinary
//!    writable mapping: upper-level entries ([`pte::TABLE`](crate::pte::TABLE))
//!    name the next table's machine frame; leaves are
//!    `pte::entry(mfn, pte::PRESENT | pte::USER | ...)` for user pages, without
//!    `USER` for kernel ones, with `RW` only for writable data.
//!    [`pte::NX`](crate::pte::NX) may be used at every level when the CPU has
//!    NX (CPUID leaf `0x8000_0001`, EDX bit 20); without it bit 63 is
//!    reserved and the entry is refused. Leave unused entries zero (a
//!    not-present entry must be 0), and copy into the new L4 the entries of
//!    the kernel's own L4 that map the kernel, so that it stays mapped after
//!    the switch. L4 slots 256–271 stay zero.
//! 3. **Remap read-only.** A frame mapped writable anywhere cannot become a
//!    page table. For each new table frame, rewrite the leaf that maps it
//!    (in the bootstrap mapping, or wherever the kernel mapped it) without
//!    `RW`: `update_va_mapping(va, pte::entry(mfn, pte::PRESENT), UVMF_INVLPG)`.
//!    The bootstrap tables themselves (`pt_base`, `nr_pt_frames` frames from
//!    `start_info.pt_base`, the L4 first) are read-only and pinned already.
//! 4. **Link.** Hand the tables over: pin the new L4 with
//!    `MMUEXT_PIN_L4_TABLE`, which validates the whole hierarchy at once, or
//!    link a new lower table into a table already in use with an
//!    `mmu_update` of the entry that points at it, which validates that
//!    table. From here on, change entries only with `mmu_update` or
//!    `update_va_mapping`.
//! 5. **Switch.** `MMUEXT_NEW_BASEPTR` with the L4's machine frame (the `cr3`
//!    of the process); `stack_switch(KERNEL_SS, top)` to that process's kernel
//!    stack; `iretq` to ring 3 with [`USER_CS`](crate::selectors::USER_CS) and
//!    [`USER_SS`](crate::selectors::USER_SS).
//!
//! To tear it down: switch away, `MMUEXT_UNPIN_TABLE`, and only then make
//! the frames writable again.
//!
//! The requests for steps 3 and 4, for one new L1 linked into an L2 that is
//! already in use (this compiles; running it needs a Xenia guest):
//!
//! ```no_run
//! use guest_abi::calls;
//! use guest_abi::memory::{MMU_NORMAL_PT_UPDATE, MmuUpdate, UVMF_INVLPG};
//! use guest_abi::pte;
//! use guest_abi::types::{DOMID_SELF, Mfn};
//!
//! /// Makes `l1` (a filled table, mapped writable at `l1_va`) read-only and
//! /// links it as entry `index` of the live L2 in machine frame `l2`.
//! ///
//! /// # Safety
//! ///
//! /// Nothing may write `l1` through `l1_va` any more, and the mappings the
//! /// new L1 makes must be ones the kernel is ready for.
//! unsafe fn link_l1(l1: Mfn, l1_va: u64, l2: Mfn, index: u64) -> Result<(), guest_abi::Errno> {
//!     // 3. remap read-only.
//!     unsafe { calls::update_va_mapping(l1_va, pte::entry(l1.0, pte::PRESENT), UVMF_INVLPG)? };
//!     // 4. link: the hypervisor validates `l1` as an L1 here.
//!     let link = MmuUpdate::new(
//!         MMU_NORMAL_PT_UPDATE,
//!         l2.addr() + index * 8,
//!         pte::entry(l1.0, pte::TABLE),
//!     );
//!     unsafe { calls::mmu_update(&[link], DOMID_SELF)? };
//!     Ok(())
//! }
//! # fn main() { let _ = link_l1; }
//! ```
//!
//! # Events
//!
//! ## A newly bound port
//!
//! Binding a port (`EVTCHNOP_bind_virq`, `bind_ipi`, `bind_interdomain`,
//! `alloc_unbound`) does not touch its bit in `shared_info.evtchn_mask`, and
//! neither does closing it. A fresh `shared_info` is all zero, so a port
//! bound for the first time is **unmasked**; a port number reused after a
//! close keeps whatever mask bit the kernel left on it. Closing a port clears
//! its pending bit; `EVTCHNOP_bind_interdomain` then marks the new local port
//! pending, as Xen does (events sent while the other end was unbound were
//! dropped, so the kernel should look). An event on a masked port sets only
//! the pending bit; [`EVTCHNOP_UNMASK`](crate::event::EVTCHNOP_UNMASK) clears the mask
//! and delivers it then. A kernel that wants no surprise masks a port
//! before closing it and unmasks it, explicitly, once its handler is ready.
//!
//! ## Returning from the event upcall
//!
//! The event callback ([`CALLBACKTYPE_EVENT`](crate::callback::CALLBACKTYPE_EVENT))
//! is entered like an exception handler: a hardware frame (`rip`, `cs`,
//! `rflags`, `rsp`, `ss`; no error code) on the kernel stack,
//! `evtchn_upcall_mask` set, the frame's `IF` the mask as it was before
//! (clear if events were masked). The handler clears `evtchn_upcall_pending`,
//! scans `evtchn_pending_sel` and the bitmaps, and must then return and
//! restore the mask in one step, or an event arriving in between waits until
//! the next one. The `iret` hypercall does exactly that: it sets
//! `evtchn_upcall_mask` from the frame's `IF` as it restores the frame
//! ([`IretContext`](crate::trap::IretContext)). With the hardware frame on
//! top of the stack and the interrupted code's registers restored, push the
//! `flags` word (0) and jump to the hypercall page's `iret` stub, or push the
//! three registers it would and issue the hypercall directly:
//!
//! ```no_run
//! core::arch::global_asm!(
//!     ".globl event_return",
//!     "event_return:",
//!     // [rsp] = rip, cs, rflags, rsp, ss of the interrupted code.
//!     "push 0",        // IretContext.flags: not VGCF_in_syscall
//!     "push rcx",      // what the hypercall page's iret stub pushes
//!     "push r11",
//!     "push rax",
//!     "mov eax, {iret}",
//!     "int 0x82",      // does not return
//!     iret = const guest_abi::hypercall::HYPERVISOR_IRET,
//! );
//! # fn main() {}
//! ```
//!
//! `rax`, `r11` and `rcx` come back from the pushed words; every other
//! register keeps the value it has at the `int 0x82`. A plain `iretq` also
//! returns, but cannot change the mask: clear it first, then check
//! `evtchn_upcall_pending` and loop if it is set.
//!
//! # `SS` after a fast trap, and in an upcall that interrupted one
//!
//! * A ring-3 `int 0x80` that takes the fast trap (see
//!   [`trap`](crate::trap#software-interrupts-and-the-fast-trap)) enters the
//!   kernel through the CPU alone, which loads `SS` with the **null selector
//!   of RPL 1** (value `1`; Intel SDM Vol. 3A §6.14.4). The stack works; a
//!   kernel that reads `SS`, or compares a saved `ss` with `KERNEL_SS`,
//!   must expect `1`. To tell user from kernel frames use `cs`
//!   ([`is_user_cs`](crate::selectors::is_user_cs)), never `ss`.
//! * Every entry through the hypervisor (exceptions, the event upcall, the
//!   syscall and failsafe callbacks) starts the handler with
//!   `SS` = [`KERNEL_SS`](crate::selectors::KERNEL_SS). If it interrupted
//!   ring-1 code running after a fast trap, the frame it pushed records
//!   `ss` = `1`, the value that code really had.
//! * Returning to such a frame is allowed both ways: `iretq` accepts a null
//!   `SS` of RPL 1 when returning to ring 1, and the `iret` hypercall accepts
//!   the pair (`KERNEL_CS`, `1`) besides (`KERNEL_CS`, `KERNEL_SS`) and
//!   (`USER_CS`, `USER_SS`); any other pair crashes the domain.
//!
//! # `VIRT_BASE` and addresses at start of day
//!
//! As the builders enforce them (see [the ELF rules](#the-rules-the-builders-enforce)):
//! `VIRT_BASE` is where pseudo-physical frame 0 is mapped, the kernel's
//! segments go to their `p_vaddr` (not `p_paddr`), and from `VIRT_BASE` to
//! the end of the padding every page `VIRT_BASE + p * 4096` maps frame `p`
//! (`mfn_list[p]`), except the `shared_info` page, which maps the
//! hypervisor's frame. Nothing outside that region is mapped at entry; the
//! p2m list, `start_info`, the page tables and the stack are at the
//! addresses `start_info` gives, not at fixed ones.
//!
//! # SMP guests
//!
//! A domain has `max_vcpus` vCPUs (`xl.cfg` `maxvcpus`, at most
//! [`XEN_LEGACY_MAX_VCPUS`](crate::shared_info::XEN_LEGACY_MAX_VCPUS), 32:
//! one `vcpu_info` slot each in `shared_info`). The builder starts vCPU 0;
//! the others are *down* and *uninitialised* until the kernel starts them.
//! The kernel finds how many it has as Xen guests do without xenstore:
//! `VCPUOP_is_up(n)` answers 0 or 1 for every vCPU the domain has and
//! `ENOENT` past the last. The runtime `xenia-guest-rt` does all of this in
//! its `smp` module; the steps, for a kernel of its own:
//!
//! ## Starting a secondary vCPU
//!
//! 1. Give it a stack of its own, and a [`VcpuGuestContext`](crate::vcpu_context::VcpuGuestContext):
//!    `flags` = `VGCF_IN_KERNEL`, `user_regs.rip`/`rsp` (as if called: `rsp`
//!    16-byte aligned minus 8), `cs` = `KERNEL_CS`, `ss` = `KERNEL_SS`, any
//!    argument in `rdi`; `ctrlreg[3]` the root table's machine frame
//!    (`xen_pfn_to_cr3`), normally the one vCPU 0 runs on; `trap_ctxt` (entry
//!    *v* for vector *v*) and `event_callback_eip`, since the trap table and
//!    callbacks are per vCPU; `kernel_ss`/`kernel_sp` if it will run ring-3
//!    code. The context is checked as `XEN_DOMCTL_setvcpucontext` checks
//!    dom0's (`EINVAL` for anything Xenia cannot honour).
//! 2. `VCPUOP_initialise(n, &ctx)`. Once per vCPU: `EEXIST` afterwards, even
//!    after it went down. `EFAULT` if the context cannot be read, `ENOENT`
//!    for a vCPU the domain does not have. With `VGCF_ONLINE` in `flags` it
//!    comes up at once.
//! 3. `VCPUOP_up(n)` (`EINVAL` if it was never initialised; 0, doing nothing,
//!    if it is up). It starts at `rip` with events masked
//!    (`evtchn_upcall_mask` = 1), in ring 1.
//!
//! `VCPUOP_down(n)` stops a vCPU where it is, the caller itself included
//! (its call returns 0 when it is brought up again: Xen keeps its
//! registers). Taking down the last vCPU that is up powers the domain off.
//! `VCPUOP_is_up` says which are up.
//!
//! ## Bringing vCPUs up and down (`xl vcpu-set`)
//!
//! As on Xen, the toolstack asks through xenstore ([`xenstore`](crate::xenstore)), and the
//! guest decides when: `xl vcpu-set <dom> <n>` writes
//! `/local/domain/<domid>/cpu/<v>/availability` = `online` for vCPUs `0..n` and `offline`
//! for the others up to `maxvcpus` (the toolstack writes the same nodes at creation, from
//! `vcpus`). The domain may read them, not write them. A kernel that supports hot-plug:
//!
//! 1. connects to its store (`start_info.store_mfn`, the page at
//!    [`store_ring_va`](crate::xenstore::store_ring_va), the channel
//!    `start_info.store_evtchn`) and sends `XS_WATCH` for the relative path `cpu` with a
//!    token of its choice; the store fires the watch once at once, then whenever a node
//!    under `cpu` changes;
//! 2. on each event reads `cpu/<v>/availability` for its vCPUs (an event may stand for
//!    several writes: `vcpu-set` writes one node per vCPU, without a transaction so far);
//! 3. for `offline` and a vCPU that is up: takes it out of use (nothing of the kernel's may
//!    wait on it any more), then has it call `VCPUOP_down` on itself (or calls it from
//!    another vCPU once it is idle); for `online` and a vCPU that is down: `VCPUOP_up`, or
//!    `VCPUOP_initialise` and `up` if it never ran. vCPU 0 stays up, as on Linux.
//!
//! `xl vcpu-list` shows a vCPU that is down with CPU `-` and state `--p`. The runtime's
//! `hotplug` module (on its `xenbus` client) does all of this for secondary vCPUs that
//! call its park point when idle; the echo demo uses it.
//!
//! ## Per-vCPU events
//!
//! Each vCPU has its own `vcpu_info`: upcall flag, mask, selector word,
//! time. The hypervisor signals a port to its *notify vCPU*: the vCPU named
//! when binding (`EVTCHNOP_bind_virq` with a per-vCPU VIRQ such as
//! `VIRQ_TIMER`, `EVTCHNOP_bind_ipi`), vCPU 0 for others, changed with
//! `EVTCHNOP_bind_vcpu` (unbound, interdomain and global-VIRQ ports only;
//! `EINVAL` for IPI and per-vCPU VIRQ ports). The pending and mask bitmaps
//! are shared by all vCPUs, so an upcall should handle only the ports it is
//! the notify vCPU of and leave the others pending for their own vCPU: the
//! hypervisor sets their selector bit and upcall flag too. Timers
//! (`set_timer_op`, `VCPUOP_set_singleshot_timer`, which only the vCPU
//! itself may set, and the periodic timer) raise `VIRQ_TIMER` on their own
//! vCPU. `VCPUOP_register_vcpu_info` moves a `vcpu_info` into a page of the
//! kernel's (once; see [`VcpuRegisterVcpuInfo`](crate::vcpu::VcpuRegisterVcpuInfo));
//! register it with events masked, before the vCPU's upcall can look.
//!
//! ## IPIs
//!
//! An IPI is an event channel: `EVTCHNOP_bind_ipi(v)` gives a port that
//! notifies vCPU *v*; any vCPU of the domain sends it with `EVTCHNOP_send`.
//! Sends to a port already pending merge into one event, as on Xen: a
//! protocol that counts must not send again before the last one was seen.
//! `SCHEDOP_poll` waits for ports without unmasking events: it returns (0)
//! when one of the listed ports is pending, even masked, when an event
//! needs delivery, or at its timeout (absolute system time; 0 for none);
//! more than 128 ports or a port number of 4096 or more is `EINVAL`, an
//! unreadable array `EFAULT`.
//!
//! ## TLB flushes
//!
//! A domain's vCPUs run on several pCPUs at once. What a guest may rely on:
//!
//! - After `mmu_update` or `update_va_mapping` returns, the *calling* vCPU sees
//!   the new entry (every return to a guest reloads its root; no PCID).
//! - Another vCPU sees it only after a flush naming it has returned:
//!   `UVMF_ALL`, `UVMF_MULTI` (a vCPU bitmap), `MMUEXT_TLB_FLUSH_ALL`,
//!   `MMUEXT_TLB_FLUSH_MULTI`, `MMUEXT_INVLPG_ALL`, `MMUEXT_INVLPG_MULTI`. The
//!   hypervisor sends a flush to each pCPU running a named vCPU and returns
//!   only when all have flushed; a named vCPU that is not running holds no
//!   translation. An `INVLPG_*` of other vCPUs flushes their whole TLB.
//! - `*_LOCAL` flushes only the caller, which its return does anyway.
//! - An L4 entry the guest changes reaches every pCPU that runs the same L4
//!   before the call returns (their copies of it are redone).
//! - A frame never stops being writable for the hypervisor's checks, and is
//!   never given back (`XENMEM_decrease_reservation`) to anyone, while any vCPU
//!   may still write it through an old translation: that is the hypervisor's
//!   job, not the guest's, and it does not depend on the guest's flushes.
//!
//! The vCPU bitmap is one 64-bit word read from guest memory (bits past the
//! domain's vCPUs are ignored; an unreadable bitmap is `EFAULT`).
//!
//! ## Batches
//!
//! `multicall` runs an array of [`MulticallEntry`](crate::hypercall::MulticallEntry)
//! through the same handlers as single calls: each entry's result is
//! written to it; a nested `multicall` entry gets `-EINVAL`; an entry that
//! yields or blocks ends the batch for now and the rest runs when the vCPU
//! runs again (the guest sees one call).
//!
//! # Disks
//!
//! A domain's disks are Xen's virtual block devices: the toolstack (`xl create` with
//! `disk = [ 'format=raw, vdev=xvda, access=rw, target=/dev/vdb' ]`) writes a frontend
//! directory `device/vbd/<devid>` in the domain's home (`backend`, `backend-id`,
//! `virtual-device`, `state` = 1) and a backend directory under dom0's; dom0's kernel
//! (blkback) announces the disk there (`sectors`, `sector-size`, `info`, features,
//! `state` = 2). The protocol is Xen's `blkif` ([`blkif`](crate::blkif)): one shared page
//! of 32 request/response slots, segments as grant references, an event channel each way.
//!
//! With the guest runtime, a kernel gets a disk in four calls (`xenia_guest_rt::blkfront`):
//!
//! ```ignore
//! let mut bus = Xenbus::connect()?;                  // the store ring start_info names
//! let mut ids = [0u32; 4];
//! let n = blkfront::probe(&mut bus, &mut ids);       // device/vbd/<devid>, e.g. 51712 (xvda)
//! let mut disk = Blkfront::connect(&mut bus, ids[0])?; // handshake, bounded wait for state 4
//! disk.write(0, &sector_bytes)?;                     // whole 512-byte sectors
//! disk.flush()?;                                     // durable from here on
//! disk.read(0, &mut buf)?;
//! disk.disconnect(&mut bus);                         // Closing, then the backend's Closed
//! ```
//!
//! What `connect` does, for a kernel that writes its own frontend: grow the grant table to
//! one frame (`GNTTABOP_setup_table`) and map it; grant the backend domain (`backend-id`)
//! the ring page and the data pages (`GTF_permit_access`, frame and domid written before
//! the flags); allocate an unbound event channel for it (`EVTCHNOP_alloc_unbound`); write
//! `ring-ref`, `event-channel`, `protocol` = `x86_64-abi`, `feature-persistent` = 1 (if the
//! kernel keeps its data grants for the device's life) and `state` = 3 in the frontend
//! directory; wait for the backend's `state` = 4 (the runtime waits at most 10 s), then read
//! `sectors` (always in 512-byte units), `sector-size`, `info` (`VDISK_READONLY`) and
//! `feature-persistent`. A request is put at `req_prod % 32` and published by advancing
//! `req_prod` after a write barrier; notify the channel; the response comes at `rsp_prod`
//! with the same `id`. The ring must be granted writable: the backend maps it.
//!
//! Persistent grants (both ends said `feature-persistent` = 1): the backend maps each
//! segment grant it sees once and keeps it mapped until the device closes (at most 64 a
//! device; others go by grant copy), so a frontend must not grant another frame under a
//! reference it used for data; the runtime's blkfront then moves all data through its 44
//! data pages (one copy in the guest) instead of lending the caller's pages. While mapped,
//! a grant cannot be ended (its `GTF_reading`/`GTF_writing` bits are set): end the grants
//! after the backend says Closed.
//!
//! Several requests in flight: with persistent grants, `disk.read`/`disk.write` of more
//! than 44 KiB (`blkfront::MAX_IO`) send up to `blkfront::QUEUE_DEPTH` (4) requests of
//! 44 KiB at once, each on its own 11 data pages, with one notification, and wait for all
//! their responses (matched by id; the first error is returned once all are in). The
//! backend serves them in one round and notifies once, so a large buffer costs fewer
//! switches and notifications than the same bytes in 44 KiB calls: give sequential I/O in
//! buffers of `QUEUE_DEPTH * MAX_IO` (176 KiB) where you can. A kernel writing its own
//! frontend does the same: put several requests, advance `req_prod` once, notify once.
//!
//! What Xenia's backend does differently from Linux's: without persistent grants, segment
//! data moves by `GNTTABOP_copy`; there are no indirect descriptors (`BLKIF_OP_INDIRECT` gets
//! `BLKIF_RSP_EOPNOTSUPP`) and one ring page only (`max-ring-page-order` = 0). Requests
//! put in the ring before the frontend said Initialised are answered with
//! `BLKIF_RSP_ERROR`; a `req_prod` more than 32 ahead of the responses stops the ring for
//! good, as on Xen. A read-only disk (`access=ro`) has `info` = 4 and refuses writes and
//! discards with `BLKIF_RSP_ERROR`.
//!
//! # Network
//!
//! A domain's network interfaces are Xen's vifs: the toolstack (`xl create` with `vif = [
//! 'bridge=xenbr0' ]`) writes a frontend directory `device/vif/<devid>` in the domain's home
//! (`backend`, `backend-id`, `handle`, `mac`, `state` = 1) and a backend directory under
//! dom0's; dom0's kernel (netback) offers `feature-rx-copy` there and says `state` = 2. The
//! protocol is Xen's `netif` ([`netif`](crate::netif)): a transmit ring and a receive ring
//! of 256 slots each, one page each, one event channel for both, Ethernet frames (at most
//! 1514 bytes, no FCS) in granted pages. netback joins the interface to dom0's bridge as
//! port `vif<domid>.<devid>`.
//!
//! With the guest runtime (`xenia_guest_rt::netfront`):
//!
//! ```ignore
//! let mut bus = Xenbus::connect()?;
//! let mut ids = [0u32; 4];
//! let n = netfront::probe(&mut bus, &mut ids);        // device/vif/<devid>, e.g. 0
//! let mut nic = NetFront::connect(&mut bus, ids[0])?; // handshake, bounded wait for state 4
//! let mac: [u8; 6] = nic.mac();                       // the `mac` the toolstack chose
//! nic.send(&frame)?;                                  // copied; Err(Busy) when all 256 are out
//! nic.queue(&frame)?;                                 // as send, the backend told later:
//! nic.flush();                                        // once for a burst (wait flushes too)
//! let mut buf = [0u8; 1514];
//! if let Some(n) = nic.recv(&mut buf) { /* buf[..n] is one frame */ }
//! nic.wait(deadline_ns);                              // sleep until a frame or the deadline
//! nic.disconnect(&mut bus);                           // Closing, then the backend's Closed
//! ```
//!
//! A TCP/IP stack goes on top: the `web` demo (`guest-abi/demos`) runs `smoltcp` on it
//! through a 60-line `smoltcp::phy::Device` adapter (`xenia_demos::web::Adapter`). It sends
//! with `queue` and lets `wait` flush: one notification per poll of the stack rather than
//! one per frame, so the backend (which shares the pCPU with the domain on a small machine)
//! is woken once per TCP window, not once per segment. Transmit completions are asked for
//! only while fewer than 64 of the 256 transmit buffers are free.
//!
//! What `connect` does, for a kernel that writes its own frontend: read `backend`,
//! `backend-id` and `mac`; grow the grant table to one frame and map it; grant the backend
//! the two ring pages and the buffers (receive buffers writable, transmit buffers
//! read-only); post a receive request (`id`, `gref` of an empty page) in every receive slot
//! and advance the receive `req_prod` to 256; allocate an unbound event channel for the
//! backend; write `tx-ring-ref`, `rx-ring-ref`, `event-channel`, `request-rx-copy` = 1,
//! `feature-rx-notify` = 1 and `state` = 3; wait for the backend's `state` = 4, then write
//! `state` = 4. To send, put a transmit request (`gref`, `offset`, `size` = the frame's
//! length, `id` = your buffer's number, `flags` = 0) at `req_prod % 256`, advance
//! `req_prod` after a write barrier, notify if the backend's `req_event` asks
//! (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`); the response carries the same `id`. A received
//! frame comes as a receive response: `id` of the buffer, `offset` of the data in it and
//! `status` = its length (negative: an error); repost the buffer once its bytes are copied.
//!
//! Trust nothing the backend writes: the runtime's frontend (`xenia_guest_rt::netring`)
//! clamps `rsp_prod` to the requests outstanding, ties receive buffers to ring
//! positions (so a response cannot name a buffer twice or one not posted), checks every
//! `id`, `offset + status` against the page and the flags (no multi-slot frames are asked
//! for, so `NETRXF_more_data`/`NETRXF_extra_info` are protocol errors and dropped), and frees
//! a transmit buffer only when its `id` is in flight.
