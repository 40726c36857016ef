//! The checks around every handler, each one thing, so that a route
//! cannot forget one (as Syncthing's `lib/api` middleware): the Host
//! header ([`host`], against DNS rebinding), the token ([`access`]),
//! the origin of a request that changes something, and the headers of
//! every answer ([`headers`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::Shared;
use super::routes::refuse;

/// The Content-Security-Policy of every answer: scripts, styles and
/// requests only from the page's own origin, no inline script, no frame.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self'; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// Who may have what a path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// The page and its assets: anyone who reaches the address.
    Open,
    /// The API: the token, as the cookie or a bearer header.
    Token,
    /// `/metrics`: the token as a bearer header (scrapers keep no cookie).
    Bearer,
}

fn door(path: &str) -> Door {
    if path == "/metrics" {
        Door::Bearer
    } else if path.starts_with("/api/") {
        Door::Token
    } else {
        Door::Open
    }
}

/// Adds the security headers to every answer, refusals included.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a request whose Host header names another address than the
/// one served (or `localhost` with its port): a page of another site,
/// its name rebound to this address, must not reach the node (421).
pub async fn host(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match host {
        Some(host) if shared.hosts.iter().any(|ok| ok.eq_ignore_ascii_case(host)) => {
            next.run(request).await
        }
        _ => {
            log::info!(
                "page: a request for host {:?} refused (served as {})",
                host.unwrap_or("(none)"),
                shared.hosts.join(" or ")
            );
            refuse(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "this server answers for {} only; open the URL the node printed",
                    shared.hosts.join(" or ")
                ),
            )
        }
    }
}

/// Refuses the API without the token (401), and a request that changes
/// something unless it shows the token in a header or comes from the
/// page's own origin (403): a form or script of another site cannot send
/// a chat, even with the cookie.
pub async fn access(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let by_header = bearer(headers).is_some_and(|t| shared.token.matches(t));
    let by_cookie = cookie(headers, &shared.cookie).is_some_and(|t| shared.token.matches(t));
    let allowed = match door(request.uri().path()) {
        Door::Open => true,
        Door::Token => by_header || by_cookie,
        Door::Bearer => by_header,
    };
    if !allowed {
        log::info!(
            "page: {} {} refused: no token",
            request.method(),
            request.uri().path()
        );
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the token is missing or wrong: open the URL with the token that the node \
             printed at its start, or that 'chatchain url' prints",
        );
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && !by_header && !same_origin(headers, &shared.origins) {
        log::info!(
            "page: {} {} refused: origin {:?}",
            request.method(),
            request.uri().path(),
            headers.get(header::ORIGIN)
        );
        return refuse(
            StatusCode::FORBIDDEN,
            "a request that changes something needs the token in a header, or to come \
             from this page",
        );
    }
    next.run(request).await
}

fn same_origin(headers: &HeaderMap, origins: &[String]) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| origins.iter().any(|ok| ok.eq_ignore_ascii_case(origin)))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name`, from any `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doors_by_path() {
        assert_eq!(door("/"), Door::Open);
        assert_eq!(door("/app.js"), Door::Open);
        assert_eq!(door("/api/chat"), Door::Token);
        assert_eq!(door("/api/events"), Door::Token);
        assert_eq!(door("/metrics"), Door::Bearer);
    }

    #[test]
    fn cookies_and_bearers_are_read_exactly() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; chatchain-51580=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(cookie(&headers, "chatchain-51580"), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "chatchain"), None);
        assert_eq!(bearer(&headers), Some("xyz"));
        headers.insert(header::ORIGIN, "http://127.0.0.1:51580".parse().unwrap());
        assert!(same_origin(&headers, &["http://127.0.0.1:51580".into()]));
        assert!(!same_origin(&headers, &["http://localhost:51580".into()]));
    }
}
