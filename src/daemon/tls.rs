//! TLS for the TCP listener (rustls through tonic, ring provider): the server presents its
//! certificate and *requires* a client certificate signed by the configured client CA, so a
//! peer without one completes no handshake and reaches no service. Also the matching client
//! configuration (tests, the CLI).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::config::TlsFiles;

/// Errors reading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        /// Which file (`tls.cert`, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not PEM of the expected kind.
    #[error("{what} {}: {reason}", path.display())]
    NotPem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// PEM contents of a TLS identity and the CA to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPem {
    /// Certificate chain (PEM).
    pub cert: Vec<u8>,
    /// Private key (PEM).
    pub key: Vec<u8>,
    /// CA certificate(s) (PEM): for the server, the client CA; for a client, the server's CA.
    pub ca: Vec<u8>,
}

fn read_pem(what: &'static str, path: &Path, marker: &str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN") || !text.contains(marker) {
        return Err(TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            reason: format!("no PEM block containing {marker:?} found"),
        });
    }
    Ok(bytes)
}

impl TlsPem {
    /// Reads the server's files: certificate, key and the client CA.
    pub fn load(files: &TlsFiles) -> Result<TlsPem, TlsError> {
        Ok(TlsPem {
            cert: read_pem("tls.cert", &files.cert, "CERTIFICATE")?,
            key: read_pem("tls.key", &files.key, "PRIVATE KEY")?,
            ca: read_pem("tls.client_ca", &files.client_ca, "CERTIFICATE")?,
        })
    }
}

/// The server configuration: our identity, client certificates required and checked against
/// the client CA.
pub fn server_config(pem: &TlsPem) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(&pem.cert, &pem.key))
        .client_ca_root(Certificate::from_pem(&pem.ca))
        .client_auth_optional(false)
}

/// A client configuration: trust `ca_pem`, present `identity` (certificate, key) if given,
/// and expect the server's name `domain` (e.g. `localhost`).
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
    domain: &str,
) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(domain);
    if let Some((cert, key)) = identity {
        c = c.identity(Identity::from_pem(cert, key));
    }
    c
}
