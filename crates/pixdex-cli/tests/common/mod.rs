//! What the CLI test binaries share: the fixture models, running the real `pixdex` binary in a
//! clean environment, and generated pictures.
// Each test binary uses its own subset.
#![allow(dead_code)]

#[cfg(unix)]
pub mod server;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// `tests/fixtures/pixio` at the workspace root.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio")
}

/// The small random-weight model in Hub layout (64×64 input, 64-d embeddings).
pub fn tiny_model() -> PathBuf {
    fixtures().join("models/a-hub")
}

/// `../shared` next to the repository, or `$PIXDEX_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("PIXDEX_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The `pixdex` binary, offline, with none of the caller's `PIXDEX_*` settings (the serve tests
/// read the server's default log).
pub fn pixdex_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pixdex"));
    for setting in ["PIXDEX_MODEL", "PIXDEX_DB", "PIXDEX_SERVER", "PIXDEX_LOG"] {
        cmd.env_remove(setting);
    }
    cmd.env("HF_HUB_OFFLINE", "1");
    cmd
}

/// Runs `pixdex ARGS` to completion.
pub fn pixdex(args: &[&str]) -> Output {
    pixdex_with_env(args, &[])
}

/// Runs `pixdex ARGS` to completion with extra environment variables.
pub fn pixdex_with_env(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = pixdex_command();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("pixdex runs")
}

/// Stdout of a run that must succeed (else both streams in the panic message).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "pixdex failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path as a `&str` argument (the temp dirs and fixtures are UTF-8).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A smooth picture with a seed-dependent pattern (distinct images get distinct embeddings).
pub fn picture(seed: u32, w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let s = seed as f32;
        let v =
            |k: f32| (((x as f32 * (0.05 + 0.01 * k) + y as f32 * 0.03 * (s + 1.0)).sin() * 0.5 + 0.5) * 255.0) as u8;
        image::Rgb([v(s), v(s + 1.0), v(2.0 * s)])
    })
}

/// A child process that is killed (and reaped) when the guard drops, so that a failing test
/// leaves nothing running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a pipe to its end on a thread (so that the child never blocks on a full pipe).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for a child with a time limit; past it, the test fails (and the guard kills the child).
pub fn wait_within(child: &mut ChildGuard, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().expect("waiting for pixdex") {
            return status;
        }
        assert!(Instant::now() < deadline, "pixdex did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion within `limit`, capturing its output.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = ChildGuard(
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("pixdex starts"),
    );
    let stdout = drain(child.0.stdout.take());
    let stderr = drain(child.0.stderr.take());
    let status = wait_within(&mut child, limit);
    Output { status, stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") }
}

/// Sends a signal by name (`TERM`, `INT`) with kill(1).
#[cfg(unix)]
pub fn send_signal(child: &Child, name: &str) {
    let sent = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("kill runs");
    assert!(sent.success(), "kill -{name} failed");
}
