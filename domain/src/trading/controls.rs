//! The controls admins set (the global kill switch, each trader's state, kill switch and
//! limits, the IP blocklist) and the trader's own autonomous opt-in; the trading status every
//! page shows and the admin's risk overview. Admin use cases take an [`Admin`] proof.

use uuid::Uuid;

use super::cancellation::{GLOBAL_KILL_REASON, Resting, StopEffect, USER_KILL_REASON};
use super::error::{Forbidden, Refusal, TradingError, audit_or_store};
use super::ports::{RawLimits, UserRisk};
use super::service::draft;
use super::{BlockedRange, ControlsChange, TradingService, UserControls};
use crate::account::UserId;
use crate::audit::{Actor, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::authz::{Admin, AdminReader};
use crate::exchange::{ExchangeName, KeyEnvironment};
use crate::risk::{IpBlocklist, LimitField};
use crate::store_error::StoreError;

/// The longest note on a blocked range, in characters.
pub const MAX_RANGE_NOTE_CHARS: usize = 200;

/// What an admin's change of a user's controls did.
#[derive(Debug, Clone)]
pub struct ControlsChanged {
    pub controls: UserControls,
    /// What the change did to the user's resting orders, when it stopped them.
    pub stopped: StopEffect,
}

/// What the banner on every page says about a trader's trading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradingStatus {
    pub controls: UserControls,
    pub global_kill: bool,
    pub open_cases: u64,
    /// Exchange environments whose trading is paused after an outage.
    pub paused: Vec<(ExchangeName, KeyEnvironment)>,
}

/// The admin's risk page: the global settings, every user's controls and the blocklist.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskOverview {
    pub global_kill: bool,
    pub global_limits: RawLimits,
    /// Every user, in sign-up order.
    pub users: Vec<UserRisk>,
    pub blocklist: Vec<BlockedRange>,
}

impl TradingService {
    /// The trader's trading state, kill switches, open cases and paused exchanges.
    pub async fn trading_status(&self, user: UserId) -> Result<TradingStatus, TradingError> {
        let now = self.now();
        let paused = ExchangeName::ALL
            .iter()
            .flat_map(|e| e.environments().iter().map(move |env| (*e, *env)))
            .filter(|venue| self.breakers.paused_until(*venue, now).is_some())
            .collect();
        // One read (the settings screening reads) rather than one per field.
        let settings = self.store.screening_settings(user).await?;
        Ok(TradingStatus {
            controls: settings.controls,
            global_kill: settings.global_kill,
            open_cases: settings.open_cases,
            paused,
        })
    }

    /// Every user's controls and overrides with the global limits, kill switch and blocklist.
    /// Readable by any admin (by role): the proof is the authorization, and only the account
    /// service issues one.
    pub async fn risk_overview(&self, _reader: &AdminReader) -> Result<RiskOverview, TradingError> {
        let overview = self.store.controls_overview().await?;
        Ok(RiskOverview {
            global_kill: overview.global_kill,
            global_limits: overview.global_limits,
            users: overview.users,
            blocklist: self.store.blocklist().await?,
        })
    }

    /// `NotFound` unless the user exists.
    async fn require_user(&self, user: UserId) -> Result<(), TradingError> {
        match self.accounts.find_user(user).await? {
            Some(_) => Ok(()),
            None => Err(TradingError::NotFound),
        }
    }

    /// Turns the global kill switch on or off. Turning it on also cancels every resting order
    /// at its venue (each cancellation audited); returns what it did to them.
    pub async fn set_global_kill_switch(
        &self,
        admin: &Admin,
        on: bool,
        meta: RequestMeta,
    ) -> Result<StopEffect, TradingError> {
        self.store
            .set_global_kill_switch(
                on,
                draft(
                    Actor::user(admin.id()),
                    if on {
                        AuditAction::RiskKillSwitchOn
                    } else {
                        AuditAction::RiskKillSwitchOff
                    },
                    Outcome::Success,
                    &meta,
                )
                .resource("trading:global"),
            )
            .await
            .map_err(audit_or_store)?;
        if !on {
            return Ok(StopEffect::default());
        }
        self.cancel_resting(
            None,
            Resting::All,
            Actor::user(admin.id()),
            GLOBAL_KILL_REASON,
            &meta,
        )
        .await
    }

    /// An admin changes another user's trading state, kill switch or autonomous mode. Never
    /// their own (separation of duties: another admin must). Stopping a user (kill switch on,
    /// or HALTED) also cancels their resting orders at the venue; restricting them to REDUCING
    /// cancels their resting buys.
    pub async fn change_controls(
        &self,
        admin: &Admin,
        user: UserId,
        change: ControlsChange,
        meta: RequestMeta,
    ) -> Result<ControlsChanged, TradingError> {
        self.require_user(user).await?;
        self.refuse_own_controls(admin, user, AuditAction::RiskControlsChanged, &meta)
            .await?;
        let mut event = draft(
            Actor::user(admin.id()),
            AuditAction::RiskControlsChanged,
            Outcome::Success,
            &meta,
        )
        .resource(format!("user:{user}"));
        if let Some(state) = change.state {
            event = event.detail("state", state.as_str());
        }
        if let Some(kill) = change.kill_switch {
            event = event.detail("kill_switch", kill);
        }
        if let Some(autonomous) = change.autonomous {
            event = event.detail("autonomous", autonomous);
        }
        let cancels = if change.kill_switch == Some(true) {
            Some((Resting::All, USER_KILL_REASON))
        } else {
            change
                .state
                .and_then(Resting::cancelled_by)
                .map(|which| (which, which.state_reason()))
        };
        let controls = self
            .store
            .change_controls(user, change, event)
            .await
            .map_err(audit_or_store)?;
        let stopped = match cancels {
            Some((which, reason)) => {
                self.cancel_resting(Some(user), which, Actor::user(admin.id()), reason, &meta)
                    .await?
            }
            None => StopEffect::default(),
        };
        Ok(ControlsChanged { controls, stopped })
    }

    /// Separation of duties: an admin's own controls and limits are set by another admin.
    /// The refusal is audited.
    async fn refuse_own_controls(
        &self,
        admin: &Admin,
        subject: UserId,
        action: AuditAction,
        meta: &RequestMeta,
    ) -> Result<(), TradingError> {
        if admin.id() != subject {
            return Ok(());
        }
        self.audit_or_fail(
            draft(Actor::user(admin.id()), action, Outcome::Denied, meta)
                .resource(format!("user:{subject}"))
                .detail(
                    "reason",
                    "an admin cannot change their own controls or limits",
                ),
        )
        .await?;
        Err(TradingError::Forbidden(Forbidden::OwnControls))
    }

    /// Sets or clears a limit. The value must validate: admins cannot store an unparsable one
    /// (the fail-safe exists for values that got there some other way).
    pub async fn set_limit(
        &self,
        admin: &Admin,
        user: Option<UserId>,
        field: LimitField,
        value: Option<&str>,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        if let Some(subject) = user {
            self.require_user(subject).await?;
            self.refuse_own_controls(admin, subject, AuditAction::RiskLimitChanged, &meta)
                .await?;
        }
        let value = match value {
            Some(raw) => Some(
                field
                    .validate(raw)
                    .map_err(|reason| Refusal::InvalidLimit { field, reason })?,
            ),
            None if user.is_none() => return Err(Refusal::GlobalLimitRequired.into()),
            None => None,
        };
        if user.is_none()
            && let Some(new) = &value
        {
            self.hold_own_limit(admin, field, new, &meta).await?;
        }
        let event = draft(
            Actor::user(admin.id()),
            AuditAction::RiskLimitChanged,
            Outcome::Success,
            &meta,
        )
        .resource(match user {
            Some(u) => format!("user:{u}"),
            None => "trading:global".into(),
        })
        .detail("field", field.key())
        .detail("value", value.clone().unwrap_or_else(|| "(inherit)".into()));
        self.store
            .set_limit(user, field.key(), value.as_deref(), event)
            .await
            .map_err(audit_or_store)
    }

    /// An admin loosening a global limit does not loosen it for themself: unless they already
    /// have a value of their own (which a global change does not touch), they are held at what
    /// applied to them before, as a ceiling ([`LimitField::held_key`]: the stricter of it and
    /// the global value applies, so later global tightening still reaches them). It is written
    /// before the global change, so a failure between leaves them stricter, not looser. Only
    /// another admin can lift it, by setting or removing the admin's own value.
    async fn hold_own_limit(
        &self,
        admin: &Admin,
        field: LimitField,
        new: &str,
        meta: &RequestMeta,
    ) -> Result<(), TradingError> {
        let (global, own) = self.store.limits(admin.id()).await?;
        if own.contains_key(field.key()) {
            return Ok(());
        }
        let strictest = field.strictest_raw();
        let old_global = global.get(field.key()).map_or(strictest, String::as_str);
        let applied = match own.get(&field.held_key()) {
            Some(held) => field.stricter(held, old_global),
            None => field.stricter(old_global, old_global),
        }
        .unwrap_or_else(|| strictest.to_owned());
        // `stricter` of a value with itself normalises it, so equal sets compare equal.
        if field.stricter(&applied, new) == field.stricter(new, new) {
            return Ok(());
        }
        let event = draft(
            Actor::user(admin.id()),
            AuditAction::RiskLimitChanged,
            Outcome::Success,
            meta,
        )
        .resource(format!("user:{}", admin.id()))
        .detail("field", field.key())
        .detail("held_at_most", applied.clone())
        .detail(
            "reason",
            "held for the admin loosening the global limit: the stricter of this and the global value applies until another admin sets or removes their own value",
        );
        self.store
            .set_limit(Some(admin.id()), &field.held_key(), Some(&applied), event)
            .await
            .map_err(audit_or_store)
    }

    pub async fn add_blocked_range(
        &self,
        admin: &Admin,
        raw: &str,
        note: &str,
        meta: RequestMeta,
    ) -> Result<BlockedRange, TradingError> {
        let net = IpBlocklist::parse_entry(raw).map_err(Refusal::InvalidRange)?;
        let note = note.trim();
        if note.chars().count() > MAX_RANGE_NOTE_CHARS || !crate::text::is_plain(note) {
            return Err(Refusal::RangeNote {
                max: MAX_RANGE_NOTE_CHARS,
            }
            .into());
        }
        let range = BlockedRange {
            id: Uuid::new_v4(),
            cidr: net.to_string(),
            note: note.to_owned(),
            created_at: self.now(),
        };
        let event = draft(
            Actor::user(admin.id()),
            AuditAction::RiskIpBlocked,
            Outcome::Success,
            &meta,
        )
        .resource(format!("ip_range:{}", range.id))
        .detail("cidr", range.cidr.clone());
        match self.store.add_blocked_range(&range, event).await {
            Ok(()) => Ok(range),
            Err(StoreError::Conflict) => Err(Refusal::AlreadyBlocked { cidr: range.cidr }.into()),
            Err(e) => Err(audit_or_store(e)),
        }
    }

    pub async fn remove_blocked_range(
        &self,
        admin: &Admin,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        let event = draft(
            Actor::user(admin.id()),
            AuditAction::RiskIpUnblocked,
            Outcome::Success,
            &meta,
        )
        .resource(format!("ip_range:{id}"));
        self.store
            .remove_blocked_range(id, event)
            .await
            .map_err(audit_or_store)
    }
}
