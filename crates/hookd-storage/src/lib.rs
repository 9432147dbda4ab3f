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

pub use deliveries::{DeliveryCursor, DeliveryFilter, DeliveryRecord, RecordSummary};

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
/// SQLite reads the database through a memory map of up to this many bytes: a page another
/// connection's cache lacks is read from the OS's page cache without a system call or a copy
/// (results land in random places of the delivery indexes, so most pages a write touches are
/// not in the connection's own cache).
const SQLITE_MMAP_BYTES: u64 = 1 << 30;
/// Each connection's page cache, in KiB (SQLite's default is 2 000).
const SQLITE_CACHE_KIB: u32 = 16 * 1024;
/// WAL pages written before a checkpoint copies them into the database (SQLite's default is
/// 1 000): a page written by many transactions meanwhile is copied once.
const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 8_000;
/// Postgres connections per control plane unless configured: a server's default
/// `max_connections` (100) then serves several replicas with room for operators.
const POSTGRES_CONNECTIONS: u32 = 10;
/// How long a query waits for a pooled connection, or a new connection for the server.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the store's connection pool is sized; the defaults suit each backend.
#[derive(Debug, Clone, Default)]
pub struct PoolOptions {
    /// Most open connections; 0 for the backend's default (Postgres 10, a SQLite file 4; an
    /// in-memory SQLite database always has exactly one).
    pub max_connections: u32,
    /// How long a query waits for a free connection, and a new connection for the server,
    /// before it fails; `None` for 10 s.
    pub acquire_timeout: Option<Duration>,
}

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
    /// Connects with the default pool and runs pending migrations; see [`Store::connect_with`].
    pub async fn connect(database_url: &str) -> Result<Store, StorageError> {
        Store::connect_with(database_url, &PoolOptions::default()).await
    }

    /// Connects and runs pending migrations. `database_url` chooses the backend:
    /// `postgres://user:password@host:port/database` (or `postgresql://`), or SQLite
    /// (`sqlite://path?mode=rwc`, `sqlite::memory:`); see [`open`] for each one's settings.
    pub async fn connect_with(
        database_url: &str,
        pool: &PoolOptions,
    ) -> Result<Store, StorageError> {
        let db = open(database_url, pool).await?;
        migration::apply(&db).await?;
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

/// Applies the pending migrations to the database at `database_url` and disconnects; the
/// names of the migrations applied now (none when the schema was current).
pub async fn migrate(database_url: &str, pool: &PoolOptions) -> Result<Vec<String>, StorageError> {
    let db = open(database_url, pool).await?;
    let applied = migration::apply(&db).await?;
    db.close().await?;
    Ok(applied)
}

/// Whether `database_url` names a Postgres database.
pub fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}

/// A connection pool for `database_url`, without migrating.
///
/// SQLite: creates the file if missing, enables WAL and a busy timeout; an in-memory database
/// uses one connection that is never recycled, since every new connection would see a
/// different, empty database. Postgres: `pool.max_connections` connections (10 by default),
/// each named `hookd` in `pg_stat_activity`.
async fn open(database_url: &str, pool: &PoolOptions) -> Result<DatabaseConnection, StorageError> {
    let mut options = ConnectOptions::new(database_url);
    // Statement logging goes through `log` at info level, far too loud for every query.
    options.sqlx_logging(false);
    let acquire_timeout = pool.acquire_timeout.unwrap_or(DEFAULT_ACQUIRE_TIMEOUT);
    options.acquire_timeout(acquire_timeout).connect_timeout(acquire_timeout);
    let configured = (pool.max_connections > 0).then_some(pool.max_connections);
    if database_url.starts_with("sqlite:") {
        let memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
        if memory {
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None::<Duration>)
                .max_lifetime(None::<Duration>);
        } else {
            options.max_connections(configured.unwrap_or(SQLITE_FILE_CONNECTIONS));
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
                    .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                    .pragma("wal_autocheckpoint", SQLITE_AUTOCHECKPOINT_PAGES.to_string())
            }
        });
    } else if is_postgres(database_url) {
        options
            .max_connections(configured.unwrap_or(POSTGRES_CONNECTIONS))
            .set_application_name("hookd");
    } else {
        return Err(StorageError::OutOfRange {
            field: "database_url",
            reason: "must start with postgres://, postgresql:// or sqlite:".to_owned(),
        });
    }
    Ok(Database::connect(options).await?)
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
