//! Console sessions, kept in memory: a random token in an `HttpOnly` cookie, of which only the
//! SHA-256 is kept here, and a CSRF token per session that every form must carry back. A session
//! ends after 30 idle minutes, 12 hours at most, at sign-out, and when its user is changed or
//! deleted. Sessions are per process (a restart signs everybody out; replicas do not share them).
//!
//! A leaf module: it knows nothing of the hub's state, so `state.rs` can hold it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const IDLE: Duration = Duration::from_secs(30 * 60);
const LONGEST: Duration = Duration::from_secs(12 * 3600);
/// More sessions than this and the least recently used goes (a flood of sign-ins cannot grow
/// memory without bound).
const MOST: usize = 10_000;
/// Failed sign-ins per name before that name must wait.
const FAILURES: u32 = 5;
const LOCKOUT: Duration = Duration::from_secs(60);

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

#[derive(Debug)]
struct Session {
    who: Identity,
    csrf: String,
    created: Instant,
    last: Instant,
    /// A message for the next page (what the last form did).
    flash: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// What a session remembers of a user's password: 8 bytes of the SHA-256 of its stored hash.
pub(crate) fn password_stamp(password_hash: &str) -> u64 {
    let d = Sha256::digest(password_hash.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("no OS randomness for a session: {e}");
    }
    hex::encode(bytes)
}

impl Sessions {
    /// A new session: its token (for the cookie) and its CSRF token.
    pub(crate) fn open(&self, who: Identity) -> (String, String) {
        let token = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut live = lock(&self.live);
        live.retain(|_, s| alive(s, now));
        if live.len() >= MOST {
            if let Some(oldest) = live.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k) {
                live.remove(&oldest);
            }
        }
        live.insert(
            digest(&token),
            Session {
                who,
                csrf: csrf.clone(),
                created: now,
                last: now,
                flash: None,
            },
        );
        (token, csrf)
    }

    /// The session of a cookie's token, if it is alive: who, and the CSRF token.
    pub(crate) fn get(&self, token: &str) -> Option<(Identity, String)> {
        let now = Instant::now();
        let mut live = lock(&self.live);
        let key = digest(token);
        let s = live.get_mut(&key)?;
        if !alive(s, now) {
            live.remove(&key);
            return None;
        }
        s.last = now;
        Some((s.who.clone(), s.csrf.clone()))
    }

    /// Keep a message for the session's next page.
    pub(crate) fn set_flash(&self, token: &str, message: String) {
        if let Some(s) = lock(&self.live).get_mut(&digest(token)) {
            s.flash = Some(message);
        }
    }

    /// The message kept for this page, once.
    pub(crate) fn take_flash(&self, token: &str) -> Option<String> {
        lock(&self.live).get_mut(&digest(token))?.flash.take()
    }

    pub(crate) fn close(&self, token: &str) {
        lock(&self.live).remove(&digest(token));
    }

    /// End every session of a user (changed role or password, deleted).
    pub(crate) fn forget_user(&self, name: &str) {
        lock(&self.live).retain(|_, s| !matches!(&s.who, Identity::User(n, _) if n == name));
    }

    /// Whether a sign-in as `name` must wait (too many recent failures).
    pub(crate) fn locked_out(&self, name: &str) -> bool {
        let mut f = lock(&self.failures);
        match f.get(name) {
            Some((n, at)) if *n >= FAILURES && at.elapsed() < LOCKOUT => true,
            Some((_, at)) if at.elapsed() >= LOCKOUT => {
                f.remove(name);
                false
            }
            _ => false,
        }
    }

    pub(crate) fn failed(&self, name: &str) {
        let mut f = lock(&self.failures);
        if f.len() > MOST {
            f.retain(|_, (_, at)| at.elapsed() < LOCKOUT);
        }
        let e = f.entry(name.to_string()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }

    pub(crate) fn succeeded(&self, name: &str) {
        lock(&self.failures).remove(name);
    }
}

/// Whether a presented CSRF token is the session's (constant time).
pub(crate) fn csrf_matches(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last) < IDLE && now.duration_since(s.created) < LONGEST
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_token_only_and_ends() {
        let s = Sessions::default();
        let (token, csrf) = s.open(Identity::User("alice".into(), 1));
        let (who, c) = s.get(&token).unwrap();
        assert_eq!(
            (who, c.as_str()),
            (Identity::User("alice".into(), 1), csrf.as_str())
        );
        assert!(s.get(&format!("{token}x")).is_none());
        assert!(csrf_matches(&csrf, &csrf));
        assert!(!csrf_matches(&csrf, &token));
        assert!(!csrf_matches(&csrf, ""));
        let (other, _) = s.open(Identity::User("bob".into(), 2));
        s.forget_user("alice");
        assert!(s.get(&token).is_none());
        assert!(s.get(&other).is_some());
        s.close(&other);
        assert!(s.get(&other).is_none());
    }

    #[test]
    fn names_that_fail_too_often_wait() {
        let s = Sessions::default();
        for _ in 0..FAILURES {
            assert!(!s.locked_out("mallory"));
            s.failed("mallory");
        }
        assert!(s.locked_out("mallory"));
        assert!(!s.locked_out("alice"));
        s.succeeded("mallory");
        assert!(!s.locked_out("mallory"));
    }
}
