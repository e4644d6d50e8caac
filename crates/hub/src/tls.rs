//! HTTPS: a configured certificate, or one made on first start, issued by the hub's enrollment CA
//! and kept in the data directory (`tls/cert.pem`, `tls/key.pem`), so that SMS API clients, which
//! call `https://` with verification off, work out of the box, and downstream hubs, which pin the
//! CA, can check it. Client certificates are asked for, not required. rustls with `ring`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;
use crate::connection::Enrolled;
use crate::connection::ca::Ca;
use crate::connection::verifier::EnrolledOnly;
use crate::error::HubError;

/// The HTTPS listener's configuration: the configured certificate, or the data directory's (issued
/// by the enrollment CA, so that downstreams which pin the CA can check it); client certificates
/// asked for but not required, and verified against the CA and the enrolled ones.
pub(crate) async fn server_config(
    cfg: &Config,
    ca: &Ca,
    enrolled: Enrolled,
    clock: Arc<dyn rephub_model::Clock>,
) -> Result<RustlsConfig, HubError> {
    let now = clock.now();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Several hubs in one process (tests) install it once; a second install is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => own_certificate(&cfg.data_dir, ca, now)?,
        _ => {
            return Err(HubError::Config(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
    };
    let bad = |e: &dyn std::fmt::Display| {
        HubError::Crypto(format!(
            "loading the TLS certificate {} and key {}: {e}",
            cert.display(),
            key.display()
        ))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| bad(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&e))?;
    let verifier = EnrolledOnly::new(ca.der().clone(), enrolled, provider.clone(), clock)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, private)
        .map_err(|e| bad(&e))?;
    // RustlsConfig::from_config leaves ALPN to us.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// The data directory's certificate, made if it is not there yet: issued by the enrollment CA.
/// (A hub made before the CA existed keeps its self-signed one; delete `tls/` to get a new one.)
fn own_certificate(data_dir: &Path, ca: &Ca, now: i64) -> Result<(PathBuf, PathBuf), HubError> {
    let dir = data_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let io = |e: std::io::Error| HubError::file(&dir)(e);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let (cert_pem, key_pem) = ca.server_cert(names, now)?;
    crate::files::write_private(&key, key_pem.as_bytes(), false).map_err(io)?;
    std::fs::write(&cert, cert_pem).map_err(io)?;
    tracing::info!(cert = %cert.display(), "made the TLS certificate (issued by the enrollment CA)");
    Ok((cert, key))
}
