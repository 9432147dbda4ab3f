//! The arguments of `webhook create` and `webhook update` and the requests they make: every
//! endpoint option, and for updates the field mask of exactly the options given.

use clap::Args;
use hookd_proto::v1;

use crate::client::{
    args::{self, FormatArg, MethodArg},
    output::UpdateMask,
};

/// What `webhook update` changes.
#[derive(Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    url: Option<String>,
    /// Replaces the subscribed event types; repeat it.
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    #[arg(long)]
    active: Option<bool>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Go back to the dispatcher's default retry schedule.
    #[arg(long, conflicts_with = "retry_schedule")]
    default_retry_schedule: bool,
    /// Remove every custom header.
    #[arg(long, conflicts_with = "headers")]
    no_headers: bool,
    /// Send all the event data again (no field selection).
    #[arg(long, conflicts_with = "fields")]
    all_fields: bool,
    /// Stop using an OAuth2 credential.
    #[arg(long, conflicts_with = "credential")]
    no_credential: bool,
    /// Deliver without order again.
    #[arg(long, conflicts_with = "ordering_key")]
    no_ordering: bool,
    /// Deliver every subscribed event again.
    #[arg(long, conflicts_with = "filter")]
    no_filter: bool,
    /// Remove the rate limit.
    #[arg(long, conflicts_with_all = ["rate_limit", "rate_burst"])]
    no_rate_limit: bool,
}

impl UpdateArgs {
    /// The request, whose mask names exactly the fields given on the command line.
    pub(super) fn into_request(self) -> anyhow::Result<v1::UpdateWebhookRequest> {
        let mut mask = UpdateMask::default();
        let mut changes = v1::Webhook { id: self.id, ..Default::default() };
        if let Some(name) = self.name {
            changes.name = name;
            mask.set("name");
        }
        if let Some(url) = self.url {
            changes.url = url;
            mask.set("url");
        }
        if !self.event_types.is_empty() {
            changes.event_types = self.event_types;
            mask.set("event_types");
        }
        if let Some(active) = self.active {
            changes.active = active;
            mask.set("active");
        }
        self.endpoint.apply(&mut changes, &mut mask)?;
        // A masked field left unset goes back to its default: that is how these clear.
        mask.set_if(self.default_retry_schedule, "retry_policy");
        mask.set_if(self.no_headers, "headers");
        mask.set_if(self.all_fields, "fields");
        mask.set_if(self.no_credential, "credential_id");
        mask.set_if(self.no_ordering, "ordering_key");
        mask.set_if(self.no_filter, "filter");
        mask.set_if(self.no_rate_limit, "rate_limit");
        Ok(v1::UpdateWebhookRequest { webhook: Some(changes), update_mask: Some(mask.finish()?) })
    }
}

/// Endpoint options shared by `create` and `update`. Secrets (`--api-key`, `--basic`,
/// `--bearer`, the `--auth-header` value) also come from `--...-env VAR`, or from stdin when
/// the value is `-`, so they stay out of argv and the shell history.
#[derive(Args)]
pub struct EndpointArgs {
    #[arg(long)]
    description: Option<String>,
    /// Attempt timeout in milliseconds (1 to 30000); 0 for the dispatcher's default.
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// Retry delays in seconds, comma separated (e.g. `15,60,225`); empty for no retries.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    retry_schedule: Option<Vec<u32>>,
    /// A label for your own use, such as the app that owns the webhook; lists filter on it.
    #[arg(long)]
    app: Option<String>,
    /// HTTP method; GET and DELETE send no body (selected fields go in the query).
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// Custom header sent with every delivery, `Name: value`; repeat it. Replaces all headers.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = args::parse_header)]
    headers: Vec<v1::HttpHeader>,
    /// Authenticate with a header of your choosing, `Name: value` (value `-`: read stdin).
    #[arg(long, value_name = "NAME: VALUE", value_parser = args::parse_header, group = "auth")]
    auth_header: Option<v1::HttpHeader>,
    /// Authenticate with an API key (in the `x-api-key` header unless told otherwise).
    #[arg(long, value_name = "VALUE", groups = ["auth", "api_key_source"])]
    api_key: Option<String>,
    /// Like --api-key, with the key read from this environment variable.
    #[arg(long, value_name = "VAR", groups = ["auth", "api_key_source"])]
    api_key_env: Option<String>,
    /// Header (or query parameter) name of the API key.
    #[arg(long, value_name = "NAME", requires = "api_key_source")]
    api_key_name: Option<String>,
    /// Send the API key as a query parameter instead of a header.
    #[arg(long, requires = "api_key_source")]
    api_key_in_query: bool,
    /// Authenticate with HTTP basic auth.
    #[arg(long, value_name = "USER:PASS", group = "auth")]
    basic: Option<String>,
    /// Like --basic, with `USER:PASS` read from this environment variable.
    #[arg(long, value_name = "VAR", group = "auth")]
    basic_env: Option<String>,
    /// Authenticate with `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", group = "auth")]
    bearer: Option<String>,
    /// Like --bearer, with the token read from this environment variable.
    #[arg(long, value_name = "VAR", group = "auth")]
    bearer_env: Option<String>,
    /// No authentication besides the signature.
    #[arg(long, group = "auth")]
    no_auth: bool,
    /// An OAuth2 credential (`cred_...`) whose access token is sent as a bearer token.
    #[arg(long, value_name = "cred_...")]
    credential: Option<String>,
    /// JSON pointer into the event data (`/contact/email`); only these are sent. Repeat it.
    #[arg(long = "field", value_name = "/json/pointer")]
    fields: Vec<String>,
    /// Body layout: envelope (meta + data), flat, or the data alone.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Deactivate after this many consecutive failed attempts (0: never, though 410 Gone
    /// still does). With --health-no-success-secs it replaces the webhook's health policy;
    /// the one not given goes back to the deployment's.
    #[arg(long, value_name = "N")]
    health_max_failures: Option<u32>,
    /// ... and only once nothing succeeded for this many seconds (at most 30 days).
    #[arg(long, value_name = "SECS")]
    health_no_success_secs: Option<u64>,
    /// Deliver events with the same key one at a time, in publish order: `entity_id`, or a
    /// JSON pointer into the event (`/data/order_id`).
    #[arg(long, value_name = "entity_id|/json/pointer")]
    ordering_key: Option<String>,
    /// Deliver only events that pass this JSON filter (inline, `@file`, or `@-` for stdin),
    /// e.g. '{"/data/amount": {"$gte": 100}}'.
    #[arg(long, value_name = "JSON|@FILE")]
    filter: Option<String>,
    /// At most this many requests per second, across all dispatchers (1 to 10000).
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<u32>,
    /// With --rate-limit: how many may go at once after a quiet spell (default: one
    /// second's worth).
    #[arg(long, value_name = "N", requires = "rate_limit")]
    rate_burst: Option<u32>,
}

impl EndpointArgs {
    /// The authentication the options ask for; `None` when no auth option was given.
    fn auth(&self) -> anyhow::Result<Option<v1::EndpointAuth>> {
        use v1::endpoint_auth::Kind;
        let kind = if self.no_auth {
            Kind::None(v1::NoAuth {})
        } else if let Some(header) = &self.auth_header {
            let value = args::secret("--auth-header", Some(header.value.clone()), None)?
                .unwrap_or_default();
            Kind::Header(v1::HeaderAuth { name: header.name.clone(), value })
        } else if let Some(value) =
            args::secret("--api-key", self.api_key.clone(), self.api_key_env.as_deref())?
        {
            Kind::ApiKey(v1::ApiKeyAuth {
                name: self.api_key_name.clone().unwrap_or_default(),
                value,
                in_query: self.api_key_in_query,
            })
        } else if let Some(pair) =
            args::secret("--basic", self.basic.clone(), self.basic_env.as_deref())?
        {
            let (username, password) = args::parse_basic(&pair)?;
            Kind::Basic(v1::BasicAuth { username, password })
        } else if let Some(token) =
            args::secret("--bearer", self.bearer.clone(), self.bearer_env.as_deref())?
        {
            Kind::Bearer(v1::BearerAuth { token })
        } else {
            return Ok(None);
        };
        Ok(Some(v1::EndpointAuth { kind: Some(kind) }))
    }

    /// Copies the given options into `w` and names each in `mask`.
    fn apply(self, w: &mut v1::Webhook, mask: &mut UpdateMask) -> anyhow::Result<()> {
        let mut set = |path: &str| mask.set(path);
        if let Some(auth) = self.auth()? {
            w.auth = Some(auth);
            set("auth");
        }
        if let Some(description) = self.description {
            w.description = description;
            set("description");
        }
        if let Some(ms) = self.timeout_ms {
            w.attempt_timeout_ms = ms;
            set("attempt_timeout_ms");
        }
        if let Some(delay_seconds) = self.retry_schedule {
            w.retry_policy = Some(v1::RetryPolicy { delay_seconds });
            set("retry_policy");
        }
        if let Some(app) = self.app {
            w.app = app;
            set("app");
        }
        if let Some(method) = self.method {
            w.method = v1::HttpMethod::from(method).into();
            set("method");
        }
        if !self.headers.is_empty() {
            w.headers = self.headers;
            set("headers");
        }
        if let Some(credential) = self.credential {
            w.credential_id = credential;
            set("credential_id");
        }
        if !self.fields.is_empty() {
            w.fields = self.fields;
            set("fields");
        }
        if let Some(format) = self.format {
            w.format = v1::PayloadFormat::from(format).into();
            set("format");
        }
        if self.health_max_failures.is_some() || self.health_no_success_secs.is_some() {
            w.health_policy = Some(v1::HealthPolicy {
                max_failures: self.health_max_failures,
                no_success_secs: self.health_no_success_secs,
            });
            set("health_policy");
        }
        if let Some(key) = self.ordering_key {
            w.ordering_key = key;
            set("ordering_key");
        }
        if let Some(text) = &self.filter {
            w.filter = Some(filter_struct(args::json("--filter", text)?)?);
            set("filter");
        }
        if let Some(per_second) = self.rate_limit {
            w.rate_limit =
                Some(v1::RateLimit { per_second, burst: self.rate_burst.unwrap_or_default() });
            set("rate_limit");
        }
        Ok(())
    }
}

/// A filter as the API takes it: a JSON object.
fn filter_struct(json: serde_json::Value) -> anyhow::Result<prost_types::Struct> {
    match hookd_proto::convert::json_to_value(json).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Ok(s),
        _ => anyhow::bail!(
            "--filter: a filter is a JSON object, such as '{{\"/data/amount\": {{\"$gte\": 100}}}}'"
        ),
    }
}

pub(super) fn create_request(
    name: String,
    url: String,
    event_types: Vec<String>,
    active: bool,
    endpoint: EndpointArgs,
) -> anyhow::Result<v1::CreateWebhookRequest> {
    let mut w = v1::Webhook::default();
    endpoint.apply(&mut w, &mut UpdateMask::default())?;
    Ok(v1::CreateWebhookRequest {
        name,
        url,
        event_types,
        active,
        description: w.description,
        attempt_timeout_ms: w.attempt_timeout_ms,
        retry_policy: w.retry_policy,
        app: w.app,
        method: w.method,
        headers: w.headers,
        auth: w.auth,
        credential_id: w.credential_id,
        fields: w.fields,
        format: w.format,
        health_policy: w.health_policy,
        ordering_key: w.ordering_key,
        filter: w.filter,
        rate_limit: w.rate_limit,
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use clap::Parser;

    use super::*;
    use crate::client::webhook::WebhookCommand;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: WebhookCommand,
    }

    fn parse(args: &[&str]) -> anyhow::Result<WebhookCommand> {
        Ok(Cli::try_parse_from(std::iter::once("webhook").chain(args.iter().copied()))?.command)
    }

    fn update(args: &[&str]) -> anyhow::Result<v1::UpdateWebhookRequest> {
        match parse(&[&["update", "wh_1"], args].concat())? {
            WebhookCommand::Update { changes, .. } => changes.into_request(),
            _ => anyhow::bail!("not an update"),
        }
    }

    fn mask(request: &v1::UpdateWebhookRequest) -> Vec<&str> {
        request
            .update_mask
            .as_ref()
            .map_or_else(Vec::new, |m| m.paths.iter().map(String::as_str).collect())
    }

    #[test]
    fn update_masks_exactly_the_fields_given() -> anyhow::Result<()> {
        let r = update(&["--method", "put", "--header", "x-tenant: acme", "--format", "data"])?;
        assert_eq!(mask(&r), ["method", "headers", "format"]);
        let w = r.webhook.context("webhook")?;
        assert_eq!((w.id.as_str(), w.method), ("wh_1", i32::from(v1::HttpMethod::Put)));
        assert_eq!(w.headers[0].name, "x-tenant");

        let r = update(&["--bearer", "t0k", "--field", "/email", "--app", "shop"])?;
        assert_eq!(mask(&r), ["auth", "app", "fields"]);
        let r = update(&["--no-headers", "--all-fields", "--no-credential"])?;
        assert_eq!(mask(&r), ["headers", "fields", "credential_id"]);
        let w = r.webhook.context("webhook")?;
        assert!(w.headers.is_empty() && w.fields.is_empty() && w.credential_id.is_empty());
        let r = update(&["--active", "false", "--no-auth"])?;
        assert_eq!(mask(&r), ["active", "auth"]);

        let r = update(&[
            "--ordering-key",
            "/data/order_id",
            "--filter",
            r#"{"/data/amount": {"$gte": 100}}"#,
            "--rate-limit",
            "20",
            "--rate-burst",
            "5",
        ])?;
        assert_eq!(mask(&r), ["ordering_key", "filter", "rate_limit"]);
        let w = r.webhook.context("webhook")?;
        assert_eq!(w.ordering_key, "/data/order_id");
        assert_eq!(w.rate_limit, Some(v1::RateLimit { per_second: 20, burst: 5 }));
        assert!(w.filter.is_some_and(|f| f.fields.contains_key("/data/amount")));
        let r = update(&["--no-ordering", "--no-filter", "--no-rate-limit"])?;
        assert_eq!(mask(&r), ["ordering_key", "filter", "rate_limit"]);
        assert!(update(&["--filter", "[1]"]).is_err(), "a filter is an object");
        assert!(update(&["--rate-burst", "5"]).is_err(), "a burst needs a rate");

        assert!(update(&[]).is_err(), "nothing to change");
        assert!(update(&["--header", "x: 1", "--no-headers"]).is_err(), "conflicting flags");
        Ok(())
    }

    #[test]
    fn create_carries_every_endpoint_option() -> anyhow::Result<()> {
        let command = parse(&[
            "create",
            "--name",
            "crm",
            "--url",
            "https://crm.example/h",
            "--event-type",
            "a",
            "--event-type",
            "b",
            "--app",
            "shop",
            "--method",
            "patch",
            "--header",
            "x-a: 1",
            "--api-key",
            "k3y",
            "--api-key-name",
            "token",
            "--api-key-in-query",
            "--credential",
            "cred_1",
            "--field",
            "/email",
            "--format",
            "flat",
            "--timeout-ms",
            "500",
            "--retry-schedule",
            "1,2",
        ])?;
        let WebhookCommand::Create { name, url, event_types, active, endpoint, .. } = command
        else {
            anyhow::bail!("not a create");
        };
        let r = create_request(name, url, event_types, active, endpoint)?;
        assert_eq!(r.event_types, ["a", "b"]);
        assert_eq!((r.app.as_str(), r.credential_id.as_str()), ("shop", "cred_1"));
        assert_eq!(r.method, i32::from(v1::HttpMethod::Patch));
        assert_eq!(r.format, i32::from(v1::PayloadFormat::Flat));
        assert_eq!((r.attempt_timeout_ms, r.fields.len(), r.headers.len()), (500, 1, 1));
        assert_eq!(r.retry_policy.map(|p| p.delay_seconds), Some(vec![1, 2]));
        let Some(v1::endpoint_auth::Kind::ApiKey(key)) = r.auth.and_then(|a| a.kind) else {
            anyhow::bail!("no API key");
        };
        assert_eq!((key.name.as_str(), key.value.as_str(), key.in_query), ("token", "k3y", true));
        Ok(())
    }

    #[test]
    fn basic_auth_splits_user_and_password() -> anyhow::Result<()> {
        let r = update(&["--basic", "ada:pa:ss"])?;
        let Some(v1::endpoint_auth::Kind::Basic(b)) =
            r.webhook.and_then(|w| w.auth).and_then(|a| a.kind)
        else {
            anyhow::bail!("no basic auth");
        };
        assert_eq!((b.username.as_str(), b.password.as_str()), ("ada", "pa:ss"));
        Ok(())
    }
}
