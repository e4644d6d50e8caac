//! The upstream's certificate authority: made on first start and kept in the database (its key
//! sealed with the hub's secret key; hubs before that kept it in the data directory's `ca/`,
//! which a first start brings into the database). It signs the client certificates of enrolled
//! downstreams (one year, client authentication only) from certificate signing requests they made
//! themselves, so a downstream's private key never leaves it.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};

use rephub_store::CaStore;

use crate::db::Backend;
use crate::error::HubError;
use crate::secrets::Secrets;

/// How long an issued client certificate is valid.
pub(crate) const CLIENT_CERT_DAYS: i64 = 365;
/// How long the CA itself is valid.
const CA_DAYS: i64 = 3650;
/// Clocks of peers may be a little behind.
const BACKDATE_SECS: i64 = 300;

/// The CA, loaded.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

/// A client certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) pem: String,
    pub(crate) serial: Vec<u8>,
    pub(crate) not_after: i64,
}

/// Why a certificate signing request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CsrError(pub(crate) String);

impl Ca {
    /// The database's CA. A database without one gets the data directory's `ca/` (where hubs
    /// kept it before it moved into the database), or else a new one; when replicas start
    /// together, the first one kept is the one every replica uses. The key is stored sealed with
    /// the hub's secret key (`secrets`), so a replica needs the same secret key file to sign.
    pub(crate) fn load(
        store: &mut Backend,
        secrets: &Secrets,
        data_dir: &Path,
        now: i64,
    ) -> Result<Ca, HubError> {
        let files = from_files(data_dir)?;
        let (cert, sealed) = match store.certificate_authority()? {
            Some(kept) => kept,
            None => {
                let (cert, key, how) = match &files {
                    Some((c, k)) => (c.clone(), k.clone(), "brought from the data directory"),
                    None => {
                        let (c, k) = make(now)?;
                        (c, k, "made")
                    }
                };
                let kept = store.keep_certificate_authority(&cert, &secrets.seal(&key), now)?;
                if kept.0 == cert {
                    tracing::info!(
                        "the certificate authority of enrollments: {how}, kept in the database"
                    );
                }
                kept
            }
        };
        if !crate::secrets::is_sealed(&sealed) {
            return Err(HubError::Crypto(
                "the enrollment CA's key in the database is not sealed".into(),
            ));
        }
        let key = secrets.open_value(&sealed).map_err(|_| {
            HubError::Crypto(
                "the enrollment CA in the database was sealed with another secret key: give this \
                 hub the secret key file of the hub that made it (secret_key_file; the same file \
                 on every replica). If that key is lost: delete the row of the table \
                 certificate_authority; a new CA is made and every downstream enrolls again"
                    .into(),
            )
        })?;
        if let Some((old, _)) = &files {
            if *old != cert {
                tracing::warn!(
                    dir = %data_dir.join("ca").display(),
                    "the data directory's CA is not the database's; the database's is used: \
                     downstreams enrolled with the other one must enroll again"
                );
            }
        }
        Ca::from_pem(cert, &key)
    }

    /// For tests: the CA of a SQLite database in `dir`, sealed with that directory's key.
    #[cfg(test)]
    pub(crate) fn in_dir(dir: &Path, now: i64) -> Result<Ca, HubError> {
        let mut store = Backend::open_with(
            &rephub_store::Location::Sqlite(dir.join("rephub.db")),
            rephub_store::OpenOptions::default(),
        )?;
        Ca::load(&mut store, &Secrets::open(dir)?, dir, now)
    }

    fn from_pem(pem: String, key: &str) -> Result<Ca, HubError> {
        let crypto = |e: rcgen::Error| HubError::Crypto(format!("the enrollment CA: {e}"));
        let issuer = Issuer::from_ca_cert_pem(&pem, KeyPair::from_pem(key).map_err(crypto)?)
            .map_err(crypto)?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| HubError::Crypto(format!("the enrollment CA: {e}")))?;
        Ok(Ca { issuer, pem, der })
    }

    /// The CA certificate (PEM), which downstreams pin.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// SHA-256 of the CA certificate (hex): what a downstream checks before it trusts it.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(self.der.as_ref()))
    }

    /// A client certificate for `name` from a downstream's CSR: only client authentication;
    /// valid a year from `now`. The request may leave its subject empty (the downstream need not
    /// know the name it was given) or name `name`; a request for any other name is refused.
    pub(crate) fn issue(&self, csr_pem: &str, name: &str, now: i64) -> Result<Issued, CsrError> {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| CsrError(format!("not a PEM certificate signing request: {e}")))?;
        let mut csr = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| CsrError(format!("unusable certificate signing request: {e}")))?;
        check_key(&der, &csr)?;
        check_names(&der, name)?;
        let serial = random_serial().map_err(|e| CsrError(e.to_string()))?;
        let p = &mut csr.params;
        p.distinguished_name = common_name(name);
        p.subject_alt_names.clear();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.name_constraints = None;
        p.crl_distribution_points.clear();
        p.custom_extensions.clear();
        p.use_authority_key_identifier_extension = true;
        let not_after = now.saturating_add(CLIENT_CERT_DAYS * 86_400);
        p.not_before = at(now - BACKDATE_SECS).map_err(CsrError)?;
        p.not_after = at(not_after).map_err(CsrError)?;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| CsrError(format!("signing: {e}")))?;
        Ok(Issued {
            pem: cert.pem(),
            serial: serial.to_vec(),
            not_after,
        })
    }

    /// A TLS server certificate for `names`, signed by this CA (so that a downstream that pins
    /// the CA can check the upstream it talks to). Returns (certificate PEM, key PEM).
    pub(crate) fn server_cert(
        &self,
        names: Vec<String>,
        now: i64,
    ) -> Result<(String, String), HubError> {
        let crypto = |e: rcgen::Error| HubError::Crypto(format!("server certificate: {e}"));
        let key = KeyPair::generate().map_err(crypto)?;
        let mut p = CertificateParams::new(names).map_err(crypto)?;
        p.distinguished_name = common_name("rephub hub");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        p.not_before = at(now - BACKDATE_SECS).map_err(HubError::Crypto)?;
        p.not_after = at(now.saturating_add(CA_DAYS * 86_400)).map_err(HubError::Crypto)?;
        p.serial_number = Some(SerialNumber::from_slice(
            &random_serial().map_err(|e| HubError::Crypto(e.to_string()))?,
        ));
        let cert = p.signed_by(&key, &self.issuer).map_err(crypto)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The CA a hub kept in its data directory before the database kept it: (certificate PEM, key
/// PEM), if both files are there.
fn from_files(data_dir: &Path) -> Result<Option<(String, String)>, HubError> {
    let dir = data_dir.join("ca");
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if !cert_path.exists() || !key_path.exists() {
        return Ok(None);
    }
    let cert = std::fs::read_to_string(&cert_path).map_err(HubError::file(&cert_path))?;
    let key = std::fs::read_to_string(&key_path).map_err(HubError::file(&key_path))?;
    Ok(Some((cert, key)))
}

/// A new CA: (certificate PEM, key PEM).
fn make(now: i64) -> Result<(String, String), HubError> {
    let crypto = |e: rcgen::Error| HubError::Crypto(format!("making the CA: {e}"));
    let key = KeyPair::generate().map_err(crypto)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = common_name("rephub enrollment CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = at(now - BACKDATE_SECS).map_err(HubError::Crypto)?;
    p.not_after = at(now.saturating_add(CA_DAYS * 86_400)).map_err(HubError::Crypto)?;
    p.serial_number = Some(SerialNumber::from_slice(
        &random_serial().map_err(|e| HubError::Crypto(e.to_string()))?,
    ));
    let cert = p.self_signed(&key).map_err(crypto)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn at(unix: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| format!("time {unix}: {e}"))
}

/// 16 random bytes that DER writes as they are (positive, no leading zero), so the serial the
/// database keeps is the certificate's serial byte for byte.
fn random_serial() -> Result<[u8; 16], getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    b[0] = (b[0] & 0x3f) | 0x40;
    Ok(b)
}

/// Only strong keys: ECDSA P-256 or P-384, Ed25519, RSA of 2048 bits or more. rcgen takes the
/// key type from the CSR's signature algorithm, so a P-384 key signed with SHA-256 would become a
/// broken certificate: the CSR's actual key must be the one rcgen will write.
fn check_key(
    der: &CertificateSigningRequestDer<'_>,
    csr: &CertificateSigningRequestParams,
) -> Result<(), CsrError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, req) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| CsrError(format!("unreadable certificate signing request: {e}")))?;
    let spki = &req.certification_request_info.subject_pki;
    if spki.raw != csr.public_key.subject_public_key_info().as_slice() {
        return Err(CsrError(
            "the request's key does not match its signature algorithm (use P-256 with SHA-256 or P-384 with SHA-384)".into(),
        ));
    }
    let alg = csr.public_key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256
        || alg == &rcgen::PKCS_ECDSA_P384_SHA384
        || alg == &rcgen::PKCS_ED25519
    {
        return Ok(());
    }
    if [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ]
    .contains(&alg)
    {
        if let Ok(PublicKey::RSA(rsa)) = spki.parsed() {
            let m = &rsa.modulus[rsa.modulus.iter().take_while(|b| **b == 0).count()..];
            let bits =
                (m.len() * 8).saturating_sub(m.first().map_or(8, |b| b.leading_zeros() as usize));
            if bits >= 2048 {
                return Ok(());
            }
            return Err(CsrError(format!(
                "an RSA key of {bits} bits is too weak (2048 or more)"
            )));
        }
    }
    Err(CsrError(
        "key type not accepted: ECDSA P-256 or P-384, Ed25519, or RSA of 2048 bits or more".into(),
    ))
}

/// The names a request asks for (its subject's common names and its DNS, e-mail and URI
/// alternative names) must all be `name`.
fn check_names(der: &CertificateSigningRequestDer<'_>, name: &str) -> Result<(), CsrError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, req) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| CsrError(format!("unreadable certificate signing request: {e}")))?;
    let info = &req.certification_request_info;
    let mut asked: Vec<String> = info
        .subject
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap_or("(unreadable)").to_string())
        .collect();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for g in &san.general_names {
                match g {
                    GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                        asked.push((*n).to_string());
                    }
                    other => asked.push(other.to_string()),
                }
            }
        }
    }
    match asked.into_iter().find(|a| a != name) {
        None => Ok(()),
        Some(other) => Err(CsrError(format!(
            "the request is for {other:?} but the token was made for {name:?}: leave the subject empty or name {name:?}"
        ))),
    }
}

/// A key and a certificate signing request (the downstream's side): (key PEM, CSR PEM). `name`
/// is the subject's common name; empty leaves the subject empty (the upstream names it).
pub fn make_csr(name: &str) -> Result<(String, String), HubError> {
    let crypto = |e: rcgen::Error| HubError::Crypto(format!("making a signing request: {e}"));
    let key = KeyPair::generate().map_err(crypto)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = if name.is_empty() {
        DistinguishedName::new()
    } else {
        common_name(name)
    };
    let csr = p.serialize_request(&key).map_err(crypto)?;
    Ok((key.serialize_pem(), csr.pem().map_err(crypto)?))
}

/// The serial and common name of a certificate (DER).
pub(crate) fn serial_and_name(der: &[u8]) -> Option<(Vec<u8>, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let serial = cert.raw_serial().to_vec();
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((serial, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn open(dir: &Path, now: i64) -> Result<Ca, HubError> {
        Ca::in_dir(dir, now)
    }

    #[test]
    fn the_ca_is_kept_in_the_database_and_its_key_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = open(dir.path(), NOW).unwrap();
        let again = open(dir.path(), NOW + 10).unwrap();
        assert_eq!(
            ca.fingerprint(),
            again.fingerprint(),
            "kept, not made again"
        );
        assert!(!dir.path().join("ca").exists(), "no files of its own");
        let mut store = Backend::open_with(
            &rephub_store::Location::Sqlite(dir.path().join("rephub.db")),
            rephub_store::OpenOptions::default(),
        )
        .unwrap();
        let (cert, sealed) = store.certificate_authority().unwrap().unwrap();
        assert_eq!(cert, ca.pem());
        assert!(crate::secrets::is_sealed(&sealed) && !sealed.contains("PRIVATE KEY"));

        // Another secret key cannot open it: refused with the reason, nothing made anew.
        let other = tempfile::tempdir().unwrap();
        let e = Ca::load(
            &mut store,
            &Secrets::open(other.path()).unwrap(),
            dir.path(),
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("another secret key"), "{e}");
        assert_eq!(store.certificate_authority().unwrap().unwrap().0, cert);
    }

    #[test]
    fn a_ca_of_the_data_directory_moves_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make(NOW).unwrap();
        std::fs::create_dir_all(dir.path().join("ca")).unwrap();
        std::fs::write(dir.path().join("ca/ca.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("ca/ca.key"), &key).unwrap();
        let ca = open(dir.path(), NOW).unwrap();
        assert_eq!(ca.pem(), cert, "the CA downstreams pinned stays");
        // Once in the database, the database's is used even if the files change.
        std::fs::write(dir.path().join("ca/ca.pem"), make(NOW).unwrap().0).unwrap();
        assert_eq!(open(dir.path(), NOW).unwrap().pem(), cert);
    }

    #[test]
    fn a_csr_becomes_a_one_year_client_certificate_for_the_enrolled_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = open(dir.path(), NOW).unwrap();
        let (_, other) = make_csr("asked-for-another-name").unwrap();
        let refused = ca.issue(&other, "branch-1", NOW).unwrap_err().0;
        assert!(
            refused.contains("\"asked-for-another-name\"") && refused.contains("\"branch-1\""),
            "{refused}"
        );
        let (_, named) = make_csr("branch-1").unwrap();
        assert!(ca.issue(&named, "branch-1", NOW).is_ok());
        let (key, csr) = make_csr("").unwrap();
        assert!(key.contains("PRIVATE KEY") && !csr.contains("PRIVATE"));
        let issued = ca.issue(&csr, "branch-1", NOW).unwrap();
        assert_eq!(issued.not_after, NOW + 365 * 86_400);
        let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        let (serial, name) = serial_and_name(&der).unwrap();
        assert_eq!((serial, name.as_str()), (issued.serial.clone(), "branch-1"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), NOW + 365 * 86_400);
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        assert_ne!(
            ca.issue(&csr, "branch-1", NOW).unwrap().serial,
            issued.serial
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ca = open(dir.path(), NOW).unwrap();
        assert!(ca.issue("garbage", "x", NOW).unwrap_err().0.contains("PEM"));
        let (_, csr) = make_csr("x").unwrap();
        // One base64 character changed: the structure or the self-signature no longer holds.
        let mut lines: Vec<String> = csr.lines().map(str::to_string).collect();
        let c = lines[1].as_bytes()[20];
        lines[1].replace_range(20..21, if c == b'A' { "B" } else { "A" });
        assert!(ca.issue(&lines.join("\n"), "x", NOW).is_err());
        // A P-384 key signed with SHA-256: rcgen would write a broken certificate.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = common_name("x");
        let ok = p.serialize_request(&key).unwrap().pem().unwrap();
        assert!(ca.issue(&ok, "x", NOW).is_ok(), "P-384 with SHA-384");
    }
}
