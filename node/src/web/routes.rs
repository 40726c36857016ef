//! The routes (docs/HTTP.md): the page and its assets, built into the
//! binary; the API, each route one control request; the live stream;
//! `/metrics`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router, middleware};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::live::{self, Kill};
use super::{guard, serve};
use crate::protocol::Reply;
use crate::text::chat_text;

/// The most chats one `/api/hist` answer holds.
pub const MAX_PAGE: usize = 500;
/// The largest request body taken (a chat is at most 255 bytes).
pub const MAX_BODY: usize = 4096;
/// The content type of `/metrics` (OpenMetrics text).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The files of the page, as built into the binary: path, content type,
/// content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/charts.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// The routes with their checks.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/hist", get(hist))
        .route("/api/charts", get(charts))
        .route("/api/chat", post(chat))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics));
    for &(path, kind, body) in &ASSETS[1..] {
        router = router.route(path, get(move || async move { asset(kind, body) }));
    }
    router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(serve::within_time))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            guard::access,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), guard::host))
        .layer(middleware::from_fn(guard::headers))
        .with_state(shared)
}

/// A refusal: `status` with `{"error": why}`.
pub fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

#[derive(Deserialize)]
struct Login {
    token: Option<String>,
}

/// The page; with `?token=...` (the URL the node prints), the token is
/// checked, set as an HttpOnly, SameSite=Strict cookie, and the browser
/// sent on to `/` (so that the token leaves the address bar).
async fn index(State(shared): State<Arc<Shared>>, Query(login): Query<Login>) -> Response {
    let Some(token) = login.token else {
        let (_, kind, body) = ASSETS[0];
        return asset(kind, body);
    };
    if !shared.token.matches(&token) {
        log::info!("page: a sign-in with a wrong token refused");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong token: open the URL that 'chatchain url' prints",
        );
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        shared.cookie,
        shared.token.as_str()
    );
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, "/".into())],
    )
        .into_response()
}

/// A control reply as the API's answer: 200, or 502 for an `error` reply
/// or a node that cannot be reached.
fn answer(reply: Result<Value, String>) -> Response {
    match reply {
        Ok(reply) if reply.get("reply").and_then(Value::as_str) == Some("error") => {
            (StatusCode::BAD_GATEWAY, Json(reply)).into_response()
        }
        Ok(reply) => Json(reply).into_response(),
        Err(why) => refuse(StatusCode::BAD_GATEWAY, &why),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    answer(shared.link.ask(&json!({"command": "status"})).await)
}

async fn peers(State(shared): State<Arc<Shared>>) -> Response {
    answer(shared.link.ask(&json!({"command": "peers"})).await)
}

async fn charts(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.live.charts()).into_response()
}

#[derive(Deserialize)]
struct Page {
    /// Chats (50 if absent), at most [`MAX_PAGE`].
    n: Option<usize>,
    /// The index of the first chat not wanted.
    before: Option<usize>,
}

/// `/api/hist?n=N&before=I`: the `n` chats before index `before`, or the
/// last `n`, each with its arrival time when known.
async fn hist(State(shared): State<Arc<Shared>>, Query(page): Query<Page>) -> Response {
    let n = page.n.unwrap_or(50);
    if n > MAX_PAGE {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("n is at most {MAX_PAGE} (page back with 'before')"),
        );
    }
    let mut ask = json!({"command": "hist", "n": n});
    if let Some(before) = page.before {
        ask["before"] = before.into();
    }
    match shared.link.ask_reply(&ask).await {
        Ok(Reply::Hist { chats, history, .. }) => {
            let chats: Vec<_> = chats
                .into_iter()
                .map(|chat| shared.live.page_chat(chat, false))
                .collect();
            Json(json!({"chats": chats, "history": history})).into_response()
        }
        Ok(Reply::Error { error }) => refuse(StatusCode::BAD_GATEWAY, &error),
        Ok(_) => refuse(StatusCode::BAD_GATEWAY, "the node's answer is no hist"),
        Err(why) => refuse(StatusCode::BAD_GATEWAY, &why),
    }
}

#[derive(Deserialize)]
struct Chat {
    text: String,
}

/// `POST /api/chat` with `{"text": ...}` (JSON only: a form cannot post
/// it): the text is checked as the prompt does (400), then sent as the
/// control `chat` request; its reply (`saved`, `not_saved`) is the answer.
async fn chat(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Chat>, JsonRejection>,
) -> Response {
    let text = match body {
        Ok(Json(Chat { text })) => text,
        Err(e) => return refuse(e.status(), &e.body_text()),
    };
    if let Err(why) = chat_text(text.as_bytes()) {
        return refuse(StatusCode::BAD_REQUEST, &why.to_string());
    }
    answer(
        shared
            .link
            .ask(&json!({"command": "chat", "text": text}))
            .await,
    )
}

#[derive(Deserialize)]
struct After {
    /// The last chat the page holds (`-1`: none), when it has no
    /// `Last-Event-ID` yet.
    after: Option<i64>,
}

/// `/api/events`: the live stream (Server-Sent Events), resuming after
/// `Last-Event-ID`, else `?after=`, else from now.
async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    Query(after): Query<After>,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .map(|id| id.trim().parse::<i64>());
    let last = match (resume, after.after) {
        (Some(Ok(last)), _) => last,
        (Some(Err(_)), _) => {
            return refuse(StatusCode::BAD_REQUEST, "Last-Event-ID is a chat index");
        }
        (None, Some(after)) => after,
        (None, None) => {
            match shared
                .link
                .ask_reply(&json!({"command": "hist", "n": 0}))
                .await
            {
                Ok(Reply::Hist { history, .. }) => history as i64 - 1,
                _ => return refuse(StatusCode::BAD_GATEWAY, "the node did not answer"),
            }
        }
    };
    live::stream(shared, last, kill)
}

/// `/metrics`: the control request `metrics`, its text as OpenMetrics.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.link.ask(&json!({"command": "metrics"})).await {
        Ok(reply) => match reply.get("text").and_then(Value::as_str) {
            Some(text) if reply.get("reply").and_then(Value::as_str) == Some("metrics") => {
                ([(header::CONTENT_TYPE, OPENMETRICS)], text.to_string()).into_response()
            }
            _ => answer(Ok(reply)),
        },
        Err(why) => refuse(StatusCode::BAD_GATEWAY, &why),
    }
}
