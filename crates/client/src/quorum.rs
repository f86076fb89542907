//! The ecosystem gateway's quorum rule (`shamir-shares.md`).

/// Read threshold K and write quorum W for `n` guardians.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    /// Shares needed to recover the secret.
    pub threshold: usize,
    /// Acknowledgements needed before a backup counts as stored.
    pub write_quorum: usize,
}

impl Quorum {
    /// K = max(2, ⌊N/3⌋), W = min(N, max(K+1, ⌈2N/3⌉)); N = 1 is the
    /// degenerate "local key" case with K = W = 1.
    pub fn for_guardians(n: usize) -> Self {
        if n <= 1 {
            return Self {
                threshold: n,
                write_quorum: n,
            };
        }
        Self::with_threshold(n, (n / 3).max(2))
    }

    /// The write quorum for an explicit threshold `k`, by the same rule:
    /// W = min(N, max(K+1, ⌈2N/3⌉)).
    pub fn with_threshold(n: usize, k: usize) -> Self {
        if n <= 1 {
            return Self {
                threshold: k.min(n),
                write_quorum: n,
            };
        }
        let write_quorum = n.min((k + 1).max((2 * n).div_ceil(3)));
        Self {
            threshold: k,
            write_quorum,
        }
    }

    /// The smallest write quorum any threshold gives `n` guardians:
    /// min(N, max(2, ⌈2N/3⌉)) (1 for N = 1). A stored backup reached at
    /// least this many guardians, whatever K it was split with.
    pub fn min_write_quorum(n: usize) -> usize {
        (1..=n.max(1))
            .map(|k| Self::with_threshold(n, k).write_quorum)
            .min()
            .unwrap_or(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(n: usize) -> (usize, usize) {
        let q = Quorum::for_guardians(n);
        (q.threshold, q.write_quorum)
    }

    #[test]
    fn rule_table() {
        assert_eq!(kw(1), (1, 1));
        assert_eq!(kw(2), (2, 2));
        assert_eq!(kw(3), (2, 3));
        assert_eq!(kw(4), (2, 3));
        assert_eq!(kw(5), (2, 4));
        assert_eq!(kw(6), (2, 4));
        assert_eq!(kw(9), (3, 6));
        assert_eq!(kw(10), (3, 7));
        assert_eq!(kw(30), (10, 20));
    }

    #[test]
    fn min_write_quorum() {
        let got: Vec<usize> = (1..=10).map(Quorum::min_write_quorum).collect();
        assert_eq!(got, vec![1, 2, 2, 3, 4, 4, 5, 6, 6, 7]);
        assert_eq!(Quorum::min_write_quorum(30), 20);
    }

    #[test]
    fn explicit_threshold() {
        assert_eq!(
            Quorum::with_threshold(5, 4),
            Quorum {
                threshold: 4,
                write_quorum: 5
            }
        );
        assert_eq!(Quorum::with_threshold(5, 2), Quorum::for_guardians(5));
        assert_eq!(
            Quorum::with_threshold(10, 8),
            Quorum {
                threshold: 8,
                write_quorum: 9
            }
        );
    }
}
