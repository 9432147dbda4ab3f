//! Which portal links were opened: one key per link (its nonce) in a NATS key-value bucket
//! shared by every control plane, created with "create if absent", so a link opens exactly
//! one console session however many replicas serve the console. Keys age out once no link
//! could still be valid.

use std::{future::Future, pin::Pin, time::Duration};

use async_nats::jetstream::{self, kv};

use crate::ControlError;

const BUCKET: &str = "hookd_portal_links";

pub struct OpenedLinks {
    store: kv::Store,
}

impl OpenedLinks {
    pub async fn new(js: &jetstream::Context, replicas: usize) -> Result<Self, ControlError> {
        let max_age = Duration::from_secs(hookd_core::portal::MAX_LINK_TTL_SECS + 3600);
        let store = js
            .create_key_value(kv::Config {
                bucket: BUCKET.to_owned(),
                description: "portal links already opened (one session per link)".to_owned(),
                history: 1,
                max_age,
                num_replicas: replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| ControlError::Unavailable(format!("portal links bucket: {e}")))?;
        Ok(Self { store })
    }
}

impl hookd_console::OpenedLinks for OpenedLinks {
    fn first_opening(
        &self,
        nonce: String,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send>> {
        let store = self.store.clone();
        Box::pin(async move {
            match store.create(&nonce, bytes::Bytes::new()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
