//! The event-type catalog as `PublishEvent` needs it: compiled schemas per (tenant, type),
//! loaded at start and changed by `EventTypeService` in the same process (and by the hints of
//! other control planes, see `changes/peers.rs`), so validating an event costs a hash lookup,
//! not a query and a schema compilation.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use hookd_core::catalog::{EventTypeDef, Schema};
use hookd_storage::{StorageError, Store};

/// (tenant, event type) → the compiled schema of that type.
type Schemas = HashMap<(String, String), Arc<Schema>>;

#[derive(Clone, Default)]
pub struct Catalog {
    schemas: Arc<RwLock<Schemas>>,
}

impl Catalog {
    pub async fn load(store: &Store) -> Result<Self, StorageError> {
        let catalog = Self::default();
        catalog.reload(store).await?;
        Ok(catalog)
    }

    /// Replaces every schema with what the database holds now.
    pub async fn reload(&self, store: &Store) -> Result<(), StorageError> {
        let fresh = Self::default();
        for (tenant, def) in store.all_event_types().await? {
            fresh.put(&tenant, &def);
        }
        let schemas = std::mem::take(
            &mut *fresh.schemas.write().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        *self.schemas.write().unwrap_or_else(std::sync::PoisonError::into_inner) = schemas;
        Ok(())
    }

    /// Records the type's current schema (or its lack of one).
    pub fn put(&self, tenant: &str, def: &EventTypeDef) {
        let key = (tenant.to_owned(), def.spec.name.to_string());
        let compiled = def.spec.schema.as_ref().and_then(|s| match Schema::compile(s) {
            Ok(schema) => Some(Arc::new(schema)),
            Err(e) => {
                // Schemas are checked when stored; one that no longer compiles (a newer
                // validator, a hand-edited row) must not block every event of its type.
                tracing::warn!(tenant, event_type = %def.spec.name, error = %e, "stored schema does not compile; not enforced");
                None
            }
        });
        let mut schemas = self.schemas.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match compiled {
            Some(schema) => schemas.insert(key, schema),
            None => schemas.remove(&key),
        };
    }

    pub fn remove(&self, tenant: &str, name: &str) {
        self.schemas
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(tenant.to_owned(), name.to_owned()));
    }

    /// The schema events of this type must satisfy, if any.
    pub fn schema(&self, tenant: &str, name: &str) -> Option<Arc<Schema>> {
        self.schemas
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }
}
