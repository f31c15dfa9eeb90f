//! A fake hypervisor for host tests: domains, frames and page-table
//! validation kept in ordered maps, every call logged, and any one call made
//! to fail on request.
//!
//! It enforces the rules the real hypervisor does where the builder could
//! break them: writes only into the domain's own frames while it is paused
//! and before they become page tables, populate within `max_pages`, the
//! bootstrap tables validated against the domain's frames when pinned (no
//! frame both a page table and mapped writable, nothing in the hypervisor's
//! slots), a vCPU context only with a validated L4.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;

use guest_abi::Errno;
use guest_abi::domctl::DomctlSchedCredit;
use guest_abi::event::EvtchnPort;
use guest_abi::layout::is_hypervisor_l4_slot;
use guest_abi::types::{DomId, Mfn, PAGE_SIZE, Pfn};
use guest_abi::vcpu_context::VcpuGuestContext;
use xenia_pvboot::layout::Level;

use crate::hypervisor::{CreateConfig, Hypervisor};
use guest_abi::pte::{self, PRESENT as PTE_PRESENT, RW as PTE_WRITABLE, USER as PTE_USER};

/// The operations, for the call log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    MaxMem,
    MaxVcpus,
    Sched,
    Populate,
    Write,
    Pin,
    AllocUnbound,
    SharedInfo,
    SetContext,
    Unpause,
    Destroy,
    GuestMode,
}

/// One domain's state.
#[derive(Clone, Debug, Default)]
pub struct Domain {
    pub cfg: Option<CreateConfig>,
    pub paused: bool,
    pub max_pages: u64,
    pub vcpus: u32,
    pub credit: Option<DomctlSchedCredit>,
    pub p2m: BTreeMap<Pfn, Mfn>,
    pub shared_info: Mfn,
    pub pinned: Vec<(Mfn, Level)>,
    /// Frames validated as page tables, by level.
    pub tables: BTreeMap<Mfn, Level>,
    pub ports: Vec<(EvtchnPort, DomId)>,
    pub contexts: BTreeMap<u32, VcpuGuestContext>,
    /// The guest mode set by `set_guest_mode` (0, ring 1, until then).
    pub guest_mode: u32,
}

/// The fake.
#[derive(Debug, Default)]
pub struct FakeHv {
    pub domains: BTreeMap<DomId, Domain>,
    /// Frame contents; a frame not listed is zero.
    pub frames: BTreeMap<Mfn, Vec<u8>>,
    pub owner: BTreeMap<Mfn, DomId>,
    pub calls: Vec<(Op, DomId)>,
    /// Index into `calls` of the call that fails (with `ENOMEM`).
    pub fail_at: Option<usize>,
    /// Whether `destroy` fails (with `EBUSY`).
    pub fail_destroy: bool,
    /// Answer `populate` with one frame too few.
    pub short_populate: bool,
    /// Whether `set_guest_mode` knows Xen's PV mode (else it answers `ENOSYS`, as a
    /// hypervisor without it).
    pub xen_pv_mode: bool,
    next_dom: DomId,
    next_mfn: u64,
}

impl FakeHv {
    pub fn new() -> Self {
        Self {
            next_dom: 1,
            next_mfn: 0x8_0000,
            ..Self::default()
        }
    }

    /// Logs the call; fails it if it is the one chosen.
    fn enter(&mut self, op: Op, dom: DomId) -> Result<(), Errno> {
        let index = self.calls.len();
        self.calls.push((op, dom));
        if self.fail_at == Some(index) {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    fn domain(&mut self, dom: DomId) -> Result<&mut Domain, Errno> {
        self.domains.get_mut(&dom).ok_or(Errno::ESRCH)
    }

    /// Frames are handed out scattered and descending within a batch, so
    /// that nothing can assume pfn and mfn move together.
    fn alloc_frame(&mut self, dom: DomId) -> Mfn {
        self.next_mfn += 3;
        let mfn = Mfn(self.next_mfn);
        self.owner.insert(mfn, dom);
        mfn
    }

    /// The 512 entries of frame `mfn`.
    pub fn entries(&self, mfn: Mfn) -> Vec<u64> {
        let page = self.page(mfn);
        page.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// The contents of frame `mfn`.
    pub fn page(&self, mfn: Mfn) -> Vec<u8> {
        self.frames
            .get(&mfn)
            .cloned()
            .unwrap_or_else(|| vec![0; PAGE_SIZE])
    }

    /// Validates the page table in `mfn` at `level` as `dom`'s, recording
    /// every table found; `EINVAL` for anything the hypervisor refuses.
    fn validate(
        &self,
        dom: DomId,
        mfn: Mfn,
        level: Level,
        found: &mut BTreeMap<Mfn, Level>,
        leaves: &mut Vec<(Mfn, bool)>,
    ) -> Result<(), Errno> {
        if self.owner.get(&mfn) != Some(&dom) {
            return Err(Errno::EINVAL);
        }
        match found.insert(mfn, level) {
            Some(l) if l != level => return Err(Errno::EINVAL),
            Some(_) => return Ok(()),
            None => {}
        }
        let next = match level {
            Level::L4 => Some(Level::L3),
            Level::L3 => Some(Level::L2),
            Level::L2 => Some(Level::L1),
            Level::L1 => None,
        };
        for (i, e) in self.entries(mfn).into_iter().enumerate() {
            if e & PTE_PRESENT == 0 {
                if e != 0 {
                    return Err(Errno::EINVAL);
                }
                continue;
            }
            if level == Level::L4 && is_hypervisor_l4_slot(i) {
                return Err(Errno::EINVAL);
            }
            let target = pte::frame(e);
            match next {
                Some(child) => self.validate(dom, target, child, found, leaves)?,
                None => {
                    let ok = self.owner.get(&target) == Some(&dom);
                    if !ok {
                        return Err(Errno::EINVAL);
                    }
                    leaves.push((target, e & PTE_WRITABLE != 0));
                }
            }
        }
        Ok(())
    }

    /// Translates `va` through the tables rooted at `l4`: the frame, the
    /// leaf's flags and whether every level allows user access.
    pub fn walk(&self, l4: Mfn, va: u64) -> Option<(Mfn, u64, bool)> {
        let mut table = l4;
        let mut user = true;
        for shift in [39, 30, 21, 12] {
            let e = self.entries(table)[((va >> shift) & 511) as usize];
            if e & PTE_PRESENT == 0 {
                return None;
            }
            user &= e & PTE_USER != 0;
            table = pte::frame(e);
            if shift == 12 {
                return Some((table, e & 0xFFF, user));
            }
            assert_eq!(
                e & (PTE_WRITABLE | PTE_USER),
                PTE_WRITABLE | PTE_USER,
                "upper levels leave the decision to the leaves"
            );
        }
        None
    }
}

impl Hypervisor for FakeHv {
    fn create_domain(&mut self, cfg: &CreateConfig) -> Result<DomId, Errno> {
        self.enter(Op::Create, 0)?;
        let dom = self.next_dom;
        self.next_dom += 1;
        let shared_info = self.alloc_frame(dom);
        self.domains.insert(
            dom,
            Domain {
                cfg: Some(*cfg),
                paused: true,
                shared_info,
                ..Domain::default()
            },
        );
        Ok(dom)
    }

    fn set_max_mem(&mut self, dom: DomId, kib: u64) -> Result<(), Errno> {
        self.enter(Op::MaxMem, dom)?;
        let d = self.domain(dom)?;
        if kib / 4 < d.p2m.len() as u64 {
            return Err(Errno::EINVAL);
        }
        d.max_pages = kib / 4;
        Ok(())
    }

    fn hypercall_init(&mut self, dom: DomId, mfn: Mfn) -> Result<(), Errno> {
        let page = if self.domain(dom)?.guest_mode == guest_abi::domctl::XENIA_GUEST_MODE_XEN_PV {
            guest_abi::hypercall::xen_pv_hypercall_page_image()
        } else {
            guest_abi::hypercall::hypercall_page_image()
        };
        self.write_frame(dom, mfn, 0, &page)
    }

    fn set_max_vcpus(&mut self, dom: DomId, n: u32) -> Result<(), Errno> {
        self.enter(Op::MaxVcpus, dom)?;
        let d = self.domain(dom)?;
        if d.cfg.map(|c| c.max_vcpus) != Some(n) {
            return Err(Errno::EINVAL);
        }
        d.vcpus = n;
        Ok(())
    }

    fn set_sched_credit(&mut self, dom: DomId, credit: DomctlSchedCredit) -> Result<(), Errno> {
        self.enter(Op::Sched, dom)?;
        let d = self.domain(dom)?;
        if u32::from(credit.cap) > 100 * d.vcpus {
            return Err(Errno::EINVAL);
        }
        d.credit = Some(credit);
        Ok(())
    }

    fn populate(&mut self, dom: DomId, pfns: &[Pfn]) -> Result<Vec<Mfn>, Errno> {
        self.enter(Op::Populate, dom)?;
        let d = self.domain(dom)?;
        if d.p2m.len() + pfns.len() > d.max_pages as usize {
            return Err(Errno::ENOMEM);
        }
        if pfns.iter().any(|p| d.p2m.contains_key(p)) {
            return Err(Errno::EEXIST);
        }
        let mut mfns: Vec<Mfn> = pfns.iter().map(|_| self.alloc_frame(dom)).collect();
        mfns.reverse();
        let d = self.domain(dom)?;
        for (pfn, mfn) in pfns.iter().zip(&mfns) {
            d.p2m.insert(*pfn, *mfn);
        }
        if self.short_populate {
            mfns.pop();
        }
        Ok(mfns)
    }

    fn write_frame(
        &mut self,
        dom: DomId,
        mfn: Mfn,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), Errno> {
        self.enter(Op::Write, dom)?;
        let owned = self.owner.get(&mfn) == Some(&dom);
        let d = self.domain(dom)?;
        if !d.paused || d.tables.contains_key(&mfn) || !owned || d.shared_info == mfn {
            return Err(Errno::EPERM);
        }
        if offset + bytes.len() > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        let page = self.frames.entry(mfn).or_insert_with(|| vec![0; PAGE_SIZE]);
        page[offset..offset + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    fn pin_table(&mut self, dom: DomId, mfn: Mfn, level: Level) -> Result<(), Errno> {
        self.enter(Op::Pin, dom)?;
        self.domain(dom)?;
        let mut found = BTreeMap::new();
        let mut leaves = Vec::new();
        self.validate(dom, mfn, level, &mut found, &mut leaves)?;
        let writable_tables: BTreeSet<Mfn> = leaves
            .iter()
            .filter(|(m, w)| *w && found.contains_key(m))
            .map(|(m, _)| *m)
            .collect();
        if !writable_tables.is_empty() {
            return Err(Errno::EINVAL);
        }
        let d = self.domain(dom)?;
        d.tables.extend(found);
        d.pinned.push((mfn, level));
        Ok(())
    }

    fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.enter(Op::AllocUnbound, dom)?;
        let d = self.domain(dom)?;
        let port = d.ports.len() as EvtchnPort + 1;
        d.ports.push((port, remote));
        Ok(port)
    }

    fn shared_info_frame(&mut self, dom: DomId) -> Result<Mfn, Errno> {
        self.enter(Op::SharedInfo, dom)?;
        Ok(self.domain(dom)?.shared_info)
    }

    fn set_vcpu_context(
        &mut self,
        dom: DomId,
        vcpu: u32,
        ctx: &VcpuGuestContext,
    ) -> Result<(), Errno> {
        self.enter(Op::SetContext, dom)?;
        let d = self.domain(dom)?;
        if vcpu >= d.vcpus {
            return Err(Errno::EINVAL);
        }
        if !d.paused {
            return Err(Errno::EBUSY);
        }
        if d.tables.get(&ctx.l4_mfn()) != Some(&Level::L4) {
            return Err(Errno::EINVAL);
        }
        d.contexts.insert(vcpu, *ctx);
        Ok(())
    }

    fn unpause(&mut self, dom: DomId) -> Result<(), Errno> {
        self.enter(Op::Unpause, dom)?;
        let d = self.domain(dom)?;
        if !d.paused {
            return Err(Errno::EINVAL);
        }
        d.paused = false;
        Ok(())
    }

    fn destroy(&mut self, dom: DomId) -> Result<(), Errno> {
        self.enter(Op::Destroy, dom)?;
        if self.fail_destroy {
            return Err(Errno::EBUSY);
        }
        self.domains.remove(&dom).ok_or(Errno::ESRCH)?;
        let gone: Vec<Mfn> = self
            .owner
            .iter()
            .filter(|(_, d)| **d == dom)
            .map(|(m, _)| *m)
            .collect();
        for m in gone {
            self.owner.remove(&m);
            self.frames.remove(&m);
        }
        Ok(())
    }

    fn set_guest_mode(&mut self, dom: DomId, mode: u32) -> Result<(), Errno> {
        self.enter(Op::GuestMode, dom)?;
        let known = self.xen_pv_mode;
        let d = self.domain(dom)?;
        if !known {
            return Err(Errno::ENOSYS);
        }
        if mode > 1 || !d.contexts.is_empty() {
            return Err(Errno::EINVAL);
        }
        d.guest_mode = mode;
        Ok(())
    }
}
