//! Signed-in sessions and the cookies and CSRF tokens around them.
//!
//! The admin token is typed once into the sign-in form (a POST body, never a URL) and kept on the
//! server, in a session found by a random 256-bit id. The browser holds only that id, in an
//! HttpOnly, SameSite=Strict cookie (Secure when served over TLS), so no script and no other site
//! can read or send it. Every form carries the session's CSRF token, compared in constant time;
//! the sign-in form, before any session exists, carries a one-time token that must match a
//! short-lived cookie of its own (a double submit).
//!
//! A session ends on sign-out, after [`IDLE_LIMIT`] without a request, or after [`LIFETIME`];
//! once the control plane stops accepting its token (the principal deleted), every page of it
//! sends the browser back to the sign-in form.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use droidfleet_control_plane::clock::{Clock, HOUR, MINUTE, Millis};
use droidfleet_control_plane::secret::BearerToken;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "df_session";
/// The sign-in form's double-submit cookie.
pub(crate) const SIGN_IN_COOKIE: &str = "df_sign_in";
/// A session unused this long ends.
pub(crate) const IDLE_LIMIT: Millis = 30 * MINUTE;
/// A session ends this long after sign-in, used or not.
pub(crate) const LIFETIME: Millis = 12 * HOUR;
/// Sessions held at once; the oldest goes when a sign-in would pass this.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in admin.
pub(crate) struct Session {
    /// The admin token every call of this session carries to the admin API.
    pub(crate) bearer: BearerToken,
    /// Every form of this session carries it back.
    pub(crate) csrf: String,
    /// Who signed in, for the top bar.
    pub(crate) principal: String,
}

struct Entry {
    session: Arc<Session>,
    signed_in_at: Millis,
    last_used: Millis,
}

/// The sessions of one console, keyed by the SHA-256 of their ids (the ids themselves exist only
/// in the browsers' cookies).
pub(crate) struct Sessions {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    clock: Arc<dyn Clock>,
    random: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub(crate) struct RandomFailed;

fn key(id: &str) -> [u8; 32] {
    let mut key = [0; 32];
    key.copy_from_slice(digest(&SHA256, id.as_bytes()).as_ref());
    key
}

impl Sessions {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Sessions {
        Sessions {
            entries: Mutex::new(HashMap::new()),
            clock,
            random: SystemRandom::new(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// 256 random bits, URL-safe base64.
    pub(crate) fn random_token(&self) -> Result<String, RandomFailed> {
        let mut bytes = [0u8; 32];
        self.random.fill(&mut bytes).map_err(|_| RandomFailed)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Starts a session for `principal`, whose token the admin API just accepted; returns the id
    /// for the cookie.
    pub(crate) fn create(
        &self,
        bearer: BearerToken,
        principal: String,
    ) -> Result<String, RandomFailed> {
        let id = self.random_token()?;
        let session = Session {
            bearer,
            csrf: self.random_token()?,
            principal,
        };
        let now = self.clock.now();
        let mut entries = self.entries();
        entries.retain(|_, entry| is_live(entry, now));
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| *key)
        {
            entries.remove(&oldest);
        }
        entries.insert(
            key(&id),
            Entry {
                session: Arc::new(session),
                signed_in_at: now,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The live session with this id, marked as used now.
    pub(crate) fn find(&self, id: &str) -> Option<Arc<Session>> {
        let now = self.clock.now();
        let key = key(id);
        let mut entries = self.entries();
        let entry = entries.get_mut(&key)?;
        if !is_live(entry, now) {
            entries.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(entry.session.clone())
    }

    pub(crate) fn remove(&self, id: &str) {
        self.entries().remove(&key(id));
    }
}

fn is_live(entry: &Entry, now: Millis) -> bool {
    now < entry.last_used.saturating_add(IDLE_LIMIT)
        && now < entry.signed_in_at.saturating_add(LIFETIME)
}

/// Whether a form's CSRF token is the expected one, compared in constant time.
pub(crate) fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie_name, _)| *cookie_name == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, Secure over TLS; `max_age` in
/// seconds (0 deletes the cookie), a browser-session cookie without it.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut text = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    // Names, paths and our base64 values are all visible ASCII.
    HeaderValue::from_str(&text).expect("a cookie of visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use droidfleet_control_plane::clock::ManualClock;

    fn sessions() -> (Sessions, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        (Sessions::new(Arc::new(clock.clone())), clock)
    }

    #[test]
    fn a_session_is_found_by_its_id_until_it_idles_out() {
        let (sessions, clock) = sessions();
        let id = sessions
            .create(BearerToken::new("dfa_x".into()), "helpdesk".into())
            .unwrap();
        assert_eq!(sessions.find(&id).unwrap().principal, "helpdesk");
        assert!(sessions.find("another id").is_none());
        clock.advance(IDLE_LIMIT - 1);
        assert!(sessions.find(&id).is_some(), "used again just in time");
        clock.advance(IDLE_LIMIT);
        assert!(sessions.find(&id).is_none(), "idle too long");
    }

    #[test]
    fn a_session_ends_at_its_lifetime_even_when_used() {
        let (sessions, clock) = sessions();
        let id = sessions
            .create(BearerToken::new("dfa_x".into()), "helpdesk".into())
            .unwrap();
        let mut elapsed = 0;
        while elapsed + IDLE_LIMIT / 2 < LIFETIME {
            clock.advance(IDLE_LIMIT / 2);
            elapsed += IDLE_LIMIT / 2;
            assert!(sessions.find(&id).is_some());
        }
        clock.advance(LIFETIME - elapsed);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn signing_out_ends_the_session() {
        let (sessions, _) = sessions();
        let id = sessions
            .create(BearerToken::new("dfa_x".into()), "helpdesk".into())
            .unwrap();
        sessions.remove(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (sessions, _) = sessions();
        let a = sessions.random_token().unwrap();
        let b = sessions.random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(tokens_match(&a, &a.clone()));
        assert!(!tokens_match(&a, &b));
        assert!(!tokens_match(&a, &a[..42]));
        assert!(
            !tokens_match("", ""),
            "an empty expected token matches nothing"
        );
    }

    #[test]
    fn cookies_are_read_by_name_and_set_with_their_protections() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; df_session=abc; x=y"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, SIGN_IN_COOKIE), None);
        let plain = set_cookie(SESSION_COOKIE, "abc", "/", false, None);
        assert_eq!(plain, "df_session=abc; Path=/; HttpOnly; SameSite=Strict");
        let secure = set_cookie(SESSION_COOKIE, "", "/", true, Some(0));
        assert_eq!(
            secure,
            "df_session=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
    }
}
