//! The upstream's TLS listener asks for a client certificate without requiring one (API-key and
//! SMS clients keep working): a certificate that is presented must chain to the enrollment CA
//! and be one of the enrolled, unrevoked ones.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::Enrolled;
use crate::error::HubError;

#[derive(Debug)]
pub(crate) struct EnrolledOnly {
    inner: Arc<dyn ClientCertVerifier>,
    enrolled: Enrolled,
    /// The hub's clock, not the system's: validity is judged by the time the hub issues by.
    clock: Arc<dyn rephub_model::Clock>,
}

impl EnrolledOnly {
    pub(crate) fn new(
        ca: CertificateDer<'static>,
        enrolled: Enrolled,
        provider: Arc<rustls::crypto::CryptoProvider>,
        clock: Arc<dyn rephub_model::Clock>,
    ) -> Result<EnrolledOnly, HubError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca)
            .map_err(|e| HubError::Crypto(format!("the enrollment CA: {e}")))?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| HubError::Crypto(format!("client certificate verifier: {e}")))?;
        Ok(EnrolledOnly {
            inner,
            enrolled,
            clock,
        })
    }
}

impl ClientCertVerifier for EnrolledOnly {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let secs = self.clock.now();
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(secs).unwrap_or(0),
        ));
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match self.enrolled.lookup(end_entity.as_ref(), secs) {
            Some(_) => Ok(verified),
            None => Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
