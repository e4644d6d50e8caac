//! TLS to PostgreSQL, with libpq's settings in the connection string: `sslmode` (`disable`,
//! `prefer`, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file of CA certificates,
//! or `system` for the system's roots), `sslcert` and `sslkey` (a client certificate).
//!
//! The client crate knows only `disable`, `prefer` and `require`, and none of the file settings,
//! so these are taken out of the connection string before it is parsed and applied here, with
//! rustls (ring). What each mode checks is libpq's:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (the default) | if the server offers TLS | no (as libpq) |
//! | `require` | yes | no; with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca` | yes | chain to `sslrootcert` |
//! | `verify-full` | yes | chain to `sslrootcert`, and the host name |
//!
//! Unix-socket connections never use TLS (the client skips it, as libpq does).

use std::path::PathBuf;
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::StoreError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub(crate) root: Option<String>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

/// The settings this module applies, taken out of the string the client parses.
const OURS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// `conninfo` without the TLS settings, and the settings.
pub(crate) fn split(conninfo: &str) -> Result<(String, Settings), StoreError> {
    let (rest, pairs) =
        if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
            split_url(conninfo)
        } else {
            split_pairs(conninfo)?
        };
    let mut s = Settings {
        mode: Mode::Prefer,
        root: None,
        cert: None,
        key: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "sslmode" => {
                s.mode = match v.as_str() {
                    "disable" => Mode::Disable,
                    "prefer" | "allow" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(bad(format!(
                            "sslmode {other:?}: disable, prefer, require, verify-ca or verify-full"
                        )));
                    }
                }
            }
            "sslrootcert" => s.root = Some(v),
            "sslcert" => s.cert = Some(PathBuf::from(v)),
            _ => s.key = Some(PathBuf::from(v)),
        }
    }
    if s.cert.is_some() != s.key.is_some() {
        return Err(bad("sslcert and sslkey go together".into()));
    }
    if matches!(s.mode, Mode::VerifyCa | Mode::VerifyFull) && s.root.is_none() {
        return Err(bad(
            "sslmode verify-ca and verify-full need sslrootcert (a PEM file of CA certificates, \
             or \"system\")"
                .into(),
        ));
    }
    Ok((rest, s))
}

fn bad(why: String) -> StoreError {
    StoreError::Backend(format!("PostgreSQL connection string: {why}").into())
}

/// A URL's query parameters of ours taken out (percent-decoded).
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Vec::new());
    };
    let mut ours = Vec::new();
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if OURS.contains(&k.as_ref()) {
            ours.push((k.into_owned(), v.into_owned()));
        } else {
            kept.append_pair(&k, &v);
        }
    }
    let kept = kept.finish();
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{kept}")
    };
    (rest, ours)
}

/// `key=value` pairs (libpq's form: values may be single-quoted, with `\'` and `\\` inside), ours
/// taken out, the rest written back quoted.
fn split_pairs(s: &str) -> Result<(String, Vec<(String, String)>), StoreError> {
    let mut chars = s.chars().peekable();
    let mut rest = Vec::new();
    let mut ours = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(format!("{key:?} has no value")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(bad(format!("{key}: unterminated quote"))),
                    },
                    Some(c) => value.push(c),
                    None => return Err(bad(format!("{key}: unterminated quote"))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if OURS.contains(&key.as_str()) {
            ours.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((rest.join(" "), ours))
}

/// The client's `sslmode` for these settings.
pub(crate) fn client_mode(s: &Settings) -> SslMode {
    match s.mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    }
}

/// The rustls configuration for these settings (the files read now, so a renewed certificate is
/// used by the next connection).
pub(crate) fn client_config(s: &Settings) -> Result<rustls::ClientConfig, StoreError> {
    let provider = Arc::new(ring::default_provider());
    let roots = match &s.root {
        Some(root) => Some(Arc::new(roots(root)?)),
        None => None,
    };
    // `require` with a root file checks the chain, as libpq does.
    let mode = match (s.mode, &roots) {
        (Mode::Require, Some(_)) => Mode::VerifyCa,
        (mode, _) => mode,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (Mode::VerifyCa | Mode::VerifyFull, Some(roots)) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| bad(format!("sslrootcert: {e}")))?;
            if mode == Mode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
        _ => Arc::new(Unchecked(provider.clone())),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("sslcert {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("sslkey {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("sslcert and sslkey: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn roots(root: &str) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(bad(
                "sslrootcert=system: no CA certificates found on this system".into(),
            ));
        }
        return Ok(store);
    }
    let certs = CertificateDer::pem_file_iter(root)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("sslrootcert {root}: {e}")))?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(format!("sslrootcert {root}: no CA certificate in it")));
    }
    Ok(store)
}

/// `verify-ca`: the chain is checked, the name is not (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: encrypted, the certificate not checked (libpq's
/// meaning; the handshake's signatures still are).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_taken_out_of_either_form() {
        let (rest, s) = split(
            "host=db1 dbname='my db' sslmode=verify-full sslrootcert='/etc/ca it.pem' user=r\\ x",
        )
        .unwrap();
        assert_eq!(rest, "host='db1' dbname='my db' user='r x'");
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root.as_deref(), Some("/etc/ca it.pem"));
        let parsed: postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_dbname(), Some("my db"));
        assert_eq!(parsed.get_user(), Some("r x"));

        let (rest, s) = split(
            "postgres://u:p@db1:5433/rephub?sslmode=require&application_name=x&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db1:5433/rephub?application_name=x");
        assert_eq!(
            (s.mode, s.root.as_deref()),
            (Mode::Require, Some("/ca.pem"))
        );
        let (rest, s) = split("postgresql://db1/rephub").unwrap();
        assert_eq!(
            (rest.as_str(), s.mode),
            ("postgresql://db1/rephub", Mode::Prefer)
        );
        let (rest, _) = split("host=a password='it\\'s'").unwrap();
        let parsed: postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"it's"[..]));
    }

    #[test]
    fn bad_settings_are_refused_saying_why() {
        for (conninfo, why) in [
            ("host=a sslmode=maybe", "sslmode \"maybe\""),
            ("host=a sslmode=verify-full", "need sslrootcert"),
            ("host=a sslcert=/c.pem", "go together"),
            ("host=a dbname='x", "unterminated quote"),
            ("host=a dbname", "has no value"),
        ] {
            let e = split(conninfo).unwrap_err().to_string();
            assert!(e.contains(why), "{conninfo}: {e}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "",
            " ",
            "=",
            "==",
            "'",
            "a='\\",
            "a=\\",
            "postgres://?",
            "postgres://?&&=",
            "a = 'b' c= d",
            "\u{0}=\u{0}",
            "sslmode=",
            "a=b\\",
        ] {
            let _ = split(s);
        }
    }
}
