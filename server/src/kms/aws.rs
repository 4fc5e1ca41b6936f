//! AWS KMS adapter: data keys come from GenerateDataKey under one customer managed key, bound to
//! the secret's encryption context; rotation happens on AWS's side (or by pointing the
//! configuration at a new key and re-wrapping with ReEncrypt).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState, KeyUsageType};
use domain::vault::{DataKey, EncryptionContext, Kms, KmsBackend, KmsError, WrappedKey};
use zeroize::Zeroizing;

/// Where the KMS key lives. `endpoint` overrides AWS's (a VPC endpoint, or a local test server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKmsSettings {
    pub key_id: String,
    pub region: String,
    pub endpoint: Option<String>,
}

pub struct AwsKms {
    client: aws_sdk_kms::Client,
    settings: AwsKmsSettings,
    /// `arn:<partition>:kms:<region>:<account>:key/` of the configured key, learned from AWS
    /// once: a stored secret naming a key outside it is not sent to AWS.
    home: tokio::sync::OnceCell<String>,
    /// The configured key's ARN once `check` learned it: what AWS names in every wrapped key,
    /// so "wrapped under the current key" compares like with like (the settings may hold a
    /// bare key id or an alias).
    arn: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKms")
            .field("key_id", &self.settings.key_id)
            .field("region", &self.settings.region)
            .field("endpoint", &self.settings.endpoint)
            .finish()
    }
}

// A KMS outage must surface as an error within seconds, not hang a request: a short overall
// budget, and one retry (the SDK's standard mode retries throttling and transient errors).
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(1))
}

fn check_settings(settings: &AwsKmsSettings) -> Result<(), KmsError> {
    if settings.key_id.trim().is_empty() {
        return Err(KmsError::Refused("no AWS KMS key id is configured".into()));
    }
    if settings.region.trim().is_empty() {
        return Err(KmsError::Refused("no AWS region is configured".into()));
    }
    Ok(())
}

impl AwsKms {
    /// Uses the default credential chain (environment, profile, web identity, ECS, IMDS).
    /// Nothing is sent yet; [`AwsKms::check`] verifies the key.
    pub async fn connect(settings: AwsKmsSettings) -> Result<Self, KmsError> {
        check_settings(&settings)?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts())
            .retry_config(retries());
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk_config = loader.load().await;
        Ok(Self {
            client: aws_sdk_kms::Client::new(&sdk_config),
            settings,
            home: tokio::sync::OnceCell::new(),
            arn: std::sync::OnceLock::new(),
        })
    }

    /// Static credentials instead of the default chain (tests against a local KMS endpoint).
    pub fn with_static_credentials(
        settings: AwsKmsSettings,
        credentials: Credentials,
    ) -> Result<Self, KmsError> {
        check_settings(&settings)?;
        let mut builder = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .timeout_config(timeouts())
            .retry_config(retries());
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(Self {
            client: aws_sdk_kms::Client::from_conf(builder.build()),
            settings,
            home: tokio::sync::OnceCell::new(),
            arn: std::sync::OnceLock::new(),
        })
    }

    /// Asks AWS about the configured key: it must exist, be enabled and be a symmetric
    /// encryption key. Returns its ARN. Meant for startup, to fail on a wrong key id early.
    pub async fn check(&self) -> Result<String, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(&self.settings.key_id)
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeKey", e))?;
        let meta = out
            .key_metadata()
            .ok_or_else(|| KmsError::Refused("DescribeKey returned no key metadata".into()))?;
        if meta.key_state() != Some(&KeyState::Enabled) || !meta.enabled() {
            return Err(KmsError::Refused(format!(
                "the KMS key {} is not enabled (state {:?})",
                self.settings.key_id,
                meta.key_state()
            )));
        }
        // An absent usage means AWS's default, ENCRYPT_DECRYPT (moto leaves it out).
        if let Some(usage) = meta.key_usage()
            && usage != &KeyUsageType::EncryptDecrypt
        {
            return Err(KmsError::Refused(format!(
                "the KMS key {} is not an encryption key (usage {usage:?})",
                self.settings.key_id,
            )));
        }
        let arn = meta.arn().unwrap_or(&self.settings.key_id).to_owned();
        if let Some(home) = key_home(&arn) {
            let _ = self.home.set(home.to_owned());
            let _ = self.arn.set(arn.clone());
        }
        Ok(arn)
    }

    /// Refuses, without asking AWS, a stored secret whose key is neither the configured one
    /// nor another key of the same account and region (an older key it was rotated from).
    /// Someone who can write the database could otherwise name a key of their own account,
    /// whose policy lets this server decrypt, and so choose the data key (and the exchange
    /// credentials) the server would use.
    async fn check_named_key(&self, named: &str) -> Result<(), KmsError> {
        if named == self.settings.key_id {
            return Ok(());
        }
        let home = self
            .home
            .get_or_try_init(|| async {
                let arn = self.check().await?;
                key_home(&arn).map(str::to_owned).ok_or_else(|| {
                    KmsError::Refused(format!("AWS named the configured key {arn:?}, not an ARN"))
                })
            })
            .await?;
        match named.strip_prefix(home.as_str()) {
            Some(key) if !key.is_empty() && !key.contains([':', '/']) => Ok(()),
            _ => Err(KmsError::Refused(format!(
                "a stored secret names the KMS key {named:?}, outside this server's account and \
                 region ({home}…); it was not sent to AWS"
            ))),
        }
    }
}

/// `arn:<partition>:kms:<region>:<account>:key/` of a key ARN.
fn key_home(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "kms"
        && parts[1..5].iter().all(|part| !part.is_empty())
        && parts[5].starts_with("key/");
    well_formed.then(|| &arn[..arn.len() - parts[5].len() + "key/".len()])
}

fn aws_context(context: &EncryptionContext) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Moves the SDK's plaintext blob into a zeroizing `DataKey`.
fn data_key(plaintext: Option<Blob>) -> Result<DataKey, KmsError> {
    let bytes = Zeroizing::new(
        plaintext
            .ok_or_else(|| KmsError::Refused("AWS KMS returned no plaintext data key".into()))?
            .into_inner(),
    );
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        KmsError::Refused(format!(
            "AWS KMS returned a {}-byte data key, expected 32",
            bytes.len()
        ))
    })?;
    Ok(DataKey::from_bytes(key))
}

fn ciphertext(blob: Option<Blob>, operation: &str) -> Result<Vec<u8>, KmsError> {
    blob.map(Blob::into_inner)
        .ok_or_else(|| KmsError::Refused(format!("{operation} returned no ciphertext")))
}

/// Transport trouble and AWS-side transient faults are `Unavailable` (retry later); a ciphertext
/// that does not match its key or context is `InvalidCiphertext`; the rest (disabled or deleted
/// key, access denied, bad request) is `Refused`.
fn map_sdk_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => service_error(
            operation,
            service.err().code().unwrap_or("unknown error"),
            service.err().message().unwrap_or(""),
            service.raw().status().is_server_error(),
        ),
        // A request that could not even be built is a configuration problem, not an outage.
        SdkError::ConstructionFailure(_) => {
            KmsError::Refused(format!("{operation}: {}", DisplayErrorContext(&err)))
        }
        // Timeouts, connection failures (including credentials that could not be fetched) and
        // unparseable responses.
        _ => KmsError::Unavailable(format!("{operation}: {}", DisplayErrorContext(&err))),
    }
}

/// An error response from AWS, by its error code.
fn service_error(operation: &str, code: &str, message: &str, server_error: bool) -> KmsError {
    match code {
        "InvalidCiphertextException" | "IncorrectKeyException" => KmsError::InvalidCiphertext,
        "DependencyTimeoutException"
        | "KMSInternalException"
        | "KeyUnavailableException"
        | "ThrottlingException"
        | "LimitExceededException" => {
            KmsError::Unavailable(format!("{operation}: {code}: {message}"))
        }
        _ if server_error => KmsError::Unavailable(format!("{operation}: {code}: {message}")),
        // DisabledException, AccessDeniedException, NotFoundException,
        // KMSInvalidStateException, ValidationException, ...
        _ => KmsError::Refused(format!("{operation}: {code}: {message}")),
    }
}

#[async_trait]
impl Kms for AwsKms {
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.settings.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(aws_context(context)))
            .send()
            .await
            .map_err(|e| map_sdk_error("GenerateDataKey", e))?;
        let key = data_key(out.plaintext)?;
        let wrapped = WrappedKey {
            // The ARN AWS reports, so a secret stays tied to its key even if the configured
            // id is an alias that later points elsewhere.
            kms_key_id: out.key_id.unwrap_or_else(|| self.settings.key_id.clone()),
            blob: ciphertext(out.ciphertext_blob, "GenerateDataKey")?,
        };
        Ok((key, wrapped))
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.check_named_key(&wrapped.kms_key_id).await?;
        let out = self
            .client
            .decrypt()
            .key_id(&wrapped.kms_key_id)
            .ciphertext_blob(Blob::new(wrapped.blob.clone()))
            .set_encryption_context(Some(aws_context(context)))
            .send()
            .await
            .map_err(|e| map_sdk_error("Decrypt", e))?;
        data_key(out.plaintext)
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.check_named_key(&wrapped.kms_key_id).await?;
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.blob.clone()))
            .source_key_id(&wrapped.kms_key_id)
            .set_source_encryption_context(Some(aws_context(context)))
            .destination_key_id(&self.settings.key_id)
            .set_destination_encryption_context(Some(aws_context(context)))
            .send()
            .await
            .map_err(|e| map_sdk_error("ReEncrypt", e))?;
        Ok(WrappedKey {
            kms_key_id: out.key_id.unwrap_or_else(|| self.settings.key_id.clone()),
            blob: ciphertext(out.ciphertext_blob, "ReEncrypt")?,
        })
    }

    fn current_key_id(&self) -> String {
        self.arn
            .get()
            .cloned()
            .unwrap_or_else(|| self.settings.key_id.clone())
    }

    fn backend(&self) -> KmsBackend {
        KmsBackend::Aws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_home_is_its_partition_region_and_account() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            key_home(arn),
            Some("arn:aws:kms:eu-west-1:111122223333:key/")
        );
        assert_eq!(
            key_home("arn:aws-cn:kms:cn-north-1:111122223333:key/k"),
            Some("arn:aws-cn:kms:cn-north-1:111122223333:key/")
        );
        for not_a_key_arn in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/cryptopulse",
            "arn:aws:kms:eu-west-1:111122223333:alias/cryptopulse",
            "arn:aws:kms::111122223333:key/k",
            "arn:aws:s3:eu-west-1:111122223333:key/k",
        ] {
            assert_eq!(key_home(not_a_key_arn), None, "{not_a_key_arn}");
        }
    }

    // moto does not enforce key states on data operations, so the mapping of these codes is
    // checked here rather than against a server.
    #[test]
    fn aws_error_codes_map_to_kms_errors() {
        for code in ["InvalidCiphertextException", "IncorrectKeyException"] {
            assert!(matches!(
                service_error("Decrypt", code, "", false),
                KmsError::InvalidCiphertext
            ));
        }
        for code in [
            "DisabledException",
            "AccessDeniedException",
            "NotFoundException",
            "KMSInvalidStateException",
            "ValidationException",
        ] {
            match service_error("Decrypt", code, "why", false) {
                KmsError::Refused(message) => assert_eq!(message, format!("Decrypt: {code}: why")),
                other => panic!("{code}: {other:?}"),
            }
        }
        for code in [
            "KMSInternalException",
            "DependencyTimeoutException",
            "KeyUnavailableException",
            "ThrottlingException",
        ] {
            assert!(matches!(
                service_error("Decrypt", code, "", false),
                KmsError::Unavailable(_)
            ));
        }
        assert!(matches!(
            service_error("Decrypt", "SomethingNew", "", true),
            KmsError::Unavailable(_)
        ));
        assert!(matches!(
            service_error("Decrypt", "SomethingNew", "", false),
            KmsError::Refused(_)
        ));
    }
}
