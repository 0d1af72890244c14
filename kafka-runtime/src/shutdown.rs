//! Graceful shutdown: one cancellation token, fired by SIGTERM or SIGINT.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// Set once a signal asked the process to stop: long blocking work that has no token at hand
/// (a partition restore inside a handler) checks it to stop within the shutdown deadline.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// True once SIGTERM or SIGINT was received.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
///
/// Must be called inside a Tokio runtime.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        }
        REQUESTED.store(true, Ordering::Relaxed);
        fired.cancel();
    });
    token
}
