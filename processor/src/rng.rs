//! `SplitMix64`: the one small deterministic generator of the crate.
//!
//! Tiny, fast and stable across releases (unlike `rand`'s `StdRng`), so a
//! seed names the same generated events and the same isolation-forest
//! splits forever.

/// `SplitMix64` (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "53 bits are exact")]
        let x = (self.next_u64() >> 11) as f64;
        x / (1u64 << 53) as f64
    }

    /// `next_u64() % n`, or 0 when `n` is 0 (the generator's profiles).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `0..n` (`n > 0`) by multiply-shift, without modulo bias
    /// (the isolation forest's sampling and splits).
    pub fn index(&mut self, n: usize) -> usize {
        #[allow(clippy::cast_possible_truncation, reason = "the result is below n")]
        let r = ((u128::from(self.next_u64()) * n as u128) >> 64) as usize;
        r
    }
}
