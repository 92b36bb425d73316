//! `artsvao-api`: the HTTP API, plus admin commands (`create-user`, `migrate`, `seed-demo`).
use anyhow::Context;
use api::{auth, ApiConfig, Command};
use clap::Parser;

#[tokio::main]
async fn main() {
    let config = ApiConfig::parse();
    shared::telemetry::init(&config.log);
    if let Err(error) = run(config).await {
        tracing::error!(error = %format!("{error:#}"), "artsvao-api failed");
        std::process::exit(1);
    }
}

async fn run(config: ApiConfig) -> anyhow::Result<()> {
    match config.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => {
            config.jwt_secret()?;
            shared::metrics::handle();
            let db = api::connect_and_migrate(&config.db).await?;
            let state = api::state(&config, db)?;
            let listener = tokio::net::TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("binding {}", config.addr))?;
            tracing::info!(addr = %listener.local_addr()?, "api listening");
            let shutdown = shared::shutdown::on_signal();
            match config.metrics_addr()? {
                Some(addr) => {
                    let metrics = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding METRICS_ADDR {addr}"))?;
                    tracing::info!(%addr, "metrics listening");
                    let served = api::serve_metrics(metrics, state.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        if let Err(error) = served.await {
                            tracing::error!(error = %format!("{error:#}"), "metrics address failed");
                        }
                    });
                }
                None if state.settings.metrics_token.is_none() => tracing::warn!(
                    "/metrics is not served: set METRICS_ADDR (an internal address) or METRICS_TOKEN"
                ),
                None => {}
            }
            api::serve(listener, state, shutdown).await
        }
        Command::CreateUser {
            email,
            password,
            password_stdin,
            role,
            extension,
        } => {
            let password = match password {
                Some(p) if !password_stdin => p,
                _ => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if let Some(problem) = auth::password_problem(&password) {
                anyhow::bail!("password: {problem}");
            }
            let db = api::connect_and_migrate(&config.db).await?;
            let role = auth::Role::parse(&role).context("role")?;
            let id = auth::upsert_user(&db, &email, &password, role)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(extension) = extension.as_deref() {
                shared::domain::calls::set_extension(&db, id, Some(extension))
                    .await
                    .map_err(|e| anyhow::anyhow!("extension: {e}"))?;
            }
            // CLI output for the operator.
            use std::io::Write;
            writeln!(
                std::io::stdout(),
                "user {email} ({}) id {id}",
                role.as_str()
            )?;
            Ok(())
        }
        Command::SeedDemo => {
            let db = api::connect_and_migrate(&config.db).await?;
            let started = std::time::Instant::now();
            let seeded = api::seed::seed_demo(&db).await?;
            // CLI output for the operator.
            use std::io::Write;
            writeln!(
                std::io::stdout(),
                "demo centre seeded in {:.1} s: {}",
                started.elapsed().as_secs_f64(),
                serde_json::to_string(&seeded)?
            )?;
            Ok(())
        }
        Command::Migrate => {
            api::connect_and_migrate(&config.db).await?;
            tracing::info!("database migrated");
            Ok(())
        }
    }
}
