//! `hookd credential ...`: OAuth2 credentials (token endpoint, client, grant) that webhooks
//! reference with `--credential cred_...`. Secrets may come from the environment or stdin.

use std::collections::HashMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use hookd_proto::{
    convert::from_timestamp,
    v1::{self, credential_service_client::CredentialServiceClient},
};

use super::{
    Connection, Output, Paging,
    args::{self, GrantTypeArg, TokenMethodArg},
    connect,
    output::{UpdateMask, time_json},
    status_error,
    table::Table,
};

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// Create an OAuth2 credential.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        token_url: String,
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        options: CredentialArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// List credentials (secrets masked).
    List {
        #[command(flatten)]
        page: Paging,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one credential (secrets masked).
    Get {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Change the fields given on the command line, and only those; drops the cached token.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        token_url: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[command(flatten)]
        options: CredentialArgs,
        /// Remove every extra token request parameter.
        #[arg(long, conflicts_with = "params")]
        no_params: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a credential no webhook references.
    Delete {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Options shared by `create` and `update`.
#[derive(Args)]
pub struct CredentialArgs {
    /// How the token endpoint is called: a form-encoded POST, or GET with a query string.
    #[arg(long, value_enum)]
    method: Option<TokenMethodArg>,
    /// The client secret (`-`: read one line of stdin).
    #[arg(long, value_name = "SECRET", group = "client_secret_source")]
    client_secret: Option<String>,
    /// Like --client-secret, read from this environment variable.
    #[arg(long, value_name = "VAR", group = "client_secret_source")]
    client_secret_env: Option<String>,
    #[arg(long, value_enum)]
    grant_type: Option<GrantTypeArg>,
    /// The authorization code to redeem (authorization_code grant; `-`: read stdin).
    #[arg(long, group = "code_source")]
    code: Option<String>,
    /// Like --code, read from this environment variable.
    #[arg(long, value_name = "VAR", group = "code_source")]
    code_env: Option<String>,
    /// Space-separated scopes.
    #[arg(long)]
    scope: Option<String>,
    /// Extra token request parameter, `key=value`; repeat it. Replaces all extra parameters.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = args::parse_key_value)]
    params: Vec<(String, String)>,
}

impl CredentialArgs {
    fn apply(self, c: &mut v1::Credential, mask: &mut UpdateMask) -> anyhow::Result<()> {
        let mut set = |path: &str| mask.set(path);
        if let Some(method) = self.method {
            c.method = v1::TokenMethod::from(method).into();
            set("method");
        }
        if let Some(secret) =
            args::secret("--client-secret", self.client_secret, self.client_secret_env.as_deref())?
        {
            c.client_secret = secret;
            set("client_secret");
        }
        if let Some(grant) = self.grant_type {
            c.grant_type = v1::GrantType::from(grant).into();
            set("grant_type");
        }
        if let Some(code) = args::secret("--code", self.code, self.code_env.as_deref())? {
            c.code = code;
            set("code");
        }
        if let Some(scope) = self.scope {
            c.scope = scope;
            set("scope");
        }
        if !self.params.is_empty() {
            c.extra_params = self.params.into_iter().collect::<HashMap<_, _>>();
            set("extra_params");
        }
        Ok(())
    }
}

pub async fn run(command: CredentialCommand) -> anyhow::Result<()> {
    match command {
        CredentialCommand::Create { name, token_url, client_id, options, conn } => {
            let mut credential =
                v1::Credential { name, token_url, client_id, ..Default::default() };
            options.apply(&mut credential, &mut UpdateMask::default())?;
            let mut client = CredentialServiceClient::new(connect(&conn).await?);
            let response = client
                .create_credential(v1::CreateCredentialRequest { credential: Some(credential) })
                .await
                .map_err(status_error)?;
            print_credential(conn.output, response.into_inner().credential)?;
        }
        CredentialCommand::List { page, conn } => {
            let mut client = CredentialServiceClient::new(connect(&conn).await?);
            let response = client
                .list_credentials(v1::ListCredentialsRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_credentials(conn.output, &response.credentials, &response.next_page_token);
        }
        CredentialCommand::Get { id, conn } => {
            let mut client = CredentialServiceClient::new(connect(&conn).await?);
            let response = client
                .get_credential(v1::GetCredentialRequest { id })
                .await
                .map_err(status_error)?;
            print_credential(conn.output, response.into_inner().credential)?;
        }
        CredentialCommand::Update { id, name, token_url, client_id, options, no_params, conn } => {
            let mut mask = UpdateMask::default();
            let mut changes = v1::Credential { id, ..Default::default() };
            if let Some(name) = name {
                changes.name = name;
                mask.set("name");
            }
            if let Some(url) = token_url {
                changes.token_url = url;
                mask.set("token_url");
            }
            if let Some(client_id) = client_id {
                changes.client_id = client_id;
                mask.set("client_id");
            }
            options.apply(&mut changes, &mut mask)?;
            // Masked and empty: the parameters are cleared.
            mask.set_if(no_params, "extra_params");
            let update_mask = Some(mask.finish()?);
            let mut client = CredentialServiceClient::new(connect(&conn).await?);
            let response = client
                .update_credential(v1::UpdateCredentialRequest {
                    credential: Some(changes),
                    update_mask,
                })
                .await
                .map_err(status_error)?;
            print_credential(conn.output, response.into_inner().credential)?;
        }
        CredentialCommand::Delete { id, conn } => {
            let mut client = CredentialServiceClient::new(connect(&conn).await?);
            client
                .delete_credential(v1::DeleteCredentialRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            conn.output.done("deleted", "", &id);
        }
    }
    Ok(())
}

fn credential_json(c: &v1::Credential) -> serde_json::Value {
    // Sorted, so the output is stable from one run to the next.
    let params: std::collections::BTreeMap<_, _> = c.extra_params.iter().collect();
    serde_json::json!({
        "id": c.id, "name": c.name, "token_url": c.token_url,
        "method": args::token_method_name(c.method), "client_id": c.client_id,
        "client_secret": c.client_secret, "grant_type": args::grant_type_name(c.grant_type),
        "code": c.code, "scope": c.scope, "extra_params": params,
        "created_at": time_json(c.created_at.as_ref()), "updated_at": time_json(c.updated_at.as_ref()),
        "token_expires_at": time_json(c.token_expires_at.as_ref()), "last_error": c.last_error,
    })
}

fn token_state(c: &v1::Credential) -> String {
    if !c.last_error.is_empty() {
        return format!("error: {}", c.last_error);
    }
    c.token_expires_at
        .as_ref()
        .and_then(from_timestamp)
        .map_or_else(|| "none cached".to_owned(), |t| format!("expires {}", t.to_rfc3339()))
}

fn print_credential(output: Output, credential: Option<v1::Credential>) -> anyhow::Result<()> {
    let c = credential.context("control plane sent no credential")?;
    if output == Output::Json {
        println!("{}", credential_json(&c));
        return Ok(());
    }
    println!("credential {} ({})", c.name, c.id);
    println!("  token url      {} {}", args::token_method_name(c.method), c.token_url);
    println!("  grant type     {}", args::grant_type_name(c.grant_type));
    println!("  client id      {}", c.client_id);
    println!("  client secret  {}", c.client_secret);
    if !c.code.is_empty() {
        println!("  code           {}", c.code);
    }
    if !c.scope.is_empty() {
        println!("  scope          {}", c.scope);
    }
    let params: std::collections::BTreeMap<_, _> = c.extra_params.iter().collect();
    for (k, v) in params {
        println!("  param          {k}={v}");
    }
    println!("  token          {}", token_state(&c));
    Ok(())
}

fn print_credentials(output: Output, credentials: &[v1::Credential], next_page_token: &str) {
    if output == Output::Json {
        let items: Vec<_> = credentials.iter().map(credential_json).collect();
        println!(
            "{}",
            serde_json::json!({ "credentials": items, "next_page_token": next_page_token })
        );
        return;
    }
    let mut table = Table::new(&["NAME", "ID", "GRANT TYPE", "CLIENT ID", "TOKEN", "TOKEN URL"]);
    for c in credentials {
        table.row(vec![
            c.name.clone(),
            c.id.clone(),
            args::grant_type_name(c.grant_type).to_owned(),
            c.client_id.clone(),
            token_state(c),
            c.token_url.clone(),
        ]);
    }
    table.print();
    if !next_page_token.is_empty() {
        println!("next page: --page-token {next_page_token}");
    }
}
