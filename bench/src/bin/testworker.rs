//! `artsvao-testworker`: the production worker (same runtime, configuration and kinds) with the
//! benchmark / test job kinds added. Used by `artsvao-bench` and the multi-process tests only.
#[tokio::main]
async fn main() {
    worker::main_with(bench::registry).await;
}
