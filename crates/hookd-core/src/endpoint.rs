//! How a request reaches an endpoint: the HTTP method, custom headers and the endpoint's
//! authentication, with the rules that keep them from clashing with what hookd sends itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidField;

/// The most custom headers a webhook may carry.
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_NAME_LEN: usize = 128;
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Names plus values of all custom headers together.
pub const MAX_HEADERS_TOTAL_LEN: usize = 16 * 1024;
pub const MAX_SECRET_LEN: usize = 4096;

/// The HTTP method deliveries use. GET and DELETE carry no body: the event's identity goes in
/// headers and selected fields become query parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
    Get,
    Delete,
}

impl HttpMethod {
    pub const ALL: [Self; 5] = [Self::Post, Self::Put, Self::Patch, Self::Get, Self::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Get => "GET",
            Self::Delete => "DELETE",
        }
    }

    /// Whether the payload travels as the request body (else as query parameters).
    pub fn has_body(self) -> bool {
        !matches!(self, Self::Get | Self::Delete)
    }

    /// Case-insensitive; `None` for anything but the five supported methods.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A custom request header, sent as given on every delivery. Not secret: reads return it in
/// full, so credentials belong in [`EndpointAuth`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A credential value. Never printed by `Debug`; reads show [`Secret::masked`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What reads show: the last four characters of a long secret, nothing of a short one.
    pub fn masked(&self) -> String {
        let chars = self.0.chars().count();
        if chars >= 16 {
            let tail: String = self.0.chars().skip(chars - 4).collect();
            format!("****{tail}")
        } else {
            "****".to_owned()
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
}

/// How hookd proves itself to the endpoint, on top of the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndpointAuth {
    #[default]
    None,
    /// A header of the user's choosing, such as Mimeeq's `x-webhook-secret`.
    Header { name: String, value: Secret },
    /// An API key in a header (default `x-api-key`) or a query parameter.
    ApiKey { name: String, value: Secret, location: ApiKeyLocation },
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
}

/// Default header name of [`EndpointAuth::ApiKey`].
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

impl EndpointAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Header { .. } => "header",
            Self::ApiKey { .. } => "api_key",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
        }
    }

    /// Whether this sets the `Authorization` header (and so cannot be combined with OAuth2).
    pub fn uses_authorization(&self) -> bool {
        matches!(self, Self::Basic { .. } | Self::Bearer { .. })
            || self.header_name().is_some_and(|n| n == "authorization")
    }

    /// The header name this adds, lowercase, if it adds a custom one.
    pub fn header_name(&self) -> Option<String> {
        match self {
            Self::Header { name, .. }
            | Self::ApiKey { name, location: ApiKeyLocation::Header, .. } => {
                Some(name.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    /// A copy with every secret value replaced by its mask, for reads.
    pub fn masked(&self) -> Self {
        let mask = |s: &Secret| Secret(s.masked());
        match self {
            Self::None => Self::None,
            Self::Header { name, value } => Self::Header { name: name.clone(), value: mask(value) },
            Self::ApiKey { name, value, location } => {
                Self::ApiKey { name: name.clone(), value: mask(value), location: *location }
            }
            Self::Basic { username, password } => {
                Self::Basic { username: username.clone(), password: mask(password) }
            }
            Self::Bearer { token } => Self::Bearer { token: mask(token) },
        }
    }

    /// Checks the fields; fills the API key's default header name.
    pub fn validate(self) -> Result<Self, InvalidField> {
        const FIELD: &str = "auth";
        let secret = |s: &Secret, what: &str| -> Result<(), InvalidField> {
            if s.is_empty() {
                return Err(InvalidField::new(FIELD, format!("{what} must not be empty")));
            }
            if s.0.len() > MAX_SECRET_LEN {
                return Err(InvalidField::new(
                    FIELD,
                    format!("{what} must be at most {MAX_SECRET_LEN} bytes"),
                ));
            }
            if !is_header_value(&s.0) {
                return Err(InvalidField::new(
                    FIELD,
                    format!("{what} must be printable ASCII (no control characters)"),
                ));
            }
            Ok(())
        };
        match self {
            Self::None => Ok(Self::None),
            Self::Header { name, value } => {
                let name = custom_header_name(FIELD, &name)?;
                secret(&value, "header value")?;
                Ok(Self::Header { name, value })
            }
            Self::ApiKey { name, value, location } => {
                let name = match (name.trim(), location) {
                    ("", ApiKeyLocation::Header) => DEFAULT_API_KEY_HEADER.to_owned(),
                    ("", ApiKeyLocation::Query) => {
                        return Err(InvalidField::new(
                            FIELD,
                            "an API key in the query needs a parameter name",
                        ));
                    }
                    (n, ApiKeyLocation::Header) => custom_header_name(FIELD, n)?,
                    (n, ApiKeyLocation::Query) => {
                        if n.len() > MAX_HEADER_NAME_LEN || !n.bytes().all(is_tchar) {
                            return Err(InvalidField::new(
                                FIELD,
                                format!("{n:?} is not a valid query parameter name"),
                            ));
                        }
                        n.to_owned()
                    }
                };
                secret(&value, "API key")?;
                Ok(Self::ApiKey { name, value, location })
            }
            Self::Basic { username, password } => {
                if username.is_empty() || username.contains(':') || !is_header_value(&username) {
                    return Err(InvalidField::new(
                        FIELD,
                        "basic username must be non-empty printable text without ':'",
                    ));
                }
                secret(&password, "basic password")?;
                Ok(Self::Basic { username, password })
            }
            Self::Bearer { token } => {
                secret(&token, "bearer token")?;
                Ok(Self::Bearer { token })
            }
        }
    }
}

/// Headers hookd sets itself or that describe the connection; a user may not set them.
/// `accept-encoding` among them: hookd never asks for a compressed answer (it never inflates
/// one, so a decompression bomb stays the few compressed bytes it is). `traceparent` and
/// `tracestate` are the W3C trace context, which hookd propagates itself.
const RESERVED_HEADERS: [&str; 20] = [
    "accept-encoding",
    "traceparent",
    "tracestate",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "authorization",
    "cookie",
    "user-agent",
];

/// Prefixes hookd's own headers use (Standard Webhooks and event identity).
const RESERVED_PREFIXES: [&str; 2] = ["webhook-", "hookd-"];

/// Checks custom headers: a valid, unreserved, unique name and a printable value each, within
/// the count and size caps. Returns them with lowercase names, in the given order.
pub fn validate_headers(headers: Vec<Header>) -> Result<Vec<Header>, InvalidField> {
    const FIELD: &str = "headers";
    if headers.len() > MAX_HEADERS {
        return Err(InvalidField::new(FIELD, format!("at most {MAX_HEADERS} headers")));
    }
    let total: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if total > MAX_HEADERS_TOTAL_LEN {
        return Err(InvalidField::new(
            FIELD,
            format!("names and values must add up to at most {MAX_HEADERS_TOTAL_LEN} bytes"),
        ));
    }
    let mut out: Vec<Header> = Vec::with_capacity(headers.len());
    for h in headers {
        let name = custom_header_name(FIELD, &h.name)?;
        if name == "authorization" || name == "cookie" {
            return Err(InvalidField::new(
                FIELD,
                format!("{name:?} carries credentials; configure it as auth instead"),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(InvalidField::new(FIELD, format!("{name:?} is given twice")));
        }
        if h.value.len() > MAX_HEADER_VALUE_LEN || !is_header_value(&h.value) {
            return Err(InvalidField::new(
                FIELD,
                format!(
                    "value of {name:?} must be printable ASCII of at most {MAX_HEADER_VALUE_LEN} bytes"
                ),
            ));
        }
        out.push(Header { name, value: h.value });
    }
    Ok(out)
}

/// A header name a user may set: an RFC 9110 token that hookd does not reserve. Lowercased.
fn custom_header_name(field: &'static str, name: &str) -> Result<String, InvalidField> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || !name.bytes().all(is_tchar) {
        return Err(InvalidField::new(
            field,
            format!(
                "{name:?} is not a valid header name (1 to {MAX_HEADER_NAME_LEN} token characters)"
            ),
        ));
    }
    let reserved = RESERVED_HEADERS.contains(&name.as_str()) && name != "authorization"
        || name.starts_with("proxy-")
        || name.starts_with("sec-")
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p));
    if reserved {
        return Err(InvalidField::new(
            field,
            format!("{name:?} is set by hookd or by the connection and cannot be configured"),
        ));
    }
    Ok(name)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII and spaces/tabs inside, as a header value must be to pass through proxies.
fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header { name: name.into(), value: value.into() }
    }

    #[test]
    fn headers_are_lowercased_and_checked() {
        let ok = validate_headers(vec![h("X-Tenant", "acme"), h("x-trace", "1")]).expect("valid");
        assert_eq!(ok[0].name, "x-tenant");
        for bad in [
            vec![h("host", "x")],
            vec![h("Content-Length", "1")],
            vec![h("webhook-signature", "v1,x")],
            vec![h("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            vec![h("tracestate", "vendor=1")],
            vec![h("authorization", "Bearer x")],
            vec![h("bad name", "x")],
            vec![h("x-a", "line\nbreak")],
            vec![h("x-a", "1"), h("X-A", "2")],
            (0..=MAX_HEADERS).map(|i| h(&format!("x-{i}"), "v")).collect(),
        ] {
            let err = validate_headers(bad.clone()).expect_err("must be refused");
            assert_eq!(err.field, "headers", "{bad:?}");
        }
    }

    #[test]
    fn auth_is_validated_and_masked() {
        let auth = EndpointAuth::Header {
            name: "X-Webhook-Secret".into(),
            value: Secret::new("0123456789abcdefWXYZ"),
        }
        .validate()
        .expect("valid");
        assert_eq!(auth.header_name().as_deref(), Some("x-webhook-secret"));
        let masked = auth.masked();
        assert_eq!(
            masked,
            EndpointAuth::Header {
                name: "x-webhook-secret".into(),
                value: Secret::new("****WXYZ")
            }
        );
        assert_eq!(Secret::new("short").masked(), "****");
        assert!(!format!("{auth:?}").contains("0123"));
        let key = EndpointAuth::ApiKey {
            name: String::new(),
            value: Secret::new("k"),
            location: ApiKeyLocation::Header,
        }
        .validate()
        .expect("valid");
        assert_eq!(key.header_name().as_deref(), Some(DEFAULT_API_KEY_HEADER));
        for bad in [
            EndpointAuth::Bearer { token: Secret::new("") },
            EndpointAuth::Basic { username: "a:b".into(), password: Secret::new("p") },
            EndpointAuth::Header { name: "host".into(), value: Secret::new("v") },
        ] {
            assert_eq!(bad.validate().expect_err("must be refused").field, "auth");
        }
    }

    #[test]
    fn methods_parse_case_insensitively() {
        assert_eq!(HttpMethod::parse("patch"), Some(HttpMethod::Patch));
        assert_eq!(HttpMethod::parse("TRACE"), None);
        assert!(!HttpMethod::Get.has_body() && HttpMethod::Put.has_body());
    }
}
