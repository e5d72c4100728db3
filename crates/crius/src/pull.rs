//! `crius pull IMAGE`: asks the running daemon to pull an image, with its registries
//! config and credentials, and shows the pull's progress: a bar per layer on a terminal,
//! plain lines otherwise. It uses crius's side service on the CRI socket
//! (`proto/crius/pull.proto`), since the CRI PullImage reports nothing until it ends.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use crius_cri_api::pull as api;
use crius_cri_api::pull::pull_progress_client::PullProgressClient;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How often the plain output prints a summary line while bytes arrive.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Pulls `image` through the daemon at `socket`; returns the image's id.
pub async fn pull(socket: &Path, image: &str, terminal: bool) -> anyhow::Result<String> {
    let channel = crate::status::connect(socket, Duration::from_secs(10), None)
        .await
        .context("is crius running?")?;
    let mut client = PullProgressClient::new(channel);
    let mut stream = client
        .pull_image_with_progress(api::PullImageWithProgressRequest {
            image: image.to_string(),
        })
        .await
        .map_err(|s| status_error(image, &s))?
        .into_inner();
    let mut view: Box<dyn View> = if terminal {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::default())
    };
    loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                view.show(&msg);
                if !msg.image_ref.is_empty() {
                    view.finish();
                    return Ok(msg.image_ref);
                }
            }
            Ok(None) => anyhow::bail!("the daemon ended the pull of {image} without a result"),
            Err(status) => {
                view.finish();
                return Err(status_error(image, &status));
            }
        }
    }
}

fn status_error(image: &str, status: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot pull {image}: {} ({:?})",
        status.message(),
        status.code()
    )
}

/// Somewhere to show progress.
trait View {
    fn show(&mut self, msg: &api::PullImageProgress);
    fn finish(&mut self);
}

/// A bar per layer (indicatif), on stderr.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Bars {
        let style = ProgressStyle::with_template(
            "{prefix} {msg:11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Bars {
            multi: MultiProgress::new(),
            bars: HashMap::new(),
            style,
        }
    }
}

impl View for Bars {
    fn show(&mut self, msg: &api::PullImageProgress) {
        for layer in &msg.layers {
            let bar = self.bars.entry(layer.digest.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(layer.total));
                bar.set_style(self.style.clone());
                bar.set_prefix(crius_image::short_digest(&layer.digest).to_string());
                bar
            });
            bar.set_position(layer.done);
            bar.set_message(layer.state.clone());
            if matches!(layer.state.as_str(), "done" | "exists") && !bar.is_finished() {
                bar.set_position(layer.total);
                bar.finish();
            }
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// Plain lines on stderr: one per layer state change, and a summary every
/// [`LINE_EVERY`] while bytes arrive.
#[derive(Default)]
struct Lines {
    states: HashMap<String, String>,
    last_summary: Option<(Instant, u64)>,
}

impl View for Lines {
    fn show(&mut self, msg: &api::PullImageProgress) {
        let mut err = std::io::stderr().lock();
        for layer in &msg.layers {
            if self.states.get(&layer.digest) != Some(&layer.state) {
                self.states
                    .insert(layer.digest.clone(), layer.state.clone());
                let _ = writeln!(
                    err,
                    "{} {} {}/{} bytes",
                    crius_image::short_digest(&layer.digest),
                    layer.state,
                    layer.done,
                    layer.total
                );
            }
        }
        let done: u64 = msg.layers.iter().map(|l| l.done).sum();
        let total: u64 = msg.layers.iter().map(|l| l.total).sum();
        let now = Instant::now();
        match self.last_summary {
            None => self.last_summary = Some((now, done)),
            Some((at, before)) if now.duration_since(at) >= LINE_EVERY => {
                let rate =
                    done.saturating_sub(before) as f64 / now.duration_since(at).as_secs_f64();
                let _ = writeln!(
                    err,
                    "{done}/{total} bytes, {}, {:.1} s",
                    crius_image::format_rate(rate),
                    msg.elapsed_ms as f64 / 1000.0
                );
                self.last_summary = Some((now, done));
            }
            Some(_) => {}
        }
    }

    fn finish(&mut self) {}
}
