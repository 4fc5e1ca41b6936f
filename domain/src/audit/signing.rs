//! The server's Ed25519 report key, its public half in text form, and signed chain heads
//! (checkpoints).
//!
//! One key signs both report manifests and checkpoints, so each signed message starts with its
//! own domain-separation line: a checkpoint signature can never be replayed as a report
//! signature, or the other way round.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{ChainHash, ChainHead, canonical_time};

/// The first line of every signed checkpoint message.
pub const CHECKPOINT_DOMAIN: &str = "cryptopulse-checkpoint-v1";

const KEY_PREFIX: &str = "ed25519:";

/// The server's Ed25519 report/checkpoint key. No Debug of the secret; zeroized on drop
/// (`SigningKey` zeroizes itself with the crate's `zeroize` feature).
pub struct ReportKey {
    key: SigningKey,
}

impl ReportKey {
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self::from_secret_bytes(*bytes)
    }

    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self {
            key: SigningKey::from_bytes(&bytes),
        }
    }

    /// Only for sealing the key through the KMS.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    pub fn public_key(&self) -> ReportPublicKey {
        ReportPublicKey::from_bytes(&self.key.verifying_key().to_bytes())
    }

    /// Signs `message`; the signature in lowercase hex (128 characters).
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for ReportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportKey")
            .field("public_key", &self.public_key().as_str())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key. Text form `ed25519:<64 lowercase hex>`; `parse` also accepts bare hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReportPublicKey(String);

impl ReportPublicKey {
    fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(format!("{KEY_PREFIX}{}", hex::encode(bytes)))
    }

    /// Accepts `ed25519:<hex>` or bare hex (either case, surrounding whitespace ignored), but
    /// only a point that is a valid Ed25519 public key.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let hex_part = raw.strip_prefix(KEY_PREFIX).unwrap_or(raw);
        let bytes: [u8; 32] = hex::decode(hex_part).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()?;
        Some(Self::from_bytes(&bytes))
    }

    /// `ed25519:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Option<VerifyingKey> {
        let bytes: [u8; 32] = hex::decode(self.0.strip_prefix(KEY_PREFIX)?)
            .ok()?
            .try_into()
            .ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    /// Whether `signature_hex` is this key's signature of `message`. Strict verification:
    /// rejects weak keys and malleable signatures, and any spelling of the hex but the one
    /// `sign` writes (lowercase, nothing around it), so a verified signature is the signed one.
    pub fn verify(&self, message: &[u8], signature_hex: &str) -> bool {
        let Some(key) = self.key() else {
            return false;
        };
        let Some(bytes) = hex::decode(signature_hex)
            .ok()
            .filter(|bytes| hex::encode(bytes) == signature_hex)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        key.verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }

    /// A short, human-comparable fingerprint: the first 16 hex digits of SHA-256 over the raw
    /// 32 key bytes, grouped in fours.
    pub fn fingerprint(&self) -> String {
        let raw =
            hex::decode(self.0.strip_prefix(KEY_PREFIX).unwrap_or(&self.0)).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(raw));
        digest
            .as_bytes()
            .chunks(4)
            .take(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl std::fmt::Display for ReportPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ReportPublicKey {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or_else(|| format!("not an Ed25519 public key: {raw:?}"))
    }
}

impl From<ReportPublicKey> for String {
    fn from(key: ReportPublicKey) -> Self {
        key.0
    }
}

/// What the head of record's signature covers: the server's own appends moved the chain to
/// `head`. Its own domain, so it can never pass for a checkpoint's or a report's signature.
pub fn head_message(head: ChainHead) -> Vec<u8> {
    format!("{HEAD_DOMAIN}\n{}\n{}", head.seq, head.hash.to_hex()).into_bytes()
}

const HEAD_DOMAIN: &str = "cryptopulse-head-of-record-v1";

impl ReportKey {
    /// Signs the head of record (see [`head_message`]).
    pub fn sign_head(&self, head: ChainHead) -> String {
        self.sign(&head_message(head))
    }
}

impl ReportPublicKey {
    /// Whether `signature` is this key's signature of the head of record `head`.
    pub fn verifies_head(&self, head: ChainHead, signature: Option<&str>) -> bool {
        signature.is_some_and(|signature| self.verify(&head_message(head), signature))
    }
}

/// A signed chain head: the server vouches that at `signed_at` its chain had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub seq: i64,
    /// The event's hash at `seq`, lowercase hex.
    pub hash: String,
    /// `canonical_time` of the signing moment.
    pub signed_at: String,
    pub public_key: ReportPublicKey,
    /// Ed25519 over [`SignedCheckpoint::message`], lowercase hex.
    pub signature: String,
}

impl SignedCheckpoint {
    pub fn sign(head: ChainHead, at: OffsetDateTime, key: &ReportKey) -> Self {
        let hash = head.hash.to_hex();
        let signed_at = canonical_time(at);
        let signature = key.sign(&Self::message(head.seq, &hash, &signed_at));
        Self {
            seq: head.seq,
            hash,
            signed_at,
            public_key: key.public_key(),
            signature,
        }
    }

    /// The signed bytes: `cryptopulse-checkpoint-v1\n<seq>\n<hash hex>\n<signed_at>`.
    pub fn message(seq: i64, hash: &str, signed_at: &str) -> Vec<u8> {
        format!("{CHECKPOINT_DOMAIN}\n{seq}\n{hash}\n{signed_at}").into_bytes()
    }

    /// The head this checkpoint vouches for (None if its hash is not 64 hex digits).
    pub fn head(&self) -> Option<ChainHead> {
        Some(ChainHead {
            seq: self.seq,
            hash: ChainHash::from_hex(&self.hash)?,
        })
    }

    /// Signature valid under `key` (or under its own public_key when None). The hash must be
    /// canonical lowercase hex so that one head has exactly one signed form. With a `key`, the
    /// key the checkpoint names must be that key too: it is shown as the signer.
    pub fn verify(&self, key: Option<&ReportPublicKey>) -> bool {
        let key = key.unwrap_or(&self.public_key);
        *key == self.public_key
            && self
                .head()
                .is_some_and(|head| head.hash.to_hex() == self.hash)
            && key.verify(
                &Self::message(self.seq, &self.hash, &self.signed_at),
                &self.signature,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64) -> ChainHead {
        ChainHead {
            seq,
            hash: ChainHash([0xa0 + seq as u8; 32]),
        }
    }

    #[test]
    fn signatures_verify_under_the_key_and_fail_under_another() {
        let key = ReportKey::generate();
        let other = ReportKey::generate();
        let sig = key.sign(b"hello");
        assert_eq!(sig.len(), 128);
        assert!(key.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hellO", &sig));
        assert!(!other.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hello", "zz"));
        assert!(!key.public_key().verify(b"hello", &sig[..126]));
        // The same signature spelt otherwise is not the signed text.
        assert!(!key.public_key().verify(b"hello", &sig.to_ascii_uppercase()));
        assert!(!key.public_key().verify(b"hello", &format!(" {sig}\n")));
    }

    #[test]
    fn the_secret_round_trips_and_is_not_in_debug_output() {
        let key = ReportKey::generate();
        let again = ReportKey::from_secret_bytes(*key.secret_bytes());
        assert_eq!(key.public_key(), again.public_key());
        let debug = format!("{key:?}");
        assert!(
            !debug.contains(&hex::encode(*key.secret_bytes())),
            "{debug}"
        );
        assert!(debug.contains(key.public_key().as_str()), "{debug}");
    }

    #[test]
    fn public_keys_parse_in_both_forms_and_reject_junk() {
        let key = ReportKey::generate().public_key();
        let text = key.to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 64,
            "{text}"
        );
        assert_eq!(ReportPublicKey::parse(&text), Some(key.clone()));
        let bare = text.trim_start_matches("ed25519:").to_uppercase();
        assert_eq!(
            ReportPublicKey::parse(&format!(" {bare}\n")),
            Some(key.clone())
        );
        assert_eq!(ReportPublicKey::parse("ed25519:abcd"), None);
        assert_eq!(ReportPublicKey::parse("not a key"), None);
        assert_eq!(ReportPublicKey::parse(""), None);
        let json = serde_json::to_string(&key).expect("json");
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<ReportPublicKey>(&json).expect("parse"),
            key
        );
        assert!(serde_json::from_str::<ReportPublicKey>("\"ed25519:00\"").is_err());
        assert_eq!(key.fingerprint().len(), 19);
    }

    #[test]
    fn checkpoints_sign_their_head_and_detect_any_change() {
        let key = ReportKey::generate();
        let at = time::macros::datetime!(2026-11-28 10:00:00.123456789 UTC);
        let cp = SignedCheckpoint::sign(head(7), at, &key);
        assert_eq!(cp.head(), Some(head(7)));
        assert_eq!(cp.signed_at, "2026-11-28T10:00:00.123456Z");
        assert!(cp.verify(None));
        assert!(cp.verify(Some(&key.public_key())));
        assert!(!cp.verify(Some(&ReportKey::generate().public_key())));

        let json = serde_json::to_string(&cp).expect("json");
        let back: SignedCheckpoint = serde_json::from_str(&json).expect("parse");
        assert!(back.verify(None));

        for tamper in [
            SignedCheckpoint {
                seq: 8,
                ..cp.clone()
            },
            SignedCheckpoint {
                hash: head(8).hash.to_hex(),
                ..cp.clone()
            },
            SignedCheckpoint {
                hash: cp.hash.to_uppercase(),
                ..cp.clone()
            },
            SignedCheckpoint {
                signed_at: "2026-11-28T10:00:01Z".into(),
                ..cp.clone()
            },
            SignedCheckpoint {
                public_key: ReportKey::generate().public_key(),
                ..cp.clone()
            },
        ] {
            assert!(!tamper.verify(None), "{tamper:?}");
        }
        // Signed by the server's key but naming another as its signer (a row a database
        // writer copied): the signer shown would be wrong.
        let misnamed = SignedCheckpoint {
            public_key: ReportKey::generate().public_key(),
            ..cp.clone()
        };
        assert!(!misnamed.verify(Some(&key.public_key())));
    }

    #[test]
    fn a_checkpoint_signature_is_not_a_valid_signature_of_other_messages() {
        let key = ReportKey::generate();
        let cp = SignedCheckpoint::sign(head(3), OffsetDateTime::UNIX_EPOCH, &key);
        assert!(!key.public_key().verify(cp.hash.as_bytes(), &cp.signature));
        assert!(
            SignedCheckpoint::message(3, &cp.hash, &cp.signed_at)
                .starts_with(b"cryptopulse-checkpoint-v1\n")
        );
    }
}
