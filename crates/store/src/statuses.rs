//! The status resources of TAXII pushes (`POST …/objects/` answers with one; the client reads it
//! back at `…/status/{id}/`), in the database so that a client behind a load balancer finds the
//! status whichever replica it asks.

use crate::error::StoreError;

pub trait StatusStore {
    /// Keep a status resource (JSON) under `id`, replacing one of that id; then only the `keep`
    /// most recently added are kept.
    fn put_status(&mut self, id: &str, body: &str, at: i64, keep: usize) -> Result<(), StoreError>;

    fn status(&self, id: &str) -> Result<Option<String>, StoreError>;
}
