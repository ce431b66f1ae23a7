//! Portal sign-in and sessions: a password check slowed by a per-email failure count, a
//! session of 12 hours, its lookup, and signing out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::TimeDelta;

use super::{Error, Services};
use crate::store::SessionUser;

/// How long a session lasts.
pub const TTL: TimeDelta = TimeDelta::hours(12);
/// Failed sign-ins allowed per email within [`WINDOW`].
const MAX_FAILURES: usize = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// How a sign-in went.
#[derive(Debug, PartialEq, Eq)]
pub enum SignIn {
    /// Signed in: the session cookie's token.
    Session(String),
    /// The email or the password is wrong.
    Refused,
    /// Too many failures for this email lately: not even checked.
    Throttled,
}

/// Counts failed sign-ins per email, to slow down password guessing.
#[derive(Debug, Default)]
pub(super) struct SignInLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl SignInLimiter {
    fn recent(&self, email: &str, now: Instant) -> usize {
        self.failures.lock().map_or(0, |mut map| {
            let list = map.entry(email.to_owned()).or_default();
            list.retain(|at| now.duration_since(*at) < WINDOW);
            list.len()
        })
    }

    fn failed(&self, email: &str, now: Instant) {
        if let Ok(mut map) = self.failures.lock() {
            // Bounded memory under a spray of emails: forget everything rather than grow.
            if map.len() > 100_000 {
                map.clear();
            }
            map.entry(email.to_owned()).or_default().push(now);
        }
    }

    fn succeeded(&self, email: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(email);
        }
    }
}

impl Services {
    /// Checks an email and password; opens a session when they match.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<SignIn, Error> {
        let key = email.trim().to_lowercase();
        if self.sign_ins.recent(&key, Instant::now()) >= MAX_FAILURES {
            return Ok(SignIn::Throttled);
        }
        let Some(user) = self
            .store
            .portal_users()
            .authenticate(email, password)
            .await?
        else {
            self.sign_ins.failed(&key, Instant::now());
            return Ok(SignIn::Refused);
        };
        self.sign_ins.succeeded(&key);
        let token = self
            .store
            .portal_users()
            .open_session(user, TTL, self.clock.now())
            .await?;
        Ok(SignIn::Session(token))
    }

    /// Who holds this session token, if it is valid now.
    pub async fn session(&self, token: &str) -> Result<Option<SessionUser>, Error> {
        Ok(self
            .store
            .portal_users()
            .session(token, self.clock.now())
            .await?)
    }

    /// Ends a session.
    pub async fn sign_out(&self, token: &str) -> Result<(), Error> {
        Ok(self
            .store
            .portal_users()
            .end_session(token, self.clock.now())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_within_the_window_lock_the_email_until_it_passes() {
        let limiter = SignInLimiter::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.recent("a@b.c", start) < MAX_FAILURES);
            limiter.failed("a@b.c", start);
        }
        assert_eq!(limiter.recent("a@b.c", start), MAX_FAILURES);
        assert_eq!(limiter.recent("other@b.c", start), 0, "per email");
        assert_eq!(
            limiter.recent("a@b.c", start + WINDOW),
            0,
            "the window passed"
        );
        limiter.failed("x@y.z", start);
        limiter.succeeded("x@y.z");
        assert_eq!(
            limiter.recent("x@y.z", start),
            0,
            "a success clears the count"
        );
    }
}
