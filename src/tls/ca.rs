//! The interception CA: created once into `certs/`, reloaded on every start.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

use super::TlsError;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Leaf certificates live 90 days (well under the 398-day ceiling).
pub(crate) const LEAF_VALIDITY_DAYS: i64 = 90;
const CA_VALIDITY_DAYS: i64 = 3650;
/// A CA with less time left than this is reported at every start.
const CA_EXPIRY_WARNING_DAYS: i64 = 30;

/// Airlock's CA. The signing key stays in memory; `Debug` never prints it.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// The CA certificate's end of validity: no leaf outlives it.
    not_after: OffsetDateTime,
    /// One P-256 key for every leaf this process mints (as mitmproxy does): minting a leaf is
    /// then one signature, not a key generation too. Made at start, kept only in memory.
    leaf_key: LeafKey,
}

/// The leaves' key pair and its rustls signing form.
struct LeafKey {
    pair: KeyPair,
    signing: std::sync::Arc<dyn rustls::sign::SigningKey>,
}

impl LeafKey {
    fn generate() -> Result<LeafKey, TlsError> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let der = PrivateKeyDer::try_from(pair.serialize_der())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(LeafKey { pair, signing })
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

pub(super) fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating it first if neither file exists.
    /// Returns the CA and whether it was created now.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), TlsError> {
        // Never a third CA over a rotation a crash left half done.
        super::rotate::check_not_interrupted(dir)?;
        let (cert, key) = paths(dir);
        match (cert.exists(), key.exists()) {
            (true, true) => Ok((Self::load(dir)?, false)),
            (false, false) => Ok((Self::create(dir)?, true)),
            (true, false) => Err(file_err(
                &key,
                "missing while the CA certificate exists; restore it or remove both files",
            )),
            (false, true) => Err(file_err(
                &cert,
                "missing while the CA key exists; restore it or remove both files",
            )),
        }
    }

    /// When the CA stops being valid, as Unix seconds.
    pub fn expires_at_unix(&self) -> i64 {
        self.not_after.unix_timestamp()
    }

    /// Loads an existing CA from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let (cert_path, key_path) = paths(dir);
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
        // The key must be Airlock's user's alone: whoever reads it can intercept every agent.
        let key_pem =
            crate::secret_file::read_private(&key_path).map_err(|e| file_err(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|_| file_err(&key_path, "not a valid PEM private key"))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| file_err(&cert_path, format!("not a usable CA certificate: {e}")))?;
        let cert_der = pem_to_der(&cert_pem).map_err(|e| file_err(&cert_path, e))?;
        let not_after = check_loaded(&cert_der, &issuer.key().subject_public_key_info())
            .map_err(|e| file_err(&cert_path, e))?;
        Ok(Self {
            issuer,
            cert_pem,
            cert_der,
            not_after,
            leaf_key: LeafKey::generate()?,
        })
    }

    /// Generates a new CA and writes it to `dir`: a missing `dir` (and its missing parents) is
    /// created 0700 and the key file 0600, whatever the umask; the certificate is 0644 (agents
    /// get it with `airlock ca export`). Refuses to overwrite.
    pub fn create(dir: &Path) -> Result<Self, TlsError> {
        crate::secret_file::create_private_dir(dir).map_err(|e| file_err(dir, e))?;
        let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Airlock Interception CA");
        name.push(DnType::OrganizationName, "Airlock");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert_pem = cert.pem();
        let (cert_path, key_path) = paths(dir);
        // Fails if the key exists (another process creating the CA at the same moment).
        crate::secret_file::create_new(&key_path, key.serialize_pem().as_bytes())
            .map_err(|e| file_err(&key_path, e))?;
        // Whole or not at all, as the key (a full disk left a 0-byte ca.pem beside the key,
        // which every later start refused); and if it cannot be written, the key just made goes
        // too, so that a retry starts clean rather than finding half a CA.
        if let Err(e) =
            crate::secret_file::create_new_with_mode(&cert_path, cert_pem.as_bytes(), 0o644)
        {
            if let Err(removing) = fs::remove_file(&key_path) {
                let key = key_path.display();
                return Err(file_err(
                    &cert_path,
                    format!(
                        "{e}; the key written before it could not be removed ({removing}): \
                         remove {key} before trying again"
                    ),
                ));
            }
            return Err(file_err(&cert_path, e));
        }
        let cert_der = cert.der().clone();
        let not_after = params.not_after;
        let issuer = Issuer::new(params, key);
        Ok(Self {
            issuer,
            cert_pem,
            cert_der,
            not_after,
            leaf_key: LeafKey::generate()?,
        })
    }

    /// The CA certificate in PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Mints a fresh leaf for `host` (a DNS name or an IP literal): random serial,
    /// SAN = host, 90-day validity (never past the CA's), the process's leaf key (P-256, cheap
    /// to sign with).
    pub fn mint_leaf(&self, host: &str) -> Result<CertifiedKey, TlsError> {
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if !is_dns_name(host) => return Err(TlsError::BadHost(host.to_string())),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|_| TlsError::BadHost(host.to_string()))?,
            ),
        };
        crate::metrics::leaf_minted();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = (now + Duration::days(LEAF_VALIDITY_DAYS)).min(self.not_after);
        let cert = params
            .signed_by(&self.leaf_key.pair, &self.issuer)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            self.leaf_key.signing.clone(),
        ))
    }
}

/// Checks a loaded CA certificate against its key and the clock; returns its end of validity.
/// A key from another CA, a certificate that is not a CA's, or one outside its validity would
/// make every agent's TLS fail with an obscure error: refused at start instead.
fn check_loaded(cert_der: &[u8], key_spki: &[u8]) -> Result<OffsetDateTime, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    if cert.public_key().raw != key_spki {
        return Err(format!(
            "{CA_KEY_FILE} is not this certificate's key (a key from another CA?); restore the \
             matching pair, or move both files aside to create a new CA"
        ));
    }
    let signs = match cert.key_usage() {
        Ok(usage) => usage.is_none_or(|u| u.value.key_cert_sign()),
        Err(e) => return Err(format!("its key usage cannot be read: {e}")),
    };
    if !cert.is_ca() || !signs {
        return Err("not a CA certificate (basicConstraints CA and keyCertSign needed)".into());
    }
    let validity = cert.validity();
    let (from, until) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    let now = OffsetDateTime::now_utc();
    if now < from {
        return Err(format!("not valid before {from} (is the clock right?)"));
    }
    if now >= until {
        return Err(format!(
            "the CA expired on {until}: move {CA_CERT_FILE} and {CA_KEY_FILE} aside, start \
             Airlock to create a new CA, and give agents the new certificate"
        ));
    }
    warn_if_expiring(until, now);
    Ok(until)
}

/// Warns (as at load) when a CA valid until `expires_at_unix` (seconds) expires within
/// [`CA_EXPIRY_WARNING_DAYS`]: a server that runs for months checks it daily, not only at
/// start. Returns whether it warned.
pub fn check_expiry(expires_at_unix: i64) -> bool {
    match OffsetDateTime::from_unix_timestamp(expires_at_unix) {
        Ok(until) => warn_if_expiring(until, OffsetDateTime::now_utc()),
        Err(_) => false,
    }
}

/// Warns when a CA valid until `until` has less than [`CA_EXPIRY_WARNING_DAYS`] left at `now`.
fn warn_if_expiring(until: OffsetDateTime, now: OffsetDateTime) -> bool {
    let soon = until - now < Duration::days(CA_EXPIRY_WARNING_DAYS);
    if soon {
        tracing::warn!(
            expires = %until,
            "the interception CA expires soon; agents will refuse Airlock's certificates after \
             that: rotate it now (`airlock ca rotate`, give agents both certificates, then \
             `airlock ca rotate --finish`)"
        );
    }
    soon
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("bad PEM: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of session 23: the coming expiry was checked only when the CA was loaded, so a
    /// server running for months never warned. The daily check warns within 30 days.
    #[test]
    fn expiry_is_warned_about_within_thirty_days() {
        let now = OffsetDateTime::now_utc();
        let at = |d: i64| (now + Duration::days(d)).unix_timestamp();
        assert!(check_expiry(at(29)));
        assert!(check_expiry(at(-1)), "already expired");
        assert!(!check_expiry(at(31)));
        assert!(!check_expiry(i64::MAX), "out of range: not a date");
    }
}
