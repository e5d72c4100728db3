//! The tracing subscriber: text or JSON lines on stderr, with a level that SIGHUP can change.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogLevel};

/// Changes the log level of the installed subscriber.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set at start: it wins over the config, also on reload.
    from_env: bool,
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

/// Installs the global subscriber. RUST_LOG, when set, overrides `level`.
pub fn init(level: LogLevel, format: LogFormat) -> anyhow::Result<LogHandle> {
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
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|err| anyhow::anyhow!("cannot install the log subscriber: {err}"))?;
    Ok(LogHandle {
        filter: handle,
        from_env,
    })
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
}
