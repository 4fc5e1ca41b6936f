//! Recovery codes: ten single-use codes that stand in for the authenticator app, stored as
//! hashes and shown once.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::service::draft;
use super::{StepUpError, StepUpService};
use crate::account::UserId;
use crate::audit::{Outcome, RequestMeta};
use crate::audit_action::AuditAction;

pub const RECOVERY_CODE_COUNT: usize = 10;

/// Ten random 80-bit codes, shown once: `xxxx-xxxx-xxxx-xxxx` in lowercase base32.
pub fn generate_recovery_codes() -> Vec<SecretString> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars: Vec<char> = bytes
                .iter()
                .map(|b| alphabet[usize::from(*b) % 32] as char)
                .collect();
            let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
            SecretString::from(groups.join("-"))
        })
        .collect()
}

/// The stored form of a recovery code. The codes carry 80 random bits, so a plain SHA-256 is
/// enough (as for API tokens); a slow hash would only slow down every check of ten codes.
pub fn recovery_code_hash(code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(format!(
        "cryptopulse-recovery-v1:{normalised}"
    )))
}

impl StepUpService {
    pub(super) async fn verify_recovery_code(
        &self,
        user: UserId,
        code: &str,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<(), StepUpError> {
        let used = self
            .store
            .use_recovery_code(
                user,
                &recovery_code_hash(code),
                self.clock.now(),
                draft(
                    user,
                    AuditAction::StepupRecoveryCodeUsed,
                    Outcome::Success,
                    meta,
                )
                .detail("purpose", purpose),
            )
            .await?;
        if used {
            return Ok(());
        }
        self.audit_only(
            draft(
                user,
                AuditAction::StepupRecoveryCodeFailed,
                Outcome::Denied,
                meta,
            )
            .detail("purpose", purpose),
        )
        .await?;
        Err(StepUpError::WrongCode)
    }

    /// New recovery codes replace the old ones; shown once.
    pub async fn regenerate_recovery_codes(
        &self,
        user: UserId,
        meta: RequestMeta,
    ) -> Result<Vec<SecretString>, StepUpError> {
        if !self.summary(user).await?.totp_enabled {
            return Err(StepUpError::RecoveryCodesNeedTotp);
        }
        let codes = generate_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_code_hash(c.expose_secret()))
            .collect();
        self.store
            .replace_recovery_codes(
                user,
                &hashes,
                self.clock.now(),
                draft(
                    user,
                    AuditAction::StepupRecoveryCodesReplaced,
                    Outcome::Success,
                    &meta,
                ),
            )
            .await?;
        Ok(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_distinct_and_hash_the_same_however_typed() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let hashes: std::collections::HashSet<String> = codes
            .iter()
            .map(|c| recovery_code_hash(c.expose_secret()))
            .collect();
        assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
        let code = codes[0].expose_secret();
        assert_eq!(code.len(), 19);
        assert_eq!(
            recovery_code_hash(code),
            recovery_code_hash(&format!(" {} ", code.to_uppercase().replace('-', "")))
        );
    }
}
