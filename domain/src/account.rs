//! Accounts: validated input types, roles, login backoff policy and the account use cases.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use async_trait::async_trait;

use crate::audit::{Actor, AuditDraft, AuditLog, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::clock::Clock;
pub use crate::ids::UserId;
use crate::store_error::StoreError;

/// Why account input was refused; each message is safe to show to the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("enter an email address like name@example.com")]
    Email,
    #[error("the password must be between {min} and {max} characters", min = Password::MIN_CHARS, max = Password::MAX_CHARS)]
    PasswordLength,
    #[error("unknown role; use trader, reviewer or admin")]
    Role,
}

/// A syntactically plausible, normalised (trimmed, lower-case) email address, printable ASCII
/// only: an invisible character (U+200B, a bidi override) or a look-alike letter (Cyrillic
/// `а`) would make an account that shows as someone else's address on every page where people
/// decide about accounts. International domains are written in their `xn--` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let candidate = raw.trim().to_lowercase();
        let valid = candidate.len() <= Self::MAX_LEN
            && candidate.chars().all(|c| c.is_ascii_graphic())
            && match candidate.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= 64
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if valid {
            Ok(Self(candidate))
        } else {
            Err(ValidationError::Email)
        }
    }

    /// An address as stored. Accounts made before addresses were held to printable ASCII keep
    /// theirs (trimmed, lower-case, no whitespace or control character), so they still load;
    /// only new addresses go through [`Email::parse`].
    pub fn from_stored(raw: &str) -> Option<Self> {
        let stored = raw.trim().to_lowercase();
        let plausible = !stored.is_empty()
            && stored.len() <= Self::MAX_LEN
            && stored.contains('@')
            && !stored.chars().any(|c| c.is_whitespace() || c.is_control());
        plausible.then_some(Self(stored))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed. Never serialised; `Debug` is redacted by `SecretString`.
#[derive(Debug, Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            Ok(Self(SecretString::from(raw)))
        } else {
            Err(ValidationError::PasswordLength)
        }
    }

    /// For login only: any submitted text is checked against the stored hash (an old account
    /// may predate the current length rule), bounded so hashing cost stays fixed.
    pub fn for_login(raw: String) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::PasswordLength);
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// An argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Trader,
    Reviewer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Trader, Role::Reviewer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trader => "trader",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "trader" => Ok(Role::Trader),
            "reviewer" => Ok(Role::Reviewer),
            "admin" => Ok(Role::Admin),
            _ => Err(ValidationError::Role),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: PasswordHash,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub role: Role,
    pub password_hash: PasswordHash,
    pub created_at: OffsetDateTime,
}

/// The unit rate limits and backoff count per client: an IPv4 address, or an IPv6 /64 (one
/// subscriber usually holds a whole /64, so single IPv6 addresses are free to rotate).
pub fn client_network(ip: std::net::IpAddr) -> std::net::IpAddr {
    // `::ffff:1.2.3.4` is the IPv4 client 1.2.3.4, not one of the IPv6 network `::/64`.
    let ip = ip.to_canonical();
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// Login backoff: the first `free_failures` failures cost nothing; after that each further failure
/// doubles the wait, from one second up to `max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub free_failures: u32,
    pub max_wait: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            max_wait: Duration::minutes(15),
        }
    }
}

impl BackoffPolicy {
    /// How long to refuse attempts after `failures` consecutive failures.
    pub fn wait_after(&self, failures: u32) -> Duration {
        if failures < self.free_failures {
            return Duration::ZERO;
        }
        let exponent = (failures - self.free_failures).min(30);
        let wait = Duration::seconds(1_i64 << exponent);
        wait.min(self.max_wait)
    }
}

/// What a password attempt for `email` from `meta`'s client is counted under: the account and
/// the client's network.
fn throttle_keys(email: &str, meta: &RequestMeta) -> Vec<String> {
    let mut keys = vec![format!("account:{}", email.to_lowercase())];
    keys.extend(network_throttle_key(meta));
    keys
}

/// The client network's back-off key, shared by sign-in failures and sign-ups refused for a
/// taken email: probing for accounts either way backs off the same.
fn network_throttle_key(meta: &RequestMeta) -> Option<String> {
    let ip = meta.ip.as_deref()?.parse().ok()?;
    Some(format!("ip:{}", client_network(ip)))
}

/// Why an account use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Same for an unknown email and a wrong password, so the answer reveals nothing.
    #[error("invalid email or password")]
    BadCredentials,
    #[error("too many failed attempts; try again in {0} seconds")]
    Throttled(u64),
    #[error("this email cannot be used to sign up")]
    EmailUnavailable,
    #[error("not found")]
    NotFound,
    #[error("this needs another role")]
    Forbidden,
    /// An admin tried to change their own role.
    #[error("an admin cannot change their own role")]
    OwnRole,
    /// The user's role, or their pending admin-role request, changed meanwhile.
    #[error("the role changed meanwhile")]
    RoleChanged,
    /// The current password given to change it was wrong.
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Users and their credentials. Every write takes the audit event that records it; the adapter
/// commits both in one transaction or neither.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    async fn create_user(&self, user: NewUser, audit: AuditDraft) -> Result<User, StoreError>;
    async fn find_credentials(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError>;
    async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// The users among `ids` that exist (in no particular order).
    async fn find_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    /// The current emails of the users among `ids` that exist: how a page names the users it
    /// shows (the records keep ids).
    async fn emails(&self, ids: &[UserId]) -> Result<HashMap<UserId, Email>, StoreError> {
        let users = self.find_users(ids).await?;
        Ok(users.into_iter().map(|u| (u.id, u.email)).collect())
    }
    /// Sets the role of a user whose role is still `from` (`Conflict`, changing nothing,
    /// otherwise), and drops any pending admin-role request for them, and, when they lose the
    /// admin role, the requests they made.
    async fn set_role(
        &self,
        id: UserId,
        from: Role,
        role: Role,
        audit: AuditDraft,
    ) -> Result<User, StoreError>;
    /// Replaces the user's password hash, ends every session of theirs and forgets every
    /// browser they signed in from but `keep_device` (a device token's hash), and with
    /// `revoke_agent_tokens` revokes their agent tokens, in one transaction with its audit
    /// event.
    async fn set_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        revoke_agent_tokens: bool,
        keep_device: Option<String>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Every pending request to grant or remove the admin role (expired ones too: the
    /// service judges their age).
    async fn role_requests(&self) -> Result<Vec<RoleRequest>, StoreError>;
    /// Records `request`, replacing any earlier one for the same user, with its audit event.
    async fn request_role(&self, request: RoleRequest, audit: AuditDraft)
    -> Result<(), StoreError>;
    /// Gives the user the role `request` asked for and removes the request, in one transaction
    /// with the audit event; `Conflict`, changing nothing, if that very request is no longer
    /// pending (confirmed or replaced meanwhile), its requester is no longer an admin, or the
    /// user's role is no longer `request.from`.
    async fn confirm_role_request(
        &self,
        request: &RoleRequest,
        audit: AuditDraft,
    ) -> Result<User, StoreError>;
    /// The user a browser's device token (by [`DeviceToken::hash`]) was given to, and when.
    async fn trusted_device(
        &self,
        token_hash: &str,
    ) -> Result<Option<(UserId, OffsetDateTime)>, StoreError>;
    /// Remembers (or, for one already known, renews) a device token of `user`'s, as given at
    /// `at`; the user's oldest are forgotten beyond [`TRUSTED_DEVICES_PER_USER`].
    async fn trust_device(
        &self,
        user: UserId,
        token_hash: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// How long an admin's request to change a role waits for a second admin.
pub const ROLE_REQUEST_TTL: Duration = Duration::hours(24);

/// An admin's request to change someone's role. It takes effect only when a second admin makes
/// the same change, so no admin can make a second admin or a reviewer account of their own (and
/// use it to lift what another admin or the anomaly response set on them), nor remove the other
/// admins or reviewers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRequest {
    pub target: UserId,
    /// The target's role when it was asked for: a request outlived by another change lapses.
    pub from: Role,
    pub role: Role,
    pub requested_by: UserId,
    pub requested_at: OffsetDateTime,
}

/// What an admin's role change did.
#[derive(Debug)]
pub enum RoleChange {
    Changed(User),
    /// Waiting for a second admin to make the same change.
    Requested(RoleRequest),
}

/// How long a browser is remembered after its last sign-in (each sign-in renews it).
pub const DEVICE_TRUST_TTL: Duration = Duration::days(180);

/// How many browsers an account's sign-ins are remembered for.
pub const TRUSTED_DEVICES_PER_USER: usize = 10;

/// The secret in a browser's device cookie (OWASP's "device cookies"), given to it at a
/// successful sign-in. Failed sign-ins from a browser that shows the account's token are
/// counted for that browser alone, so strangers' failures cannot keep the owner locked out.
/// A password change forgets every token of the account.
pub struct DeviceToken(SecretString);

impl DeviceToken {
    const PREFIX: &'static str = "cpd_";

    pub fn generate() -> Self {
        use base64::Engine;
        use rand::RngCore;

        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self(SecretString::from(format!("{}{encoded}", Self::PREFIX)))
    }

    /// A cookie value with the shape of a token this server issues; anything else is ignored.
    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix(Self::PREFIX)?;
        let well_formed = body.len() == 43
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        well_formed.then(|| Self(SecretString::from(raw.to_owned())))
    }

    /// The value for the cookie.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// What the store keeps: 256 random bits need no slow hash.
    pub fn hash(&self) -> String {
        crate::trading::agent::token_hash(self.expose())
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceToken(..)")
    }
}

/// A successful sign-in: the user, and the device token their browser is to keep (none if it
/// could not be stored: the browser is then counted like a stranger's next time).
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub device: Option<DeviceToken>,
    /// When the sign-in began, before the password was checked: the session's sign-in time.
    /// A password change or "sign out everywhere" committed after this ends the session, even
    /// when this sign-in read the password before the change.
    pub started_at: OffsetDateTime,
}

/// Ends every session of a user ("log out everywhere"), recorded by the given audit event;
/// with `agent_tokens` (the reason given), also revokes every live agent token of theirs and
/// turns autonomous agent orders off in the same transaction (one `agent.token_revoked` event
/// each, and `agent.autonomous_changed`). Returns (sessions ended, tokens revoked).
#[async_trait]
pub trait SessionRevoker: Send + Sync + std::fmt::Debug {
    async fn revoke_all(
        &self,
        user: UserId,
        agent_tokens: Option<&str>,
        audit: AuditDraft,
    ) -> Result<(u64, u64), StoreError>;
}

/// Password hashing is slow on purpose; adapters run it off the async executor.
#[async_trait]
pub trait PasswordHasher: Send + Sync + std::fmt::Debug {
    async fn hash(&self, password: Password) -> Result<PasswordHash, StoreError>;
    /// Returns whether `password` matches `hash`. A malformed hash never matches.
    async fn verify(&self, password: Password, hash: PasswordHash) -> bool;
}

/// Counts failed logins per account and per client address and says when to try again.
/// Keys starting with `ip:` are client addresses; the others are accounts. The counts are
/// shared by every app server and survive a restart, or a restart would be a fresh set of
/// guesses.
#[async_trait]
pub trait LoginThrottle: Send + Sync + std::fmt::Debug {
    /// Starts an attempt: `Ok(Err(seconds))` while any key is backing off. Otherwise the attempt
    /// counts as a possible failure until `finish`, so parallel guesses cannot all slip through.
    async fn begin(
        &self,
        keys: &[String],
        now: OffsetDateTime,
    ) -> Result<Result<(), u64>, StoreError>;
    /// Ends an attempt started by `begin`. Success clears the account's failures. If the
    /// outcome cannot be stored, the attempt stays counted as a failure.
    async fn finish(&self, keys: &[String], succeeded: bool, now: OffsetDateTime);
}

/// The account use cases. Each state change goes to the store together with its audit event.
#[derive(Debug, Clone)]
pub struct AccountService {
    store: Arc<dyn AccountStore>,
    audit: Arc<dyn AuditLog>,
    hasher: Arc<dyn PasswordHasher>,
    throttle: Arc<dyn LoginThrottle>,
    sessions: Arc<dyn SessionRevoker>,
    clock: Arc<dyn Clock>,
    /// A real hash of a random password: unknown emails are verified against it so a login
    /// for a missing account costs the same time as one for an existing account.
    dummy_hash: PasswordHash,
}

impl AccountService {
    pub fn new(
        store: Arc<dyn AccountStore>,
        audit: Arc<dyn AuditLog>,
        hasher: Arc<dyn PasswordHasher>,
        throttle: Arc<dyn LoginThrottle>,
        sessions: Arc<dyn SessionRevoker>,
        clock: Arc<dyn Clock>,
        dummy_hash: PasswordHash,
    ) -> Self {
        Self {
            store,
            audit,
            hasher,
            throttle,
            sessions,
            clock,
            dummy_hash,
        }
    }

    /// Proof that `user` is an admin by role, for reading what admin pages show. Changing
    /// anything needs [`crate::authz::Admin`] (the step-up service's proof) instead.
    pub async fn admin_reader(
        &self,
        user: UserId,
    ) -> Result<crate::authz::AdminReader, AccountError> {
        match self.store.find_user(user).await? {
            Some(found) if found.role == Role::Admin => {
                Ok(crate::authz::AdminReader::new(found.id))
            }
            _ => Err(AccountError::Forbidden),
        }
    }

    /// The user with this id, if there is one.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, AccountError> {
        Ok(self.store.find_user(id).await?)
    }

    /// The user with this email, if there is one.
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>, AccountError> {
        Ok(self
            .store
            .find_credentials(email)
            .await?
            .map(|found| found.user))
    }

    /// The users among `ids` that exist, in no particular order.
    pub async fn users(&self, ids: &[UserId]) -> Result<Vec<User>, AccountError> {
        Ok(self.store.find_users(ids).await?)
    }

    /// Every user, for the admin's user list.
    pub async fn list_users(
        &self,
        _reader: &crate::authz::AdminReader,
    ) -> Result<Vec<User>, AccountError> {
        Ok(self.store.list_users().await?)
    }

    /// Proof that `user` may act as a reviewer (reviewers and admins), read from the store so a
    /// caller cannot claim a role it does not have.
    pub async fn reviewer(&self, user: UserId) -> Result<crate::authz::Reviewer, AccountError> {
        match self.store.find_user(user).await? {
            Some(found) if matches!(found.role, Role::Reviewer | Role::Admin) => {
                Ok(crate::authz::Reviewer::new(found.id))
            }
            _ => Err(AccountError::Forbidden),
        }
    }

    pub async fn sign_up(
        &self,
        email: Email,
        password: Password,
        role: Role,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<User, AccountError> {
        // Only anonymous sign-ups can be probes; the operator's CLI is not throttled.
        let keys: Vec<String> = if actor.kind == crate::audit::ActorKind::Anonymous {
            network_throttle_key(&meta).into_iter().collect()
        } else {
            Vec::new()
        };
        if let Err(retry_after) = self.throttle.begin(&keys, self.clock.now()).await? {
            self.audit
                .record(
                    AuditDraft::new(actor, AuditAction::AccountCreate, Outcome::Denied, meta)
                        .detail("reason", "backoff")
                        .detail("retry_after_secs", retry_after),
                )
                .await?;
            return Err(AccountError::Throttled(retry_after));
        }
        let created = self
            .create_account(email, password, role, actor, meta)
            .await;
        let taken = matches!(created, Err(AccountError::EmailUnavailable));
        self.throttle.finish(&keys, !taken, self.clock.now()).await;
        created
    }

    /// [`Self::sign_up`] once its attempt is admitted. A taken email is recorded (without the
    /// address, someone else's): a series of them from one network is someone listing accounts.
    async fn create_account(
        &self,
        email: Email,
        password: Password,
        role: Role,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<User, AccountError> {
        let refused = AuditDraft::new(
            actor.clone(),
            AuditAction::AccountCreate,
            Outcome::Denied,
            meta.clone(),
        )
        .detail("reason", "email already registered")
        .detail("role", role.as_str());
        let password_hash = self.hasher.hash(password).await?;
        let new_user = NewUser {
            id: UserId::new_random(),
            email,
            role,
            password_hash,
            created_at: self.clock.now(),
        };
        let actor = if actor.kind == crate::audit::ActorKind::Anonymous {
            Actor::user(new_user.id)
        } else {
            actor
        };
        let draft = AuditDraft::new(actor, AuditAction::AccountCreate, Outcome::Success, meta)
            .resource(format!("user:{}", new_user.id))
            .detail("role", role.as_str());
        match self.store.create_user(new_user, draft).await {
            Ok(user) => Ok(user),
            Err(StoreError::Conflict) => {
                self.audit.record(refused).await?;
                Err(AccountError::EmailUnavailable)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Signs in with a password. `device` is the token the browser's device cookie holds, if
    /// any: when it was given to this account, failures count for that browser alone.
    pub async fn log_in(
        &self,
        email_input: &str,
        password: Password,
        device: Option<DeviceToken>,
        meta: RequestMeta,
    ) -> Result<SignedIn, AccountError> {
        let now = self.clock.now();
        let email_input = email_input.trim();
        if email_input.len() > Email::MAX_LEN {
            // No account can have this email; refusing early also keeps throttle keys small.
            return Err(AccountError::BadCredentials);
        }
        let trusted_device = match device {
            Some(token) => self
                .device_trusted_for(&token, email_input)
                .await?
                .then_some(token),
            None => None,
        };
        let keys = match &trusted_device {
            Some(token) => vec![format!("device:{}", token.hash())],
            None => throttle_keys(email_input, &meta),
        };
        if let Err(retry_after) = self.throttle.begin(&keys, now).await? {
            self.audit
                .record(
                    AuditDraft::new(
                        Actor::anonymous(),
                        AuditAction::AuthLogin,
                        Outcome::Denied,
                        meta,
                    )
                    .detail("reason", "backoff")
                    .detail("retry_after_secs", retry_after),
                )
                .await?;
            return Err(AccountError::Throttled(retry_after));
        }

        // The attempt is counted from here until `finish`, so parallel guesses see each other.
        let verified = self.verify_credentials(email_input, password).await;
        let succeeded = matches!(verified, Ok((Some(_), true)));
        self.throttle
            .finish(&keys, succeeded, self.clock.now())
            .await;
        match verified? {
            (Some(user), true) => {
                let known_device = trusted_device.is_some();
                // Renewed at every sign-in: trust lapses DEVICE_TRUST_TTL after the last one.
                // The same token stays, so a response lost on its way cannot leave the browser
                // with a token the server no longer knows.
                let device = self.keep_device(user.id, trusted_device).await.ok();
                let device_detail = match (&device, known_device) {
                    (None, _) => "not remembered",
                    (Some(_), true) => "known",
                    (Some(_), false) => "new",
                };
                self.audit
                    .record(
                        AuditDraft::new(
                            Actor::user(user.id),
                            AuditAction::AuthLogin,
                            Outcome::Success,
                            meta,
                        )
                        .resource(format!("user:{}", user.id))
                        .detail("device", device_detail),
                    )
                    .await?;
                Ok(SignedIn {
                    user,
                    device,
                    started_at: now,
                })
            }
            (user, _) => {
                let actor = user
                    .as_ref()
                    .map(|u| Actor::user(u.id))
                    .unwrap_or_else(Actor::anonymous);
                let mut draft =
                    AuditDraft::new(actor, AuditAction::AuthLogin, Outcome::Failure, meta)
                        .detail("reason", "bad_credentials");
                if trusted_device.is_some() {
                    // Guessing from a browser the account trusts (a copied cookie?).
                    draft = draft.detail("device", "known");
                }
                if let Some(user) = &user {
                    draft = draft.resource(format!("user:{}", user.id));
                }
                self.audit.record(draft).await?;
                Err(AccountError::BadCredentials)
            }
        }
    }

    /// The signed-in user changes their password (the caller has checked the session may make
    /// a lasting change). The current password must match, counted like a sign-in so a stolen
    /// session cannot guess it; then every session of the user ends, this one included, so
    /// whoever knew the old password is signed out, and with `revoke_agent_tokens` so are the
    /// bots they may have given a token. Every browser the user signed in from is forgotten
    /// (a stranger again at its next sign-in) except `this_device`, the one asking, which an
    /// attacker holding the account's sign-in back-off high could otherwise lock out.
    pub async fn change_password(
        &self,
        user: &User,
        current: Password,
        new: Password,
        revoke_agent_tokens: bool,
        this_device: Option<DeviceToken>,
        meta: RequestMeta,
    ) -> Result<(), AccountError> {
        // Never the account's sign-in back-off: a stranger failing sign-ins could otherwise
        // keep its owner from the one change that forgets the stranger's browsers. A browser
        // the account trusts counts its own failures, as at sign-in; any other, the user's.
        let trusted_device = match &this_device {
            Some(token) => self
                .device_trusted_for(token, user.email.as_str())
                .await?
                .then(|| token.hash()),
            None => None,
        };
        let keys = match trusted_device {
            Some(hash) => vec![format!("device:{hash}")],
            None => vec![format!("password-change:{}", user.id)],
        };
        let event = |outcome| {
            AuditDraft::new(
                Actor::user(user.id),
                AuditAction::AuthPasswordChanged,
                outcome,
                meta.clone(),
            )
            .resource(format!("user:{}", user.id))
        };
        if let Err(retry_after) = self.throttle.begin(&keys, self.clock.now()).await? {
            self.audit
                .record(event(Outcome::Denied).detail("reason", "backoff"))
                .await?;
            return Err(AccountError::Throttled(retry_after));
        }
        let verified = self.verify_credentials(user.email.as_str(), current).await;
        let matches = matches!(&verified, Ok((Some(found), true)) if found.id == user.id);
        self.throttle.finish(&keys, matches, self.clock.now()).await;
        verified?;
        if !matches {
            self.audit
                .record(event(Outcome::Failure).detail("reason", "wrong current password"))
                .await?;
            return Err(AccountError::WrongCurrentPassword);
        }
        let hash = self.hasher.hash(new).await?;
        self.store
            .set_password(
                user.id,
                hash,
                revoke_agent_tokens,
                this_device.map(|token| token.hash()),
                event(Outcome::Success),
            )
            .await?;
        Ok(())
    }

    /// A new device token for a browser `user` just signed up in.
    pub async fn remember_device(&self, user: UserId) -> Result<DeviceToken, AccountError> {
        self.keep_device(user, None).await
    }

    /// Renews the token a trusted browser showed, or remembers a new one.
    async fn keep_device(
        &self,
        user: UserId,
        shown: Option<DeviceToken>,
    ) -> Result<DeviceToken, AccountError> {
        let token = shown.unwrap_or_else(DeviceToken::generate);
        self.store
            .trust_device(user, &token.hash(), self.clock.now())
            .await?;
        Ok(token)
    }

    /// Whether `token` was given to a browser at a sign-in to the account `email_input` names.
    async fn device_trusted_for(
        &self,
        token: &DeviceToken,
        email_input: &str,
    ) -> Result<bool, AccountError> {
        let Some((owner, given_at)) = self.store.trusted_device(&token.hash()).await? else {
            return Ok(false);
        };
        if self.clock.now() - given_at >= DEVICE_TRUST_TTL {
            return Ok(false);
        }
        let Some(email) = Email::from_stored(email_input) else {
            return Ok(false);
        };
        Ok(self
            .store
            .find_user(owner)
            .await?
            .is_some_and(|user| user.email == email))
    }

    /// The account for `email_input` (if any) and whether `password` matches; unknown emails
    /// are checked against the dummy hash so both cases cost the same.
    async fn verify_credentials(
        &self,
        email_input: &str,
        password: Password,
    ) -> Result<(Option<User>, bool), AccountError> {
        // Looked up as stored: an account made before addresses were held to ASCII still
        // signs in.
        let credentials = match Email::from_stored(email_input) {
            Some(email) => self.store.find_credentials(&email).await?,
            None => None,
        };
        let (hash, user) = match credentials {
            Some(c) => (c.password_hash, Some(c.user)),
            None => (self.dummy_hash.clone(), None),
        };
        let matches = self.hasher.verify(password, hash).await;
        Ok((user, matches))
    }

    /// Records a logout; with `everywhere`, also ends every other session of the user.
    pub async fn log_out(
        &self,
        user: UserId,
        everywhere: bool,
        meta: RequestMeta,
    ) -> Result<(), AccountError> {
        if everywhere {
            self.log_out_everywhere(user, false, meta).await?;
            return Ok(());
        }
        let draft = AuditDraft::new(
            Actor::user(user),
            AuditAction::AuthLogout,
            Outcome::Success,
            meta,
        )
        .resource(format!("user:{user}"));
        self.audit.record(draft).await?;
        Ok(())
    }

    /// "Sign out everywhere": ends every session of the user and, with
    /// `revoke_agent_tokens`, revokes every live agent token of theirs too and turns autonomous
    /// agent orders off (a fresh step-up turns them on again), all in one
    /// transaction with its audit events. The browsers the user signed in from stay trusted
    /// for sign-in back-off: a stolen session (needing no step-up for this) could otherwise
    /// forget them, then keep the account's back-off high to lock its owner out. Returns how
    /// many tokens were revoked.
    pub async fn log_out_everywhere(
        &self,
        user: UserId,
        revoke_agent_tokens: bool,
        meta: RequestMeta,
    ) -> Result<u64, AccountError> {
        let draft = AuditDraft::new(
            Actor::user(user),
            AuditAction::AuthLogoutEverywhere,
            Outcome::Success,
            meta,
        )
        .resource(format!("user:{user}"))
        .detail("revoke_agents", revoke_agent_tokens);
        let (_, tokens) = self
            .sessions
            .revoke_all(
                user,
                revoke_agent_tokens.then_some("signed out everywhere"),
                draft,
            )
            .await?;
        Ok(tokens)
    }

    /// An operator ends every session of `user` (after resetting the factors of someone who
    /// lost them all: a session opened with the lost key may be the thief's, and still holds
    /// its step-up window), and with them what such a window could have left running: every
    /// agent token, and autonomous agent orders. Returns (sessions ended, tokens revoked).
    pub async fn end_sessions_for_operator(
        &self,
        user: UserId,
        actor: Actor,
        reason: &str,
        meta: RequestMeta,
    ) -> Result<(u64, u64), AccountError> {
        let draft = AuditDraft::new(
            actor,
            AuditAction::AuthLogoutEverywhere,
            Outcome::Success,
            meta,
        )
        .resource(format!("user:{user}"))
        .detail("reason", reason);
        Ok(self.sessions.revoke_all(user, Some(reason), draft).await?)
    }

    /// An admin changes someone else's role: never their own, so no admin can lift or keep a
    /// privilege alone, and the last admin cannot demote themselves by accident. Every role
    /// change (each grants or removes the reviewer's or the admin's powers) takes two admins
    /// (see [`RoleRequest`]): the first one's change is a request, and a second admin making
    /// the same change within [`ROLE_REQUEST_TTL`] confirms it. (The operator's CLI needs no
    /// second admin.)
    pub async fn change_role(
        &self,
        admin: &crate::authz::Admin,
        target: UserId,
        role: Role,
        meta: RequestMeta,
    ) -> Result<RoleChange, AccountError> {
        if target == admin.id() {
            return Err(AccountError::OwnRole);
        }
        let before = self
            .store
            .find_user(target)
            .await?
            .ok_or(AccountError::NotFound)?;
        if role == before.role {
            // Nothing to change (and no pending request of another admin's to drop).
            return Ok(RoleChange::Changed(before));
        }
        // Every change grants or removes a privileged role (reviewer or admin; the third role,
        // trader, is no privilege): one admin appointing a reviewer of their own could have
        // their own quarantine lifted, and one removing the reviewers could leave only theirs.
        let event = |action| {
            AuditDraft::new(
                Actor::user(admin.id()),
                action,
                Outcome::Success,
                meta.clone(),
            )
            .resource(format!("user:{target}"))
            .detail("from", before.role.as_str())
            .detail("to", role.as_str())
        };
        let pending = self.pending_role_request(target).await?;
        if let Some(request) = pending
            .filter(|r| r.role == role && r.from == before.role && r.requested_by != admin.id())
        {
            let draft = event(AuditAction::AccountRoleChange)
                .detail("requested_by", request.requested_by.to_string());
            return match self.store.confirm_role_request(&request, draft).await {
                Ok(user) => Ok(RoleChange::Changed(user)),
                Err(StoreError::NotFound) => Err(AccountError::NotFound),
                Err(StoreError::Conflict) => Err(AccountError::RoleChanged),
                Err(other) => Err(other.into()),
            };
        }
        let request = RoleRequest {
            target,
            from: before.role,
            role,
            requested_by: admin.id(),
            requested_at: self.clock.now(),
        };
        self.store
            .request_role(
                request.clone(),
                event(AuditAction::AccountRoleChangeRequested),
            )
            .await?;
        Ok(RoleChange::Requested(request))
    }

    /// The pending role change requests (those not yet expired).
    pub async fn role_requests(
        &self,
        _reader: &crate::authz::AdminReader,
    ) -> Result<Vec<RoleRequest>, AccountError> {
        let now = self.clock.now();
        let mut requests = self.store.role_requests().await?;
        requests.retain(|r| now - r.requested_at < ROLE_REQUEST_TTL);
        Ok(requests)
    }

    async fn pending_role_request(
        &self,
        target: UserId,
    ) -> Result<Option<RoleRequest>, AccountError> {
        let now = self.clock.now();
        Ok(self
            .store
            .role_requests()
            .await?
            .into_iter()
            .find(|r| r.target == target && now - r.requested_at < ROLE_REQUEST_TTL))
    }

    /// An operator at the server's console (the CLI) sets the role of the user with `email`.
    pub async fn change_role_as_operator(
        &self,
        email: &Email,
        role: Role,
        meta: RequestMeta,
    ) -> Result<User, AccountError> {
        let target = self
            .user_by_email(email)
            .await?
            .ok_or(AccountError::NotFound)?;
        self.set_role(Actor::system("cli"), &target, role, meta)
            .await
    }

    async fn set_role(
        &self,
        actor: Actor,
        before: &User,
        role: Role,
        meta: RequestMeta,
    ) -> Result<User, AccountError> {
        let target = before.id;
        let draft = AuditDraft::new(
            actor,
            AuditAction::AccountRoleChange,
            Outcome::Success,
            meta,
        )
        .resource(format!("user:{target}"))
        .detail("from", before.role.as_str())
        .detail("to", role.as_str());
        match self.store.set_role(target, before.role, role, draft).await {
            Ok(user) => Ok(user),
            Err(StoreError::NotFound) => Err(AccountError::NotFound),
            Err(StoreError::Conflict) => Err(AccountError::RoleChanged),
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let email = Email::parse("  Alice@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "alice@example.com");
    }

    #[test]
    fn an_address_stored_before_the_ascii_rule_still_loads_but_no_new_one_is_made() {
        let legacy = "Jos\u{e9}@Example.com";
        assert_eq!(Email::parse(legacy), Err(ValidationError::Email));
        let stored = Email::from_stored(legacy).expect("loads");
        assert_eq!(stored.as_str(), "jos\u{e9}@example.com");
        assert_eq!(Email::from_stored("no at sign"), None);
        assert_eq!(Email::from_stored("a b@example.com"), None);
    }

    #[test]
    fn malformed_emails_are_refused() {
        for raw in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@@b.com",
            "a@b..com",
            "a@.b.com",
            "alice\u{200b}@corp.com",
            "alice@corp.com\u{202e}",
            "\u{0430}lice@corp.com",
            "alice@\u{0435}xample.com",
            "al\u{00ad}ice@corp.com",
        ] {
            assert_eq!(Email::parse(raw), Err(ValidationError::Email), "{raw:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn passwords_must_be_twelve_to_128_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse("correct horse battery".into()).is_ok());
        // Characters, not bytes: twelve multi-byte characters are enough.
        assert!(Password::parse("ééééééééééé".into()).is_err());
        assert!(Password::parse("éééééééééééé".into()).is_ok());
    }

    #[test]
    fn password_debug_output_never_contains_the_password() {
        let password = Password::parse("hunter2hunter2".into()).expect("valid");
        assert!(!format!("{password:?}").contains("hunter2"));
        let hash = PasswordHash("$argon2id$v=19$secret".into());
        assert!(!format!("{hash:?}").contains("argon2id"));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert_eq!(Role::parse("root"), Err(ValidationError::Role));
    }

    #[test]
    fn ipv6_clients_are_counted_per_slash_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(other));
        let v4: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(client_network(v4), v4);
    }

    #[test]
    fn an_ipv4_mapped_ipv6_client_is_counted_as_its_ipv4_address() {
        let v4: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let other: std::net::IpAddr = "::ffff:192.0.2.8".parse().expect("ip");
        assert_eq!(client_network(mapped), v4);
        assert_ne!(client_network(mapped), client_network(other));
    }

    #[test]
    fn backoff_is_free_at_first_then_doubles_up_to_the_cap() {
        let policy = BackoffPolicy::default();
        assert_eq!(policy.wait_after(0), Duration::ZERO);
        assert_eq!(policy.wait_after(4), Duration::ZERO);
        assert_eq!(policy.wait_after(5), Duration::seconds(1));
        assert_eq!(policy.wait_after(6), Duration::seconds(2));
        assert_eq!(policy.wait_after(10), Duration::seconds(32));
        assert_eq!(policy.wait_after(40), Duration::minutes(15));
        assert_eq!(policy.wait_after(u32::MAX), Duration::minutes(15));
    }

    mod service {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

        use async_trait::async_trait;

        use super::super::*;
        use crate::audit::{ActorKind, AuditEvent};

        #[derive(Debug, Default)]
        struct Fakes {
            users: Mutex<Vec<(User, PasswordHash)>>,
            audit: Mutex<Vec<AuditDraft>>,
            verified_hashes: Mutex<Vec<String>>,
            throttle_failures: AtomicUsize,
            throttle_keys: Mutex<Vec<Vec<String>>>,
            devices: Mutex<Vec<(String, UserId)>>,
            role_requests: Mutex<Vec<RoleRequest>>,
            /// Microseconds past the epoch on the fake clock; a hash verification takes one.
            elapsed_micros: AtomicI64,
        }

        #[derive(Debug, Clone)]
        struct Fake(Arc<Fakes>);

        #[async_trait]
        impl AccountStore for Fake {
            async fn create_user(
                &self,
                user: NewUser,
                audit: AuditDraft,
            ) -> Result<User, StoreError> {
                let mut users = self.0.users.lock().expect("lock");
                if users.iter().any(|(u, _)| u.email == user.email) {
                    return Err(StoreError::Conflict);
                }
                let created = User {
                    id: user.id,
                    email: user.email,
                    role: user.role,
                    created_at: user.created_at,
                };
                users.push((created.clone(), user.password_hash));
                self.0.audit.lock().expect("lock").push(audit);
                Ok(created)
            }
            async fn find_credentials(
                &self,
                email: &Email,
            ) -> Result<Option<UserCredentials>, StoreError> {
                let users = self.0.users.lock().expect("lock");
                Ok(users
                    .iter()
                    .find(|(u, _)| &u.email == email)
                    .map(|(u, h)| UserCredentials {
                        user: u.clone(),
                        password_hash: h.clone(),
                    }))
            }
            async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
                let users = self.0.users.lock().expect("lock");
                Ok(users
                    .iter()
                    .find(|(u, _)| u.id == id)
                    .map(|(u, _)| u.clone()))
            }
            async fn list_users(&self) -> Result<Vec<User>, StoreError> {
                Ok(vec![])
            }
            async fn find_users(&self, _: &[UserId]) -> Result<Vec<User>, StoreError> {
                Ok(vec![])
            }
            async fn set_role(
                &self,
                _: UserId,
                _: Role,
                _: Role,
                _: AuditDraft,
            ) -> Result<User, StoreError> {
                Err(StoreError::NotFound)
            }
            async fn set_password(
                &self,
                _: UserId,
                _: PasswordHash,
                _: bool,
                _: Option<String>,
                _: AuditDraft,
            ) -> Result<(), StoreError> {
                Err(StoreError::NotFound)
            }
            async fn role_requests(&self) -> Result<Vec<RoleRequest>, StoreError> {
                Ok(self.0.role_requests.lock().expect("lock").clone())
            }
            async fn request_role(
                &self,
                request: RoleRequest,
                audit: AuditDraft,
            ) -> Result<(), StoreError> {
                let mut requests = self.0.role_requests.lock().expect("lock");
                requests.retain(|r| r.target != request.target);
                requests.push(request);
                self.0.audit.lock().expect("lock").push(audit);
                Ok(())
            }
            async fn confirm_role_request(
                &self,
                request: &RoleRequest,
                audit: AuditDraft,
            ) -> Result<User, StoreError> {
                let mut requests = self.0.role_requests.lock().expect("lock");
                let before = requests.len();
                requests.retain(|r| r != request);
                if requests.len() == before {
                    return Err(StoreError::Conflict);
                }
                let mut users = self.0.users.lock().expect("lock");
                let (user, _) = users
                    .iter_mut()
                    .find(|(u, _)| u.id == request.target)
                    .ok_or(StoreError::NotFound)?;
                user.role = request.role;
                self.0.audit.lock().expect("lock").push(audit);
                Ok(user.clone())
            }
            async fn trusted_device(
                &self,
                token_hash: &str,
            ) -> Result<Option<(UserId, OffsetDateTime)>, StoreError> {
                let devices = self.0.devices.lock().expect("lock");
                Ok(devices
                    .iter()
                    .find(|(hash, _)| hash == token_hash)
                    .map(|(_, user)| (*user, OffsetDateTime::UNIX_EPOCH)))
            }
            async fn trust_device(
                &self,
                user: UserId,
                token_hash: &str,
                _: OffsetDateTime,
            ) -> Result<(), StoreError> {
                let mut devices = self.0.devices.lock().expect("lock");
                devices.retain(|(hash, _)| hash != token_hash);
                devices.push((token_hash.to_owned(), user));
                Ok(())
            }
        }

        #[async_trait]
        impl AuditLog for Fake {
            async fn record(&self, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
                self.0.audit.lock().expect("lock").push(draft.clone());
                Ok(AuditEvent::seal(
                    crate::audit::ChainHead::EMPTY,
                    draft,
                    OffsetDateTime::UNIX_EPOCH,
                ))
            }
            async fn recent(&self, _: u64) -> Result<Vec<AuditEvent>, StoreError> {
                Ok(vec![])
            }
            async fn page(&self, _: i64, _: u64) -> Result<Vec<AuditEvent>, StoreError> {
                Ok(vec![])
            }
            async fn for_resources(
                &self,
                _: &[String],
                _: u64,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                Ok(vec![])
            }
            async fn search_after(
                &self,
                _: &crate::audit::AuditFilter,
                _: i64,
                _: u64,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                Ok(vec![])
            }
            async fn search_before(
                &self,
                _: &crate::audit::AuditFilter,
                _: i64,
                _: u64,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                Ok(vec![])
            }
            async fn head(&self) -> Result<crate::audit::ChainHead, StoreError> {
                Ok(crate::audit::ChainHead::EMPTY)
            }
            async fn event(&self, _: i64) -> Result<Option<AuditEvent>, StoreError> {
                Ok(None)
            }
        }

        /// "Hashes" by prefixing; records every hash it verifies against.
        #[async_trait]
        impl PasswordHasher for Fake {
            async fn hash(&self, password: Password) -> Result<PasswordHash, StoreError> {
                Ok(PasswordHash(format!("hash:{}", password.expose())))
            }
            async fn verify(&self, password: Password, hash: PasswordHash) -> bool {
                self.0.elapsed_micros.fetch_add(1, Ordering::SeqCst);
                self.0
                    .verified_hashes
                    .lock()
                    .expect("lock")
                    .push(hash.0.clone());
                hash.0 == format!("hash:{}", password.expose())
            }
        }

        #[async_trait]
        impl LoginThrottle for Fake {
            async fn begin(
                &self,
                keys: &[String],
                _: OffsetDateTime,
            ) -> Result<Result<(), u64>, StoreError> {
                self.0
                    .throttle_keys
                    .lock()
                    .expect("lock")
                    .push(keys.to_vec());
                Ok(Ok(()))
            }
            async fn finish(&self, _: &[String], succeeded: bool, _: OffsetDateTime) {
                if !succeeded {
                    self.0.throttle_failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }

        #[async_trait]
        impl SessionRevoker for Fake {
            async fn revoke_all(
                &self,
                _: UserId,
                _: Option<&str>,
                audit: AuditDraft,
            ) -> Result<(u64, u64), StoreError> {
                self.0.audit.lock().expect("lock").push(audit);
                Ok((0, 0))
            }
        }

        impl Clock for Fake {
            fn now(&self) -> OffsetDateTime {
                OffsetDateTime::UNIX_EPOCH
                    + time::Duration::microseconds(self.0.elapsed_micros.load(Ordering::SeqCst))
            }
        }

        fn service() -> (AccountService, Arc<Fakes>) {
            let fakes = Arc::new(Fakes::default());
            let fake = Arc::new(Fake(fakes.clone()));
            let service = AccountService {
                store: fake.clone(),
                audit: fake.clone(),
                hasher: fake.clone(),
                throttle: fake.clone(),
                sessions: fake.clone(),
                clock: fake,
                dummy_hash: PasswordHash("dummy".into()),
            };
            (service, fakes)
        }

        fn password(raw: &str) -> Password {
            Password::for_login(raw.to_owned()).expect("password")
        }

        async fn sign_up(service: &AccountService, email: &str) -> User {
            service
                .sign_up(
                    Email::parse(email).expect("email"),
                    Password::parse("correct horse battery".into()).expect("password"),
                    Role::Trader,
                    Actor::anonymous(),
                    RequestMeta::default(),
                )
                .await
                .expect("signed up")
        }

        fn block_on<F: std::future::Future>(future: F) -> F::Output {
            // The domain has no runtime; these fakes never wait, so polling once suffices.
            let waker = std::task::Waker::noop();
            let mut context = std::task::Context::from_waker(waker);
            let mut future = std::pin::pin!(future);
            match future.as_mut().poll(&mut context) {
                std::task::Poll::Ready(output) => output,
                std::task::Poll::Pending => panic!("fake ports never wait"),
            }
        }

        /// A password change committed while a sign-in checks the old password must end that
        /// sign-in's session too: its session starts when it began, not when it finished.
        #[test]
        fn a_sign_in_is_dated_from_before_its_password_was_checked() {
            block_on(async {
                let (service, _) = service();
                sign_up(&service, "gil@example.com").await;
                let began = service.clock.now();
                let signed_in = service
                    .log_in(
                        "gil@example.com",
                        password("correct horse battery"),
                        None,
                        RequestMeta::default(),
                    )
                    .await
                    .expect("signed in");
                assert_eq!(signed_in.started_at, began);
                assert!(service.clock.now() > began, "the check took time");
            });
        }

        #[test]
        fn an_unknown_email_still_costs_a_hash_verification() {
            block_on(async {
                let (service, fakes) = service();
                let result = service
                    .log_in(
                        "nobody@example.com",
                        password("whatever it is"),
                        None,
                        RequestMeta::default(),
                    )
                    .await;
                assert!(matches!(result, Err(AccountError::BadCredentials)));
                assert_eq!(
                    *fakes.verified_hashes.lock().expect("lock"),
                    vec!["dummy".to_owned()]
                );
                assert_eq!(fakes.throttle_failures.load(Ordering::SeqCst), 1);
                let audit = fakes.audit.lock().expect("lock");
                assert_eq!(audit.len(), 1);
                assert_eq!(audit[0].action, "auth.login");
                assert_eq!(audit[0].outcome, Outcome::Failure);
                assert_eq!(audit[0].actor.kind, ActorKind::Anonymous);
            });
        }

        #[test]
        fn a_wrong_password_fails_the_same_way_and_is_attributed_to_the_account() {
            block_on(async {
                let (service, fakes) = service();
                let user = sign_up(&service, "ann@example.com").await;
                let result = service
                    .log_in(
                        "ann@example.com",
                        password("wrong password"),
                        None,
                        RequestMeta::default(),
                    )
                    .await;
                assert!(matches!(result, Err(AccountError::BadCredentials)));
                let audit = fakes.audit.lock().expect("lock");
                let last = audit.last().expect("event");
                assert_eq!(last.outcome, Outcome::Failure);
                assert_eq!(last.actor, Actor::user(user.id));
            });
        }

        #[test]
        fn a_browser_given_the_accounts_device_token_is_counted_on_its_own() {
            block_on(async {
                let (service, fakes) = service();
                sign_up(&service, "cy@example.com").await;
                sign_up(&service, "di@example.com").await;
                // Only the sign-ins' keys below.
                fakes.throttle_keys.lock().expect("lock").clear();
                let meta = RequestMeta {
                    ip: Some("203.0.113.9".into()),
                    ..RequestMeta::default()
                };
                let log_in = |email: &'static str, device: Option<DeviceToken>| {
                    let meta = meta.clone();
                    let service = service.clone();
                    async move {
                        service
                            .log_in(email, password("correct horse battery"), device, meta)
                            .await
                            .expect("signed in")
                    }
                };
                let token_of = |signed_in: &SignedIn| {
                    signed_in
                        .device
                        .as_ref()
                        .expect("a device token")
                        .expose()
                        .to_owned()
                };
                let parse = |token: &str| DeviceToken::parse(token).expect("a token we issued");
                let first = token_of(&log_in("cy@example.com", None).await);
                // Shown again for the same account: its own counter, and the token renewed.
                let second = token_of(&log_in("cy@example.com", Some(parse(&first))).await);
                assert_eq!(second, first);
                // Shown for another account: counted like any stranger, and a token of its own.
                let other = token_of(&log_in("di@example.com", Some(parse(&first))).await);
                assert_ne!(other, first);
                let keys = fakes.throttle_keys.lock().expect("lock").clone();
                assert_eq!(
                    keys[0],
                    ["account:cy@example.com", "ip:203.0.113.9"],
                    "a new browser is counted under the account and its network"
                );
                assert_eq!(keys[1], [format!("device:{}", parse(&first).hash())]);
                assert_eq!(keys[2], ["account:di@example.com", "ip:203.0.113.9"]);
                assert_eq!(fakes.devices.lock().expect("lock").len(), 2);
                let audit = fakes.audit.lock().expect("lock");
                let devices: Vec<_> = audit
                    .iter()
                    .filter(|d| d.action == "auth.login")
                    .map(|d| d.details()["device"].clone())
                    .collect();
                assert_eq!(devices, ["new", "known", "new"]);
                assert!(DeviceToken::parse("cpd_short").is_none());
                assert!(DeviceToken::parse(&first.replace("cpd_", "xyz_")).is_none());
            });
        }

        #[test]
        fn the_admin_role_takes_a_second_admin_within_the_request_window() {
            block_on(async {
                let (service, fakes) = service();
                let first = sign_up(&service, "first@example.com").await;
                let second = sign_up(&service, "second@example.com").await;
                let target = sign_up(&service, "target@example.com").await;
                let late = sign_up(&service, "late@example.com").await;
                let (a, b) = (
                    crate::authz::Admin::new(first.id),
                    crate::authz::Admin::new(second.id),
                );
                let change = |admin, user| {
                    service.change_role(admin, user, Role::Admin, RequestMeta::default())
                };
                for _ in 0..2 {
                    let outcome = change(&a, target.id).await.expect("requested");
                    assert!(matches!(outcome, RoleChange::Requested(_)), "{outcome:?}");
                }
                match change(&b, target.id).await.expect("confirmed") {
                    RoleChange::Changed(user) => assert_eq!(user.role, Role::Admin),
                    other => panic!("not confirmed: {other:?}"),
                }
                let actions: Vec<_> = {
                    let audit = fakes.audit.lock().expect("lock");
                    audit
                        .iter()
                        .map(|d| d.action.to_string())
                        .filter(|a| a.starts_with("account.role"))
                        .collect()
                };
                assert_eq!(
                    actions,
                    [
                        "account.role_change_requested",
                        "account.role_change_requested",
                        "account.role_change"
                    ]
                );
                // A request older than the window is not confirmed: the change asks anew.
                fakes.role_requests.lock().expect("lock").push(RoleRequest {
                    target: late.id,
                    from: Role::Trader,
                    role: Role::Admin,
                    requested_by: first.id,
                    requested_at: OffsetDateTime::UNIX_EPOCH - ROLE_REQUEST_TTL,
                });
                let outcome = change(&b, late.id).await.expect("requested");
                assert!(matches!(outcome, RoleChange::Requested(_)), "{outcome:?}");
            });
        }

        #[test]
        fn the_right_password_signs_in_and_is_audited() {
            block_on(async {
                let (service, fakes) = service();
                let user = sign_up(&service, "ben@example.com").await;
                let signed_in = service
                    .log_in(
                        " BEN@example.com ",
                        password("correct horse battery"),
                        None,
                        RequestMeta::default(),
                    )
                    .await
                    .expect("signed in");
                assert_eq!(signed_in.user.id, user.id);
                let audit = fakes.audit.lock().expect("lock");
                assert_eq!(
                    audit.iter().map(|d| d.action.as_str()).collect::<Vec<_>>(),
                    ["account.create", "auth.login"]
                );
                assert!(audit.iter().all(|d| {
                    !serde_json::Value::Object(d.details().clone())
                        .to_string()
                        .contains("horse")
                }));
            });
        }

        #[test]
        fn a_duplicate_email_is_refused() {
            block_on(async {
                let (service, _) = service();
                sign_up(&service, "cat@example.com").await;
                let again = service
                    .sign_up(
                        Email::parse("CAT@example.com").expect("email"),
                        Password::parse("another password!".into()).expect("password"),
                        Role::Trader,
                        Actor::anonymous(),
                        RequestMeta::default(),
                    )
                    .await;
                assert!(matches!(again, Err(AccountError::EmailUnavailable)));
            });
        }
    }
}
