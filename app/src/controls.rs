//! The control map: which feature meets which SOC 2, MiFID II RTS 6 and GDPR control, the audit
//! actions that evidence it, and the tests that prove it. This table is the one source: the
//! `/controls` page renders it and `docs/controls.md` is generated from it (a test below fails
//! when the file is stale; `UPDATE_CONTROLS_DOC=1` rewrites it). Plain data, built for WASM too.

use domain::audit_action::AuditAction;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Framework {
    Soc2,
    MifidRts6,
    Gdpr,
}

impl Framework {
    pub const ALL: [Framework; 3] = [Framework::Soc2, Framework::MifidRts6, Framework::Gdpr];

    pub fn label(self) -> &'static str {
        match self {
            Framework::Soc2 => "SOC 2 (Trust Services Criteria 2017)",
            Framework::MifidRts6 => "MiFID II RTS 6 (Delegated Regulation (EU) 2017/589)",
            Framework::Gdpr => "GDPR (Regulation (EU) 2016/679)",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Framework::Soc2 => "SOC 2",
            Framework::MifidRts6 => "MiFID II RTS 6",
            Framework::Gdpr => "GDPR",
        }
    }
}

/// One control and how CryptoPulse meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub framework: Framework,
    /// The framework's own reference: `CC6.1`, `Art. 12`, `Art. 32(1)(a)`.
    pub reference: &'static str,
    /// What the control asks, in a line.
    pub requirement: &'static str,
    /// What CryptoPulse does about it.
    pub feature: &'static str,
    /// Where to see it in the product.
    pub pages: &'static [&'static str],
    /// Audit actions whose events evidence it.
    pub evidence: &'static [AuditAction],
    /// Tests that prove it: `path::function` for Rust tests, `path::title` for Playwright tests.
    pub tests: &'static [&'static str],
}

use AuditAction as A;
use Framework::{Gdpr, MifidRts6, Soc2};

pub const CONTROLS: &[Control] = &[
    // --- SOC 2 -----------------------------------------------------------------------------
    Control {
        framework: Soc2,
        reference: "CC6.1",
        requirement: "Logical access to information assets is restricted by role.",
        feature: "Three roles (trader, compliance reviewer, admin). Privileged use cases take a proof of authority (Reviewer, AdminReader, Admin) that only the account and step-up services issue; every role change is audited.",
        pages: &["/admin/users"],
        evidence: &[A::AccountRoleChange],
        tests: &[
            "server/tests/api/auth.rs::roles_guard_the_admin_and_audit_functions",
            "server/tests/api/auth.rs::an_admin_changes_roles_and_each_change_is_audited",
            "server/tests/api/overview.rs::a_trader_gets_403_from_the_reviewer_and_admin_overviews",
            "end2end/tests/roles.spec.ts::a visitor is asked to sign in, and a trader is told which role a page is for",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC6.1",
        requirement: "Encryption keys and secrets are protected.",
        feature: "Exchange keys are sealed with envelope encryption through the KMS port (a fresh data key per secret, bound to its owner and record); only a mask is ever shown. The master key rotates and stored keys are re-wrapped under the new version.",
        pages: &["/keys", "/admin/vault"],
        evidence: &[
            A::VaultKeyAdded,
            A::VaultKeyUsed,
            A::KmsRotate,
            A::VaultKeyRewrapped,
            A::VaultRewrap,
        ],
        tests: &[
            "server/tests/api/keys.rs::a_key_is_stored_sealed_and_only_its_mask_comes_back",
            "server/tests/api/keys.rs::every_decryption_leaves_a_receipt_the_trader_can_read",
            "server/tests/api/keys.rs::rotating_the_master_key_and_rewrapping_keeps_every_key_usable",
            "server/tests/api/keys.rs::an_unavailable_kms_fails_closed",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC6.1",
        requirement: "Sensitive actions require strong authentication.",
        feature: "Step-up with a security key (WebAuthn, user-verified for admins) or an authenticator app opens a short privilege window; large orders, and smaller ones once what went out without an approval adds up past the threshold, need an approval bound to exactly that order; codes and assertions cannot be replayed, not even one answer sent several times at once; on an account with a security key, only that key changes its factors, and a first key added after an app step-up needs a recent sign-in (it would be admin-grade once its owner is promoted).",
        pages: &["/security"],
        evidence: &[
            A::StepupKeySucceeded,
            A::StepupTotpSucceeded,
            A::StepupTotpReplayed,
            A::StepupOrderApproved,
            A::StepupOrderApprovalRefused,
        ],
        tests: &[
            "server/tests/api/stepup.rs::admin_actions_need_a_security_key_step_up_and_totp_is_not_enough",
            "server/tests/api/stepup.rs::a_totp_code_is_accepted_once_and_a_replay_is_refused_and_audited",
            "server/tests/api/stepup.rs::an_order_approval_covers_exactly_one_order_once",
            "server/tests/api/approvals.rs::orders_split_below_the_step_up_threshold_need_an_approval_once_they_add_up_to_it",
            "server/tests/api/stepup.rs::with_a_security_key_on_the_account_a_totp_or_recovery_step_up_cannot_change_its_factors",
            "server/tests/api/stepup.rs::a_started_app_set_up_takes_five_codes_at_most_and_is_not_confirmed_once_its_window_closed",
            "server/tests/api/stepup_controls.rs::one_answer_of_a_key_whose_counter_stays_zero_opens_one_window_even_sent_eight_times_at_once",
            "server/tests/api/stepup_controls.rs::a_traders_first_key_needs_a_fresh_sign_in_too_as_a_promotion_would_make_it_admin_grade",
            "end2end/tests/stepup.spec.ts::an admin action is refused until the admin steps up with a security key",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC6.2",
        requirement: "Users are registered and authorized before access; access is removed when no longer needed.",
        feature: "Sign-up creates a trader only; higher roles are granted by two admins (or the operator's CLI). Sign-out everywhere ends every session and, when asked, revokes agent tokens; a password change (current password and a recent proof) ends every session too.",
        pages: &["/account", "/admin/users"],
        evidence: &[
            A::AccountCreate,
            A::AccountRoleChange,
            A::AccountRoleChangeRequested,
            A::AuthLogoutEverywhere,
            A::AuthPasswordChanged,
            A::AgentTokenRevoked,
        ],
        tests: &[
            "server/tests/api/auth.rs::sign_up_creates_a_signed_in_trader_and_audits_it",
            "server/tests/api/auth.rs::the_cli_creates_admins_and_changes_roles",
            "server/tests/api/sessions.rs::logging_out_everywhere_ends_every_session_of_that_user_only",
            "server/tests/api/sessions.rs::changing_the_password_needs_the_current_one_and_a_recent_proof_and_ends_every_session",
            "server/tests/api/admin_controls.rs::signing_out_everywhere_revokes_agent_tokens_when_asked_and_only_then",
            "server/tests/api/sessions.rs::a_session_copied_under_a_new_id_after_its_user_signed_out_everywhere_is_not_stored",
            "server/tests/api/stepup.rs::an_operator_resets_the_factors_of_someone_who_lost_them_all",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC6.3",
        requirement: "Access follows least privilege and segregation of duties.",
        feature: "Nobody reviews their own anomaly case, and a reviewer's release cannot lift a state an admin set; an admin cannot change their own trading state, kill switch or limits (nor loosen their own through a global one), nor change anyone's role without a second admin (so no admin makes a second admin or a reviewer account of their own to act for them or release them); agent tokens carry scopes.",
        pages: &["/review", "/admin/risk", "/agents"],
        evidence: &[
            A::ReviewCaseReleased,
            A::ReviewCaseConfirmed,
            A::RiskTradingStateChanged,
            A::AccountRoleChangeRequested,
            A::AgentTokenCreated,
        ],
        tests: &[
            "server/tests/api/trading.rs::nobody_reviews_their_own_case_and_a_confirmed_case_cancels_the_held_order",
            "server/tests/api/trading.rs::a_reviewers_release_cannot_lift_a_halt_an_admin_set_while_the_case_was_open",
            "server/tests/api/admin_controls.rs::an_admin_cannot_change_their_own_trading_state_kill_switch_or_limits",
            "server/tests/api/admin_controls.rs::an_admin_loosening_a_global_limit_stays_held_to_the_old_one",
            "server/tests/api/auth.rs::granting_or_removing_the_admin_role_takes_a_second_admin",
            "server/tests/api/trading.rs::a_quarantined_admin_cannot_appoint_the_reviewer_who_releases_them",
            "server/tests/api/agent.rs::a_prices_only_token_cannot_propose_or_read_the_portfolio",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC6.6",
        requirement: "The system is protected against threats from outside its boundaries.",
        feature: "Rate limits on every route (and per agent token, from whatever address), CSRF origin checks on state changes, CORS to the configured origin, security headers with a CSP nonce, an IP blocklist for orders, and sign-in back-off (counted in the database, so every app server and a restarted one see the same count; per browser for the browsers an account signed in from before, so strangers' failures cannot lock its owner out).",
        pages: &["/admin/risk"],
        evidence: &[A::RiskIpBlocked, A::RiskIpUnblocked, A::AuthLogin],
        tests: &[
            "server/tests/api/security.rs::every_route_is_rate_limited",
            "server/tests/api/agent.rs::a_token_over_its_own_budget_is_answered_429_and_writes_nothing",
            "server/tests/api/security.rs::state_changing_requests_from_other_origins_are_refused_and_change_nothing",
            "server/tests/api/security.rs::pages_carry_the_security_headers_and_a_csp_nonce_that_matches_the_scripts",
            "server/tests/api/auth.rs::repeated_failures_back_off_the_account_even_for_the_right_password",
            "server/tests/api/auth.rs::strangers_failures_do_not_lock_out_a_browser_that_signed_in_before",
            "server/tests/api/login_backoff.rs::an_accounts_back_off_holds_after_a_restart_and_on_every_app_server",
            "domain/src/trading/decision.rs::an_order_from_a_blocked_range_is_denied",
            "server/tests/api/trading.rs::a_held_order_placed_from_an_address_blocked_meanwhile_is_never_sent",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC6.7",
        requirement: "The movement of information and funds is restricted to authorized purposes.",
        feature: "Exchange keys that can withdraw are refused at entry and on every scheduled re-check; secrets never come back in a response or enter the audit log.",
        pages: &["/keys"],
        evidence: &[A::VaultKeyRefused, A::VaultKeyChecked],
        tests: &[
            "server/tests/api/keys.rs::binance_keys_are_checked_with_the_exchange_and_withdrawal_keys_refused",
            "server/tests/api/agent.rs::the_token_secret_never_comes_back_or_enters_the_audit_log",
            "server/tests/api/security.rs::passwords_never_reach_the_database_the_audit_log_or_a_response",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC7.2",
        requirement: "System components are monitored for anomalies that indicate malicious acts.",
        feature: "Anomaly scoring opens cases and quarantines the trader; decoy keys (alike to real keys in their owner's list, receipts and re-checks) and cloned security keys raise alerts; the admin's overview charts security events (refusals, failures, sign-in, step-up and key activity) hour by hour.",
        pages: &["/", "/review", "/admin/vault"],
        evidence: &[
            A::RiskCaseOpened,
            A::SecurityAlertRaised,
            A::SecurityCanaryTripped,
            A::SecurityKeyCloneSuspected,
            A::StepupKeyCounterRegressed,
        ],
        tests: &[
            "server/tests/api/trading.rs::a_burst_of_odd_orders_opens_a_case_quarantines_the_trader_and_a_reviewer_releases_it",
            "server/tests/api/keys.rs::touching_a_decoy_key_raises_an_alert_and_decrypts_nothing",
            "server/tests/api/platform_controls.rs::a_decoy_key_looks_like_a_real_key_in_its_owners_list_receipts_and_rechecks",
            "server/tests/api/platform_controls.rs::a_kms_outage_fails_a_decoys_recheck_as_it_fails_a_real_keys",
            "server/tests/api/stepup.rs::a_key_whose_counter_goes_backwards_is_refused_flagged_and_audited",
            "server/tests/api/stepup.rs::a_clone_answering_a_challenge_issued_before_the_owners_last_use_is_caught",
            "server/tests/api/overview.rs::the_admin_chart_counts_failed_sign_ins_in_their_hour",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC7.2",
        requirement: "Security events are logged so that tampering is detectable.",
        feature: "Every action is appended to a hash-chained audit log that the database refuses to update or delete; the server signs checkpoints of the chain head (stored, journalled outside the database) and the head of record at every commit, so a rewritten or truncated chain, or an event added after the newest, is caught and nothing is chained onto it; the chain is verified in the app and by the operator's CLI, which names the first bad event.",
        pages: &["/audit"],
        evidence: &[A::AuditVerify, A::AuditCheckpoint, A::AuditHeadSigned],
        tests: &[
            "server/tests/api/audit.rs::an_event_added_after_the_newest_is_found_and_nothing_is_chained_onto_it",
            "server/tests/api/audit.rs::a_head_of_record_left_unsigned_by_an_older_version_is_signed_once_and_audited",
            "server/tests/api/checkpoints.rs::events_cut_from_the_end_are_caught_through_the_latest_checkpoint",
            "server/tests/api/checkpoints.rs::deleting_the_report_key_so_a_new_one_signs_a_rewritten_chain_is_reported",
            "server/tests/api/audit.rs::the_audit_table_refuses_updates_and_deletes",
            "server/tests/api/audit.rs::the_cli_verifier_names_the_first_tampered_seq",
            "server/tests/api/audit.rs::concurrent_actions_never_fork_or_gap_the_chain",
            "domain/src/audit/mod.rs::two_swapped_events_are_detected_at_the_first_of_them",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC7.3",
        requirement: "Security events are evaluated to decide whether they are incidents.",
        feature: "Reviewers decide anomaly cases with a note and a fresh step-up (released or confirmed), never a case about themself (nor see one); admins acknowledge alerts behind their security-key window, never an alert about themself; reviewers see open cases by age on their overview.",
        pages: &["/", "/review", "/admin/vault"],
        evidence: &[
            A::ReviewCaseReleased,
            A::ReviewCaseConfirmed,
            A::SecurityAlertAcknowledged,
        ],
        tests: &[
            "server/tests/api/admin_controls.rs::alerts_and_decoys_need_the_admins_security_key_window",
            "server/tests/api/admin_controls.rs::an_admin_cannot_acknowledge_an_alert_about_themself",
            "server/tests/api/overview.rs::the_reviewer_overview_buckets_open_cases_by_age",
            "end2end/tests/trading.spec.ts::a burst of odd orders quarantines the trader, shows the banner, and a reviewer sees the case",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC7.4",
        requirement: "Identified incidents are responded to and contained.",
        feature: "A global kill switch (admin, security key) stops all trading and cancels resting orders; a trader can be halted or stopped individually.",
        pages: &["/admin/risk"],
        evidence: &[
            A::RiskKillSwitchOn,
            A::RiskKillSwitchOff,
            A::RiskTradingStateChanged,
            A::TradeOrderCancelled,
        ],
        tests: &[
            "server/tests/api/admin_controls.rs::turning_the_kill_switch_on_cancels_resting_orders_and_says_how_many",
            "server/tests/api/admin_controls.rs::halting_a_trader_or_stopping_them_cancels_only_their_resting_orders",
            "server/tests/api/trading.rs::a_stop_whose_cancel_could_not_reach_the_exchange_is_applied_once_it_is_back",
        ],
    },
    Control {
        framework: Soc2,
        reference: "CC8.1",
        requirement: "Changes to controls are authorized and recorded.",
        feature: "Limits, states and the blocklist change only through an admin's security-key window, each change audited; an unparsable limit falls back to the strictest value.",
        pages: &["/admin/risk"],
        evidence: &[
            A::RiskLimitChanged,
            A::RiskControlsChanged,
            A::RiskLimitFailSafe,
        ],
        tests: &[
            "server/tests/api/trading.rs::admins_set_per_user_limits_and_states_with_a_key_step_up",
            "server/tests/api/trading.rs::an_unparsable_limit_falls_back_to_the_strictest_value_and_is_audited",
        ],
    },
    // --- MiFID II RTS 6 --------------------------------------------------------------------
    Control {
        framework: MifidRts6,
        reference: "Art. 12",
        requirement: "Kill functionality: cancel all unexecuted orders immediately, as an emergency measure.",
        feature: "The global kill switch denies every new order and cancels every resting order at its venue, with the trader's key even when that key is suspended (a key with live orders cannot be revoked); a held order whose send went unanswered is looked up and cancelled at its venue too, never only in our records; its state shows on every trader's page and the admin's overview.",
        pages: &["/admin/risk", "/"],
        evidence: &[
            A::RiskKillSwitchOn,
            A::RiskKillSwitchOff,
            A::TradeOrderCancelled,
        ],
        tests: &[
            "server/tests/api/trading.rs::the_kill_switch_needs_an_admin_key_stops_new_orders_and_shows_everywhere",
            "server/tests/api/admin_controls.rs::turning_the_kill_switch_on_cancels_resting_orders_and_says_how_many",
            "server/tests/api/trading.rs::a_key_with_a_resting_order_is_not_revoked_and_once_suspended_still_takes_it_off",
            "server/tests/api/trading.rs::cancelling_a_held_order_whose_send_went_unanswered_cancels_it_at_the_exchange",
            "server/tests/api/trading.rs::a_held_binance_order_is_cancelled_as_binance_answers_pending_refused_or_not_at_all",
            "domain/src/trading/decision.rs::either_kill_switch_denies_every_order",
            "end2end/tests/trading.spec.ts::the admin's kill switch needs the security key and puts a banner on every trader's page",
        ],
    },
    Control {
        framework: MifidRts6,
        reference: "Art. 13",
        requirement: "An automated surveillance system detects potential market manipulation.",
        feature: "Every order is scored for anomalies (size, velocity, symbol, hour, IP and device novelty); a high score holds the order, opens a case for a reviewer and quarantines the trader.",
        pages: &["/review"],
        evidence: &[A::RiskCaseOpened, A::TradeOrderHeld],
        tests: &[
            "server/tests/api/trading.rs::a_burst_of_odd_orders_opens_a_case_quarantines_the_trader_and_a_reviewer_releases_it",
            "domain/src/trading/decision.rs::an_anomalous_order_is_held_and_quarantines_the_trader",
            "domain/src/risk/anomaly.rs::a_burst_then_a_huge_order_in_a_new_symbol_scores_high",
        ],
    },
    Control {
        framework: MifidRts6,
        reference: "Art. 15",
        requirement: "Pre-trade controls: price collars, maximum order value and volume, maximum message rate.",
        feature: "Before any order is sent: price band against the quote, per-order and daily notional limits, symbol allowlist, velocity limit, paper balance less what the trader's live orders may still take (so stacked orders cannot oversell, and a reducing-only trader cannot sell into a short); the price judged is chosen in one place for the ticket and the server; a market order on an exchange with a book goes out immediate-or-cancel at the price it was judged at, so it never fills beyond it; only pairs quoted in USDT, the limits' currency, are traded.",
        pages: &["/trade", "/admin/risk"],
        evidence: &[
            A::TradeOrderDecided,
            A::TradeOrderDenied,
            A::TradeOrderHeld,
            A::TradeOrderRefused,
        ],
        tests: &[
            "server/tests/api/screening.rs::a_sell_limit_far_below_the_market_is_refused_and_nothing_is_stored",
            "server/tests/api/trading.rs::bad_order_input_is_refused_and_writes_nothing",
            "server/tests/api/screening.rs::a_huge_quantity_is_refused_by_the_ticket_and_the_agent_api_and_nothing_is_written",
            "server/tests/api/trading.rs::orders_submitted_at_the_same_instant_cannot_share_a_limit",
            "server/tests/api/trading.rs::live_orders_claim_what_they_may_take_so_stacked_sells_cannot_oversell",
            "domain/src/trading/decision.rs::an_order_above_the_per_order_limit_is_denied_with_the_limit_in_the_reason",
            "domain/src/risk/rules.rs::velocity_boundary",
            "server/tests/api/trading.rs::a_binance_market_order_never_fills_beyond_the_price_it_was_judged_at",
            "domain/src/order.rs::only_pairs_quoted_in_usdt_are_symbols",
        ],
    },
    Control {
        framework: MifidRts6,
        reference: "Art. 16",
        requirement: "Real-time monitoring of trading activity with alerts.",
        feature: "The trading banner and the trader's overview show the trading state (active, reducing, halted) and why; paused exchanges hold orders and send each exactly once when back.",
        pages: &["/", "/orders"],
        evidence: &[A::RiskTradingStateChanged, A::TradeOrderHeld],
        tests: &[
            "server/tests/api/overview.rs::the_trader_overview_shows_state_positions_orders_and_keys_due",
            "server/tests/api/trading.rs::an_exchange_outage_holds_orders_and_sends_each_exactly_once_when_it_is_back",
        ],
    },
    Control {
        framework: MifidRts6,
        reference: "Art. 17",
        requirement: "Post-trade controls: executed positions and usage are monitored.",
        feature: "Fills are recorded from the venue and counted in the day's usage, including partly filled cancelled orders; resting orders are looked up until they end.",
        pages: &["/orders"],
        evidence: &[A::TradeOrderFilled, A::TradeOrderAccepted],
        tests: &[
            "server/tests/api/screening.rs::a_partly_filled_order_that_is_cancelled_counts_its_fill_in_todays_usage",
            "server/tests/api/trading.rs::a_resting_binance_order_is_looked_up_now_and_then_and_its_fill_recorded",
        ],
    },
    Control {
        framework: MifidRts6,
        reference: "Art. 18",
        requirement: "Security and limits to access of the trading system; algorithms cannot bypass controls.",
        feature: "Agent (algorithm) orders pass the same screening; anything unrecognised is a recorded HOLD; autonomous mode has a cap, and ends with the trader's tokens (a factor reset, a cloned key, revoking them all); per-user limits and states are set by admins only.",
        pages: &["/agents", "/admin/risk"],
        evidence: &[
            A::AgentSignalHeld,
            A::AgentProposalReceived,
            A::AgentAutonomousChanged,
            A::RiskLimitChanged,
        ],
        tests: &[
            "server/tests/api/agent.rs::everything_else_is_a_recorded_hold_and_nothing_is_placed",
            "server/tests/api/agent.rs::malformed_proposals_are_held_and_nothing_is_queued",
            "domain/src/trading/decision.rs::autonomous_mode_leaves_orders_above_the_cap_or_needing_a_step_up_to_the_trader",
            "server/tests/api/agent.rs::a_factor_reset_stops_the_bots_a_stolen_window_could_have_set_going",
        ],
    },
    // --- GDPR ------------------------------------------------------------------------------
    Control {
        framework: Gdpr,
        reference: "Art. 5(1)(f)",
        requirement: "Integrity and confidentiality of personal data.",
        feature: "A user never sees another user's orders, keys, cases, proposals or tokens; unknown and foreign ids get the same answer.",
        pages: &["/orders", "/keys"],
        evidence: &[A::VaultKeyUsed],
        tests: &[
            "server/tests/api/trading.rs::another_users_orders_cases_proposals_and_tokens_are_not_found",
            "server/tests/api/keys.rs::another_users_key_id_is_not_found_on_every_key_route",
            "server/tests/api/trading_store.rs::reads_and_writes_are_scoped_to_the_owner",
        ],
    },
    Control {
        framework: Gdpr,
        reference: "Art. 5(2), Art. 30",
        requirement: "Accountability: records of processing that can be shown to a supervisor.",
        feature: "The audit log records who did what, when and from where; reviewers filter and verify it in the app and download signed CSV or PDF reports that a regulator verifies offline (each download is itself audited, from before its first row leaves).",
        pages: &["/audit", "/reports"],
        evidence: &[A::AuditVerify, A::ReportStarted, A::ReportDownload],
        tests: &[
            "server/tests/api/audit.rs::reviewers_read_the_log_and_verify_it_in_the_app",
            "server/tests/api/report_verify.rs::report_verify_passes_an_untouched_csv_and_names_the_row_for_each_tamper",
            "server/tests/api/reports.rs::a_report_is_recorded_as_started_before_its_first_row_leaves",
            "server/tests/api/reports.rs::only_reviewers_and_admins_download_and_bad_filters_record_nothing",
            "end2end/tests/foundation.spec.ts::an admin asks for the reviewer role, the operator grants it, and the reviewer verifies the audit chain",
        ],
    },
    Control {
        framework: Gdpr,
        reference: "Art. 25",
        requirement: "Data protection by design and by default.",
        feature: "Sensitive detail keys (passwords, secrets, tokens, codes) are redacted from audit events at any depth; sign-in errors do not reveal whether an account exists; new accounts get the least role.",
        pages: &["/audit"],
        evidence: &[A::AuthLogin, A::AccountCreate],
        tests: &[
            "domain/src/audit/mod.rs::sensitive_details_are_redacted_at_any_depth",
            "server/tests/api/auth.rs::wrong_password_and_unknown_email_get_the_same_answer",
            "end2end/tests/foundation.spec.ts::a wrong password and an unknown email show the same generic error",
        ],
    },
    Control {
        framework: Gdpr,
        reference: "Art. 32(1)(a)",
        requirement: "Encryption of personal data and credentials.",
        feature: "Passwords are stored only as Argon2 hashes; exchange secrets only sealed under the KMS; session cookies are HttpOnly, SameSite=Strict and Secure under TLS.",
        pages: &["/keys", "/account"],
        evidence: &[A::VaultKeyAdded],
        tests: &[
            "server/tests/api/security.rs::passwords_never_reach_the_database_the_audit_log_or_a_response",
            "server/tests/api/sessions.rs::the_session_cookie_is_http_only_same_site_strict_and_host_wide",
            "server/tests/api/kms.rs::a_flipped_byte_in_the_wrapped_key_fails",
        ],
    },
    Control {
        framework: Gdpr,
        reference: "Art. 32(1)(b)",
        requirement: "Ongoing confidentiality, integrity and availability of processing systems.",
        feature: "Fail-safe defaults: an unreachable KMS or missing audit write refuses the action and changes nothing; sessions end at their idle and absolute lifetimes.",
        pages: &["/account"],
        evidence: &[A::VaultKeyUseFailed],
        tests: &[
            "server/tests/api/keys.rs::no_audit_write_means_no_decryption_and_no_new_key",
            "server/tests/api/trading.rs::no_audit_write_means_no_order",
            "server/tests/api/sessions.rs::a_busy_session_still_ends_at_its_absolute_lifetime",
        ],
    },
];

/// The controls of one framework, in table order.
pub fn controls_of(framework: Framework) -> impl Iterator<Item = &'static Control> {
    CONTROLS.iter().filter(move |c| c.framework == framework)
}

/// The name a test goes by in the map: its function name or title, without the path.
pub fn test_name(reference: &str) -> &str {
    reference
        .rsplit_once("::")
        .map_or(reference, |(_, name)| name)
}

/// The file a test reference points into.
pub fn test_path(reference: &str) -> &str {
    reference.split_once("::").map_or("", |(path, _)| path)
}

/// `docs/controls.md`, generated from [`CONTROLS`].
pub fn controls_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Control map\n\n");
    out.push_str("<!-- Generated from app/src/controls.rs by `cargo test -p cryptopulse-app --features ssr --lib controls` with UPDATE_CONTROLS_DOC=1. Do not edit by hand. -->\n\n");
    out.push_str("Which CryptoPulse feature meets which control, the audit actions whose events evidence it, and the tests that prove it. The same table is shown in the app at `/controls`. A test checks that every test named here exists and every action is one the audit log writes.\n");
    for framework in Framework::ALL {
        out.push_str(&format!("\n## {}\n\n", framework.label()));
        out.push_str("| Control | Requirement | How CryptoPulse meets it | Evidence (audit actions) | Proven by |\n");
        out.push_str("|---|---|---|---|---|\n");
        for control in controls_of(framework) {
            let evidence = control
                .evidence
                .iter()
                .map(|a| format!("`{}`", a.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let tests = control
                .tests
                .iter()
                .map(|t| format!("`{}` ({})", test_name(t), test_path(t)))
                .collect::<Vec<_>>()
                .join("<br>");
            let pages = control.pages.join(", ");
            out.push_str(&format!(
                "| {} | {} | {} (pages: {}) | {} | {} |\n",
                cell(control.reference),
                cell(control.requirement),
                cell(control.feature),
                cell(&pages),
                evidence,
                cell(&tests),
            ));
        }
    }
    out
}

/// A Markdown table cell: pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the app crate sits in the workspace")
            .to_path_buf()
    }

    /// Whether `source` has a test called `name`: a Rust `fn name(` under a test attribute, or
    /// a Playwright `test("name"`.
    fn has_test(path: &str, source: &str, name: &str) -> bool {
        if path.ends_with(".ts") {
            return source.contains(&format!("test(\"{name}\""));
        }
        // The attributes and comments right above the function must include a test attribute.
        let lines: Vec<&str> = source.lines().collect();
        lines.iter().enumerate().any(|(i, line)| {
            line.contains(&format!("fn {name}("))
                && lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| {
                        let l = l.trim_start();
                        l.starts_with("#[") || l.starts_with("//")
                    })
                    .any(|l| l.contains("#[test]") || l.contains("#[tokio::test"))
        })
    }

    #[test]
    fn every_named_test_exists_in_the_tree() {
        let root = repo_root();
        let mut missing = Vec::new();
        for control in CONTROLS {
            for reference in control.tests {
                let path = test_path(reference);
                let source = std::fs::read_to_string(root.join(path)).unwrap_or_default();
                if !has_test(path, &source, test_name(reference)) {
                    missing.push(*reference);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "tests named in the control map that do not exist: {missing:#?}"
        );
    }

    #[test]
    fn every_control_names_evidence_and_a_test_and_every_action_is_written_by_the_log() {
        for control in CONTROLS {
            assert!(
                !control.evidence.is_empty(),
                "{} has no evidence",
                control.reference
            );
            assert!(
                !control.tests.is_empty(),
                "{} has no test",
                control.reference
            );
            for action in control.evidence {
                assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
            }
        }
        for framework in Framework::ALL {
            assert!(
                controls_of(framework).next().is_some(),
                "{framework:?} has no controls"
            );
        }
    }

    #[test]
    fn the_test_checker_tells_a_real_test_from_a_mention() {
        let source = "#[tokio::test]\nasync fn real_one() {}\n\nfn helper_not_a_test() {}\n";
        assert!(has_test("x.rs", source, "real_one"));
        assert!(!has_test("x.rs", source, "helper_not_a_test"));
        assert!(!has_test("x.rs", source, "absent"));
        assert!(has_test(
            "x.ts",
            "test(\"a title\", async () => {})",
            "a title"
        ));
    }

    #[test]
    fn docs_controls_md_is_generated_from_the_table() {
        let path = repo_root().join("docs/controls.md");
        let expected = controls_markdown();
        if std::env::var("UPDATE_CONTROLS_DOC").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().expect("docs dir")).expect("docs dir");
            std::fs::write(&path, &expected).expect("write docs/controls.md");
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/controls.md is stale: run `UPDATE_CONTROLS_DOC=1 cargo test -p cryptopulse-app --features ssr --lib controls` and commit it"
        );
    }
}
