//! Obscura client SDK: identities and pre-keys, the relay client, end-to-end
//! message encryption, the vault client and Shamir secret sharing. The
//! `obscura` binary's client commands live in [`cli`].
//!
//! Module map:
//! * [`profile`] — the profile directory; atomic, fsync'd, 0600 files.
//! * [`identity`] — libsignal-encoded identity / signed / one-time pre-keys.
//! * [`relay`] — REST client (transparent token refresh) and [`relay::gateway`].
//! * [`crypto`] — HPKE message sealing to a verified bundle; [`inbox`] — the
//!   receive pipeline (decrypt, check sender, store durably, then ACK).
//! * [`attachment`] — streamed chunked HPKE encryption of attachments.
//! * [`shamir`] (GF(2^8), constant time), [`quorum`] (K and W), [`envelope`]
//!   (MAC'd, versioned wrapper of a backed-up secret), [`vault`] (guardian
//!   client, parallel fan-out, recovery search).

pub mod attachment;
pub(crate) mod b64;
pub mod cli;
pub mod crypto;
pub mod envelope;
pub mod identity;
pub mod inbox;
pub mod profile;
pub mod quorum;
pub mod relay;
pub mod shamir;
pub mod vault;
