//! The vault client: back a secret up across N guardians as Shamir shares
//! and restore it from any K of them.
//!
//! Backup: seal the payload in a [`crate::envelope`] carrying a fresh
//! version, split it into N shares (share i → guardian i), push them
//! in parallel with a per-guardian timeout; stored when W acknowledged.
//! Restore: pull from every guardian in parallel; as answers arrive, let
//! [`recover::recover`] find the newest version that K agreeing shares
//! verify, and stop as soon as the guardians still out can no longer change
//! that result ([`recover::can_stop`]).

pub mod guardian;
pub mod recover;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use guardian::{Guardian, GuardianError, Pulled};
pub use recover::{Candidate, Format, RecoverError, Recovered};

use crate::envelope::{self, EnvelopeError};
use crate::quorum::Quorum;
use crate::shamir::{self, MAX_SHARES, ShamirError, Share};

/// Largest share a guardian accepts (decoded), per the vault API.
pub const MAX_SHARE_BYTES: usize = 512 * 1024;
/// Largest payload that fits: one x byte and the envelope around it.
pub const MAX_PAYLOAD_BYTES: usize = MAX_SHARE_BYTES - 1 - envelope::OVERHEAD;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no guardians given")]
    NoGuardians,
    #[error("at most {MAX_SHARES} guardians are supported")]
    TooManyGuardians,
    #[error("threshold {threshold} is impossible with {guardians} guardian(s)")]
    BadThreshold { threshold: usize, guardians: usize },
    #[error("the secret is {0} bytes; at most {MAX_PAYLOAD_BYTES} fit in a guardian share")]
    TooLarge(usize),
    #[error("invalid secret name {0:?}: use 1-128 characters of [A-Za-z0-9_-]")]
    BadName(String),
    #[error("backup not stored: only {stored} of {needed} required guardians acknowledged")]
    QuorumNotReached {
        stored: usize,
        needed: usize,
        outcomes: Vec<GuardianOutcome>,
    },
    #[error("restore failed: {error}")]
    Unrecoverable {
        error: RecoverError,
        outcomes: Vec<GuardianOutcome>,
    },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Shamir(#[from] ShamirError),
}

/// What happened at one guardian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Backup: share stored.
    Stored,
    /// Restore: the guardian returned a share (with the version it reported).
    Share {
        x: u8,
        version: Option<u64>,
    },
    /// Restore: the guardian has nothing for this identity / name.
    NotFound,
    /// Restore: returned bytes that are not a share.
    Malformed(String),
    /// Restore: its share is on the recovered secret's polynomial.
    Agreed {
        version: u64,
    },
    /// Restore: its share belongs to an older backup.
    Stale,
    /// Restore: its share fits no verifiable backup (corrupt, or a lone newer write).
    Unverified,
    /// Restore: finished before this guardian answered (the secret already
    /// verified and its answer could not have changed the result).
    NotWaited,
    Failed(GuardianError),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Stored => write!(f, "stored"),
            Outcome::Share {
                x,
                version: Some(v),
            } => write!(f, "returned share x={x} (version {v})"),
            Outcome::Share { x, version: None } => write!(f, "returned share x={x}"),
            Outcome::NotFound => write!(f, "has no share"),
            Outcome::Malformed(why) => write!(f, "returned a malformed share ({why})"),
            Outcome::Agreed { version } => write!(f, "share verified (version {version})"),
            Outcome::Stale => write!(f, "share is from an older backup, ignored"),
            Outcome::Unverified => write!(
                f,
                "share does not verify against the others: corrupt or stale, ignored"
            ),
            Outcome::NotWaited => write!(f, "not waited for: the secret already verified"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianOutcome {
    pub url: String,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub struct BackupReport {
    pub version: u64,
    pub quorum: Quorum,
    pub stored: usize,
    pub outcomes: Vec<GuardianOutcome>,
}

#[derive(Debug)]
pub struct RestoreReport {
    pub version: u64,
    pub secret: Zeroizing<Vec<u8>>,
    pub threshold: usize,
    pub outcomes: Vec<GuardianOutcome>,
}

/// The vault identity: 64 lower-case hex characters, SHA-256 of a stable
/// per-user secret (the profile's `vault.key`).
pub fn identity_from_secret(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// A fresh version strictly above `last`: the wall clock in nanoseconds, or
/// `last + 1` when the clock is behind.
pub fn next_version(last: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now.max(last.saturating_add(1))
}

/// V2 secret names: `[A-Za-z0-9_-]{1,128}`.
pub fn validate_name(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(VaultError::BadName(name.to_string()))
    }
}

/// Guardians acting for one vault identity.
pub struct VaultClient {
    guardians: Vec<Guardian>,
    timeout: Duration,
    format: Format,
}

impl VaultClient {
    pub fn new(urls: &[String], identity: &str, timeout: Duration) -> Result<Self, VaultError> {
        if urls.is_empty() {
            return Err(VaultError::NoGuardians);
        }
        if urls.len() > MAX_SHARES {
            return Err(VaultError::TooManyGuardians);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| VaultError::Client(e.to_string()))?;
        Ok(Self {
            guardians: urls
                .iter()
                .map(|u| Guardian::new(http.clone(), u, identity))
                .collect(),
            timeout,
            format: Format::Envelope,
        })
    }

    /// Backs up and restores in `format` (default: [`Format::Envelope`]).
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    pub fn guardians(&self) -> &[Guardian] {
        &self.guardians
    }

    /// The quorum for these guardians and an optional explicit threshold.
    pub fn quorum(&self, threshold: Option<usize>) -> Result<Quorum, VaultError> {
        let n = self.guardians.len();
        let quorum = match threshold {
            None => Quorum::for_guardians(n),
            Some(k) if k >= 1 && k <= n => Quorum::with_threshold(n, k),
            Some(k) => {
                return Err(VaultError::BadThreshold {
                    threshold: k,
                    guardians: n,
                });
            }
        };
        Ok(quorum)
    }

    /// Splits `payload` and pushes share i to guardian i at `version`.
    /// `on_done` sees each guardian's outcome as it arrives (progress).
    pub async fn backup(
        &self,
        payload: &[u8],
        name: Option<&str>,
        threshold: Option<usize>,
        version: u64,
        mut on_done: impl FnMut(&GuardianOutcome),
    ) -> Result<BackupReport, VaultError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(VaultError::TooLarge(payload.len()));
        }
        let quorum = self.quorum(threshold)?;
        let sealed = match self.format {
            Format::Envelope => envelope::seal(
                payload,
                version,
                quorum.threshold as u8,
                name.unwrap_or(""),
                &mut OsRng,
            )?,
            Format::Plain => Zeroizing::new(payload.to_vec()),
        };
        let shares = shamir::split(&sealed, quorum.threshold, self.guardians.len(), &mut OsRng)?;

        let mut pending: FuturesUnordered<_> = self
            .guardians
            .iter()
            .zip(&shares)
            .enumerate()
            .map(|(i, (guardian, share))| async move {
                let bytes = share.to_bytes();
                let push = async {
                    match name {
                        Some(name) => guardian.put_secret(name, &bytes, version).await,
                        None => guardian.push(&bytes, version).await,
                    }
                };
                let result = tokio::time::timeout(self.timeout, push)
                    .await
                    .unwrap_or(Err(GuardianError::Timeout));
                (i, result)
            })
            .collect();
        let mut outcomes: Vec<Option<GuardianOutcome>> = vec![None; self.guardians.len()];
        while let Some((i, result)) = pending.next().await {
            let outcome = match result {
                Ok(()) => Outcome::Stored,
                Err(e) => Outcome::Failed(e),
            };
            let entry = GuardianOutcome {
                url: self.guardians[i].url().to_string(),
                outcome,
            };
            on_done(&entry);
            outcomes[i] = Some(entry);
        }
        let outcomes: Vec<GuardianOutcome> = outcomes.into_iter().flatten().collect();
        let stored = outcomes
            .iter()
            .filter(|o| o.outcome == Outcome::Stored)
            .count();
        if stored < quorum.write_quorum {
            return Err(VaultError::QuorumNotReached {
                stored,
                needed: quorum.write_quorum,
                outcomes,
            });
        }
        Ok(BackupReport {
            version,
            quorum,
            stored,
            outcomes,
        })
    }

    /// Pulls from every guardian in parallel and recovers the newest
    /// version that `threshold` (default: the quorum rule's K) agreeing
    /// shares verify. Returns as soon as that is settled (see
    /// [`recover::can_stop`]) without waiting for slow or dead guardians;
    /// those are reported as [`Outcome::NotWaited`]. In [`Format::Plain`]
    /// it waits for every guardian and applies [`recover::recover_plain`].
    /// `on_done` sees each guardian's raw outcome as it arrives.
    pub async fn restore(
        &self,
        name: Option<&str>,
        threshold: Option<usize>,
        mut on_done: impl FnMut(&GuardianOutcome),
    ) -> Result<RestoreReport, VaultError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let quorum = self.quorum(threshold)?;
        let mut pending: FuturesUnordered<_> = self
            .guardians
            .iter()
            .enumerate()
            .map(|(i, guardian)| async move {
                let pull = async {
                    match name {
                        Some(name) => guardian.get_secret(name).await,
                        None => guardian.pull().await,
                    }
                };
                (
                    i,
                    tokio::time::timeout(self.timeout, pull)
                        .await
                        .unwrap_or(Err(GuardianError::Timeout)),
                )
            })
            .collect();
        let n = self.guardians.len();
        let k = quorum.threshold;
        let name = name.unwrap_or("");
        let mut answered: Vec<Option<Outcome>> = vec![None; n];
        let mut not_found = 0;
        // Kept sorted by guardian, so `recover` reports guardians in order.
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut early = None;
        while let Some((i, result)) = pending.next().await {
            let outcome = match result {
                Ok(Some(Pulled { share, version })) => match Share::from_bytes(&share) {
                    Ok(share) => {
                        let x = share.x;
                        let at = candidates.partition_point(|c| c.guardian < i);
                        candidates.insert(
                            at,
                            Candidate {
                                guardian: i,
                                share,
                                reported_version: version,
                            },
                        );
                        Outcome::Share { x, version }
                    }
                    Err(e) => Outcome::Malformed(e.to_string()),
                },
                Ok(None) => {
                    not_found += 1;
                    Outcome::NotFound
                }
                Err(e) => Outcome::Failed(e),
            };
            let new_share = matches!(outcome, Outcome::Share { .. });
            on_done(&GuardianOutcome {
                url: self.guardians[i].url().to_string(),
                outcome: outcome.clone(),
            });
            answered[i] = Some(outcome);
            // Try as soon as K shares are in, again with every new share (a
            // bad one among the first K only means waiting for more), and
            // stop once the late answers can no longer change the result.
            if new_share
                && self.format == Format::Envelope
                && candidates.len() >= k
                && !pending.is_empty()
                && let Ok(found) = recover::recover(&candidates, k, name)
                && recover::can_stop(&found, n, k, pending.len(), not_found)
            {
                early = Some(found);
                break;
            }
        }
        // Dropping the rest cancels their requests: slow or dead guardians
        // beyond those needed do not delay the result.
        drop(pending);
        let result = match (early, self.format) {
            (Some(found), _) => Ok(found),
            (None, Format::Envelope) => recover::recover(&candidates, k, name),
            // Nothing verifies a plain combination, so every answer counts:
            // no early stop, the ecosystem's newest-version rule.
            (None, Format::Plain) => recover::recover_plain(&candidates, k),
        };
        let mut outcomes: Vec<Outcome> = answered
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::NotWaited))
            .collect();

        let labelled = |outcomes: Vec<Outcome>| -> Vec<GuardianOutcome> {
            outcomes
                .into_iter()
                .zip(&self.guardians)
                .map(|(outcome, g)| GuardianOutcome {
                    url: g.url().to_string(),
                    outcome,
                })
                .collect()
        };
        match result {
            Ok(recovered) => {
                for &i in &recovered.agreeing {
                    outcomes[i] = Outcome::Agreed {
                        version: recovered.version,
                    };
                }
                for &i in &recovered.stale {
                    outcomes[i] = Outcome::Stale;
                }
                for &i in &recovered.unverified {
                    outcomes[i] = Outcome::Unverified;
                }
                Ok(RestoreReport {
                    version: recovered.version,
                    secret: recovered.payload,
                    threshold: quorum.threshold,
                    outcomes: labelled(outcomes),
                })
            }
            Err(error) => Err(VaultError::Unrecoverable {
                error,
                outcomes: labelled(outcomes),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_64_lower_hex() {
        let id = identity_from_secret(&[7u8; 32]);
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn versions_strictly_increase() {
        let a = next_version(0);
        let b = next_version(a);
        assert!(b > a);
        assert_eq!(next_version(u64::MAX - 1), u64::MAX);
    }

    #[test]
    fn names_follow_the_v2_charset() {
        assert!(validate_name("my-api_key1").is_ok());
        for bad in ["", "a/b", "..", "sp ace", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quorum_checks_explicit_thresholds() {
        let urls: Vec<String> = (0..5)
            .map(|i| format!("http://127.0.0.1:{}", 1 + i))
            .collect();
        let client =
            VaultClient::new(&urls, &identity_from_secret(b"s"), Duration::from_secs(1)).unwrap();
        assert_eq!(
            client.quorum(None).unwrap(),
            Quorum {
                threshold: 2,
                write_quorum: 4
            }
        );
        assert!(client.quorum(Some(6)).is_err());
        assert!(client.quorum(Some(0)).is_err());
    }
}
