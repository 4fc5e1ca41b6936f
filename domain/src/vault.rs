//! Envelope encryption of exchange secrets.
//!
//! Each secret gets a fresh 256-bit data key from the KMS and is sealed with AES-256-GCM under a
//! random 96-bit nonce. The associated data binds the ciphertext to its owner, its key record,
//! its exchange and its environment, and the KMS wraps the data key under the same binding (its
//! encryption context), so a ciphertext copied to another row fails to decrypt.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::ids::UserId;

/// A plaintext data key. Zeroed on drop; no `Debug` output of its bytes.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Self::from_bytes(bytes)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        Self::from_bytes(*self.expose())
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// A data key wrapped by a KMS, with the KMS key (and version) that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kms_key_id: String,
    pub blob: Vec<u8>,
}

/// What a secret is bound to. Used as AES-GCM associated data and as the KMS encryption context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    pub owner: UserId,
    pub record_id: Uuid,
    pub exchange: String,
    pub environment: String,
}

/// The KMS encryption context: sorted key/value pairs.
pub type EncryptionContext = BTreeMap<String, String>;

impl SecretBinding {
    pub fn context(&self) -> EncryptionContext {
        BTreeMap::from([
            ("owner".to_owned(), self.owner.to_string()),
            ("record".to_owned(), self.record_id.to_string()),
            ("exchange".to_owned(), self.exchange.clone()),
            ("environment".to_owned(), self.environment.clone()),
        ])
    }

    /// Length-prefixed encoding of the context, so no two bindings share associated data.
    pub fn associated_data(&self) -> Vec<u8> {
        encode_context(&self.context())
    }
}

/// Canonical bytes of an encryption context (also what local KMS wrapping authenticates).
pub fn encode_context(context: &EncryptionContext) -> Vec<u8> {
    let mut out = b"cryptopulse-vault-v1".to_vec();
    for (k, v) in context {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// A sealed secret as stored: the wrapped data key, the nonce and the ciphertext (with tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub wrapped_key: WrappedKey,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("the KMS is unreachable: {0}")]
    Unavailable(String),
    #[error("the KMS refused the request: {0}")]
    Refused(String),
    #[error("the wrapped key does not decrypt under this context")]
    InvalidCiphertext,
    /// A master key rotation whose record (its audit event) could not be written; nothing changed.
    #[error("the master key rotation could not be recorded")]
    NotRecorded,
}

/// Records a master key rotation before it takes effect: the audit event naming the new version.
#[async_trait]
pub trait RotationRecord: Send + Sync {
    /// Records the rotation to `new_key_id`. An error means nothing was recorded; the KMS then
    /// answers [`KmsError::NotRecorded`] and leaves its keys as they were.
    async fn record(&self, new_key_id: &str) -> Result<(), KmsError>;
}

/// Which kind of KMS holds the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsBackend {
    /// The file-backed (or environment) master key of this server.
    Local,
    /// AWS KMS: it rotates its keys on its own side.
    Aws,
}

impl KmsBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            KmsBackend::Local => "local",
            KmsBackend::Aws => "aws",
        }
    }

    /// New master key versions are added from this console (otherwise in the provider's).
    pub fn rotates_here(self) -> bool {
        self == KmsBackend::Local
    }
}

/// A key management service that wraps data keys. Implementations: local master key, AWS KMS.
#[async_trait]
pub trait Kms: Send + Sync + std::fmt::Debug {
    /// A fresh data key, in plaintext and wrapped under the current master key version.
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError>;
    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError>;
    /// Re-wraps under the current master key version without exposing the data key to callers.
    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError>;
    /// The identifier new keys are wrapped under (e.g. `local:v2`).
    fn current_key_id(&self) -> String;
    /// Picks up master key versions added elsewhere (another server's rotation of a shared key
    /// file) before `current_key_id` is relied on; most backends have nothing to do.
    async fn refresh(&self) {}
    fn backend(&self) -> KmsBackend;
    /// Creates a new master key version and makes it current. `record` is told the new key id
    /// before anything is written or used; if it fails, nothing changes (`NotRecorded`), so a
    /// version never exists without its record. Backends that rotate on their own side (AWS
    /// KMS) refuse.
    async fn add_version(&self, record: &dyn RotationRecord) -> Result<String, KmsError> {
        let _ = record;
        Err(KmsError::Refused(
            "this KMS rotates its keys itself; point the configuration at the new key".into(),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error("the secret does not decrypt: it was altered or belongs to another record")]
    Tampered,
}

fn cipher(key: &DataKey) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()))
}

pub async fn seal(
    kms: &dyn Kms,
    binding: &SecretBinding,
    plaintext: &SecretString,
) -> Result<SealedSecret, VaultError> {
    let (data_key, wrapped_key) = kms.generate_data_key(&binding.context()).await?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = binding.associated_data();
    let ciphertext = cipher(&data_key)
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.expose_secret().as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Tampered)?;
    Ok(SealedSecret {
        wrapped_key,
        nonce: nonce.into(),
        ciphertext,
    })
}

pub async fn open(
    kms: &dyn Kms,
    binding: &SecretBinding,
    sealed: &SealedSecret,
) -> Result<SecretString, VaultError> {
    let data_key = kms
        .decrypt_data_key(&sealed.wrapped_key, &binding.context())
        .await
        .map_err(|e| match e {
            KmsError::InvalidCiphertext => VaultError::Tampered,
            other => VaultError::Kms(other),
        })?;
    let aad = binding.associated_data();
    let plaintext = Zeroizing::new(
        cipher(&data_key)
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Tampered)?,
    );
    let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::Tampered)?;
    Ok(SecretString::from(text.to_owned()))
}

/// Re-wraps the data key under the KMS's current version; the ciphertext itself is unchanged.
pub async fn rewrap(
    kms: &dyn Kms,
    binding: &SecretBinding,
    sealed: &SealedSecret,
) -> Result<SealedSecret, VaultError> {
    let wrapped_key = kms
        .rewrap(&sealed.wrapped_key, &binding.context())
        .await
        .map_err(|e| match e {
            KmsError::InvalidCiphertext => VaultError::Tampered,
            other => VaultError::Kms(other),
        })?;
    Ok(SealedSecret {
        wrapped_key,
        ..sealed.clone()
    })
}

/// What the UI may show of a key: its last four characters.
pub fn mask(secret: &str) -> String {
    let tail: String = {
        let chars: Vec<char> = secret.chars().collect();
        if chars.len() <= 8 {
            String::new()
        } else {
            chars[chars.len() - 4..].iter().collect()
        }
    };
    format!("****{tail}")
}

/// A KMS held in memory: a master key per version, wrapping with AES-256-GCM whose associated
/// data is the encryption context. The server's local KMS loads its versions from a file.
pub mod local {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Clone)]
    pub struct LocalKms {
        versions: BTreeMap<u32, DataKey>,
    }

    impl std::fmt::Debug for LocalKms {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "LocalKms(versions: {:?})",
                self.versions.keys().collect::<Vec<_>>()
            )
        }
    }

    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum LocalKeyError {
        #[error("no master key versions given")]
        Empty,
        #[error("line {0}: expected `<version>:<64 hex characters>`")]
        Malformed(usize),
    }

    const KEY_ID_PREFIX: &str = "local:v";

    impl LocalKms {
        pub fn new(versions: BTreeMap<u32, DataKey>) -> Result<Self, LocalKeyError> {
            if versions.is_empty() {
                return Err(LocalKeyError::Empty);
            }
            Ok(Self { versions })
        }

        /// Parses `<version>:<hex key>` lines (blank lines and `#` comments ignored).
        pub fn parse(text: &str) -> Result<Self, LocalKeyError> {
            let mut versions = BTreeMap::new();
            for (index, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let malformed = || LocalKeyError::Malformed(index + 1);
                let (version, hex_key) = line.split_once(':').ok_or_else(malformed)?;
                let version: u32 = version.trim().parse().map_err(|_| malformed())?;
                let bytes = Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| malformed())?);
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed())?;
                versions.insert(version, DataKey::from_bytes(key));
            }
            Self::new(versions)
        }

        /// The newest version number.
        pub fn latest_version(&self) -> u32 {
            self.current().0
        }

        /// Adds a version; the highest version wraps new keys.
        pub fn insert_version(&mut self, version: u32, key: DataKey) {
            self.versions.insert(version, key);
        }

        /// Takes the versions of `other` this one lacks (a version held already is kept as
        /// it is); returns whether any was added.
        pub fn adopt_missing_versions(&mut self, other: LocalKms) -> bool {
            let mut added = false;
            for (version, key) in other.versions {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.versions.entry(version)
                {
                    slot.insert(key);
                    added = true;
                }
            }
            added
        }

        fn current(&self) -> (u32, &DataKey) {
            let (version, key) = self
                .versions
                .iter()
                .next_back()
                .expect("non-empty by construction");
            (*version, key)
        }

        fn wrap(&self, data_key: &DataKey, context: &EncryptionContext) -> WrappedKey {
            let (version, master) = self.current();
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let aad = encode_context(context);
            let sealed = cipher(master)
                .encrypt(
                    &nonce,
                    Payload {
                        msg: data_key.expose(),
                        aad: &aad,
                    },
                )
                .expect("AES-GCM encryption of 32 bytes cannot fail");
            let mut blob = nonce.to_vec();
            blob.extend_from_slice(&sealed);
            WrappedKey {
                kms_key_id: format!("{KEY_ID_PREFIX}{version}"),
                blob,
            }
        }

        fn unwrap_key(
            &self,
            wrapped: &WrappedKey,
            context: &EncryptionContext,
        ) -> Result<DataKey, KmsError> {
            let version: u32 = wrapped
                .kms_key_id
                .strip_prefix(KEY_ID_PREFIX)
                .and_then(|v| v.parse().ok())
                .ok_or(KmsError::InvalidCiphertext)?;
            let master = self.versions.get(&version).ok_or_else(|| {
                KmsError::Refused(format!("master key version {version} is not loaded"))
            })?;
            if wrapped.blob.len() < 12 {
                return Err(KmsError::InvalidCiphertext);
            }
            let (nonce, sealed) = wrapped.blob.split_at(12);
            let aad = encode_context(context);
            let bytes = Zeroizing::new(
                cipher(master)
                    .decrypt(
                        Nonce::from_slice(nonce),
                        Payload {
                            msg: sealed,
                            aad: &aad,
                        },
                    )
                    .map_err(|_| KmsError::InvalidCiphertext)?,
            );
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KmsError::InvalidCiphertext)?;
            Ok(DataKey::from_bytes(key))
        }
    }

    #[async_trait]
    impl Kms for LocalKms {
        async fn generate_data_key(
            &self,
            context: &EncryptionContext,
        ) -> Result<(DataKey, WrappedKey), KmsError> {
            let data_key = DataKey::generate();
            let wrapped = self.wrap(&data_key, context);
            Ok((data_key, wrapped))
        }

        async fn decrypt_data_key(
            &self,
            wrapped: &WrappedKey,
            context: &EncryptionContext,
        ) -> Result<DataKey, KmsError> {
            self.unwrap_key(wrapped, context)
        }

        async fn rewrap(
            &self,
            wrapped: &WrappedKey,
            context: &EncryptionContext,
        ) -> Result<WrappedKey, KmsError> {
            let data_key = self.unwrap_key(wrapped, context)?;
            Ok(self.wrap(&data_key, context))
        }

        fn current_key_id(&self) -> String {
            format!("{KEY_ID_PREFIX}{}", self.current().0)
        }

        fn backend(&self) -> KmsBackend {
            KmsBackend::Local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local::LocalKms;
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        // The local KMS never waits, so one poll completes every call.
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the local KMS never waits"),
        }
    }

    fn kms(versions: &[u32]) -> LocalKms {
        let text: String = versions
            .iter()
            .map(|v| format!("{v}:{}\n", hex::encode([*v as u8; 32])))
            .collect();
        LocalKms::parse(&text).expect("valid key file")
    }

    fn binding() -> SecretBinding {
        SecretBinding {
            owner: UserId(Uuid::from_u128(1)),
            record_id: Uuid::from_u128(2),
            exchange: "binance".into(),
            environment: "testnet".into(),
        }
    }

    fn secret() -> SecretString {
        SecretString::from("api-secret-9f8e7d6c5b4a3a2f")
    }

    #[test]
    fn a_sealed_secret_opens_to_the_same_plaintext() {
        block_on(async {
            let kms = kms(&[1]);
            let sealed = seal(&kms, &binding(), &secret()).await.expect("sealed");
            let opened = open(&kms, &binding(), &sealed).await.expect("opened");
            assert_eq!(opened.expose_secret(), secret().expose_secret());
            assert!(
                !sealed.ciphertext.windows(8).any(|w| w == b"api-secr"),
                "ciphertext must not contain the plaintext"
            );
        });
    }

    #[test]
    fn the_same_plaintext_twice_gives_different_ciphertexts_and_keys() {
        block_on(async {
            let kms = kms(&[1]);
            let a = seal(&kms, &binding(), &secret()).await.expect("sealed");
            let b = seal(&kms, &binding(), &secret()).await.expect("sealed");
            assert_ne!(a.ciphertext, b.ciphertext);
            assert_ne!(a.nonce, b.nonce);
            assert_ne!(a.wrapped_key.blob, b.wrapped_key.blob);
        });
    }

    #[test]
    fn any_flipped_byte_fails_to_open() {
        block_on(async {
            let kms = kms(&[1]);
            let sealed = seal(&kms, &binding(), &secret()).await.expect("sealed");
            for i in 0..sealed.ciphertext.len() {
                let mut bad = sealed.clone();
                bad.ciphertext[i] ^= 1;
                assert!(
                    matches!(
                        open(&kms, &binding(), &bad).await,
                        Err(VaultError::Tampered)
                    ),
                    "byte {i}"
                );
            }
            let mut bad = sealed.clone();
            bad.nonce[0] ^= 1;
            assert!(matches!(
                open(&kms, &binding(), &bad).await,
                Err(VaultError::Tampered)
            ));
            let mut bad = sealed;
            bad.wrapped_key.blob[20] ^= 1;
            assert!(matches!(
                open(&kms, &binding(), &bad).await,
                Err(VaultError::Tampered)
            ));
        });
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_fails_to_open() {
        block_on(async {
            let kms = kms(&[1]);
            let sealed = seal(&kms, &binding(), &secret()).await.expect("sealed");
            let others = [
                SecretBinding {
                    owner: UserId(Uuid::from_u128(9)),
                    ..binding()
                },
                SecretBinding {
                    record_id: Uuid::from_u128(9),
                    ..binding()
                },
                SecretBinding {
                    exchange: "coinbase".into(),
                    ..binding()
                },
                SecretBinding {
                    environment: "live".into(),
                    ..binding()
                },
            ];
            for other in others {
                assert!(
                    matches!(open(&kms, &other, &sealed).await, Err(VaultError::Tampered)),
                    "{other:?}"
                );
            }
        });
    }

    #[test]
    fn old_secrets_still_open_after_rotation_and_rewrap_moves_them_to_the_new_version() {
        block_on(async {
            let old = kms(&[1]);
            let sealed = seal(&old, &binding(), &secret()).await.expect("sealed");
            assert_eq!(sealed.wrapped_key.kms_key_id, "local:v1");

            let rotated = kms(&[1, 2]);
            assert_eq!(rotated.current_key_id(), "local:v2");
            assert_eq!(
                open(&rotated, &binding(), &sealed)
                    .await
                    .expect("opens")
                    .expose_secret(),
                secret().expose_secret()
            );

            let rewrapped = rewrap(&rotated, &binding(), &sealed)
                .await
                .expect("rewrapped");
            assert_eq!(rewrapped.wrapped_key.kms_key_id, "local:v2");
            assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
            assert_eq!(
                open(&rotated, &binding(), &rewrapped)
                    .await
                    .expect("opens")
                    .expose_secret(),
                secret().expose_secret()
            );
            // Once v1 is retired, only re-wrapped secrets open.
            let retired = kms(&[2]);
            assert!(open(&retired, &binding(), &rewrapped).await.is_ok());
            assert!(matches!(
                open(&retired, &binding(), &sealed).await,
                Err(VaultError::Kms(KmsError::Refused(_)))
            ));
        });
    }

    #[test]
    fn key_files_must_be_well_formed() {
        assert_eq!(
            LocalKms::parse("").expect_err("empty"),
            local::LocalKeyError::Empty
        );
        assert_eq!(
            LocalKms::parse("1:abcd").expect_err("short key"),
            local::LocalKeyError::Malformed(1)
        );
        assert_eq!(
            LocalKms::parse("# comment\nx:00").expect_err("bad version"),
            local::LocalKeyError::Malformed(2)
        );
        let ok = format!(
            "# master keys\n1:{}\n\n3:{}\n",
            "00".repeat(32),
            "11".repeat(32)
        );
        assert_eq!(
            LocalKms::parse(&ok).expect("valid").current_key_id(),
            "local:v3"
        );
    }

    #[test]
    fn masks_show_only_the_last_four_characters() {
        assert_eq!(mask("abcdefghijkl3a2f"), "****3a2f");
        assert_eq!(mask("short"), "****");
        assert!(!format!("{:?}", DataKey::generate()).contains(|c: char| c.is_ascii_digit()));
    }
}
