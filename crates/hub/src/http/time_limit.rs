//! The request time limit: a request running longer than `request_timeout_secs` is answered 408
//! (and dropped). A device's long-poll waits up to its `wait` by design (at most
//! `MAX_WAIT_SECS`): its limit starts after that, or every `wait` longer than the limit would end
//! in a 408 instead of the empty answer the protocol promises. Only after its own `wait`: a
//! `wait=0` sync stuck in the database gets its 408 as soon as any other request.
//!
//! A layer of its own rather than `axum::middleware::from_fn`: that boxes each request's future,
//! and every parked long-poll holds one (at 50,000 parked devices, 80 MiB more and 15 % more CPU
//! to answer them, measured); tower-http's `TimeoutLayer` has one limit for every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::distribution::sync;

#[derive(Clone, Copy)]
pub(crate) struct TimeLimitLayer(pub(crate) Duration);

impl<S> tower::Layer<S> for TimeLimitLayer {
    type Service = TimeLimit<S>;
    fn layer(&self, inner: S) -> TimeLimit<S> {
        TimeLimit {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone)]
pub(crate) struct TimeLimit<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<Request> for TimeLimit<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Limited<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let limit = if req.uri().path() == sync::PATH {
            self.limit + Duration::from_secs(sync::wait_of(req.uri().query()))
        } else {
            self.limit
        };
        Limited {
            inner: tokio::time::timeout(limit, self.inner.call(req)),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct Limited<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Limited<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(answer)) => Poll::Ready(answer),
            Poll::Ready(Err(_)) => Poll::Ready(Ok(StatusCode::REQUEST_TIMEOUT.into_response())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// A slow request is answered 408 at the limit; the long-poll route gets its `wait` on top
    /// (a poll that waits 3 s under a 1 s limit is answered if it asked to wait that long, and by
    /// default), and a poll that asked not to wait has the plain limit.
    #[tokio::test(start_paused = true)]
    async fn slow_requests_get_408_but_long_polls_may_wait() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "done"
        };
        let app = Router::new()
            .route("/slow", get(slow))
            .route(sync::PATH, get(slow))
            .layer(TimeLimitLayer(Duration::from_secs(1)));
        let status = |path: &'static str| {
            let app = app.clone();
            async move {
                let req = Request::get(path).body(axum::body::Body::empty()).unwrap();
                app.oneshot(req).await.unwrap().status()
            }
        };
        assert_eq!(status("/slow").await, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(status(sync::PATH).await, StatusCode::OK);
        assert_eq!(status("/api/v1/sync?cursor=1&wait=5").await, StatusCode::OK);
        assert_eq!(status("/api/v1/sync?wait=%35").await, StatusCode::OK);
        assert_eq!(
            status("/api/v1/sync?cursor=1&wait=0").await,
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            status("/api/v1/sync?wait=1&cursor=1").await,
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
