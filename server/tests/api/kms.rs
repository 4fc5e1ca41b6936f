//! KMS conformance: local and AWS (moto) adapters (written by the KMS helper).
//!
//! One suite (`suite`) runs against every adapter: `FileKms` on a temporary key file, and
//! `AwsKms` on a local moto server. The AWS tests start moto themselves from
//! `CRYPTOPULSE_TEST_MOTO_SERVER` (scripts/moto.sh installs it); without it they are skipped,
//! except under `CI=true`, where they fail.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::account::UserId;
use domain::vault::local::LocalKms;
use domain::vault::{self, Kms, KmsError, RotationRecord, SecretBinding, VaultError};
use secrecy::{ExposeSecret, SecretString};
use server::kms::{AwsKms, AwsKmsSettings, FaultMode, FaultyKms, FileKms, FileKmsError};
use uuid::Uuid;

/// Stands in for the audit event a rotation writes before the new version exists.
struct Recorded;

#[async_trait::async_trait]
impl RotationRecord for Recorded {
    async fn record(&self, _new_key_id: &str) -> Result<(), KmsError> {
        Ok(())
    }
}

fn binding() -> SecretBinding {
    SecretBinding {
        owner: UserId(Uuid::new_v4()),
        record_id: Uuid::new_v4(),
        exchange: "binance".into(),
        environment: "testnet".into(),
    }
}

fn secret() -> SecretString {
    SecretString::from("api-secret-9f8e7d6c5b4a3a2f")
}

/// The behaviour every `Kms` adapter must show, through the vault functions the server uses.
mod suite {
    use super::*;

    pub async fn round_trip(kms: &dyn Kms) {
        let binding = binding();
        let sealed = vault::seal(kms, &binding, &secret()).await.expect("sealed");
        assert!(sealed.wrapped_key.kms_key_id_matches(kms));
        let opened = vault::open(kms, &binding, &sealed).await.expect("opened");
        assert_eq!(opened.expose_secret(), secret().expose_secret());
    }

    pub async fn same_plaintext_gives_different_ciphertexts(kms: &dyn Kms) {
        let binding = binding();
        let a = vault::seal(kms, &binding, &secret()).await.expect("sealed");
        let b = vault::seal(kms, &binding, &secret()).await.expect("sealed");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a.wrapped_key.blob, b.wrapped_key.blob);
        let key_a = kms
            .decrypt_data_key(&a.wrapped_key, &binding.context())
            .await
            .expect("unwrapped");
        let key_b = kms
            .decrypt_data_key(&b.wrapped_key, &binding.context())
            .await
            .expect("unwrapped");
        assert_ne!(key_a.expose(), key_b.expose(), "one data key per secret");
    }

    pub async fn another_context_fails(kms: &dyn Kms) {
        let binding = binding();
        let sealed = vault::seal(kms, &binding, &secret()).await.expect("sealed");
        let others = [
            SecretBinding {
                owner: UserId(Uuid::new_v4()),
                ..binding.clone()
            },
            SecretBinding {
                record_id: Uuid::new_v4(),
                ..binding.clone()
            },
            SecretBinding {
                exchange: "coinbase".into(),
                ..binding.clone()
            },
            SecretBinding {
                environment: "live".into(),
                ..binding.clone()
            },
        ];
        for other in others {
            // The KMS itself must refuse to unwrap under another context...
            assert!(
                matches!(
                    kms.decrypt_data_key(&sealed.wrapped_key, &other.context())
                        .await,
                    Err(KmsError::InvalidCiphertext)
                ),
                "KMS unwrapped under {other:?}"
            );
            // ...and so the secret does not open in another row.
            assert!(
                matches!(
                    vault::open(kms, &other, &sealed).await,
                    Err(VaultError::Tampered)
                ),
                "opened under {other:?}"
            );
        }
    }

    pub async fn a_flipped_byte_in_the_wrapped_key_fails(kms: &dyn Kms) {
        let binding = binding();
        let sealed = vault::seal(kms, &binding, &secret()).await.expect("sealed");
        // The end of the blob is the authentication tag or the wrapped key itself in both
        // formats: any change there is an invalid ciphertext.
        for from_end in [1, 8, 20] {
            let mut bad = sealed.clone();
            let i = bad.wrapped_key.blob.len() - from_end;
            bad.wrapped_key.blob[i] ^= 0x01;
            assert!(
                matches!(
                    vault::open(kms, &binding, &bad).await,
                    Err(VaultError::Tampered)
                ),
                "byte {i} of the wrapped key flipped"
            );
        }
        // Anywhere else (e.g. a key reference inside the blob) it must fail too, if perhaps
        // with another error.
        for i in (0..sealed.wrapped_key.blob.len()).step_by(7) {
            let mut bad = sealed.clone();
            bad.wrapped_key.blob[i] ^= 0x80;
            assert!(
                vault::open(kms, &binding, &bad).await.is_err(),
                "byte {i} of the wrapped key flipped"
            );
        }
        let mut truncated = sealed.clone();
        truncated.wrapped_key.blob.truncate(10);
        assert!(vault::open(kms, &binding, &truncated).await.is_err());
    }

    pub async fn rewrap_keeps_the_secret(kms: &dyn Kms) {
        let binding = binding();
        let sealed = vault::seal(kms, &binding, &secret()).await.expect("sealed");
        let rewrapped = vault::rewrap(kms, &binding, &sealed)
            .await
            .expect("rewrapped");
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert_eq!(rewrapped.nonce, sealed.nonce);
        assert_ne!(rewrapped.wrapped_key.blob, sealed.wrapped_key.blob);
        assert!(rewrapped.wrapped_key.kms_key_id_matches(kms));
        let opened = vault::open(kms, &binding, &rewrapped)
            .await
            .expect("opened");
        assert_eq!(opened.expose_secret(), secret().expose_secret());
        // A re-wrap under another context is refused, like a decrypt.
        let other = SecretBinding {
            record_id: Uuid::new_v4(),
            ..binding
        };
        assert!(matches!(
            vault::rewrap(kms, &other, &sealed).await,
            Err(VaultError::Tampered)
        ));
    }
}

/// AWS reports the key ARN while the configuration may hold the bare key id; the local KMS
/// reports exactly `local:vN`.
trait KeyIdMatches {
    fn kms_key_id_matches(&self, kms: &dyn Kms) -> bool;
}

impl KeyIdMatches for vault::WrappedKey {
    fn kms_key_id_matches(&self, kms: &dyn Kms) -> bool {
        let current = kms.current_key_id();
        self.kms_key_id == current || self.kms_key_id.ends_with(&format!("key/{current}"))
    }
}

/// Generates one test per suite case for an adapter. `$factory` is an async fn returning
/// `Option<Fixture>` (`None`: the adapter is unavailable here and the test is skipped).
macro_rules! conformance {
    ($adapter:ident, $factory:path) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn round_trip() {
                if let Some(f) = $factory().await {
                    suite::round_trip(&*f.kms).await;
                }
            }

            #[tokio::test]
            async fn same_plaintext_gives_different_ciphertexts() {
                if let Some(f) = $factory().await {
                    suite::same_plaintext_gives_different_ciphertexts(&*f.kms).await;
                }
            }

            #[tokio::test]
            async fn another_context_fails() {
                if let Some(f) = $factory().await {
                    suite::another_context_fails(&*f.kms).await;
                }
            }

            #[tokio::test]
            async fn a_flipped_byte_in_the_wrapped_key_fails() {
                if let Some(f) = $factory().await {
                    suite::a_flipped_byte_in_the_wrapped_key_fails(&*f.kms).await;
                }
            }

            #[tokio::test]
            async fn rewrap_keeps_the_secret() {
                if let Some(f) = $factory().await {
                    suite::rewrap_keeps_the_secret(&*f.kms).await;
                }
            }
        }
    };
}

/// A KMS under test and whatever must outlive it (its key file's directory).
struct Fixture {
    kms: Arc<dyn Kms>,
    _dir: Option<tempfile::TempDir>,
}

async fn file_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = server::cli::ensure_master_key(dir.path()).expect("master key created");
    let kms = FileKms::load(&path).expect("key file loads");
    Some(Fixture {
        kms: Arc::new(kms),
        _dir: Some(dir),
    })
}

async fn env_fixture() -> Option<Fixture> {
    let value = hex::encode(domain::vault::DataKey::generate().expose());
    let kms = FileKms::from_env_value(&value).expect("bare hex key");
    Some(Fixture {
        kms: Arc::new(kms),
        _dir: None,
    })
}

async fn aws_fixture() -> Option<Fixture> {
    let moto = shared_moto().await?;
    let key_id = create_key(&moto.endpoint).await;
    Some(Fixture {
        kms: Arc::new(aws_kms(&moto.endpoint, key_id)),
        _dir: None,
    })
}

conformance!(file_conformance, file_fixture);
conformance!(env_conformance, env_fixture);
conformance!(aws_conformance, aws_fixture);

// ---------------------------------------------------------------------------------------------
// FileKms

fn key_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .expect("key file readable")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[tokio::test]
async fn file_kms_rotation_keeps_old_secrets_and_rewrap_moves_them_to_the_new_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = server::cli::ensure_master_key(dir.path()).expect("master key created");
    let kms = FileKms::load(&path).expect("loads");
    let binding = binding();
    let sealed = vault::seal(&kms, &binding, &secret())
        .await
        .expect("sealed");
    assert_eq!(sealed.wrapped_key.kms_key_id, "local:v1");

    assert_eq!(
        kms.add_version(&Recorded).await.expect("rotated"),
        "local:v2"
    );
    assert_eq!(kms.current_key_id(), "local:v2");
    assert_eq!(key_lines(&path), 2, "the new version is on disk");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "appending keeps the file private");

    // Old secrets still open; new ones use v2.
    let opened = vault::open(&kms, &binding, &sealed).await.expect("opens");
    assert_eq!(opened.expose_secret(), secret().expose_secret());
    let fresh = vault::seal(&kms, &binding, &secret())
        .await
        .expect("sealed");
    assert_eq!(fresh.wrapped_key.kms_key_id, "local:v2");

    let rewrapped = vault::rewrap(&kms, &binding, &sealed)
        .await
        .expect("rewrapped");
    assert_eq!(rewrapped.wrapped_key.kms_key_id, "local:v2");

    // A restart reads both versions back.
    let reloaded = FileKms::load(&path).expect("reloads");
    assert_eq!(reloaded.current_key_id(), "local:v2");
    for s in [&sealed, &rewrapped, &fresh] {
        let opened = vault::open(&reloaded, &binding, s).await.expect("opens");
        assert_eq!(opened.expose_secret(), secret().expose_secret());
    }

    // Once v1 is retired (its line removed), only the re-wrapped secret opens.
    let text = std::fs::read_to_string(&path).expect("read");
    let v2_only = LocalKms::parse(
        text.lines()
            .find(|l| l.starts_with("2:"))
            .expect("a v2 line"),
    )
    .expect("v2 parses");
    assert!(vault::open(&v2_only, &binding, &rewrapped).await.is_ok());
    assert!(vault::open(&v2_only, &binding, &sealed).await.is_err());
}

/// Two servers on one key file and one database: a rotation on one must not leave the other
/// unable to open what the first sealed, nor sealing under the old version afterwards.
#[tokio::test]
async fn a_rotation_on_one_server_is_adopted_by_another_on_the_same_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = server::cli::ensure_master_key(dir.path()).expect("master key created");
    let a = FileKms::load(&path).expect("loads");
    let b = FileKms::load(&path).expect("loads");
    let c = FileKms::load(&path).expect("loads");
    let d = FileKms::load(&path).expect("loads");
    assert_eq!(a.add_version(&Recorded).await.expect("rotated"), "local:v2");
    let binding = binding();
    let sealed_on_a = vault::seal(&a, &binding, &secret()).await.expect("sealed");
    assert_eq!(sealed_on_a.wrapped_key.kms_key_id, "local:v2");
    assert_eq!(b.current_key_id(), "local:v1", "b has not seen it yet");

    // Sealing a new secret wraps it under the newest version on file.
    let sealed_on_b = vault::seal(&b, &binding, &secret()).await.expect("sealed");
    assert_eq!(sealed_on_b.wrapped_key.kms_key_id, "local:v2");
    assert_eq!(b.current_key_id(), "local:v2");
    // Opening a secret under a version not loaded reads the file again.
    let opened = vault::open(&c, &binding, &sealed_on_a)
        .await
        .expect("c reads the file again and opens it");
    assert_eq!(opened.expose_secret(), secret().expose_secret());
    assert_eq!(c.current_key_id(), "local:v2");
    // And a re-wrap run refreshes before it judges what is current.
    d.refresh().await;
    assert_eq!(d.current_key_id(), "local:v2");

    // A version in no file stays refused, as before.
    let mut unknown = sealed_on_a.clone();
    unknown.wrapped_key.kms_key_id = "local:v9".into();
    assert!(matches!(
        vault::open(&b, &binding, &unknown).await,
        Err(vault::VaultError::Kms(KmsError::Refused(_)))
    ));
}

#[tokio::test]
async fn concurrent_rotations_get_distinct_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = server::cli::ensure_master_key(dir.path()).expect("master key created");
    let kms = FileKms::load(&path).expect("loads");
    let (a, b) = futures::join!(kms.add_version(&Recorded), kms.add_version(&Recorded));
    let mut ids = [a.expect("rotated"), b.expect("rotated")];
    ids.sort();
    assert_eq!(ids, ["local:v2".to_owned(), "local:v3".to_owned()]);
    assert_eq!(key_lines(&path), 3);
    assert_eq!(
        FileKms::load(&path).expect("reloads").current_key_id(),
        "local:v3"
    );
}

#[tokio::test]
async fn rotation_survives_a_key_file_without_a_final_newline_and_versions_added_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("master.key");
    let v1 = hex::encode([1u8; 32]);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .expect("create");
    write!(file, "# hand-written\n1:{v1}").expect("write");
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let kms = FileKms::load(&path).expect("loads");

    // Someone adds v5 by hand while the server runs: the next version must not reuse a number.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    write!(file, "\n5:{}\n", hex::encode([5u8; 32])).expect("write");
    drop(file);

    assert_eq!(
        kms.add_version(&Recorded).await.expect("rotated"),
        "local:v6"
    );
    let reloaded = FileKms::load(&path).expect("file still well-formed");
    assert_eq!(reloaded.current_key_id(), "local:v6");
}

#[tokio::test]
async fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = server::cli::ensure_master_key(dir.path()).expect("master key created");
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = FileKms::load(&path).expect_err("must refuse a readable key file");
        assert!(
            matches!(err, FileKmsError::Permissions { .. }),
            "{mode:o}: {err}"
        );
        let message = err.to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(FileKms::load(&path).is_ok());
}

#[tokio::test]
async fn malformed_or_missing_key_files_are_refused_with_their_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.key");
    assert!(matches!(
        FileKms::load(&missing),
        Err(FileKmsError::Io { .. })
    ));
    let path = dir.path().join("bad.key");
    std::fs::write(&path, "1:not-hex\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = FileKms::load(&path).expect_err("malformed");
    assert!(err.to_string().contains("line 1"), "{err}");
    // The message names the line, never its content.
    assert!(!err.to_string().contains("not-hex"), "{err}");
}

#[tokio::test]
async fn an_env_master_key_works_but_cannot_be_rotated_in_place() {
    let hex_key = hex::encode([7u8; 32]);
    let bare = FileKms::from_env_value(&format!("  {hex_key}\n")).expect("bare hex");
    assert_eq!(bare.current_key_id(), "local:v1");
    match bare.add_version(&Recorded).await {
        Err(KmsError::Refused(message)) => {
            assert!(message.contains("CRYPTOPULSE_MASTER_KEY"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(bare.current_key_id(), "local:v1");

    // The line format works too, and a secret sealed under the env key opens with the same
    // key given as a file: both are the same local KMS.
    let lines = FileKms::from_env_value(&format!("1:{hex_key}\n2:{}", hex::encode([8u8; 32])))
        .expect("lines");
    assert_eq!(lines.current_key_id(), "local:v2");
    let binding = binding();
    let sealed = vault::seal(&bare, &binding, &secret())
        .await
        .expect("sealed");
    assert!(vault::open(&lines, &binding, &sealed).await.is_ok());

    assert!(FileKms::from_env_value("").is_err());
    assert!(FileKms::from_env_value("abc").is_err());
    assert!(FileKms::from_env_value(&hex_key[..62]).is_err());
}

#[tokio::test]
async fn debug_output_never_shows_key_material() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = server::cli::ensure_master_key(dir.path()).expect("master key created");
    let kms = FileKms::load(&path).expect("loads");
    kms.add_version(&Recorded).await.expect("rotated");
    let text = std::fs::read_to_string(&path).expect("read");
    let debug = format!("{kms:?}");
    for line in text.lines() {
        let (_, hex_key) = line.split_once(':').expect("version:key");
        assert!(!debug.contains(hex_key), "{debug}");
        assert!(!debug.contains(&hex_key[..16]), "{debug}");
    }
    let env = FileKms::from_env_value(&hex::encode([9u8; 32])).expect("env");
    assert!(!format!("{env:?}").contains("0909"));
}

// ---------------------------------------------------------------------------------------------
// FaultyKms

#[tokio::test]
async fn faulty_kms_injects_the_failure_it_is_set_to() {
    let inner = file_fixture().await.expect("local KMS");
    let kms = FaultyKms::new(inner.kms.clone());
    let binding = binding();
    assert_eq!(kms.mode(), FaultMode::Healthy);
    let sealed = vault::seal(&kms, &binding, &secret())
        .await
        .expect("healthy");
    assert_eq!(kms.current_key_id(), "local:v1");

    kms.set_mode(FaultMode::Unavailable);
    assert!(matches!(
        vault::seal(&kms, &binding, &secret()).await,
        Err(VaultError::Kms(KmsError::Unavailable(_)))
    ));
    assert!(matches!(
        vault::open(&kms, &binding, &sealed).await,
        Err(VaultError::Kms(KmsError::Unavailable(_)))
    ));
    assert!(matches!(
        vault::rewrap(&kms, &binding, &sealed).await,
        Err(VaultError::Kms(KmsError::Unavailable(_)))
    ));
    assert!(matches!(
        kms.add_version(&Recorded).await,
        Err(KmsError::Unavailable(_))
    ));

    kms.set_mode(FaultMode::Refusing);
    assert!(matches!(
        vault::seal(&kms, &binding, &secret()).await,
        Err(VaultError::Kms(KmsError::Refused(_)))
    ));
    assert!(matches!(
        vault::open(&kms, &binding, &sealed).await,
        Err(VaultError::Kms(KmsError::Refused(_)))
    ));
    assert!(matches!(
        vault::rewrap(&kms, &binding, &sealed).await,
        Err(VaultError::Kms(KmsError::Refused(_)))
    ));
    // The key id is local information and stays available.
    assert_eq!(kms.current_key_id(), "local:v1");

    kms.set_mode(FaultMode::Healthy);
    let opened = vault::open(&kms, &binding, &sealed)
        .await
        .expect("healthy again");
    assert_eq!(opened.expose_secret(), secret().expose_secret());
    assert_eq!(
        kms.add_version(&Recorded).await.expect("rotates"),
        "local:v2"
    );
}

// ---------------------------------------------------------------------------------------------
// AwsKms

/// A port with nothing listening on it (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

fn aws_kms(endpoint: &str, key_id: String) -> AwsKms {
    AwsKms::with_static_credentials(
        AwsKmsSettings {
            key_id,
            region: "us-east-1".into(),
            endpoint: Some(endpoint.to_owned()),
        },
        aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "tests"),
    )
    .expect("valid settings")
}

#[tokio::test]
async fn an_unreachable_aws_kms_is_unavailable_within_seconds() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let kms = aws_kms(&endpoint, "11111111-2222-3333-4444-555555555555".into());
    let started = Instant::now();
    let result = vault::seal(&kms, &binding(), &secret()).await;
    assert!(
        matches!(result, Err(VaultError::Kms(KmsError::Unavailable(_)))),
        "{result:?}"
    );
    let wrapped = vault::WrappedKey {
        kms_key_id: "11111111-2222-3333-4444-555555555555".into(),
        blob: vec![1; 64],
    };
    assert!(matches!(
        kms.decrypt_data_key(&wrapped, &binding().context()).await,
        Err(KmsError::Unavailable(_))
    ));
    assert!(matches!(
        kms.rewrap(&wrapped, &binding().context()).await,
        Err(KmsError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_aws_kms_that_never_answers_times_out() {
    // Connections complete in the listen backlog but no byte ever comes back.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let kms = aws_kms(&endpoint, "11111111-2222-3333-4444-555555555555".into());
    let started = Instant::now();
    let result = kms.generate_data_key(&binding().context()).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(KmsError::Unavailable(_))),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    drop(listener);
}

#[tokio::test]
async fn aws_kms_settings_must_name_a_key_and_region() {
    let credentials =
        aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "tests");
    for (key_id, region) in [("", "us-east-1"), ("key", " ")] {
        let settings = AwsKmsSettings {
            key_id: key_id.into(),
            region: region.into(),
            endpoint: None,
        };
        assert!(matches!(
            AwsKms::with_static_credentials(settings.clone(), credentials.clone()),
            Err(KmsError::Refused(_))
        ));
        assert!(matches!(
            AwsKms::connect(settings).await,
            Err(KmsError::Refused(_))
        ));
    }
}

#[tokio::test]
async fn aws_kms_refuses_a_disabled_key_and_an_unknown_key() {
    let Some(moto) = shared_moto().await else {
        return;
    };
    let key_id = create_key(&moto.endpoint).await;
    let kms = aws_kms(&moto.endpoint, key_id.clone());
    assert!(kms.check().await.expect("enabled key").contains(&key_id));
    let binding = binding();
    let sealed = vault::seal(&kms, &binding, &secret())
        .await
        .expect("sealed");

    admin_client(&moto.endpoint)
        .disable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("key disabled");
    // moto reports the state but, unlike AWS, still serves GenerateDataKey and Decrypt for a
    // disabled key, so only the startup check can see it here (the mapping of
    // DisabledException to Refused is unit-tested in kms::aws).
    match kms.check().await {
        Err(KmsError::Refused(message)) => assert!(message.contains("not enabled"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    let unknown = aws_kms(&moto.endpoint, Uuid::new_v4().to_string());
    let result = unknown.generate_data_key(&binding.context()).await;
    assert!(matches!(result, Err(KmsError::Refused(_))), "{result:?}");
    assert!(matches!(unknown.check().await, Err(KmsError::Refused(_))));
    // A secret under a key that no longer exists does not open: the KMS refuses, it is not
    // "tampered".
    let mut orphan = sealed.clone();
    orphan.wrapped_key.kms_key_id = Uuid::new_v4().to_string();
    let result = vault::open(&kms, &binding, &orphan).await;
    assert!(
        matches!(result, Err(VaultError::Kms(KmsError::Refused(_)))),
        "{result:?}"
    );
    drop(sealed);
}

#[tokio::test]
async fn aws_kms_does_not_send_a_secret_naming_a_key_of_another_account_or_region() {
    let Some(moto) = shared_moto().await else {
        return;
    };
    let key_id = create_key(&moto.endpoint).await;
    let kms = aws_kms(&moto.endpoint, key_id.clone());
    let binding = binding();
    let sealed = vault::seal(&kms, &binding, &secret())
        .await
        .expect("sealed");
    let arn = sealed.wrapped_key.kms_key_id.clone();
    assert!(
        arn.starts_with("arn:aws:kms:") && arn.ends_with(&key_id),
        "{arn}"
    );
    // Someone who can write the database points the row at a key of their own: another
    // account, or another region, whose policy might let this server decrypt.
    let parts: Vec<&str> = arn.split(':').collect();
    let other_account = format!("arn:aws:kms:{}:999999999999:{}", parts[3], parts[5]);
    let other_region = format!("arn:aws:kms:ap-south-2:{}:{}", parts[4], parts[5]);
    for named in [other_account, other_region, "alias/attacker".to_owned()] {
        let mut planted = sealed.clone();
        planted.wrapped_key.kms_key_id = named.clone();
        match vault::open(&kms, &binding, &planted).await {
            Err(VaultError::Kms(KmsError::Refused(message))) => {
                assert!(message.contains("not sent to AWS"), "{message}")
            }
            other => panic!("{named}: expected a refusal, got {other:?}"),
        }
        let rewrapped = kms.rewrap(&planted.wrapped_key, &binding.context()).await;
        assert!(
            matches!(rewrapped, Err(KmsError::Refused(_))),
            "{rewrapped:?}"
        );
    }
    // The key's own ARN, and another key of the same account and region (an older key the
    // configuration moved from), still open.
    assert!(vault::open(&kms, &binding, &sealed).await.is_ok());
    let older = aws_kms(&moto.endpoint, create_key(&moto.endpoint).await);
    let sealed_under_older = vault::seal(&older, &binding, &secret())
        .await
        .expect("sealed");
    assert!(
        vault::open(&kms, &binding, &sealed_under_older)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn aws_rewrap_moves_secrets_to_the_configured_key() {
    let Some(moto) = shared_moto().await else {
        return;
    };
    let old_key = create_key(&moto.endpoint).await;
    let new_key = create_key(&moto.endpoint).await;
    let binding = binding();
    let old = aws_kms(&moto.endpoint, old_key.clone());
    let sealed = vault::seal(&old, &binding, &secret())
        .await
        .expect("sealed");
    assert!(sealed.wrapped_key.kms_key_id.ends_with(&old_key));

    // The configuration now names the new key; secrets under the old one still open and
    // re-wrap onto the new one.
    let new = aws_kms(&moto.endpoint, new_key.clone());
    assert!(matches!(
        new.add_version(&Recorded).await,
        Err(KmsError::Refused(_))
    ));
    assert!(vault::open(&new, &binding, &sealed).await.is_ok());
    let rewrapped = vault::rewrap(&new, &binding, &sealed)
        .await
        .expect("rewrapped");
    assert!(rewrapped.wrapped_key.kms_key_id.ends_with(&new_key));
    // Configured by its bare id, the key is named by its ARN once checked (at startup), as in
    // every wrapped key: a re-wrapped secret counts as under the current key, not due again.
    new.check().await.expect("checked");
    assert_eq!(new.current_key_id(), rewrapped.wrapped_key.kms_key_id);
    let opened = vault::open(&new, &binding, &rewrapped)
        .await
        .expect("opened");
    assert_eq!(opened.expose_secret(), secret().expose_secret());
}

#[tokio::test]
async fn an_aws_kms_that_goes_away_becomes_unavailable() {
    // Its own moto process, since this test kills it.
    let Some(bin) = moto_binary() else {
        return;
    };
    let moto = MotoServer::start(&bin).await;
    let key_id = create_key(&moto.endpoint).await;
    let kms = aws_kms(&moto.endpoint, key_id);
    let binding = binding();
    let sealed = vault::seal(&kms, &binding, &secret())
        .await
        .expect("sealed");
    assert!(vault::open(&kms, &binding, &sealed).await.is_ok());

    drop(moto);

    let started = Instant::now();
    let result = vault::open(&kms, &binding, &sealed).await;
    assert!(
        matches!(result, Err(VaultError::Kms(KmsError::Unavailable(_)))),
        "{result:?}"
    );
    let result = vault::seal(&kms, &binding, &secret()).await;
    assert!(
        matches!(result, Err(VaultError::Kms(KmsError::Unavailable(_)))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// moto

/// The moto server binary, or `None` (skip) outside CI when it is not installed.
fn moto_binary() -> Option<PathBuf> {
    match std::env::var("CRYPTOPULSE_TEST_MOTO_SERVER") {
        Ok(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "CRYPTOPULSE_TEST_MOTO_SERVER={} does not exist; run scripts/moto.sh",
                path.display()
            );
            Some(path)
        }
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CRYPTOPULSE_TEST_MOTO_SERVER is not set: the AWS KMS tests need moto; \
             scripts/test.sh installs it (scripts/moto.sh) and sets the variable"
        ),
        _ => {
            eprintln!(
                "note: AWS KMS tests skipped: CRYPTOPULSE_TEST_MOTO_SERVER is not set \
                 (`source scripts/moto.sh` installs moto and sets it)"
            );
            None
        }
    }
}

/// A moto server on a free loopback port. It runs under a small shell that kills it when its
/// standard input closes, so moto also goes away when the test process exits without running
/// destructors (the shared server lives in a static).
struct MotoServer {
    endpoint: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl MotoServer {
    async fn start(bin: &Path) -> Self {
        let port = free_port();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" & pid=$!; read -r _; kill "$pid"; wait "$pid""#)
            .arg(bin)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server starts");
        let stdin = child.stdin.take();
        let server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            stdin,
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if client.get(&self.endpoint).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on {} within 60 s",
                self.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Closing stdin makes the shell kill moto and wait for it.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One moto server for the whole test binary; each test creates its own KMS key in it.
/// (Clients are per test: an SDK client's connection pool belongs to the runtime that made it.)
async fn shared_moto() -> Option<&'static MotoServer> {
    static MOTO: tokio::sync::OnceCell<Option<MotoServer>> = tokio::sync::OnceCell::const_new();
    MOTO.get_or_init(|| async {
        match moto_binary() {
            Some(bin) => Some(MotoServer::start(&bin).await),
            None => None,
        }
    })
    .await
    .as_ref()
}

fn admin_client(endpoint: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// A fresh symmetric encryption key; returns its key id (not the ARN).
async fn create_key(endpoint: &str) -> String {
    let out = admin_client(endpoint)
        .create_key()
        .description("cryptopulse test")
        .send()
        .await
        .expect("CreateKey");
    out.key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned()
}
