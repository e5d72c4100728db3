//! A minimal OTLP/gRPC trace collector for tests and benchmarks: it serves the
//! collector's TraceService on 127.0.0.1 and keeps every span it is sent.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;

/// One span as the collector received it, with the service that sent it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The resource's `service.name`.
    pub service: String,
    /// The span as sent.
    pub span: Span,
}

impl Received {
    /// A string or integer attribute of the span.
    pub fn attr(&self, key: &str) -> Option<String> {
        string_attr(&self.span.attributes, key)
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            Some(any_value::Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

/// A minimal OTLP/gRPC collector: keeps every span it is sent.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on `port` of 127.0.0.1 (0: a free one) until the runtime ends; returns
    /// the port.
    pub async fn start_on(&self, port: u16) -> anyhow::Result<u16> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        Ok(port)
    }

    /// Serves on a free port of 127.0.0.1; returns the port.
    pub async fn start(&self) -> anyhow::Result<u16> {
        self.start_on(0).await
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The spans named `name`.
    pub fn named(&self, name: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|r| r.span.name == name)
            .collect()
    }

    /// The one span named `name` whose attribute `key` is `value`.
    pub fn one(&self, name: &str, key: &str, value: &str) -> Received {
        let found: Vec<_> = self
            .named(name)
            .into_iter()
            .filter(|r| r.attr(key).as_deref() == Some(value))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "spans {name} with {key}={value}: {found:#?}\nall: {:#?}",
            self.names()
        );
        found.into_iter().next().unwrap()
    }

    /// The children of `parent` (same trace, parent span id).
    pub fn children(&self, parent: &Received) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|r| {
                r.span.trace_id == parent.span.trace_id
                    && r.span.parent_span_id == parent.span.span_id
            })
            .collect()
    }

    /// The names of every span received so far.
    pub fn names(&self) -> Vec<String> {
        self.spans().into_iter().map(|r| r.span.name).collect()
    }
}
