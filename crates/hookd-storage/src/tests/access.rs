//! Roles and API tokens: tenant scoping, the in-use check on role deletion, hash uniqueness.

use hookd_core::access::Permission;

use super::at;
use crate::{ApiTokenRecord, RoleRecord, StorageError, access::RoleDeletion};

fn role(name: &str, permissions: &[Permission]) -> RoleRecord {
    RoleRecord {
        name: name.into(),
        permissions: permissions.to_vec(),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn token(id: &str, tenant: &str, role: &str, hash: &str) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("{id} token"),
        role: role.into(),
        hash: hash.into(),
        last_four: "abcd".into(),
        created_at: at(1),
    }
}

on_both_backends! {
    async fn roles_are_per_tenant_and_updated_in_place(store) {
        let publisher = role("publisher", &[Permission::EventsPublish]);
        store.create_role("a", &publisher).await.unwrap();
        store.create_role("b", &publisher).await.unwrap();
        assert!(matches!(
            store.create_role("a", &publisher).await,
            Err(StorageError::AlreadyExists { what: "role", .. })
        ));
        assert_eq!(store.get_role("a", "publisher").await.unwrap(), Some(publisher.clone()));
        assert!(store.get_role("c", "publisher").await.unwrap().is_none());

        let both = [Permission::WebhooksRead, Permission::EventsPublish];
        assert!(store.update_role("a", "publisher", &both, at(5)).await.unwrap());
        assert!(!store.update_role("c", "publisher", &both, at(5)).await.unwrap());
        let updated = store.get_role("a", "publisher").await.unwrap().unwrap();
        assert_eq!(updated.permissions, both);
        assert_eq!(updated.updated_at, at(5));
        assert_eq!(store.get_role("b", "publisher").await.unwrap().unwrap().permissions.len(), 1);
        assert_eq!(store.list_roles("a").await.unwrap().len(), 1);
        assert_eq!(store.all_roles().await.unwrap().len(), 2);
    }
}

on_both_backends! {
    async fn a_role_in_use_is_not_deleted(store) {
        store.create_role("a", &role("publisher", &[Permission::EventsPublish])).await.unwrap();
        store.create_api_token(&token("tok_1", "a", "publisher", "h1")).await.unwrap();
        assert_eq!(store.delete_role("a", "publisher").await.unwrap(), RoleDeletion::InUse(1));
        // Another tenant's token with a role of the same name does not count, nor delete.
        assert_eq!(store.delete_role("b", "publisher").await.unwrap(), RoleDeletion::NotFound);
        assert!(!store.delete_api_token("b", "tok_1").await.unwrap(), "other tenant's token");
        assert!(store.delete_api_token("a", "tok_1").await.unwrap());
        assert_eq!(store.delete_role("a", "publisher").await.unwrap(), RoleDeletion::Deleted);
        assert!(store.get_role("a", "publisher").await.unwrap().is_none());
    }
}

on_both_backends! {
    async fn tokens_are_found_by_unique_hash_and_listed_per_tenant(store) {
        store.create_api_token(&token("tok_1", "a", "owner", "h1")).await.unwrap();
        store.create_api_token(&token("tok_2", "b", "viewer", "h2")).await.unwrap();
        assert!(matches!(
            store.create_api_token(&token("tok_3", "a", "owner", "h1")).await,
            Err(StorageError::AlreadyExists { what: "token", .. })
        ));
        let found = store.find_api_token_by_hash("h2").await.unwrap().unwrap();
        assert_eq!((found.id.as_str(), found.tenant.as_str()), ("tok_2", "b"));
        assert!(store.find_api_token_by_hash("h3").await.unwrap().is_none());
        let listed = store.list_api_tokens("a").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "tok_1");
        assert_eq!(store.all_api_tokens().await.unwrap().len(), 2);
    }
}
