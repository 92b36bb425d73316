//! Code both the api and the worker need: configuration, the database pool and migrations,
//! telemetry, shutdown signals and the metrics recorder.
pub mod config;
pub mod db;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
pub mod time;
