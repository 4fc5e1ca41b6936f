//! The server's local KMS: master key versions from a private key file (or from an environment
//! value), wrapping data keys in process with [`LocalKms`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use domain::vault::local::{LocalKeyError, LocalKms};
use domain::vault::{
    DataKey, EncryptionContext, Kms, KmsBackend, KmsError, RotationRecord, WrappedKey,
};
use tokio::sync::{Mutex, RwLock};
use zeroize::Zeroizing;

/// Why a master key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileKmsError {
    #[error("cannot read the master key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the master key file {} is readable by other users (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the master key file {}: {source}", path.display())]
    MalformedFile {
        path: PathBuf,
        source: LocalKeyError,
    },
    #[error("CRYPTOPULSE_MASTER_KEY: {0}")]
    MalformedEnv(LocalKeyError),
}

#[derive(Debug, Clone)]
enum KeySource {
    File(PathBuf),
    Env,
}

/// The local KMS. Key versions live in memory; `add_version` has the rotation recorded first,
/// then appends to the key file, then uses the new version: a version is never on disk without
/// its record, nor used before it is on disk.
pub struct FileKms {
    keys: RwLock<LocalKms>,
    // Mirrors the newest version so `current_key_id` (not async) needs no lock.
    current: AtomicU32,
    // Serialises rotations: two concurrent `add_version` calls must not pick the same number.
    rotation: Mutex<()>,
    source: KeySource,
}

impl std::fmt::Debug for FileKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only where the key comes from and the current version: never key bytes.
        f.debug_struct("FileKms")
            .field("source", &self.source)
            .field("current_version", &self.current.load(Ordering::Acquire))
            .finish()
    }
}

impl FileKms {
    /// Loads `<version>:<hex>` lines from a key file that only its owner may read.
    pub fn load(path: &Path) -> Result<Self, FileKmsError> {
        let keys = read_key_file(path)?;
        Ok(Self::new(keys, KeySource::File(path.to_owned())))
    }

    /// Parses the value of `CRYPTOPULSE_MASTER_KEY`: the key file's line format, or a bare
    /// 64-hex key meaning version 1. Such a key cannot be rotated from inside the server.
    pub fn from_env_value(text: &str) -> Result<Self, FileKmsError> {
        let trimmed = text.trim();
        let keys = if !trimmed.contains(':') && trimmed.len() == 64 {
            let line = Zeroizing::new(format!("1:{trimmed}"));
            LocalKms::parse(&line)
        } else {
            LocalKms::parse(trimmed)
        }
        .map_err(FileKmsError::MalformedEnv)?;
        Ok(Self::new(keys, KeySource::Env))
    }

    fn new(keys: LocalKms, source: KeySource) -> Self {
        Self {
            current: AtomicU32::new(keys.latest_version()),
            keys: RwLock::new(keys),
            rotation: Mutex::new(()),
            source,
        }
    }

    /// Another server on the same key file and database may have rotated: a secret wrapped
    /// under a version this one has not loaded makes it read the file again, adopt the versions
    /// it lacks and wrap new keys under the newest. Whether any version was added.
    async fn adopt_versions_from_file(&self) -> bool {
        let KeySource::File(path) = &self.source else {
            return false;
        };
        // Blocking file I/O, but short, and only for a version this server has not seen.
        let Ok(on_disk) = read_key_file(path) else {
            return false;
        };
        let mut keys = self.keys.write().await;
        let added = keys.adopt_missing_versions(on_disk);
        if added {
            self.current
                .fetch_max(keys.latest_version(), Ordering::AcqRel);
            tracing::info!(
                version = keys.latest_version(),
                "adopted master key versions added by another server"
            );
        }
        added
    }

    /// The key file, when the key came from one.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            KeySource::File(path) => Some(path),
            KeySource::Env => None,
        }
    }

    /// The number the next version gets. Another process (or an editor) may have added versions
    /// since we loaded: number after the highest one anywhere, or a new line would shadow a key
    /// that secrets still use.
    fn next_version(path: &Path, keys_in_memory: u32) -> Result<u32, KmsError> {
        let on_disk = read_key_file(path)
            .map_err(|e| KmsError::Refused(e.to_string()))?
            .latest_version();
        on_disk
            .max(keys_in_memory)
            .checked_add(1)
            .ok_or_else(|| KmsError::Refused("no master key version numbers left".into()))
    }

    /// Appends `<next>:<hex>` and flushes it to disk, unless the file gained that version
    /// meanwhile. Returns nothing in memory on failure.
    fn append_version(path: &Path, next: u32, key: &DataKey) -> Result<(), KmsError> {
        let io_err = |e: std::io::Error| {
            KmsError::Unavailable(format!(
                "cannot write the master key file {}: {e}",
                path.display()
            ))
        };
        if Self::next_version(path, 0)? > next {
            return Err(KmsError::Refused(format!(
                "the master key file {} gained version {next} meanwhile; try again",
                path.display()
            )));
        }
        let mut line = Zeroizing::new(format!("{next}:{}\n", hex::encode(key.expose())));

        // O_APPEND: the write lands at the end even if the file grew since we opened it.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        // A last line without its newline would merge with ours into one malformed line.
        if file.metadata().map_err(io_err)?.len() > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(io_err)?;
            file.read_exact(&mut last).map_err(io_err)?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        file.write_all(line.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(())
    }
}

fn read_key_file(path: &Path) -> Result<LocalKms, FileKmsError> {
    let io_err = |source| FileKmsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    // Checked on the open file, so a swap between check and read cannot slip through.
    let mode = file.metadata().map_err(io_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(FileKmsError::Permissions {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io_err)?;
    LocalKms::parse(&text).map_err(|source| FileKmsError::MalformedFile {
        path: path.to_owned(),
        source,
    })
}

#[async_trait]
impl Kms for FileKms {
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        // Rare (a key added, an app enrolled): a new secret is wrapped under the newest
        // version any server added, not one a rotation elsewhere is retiring.
        self.adopt_versions_from_file().await;
        self.keys.read().await.generate_data_key(context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        let first = self
            .keys
            .read()
            .await
            .decrypt_data_key(wrapped, context)
            .await;
        match first {
            Err(KmsError::Refused(_)) if self.adopt_versions_from_file().await => {
                self.keys
                    .read()
                    .await
                    .decrypt_data_key(wrapped, context)
                    .await
            }
            other => other,
        }
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        let first = self.keys.read().await.rewrap(wrapped, context).await;
        match first {
            Err(KmsError::Refused(_)) if self.adopt_versions_from_file().await => {
                self.keys.read().await.rewrap(wrapped, context).await
            }
            other => other,
        }
    }

    fn current_key_id(&self) -> String {
        format!("local:v{}", self.current.load(Ordering::Acquire))
    }

    fn backend(&self) -> KmsBackend {
        KmsBackend::Local
    }

    async fn refresh(&self) {
        self.adopt_versions_from_file().await;
    }

    async fn add_version(&self, record: &dyn RotationRecord) -> Result<String, KmsError> {
        let KeySource::File(path) = &self.source else {
            return Err(KmsError::Refused(
                "the master key comes from CRYPTOPULSE_MASTER_KEY; add a version there and restart"
                    .into(),
            ));
        };
        let _rotating = self.rotation.lock().await;
        let in_memory = self.keys.read().await.latest_version();
        // Blocking file I/O, but short and rare (an admin rotating the key).
        let version = Self::next_version(path, in_memory)?;
        let key = DataKey::generate();
        // Recorded first, under the rotation lock: if the record cannot be written, the file and
        // the current version stay as they were.
        record
            .record(&format!("local:v{version}"))
            .await
            .map_err(|_| KmsError::NotRecorded)?;
        Self::append_version(path, version, &key)?;
        self.keys.write().await.insert_version(version, key);
        // A higher version adopted from the file meanwhile stays current.
        self.current.fetch_max(version, Ordering::AcqRel);
        tracing::info!(version, "added a local master key version");
        Ok(format!("local:v{version}"))
    }
}
