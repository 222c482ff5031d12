//! Client TLS configuration for upstream connections: webpki roots plus extra CA files.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::TlsError;

/// Builds the verifier config: Mozilla's roots (webpki-roots) plus every certificate in
/// `extra_ca_files`. ALPN is left to the HTTP connector (it offers h2 and http/1.1).
pub fn client_config(extra_ca_files: &[PathBuf]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_ca_files {
        let file_err = |message: String| TlsError::File {
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| file_err(format!("cannot read CA file: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(file_err("no certificates found".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| file_err(format!("unusable CA certificate: {e}")))?;
        }
    }
    let config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
