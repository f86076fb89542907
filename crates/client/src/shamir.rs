//! Shamir secret sharing over GF(2^8), exactly as `shamir-shares.md` fixes it:
//! AES polynomial 0x11B, one polynomial of degree K−1 per secret byte, share
//! `i` evaluated at `x = i`, wire format `[x][y…]`.
//!
//! The field arithmetic is branch-free and table-free (a bitwise
//! multiply, inversion by exponentiation), so neither timing nor cache
//! behaviour depends on secret bytes.

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// Arithmetic in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
pub mod gf256 {
    /// Product of `a` and `b`: shift-and-add with masks instead of branches.
    /// `#[inline]` so the byte loops of `split` and `combine` can vectorise it.
    #[inline]
    pub fn mul(a: u8, b: u8) -> u8 {
        let mut a = a;
        let mut b = b;
        let mut product = 0u8;
        for _ in 0..8 {
            // mask = 0xFF when the low bit of b is set, else 0x00.
            product ^= a & (b & 1).wrapping_neg();
            let carry = (a >> 7).wrapping_neg();
            a = (a << 1) ^ (0x1B & carry);
            b >>= 1;
        }
        product
    }

    /// `base^exp` by square-and-multiply over all 8 exponent bits.
    pub fn pow(base: u8, exp: u8) -> u8 {
        let mut result = 1u8;
        let mut square = base;
        for bit in 0..8 {
            let factor = mul(result, square);
            let mask = ((exp >> bit) & 1).wrapping_neg();
            result = (factor & mask) | (result & !mask);
            square = mul(square, square);
        }
        result
    }

    /// Multiplicative inverse (`a^254`); `inv(0)` is 0, callers never ask for it.
    pub fn inv(a: u8) -> u8 {
        pow(a, 254)
    }

    /// Generator 3 raised to `i` (the spec's `exp` table, computed).
    pub fn exp(i: u8) -> u8 {
        pow(3, i)
    }
}

/// Largest number of shares: x runs over 1..=255.
pub const MAX_SHARES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("threshold must be between 1 and the number of shares ({0})")]
    BadThreshold(usize),
    #[error("between 1 and {MAX_SHARES} shares can be made")]
    BadShareCount,
    #[error("at least 2 shares are needed to combine")]
    TooFewShares,
    #[error("a share has x = 0")]
    ZeroX,
    #[error("two shares have the same x = {0}")]
    DuplicateX(u8),
    #[error("shares have different lengths")]
    LengthMismatch,
    #[error("a share must be at least 2 bytes: [x][y…]")]
    Malformed,
}

/// One share: the point `x` and one `y` byte per secret byte.
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    pub x: u8,
    pub y: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ x: {}, len: {} }}", self.x, self.y.len())
    }
}

impl Share {
    /// Wire form `[x][y…]`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(1 + self.y.len()));
        out.push(self.x);
        out.extend_from_slice(&self.y);
        out
    }

    /// Parses `[x][y…]`; rejects x = 0 and empty y.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShamirError> {
        let (&x, y) = bytes.split_first().ok_or(ShamirError::Malformed)?;
        if y.is_empty() {
            return Err(ShamirError::Malformed);
        }
        if x == 0 {
            return Err(ShamirError::ZeroX);
        }
        Ok(Self {
            x,
            y: Zeroizing::new(y.to_vec()),
        })
    }
}

/// Splits `secret` into `n` shares, any `k` of which recover it.
///
/// `k = 1` is the spec's degenerate "local key" case: every share's `y` is
/// the secret itself.
pub fn split<R: RngCore + CryptoRng>(
    secret: &[u8],
    k: usize,
    n: usize,
    rng: &mut R,
) -> Result<Vec<Share>, ShamirError> {
    if n == 0 || n > MAX_SHARES {
        return Err(ShamirError::BadShareCount);
    }
    if k == 0 || k > n {
        return Err(ShamirError::BadThreshold(n));
    }
    let len = secret.len();
    // Coefficient planes: plane j−1 holds the x^j coefficient of every
    // byte's polynomial (plane-major, so one `fill_bytes` per plane instead
    // of one per secret byte: with `OsRng` that is one syscall per plane).
    let mut planes = Zeroizing::new(vec![0u8; (k - 1) * len]);
    // `len.max(1)`: chunks must be non-empty; with len = 0 there are no planes.
    for plane in planes.chunks_exact_mut(len.max(1)) {
        rng.fill_bytes(plane);
    }
    let shares = (1..=n)
        .map(|x| {
            let x = x as u8;
            // Horner over whole planes, highest coefficient first and the
            // secret last: y = (…(c_{K−1}·x + c_{K−2})·x + …)·x + secret.
            // With K = 1 (no planes) y is the secret itself.
            let mut rows = planes
                .chunks_exact(len.max(1))
                .rev()
                .chain(std::iter::once(secret));
            let mut y = Zeroizing::new(rows.next().unwrap_or_default().to_vec());
            for row in rows {
                // Branch-free byte loop over a whole plane: vectorises.
                for (acc, &c) in y.iter_mut().zip(row) {
                    *acc = gf256::mul(*acc, x) ^ c;
                }
            }
            Share { x, y }
        })
        .collect();
    Ok(shares)
}

/// Evaluates the polynomial with `coefficients` (constant term first) at `x`.
pub fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, &c| gf256::mul(acc, x) ^ c)
}

/// Recovers the secret from at least two shares (Lagrange interpolation at 0).
pub fn combine(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::TooFewShares);
    }
    interpolate_at(shares, 0)
}

/// Evaluates, at `x`, the polynomial of least degree through `shares`.
///
/// With `x = 0` this is [`combine`]; with the `x` of another share it tells
/// whether that share lies on the same polynomial (see `vault`'s agreement
/// check).
pub fn interpolate_at(shares: &[Share], x: u8) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    let first = shares.first().ok_or(ShamirError::TooFewShares)?;
    let len = first.y.len();
    for (i, share) in shares.iter().enumerate() {
        if share.x == 0 {
            return Err(ShamirError::ZeroX);
        }
        if share.y.len() != len {
            return Err(ShamirError::LengthMismatch);
        }
        if shares[..i].iter().any(|other| other.x == share.x) {
            return Err(ShamirError::DuplicateX(share.x));
        }
    }
    // Lagrange basis values at x: l_i = Π_{j≠i} (x − x_j) / (x_i − x_j); in
    // characteristic 2, subtraction is XOR. The x values are public.
    let basis: Vec<u8> = shares
        .iter()
        .map(|si| {
            shares
                .iter()
                .filter(|sj| sj.x != si.x)
                .fold(1u8, |acc, sj| {
                    gf256::mul(acc, gf256::mul(x ^ sj.x, gf256::inv(si.x ^ sj.x)))
                })
        })
        .collect();
    let mut out = Zeroizing::new(vec![0u8; len]);
    for (share, &l) in shares.iter().zip(&basis) {
        for (acc, &y) in out.iter_mut().zip(share.y.iter()) {
            *acc ^= gf256::mul(y, l);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::gf256::*;
    use super::*;
    use rand_core::OsRng;

    fn share(x: u8, y: &[u8]) -> Share {
        Share {
            x,
            y: Zeroizing::new(y.to_vec()),
        }
    }

    #[test]
    fn spec_exp_table() {
        assert_eq!(exp(10), 114);
        assert_eq!(exp(50), 4);
        assert_eq!(exp(254), 246);
        assert_eq!(exp(0), 1);
    }

    #[test]
    fn spec_multiply() {
        assert_eq!(mul(2, 170), 79);
        assert_eq!(mul(255, 255), 19);
        assert_eq!(mul(0, 77), 0);
        assert_eq!(mul(1, 77), 77);
    }

    #[test]
    fn spec_inverse() {
        assert_eq!(inv(2), 141);
        assert_eq!(inv(3), 246);
        assert_eq!(inv(255), 28);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "a = {a}");
        }
    }

    #[test]
    fn generator_3_cycles_through_every_nonzero_element() {
        let mut seen = [false; 256];
        for i in 0..255u8 {
            seen[exp(i) as usize] = true;
        }
        assert!(seen[1..].iter().all(|&s| s));
    }

    #[test]
    fn spec_evaluate() {
        let p = [42u8, 5, 7];
        let got: Vec<u8> = (1..=5).map(|x| evaluate(&p, x)).collect();
        assert_eq!(got, vec![40, 60, 62, 78, 76]);
        assert_eq!(evaluate(&p, 255), 125);
    }

    #[test]
    fn spec_combine_two_byte_secret() {
        let shares = [
            share(1, &[40, 102]),
            share(3, &[62, 50]),
            share(5, &[76, 152]),
        ];
        assert_eq!(combine(&shares).unwrap().as_slice(), &[42, 0]);
        // Two points of a degree-2 polynomial determine a different line.
        assert_ne!(combine(&shares[..2]).unwrap().as_slice(), &[42, 0]);
    }

    #[test]
    fn spec_share_wire_format() {
        let s = share(3, &[62, 50]);
        assert_eq!(s.to_bytes().as_slice(), &[3, 62, 50]);
        assert_eq!(Share::from_bytes(&[3, 62, 50]).unwrap(), s);
        assert_eq!(Share::from_bytes(&[0, 1]), Err(ShamirError::ZeroX));
        assert_eq!(Share::from_bytes(&[1]), Err(ShamirError::Malformed));
        assert_eq!(Share::from_bytes(&[]), Err(ShamirError::Malformed));
    }

    #[test]
    fn spec_rejections() {
        assert_eq!(combine(&[share(1, &[1])]), Err(ShamirError::TooFewShares));
        assert_eq!(
            combine(&[share(0, &[1]), share(1, &[1])]),
            Err(ShamirError::ZeroX)
        );
        assert_eq!(
            combine(&[share(2, &[1]), share(2, &[1])]),
            Err(ShamirError::DuplicateX(2))
        );
        assert_eq!(
            combine(&[share(1, &[1]), share(2, &[1, 2])]),
            Err(ShamirError::LengthMismatch)
        );
    }

    #[test]
    fn split_then_combine_any_k_subset() {
        let secret = b"correct horse battery staple".to_vec();
        let shares = split(&secret, 3, 5, &mut OsRng).unwrap();
        assert_eq!(
            shares.iter().map(|s| s.x).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let subset = [shares[a].clone(), shares[b].clone(), shares[c].clone()];
                    assert_eq!(combine(&subset).unwrap().as_slice(), secret.as_slice());
                }
            }
        }
        // Two shares of a K=3 split do not give the secret (overwhelmingly).
        assert_ne!(combine(&shares[..2]).unwrap().as_slice(), secret.as_slice());
    }

    #[test]
    fn interpolation_predicts_the_other_shares() {
        let shares = split(b"abc", 2, 4, &mut OsRng).unwrap();
        let predicted = interpolate_at(&shares[..2], 4).unwrap();
        assert_eq!(predicted.as_slice(), shares[3].y.as_slice());
    }

    /// Hands out scripted bytes, so tests can fix the coefficients.
    struct ScriptedRng(std::vec::IntoIter<u8>);

    impl RngCore for ScriptedRng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.0.next().expect("script long enough");
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    // Test-only: the marker lets `split` accept the scripted bytes.
    impl CryptoRng for ScriptedRng {}

    fn scripted(bytes: Vec<u8>) -> ScriptedRng {
        ScriptedRng(bytes.into_iter())
    }

    #[test]
    fn split_reproduces_the_spec_vectors() {
        // p(x) = 42 + 5x + 7x²: the spec's evaluate vector, through split.
        let shares = split(&[42], 3, 5, &mut scripted(vec![5, 7])).unwrap();
        let ys: Vec<u8> = shares.iter().map(|s| s.y[0]).collect();
        assert_eq!(ys, vec![40, 60, 62, 78, 76]);

        // The spec's two-byte combine vector: find the second byte's
        // polynomial 0 + a·x + b·x² through (1,102), (3,50), (5,152), then
        // split [42, 0] with the planes drawn plane by plane: [5, a], [7, b].
        let (a, b) = (0..=255u8)
            .flat_map(|a| (0..=255u8).map(move |b| (a, b)))
            .find(|&(a, b)| {
                [(1, 102), (3, 50), (5, 152)]
                    .iter()
                    .all(|&(x, y)| evaluate(&[0, a, b], x) == y)
            })
            .expect("the vector lies on a degree-2 polynomial");
        let shares = split(&[42, 0], 3, 5, &mut scripted(vec![5, a, 7, b])).unwrap();
        assert_eq!(shares[0], share(1, &[40, 102]));
        assert_eq!(shares[2], share(3, &[62, 50]));
        assert_eq!(shares[4], share(5, &[76, 152]));
    }

    #[test]
    fn split_matches_per_byte_evaluation() {
        // Plane-major draw: bytes 0..len are the x¹ coefficients, then x², …
        let secret: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
        for k in 1..=4 {
            let script: Vec<u8> = (0..(k - 1) * secret.len())
                .map(|i| (i * 101 % 251) as u8)
                .collect();
            let shares = split(&secret, k, 6, &mut scripted(script.clone())).unwrap();
            for s in &shares {
                for (b, &byte) in secret.iter().enumerate() {
                    let mut poly = vec![byte];
                    poly.extend((0..k - 1).map(|j| script[j * secret.len() + b]));
                    assert_eq!(s.y[b], evaluate(&poly, s.x), "k={k} x={} byte {b}", s.x);
                }
            }
        }
    }

    #[test]
    fn empty_secret_gives_empty_shares() {
        let shares = split(&[], 2, 3, &mut OsRng).unwrap();
        assert!(shares.iter().all(|s| s.y.is_empty()));
    }

    #[test]
    fn threshold_one_is_the_local_key_case() {
        let shares = split(b"k", 1, 1, &mut OsRng).unwrap();
        assert_eq!(shares[0].y.as_slice(), b"k");
        assert_eq!(
            split(b"k", 0, 1, &mut OsRng),
            Err(ShamirError::BadThreshold(1))
        );
        assert_eq!(
            split(b"k", 3, 2, &mut OsRng),
            Err(ShamirError::BadThreshold(2))
        );
        assert_eq!(
            split(b"k", 1, 256, &mut OsRng),
            Err(ShamirError::BadShareCount)
        );
    }
}
