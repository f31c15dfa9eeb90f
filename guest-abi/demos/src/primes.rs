//! The sieve behind `compute`: counts the primes below a limit with a segmented sieve of
//! Eratosthenes, a segment at a time, so the work can be done in steps with progress in
//! between and in a fixed amount of memory (no allocator: [`Sieve`] is about 70 KiB).
//!
//! The primes up to √limit (the *base primes*) are found first, by trial division; then
//! each segment of [`SEGMENT`] numbers is marked with them and counted. The result is easy
//! to check: there are 78498 primes below 1000000 (π(10⁶), OEIS A006880), the largest
//! being 999983.

/// The largest limit [`Sieve`] accepts: its base primes must fit [`BASE_PRIMES`].
pub const MAX_LIMIT: u64 = 10_000_000_000;
/// How many base primes the largest limit needs: π(√[`MAX_LIMIT`]) = π(100000) = 9592.
pub const BASE_PRIMES: usize = 9592;
/// Numbers sieved at once.
pub const SEGMENT: usize = 32 * 1024;

/// The limit given to [`Sieve::new`] was above [`MAX_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitTooLarge(pub u64);

/// Counting the primes below a limit, in steps.
#[derive(Clone, Debug)]
pub struct Sieve {
    limit: u64,
    /// The primes `p` with `p * p < limit`, in order.
    base: [u32; BASE_PRIMES],
    nbase: usize,
    /// Every number below this has been sieved and counted.
    done: u64,
    count: u64,
    largest: Option<u64>,
    /// Whether each number of the current segment may still be prime.
    segment: [bool; SEGMENT],
}

impl Sieve {
    /// A sieve for the primes below `limit`, with its base primes found; nothing counted
    /// yet.
    pub fn new(limit: u64) -> Result<Self, LimitTooLarge> {
        if limit > MAX_LIMIT {
            return Err(LimitTooLarge(limit));
        }
        let mut sieve = Self {
            limit,
            base: [0; BASE_PRIMES],
            nbase: 0,
            done: 0,
            count: 0,
            largest: None,
            segment: [false; SEGMENT],
        };
        // Trial division by the base primes found so far: n is prime if no prime up to √n
        // divides it. At most 100000 numbers, so this is quick next to the sieve.
        let mut n: u64 = 2;
        while n * n < limit {
            let is_prime = sieve.base[..sieve.nbase]
                .iter()
                .map(|&p| u64::from(p))
                .take_while(|&p| p * p <= n)
                .all(|p| !n.is_multiple_of(p));
            if is_prime {
                // n * n < MAX_LIMIT, so n < 100000 and there are at most BASE_PRIMES of
                // them; n fits a u32.
                sieve.base[sieve.nbase] = n as u32;
                sieve.nbase += 1;
            }
            n += 1;
        }
        Ok(sieve)
    }

    /// A sieve for the primes in `start..limit` (a share of the work of one sieve for
    /// `0..limit`: the base primes are the same): nothing below `start` is ever counted.
    pub fn starting_at(limit: u64, start: u64) -> Result<Self, LimitTooLarge> {
        let mut sieve = Self::new(limit)?;
        sieve.done = start.min(limit);
        Ok(sieve)
    }

    /// The limit: primes below it are counted.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many base primes there are (the primes up to √limit).
    pub fn base_primes(&self) -> usize {
        self.nbase
    }

    /// Every number below this has been counted.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Whether every number below the limit has been counted.
    pub fn is_finished(&self) -> bool {
        self.done >= self.limit
    }

    /// The primes counted so far (those below [`Sieve::done`]).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest prime counted so far.
    pub fn largest(&self) -> Option<u64> {
        self.largest
    }

    /// Sieves and counts every number below `end` (at most the limit) not yet counted.
    pub fn advance_to(&mut self, end: u64) {
        let end = end.min(self.limit);
        while self.done < end {
            let lo = self.done;
            let hi = end.min(lo + SEGMENT as u64);
            self.sieve_segment(lo, hi);
            self.done = hi;
        }
    }

    /// Counts the primes in `lo..hi` (at most `SEGMENT` numbers).
    fn sieve_segment(&mut self, lo: u64, hi: u64) {
        let len = (hi - lo) as usize;
        let segment = &mut self.segment[..len];
        segment.fill(true);
        // 0 and 1 are not prime.
        for n in lo..hi.min(2) {
            segment[(n - lo) as usize] = false;
        }
        for &p in &self.base[..self.nbase] {
            let p = u64::from(p);
            if p * p >= hi {
                break;
            }
            // The first multiple to strike: p * p (smaller multiples have a smaller prime
            // factor, which struck them), or the first multiple in the segment.
            let mut m = (p * p).max(lo.div_ceil(p) * p);
            while m < hi {
                segment[(m - lo) as usize] = false;
                m += p;
            }
        }
        let mut found = 0;
        for (i, &prime) in segment.iter().enumerate() {
            if prime {
                found += 1;
                self.largest = Some(lo + i as u64);
            }
        }
        self.count += found;
    }
}

/// Where step `k` of `steps` ends when the numbers below `limit` are cut into `steps` about
/// equal parts (`k` from 1; the last step ends at `limit`).
pub fn step_end(limit: u64, k: u64, steps: u64) -> u64 {
    let steps = steps.max(1);
    // limit * k / steps without overflow for every limit up to MAX_LIMIT and any k <= steps.
    (u128::from(limit) * u128::from(k.min(steps)) / u128::from(steps)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn naive_count(limit: u64) -> u64 {
        (2..limit)
            .filter(|&n| (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0))
            .count() as u64
    }

    fn count_below(limit: u64) -> (u64, Option<u64>) {
        let mut s = Box::new(Sieve::new(limit).unwrap());
        s.advance_to(limit);
        assert!(s.is_finished());
        (s.count(), s.largest())
    }

    #[test]
    fn shares_add_up_to_the_whole() {
        for (limit, parts) in [(1_000_000u64, 4u64), (200_000, 3), (100, 7), (5, 8)] {
            let mut total = 0;
            let mut largest = None;
            for k in 0..parts {
                let (lo, hi) = (step_end(limit, k, parts), step_end(limit, k + 1, parts));
                let mut s = Box::new(Sieve::starting_at(limit, lo).unwrap());
                s.advance_to(hi);
                assert_eq!(s.done(), hi);
                total += s.count();
                largest = s.largest().or(largest);
            }
            assert_eq!(
                (total, largest),
                count_below(limit),
                "{limit} in {parts} parts"
            );
        }
    }

    #[test]
    fn small_limits_match_trial_division() {
        for limit in (0..200).chain([1000, 4096, 9973, 9974, 70_001]) {
            assert_eq!(count_below(limit).0, naive_count(limit), "below {limit}");
        }
        assert_eq!(count_below(0), (0, None));
        assert_eq!(count_below(2), (0, None));
        assert_eq!(count_below(3), (1, Some(2)));
        assert_eq!(count_below(4), (2, Some(3)));
    }

    #[test]
    fn known_values_of_pi() {
        assert_eq!(count_below(100_000), (9592, Some(99_991)));
        assert_eq!(count_below(1_000_000), (78_498, Some(999_983)));
        assert_eq!(count_below(10_000_000).0, 664_579);
        // What the demo_compute scenario expects of `limit=200k`.
        assert_eq!(count_below(200_000), (17_984, Some(199_999)));
        assert_eq!(Sieve::new(200_000).unwrap().base_primes(), 86);
    }

    #[test]
    fn steps_do_not_change_the_result() {
        let limit = 1_000_000;
        let mut s = Box::new(Sieve::new(limit).unwrap());
        let mut counts = std::vec::Vec::new();
        for k in 1..=7 {
            s.advance_to(step_end(limit, k, 7));
            counts.push(s.count());
        }
        assert_eq!(s.count(), 78_498);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        s.advance_to(u64::MAX);
        assert_eq!(s.count(), 78_498, "nothing counted twice");
        assert_eq!(s.done(), limit);
    }

    #[test]
    fn limits_and_base_primes() {
        assert_eq!(
            Sieve::new(MAX_LIMIT + 1).unwrap_err(),
            LimitTooLarge(MAX_LIMIT + 1)
        );
        let s = Box::new(Sieve::new(MAX_LIMIT).unwrap());
        assert_eq!(s.base_primes(), BASE_PRIMES);
        assert_eq!(Sieve::new(1_000_000).unwrap().base_primes(), 168);
    }

    #[test]
    fn step_ends() {
        assert_eq!(step_end(1_000_000, 1, 10), 100_000);
        assert_eq!(step_end(1_000_000, 10, 10), 1_000_000);
        assert_eq!(step_end(7, 3, 10), 2);
        assert_eq!(step_end(MAX_LIMIT, 9, 10), 9_000_000_000);
        assert_eq!(step_end(5, 1, 0), 5, "zero steps is one step");
    }
}
