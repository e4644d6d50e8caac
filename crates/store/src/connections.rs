//! Connections between hubs, on the upstream's side: single-use enrollment tokens (kept hashed,
//! like API keys), the downstream hubs that enrolled with one, and the client certificates issued
//! to them (by serial; a certificate whose serial is not active here is refused).

use crate::error::StoreError;

/// An enrollment token as stored (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub id: i64,
    /// The name the downstream will have.
    pub name: String,
    pub hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A downstream hub that enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downstream {
    pub id: i64,
    pub name: String,
    /// Where it enrolled from.
    pub address: Option<String>,
    pub enrolled_at: i64,
    /// Its newest certificate.
    pub serial: Vec<u8>,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    /// Sandbox URL analysis, switched on for it by the upstream's admin.
    pub sandbox: bool,
}

/// An issued client certificate that is still good: not expired, its downstream not revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCertificate {
    pub serial: Vec<u8>,
    pub downstream_id: i64,
    pub downstream: String,
    pub not_after: i64,
}

/// A policy deployment the upstream asked of a downstream (seed 002, chapter 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: i64,
    pub downstream_id: i64,
    /// What to do (JSON, as the hub accepted it).
    pub request: String,
    /// `pending`, `applied` or `failed`.
    pub status: String,
    pub created_at: i64,
    pub done_at: Option<i64>,
    /// What the downstream reported (JSON).
    pub result: Option<String>,
}

/// Storage of enrollment tokens, downstreams and their certificates.
pub trait ConnectionStore {
    /// Fails with [`StoreError::Conflict`] if a token of that hash exists.
    fn add_enrollment_token(
        &mut self,
        name: &str,
        hash: &[u8],
        expires_at: i64,
    ) -> Result<EnrollmentToken, StoreError>;
    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError>;
    /// Returns whether an unused, unrevoked token of that id existed.
    fn revoke_enrollment_token(&mut self, id: i64) -> Result<bool, StoreError>;
    fn enrollment_token_by_hash(&self, hash: &[u8]) -> Result<Option<EnrollmentToken>, StoreError>;
    /// Record an enrollment, in one transaction: the token (unused, unrevoked) becomes used, the
    /// downstream of the token's name is recorded (again: a reconnection keeps its id), and its
    /// certificate is recorded. [`StoreError::Conflict`] if the token was used or revoked meanwhile.
    fn enroll(
        &mut self,
        token_id: i64,
        address: Option<&str>,
        serial: &[u8],
        not_after: i64,
    ) -> Result<Downstream, StoreError>;
    fn downstreams(&self) -> Result<Vec<Downstream>, StoreError>;
    /// Revoke a downstream and every certificate it holds. Returns whether it existed.
    fn revoke_downstream(&mut self, id: i64) -> Result<bool, StoreError>;
    /// Record a renewed certificate of an active downstream.
    fn add_certificate(
        &mut self,
        downstream_id: i64,
        serial: &[u8],
        not_after: i64,
    ) -> Result<(), StoreError>;
    /// Certificates that are good at `now`.
    fn active_certificates(&self, now: i64) -> Result<Vec<ActiveCertificate>, StoreError>;
    /// Switch sandbox URL analysis on or off for a downstream. Returns whether it exists.
    fn set_downstream_sandbox(&mut self, id: i64, on: bool) -> Result<bool, StoreError>;

    /// Ask a downstream for a policy deployment: its id.
    fn add_deployment(&mut self, downstream_id: i64, request: &str) -> Result<i64, StoreError>;
    /// A downstream's deployments, newest first (`pending` only, if asked).
    fn deployments(
        &self,
        downstream_id: i64,
        pending_only: bool,
    ) -> Result<Vec<Deployment>, StoreError>;
    /// Record what a downstream reported for one of its pending deployments. Returns whether
    /// there was such a pending deployment (a second report changes nothing).
    fn finish_deployment(
        &mut self,
        id: i64,
        downstream_id: i64,
        applied: bool,
        result: &str,
    ) -> Result<bool, StoreError>;

    /// The downstream's side: the connection's features that were ever set, by name.
    fn connection_features(&self) -> Result<Vec<(String, bool)>, StoreError>;
    /// Set features (others keep their state), in one transaction.
    fn set_connection_features(&mut self, features: &[(String, bool)]) -> Result<(), StoreError>;
}

/// The certificate authority that signs enrolled downstreams' certificates: one per database, so
/// that every replica of a cluster issues and trusts the same one. The key is stored as the hub
/// gives it (sealed with the hub's secret key, which is never in the database).
pub trait CaStore {
    /// The stored CA: (certificate PEM, sealed key).
    fn certificate_authority(&self) -> Result<Option<(String, String)>, StoreError>;

    /// Keep this CA unless one is stored already; returns the one stored (the first one kept
    /// wins when replicas start together).
    fn keep_certificate_authority(
        &mut self,
        cert_pem: &str,
        sealed_key: &str,
        at: i64,
    ) -> Result<(String, String), StoreError>;
}
