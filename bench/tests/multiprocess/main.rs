//! Multi-process tests in one binary: real `artsvao-testworker` processes (the production
//! worker runtime plus test kinds) over a fresh database, SIGKILL / SIGTERM / SIGSTOP, and a
//! private PostgreSQL cluster for outages.
#![allow(clippy::unwrap_used)]

mod support;

mod api_http;
mod bulk_schedule;
mod calls;
mod imports;
mod leases;
mod maintenance;
mod notifications;
mod outage;
mod processes;
