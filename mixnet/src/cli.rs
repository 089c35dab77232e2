//! What every binary of this crate shares: logging, the shutdown signal, and
//! reading a flag of seconds or a directory key.

/// A `--...-interval` flag in seconds as a Duration; `what` names the flag in errors.
pub fn secs_flag(v: f64, what: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v).map_err(|e| anyhow::anyhow!("bad {what}: {e}"))
}

/// A `--directory-key` flag (base58 ed25519 key) as key bytes.
pub fn directory_key_flag(v: Option<&str>) -> anyhow::Result<Option<[u8; 32]>> {
    v.map(crate::keyfiles::parse_ed25519_b58).transpose().map_err(|e| anyhow::anyhow!("bad --directory-key: {e:#}"))
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `RUST_LOG`-driven logging, default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
