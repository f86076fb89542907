//! Curve25519 keys and XEdDSA signatures exactly as libsignal encodes them.
//!
//! * A public key is 33 bytes: the type byte [`DJB_TYPE`] (`0x05`) followed by
//!   the 32-byte Montgomery u-coordinate.
//! * A signature is 64 bytes of XEdDSA in libsignal's variant: the sign bit of
//!   the signer's Edwards public key rides in the top bit of byte 63.
//!
//! Everything is composed from `curve25519-dalek` / `ed25519-dalek`; no
//! field or group arithmetic is written here.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Verifier;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// libsignal's type byte for Curve25519 ("DJB") keys.
pub const DJB_TYPE: u8 = 0x05;
/// Length of a serialized public key.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Length of an XEdDSA signature.
pub const SIGNATURE_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("public key must be {PUBLIC_KEY_LEN} bytes")]
    BadLength,
    #[error("public key must start with type byte 0x05")]
    BadType,
    #[error("signature must be {SIGNATURE_LEN} bytes")]
    BadSignatureLength,
    #[error("invalid signature")]
    BadSignature,
}

/// A libsignal-serialized Curve25519 public key (`0x05 || u`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(05")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl PublicKey {
    /// Parses the 33-byte serialized form, checking the length and the type byte.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(KeyError::BadLength);
        }
        if bytes[0] != DJB_TYPE {
            return Err(KeyError::BadType);
        }
        let mut u = [0u8; 32];
        u.copy_from_slice(&bytes[1..]);
        Ok(Self(u))
    }

    /// The 33-byte serialized form.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The raw 32-byte X25519 public key.
    pub fn montgomery_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Verifies a libsignal XEdDSA signature over `message`.
    ///
    /// The Edwards point is recovered from the Montgomery u-coordinate with
    /// the sign bit carried in `signature[63]`; the bit is then cleared and an
    /// ordinary Ed25519 verification runs.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let sig: [u8; SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| KeyError::BadSignatureLength)?;
        let sign_bit = (sig[63] & 0x80) >> 7;
        let edwards = MontgomeryPoint(self.0)
            .to_edwards(sign_bit)
            .ok_or(KeyError::BadSignature)?;
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(edwards.compress().as_bytes())
            .map_err(|_| KeyError::BadSignature)?;
        let mut clean = sig;
        clean[63] &= 0x7F;
        let sig = ed25519_dalek::Signature::from_bytes(&clean);
        verifying
            .verify(message, &sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// A Curve25519 private key with its public half: usable for X25519
/// agreement and for XEdDSA signing, as libsignal's `KeyPair`.
#[derive(Clone)]
pub struct KeyPair {
    secret: x25519_dalek::StaticSecret,
    public: PublicKey,
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        // StaticSecret zeroizes itself; nothing else secret is held.
    }
}

impl KeyPair {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_secret(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// Restores a key pair from its 32 private bytes (as stored on disk).
    pub fn from_private_bytes(bytes: [u8; 32]) -> Self {
        Self::from_secret(x25519_dalek::StaticSecret::from(bytes))
    }

    fn from_secret(secret: x25519_dalek::StaticSecret) -> Self {
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The 32 private bytes, for storage. Handle with care.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// X25519 Diffie-Hellman with another public key.
    pub fn agree(&self, their: &PublicKey) -> [u8; 32] {
        self.secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(their.0))
            .to_bytes()
    }

    /// Signs `message` with XEdDSA in libsignal's variant (sign bit in byte 63).
    pub fn sign<R: RngCore + CryptoRng>(&self, message: &[u8], rng: &mut R) -> [u8; SIGNATURE_LEN] {
        let mut key_data = self.secret.to_bytes();
        // X25519 clamping, as the scalar the Montgomery public key was made from.
        key_data[0] &= 248;
        key_data[31] &= 127;
        key_data[31] |= 64;
        let a = Scalar::from_bytes_mod_order(key_data);
        let ed_public = (&a * ED25519_BASEPOINT_TABLE).compress();
        let sign_bit = ed_public.as_bytes()[31] & 0x80;

        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        let mut hash1 = Sha512::new();
        hash1.update([0xFFu8; 32]);
        hash1.update(key_data);
        hash1.update(message);
        hash1.update(random);
        let r = Scalar::from_hash(hash1);
        let cap_r = (&r * ED25519_BASEPOINT_TABLE).compress();

        let mut hash = Sha512::new();
        hash.update(cap_r.as_bytes());
        hash.update(ed_public.as_bytes());
        hash.update(message);
        let h = Scalar::from_hash(hash);
        let s = h * a + r;

        let mut out = [0u8; SIGNATURE_LEN];
        out[..32].copy_from_slice(cap_r.as_bytes());
        out[32..].copy_from_slice(s.as_bytes());
        out[63] &= 0x7F;
        out[63] |= sign_bit;
        key_data.zeroize();
        random.zeroize();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn public_key_parsing() {
        let kp = KeyPair::generate(&mut OsRng);
        let bytes = kp.public().to_bytes();
        assert_eq!(bytes[0], 0x05);
        assert_eq!(PublicKey::from_bytes(&bytes).unwrap(), kp.public());
        assert_eq!(PublicKey::from_bytes(&bytes[1..]), Err(KeyError::BadLength));
        let mut wrong = bytes;
        wrong[0] = 0x06;
        assert_eq!(PublicKey::from_bytes(&wrong), Err(KeyError::BadType));
    }

    #[test]
    fn sign_verify_with_both_sign_bits() {
        let mut seen = [false; 2];
        for _ in 0..64 {
            let id = KeyPair::generate(&mut OsRng);
            let msg = KeyPair::generate(&mut OsRng).public().to_bytes();
            let sig = id.sign(&msg, &mut OsRng);
            seen[(sig[63] >> 7) as usize] = true;
            id.public().verify_signature(&msg, &sig).unwrap();
            // Any flipped bit, including the sign bit, must fail.
            let mut bad = sig;
            bad[63] ^= 0x80;
            assert!(id.public().verify_signature(&msg, &bad).is_err());
            let mut bad = sig;
            bad[0] ^= 1;
            assert!(id.public().verify_signature(&msg, &bad).is_err());
            let mut other = msg;
            other[5] ^= 1;
            assert!(id.public().verify_signature(&other, &sig).is_err());
        }
        assert!(seen[0] && seen[1], "both sign-bit values must be exercised");
    }

    /// libsignal's own vector (curve25519.rs `test_signature`); its last byte
    /// 0x88 has the sign bit set, so a verifier forcing it to 0 fails here.
    #[test]
    fn libsignal_vector_verifies() {
        let private = hex("c097248412e58bf05df487968205132794178e367637f5818f81e0e6ce73e865");
        let public = hex("ab7e717d4a163b7d9a1d8071dfe9dcf8cdcd1cea3339b6356be84d887e322c64");
        let message = hex("05edce9d9c415ca78cb7252e72c2c4a554d3eb29485a0e1d503118d1a82d99fb4a");
        let signature = hex(
            "5de88ca9a89b4a115da79109c67c9c7464a3e4180274f1cb8c63c2984e286dfb\
             ede82deb9dcd9fae0bfbb821569b3d9001bd8130cd11d486cef047bd60b86e88",
        );
        let kp = KeyPair::from_private_bytes(private.try_into().unwrap());
        assert_eq!(kp.public().montgomery_bytes().to_vec(), public);
        kp.public().verify_signature(&message, &signature).unwrap();
        for i in 0..signature.len() {
            let mut bad = signature.clone();
            bad[i] ^= 1;
            assert!(
                kp.public().verify_signature(&message, &bad).is_err(),
                "byte {i}"
            );
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn signature_length_checked() {
        let id = KeyPair::generate(&mut OsRng);
        assert_eq!(
            id.public().verify_signature(b"m", &[0u8; 63]),
            Err(KeyError::BadSignatureLength)
        );
    }

    #[test]
    fn agreement_is_symmetric() {
        let a = KeyPair::generate(&mut OsRng);
        let b = KeyPair::generate(&mut OsRng);
        assert_eq!(a.agree(&b.public()), b.agree(&a.public()));
        let restored = KeyPair::from_private_bytes(a.private_bytes());
        assert_eq!(restored.public(), a.public());
    }
}
