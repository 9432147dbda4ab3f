//! `EventTypeService`: the tenant's event-type catalog. Changes go to the in-process catalog
//! (for `PublishEvent`) and to the dispatchers (for events published on NATS).

use chrono::Utc;
use hookd_core::access::Permission;
use hookd_core::{
    InvalidField,
    catalog::{EventTypeDef, EventTypeSpec},
};
use hookd_proto::{
    convert::{event_type_spec_from_proto, event_type_to_proto},
    v1::{self, event_type_service_server::EventTypeService},
};
use hookd_storage::Store;
use tonic::{Request, Response, Status};

use crate::shared::Shared;
use crate::{
    ControlError,
    auth::require,
    catalog::Catalog,
    changes::{Change, Changes},
};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;
const UPDATABLE: &str = "description, schema, example";

pub struct EventTypeApi {
    store: Store,
    changes: Changes,
    catalog: Catalog,
}

impl EventTypeApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            store: shared.store.clone(),
            changes: shared.changes.clone(),
            catalog: shared.catalog.clone(),
        }
    }

    async fn load(&self, tenant: &str, name: &str) -> Result<EventTypeDef, ControlError> {
        if name.is_empty() {
            return Err(InvalidField::new("name", "must not be empty").into());
        }
        self.store
            .get_event_type(tenant, name)
            .await?
            .ok_or_else(|| ControlError::NotFound { what: "event type", id: name.to_owned() })
    }

    async fn announce(&self, tenant: &str, def: &EventTypeDef) {
        self.catalog.put(tenant, def);
        self.changes
            .publish(Change::EventTypeUpserted {
                tenant: tenant.to_owned(),
                def: Box::new(def.clone()),
            })
            .await;
    }
}

fn spec_of(t: Option<v1::EventType>) -> Result<EventTypeSpec, ControlError> {
    let t = t.ok_or_else(|| InvalidField::new("event_type", "is required"))?;
    Ok(event_type_spec_from_proto(t)?)
}

#[tonic::async_trait]
impl EventTypeService for EventTypeApi {
    #[tracing::instrument(skip_all, fields(event_type))]
    async fn create_event_type(
        &self,
        request: Request<v1::CreateEventTypeRequest>,
    ) -> Result<Response<v1::CreateEventTypeResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        caller.require_whole_tenant("changes to the event-type catalog")?;
        let tenant = caller.tenant.as_str();
        let spec =
            spec_of(request.into_inner().event_type)?.validate().map_err(ControlError::from)?;
        tracing::Span::current().record("event_type", spec.name.as_str());
        let now = Utc::now();
        let def = EventTypeDef { spec, created_at: now, updated_at: now, rejected: 0 };
        self.store.create_event_type(tenant, &def).await.map_err(ControlError::from)?;
        tracing::info!("event type created");
        self.announce(tenant, &def).await;
        Ok(Response::new(v1::CreateEventTypeResponse {
            event_type: Some(event_type_to_proto(&def)),
        }))
    }

    #[tracing::instrument(skip_all, fields(event_type = %request.get_ref().name))]
    async fn get_event_type(
        &self,
        request: Request<v1::GetEventTypeRequest>,
    ) -> Result<Response<v1::GetEventTypeResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        let tenant = caller.tenant.as_str();
        let def = self.load(tenant, request.get_ref().name.trim()).await?;
        Ok(Response::new(v1::GetEventTypeResponse { event_type: Some(event_type_to_proto(&def)) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_event_types(
        &self,
        request: Request<v1::ListEventTypesRequest>,
    ) -> Result<Response<v1::ListEventTypesResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let limit = u64::from(match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        });
        let after = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let mut page = self
            .store
            .list_event_types(tenant, after, limit + 1)
            .await
            .map_err(ControlError::from)?;
        let next_page_token =
            crate::webhooks::finish_page(&mut page, limit, |last| last.spec.name.to_string());
        Ok(Response::new(v1::ListEventTypesResponse {
            event_types: page.iter().map(event_type_to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(event_type))]
    async fn update_event_type(
        &self,
        request: Request<v1::UpdateEventTypeRequest>,
    ) -> Result<Response<v1::UpdateEventTypeResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        caller.require_whole_tenant("changes to the event-type catalog")?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let changes = spec_of(r.event_type)?;
        tracing::Span::current().record("event_type", changes.name.as_str());
        let paths = crate::webhooks::mask_paths(r.update_mask, UPDATABLE)?;
        let mut def = self.load(tenant, changes.name.as_str()).await?;
        let mut spec = def.spec.clone();
        for path in &paths {
            match path.as_str() {
                "description" => spec.description.clone_from(&changes.description),
                "schema" => spec.schema.clone_from(&changes.schema),
                "example" => spec.example.clone_from(&changes.example),
                other => return Err(crate::webhooks::unknown_path(other, UPDATABLE).into()),
            }
        }
        def.spec = spec.validate().map_err(ControlError::from)?;
        def.updated_at = Utc::now();
        if !self.store.update_event_type(tenant, &def).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound {
                what: "event type",
                id: def.spec.name.to_string(),
            }
            .into());
        }
        tracing::info!("event type updated");
        self.announce(tenant, &def).await;
        Ok(Response::new(v1::UpdateEventTypeResponse {
            event_type: Some(event_type_to_proto(&def)),
        }))
    }

    #[tracing::instrument(skip_all, fields(event_type = %request.get_ref().name))]
    async fn delete_event_type(
        &self,
        request: Request<v1::DeleteEventTypeRequest>,
    ) -> Result<Response<v1::DeleteEventTypeResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        caller.require_whole_tenant("changes to the event-type catalog")?;
        let tenant = caller.tenant.as_str();
        let name = request.into_inner().name.trim().to_owned();
        if name.is_empty() {
            return Err(ControlError::from(InvalidField::new("name", "must not be empty")).into());
        }
        let users =
            self.store.webhooks_subscribed_to(tenant, &name).await.map_err(ControlError::from)?;
        if !users.is_empty() {
            let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
            return Err(ControlError::FailedPrecondition(format!(
                "event type {name:?} is subscribed to by webhooks {}; change them first",
                ids.join(", ")
            ))
            .into());
        }
        if !self.store.delete_event_type(tenant, &name).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "event type", id: name }.into());
        }
        tracing::info!("event type deleted");
        self.catalog.remove(tenant, &name);
        self.changes.publish(Change::EventTypeDeleted { tenant: tenant.to_owned(), name }).await;
        Ok(Response::new(v1::DeleteEventTypeResponse {}))
    }
}
