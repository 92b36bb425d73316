//! The api's integration tests in one binary (one link instead of one per file): the real api
//! on 127.0.0.1:0 with a real in-process worker over a fresh PostgreSQL database per test.
#![allow(clippy::unwrap_used)]

mod support;

mod attendance;
mod auth;
mod bad_input;
mod calls;
mod client_matching;
mod clients;
mod enqueue;
mod exports;
mod fences;
mod groups;
mod http_limits;
mod imports;
mod job_cancel;
mod job_events;
mod job_helpers;
mod job_retries;
mod job_shutdown;
mod lessons;
mod notifications;
mod openapi;
mod ops;
mod pages;
mod pool_hygiene;
mod rentals;
mod rosters;
mod runtime_effects;
mod schedules;
mod seed_demo;
mod subscriptions;
mod users;
mod webdriver;
