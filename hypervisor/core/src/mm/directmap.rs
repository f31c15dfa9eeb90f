//! What the direct map covers and with which caching (DESIGN.md §4): the plan the
//! hypervisor's page-table code maps (`arch/x86_64/paging.rs`). Reaching memory through the
//! direct map is the hypervisor's `mm::physmem`, not this module's.
//!
//! The direct map is the hypervisor's window on physical memory. It covers all of the
//! first 4 GiB (firmware tables, device registers and RAM live there on PCs) and all RAM
//! above it. RAM, including ACPI tables and NVS, is mapped write-back; everything else
//! below 4 GiB is mapped uncached, so that a device register is never cached.

use alloc::vec::Vec;

use super::memmap::{PAGE_SIZE, PhysRange};

/// The low window that is always mapped.
pub const LOW_WINDOW: u64 = 4 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub range: PhysRange,
    pub cached: bool,
}

fn round_out(r: PhysRange) -> PhysRange {
    PhysRange {
        start: r.start & !(PAGE_SIZE - 1),
        end: r.end.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
    }
}

/// Splits `[0, max(LOW_WINDOW, end of RAM))` into page-aligned, sorted, disjoint chunks.
/// `ram` may be unsorted and overlapping; anything at or above `limit` is left out.
pub fn plan(ram: &[PhysRange], limit: u64) -> Vec<Chunk> {
    let mut wb: Vec<PhysRange> = ram
        .iter()
        .filter(|r| r.start < r.end)
        .map(|r| round_out(*r))
        .map(|r| PhysRange {
            start: r.start,
            end: r.end.min(limit),
        })
        .filter(|r| r.start < r.end)
        .collect();
    wb.sort();
    let mut merged: Vec<PhysRange> = Vec::with_capacity(wb.len());
    for r in wb {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }

    let mut out = Vec::with_capacity(merged.len() * 2 + 1);
    let mut cursor = 0u64;
    let low_end = LOW_WINDOW.min(limit);
    for r in merged {
        if cursor < r.start && cursor < low_end {
            out.push(Chunk {
                range: PhysRange {
                    start: cursor,
                    end: r.start.min(low_end),
                },
                cached: false,
            });
        }
        out.push(Chunk {
            range: r,
            cached: true,
        });
        cursor = cursor.max(r.end);
    }
    if cursor < low_end {
        out.push(Chunk {
            range: PhysRange {
                start: cursor,
                end: low_end,
            },
            cached: false,
        });
    }
    out
}

/// Whether `[start, start + len)` is inside the planned chunks.
pub fn covers(chunks: &[Chunk], start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    let mut at = start;
    for c in chunks {
        if c.range.start <= at && at < c.range.end {
            at = c.range.end;
            if at >= end {
                return true;
            }
        }
    }
    len == 0
}

/// Words of a frame through the direct map: the one place `mm` turns a machine frame into
/// memory (issue 11 §3). The frame-table glue (`ft.rs`), the M2P (`m2p.rs`) and the frame
/// allocator (`frames.rs`) use these instead of dereferencing `phys_to_virt` themselves.
///
/// Every access is a volatile (or atomic) access through a raw pointer, never a Rust
/// reference, so a guest writing the same frame at the same time is no data race in the
/// hypervisor's sense; `index` is checked. What the type system does not check is that the
/// frame is the caller's to read or write — a frame from the frame allocator, a page table
/// the frame table validated, the M2P's own — and not hypervisor memory that Rust code holds
/// a reference into (the image, the heap): that is the callers' standing obligation.
#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn qemu_like_machine() {
        let ram = [r(0, 0x9fc00), r(0x10_0000, 0x7fe_0000)];
        let p = plan(&ram, u64::MAX);
        assert_eq!(
            p,
            vec![
                Chunk {
                    range: r(0, 0xa0000),
                    cached: true
                },
                Chunk {
                    range: r(0xa0000, 0x10_0000),
                    cached: false
                },
                Chunk {
                    range: r(0x10_0000, 0x7fe_0000),
                    cached: true
                },
                Chunk {
                    range: r(0x7fe_0000, LOW_WINDOW),
                    cached: false
                },
            ]
        );
        assert!(covers(&p, 0xfee0_0000, 4096));
        assert!(covers(&p, 0x9f000, 0x2000), "spanning two chunks");
        assert!(!covers(&p, LOW_WINDOW - 8, 16));
        assert!(!covers(&p, u64::MAX - 4, 16), "no wrap-around");
    }

    #[test]
    fn ram_above_4g_and_limit() {
        let ram = [
            r(0x10_0000, 0xc000_0000),
            r(0x1_0000_0000, 0x2_4000_0000),
            r(0x1_0000_0000, 0x1_2000_0000),
        ];
        let p = plan(&ram, 0x2_0000_0000);
        assert_eq!(
            p.last().unwrap(),
            &Chunk {
                range: r(0x1_0000_0000, 0x2_0000_0000),
                cached: true
            }
        );
        assert!(
            p.windows(2).all(|w| w[0].range.end <= w[1].range.start),
            "sorted, disjoint"
        );
        assert!(
            p.iter()
                .all(|c| c.range.start % PAGE_SIZE == 0 && c.range.end % PAGE_SIZE == 0)
        );
    }

    #[test]
    fn empty_and_degenerate() {
        let p = plan(&[r(5, 5), r(u64::MAX - 10, u64::MAX)], u64::MAX);
        assert!(p.iter().all(|c| c.range.start < c.range.end));
        assert_eq!(p.first().unwrap().range.start, 0);
    }
}
