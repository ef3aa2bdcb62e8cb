//! `pixdex serve` and the `--server` mode of `index`, `search`, `region` and `stats`, run as a
//! user runs them: the real binary as a server process on a free port, the tiny fixture model, a
//! generated library. Every wait is bounded, and the server is killed if a test fails.
#![cfg(unix)]

mod common;

use common::server::{COMMAND_LIMIT, Server};
use common::{ChildGuard, arg, output_within, picture, pixdex_command, send_signal, tiny_model, wait_within};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `pixdex ARGS` (bounded) in `dir`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    output_within(pixdex_command().current_dir(dir).args(args), COMMAND_LIMIT)
}

fn stdout_of(out: &Output, server: &Server) -> String {
    assert!(
        out.status.success(),
        "pixdex failed ({}):\n{}\n{}\n--- server log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `n` distinct pictures in `dir`.
fn make_library(dir: &Path, n: u32, (w, h): (u32, u32)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        picture(i, w, h).save(dir.join(format!("{i:04}.png"))).unwrap();
    }
    std::fs::canonicalize(dir).unwrap()
}

#[test]
fn serve_index_search_stats_then_sigterm_releases_the_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = make_library(&tmp.path().join("lib"), 6, (64, 48));
    let db = tmp.path().join("db");
    let server = Server::start(&db, &lib, &[]);
    let url = server.url.clone();

    // A relative root: the client makes it absolute before the server sees it.
    let out = run_in(tmp.path(), &["index", "--server", &url, "lib"]);
    let summary = stdout_of(&out, &server);
    assert!(summary.contains("6 images: 6 embedded"), "{summary}");
    assert!(summary.contains("(6 images)"), "{summary}");
    // Unchanged on the second run.
    let again = stdout_of(&run_in(tmp.path(), &["index", "--server", &url, "lib", "-q"]), &server);
    assert!(again.contains("0 embedded") && again.contains("6 unchanged"), "{again}");

    let query = lib.join("0003.png");
    let out = run_in(tmp.path(), &["search", "--server", &url, arg(&query), "--json", "-k", "3"]);
    let results = json(&stdout_of(&out, &server));
    let results = results["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["path"], arg(&query), "{results:?}");
    let score = results[0]["score"].as_f64().unwrap();
    assert!((score - 1.0).abs() < 1e-4, "self-similarity {score}");
    assert!(results[1]["score"].as_f64().unwrap() < score);
    // Text output: score, id, path.
    let text = stdout_of(&run_in(tmp.path(), &["search", "--server", &url, arg(&query), "-k", "1"]), &server);
    assert!(text.starts_with("1.0000\t") && text.trim_end().ends_with(arg(&query)), "{text}");

    let stats = json(&stdout_of(&run_in(tmp.path(), &["stats", "--server", &url, "--json"]), &server));
    assert_eq!(stats["images"], 6, "{stats}");
    assert_eq!(stats["embedded"], 6, "{stats}");
    assert_eq!(stats["model_loaded"], true, "{stats}");

    // The server holds the collection: offline commands say how to go through it.
    for offline in
        [vec!["stats", "--db", arg(&db)], vec!["index", "lib", "--db", arg(&db), "--model", arg(&tiny_model()), "-q"]]
    {
        let out = run_in(tmp.path(), &offline);
        assert_eq!(out.status.code(), Some(2), "{offline:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("another pixdex process"), "{message}");
        assert!(message.contains("pixdex serve") && message.contains("--server"), "{message}");
    }
    // Offline-only options with --server are a usage error, not silently ignored.
    let out = run_in(tmp.path(), &["search", "--server", &url, "--model", arg(&tiny_model()), arg(&query)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--model"), "{}", stderr(&out));
    // A root outside the server's allowed folders is refused.
    let outside = make_library(&tmp.path().join("elsewhere"), 1, (32, 32));
    let out = run_in(tmp.path(), &["index", "--server", &url, arg(&outside)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));

    // Duplicates through the server: an exact copy, and a mirrored one (found by its stored
    // mirrored view; the tiny model's patches mean nothing, hence --no-verify).
    std::fs::copy(lib.join("0000.png"), lib.join("copy.png")).unwrap();
    image::open(lib.join("0002.png")).unwrap().fliph().save(lib.join("0002-mirror.png")).unwrap();
    stdout_of(&run_in(tmp.path(), &["index", "--server", &url, "lib", "-q"]), &server);
    let dedup = ["dedup", "--json", "--no-verify", "--threshold", "0.999", "-q"];
    let served = json(&stdout_of(&run_in(tmp.path(), &[&dedup[..], &["--server", &url]].concat()), &server));
    let groups = served["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{served}");
    assert_eq!(groups[0]["kind"], "exact", "{served}");
    assert_eq!(groups[1]["kind"], "near", "{served}");
    let near: Vec<&str> =
        groups[1]["members"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap()).collect();
    assert!(near.iter().any(|p| p.ends_with("/0002-mirror.png")) && near.iter().any(|p| p.ends_with("/0002.png")));

    // Region search through the server (the query's bytes and the box are sent).
    let region = ["region", arg(&query), "--box", "5,4.5,30,20", "--json", "-k", "3"];
    let served_region = json(&stdout_of(&run_in(tmp.path(), &[&region[..], &["--server", &url]].concat()), &server));
    assert_eq!(served_region["results"].as_array().map(Vec::len), Some(3), "{served_region}");

    // SIGTERM: a clean exit that releases the collection.
    server.terminate();
    let out = output_within(pixdex_command().args(["stats", "--db", arg(&db), "--json"]), COMMAND_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stats["images"], 8, "{stats}");
    assert_eq!(stats["embedded"], 8, "{stats}");
    // Offline gives the same report.
    let out = output_within(pixdex_command().args(dedup).args(["--db", arg(&db)]), COMMAND_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout)), served);
    // And the same region results: the server embeds the region as the offline path does.
    let out = output_within(pixdex_command().args(region).args(["--db", arg(&db)]), COMMAND_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout)), served_region);
}

/// Starts `pixdex index --server` over `dir/lib` and returns as soon as the server logs the
/// start of its `nth` job (the client listens for Ctrl-C before it asks for the job).
fn start_remote_index(server: &Server, dir: &Path, nth: usize) -> ChildGuard {
    let child = ChildGuard(
        pixdex_command()
            .current_dir(dir)
            .args(["index", "--server", &server.url, "lib", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pixdex index starts"),
    );
    let deadline = Instant::now() + COMMAND_LIMIT;
    while server.log.lock().unwrap().iter().filter(|l| l.contains("index job started")).count() < nth {
        assert!(Instant::now() < deadline, "no index job started:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

/// The exit code, stdout and stderr of a client started by `start_remote_index` (bounded).
fn finish(mut child: ChildGuard) -> (Option<i32>, String, String) {
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || pipe.map(|p| std::io::read_to_string(p).unwrap_or_default()).unwrap_or_default())
    };
    let stdout = read(child.0.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.0.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_within(&mut child, COMMAND_LIMIT);
    (status.code(), stdout.join().unwrap(), stderr.join().unwrap())
}

fn image_count(db: &Path) -> u64 {
    let out = output_within(pixdex_command().args(["stats", "--db", arg(db), "--json"]), COMMAND_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&String::from_utf8_lossy(&out.stdout))["images"].as_u64().unwrap()
}

/// Ctrl-C on a client cancels its job in the server (which stores the batch in flight); SIGTERM
/// on the server during a job ends the client's watch with the cancelled state, and the server
/// still exits cleanly. Each time the job may win the race and finish first.
#[test]
fn ctrl_c_cancels_the_remote_job_and_sigterm_stops_a_busy_server() {
    let tmp = tempfile::tempdir().unwrap();
    // About a second of work for the tiny model (~800 images/s on two cores).
    let n = 600;
    make_library(&tmp.path().join("lib"), n, (96, 72));
    let db = tmp.path().join("db");
    let server = Server::start(&db, &tmp.path().join("lib"), &["--index-batch-size", "4"]);

    let client = start_remote_index(&server, tmp.path(), 1);
    // Into the embedding phase, usually.
    std::thread::sleep(Duration::from_millis(200));
    send_signal(&client.0, "INT");
    let (code, stdout, stderr) = finish(client);
    eprintln!("after Ctrl-C:\n{stdout}");
    match code {
        Some(130) => assert!(stdout.contains("cancelled, run again to resume"), "{stdout}\n{stderr}"),
        Some(0) => assert!(stdout.contains(&format!("{n} images")), "{stdout}"),
        other => panic!("pixdex index --server exited with {other:?}:\n{stdout}\n{stderr}\n{}", server.log()),
    }
    assert!(stdout.contains("collection: http://127.0.0.1:"), "{stdout}");

    // The next job resumes; the server is stopped under it.
    let client = start_remote_index(&server, tmp.path(), 2);
    // Let the client open its progress stream first (it does so right after the job starts).
    std::thread::sleep(Duration::from_millis(100));
    server.terminate();
    let (code, stdout, stderr) = finish(client);
    assert!(matches!(code, Some(130) | Some(0)), "{code:?}:\n{stdout}\n{stderr}");
    let stored = image_count(&db);
    eprintln!("{stored} of {n} images stored before the server stopped");
    if code == Some(130) {
        assert!(stdout.contains("cancelled"), "{stdout}");
    } else {
        assert_eq!(stored, u64::from(n));
    }
    // Offline, the collection resumes where the server left it.
    let model = tiny_model();
    let out = output_within(
        pixdex_command().current_dir(tmp.path()).args(["index", "lib", "--db", arg(&db), "--model", arg(&model), "-q"]),
        COMMAND_LIMIT,
    );
    let resumed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{resumed}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(resumed.contains(&format!("{stored} unchanged")), "{resumed}");
    assert_eq!(image_count(&db), u64::from(n));
}

/// A server whose model does not load exits non-zero with a message naming the model.
#[test]
fn serve_with_a_missing_model_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output_within(
        pixdex_command().args([
            "serve",
            "--db",
            arg(&tmp.path().join("db")),
            "--model",
            "/no/such/model",
            "--listen",
            "127.0.0.1:0",
        ]),
        COMMAND_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/no/such/model"), "{}", stderr(&out));
}

/// `GET /metrics` over a plain TCP connection: the body of a 200 answer.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint reachable");
    stream.set_read_timeout(Some(COMMAND_LIMIT)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a whole response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers, then the body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[test]
fn serve_metrics_listen_exposes_prometheus_metrics_and_stats_count_failures_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = make_library(&tmp.path().join("lib"), 2, (64, 48));
    std::fs::write(lib.join("broken.jpg"), b"\xff\xd8\xff\xe0 not really a JPEG").unwrap();
    let db = tmp.path().join("db");
    let server = Server::start(&db, &lib, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server
        .log()
        .lines()
        .find_map(|l| l.strip_prefix("metrics on http://").and_then(|a| a.strip_suffix("/metrics")).map(str::to_string))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", server.log()));
    assert!(metrics.starts_with("127.0.0.1:") && !metrics.ends_with(":0"), "{metrics}");

    let url = server.url.clone();
    let summary = stdout_of(&run_in(tmp.path(), &["index", "--server", &url, "lib", "-q"]), &server);
    assert!(summary.contains("2 embedded") && summary.contains("1 failed"), "{summary}");
    let served = json(&stdout_of(&run_in(tmp.path(), &["stats", "--server", &url, "--json"]), &server));
    assert_eq!((served["images"].as_u64(), served["failed"].as_u64()), (Some(3), Some(1)), "{served}");

    let text = scrape(&metrics);
    for line in [
        r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.IndexService/StartIndexJob"} 1"#,
        // `index` reads the image count at its end, then `stats`.
        r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.CollectionService/GetStats"} 2"#,
        r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.IndexService/WatchIndexJob"} 1"#,
        r#"pixdex_index_jobs_finished_total{state="succeeded"} 1"#,
        r#"pixdex_index_files_total{outcome="failed"} 1"#,
        "pixdex_collection_images 3",
        "pixdex_collection_vectors 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }

    // Offline, `failed` counts the same records.
    server.terminate();
    let out = output_within(pixdex_command().args(["stats", "--db", arg(&db), "--json"]), COMMAND_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let offline = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((offline["images"].as_u64(), offline["failed"].as_u64()), (Some(3), Some(1)), "{offline}");
}

#[test]
fn serve_with_tokens_and_tls_answers_the_cli_by_role() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = make_library(&tmp.path().join("lib"), 3, (64, 48));
    let pki = pixdex_server::test_pki::TestPki::generate();
    let (read, write) = ("cli-read-token-3b9d27e14c", "cli-write-token-8a61f0c5d2");
    let files = tmp.path();
    std::fs::write(files.join("tokens"), format!("# who may call\nread {read}\nwrite {write}\n")).unwrap();
    std::fs::write(files.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(files.join("cert.pem"), &pki.cert_pem).unwrap();
    std::fs::write(files.join("key.pem"), &pki.key_pem).unwrap();
    let secure = ["--token-file", "tokens", "--tls-cert", "cert.pem", "--tls-key", "key.pem"]
        .map(|a| if a.starts_with("--") { a.to_string() } else { files.join(a).display().to_string() });
    let server = Server::start(&tmp.path().join("db"), &lib, &secure.each_ref().map(String::as_str));
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let url = server.url.clone();
    let ca = files.join("ca.pem");

    // The write token indexes; the read token (here from PIXDEX_TOKEN) searches.
    let out = run_in(tmp.path(), &["index", "--server", &url, "--ca", arg(&ca), "--token", write, "lib", "-q"]);
    assert!(stdout_of(&out, &server).contains("3 embedded"));
    let query = lib.join("0001.png");
    let search = ["search", "--server", &url, "--ca", arg(&ca), arg(&query), "-k", "1"];
    let out = output_within(pixdex_command().args(search).env("PIXDEX_TOKEN", read), COMMAND_LIMIT);
    assert!(stdout_of(&out, &server).trim_end().ends_with(arg(&query)));

    // The read token cannot index; no token cannot search; neither is INTERNAL.
    let out = run_in(tmp.path(), &["index", "--server", &url, "--ca", arg(&ca), "--token", read, "lib"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("write token") && stderr(&out).contains("permission denied"), "{}", stderr(&out));
    let out = output_within(pixdex_command().args(search).env_remove("PIXDEX_TOKEN"), COMMAND_LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(read) && !server.log().contains(read) && !server.log().contains(write));
    // Without the CA the server's certificate is not trusted.
    let out = run_in(tmp.path(), &["stats", "--server", &url, "--token", read]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    server.terminate();
}

#[test]
fn serve_refuses_a_public_address_without_tokens_unless_told_it_is_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = make_library(&tmp.path().join("lib"), 1, (32, 32));
    let db = tmp.path().join("db");
    let model = tiny_model();
    let serve = ["serve", "--db", arg(&db), "--model", arg(&model), "--listen", "0.0.0.0:0"];
    let out = output_within(pixdex_command().args(serve), COMMAND_LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(message.contains("refusing to listen on 0.0.0.0:0 without --token-file"), "{message}");
    assert!(message.contains("--insecure-no-auth"), "{message}");
    assert!(!db.exists(), "nothing was created");
    // A bad token file is refused by line, before listening.
    std::fs::write(tmp.path().join("tokens"), "read ok-length-token-1234\nadmin x\n").unwrap();
    let out = output_within(
        pixdex_command().args(serve).args(["--token-file", arg(&tmp.path().join("tokens"))]),
        COMMAND_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("token file line 2"), "{}", stderr(&out));
    // Told so, it serves anyone, with a warning.
    let server = Server::start_at(&db, &lib, "0.0.0.0:0", &["--insecure-no-auth"]);
    assert!(server.url.starts_with("http://0.0.0.0:"), "{}", server.url);
    assert!(server.log().contains("insecure-no-auth"), "{}", server.log());
    server.terminate();
}
