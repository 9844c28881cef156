//! The operator's API: the dead letters of the notification outbox, listed, replayed, purged;
//! and the plugins, reloaded from the configuration (as SIGHUP does).
//!
//! Served only when `[admin] bearer_token` is set, and only to that token: an operator's key,
//! not a CAMARA access token, because no API client may see or replay another's events.
//! The listing leaves out what only the sink may see (the sink credential in the headers, the
//! subscriptions captured with an unrouted event).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use camara_store::{DeadLetter, Undelivered};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::app::Gateway;
use crate::error::ApiError;

pub const DEAD_LETTERS: &str = "/admin/dead-letters";
pub const PLUGIN_RELOAD: &str = "/admin/plugins/reload";

/// The admin routes, or none when no admin token is configured.
pub fn router(gw: Arc<Gateway>) -> Option<Router> {
    let token = gw.config.admin.bearer_token.clone().filter(|t| !t.is_empty())?;
    let routes = Router::new()
        .route(DEAD_LETTERS, get(list).delete(purge_all))
        .route(&format!("{DEAD_LETTERS}/{{id}}"), delete(purge))
        .route(&format!("{DEAD_LETTERS}/{{id}}/replay"), post(replay))
        .route(PLUGIN_RELOAD, post(reload_plugins))
        .route_layer(middleware::from_fn(move |request: axum::extract::Request, next: middleware::Next| {
            let token = token.clone();
            async move {
                if presents(request.headers(), &token) {
                    next.run(request).await
                } else {
                    ApiError::unauthenticated("An admin bearer token is required").into_response()
                }
            }
        }))
        .layer(middleware::from_fn(crate::api::correlator))
        .with_state(gw);
    Some(routes)
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time.
fn presents(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// `POST /admin/plugins/reload`: the plugins now in use, or why the running ones stay.
async fn reload_plugins(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    gw.reload_plugins().await.map_err(|e| ApiError::invalid_argument(format!("The plugins were not reloaded: {e}")))?;
    let plugins = gw.plugins.get();
    Ok(Json(json!({
        "authorization": plugins.authorization.name(),
        "apiMapping": plugins.mapping.name(),
        "notificationRouting": plugins.routing.name(),
    })))
}

fn storage_error(e: camara_store::StoreError) -> ApiError {
    tracing::error!("dead letters: storage failed: {e}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "The gateway could not access its storage")
}

fn describe(dead: &DeadLetter) -> Value {
    let common = json!({
        "id": dead.id(),
        "lastError": dead.last_error,
        "deadAt": dead.dead_at,
    });
    let specific = match &dead.entry {
        Undelivered::Notification(n) => json!({
            "kind": "notification",
            "subscriptionId": n.subscription_id,
            "sink": n.sink,
            "attempts": n.attempt,
            "firstDue": n.first_due,
            "payload": serde_json::from_str::<Value>(&n.payload).unwrap_or_else(|_| Value::String(n.payload.clone())),
        }),
        Undelivered::Event(e) => {
            let event: Value = serde_json::from_str(&e.payload).unwrap_or_default();
            json!({
                "kind": "event",
                "eventType": event["event"]["event_type"],
                "attempts": e.attempt,
                "firstDue": e.first_due,
            })
        }
    };
    let mut merged = common;
    if let (Some(m), Value::Object(s)) = (merged.as_object_mut(), specific) {
        m.extend(s);
    }
    merged
}

async fn list(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let letters = gw.store.backend().dead_letters(usize::MAX).await.map_err(storage_error)?;
    Ok(Json(Value::Array(letters.iter().map(describe).collect())))
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| ApiError::invalid_argument("A dead letter id is a number"))
}

fn no_such(id: u64) -> ApiError {
    ApiError::not_found(format!("No dead letter {id}"))
}

async fn replay(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    match gw.notifier.replay(id).await.map_err(storage_error)? {
        Some(new_id) => {
            tracing::info!(dead_letter = id, outbox = new_id, "dead letter replayed");
            Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "outboxId": new_id}))).into_response())
        }
        None => Err(no_such(id)),
    }
}

async fn purge(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    match gw.store.backend().remove_dead_letter(id).await.map_err(storage_error)? {
        Some(_) => {
            tracing::info!(dead_letter = id, "dead letter purged");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(no_such(id)),
    }
}

async fn purge_all(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let backend = gw.store.backend();
    let mut purged = 0;
    for dead in backend.dead_letters(usize::MAX).await.map_err(storage_error)? {
        if backend.remove_dead_letter(dead.id()).await.map_err(storage_error)?.is_some() {
            purged += 1;
        }
    }
    tracing::info!(purged, "dead letters purged");
    Ok(Json(json!({"purged": purged})))
}
