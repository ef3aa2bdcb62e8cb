//! TLS to the database: rustls (ring), verifying the server's certificate against the system's
//! roots, or against the CA file libpq's `sslrootcert` URL parameter names (tokio-postgres does
//! not read that parameter itself, so it is taken out of the URL here).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// `url` without its `sslrootcert=FILE` parameter, and that file.
pub(crate) fn take_root_cert(url: &str) -> (String, Option<PathBuf>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(PathBuf::from(path));
                false
            }
            None => true,
        })
        .collect();
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (url, root)
}

/// The connector: the system's root certificates, or only those in `root_cert`.
pub(crate) fn connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {}: no certificate in it", path.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
        None => {
            // A certificate the system cannot parse is skipped, as the other TLS clients here do.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        let (url, root) = take_root_cert("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem&application_name=x");
        assert_eq!(
            (url.as_str(), root),
            ("postgres://u@h/db?sslmode=require&application_name=x", Some("/ca.pem".into()))
        );
        let (url, root) = take_root_cert("postgres://u@h/db?sslrootcert=/ca.pem");
        assert_eq!((url.as_str(), root), ("postgres://u@h/db", Some("/ca.pem".into())));
        assert_eq!(take_root_cert("postgres://u@h/db"), ("postgres://u@h/db".into(), None));
    }
}
