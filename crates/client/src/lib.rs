//! Obscura client SDK: identities and pre-keys, the relay client, end-to-end
//! message encryption, the vault client and Shamir secret sharing. The
//! `obscura` binary's client commands live in [`cli`].

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
