//! The console's pages, one module per part of the product; each handler calls the gRPC
//! services and renders the answer (or the API's error, next to the field it names).

pub mod access;
pub mod credentials;
pub mod deliveries;
pub mod event_types;
pub mod sign_in;
pub mod webhook;
pub mod webhooks;

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};

use crate::{Shared, api::Failure, redirect, view};

/// `/`: the webhooks, or the sign-in page.
pub async fn home(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match shared.ctx(&headers).await {
        Ok(_) => redirect("/webhooks"),
        Err(response) => response,
    }
}

pub async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let failure = Failure::new(tonic::Code::NotFound, "there is no such page in the console");
    match shared.ctx(&headers).await {
        Ok(ctx) => ctx.page(StatusCode::NOT_FOUND, view::failure_page(&ctx, &failure)),
        Err(response) => response,
    }
}

/// Unwraps a handler step: the value, or return the answer it produced.
#[macro_export]
macro_rules! try_page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

/// Unwraps a gRPC answer: its message, or return the failure page.
#[macro_export]
macro_rules! call {
    ($ctx:expr, $e:expr) => {
        match $e.await {
            Ok(answer) => answer.into_inner(),
            Err(status) => return $ctx.failure(&$crate::api::Failure::from(status)),
        }
    };
}
