//! Who may call what: bearer tokens with a read or write role, and the access each method needs.
//!
//! A token file (`pixdex serve --token-file`) holds one `read TOKEN` or `write TOKEN` per line
//! (`#` comments and blank lines ignored); write implies read. Clients send
//! `authorization: Bearer TOKEN`. Health checks are open (load balancers and `wait_ready` probe
//! them), reflection needs a read token, and every method that changes the collection or runs
//! work on the server's files needs a write token ([`method_access`]).
//!
//! Only the BLAKE3 hashes of the tokens are kept, and a presented token's hash is compared with
//! every one of them in constant time (`blake3::Hash`'s equality), so neither the token's
//! contents nor which entry matched leak through timing, and no token is held in memory or
//! can reach a log.

mod layer;

pub(crate) use layer::AccessLayer;

use std::fmt;
use std::path::Path;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Searches, records, stats, job status, duplicate reports, reflection.
    Read,
    /// Also uploads, deletes, starting and cancelling index jobs.
    Write,
}

/// The access a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Anyone (health).
    Nothing,
    /// A read or write token.
    Role(Role),
}

/// Every method the server serves, and the access it needs. A path not listed needs a read token
/// (and then gets UNIMPLEMENTED from the router), so that unknown methods tell an anonymous
/// caller nothing. `tests::every_pixdex_method_is_listed` keeps this in step with the protos.
const METHODS: &[(&str, Needs)] = &[
    ("/grpc.health.v1.Health/Check", Needs::Nothing),
    ("/grpc.health.v1.Health/Watch", Needs::Nothing),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Needs::Role(Role::Read)),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Needs::Role(Role::Read)),
    ("/pixdex.v1.SearchService/Search", Needs::Role(Role::Read)),
    ("/pixdex.v1.SearchService/BatchSearch", Needs::Role(Role::Read)),
    ("/pixdex.v1.SearchService/RegionSearch", Needs::Role(Role::Read)),
    ("/pixdex.v1.ImageService/GetImage", Needs::Role(Role::Read)),
    ("/pixdex.v1.ImageService/UpsertImage", Needs::Role(Role::Write)),
    ("/pixdex.v1.ImageService/DeleteImage", Needs::Role(Role::Write)),
    ("/pixdex.v1.IndexService/StartIndexJob", Needs::Role(Role::Write)),
    ("/pixdex.v1.IndexService/CancelIndexJob", Needs::Role(Role::Write)),
    ("/pixdex.v1.IndexService/WatchIndexJob", Needs::Role(Role::Read)),
    ("/pixdex.v1.IndexService/GetIndexJob", Needs::Role(Role::Read)),
    ("/pixdex.v1.IndexService/ListIndexJobs", Needs::Role(Role::Read)),
    ("/pixdex.v1.CollectionService/GetStats", Needs::Role(Role::Read)),
    ("/pixdex.v1.DedupService/FindDuplicates", Needs::Role(Role::Read)),
    ("/pixdex.v1.DedupService/DuplicatesOf", Needs::Role(Role::Read)),
];

/// The access `path` (`/package.Service/Method`) needs, and whether the server serves it.
pub(crate) fn method_access(path: &str) -> (Needs, bool) {
    match METHODS.iter().find(|(p, _)| *p == path) {
        Some((_, needs)) => (*needs, true),
        None => (Needs::Role(Role::Read), false),
    }
}

/// Whether the server serves `path` (metrics label only these, so that made-up paths cannot
/// grow the label set).
pub(crate) fn is_served_method(path: &str) -> bool {
    method_access(path).1
}

/// Why a token file was refused. Messages name the line, never the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("reading the token file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not `read TOKEN` or `write TOKEN`.
    #[error("token file line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// No token at all: every call would be refused.
    #[error("the token file has no tokens (lines `read TOKEN` or `write TOKEN`)")]
    Empty,
}

/// Shortest token accepted: 16 characters of a random token are about 96 bits or more.
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens the server accepts (hashes only).
#[derive(Clone)]
pub struct AccessTokens {
    tokens: Vec<(blake3::Hash, Role)>,
}

impl fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let writers = self.tokens.iter().filter(|(_, r)| *r == Role::Write).count();
        write!(f, "AccessTokens {{ read: {}, write: {writers} }}", self.tokens.len() - writers)
    }
}

impl AccessTokens {
    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text)
    }

    /// Parses a token file's text.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens: Vec<(blake3::Hash, Role)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |problem: &str| TokenFileError::Line { line: i + 1, problem: problem.to_string() };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let role = match words.next() {
                Some("read") => Role::Read,
                Some("write") => Role::Write,
                _ => return Err(bad("expected `read TOKEN` or `write TOKEN`")),
            };
            let token = words.next().ok_or_else(|| bad("the token is missing"))?;
            if words.next().is_some() {
                return Err(bad("a token cannot contain spaces"));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad("a token must be printable ASCII (it travels in an HTTP header)"));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(bad(&format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters (make one with `openssl rand -hex 24`)"
                )));
            }
            let hash = blake3::hash(token.as_bytes());
            if let Some(seen) = tokens.iter_mut().find(|(h, _)| *h == hash) {
                seen.1 = seen.1.max(role);
            } else {
                tokens.push((hash, role));
            }
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty);
        }
        Ok(Self { tokens })
    }

    /// The role `token` carries, if any. Every stored hash is compared, each in constant time.
    pub fn role_of(&self, token: &[u8]) -> Option<Role> {
        let presented = blake3::hash(token);
        let mut role = None;
        for (hash, r) in &self.tokens {
            if *hash == presented {
                role = Some(*r);
            }
        }
        role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "read-token-0123456789";
    const W: &str = "write-token-0123456789";

    #[test]
    fn a_token_file_gives_each_token_its_role() {
        let tokens = AccessTokens::parse(&format!("# team\n\nread {R}\n  write {W}  \n")).unwrap();
        assert_eq!(tokens.role_of(R.as_bytes()), Some(Role::Read));
        assert_eq!(tokens.role_of(W.as_bytes()), Some(Role::Write));
        assert_eq!(tokens.role_of(b"read-token-012345678"), None);
        assert_eq!(tokens.role_of(b""), None);
        // Listed twice: the stronger role.
        let twice = AccessTokens::parse(&format!("read {R}\nwrite {R}\n")).unwrap();
        assert_eq!(twice.role_of(R.as_bytes()), Some(Role::Write));
    }

    #[test]
    fn bad_lines_are_refused_by_number_without_echoing_the_token() {
        let cases = [
            (format!("read {R}\nadmin {W}\n"), 2, "expected"),
            ("write\n".to_string(), 1, "missing"),
            (format!("read {R} extra\n"), 1, "spaces"),
            ("read tiny1\n".to_string(), 1, "shorter"),
            ("read tökentökentökentöken\n".to_string(), 1, "ASCII"),
        ];
        for (text, line, problem) in cases {
            match AccessTokens::parse(&text) {
                Err(e @ TokenFileError::Line { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains(&format!("line {line}:")) && message.contains(problem), "{message}");
                    assert!(!message.contains(W) && !message.contains("tiny1"), "{message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(AccessTokens::parse("# nothing\n\n"), Err(TokenFileError::Empty)));
    }

    #[test]
    fn debug_shows_counts_not_tokens() {
        let tokens = AccessTokens::parse(&format!("read {R}\nwrite {W}\n")).unwrap();
        let shown = format!("{tokens:?}");
        assert_eq!(shown, "AccessTokens { read: 1, write: 1 }");
    }

    #[test]
    fn every_pixdex_method_is_listed() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut served = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(is_served_method(&path), "{path} is not in access::METHODS");
                    served += 1;
                }
            }
        }
        assert_eq!(served + 4, METHODS.len(), "METHODS lists a method the protos do not have");
        assert_eq!(method_access("/grpc.health.v1.Health/Check"), (Needs::Nothing, true));
        assert_eq!(method_access("/pixdex.v1.Nope/Nope"), (Needs::Role(Role::Read), false));
    }
}
