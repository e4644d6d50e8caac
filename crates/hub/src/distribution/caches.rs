//! What the TAXII server and the MISP feeds keep between requests. A leaf module (nothing of the
//! hub's state or handlers), so that the hub's state can hold these caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rephub_model::{Entry, FeedFiles};

/// Passes kept for paging (a few pollers paging at once).
const CACHED_PASSES: usize = 8;

/// What a TAXII collection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    All,
    Profile(i64),
}

/// One object of a pass: an entry in its state as of the pass.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) entry: Entry,
    /// Whether the collection still holds it (else it is served revoked).
    pub(crate) live: bool,
}

/// What a pass reads its objects from.
#[derive(Debug)]
pub(crate) enum Objects {
    /// Entries changed in the pass, by id.
    Items(Vec<Item>),
    /// Every entry of the database, paged from the store by id (the `all` collection from the
    /// start: too many to hold).
    Everything,
}

#[derive(Debug)]
pub(crate) struct Pass {
    pub(crate) scope: Scope,
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// The commit time of `to`, microseconds.
    pub(crate) at_us: i64,
    pub(crate) objects: Objects,
}

/// The passes being paged through, newest last.
#[derive(Debug, Default)]
pub(crate) struct Passes(Mutex<Vec<Arc<Pass>>>);

impl Passes {
    pub(crate) fn get(&self, scope: Scope, from: u64, to: u64) -> Option<Arc<Pass>> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .rev()
            .find(|p| p.scope == scope && p.from == from && p.to == to)
            .cloned()
    }

    pub(crate) fn put(&self, pass: Arc<Pass>) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|p| !(p.scope == pass.scope && p.from == pass.from && p.to == pass.to));
        list.push(pass);
        if list.len() > CACHED_PASSES {
            list.remove(0);
        }
    }
}

/// A feed rendered: the position it reflects, its events' least timestamp, and the files.
pub(crate) type Rendered = (u64, i64, Arc<FeedFiles>);

/// Feeds rendered, by scope (`None`: all).
#[derive(Debug, Default)]
pub(crate) struct Feeds(Mutex<HashMap<Option<i64>, Rendered>>);

impl Feeds {
    pub(crate) fn get(&self, scope: Option<i64>) -> Option<Rendered> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&scope)
            .cloned()
    }

    pub(crate) fn put(&self, scope: Option<i64>, rendered: Rendered) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope, rendered);
    }
}
