//! Server-side plumbing for server functions: the services, request metadata and the session.

use std::sync::Arc;

use domain::account::{AccountService, DeviceToken, User, UserId};
use domain::alerts::AlertService;
use domain::audit::RequestMeta;
use domain::audit::service::AuditService;
use domain::authz::{Admin, AdminReader, Reviewer};
use domain::clock::Clock;
use domain::keys::{KeyVaultService, RewrapRunner};
use domain::stepup::{StepUpGrant, StepUpService};
use leptos::prelude::*;
use tower_sessions::Session;

use crate::error::AppError;

/// Session data keys. The session store indexes `USER_ID_KEY` for "log out everywhere".
pub const USER_ID_KEY: &str = "uid";
/// When the session's user signed in, unix microseconds: compared with the user's last "sign
/// out everywhere" or password change (`users.sessions_revoked_at`, also microseconds), so a
/// sign-in that began before one does not outlive it.
pub const AUTHENTICATED_AT_KEY: &str = "auth_at_us";
/// The last successful step-up (`domain::stepup::StepUpGrant`): the privilege window.
pub const STEP_UP_KEY: &str = "step_up";

/// Everything server functions need, built once at startup and provided through context (as an
/// `Arc<Services>`: every request gets it, and a clone of the struct itself costs dozens of
/// reference-count updates): the use cases, and the clock and session lifetime the session
/// plumbing here needs.
#[derive(Debug, Clone)]
pub struct Services {
    pub accounts: AccountService,
    pub security_alerts: AlertService,
    pub audit: AuditService,
    pub stepup: StepUpService,
    pub vault: KeyVaultService,
    /// Runs re-wrap jobs in the background (the server's runtime).
    pub rewrap: Arc<dyn RewrapRunner>,
    pub trading: domain::trading::TradingService,
    /// Verifies the audit chain in the background (the server's runtime).
    pub audit_jobs: Arc<dyn domain::audit::jobs::AuditJobRunner>,
    /// Builds PDF audit reports in the background (the server's runtime).
    pub report_jobs: Arc<dyn domain::audit::reports::ReportJobRunner>,
    pub clock: Arc<dyn Clock>,
    /// A session ends this long after sign-in, however active.
    pub absolute_session: time::Duration,
    /// Served over TLS: cookies are `Secure` and `__Host-` prefixed.
    pub secure_cookies: bool,
}

pub fn services() -> Result<Arc<Services>, AppError> {
    use_context::<Arc<Services>>().ok_or_else(|| context_error("Services missing from context"))
}

/// The error for a request context that could not be read. Every request's context holds its
/// head (leptos_axum provides it beside `Services`), so when that is gone too, the caller is
/// work a request left behind: its client hung up mid-render, the request's reactive owner was
/// dropped with its handler, and a page resource ran on in a task of its own. Nobody waits for
/// that answer, so it is not an internal error for an operator to chase.
fn context_error(detail: impl std::fmt::Display) -> AppError {
    if with_context::<http::request::Parts, _>(|_| ()).is_none() {
        tracing::debug!(%detail, "a page resource ran on after its client hung up");
        return AppError::Unavailable("The request was abandoned before it was answered.".into());
    }
    AppError::internal(detail)
}

/// Who is asking, as recorded by the server's request middleware.
pub fn request_meta() -> RequestMeta {
    // Read in place: `use_context` would clone the request's whole head.
    with_context::<http::request::Parts, _>(|parts| parts.extensions.get::<RequestMeta>().cloned())
        .flatten()
        .unwrap_or_default()
}

pub async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>()
        .await
        .map_err(|e| context_error(format!("session extractor: {e}")))
}

/// The signed-in user, if the session is valid. A session past its absolute lifetime, or whose
/// user no longer exists, is ended here.
pub async fn current_user() -> Result<Option<(User, Session)>, AppError> {
    let services = services()?;
    let session = session().await?;
    Ok(user_for_session(&services, &session)
        .await?
        .map(|user| (user, session)))
}

/// The user `session` belongs to, if it is valid; an expired session, or one whose user no
/// longer exists, is ended here. Shared by server functions and plain routes (downloads).
pub async fn user_for_session(
    services: &Services,
    session: &Session,
) -> Result<Option<User>, AppError> {
    let Some(raw_id) = session.get::<String>(USER_ID_KEY).await? else {
        return Ok(None);
    };
    let authenticated_at = session.get::<i64>(AUTHENTICATED_AT_KEY).await?.unwrap_or(0);
    let age = services.clock.now().unix_timestamp() - authenticated_at.div_euclid(1_000_000);
    let user = match uuid::Uuid::parse_str(&raw_id) {
        Ok(id) if age >= 0 && age <= services.absolute_session.whole_seconds() => {
            let read = || services.accounts.user(UserId(id));
            match use_context::<RequestUser>() {
                Some(request) => request.user((UserId(id), authenticated_at), read).await?,
                None => read().await?,
            }
        }
        _ => None,
    };
    match user {
        Some(user) => Ok(Some(user)),
        None => {
            session.flush().await?;
            Ok(None)
        }
    }
}

/// The signed-in user as read once for this request: a page runs several server functions that
/// each need them (4 reads of the same row for `/trade`), and runs them at once, so the first
/// caller reads and the others wait for its answer. Provided per request, so nothing outlives
/// it; keyed by the session's user and sign-in time, so a sign-in or sign-out within the
/// request reads again.
#[derive(Debug, Clone, Default)]
pub struct RequestUser(Arc<std::sync::Mutex<Option<(SignedIn, UserRead)>>>);

/// A session's user and the time they signed in (unix microseconds).
type SignedIn = (UserId, i64);
/// The user's row, once read (`None`: no such user). A failed read leaves it empty, and the
/// next caller reads again.
type UserRead = Arc<tokio::sync::OnceCell<Option<User>>>;

impl RequestUser {
    async fn user<E, Read>(
        &self,
        signed_in: SignedIn,
        read: impl FnOnce() -> Read,
    ) -> Result<Option<User>, E>
    where
        Read: Future<Output = Result<Option<User>, E>>,
    {
        let once = {
            let mut slot = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some((key, once)) if *key == signed_in => once.clone(),
                _ => slot.insert((signed_in, UserRead::default())).1.clone(),
            }
        };
        once.get_or_try_init(read).await.cloned()
    }
}

/// When the session's user signed in, unix seconds (0 when no one has).
pub async fn signed_in_secs(session: &Session) -> Result<i64, AppError> {
    Ok(session
        .get::<i64>(AUTHENTICATED_AT_KEY)
        .await?
        .unwrap_or(0)
        .div_euclid(1_000_000))
}

pub async fn require_user() -> Result<(User, Session), AppError> {
    current_user().await?.ok_or(AppError::Unauthenticated)
}

/// Starts an authenticated session under a fresh id (no session fixation), signed in at
/// `signed_in_at` (when the sign-in began).
pub async fn start_session(
    session: &Session,
    user: &User,
    signed_in_at: time::OffsetDateTime,
) -> Result<(), AppError> {
    session.cycle_id().await?;
    // A session reused for another sign-in must not keep the previous user's privileges, nor
    // a ceremony (key registration, step-up, order approval) begun before it.
    session.remove_value(STEP_UP_KEY).await?;
    super::stepup::server::clear_ceremonies(session).await?;
    session.insert(USER_ID_KEY, user.id.to_string()).await?;
    session
        .insert(
            AUTHENTICATED_AT_KEY,
            domain::clock::unix_micros(signed_in_at),
        )
        .await?;
    Ok(())
}

/// The device cookie's name; like the session cookie's, `__Host-` prefixed over TLS.
fn device_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-cryptopulse_device"
    } else {
        "cryptopulse_device"
    }
}

/// The device token this request's browser shows, if it has a well-formed one.
pub fn presented_device_token(services: &Services) -> Option<DeviceToken> {
    let name = device_cookie_name(services.secure_cookies);
    with_context::<http::request::Parts, _>(|parts| {
        parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| DeviceToken::parse(value))
    })
    .flatten()
}

/// Gives this request's browser its device token (renewing the cookie's lifetime).
pub fn keep_device_token(services: &Services, token: &DeviceToken) -> Result<(), AppError> {
    let response = use_context::<leptos_axum::ResponseOptions>()
        .ok_or_else(|| context_error("ResponseOptions missing from context"))?;
    let secure = if services.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        device_cookie_name(services.secure_cookies),
        token.expose(),
        domain::account::DEVICE_TRUST_TTL.whole_seconds(),
    );
    let value = http::HeaderValue::from_str(&cookie)
        .map_err(|_| AppError::internal("a device cookie that is not a header value"))?;
    response.append_header(http::header::SET_COOKIE, value);
    Ok(())
}

/// The session's step-up grant, if any (expired or not).
pub async fn step_up_grant(session: &Session) -> Result<Option<StepUpGrant>, AppError> {
    Ok(session.get::<StepUpGrant>(STEP_UP_KEY).await?)
}

/// Proof that the signed-in user is an admin whose privilege window was opened with a
/// user-verified security key; the step-up service checks both.
pub async fn require_admin_proof() -> Result<Admin, AppError> {
    let (user, session) = require_user().await?;
    let grant = step_up_grant(&session).await?;
    Ok(services()?.stepup.admin(user.id, grant.as_ref()).await?)
}

/// Proof that the signed-in user is an admin by role (no privilege window): for reads only.
pub async fn require_admin_reader() -> Result<AdminReader, AppError> {
    let (user, _) = require_user().await?;
    Ok(services()?.accounts.admin_reader(user.id).await?)
}

/// Proof that the signed-in user is a reviewer or an admin; the account service checks it.
pub async fn require_reviewer() -> Result<Reviewer, AppError> {
    let (user, _) = require_user().await?;
    Ok(services()?.accounts.reviewer(user.id).await?)
}

/// Opens the privilege window under a fresh session id (the old id stops working).
pub async fn grant_step_up(session: &Session, grant: StepUpGrant) -> Result<(), AppError> {
    session.cycle_id().await?;
    session.insert(STEP_UP_KEY, grant).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use domain::account::{Email, Role};

    use super::*;

    fn trader() -> User {
        User {
            id: UserId(uuid::Uuid::from_u128(7)),
            email: Email::parse("trader@example.com").expect("email"),
            role: Role::Trader,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_reads_its_user_once_however_many_ask_at_once() {
        let request = RequestUser::default();
        let user = trader();
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            // Long enough for every caller to be waiting on this read.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, ()>(Some(user.clone()))
        };
        let signed_in = (user.id, 1_000);
        let answers = tokio::join!(
            request.user(signed_in, read),
            request.user(signed_in, read),
            request.user(signed_in, read),
            request.user(signed_in, read),
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        for answer in [answers.0, answers.1, answers.2, answers.3] {
            assert_eq!(answer.expect("read").map(|u| u.id), Some(user.id));
        }
        // Signed in again (or as someone else) within the request: read afresh.
        let again = request.user((user.id, 2_000), read).await;
        assert_eq!(again.expect("read").map(|u| u.id), Some(user.id));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_remembered() {
        let request = RequestUser::default();
        let user = trader();
        let signed_in = (user.id, 1_000);
        let failed = request
            .user(signed_in, || async { Err::<Option<User>, _>("down") })
            .await;
        assert_eq!(failed.map(|u| u.map(|u| u.id)), Err("down"));
        let read = request
            .user(signed_in, || async { Ok::<_, &str>(Some(user.clone())) })
            .await;
        assert_eq!(read.map(|u| u.map(|u| u.id)), Ok(Some(user.id)));
    }
}
