//! Every port in one place: the small traits the server implements with real adapters
//! (database, KMS, exchanges, clock, hashing). Each is defined beside the rules that use it;
//! this module only re-exports them, and nothing in the crate imports through it.

pub use crate::account::{AccountStore, LoginThrottle, PasswordHasher, SessionRevoker};
pub use crate::alerts::SecurityAlerts;
pub use crate::audit::AuditLog;
pub use crate::audit::checkpoints::{CheckpointJournal, CheckpointStore, ReportKeyStore};
pub use crate::audit::jobs::AuditJobRunner;
pub use crate::clock::{Clock, SharedClock, SystemClock};
pub use crate::exchange::Exchange;
pub use crate::keys::{KeyStore, RewrapRunner};
pub use crate::stepup::FactorStore;
pub use crate::store_error::StoreError;
pub use crate::trading::ports::{
    AgentStore, BlockedRangeStore, CaseNotifier, CaseStore, ControlStore, OrderStore, TradingStore,
};
pub use crate::vault::{Kms, RotationRecord};
