//! HTTPS listeners: a private certificate authority made at start, the one certificate it signs
//! for every HTTPS listener (`localhost`, `127.0.0.1`, `::1` and the load balancers' own
//! addresses), and the rustls server configuration they terminate TLS with (ring provider, TLS
//! 1.2 and 1.3, ALPN `http/1.1`), as an ALB listener with an ACM certificate.
//!
//! The CA's certificate (never its key) is written as PEM to `<state dir>/ca.pem`: what a client
//! trusts (`loadprobe --ca-file`, `curl --cacert`). Keys live in memory only, for one run.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The file name of the CA certificate in the state directory.
pub const CA_FILE: &str = "ca.pem";

/// The TLS side of every HTTPS listener of one run.
#[derive(Clone)]
pub struct ListenerTls {
    config: Arc<ServerConfig>,
    ca_pem: String,
    ca_file: PathBuf,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl ListenerTls {
    /// Makes the CA and a certificate for `localhost`, the loopback addresses and `addresses`,
    /// and writes the CA's PEM to `dir/ca.pem`.
    pub fn new(addresses: &[IpAddr], dir: &Path) -> Result<Self, String> {
        let rc = |e: rcgen::Error| format!("making the listener certificate: {e}");
        let ca_key = KeyPair::generate().map_err(rc)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "localaws listener CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(rc)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca, ca_key);

        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for a in addresses {
            let a = a.to_string();
            if !names.contains(&a) {
                names.push(a);
            }
        }
        let key = KeyPair::generate().map_err(rc)?;
        let mut leaf = CertificateParams::new(names).map_err(rc)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localaws listener");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let cert = leaf.signed_by(&key, &issuer).map_err(rc)?;
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| format!("TLS setup: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];

        let ca_file = dir.join(CA_FILE);
        std::fs::write(&ca_file, &ca_pem)
            .map_err(|e| format!("cannot write {}: {e}", ca_file.display()))?;
        Ok(Self {
            config: Arc::new(config),
            ca_pem,
            ca_file,
        })
    }

    /// The server configuration the listeners accept with.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate's PEM was written.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_ca_and_serves_a_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ListenerTls::new(&["127.0.0.2".parse().expect("ip")], dir.path())
            .expect("listener TLS");
        let written = std::fs::read_to_string(tls.ca_file()).expect("ca.pem");
        assert_eq!(written, tls.ca_pem());
        assert!(
            written.starts_with("-----BEGIN CERTIFICATE-----"),
            "{written}"
        );
        assert_eq!(tls.config().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
