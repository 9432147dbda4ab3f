//! `hookd webhook ...`: create, read, change, (de)activate, duplicate, test and delete
//! webhook definitions with every endpoint option (method, headers, auth, fields, format).

use anyhow::Context;
use clap::{Args, Subcommand};
use hookd_proto::{
    convert::from_timestamp,
    v1::{self, webhook_service_client::WebhookServiceClient},
};

use super::{
    Connection, Output, Paging,
    args::{self, FormatArg, MethodArg, StatusFilterArg},
    attempt_json, attempt_summary, connect, status_error,
    table::Table,
    time_json,
};

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        /// Event type to subscribe to; repeat it, or `*` for all.
        #[arg(long = "event-type", required = true)]
        event_types: Vec<String>,
        /// Start active (new webhooks are inactive otherwise).
        #[arg(long)]
        active: bool,
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// List webhooks, with their last attempt and delivery counts.
    List {
        /// Only webhooks whose name contains this text (case-insensitive).
        #[arg(long)]
        name_contains: Option<String>,
        /// Only webhooks with exactly this app label.
        #[arg(long)]
        app: Option<String>,
        /// Only webhooks that receive this event type (directly or through `*`).
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long, value_enum)]
        status: Option<StatusFilterArg>,
        #[command(flatten)]
        page: Paging,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one webhook.
    Get {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Change the fields given on the command line, and only those.
    Update {
        #[command(flatten)]
        changes: UpdateArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a webhook and its delivery history.
    Delete {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Start deliveries to a webhook.
    Activate {
        id: String,
        /// Deliver the events kept while it was deactivated (in order, at a bounded rate)
        /// instead of discarding them.
        #[arg(long)]
        replay: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop deliveries to a webhook.
    Deactivate {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Copy a webhook into a new, inactive one named "<name> (copy)", with its own signing
    /// secret.
    Duplicate {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the webhook's current signing secret (`whsec_…`).
    Secret {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Issue a new signing secret; the old one keeps signing during a grace period.
    RotateSecret {
        id: String,
        /// Seconds the old secret keeps signing (default: the control plane's, 24 h).
        #[arg(long, conflicts_with = "expire_now")]
        grace_secs: Option<u32>,
        /// Stop signing with the old secret at once.
        #[arg(long)]
        expire_now: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Send a sample event now and show what happened; exits non-zero if the attempt failed.
    Test {
        id: String,
        /// The event type to send; one the webhook receives.
        #[arg(long)]
        event_type: String,
        /// Event data as JSON or `@file.json`; the catalog's example (or a sample) otherwise.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

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
}

impl UpdateArgs {
    /// The request, whose mask names exactly the fields given on the command line.
    fn into_request(self) -> anyhow::Result<v1::UpdateWebhookRequest> {
        let mut paths = Vec::new();
        let mut changes = v1::Webhook { id: self.id, ..Default::default() };
        if let Some(name) = self.name {
            changes.name = name;
            paths.push("name".to_owned());
        }
        if let Some(url) = self.url {
            changes.url = url;
            paths.push("url".to_owned());
        }
        if !self.event_types.is_empty() {
            changes.event_types = self.event_types;
            paths.push("event_types".to_owned());
        }
        if let Some(active) = self.active {
            changes.active = active;
            paths.push("active".to_owned());
        }
        self.endpoint.apply(&mut changes, &mut paths)?;
        // A masked field left unset goes back to its default: that is how these clear.
        for (flag, path) in [
            (self.default_retry_schedule, "retry_policy"),
            (self.no_headers, "headers"),
            (self.all_fields, "fields"),
            (self.no_credential, "credential_id"),
        ] {
            if flag {
                paths.push(path.to_owned());
            }
        }
        if paths.is_empty() {
            anyhow::bail!("nothing to change: pass at least one field to change (see --help)");
        }
        Ok(v1::UpdateWebhookRequest {
            webhook: Some(changes),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
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

    /// Copies the given options into `w` and names each in `paths` (the update mask).
    fn apply(self, w: &mut v1::Webhook, paths: &mut Vec<String>) -> anyhow::Result<()> {
        let mut set = |path: &str| paths.push(path.to_owned());
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
        Ok(())
    }
}

fn create_request(
    name: String,
    url: String,
    event_types: Vec<String>,
    active: bool,
    endpoint: EndpointArgs,
) -> anyhow::Result<v1::CreateWebhookRequest> {
    let mut w = v1::Webhook::default();
    endpoint.apply(&mut w, &mut Vec::new())?;
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
    })
}

pub async fn run(command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Create { name, url, event_types, active, endpoint, conn } => {
            let request = create_request(name, url, event_types, active, endpoint)?;
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client.create_webhook(request).await.map_err(status_error)?.into_inner();
            print_webhook_with_secret(conn.output, response.webhook, &response.signing_secret)?;
        }
        WebhookCommand::List { name_contains, app, event_type, status, page, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .list_webhooks(v1::ListWebhooksRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                    name_contains: name_contains.unwrap_or_default(),
                    app: app.unwrap_or_default(),
                    event_type: event_type.unwrap_or_default(),
                    status: status.map_or(0, |s| v1::StatusFilter::from(s).into()),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_webhooks(conn.output, &response.webhooks, &response.next_page_token);
        }
        WebhookCommand::Get { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response =
                client.get_webhook(v1::GetWebhookRequest { id }).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Update { changes, conn } => {
            let request = changes.into_request()?;
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client.update_webhook(request).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Delete { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            client
                .delete_webhook(v1::DeleteWebhookRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            match conn.output {
                Output::Text => println!("deleted {id}"),
                Output::Json => println!("{}", serde_json::json!({ "deleted": id })),
            }
        }
        WebhookCommand::Activate { id, replay, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .activate_webhook(v1::ActivateWebhookRequest { id, replay })
                .await
                .map_err(status_error)?
                .into_inner();
            if conn.output == Output::Text && (response.replayed > 0 || response.discarded > 0) {
                eprintln!(
                    "replaying {} kept events, discarded {}",
                    response.replayed, response.discarded
                );
            }
            print_webhook(conn.output, response.webhook)?;
        }
        WebhookCommand::Deactivate { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .deactivate_webhook(v1::DeactivateWebhookRequest { id })
                .await
                .map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Duplicate { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .duplicate_webhook(v1::DuplicateWebhookRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_webhook_with_secret(conn.output, response.webhook, &response.signing_secret)?;
        }
        WebhookCommand::Secret { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let secret = client
                .get_webhook_secret(v1::GetWebhookSecretRequest { id })
                .await
                .map_err(status_error)?
                .into_inner()
                .signing_secret;
            match conn.output {
                Output::Json => println!("{}", serde_json::json!({ "signing_secret": secret })),
                Output::Text => println!("{secret}"),
            }
        }
        WebhookCommand::RotateSecret { id, grace_secs, expire_now, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let r = client
                .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
                    id,
                    grace_seconds: grace_secs.unwrap_or(0),
                    expire_now,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let until =
                r.previous_expires_at.as_ref().and_then(from_timestamp).map(|t| t.to_rfc3339());
            match conn.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "signing_secret": r.signing_secret,
                        "previous_expires_at": until,
                    })
                ),
                Output::Text => {
                    println!("new signing secret  {}", r.signing_secret);
                    match until {
                        Some(t) => println!("the old secret signs too until {t}"),
                        None => println!("the old secret no longer signs"),
                    }
                }
            }
        }
        WebhookCommand::Test { id, event_type, data, conn } => {
            // Parsed before connecting, so a typo in the JSON costs no round trip.
            let data = data
                .map(|d| args::json("--data", &d))
                .transpose()?
                .map(hookd_proto::convert::json_to_value);
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .test_webhook(v1::TestWebhookRequest { id, event_type, data })
                .await
                .map_err(status_error)?
                .into_inner();
            let attempt = response.attempt.unwrap_or_default();
            print_test(conn.output, &attempt, &response.payload, &response.url);
            anyhow::ensure!(
                attempt.success,
                "the test attempt failed: {}",
                attempt_summary(&attempt)
            );
        }
    }
    Ok(())
}

fn print_test(output: Output, attempt: &v1::Attempt, payload: &str, url: &str) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "url": url, "payload": payload, "attempt": attempt_json(attempt) })
        ),
        Output::Text => {
            println!("test send to {url}");
            println!(
                "  result    {}: {}",
                if attempt.success { "succeeded" } else { "failed" },
                attempt_summary(attempt)
            );
            println!("  request headers:");
            for h in &attempt.request_headers {
                println!("    {}: {}", h.name, h.value);
            }
            println!("  payload   {}", if payload.is_empty() { "(none)" } else { payload });
            println!(
                "  response  {}",
                if attempt.response_body.is_empty() { "(empty)" } else { &attempt.response_body }
            );
        }
    }
}

fn auth_json(auth: Option<&v1::EndpointAuth>) -> serde_json::Value {
    use v1::endpoint_auth::Kind;
    match auth.and_then(|a| a.kind.as_ref()) {
        None | Some(Kind::None(_)) => serde_json::json!({ "type": "none" }),
        Some(Kind::Header(h)) => {
            serde_json::json!({ "type": "header", "name": h.name, "value": h.value })
        }
        Some(Kind::ApiKey(k)) => serde_json::json!({
            "type": "api_key", "name": k.name, "value": k.value, "in_query": k.in_query,
        }),
        Some(Kind::Basic(b)) => {
            serde_json::json!({ "type": "basic", "username": b.username, "password": b.password })
        }
        Some(Kind::Bearer(b)) => serde_json::json!({ "type": "bearer", "token": b.token }),
    }
}

/// One line for people; secrets are already masked by the control plane.
fn auth_text(auth: Option<&v1::EndpointAuth>) -> String {
    use v1::endpoint_auth::Kind;
    match auth.and_then(|a| a.kind.as_ref()) {
        None | Some(Kind::None(_)) => "none".to_owned(),
        Some(Kind::Header(h)) => format!("header {}: {}", h.name, h.value),
        Some(Kind::ApiKey(k)) => format!(
            "api key in {} {}: {}",
            if k.in_query { "query parameter" } else { "header" },
            if k.name.is_empty() { "x-api-key" } else { &k.name },
            k.value
        ),
        Some(Kind::Basic(b)) => format!("basic {}:{}", b.username, b.password),
        Some(Kind::Bearer(b)) => format!("bearer {}", b.token),
    }
}

fn stats_json(s: Option<&v1::WebhookStats>) -> serde_json::Value {
    let s = s.copied().unwrap_or_default();
    serde_json::json!({
        "last_attempt_at": time_json(s.last_attempt_at.as_ref()),
        "last_attempt_status": s.last_attempt_status,
        "last_attempt_success": s.last_attempt_success,
        "triggered": s.triggered, "succeeded": s.succeeded, "failed": s.failed,
    })
}

pub(super) fn webhook_json(w: &v1::Webhook) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "name": w.name, "url": w.url, "url_ascii": w.url_ascii,
        "event_types": w.event_types,
        "active": w.active, "description": w.description, "app": w.app,
        "method": args::method_name(w.method),
        "headers": w.headers.iter().map(|h| serde_json::json!({ "name": h.name, "value": h.value })).collect::<Vec<_>>(),
        "auth": auth_json(w.auth.as_ref()),
        "credential_id": (!w.credential_id.is_empty()).then_some(&w.credential_id),
        "fields": w.fields, "format": args::format_name(w.format),
        "attempt_timeout_ms": w.attempt_timeout_ms,
        "retry_schedule": w.retry_policy.as_ref().map(|p| p.delay_seconds.clone()),
        "stats": stats_json(w.stats.as_ref()),
        "created_at": time_json(w.created_at.as_ref()), "updated_at": time_json(w.updated_at.as_ref()),
    })
}

/// The URL as requested (punycode host, percent-encoded path) when it reads differently
/// from the URL as typed, beyond a trailing slash: what the egress policy checks.
fn ascii_url_if_different(w: &v1::Webhook) -> Option<&str> {
    let differs =
        !w.url_ascii.is_empty() && w.url_ascii.trim_end_matches('/') != w.url.trim_end_matches('/');
    differs.then_some(w.url_ascii.as_str())
}

fn last_attempt(s: Option<&v1::WebhookStats>) -> String {
    let Some(s) = s else { return "-".to_owned() };
    let Some(at) = s.last_attempt_at.as_ref().and_then(from_timestamp) else {
        return "-".to_owned();
    };
    let status = if s.last_attempt_status == 0 {
        "no answer".to_owned()
    } else {
        s.last_attempt_status.to_string()
    };
    format!(
        "{} {status}{}",
        at.format("%Y-%m-%d %H:%M:%S"),
        if s.last_attempt_success { "" } else { " (failed)" }
    )
}

/// A webhook and its signing secret, which the control plane shows only at creation.
fn print_webhook_with_secret(
    output: Output,
    webhook: Option<v1::Webhook>,
    secret: &str,
) -> anyhow::Result<()> {
    if output == Output::Json {
        let w = webhook.context("control plane sent no webhook")?;
        let mut json = webhook_json(&w);
        json["signing_secret"] = serde_json::Value::from(secret);
        println!("{json}");
        return Ok(());
    }
    print_webhook(output, webhook)?;
    println!("  signing secret {secret}");
    println!("  (verify deliveries with it; `hookd webhook secret ID` shows it again)");
    Ok(())
}

fn print_webhook(output: Output, webhook: Option<v1::Webhook>) -> anyhow::Result<()> {
    let w = webhook.context("control plane sent no webhook")?;
    if output == Output::Json {
        println!("{}", webhook_json(&w));
        return Ok(());
    }
    let stats = w.stats.unwrap_or_default();
    let retries = w.retry_policy.as_ref().map_or_else(
        || "dispatcher default".to_owned(),
        |p| {
            if p.delay_seconds.is_empty() {
                "none".to_owned()
            } else {
                p.delay_seconds.iter().map(|d| format!("{d}s")).collect::<Vec<_>>().join(", ")
            }
        },
    );
    println!("webhook {} ({})", w.name, w.id);
    println!("  status       {}", if w.active { "active" } else { "inactive" });
    if let Some(h) = w.health.as_ref().filter(|_| !w.active) {
        let by = match v1::DeactivatedBy::try_from(h.deactivated_by) {
            Ok(v1::DeactivatedBy::System) => "the system",
            Ok(v1::DeactivatedBy::User) => "a user",
            _ => "unknown",
        };
        let since = h.deactivated_at.map(|t| t.seconds).unwrap_or_default();
        let since = chrono::DateTime::from_timestamp(since, 0).unwrap_or_default();
        println!("  deactivated  by {by} at {since}: {}", h.deactivation_reason);
        println!("  buffered     {} events (replay with `activate --replay`)", h.buffered);
    }
    if let Some(h) = w.health.as_ref().filter(|h| h.expired > 0) {
        println!("  expired      {} kept events passed the buffer window unreplayed", h.expired);
    }
    if let Some(p) = &w.health_policy {
        let failures = p.max_failures.map_or_else(|| "default".to_owned(), |n| n.to_string());
        let quiet = p.no_success_secs.map_or_else(|| "default".to_owned(), |s| format!("{s}s"));
        println!("  health       deactivate after {failures} failures and {quiet} without success");
    }
    println!("  url          {} {}", args::method_name(w.method), w.url);
    if let Some(ascii) = ascii_url_if_different(&w) {
        println!("  requested as {ascii}");
    }
    println!("  event types  {}", w.event_types.join(", "));
    if !w.app.is_empty() {
        println!("  app          {}", w.app);
    }
    if !w.description.is_empty() {
        println!("  description  {}", w.description);
    }
    for h in &w.headers {
        println!("  header       {}: {}", h.name, h.value);
    }
    println!("  auth         {}", auth_text(w.auth.as_ref()));
    if !w.credential_id.is_empty() {
        println!("  credential   {}", w.credential_id);
    }
    println!(
        "  payload      {}{}",
        args::format_name(w.format),
        if w.fields.is_empty() {
            String::new()
        } else {
            format!(", fields {}", w.fields.join(" "))
        }
    );
    println!(
        "  timeout      {}",
        if w.attempt_timeout_ms == 0 {
            "dispatcher default".to_owned()
        } else {
            format!("{} ms", w.attempt_timeout_ms)
        }
    );
    println!("  retries      {retries}");
    println!("  last attempt {}", last_attempt(w.stats.as_ref()));
    println!(
        "  deliveries   {} triggered, {} succeeded, {} failed",
        stats.triggered, stats.succeeded, stats.failed
    );
    Ok(())
}

fn print_webhooks(output: Output, webhooks: &[v1::Webhook], next_page_token: &str) {
    match output {
        Output::Json => {
            let items: Vec<_> = webhooks.iter().map(webhook_json).collect();
            println!(
                "{}",
                serde_json::json!({ "webhooks": items, "next_page_token": next_page_token })
            );
        }
        Output::Text => {
            let mut table = Table::new(&[
                "NAME",
                "ID",
                "STATUS",
                "METHOD",
                "EVENT TYPES",
                "LAST ATTEMPT",
                "TRIGGERED",
                "SUCCEEDED",
                "FAILED",
                "URL",
            ]);
            for w in webhooks {
                let stats = w.stats.unwrap_or_default();
                table.row(vec![
                    w.name.clone(),
                    w.id.clone(),
                    if w.active { "active" } else { "inactive" }.to_owned(),
                    args::method_name(w.method).to_owned(),
                    w.event_types.join(","),
                    last_attempt(w.stats.as_ref()),
                    stats.triggered.to_string(),
                    stats.succeeded.to_string(),
                    stats.failed.to_string(),
                    match ascii_url_if_different(w) {
                        Some(ascii) => format!("{} ({ascii})", w.url),
                        None => w.url.clone(),
                    },
                ]);
            }
            table.print();
            if !next_page_token.is_empty() {
                println!("next page: --page-token {next_page_token}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

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
