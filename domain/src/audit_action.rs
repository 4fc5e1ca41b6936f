//! Every action the audit log records, by name. A leaf (imports nothing from the crate) and
//! buildable for WASM, so the UI matches on the same names the domain writes.
//!
//! The text is what is stored and hashed in the chain: never rename one, only add.

use std::fmt;

macro_rules! audit_actions {
    ($($variant:ident = $text:literal,)+) => {
        /// What happened, as stored in `audit_events.action`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AuditAction {
            $($variant,)+
        }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $text,)+
                }
            }

            /// The action named `text`, if it is one this version knows (older logs may hold
            /// names that are no longer written).
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(AuditAction::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

audit_actions! {
    AccountCreate = "account.create",
    AccountRoleChange = "account.role_change",
    AccountRoleChangeRequested = "account.role_change_requested",
    AgentAutonomousChanged = "agent.autonomous_changed",
    AgentProposalPlaced = "agent.proposal_placed",
    AgentProposalReceived = "agent.proposal_received",
    AgentProposalRejected = "agent.proposal_rejected",
    AgentSignalHeld = "agent.signal_held",
    AgentTokenCreated = "agent.token_created",
    AgentTokenExpired = "agent.token_expired",
    AgentTokenRevoked = "agent.token_revoked",
    AuditCheckpoint = "audit.checkpoint",
    AuditHeadSigned = "audit.head_signed",
    AuditVerify = "audit.verify",
    AuthLogin = "auth.login",
    AuthLogout = "auth.logout",
    AuthLogoutEverywhere = "auth.logout_everywhere",
    AuthPasswordChanged = "auth.password_changed",
    KmsRotate = "kms.rotate",
    ReportDownload = "report.download",
    ReportStarted = "report.started",
    ReviewCaseConfirmed = "review.case_confirmed",
    ReviewCaseReleased = "review.case_released",
    RiskCaseOpened = "risk.case_opened",
    RiskCaseRationaleAdded = "risk.case_rationale_added",
    RiskControlsChanged = "risk.controls_changed",
    RiskIpBlocked = "risk.ip_blocked",
    RiskIpUnblocked = "risk.ip_unblocked",
    RiskKillSwitchOff = "risk.kill_switch_off",
    RiskKillSwitchOn = "risk.kill_switch_on",
    RiskLimitChanged = "risk.limit_changed",
    RiskLimitFailSafe = "risk.limit_fail_safe",
    RiskTradingStateChanged = "risk.trading_state_changed",
    SecurityAlertAcknowledged = "security.alert_acknowledged",
    SecurityAlertRaised = "security.alert_raised",
    SecurityCanaryTripped = "security.canary_tripped",
    SecurityKeyCloneSuspected = "security.key_clone_suspected",
    StepupKeyChangeRefused = "stepup.key_change_refused",
    StepupKeyCounterRegressed = "stepup.key_counter_regressed",
    StepupKeyFailed = "stepup.key_failed",
    StepupKeyRegistered = "stepup.key_registered",
    StepupKeyRegistrationFailed = "stepup.key_registration_failed",
    StepupKeyRemoved = "stepup.key_removed",
    StepupKeySucceeded = "stepup.key_succeeded",
    StepupOrderApprovalRefused = "stepup.order_approval_refused",
    StepupOrderApprovalUsed = "stepup.order_approval_used",
    StepupOrderApproved = "stepup.order_approved",
    StepupOrderMismatch = "stepup.order_mismatch",
    StepupRecoveryCodeFailed = "stepup.recovery_code_failed",
    StepupRecoveryCodeUsed = "stepup.recovery_code_used",
    StepupRecoveryCodesReplaced = "stepup.recovery_codes_replaced",
    StepupTotpEnrolled = "stepup.totp_enrolled",
    StepupTotpEnrolmentFailed = "stepup.totp_enrolment_failed",
    StepupTotpEnrolmentStarted = "stepup.totp_enrolment_started",
    StepupTotpFailed = "stepup.totp_failed",
    StepupTotpLocked = "stepup.totp_locked",
    StepupTotpRemoved = "stepup.totp_removed",
    StepupTotpReplayed = "stepup.totp_replayed",
    StepupTotpSucceeded = "stepup.totp_succeeded",
    SystemStart = "system.start",
    SystemStop = "system.stop",
    TradeHeldOrderApproved = "trade.held_order_approved",
    TradeOrderAccepted = "trade.order_accepted",
    TradeOrderCancelled = "trade.order_cancelled",
    TradeOrderClaimed = "trade.order_claimed",
    TradeOrderDecided = "trade.order_decided",
    TradeOrderDenied = "trade.order_denied",
    TradeOrderFilled = "trade.order_filled",
    TradeOrderHeld = "trade.order_held",
    TradeOrderNeedsApproval = "trade.order_needs_approval",
    TradeOrderRefused = "trade.order_refused",
    TradeOrderRejected = "trade.order_rejected",
    VaultCanaryPlanted = "vault.canary_planted",
    VaultKeyAdded = "vault.key_added",
    VaultKeyChecked = "vault.key_checked",
    VaultKeyRefused = "vault.key_refused",
    VaultKeyRevoked = "vault.key_revoked",
    VaultKeyRewrapped = "vault.key_rewrapped",
    VaultKeyUseFailed = "vault.key_use_failed",
    VaultKeyUsed = "vault.key_used",
    VaultRewrap = "vault.rewrap",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for AuditAction {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<AuditAction> for str {
    fn eq(&self, other: &AuditAction) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<AuditAction> for String {
    fn eq(&self, other: &AuditAction) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn every_action_reads_back_from_its_own_text() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
        }
    }

    #[test]
    fn action_names_are_unique_area_dot_name() {
        let mut names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AuditAction::ALL.len());
        assert!(names.iter().all(|n| {
            n.split_once('.')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        }));
    }

    #[test]
    fn an_unknown_name_is_not_an_action() {
        assert_eq!(AuditAction::parse("trade.order_teleported"), None);
    }
}
