//! Talking to a running `pixdex serve` (`--server URL`): the runtime, the connection, and gRPC
//! statuses turned into messages a person can act on.

use anyhow::Context;
use pixdex_server::{ClientError, ClientOptions, PixdexClient};
use std::time::Duration;
use tonic::Code;

/// How long a command waits for a server that is still loading its model.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A single-threaded runtime: a client command makes one call at a time.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

/// A running server: its URL, and the token and CA to reach it with (`--server`, `--token`,
/// `--ca`).
#[derive(Debug)]
pub struct Remote {
    pub url: String,
    pub options: ClientOptions,
}

/// Connects to the server.
pub async fn connect(remote: &Remote) -> anyhow::Result<PixdexClient> {
    PixdexClient::connect_with(&remote.url, &remote.options).await.map_err(|e| match e {
        ClientError::Connect { url, source } => {
            // tonic's own message is often just "transport error": the cause says more (a
            // refused connection, an untrusted certificate).
            let mut cause = String::new();
            let mut next = std::error::Error::source(&source);
            while let Some(e) = next {
                cause = e.to_string();
                next = e.source();
            }
            if cause.contains("certificate") {
                return anyhow::anyhow!(
                    "cannot connect to {url}: {cause} (for a private CA or a self-signed certificate, pass --ca PEM)"
                );
            }
            let hint = if cause.is_empty() { String::new() } else { format!(": {cause}") };
            anyhow::anyhow!("cannot connect to {url}{hint} (is `pixdex serve` running there?)")
        }
        other => other.into(),
    })
}

/// Connects and, if the server is still loading its model, waits (bounded) until it serves.
pub async fn connect_ready(remote: &Remote) -> anyhow::Result<PixdexClient> {
    let url = &remote.url;
    let mut client = connect(remote).await?;
    if client.wait_ready(Duration::ZERO).await.is_err() {
        eprintln!("waiting for the server at {url} to load its model…");
        client.wait_ready(READY_TIMEOUT).await?;
    }
    Ok(client)
}

/// A failed call as an error that names what was being done and says what the server said (not
/// tonic's `Debug`-heavy `Display`, which includes the metadata map).
pub fn call_failed(what: &str, status: tonic::Status) -> anyhow::Error {
    let reason = match status.code() {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::PermissionDenied => "permission denied",
        Code::FailedPrecondition => "failed precondition",
        Code::ResourceExhausted => "too large",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::Cancelled => "cancelled",
        Code::Unimplemented => "not implemented by this server",
        Code::Unauthenticated => "unauthenticated",
        Code::AlreadyExists => "already exists",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => "server error",
    };
    let message = status.message();
    if status.code() == Code::Unknown && (message.contains("transport error") || message.contains("h2 protocol error"))
    {
        // What a plaintext client hears from a TLS server (and the reverse).
        return anyhow::anyhow!(
            "{what}: the connection failed ({message}); a server started with --tls-cert needs an https:// URL, \
             one without it http://"
        );
    }
    if message.is_empty() {
        anyhow::anyhow!("{what}: {reason}")
    } else {
        anyhow::anyhow!("{what}: {message} ({reason})")
    }
}

/// Ctrl-C, caught from the moment this is created (`tokio::signal::ctrl_c` would only install its
/// handler when first polled, and a Ctrl-C before that would kill the process).
pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
    #[cfg(windows)]
    signal: tokio::signal::windows::CtrlC,
}

impl Interrupts {
    /// Installs the handler (needs a runtime).
    pub fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        #[cfg(windows)]
        let signal = tokio::signal::windows::ctrl_c();
        Ok(Self { signal: signal.context("listening for Ctrl-C")? })
    }

    /// The next Ctrl-C.
    pub async fn next(&mut self) {
        if self.signal.recv().await.is_none() {
            // The signal driver is gone (the runtime is shutting down): never fire.
            std::future::pending::<()>().await;
        }
    }
}
