//! OpenTelemetry export: the `tracing` spans of CRI calls and of their steps (CNI,
//! runtime commands, pulls) sent to an OTLP/gRPC collector, as CRI-O does.
//!
//! The spans go through a batch processor: its own thread, a bounded queue (spans past it
//! are dropped) and one export every few seconds. A collector that is down or slow never
//! holds up a CRI call; crius logs one warning when exports start failing and one line
//! when they work again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use tonic::codegen::http;
use tracing::{info, warn, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::{TracingConfig, SAMPLING_RATE_ALL};

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export at most; more are dropped (the SDK's default, as CRI-O's).
const MAX_QUEUE: usize = 2048;
/// How long stopping the daemon waits for the last spans to go out.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The running exporter; [`Export::shutdown`] sends what is still queued.
pub struct Export {
    provider: SdkTracerProvider,
}

/// The layer that turns crius's spans into OpenTelemetry spans.
pub type OtlpLayer<S> = Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    Targets,
    S,
>;

/// Builds the exporter and its layer. Must run inside a Tokio runtime: the gRPC channel
/// is created there (it connects only when the first batch goes out).
pub fn layer<S>(config: &TracingConfig) -> anyhow::Result<(OtlpLayer<S>, Export)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let endpoint = config
        .endpoint_uri()
        .map_err(|err| anyhow::anyhow!("crius.tracing.tracing_endpoint: {err}"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|err| anyhow::anyhow!("cannot set up the OTLP exporter for {endpoint}: {err}"))?;
    let processor = BatchSpanProcessor::builder(WarnOnFailure::new(exporter, endpoint))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUE)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(config.tracing_sampling_rate_per_million))
        .with_resource(
            Resource::builder()
                .with_service_name("crius")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("crius");
    // Only crius's own spans and events, whatever the log level: the HTTP/2 and gRPC
    // stacks below would add a span per frame.
    let targets = Targets::new()
        .with_target("crius", LevelFilter::INFO)
        .with_default(LevelFilter::OFF);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(targets);
    Ok((layer, Export { provider }))
}

/// CRI-O's sampler: a share of new traces, and the caller's choice for the rest.
fn sampler(per_million: u32) -> Sampler {
    let root = match per_million {
        0 => Sampler::AlwaysOff,
        n if n >= SAMPLING_RATE_ALL => Sampler::AlwaysOn,
        n => Sampler::TraceIdRatioBased(f64::from(n) / f64::from(SAMPLING_RATE_ALL)),
    };
    Sampler::ParentBased(Box::new(root))
}

impl Export {
    /// Sends the spans still queued, waiting at most a short while, and stops the thread.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            warn!(%err, "spans still queued at exit were not exported");
        }
    }
}

tokio::task_local! {
    /// The trace context the client of the CRI call being served sent, if any.
    static CALLER: Option<opentelemetry::Context>;
}

/// Makes each CRI call's span a child of the trace its client sent (W3C `traceparent`
/// and `tracestate` in the gRPC metadata, as the kubelet sends them with its tracing on),
/// so the client's sampling decision holds. Installed once, when tracing is enabled.
pub fn follow_callers() {
    crius_cri::on_call_span(|span| {
        let _ = CALLER.try_with(|caller| {
            if let Some(cx) = caller {
                use tracing_opentelemetry::OpenTelemetrySpanExt as _;
                let _ = span.set_parent(cx.clone());
            }
        });
    });
}

/// Reads the caller's trace context from the request headers for [`follow_callers`].
#[derive(Clone, Copy, Default)]
pub struct CallerContext {
    /// Off: requests pass untouched.
    pub enabled: bool,
}

impl<S> tower::Layer<S> for CallerContext {
    type Service = CallerContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerContextService {
            inner,
            enabled: self.enabled,
        }
    }
}

/// The service [`CallerContext`] wraps around the CRI routes.
#[derive(Clone)]
pub struct CallerContextService<S> {
    inner: S,
    enabled: bool,
}

impl<S, B> tower::Service<http::Request<B>> for CallerContextService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tokio::task::futures::TaskLocalFuture<Option<opentelemetry::Context>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let caller = if self.enabled {
            caller_context(req.headers())
        } else {
            None
        };
        CALLER.scope(caller, self.inner.call(req))
    }
}

/// The W3C trace context in `headers`, when it names a valid span.
fn caller_context(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry::trace::TraceContextExt as _;

    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }

    headers.get("traceparent")?;
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The OTLP exporter, logging when exports start failing and when they work again
/// (once each, not once per batch).
#[derive(Debug)]
struct WarnOnFailure<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
}

impl<E> WarnOnFailure<E> {
    fn new(inner: E, endpoint: String) -> Self {
        WarnOnFailure {
            inner,
            endpoint,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter> SpanExporter for WarnOnFailure<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(err) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(
                        endpoint = %self.endpoint,
                        %err,
                        spans,
                        "cannot export spans to the tracing endpoint; dropping them until it answers"
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!(endpoint = %self.endpoint, "exporting spans again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::Context;
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    fn decide(sampler: &Sampler, parent: Option<&Context>, trace: u128) -> SamplingDecision {
        sampler
            .should_sample(
                parent,
                TraceId::from(trace),
                "RunPodSandbox",
                &SpanKind::Server,
                &[],
                &[],
            )
            .decision
    }

    #[test]
    fn caller_context_is_read_from_a_valid_traceparent_only() {
        use opentelemetry::trace::TraceContextExt as _;
        let mut headers = http::HeaderMap::new();
        assert!(caller_context(&headers).is_none());
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert!(caller_context(&headers).is_none());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let cx = caller_context(&headers).unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_sampled() && sc.is_remote());
    }

    #[test]
    fn sampling_rate_per_million_as_cri_o() {
        let ids = [1u128, u128::MAX / 3, u128::MAX / 2 + 7, u128::MAX - 1];
        for id in ids {
            assert_eq!(decide(&sampler(0), None, id), SamplingDecision::Drop);
            assert_eq!(
                decide(&sampler(1_000_000), None, id),
                SamplingDecision::RecordAndSample
            );
        }
        // A sampled parent wins over a rate of 0.
        let parent = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(5u128),
            opentelemetry::trace::SpanId::from(9u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        assert_eq!(
            decide(&sampler(0), Some(&parent), 5),
            SamplingDecision::RecordAndSample
        );
    }
}
