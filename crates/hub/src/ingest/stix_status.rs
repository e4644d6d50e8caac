//! The status resources of STIX pushes (TAXII 2.1 "status"): in the database (`StatusStore`), so
//! that a client behind a load balancer reads a push's status from whichever replica it reaches.
//! The newest [`KEEP`] are kept.

use rephub_store::StatusStore;
use serde_json::Value;

use crate::error::HubError;
use crate::state::AppState;

/// Status resources kept.
const KEEP: usize = 1000;

pub(crate) async fn put(state: &AppState, id: String, v: &Value) -> Result<(), HubError> {
    let body = v.to_string();
    let now = state.now();
    state
        .exec(move |s| s.put_status(&id, &body, now, KEEP))
        .await??;
    Ok(())
}

pub(crate) async fn get(state: &AppState, id: &str) -> Result<Option<Value>, HubError> {
    let i = id.to_string();
    let Some(body) = state.read(move |s| s.status(&i)).await?? else {
        return Ok(None);
    };
    serde_json::from_str(&body).map(Some).map_err(|e| {
        HubError::Store(rephub_store::StoreError::Corrupt(format!(
            "status {id}: {e}"
        )))
    })
}
