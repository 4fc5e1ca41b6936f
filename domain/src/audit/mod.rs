//! The append-only, hash-chained audit log.
//!
//! Each event's hash is SHA-256 over the previous event's hash and a canonical, length-prefixed
//! encoding of the event, so changing, deleting, inserting or reordering any event breaks the
//! chain at that event's sequence number.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// The use cases sit above the accounts (they name users), which sit above the chain: not
// re-exported here, so `audit` itself never depends on `account`.
pub mod service;
// Search, event detail and streamed reports: a second `impl AuditService` block.
pub mod filter;
pub mod reports;
// What the role overviews read from the log (security events by hour, report downloads).
pub mod overview;
// Signed checkpoints of the head, the report key's storage, and background audit jobs.
pub mod checkpoints;
pub mod jobs;
// The report key and signed checkpoints; the self-verifying CSV report format.
pub mod report;
pub mod signing;

pub use report::{ReportManifest, ReportWriter, verify_report, verify_report_from};
pub use signing::{ReportKey, ReportPublicKey, SignedCheckpoint};

pub use filter::AuditFilter;

use async_trait::async_trait;

use crate::ids::UserId;
use crate::store_error::StoreError;

/// Bumped if the canonical encoding ever changes; part of every hash.
pub const CHAIN_VERSION: &str = "cryptopulse-audit-v1";

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Appends an event that accompanies no other change (a failed login, a logout).
    async fn record(&self, draft: AuditDraft) -> Result<AuditEvent, StoreError>;
    /// The newest events, newest first.
    async fn recent(&self, limit: u64) -> Result<Vec<AuditEvent>, StoreError>;
    /// Events with `seq > after`, oldest first, at most `limit` of them.
    async fn page(&self, after: i64, limit: u64) -> Result<Vec<AuditEvent>, StoreError>;
    /// The newest events about any of `resources`, newest first.
    async fn for_resources(
        &self,
        resources: &[String],
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Events matching `filter` with seq > after (ascending) — keyset paging, oldest first.
    async fn search_after(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Events matching `filter` with seq < before (descending) — newest first; before =
    /// i64::MAX for the newest page.
    async fn search_before(
        &self,
        filter: &AuditFilter,
        before: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// The current chain head (EMPTY when no events).
    async fn head(&self) -> Result<ChainHead, StoreError>;
    /// One event by seq.
    async fn event(&self, seq: i64) -> Result<Option<AuditEvent>, StoreError>;
    /// Where the last committed append left the chain, as the store records it beside the
    /// events, with the server's signature of it (None when it keeps no such record): events
    /// cut from the end leave it pointing past the newest row, events added after it lie past
    /// it, and a record moved by anyone but the server carries no valid signature.
    async fn recorded_head(&self) -> Result<Option<RecordedHead>, StoreError> {
        Ok(None)
    }
    /// The lowest seq stored, whatever it is: below 1, a row the server never wrote.
    async fn lowest_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.page(i64::MIN, 1).await?.first().map(|event| event.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Agent,
    System,
    /// Unauthenticated requests, e.g. a failed login for an unknown email.
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "user" => Some(ActorKind::User),
            "agent" => Some(ActorKind::Agent),
            "system" => Some(ActorKind::System),
            "anonymous" => Some(ActorKind::Anonymous),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
}

impl Actor {
    pub fn user(id: UserId) -> Self {
        Self {
            kind: ActorKind::User,
            id: Some(id.to_string()),
        }
    }
    pub fn system(component: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: Some(component.to_owned()),
        }
    }
    /// The user this actor is, when it is a user.
    pub fn user_id(&self) -> Option<UserId> {
        match (self.kind, self.id.as_deref()) {
            (ActorKind::User, Some(id)) => uuid::Uuid::parse_str(id).ok().map(UserId),
            _ => None,
        }
    }

    pub fn anonymous() -> Self {
        Self {
            kind: ActorKind::Anonymous,
            id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Where a request came from, as far as the server can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Keys whose values never enter the audit log, whatever a caller passes.
const SENSITIVE_KEY_PARTS: [&str; 9] = [
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private",
    "credential",
    "otp",
    "cookie",
];

const REDACTED: &str = "[redacted]";

fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Redacts sensitive keys at any depth.
pub fn mask_details(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(&k) {
                        Value::String(REDACTED.into())
                    } else {
                        mask_details(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_details).collect()),
        other => other,
    }
}

/// An event before it is sealed into the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub actor: Actor,
    pub action: String,
    pub resource: Option<String>,
    pub outcome: Outcome,
    pub meta: RequestMeta,
    details: Map<String, Value>,
}

impl AuditDraft {
    pub fn new(
        actor: Actor,
        action: crate::audit_action::AuditAction,
        outcome: Outcome,
        meta: RequestMeta,
    ) -> Self {
        Self {
            actor,
            action: action.as_str().to_owned(),
            resource: None,
            outcome,
            meta,
            details: Map::new(),
        }
    }

    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Adds a detail; values under sensitive keys are replaced by a redaction marker.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = if is_sensitive_key(key) {
            Value::String(REDACTED.into())
        } else {
            mask_details(value.into())
        };
        self.details.insert(key.to_owned(), value);
        self
    }

    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }
}

/// A SHA-256 chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        let bytes = hex::decode(raw).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

/// The last sealed event's position: what the next event chains onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: ChainHash,
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: ChainHash::GENESIS,
    };

    /// Parses `SEQ:HASH`, the form `audit verify` prints for recording a head.
    pub fn parse(raw: &str) -> Option<Self> {
        let (seq, hash) = raw.trim().split_once(':')?;
        let seq: i64 = seq.parse().ok().filter(|s| *s > 0)?;
        Some(Self {
            seq,
            hash: ChainHash::from_hex(hash)?,
        })
    }
}

impl std::fmt::Display for ChainHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    /// UTC, whole microseconds (what every database here stores exactly).
    pub occurred_at: OffsetDateTime,
    pub actor: Actor,
    pub action: String,
    pub resource: Option<String>,
    pub outcome: Outcome,
    pub meta: RequestMeta,
    /// Masked details; serialised with sorted keys for hashing.
    pub details: Value,
    pub prev_hash: ChainHash,
    pub hash: ChainHash,
}

/// Formats a timestamp the way the chain hashes it: RFC 3339, UTC, microsecond precision.
pub fn canonical_time(at: OffsetDateTime) -> String {
    let at = truncate_to_micros(at.to_offset(time::UtcOffset::UTC));
    at.format(&Rfc3339).unwrap_or_default()
}

pub fn parse_canonical_time(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &Rfc3339).ok()
}

fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let micros = at.microsecond();
    at.replace_microsecond(micros).unwrap_or(at)
}

fn put_field(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
            buf.extend_from_slice(v.as_bytes());
        }
    }
}

impl AuditEvent {
    /// The canonical bytes that the hash commits to (everything except the hashes themselves).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        put_field(&mut buf, Some(CHAIN_VERSION));
        put_field(&mut buf, Some(&self.seq.to_string()));
        put_field(&mut buf, Some(&canonical_time(self.occurred_at)));
        put_field(&mut buf, Some(self.actor.kind.as_str()));
        put_field(&mut buf, self.actor.id.as_deref());
        put_field(&mut buf, Some(&self.action));
        put_field(&mut buf, self.resource.as_deref());
        put_field(&mut buf, Some(self.outcome.as_str()));
        put_field(&mut buf, self.meta.ip.as_deref());
        put_field(&mut buf, self.meta.user_agent.as_deref());
        put_field(&mut buf, self.meta.request_id.as_deref());
        // serde_json maps are ordered by key, so this is canonical JSON.
        put_field(&mut buf, Some(&self.details.to_string()));
        buf
    }

    pub fn compute_hash(&self) -> ChainHash {
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.0);
        hasher.update(self.canonical_bytes());
        ChainHash(hasher.finalize().into())
    }

    /// Seals a draft onto `head`: the next seq, the previous hash, and this event's hash.
    pub fn seal(head: ChainHead, draft: AuditDraft, now: OffsetDateTime) -> Self {
        let mut event = AuditEvent {
            seq: head.seq + 1,
            occurred_at: truncate_to_micros(now.to_offset(time::UtcOffset::UTC)),
            actor: draft.actor,
            action: draft.action,
            resource: draft.resource,
            outcome: draft.outcome,
            meta: draft.meta,
            details: Value::Object(draft.details),
            prev_hash: head.hash,
            hash: ChainHash::GENESIS,
        };
        event.hash = event.compute_hash();
        event
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// The head of record and its signature ([`signing::head_message`]), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedHead {
    pub head: ChainHead,
    pub signature: Option<String>,
}

impl Default for RecordedHead {
    fn default() -> Self {
        Self {
            head: ChainHead::EMPTY,
            signature: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakKind {
    #[error("expected seq {expected}, found seq {found} (events missing or reordered)")]
    SeqGap { expected: i64, found: i64 },
    #[error("prev_hash does not match the hash of the event before it")]
    PrevHashMismatch,
    #[error("stored hash does not match the event's contents")]
    HashMismatch,
    #[error("the chain ends before this previously recorded head (events removed from the end)")]
    Truncated,
    #[error("the event at this seq is not the one previously recorded")]
    AnchorMismatch,
    #[error(
        "a checkpoint of this seq (in the audit_checkpoints table or the journal file audit-checkpoints.jsonl) is not signed by this server's report key: forged, altered, or signed by a report key that was since replaced"
    )]
    BadCheckpoint,
    #[error(
        "this event lies past the head of record, which the server moves with every append it makes: it was added outside the server"
    )]
    PastRecord,
    #[error(
        "the head of record (audit_chain_lock) at this seq is not signed by this server's report key: it was set outside the server"
    )]
    ForgedRecord,
    #[error(
        "the head of record (audit_chain_lock) at this seq carries no signature: left by a version before heads were signed (a start signs it then, once: never after this server has signed heads of this chain), or cleared outside the server (restore a backup)"
    )]
    UnsignedRecord,
    #[error(
        "the head of record (audit_chain_lock) is empty although the log holds events: it was cleared outside the server (restore a backup)"
    )]
    ClearedRecord,
    #[error(
        "the head of record (audit_chain_lock) is older than the latest signed checkpoint: an earlier record was put back outside the server (restore a backup)"
    )]
    StaleRecord,
    #[error(
        "this event's seq is below the chain's first (1), where no append of the server writes: it was inserted outside the server"
    )]
    BeforeFirst,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {kind}")]
pub struct ChainBreak {
    pub seq: i64,
    pub kind: BreakKind,
}

/// Incremental chain verifier: feed events in seq order, in as many batches as needed.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    head: ChainHead,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            head: ChainHead::EMPTY,
            checked: 0,
        }
    }

    /// A verifier for the events after `head`, a head already trusted (a verified checkpoint).
    pub fn starting_at(head: ChainHead) -> Self {
        Self { head, checked: 0 }
    }

    pub fn check(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        let expected = self.head.seq + 1;
        if event.seq != expected {
            // A deleted event shows up where the gap is: the first missing seq.
            return Err(ChainBreak {
                seq: expected,
                kind: BreakKind::SeqGap {
                    expected,
                    found: event.seq,
                },
            });
        }
        if event.prev_hash != self.head.hash {
            return Err(ChainBreak {
                seq: event.seq,
                kind: BreakKind::PrevHashMismatch,
            });
        }
        if event.compute_hash() != event.hash {
            return Err(ChainBreak {
                seq: event.seq,
                kind: BreakKind::HashMismatch,
            });
        }
        self.head = event.head();
        self.checked += 1;
        Ok(())
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }
}

/// Verifies a whole chain held in memory.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<ChainHead, ChainBreak> {
    let mut verifier = ChainVerifier::new();
    for event in events {
        verifier.check(event)?;
    }
    Ok(verifier.head())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    pub checked: u64,
    pub head: ChainHead,
    /// The signed checkpoint the chain was checked against (the latest), if any.
    pub checkpoint: Option<signing::SignedCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLog {
    pub checked: u64,
    pub last_good: ChainHead,
    pub error: ChainBreak,
    /// The checkpoint that showed the break (or was itself bad), when one did.
    pub checkpoint: Option<signing::SignedCheckpoint>,
}

/// Events read per page wherever the chain is read through a page at a time: verification,
/// reports, the security chart. A page is built on a reader thread and freed on the request's,
/// and each reader thread keeps about as much memory as the largest page it built: with 1,000
/// a first CSV download grew the server by 30-40 MiB, with 250 by under 10, as fast
/// (`docs/benchmarks.md`, "Report memory").
pub const SCAN_PAGE: u64 = 250;

/// Verifies a stored log from its first event, calling `progress` with the number of events
/// checked after each batch. The outer error is a storage failure; the inner one a broken chain.
pub async fn verify_log(
    log: &dyn AuditLog,
    progress: impl FnMut(u64) + Send,
) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
    verify_log_seeing(log, progress, |_| {}).await
}

/// As [`verify_log`], showing `seen` each event once it has verified.
pub(crate) async fn verify_log_seeing(
    log: &dyn AuditLog,
    mut progress: impl FnMut(u64) + Send,
    mut seen: impl FnMut(&AuditEvent) + Send,
) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
    let mut verifier = ChainVerifier::new();
    // The scan reads from seq 1 on, so a row slipped in below it would never be checked; the
    // views leave such rows out, and this makes them a finding rather than a hidden row.
    if let Some(below) = log.lowest_seq().await?.filter(|seq| *seq < 1) {
        return Ok(Err(BrokenLog {
            checked: 0,
            last_good: verifier.head(),
            error: ChainBreak {
                seq: below,
                kind: BreakKind::BeforeFirst,
            },
            checkpoint: None,
        }));
    }
    loop {
        let batch = log.page(verifier.head().seq, SCAN_PAGE).await?;
        if batch.is_empty() {
            return Ok(Ok(VerifiedLog {
                checked: verifier.checked(),
                head: verifier.head(),
                checkpoint: None,
            }));
        }
        for event in &batch {
            if let Err(error) = verifier.check(event) {
                return Ok(Err(BrokenLog {
                    checked: verifier.checked(),
                    last_good: verifier.head(),
                    error,
                    checkpoint: None,
                }));
            }
            seen(event);
        }
        progress(verifier.checked());
    }
}

/// Checks that a head recorded earlier (from a report or a previous verification) is still in
/// the stored chain. The hash chain alone cannot notice events cut from its end; an anchor kept
/// outside the database can. Run after `verify_log` has passed.
pub async fn check_anchor(
    log: &dyn AuditLog,
    anchor: ChainHead,
) -> Result<Result<(), ChainBreak>, StoreError> {
    let found = log.page(anchor.seq - 1, 1).await?;
    Ok(match found.first() {
        Some(event) if event.seq == anchor.seq && event.hash == anchor.hash => Ok(()),
        Some(event) if event.seq == anchor.seq => Err(ChainBreak {
            seq: anchor.seq,
            kind: BreakKind::AnchorMismatch,
        }),
        _ => Err(ChainBreak {
            seq: anchor.seq,
            kind: BreakKind::Truncated,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn draft(n: usize) -> AuditDraft {
        AuditDraft::new(
            Actor::system("test"),
            crate::audit_action::AuditAction::AuthLogin,
            Outcome::Success,
            RequestMeta {
                ip: Some("127.0.0.1".into()),
                user_agent: Some("ua".into()),
                request_id: Some(format!("req-{n}")),
            },
        )
        .resource(format!("thing:{n}"))
        .detail("n", n)
    }

    fn chain(len: usize) -> Vec<AuditEvent> {
        let mut head = ChainHead::EMPTY;
        let start = datetime!(2026-11-23 12:00:00.123456789 UTC);
        (0..len)
            .map(|n| {
                let event =
                    AuditEvent::seal(head, draft(n), start + time::Duration::seconds(n as i64));
                head = event.head();
                event
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let events = chain(10);
        let head = verify_chain(&events).expect("valid chain");
        assert_eq!(head.seq, 10);
        assert_eq!(head.hash, events[9].hash);
        assert_eq!(events[0].prev_hash, ChainHash::GENESIS);
    }

    #[test]
    fn an_empty_chain_verifies() {
        assert_eq!(verify_chain(&[]), Ok(ChainHead::EMPTY));
    }

    #[test]
    fn sealing_truncates_time_to_microseconds() {
        let events = chain(1);
        assert_eq!(events[0].occurred_at.nanosecond() % 1000, 0);
        assert_eq!(
            canonical_time(events[0].occurred_at),
            "2026-11-23T12:00:00.123456Z"
        );
    }

    #[test]
    fn a_changed_detail_is_detected_at_its_seq() {
        let mut events = chain(10);
        events[4].details = serde_json::json!({"n": 999});
        let err = verify_chain(&events).expect_err("tampering must be detected");
        assert_eq!(
            err,
            ChainBreak {
                seq: 5,
                kind: BreakKind::HashMismatch
            }
        );
    }

    #[test]
    fn every_single_changed_byte_of_the_canonical_fields_is_detected() {
        let events = chain(3);
        type Tampering = Box<dyn Fn(&mut AuditEvent)>;
        let tamperings: Vec<Tampering> = vec![
            Box::new(|e| e.action.push('x')),
            Box::new(|e| e.actor.id = Some("someone-else".into())),
            Box::new(|e| e.actor.kind = ActorKind::User),
            Box::new(|e| e.resource = None),
            Box::new(|e| e.outcome = Outcome::Failure),
            Box::new(|e| e.meta.ip = Some("127.0.0.2".into())),
            Box::new(|e| e.meta.user_agent = None),
            Box::new(|e| e.meta.request_id = Some("req-x".into())),
            Box::new(|e| e.occurred_at += time::Duration::microseconds(1)),
            Box::new(|e| e.hash.0[31] ^= 1),
        ];
        for tamper in tamperings {
            let mut copy = events.clone();
            tamper(&mut copy[1]);
            assert_eq!(
                verify_chain(&copy)
                    .expect_err("tampering must be detected")
                    .seq,
                2
            );
        }
    }

    #[test]
    fn a_changed_prev_hash_is_detected_at_its_seq() {
        let mut events = chain(5);
        events[3].prev_hash.0[0] ^= 0x80;
        assert_eq!(
            verify_chain(&events).expect_err("tampering must be detected"),
            ChainBreak {
                seq: 4,
                kind: BreakKind::PrevHashMismatch
            }
        );
    }

    #[test]
    fn a_deleted_event_is_detected_at_the_missing_seq() {
        let mut events = chain(10);
        events.remove(6); // seq 7
        assert_eq!(
            verify_chain(&events).expect_err("tampering must be detected"),
            ChainBreak {
                seq: 7,
                kind: BreakKind::SeqGap {
                    expected: 7,
                    found: 8
                }
            }
        );
    }

    #[test]
    fn two_swapped_events_are_detected_at_the_first_of_them() {
        let mut events = chain(10);
        // Swap the contents of seq 3 and seq 4 while the rows keep their seq numbers.
        let (a, b) = (events[2].clone(), events[3].clone());
        events[2] = AuditEvent { seq: 3, ..b };
        events[3] = AuditEvent { seq: 4, ..a };
        assert_eq!(
            verify_chain(&events)
                .expect_err("tampering must be detected")
                .seq,
            3
        );
    }

    #[test]
    fn a_recomputed_hash_without_relinking_is_detected_at_the_next_seq() {
        let mut events = chain(6);
        events[2].action = "forged".into();
        events[2].hash = events[2].compute_hash();
        assert_eq!(
            verify_chain(&events).expect_err("tampering must be detected"),
            ChainBreak {
                seq: 4,
                kind: BreakKind::PrevHashMismatch
            }
        );
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let base = chain(1).remove(0);
        let mut a = base.clone();
        a.action = "ab".into();
        a.resource = Some("c".into());
        let mut b = base;
        b.action = "a".into();
        b.resource = Some("bc".into());
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let mut none = a.clone();
        none.resource = None;
        let mut empty = a;
        empty.resource = Some(String::new());
        assert_ne!(none.canonical_bytes(), empty.canonical_bytes());
    }

    #[test]
    fn sensitive_details_are_redacted_at_any_depth() {
        let draft = AuditDraft::new(
            Actor::anonymous(),
            crate::audit_action::AuditAction::AuthLogin,
            Outcome::Success,
            RequestMeta::default(),
        )
        .detail("password", "hunter2hunter2")
        .detail(
            "nested",
            serde_json::json!({"api_key": "AKIA123", "list": [{"Secret": "s"}], "ok": 1}),
        )
        .detail("label", "main");
        let text = serde_json::Value::Object(draft.details().clone()).to_string();
        for secret in ["hunter2", "AKIA123", "\"s\""] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("main"));
        assert!(text.contains("\"ok\":1"));
    }

    #[test]
    fn heads_round_trip_through_their_printed_form() {
        let head = chain(3)[2].head();
        assert_eq!(ChainHead::parse(&head.to_string()), Some(head));
        for bad in ["", "3", "0:00", "x:ab", &format!("3:{}", "ab".repeat(31))] {
            assert_eq!(ChainHead::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = chain(1)[0].hash;
        assert_eq!(ChainHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ChainHash::from_hex("zz"), None);
        assert_eq!(ChainHash::from_hex("abcd"), None);
    }
}
