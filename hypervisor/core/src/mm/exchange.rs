//! `XENMEM_exchange`, the arithmetic (Xen's `memory_exchange` in `common/memory.c`): how a
//! request splits into chunks, and which new extents satisfy its address limit. The
//! hypervisor (`guest::mmu`) moves the frames.
//!
//! A chunk is the smallest unit that exchanges whole extents on both sides: with input order
//! `i` and output order `o`, `2^(o-i)` input extents for one output extent when `i <= o`,
//! else one input extent for `2^(i-o)` output extents. Each chunk is done completely or not
//! at all, and `nr_exchanged` counts input extents of completed chunks, as in Xen.

use guest_abi::errno::Errno;

/// Largest extent order accepted on either side (2 MiB, a superpage).
pub const MAX_ORDER: u32 = 9;
/// Most frames one call exchanges (Xen continues long calls; Xenia bounds them instead:
/// 8 MiB, far more than a DMA buffer needs).
pub const MAX_FRAMES: u64 = 2048;

/// How a checked request proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Input extents per chunk.
    pub in_per_chunk: u64,
    /// Output extents per chunk.
    pub out_per_chunk: u64,
    /// Chunks in the whole request.
    pub chunks: u64,
    /// The chunk to start at (from `nr_exchanged`).
    pub first_chunk: u64,
}

/// Checks a request: `in_n` extents of order `in_order` for `out_n` of order `out_order`,
/// resumed after `nr_exchanged` input extents. `EINVAL` (Xen's answers) for orders above
/// [`MAX_ORDER`], unequal totals or totals that overflow, and an `nr_exchanged` that is
/// past the end or inside a chunk; `E2BIG` beyond [`MAX_FRAMES`].
pub fn plan(
    in_order: u32,
    in_n: u64,
    out_order: u32,
    out_n: u64,
    nr_exchanged: u64,
) -> Result<Plan, Errno> {
    if in_order > MAX_ORDER || out_order > MAX_ORDER {
        return Err(Errno::EINVAL);
    }
    let total_in = in_n.checked_shl(in_order).filter(|t| t >> in_order == in_n);
    let total_out = out_n
        .checked_shl(out_order)
        .filter(|t| t >> out_order == out_n);
    let total = match (total_in, total_out) {
        (Some(a), Some(b)) if a == b => a,
        _ => return Err(Errno::EINVAL),
    };
    if total > MAX_FRAMES {
        return Err(Errno::E2BIG);
    }
    let (in_per_chunk, out_per_chunk) = if in_order <= out_order {
        (1u64 << (out_order - in_order), 1)
    } else {
        (1, 1u64 << (in_order - out_order))
    };
    if nr_exchanged > in_n || !nr_exchanged.is_multiple_of(in_per_chunk) {
        return Err(Errno::EINVAL);
    }
    Ok(Plan {
        in_per_chunk,
        out_per_chunk,
        chunks: in_n / in_per_chunk,
        first_chunk: nr_exchanged / in_per_chunk,
    })
}

/// Whether the `2^order` frames from `first` all lie below `2^address_bits` bytes (0: no
/// limit; Xen's `XENMEMF_address_bits`).
pub fn below_address_limit(first: u64, order: u32, address_bits: u32) -> bool {
    if address_bits == 0 || address_bits >= 64 {
        return true;
    }
    let end_frame = first.saturating_add(1 << order);
    let limit_frames = 1u64 << address_bits.saturating_sub(12);
    address_bits >= 12 && end_frame <= limit_frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_pages_for_one_order_four_extent() {
        let p = plan(0, 16, 4, 1, 0).unwrap();
        assert_eq!(
            (p.in_per_chunk, p.out_per_chunk, p.chunks, p.first_chunk),
            (16, 1, 1, 0)
        );
        // And back.
        let p = plan(4, 1, 0, 16, 0).unwrap();
        assert_eq!((p.in_per_chunk, p.out_per_chunk, p.chunks), (1, 16, 1));
        // Resumed after the first of two chunks.
        assert_eq!(plan(0, 32, 4, 2, 16).map(|p| p.first_chunk), Ok(1));
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(plan(0, 16, 4, 2, 0), Err(Errno::EINVAL)); // 16 frames for 32
        assert_eq!(plan(0, 16, 10, 0, 0), Err(Errno::EINVAL)); // order too large
        assert_eq!(plan(0, u64::MAX, 0, u64::MAX, 0), Err(Errno::E2BIG));
        assert_eq!(plan(1, u64::MAX, 0, u64::MAX, 0), Err(Errno::EINVAL)); // overflows
        assert_eq!(plan(0, 4096, 0, 4096, 0), Err(Errno::E2BIG));
        assert_eq!(plan(0, 16, 4, 1, 8), Err(Errno::EINVAL)); // inside a chunk
        assert_eq!(plan(0, 16, 4, 1, 17), Err(Errno::EINVAL)); // past the end
        assert_eq!(plan(0, 16, 4, 1, 16).map(|p| p.first_chunk), Ok(1)); // all done
        assert_eq!(plan(0, 0, 4, 0, 0).map(|p| p.chunks), Ok(0));
    }

    #[test]
    fn address_limits() {
        assert!(below_address_limit(0xF_FFF0, 4, 32));
        assert!(!below_address_limit(0xF_FFF1, 4, 32));
        assert!(below_address_limit(u64::MAX - 4, 4, 0));
        assert!(!below_address_limit(0, 0, 8)); // no frame lies below 256 bytes
        assert!(below_address_limit(0xFF, 0, 20));
        assert!(!below_address_limit(0x100, 0, 20));
    }
}
