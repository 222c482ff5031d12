//! `airlock.local`'s public pages, like mitm.it: `/` tells each client how to trust Airlock's CA
//! and what a held call looks like; `/ca.pem` is the CA certificate. Through the proxy only,
//! over https (CONNECT) and over plain http for a client that does not trust the CA yet; on
//! plain http without proxy credentials too (the certificate is public, the page static: no
//! agent, review, address or configuration on it, nothing from the request echoed). The CA's
//! key is never read here: `/ca.pem` is re-encoded from the certificate's DER alone. Everything
//! else on `airlock.local` (an agent's reviews) stays behind the agent's credentials.

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::gate::agent_api::LOCAL_HOST;
use crate::tls::CertificateAuthority;
use crate::wire::{full, Body};

/// Path of the CA certificate on `airlock.local`.
pub const CA_PATH: &str = "/ca.pem";

/// The rendered pages (static for the life of the CA).
pub struct LocalPages {
    html: Bytes,
    ca_pem: Bytes,
}

#[derive(Debug, thiserror::Error)]
#[error("rendering the airlock.local page: {0}")]
pub struct PageError(String);

impl LocalPages {
    pub fn new(ca: &CertificateAuthority) -> Result<LocalPages, PageError> {
        let der = ca.cert_der().as_ref();
        let digest = Sha256::digest(der);
        let fingerprint = digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let mut env = minijinja::Environment::new();
        env.add_template(
            "airlock-local.html",
            include_str!("templates/airlock-local.html"),
        )
        .map_err(|e| PageError(e.to_string()))?;
        let html = env
            .get_template("airlock-local.html")
            .and_then(|t| {
                t.render(minijinja::context! { fingerprint => format!("sha256 Fingerprint={fingerprint}") })
            })
            .map_err(|e| PageError(e.to_string()))?;
        Ok(LocalPages {
            html: Bytes::from(html),
            ca_pem: Bytes::from(certificate_pem(der)),
        })
    }

    /// The page for `method` and `path`, if it is a public one (GET or HEAD of `/`, `/ca.pem`).
    pub fn answer(&self, method: &Method, path: &str) -> Option<Response<Body>> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let (body, content_type) = match path {
            "/" => (self.html.clone(), "text/html; charset=utf-8"),
            CA_PATH => (self.ca_pem.clone(), "application/x-pem-file"),
            _ => return None,
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if path == "/" {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
        }
        Some(resp)
    }

    /// A plain-http proxy request for a public page (`GET http://airlock.local/ca.pem`), which
    /// needs no proxy credentials.
    pub fn public<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let uri = req.uri();
        let local = uri.scheme_str() == Some("http")
            && uri
                .host()
                .is_some_and(|h| h.eq_ignore_ascii_case(LOCAL_HOST))
            && uri.port_u16().unwrap_or(80) == 80;
        if !local {
            return None;
        }
        self.answer(req.method(), uri.path())
    }
}

/// PEM of one certificate from its DER (64-column base64, as `openssl` writes it).
fn certificate_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> (tempfile::TempDir, CertificateAuthority, LocalPages) {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("dir");
        let ca = CertificateAuthority::create(dir.path()).expect("ca");
        let pages = LocalPages::new(&ca).expect("pages");
        (dir, ca, pages)
    }

    #[test]
    fn ca_pem_is_the_certificate_alone() {
        let (_dir, ca, pages) = pages();
        assert_eq!(pages.ca_pem.as_ref(), ca.cert_pem().as_bytes());
        let text = String::from_utf8_lossy(&pages.ca_pem);
        assert!(!text.contains("PRIVATE"), "{text}");
    }

    #[test]
    fn only_get_and_head_of_the_public_paths() {
        let (_dir, _ca, pages) = pages();
        for (method, path, served) in [
            (Method::GET, "/", true),
            (Method::HEAD, "/ca.pem", true),
            (Method::POST, "/ca.pem", false),
            (Method::GET, "/v1/reviews/rev_1", false),
            (Method::GET, "/ca-key.pem", false),
        ] {
            assert_eq!(
                pages.answer(&method, path).is_some(),
                served,
                "{method} {path}"
            );
        }
        let req = |uri: &str| Request::get(uri).body(()).expect("req");
        assert!(pages.public(&req("http://airlock.local/ca.pem")).is_some());
        assert!(pages.public(&req("http://AIRLOCK.LOCAL/")).is_some());
        assert!(pages
            .public(&req("http://airlock.local:8080/ca.pem"))
            .is_none());
        assert!(pages.public(&req("http://example.test/ca.pem")).is_none());
        assert!(pages
            .public(&req("http://airlock.local/v1/reviews/rev_1"))
            .is_none());
    }
}
