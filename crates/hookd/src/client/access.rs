//! `hookd access ...`: the tenant's roles and API tokens, `whoami`, and portal links into the
//! web console. A new token's value is printed once, by `token create`; hookd cannot show it
//! again.

use anyhow::Context;
use clap::Subcommand;
use hookd_proto::v1::{self, access_service_client::AccessServiceClient};

use super::{Connection, Output, connect, output::time_json, status_error, table::Table};

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Manage roles: named sets of permissions (`webhooks.read`, `webhooks.manage`,
    /// `events.publish`, `tenant.admin`). `owner` and `viewer` are built in.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the tenant, role and permissions of the token in use.
    Whoami {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a short-lived link into the web console for one role of your tenant, optionally
    /// limited to the webhooks of one app label (for one of your customers). It can be
    /// opened until it expires; the session gets the role's webhook permissions only.
    PortalLink {
        /// The role the session gets (`owner`, `viewer` or a custom one).
        #[arg(long)]
        role: String,
        /// Limit the session to webhooks with this app label.
        #[arg(long, default_value = "")]
        app: String,
        /// How long the link can be opened, in seconds (default 900, at most 604800).
        #[arg(long = "ttl-secs", default_value_t = 0)]
        ttl_secs: u32,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Create a custom role.
    Create {
        name: String,
        /// A permission to grant; repeat for several.
        #[arg(long = "permission", short = 'p')]
        permissions: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the built-in and custom roles.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Replace a custom role's permissions.
    Update {
        name: String,
        #[arg(long = "permission", short = 'p')]
        permissions: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a custom role no token has.
    Delete {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its value is printed once.
    Create {
        /// A label, such as `ci deploy`.
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the tenant's tokens (never their values).
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a token by id (`tok_...`).
    Revoke {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: AccessCommand) -> anyhow::Result<()> {
    match command {
        AccessCommand::Role(c) => role(c).await,
        AccessCommand::Token(c) => token(c).await,
        AccessCommand::PortalLink { role, app, ttl_secs, conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let link = client
                .create_portal_link(v1::CreatePortalLinkRequest {
                    role,
                    app,
                    ttl_seconds: ttl_secs,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match conn.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "url": link.url, "expires_at": time_json(link.expires_at.as_ref()) })
                ),
                Output::Text => {
                    println!("{}", link.url);
                    let until = time_json(link.expires_at.as_ref());
                    eprintln!("(valid until {})", until.as_str().unwrap_or("?"));
                }
            }
            Ok(())
        }
        AccessCommand::Whoami { conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let me =
                client.who_am_i(v1::WhoAmIRequest {}).await.map_err(status_error)?.into_inner();
            match conn.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "tenant": me.tenant, "token_id": me.token_id, "role": me.role,
                        "permissions": me.permissions, "app": me.app,
                    })
                ),
                Output::Text => {
                    println!("tenant       {}", me.tenant);
                    println!("token        {}", me.token_id);
                    println!("role         {}", me.role);
                    println!("permissions  {}", me.permissions.join(", "));
                    if !me.app.is_empty() {
                        println!("app label    {}", me.app);
                    }
                }
            }
            Ok(())
        }
    }
}

async fn role(command: RoleCommand) -> anyhow::Result<()> {
    match command {
        RoleCommand::Create { name, permissions, conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let role = client
                .create_role(v1::CreateRoleRequest {
                    role: Some(v1::Role { name, permissions, builtin: false }),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .role
                .context("control plane sent no role")?;
            print_roles(conn.output, &[role], false);
        }
        RoleCommand::List { conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let roles = client
                .list_roles(v1::ListRolesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .roles;
            print_roles(conn.output, &roles, true);
        }
        RoleCommand::Update { name, permissions, conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let role = client
                .update_role(v1::UpdateRoleRequest { name, permissions })
                .await
                .map_err(status_error)?
                .into_inner()
                .role
                .context("control plane sent no role")?;
            print_roles(conn.output, &[role], false);
        }
        RoleCommand::Delete { name, conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            client
                .delete_role(v1::DeleteRoleRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            conn.output.done("deleted", "role", &name);
        }
    }
    Ok(())
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, role, conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let created = client
                .create_token(v1::CreateTokenRequest { name, role })
                .await
                .map_err(status_error)?
                .into_inner();
            let token = created.token.context("control plane sent no token")?;
            match conn.output {
                Output::Json => {
                    let mut json = token_json(&token);
                    json["secret"] = created.secret.into();
                    println!("{json}");
                }
                Output::Text => {
                    println!("created token {} ({}, role {})", token.id, token.name, token.role);
                    println!("{}", created.secret);
                    println!("(shown once: store it now; hookd keeps only a hash)");
                }
            }
        }
        TokenCommand::List { conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            let tokens = client
                .list_tokens(v1::ListTokensRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tokens;
            match conn.output {
                Output::Json => {
                    let items: Vec<_> = tokens.iter().map(token_json).collect();
                    println!("{}", serde_json::json!({ "tokens": items }));
                }
                Output::Text => {
                    let mut table = Table::new(&["ID", "NAME", "ROLE", "ENDS IN", "CREATED"]);
                    for t in &tokens {
                        let created = time_json(t.created_at.as_ref());
                        table.row(vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.role.clone(),
                            format!("…{}", t.last_four),
                            created.as_str().unwrap_or_default().to_owned(),
                        ]);
                    }
                    table.print();
                }
            }
        }
        TokenCommand::Revoke { id, conn } => {
            let mut client = AccessServiceClient::new(connect(&conn).await?);
            client
                .revoke_token(v1::RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            conn.output.done("revoked", "", &id);
        }
    }
    Ok(())
}

fn role_json(r: &v1::Role) -> serde_json::Value {
    serde_json::json!({ "name": r.name, "permissions": r.permissions, "builtin": r.builtin })
}

fn token_json(t: &v1::ApiToken) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "name": t.name, "role": t.role, "last_four": t.last_four,
        "created_at": time_json(t.created_at.as_ref()),
    })
}

/// A list prints `{"roles": [...]}` in JSON; a single role (create, update) the role itself.
fn print_roles(output: Output, roles: &[v1::Role], list: bool) {
    match output {
        Output::Json if list => {
            let items: Vec<_> = roles.iter().map(role_json).collect();
            println!("{}", serde_json::json!({ "roles": items }));
        }
        Output::Json => {
            for r in roles {
                println!("{}", role_json(r));
            }
        }
        Output::Text => {
            let mut table = Table::new(&["NAME", "BUILT IN", "PERMISSIONS"]);
            for r in roles {
                table.row(vec![
                    r.name.clone(),
                    if r.builtin { "yes" } else { "no" }.to_owned(),
                    r.permissions.join(", "),
                ]);
            }
            table.print();
        }
    }
}
