//! `pixdex serve` as a child process on a free loopback port, its log collected for failure
//! messages; killed on drop unless it was stopped.

use super::{ChildGuard, arg, pixdex_command, send_signal, tiny_model, wait_within};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous for a debug build on a busy two-core machine; a hang still fails the test.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A running `pixdex serve`.
pub struct Server {
    pub child: ChildGuard,
    /// Empty until [`Server::wait_listening`] has seen the `listening on` line.
    pub url: String,
    /// Its stderr so far (logs).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `pixdex serve` on a free loopback port and waits for its `listening on` line.
    pub fn start(db: &Path, allow_root: &Path, extra: &[&str]) -> Self {
        Self::start_at(db, allow_root, "127.0.0.1:0", extra)
    }

    pub fn start_at(db: &Path, allow_root: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut server = Self::spawn(db, allow_root, listen, extra);
        server.wait_listening();
        server
    }

    /// Starts `pixdex serve` without waiting for it to listen.
    pub fn spawn(db: &Path, allow_root: &Path, listen: &str, extra: &[&str]) -> Self {
        let model = tiny_model();
        let mut child = ChildGuard(
            pixdex_command()
                .args(["serve", "--db", arg(db), "--model", arg(&model), "--listen", listen])
                .args(["--allow-root", arg(allow_root)])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("pixdex serve starts"),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.0.stderr.take().expect("piped stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, url: String::new(), log }
    }

    /// Waits (bounded) for the `listening on URL` line and keeps the URL.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + COMMAND_LIMIT;
        self.url = loop {
            let found =
                self.log.lock().unwrap().iter().find_map(|l| l.strip_prefix("listening on ").map(str::to_string));
            if let Some(url) = found {
                break url;
            }
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("pixdex serve exited ({status}) before listening:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "pixdex serve did not listen within {COMMAND_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(self.url.starts_with("http") && !self.url.ends_with(":0"), "{}", self.url);
    }

    /// Waits (bounded) until a log line contains `text`.
    pub fn wait_log_line(&mut self, text: &str) {
        let deadline = Instant::now() + COMMAND_LIMIT;
        while !self.log.lock().unwrap().iter().any(|l| l.contains(text)) {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("pixdex serve exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "pixdex serve did not log {text:?} within {COMMAND_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        send_signal(&self.child.0, "TERM");
        let status = wait_within(&mut self.child, Duration::from_secs(30));
        assert!(status.success(), "pixdex serve exited with {status} after SIGTERM:\n{}", self.log());
        status
    }
}
