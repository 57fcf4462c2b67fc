//! The application's routes, as a `tower::Service` whose futures allocate nothing.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | HTML page: message, version, task id, the request path HTML-escaped; status `PAGE_STATUS` (200) |
//! | `GET /health` | liveness: 200 while the process runs |
//! | `GET /ready` | readiness: 200, then 503 from the moment draining starts |
//! | `GET /version` | JSON: version, task, uptime, draining |
//! | `GET /delay/{ms}` | 200 after `ms` milliseconds (capped), to hold a request in flight |
//! | `GET /status/{code}` | that status (200–599), to model a release that answers errors |
//!
//! Unknown paths get 404, methods other than GET and HEAD get 405.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Sleep;

use crate::state::AppState;

/// The response body every route answers with.
pub type Body = Full<Bytes>;

const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The router. Copied per request: it is one reference to process-lifetime state.
#[derive(Debug, Clone, Copy)]
pub struct Routes {
    state: &'static AppState,
}

impl Routes {
    /// A router over the shared state.
    pub fn new(state: &'static AppState) -> Self {
        Self { state }
    }

    fn route(&self, method: &Method, uri: &http::Uri) -> RouteFuture {
        if method != Method::GET && method != Method::HEAD {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return RouteFuture::ready(res);
        }
        let path = uri.path();
        let res = match path {
            "/" => self.page(uri),
            "/health" => text(StatusCode::OK, "ok\n"),
            "/ready" if self.state.lifecycle.is_draining() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            }
            "/ready" => text(StatusCode::OK, "ready\n"),
            "/version" => self.version(),
            _ => {
                if let Some(ms) = path.strip_prefix("/delay/") {
                    return self.delay(ms);
                }
                if let Some(code) = path.strip_prefix("/status/") {
                    status(code)
                } else {
                    not_found(uri)
                }
            }
        };
        RouteFuture::ready(res)
    }

    fn page(&self, uri: &http::Uri) -> Response<Body> {
        let shown = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let page = &self.state.page;
        if shown == "/" {
            // Rendered once: a clone of the bytes, no allocation.
            let mut res = Response::new(Full::new(page.root.clone()));
            res.headers_mut().insert(CONTENT_TYPE, HTML);
            *res.status_mut() = self.state.config.page_status;
            return res;
        }
        let decoded = percent_encoding::percent_decode_str(shown).decode_utf8_lossy();
        let mut html =
            String::with_capacity(page.head.len() + page.tail.len() + decoded.len() + 16);
        html.push_str(&page.head);
        escape_html_into(&decoded, &mut html);
        html.push_str(&page.tail);
        let mut res = Response::new(Full::new(Bytes::from(html)));
        res.headers_mut().insert(CONTENT_TYPE, HTML);
        *res.status_mut() = self.state.config.page_status;
        res
    }

    fn version(&self) -> Response<Body> {
        let s = &self.state;
        let body = serde_json::json!({
            "version": s.config.version,
            "task": s.config.task_id,
            "uptime_seconds": s.started.elapsed().as_secs_f64(),
            "draining": s.lifecycle.is_draining(),
            "in_flight": s.lifecycle.in_flight(),
            "connections": s.lifecycle.connections(),
        });
        let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
        res.headers_mut().insert(CONTENT_TYPE, JSON);
        res.headers_mut().insert(CACHE_CONTROL, NO_STORE);
        res
    }

    fn delay(&self, ms: &str) -> RouteFuture {
        let Ok(ms) = ms.parse::<u64>() else {
            return RouteFuture::ready(text(
                StatusCode::BAD_REQUEST,
                "expected /delay/{milliseconds}\n",
            ));
        };
        let wait = Duration::from_millis(ms).min(self.state.config.max_delay);
        let body = format!("waited {}ms\n", wait.as_millis());
        RouteFuture::Delayed {
            sleep: tokio::time::sleep(wait),
            response: Some(text_owned(StatusCode::OK, body)),
        }
    }
}

fn status(code: &str) -> Response<Body> {
    match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
        Some(code) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = code.canonical_reason().unwrap_or("status");
            text_owned(code, format!("{} {reason}\n", code.as_u16()))
        }
        None => text(StatusCode::BAD_REQUEST, "expected /status/{200-599}\n"),
    }
}

fn not_found(uri: &http::Uri) -> Response<Body> {
    let shown = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let decoded = percent_encoding::percent_decode_str(shown).decode_utf8_lossy();
    let mut html = String::from("<!doctype html><title>404</title><p>no route for <code>");
    escape_html_into(&decoded, &mut html);
    html.push_str("</code></p>\n");
    let mut res = Response::new(Full::new(Bytes::from(html)));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res.headers_mut().insert(CONTENT_TYPE, HTML);
    res
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, TEXT);
    res
}

fn text_owned(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, TEXT);
    res
}

/// Appends `input` to `out` with the five HTML-significant characters escaped.
pub fn escape_html_into(input: &str, out: &mut String) {
    let mut rest = input;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#x27;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// `input` with HTML-significant characters escaped.
pub fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    escape_html_into(input, &mut out);
    out
}

impl<B> tower::Service<Request<B>> for Routes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.route(req.method(), req.uri())
    }
}

pin_project_lite::pin_project! {
    /// The future of one route: ready at once, or after a delay.
    #[project = RouteProj]
    #[derive(Debug)]
    pub enum RouteFuture {
        /// Answered synchronously.
        Ready { response: Option<Response<Body>> },
        /// `/delay/{ms}`: answered when the timer fires.
        Delayed { #[pin] sleep: Sleep, response: Option<Response<Body>> },
    }
}

impl RouteFuture {
    fn ready(response: Response<Body>) -> Self {
        Self::Ready {
            response: Some(response),
        }
    }
}

impl Future for RouteFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project() {
            RouteProj::Ready { response } => response,
            RouteProj::Delayed { sleep, response } => {
                if sleep.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                response
            }
        };
        // A future is polled to completion once; answer 500 rather than panic if it is polled again.
        Poll::Ready(Ok(response.take().unwrap_or_else(|| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "polled after completion\n",
            )
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn routes() -> Routes {
        let config = Config::from_lookup(|name| match name {
            "APP_MSG" => Some("hi <b>there</b>".into()),
            "APP_VERSION" => Some("v7".into()),
            "TASK_ID" => Some("task-1".into()),
            "MAX_DELAY_MS" => Some("50".into()),
            _ => None,
        })
        .unwrap();
        Routes::new(AppState::leak(config))
    }

    async fn get(
        routes: &Routes,
        method: Method,
        uri: &str,
    ) -> (StatusCode, Response<Body>, String) {
        let req = Request::builder().method(method).uri(uri).body(()).unwrap();
        let res = (*routes).oneshot(req).await.unwrap();
        let status = res.status();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        (
            status,
            Response::from_parts(parts, Full::new(Bytes::new())),
            text,
        )
    }

    #[tokio::test]
    async fn page_escapes_message_and_path() {
        let r = routes();
        let (status, res, body) =
            get(&r, Method::GET, "/?q=%3Cscript%3Ealert(1)%3C/script%3E").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(res.headers()[CONTENT_TYPE], HTML);
        assert!(body.contains("hi &lt;b&gt;there&lt;/b&gt;"), "{body}");
        assert!(
            body.contains("/?q=&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{body}"
        );
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("v7") && body.contains("task-1"), "{body}");
    }

    #[tokio::test]
    async fn page_status_models_a_broken_release_that_stays_ready() {
        let config = Config::from_lookup(|name| match name {
            "PAGE_STATUS" => Some("500".into()),
            _ => None,
        })
        .unwrap();
        let r = Routes::new(AppState::leak(config));
        for path in ["/", "/?q=1"] {
            let (status, _, _) = get(&r, Method::GET, path).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        }
        let (status, _, _) = get(&r, Method::GET, "/ready").await;
        assert_eq!(status, StatusCode::OK);
        for bad in ["99", "600", "abc"] {
            let e = Config::from_lookup(|name| (name == "PAGE_STATUS").then(|| bad.to_owned()));
            assert!(e.is_err(), "PAGE_STATUS={bad} was accepted");
        }
    }

    #[tokio::test]
    async fn root_page_is_the_rendered_page_for_slash() {
        let r = routes();
        let (_, _, root) = get(&r, Method::GET, "/").await;
        let (_, _, query) = get(&r, Method::GET, "/?a=1").await;
        assert_eq!(root, format!("{}/{}", r.state.page.head, r.state.page.tail));
        assert_eq!(
            query,
            format!("{}/?a=1{}", r.state.page.head, r.state.page.tail)
        );
    }

    #[tokio::test]
    async fn readiness_follows_draining_but_liveness_does_not() {
        let r = routes();
        assert_eq!(get(&r, Method::GET, "/ready").await.0, StatusCode::OK);
        r.state.lifecycle.start_draining();
        assert_eq!(
            get(&r, Method::GET, "/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&r, Method::GET, "/health").await.0, StatusCode::OK);
        let (_, _, body) = get(&r, Method::GET, "/version").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["version"], "v7");
        assert_eq!(v["task"], "task-1");
        assert_eq!(v["draining"], true);
    }

    #[tokio::test]
    async fn status_delay_and_errors() {
        let r = routes();
        assert_eq!(
            get(&r, Method::GET, "/status/503").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&r, Method::GET, "/status/200").await.0, StatusCode::OK);
        for bad in [
            "/status/99",
            "/status/600",
            "/status/x",
            "/delay/-1",
            "/delay/ms",
        ] {
            assert_eq!(
                get(&r, Method::GET, bad).await.0,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        let started = std::time::Instant::now();
        let (status, _, body) = get(&r, Method::GET, "/delay/10000").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "waited 50ms\n", "capped by MAX_DELAY_MS");
        assert!(started.elapsed() >= Duration::from_millis(50));
        let (status, _, body) = get(&r, Method::GET, "/nope/%3Cscript%3E").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("/nope/&lt;script&gt;"), "{body}");
        let (status, res, _) = get(&r, Method::POST, "/").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[ALLOW], "GET, HEAD");
        assert_eq!(get(&r, Method::HEAD, "/health").await.0, StatusCode::OK);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain ünïcode"), "plain ünïcode");
    }
}
