//! Choosing and combining shares: the pure part of a restore.
//!
//! Guardians may be stale (an older backup), faulty (a wrong share) or
//! silent about versions (V1 pull returns only the share). So instead of
//! trusting any one of them, the search combines K-subsets and accepts only a
//! combination whose envelope MAC verifies (and whose envelope version
//! matches every version a guardian reported). The polynomial that subset
//! defines then classifies every other share: on it (agreeing), or not
//! (stale or corrupt). The newest verified version wins.

use zeroize::Zeroizing;

use crate::envelope;
use crate::quorum::Quorum;
use crate::shamir::{self, Share};

/// Upper bounds on the search, so a hostile set of guardians cannot make a
/// restore run forever: combinations tried, and share bytes combined.
const MAX_ATTEMPTS: usize = 10_000;
const MAX_WORK_BYTES: usize = 256 * 1024 * 1024;

/// A share one guardian returned.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the guardian in the caller's list.
    pub guardian: usize,
    pub share: Share,
    pub reported_version: Option<u64>,
}

#[derive(Debug)]
pub struct Recovered {
    pub version: u64,
    pub payload: Zeroizing<Vec<u8>>,
    /// Guardians whose share lies on the recovered polynomial.
    pub agreeing: Vec<usize>,
    /// Guardians whose share belongs to an older verified backup.
    pub stale: Vec<usize>,
    /// Guardians whose share fits no verified backup: corrupt or foreign.
    pub unverified: Vec<usize>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecoverError {
    #[error("only {available} share(s) available, {needed} needed")]
    NotEnoughShares { available: usize, needed: usize },
    #[error(
        "no {needed} of the {available} shares combine into a valid secret (corrupt or mixed shares)"
    )]
    NoValidCombination { available: usize, needed: usize },
}

struct Found {
    version: u64,
    payload: Zeroizing<Vec<u8>>,
    members: Vec<usize>,
}

/// Recovers the newest verifiable secret from `candidates` with threshold `k`.
pub fn recover(candidates: &[Candidate], k: usize, name: &str) -> Result<Recovered, RecoverError> {
    let k = k.max(1);
    if candidates.len() < k {
        return Err(RecoverError::NotEnoughShares {
            available: candidates.len(),
            needed: k,
        });
    }
    // Newest reported versions first; unreported ones could be anything.
    let mut pool: Vec<usize> = (0..candidates.len()).collect();
    pool.sort_by_key(|&i| std::cmp::Reverse(candidates[i].reported_version.unwrap_or(u64::MAX)));

    let share_len = candidates
        .iter()
        .map(|c| c.share.y.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let max_attempts = (MAX_WORK_BYTES / (k * share_len)).clamp(1, MAX_ATTEMPTS);
    let mut found: Vec<Found> = Vec::new();
    let mut attempts = 0;
    'search: while pool.len() >= k {
        for subset in Combinations::new(pool.len(), k) {
            attempts += 1;
            if attempts > max_attempts {
                break 'search;
            }
            let members: Vec<&Candidate> = subset.iter().map(|&i| &candidates[pool[i]]).collect();
            if let Some(f) = try_subset(&members, candidates, &pool, name) {
                pool.retain(|i| !f.members.contains(i));
                found.push(f);
                continue 'search;
            }
        }
        break;
    }

    let Some(best_at) = (0..found.len()).max_by_key(|&i| found[i].version) else {
        return Err(RecoverError::NoValidCombination {
            available: candidates.len(),
            needed: k,
        });
    };
    let best = found.swap_remove(best_at);
    let stale: Vec<usize> = found
        .iter()
        .flat_map(|f| &f.members)
        .map(|&i| candidates[i].guardian)
        .collect();
    let unverified = pool.iter().map(|&i| candidates[i].guardian).collect();
    Ok(Recovered {
        version: best.version,
        payload: best.payload,
        agreeing: best
            .members
            .iter()
            .map(|&i| candidates[i].guardian)
            .collect(),
        stale,
        unverified,
    })
}

/// How a backup lays out the secret it splits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// This client's envelope (magic, version, MAC) around the payload:
    /// restore verifies every combination it returns.
    #[default]
    Envelope,
    /// The payload itself, as other Orama clients split it
    /// (`shamir-shares.md`): interoperable, but nothing verifies a
    /// combination (see [`recover_plain`]).
    Plain,
}

/// Recovers a [`Format::Plain`] secret with the ecosystem's rule: the
/// newest reported version for which at least `k` shares came back (V1
/// reports no version: all shares are one group). Within that group the
/// polynomial most shares lie on wins (first found on a tie); shares off it
/// are reported unverified, shares of older versions stale. With exactly
/// `k` shares nothing can be cross-checked: plain shares carry no check
/// value, so a wrong share there yields a wrong secret.
pub fn recover_plain(candidates: &[Candidate], k: usize) -> Result<Recovered, RecoverError> {
    let k = k.max(1);
    if candidates.len() < k {
        return Err(RecoverError::NotEnoughShares {
            available: candidates.len(),
            needed: k,
        });
    }
    let mut versions: Vec<Option<u64>> = candidates.iter().map(|c| c.reported_version).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    let group_of = |v: Option<u64>| -> Vec<usize> {
        (0..candidates.len())
            .filter(|&i| candidates[i].reported_version == v)
            .collect()
    };
    let Some((version, group)) = versions
        .into_iter()
        .map(|v| (v, group_of(v)))
        .find(|(_, g)| g.len() >= k)
    else {
        return Err(RecoverError::NoValidCombination {
            available: candidates.len(),
            needed: k,
        });
    };
    let share_len = candidates[group[0]].share.y.len().max(1);
    let max_attempts = (MAX_WORK_BYTES / (k * share_len)).clamp(1, MAX_ATTEMPTS);
    let mut best: Option<(Vec<usize>, Zeroizing<Vec<u8>>)> = None;
    for subset in Combinations::new(group.len(), k).take(max_attempts) {
        let shares: Vec<Share> = subset
            .iter()
            .map(|&i| candidates[group[i]].share.clone())
            .collect();
        // One share (the local-key case) is the secret itself.
        let Ok(secret) = shamir::interpolate_at(&shares, 0) else {
            continue;
        };
        let on_it: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&i| {
                let c = &candidates[i];
                c.share.y.len() == shares[0].y.len()
                    && shamir::interpolate_at(&shares, c.share.x)
                        .is_ok_and(|y| y.as_slice() == c.share.y.as_slice())
            })
            .collect();
        if best.as_ref().is_none_or(|(m, _)| on_it.len() > m.len()) {
            let all = on_it.len() == group.len();
            best = Some((on_it, secret));
            if all {
                break;
            }
        }
    }
    let Some((members, payload)) = best else {
        return Err(RecoverError::NoValidCombination {
            available: candidates.len(),
            needed: k,
        });
    };
    let guardian = |i: &usize| candidates[*i].guardian;
    Ok(Recovered {
        version: version.unwrap_or(0),
        payload,
        agreeing: members.iter().map(guardian).collect(),
        stale: (0..candidates.len())
            .filter(|&i| candidates[i].reported_version < version)
            .map(|i| candidates[i].guardian)
            .collect(),
        unverified: (0..candidates.len())
            .filter(|&i| !members.contains(&i) && candidates[i].reported_version >= version)
            .map(|i| candidates[i].guardian)
            .collect(),
    })
}

/// Whether a restore may stop waiting for the `pending` guardians that have
/// not answered yet, given `recovered` from the answers so far (`n`
/// guardians, threshold `k`, `not_found` of them said they hold nothing).
///
/// Waiting can only matter if the late answers could make a *newer* version
/// verify. That is ruled out when either
/// - fewer than `k` shares could still belong to another version: the
///   unverified ones plus the pending ones (then the result equals what
///   waiting for everyone would give), or
/// - too few guardians remain that could hold a newer *stored* backup: a
///   backup is stored only once at least [`Quorum::min_write_quorum`]
///   guardians acknowledged it, and a guardian whose share is on this
///   version's polynomial, on an older one, or that has no share, does not
///   hold a newer one. A newer write that was never acknowledged (it reached
///   fewer than W guardians) may then be passed over for the last stored one.
pub fn can_stop(
    recovered: &Recovered,
    n: usize,
    k: usize,
    pending: usize,
    not_found: usize,
) -> bool {
    if pending == 0 || recovered.unverified.len() + pending < k {
        return true;
    }
    let not_newer = recovered.agreeing.len() + recovered.stale.len() + not_found;
    n.saturating_sub(not_newer) < Quorum::min_write_quorum(n)
}

/// Combines `members`; on a verified envelope, returns it with every pool
/// candidate (indices into `all`) that lies on the same polynomial.
fn try_subset(
    members: &[&Candidate],
    all: &[Candidate],
    pool: &[usize],
    name: &str,
) -> Option<Found> {
    let reported = members.iter().find_map(|c| c.reported_version);
    if members
        .iter()
        .any(|c| c.reported_version.is_some_and(|v| Some(v) != reported))
    {
        return None;
    }
    let shares: Vec<Share> = members.iter().map(|c| c.share.clone()).collect();
    let secret = if shares.len() == 1 {
        shares[0].y.clone()
    } else {
        shamir::combine(&shares).ok()?
    };
    let opened = envelope::open(&secret, name).ok()?;
    if reported.is_some_and(|v| v != opened.version) || shares.len() < usize::from(opened.threshold)
    {
        return None;
    }
    let fits = |c: &Candidate| {
        c.reported_version.is_none_or(|v| v == opened.version)
            && c.share.y.len() == shares[0].y.len()
            && shamir::interpolate_at(&shares, c.share.x)
                .is_ok_and(|y| y.as_slice() == c.share.y.as_slice())
    };
    let members = pool.iter().copied().filter(|&i| fits(&all[i])).collect();
    Some(Found {
        version: opened.version,
        payload: opened.payload,
        members,
    })
}

/// Lexicographic k-combinations of 0..n.
struct Combinations {
    n: usize,
    indices: Vec<usize>,
    done: bool,
}

impl Combinations {
    fn new(n: usize, k: usize) -> Self {
        Self {
            n,
            indices: (0..k).collect(),
            done: k > n || k == 0,
        }
    }
}

impl Iterator for Combinations {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.done {
            return None;
        }
        let current = self.indices.clone();
        let k = self.indices.len();
        // Advance the rightmost index that can still move.
        match (0..k).rev().find(|&i| self.indices[i] < self.n - k + i) {
            Some(i) => {
                self.indices[i] += 1;
                for j in i + 1..k {
                    self.indices[j] = self.indices[j - 1] + 1;
                }
            }
            None => self.done = true,
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn backup(payload: &[u8], version: u64, k: usize, n: usize) -> Vec<Share> {
        let sealed = envelope::seal(payload, version, k as u8, "", &mut OsRng).unwrap();
        shamir::split(&sealed, k, n, &mut OsRng).unwrap()
    }

    fn candidates(shares: &[Share], report: Option<u64>) -> Vec<Candidate> {
        shares
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate {
                guardian: i,
                share: s.clone(),
                reported_version: report,
            })
            .collect()
    }

    #[test]
    fn combinations_enumerate_all() {
        assert_eq!(Combinations::new(4, 2).count(), 6);
        assert_eq!(Combinations::new(5, 5).count(), 1);
        assert_eq!(Combinations::new(2, 3).count(), 0);
        assert_eq!(
            Combinations::new(3, 1).collect::<Vec<_>>(),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn all_good_shares_agree() {
        let shares = backup(b"secret", 5, 2, 5);
        let r = recover(&candidates(&shares, None), 2, "").unwrap();
        assert_eq!(r.payload.as_slice(), b"secret");
        assert_eq!(r.version, 5);
        assert_eq!(r.agreeing, vec![0, 1, 2, 3, 4]);
        assert!(r.stale.is_empty() && r.unverified.is_empty());
    }

    #[test]
    fn one_corrupt_share_is_identified_and_tolerated() {
        let shares = backup(b"secret", 5, 2, 3);
        let mut cands = candidates(&shares, Some(5));
        cands[0].share.y[3] ^= 0x40;
        let r = recover(&cands, 2, "").unwrap();
        assert_eq!(r.payload.as_slice(), b"secret");
        assert_eq!(r.agreeing, vec![1, 2]);
        assert_eq!(r.unverified, vec![0]);
    }

    #[test]
    fn corrupt_share_with_too_few_good_ones_is_refused() {
        let shares = backup(b"secret", 5, 2, 2);
        let mut cands = candidates(&shares, None);
        cands[1].share.y[0] ^= 1;
        assert_eq!(
            recover(&cands, 2, "").unwrap_err(),
            RecoverError::NoValidCombination {
                available: 2,
                needed: 2
            }
        );
    }

    #[test]
    fn fewer_than_k_shares_are_refused() {
        let shares = backup(b"secret", 5, 3, 5);
        let cands = candidates(&shares[..2], None);
        assert_eq!(
            recover(&cands, 3, "").unwrap_err(),
            RecoverError::NotEnoughShares {
                available: 2,
                needed: 3
            }
        );
        // Asking for fewer than the split's threshold never yields a wrong secret.
        assert!(recover(&cands, 2, "").is_err());
    }

    #[test]
    fn newest_version_wins_and_stale_shares_are_reported() {
        let old = backup(b"old", 1, 2, 4);
        let new = backup(b"new", 2, 2, 4);
        // Guardians 0..=2 got the new backup, guardian 3 missed it.
        let mut mixed: Vec<Share> = new[..3].to_vec();
        mixed.push(old[3].clone());
        for report in [false, true] {
            let cands: Vec<Candidate> = mixed
                .iter()
                .enumerate()
                .map(|(i, s)| Candidate {
                    guardian: i,
                    share: s.clone(),
                    reported_version: report.then_some(if i == 3 { 1 } else { 2 }),
                })
                .collect();
            let r = recover(&cands, 2, "").unwrap();
            assert_eq!(r.payload.as_slice(), b"new");
            assert_eq!(r.version, 2);
            assert_eq!(r.agreeing, vec![0, 1, 2]);
            assert_eq!(r.unverified, vec![3], "a lone old share cannot be verified");
        }
    }

    #[test]
    fn newest_version_with_too_few_shares_falls_back_to_an_older_complete_one() {
        let old = backup(b"old", 1, 2, 3);
        let new = backup(b"new", 2, 2, 3);
        let cands = vec![
            Candidate {
                guardian: 0,
                share: new[0].clone(),
                reported_version: Some(2),
            },
            Candidate {
                guardian: 1,
                share: old[1].clone(),
                reported_version: Some(1),
            },
            Candidate {
                guardian: 2,
                share: old[2].clone(),
                reported_version: Some(1),
            },
        ];
        let r = recover(&cands, 2, "").unwrap();
        assert_eq!(r.payload.as_slice(), b"old");
        assert_eq!(r.agreeing, vec![1, 2]);
        assert_eq!(r.unverified, vec![0]);
    }

    #[test]
    fn a_lying_version_report_is_not_believed() {
        let shares = backup(b"secret", 5, 2, 3);
        let cands = candidates(&shares, Some(6));
        assert!(recover(&cands, 2, "").is_err());
    }

    #[test]
    fn wrong_name_is_refused() {
        let sealed = envelope::seal(b"s", 1, 2, "alpha", &mut OsRng).unwrap();
        let shares = shamir::split(&sealed, 2, 3, &mut OsRng).unwrap();
        assert!(recover(&candidates(&shares, None), 2, "beta").is_err());
        assert!(recover(&candidates(&shares, None), 2, "alpha").is_ok());
    }

    fn recovered(agreeing: &[usize], stale: &[usize], unverified: &[usize]) -> Recovered {
        Recovered {
            version: 1,
            payload: Zeroizing::new(Vec::new()),
            agreeing: agreeing.to_vec(),
            stale: stale.to_vec(),
            unverified: unverified.to_vec(),
        }
    }

    #[test]
    fn stops_at_k_when_no_newer_stored_backup_can_exist() {
        // N = 3, K = 2: two agreeing shares leave one guardian, too few
        // for K shares of anything else.
        assert!(can_stop(&recovered(&[0, 1], &[], &[]), 3, 2, 1, 0));
        // N = 5, K = 2 (W ≥ 4): two agreeing leave three: fewer than 4.
        assert!(can_stop(&recovered(&[0, 1], &[], &[]), 5, 2, 3, 0));
        // N = 6, K = 2 (W ≥ 4): four others could hold a newer stored
        // backup and two of them are still out (two failed): wait…
        assert!(!can_stop(&recovered(&[0, 1], &[], &[]), 6, 2, 2, 0));
        // …unless one of the answers was "no share".
        assert!(can_stop(&recovered(&[0, 1], &[], &[]), 6, 2, 2, 1));
        // A stale share counts as "not newer" too.
        assert!(can_stop(&recovered(&[0, 1], &[2], &[]), 6, 2, 3, 0));
    }

    #[test]
    fn waits_while_pending_answers_could_make_a_newer_version() {
        // N = 9, K = 3 (W ≥ 6): three agreeing leave six that could hold a
        // newer stored backup.
        assert!(!can_stop(&recovered(&[0, 1, 2], &[], &[]), 9, 3, 6, 0));
        // Fewer than K shares could still come together: stop.
        assert!(can_stop(&recovered(&[0, 1, 2], &[], &[]), 9, 3, 2, 0));
        assert!(!can_stop(&recovered(&[0, 1, 2], &[], &[3]), 9, 3, 2, 0));
        // Nothing pending: the answer is final.
        assert!(can_stop(&recovered(&[0, 1], &[], &[2, 3]), 4, 2, 0, 0));
    }

    #[test]
    fn single_guardian_local_key_case() {
        let shares = backup(b"solo", 9, 1, 1);
        let r = recover(&candidates(&shares, None), 1, "").unwrap();
        assert_eq!(r.payload.as_slice(), b"solo");
    }

    fn plain(payload: &[u8], k: usize, n: usize) -> Vec<Share> {
        shamir::split(payload, k, n, &mut OsRng).unwrap()
    }

    #[test]
    fn plain_takes_the_newest_version_with_k_shares() {
        let old = plain(b"old secret", 2, 3);
        let new = plain(b"new secret", 2, 3);
        let mut c = candidates(&old, Some(1));
        // Guardians 0 and 1 got the new backup; 2 still has the old one.
        c[0].share = new[0].clone();
        c[0].reported_version = Some(2);
        c[1].share = new[1].clone();
        c[1].reported_version = Some(2);
        let r = recover_plain(&c, 2).unwrap();
        assert_eq!(r.payload.as_slice(), b"new secret");
        assert_eq!((r.version, r.agreeing, r.stale), (2, vec![0, 1], vec![2]));
        assert!(r.unverified.is_empty());
        // Only one share of version 3: not enough, version 2 still wins.
        c[2].share = plain(b"newest", 2, 3)[2].clone();
        c[2].reported_version = Some(3);
        assert_eq!(recover_plain(&c, 2).unwrap().version, 2);
    }

    #[test]
    fn plain_without_versions_follows_the_polynomial_most_shares_lie_on() {
        let a = plain(b"majority", 2, 5);
        let b = plain(b"minority", 2, 5);
        // V1 reports no version: guardians 1 and 3 hold another backup.
        let mut c = candidates(&a, None);
        c[1].share = b[1].clone();
        c[3].share = b[3].clone();
        let r = recover_plain(&c, 2).unwrap();
        assert_eq!(r.payload.as_slice(), b"majority");
        assert_eq!((r.agreeing, r.unverified), (vec![0, 2, 4], vec![1, 3]));
    }

    #[test]
    fn plain_needs_k_shares_and_handles_the_local_key() {
        let shares = plain(b"abc", 3, 3);
        assert_eq!(
            recover_plain(&candidates(&shares[..2], None), 3).unwrap_err(),
            RecoverError::NotEnoughShares {
                available: 2,
                needed: 3
            }
        );
        let solo = plain(b"solo", 1, 1);
        let r = recover_plain(&candidates(&solo, Some(4)), 1).unwrap();
        assert_eq!((r.payload.as_slice(), r.version), (&b"solo"[..], 4));
    }

    #[test]
    fn envelope_restore_refuses_plain_shares() {
        let shares = plain(b"no envelope here", 2, 3);
        assert!(matches!(
            recover(&candidates(&shares, None), 2, ""),
            Err(RecoverError::NoValidCombination { .. })
        ));
    }
}
