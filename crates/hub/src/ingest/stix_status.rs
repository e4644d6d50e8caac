//! The status resources of STIX pushes (TAXII 2.1 "status"), kept in memory, newest last.

use std::collections::VecDeque;

use serde_json::Value;

/// Status resources kept.
const KEEP: usize = 1000;

/// The last pushes' status resources, newest last.
#[derive(Debug, Default)]
pub(crate) struct Statuses(std::sync::Mutex<VecDeque<(String, Value)>>);

impl Statuses {
    pub(crate) fn put(&self, id: String, v: Value) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back((id, v));
    }

    pub(crate) fn get(&self, id: &str) -> Option<Value> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().find(|(i, _)| i == id).map(|(_, v)| v.clone())
    }
}
