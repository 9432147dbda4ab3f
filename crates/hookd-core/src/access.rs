//! Who may do what: the permissions API tokens carry through their role, the built-in roles
//! every tenant has, and the rules for tenant, role and token names.

use std::fmt;

use crate::InvalidField;

/// One thing a token may do. Stored and sent as its dotted name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read webhooks, deliveries, credentials and the event-type catalog.
    WebhooksRead,
    /// Change them: create, edit, duplicate, delete, (de)activate and test webhooks, resend
    /// and recover deliveries, manage credentials and event types.
    WebhooksManage,
    /// Publish events.
    EventsPublish,
    /// Manage the tenant's roles and API tokens.
    TenantAdmin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::WebhooksRead,
        Permission::WebhooksManage,
        Permission::EventsPublish,
        Permission::TenantAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::WebhooksRead => "webhooks.read",
            Permission::WebhooksManage => "webhooks.manage",
            Permission::EventsPublish => "events.publish",
            Permission::TenantAdmin => "tenant.admin",
        }
    }

    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every tenant's role with all permissions; cannot be changed or deleted.
pub const OWNER_ROLE: &str = "owner";
/// Every tenant's read-only role; cannot be changed or deleted.
pub const VIEWER_ROLE: &str = "viewer";

/// The permissions of a built-in role, `None` for any other name.
pub fn builtin_role(name: &str) -> Option<&'static [Permission]> {
    match name {
        OWNER_ROLE => Some(&Permission::ALL),
        VIEWER_ROLE => Some(&[Permission::WebhooksRead]),
        _ => None,
    }
}

/// The longest tenant, role or token name.
pub const MAX_NAME_LEN: usize = 64;

/// A name made of lowercase ASCII letters, digits, `-` and `_`. Tenants must be this simple
/// because they are one token of NATS subjects; roles are, so they read well in a table.
fn check_slug(field: &'static str, name: &str) -> Result<(), InvalidField> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(InvalidField::new(field, format!("must be 1 to {MAX_NAME_LEN} characters")));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(InvalidField::new(
            field,
            "may contain only lowercase letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

pub fn validate_tenant(name: &str) -> Result<(), InvalidField> {
    check_slug("tenant", name)
}

pub fn validate_role_name(name: &str) -> Result<(), InvalidField> {
    check_slug("name", name)
}

/// Token names are labels for people: any text without control characters.
pub fn validate_token_name(name: &str) -> Result<(), InvalidField> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(InvalidField::new("name", format!("must be 1 to {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidField::new("name", "must not contain control characters"));
    }
    Ok(())
}

/// Parses permission names, each once, in the canonical order. Unknown names are an error
/// naming them, so a typo never silently grants less than meant.
pub fn parse_permissions(names: &[String]) -> Result<Vec<Permission>, InvalidField> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let p = Permission::parse(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
            InvalidField::new(
                "permissions",
                format!("unknown permission {name:?}; known: {}", known.join(", ")),
            )
        })?;
        out.push(p);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_round_trip_and_unknown_ones_are_named() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        let parsed = parse_permissions(&[
            "events.publish".into(),
            "webhooks.read".into(),
            "events.publish".into(),
        ])
        .expect("valid");
        assert_eq!(parsed, [Permission::WebhooksRead, Permission::EventsPublish]);
        let err = parse_permissions(&["webhooks.write".into()]).expect_err("unknown");
        assert!(err.reason.contains("webhooks.write"), "{err}");
    }

    #[test]
    fn builtin_roles_and_names() {
        assert_eq!(builtin_role(OWNER_ROLE).map(<[_]>::len), Some(4));
        assert_eq!(builtin_role(VIEWER_ROLE), Some(&[Permission::WebhooksRead][..]));
        assert!(builtin_role("publisher").is_none());
        assert!(validate_tenant("acme-1").is_ok());
        for bad in ["", "Acme", "a.b", "a b", "*", ">"] {
            assert!(validate_tenant(bad).is_err(), "{bad:?}");
        }
        assert!(validate_token_name("ci deploy").is_ok());
        assert!(validate_token_name(" ").is_err());
    }
}
