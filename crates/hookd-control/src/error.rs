//! The control plane's errors and their one mapping to gRPC status codes.

use hookd_core::{InvalidField, access::Permission};
use hookd_nats::NatsError;
use hookd_storage::StorageError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// One report of a `ReportAttempts` batch, named by its place in the batch.
    #[error("reports[{index}]: {invalid}")]
    InvalidReport { index: usize, invalid: InvalidField },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("name {name:?} is already taken")]
    NameTaken { name: String },
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("invalid page_token: pass the next_page_token of the previous page")]
    PageToken,
    #[error("storage: {0}")]
    Storage(StorageError),
    #[error("cannot connect to nats: {0}")]
    NatsConnect(String),
    #[error("event stream: {0}")]
    Nats(NatsError),
    #[error("{0}")]
    Unavailable(String),
    /// No token, or one hookd does not know (never says which token).
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// The token is valid but its role lacks the permission. Checked before any lookup, so
    /// it never tells whether a resource exists; other tenants' resources are NOT_FOUND.
    #[error("permission denied: this token's role lacks {0}")]
    PermissionDenied(Permission),
    /// A portal session limited to one app label asked for a tenant-wide resource.
    #[error("permission denied: a portal session limited to app label {app:?} cannot use {what}")]
    OutOfScope { what: &'static str, app: String },
    /// A setting the control plane cannot start with.
    #[error("invalid setting {setting}: {reason}")]
    Config { setting: &'static str, reason: String },
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StorageError> for ControlError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NameTaken { name } => Self::NameTaken { name },
            StorageError::AlreadyExists { what, name } => Self::AlreadyExists { what, name },
            other => Self::Storage(other),
        }
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        let code = match &e {
            ControlError::Invalid(_)
            | ControlError::InvalidReport { .. }
            | ControlError::PageToken => Code::InvalidArgument,
            ControlError::NotFound { .. } => Code::NotFound,
            ControlError::NameTaken { .. } | ControlError::AlreadyExists { .. } => {
                Code::AlreadyExists
            }
            ControlError::FailedPrecondition(_) => Code::FailedPrecondition,
            ControlError::Unauthenticated(_) => Code::Unauthenticated,
            ControlError::PermissionDenied(_) | ControlError::OutOfScope { .. } => {
                Code::PermissionDenied
            }
            ControlError::Storage(_)
            | ControlError::NatsConnect(_)
            | ControlError::Nats(_)
            | ControlError::Unavailable(_) => Code::Unavailable,
            ControlError::Internal(_) | ControlError::Config { .. } => Code::Internal,
        };
        if code == Code::Unavailable || code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_map_to_client_codes() {
        let invalid = Status::from(ControlError::Invalid(InvalidField::new("url", "bad")));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert!(invalid.message().contains("url"));
        let taken = Status::from(ControlError::NameTaken { name: "crm".into() });
        assert_eq!(taken.code(), Code::AlreadyExists);
        let missing = Status::from(ControlError::NotFound { what: "webhook", id: "wh_1".into() });
        assert_eq!(missing.code(), Code::NotFound);
        let denied = Status::from(ControlError::PermissionDenied(Permission::WebhooksManage));
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("webhooks.manage"), "{}", denied.message());
        let unknown = Status::from(ControlError::Unauthenticated("unknown or revoked token"));
        assert_eq!(unknown.code(), Code::Unauthenticated);
    }
}
