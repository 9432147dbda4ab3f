//! `CredentialService`: OAuth2 credentials that webhooks reference. Secrets are write-only:
//! every read masks them.

use chrono::Utc;
use hookd_core::access::Permission;
use hookd_core::{
    CredentialId, InvalidField,
    credential::{Credential, CredentialSpec},
    endpoint::Secret,
};
use hookd_proto::{
    convert::{credential_spec_from_proto, credential_to_proto, timestamp},
    v1::{self, credential_service_server::CredentialService},
};
use hookd_storage::{Store, TokenState};
use tonic::{Request, Response, Status};

use crate::shared::Shared;
use crate::{ControlError, auth::require, oauth::Tokens, webhooks::page_size};

const UPDATABLE: &str =
    "name, token_url, method, client_id, client_secret, grant_type, code, scope, extra_params";

pub struct CredentialApi {
    store: Store,
    tokens: Tokens,
}

impl CredentialApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self { store: shared.store.clone(), tokens: shared.access_tokens.clone() }
    }

    async fn load(&self, tenant: &str, id: &str) -> Result<(Credential, TokenState), ControlError> {
        if id.is_empty() {
            return Err(InvalidField::new("id", "must not be empty").into());
        }
        self.store
            .get_credential(tenant, &CredentialId::from(id))
            .await?
            .ok_or_else(|| ControlError::NotFound { what: "credential", id: id.to_owned() })
    }
}

fn shown(c: &Credential, token: &TokenState) -> v1::Credential {
    let mut wire = credential_to_proto(c);
    wire.token_expires_at = token.access_token.as_ref().and(token.expires_at).map(timestamp);
    wire.last_error.clone_from(&token.last_error);
    wire
}

#[tonic::async_trait]
impl CredentialService for CredentialApi {
    #[tracing::instrument(skip_all, fields(credential_id))]
    async fn create_credential(
        &self,
        request: Request<v1::CreateCredentialRequest>,
    ) -> Result<Response<v1::CreateCredentialResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        caller.require_whole_tenant("OAuth2 credentials")?;
        let tenant = caller.tenant.as_str();
        let wire = request
            .into_inner()
            .credential
            .ok_or_else(|| ControlError::from(InvalidField::new("credential", "is required")))?;
        let spec = credential_spec_from_proto(wire)
            .and_then(CredentialSpec::validate)
            .map_err(ControlError::from)?;
        let now = Utc::now();
        let credential =
            Credential { id: CredentialId::generate(), spec, created_at: now, updated_at: now };
        tracing::Span::current().record("credential_id", credential.id.as_str());
        self.store.create_credential(tenant, &credential).await.map_err(ControlError::from)?;
        tracing::info!("credential created");
        Ok(Response::new(v1::CreateCredentialResponse {
            credential: Some(shown(&credential, &TokenState::default())),
        }))
    }

    #[tracing::instrument(skip_all, fields(credential_id = %request.get_ref().id))]
    async fn get_credential(
        &self,
        request: Request<v1::GetCredentialRequest>,
    ) -> Result<Response<v1::GetCredentialResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        caller.require_whole_tenant("OAuth2 credentials")?;
        let tenant = caller.tenant.as_str();
        let (credential, token) = self.load(tenant, &request.get_ref().id).await?;
        Ok(Response::new(v1::GetCredentialResponse {
            credential: Some(shown(&credential, &token)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_credentials(
        &self,
        request: Request<v1::ListCredentialsRequest>,
    ) -> Result<Response<v1::ListCredentialsResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        caller.require_whole_tenant("OAuth2 credentials")?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let after = match r.page_token.as_str() {
            "" => None,
            token if token.starts_with("cred_") => Some(CredentialId::from(token)),
            _ => return Err(ControlError::PageToken.into()),
        };
        let limit = page_size(r.page_size);
        let mut page = self
            .store
            .list_credentials(tenant, after.as_ref(), limit + 1)
            .await
            .map_err(ControlError::from)?;
        let next_page_token =
            crate::webhooks::finish_page(&mut page, limit, |(last, _)| last.id.to_string());
        Ok(Response::new(v1::ListCredentialsResponse {
            credentials: page.iter().map(|(c, t)| shown(c, t)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(credential_id))]
    async fn update_credential(
        &self,
        request: Request<v1::UpdateCredentialRequest>,
    ) -> Result<Response<v1::UpdateCredentialResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        caller.require_whole_tenant("OAuth2 credentials")?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let changes = r.credential.ok_or_else(|| {
            ControlError::from(InvalidField::new("credential", "must carry the id and new values"))
        })?;
        tracing::Span::current().record("credential_id", changes.id.as_str());
        let paths = crate::webhooks::mask_paths(r.update_mask, UPDATABLE)?;
        let (mut credential, _) = self.load(tenant, &changes.id).await?;
        let id = changes.id.clone();
        let new = credential_spec_from_proto(changes).map_err(ControlError::from)?;
        let mut spec = credential.spec.clone();
        for path in &paths {
            match path.as_str() {
                "name" => spec.name.clone_from(&new.name),
                "token_url" => spec.token_url.clone_from(&new.token_url),
                "method" => spec.method = new.method,
                "client_id" => spec.client_id.clone_from(&new.client_id),
                "client_secret" => spec.client_secret = new.client_secret.clone(),
                "grant_type" => spec.grant_type = new.grant_type,
                "code" => spec.code.clone_from(&new.code),
                "scope" => spec.scope.clone_from(&new.scope),
                "extra_params" => spec.extra_params.clone_from(&new.extra_params),
                other => return Err(crate::webhooks::unknown_path(other, UPDATABLE).into()),
            }
        }
        // A grant change away from authorization_code leaves no use for the code.
        if spec.grant_type == hookd_core::credential::GrantType::ClientCredentials
            && !paths.iter().any(|p| p == "code")
        {
            spec.code = None::<Secret>;
        }
        credential.spec = spec.validate().map_err(ControlError::from)?;
        credential.updated_at = Utc::now();
        if !self.store.update_credential(tenant, &credential).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "credential", id }.into());
        }
        self.tokens.forget(&credential.id);
        tracing::info!("credential updated; its cached token is dropped");
        Ok(Response::new(v1::UpdateCredentialResponse {
            credential: Some(shown(&credential, &TokenState::default())),
        }))
    }

    #[tracing::instrument(skip_all, fields(credential_id = %request.get_ref().id))]
    async fn delete_credential(
        &self,
        request: Request<v1::DeleteCredentialRequest>,
    ) -> Result<Response<v1::DeleteCredentialResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        caller.require_whole_tenant("OAuth2 credentials")?;
        let tenant = caller.tenant.as_str();
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(ControlError::from(InvalidField::new("id", "must not be empty")).into());
        }
        let id = CredentialId::from(id);
        let users =
            self.store.webhooks_using_credential(tenant, &id).await.map_err(ControlError::from)?;
        if !users.is_empty() {
            let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
            return Err(ControlError::FailedPrecondition(format!(
                "credential {id} is used by webhooks {}; change them first",
                ids.join(", ")
            ))
            .into());
        }
        if !self.store.delete_credential(tenant, &id).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "credential", id: id.into_string() }.into());
        }
        self.tokens.forget(&id);
        tracing::info!("credential deleted");
        Ok(Response::new(v1::DeleteCredentialResponse {}))
    }
}
