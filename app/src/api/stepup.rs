//! Step-up: second factors (authenticator app, recovery codes, security keys), the privilege
//! window, and approvals bound to one order. WebAuthn ceremony state lives in the server-side
//! session only; the browser gets the public options and returns the authenticator's answer.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What the server asks for before it will do something sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepUpNeed {
    /// Any second factor: security key, authenticator app or a recovery code.
    AnyFactor,
    /// A security key with its PIN or biometric (admin actions).
    SecurityKey,
    /// Adding a first factor needs a recent password sign-in.
    RecentSignIn,
}

impl StepUpNeed {
    pub fn message(self) -> &'static str {
        match self {
            StepUpNeed::AnyFactor => {
                "Confirm it's you first: use your security key or a code from your authenticator app."
            }
            StepUpNeed::SecurityKey => {
                "Admin actions need your security key (with its PIN or fingerprint); an authenticator app code is not enough."
            }
            StepUpNeed::RecentSignIn => {
                "To add your first second factor, sign out and sign in again, then add it within a few minutes."
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityKeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// Disabled after its signature counter went backwards (a possible clone).
    pub flagged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorsView {
    pub totp_enabled: bool,
    pub totp_pending: bool,
    pub recovery_codes_left: u32,
    pub keys: Vec<SecurityKeyView>,
    /// Seconds left in the privilege window, if open.
    pub window_seconds_left: Option<i64>,
    /// How the window was opened ("security-key", "totp", "recovery-code").
    pub window_method: Option<String>,
    /// The window allows admin actions (user-verified security key).
    pub window_admin_grade: bool,
    pub window_minutes: i64,
    pub is_admin: bool,
}

/// Shown once, when setting up an authenticator app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSetupView {
    pub secret: String,
    pub otpauth_url: String,
    /// A server-rendered SVG QR code of `otpauth_url`.
    pub qr_svg: String,
}

/// The ways the user can step up right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpChoices {
    /// WebAuthn request options (JSON), when the user has a usable security key.
    pub webauthn: Option<String>,
    pub totp: bool,
    pub recovery_codes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpStatus {
    pub method: String,
    pub seconds_left: i64,
    pub admin_grade: bool,
}

/// An approval request for one order: what it commits to and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChallengeView {
    pub digest: String,
    pub nonce: String,
    pub notional: String,
    pub needs_step_up: bool,
    pub webauthn: Option<String>,
    pub totp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderApprovalView {
    pub digest: String,
    pub method: String,
    pub expires_at: String,
}

#[cfg(feature = "ssr")]
mod server {
    use domain::account::User;
    use domain::stepup::{FactorProof, SecurityKey, TotpCode};
    use tower_sessions::Session;
    use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential};

    use super::*;
    use crate::api::context::{AUTHENTICATED_AT_KEY, services};

    pub const REGISTRATION_KEY: &str = "webauthn_registration";
    pub const AUTHENTICATION_KEY: &str = "webauthn_authentication";
    pub const ORDER_CHALLENGE_KEY: &str = "order_challenge";

    impl From<&SecurityKey> for SecurityKeyView {
        fn from(key: &SecurityKey) -> Self {
            Self {
                id: key.id.to_string(),
                name: key.name.clone(),
                created_at: domain::audit::canonical_time(key.created_at),
                last_used_at: key.last_used_at.map(domain::audit::canonical_time),
                flagged: key.flagged_at.is_some(),
            }
        }
    }

    /// Adding a factor: with factors already, it needs a step-up (so a stolen session cannot
    /// add the thief's key); for the first one, a recent password sign-in.
    pub async fn require_enrolment_allowed(user: &User, session: &Session) -> Result<(), AppError> {
        let services = services()?;
        if services.stepup.summary(user.id).await?.has_any() {
            crate::api::context::require_step_up(domain::stepup::SensitiveAction::ManageFactors)
                .await?;
            return Ok(());
        }
        let signed_in_at = session.get::<i64>(AUTHENTICATED_AT_KEY).await?.unwrap_or(0);
        let age = services.clock.now().unix_timestamp() - signed_in_at;
        if age < 0 || age > services.stepup.policy.window.whole_seconds() {
            return Err(AppError::StepUpRequired(StepUpNeed::RecentSignIn));
        }
        Ok(())
    }

    pub fn parse_credential(raw: &str) -> Result<PublicKeyCredential, AppError> {
        serde_json::from_str(raw)
            .map_err(|_| AppError::Invalid("The security key's answer was malformed.".into()))
    }

    /// Builds the proof a method names; for keys, with the session's pending ceremony state.
    pub enum Answer {
        Totp(TotpCode),
        Recovery(String),
        Key(Box<PublicKeyCredential>),
    }

    impl Answer {
        pub fn parse(method: &str, response: &str) -> Result<Self, AppError> {
            match method {
                "totp" => Ok(Answer::Totp(TotpCode::parse(response)?)),
                "recovery-code" => {
                    let code = response.trim();
                    if code.is_empty() || code.len() > 64 {
                        return Err(AppError::Invalid(
                            "Enter one of your recovery codes.".into(),
                        ));
                    }
                    Ok(Answer::Recovery(code.to_owned()))
                }
                "security-key" => Ok(Answer::Key(Box::new(parse_credential(response)?))),
                _ => Err(AppError::Invalid("Unknown step-up method.".into())),
            }
        }

        pub fn proof<'a>(
            &'a self,
            state: Option<&'a PasskeyAuthentication>,
        ) -> Result<FactorProof<'a>, AppError> {
            Ok(match self {
                Answer::Totp(code) => FactorProof::Totp(code),
                Answer::Recovery(code) => FactorProof::RecoveryCode(code),
                Answer::Key(credential) => FactorProof::SecurityKey {
                    credential,
                    state: state
                        .ok_or_else(|| AppError::from(domain::stepup::StepUpError::NoCeremony))?,
                },
            })
        }
    }

    pub fn qr_svg(data: &str) -> Result<String, AppError> {
        use qrcode::QrCode;
        use qrcode::render::svg;
        let code =
            QrCode::new(data.as_bytes()).map_err(|e| AppError::internal(format!("qr: {e}")))?;
        Ok(code
            .render::<svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .dark_color(svg::Color("#0f172a"))
            .light_color(svg::Color("#ffffff"))
            .build())
    }
}

#[server(endpoint = "stepup/factors")]
pub async fn factors() -> Result<FactorsView, AppError> {
    use super::context::{require_user, services, step_up_grant};
    use domain::stepup::{SensitiveAction, StepUpMethod};

    let (user, session) = require_user().await?;
    let services = services()?;
    let summary = services.stepup.summary(user.id).await?;
    let now = services.clock.now();
    let grant = step_up_grant(&session).await?;
    let policy = &services.stepup.policy;
    let left = grant.as_ref().and_then(|g| policy.remaining(g, now));
    Ok(FactorsView {
        totp_enabled: summary.totp_enabled,
        totp_pending: summary.totp_pending,
        recovery_codes_left: summary.recovery_codes_left,
        keys: summary
            .security_keys
            .iter()
            .map(SecurityKeyView::from)
            .collect(),
        window_seconds_left: left,
        window_method: grant
            .filter(|_| left.is_some())
            .map(|g| StepUpMethod::as_str(g.method).to_owned()),
        window_admin_grade: policy
            .check(grant.as_ref(), SensitiveAction::Administer, now)
            .is_ok(),
        window_minutes: policy.window.whole_minutes(),
        is_admin: user.role == domain::account::Role::Admin,
    })
}

/// Starts setting up an authenticator app: the secret and QR code are shown once.
#[server(endpoint = "stepup/totp-setup")]
pub async fn totp_setup() -> Result<TotpSetupView, AppError> {
    use super::context::{request_meta, require_user, services};
    use secrecy::ExposeSecret;

    let (user, session) = require_user().await?;
    server::require_enrolment_allowed(&user, &session).await?;
    let enrolment = services()?
        .stepup
        .begin_totp_enrolment(&user, request_meta())
        .await?;
    let url = enrolment.otpauth_url.expose_secret().to_owned();
    Ok(TotpSetupView {
        secret: enrolment.secret_base32.expose_secret().to_owned(),
        qr_svg: server::qr_svg(&url)?,
        otpauth_url: url,
    })
}

/// Confirms the app with its first code; returns the recovery codes, shown once. A confirmed
/// first factor also opens the privilege window.
#[server(endpoint = "stepup/totp-confirm")]
pub async fn totp_confirm(code: String) -> Result<Vec<String>, AppError> {
    use super::context::{grant_step_up, request_meta, require_user, services};
    use domain::stepup::{StepUpGrant, StepUpMethod, TotpCode};
    use secrecy::ExposeSecret;

    let (user, session) = require_user().await?;
    let code = TotpCode::parse(&code)?;
    let services = services()?;
    let codes = services
        .stepup
        .confirm_totp(user.id, &code, request_meta())
        .await?;
    grant_step_up(
        &session,
        StepUpGrant {
            method: StepUpMethod::Totp,
            user_verified: false,
            at: services.clock.now().unix_timestamp(),
        },
    )
    .await?;
    Ok(codes.iter().map(|c| c.expose_secret().to_owned()).collect())
}

#[server(endpoint = "stepup/totp-remove")]
pub async fn totp_remove() -> Result<(), AppError> {
    use super::context::{request_meta, require_step_up, services};
    use domain::stepup::SensitiveAction;

    let (user, _) = require_step_up(SensitiveAction::ManageFactors).await?;
    services()?
        .stepup
        .remove_totp(user.id, request_meta())
        .await?;
    Ok(())
}

/// New recovery codes (the old ones stop working), shown once.
#[server(endpoint = "stepup/recovery-codes")]
pub async fn new_recovery_codes() -> Result<Vec<String>, AppError> {
    use super::context::{request_meta, require_step_up, services};
    use domain::stepup::SensitiveAction;
    use secrecy::ExposeSecret;

    let (user, _) = require_step_up(SensitiveAction::ManageFactors).await?;
    let codes = services()?
        .stepup
        .regenerate_recovery_codes(user.id, request_meta())
        .await?;
    Ok(codes.iter().map(|c| c.expose_secret().to_owned()).collect())
}

/// WebAuthn creation options (JSON) for a new security key; the ceremony state stays in the
/// session.
#[server(endpoint = "stepup/key-options")]
pub async fn key_registration_options() -> Result<String, AppError> {
    use super::context::{require_user, services};

    let (user, session) = require_user().await?;
    server::require_enrolment_allowed(&user, &session).await?;
    let (options, state) = services()?.stepup.begin_key_registration(&user).await?;
    session.insert(server::REGISTRATION_KEY, state).await?;
    serde_json::to_string(&options).map_err(AppError::internal)
}

/// Finishes registering a key with the authenticator's answer (JSON). It does not open the
/// privilege window: stepping up is a separate, deliberate act.
#[server(endpoint = "stepup/key-register")]
pub async fn register_key(name: String, credential: String) -> Result<SecurityKeyView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::stepup::KeyName;
    use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential};

    let (user, session) = require_user().await?;
    let name = KeyName::parse(&name)?;
    // Taken out before anything else: a registration ceremony is answered at most once.
    let state = session
        .remove::<PasskeyRegistration>(server::REGISTRATION_KEY)
        .await?
        .ok_or_else(|| AppError::from(domain::stepup::StepUpError::NoCeremony))?;
    let response: RegisterPublicKeyCredential = serde_json::from_str(&credential)
        .map_err(|_| AppError::Invalid("The security key's answer was malformed.".into()))?;
    let key = services()?
        .stepup
        .finish_key_registration(user.id, name, &response, &state, request_meta())
        .await?;
    Ok(SecurityKeyView::from(&key))
}

#[server(endpoint = "stepup/key-remove")]
pub async fn remove_key(id: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_step_up, services};
    use domain::stepup::SensitiveAction;

    let (user, _) = require_step_up(SensitiveAction::ManageFactors).await?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    services()?
        .stepup
        .remove_key(user.id, id, request_meta())
        .await?;
    Ok(())
}

/// Starts a step-up: WebAuthn request options when the user has a key (the state stays in the
/// session), and which other methods are available.
#[server(endpoint = "stepup/options")]
pub async fn step_up_options() -> Result<StepUpChoices, AppError> {
    use super::context::{require_user, services};

    let (user, session) = require_user().await?;
    let services = services()?;
    let summary = services.stepup.summary(user.id).await?;
    let webauthn = match services.stepup.begin_key_authentication(user.id).await? {
        Some((options, state)) => {
            session.insert(server::AUTHENTICATION_KEY, state).await?;
            Some(serde_json::to_string(&options).map_err(AppError::internal)?)
        }
        None => None,
    };
    Ok(StepUpChoices {
        webauthn,
        totp: summary.totp_enabled,
        recovery_codes: summary.totp_enabled && summary.recovery_codes_left > 0,
    })
}

/// Answers a step-up. `method` is "security-key" (response: the assertion JSON), "totp" (the
/// 6-digit code) or "recovery-code". Success opens the privilege window under a new session id.
#[server(endpoint = "stepup/verify")]
pub async fn step_up(method: String, response: String) -> Result<StepUpStatus, AppError> {
    use super::context::{grant_step_up, request_meta, require_user, services};
    use domain::stepup::SensitiveAction;
    use webauthn_rs::prelude::PasskeyAuthentication;

    let (user, session) = require_user().await?;
    let answer = server::Answer::parse(&method, &response)?;
    // Taken out first, so an assertion can be checked against this challenge only once.
    let state = match answer {
        server::Answer::Key(_) => {
            session
                .remove::<PasskeyAuthentication>(server::AUTHENTICATION_KEY)
                .await?
        }
        _ => None,
    };
    let services = services()?;
    let grant = services
        .stepup
        .step_up(user.id, answer.proof(state.as_ref())?, request_meta())
        .await?;
    grant_step_up(&session, grant).await?;
    let policy = &services.stepup.policy;
    Ok(StepUpStatus {
        method: grant.method.as_str().to_owned(),
        seconds_left: policy.window.whole_seconds(),
        admin_grade: policy
            .check(
                Some(&grant),
                SensitiveAction::Administer,
                services.clock.now(),
            )
            .is_ok(),
    })
}

/// Prepares the approval of one order: hashes the order with a fresh nonce and, with a key,
/// makes that digest the WebAuthn challenge. Says whether the order needs approval at all.
#[server(endpoint = "stepup/order-options")]
pub async fn order_approval_options(
    symbol: String,
    side: String,
    quantity: String,
    price: String,
) -> Result<OrderChallengeView, AppError> {
    use super::context::{require_user, services};
    use domain::stepup::OrderTerms;

    let (user, session) = require_user().await?;
    let terms = OrderTerms::parse(&symbol, &side, &quantity, &price)?;
    let services = services()?;
    let notional = terms.notional();
    let needs_step_up = services.stepup.policy.order_needs_step_up(notional);
    let summary = services.stepup.summary(user.id).await?;
    let (challenge, options) = services.stepup.begin_order_approval(user.id, terms).await?;
    let view = OrderChallengeView {
        digest: challenge.digest.clone(),
        nonce: challenge.nonce.clone(),
        notional: notional.normalize().to_string(),
        needs_step_up,
        webauthn: options
            .map(|o| serde_json::to_string(&o))
            .transpose()
            .map_err(AppError::internal)?,
        totp: summary.totp_enabled,
    };
    session
        .insert(server::ORDER_CHALLENGE_KEY, challenge)
        .await?;
    Ok(view)
}

/// Approves exactly the order the pending challenge was issued for. The terms are sent again
/// and must hash to the challenge's digest; the challenge is used up whatever the outcome.
#[server(endpoint = "stepup/order-approve")]
pub async fn approve_order(
    symbol: String,
    side: String,
    quantity: String,
    price: String,
    method: String,
    response: String,
) -> Result<OrderApprovalView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::stepup::{OrderChallenge, OrderTerms};

    let (user, session) = require_user().await?;
    let terms = OrderTerms::parse(&symbol, &side, &quantity, &price)?;
    let answer = server::Answer::parse(&method, &response)?;
    let challenge = session
        .remove::<OrderChallenge>(server::ORDER_CHALLENGE_KEY)
        .await?
        .ok_or_else(|| AppError::from(domain::stepup::StepUpError::NoCeremony))?;
    let approval = services()?
        .stepup
        .approve_order(
            user.id,
            &challenge,
            terms,
            answer.proof(challenge.webauthn.as_ref())?,
            request_meta(),
        )
        .await?;
    Ok(OrderApprovalView {
        digest: approval.digest,
        method: approval.method.as_str().to_owned(),
        expires_at: domain::audit::canonical_time(approval.expires_at),
    })
}
