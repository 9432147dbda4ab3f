//! OAuth2 credentials and their cached token state.
