//! hookd persistence for the control plane: sea-orm entities, versioned migrations and the
//! repository functions on [`Store`]. The same code runs on SQLite (default) and Postgres:
//! every statement is built with sea-orm / sea-query, never written as backend SQL.

pub mod access;
pub mod credentials;
pub mod crypto;
pub mod deliveries;
pub mod entity;
pub mod event_types;
pub mod health;
pub mod history;
pub mod migration;
pub mod webhooks;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr, SqlErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use deliveries::{
    AttemptRecord, DeliveryCursor, DeliveryFilter, DeliveryRecord, RecordSummary, StoredAttempt,
};

pub use access::{ApiTokenRecord, RoleRecord};
pub use credentials::TokenState;
pub use crypto::{Cipher, KeyError};
pub use health::{SystemDeactivation, WebhookHealth};
pub use history::Totals;
pub use migration::Migrator;
pub use webhooks::WebhookFilter;

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite serialises writers anyway; a few connections let reads proceed during a write.
const SQLITE_FILE_CONNECTIONS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A webhook or credential name already used in the tenant.
    #[error("name {name:?} is already taken")]
    NameTaken { name: String },
    /// A resource keyed by its name (an event type) exists already.
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("value out of range for {field}: {reason}")]
    OutOfRange { field: &'static str, reason: String },
}

/// The control plane's handle on its database. Cheap to clone: clones share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Seals secrets before they are written; `None` stores them as they are (unit tests).
    cipher: Option<crypto::Cipher>,
}

impl Store {
    /// Connects and runs pending migrations. For SQLite URLs (`sqlite://path?mode=rwc` or
    /// `sqlite::memory:`) creates the file if missing, enables WAL and a busy timeout; an
    /// in-memory database uses one connection that is never recycled, since every new
    /// connection would see a different, empty database.
    pub async fn connect(database_url: &str) -> Result<Store, StorageError> {
        let mut options = ConnectOptions::new(database_url);
        // Statement logging goes through `log` at info level, far too loud for every query.
        options.sqlx_logging(false);
        if database_url.starts_with("sqlite:") {
            let memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
            if memory {
                options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None::<Duration>)
                    .max_lifetime(None::<Duration>);
            } else {
                options.max_connections(SQLITE_FILE_CONNECTIONS);
            }
            options.map_sqlx_sqlite_opts(move |opts| {
                let opts = opts.busy_timeout(SQLITE_BUSY_TIMEOUT);
                if memory {
                    opts
                } else {
                    // NORMAL is durable across application crashes in WAL mode and avoids
                    // an fsync per commit.
                    opts.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                }
            });
        }
        let db = Database::connect(options).await?;
        Migrator::up(&db, None).await?;
        Ok(Store { db, cipher: None })
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        Ok(self.db.ping().await?)
    }

    /// Starts a transaction that writes. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so waiting for another writer goes through the busy timeout
    /// instead of failing when a read snapshot cannot be upgraded.
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }
}

/// Postgres keeps microseconds; truncating everywhere makes both backends return exactly
/// what was stored and keeps SQLite's text timestamps comparable with cursors.
fn db_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests;

impl Store {
    /// Seals secrets with `cipher` from now on (and opens values sealed under its keys).
    pub fn with_cipher(mut self, cipher: crypto::Cipher) -> Self {
        self.cipher = Some(cipher);
        self
    }

    pub(crate) fn seal(&self, aad: &str, plaintext: String) -> String {
        match &self.cipher {
            Some(cipher) => cipher.seal(aad, &plaintext),
            None => plaintext,
        }
    }

    pub(crate) fn open(&self, aad: &str, stored: &str) -> Result<String, StorageError> {
        crypto::open_with(self.cipher.as_ref(), aad, stored)
    }

    /// Seals every secret that is stored in clear (written before encryption was enabled) or
    /// under an older key, so a rotated-out key can be removed from the configuration.
    /// Returns how many rows were rewritten; a no-op without a cipher.
    pub async fn reseal_secrets(&self) -> Result<u64, StorageError> {
        if self.cipher.is_none() {
            return Ok(0);
        }
        Ok(self.reseal_webhooks().await? + self.reseal_credentials().await?)
    }

    /// Whether `stored` needs sealing again: not sealed at all, or sealed under an older key.
    pub(crate) fn needs_reseal(&self, stored: &str) -> bool {
        self.cipher.as_ref().is_some_and(|c| !c.is_current(stored))
    }
}
