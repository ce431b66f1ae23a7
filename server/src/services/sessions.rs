//! Portal sign-in and sessions. Checking a password is the one thing an anonymous visitor
//! can make the server do that costs real memory and CPU (argon2id: ~19 MiB and tens of
//! milliseconds per hash), so it is guarded three ways before any hash is computed: a
//! per-client rate limit, a per-email failure count that counts an attempt *before* it is
//! checked (so concurrent guesses cannot slip past the lock), and a small pool of hashing
//! slots (one per core) that a request waits for only briefly. The hashes run on that many
//! threads of their own, not on Tokio's blocking pool: each thread's allocator arena keeps
//! the ~19 MiB a hash used, so a fixed few threads keep memory fixed (the blocking pool's
//! dozens of threads held hundreds of MiB). Then: a session of 12 hours, its lookup, and
//! signing out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use chrono::TimeDelta;
use governor::Quota;
use tokio::sync::{Semaphore, oneshot};

use super::limits::KeyedLimit;
use super::{Error, Services};
use crate::store::SessionUser;

/// How long a session lasts.
pub const TTL: TimeDelta = TimeDelta::hours(12);
/// Failed sign-ins allowed per email and client address within [`WINDOW`]: a stranger who
/// guesses locks out only themselves, never the account's owner.
const MAX_FAILURES: usize = 5;
/// Failed sign-ins allowed per email within [`WINDOW`] from all addresses together: what
/// bounds guessing spread over many addresses.
const MAX_FAILURES_PER_EMAIL: usize = 50;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sign-in attempts one client address may make per minute by default (whatever the emails).
pub const PER_CLIENT_PER_MINUTE: u32 = 30;
/// How long a sign-in waits for a hashing slot before it is told to try again.
const HASHING_WAIT: Duration = Duration::from_secs(3);

/// The token a session's state-changing forms carry (CSRF): derived from the session's own
/// secret, so another site — which cannot read the session cookie — cannot know it, and
/// every replica computes the same one without storing it. Not the session token itself,
/// which must never appear in a page.
pub fn csrf_token(session_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"freshet csrf v1\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two tokens are the same, in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// How a sign-in went.
#[derive(Debug, PartialEq, Eq)]
pub enum SignIn {
    /// Signed in: the session cookie's token.
    Session(String),
    /// The email or the password is wrong.
    Refused,
    /// Too many attempts for this email, or from this client, lately: not even checked.
    Throttled,
    /// Every hashing slot stayed busy: not checked, try again in a moment.
    Busy,
}

/// Verifying a password costs the same whether or not the email exists: a missing user is
/// checked against this hash, so response times do not reveal which emails are registered.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0dPjr9E6OuEFDTdrb8rX5MKdbexUqlXqiILTmu4ZYXo";

thread_local! {
    /// The hashing thread's argon2 working memory (~19 MiB at the default cost), reused by
    /// every check the thread makes instead of allocated and freed each time.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `password` hashes to the PHC string `hash` (argon2, its own parameters and salt),
/// compared in constant time.
fn password_matches(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let mut salt_bytes = [0_u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks_needed = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0_u8; expected.len()];
    let hashed = BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < blocks_needed {
            blocks.resize(blocks_needed, Block::default());
        }
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut blocks[..blocks_needed],
        )
    });
    // `Output`'s equality is constant-time.
    hashed.is_ok() && Output::new(&out).is_ok_and(|out| out == expected)
}

/// A password check for the hashing threads: (hash, password, where the verdict goes).
type Check = (String, String, oneshot::Sender<bool>);

/// The guards in front of password checks, and the threads that check.
#[derive(Debug)]
pub(super) struct SignInGuard {
    /// Attempts per email (lower-cased), and per email and client, within the window,
    /// counted when they start.
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
    clients: KeyedLimit<IpAddr>,
    /// One permit per hashing thread: at most that many checks are queued or running.
    hashing: Semaphore,
    checks: std::sync::mpsc::SyncSender<Check>,
}

impl Default for SignInGuard {
    fn default() -> Self {
        Self::per_client(PER_CLIENT_PER_MINUTE)
    }
}

impl SignInGuard {
    /// Guards allowing `per_client_per_minute` attempts a minute per client address.
    pub(super) fn per_client(per_client_per_minute: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new(cores, per_client_per_minute)
    }

    fn new(hashing_threads: usize, per_client_per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_client_per_minute).unwrap_or(NonZeroU32::MIN);
        let threads = hashing_threads.max(1);
        let (checks, queue) = std::sync::mpsc::sync_channel::<Check>(threads);
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = std::sync::Arc::clone(&queue);
            // The threads end when the guard (the sender) is dropped.
            let _ = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    loop {
                        let next = queue.lock().ok().and_then(|q| q.recv().ok());
                        let Some((hash, password, verdict)) = next else {
                            return;
                        };
                        let _ = verdict.send(password_matches(&hash, &password));
                    }
                });
        }
        Self {
            attempts: Mutex::default(),
            clients: KeyedLimit::new(Quota::per_minute(per_minute)),
            hashing: Semaphore::new(threads),
            checks,
        }
    }

    /// Whether `password` matches `hash`, checked on a hashing thread; `None` when no
    /// thread was free within [`HASHING_WAIT`].
    async fn check(&self, hash: String, password: &str) -> Option<bool> {
        let _slot = tokio::time::timeout(HASHING_WAIT, self.hashing.acquire())
            .await
            .ok()?
            .ok()?;
        let (verdict, answer) = oneshot::channel();
        // A permit is held, so the channel has room: this does not block.
        self.checks
            .try_send((hash, password.to_owned(), verdict))
            .ok()?;
        answer.await.ok()
    }

    /// The counts an attempt for `email` from `client` goes into, and the limit of each.
    fn counts(email: &str, client: Option<IpAddr>) -> [(String, usize); 2] {
        let from = client_key(client);
        [
            (format!("{email}\n{from}"), MAX_FAILURES),
            (email.to_owned(), MAX_FAILURES_PER_EMAIL),
        ]
    }

    /// Counts an attempt for `email` from `client` now, atomically with the check against
    /// the limits; `false` when one was reached (and nothing was counted).
    fn begin(&self, email: &str, client: Option<IpAddr>, now: Instant) -> bool {
        let Ok(mut map) = self.attempts.lock() else {
            return false;
        };
        // Bounded memory under a spray of emails: forget everything rather than grow.
        if map.len() > 100_000 {
            map.clear();
        }
        let counts = Self::counts(email, client);
        for (key, limit) in &counts {
            let list = map.entry(key.clone()).or_default();
            list.retain(|at| now.duration_since(*at) < WINDOW);
            if list.len() >= *limit {
                return false;
            }
        }
        for (key, _) in counts {
            map.entry(key).or_default().push(now);
        }
        true
    }

    /// The attempt begun at `at` did not count (it was never checked).
    fn forget(&self, email: &str, client: Option<IpAddr>, at: Instant) {
        if let Ok(mut map) = self.attempts.lock() {
            for (key, _) in Self::counts(email, client) {
                if let Some(list) = map.get_mut(&key)
                    && let Some(i) = list.iter().rposition(|t| *t == at)
                {
                    list.remove(i);
                }
            }
        }
    }

    /// A right password clears the counts it went into.
    fn succeeded(&self, email: &str, client: Option<IpAddr>) {
        if let Ok(mut map) = self.attempts.lock() {
            for (key, _) in Self::counts(email, client) {
                map.remove(&key);
            }
        }
    }

    fn client_allowed(&self, client: Option<IpAddr>) -> bool {
        self.clients.check(&client_key(client)).is_ok()
    }
}

/// The key one client's attempts are counted under. An IPv6 client holds a whole /64 (one
/// host can pick any address in it), so the /64 is the client; an IPv4 address seen as
/// IPv6 (`::ffff:a.b.c.d`) is that IPv4 address; and visitors whose address is unknown (a
/// trusted proxy header missing or unreadable) share one key rather than go unlimited.
fn client_key(client: Option<IpAddr>) -> IpAddr {
    match client {
        None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1_u128 << 64) - 1),
            )),
        },
    }
}

impl Services {
    /// Checks an email and password for a visitor at `client` (when known); opens a session
    /// when they match.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<SignIn, Error> {
        let guard = &self.sign_ins;
        if !guard.client_allowed(client) {
            return Ok(SignIn::Throttled);
        }
        let key = email.trim().to_lowercase();
        let started = Instant::now();
        if !guard.begin(&key, client, started) {
            return Ok(SignIn::Throttled);
        }
        let found = self.store.portal_users().credentials(email).await?;
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, DUMMY_HASH.to_owned()),
        };
        let Some(matches) = guard.check(hash, password).await else {
            guard.forget(&key, client, started);
            return Ok(SignIn::Busy);
        };
        let Some(user) = user.filter(|_| matches) else {
            return Ok(SignIn::Refused);
        };
        guard.succeeded(&key, client);
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

    /// Ends a session, and the streams opened with it.
    pub async fn sign_out(&self, token: &str) -> Result<(), Error> {
        self.store
            .portal_users()
            .end_session(token, self.clock.now())
            .await?;
        self.revoked_something();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_counts_before_it_is_checked_so_five_at_once_lock_the_sixth() {
        let guard = SignInGuard::new(2, 1000);
        let start = Instant::now();
        let me = Some(IpAddr::from([192, 0, 2, 7]));
        for _ in 0..MAX_FAILURES {
            assert!(guard.begin("a@b.c", me, start));
        }
        assert!(
            !guard.begin("a@b.c", me, start),
            "the sixth is refused unchecked"
        );
        assert!(guard.begin("other@b.c", me, start), "per email");
        assert!(
            guard.begin("a@b.c", me, start + WINDOW),
            "the window passed"
        );
        guard.succeeded("a@b.c", me);
        for _ in 0..MAX_FAILURES {
            assert!(
                guard.begin("a@b.c", me, start),
                "a success clears the count"
            );
        }
    }

    #[test]
    fn a_stranger_guessing_locks_out_only_themselves_and_many_strangers_are_bounded() {
        let guard = SignInGuard::new(2, 1000);
        let start = Instant::now();
        let stranger = Some(IpAddr::from([198, 51, 100, 1]));
        let owner = Some(IpAddr::from([192, 0, 2, 7]));
        for _ in 0..MAX_FAILURES {
            assert!(guard.begin("a@b.c", stranger, start));
        }
        assert!(!guard.begin("a@b.c", stranger, start));
        assert!(
            guard.begin("a@b.c", owner, start),
            "the owner is not locked out"
        );
        // Guesses spread over many addresses: bounded per email in all.
        let allowed = (0..=255_u8)
            .flat_map(|a| (0..4_u8).map(move |b| IpAddr::from([203, 0, a, b])))
            .filter(|ip| guard.begin("a@b.c", Some(*ip), start))
            .count();
        assert_eq!(allowed, MAX_FAILURES_PER_EMAIL - MAX_FAILURES - 1);
    }

    #[test]
    fn passwords_are_checked_against_their_own_hash_parameters() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"a salt of sixteen").unwrap_or_else(|e| panic!("{e}"));
        let hash = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        assert!(password_matches(&hash, "correct horse battery"));
        assert!(
            password_matches(&hash, "correct horse battery"),
            "with reused memory"
        );
        assert!(!password_matches(&hash, "correct horse batterz"));
        assert!(!password_matches(DUMMY_HASH, "correct horse battery"));
        assert!(!password_matches("not a hash", "anything"));
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap_or_else(|e| panic!("{e}")),
        )
        .hash_password(b"pw pw pw pw", &salt)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
        assert!(password_matches(&cheap, "pw pw pw pw"), "other costs too");
    }

    #[test]
    fn an_attempt_that_was_never_checked_is_given_back() {
        let guard = SignInGuard::new(1, 1000);
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(guard.begin("a@b.c", None, start));
        }
        guard.forget("a@b.c", None, start);
        assert!(guard.begin("a@b.c", None, start));
        assert!(!guard.begin("a@b.c", None, start));
    }

    #[test]
    fn one_client_may_try_so_many_times_a_minute_whatever_the_emails() {
        let guard = SignInGuard::new(1, 3);
        let ip: IpAddr = [192, 0, 2, 7].into();
        let other: IpAddr = [192, 0, 2, 8].into();
        assert!((0..3).all(|_| guard.client_allowed(Some(ip))));
        assert!(!guard.client_allowed(Some(ip)));
        assert!(guard.client_allowed(Some(other)), "per client");
        assert!(
            (0..3).all(|_| guard.client_allowed(None)) && !guard.client_allowed(None),
            "visitors of unknown address share one limit rather than go unlimited"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_whole_64_and_a_mapped_ipv4_is_that_ipv4() {
        let guard = SignInGuard::new(1, 2);
        let host = |s: &str| Some(s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}")));
        assert!(guard.client_allowed(host("2001:db8:1:2::1")));
        assert!(guard.client_allowed(host("2001:db8:1:2:ffff::9")));
        assert!(
            !guard.client_allowed(host("2001:db8:1:2:abcd::7")),
            "a new address in the same /64 is the same client"
        );
        assert!(guard.client_allowed(host("2001:db8:1:3::1")), "another /64");
        assert!(guard.client_allowed(host("192.0.2.7")));
        assert!(guard.client_allowed(host("::ffff:192.0.2.7")));
        assert!(!guard.client_allowed(host("192.0.2.7")));
    }
}
