//! Running the daemon: claim the socket, start the core, serve CRI until SIGTERM/SIGINT,
//! reload on SIGHUP, and leave nothing behind on the way out.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tonic::codegen::http;
use tracing::{error, info, warn};

use crate::cli::ConfigOpts;
use crate::config::Config;
use crate::core_config::core_config;
use crate::h2_authority::AuthorityFix;
use crate::logging::LogHandle;
use crate::metrics::CallTimer;
use crate::{metrics, notify, otlp, socket};

/// How long in-flight calls may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the server keeps its connections after the last call ended, so replies
/// already made reach their clients before the process exits.
const DRAIN: Duration = Duration::from_millis(200);

/// Serves CRI on the configured socket until SIGTERM or SIGINT.
pub async fn serve(opts: ConfigOpts, config: Config, log: LogHandle) -> anyhow::Result<()> {
    let exe_dir = crate::config::exe_dir();
    let listen = config.crius.api.listen.clone();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    // Claim the socket before touching any state, so a second daemon never disturbs the
    // first one's files.
    let (listener, cri_socket) = socket::bind(&listen)?;
    let fresh_dirs = [&config.crius.root, &config.crius.runroot]
        .into_iter()
        .filter(|d| !d.exists())
        .cloned()
        .collect::<Vec<PathBuf>>();
    let in_flight = InFlight::default();
    let started = async {
        listener
            .set_nonblocking(true)
            .with_context(|| format!("cannot configure socket {}", listen.display()))?;
        let listener = tokio::net::UnixListener::from_std(listener)
            .with_context(|| format!("cannot register socket {}", listen.display()))?;
        let daemon = crius_core::Daemon::start(core_config(&config, exe_dir.as_deref()))
            .await
            .context("cannot start the daemon")?;
        anyhow::Ok((listener, daemon))
    }
    .await;
    let (listener, daemon) = match started {
        Ok(started) => started,
        Err(err) => {
            cri_socket.remove_all();
            for dir in &fresh_dirs {
                remove_empty_tree(dir);
            }
            return Err(err);
        }
    };
    let m = &config.crius.metrics;
    if m.enable_metrics {
        // validate() checked the address.
        if let Ok(ip) = m.metrics_host.parse::<std::net::IpAddr>() {
            metrics::spawn(
                std::net::SocketAddr::new(ip, m.metrics_port),
                daemon.clone(),
            );
        }
    }

    let t = &config.crius.tracing;
    if t.enable_tracing {
        info!(
            endpoint = %t.tracing_endpoint,
            sampling_rate_per_million = t.tracing_sampling_rate_per_million,
            "exporting spans over OTLP/gRPC"
        );
        if t.tracing_sampling_rate_per_million == 0 {
            warn!("tracing_sampling_rate_per_million is 0: only calls whose client sends a sampled trace context are exported");
        }
    }

    // Exec, Attach and PortForward hand out URLs of this server; if it cannot start now,
    // the first such call tries again and reports why.
    let streaming = match crius_cri::start_streaming(daemon.clone()).await {
        Ok(s) => Some(s),
        Err(err) => {
            error!(%err, "cannot start the streaming server");
            None
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Each connection goes through AuthorityFix, so clients that send the socket path as
    // :authority (grpc-core, grpc-java, grpcurl) are served too.
    let incoming = UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new));
    if config.crius.tracing.enable_tracing {
        otlp::follow_callers();
    }
    let server = tonic::transport::Server::builder()
        .layer(in_flight.clone())
        .layer(otlp::CallerContext {
            enabled: config.crius.tracing.enable_tracing,
        })
        .layer(crate::deadline::Deadline)
        .add_routes(crius_cri::routes_with_streaming(daemon.clone(), streaming))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);

    info!(socket = %listen.display(), version = env!("CARGO_PKG_VERSION"), "serving CRI");
    if let Err(err) = notify::notify("READY=1") {
        warn!(%err, "cannot notify systemd of readiness");
    }

    let mut config = config;
    let served = loop {
        tokio::select! {
            res = &mut server => break res.context("the CRI server failed"),
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break Ok(()) }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break Ok(()) }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading configuration");
                let _ = notify::notify("RELOADING=1");
                if let Some(new) = reload(&opts, &config, &log, &daemon, exe_dir.as_deref()).await {
                    config = new;
                }
                let _ = notify::notify("READY=1");
            }
        }
    };

    let _ = notify::notify("STOPPING=1");
    if served.is_ok() {
        // Stop accepting; let calls in flight finish, within a bound. Idle connections do
        // not hold the exit up (a client that never answers the server's GOAWAY would):
        // once no call has run for DRAIN, the replies are out and the process may end.
        let _ = stop_tx.send(());
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            loop {
                in_flight.idle().await;
                match tokio::time::timeout(DRAIN, &mut server).await {
                    Ok(Err(err)) => warn!(%err, "the CRI server failed while stopping"),
                    Ok(Ok(())) => {}
                    Err(_) if in_flight.count() > 0 => continue,
                    Err(_) => {}
                }
                break;
            }
        })
        .await;
        match finished {
            Ok(()) => info!("no calls in flight"),
            Err(_) => warn!(
                grace = ?SHUTDOWN_GRACE,
                calls = in_flight.count(),
                "calls still running after the grace period; dropping them"
            ),
        }
    }
    daemon.shutdown().await;
    cri_socket.remove();
    // The exporter's last batch waits on the gRPC channel of this runtime.
    let _ = tokio::task::spawn_blocking(move || {
        let mut log = log;
        log.shutdown();
    })
    .await;
    info!("stopped");
    served
}

/// Counts CRI calls in flight, so shutdown waits for them and not for idle connections,
/// and times each for the metrics. A call counts until its response head is ready (a
/// streaming body does not hold it).
#[derive(Clone, Default)]
struct InFlight {
    count: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

/// Decrements the count when a call ends, however it ends.
struct CallGuard(InFlight);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    fn enter(&self) -> CallGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once no call is in flight.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<S> tower::Layer<S> for InFlight {
    type Service = InFlightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService {
            inner,
            in_flight: self.clone(),
        }
    }
}

/// The service [`InFlight`] wraps around the CRI routes.
#[derive(Clone)]
struct InFlightService<S> {
    inner: S,
    in_flight: InFlight,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for InFlightService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = self.in_flight.enter();
        let timer = CallTimer::start(req.uri().path());
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            timer.finish(&result);
            drop(guard);
            result
        })
    }
}

/// Re-reads the config files and applies what can change without a restart.
async fn reload(
    opts: &ConfigOpts,
    old: &Config,
    log: &LogHandle,
    daemon: &crius_core::Daemon,
    exe_dir: Option<&Path>,
) -> Option<Config> {
    let new = match opts.effective_config() {
        Ok(new) => new,
        Err(err) => {
            error!(%err, "config reload failed; keeping the running config");
            return None;
        }
    };
    let (o, n) = (&old.crius, &new.crius);
    let (oi, ni) = (&o.image, &n.image);
    let restart_only = [
        ("crius.root", o.root != n.root),
        ("crius.runroot", o.runroot != n.runroot),
        ("crius.api", o.api != n.api),
        ("crius.log_format", o.log_format != n.log_format),
        ("crius.tracing", o.tracing != n.tracing),
        (
            "crius.image.max_concurrent_downloads",
            oi.max_concurrent_downloads != ni.max_concurrent_downloads,
        ),
        (
            "crius.image.max_*_size, max_layer_entries",
            (
                oi.max_layer_size,
                oi.max_layer_entries,
                oi.max_manifest_size,
                oi.max_config_size,
            ) != (
                ni.max_layer_size,
                ni.max_layer_entries,
                ni.max_manifest_size,
                ni.max_config_size,
            ),
        ),
    ];
    for (key, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        warn!(
            key,
            "changed in the config but takes effect only after a restart"
        );
    }
    if let Err(err) = log.set_level(n.log_level) {
        error!(%err, "cannot apply the new log level");
    }
    daemon.reload(core_config(&new, exe_dir)).await;
    info!(log_level = %n.log_level, "configuration reloaded");
    Some(new)
}

/// Removes `dir` if it holds nothing but (nested) empty directories.
fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_call_to_end() {
        let in_flight = InFlight::default();
        in_flight.idle().await;
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn empty_trees_go_and_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(empty.join("a/b")).unwrap();
        remove_empty_tree(&empty);
        assert!(!empty.exists());

        let full = dir.path().join("full");
        std::fs::create_dir_all(full.join("a/b")).unwrap();
        std::fs::write(full.join("a/file"), "x").unwrap();
        remove_empty_tree(&full);
        assert!(full.join("a/file").exists());
        assert!(!full.join("a/b").exists());
    }
}
