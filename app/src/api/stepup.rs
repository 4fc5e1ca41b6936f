//! Step-up: second factors (authenticator app, recovery codes, security keys), the privilege
//! window, and approvals bound to one order. WebAuthn ceremony state lives in the server-side
//! session only; the browser gets the public options and returns the authenticator's answer.

// An order approval carries the whole order (venue, type and terms) as form fields, plus the
// factor's answer; the `#[server]` macro generates the browser's caller without copying an
// `allow` on the function, so it is allowed for the module.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What the server asks for before it will do something sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepUpNeed {
    /// Any second factor: security key, authenticator app or a recovery code.
    AnyFactor,
    /// A security key with its PIN or biometric (admin actions; factor changes on an account
    /// that has one).
    SecurityKey,
    /// Adding a first factor needs a recent password sign-in.
    RecentSignIn,
    /// The action needs a step-up and the account has no second factor to step up with.
    SetUpFactor,
}

impl StepUpNeed {
    pub fn message(self) -> &'static str {
        match self {
            StepUpNeed::AnyFactor => {
                "Confirm it's you first: use your security key or a code from your authenticator app."
            }
            StepUpNeed::SecurityKey => {
                "Confirm it's you first with your security key, using its PIN or fingerprint. Admin actions need your security key, and so do changes that outlast this window once you have one (your factors, agent tokens, autonomous orders). An authenticator app or recovery code is not enough."
            }
            StepUpNeed::RecentSignIn => {
                "This needs a recent sign-in (to add your first second factor, or to change your password without one): sign out and sign in again, then do it within a few minutes."
            }
            StepUpNeed::SetUpFactor => {
                "This needs a confirmation with a second factor, and your account has none yet. Add a security key or an authenticator app on the Security page, then try again."
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

/// Shown once, when setting up an authenticator app. No derived `Debug`: every field carries
/// the secret (the QR code too), so a stray `{:?}` in a log prints none of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSetupView {
    pub secret: String,
    pub otpauth_url: String,
    /// A server-rendered SVG QR code of `otpauth_url`.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpSetupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpSetupView").finish_non_exhaustive()
    }
}

/// Recovery codes, shown once. On the wire a plain list of strings; `Debug` prints only how
/// many there are.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecoveryCodesView(pub Vec<String>);

impl std::fmt::Debug for RecoveryCodesView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodesView({} codes, redacted)", self.0.len())
    }
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
pub(crate) mod server {
    use domain::account::User;
    use domain::stepup::{FactorProof, KeyChange, SecurityKey, TotpCode};
    use tower_sessions::Session;
    use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential};

    use super::*;
    use crate::api::context::{request_meta, services, signed_in_secs, step_up_grant};

    /// `domain::stepup::Ceremony<PasskeyRegistration>`: the state with when it began.
    pub const REGISTRATION_KEY: &str = "webauthn_registration_v2";
    /// `domain::stepup::Ceremony<PasskeyAuthentication>`.
    pub const AUTHENTICATION_KEY: &str = "webauthn_authentication_v2";
    pub const ORDER_CHALLENGE_KEY: &str = "order_challenge";

    /// Drops every ceremony in progress (a sign-in starts none of the previous session's).
    pub async fn clear_ceremonies(session: &Session) -> Result<(), AppError> {
        for key in [REGISTRATION_KEY, AUTHENTICATION_KEY, ORDER_CHALLENGE_KEY] {
            session.remove_value(key).await?;
        }
        Ok(())
    }

    /// Adding or removing a security key: with a usable key on the account only a key step-up
    /// will do (see `StepUpService::authorize_key_change`, which audits a refusal).
    pub async fn require_key_change_allowed(
        user: &User,
        session: &Session,
        change: KeyChange,
    ) -> Result<(), AppError> {
        let grant = step_up_grant(session).await?;
        let signed_in_at = signed_in_secs(session).await?;
        services()?
            .stepup
            .authorize_key_change(user, change, grant.as_ref(), signed_in_at, &request_meta())
            .await?;
        Ok(())
    }

    /// The order an approval is asked for, as the trader names it: the venue ("paper" or one
    /// of their trade keys) is resolved like placement resolves it, so the digest binds the
    /// same exchange, environment and key the order will go to.
    pub async fn order_to_approve(
        user: domain::account::UserId,
        venue: &str,
        order_type: &str,
        symbol: &str,
        side: &str,
        quantity: &str,
        price: &str,
    ) -> Result<domain::stepup::OrderToApprove, AppError> {
        use domain::order::{OrderFormError, OrderType};
        use domain::stepup::{OrderTerms, OrderToApprove};

        let order_type = OrderType::parse(order_type).ok_or(OrderFormError::OrderType)?;
        let terms = OrderTerms::parse(symbol, side, quantity, price)?;
        let venue = crate::api::context::services()?
            .trading
            .resolve_venue(user, domain::trading::VenueChoice::parse(venue)?)
            .await?;
        Ok(OrderToApprove {
            venue,
            order_type,
            terms,
        })
    }

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

    /// Turning the app off or new recovery codes (see `StepUpService::authorize_factor_change`).
    pub async fn require_factor_change_allowed(
        user: &User,
        session: &Session,
    ) -> Result<(), AppError> {
        let grant = step_up_grant(session).await?;
        services()?
            .stepup
            .authorize_factor_change(user.id, grant.as_ref())
            .await?;
        Ok(())
    }

    /// Adding a factor (see `StepUpService::authorize_enrolment`).
    pub async fn require_enrolment_allowed(user: &User, session: &Session) -> Result<(), AppError> {
        let grant = step_up_grant(session).await?;
        let signed_in_at = signed_in_secs(session).await?;
        services()?
            .stepup
            .authorize_enrolment(user.id, grant.as_ref(), signed_in_at)
            .await?;
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

    let (user, session) = require_user().await?;
    let services = services()?;
    let summary = services.stepup.summary(user.id).await?;
    let grant = step_up_grant(&session).await?;
    let window = services.stepup.window(grant.as_ref());
    Ok(FactorsView {
        totp_enabled: summary.totp_enabled,
        totp_pending: summary.totp_pending,
        recovery_codes_left: summary.recovery_codes_left,
        keys: summary
            .security_keys
            .iter()
            .map(SecurityKeyView::from)
            .collect(),
        window_seconds_left: window.open.map(|(_, left)| left),
        window_method: window.open.map(|(method, _)| method.as_str().to_owned()),
        window_admin_grade: window.admin_grade,
        window_minutes: window.length.whole_minutes(),
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
pub async fn totp_confirm(code: String) -> Result<RecoveryCodesView, AppError> {
    use super::context::{grant_step_up, request_meta, require_user, services};
    use domain::stepup::TotpCode;
    use secrecy::ExposeSecret;

    let (user, session) = require_user().await?;
    // Checked again here, not only when the set-up started: it may have been started in a
    // window that has since closed.
    server::require_enrolment_allowed(&user, &session).await?;
    let code = TotpCode::parse(&code)?;
    let (codes, grant) = services()?
        .stepup
        .confirm_totp(user.id, &code, request_meta())
        .await?;
    grant_step_up(&session, grant).await?;
    Ok(RecoveryCodesView(
        codes.iter().map(|c| c.expose_secret().to_owned()).collect(),
    ))
}

#[server(endpoint = "stepup/totp-remove")]
pub async fn totp_remove() -> Result<(), AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, session) = require_user().await?;
    server::require_factor_change_allowed(&user, &session).await?;
    services()?
        .stepup
        .remove_totp(user.id, request_meta())
        .await?;
    Ok(())
}

/// New recovery codes (the old ones stop working), shown once.
#[server(endpoint = "stepup/recovery-codes")]
pub async fn new_recovery_codes() -> Result<RecoveryCodesView, AppError> {
    use super::context::{request_meta, require_user, services};
    use secrecy::ExposeSecret;

    let (user, session) = require_user().await?;
    server::require_factor_change_allowed(&user, &session).await?;
    let codes = services()?
        .stepup
        .regenerate_recovery_codes(user.id, request_meta())
        .await?;
    Ok(RecoveryCodesView(
        codes.iter().map(|c| c.expose_secret().to_owned()).collect(),
    ))
}

/// WebAuthn creation options (JSON) for a new security key; the ceremony state stays in the
/// session, for at most `domain::stepup::CEREMONY_LIFETIME`.
#[server(endpoint = "stepup/key-options")]
pub async fn key_registration_options() -> Result<String, AppError> {
    use super::context::{require_user, services};
    use domain::stepup::{Ceremony, KeyChange};

    let (user, session) = require_user().await?;
    server::require_key_change_allowed(&user, &session, KeyChange::Add).await?;
    let services = services()?;
    let (options, state) = services.stepup.begin_key_registration(&user).await?;
    session
        .insert(
            server::REGISTRATION_KEY,
            Ceremony::start(state, services.clock.now()),
        )
        .await?;
    serde_json::to_string(&options).map_err(AppError::internal)
}

/// Finishes registering a key with the authenticator's answer (JSON). It does not open the
/// privilege window: stepping up is a separate, deliberate act.
#[server(endpoint = "stepup/key-register")]
pub async fn register_key(name: String, credential: String) -> Result<SecurityKeyView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::stepup::{Ceremony, KeyChange, KeyName};
    use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential};

    let (user, session) = require_user().await?;
    let name = KeyName::parse(&name)?;
    let services = services()?;
    // Taken out before anything else: a registration ceremony is answered at most once, and
    // only while it is fresh.
    let state = session
        .remove::<Ceremony<PasskeyRegistration>>(server::REGISTRATION_KEY)
        .await?
        .ok_or_else(|| AppError::from(domain::stepup::StepUpError::NoCeremony))?
        .live(services.clock.now())?;
    // Checked again: the window that allowed the options may have closed since.
    server::require_key_change_allowed(&user, &session, KeyChange::Add).await?;
    let response: RegisterPublicKeyCredential = serde_json::from_str(&credential)
        .map_err(|_| AppError::Invalid("The security key's answer was malformed.".into()))?;
    let key = services
        .stepup
        .finish_key_registration(user.id, name, &response, &state, request_meta())
        .await?;
    Ok(SecurityKeyView::from(&key))
}

#[server(endpoint = "stepup/key-remove")]
pub async fn remove_key(id: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::stepup::KeyChange;

    let (user, session) = require_user().await?;
    server::require_key_change_allowed(&user, &session, KeyChange::Remove).await?;
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
    use domain::stepup::Ceremony;

    let (user, session) = require_user().await?;
    let services = services()?;
    let summary = services.stepup.summary(user.id).await?;
    let webauthn = match services.stepup.begin_key_authentication(user.id).await? {
        Some((options, state)) => {
            session
                .insert(
                    server::AUTHENTICATION_KEY,
                    Ceremony::start(state, services.clock.now()),
                )
                .await?;
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
    use domain::stepup::Ceremony;
    use webauthn_rs::prelude::PasskeyAuthentication;

    let (user, session) = require_user().await?;
    let answer = server::Answer::parse(&method, &response)?;
    let services = services()?;
    // Taken out first, so an assertion can be checked against this challenge only once, and
    // only while it is fresh.
    let state = match answer {
        server::Answer::Key(_) => session
            .remove::<Ceremony<PasskeyAuthentication>>(server::AUTHENTICATION_KEY)
            .await?
            .map(|ceremony| ceremony.live(services.clock.now()))
            .transpose()?,
        _ => None,
    };
    let grant = services
        .stepup
        .step_up(user.id, answer.proof(state.as_ref())?, request_meta())
        .await?;
    grant_step_up(&session, grant).await?;
    let window = services.stepup.window(Some(&grant));
    Ok(StepUpStatus {
        method: grant.method.as_str().to_owned(),
        seconds_left: window.length.whole_seconds(),
        admin_grade: window.admin_grade,
    })
}

/// Prepares the approval of one order: hashes the whole order (venue, type, symbol, side,
/// quantity, price) with a fresh nonce and, with a key, makes that digest the WebAuthn
/// challenge. Says whether the order needs approval at all.
#[server(endpoint = "stepup/order-options")]
pub async fn order_approval_options(
    venue: String,
    order_type: String,
    symbol: String,
    side: String,
    quantity: String,
    price: String,
) -> Result<OrderChallengeView, AppError> {
    use super::context::{require_user, services};

    let (user, session) = require_user().await?;
    let order = server::order_to_approve(
        user.id,
        &venue,
        &order_type,
        &symbol,
        &side,
        &quantity,
        &price,
    )
    .await?;
    let start = services()?
        .stepup
        .begin_order_approval(user.id, order)
        .await?;
    let view = OrderChallengeView {
        digest: start.challenge.digest.clone(),
        nonce: start.challenge.nonce.clone(),
        notional: start.notional.normalize().to_string(),
        needs_step_up: start.needs_step_up,
        webauthn: start
            .webauthn
            .map(|o| serde_json::to_string(&o))
            .transpose()
            .map_err(AppError::internal)?,
        totp: start.totp,
    };
    session
        .insert(server::ORDER_CHALLENGE_KEY, start.challenge)
        .await?;
    Ok(view)
}

/// Approves exactly the order the pending challenge was issued for. The order (venue, type and
/// terms) is sent again and must hash to the challenge's digest; the challenge is used up
/// whatever the outcome.
#[server(endpoint = "stepup/order-approve")]
pub async fn approve_order(
    venue: String,
    order_type: String,
    symbol: String,
    side: String,
    quantity: String,
    price: String,
    method: String,
    response: String,
) -> Result<OrderApprovalView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::stepup::OrderChallenge;

    let (user, session) = require_user().await?;
    let order = server::order_to_approve(
        user.id,
        &venue,
        &order_type,
        &symbol,
        &side,
        &quantity,
        &price,
    )
    .await?;
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
            order,
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
