//! The console's way to the control plane: the same gRPC services every client uses, called
//! in process through the intercepted services (`tonic::service::Routes`), with the session's
//! bearer token. Tenants, permissions, validation and error messages are therefore exactly
//! the API's; the console adds none of its own.

use hookd_proto::v1::{
    access_service_client::AccessServiceClient, credential_service_client::CredentialServiceClient,
    delivery_service_client::DeliveryServiceClient,
    event_type_service_client::EventTypeServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use tonic::{Code, Status, service::Routes};

/// The services with one caller's token.
#[derive(Clone)]
pub struct Api {
    routes: Routes,
    bearer: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Api(..)")
    }
}

impl Api {
    pub fn new(routes: Routes, bearer: String) -> Self {
        Self { routes, bearer }
    }

    /// `message` with the caller's `authorization` metadata.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        // Tokens and grants are printable ASCII; one that is not cannot authenticate anyway.
        if let Ok(value) = format!("Bearer {}", self.bearer).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    pub fn webhooks(&self) -> WebhookServiceClient<Routes> {
        WebhookServiceClient::new(self.routes.clone())
    }

    pub fn deliveries(&self) -> DeliveryServiceClient<Routes> {
        DeliveryServiceClient::new(self.routes.clone())
    }

    pub fn event_types(&self) -> EventTypeServiceClient<Routes> {
        EventTypeServiceClient::new(self.routes.clone())
    }

    pub fn credentials(&self) -> CredentialServiceClient<Routes> {
        CredentialServiceClient::new(self.routes.clone())
    }

    pub fn access(&self) -> AccessServiceClient<Routes> {
        AccessServiceClient::new(self.routes.clone())
    }
}

/// A call the control plane refused, as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    /// The API's own message.
    pub message: String,
    /// The request field the message names (`url` for "invalid url: …"), so a form can show
    /// it next to that field.
    pub field: Option<String>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }

    /// A form value the console itself could not read (JSON that does not parse, say).
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            code: Code::InvalidArgument,
            message: format!("invalid {field}: {reason}"),
            field: Some(field.to_owned()),
        }
    }

    /// The message without the "invalid <field>: " prefix, for display next to the field.
    pub fn reason(&self) -> &str {
        match &self.field {
            Some(field) => {
                self.message.strip_prefix(&format!("invalid {field}: ")).unwrap_or(&self.message)
            }
            None => &self.message,
        }
    }

    /// The HTTP status a page answers with for this failure.
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self.code {
            Code::InvalidArgument | Code::OutOfRange => S::UNPROCESSABLE_ENTITY,
            Code::NotFound => S::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => S::CONFLICT,
            Code::PermissionDenied => S::FORBIDDEN,
            Code::Unauthenticated => S::UNAUTHORIZED,
            _ => S::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        let field = match status.code() {
            // "invalid <field>: <reason>" is how every InvalidField reads.
            Code::InvalidArgument => message
                .strip_prefix("invalid ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(field, _)| field.to_owned())
                .filter(|f| f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')),
            // A taken name is the name field's problem.
            Code::AlreadyExists if message.starts_with("name ") => Some("name".to_owned()),
            _ => None,
        };
        Self { code: status.code(), message, field }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_are_found_in_the_apis_messages() {
        let f = Failure::from(Status::invalid_argument("invalid url: must be absolute"));
        assert_eq!(f.field.as_deref(), Some("url"));
        assert_eq!(f.reason(), "must be absolute");
        assert_eq!(f.http_status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        let taken = Failure::from(Status::already_exists("name \"crm\" is already taken"));
        assert_eq!(taken.field.as_deref(), Some("name"));
        let denied = Failure::from(Status::permission_denied("permission denied: lacks x"));
        assert_eq!(
            (denied.field.as_deref(), denied.http_status()),
            (None, http::StatusCode::FORBIDDEN)
        );
        let odd = Failure::from(Status::invalid_argument("invalid page_token: pass the next"));
        assert_eq!(odd.field.as_deref(), Some("page_token"));
    }
}
