//! `pixdex serve`: own a collection and answer gRPC (search, index jobs, stats, health,
//! reflection) until Ctrl-C or SIGTERM, then shut down within the grace period.

use anyhow::Context;
use pixdex_indexer::encoder::Encoder;
use pixdex_server::{ModelLoader, Server};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::args::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    // Open the device now: a typo or a missing GPU fails before the server listens.
    args.model.device()?;
    let model = args.model;
    let loader: ModelLoader = Box::new(move |existing| {
        // Like offline `search`: the collection's model unless told otherwise.
        let fallback = existing.map_or(pixio::DEFAULT_MODEL, |c| c.model.as_str());
        tracing::info!(model = model.model.as_deref().unwrap_or(fallback), "loading the model");
        let encoder = model.load_encoder(fallback).map_err(|e| format!("{e:#}"))?;
        Ok(Arc::new(encoder) as Arc<dyn Encoder>)
    });
    let db = config.location().map_err(anyhow::Error::msg)?.describe();
    // Open (and lock) the collection first: a locked or corrupt collection fails before we listen.
    let server = Server::open(config).with_context(|| format!("opening collection {db}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let listener =
            TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let server = match &args.metrics_listen {
            Some(metrics) => {
                let listener =
                    TcpListener::bind(metrics).await.with_context(|| format!("listening for metrics on {metrics}"))?;
                let addr = listener.local_addr().context("reading the bound metrics address")?;
                eprintln!("metrics on http://{addr}/metrics");
                server.with_metrics_listener(listener)
            }
            None => server,
        };
        let shutdown = shutdown_signal()?;
        eprintln!("listening on {scheme}://{addr}");
        server.serve(listener, loader, shutdown).await.with_context(|| format!("serving collection {db}"))
    })?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Completes at the first Ctrl-C or SIGTERM; a second one during the grace period exits at once.
/// The handlers are installed before this returns, so no signal is lost while the server starts.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut signals = Signals::listen()?;
    Ok(async move {
        let name = signals.next().await;
        tracing::info!(signal = name, "shutting down (again to stop at once)");
        tokio::spawn(async move {
            let name = signals.next().await;
            eprintln!("{name} again: stopping now");
            std::process::exit(130);
        });
    })
}

/// Ctrl-C and, on unix, SIGTERM (what service managers and `docker stop` send).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(windows)]
    interrupt: tokio::signal::windows::CtrlC,
}

impl Signals {
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(windows)]
        {
            Ok(Self { interrupt: tokio::signal::windows::ctrl_c().context("listening for Ctrl-C")? })
        }
    }

    /// The next signal's name. If the signal driver is gone, never.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        let name = tokio::select! {
            Some(()) = self.interrupt.recv() => "Ctrl-C",
            Some(()) = self.terminate.recv() => "SIGTERM",
            else => std::future::pending().await,
        };
        #[cfg(windows)]
        let name = match self.interrupt.recv().await {
            Some(()) => "Ctrl-C",
            None => std::future::pending().await,
        };
        name
    }
}
