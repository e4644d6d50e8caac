//! Console sessions: a random token in an `HttpOnly` cookie, of which only the SHA-256 is stored,
//! and a CSRF token per session that every form must carry back. A session ends after 30 idle
//! minutes, 12 hours at most, at sign-out, and when its user is changed or deleted.
//!
//! Sessions and failed sign-ins are kept in the database (`SessionStore`), not in this process:
//! behind a load balancer every replica knows every session, and a restart signs nobody out. The
//! times are the hub's clock (seconds). A session's last use is written at most once a minute
//! ([`TOUCH_EVERY`]), and in the background: a page view is a read, not a write, and does not
//! wait for the database's writer (which may be busy with an import for a minute).

use rephub_store::{ConsoleSession, SessionOwner, SessionStore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::HubError;
use crate::state::AppState;

const IDLE: i64 = 30 * 60;
const LONGEST: i64 = 12 * 3600;
/// A session's last use is stored again once it is this old (the idle limit is minutes).
const TOUCH_EVERY: i64 = 60;
/// More sessions than this and the least recently used goes (a flood of sign-ins cannot grow
/// the table without bound).
const MOST: usize = 10_000;
/// Failed sign-ins per name before that name must wait.
const FAILURES: u32 = 5;
const LOCKOUT: i64 = 60;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A console user, by name (the role is read again on every request), and the stamp of the
    /// password they signed in with ([`password_stamp`]): a changed password ends the session,
    /// whoever changed it (the API, the console, the CLI on the database).
    User(String, u64),
    /// Signed in with an API key: the key's hash (checked again on every request).
    Key(Vec<u8>),
}

/// A live session, as a request finds it.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) who: Identity,
    pub(crate) csrf: String,
    /// The message kept for this page (taken: the next page does not show it again).
    pub(crate) flash: Option<String>,
}

/// What a session remembers of a user's password: 8 bytes of the SHA-256 of its stored hash.
pub(crate) fn password_stamp(password_hash: &str) -> u64 {
    let d = Sha256::digest(password_hash.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_hex() -> Result<String, HubError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| HubError::Crypto(format!("no OS randomness for a session: {e}")))?;
    Ok(hex::encode(bytes))
}

fn owner(who: Identity) -> SessionOwner {
    match who {
        // The stamp's bits, stored as a signed integer.
        Identity::User(name, stamp) => SessionOwner::User {
            name,
            stamp: stamp as i64,
        },
        Identity::Key(hash) => SessionOwner::Key { hash },
    }
}

fn identity(owner: SessionOwner) -> Identity {
    match owner {
        SessionOwner::User { name, stamp } => Identity::User(name, stamp as u64),
        SessionOwner::Key { hash } => Identity::Key(hash),
    }
}

fn alive(s: &ConsoleSession, now: i64) -> bool {
    now - s.last_at < IDLE && now - s.created_at < LONGEST
}

/// A new session: its token (for the cookie) and its CSRF token.
pub(crate) async fn open(state: &AppState, who: Identity) -> Result<(String, String), HubError> {
    let token = random_hex()?;
    let csrf = random_hex()?;
    let now = state.now();
    let session = ConsoleSession {
        digest: digest(&token),
        owner: owner(who),
        csrf: csrf.clone(),
        created_at: now,
        last_at: now,
        flash: None,
    };
    state
        .exec(move |s| s.add_session(&session, now - IDLE, now - LONGEST, MOST))
        .await??;
    Ok((token, csrf))
}

/// The session of a cookie's token, if it is alive; its message for this page is taken.
pub(crate) async fn get(state: &AppState, token: &str) -> Result<Option<Live>, HubError> {
    let key = digest(token);
    let k = key.clone();
    let Some(s) = state.read(move |s| s.session(&k)).await?? else {
        return Ok(None);
    };
    let now = state.now();
    if !alive(&s, now) {
        // Dead by its times whether or not the row is gone yet.
        in_background(state, "remove an ended session", move |s| {
            s.delete_session(&key)
        });
        return Ok(None);
    }
    if s.flash.is_some() {
        // Awaited: the message is shown once, and a later form's message must not be cleared
        // by this one's clearing arriving after it.
        let k = key.clone();
        state.exec(move |s| s.set_session_flash(&k, None)).await??;
    }
    if now - s.last_at >= TOUCH_EVERY {
        // Not awaited: a lost or late note only makes the session look idle a minute longer
        // (the next view writes it again).
        in_background(state, "note a session's use", move |s| {
            s.touch_session(&key, now)
        });
    }
    Ok(Some(Live {
        who: identity(s.owner),
        csrf: s.csrf,
        flash: s.flash,
    }))
}

/// A write whose answer nobody waits for, queued on the writer now (before this request is
/// answered), so that a later request's writes come after it.
fn in_background<T>(
    state: &AppState,
    what: &'static str,
    f: impl FnOnce(&mut crate::db::Backend) -> Result<T, rephub_store::StoreError> + Send + 'static,
) {
    let queued = state.exec_detached(move |s| {
        if let Err(e) = f(s) {
            tracing::warn!("console: could not {what}: {e}");
        }
    });
    if !queued {
        tracing::warn!("console: could not {what}: the database writer has stopped");
    }
}

/// Keep a message for the session's next page.
pub(crate) async fn set_flash(
    state: &AppState,
    token: &str,
    message: String,
) -> Result<(), HubError> {
    let key = digest(token);
    state
        .exec(move |s| s.set_session_flash(&key, Some(&message)))
        .await??;
    Ok(())
}

pub(crate) async fn close(state: &AppState, token: &str) -> Result<(), HubError> {
    let key = digest(token);
    state.exec(move |s| s.delete_session(&key)).await??;
    Ok(())
}

/// End every session of a user (changed role or password, deleted).
pub(crate) async fn forget_user(state: &AppState, name: &str) -> Result<(), HubError> {
    let n = name.to_string();
    state.exec(move |s| s.delete_user_sessions(&n)).await??;
    Ok(())
}

/// Whether a sign-in as `name` must wait (too many recent failures, counted by every replica).
pub(crate) async fn locked_out(state: &AppState, name: &str) -> Result<bool, HubError> {
    let n = name.to_string();
    let now = state.now();
    Ok(match state.read(move |s| s.sign_in_failures(&n)).await?? {
        Some((count, at)) => count >= FAILURES && now - at < LOCKOUT,
        None => false,
    })
}

pub(crate) async fn failed(state: &AppState, name: &str) -> Result<(), HubError> {
    let n = name.to_string();
    let now = state.now();
    state
        .exec(move |s| s.add_sign_in_failure(&n, now, now - LOCKOUT))
        .await??;
    Ok(())
}

pub(crate) async fn succeeded(state: &AppState, name: &str) -> Result<(), HubError> {
    let n = name.to_string();
    state.exec(move |s| s.clear_sign_in_failures(&n)).await??;
    Ok(())
}

/// Whether a presented CSRF token is the session's (constant time).
pub(crate) fn csrf_matches(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_match_only_themselves() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert!(csrf_matches(&a, &a));
        assert!(!csrf_matches(&a, &b));
        assert!(!csrf_matches(&a, ""));
        assert!(!csrf_matches(&a, &format!("{a}x")));
    }

    #[test]
    fn a_stamp_survives_the_store() {
        let stamp = password_stamp("$argon2id$v=19$m=19456,t=2,p=1$x$y");
        let who = Identity::User("alice".into(), stamp);
        assert_eq!(identity(owner(who.clone())), who);
        let key = Identity::Key(vec![1, 2, 3]);
        assert_eq!(identity(owner(key.clone())), key);
    }

    #[test]
    fn a_session_lives_while_used_and_at_most_twelve_hours() {
        let s = ConsoleSession {
            digest: vec![],
            owner: SessionOwner::Key { hash: vec![] },
            csrf: String::new(),
            created_at: 1000,
            last_at: 1000,
            flash: None,
        };
        assert!(alive(&s, 1000 + IDLE - 1));
        assert!(!alive(&s, 1000 + IDLE));
        let used = ConsoleSession {
            last_at: 1000 + LONGEST - 10,
            ..s
        };
        assert!(alive(&used, 1000 + LONGEST - 1));
        assert!(!alive(&used, 1000 + LONGEST));
    }
}
