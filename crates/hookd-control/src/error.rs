//! The control plane's errors and their one mapping to gRPC status codes, and the layer that
//! holds tonic's own answers to the same rules: a client's mistake is `INVALID_ARGUMENT`
//! (never `INTERNAL` or `OUT_OF_RANGE`), and every message is bounded (a few hundred bytes,
//! quoted values cut with an ellipsis) whatever the client sent.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use hookd_core::{
    InvalidField,
    access::Permission,
    event::MAX_JSON_DEPTH,
    text::{MAX_MESSAGE_BYTES, bound_message},
};
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
    /// A stream refused a publish for lack of room; nothing was stored. Worth retrying once
    /// the dispatchers have drained it: `RESOURCE_EXHAUSTED`.
    #[error(
        "{0}; nothing was stored: the dispatchers have not drained the stream yet, or its \
         limits (stream_max_messages, stream_max_bytes) or the NATS server's storage are too \
         small; retry later"
    )]
    StreamFull(NatsError),
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

impl From<NatsError> for ControlError {
    fn from(e: NatsError) -> Self {
        if e.is_stream_full() { Self::StreamFull(e) } else { Self::Nats(e) }
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
            ControlError::StreamFull(_) => Code::ResourceExhausted,
            ControlError::Storage(_)
            | ControlError::NatsConnect(_)
            | ControlError::Nats(_)
            | ControlError::Unavailable(_) => Code::Unavailable,
            ControlError::Internal(_) | ControlError::Config { .. } => Code::Internal,
        };
        if code == Code::ResourceExhausted {
            tracing::warn!(error = %e, "request refused: stream full");
        } else if code == Code::Unavailable || code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, bound_message(&e.to_string()))
    }
}

/// Wraps every gRPC service of the control plane (`Server::layer`) so the refusals tonic
/// makes before a handler runs follow the rules of [`ControlError`]: see [`client_error`].
#[derive(Debug, Clone, Copy)]
pub struct ClientErrorsLayer {
    /// Named in the answer to a `PublishEvent` request over the size limit.
    pub max_event_bytes: usize,
}

impl<S> tower_layer::Layer<S> for ClientErrorsLayer {
    type Service = ClientErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientErrors { inner, max_event_bytes: self.max_event_bytes }
    }
}

#[derive(Debug, Clone)]
pub struct ClientErrors<S> {
    inner: S,
    max_event_bytes: usize,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for ClientErrors<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call {
            publish: request.uri().path().starts_with("/hookd.v1.EventService/"),
            max_event_bytes: self.max_event_bytes,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // tonic keeps the `Status` of an error answer (sent as headers only) beside it.
            let replacement =
                response.extensions().get::<Status>().and_then(|s| client_error(s, call));
            Ok(replacement.map_or(response, Status::into_http))
        })
    }
}

/// What [`client_error`] needs to know of the call.
#[derive(Debug, Clone, Copy)]
struct Call {
    /// An `EventService` call, whose requests carry an event.
    publish: bool,
    max_event_bytes: usize,
}

/// tonic's message for a request over `max_decoding_message_size` (`OUT_OF_RANGE`).
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";
/// tonic-prost's prefix for a request that does not decode (`INTERNAL`).
const PROST_UNDECODABLE: &str = "failed to decode Protobuf message: ";
/// prost's reason when messages nest deeper than it decodes (100 levels).
const PROST_TOO_DEEP: &str = "recursion limit reached";

/// The answer to give instead of `status`, if it must change: a request too large or one
/// that does not decode is the client's mistake (`INVALID_ARGUMENT`, like an event over
/// `max_event_bytes`: retrying cannot help, and some clients retry `RESOURCE_EXHAUSTED`),
/// with a short message naming the limit; any other message over the bound is cut.
fn client_error(status: &Status, call: Call) -> Option<Status> {
    let message = status.message();
    if status.code() == Code::OutOfRange && message.starts_with(TONIC_TOO_LARGE) {
        // "… found 5242885 bytes, the limit is: 4194304 bytes"
        let number_after = |marker: &str| -> Option<u64> {
            let rest = &message[message.find(marker)? + marker.len()..];
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        };
        let size = number_after("found ").map_or_else(String::new, |n| format!(" is {n} bytes;"));
        let limit = number_after("limit is: ")
            .map_or_else(|| "the size limit".to_owned(), |n| format!("{n} bytes"));
        let event = if call.publish {
            format!(" (an event's JSON at most {} bytes, max_event_bytes)", call.max_event_bytes)
        } else {
            String::new()
        };
        return Some(Status::invalid_argument(format!(
            "invalid request:{size} at most {limit} are accepted per request{event}"
        )));
    }
    if status.code() == Code::Internal
        && let Some(detail) = message.strip_prefix(PROST_UNDECODABLE)
    {
        if detail.ends_with(PROST_TOO_DEEP) {
            return Some(Status::invalid_argument(format!(
                "invalid {}: nests more than {MAX_JSON_DEPTH} levels deep; at most \
                 {MAX_JSON_DEPTH} levels of objects and arrays are accepted",
                too_deep_field(detail)
            )));
        }
        return Some(Status::invalid_argument(bound_message(&format!(
            "invalid request: not a protobuf message of this call: {detail}"
        ))));
    }
    (message.len() > MAX_MESSAGE_BYTES)
        .then(|| Status::new(status.code(), bound_message(message).into_owned()))
}

/// The field whose JSON value nests too deep, from prost's trail (innermost first:
/// `Struct.fields: Value.kind: … Event.data: PublishEventRequest.event: recursion limit
/// reached`): the fields outside the JSON value, outermost first (`event.data`).
fn too_deep_field(trail: &str) -> String {
    let json = |message: &str| matches!(message, "Value" | "Struct" | "ListValue");
    let steps: Vec<&str> = trail.split(": ").collect();
    let fields: Vec<&str> = steps
        .iter()
        .rev()
        .skip(1) // the reason
        .map_while(|step| step.split_once('.').filter(|(message, _)| !json(message)))
        .map(|(_, field)| field)
        .collect();
    if fields.is_empty() { "request".to_owned() } else { fields.join(".") }
}

#[cfg(test)]
mod tests {
    use hookd_proto::{convert::json_to_value, v1};
    use prost::Message as _;

    use super::*;

    const PUBLISH: Call = Call { publish: true, max_event_bytes: 262_144 };

    /// A `PublishEvent` request whose data nests `depth` objects deep, as tonic-prost fails
    /// to decode it.
    fn undecodable(depth: usize) -> Option<Status> {
        let mut data = serde_json::json!(1);
        for _ in 0..depth {
            data = serde_json::json!({ "a": data });
        }
        let request = v1::PublishEventRequest {
            event: Some(v1::Event { data: Some(json_to_value(data)), ..Default::default() }),
        };
        let bytes = request.encode_to_vec();
        // tonic-prost maps a decode error to INTERNAL with the error's text.
        v1::PublishEventRequest::decode(bytes.as_slice())
            .err()
            .map(|e| Status::internal(e.to_string()))
    }

    #[test]
    fn protobuf_decoding_allows_exactly_the_json_depth_limit() {
        assert!(undecodable(MAX_JSON_DEPTH).is_none(), "{MAX_JSON_DEPTH} levels must decode");
        let status = undecodable(MAX_JSON_DEPTH + 1).expect("one more level is refused");
        assert!(status.message().len() > 900, "prost's own message is long");
        let answer = client_error(&status, PUBLISH).expect("replaced");
        assert_eq!(answer.code(), Code::InvalidArgument);
        assert_eq!(
            answer.message(),
            "invalid event.data: nests more than 32 levels deep; at most 32 levels of objects and arrays are accepted"
        );
    }

    #[test]
    fn a_request_over_the_size_limit_is_a_client_mistake_naming_the_limit() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 5242885 bytes, the limit is: 4194304 bytes",
        );
        let answer = client_error(&tonic, PUBLISH).expect("replaced");
        assert_eq!(answer.code(), Code::InvalidArgument);
        assert_eq!(
            answer.message(),
            "invalid request: is 5242885 bytes; at most 4194304 bytes are accepted per request \
             (an event's JSON at most 262144 bytes, max_event_bytes)"
        );
        let other = client_error(&tonic, Call { publish: false, ..PUBLISH }).expect("replaced");
        assert!(other.message().ends_with("per request"), "{}", other.message());
    }

    #[test]
    fn other_decode_errors_are_invalid_arguments() {
        let garbage = v1::PublishEventRequest::decode(&b"\xff\xff\xff"[..]).expect_err("garbage");
        let answer =
            client_error(&Status::internal(garbage.to_string()), PUBLISH).expect("replaced");
        assert_eq!(answer.code(), Code::InvalidArgument);
        assert!(
            answer.message().starts_with("invalid request: not a protobuf message"),
            "{}",
            answer.message()
        );
    }

    #[test]
    fn every_message_is_bounded_and_short_ones_are_left_alone() {
        let long = Status::not_found(format!("symbol {:?} not found", "x".repeat(100_000)));
        let answer = client_error(&long, PUBLISH).expect("cut");
        assert_eq!(answer.code(), Code::NotFound);
        assert!(answer.message().len() <= MAX_MESSAGE_BYTES);
        assert!(client_error(&Status::not_found("webhook \"wh_1\" not found"), PUBLISH).is_none());
        let invalid = Status::from(ControlError::Invalid(InvalidField::new(
            "event.data",
            format!("does not match {:?}", "a|".repeat(27_000)),
        )));
        assert!(invalid.message().len() <= MAX_MESSAGE_BYTES, "{}", invalid.message().len());
    }

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
