//! Report downloads as plain routes (a file, not a server function's JSON), signed in by the
//! session cookie like every page. Reviewers and admins only.
//!
//! `GET /reports/audit.csv?from=&to=&actor=&action=&outcome=&resource=&request_id=` streams the
//! report a page of rows at a time (memory stays flat); the signed manifest comes last, so a
//! download cut short by a failure has none and does not verify.
//! `GET /reports/pdf/{job}` hands a finished PDF job to the reviewer who started it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use app::api::context::{Services, user_for_session};
use app::api::reports::ReportFilterForm;
use app::error::AppError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::audit::RequestMeta;
use domain::audit::jobs::JobId;
use domain::audit::reports::{ReportFormat, ReportRun};
use domain::authz::Reviewer;
use domain::ids::UserId;
use http::{HeaderValue, StatusCode, header};
use tower_sessions::Session;

use super::report_file_name;

/// CSV downloads streaming at once, all reviewers together.
const MAX_CSV_STREAMS: usize = 4;

/// The CSV downloads streaming now: one per reviewer and [`MAX_CSV_STREAMS`] on the server, as
/// for PDF jobs. Each reads the rows and then verifies the whole chain before it signs, so one
/// reviewer's session must not be able to start dozens at once.
#[derive(Debug, Clone, Default)]
struct CsvStreams(Arc<Mutex<Vec<UserId>>>);

impl CsvStreams {
    fn streaming(&self) -> MutexGuard<'_, Vec<UserId>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self, reviewer: UserId) -> Result<CsvSlot, AppError> {
        let mut streaming = self.streaming();
        if streaming.contains(&reviewer) {
            return Err(AppError::Conflict(
                "Your previous CSV report is still downloading. Wait for it to finish, then start another.".into(),
            ));
        }
        if streaming.len() >= MAX_CSV_STREAMS {
            return Err(AppError::Unavailable(
                "The server is sending too many reports right now. Try again in a minute.".into(),
            ));
        }
        streaming.push(reviewer);
        Ok(CsvSlot {
            streams: self.clone(),
            reviewer,
        })
    }
}

/// A download's place among the [`CsvStreams`], given back however the download ends
/// (completed, failed, or the client went away and the body was dropped).
#[derive(Debug)]
struct CsvSlot {
    streams: CsvStreams,
    reviewer: UserId,
}

impl Drop for CsvSlot {
    fn drop(&mut self) {
        let mut streaming = self.streams.streaming();
        if let Some(at) = streaming.iter().position(|r| *r == self.reviewer) {
            streaming.swap_remove(at);
        }
    }
}

pub fn router(services: Services) -> Router {
    Router::new()
        .route("/reports/audit.csv", get(audit_csv))
        .route("/reports/pdf/{job}", get(pdf_download))
        .layer(Extension(CsvStreams::default()))
        .with_state(services)
}

/// The error as a plain-text response with its status (5xx bodies stay opaque).
fn error_response(err: AppError) -> Response {
    let status = StatusCode::from_u16(err.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, format!("{err}\n")).into_response()
}

/// The signed-in reviewer or admin: 401 without a session, 403 for anyone else.
async fn reviewer(services: &Services, session: &Session) -> Result<Reviewer, AppError> {
    let user = user_for_session(services, session)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    Ok(services.accounts.reviewer(user.id).await?)
}

fn meta_of(request: &http::request::Parts) -> RequestMeta {
    request
        .extensions
        .get::<RequestMeta>()
        .cloned()
        .unwrap_or_default()
}

fn attachment(
    content_type: &'static str,
    file_name: &str,
) -> [(header::HeaderName, HeaderValue); 3] {
    // The name is built from digits and ASCII (report_file_name): always a valid header.
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_DISPOSITION, disposition),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

async fn audit_csv(
    State(services): State<Services>,
    Extension(csv_streams): Extension<CsvStreams>,
    session: Session,
    parts: http::request::Parts,
    query: Result<Query<ReportFilterForm>, QueryRejection>,
) -> Response {
    let meta = meta_of(&parts);
    // Who asks is checked before what they ask: a visitor learns nothing about the filter.
    let reviewer = match reviewer(&services, &session).await {
        Ok(reviewer) => reviewer,
        Err(err) => return error_response(err),
    };
    let Ok(Query(form)) = query else {
        return error_response(AppError::Invalid(
            "The report's filter could not be read.".into(),
        ));
    };
    let filter = match form.to_filter(&services).await {
        Ok(filter) => filter,
        Err(err) => return error_response(err),
    };
    let slot = match csv_streams.admit(reviewer.id()) {
        Ok(slot) => slot,
        Err(err) => return error_response(err),
    };
    let run = match services
        .audit
        .begin_report(&reviewer, filter.clone(), ReportFormat::Csv, meta.clone())
        .await
    {
        Ok(run) => run,
        Err(err) => return error_response(AppError::internal_for(meta.request_id, err)),
    };
    let file_name = report_file_name(&filter, services.clock.now(), "csv");
    (
        attachment("text/csv; charset=utf-8", &file_name),
        Body::from_stream(csv_chunks(run, meta, slot)),
    )
        .into_response()
}

enum Streaming {
    Rows(Box<ReportRun>, RequestMeta, CsvSlot),
    Done,
}

/// The report's bytes: each page of rows as it is read, then the signed trailer. A failure
/// ends the stream with an error, so the client sees a broken download, not a short report.
fn csv_chunks(
    run: ReportRun,
    meta: RequestMeta,
    slot: CsvSlot,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(
        Streaming::Rows(Box::new(run), meta, slot),
        |state| async move {
            let Streaming::Rows(mut run, meta, slot) = state else {
                return None;
            };
            let failed = |what: &str, err: &dyn std::fmt::Display| {
                tracing::error!(error = %err, request_id = meta.request_id.as_deref().unwrap_or("-"), "CSV report: {what}");
                Some((
                    Err(std::io::Error::other(
                        "the audit report could not be completed",
                    )),
                    Streaming::Done,
                ))
            };
            match run.next_rows().await {
                Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), Streaming::Rows(run, meta, slot))),
                Ok(None) => match run.finish(meta.clone()).await {
                    Ok((_, trailer)) => Some((Ok(Bytes::from(trailer)), Streaming::Done)),
                    Err(err) => failed("not signed", &err),
                },
                Err(err) => failed("reading rows failed", &err),
            }
        },
    )
}

async fn pdf_download(
    State(services): State<Services>,
    session: Session,
    Path(job): Path<String>,
) -> Response {
    let reviewer = match reviewer(&services, &session).await {
        Ok(reviewer) => reviewer,
        Err(err) => return error_response(err),
    };
    // Someone else's job is "not found", exactly like a job that never existed.
    let Some(file) =
        JobId::parse(&job).and_then(|id| services.report_jobs.pdf_file(reviewer.id(), id))
    else {
        return error_response(AppError::NotFound);
    };
    (
        attachment("application/pdf", &file.file_name),
        Body::from(file.bytes.as_ref().clone()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_csv_download_per_reviewer_and_a_few_on_the_server() {
        let streams = CsvStreams::default();
        let reviewers: Vec<UserId> = (0..=MAX_CSV_STREAMS)
            .map(|_| UserId(uuid::Uuid::new_v4()))
            .collect();
        let first = streams.admit(reviewers[0]).expect("admitted");
        assert!(matches!(
            streams.admit(reviewers[0]),
            Err(AppError::Conflict(_))
        ));
        let others: Vec<CsvSlot> = reviewers[1..MAX_CSV_STREAMS]
            .iter()
            .map(|r| streams.admit(*r).expect("admitted"))
            .collect();
        assert!(matches!(
            streams.admit(reviewers[MAX_CSV_STREAMS]),
            Err(AppError::Unavailable(_))
        ));
        // A download that ends, however it ends, gives its place back.
        drop(first);
        let again = streams.admit(reviewers[0]).expect("admitted again");
        drop((again, others));
        assert!(streams.streaming().is_empty());
    }
}
