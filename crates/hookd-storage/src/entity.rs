//! sea-orm entities for the tables created by [`crate::migration`].
//!
//! There are no relations on purpose: deliveries keep no foreign key to webhooks, because
//! attempt reports may arrive after their webhook was deleted and must still be stored.

pub mod api_token;
pub mod attempt;
pub mod credential;
pub mod delivery;
pub mod event_type;
pub mod role;
pub mod webhook;
