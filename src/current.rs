//! The metadata of the request being served, for code that calls onward without being handed it.

use crate::RequestMetadata;
use pin_project_lite::pin_project;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

thread_local! {
    static CURRENT: RefCell<Option<Arc<RequestMetadata>>> = const { RefCell::new(None) };
}

/// The metadata of the request being served on this task, when it carried any.
///
/// While the server layer runs your service for a request (its future, and the response body as it
/// streams), that request's metadata is *current*: this returns it, and the client side
/// ([`InjectMetadataLayer`](crate::InjectMetadataLayer), and the reqwest middleware) adds it to
/// outgoing calls. So a gateway or agent that handles a tagged request and calls another service
/// passes `trace_id`, `user_id` and tags along with no code. A request that carried none, or a
/// server layer with [`propagate(false)`](crate::RequestyMetadataLayer::propagate), leaves the
/// current metadata as it was: behind another server layer, or called in-process from a handler, the
/// outer request's stays current.
///
/// It follows the future, not the thread: it is set each time the future is polled (and while it
/// is dropped, when the request is given up) and restored after, so it is right whichever worker
/// thread polls it, and two requests on one thread never see each other's. A task you spawn is a new
/// future and does not inherit it; carry it over with [`scope`] (or [`in_current`] as a shorthand):
///
/// ```
/// # async fn demo() {
/// let work = async { requesty_metadata::current().and_then(|m| m.trace_id.clone()) };
/// let handle = tokio::spawn(requesty_metadata::in_current(work));
/// # handle.await.unwrap();
/// # }
/// ```
///
/// A closure run by `tokio::task::spawn_blocking` is on another thread, where none is current
/// either: move `current()` into it, or a future made with [`in_current`] for it to block on.
pub fn current() -> Option<Arc<RequestMetadata>> {
    // None once the thread's locals are being destroyed: code dropped then may still ask.
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Runs `future` with `metadata` as the current metadata.
///
/// ```
/// use requesty_metadata::{current, scope, RequestMetadata};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let meta = RequestMetadata::new().trace_id("t-1");
/// let seen = scope(Some(meta.into()), async { current().and_then(|m| m.trace_id.clone()) }).await;
/// assert_eq!(seen.as_deref(), Some("t-1"));
/// assert!(current().is_none());
/// # });
/// ```
pub fn scope<F: Future>(metadata: Option<Arc<RequestMetadata>>, future: F) -> Scoped<F> {
    Scoped {
        future: Some(future),
        metadata,
    }
}

/// Runs `future` with this task's current metadata, wherever it is polled: wrap spawned tasks in it.
pub fn in_current<F: Future>(future: F) -> Scoped<F> {
    scope(current(), future)
}

pin_project! {
    /// A future polled with some metadata current. Made by [`scope`] and [`in_current`].
    ///
    /// Like any future it does nothing until polled: dropped unawaited (not handed to
    /// `tokio::spawn`), the work it wraps never runs. Dropped before it completes (a request given
    /// up, a task aborted), it drops that work with the metadata current too, as it polled it: a
    /// drop guard in it that calls onward (to cancel work upstream, say) carries the metadata.
    ///
    /// ```compile_fail
    /// # #![deny(unused_must_use)]
    /// # fn main() {
    /// requesty_metadata::in_current(async { /* never runs */ });
    /// # }
    /// ```
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Scoped<F> {
        // `None` only while it is dropped.
        #[pin]
        future: Option<F>,
        metadata: Option<Arc<RequestMetadata>>,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _current = enter(this.metadata.take());
            this.future.set(None);
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = enter(this.metadata.clone());
        match this.future.as_pin_mut() {
            Some(future) => future.poll(cx),
            None => unreachable!("a scoped future holds its future until it is dropped"),
        }
    }
}

impl<F> std::fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// The server layer's mark on a request it hands on: the metadata it read, as it made it current.
/// A client that does not propagate knows by it a request a handler forwards as it was received,
/// wherever that happens (a spawned task has no current metadata to compare with).
#[derive(Clone)]
pub(crate) struct Inbound(pub(crate) Arc<RequestMetadata>);

/// Makes `metadata` current until the guard drops (also on unwinding), then restores what was.
///
/// Here and in [`lend`], a thread whose locals are being destroyed (a future held in one dropped
/// then) has nothing current and takes nothing: a panic there would abort the process.
pub(crate) fn enter(metadata: Option<Arc<RequestMetadata>>) -> Restore {
    Restore(CURRENT.try_with(|c| c.replace(metadata)).ok().flatten())
}

pub(crate) struct Restore(Option<Arc<RequestMetadata>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
    }
}

/// Lends `slot`'s metadata to the thread while the guard lives, and takes it back after: no
/// reference counting per poll, for code polled many times (a streaming body).
pub(crate) fn lend(slot: &mut Option<Arc<RequestMetadata>>) -> Lent<'_> {
    let _ = CURRENT.try_with(|c| std::mem::swap(&mut *c.borrow_mut(), slot));
    Lent(slot)
}

pub(crate) struct Lent<'a>(&'a mut Option<Arc<RequestMetadata>>);

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| std::mem::swap(&mut *c.borrow_mut(), self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn trace() -> Option<String> {
        current().and_then(|m| m.trace_id.clone())
    }

    fn meta(trace_id: &str) -> Option<Arc<RequestMetadata>> {
        Some(Arc::new(RequestMetadata::new().trace_id(trace_id)))
    }

    /// Notes the current trace id when it is dropped.
    struct OnDrop(Arc<Mutex<Vec<Option<String>>>>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(trace());
            }
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// A scoped future dropped before it completes (a request given up, a task aborted) drops what it
    /// holds with its metadata current, as it was polled: a drop guard that calls onward (to cancel
    /// work upstream, say) carries it too.
    #[test]
    fn a_scoped_future_is_dropped_with_its_metadata_current() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let guard = OnDrop(seen.clone());
        let work = scope(meta("t-drop"), async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        runtime().block_on(async {
            let mut work = Box::pin(work);
            let polled = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            drop(work);
            assert_eq!(trace(), None, "restored after the drop");
        });
        assert_eq!(*seen.lock().unwrap(), [Some("t-drop".to_owned())]);
    }

    /// Notes the current metadata when dropped, from a thread-local's destructor.
    struct NoteCurrent(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for NoteCurrent {
        fn drop(&mut self) {
            let _ = self.0.send(trace());
        }
    }

    type Held = Scoped<std::future::Pending<()>>;

    thread_local! {
        static NOTE: RefCell<Option<NoteCurrent>> = const { RefCell::new(None) };
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    /// A scoped future, or code asking for the current metadata, dropped as the thread's locals are
    /// destroyed (a future held in a thread-local, an executor stored in one) after the current
    /// metadata's own: nothing is current then, and nothing panics (which there would abort).
    #[test]
    fn nothing_is_current_once_the_threads_locals_are_destroyed() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Registered before the current metadata (by `trace` below), destroyed after it.
            NOTE.with(|n| *n.borrow_mut() = Some(NoteCurrent(tx)));
            HELD.with(|h| *h.borrow_mut() = Some(scope(meta("t"), std::future::pending())));
            assert_eq!(trace(), None);
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().ok(), Some(None));
    }

    /// A future that panics inside a scope leaves nothing current for the next task on the thread.
    #[test]
    fn a_panic_inside_a_scope_leaves_nothing_current() {
        let runtime = runtime();
        let panicked = runtime.block_on(async {
            tokio::spawn(scope(meta("t-panic"), async { panic!("handler failed") })).await
        });
        assert!(panicked.is_err_and(|e| e.is_panic()));
        assert_eq!(
            runtime.block_on(async { tokio::spawn(async { trace() }).await.unwrap() }),
            None
        );
        assert_eq!(trace(), None);
    }

    /// `spawn_blocking` runs a closure on another thread, where nothing is current; a future made
    /// with `in_current` before it carries the metadata there.
    #[test]
    fn a_blocking_task_sees_the_metadata_only_through_a_scoped_future() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (plain, scoped) = runtime.block_on(scope(meta("t-blocking"), async {
            let plain = tokio::task::spawn_blocking(trace).await.unwrap();
            let work = in_current(async { trace() });
            let handle = tokio::runtime::Handle::current();
            let scoped = tokio::task::spawn_blocking(move || handle.block_on(work))
                .await
                .unwrap();
            (plain, scoped)
        }));
        assert_eq!(plain, None);
        assert_eq!(scoped.as_deref(), Some("t-blocking"));
    }
}
