//! Middleware that stamps every response so a probe can attribute it, counts requests in flight,
//! and, once draining, asks the client to close the connection after this response.
//!
//! `Connection: close` during the drain is what makes keep-alive connections end cleanly: the
//! client learns from the response itself that it must reconnect, instead of racing a server-side
//! close of an idle connection (the race behind intermittent 502s, docs/failure-modes.md#fm-5 and #fm-6).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::CONNECTION;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use tower::{Layer, Service};

use crate::state::{AppState, InFlight};

/// `x-app-version`: which release answered.
pub static X_APP_VERSION: HeaderName = HeaderName::from_static("x-app-version");
/// `x-served-by`: which task answered.
pub static X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Applies [`Stamp`].
#[derive(Debug, Clone, Copy)]
pub struct StampLayer {
    state: &'static AppState,
}

impl StampLayer {
    /// A layer over the shared state.
    pub fn new(state: &'static AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for StampLayer {
    type Service = Stamp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Stamp {
            inner,
            state: self.state,
        }
    }
}

/// Stamps responses with `x-app-version` and `x-served-by`.
#[derive(Debug, Clone)]
pub struct Stamp<S> {
    inner: S,
    state: &'static AppState,
}

impl<S, B, ResB> Service<Request<B>> for Stamp<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = StampFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let access = self.state.config.access_log.then(|| Access {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            started: Instant::now(),
        });
        // Counted before the route runs, so the route sees itself in flight.
        let guard = InFlight::enter(self.state);
        StampFuture {
            inner: self.inner.call(req),
            guard,
            access,
        }
    }
}

#[derive(Debug)]
struct Access {
    method: Method,
    path: String,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// Future of [`Stamp`].
    #[derive(Debug)]
    pub struct StampFuture<F> {
        #[pin]
        inner: F,
        guard: InFlight,
        access: Option<Access>,
    }
}

impl<F, ResB, E> Future for StampFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match this.inner.poll(cx) {
            Poll::Ready(Ok(res)) => res,
            other => return other,
        };
        let state = this.guard.state();
        let headers = res.headers_mut();
        headers.insert(X_APP_VERSION.clone(), state.version_header.clone());
        headers.insert(X_SERVED_BY.clone(), state.served_by_header.clone());
        if state.lifecycle.is_draining() {
            headers.insert(CONNECTION, CLOSE);
        }
        if let Some(access) = this.access.take() {
            tracing::info!(
                target: "access",
                method = %access.method,
                path = %access.path,
                status = res.status().as_u16(),
                micros = access.started.elapsed().as_micros() as u64,
                draining = state.lifecycle.is_draining(),
            );
        }
        Poll::Ready(Ok(res))
    }
}
