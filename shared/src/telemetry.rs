//! Logging setup: `tracing` with a `RUST_LOG` filter, JSON lines in production.
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogConfig;

/// Installs the global subscriber once; later calls (tests starting several apps) are no-ops.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if config.log_format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    // Every span in scope: a handler's line carries its request's
                    // `request_id`, a job's line its `job.id`.
                    .with_current_span(true)
                    .with_span_list(true),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_target(true)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init()
    };
    // Already initialised (a test harness): keep the first subscriber.
    let _ = result;
}

/// For tests: logs to the test writer, filtered by `RUST_LOG` (default warn).
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_test_writer())
        .try_init();
}
