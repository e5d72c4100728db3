//! The CRI v1 gRPC services of crius. Thin by design: each handler validates its request,
//! calls [`crius_core::Daemon`], and maps the result; status codes are chosen in `status.rs`.
//! Every call runs in a tracing span with its method, pod or container id and duration.

mod container;
mod events;
mod image;
mod list_stream;
mod metrics;
mod pod;
mod pull_progress;
mod runtime_info;
mod stats;
mod status;
mod streaming;
mod trace;

use std::sync::Arc;

use crius_core::Daemon;
use crius_cri_api::v1 as cri;
use crius_cri_api::v1::image_service_server::{ImageService, ImageServiceServer};
use crius_cri_api::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::{Request, Response, Status};

use status::unimplemented;
pub use streaming::start_streaming;
pub use trace::on_call_span;
use trace::{traced, Ids};

/// Both CRI services, ready for `tonic::transport::Server::add_routes`. The streaming
/// server for Exec, Attach and PortForward starts on first use.
pub fn routes(daemon: Arc<Daemon>) -> tonic::service::Routes {
    routes_with_streaming(daemon, None)
}

/// Both CRI services, handing out URLs of `streaming` (from [`start_streaming`]); with
/// `None` the streaming server starts on first use.
pub fn routes_with_streaming(
    daemon: Arc<Daemon>,
    streaming: Option<crius_stream::StreamServer>,
) -> tonic::service::Routes {
    let runtime = RuntimeServiceServer::new(Runtime {
        daemon: daemon.clone(),
        streaming: Arc::new(streaming::Streaming::new(daemon.clone(), streaming)),
    })
    .max_decoding_message_size(16 << 20)
    .max_encoding_message_size(16 << 20);
    let images = ImageServiceServer::new(Images {
        daemon: daemon.clone(),
    })
    .max_decoding_message_size(16 << 20)
    .max_encoding_message_size(16 << 20);
    let pulls = crius_cri_api::pull::pull_progress_server::PullProgressServer::new(
        pull_progress::PullService { daemon },
    );
    tonic::service::Routes::new(runtime)
        .add_service(images)
        .add_service(pulls)
}

/// The CRI RuntimeService.
struct Runtime {
    daemon: Arc<Daemon>,
    streaming: Arc<streaming::Streaming>,
}

/// The CRI ImageService.
struct Images {
    daemon: Arc<Daemon>,
}

type Reply<T> = Result<Response<T>, Status>;

/// The body of a server-streaming reply.
type ReplyStream<T> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, req: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        traced("Version", Ids::none(), async {
            Ok(runtime_info::version(&self.daemon, req.into_inner()))
        })
        .await
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        traced("RunPodSandbox", Ids::none(), async {
            pod::run(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("StopPodSandbox", Ids::pod(&id), async {
            pod::stop(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("RemovePodSandbox", Ids::pod(&id), async {
            pod::remove(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("PodSandboxStatus", Ids::pod(&id), async {
            pod::status(&self.daemon, req.into_inner())
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        traced("ListPodSandbox", Ids::none(), async {
            Ok(pod::list(&self.daemon, req.into_inner()))
        })
        .await
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("CreateContainer", Ids::pod(&id), async {
            container::create(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        let id = req.get_ref().container_id.clone();
        traced("StartContainer", Ids::container(&id), async {
            container::start(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let id = req.get_ref().container_id.clone();
        traced("StopContainer", Ids::container(&id), async {
            container::stop(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        let id = req.get_ref().container_id.clone();
        traced("RemoveContainer", Ids::container(&id), async {
            container::remove(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        traced("ListContainers", Ids::none(), async {
            Ok(container::list(&self.daemon, req.into_inner()))
        })
        .await
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let id = req.get_ref().container_id.clone();
        traced("ContainerStatus", Ids::container(&id), async {
            container::status(&self.daemon, req.into_inner())
        })
        .await
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let id = req.get_ref().container_id.clone();
        traced("UpdateContainerResources", Ids::container(&id), async {
            container::update_resources(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        let id = req.get_ref().container_id.clone();
        traced("ReopenContainerLog", Ids::container(&id), async {
            container::reopen_log(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Reply<cri::ExecSyncResponse> {
        let id = req.get_ref().container_id.clone();
        traced("ExecSync", Ids::container(&id), async {
            container::exec_sync(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let id = req.get_ref().container_id.clone();
        traced("Exec", Ids::container(&id), async {
            streaming::exec(&self.daemon, &self.streaming, req.into_inner()).await
        })
        .await
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let id = req.get_ref().container_id.clone();
        traced("Attach", Ids::container(&id), async {
            streaming::attach(&self.daemon, &self.streaming, req.into_inner()).await
        })
        .await
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("PortForward", Ids::pod(&id), async {
            streaming::port_forward(&self.daemon, &self.streaming, req.into_inner()).await
        })
        .await
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        let id = req.get_ref().container_id.clone();
        traced("ContainerStats", Ids::container(&id), async {
            stats::container(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        traced("ListContainerStats", Ids::none(), async {
            Ok(stats::list_containers(&self.daemon, req.into_inner()).await)
        })
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("PodSandboxStats", Ids::pod(&id), async {
            stats::pod(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        traced("ListPodSandboxStats", Ids::none(), async {
            Ok(stats::list_pods(&self.daemon, req.into_inner()).await)
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        _req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        // The kubelet sends the pod CIDR here; CNI plugins own addressing, so there is
        // nothing to change, as with CRI-O and containerd.
        traced("UpdateRuntimeConfig", Ids::none(), async {
            Ok(cri::UpdateRuntimeConfigResponse {})
        })
        .await
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        traced("Status", Ids::none(), async {
            Ok(runtime_info::status(&self.daemon, req.into_inner()).await)
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        req: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        let id = req.get_ref().container_id.clone();
        traced("CheckpointContainer", Ids::container(&id), async {
            container::checkpoint(&self.daemon, req.into_inner()).await
        })
        .await
    }

    type GetContainerEventsStream = ReplyStream<cri::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        traced("GetContainerEvents", Ids::none(), async {
            Ok(Box::pin(events::stream(self.daemon.clone())) as Self::GetContainerEventsStream)
        })
        .await
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        traced("ListMetricDescriptors", Ids::none(), async {
            Ok(cri::ListMetricDescriptorsResponse {
                descriptors: metrics::descriptors(&self.daemon.config().pod_metrics),
            })
        })
        .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        traced("ListPodSandboxMetrics", Ids::none(), async {
            Ok(cri::ListPodSandboxMetricsResponse {
                pod_metrics: metrics::collect(self.daemon.clone()).await?,
            })
        })
        .await
    }

    type StreamPodSandboxesStream = ReplyStream<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        req: Request<cri::StreamPodSandboxesRequest>,
    ) -> Reply<Self::StreamPodSandboxesStream> {
        let filter = req.into_inner().filter;
        traced("StreamPodSandboxes", Ids::none(), async {
            let items = pod::list(&self.daemon, cri::ListPodSandboxRequest { filter }).items;
            Ok(Box::pin(list_stream::chunked(items, |pod_sandboxes| {
                cri::StreamPodSandboxesResponse { pod_sandboxes }
            })) as Self::StreamPodSandboxesStream)
        })
        .await
    }

    type StreamContainersStream = ReplyStream<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        req: Request<cri::StreamContainersRequest>,
    ) -> Reply<Self::StreamContainersStream> {
        let filter = req.into_inner().filter;
        traced("StreamContainers", Ids::none(), async {
            let items = container::list(&self.daemon, cri::ListContainersRequest { filter });
            Ok(
                Box::pin(list_stream::chunked(items.containers, |containers| {
                    cri::StreamContainersResponse { containers }
                })) as Self::StreamContainersStream,
            )
        })
        .await
    }

    type StreamContainerStatsStream = ReplyStream<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        req: Request<cri::StreamContainerStatsRequest>,
    ) -> Reply<Self::StreamContainerStatsStream> {
        let filter = req.into_inner().filter;
        traced("StreamContainerStats", Ids::none(), async {
            let items =
                stats::list_containers(&self.daemon, cri::ListContainerStatsRequest { filter })
                    .await;
            Ok(
                Box::pin(list_stream::chunked(items.stats, |container_stats| {
                    cri::StreamContainerStatsResponse { container_stats }
                })) as Self::StreamContainerStatsStream,
            )
        })
        .await
    }

    type StreamPodSandboxStatsStream = ReplyStream<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Reply<Self::StreamPodSandboxStatsStream> {
        let filter = req.into_inner().filter;
        traced("StreamPodSandboxStats", Ids::none(), async {
            let items =
                stats::list_pods(&self.daemon, cri::ListPodSandboxStatsRequest { filter }).await;
            Ok(
                Box::pin(list_stream::chunked(items.stats, |pod_sandbox_stats| {
                    cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
                })) as Self::StreamPodSandboxStatsStream,
            )
        })
        .await
    }

    type StreamPodSandboxMetricsStream = ReplyStream<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Reply<Self::StreamPodSandboxMetricsStream> {
        traced("StreamPodSandboxMetrics", Ids::none(), async {
            let items = metrics::collect(self.daemon.clone()).await?;
            Ok(Box::pin(list_stream::chunked(items, |pod_sandbox_metrics| {
                cri::StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics,
                }
            })) as Self::StreamPodSandboxMetricsStream)
        })
        .await
    }

    async fn checkpoint_pod(
        &self,
        req: Request<cri::CheckpointPodRequest>,
    ) -> Reply<cri::CheckpointPodResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("CheckpointPod", Ids::pod(&id), async {
            Err(unimplemented("CheckpointPod"))
        })
        .await
    }

    async fn restore_pod(
        &self,
        _req: Request<cri::RestorePodRequest>,
    ) -> Reply<cri::RestorePodResponse> {
        traced("RestorePod", Ids::none(), async {
            Err(unimplemented("RestorePod"))
        })
        .await
    }

    async fn update_pod_sandbox_resources(
        &self,
        req: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Reply<cri::UpdatePodSandboxResourcesResponse> {
        let id = req.get_ref().pod_sandbox_id.clone();
        traced("UpdatePodSandboxResources", Ids::pod(&id), async {
            pod::update_resources(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn runtime_config(
        &self,
        req: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        traced("RuntimeConfig", Ids::none(), async {
            Ok(runtime_info::runtime_config(&self.daemon, req.into_inner()))
        })
        .await
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Reply<cri::ListImagesResponse> {
        traced("ListImages", Ids::none(), async {
            image::list(&self.daemon, req.into_inner())
        })
        .await
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Reply<cri::ImageStatusResponse> {
        traced("ImageStatus", Ids::none(), async {
            image::status(&self.daemon, req.into_inner())
        })
        .await
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Reply<cri::PullImageResponse> {
        traced("PullImage", Ids::none(), async {
            image::pull(&self.daemon, req.into_inner()).await
        })
        .await
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Reply<cri::RemoveImageResponse> {
        traced("RemoveImage", Ids::none(), async {
            image::remove(&self.daemon, req.into_inner())
        })
        .await
    }

    type StreamImagesStream = ReplyStream<cri::StreamImagesResponse>;

    async fn stream_images(
        &self,
        req: Request<cri::StreamImagesRequest>,
    ) -> Reply<Self::StreamImagesStream> {
        let filter = req.into_inner().filter;
        traced("StreamImages", Ids::none(), async {
            let items = image::list(&self.daemon, cri::ListImagesRequest { filter })?;
            Ok(Box::pin(list_stream::chunked(items.images, |images| {
                cri::StreamImagesResponse { images }
            })) as Self::StreamImagesStream)
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Reply<cri::ImageFsInfoResponse> {
        traced("ImageFsInfo", Ids::none(), async {
            image::fs_info(&self.daemon)
        })
        .await
    }
}
