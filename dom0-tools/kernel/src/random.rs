//! Random bytes for `getrandom` and `AT_RANDOM`: `RDRAND` when the CPU has it, mixed with
//! the time-stamp counter through SplitMix64 (which is what remains without `RDRAND`: fine
//! for hash-map keys and stack canaries, not for keys; dom0's programs make none).

use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU64, Ordering};

use xenia_guest_rt::time::rdtsc;

static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

fn has_rdrand() -> bool {
    __cpuid(1).ecx & (1 << 30) != 0
}

fn rdrand() -> Option<u64> {
    if !has_rdrand() {
        return None;
    }
    for _ in 0..10 {
        let (value, ok): (u64, u8);
        // SAFETY: RDRAND exists (CPUID.1:ECX[30]); it only writes the two registers.
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack));
        }
        if ok != 0 {
            return Some(value);
        }
    }
    None
}

fn next() -> u64 {
    let seed = rdrand().unwrap_or(0) ^ rdtsc();
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15 ^ seed, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out`.
pub fn fill(out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let v = next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Sixteen bytes.
pub fn bytes16() -> [u8; 16] {
    let mut b = [0; 16];
    fill(&mut b);
    b
}
