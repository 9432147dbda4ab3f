//! Parsers for command-line values the client shares: `Name: value` headers, `k=v` pairs,
//! JSON given inline or as `@file`, and secrets given inline, from the environment or on stdin.

use std::io::BufRead;

use anyhow::Context;
use clap::ValueEnum;
use hookd_proto::v1;

/// `Name: value` (the colon may be followed by spaces); a clap value parser.
pub fn parse_header(text: &str) -> Result<v1::HttpHeader, String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!(
            "{text:?} is not a header: expected `Name: value`, e.g. `x-tenant: acme`"
        ));
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!(
            "{text:?} has no valid header name before the colon: expected `Name: value`"
        ));
    }
    Ok(v1::HttpHeader { name: name.to_owned(), value: value.trim().to_owned() })
}

/// `key=value` (the value may contain `=`, and may be empty); a clap value parser.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not a parameter: expected `key=value`, e.g. `audience=crm`")),
    }
}

/// `USER:PASS` for basic auth: the user name ends at the first colon, as in RFC 7617.
pub fn parse_basic(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_owned(), pass.to_owned())),
        _ => anyhow::bail!("basic credentials must be `USER:PASS` with a non-empty user"),
    }
}

/// JSON given inline, or `@path` to read it from a file (`@-` reads stdin).
pub fn load_json(
    flag: &str,
    text: &str,
    stdin: &mut dyn BufRead,
) -> anyhow::Result<serde_json::Value> {
    let (source, text) = match text.strip_prefix('@') {
        Some("-") => {
            let mut all = String::new();
            stdin.read_to_string(&mut all).with_context(|| format!("{flag}: cannot read stdin"))?;
            ("stdin".to_owned(), all)
        }
        Some(path) => {
            let all = std::fs::read_to_string(path)
                .with_context(|| format!("{flag}: cannot read {path}"))?;
            (path.to_owned(), all)
        }
        None => ("the argument".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&text).with_context(|| format!("{flag}: {source} is not valid JSON"))
}

/// A secret from its inline value (`-` meaning one line of stdin) or from an environment
/// variable, so it need not appear in argv or the shell history. `None` when neither is
/// given.
pub fn resolve_secret(
    flag: &str,
    value: Option<String>,
    env_var: Option<&str>,
    getenv: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn BufRead,
) -> anyhow::Result<Option<String>> {
    if let Some(var) = env_var {
        let value = getenv(var)
            .with_context(|| format!("{flag}-env: environment variable {var} is not set"))?;
        return Ok(Some(value));
    }
    match value.as_deref() {
        Some("-") => {
            let mut line = String::new();
            let read = stdin
                .read_line(&mut line)
                .with_context(|| format!("{flag}: cannot read the secret from stdin"))?;
            anyhow::ensure!(
                read > 0,
                "{flag} -: stdin has no line left for it (one line per secret)"
            );
            Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
        }
        _ => Ok(value),
    }
}

/// [`resolve_secret`] against the real environment and stdin.
pub fn secret(
    flag: &str,
    value: Option<String>,
    env_var: Option<&str>,
) -> anyhow::Result<Option<String>> {
    resolve_secret(flag, value, env_var, |v| std::env::var(v).ok(), &mut std::io::stdin().lock())
}

/// [`load_json`] against the real stdin.
pub fn json(flag: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    load_json(flag, text, &mut std::io::stdin().lock())
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MethodArg {
    Post,
    Put,
    Patch,
    Get,
    Delete,
}

impl From<MethodArg> for v1::HttpMethod {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Post => Self::Post,
            MethodArg::Put => Self::Put,
            MethodArg::Patch => Self::Patch,
            MethodArg::Get => Self::Get,
            MethodArg::Delete => Self::Delete,
        }
    }
}

pub fn method_name(m: i32) -> &'static str {
    match v1::HttpMethod::try_from(m) {
        Ok(v1::HttpMethod::Put) => "PUT",
        Ok(v1::HttpMethod::Patch) => "PATCH",
        Ok(v1::HttpMethod::Get) => "GET",
        Ok(v1::HttpMethod::Delete) => "DELETE",
        // Unspecified means POST.
        _ => "POST",
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Envelope,
    Flat,
    Data,
}

impl From<FormatArg> for v1::PayloadFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Envelope => Self::Envelope,
            FormatArg::Flat => Self::Flat,
            FormatArg::Data => Self::Data,
        }
    }
}

pub fn format_name(f: i32) -> &'static str {
    match v1::PayloadFormat::try_from(f) {
        Ok(v1::PayloadFormat::Flat) => "flat",
        Ok(v1::PayloadFormat::Data) => "data",
        _ => "envelope",
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StatusFilterArg {
    Active,
    Inactive,
}

impl From<StatusFilterArg> for v1::StatusFilter {
    fn from(s: StatusFilterArg) -> Self {
        match s {
            StatusFilterArg::Active => Self::Active,
            StatusFilterArg::Inactive => Self::Inactive,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TokenMethodArg {
    Post,
    Get,
}

impl From<TokenMethodArg> for v1::TokenMethod {
    fn from(m: TokenMethodArg) -> Self {
        match m {
            TokenMethodArg::Post => Self::Post,
            TokenMethodArg::Get => Self::Get,
        }
    }
}

pub fn token_method_name(m: i32) -> &'static str {
    match v1::TokenMethod::try_from(m) {
        Ok(v1::TokenMethod::Get) => "GET",
        _ => "POST",
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GrantTypeArg {
    #[value(name = "client_credentials", alias = "client-credentials")]
    ClientCredentials,
    #[value(name = "authorization_code", alias = "authorization-code")]
    AuthorizationCode,
}

impl From<GrantTypeArg> for v1::GrantType {
    fn from(g: GrantTypeArg) -> Self {
        match g {
            GrantTypeArg::ClientCredentials => Self::ClientCredentials,
            GrantTypeArg::AuthorizationCode => Self::AuthorizationCode,
        }
    }
}

pub fn grant_type_name(g: i32) -> &'static str {
    match v1::GrantType::try_from(g) {
        Ok(v1::GrantType::AuthorizationCode) => "authorization_code",
        _ => "client_credentials",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Result<(String, String), String> {
        parse_header(text).map(|h| (h.name, h.value))
    }

    #[test]
    fn headers_split_at_the_first_colon_and_trim() {
        assert_eq!(header("x-tenant: acme"), Ok(("x-tenant".into(), "acme".into())));
        assert_eq!(
            header("X-Url:https://a.example/b"),
            Ok(("X-Url".into(), "https://a.example/b".into()))
        );
        assert_eq!(header("x-empty:"), Ok(("x-empty".into(), String::new())));
    }

    #[test]
    fn headers_without_a_colon_or_a_name_are_refused_clearly() {
        let err = header("x-tenant acme").expect_err("no colon");
        assert!(err.contains("Name: value"), "{err}");
        assert!(header(": acme").is_err());
        assert!(header("x tenant: acme").is_err());
    }

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(parse_key_value("audience=crm"), Ok(("audience".into(), "crm".into())));
        assert_eq!(parse_key_value("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert_eq!(parse_key_value("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn basic_credentials_need_a_user_and_keep_colons_in_the_password() {
        let (user, pass) = parse_basic("ada:pa:ss").expect("valid");
        assert_eq!((user.as_str(), pass.as_str()), ("ada", "pa:ss"));
        assert!(parse_basic("ada").is_err());
        assert!(parse_basic(":pass").is_err());
    }

    #[test]
    fn json_comes_inline_from_a_file_or_from_stdin() -> anyhow::Result<()> {
        let mut no_stdin: &[u8] = b"";
        assert_eq!(load_json("--schema", r#"{"type":"object"}"#, &mut no_stdin)?["type"], "object");

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("schema.json");
        std::fs::write(&path, r#"{"type":"string"}"#)?;
        let from_file = load_json("--schema", &format!("@{}", path.display()), &mut no_stdin)?;
        assert_eq!(from_file["type"], "string");

        let mut stdin: &[u8] = b"[1, 2]";
        assert_eq!(load_json("--schema", "@-", &mut stdin)?, serde_json::json!([1, 2]));

        let missing = load_json("--schema", "@/no/such/file.json", &mut no_stdin);
        assert!(format!("{:#}", missing.expect_err("missing")).contains("/no/such/file.json"));
        let bad = load_json("--example", "{nope", &mut no_stdin).expect_err("invalid");
        assert!(format!("{bad:#}").contains("--example"), "{bad:#}");
        Ok(())
    }

    #[test]
    fn secrets_come_from_argv_the_environment_or_stdin() -> anyhow::Result<()> {
        let env = |v: &str| (v == "SECRET").then(|| "from-env".to_owned());
        let mut stdin: &[u8] = b"from-stdin\nrest\n";
        let inline = resolve_secret("--bearer", Some("t0k".into()), None, env, &mut stdin)?;
        assert_eq!(inline.as_deref(), Some("t0k"));
        let from_env = resolve_secret("--bearer", None, Some("SECRET"), env, &mut stdin)?;
        assert_eq!(from_env.as_deref(), Some("from-env"));
        let from_stdin = resolve_secret("--bearer", Some("-".into()), None, env, &mut stdin)?;
        assert_eq!(from_stdin.as_deref(), Some("from-stdin"));
        assert_eq!(resolve_secret("--bearer", None, None, env, &mut stdin)?, None);

        let unset = resolve_secret("--bearer", None, Some("UNSET"), env, &mut stdin);
        assert!(format!("{:#}", unset.expect_err("unset")).contains("UNSET"));
        let mut empty: &[u8] = b"";
        assert!(resolve_secret("--bearer", Some("-".into()), None, env, &mut empty).is_err());
        Ok(())
    }
}
