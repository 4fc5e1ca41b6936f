//! Fault tests: the real server binary killed with SIGKILL mid-write, its database, KMS and
//! exchange cut mid-request through a TCP fault proxy, and its database's disk filling up.
//! Run on SQLite by default and on PostgreSQL when `CRYPTOPULSE_TEST_PG_URL` is set (as the
//! API tests are); scripts/test.sh runs both.

mod disk_full;
mod hangups;
mod harness;
mod kill9;
mod outages;
mod proxy;
