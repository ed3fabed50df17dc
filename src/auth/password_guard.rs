//! Username/password checks (login, HTTP Basic), guarded against guessing.
//!
//! argon2 is slow on purpose, which makes every check an attacker can trigger a lever on
//! our CPU. So password verifications are rate-limited per client address *before* they
//! run, and a successful check is remembered briefly (as a keyed hash) so that a script
//! calling the API every second neither pays argon2 each time nor hits the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::store::{PasswordCheck, Role, Store, StoreError};

/// Password verifications per client address: a burst of 10, then one every 6 s
/// (10 a minute). Enough for a person mistyping; hopeless for guessing.
const BURST: u32 = 10;
const REFILL_EVERY: Duration = Duration::from_secs(6);

/// Failed checks per account, from any address: a burst of 20, then one a minute. This
/// is what stops guessing spread over many addresses. It throttles, never locks for
/// good, so a stranger can only slow an account's owner down, not shut them out.
const ACCOUNT_BURST: u32 = 20;
const ACCOUNT_REFILL_EVERY: Duration = Duration::from_secs(60);

/// How long a verified username/password pair is trusted without argon2.
const REMEMBER_FOR: Duration = Duration::from_secs(60);
/// Remembered pairs at most; past this, expired ones are dropped, then all.
const REMEMBER_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("the username or password is wrong")]
    Invalid,
    /// The password is right but the account may not log in. Answered like `Invalid`
    /// unless the owner can do something about it (confirm their e-mail address).
    #[error("the account is disabled")]
    Disabled(u64, Box<crate::store::records::UserV3>),
    #[error("too many password attempts from this address")]
    Limited { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a block applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Blocked {
    Client(IpAddr),
    Account(String),
}

/// A verified account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub user_id: u64,
    pub role: Role,
}

pub struct PasswordGuard {
    store: Store,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed hash of "username\0password" → (account, its password hash then, trusted
    /// until). The stored hash is compared on recall, so a changed password ends the
    /// old one's memory at once.
    remembered: Mutex<HashMap<[u8; 32], (Verified, String, Instant)>>,
    /// Failed checks per (lower-cased) username, whether or not the account exists, so
    /// the limit does not tell which do.
    account_failures: DefaultKeyedRateLimiter<String>,
    /// Addresses and accounts over their limit → until when. While blocked, even a
    /// remembered pair is refused: otherwise a blocked client could keep guessing
    /// against the memory, at no cost, and learn the password the moment it guessed right.
    blocked: Mutex<HashMap<Blocked, Instant>>,
    /// Client addresses (/64 for IPv6) each account has logged in from. While an
    /// account is throttled, these still get through: someone guessing from elsewhere
    /// must not be able to lock the owner out of their own account.
    known_clients: Mutex<HashMap<String, Vec<IpAddr>>>,
    /// Random per process: the remembered hashes are useless outside this process.
    cache_key: [u8; 32],
}

impl PasswordGuard {
    pub fn new(store: Store) -> Result<Self, StoreError> {
        let mut cache_key = [0u8; 32];
        getrandom::fill(&mut cache_key).map_err(|_| StoreError::Crypto("no randomness".into()))?;
        let quota = Quota::with_period(REFILL_EVERY)
            .unwrap_or_else(|| unreachable!("the period is not zero"))
            .allow_burst(NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN));
        let account_quota = Quota::with_period(ACCOUNT_REFILL_EVERY)
            .unwrap_or_else(|| unreachable!("the period is not zero"))
            .allow_burst(NonZeroU32::new(ACCOUNT_BURST).unwrap_or(NonZeroU32::MIN));
        Ok(Self {
            store,
            limiter: RateLimiter::keyed(quota),
            account_failures: RateLimiter::keyed(account_quota),
            remembered: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
            known_clients: Mutex::new(HashMap::new()),
            cache_key,
        })
    }

    /// Checks `username`/`password` sent from `client`.
    pub async fn verify(
        &self,
        client: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<Verified, GuardError> {
        let address = limit_key(client);
        let name = username.to_ascii_lowercase();
        let client = Blocked::Client(address);
        let account = Blocked::Account(name.clone());
        let account_block = self
            .blocked_for(&account)
            .filter(|_| !self.is_known(&name, address));
        if let Some(retry_after) = self.blocked_for(&client).or(account_block) {
            return Err(GuardError::Limited { retry_after });
        }
        let fingerprint = self.fingerprint(username, password);
        if let Some((remembered, password_hash)) = self.recall(&fingerprint) {
            // The memory skips argon2, not the account: one cheap read finds an account
            // that was deleted, disabled, given another role or a new password since.
            match self.store.user(remembered.user_id)? {
                Some(user) if !user.disabled && user.password_hash == password_hash => {
                    self.know(&name, address);
                    return Ok(Verified {
                        user_id: remembered.user_id,
                        role: user.role,
                    });
                }
                _ => self.forget(&fingerprint),
            }
        }
        if let Err(not_until) = self.limiter.check_key(&address) {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            tracing::warn!(client = %address, "password attempts rate-limited");
            self.block(client, retry_after);
            return Err(GuardError::Limited { retry_after });
        }
        let store = self.store.clone();
        let (username, password) = (username.to_owned(), password.to_owned());
        // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
        let user = tokio::task::spawn_blocking(move || store.check_password(&username, &password))
            .await
            .map_err(|e| StoreError::Storage(e.to_string()))??;
        let (user_id, user) = match user {
            PasswordCheck::Valid(id, user) => (id, user),
            PasswordCheck::Disabled(id, user) => {
                return Err(GuardError::Disabled(id, Box::new(user)));
            }
            PasswordCheck::Wrong => {
                if let Err(not_until) = self.account_failures.check_key(&name) {
                    let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                    tracing::warn!("password failures for one account rate-limited");
                    self.block(account, retry_after);
                }
                return Err(GuardError::Invalid);
            }
        };
        let verified = Verified {
            user_id,
            role: user.role,
        };
        self.remember(fingerprint, verified, user.password_hash);
        self.know(&name, address);
        Ok(verified)
    }

    /// Drops state of addresses that have been quiet (see `http::limits`).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.account_failures.retain_recent();
        self.account_failures.shrink_to_fit();
        let now = Instant::now();
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.retain(|_, until| *until > now);
        }
        if let Ok(mut remembered) = self.remembered.lock() {
            remembered.retain(|_, (_, _, until)| *until > now);
        }
    }

    fn is_known(&self, account: &str, client: IpAddr) -> bool {
        self.known_clients
            .lock()
            .is_ok_and(|known| known.get(account).is_some_and(|c| c.contains(&client)))
    }

    /// Notes a successful login; the newest few addresses per account are kept.
    fn know(&self, account: &str, client: IpAddr) {
        const PER_ACCOUNT: usize = 8;
        let Ok(mut known) = self.known_clients.lock() else {
            return;
        };
        if known.len() >= REMEMBER_MAX && !known.contains_key(account) {
            known.clear();
        }
        let clients = known.entry(account.to_owned()).or_default();
        if !clients.contains(&client) {
            if clients.len() == PER_ACCOUNT {
                clients.remove(0);
            }
            clients.push(client);
        }
    }

    fn blocked_for(&self, key: &Blocked) -> Option<Duration> {
        let blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(key)?;
        until.checked_duration_since(Instant::now())
    }

    fn block(&self, key: Blocked, duration: Duration) {
        let Ok(mut blocked) = self.blocked.lock() else {
            return;
        };
        let now = Instant::now();
        if blocked.len() >= REMEMBER_MAX {
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(key, now + duration);
    }

    fn fingerprint(&self, username: &str, password: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.cache_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(username.to_ascii_lowercase().as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn recall(&self, fingerprint: &[u8; 32]) -> Option<(Verified, String)> {
        let remembered = self.remembered.lock().ok()?;
        remembered
            .get(fingerprint)
            .filter(|(_, _, until)| *until > Instant::now())
            .map(|(verified, hash, _)| (*verified, hash.clone()))
    }

    fn forget(&self, fingerprint: &[u8; 32]) {
        if let Ok(mut remembered) = self.remembered.lock() {
            remembered.remove(fingerprint);
        }
    }

    fn remember(&self, fingerprint: [u8; 32], verified: Verified, password_hash: String) {
        let Ok(mut remembered) = self.remembered.lock() else {
            return;
        };
        let now = Instant::now();
        if remembered.len() >= REMEMBER_MAX {
            remembered.retain(|_, (_, _, until)| *until > now);
            if remembered.len() >= REMEMBER_MAX {
                remembered.clear();
            }
        }
        remembered.insert(fingerprint, (verified, password_hash, now + REMEMBER_FOR));
    }
}

/// The address a limit applies to: IPv4 addresses one by one, IPv6 by /64, since one
/// subscriber usually holds a whole /64 and could otherwise rotate through it.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store;

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(limit_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn guesses_spread_over_many_addresses_are_limited_per_account() {
        let (store, _dir) = store();
        store.ensure_admin(Some("right")).await.unwrap();
        let auth = PasswordGuard::new(store).unwrap();
        // Each guess from a new address, so only the account limit can stop them.
        let address = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0xC633_6400 + i));
        let owner: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(auth.verify(owner, "admin", "right").await.is_ok());
        for i in 0..ACCOUNT_BURST {
            assert!(matches!(
                auth.verify(address(i), "Admin", "guess").await,
                Err(GuardError::Invalid)
            ));
        }
        // The next failure spends the last of the account's allowance...
        assert!(matches!(
            auth.verify(address(100), "admin", "guess").await,
            Err(GuardError::Invalid)
        ));
        // ...and then even the right password waits, from any address.
        let limited = auth.verify(address(101), "admin", "right").await;
        let Err(GuardError::Limited { retry_after }) = limited else {
            panic!("the account is throttled: {limited:?}");
        };
        assert!(retry_after <= ACCOUNT_REFILL_EVERY);
        // The owner, from where they logged in before, still gets in.
        auth.forget(&auth.fingerprint("admin", "right"));
        assert!(auth.verify(owner, "admin", "right").await.is_ok());
        // Unknown names are throttled alike, so the limit does not reveal which exist.
        for i in 0..=ACCOUNT_BURST {
            let _ = auth.verify(address(200 + i), "nobody", "guess").await;
        }
        assert!(matches!(
            auth.verify(address(300), "nobody", "guess").await,
            Err(GuardError::Limited { .. })
        ));
    }

    #[tokio::test]
    async fn guesses_are_limited_per_address_and_successes_are_remembered() {
        let (store, _dir) = store();
        store.ensure_admin(Some("right")).await.unwrap();
        let auth = PasswordGuard::new(store).unwrap();
        let attacker: IpAddr = "198.51.100.1".parse().unwrap();
        let admin: IpAddr = "198.51.100.2".parse().unwrap();

        // The admin's first check runs argon2; later ones are remembered and never
        // count against the limit.
        for _ in 0..(BURST * 2) {
            assert!(auth.verify(admin, "admin", "right").await.is_ok());
        }
        for _ in 0..BURST {
            assert!(matches!(
                auth.verify(attacker, "admin", "guess").await,
                Err(GuardError::Invalid)
            ));
        }
        let limited = auth.verify(attacker, "admin", "another guess").await;
        let Err(GuardError::Limited { retry_after }) = limited else {
            panic!("the 11th guess is limited: {limited:?}");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= REFILL_EVERY);
        // While limited, even the right (and remembered) password is refused: the memory
        // must not become a free guessing oracle.
        assert!(matches!(
            auth.verify(attacker, "admin", "right").await,
            Err(GuardError::Limited { .. })
        ));
        // Another address is unaffected.
        assert!(auth.verify(admin, "admin", "right").await.is_ok());
    }

    #[tokio::test]
    async fn the_memory_of_a_success_does_not_outlive_the_account() {
        let (store, _dir) = store();
        let id = store
            .create_user("dave", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        let auth = PasswordGuard::new(store.clone()).unwrap();
        let client: IpAddr = "198.51.100.3".parse().unwrap();
        assert_eq!(
            auth.verify(client, "dave", "password1").await.unwrap().role,
            Role::User
        );
        store
            .update_user(id, Some(Role::Admin), None)
            .await
            .unwrap();
        assert_eq!(
            auth.verify(client, "dave", "password1").await.unwrap().role,
            Role::Admin
        );
        // A new password ends the memory of the old one at once.
        store
            .set_password(id, "password2", None, None)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            auth.verify(client, "dave", "password1").await,
            Err(GuardError::Invalid)
        ));
        assert!(auth.verify(client, "dave", "password2").await.is_ok());
        store.update_user(id, None, Some(true)).await.unwrap();
        assert!(matches!(
            auth.verify(client, "dave", "password2").await,
            Err(GuardError::Disabled(found, _)) if found == id
        ));
    }
}
