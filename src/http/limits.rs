//! Request rate limits: per account (by role) for the API, per client address for
//! anonymous endpoints, and separately per client address for webhooks, so a busy
//! provider never eats into anyone's API allowance and a user can never slow ingest.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use crate::auth::permissions::Caller;
use crate::config::Config;
use crate::store::Role;

/// One keyed limiter of `per_minute` requests (bursting up to a minute's worth).
struct Limit<K: std::hash::Hash + Eq + Clone> {
    per_minute: u32,
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Limit<K> {
    /// `None` when `per_minute` is 0: that limit is off.
    fn new(per_minute: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_minute)?;
        Some(Self {
            per_minute,
            limiter: RateLimiter::keyed(Quota::per_minute(rate)),
        })
    }

    fn check(&self, key: &K) -> Result<(), ApiError> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| ApiError::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                limit: Some(self.per_minute),
            })
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

pub struct Limits {
    admins: Option<Limit<u64>>,
    users: Option<Limit<u64>>,
    guests: Option<Limit<u64>>,
    anonymous: Option<Limit<IpAddr>>,
    webhooks: Option<Limit<IpAddr>>,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        Self {
            admins: Limit::new(config.rate_limit_admin),
            users: Limit::new(config.rate_limit_user),
            guests: Limit::new(config.rate_limit_guest),
            anonymous: Limit::new(config.rate_limit_anonymous),
            webhooks: Limit::new(config.rate_limit_webhooks),
        }
    }

    /// An authenticated API request.
    pub fn check_caller(&self, caller: &Caller) -> Result<(), ApiError> {
        let limit = match caller.role {
            Role::Admin => &self.admins,
            Role::User => &self.users,
            Role::Guest => &self.guests,
        };
        limit
            .as_ref()
            .map_or(Ok(()), |limit| limit.check(&caller.user_id))
    }

    /// A request to an endpoint that needs no account (log in, refresh, guest).
    pub fn check_anonymous(&self, client: IpAddr) -> Result<(), ApiError> {
        let client = crate::auth::password_guard::limit_key(client);
        self.anonymous
            .as_ref()
            .map_or(Ok(()), |limit| limit.check(&client))
    }

    /// A provider webhook.
    pub fn check_webhook(&self, client: IpAddr) -> Result<(), ApiError> {
        let client = crate::auth::password_guard::limit_key(client);
        self.webhooks
            .as_ref()
            .map_or(Ok(()), |limit| limit.check(&client))
    }

    /// Drops the state of keys that have been quiet long enough to be back at full
    /// allowance, so memory follows active clients, not every client ever seen.
    pub fn forget_idle(&self) {
        if let Some(limit) = &self.admins {
            limit.forget_idle();
        }
        if let Some(limit) = &self.users {
            limit.forget_idle();
        }
        if let Some(limit) = &self.guests {
            limit.forget_idle();
        }
        if let Some(limit) = &self.anonymous {
            limit.forget_idle();
        }
        if let Some(limit) = &self.webhooks {
            limit.forget_idle();
        }
    }
}

/// How often idle limiter state is dropped.
pub const FORGET_EVERY: Duration = Duration::from_secs(60);
