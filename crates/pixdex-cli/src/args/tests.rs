//! Parsing the command line.

use clap::error::ErrorKind;
use pixdex_core::{DEFAULT_NEAR_THRESHOLD, DEFAULT_REGION_CANDIDATES, KeeperCriterion, PixelBox};

use super::serve::server_defaults;
use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_checked_from(std::iter::once("pixdex").chain(args.iter().copied()))
}

#[test]
fn offline_only_options_conflict_with_server() {
    for (command, option) in [
        (&["search", "x.png"][..], &["--db", "d"][..]),
        (&["search", "x.png"], &["--model", "m"]),
        (&["search", "x.png"], &["--device", "cpu"]),
        (&["index", "lib"], &["--batch-size", "4"]),
        (&["index", "lib"], &["--dtype", "f16"]),
        (&["stats"], &["--db", "d"]),
        (&["stats"], &["--store", "postgres://u@h/db"]),
    ] {
        let args: Vec<&str> = command.iter().chain(option).copied().collect();
        if std::env::var_os("PIXDEX_SERVER").is_none() {
            assert!(parse(&args).is_ok(), "{args:?} alone");
        }
        let with_server: Vec<&str> = args.iter().copied().chain(["--server", "http://h:1"]).collect();
        let err = parse(&with_server).expect_err("conflict");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert!(err.to_string().contains(option[0]), "{err}");
    }
    // What a server does take.
    assert!(parse(&["index", "lib", "--server", "h:1", "--prune", "--include", "*.jpg", "-q"]).is_ok());
    assert!(parse(&["search", "x.png", "--server", "h:1", "-k", "3", "--json"]).is_ok());
}

#[test]
fn region_box_parses_or_says_what_it_wants() {
    let Command::Region(args) = parse(&["region", "x.png", "--box", "10,20.5, 30,40"]).unwrap().command else {
        panic!("region")
    };
    assert_eq!(args.region, Some(PixelBox { x: 10.0, y: 20.5, w: 30.0, h: 40.0 }));
    assert_eq!((args.k, args.candidates), (10, DEFAULT_REGION_CANDIDATES));
    let Command::Region(args) = parse(&["region", "x.png"]).unwrap().command else { panic!("region") };
    assert_eq!(args.region, None);
    for (bad, says) in [
        ("10,20,30", "3 numbers"),
        ("10,20,30,40,50", "5 numbers"),
        ("a,20,30,40", "`a` is not a number"),
        ("10,20,NaN,40", "`NaN` is not a number"),
        ("10,20,0,40", "no area"),
        ("10,20,30,-4", "no area"),
        ("-1,20,30,40", "outside"),
    ] {
        let err = parse(&["region", "x.png", "--box", bad]).expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad}");
        let text = err.to_string();
        assert!(text.contains(says) && text.contains("X,Y,W,H"), "{bad}: {text}");
    }
    for bad in [&["region", "x.png", "-k", "0"][..], &["region", "x.png", "--candidates", "2001"]] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    assert!(parse(&["region", "x.png", "--server", "h:1", "--box", "1,2,3,4", "-k", "3", "--json"]).is_ok());
    assert!(parse(&["region", "x.png", "--server", "h:1", "--db", "d"]).is_err());
}

#[test]
fn dedup_options_parse_and_conflict() {
    let Command::Dedup(args) = parse(&["dedup"]).unwrap().command else { panic!("dedup") };
    assert_eq!(args.threshold, DEFAULT_NEAR_THRESHOLD);
    assert_eq!(args.keep, pixdex_core::DEFAULT_KEEPER_RULE.to_vec());
    let Command::Dedup(args) = parse(&["dedup", "--keep", "oldest,size", "--threshold", "0.9"]).unwrap().command else {
        panic!("dedup")
    };
    assert_eq!(args.keep, vec![KeeperCriterion::Oldest, KeeperCriterion::FileSize]);
    assert_eq!(args.threshold, 0.9);
    for bad in [
        &["dedup", "--keep", "biggest"][..],
        &["dedup", "--threshold", "1.5"],
        &["dedup", "--apply"],
        &["dedup", "--json", "--html", "r.html"],
        &["dedup", "--csv", "r.csv", "--html", "r.html"],
        &["dedup", "--undo", "log.jsonl", "--move-to", "d"],
        &["dedup", "--undo", "log.jsonl", "--threshold", "0.5"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    assert!(parse(&["dedup", "--undo", "log.jsonl", "-q"]).is_ok());
    assert!(parse(&["dedup", "--html", "r.html", "--move-to", "d", "--apply", "--prefix", "/p"]).is_ok());
}

#[test]
fn server_url_gets_a_scheme_when_it_has_none() {
    let url = |s: &str| ServerArgs { server: Some(s.into()), token: None, ca: None }.url();
    assert_eq!(url("127.0.0.1:50051").as_deref(), Some("http://127.0.0.1:50051"));
    assert_eq!(url("https://pixdex.example:443").as_deref(), Some("https://pixdex.example:443"));
    assert_eq!(ServerArgs { server: None, token: None, ca: None }.url(), None);
}

#[test]
fn serve_defaults_come_from_the_server_config() {
    let Command::Serve(args) = parse(&["serve"]).unwrap().command else { panic!("serve") };
    let defaults = server_defaults();
    assert_eq!(args.max_message_mb << 20, defaults.max_message_bytes);
    assert_eq!(args.batch_max, defaults.batching.max_batch);
    assert_eq!(args.index_batch_size, defaults.index_batch_size);
    assert_eq!(args.listen, "127.0.0.1:50051");
}

#[test]
fn index_and_serve_arguments_become_their_configs() {
    let index = ["index", "lib", "--no-region-grids", "--exclude", "*.gif", "--batch-size", "4", "--prune"];
    let Command::Index(args) = parse(&index).unwrap().command else { panic!("index") };
    let options = args.options();
    assert_eq!(options.crawl.roots, vec![std::path::PathBuf::from("lib")]);
    assert_eq!(options.crawl.exclude, vec!["*.gif".to_string()]);
    assert!(options.prune && options.dedup_views && !options.region_grids);
    assert_eq!(options.batch_size, 4);
    let serve = ["serve", "--db", "d", "--metrics-listen", "127.0.0.1:0", "--batch-wait-ms", "7"];
    let Command::Serve(args) = parse(&serve).unwrap().command else { panic!("serve") };
    assert_eq!(args.metrics_listen.as_deref(), Some("127.0.0.1:0"));
    let config = args.config().unwrap();
    assert_eq!(config.db, std::path::PathBuf::from("d"));
    assert_eq!(config.batching.max_wait, std::time::Duration::from_millis(7));
    let Command::Serve(args) = parse(&["serve"]).unwrap().command else { panic!("serve") };
    assert_eq!(args.metrics_listen, None, "metrics are off by default");
}
