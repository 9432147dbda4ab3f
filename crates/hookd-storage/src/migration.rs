//! Versioned schema migrations, applied by [`crate::Store::connect`] and [`crate::migrate`].
//!
//! Applied migrations are recorded in `seaql_migrations`; never edit a released migration,
//! add a new `mNNNN_*` module instead.
//!
//! On Postgres several control planes may start at once: the migrations run in one
//! transaction that first takes an advisory lock, so one replica migrates while the others
//! wait, then find nothing pending. Postgres DDL is transactional, so a failed migration
//! leaves the schema as it was.

use sea_orm::sea_query::{Func, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m0001_initial;
mod m0002_definitions;
mod m0003_access;
mod m0004_health;
mod m0005_health_and_history;
mod m0006_delivery_controls;

/// Every migration of the hookd schema, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_definitions::Migration),
            Box::new(m0003_access::Migration),
            Box::new(m0004_health::Migration),
            Box::new(m0005_health_and_history::Migration),
            Box::new(m0006_delivery_controls::Migration),
        ]
    }
}

/// The advisory lock key that serialises migrations on Postgres ("hookd" in ASCII).
const MIGRATION_LOCK: i64 = 0x68_6f6f_6b64;

/// Applies the pending migrations; the names of those it applied, oldest first.
pub(crate) async fn apply(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        let pending = pending_names(db).await?;
        Migrator::up(db, None).await?;
        return Ok(pending);
    }
    let txn = db.begin().await?;
    // Held until commit; every statement after it sees what an earlier holder committed.
    let lock =
        Query::select().expr(Func::cust("pg_advisory_xact_lock").arg(MIGRATION_LOCK)).to_owned();
    txn.query_one(&lock).await?;
    let pending = pending_names(&txn).await?;
    // Each migration runs in a savepoint of this transaction.
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(pending)
}

async fn pending_names(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    // The table of applied migrations must exist before it can be read.
    Migrator::install(db).await?;
    let pending = Migrator::get_pending_migrations(db).await?;
    Ok(pending.iter().map(|m| m.name().to_owned()).collect())
}

/// The names of the migrations applied to `db`, oldest first.
pub async fn applied(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let applied = Migrator::get_applied_migrations(db).await?;
    Ok(applied.iter().map(|m| m.name().to_owned()).collect())
}

/// The names of every migration this version knows, oldest first.
pub fn names() -> Vec<String> {
    Migrator::migrations().iter().map(|m| m.name().to_owned()).collect()
}
