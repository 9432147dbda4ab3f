//! The event-type catalog: each tenant's event types with description, schema and example,
//! and the count of events refused by the schema.

use hookd_core::EventType;
use hookd_core::catalog::{EventTypeDef, EventTypeSpec};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::entity::event_type;
use crate::{StorageError, Store, db_time, is_unique_violation};

impl Store {
    /// Catalogues a new event type with `rejected` as given. A type of that name in
    /// `tenant` is [`StorageError::AlreadyExists`].
    pub async fn create_event_type(
        &self,
        tenant: &str,
        def: &EventTypeDef,
    ) -> Result<(), StorageError> {
        let name = def.spec.name.as_str();
        let row = event_type::ActiveModel {
            tenant: Set(tenant.to_owned()),
            name: Set(name.to_owned()),
            description: Set(def.spec.description.clone()),
            schema: Set(def.spec.schema.as_ref().map(ToString::to_string)),
            example: Set(def.spec.example.as_ref().map(ToString::to_string)),
            rejected: Set(i64::try_from(def.rejected).unwrap_or(i64::MAX)),
            created_at: Set(db_time(def.created_at)),
            updated_at: Set(db_time(def.updated_at)),
        };
        event_type::Entity::insert(row).exec_without_returning(&self.db).await.map_err(|e| {
            if is_unique_violation(&e) {
                StorageError::AlreadyExists { what: "event type", name: name.to_owned() }
            } else {
                StorageError::Database(e)
            }
        })?;
        Ok(())
    }

    pub async fn get_event_type(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<EventTypeDef>, StorageError> {
        event_type::Entity::find_by_id((tenant.to_owned(), name.to_owned()))
            .one(&self.db)
            .await?
            .map(to_def)
            .transpose()
    }

    /// Ordered by name, names strictly greater than `after`.
    pub async fn list_event_types(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EventTypeDef>, StorageError> {
        let mut query = event_type::Entity::find().filter(event_type::Column::Tenant.eq(tenant));
        if let Some(after) = after {
            query = query.filter(event_type::Column::Name.gt(after));
        }
        query
            .order_by_asc(event_type::Column::Name)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_def)
            .collect()
    }

    /// Every event type of every tenant as (tenant, type), ordered by tenant and name, for
    /// the schema checks of the ingest path.
    pub async fn all_event_types(&self) -> Result<Vec<(String, EventTypeDef)>, StorageError> {
        event_type::Entity::find()
            .order_by_asc(event_type::Column::Tenant)
            .order_by_asc(event_type::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                let tenant = row.tenant.clone();
                Ok((tenant, to_def(row)?))
            })
            .collect()
    }

    /// Replaces description, schema, example and updated_at; `created_at` and `rejected`
    /// stay. `Ok(false)` if there is no such type.
    pub async fn update_event_type(
        &self,
        tenant: &str,
        def: &EventTypeDef,
    ) -> Result<bool, StorageError> {
        let spec = &def.spec;
        let result = event_type::Entity::update_many()
            .col_expr(event_type::Column::Description, spec.description.clone().into())
            .col_expr(
                event_type::Column::Schema,
                Expr::val(spec.schema.as_ref().map(ToString::to_string)),
            )
            .col_expr(
                event_type::Column::Example,
                Expr::val(spec.example.as_ref().map(ToString::to_string)),
            )
            .col_expr(event_type::Column::UpdatedAt, db_time(def.updated_at).into())
            .filter(event_type::Column::Tenant.eq(tenant))
            .filter(event_type::Column::Name.eq(spec.name.as_str()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// `Ok(false)` if it did not exist. Callers check [`Store::webhooks_subscribed_to`]
    /// first; the database keeps no reference.
    pub async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StorageError> {
        let result = event_type::Entity::delete_many()
            .filter(event_type::Column::Tenant.eq(tenant))
            .filter(event_type::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Whether `tenant` catalogued any event type (and so has its events checked).
    pub async fn has_catalog(&self, tenant: &str) -> Result<bool, StorageError> {
        let found: Option<String> = event_type::Entity::find()
            .select_only()
            .column(event_type::Column::Name)
            .filter(event_type::Column::Tenant.eq(tenant))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(found.is_some())
    }

    /// Adds (tenant, event type, count) to the rejected counts in one transaction; types not
    /// catalogued (perhaps deleted since) are ignored.
    pub async fn add_rejected(&self, counts: &[(String, String, u64)]) -> Result<(), StorageError> {
        let counts: Vec<_> = counts.iter().filter(|(_, _, n)| *n > 0).collect();
        if counts.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write().await?;
        for (tenant, name, n) in counts {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            event_type::Entity::update_many()
                .col_expr(
                    event_type::Column::Rejected,
                    Expr::col(event_type::Column::Rejected).add(n),
                )
                .filter(event_type::Column::Tenant.eq(tenant.as_str()))
                .filter(event_type::Column::Name.eq(name.as_str()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

fn to_def(row: event_type::Model) -> Result<EventTypeDef, StorageError> {
    let bad = |what: String| StorageError::Corrupt {
        table: "event_types",
        reason: format!("{}/{}: {what}", row.tenant, row.name),
    };
    let name = EventType::parse(&row.name).map_err(|e| bad(format!("invalid name: {e}")))?;
    let json = |text: &Option<String>, what: &str| {
        text.as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad(format!("{what} is not JSON: {e}")))
    };
    let schema = json(&row.schema, "schema")?;
    let example = json(&row.example, "example")?;
    let rejected =
        u64::try_from(row.rejected).map_err(|_| bad(format!("rejected is {}", row.rejected)))?;
    Ok(EventTypeDef {
        spec: EventTypeSpec { name, description: row.description, schema, example },
        created_at: row.created_at,
        updated_at: row.updated_at,
        rejected,
    })
}
