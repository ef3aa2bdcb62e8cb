//! A throwaway certificate authority and a server certificate it signed, for tests over real
//! TLS (feature `test-pki`; never in a release build).
#![allow(clippy::expect_used)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM texts: the CA's certificate (what clients trust) and the server's certificate and key.
pub struct TestPki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The server certificate, for `localhost`, `127.0.0.1` and `::1`.
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

impl TestPki {
    /// A fresh CA and server certificate.
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "pixdex test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        let cert = CertificateParams::new(names).expect("server params").signed_by(&key, &issuer).expect("signed");
        Self { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}
