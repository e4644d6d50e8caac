//! HTTPS: a configured certificate, or a self-signed one made on first start and kept in the data
//! directory (`tls/cert.pem`, `tls/key.pem`), so that SMS API clients, which call `https://` with
//! verification off, work out of the box. rustls with the `ring` provider.

use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;

use crate::config::Config;
use crate::error::HubError;

pub(crate) async fn server_config(cfg: &Config) -> Result<RustlsConfig, HubError> {
    // Several hubs in one process (tests) install it once; a second install is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => self_signed(&cfg.data_dir)?,
        _ => {
            return Err(HubError::Config(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
    };
    RustlsConfig::from_pem_file(&cert, &key).await.map_err(|e| {
        HubError::Crypto(format!(
            "loading the TLS certificate {} and key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// The data directory's self-signed certificate, made if it is not there yet.
fn self_signed(data_dir: &Path) -> Result<(PathBuf, PathBuf), HubError> {
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
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| HubError::Crypto(format!("making a self-signed certificate: {e}")))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes()).map_err(io)?;
    std::fs::write(&cert, made.cert.pem()).map_err(io)?;
    tracing::info!(cert = %cert.display(), "made a self-signed TLS certificate");
    Ok((cert, key))
}

/// A private key is readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}
