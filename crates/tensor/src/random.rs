//! A small, seeded, platform-independent random number generator.
//!
//! polyhead promises that a model built twice with one seed is identical on
//! every machine and every version, so it carries its own generator
//! (xoshiro256++ seeded through SplitMix64) instead of depending on a crate
//! whose stream may change between releases.

/// A seeded xoshiro256++ generator.
///
/// ```
/// use polyhead_tensor::Rng;
/// let mut a = Rng::new(42);
/// let mut b = Rng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let u = a.uniform();
/// assert!((0.0..1.0).contains(&u));
/// ```
#[derive(Debug, Clone)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// A generator whose stream is fully determined by `seed`.
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(0);
    /// assert_ne!(rng.next_u64(), rng.next_u64());
    /// ```
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            state: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(1);
    /// let _bits: u64 = rng.next_u64();
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(2);
    /// assert!((0..1000).map(|_| rng.uniform()).all(|u| (0.0..1.0).contains(&u)));
    /// ```
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal `f64` (Box-Muller transform).
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(3);
    /// assert!(rng.normal().is_finite());
    /// ```
    pub fn normal(&mut self) -> f64 {
        // 1 - uniform() is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A uniform integer in `0..n`, without modulo bias (`0` when `n` is 0).
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(7);
    /// assert!(rng.below(10) < 10);
    /// ```
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Shuffles a slice in place (Fisher-Yates).
    ///
    /// ```
    /// let mut v: Vec<usize> = (0..10).collect();
    /// polyhead_tensor::Rng::new(1).shuffle(&mut v);
    /// let mut sorted = v.clone();
    /// sorted.sort();
    /// assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    /// ```
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
