//! `AccessService`: the caller's tenant's roles and API tokens. Every call needs
//! `tenant.admin` except `WhoAmI`. After each change the token table is reloaded, so the
//! change holds on this control plane before the call returns.

use std::sync::Arc;

use chrono::Utc;
use hookd_core::{
    InvalidField,
    access::{
        OWNER_ROLE, Permission, VIEWER_ROLE, builtin_role, parse_permissions, validate_role_name,
        validate_token_name,
    },
    portal::{DEFAULT_LINK_TTL_SECS, MAX_LINK_TTL_SECS, PortalClaims, PortalKeys},
};
use hookd_proto::{
    convert::timestamp,
    v1::{self, access_service_server::AccessService},
};
use hookd_storage::{ApiTokenRecord, RoleRecord, Store, access::RoleDeletion};
use tonic::{Request, Response, Status};

use crate::shared::Shared;
use crate::{
    ControlError,
    auth::{
        TokenTable, caller, generate_token, hash_hex, hash_token, last_four, new_token_id, require,
    },
    changes::{Changes, peers::Hint},
};

pub struct AccessApi {
    store: Store,
    table: TokenTable,
    changes: Changes,
    /// Signs portal links; with the console's public URL they start with, `None` while the
    /// console is off.
    portal: Option<(Arc<PortalKeys>, String)>,
}

impl AccessApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            store: shared.store.clone(),
            table: shared.token_table.clone(),
            changes: shared.changes.clone(),
            portal: None,
        }
    }

    /// Portal links signed with `keys`, pointing at the console at `console_url`.
    pub fn with_portal(mut self, keys: Arc<PortalKeys>, console_url: String) -> Self {
        self.portal = Some((keys, console_url));
        self
    }

    /// Makes a change visible to the interceptors at once, here and on the other control
    /// planes. The change is committed; should a reload fail, the periodic one picks it up.
    async fn reload(&self, tenant: &str) {
        if let Err(error) = self.table.reload(&self.store).await {
            tracing::warn!(%error, "cannot reload the token table after a change");
        }
        self.changes.tell_peers(Hint::access(tenant)).await;
    }
}

fn names(permissions: &[Permission]) -> Vec<String> {
    permissions.iter().map(|p| p.as_str().to_owned()).collect()
}

fn builtin_to_proto(name: &str) -> v1::Role {
    v1::Role {
        name: name.to_owned(),
        permissions: names(builtin_role(name).unwrap_or_default()),
        builtin: true,
    }
}

fn role_to_proto(r: &RoleRecord) -> v1::Role {
    v1::Role { name: r.name.clone(), permissions: names(&r.permissions), builtin: false }
}

fn token_to_proto(t: &ApiTokenRecord) -> v1::ApiToken {
    v1::ApiToken {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.clone(),
        last_four: t.last_four.clone(),
        created_at: Some(timestamp(t.created_at)),
    }
}

fn builtin_unchangeable(name: &str) -> ControlError {
    ControlError::FailedPrecondition(format!("role {name} is built in and cannot be changed"))
}

fn role_not_found(name: &str) -> ControlError {
    ControlError::NotFound { what: "role", id: name.to_owned() }
}

/// Creates the bootstrap owner token of `tenant` with exactly `token`, or keeps it if it
/// exists. A token of that value in another tenant is a configuration error.
pub async fn ensure_bootstrap_token(
    store: &Store,
    tenant: &str,
    token: &str,
) -> Result<(), ControlError> {
    let hash = hash_hex(&hash_token(token));
    match store.find_api_token_by_hash(&hash).await? {
        Some(existing) if existing.tenant == tenant => {
            tracing::debug!(tenant, token_id = %existing.id, "bootstrap token already present");
            Ok(())
        }
        Some(_) => Err(ControlError::Config {
            setting: "bootstrap_tokens",
            reason: format!("the token of {tenant:?} already belongs to another tenant"),
        }),
        None => {
            let record = ApiTokenRecord {
                id: new_token_id(),
                tenant: tenant.to_owned(),
                name: "bootstrap".to_owned(),
                role: OWNER_ROLE.to_owned(),
                hash,
                last_four: last_four(token),
                created_at: Utc::now(),
            };
            store.create_api_token(&record).await?;
            tracing::info!(tenant, token_id = %record.id, "bootstrap owner token created");
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    #[tracing::instrument(skip_all, fields(role = %request.get_ref().role.as_ref().map(|r| r.name.as_str()).unwrap_or_default()))]
    async fn create_role(
        &self,
        request: Request<v1::CreateRoleRequest>,
    ) -> Result<Response<v1::CreateRoleResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let wire = request
            .into_inner()
            .role
            .ok_or_else(|| ControlError::from(InvalidField::new("role", "is required")))?;
        validate_role_name(&wire.name).map_err(ControlError::from)?;
        if builtin_role(&wire.name).is_some() {
            return Err(ControlError::AlreadyExists { what: "role", name: wire.name }.into());
        }
        let permissions = parse_permissions(&wire.permissions).map_err(ControlError::from)?;
        let now = Utc::now();
        let role = RoleRecord { name: wire.name, permissions, created_at: now, updated_at: now };
        self.store.create_role(&caller.tenant, &role).await.map_err(ControlError::from)?;
        tracing::info!(tenant = %caller.tenant, "role created");
        Ok(Response::new(v1::CreateRoleResponse { role: Some(role_to_proto(&role)) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_roles(
        &self,
        request: Request<v1::ListRolesRequest>,
    ) -> Result<Response<v1::ListRolesResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let custom = self.store.list_roles(&caller.tenant).await.map_err(ControlError::from)?;
        let roles = [OWNER_ROLE, VIEWER_ROLE]
            .into_iter()
            .map(builtin_to_proto)
            .chain(custom.iter().map(role_to_proto))
            .collect();
        Ok(Response::new(v1::ListRolesResponse { roles }))
    }

    #[tracing::instrument(skip_all, fields(role = %request.get_ref().name))]
    async fn update_role(
        &self,
        request: Request<v1::UpdateRoleRequest>,
    ) -> Result<Response<v1::UpdateRoleResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let r = request.into_inner();
        if builtin_role(&r.name).is_some() {
            return Err(builtin_unchangeable(&r.name).into());
        }
        let permissions = parse_permissions(&r.permissions).map_err(ControlError::from)?;
        let tenant = caller.tenant.as_str();
        if !self
            .store
            .update_role(tenant, &r.name, &permissions, Utc::now())
            .await
            .map_err(ControlError::from)?
        {
            return Err(role_not_found(&r.name).into());
        }
        self.reload(tenant).await;
        tracing::info!(%tenant, "role updated");
        let role = self
            .store
            .get_role(tenant, &r.name)
            .await
            .map_err(ControlError::from)?
            .ok_or_else(|| role_not_found(&r.name))?;
        Ok(Response::new(v1::UpdateRoleResponse { role: Some(role_to_proto(&role)) }))
    }

    #[tracing::instrument(skip_all, fields(role = %request.get_ref().name))]
    async fn delete_role(
        &self,
        request: Request<v1::DeleteRoleRequest>,
    ) -> Result<Response<v1::DeleteRoleResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let name = request.into_inner().name;
        if builtin_role(&name).is_some() {
            return Err(builtin_unchangeable(&name).into());
        }
        match self.store.delete_role(&caller.tenant, &name).await.map_err(ControlError::from)? {
            RoleDeletion::Deleted => {
                tracing::info!(tenant = %caller.tenant, "role deleted");
                Ok(Response::new(v1::DeleteRoleResponse {}))
            }
            RoleDeletion::NotFound => Err(role_not_found(&name).into()),
            RoleDeletion::InUse(n) => Err(ControlError::FailedPrecondition(format!(
                "role {name} is held by {n} token(s); revoke them first"
            ))
            .into()),
        }
    }

    #[tracing::instrument(skip_all, fields(role = %request.get_ref().role, token_id))]
    async fn create_token(
        &self,
        request: Request<v1::CreateTokenRequest>,
    ) -> Result<Response<v1::CreateTokenResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let r = request.into_inner();
        let tenant = caller.tenant.as_str();
        let name = r.name.trim().to_owned();
        validate_token_name(&name).map_err(ControlError::from)?;
        let role_exists = builtin_role(&r.role).is_some()
            || self.store.get_role(tenant, &r.role).await.map_err(ControlError::from)?.is_some();
        if !role_exists {
            return Err(ControlError::from(InvalidField::new(
                "role",
                format!("the tenant has no role {:?}", r.role),
            ))
            .into());
        }
        let secret = generate_token();
        let record = ApiTokenRecord {
            id: new_token_id(),
            tenant: tenant.to_owned(),
            name,
            role: r.role,
            hash: hash_hex(&hash_token(&secret)),
            last_four: last_four(&secret),
            created_at: Utc::now(),
        };
        tracing::Span::current().record("token_id", record.id.as_str());
        self.store.create_api_token(&record).await.map_err(ControlError::from)?;
        self.reload(tenant).await;
        tracing::info!(%tenant, by = %caller.token_id, "token created");
        Ok(Response::new(v1::CreateTokenResponse { token: Some(token_to_proto(&record)), secret }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tokens(
        &self,
        request: Request<v1::ListTokensRequest>,
    ) -> Result<Response<v1::ListTokensResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let tokens =
            self.store.list_api_tokens(&caller.tenant).await.map_err(ControlError::from)?;
        Ok(Response::new(v1::ListTokensResponse {
            tokens: tokens.iter().map(token_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(token_id = %request.get_ref().id))]
    async fn revoke_token(
        &self,
        request: Request<v1::RevokeTokenRequest>,
    ) -> Result<Response<v1::RevokeTokenResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let id = request.into_inner().id;
        if !self.store.delete_api_token(&caller.tenant, &id).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "token", id }.into());
        }
        self.reload(&caller.tenant).await;
        tracing::info!(tenant = %caller.tenant, by = %caller.token_id, "token revoked");
        Ok(Response::new(v1::RevokeTokenResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(v1::WhoAmIResponse {
            tenant: caller.tenant.clone(),
            token_id: caller.token_id.clone(),
            role: caller.role.clone(),
            permissions: names(&caller.permissions),
            app: caller.app.clone().unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(role = %request.get_ref().role, app = %request.get_ref().app))]
    async fn create_portal_link(
        &self,
        request: Request<v1::CreatePortalLinkRequest>,
    ) -> Result<Response<v1::CreatePortalLinkResponse>, Status> {
        let caller = require(&request, Permission::TenantAdmin)?;
        let r = request.into_inner();
        let Some((keys, console_url)) = &self.portal else {
            return Err(ControlError::FailedPrecondition(
                "the web console is off (console_listen is empty), so there is nothing to link to"
                    .to_owned(),
            )
            .into());
        };
        let tenant = caller.tenant.as_str();
        let role_exists = builtin_role(&r.role).is_some()
            || self.store.get_role(tenant, &r.role).await.map_err(ControlError::from)?.is_some();
        if !role_exists {
            return Err(ControlError::from(InvalidField::new(
                "role",
                format!("the tenant has no role {:?}", r.role),
            ))
            .into());
        }
        let app = r.app.trim();
        hookd_core::webhook::validate_app(app).map_err(ControlError::from)?;
        let ttl = match u64::from(r.ttl_seconds) {
            0 => DEFAULT_LINK_TTL_SECS,
            secs if secs > MAX_LINK_TTL_SECS => {
                return Err(ControlError::from(InvalidField::new(
                    "ttl_seconds",
                    format!("must be at most {MAX_LINK_TTL_SECS} (7 days)"),
                ))
                .into());
            }
            secs => secs,
        };
        let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(0));
        let claims = PortalClaims::new(tenant, &r.role, app, expires_at.timestamp());
        let link = keys.sign_link(&claims);
        tracing::info!(%tenant, by = %caller.token_id, nonce = %claims.nonce, ttl_secs = ttl, "portal link created");
        Ok(Response::new(v1::CreatePortalLinkResponse {
            url: format!("{}/portal?link={link}", console_url.trim_end_matches('/')),
            expires_at: Some(timestamp(expires_at)),
        }))
    }
}
