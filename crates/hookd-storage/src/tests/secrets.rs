//! Secrets at rest: what the database file holds is sealed, reads give the plaintext back,
//! values written in clear or under an older key are resealed, and a wrong key fails loudly.

use hookd_core::CredentialId;
use hookd_core::credential::{Credential, CredentialSpec, GrantType, TokenMethod};
use hookd_core::endpoint::{EndpointAuth, Secret};
use hookd_core::signing::SigningKeys;

use super::{TENANT, at, webhook};
use crate::{Cipher, Store, TokenState};

const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const AUTH: &str = "bearer-secret-value-0001";
const CLIENT: &str = "client-secret-value-0002";
const ACCESS: &str = "access-token-value-0003";

fn credential() -> Credential {
    Credential {
        id: CredentialId::from("cred_secrets"),
        spec: CredentialSpec {
            name: "oauth".into(),
            token_url: "https://auth.example.com/token".into(),
            method: TokenMethod::Post,
            client_id: "id".into(),
            client_secret: Secret::new(CLIENT),
            grant_type: GrantType::ClientCredentials,
            code: None,
            scope: String::new(),
            extra_params: Default::default(),
        },
        created_at: at(0),
        updated_at: at(0),
    }
}

/// Every byte of the database files (main file and write-ahead log).
fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn write_secrets(store: &Store) -> (hookd_core::Webhook, String) {
    let mut hook = webhook("sealed");
    hook.spec.auth = EndpointAuth::Bearer { token: Secret::new(AUTH) };
    hook.spec.signing = SigningKeys::generate();
    let whsec = hook.spec.signing.current().unwrap().expose();
    store.create_webhook(TENANT, &hook).await.unwrap();
    store.create_credential(TENANT, &credential()).await.unwrap();
    let state = TokenState {
        access_token: Some(Secret::new(ACCESS)),
        expires_at: Some(at(3600)),
        refresh_token: None,
        last_error: String::new(),
    };
    assert!(store.save_token_state(TENANT, &credential().id, &state).await.unwrap());
    (hook, whsec)
}

#[tokio::test]
async fn secrets_are_sealed_in_the_file_and_read_back_in_clear() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("hookd.db").display());
    let cipher = Cipher::new("k1", K1, &[]).unwrap();
    let store = Store::connect(&url).await.unwrap().with_cipher(cipher);
    let (hook, whsec) = write_secrets(&store).await;

    assert_eq!(store.get_webhook(TENANT, &hook.id).await.unwrap(), Some(hook.clone()));
    let (cred, state) = store.get_credential(TENANT, &credential().id).await.unwrap().unwrap();
    assert_eq!(cred.spec.client_secret.expose(), CLIENT);
    assert_eq!(state.access_token.unwrap().expose(), ACCESS);

    let bytes = file_bytes(dir.path());
    for secret in [AUTH, CLIENT, ACCESS, &whsec[6..]] {
        assert!(!contains(&bytes, secret), "{secret} is in the database file in clear");
    }
    assert!(contains(&bytes, "enc:v1:k1:"), "sealed values are there");

    // The same file without the key cannot be read, and says why.
    let keyless = Store::connect(&url).await.unwrap();
    let err = keyless.get_webhook(TENANT, &hook.id).await.expect_err("no key");
    assert!(err.to_string().contains("no encryption key"), "{err}");
}

#[tokio::test]
async fn clear_and_old_key_values_are_resealed() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("hookd.db").display());
    // Written before encryption was enabled.
    let (hook, _) = write_secrets(&Store::connect(&url).await.unwrap()).await;

    let k1 = Store::connect(&url).await.unwrap().with_cipher(Cipher::new("k1", K1, &[]).unwrap());
    assert_eq!(k1.get_webhook(TENANT, &hook.id).await.unwrap(), Some(hook.clone()));
    assert_eq!(k1.reseal_secrets().await.unwrap(), 2);
    assert_eq!(k1.reseal_secrets().await.unwrap(), 0, "idempotent");
    let keyless = Store::connect(&url).await.unwrap();
    assert!(keyless.get_webhook(TENANT, &hook.id).await.is_err(), "the row is sealed now");

    // Key rotation: k2 current, k1 still configured to open; reseal moves everything to k2.
    let rotated = Cipher::new("k2", K2, &[("k1".to_owned(), K1.to_owned())]).unwrap();
    let k2 = Store::connect(&url).await.unwrap().with_cipher(rotated);
    assert_eq!(k2.reseal_secrets().await.unwrap(), 2);
    let only_k2 =
        Store::connect(&url).await.unwrap().with_cipher(Cipher::new("k2", K2, &[]).unwrap());
    assert_eq!(only_k2.get_webhook(TENANT, &hook.id).await.unwrap(), Some(hook));
    let (cred, _) = only_k2.get_credential(TENANT, &credential().id).await.unwrap().unwrap();
    assert_eq!(cred.spec.client_secret.expose(), CLIENT);
}
