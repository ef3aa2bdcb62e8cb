//! Finding a checkpoint's files: a local folder, or a Hugging Face Hub repo id fetched (and
//! cached) with hf-hub.
//!
//! A model is `config.json` + `model.safetensors` (or `model.safetensors.index.json` and its
//! shards) + optionally `preprocessor_config.json`. Hub downloads go to the standard Hugging Face
//! cache, resolved as Python's `huggingface_hub` does (`HF_HUB_CACHE`, `HF_HOME/hub`,
//! `XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`), and `HF_HUB_OFFLINE=1` serves
//! from that cache without touching the network (hf-hub itself reads neither variable).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default model: <https://huggingface.co/facebook/pixio-vith16>.
pub const DEFAULT_MODEL: &str = "facebook/pixio-vith16";

const CONFIG: &str = "config.json";
const PREPROCESSOR: &str = "preprocessor_config.json";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightSource {
    /// A local folder holding the checkpoint files.
    Dir(PathBuf),
    /// A Hub repository, e.g. `facebook/pixio-vith16`, optionally at a revision.
    Hub {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit; `main` when absent.
        revision: Option<String>,
    },
}

impl WeightSource {
    /// Reads a user's `--model` value: an existing folder, else `owner/name[@revision]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(Self::Dir(path.to_path_buf()));
        }
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) => (r, Some(rev.to_string())),
            None => (spec, None),
        };
        let looks_like_repo = repo.split('/').count() == 2
            && repo
                .split('/')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
            && !repo.starts_with('.');
        if looks_like_repo {
            Ok(Self::Hub { repo: repo.to_string(), revision })
        } else {
            Err(Error::MissingFile {
                location: spec.to_string(),
                what: "such model folder, and it is not a Hub repo id (owner/name)".into(),
            })
        }
    }
}

impl std::fmt::Display for WeightSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) => write!(f, "{}", p.display()),
            Self::Hub { repo, revision: None } => write!(f, "{repo}"),
            Self::Hub { repo, revision: Some(r) } => write!(f, "{repo}@{r}"),
        }
    }
}

/// How to reach the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (`…/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Serve only from the cache.
    pub offline: bool,
    /// Access token for gated repos (`HF_TOKEN`, or the token file hf-hub knows).
    pub token: Option<String>,
    /// Alternative endpoint (`HF_ENDPOINT`).
    pub endpoint: Option<String>,
}

impl HubOptions {
    /// The settings from the environment, as `huggingface_hub` reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| Path::new(&h).join("hub")))
            .or_else(|| var("XDG_CACHE_HOME").map(|x| Path::new(&x).join("huggingface").join("hub")))
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache").join("huggingface").join("hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|k| var(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")));
        Self { cache_dir, offline, token: var("HF_TOKEN"), endpoint: var("HF_ENDPOINT") }
    }
}

/// The files of one checkpoint on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `preprocessor_config.json`, if the checkpoint has one.
    pub preprocessor: Option<PathBuf>,
    /// The safetensors file(s), all shards.
    pub weights: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

fn shard_names(index: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io { path: index.to_path_buf(), source })?;
    let idx: ShardIndex =
        serde_json::from_str(&text).map_err(|source| Error::Json { path: index.to_path_buf(), source })?;
    let names: BTreeSet<String> = idx.weight_map.into_values().collect();
    if let Some(bad) = names.iter().find(|n| n.contains('/') || n.contains('\\') || n.starts_with('.')) {
        return Err(Error::Checkpoint(format!("{}: shard name `{bad}` leaves the model folder", index.display())));
    }
    Ok(names)
}

impl ModelFiles {
    /// Resolves a source with the environment's Hub settings.
    pub fn resolve(source: &WeightSource) -> Result<Self> {
        Self::resolve_with(source, &HubOptions::from_env())
    }

    /// Resolves a source, downloading Hub files (or finding them in the cache) as needed.
    pub fn resolve_with(source: &WeightSource, hub: &HubOptions) -> Result<Self> {
        match source {
            WeightSource::Dir(dir) => Self::from_dir(dir),
            WeightSource::Hub { repo, revision } => Self::from_hub(repo, revision.as_deref(), hub),
        }
    }

    /// The files of a local model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let missing = |what: &str| Error::MissingFile { location: dir.display().to_string(), what: what.to_string() };
        let config = dir.join(CONFIG);
        if !config.is_file() {
            return Err(missing(CONFIG));
        }
        let preprocessor = Some(dir.join(PREPROCESSOR)).filter(|p| p.is_file());
        let single = dir.join(WEIGHTS);
        let index = dir.join(WEIGHTS_INDEX);
        let weights = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_names(&index)?.into_iter().map(|n| dir.join(n)).collect()
        } else {
            return Err(missing("model.safetensors or model.safetensors.index.json"));
        };
        Ok(Self { config, preprocessor, weights })
    }

    fn from_hub(repo: &str, revision: Option<&str>, hub: &HubOptions) -> Result<Self> {
        let revision = revision.unwrap_or("main").to_string();
        let repo_ref = hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Model, revision);
        let fetch = HubFetch::new(repo, repo_ref, hub)?;
        let config = fetch.get(CONFIG)?.ok_or_else(|| fetch.not_found(CONFIG))?;
        let preprocessor = fetch.get(PREPROCESSOR)?;
        let weights = match fetch.get(WEIGHTS)? {
            Some(p) => vec![p],
            None => {
                let index =
                    fetch.get(WEIGHTS_INDEX)?.ok_or_else(|| fetch.not_found("model.safetensors or its index"))?;
                shard_names(&index)?
                    .into_iter()
                    .map(|n| fetch.get(&n)?.ok_or_else(|| fetch.not_found(&n)))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(Self { config, preprocessor, weights })
    }
}

/// One repo on the Hub or in its cache.
struct HubFetch {
    repo: String,
    cache: hf_hub::CacheRepo,
    /// `snapshots/<sha>` when the revision is a commit sha (Python's cache has no ref for it).
    snapshot: Option<PathBuf>,
    online: Option<(hf_hub::api::sync::ApiRepo, BTreeSet<String>)>,
    /// Why the Hub was not used.
    offline_reason: String,
}

/// The HTTP status of a failed Hub request, if the server answered.
fn http_status(err: &hf_hub::api::sync::ApiError) -> Option<u16> {
    match err {
        hf_hub::api::sync::ApiError::RequestError(e) => match e.as_ref() {
            ureq::Error::StatusCode(code) => Some(*code),
            _ => None,
        },
        _ => None,
    }
}

impl HubFetch {
    fn new(repo: &str, repo_ref: hf_hub::Repo, hub: &HubOptions) -> Result<Self> {
        let cache = hf_hub::Cache::new(hub.cache_dir.clone()).repo(repo_ref.clone());
        let rev = repo_ref.revision();
        let snapshot = (rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| hub.cache_dir.join(repo_ref.folder_name()).join("snapshots").join(rev));
        let mut fetch = Self {
            repo: repo.to_string(),
            cache,
            snapshot,
            online: None,
            offline_reason: "the Hub is offline (HF_HUB_OFFLINE)".into(),
        };
        if hub.offline {
            return Ok(fetch);
        }
        let err = |reason: String| Error::Hub { repo: repo.to_string(), file: "(repo info)".into(), reason };
        let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(hub.cache_dir.clone()))
            .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        if let Some(endpoint) = &hub.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if hub.token.is_some() {
            builder = builder.with_token(hub.token.clone());
        }
        let api = builder.build().map_err(|e| err(e.to_string()))?.repo(repo_ref);
        // One listing call tells which weight layout the repo has without probing for 404s.
        let files = match api.info() {
            Ok(info) => info.siblings.into_iter().map(|s| s.rfilename).collect(),
            Err(e) => match http_status(&e) {
                Some(code @ (401 | 403)) => {
                    return Err(err(format!(
                        "HTTP {code}: the repo is gated or private; accept its licence on huggingface.co and set HF_TOKEN"
                    )));
                }
                Some(404) => return Err(err("HTTP 404: no such repo (or it is private; set HF_TOKEN)".into())),
                Some(code) => return Err(err(format!("HTTP {code}: {e}"))),
                None => {
                    // No answer from the Hub: use what the cache holds, as huggingface_hub does.
                    tracing::warn!(repo, error = %e, "Hugging Face Hub unreachable; using the local cache");
                    fetch.offline_reason = format!("the Hub is unreachable ({e})");
                    return Ok(fetch);
                }
            },
        };
        fetch.online = Some((api, files));
        Ok(fetch)
    }

    /// The local path of `file`, downloading it if needed; `None` if the repo has no such file.
    fn get(&self, file: &str) -> Result<Option<PathBuf>> {
        match &self.online {
            None => Ok(match &self.snapshot {
                Some(dir) => Some(dir.join(file)).filter(|p| p.is_file()),
                None => self.cache.get(file),
            }),
            Some((_, files)) if !files.contains(file) => Ok(None),
            Some((api, _)) => api.get(file).map(Some).map_err(|e| Error::Hub {
                repo: self.repo.clone(),
                file: file.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn not_found(&self, file: &str) -> Error {
        let reason = match self.online {
            Some(_) => "the repo has no such file".to_string(),
            None => "not in the local Hugging Face cache, and ".to_string() + &self.offline_reason,
        };
        Error::Hub { repo: self.repo.clone(), file: file.to_string(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            WeightSource::parse(dir.path().to_str().unwrap()).unwrap(),
            WeightSource::Dir(dir.path().to_path_buf())
        );
        assert_eq!(
            WeightSource::parse("facebook/pixio-vith16").unwrap(),
            WeightSource::Hub { repo: "facebook/pixio-vith16".into(), revision: None }
        );
        assert_eq!(
            WeightSource::parse("facebook/pixio-vitb16@v1.0").unwrap(),
            WeightSource::Hub { repo: "facebook/pixio-vitb16".into(), revision: Some("v1.0".into()) }
        );
        assert!(WeightSource::parse("/no/such/folder").is_err());
        assert!(WeightSource::parse("justaname").is_err());
    }

    /// A Hugging Face cache as huggingface_hub lays it out, served offline.
    #[test]
    fn offline_hub_cache_with_shards() {
        let cache = tempfile::tempdir().unwrap();
        let snap = cache.path().join("models--org--tiny/snapshots/0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(cache.path().join("models--org--tiny/refs")).unwrap();
        std::fs::write(cache.path().join("models--org--tiny/refs/main"), "0123abcd").unwrap();
        std::fs::write(snap.join(CONFIG), "{}").unwrap();
        std::fs::write(
            snap.join(WEIGHTS_INDEX),
            r#"{"metadata":{},"weight_map":{"a":"s-1.safetensors","b":"s-2.safetensors","c":"s-1.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(snap.join("s-1.safetensors"), "").unwrap();
        std::fs::write(snap.join("s-2.safetensors"), "").unwrap();
        let opts = HubOptions { cache_dir: cache.path().to_path_buf(), offline: true, token: None, endpoint: None };
        let files = ModelFiles::resolve_with(&WeightSource::parse("org/tiny").unwrap(), &opts).unwrap();
        assert_eq!(files.config, snap.join(CONFIG));
        assert_eq!(files.preprocessor, None);
        assert_eq!(files.weights, vec![snap.join("s-1.safetensors"), snap.join("s-2.safetensors")]);
        let err = ModelFiles::resolve_with(&WeightSource::parse("org/absent").unwrap(), &opts).unwrap_err().to_string();
        assert!(err.contains("offline"), "{err}");
        // A commit sha resolves through snapshots/ even without a ref file for it.
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let pinned = cache.path().join("models--org--tiny/snapshots").join(sha);
        std::fs::create_dir_all(&pinned).unwrap();
        std::fs::write(pinned.join(CONFIG), "{}").unwrap();
        std::fs::write(pinned.join(WEIGHTS), "").unwrap();
        let files = ModelFiles::resolve_with(&WeightSource::parse(&format!("org/tiny@{sha}")).unwrap(), &opts).unwrap();
        assert_eq!(files.weights, vec![pinned.join(WEIGHTS)]);
    }

    /// An unreachable endpoint falls back to the cache and says why when the file is not there.
    #[test]
    fn unreachable_hub_falls_back_to_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let opts = HubOptions {
            cache_dir: cache.path().to_path_buf(),
            offline: false,
            token: None,
            endpoint: Some("http://127.0.0.1:9".into()),
        };
        let err = ModelFiles::resolve_with(&WeightSource::parse("org/tiny").unwrap(), &opts).unwrap_err().to_string();
        assert!(err.contains("unreachable"), "{err}");
    }

    #[test]
    fn shard_names_must_stay_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG), "{}").unwrap();
        std::fs::write(dir.path().join(WEIGHTS_INDEX), r#"{"weight_map":{"a":"../evil.safetensors"}}"#).unwrap();
        assert!(ModelFiles::from_dir(dir.path()).is_err());
    }
}
