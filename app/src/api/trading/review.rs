//! Anomaly cases for reviewers.

use leptos::prelude::*;

use super::*;
use crate::error::AppError;

#[server(endpoint = "review/cases")]
pub async fn list_cases(status: Option<String>) -> Result<Vec<CaseView>, AppError> {
    use crate::api::context::{require_reviewer, services};
    use domain::trading::CaseStatus;

    let reviewer = require_reviewer().await?;
    let status = match status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(raw) => Some(
            CaseStatus::parse(raw)
                .ok_or_else(|| AppError::Invalid("Unknown case status.".into()))?,
        ),
    };
    let cases = services()?.trading.cases(&reviewer, status).await?;
    Ok(cases.iter().map(views::case_view).collect())
}

#[server(endpoint = "review/case")]
pub async fn get_case(id: String) -> Result<CaseView, AppError> {
    use crate::api::context::{require_reviewer, services};
    use domain::trading::CaseId;

    let reviewer = require_reviewer().await?;
    let id = CaseId(views::uuid(&id)?);
    let case = services()?.trading.case(&reviewer, id).await?;
    Ok(views::case_view(&case))
}

/// A reviewer's decision. Releasing a quarantine (or confirming one) is a lasting change made
/// for someone else, so it needs what adding a factor needs: a fresh step-up (with the
/// security key, if the reviewer has one), or without any factor a recent sign-in. A stolen
/// reviewer cookie alone does not release anyone.
#[server(endpoint = "review/decide")]
pub async fn decide_case(id: String, decision: String, note: String) -> Result<CaseView, AppError> {
    use crate::api::context::{request_meta, require_reviewer, require_user, services};
    use domain::trading::{CaseDecision, CaseId, ReviewNote};

    let reviewer = require_reviewer().await?;
    let (user, session) = require_user().await?;
    crate::api::stepup::server::require_enrolment_allowed(&user, &session).await?;
    let decision = CaseDecision::parse(&decision).ok_or_else(|| {
        AppError::Invalid("Decide to release the trader or confirm the quarantine.".into())
    })?;
    let id = CaseId(views::uuid(&id)?);
    let note = ReviewNote::parse(&note)?;
    let case = services()?
        .trading
        .decide_case(&reviewer, id, decision, note, request_meta())
        .await?;
    Ok(views::case_view(&case))
}
