//! crius's side service on the CRI socket (`proto/crius/pull.proto`): a pull that streams
//! where it stands, for `crius pull`. The CRI PullImage has no progress stream.

use std::sync::Arc;
use std::time::Duration;

use crius_core::Daemon;
use crius_cri_api::pull as api;
use crius_cri_api::pull::pull_progress_server::PullProgress;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::status::{invalid, to_status};

/// How often a progress message is sent while the pull runs.
const TICK: Duration = Duration::from_millis(200);

/// The service, holding the daemon it pulls with.
pub(crate) struct PullService {
    pub daemon: Arc<Daemon>,
}

fn message(progress: &crius_image::PullProgress, image_ref: String) -> api::PullImageProgress {
    api::PullImageProgress {
        layers: progress
            .snapshot()
            .into_iter()
            .map(|l| api::LayerProgress {
                digest: l.digest,
                done: l.done,
                total: l.total,
                state: l.state.as_str().to_string(),
            })
            .collect(),
        elapsed_ms: u64::try_from(progress.elapsed().as_millis()).unwrap_or(u64::MAX),
        image_ref,
    }
}

#[tonic::async_trait]
impl PullProgress for PullService {
    type PullImageWithProgressStream = ReceiverStream<Result<api::PullImageProgress, Status>>;

    async fn pull_image_with_progress(
        &self,
        req: Request<api::PullImageWithProgressRequest>,
    ) -> Result<Response<Self::PullImageWithProgressStream>, Status> {
        let name = req.into_inner().image.trim().to_string();
        if name.is_empty() {
            return Err(invalid("PullImageWithProgress needs an image name"));
        }
        let progress = crius_image::PullProgress::new(&name);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let daemon = self.daemon.clone();
        let span = tracing::info_span!(
            "cri",
            method = "PullImageWithProgress",
            image = %name,
            otel.name = "PullImageWithProgress",
            otel.kind = "server",
        );
        // The pull runs on its own task: a client that goes away does not cut it.
        tokio::spawn(
            async move {
                let pull = daemon.pull_image_with_progress(&name, progress.clone());
                tokio::pin!(pull);
                let mut ticks = tokio::time::interval(TICK);
                let result = loop {
                    tokio::select! {
                        result = &mut pull => break result,
                        _ = ticks.tick() => {
                            // A full channel or a gone client: skip this one.
                            let _ = tx.try_send(Ok(message(&progress, String::new())));
                        }
                    }
                };
                let last = match result {
                    Ok(image) => Ok(message(&progress, image.id)),
                    Err(err) => Err(to_status(err)),
                };
                let _ = tx.send(last).await;
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
