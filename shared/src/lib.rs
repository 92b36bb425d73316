//! Code both the api and the worker need: configuration, the database pool and migrations,
//! telemetry, shutdown signals, the metrics recorder, the Moscow calendar, and the CRM domain
//! (rules and their SQL).
pub mod config;
pub mod db;
pub mod domain;
pub mod metrics;
pub mod money;
pub mod shutdown;
pub mod telemetry;
pub mod time;
