//! [`Shutdown`]: the one signal every background loop (job loops, relays,
//! sweepers) ends on.

use std::future::Future;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// Resolves when the process is asked to stop. Cloning is cheap.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Turns any future into a [`Shutdown`].
pub fn shutdown_on<F: Future<Output = ()> + Send + 'static>(signal: F) -> Shutdown {
    signal.boxed().shared()
}

/// A shutdown that never comes (for tests and one-shot runs).
pub fn never() -> Shutdown {
    shutdown_on(futures::future::pending::<()>())
}
