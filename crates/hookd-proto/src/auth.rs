//! The API token every call to a hookd service carries, as `authorization: Bearer <token>`:
//! the one client interceptor (CLI, dispatchers, test runner, console) and the one reading of
//! the header on the server side.

use tonic::{
    metadata::{Ascii, MetadataMap, MetadataValue},
    service::Interceptor,
};

/// The metadata key of the token.
pub const AUTHORIZATION: &str = "authorization";

/// A token that cannot travel as a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token must be printable ASCII")]
pub struct InvalidToken;

/// Adds `authorization: Bearer <token>` to every call, or nothing when built without a token.
/// The header value is built once, so a token that cannot be one fails before any call.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// No token, or an empty one, sends nothing (the server answers UNAUTHENTICATED).
    pub fn new(token: Option<&str>) -> Result<Self, InvalidToken> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Self(None));
        };
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {token}").parse().map_err(|_| InvalidToken)?;
        // Keeps the token out of any debug output of a request.
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(****)" } else { "Bearer(none)" })
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// Why a call's token could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No `authorization` metadata.
    Missing,
    /// `authorization` is there but not `Bearer <token>`.
    Malformed,
}

/// The token of a call's `authorization: Bearer <token>` (the scheme in either case).
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, TokenError> {
    let value = metadata.get(AUTHORIZATION).ok_or(TokenError::Missing)?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_travels_in_the_authorization_metadata_and_reads_back() {
        let mut bearer = Bearer::new(Some("t0ken")).expect("a valid token");
        let request = bearer.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(bearer_token(request.metadata()), Ok("t0ken"));
        assert!(!format!("{bearer:?}").contains("t0ken"));

        let mut none = Bearer::new(Some("")).expect("empty is no token");
        let request = none.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(bearer_token(request.metadata()), Err(TokenError::Missing));
        assert_eq!(Bearer::new(Some("bad\ntoken")).map(|_| ()), Err(InvalidToken));
    }

    #[test]
    fn only_the_bearer_scheme_is_read() {
        let mut metadata = MetadataMap::new();
        metadata.insert(AUTHORIZATION, MetadataValue::from_static("Basic dTpw"));
        assert_eq!(bearer_token(&metadata), Err(TokenError::Malformed));
        metadata.insert(AUTHORIZATION, MetadataValue::from_static("bearer  abc "));
        assert_eq!(bearer_token(&metadata), Ok("abc"));
        metadata.insert(AUTHORIZATION, MetadataValue::from_static("Bearer "));
        assert_eq!(bearer_token(&metadata), Err(TokenError::Malformed));
    }
}
