//! OAuth2 credentials: a resource of their own that webhooks reference, so one token endpoint
//! configuration (and one cached token) serves many webhooks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{CredentialId, InvalidField, endpoint::Secret};

pub const MAX_SCOPE_LEN: usize = 1024;
pub const MAX_EXTRA_PARAMS: usize = 32;

/// How the token request is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TokenMethod {
    /// Parameters as an `application/x-www-form-urlencoded` body (RFC 6749).
    #[default]
    Post,
    /// Parameters in the query string, for token endpoints that want them there.
    Get,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    #[default]
    ClientCredentials,
    /// Redeems `code` once, then keeps the access token fresh with the refresh token.
    AuthorizationCode,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::ClientCredentials, Self::AuthorizationCode]
            .into_iter()
            .find(|g| g.as_str() == value.trim())
    }
}

/// What a user decides about an OAuth2 credential; validated by [`CredentialSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSpec {
    pub name: String,
    pub token_url: String,
    #[serde(default)]
    pub method: TokenMethod,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default)]
    pub grant_type: GrantType,
    /// The authorization code, for `authorization_code` only.
    #[serde(default)]
    pub code: Option<Secret>,
    #[serde(default)]
    pub scope: String,
    /// Sent with every token request, after the standard parameters.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
}

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    pub spec: CredentialSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Parameters hookd sets itself in a token request (`redirect_uri`, which the code exchange
/// may need, is left to `extra_params`).
const RESERVED_PARAMS: [&str; 6] =
    ["grant_type", "client_id", "client_secret", "code", "scope", "refresh_token"];

impl CredentialSpec {
    pub fn validate(mut self) -> Result<Self, InvalidField> {
        self.name = crate::webhook::validate_name(&self.name)?;
        validate_token_url(&self.token_url)?;
        if self.client_id.trim().is_empty() || self.client_id.len() > 1024 {
            return Err(InvalidField::new("client_id", "must be 1 to 1024 characters"));
        }
        if self.client_secret.is_empty() || self.client_secret.expose().len() > 4096 {
            return Err(InvalidField::new("client_secret", "must be 1 to 4096 characters"));
        }
        match (self.grant_type, &self.code) {
            (GrantType::AuthorizationCode, None) => {
                return Err(InvalidField::new(
                    "code",
                    "the authorization_code grant needs the authorization code",
                ));
            }
            (GrantType::AuthorizationCode, Some(code)) if code.is_empty() => {
                return Err(InvalidField::new("code", "must not be empty"));
            }
            (GrantType::ClientCredentials, Some(_)) => {
                return Err(InvalidField::new(
                    "code",
                    "only the authorization_code grant takes a code",
                ));
            }
            _ => {}
        }
        if self.scope.len() > MAX_SCOPE_LEN || self.scope.chars().any(char::is_control) {
            return Err(InvalidField::new(
                "scope",
                format!("must be at most {MAX_SCOPE_LEN} characters without control characters"),
            ));
        }
        if self.extra_params.len() > MAX_EXTRA_PARAMS {
            return Err(InvalidField::new(
                "extra_params",
                format!("at most {MAX_EXTRA_PARAMS} parameters"),
            ));
        }
        for (k, v) in &self.extra_params {
            if k.is_empty() || k.len() > 256 || v.len() > 4096 {
                return Err(InvalidField::new(
                    "extra_params",
                    "names must be 1 to 256 characters, values at most 4096",
                ));
            }
            if RESERVED_PARAMS.contains(&k.as_str()) {
                return Err(InvalidField::new(
                    "extra_params",
                    format!("{k:?} is set by hookd from the credential's own fields"),
                ));
            }
        }
        Ok(self)
    }

    /// A copy with the client secret and code replaced by their masks, for reads.
    pub fn masked(&self) -> Self {
        Self {
            client_secret: Secret::new(self.client_secret.masked()),
            code: self.code.as_ref().map(|c| Secret::new(c.masked())),
            ..self.clone()
        }
    }
}

fn validate_token_url(raw: &str) -> Result<(), InvalidField> {
    crate::webhook::check_url_characters("token_url", raw)?;
    let url = Url::parse(raw).map_err(|e| {
        InvalidField::new("token_url", format!("{raw:?} is not an absolute URL ({e})"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidField::new("token_url", "must be an http(s) URL with a host"));
    }
    if raw.len() > crate::webhook::MAX_URL_LEN {
        return Err(InvalidField::new("token_url", "is too long"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CredentialSpec {
        CredentialSpec {
            name: "crm oauth".into(),
            token_url: "https://auth.example.com/token".into(),
            method: TokenMethod::Post,
            client_id: "client".into(),
            client_secret: Secret::new("a-long-client-secret-1234"),
            grant_type: GrantType::ClientCredentials,
            code: None,
            scope: "webhooks".into(),
            extra_params: BTreeMap::new(),
        }
    }

    #[test]
    fn validates_and_masks() {
        let s = spec().validate().expect("valid");
        assert_eq!(s.masked().client_secret.expose(), "****1234");
        let no_code = CredentialSpec { grant_type: GrantType::AuthorizationCode, ..spec() };
        assert_eq!(no_code.validate().expect_err("refused").field, "code");
        let reserved = CredentialSpec {
            extra_params: [("client_id".to_owned(), "x".to_owned())].into(),
            ..spec()
        };
        assert_eq!(reserved.validate().expect_err("refused").field, "extra_params");
        let bad_url = CredentialSpec { token_url: "ftp://x".into(), ..spec() };
        assert_eq!(bad_url.validate().expect_err("refused").field, "token_url");
    }
}
