//! How far a pull has come: bytes done and total per layer, for the progress log, the
//! metrics and `crius pull`'s progress bars.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::info;

/// Where one layer of a pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Waiting for its turn (or for another pull of the same layer).
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// Downloaded and unpacked.
    Done,
    /// Already in the store: nothing to download.
    Reused,
}

impl LayerState {
    fn from_u8(v: u8) -> LayerState {
        match v {
            1 => LayerState::Downloading,
            2 => LayerState::Done,
            3 => LayerState::Reused,
            _ => LayerState::Waiting,
        }
    }

    /// The state's name, as the progress log and `crius pull` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerState::Waiting => "waiting",
            LayerState::Downloading => "downloading",
            LayerState::Done => "done",
            LayerState::Reused => "exists",
        }
    }
}

/// One layer's figures at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    pub total: u64,
    pub done: u64,
    pub state: LayerState,
}

#[derive(Debug)]
pub(crate) struct LayerCounter {
    digest: String,
    total: u64,
    done: AtomicU64,
    state: AtomicU8,
}

impl LayerCounter {
    /// Bytes that arrived.
    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: LayerState) {
        self.state.store(state as u8, Ordering::Relaxed);
        if state == LayerState::Done {
            self.done.store(self.total, Ordering::Relaxed);
        }
    }
}

/// The progress of one pull, shared by the pull and whoever watches it.
#[derive(Debug)]
pub struct PullProgress {
    image: String,
    started: Instant,
    layers: Mutex<Vec<Arc<LayerCounter>>>,
}

impl PullProgress {
    /// A pull of `image` that starts now.
    pub fn new(image: &str) -> Arc<PullProgress> {
        Arc::new(PullProgress {
            image: image.to_string(),
            started: Instant::now(),
            layers: Mutex::new(Vec::new()),
        })
    }

    /// Adds a layer of `total` compressed bytes; the pull counts its bytes on the result.
    pub(crate) fn layer(&self, digest: &str, total: u64) -> Arc<LayerCounter> {
        let counter = Arc::new(LayerCounter {
            digest: digest.to_string(),
            total,
            done: AtomicU64::new(0),
            state: AtomicU8::new(LayerState::Waiting as u8),
        });
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counter.clone());
        counter
    }

    /// The image being pulled, as asked for.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Time since the pull started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every layer as it stands now, in manifest order.
    pub fn snapshot(&self) -> Vec<LayerProgress> {
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| LayerProgress {
                digest: l.digest.clone(),
                total: l.total,
                done: l.done.load(Ordering::Relaxed).min(l.total.max(1)),
                state: LayerState::from_u8(l.state.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Bytes done and total over the layers that are downloaded (not reused).
    pub fn totals(&self) -> (u64, u64) {
        self.snapshot()
            .iter()
            .filter(|l| l.state != LayerState::Reused)
            .fold((0, 0), |(d, t), l| (d + l.done, t + l.total))
    }

    /// Logs where the pull stands and sets its progress series; `since` is the figure
    /// of the last report, for the rate. Returns the bytes done now.
    pub(crate) fn report(&self, since: (u64, Instant)) -> u64 {
        let layers = self.snapshot();
        let (done, total) = self.totals();
        let secs = since.1.elapsed().as_secs_f64().max(0.001);
        let rate = done.saturating_sub(since.0) as f64 / secs;
        let per_layer = layers
            .iter()
            .map(|l| {
                format!(
                    "{} {} {}/{}",
                    short_digest(&l.digest),
                    l.state.as_str(),
                    l.done,
                    l.total
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        info!(
            image = %self.image,
            done,
            total,
            rate = %format_rate(rate),
            elapsed = ?self.elapsed(),
            layers = %per_layer,
            "pull in progress"
        );
        crius_metrics::metrics().set_pull_progress(&self.image, done, total);
        done
    }
}

/// The 12 hex digits after "sha256:", as registries and docker show a layer.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.get(..12).unwrap_or(hex)
}

/// Bytes per second, in the unit that reads best.
pub fn format_rate(bytes_per_sec: f64) -> String {
    let units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
    let mut v = bytes_per_sec;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", units[unit])
}

/// Logs `progress` every `interval` until dropped (the pull ended), then removes its
/// progress series.
pub(crate) struct ProgressReporter {
    task: tokio::task::JoinHandle<()>,
    image: String,
}

impl ProgressReporter {
    pub(crate) fn start(progress: Arc<PullProgress>, interval: Duration) -> ProgressReporter {
        let image = progress.image.clone();
        let task = tokio::spawn(async move {
            let mut last = (0, Instant::now());
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticks.tick().await;
                let done = progress.report(last);
                last = (done, Instant::now());
            }
        });
        ProgressReporter { task, image }
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.task.abort();
        crius_metrics::metrics().clear_pull_progress(&self.image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_leave_reused_layers_out() {
        let p = PullProgress::new("r.example/a:1");
        let a = p.layer("sha256:aaaaaaaaaaaaaaaaaaaa", 100);
        let b = p.layer("sha256:bbbbbbbbbbbbbbbbbbbb", 50);
        let c = p.layer("sha256:cccccccccccccccccccc", 70);
        a.set_state(LayerState::Downloading);
        a.add(40);
        b.set_state(LayerState::Done);
        c.set_state(LayerState::Reused);
        assert_eq!(p.totals(), (90, 150));
        let snap = p.snapshot();
        assert_eq!(snap[0].state, LayerState::Downloading);
        assert_eq!(snap[0].done, 40);
        assert_eq!(snap[2].state, LayerState::Reused);
    }

    #[test]
    fn digests_and_rates_read_short() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(format_rate(512.0), "512.0 B/s");
        assert_eq!(format_rate(3.0 * 1024.0 * 1024.0), "3.0 MiB/s");
    }
}
