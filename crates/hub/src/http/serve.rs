//! The plain listener's accept loop: what `axum::serve` does (a task per connection, HTTP/1.1 or
//! HTTP/2, graceful shutdown), with one difference — a connection's task, once woken, lets the
//! tasks that are ready before it run first ([`coalesced`]).
//!
//! Why: over HTTP/2 every request runs in a task of its own, and an answer wakes its
//! connection's task to write it. Tokio runs a task woken that way next, before anything else
//! that is ready, so when one change answers the 200 long-polls parked on a connection, the
//! connection wrote 200 times, each answer in a `writev` and a TCP segment of its own (counted:
//! 49,146 `writev`s for 50,000 answers). Polled one turn later, it finds the answers that were
//! ready meanwhile and writes them together.

use std::fmt::Debug;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets each
/// connection finish the requests it has (HTTP/2: a GOAWAY), and returns when all are closed.
pub(crate) async fn serve<L>(
    mut listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener,
    L::Addr: Debug,
{
    // Connections watch `signal` (closed at shutdown) and hold `close` (awaited at the end).
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = signal_tx.closed() => break,
        };
        // A clone of the router shares its routing table (see `lib.rs` on make-services).
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: axum::http::Request<Incoming>| req.map(Body::new)),
        );
        let (signal_tx, close_rx) = (signal_tx.clone(), close_rx.clone());
        tokio::spawn(coalesced(async move {
            let builder = Builder::new(TokioExecutor::new());
            let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            tracing::trace!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = signal_tx.closed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        }));
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

pin_project_lite::pin_project! {
    /// Runs `inner` as its task's future, except that after each wake-up the task first yields
    /// (`tokio::task::yield_now`: Tokio runs it again after the tasks that are ready) and only
    /// then polls `inner`. The wake-ups that arrive while it waits cost nothing (the task is
    /// already scheduled); the next poll sees all of their work at once. (A task that wakes
    /// itself is queued behind the ready tasks too, but sooner: it coalesced less, measured with
    /// the test below.)
    ///
    /// A struct rather than an `async fn`: an `async fn` keeps its argument and the pinned local
    /// it moves into as two fields, and a connection's future is large (10,000 HTTP/1.1
    /// connections took 14 MiB more that way).
    struct Coalesced<F, Y, M> {
        #[pin]
        inner: F,
        #[pin]
        yielding: Option<Y>,
        yield_now: M,
        // `inner` returned `Pending`: the task's next poll is a wake-up.
        waiting: bool,
    }
}

fn coalesced<F: Future>(inner: F) -> impl Future<Output = F::Output> {
    Coalesced {
        inner,
        yielding: None,
        yield_now: tokio::task::yield_now,
        waiting: false,
    }
}

impl<F, Y, M> Future for Coalesced<F, Y, M>
where
    F: Future,
    Y: Future<Output = ()>,
    M: FnMut() -> Y,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if std::mem::take(this.waiting) {
            this.yielding.set(Some((this.yield_now)()));
        }
        if let Some(y) = this.yielding.as_mut().as_pin_mut() {
            if y.poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.yielding.set(None);
        }
        // `inner` registers this task's waker for whatever it waits on.
        let polled = this.inner.poll(cx);
        *this.waiting = polled.is_pending();
        polled
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

    use std::io;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connection that counts the writes that sent something.
    struct Counted(TcpStream, Arc<AtomicUsize>);

    impl Counted {
        fn count(&self, r: &Poll<io::Result<usize>>) {
            if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.0).poll_write(cx, buf);
            self.count(&r);
            r
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
            self.count(&r);
            r
        }
        fn is_write_vectored(&self) -> bool {
            self.0.is_write_vectored()
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    struct CountingListener(TcpListener, Arc<AtomicUsize>);

    impl Listener for CountingListener {
        type Io = Counted;
        type Addr = SocketAddr;
        async fn accept(&mut self) -> (Counted, SocketAddr) {
            let (s, a) = self.0.accept().await.unwrap();
            (Counted(s, self.1.clone()), a)
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.0.local_addr()
        }
    }

    /// Long-polls parked on one HTTP/2 connection, all answered by one change (as a write
    /// answers a proxy's devices): the answers leave in fewer writes than there are answers, and
    /// every one arrives whole. Five rounds, because without [`coalesced`] a round is sometimes
    /// written together anyway (measured: 1–3 writes in a third of the rounds, 27–100 in the
    /// others); with it, 1–3 in every round. Then shutdown ends `serve` with the connection
    /// closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_that_one_change_wakes_are_written_together() {
        const POLLS: usize = 100;
        const ROUNDS: usize = 5;
        let writes = Arc::new(AtomicUsize::new(0));
        let listener = CountingListener(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            writes.clone(),
        );
        let addr = listener.local_addr().unwrap();
        let (change, _) = tokio::sync::broadcast::channel::<()>(1);
        let parked = Arc::new(AtomicUsize::new(0));
        let app = {
            let (change, parked) = (change.clone(), parked.clone());
            Router::new().route(
                "/poll/{i}",
                get(move |axum::extract::Path(i): axum::extract::Path<usize>| {
                    let mut changed = change.subscribe();
                    parked.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _ = changed.recv().await;
                        format!("answer {i}")
                    }
                }),
            )
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, async {
            let _ = stopped.await;
        }));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let mut answer_writes = Vec::new();
        for round in 1..=ROUNDS {
            let mut polls = tokio::task::JoinSet::new();
            for i in 0..POLLS {
                let (client, url) = (client.clone(), format!("http://{addr}/poll/{i}"));
                polls.spawn(async move {
                    let r = client.get(url).send().await.unwrap();
                    assert!(r.status().is_success());
                    (i, r.text().await.unwrap())
                });
            }
            // Bounded: every poll parks within 10 s.
            for _ in 0..1000 {
                if parked.load(Ordering::SeqCst) == round * POLLS {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(parked.load(Ordering::SeqCst), round * POLLS, "polls parked");
            let before = writes.load(Ordering::SeqCst);
            change.send(()).unwrap();
            let mut answered = 0;
            while let Some(done) = polls.join_next().await {
                let (i, body) = done.unwrap();
                assert_eq!(body, format!("answer {i}"));
                answered += 1;
            }
            assert_eq!(answered, POLLS);
            answer_writes.push(writes.load(Ordering::SeqCst) - before);
        }
        assert!(
            answer_writes.iter().sum::<usize>() <= ROUNDS * POLLS / 12,
            "writes for {POLLS} answers in each round: {answer_writes:?}"
        );
        stop.send(()).unwrap();
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}
