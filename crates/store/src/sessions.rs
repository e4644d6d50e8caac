//! What the web console keeps between requests, in the database so that every replica of a
//! cluster sees it (a load balancer may send each request to another replica) and a restart signs
//! nobody out: sessions, by the SHA-256 of their token (never the token), and failed sign-ins per
//! name. The hub decides what is alive and what is locked; the store keeps rows and times (Unix
//! seconds, from the hub's clock).

use crate::error::StoreError;

/// Who a session stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOwner {
    /// A console user by name, and a stamp of the password hash they signed in with (a changed
    /// password ends the session).
    User { name: String, stamp: i64 },
    /// An API key, by its stored hash.
    Key { hash: Vec<u8> },
}

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the session's token.
    pub digest: Vec<u8>,
    pub owner: SessionOwner,
    /// The token every form of the session carries back.
    pub csrf: String,
    pub created_at: i64,
    /// When it was last used (written at most every so often: see the hub).
    pub last_at: i64,
    /// A message for the session's next page.
    pub flash: Option<String>,
}

/// Storage of console sessions and of failed sign-ins.
pub trait SessionStore {
    /// Keep a new session. In the same transaction, sessions last used before `idle_before` or
    /// made before `made_before` are deleted, and then, while `most` or more remain, the least
    /// recently used (sign-ins cannot grow the table without bound).
    fn add_session(
        &mut self,
        session: &ConsoleSession,
        idle_before: i64,
        made_before: i64,
        most: usize,
    ) -> Result<(), StoreError>;

    fn session(&self, digest: &[u8]) -> Result<Option<ConsoleSession>, StoreError>;

    /// Mark it used at `at`. Returns whether it exists.
    fn touch_session(&mut self, digest: &[u8], at: i64) -> Result<bool, StoreError>;

    /// Set (`Some`) or clear (`None`) its message for the next page. Returns whether it exists.
    fn set_session_flash(&mut self, digest: &[u8], flash: Option<&str>)
    -> Result<bool, StoreError>;

    /// Returns whether it existed.
    fn delete_session(&mut self, digest: &[u8]) -> Result<bool, StoreError>;

    /// End every session of a user (deleted, role or password changed). Returns how many.
    fn delete_user_sessions(&mut self, name: &str) -> Result<u64, StoreError>;

    /// Failed sign-ins as `name`: how many, and when the last was; `None` if none are counted.
    fn sign_in_failures(&self, name: &str) -> Result<Option<(u32, i64)>, StoreError>;

    /// Count a failed sign-in at `at`. A count whose last failure was before `reset_before`
    /// starts again at one; counts of other names that old are deleted. Returns the count.
    fn add_sign_in_failure(
        &mut self,
        name: &str,
        at: i64,
        reset_before: i64,
    ) -> Result<u32, StoreError>;

    /// Forget the failures of `name` (a sign-in succeeded).
    fn clear_sign_in_failures(&mut self, name: &str) -> Result<(), StoreError>;
}

/// The stored columns of an owner: user name, password stamp, key hash.
pub(crate) fn owner_columns(owner: &SessionOwner) -> (Option<&str>, i64, Option<&[u8]>) {
    match owner {
        SessionOwner::User { name, stamp } => (Some(name.as_str()), *stamp, None),
        SessionOwner::Key { hash } => (None, 0, Some(hash.as_slice())),
    }
}

/// The owner of stored columns; a row with neither a user nor a key is corrupt.
pub(crate) fn owner_of(
    user: Option<String>,
    stamp: i64,
    key: Option<Vec<u8>>,
) -> Result<SessionOwner, StoreError> {
    match (user, key) {
        (Some(name), None) => Ok(SessionOwner::User { name, stamp }),
        (None, Some(hash)) => Ok(SessionOwner::Key { hash }),
        _ => Err(StoreError::Corrupt(
            "a console session names both or neither of a user and a key".into(),
        )),
    }
}
