//! The fakes' integration tests: each starts the real server in-process on ephemeral ports and
//! drives it over HTTP and raw SMTP, one module per impersonated service plus the fault rules.

mod services;
mod support;
