//! Counter-based random numbers: element `i` of a seeded draw is a pure function of
//! `(seed, i)`, so results are identical for any thread count and on every backend.
//!
//! The mixer is SplitMix64's finaliser (Steele, Lea & Flood 2014) applied to
//! `seed * golden + i`; normals use Box-Muller on two such uniforms.

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
fn bits(seed: u64, i: u64, stream: u64) -> u64 {
    mix(mix(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03)).wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// Uniform on `[0, 1)` for element `i` of the draw `seed` (53 random bits).
#[inline]
pub fn uniform_at(seed: u64, i: u64) -> f64 {
    (bits(seed, i, 0) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal for element `i` of the draw `seed`.
#[inline]
pub fn normal_at(seed: u64, i: u64) -> f64 {
    let u1 = ((bits(seed, i, 1) >> 11) as f64 + 1.0) * (1.0 / ((1u64 << 53) as f64 + 1.0)); // (0, 1]
    let u2 = uniform_at(seed, i);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_right() {
        let n = 200_000;
        let (mut su, mut sn, mut sn2) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let u = uniform_at(7, i);
            assert!((0.0..1.0).contains(&u));
            su += u;
            let z = normal_at(7, i);
            assert!(z.is_finite());
            sn += z;
            sn2 += z * z;
        }
        let n = n as f64;
        assert!((su / n - 0.5).abs() < 0.005);
        assert!((sn / n).abs() < 0.01);
        assert!((sn2 / n - 1.0).abs() < 0.02);
        assert_ne!(uniform_at(1, 0), uniform_at(2, 0));
    }
}
