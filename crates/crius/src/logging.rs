//! The tracing subscriber: text or JSON lines on stderr, with a level that SIGHUP can change,
//! and, when `[crius.tracing]` enables it, the OTLP export of spans (see [`crate::otlp`]).

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogLevel, TracingConfig};
use crate::otlp;

/// Changes the log level of the installed subscriber.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set at start: it wins over the config, also on reload.
    from_env: bool,
    /// The span exporter, when tracing is enabled.
    export: Option<otlp::Export>,
}

/// The filter for `level`; at debug and trace the HTTP/2 stack stays at info, or its
/// frame-by-frame logs would drown ours.
pub fn filter_directives(level: LogLevel) -> String {
    match level {
        LogLevel::Trace | LogLevel::Debug => {
            format!("{level},h2=info,hyper=info,hyper_util=info,tower=info,tonic=info")
        }
        _ => level.to_string(),
    }
}

/// Installs the global subscriber. RUST_LOG, when set, overrides `level`; it filters the
/// log lines only, not the exported spans. With tracing enabled this must run inside a
/// Tokio runtime.
pub fn init(
    level: LogLevel,
    format: LogFormat,
    tracing: &TracingConfig,
) -> anyhow::Result<LogHandle> {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let from_env = env.is_some();
    let directives = env.unwrap_or_else(|| filter_directives(level));
    let filter = EnvFilter::try_new(&directives)
        .map_err(|err| anyhow::anyhow!("invalid log filter {directives:?}: {err}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(true)
            .fmt_fields(LogFields)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .boxed(),
    };
    let (spans, export) = if tracing.enable_tracing {
        let (layer, export) = otlp::layer(tracing)?;
        (Some(layer), Some(export))
    } else {
        (None, None)
    };
    tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(spans)
        .try_init()
        .map_err(|err| anyhow::anyhow!("cannot install the log subscriber: {err}"))?;
    Ok(LogHandle {
        filter: handle,
        from_env,
        export,
    })
}

/// Text log fields as `name=value` (the message bare), leaving out the `otel.*` and
/// `rpc.*` fields that only name and describe the exported spans.
struct LogFields;

/// Whether a field is for the exported span only.
fn span_only(name: &str) -> bool {
    name.starts_with("otel.") || name.starts_with("rpc.")
}

impl<'w> FormatFields<'w> for LogFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        let mut visitor = LogFieldVisitor {
            writer,
            seen: false,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> std::fmt::Result {
        let mut more = String::new();
        self.format_fields(Writer::new(&mut more), fields)?;
        if !more.is_empty() {
            if !current.fields.is_empty() {
                current.fields.push(' ');
            }
            current.fields.push_str(&more);
        }
        Ok(())
    }
}

struct LogFieldVisitor<'w> {
    writer: Writer<'w>,
    seen: bool,
    result: std::fmt::Result,
}

impl Visit for LogFieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || span_only(name) {
            return;
        }
        let sep = if self.seen { " " } else { "" };
        self.seen = true;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value:?}")
        } else {
            write!(
                self.writer,
                "{sep}{}={value:?}",
                name.trim_start_matches("r#")
            )
        };
    }
}

impl LogHandle {
    /// Switches to `level`, unless RUST_LOG decides the filter.
    pub fn set_level(&self, level: LogLevel) -> anyhow::Result<()> {
        if self.from_env {
            return Ok(());
        }
        let filter = EnvFilter::try_new(filter_directives(level))
            .map_err(|err| anyhow::anyhow!("invalid log level {level}: {err}"))?;
        self.filter
            .reload(filter)
            .map_err(|err| anyhow::anyhow!("cannot change the log level: {err}"))
    }

    /// Sends the spans still queued for export (a short, bounded wait).
    pub fn shutdown(&mut self) {
        if let Some(export) = self.export.take() {
            export.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_makes_a_valid_filter() {
        for level in [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ] {
            let directives = filter_directives(level);
            assert!(directives.starts_with(level.as_str()), "{directives}");
            EnvFilter::try_new(&directives).unwrap();
        }
        assert!(filter_directives(LogLevel::Debug).contains("h2=info"));
        assert_eq!(filter_directives(LogLevel::Warn), "warn");
    }

    #[test]
    fn text_logs_leave_out_the_span_only_fields() {
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buf {
            type Writer = Buf;
            fn make_writer(&'a self) -> Buf {
                self.clone()
            }
        }
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(LogFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "cri",
                method = "RunPodSandbox",
                otel.name = "RunPodSandbox",
                rpc.grpc.status_code = tracing::field::Empty,
                pod_id = tracing::field::Empty
            );
            let _in = span.enter();
            span.record("rpc.grpc.status_code", 0);
            span.record("pod_id", "p1");
            tracing::info!(n = 3, "pod ready");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(r#"cri{method="RunPodSandbox" pod_id="p1"}: "#),
            "{text}"
        );
        assert!(text.trim_end().ends_with("pod ready n=3"), "{text}");
        assert!(!text.contains("otel") && !text.contains("rpc."), "{text}");
    }
}
