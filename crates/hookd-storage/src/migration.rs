//! Versioned schema migrations, applied by [`crate::Store::connect`].
//!
//! Applied migrations are recorded in `seaql_migrations`; never edit a released migration,
//! add a new `mNNNN_*` module instead.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m0001_initial;
mod m0002_definitions;
mod m0003_access;
mod m0004_health;
mod m0005_health_and_history;

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
        ]
    }
}
