//! `--config FILE` (or `PIXDEX_CONFIG`): settings from a TOML file, below the command line and
//! the environment. A key is a command's long option name (`batch-size`, `allow-root`,
//! `store`); top-level keys apply to every command that has the option, a `[serve]` or
//! `[index]` (any command's name) table to that command only, and `roots` to `index`'s folders:
//!
//! ```toml
//! db = "/var/lib/pixdex/index"
//! store = "postgres://pixdex@db.example/pixdex"
//! model = "facebook/pixio-vitb16"
//!
//! [serve]
//! listen = "0.0.0.0:50051"
//! token-file = "/etc/pixdex/tokens.txt"
//! allow-root = ["/srv/photos"]
//!
//! [index]
//! roots = ["/srv/photos"]
//! batch-size = 16
//! ```
//!
//! The file's settings become command-line options placed before the user's own, for the options
//! the user gave neither on the command line nor through their environment variable; clap then
//! parses and checks everything once, as if typed. `pixdex config check FILE` checks a file.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "PIXDEX_CONFIG";

/// A config file that cannot be used, with what is wrong.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The config file named by `--config FILE` in `argv` or by `PIXDEX_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Reads and parses a config file.
pub fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
    text.parse::<toml::Table>().map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

/// The option of `command` a key names (its long name, or `roots` for index's folders).
fn find_arg<'a>(command: &'a Command, key: &str) -> Option<&'a Arg> {
    command.get_arguments().find(|a| match a.get_long() {
        Some(long) => long == key || long == key.replace('_', "-"),
        None => a.is_positional() && a.get_id().as_str() == key,
    })
}

/// One value as it would be typed.
fn scalar(key: &str, v: &toml::Value) -> Result<String, ConfigError> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(ConfigError(format!("`{key}`: expected a string, number or boolean, not {}", other.type_str()))),
    }
}

/// The options (and positional values) a setting stands for.
fn tokens(arg: &Arg, key: &str, value: &toml::Value) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let values: Vec<String> = match value {
        toml::Value::Array(items) => items.iter().map(|v| scalar(key, v)).collect::<Result<_, _>>()?,
        v => vec![scalar(key, v)?],
    };
    if arg.is_positional() {
        return Ok((Vec::new(), values));
    }
    let long = arg.get_long().expect("not positional");
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            toml::Value::Boolean(true) => Ok((vec![format!("--{long}")], Vec::new())),
            toml::Value::Boolean(false) => Ok((Vec::new(), Vec::new())),
            _ => Err(ConfigError(format!("`{key}` is a switch: true or false"))),
        };
    }
    Ok((values.into_iter().map(|v| format!("--{long}={v}")).collect(), Vec::new()))
}

/// One setting of the file as a command sees it.
struct Setting {
    /// Where it is in the file (`batch-size`, `index.batch-size`).
    key: String,
    /// The clap argument it sets.
    id: String,
    /// The options it stands for, placed before the user's.
    options: Vec<String>,
    /// Positional values it stands for, placed after the user's.
    positional: Vec<String>,
}

/// The settings of `table` that apply to subcommand `name` (top-level keys it has, and its own
/// table). Errors name keys no command knows.
fn settings_for(root: &Command, table: &toml::Table, name: &str) -> Result<Vec<Setting>, ConfigError> {
    let sub = root.find_subcommand(name).expect("a known subcommand");
    let mut out = Vec::new();
    for (key, value) in table {
        if value.is_table() {
            continue;
        }
        match find_arg(sub, key) {
            Some(arg) => {
                let (options, positional) = tokens(arg, key, value)?;
                out.push(Setting { key: key.clone(), id: arg.get_id().to_string(), options, positional });
            }
            None if root.get_subcommands().any(|s| find_arg(s, key).is_some()) => {}
            None => return Err(ConfigError(format!("unknown setting `{key}`: no pixdex command has --{key}"))),
        }
    }
    if let Some(section) = table.get(name) {
        let section = section.as_table().ok_or_else(|| ConfigError(format!("`{name}` must be a table")))?;
        for (key, value) in section {
            let arg = find_arg(sub, key).ok_or_else(|| {
                ConfigError(format!("unknown setting `{name}.{key}`: `pixdex {name}` has no --{key}"))
            })?;
            let (options, positional) = tokens(arg, key, value)?;
            out.push(Setting { key: format!("{name}.{key}"), id: arg.get_id().to_string(), options, positional });
        }
    }
    Ok(out)
}

/// Every table in the file must be a command's.
fn check_tables(root: &Command, table: &toml::Table) -> Result<(), ConfigError> {
    for (key, value) in table {
        if value.is_table() && root.find_subcommand(key).is_none() {
            return Err(ConfigError(format!(
                "unknown table `[{key}]`: tables are named after commands (serve, index, …)"
            )));
        }
    }
    Ok(())
}

/// `argv` with the config file's settings added before the user's own options, for the options
/// the user set neither on the command line nor in the environment. Unchanged without a file.
pub fn merge(root: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(&argv) else { return Ok(argv) };
    let table = read(&path)?;
    check_tables(root, &table)?;
    let Some(at) = argv.iter().position(|a| root.find_subcommand(a.to_string_lossy().as_ref()).is_some()) else {
        return Ok(argv);
    };
    let name = argv[at].to_string_lossy().into_owned();
    let settings = settings_for(root, &table, &name).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    // What the user gave: parsed with nothing required, so that a file may supply it.
    let probe = root.clone().mut_subcommand(&name, |s| {
        let ids: Vec<String> = s.get_arguments().map(|a| a.get_id().to_string()).collect();
        ids.iter().fold(s, |s, id| s.mut_arg(id, |a| a.required(false)))
    });
    let given: Vec<String> = match probe.try_get_matches_from(argv.iter()) {
        Ok(m) => match m.subcommand() {
            Some((_, sub)) => sub
                .ids()
                .filter(|id| {
                    matches!(sub.value_source(id.as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
                })
                .map(|id| id.to_string())
                .collect(),
            None => Vec::new(),
        },
        // Let the real parse report the user's own mistake.
        Err(_) => return Ok(argv),
    };
    // Through a server, the file's collection and model settings do not apply (they are the
    // server's), rather than conflicting with --server.
    let remote = given.iter().any(|id| id == "server") || settings.iter().any(|s| s.id == "server");
    let offline_only = |id: &str| remote && super::OFFLINE_ONLY.contains(&id);
    let (mut options, mut positional) = (Vec::new(), Vec::new());
    for s in settings.into_iter().filter(|s| !(given.contains(&s.id) || offline_only(&s.id))) {
        tracing::debug!(setting = %s.key, "from the config file");
        options.extend(s.options);
        positional.extend(s.positional);
    }
    let mut merged: Vec<OsString> = argv[..=at].to_vec();
    merged.extend(options.into_iter().map(OsString::from));
    merged.extend(argv[at + 1..].iter().cloned());
    merged.extend(positional.into_iter().map(OsString::from));
    Ok(merged)
}

/// `pixdex config check FILE`: every setting known and every value accepted by the commands it
/// applies to. Returns a line per command configured.
pub fn check(root: &Command, path: &Path) -> Result<Vec<String>, ConfigError> {
    let table = read(path)?;
    check_tables(root, &table)?;
    let mut lines = Vec::new();
    for sub in root.get_subcommands().filter(|s| s.get_name() != "config") {
        let name = sub.get_name();
        let settings = settings_for(root, &table, name).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let own = table.contains_key(name);
        if settings.is_empty() || (!own && !matches!(name, "serve" | "index")) {
            continue;
        }
        // Parsed as the command would be, with nothing else given (required values that the
        // file leaves to the command line are filled with placeholders).
        let probe = root.clone().mut_subcommand(name, |s| {
            let ids: Vec<String> = s.get_arguments().map(|a| a.get_id().to_string()).collect();
            ids.iter().fold(s, |s, id| s.mut_arg(id, |a| a.required(false)))
        });
        let mut argv = vec!["pixdex".to_string(), name.to_string()];
        for s in &settings {
            argv.extend(s.options.iter().cloned());
            argv.extend(s.positional.iter().cloned());
        }
        probe.try_get_matches_from(&argv).map_err(|e| {
            let text = e.to_string();
            ConfigError(format!("{}: [{name}] {}", path.display(), text.lines().next().unwrap_or(&text)))
        })?;
        let keys: Vec<&str> = settings.iter().map(|s| s.key.as_str()).collect();
        lines.push(format!("{name}: {} settings ({})", keys.len(), keys.join(", ")));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command as Cmd};
    use clap::{CommandFactory, FromArgMatches};

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pixdex.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn parse_with(path: &Path, args: &[&str]) -> Result<Cli, String> {
        let mut argv: Vec<OsString> = vec!["pixdex".into()];
        argv.extend(args.iter().map(OsString::from));
        argv.extend(["--config".into(), path.as_os_str().to_owned()]);
        let merged = merge(&Cli::command(), argv).map_err(|e| e.0)?;
        let matches = Cli::command().try_get_matches_from(merged).map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    const FILE: &str = r#"
db = "/from/file"
model = "file/model"
[index]
roots = ["/photos/a", "/photos/b"]
batch-size = 16
prune = true
include = ["*.jpg", "*.png"]
[serve]
allow-root = ["/photos"]
max-connections = 7
"#;

    #[test]
    fn settings_come_from_the_file_unless_given() {
        let (_d, path) = file(FILE);
        let Cmd::Index(a) = parse_with(&path, &["index"]).unwrap().command else { panic!("index") };
        assert_eq!(a.roots, [PathBuf::from("/photos/a"), PathBuf::from("/photos/b")]);
        assert_eq!((a.batch_size, a.prune), (16, true));
        assert_eq!(a.include, ["*.jpg", "*.png"]);
        assert_eq!(a.collection.db.db, Some(PathBuf::from("/from/file")));
        assert_eq!(a.collection.model.model.as_deref(), Some("file/model"));
        // The command line wins, option by option; positional roots too.
        let Cmd::Index(a) =
            parse_with(&path, &["index", "/mine", "--batch-size", "2", "--db", "/cli"]).unwrap().command
        else {
            panic!("index")
        };
        assert_eq!((a.roots, a.batch_size, a.prune), (vec![PathBuf::from("/mine")], 2, true));
        assert_eq!(a.collection.db.db, Some(PathBuf::from("/cli")));
        let Cmd::Serve(s) = parse_with(&path, &["serve"]).unwrap().command else { panic!("serve") };
        assert_eq!((s.allow_roots.clone(), s.max_connections), (vec![PathBuf::from("/photos")], 7));
        // Through a server, the file's collection and model do not apply (no conflict).
        let Cmd::Index(a) = parse_with(&path, &["index", "--server", "http://h:1"]).unwrap().command else {
            panic!("index")
        };
        assert_eq!((a.collection.db.db, a.batch_size), (None, 8));
    }

    #[test]
    fn unknown_settings_and_bad_values_are_named() {
        for (text, wanted) in [
            ("dbb = \"/x\"", "unknown setting `dbb`"),
            ("[serve]\nbatch-size = 3", "unknown setting `serve.batch-size`"),
            ("[servve]\nlisten = \"x\"", "unknown table `[servve]`"),
            ("[index]\nprune = \"yes\"", "`prune` is a switch"),
            ("[index]\nbatch-size = [[1]]", "expected a string"),
            ("db = ", "config file"),
        ] {
            let (_d, path) = file(text);
            let err = check(&Cli::command(), &path).unwrap_err().0;
            assert!(err.contains(wanted), "{text}: {err}");
        }
        let (_d, path) = file("[index]\nbatch-size = 0");
        let err = check(&Cli::command(), &path).unwrap_err().0;
        assert!(err.contains("[index]") && err.contains("0"), "{err}");
    }

    /// The example config passes the check and names every option of `serve` and `index`.
    #[test]
    fn the_example_config_is_valid_and_complete() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/pixdex.example.toml");
        let lines = check(&Cli::command(), &path).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let root = Cli::command();
        for name in ["serve", "index"] {
            for arg in root.find_subcommand(name).unwrap().get_arguments() {
                let key = match arg.get_long() {
                    Some("help" | "config") => continue,
                    Some(long) => long.to_string(),
                    None => arg.get_id().to_string(),
                };
                let named = text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
                });
                assert!(named, "deploy/pixdex.example.toml lacks `{key}` ({name})");
            }
        }
    }
}
