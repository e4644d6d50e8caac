//! Answers rendered while they are sent: sync snapshots, bouncer streams and RPZ zones can be
//! hundreds of megabytes, so the hub renders them on the blocking pool in chunks of about 64 KiB
//! and never holds a whole answer. Small answers — the deltas that one write sends to every
//! long-polling device at once — are rendered where they are, in one buffer ([`sized`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use tokio_stream::StreamExt;

/// Bytes per chunk.
pub(crate) const CHUNK_BYTES: usize = 1 << 16;

/// Where a renderer writes; hands full chunks to the connection.
pub(crate) struct Chunks<'a> {
    out: Vec<u8>,
    emit: &'a mut dyn FnMut(Vec<u8>) -> bool,
    /// False once the client is gone: renderers stop.
    pub(crate) alive: bool,
}

impl std::fmt::Debug for Chunks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("buffered", &self.out.len())
            .finish()
    }
}

impl Chunks<'_> {
    /// Append bytes; returns false when the client is gone.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> bool {
        self.out.extend_from_slice(bytes);
        self.flush_full()
    }

    /// One JSON value and a newline (NDJSON).
    pub(crate) fn json_line<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> bool {
        // Serialising a Value, or a struct of strings and numbers, into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, v);
        self.out.push(b'\n');
        self.flush_full()
    }

    /// The buffer, for renderers that format into it directly; call [`Chunks::flush_full`] after.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    pub(crate) fn flush_full(&mut self) -> bool {
        if self.alive && self.out.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK_BYTES + 4096));
            self.alive = (self.emit)(full);
        }
        self.alive
    }

    fn finish(mut self) -> bool {
        if self.alive && !self.out.is_empty() {
            let rest = std::mem::take(&mut self.out);
            self.alive = (self.emit)(rest);
        }
        self.alive
    }
}

/// Answers of at most this many lines are rendered on the async worker that has them.
pub(crate) const INLINE_LINES: usize = 1_000;

/// A body for an answer of `lines` lines (about): rendered now into one buffer when it is small,
/// else while it is sent ([`body`]). One write wakes every long-polling device at once; each
/// small answer taking a blocking thread (and a 64 KiB buffer) of its own cost, at 10,000
/// devices, hundreds of threads, seconds of CPU and gigabytes of memory kept by their heaps.
/// `done` as for [`body`].
pub(crate) fn sized(
    lines: usize,
    render: impl FnOnce(&mut Chunks<'_>) + Send + 'static,
    done: impl FnOnce() + Send + 'static,
) -> Body {
    if lines > INLINE_LINES {
        return body(render, done);
    }
    let all = Bytes::from(render_to_vec(render));
    let whole = tokio_stream::iter(std::iter::once(Ok::<_, std::io::Error>(all)));
    Body::from_stream(whole.chain(then(done, || true)))
}

/// [`sized`] for an answer with nothing to do once it is sent (a device's sync): a small one is
/// one buffer of known length — sent with a `Content-Length`, and left uncompressed (see the
/// compression layer in `app`).
pub(crate) fn sized_whole(
    lines: usize,
    render: impl FnOnce(&mut Chunks<'_>) + Send + 'static,
) -> Body {
    if lines > INLINE_LINES {
        return body(render, || {});
    }
    Body::from(render_to_vec(render))
}

/// An empty stream that runs `done` when it is polled — chained after an answer's chunks, that
/// is once the connection has taken them all — if `complete` says the answer was whole.
fn then(
    done: impl FnOnce() + Send + 'static,
    complete: impl Fn() -> bool + Send + 'static,
) -> impl tokio_stream::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut done = Some(done);
    tokio_stream::iter(std::iter::from_fn(move || {
        if complete() {
            if let Some(f) = done.take() {
                f();
            }
        }
        None
    }))
}

/// What `render` writes, in one buffer.
pub(crate) fn render_to_vec(render: impl FnOnce(&mut Chunks<'_>)) -> Vec<u8> {
    let mut all = Vec::new();
    let mut emit = |c: Vec<u8>| {
        all.extend_from_slice(&c);
        true
    };
    let mut chunks = Chunks {
        out: Vec::new(),
        emit: &mut emit,
        alive: true,
    };
    render(&mut chunks);
    chunks.finish();
    all
}

/// A body rendered by `render` on the blocking pool. `done` runs once the whole answer has been
/// handed to the connection — not when the client went away or the renderer failed first — so
/// that a bouncer's "last pull" moves only after a complete answer.
pub(crate) fn body(
    render: impl FnOnce(&mut Chunks<'_>) + Send + 'static,
    done: impl FnOnce() + Send + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let complete = Arc::new(AtomicBool::new(false));
    let rendered = complete.clone();
    tokio::task::spawn_blocking(move || {
        let mut emit = |c: Vec<u8>| tx.blocking_send(Ok(Bytes::from(c))).is_ok();
        let mut chunks = Chunks {
            out: Vec::with_capacity(CHUNK_BYTES + 4096),
            emit: &mut emit,
            alive: true,
        };
        render(&mut chunks);
        if chunks.finish() {
            rendered.store(true, Ordering::Release);
        }
    });
    let tail = then(done, move || complete.load(Ordering::Acquire));
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).chain(tail))
}
