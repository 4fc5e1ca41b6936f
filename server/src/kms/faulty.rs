//! A KMS wrapper that fails on demand, so tests can see how the server behaves when its KMS is
//! down or refuses. Not for production configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use domain::vault::{
    DataKey, EncryptionContext, Kms, KmsBackend, KmsError, RotationRecord, WrappedKey,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Every call goes to the wrapped KMS.
    Healthy,
    /// Every call fails with `KmsError::Unavailable`, as if the KMS could not be reached.
    Unavailable,
    /// Every call fails with `KmsError::Refused`, as if the key were disabled.
    Refusing,
}

impl FaultMode {
    fn to_u8(self) -> u8 {
        match self {
            FaultMode::Healthy => 0,
            FaultMode::Unavailable => 1,
            FaultMode::Refusing => 2,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => FaultMode::Unavailable,
            2 => FaultMode::Refusing,
            _ => FaultMode::Healthy,
        }
    }
}

#[derive(Debug)]
pub struct FaultyKms {
    inner: Arc<dyn Kms>,
    mode: AtomicU8,
}

impl FaultyKms {
    /// Starts healthy.
    pub fn new(inner: Arc<dyn Kms>) -> Self {
        Self {
            inner,
            mode: AtomicU8::new(FaultMode::Healthy.to_u8()),
        }
    }

    pub fn set_mode(&self, mode: FaultMode) {
        self.mode.store(mode.to_u8(), Ordering::SeqCst);
    }

    pub fn mode(&self) -> FaultMode {
        FaultMode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    fn check(&self) -> Result<(), KmsError> {
        match self.mode() {
            FaultMode::Healthy => Ok(()),
            FaultMode::Unavailable => Err(KmsError::Unavailable(
                "injected fault: the KMS does not answer".into(),
            )),
            FaultMode::Refusing => Err(KmsError::Refused(
                "injected fault: the KMS key is disabled".into(),
            )),
        }
    }
}

#[async_trait]
impl Kms for FaultyKms {
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.check()?;
        self.inner.generate_data_key(context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.check()?;
        self.inner.decrypt_data_key(wrapped, context).await
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.check()?;
        self.inner.rewrap(wrapped, context).await
    }

    fn current_key_id(&self) -> String {
        self.inner.current_key_id()
    }

    async fn refresh(&self) {
        self.inner.refresh().await
    }

    fn backend(&self) -> KmsBackend {
        self.inner.backend()
    }

    async fn add_version(&self, record: &dyn RotationRecord) -> Result<String, KmsError> {
        self.check()?;
        self.inner.add_version(record).await
    }
}
