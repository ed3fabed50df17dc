//! The subscriptions of one connection (WebSocket or Socket.IO): several numbers, added
//! and removed over time, each `subscribe` with its own resume point.

use std::collections::HashMap;

use super::resume::{Next, Subscription};
use crate::store::{Inbox, StoreError};

/// Why a subscription was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooMany {
    /// The connection would follow more than `max` numbers.
    Subscriptions { max: usize },
}

pub struct Session {
    subscriptions: Vec<Subscription>,
    /// The inbox each followed number delivers from.
    numbers: HashMap<u64, Inbox>,
    max: usize,
}

impl Session {
    /// A connection that may follow at most `max` numbers.
    pub fn new(max: usize) -> Self {
        Self {
            subscriptions: Vec::new(),
            numbers: HashMap::new(),
            max,
        }
    }

    /// Numbers this connection would follow with `numbers` added.
    pub fn check(&self, numbers: &[u64]) -> Result<(), TooMany> {
        let new = numbers
            .iter()
            .filter(|number| !self.numbers.contains_key(number))
            .collect::<std::collections::HashSet<_>>()
            .len();
        if self.numbers.len() + new > self.max {
            return Err(TooMany::Subscriptions { max: self.max });
        }
        Ok(())
    }

    /// Adds a subscription to `numbers` (number id, inbox). A number followed already
    /// moves to the new subscription, so it is never delivered twice.
    ///
    /// Returns where the new subscription starts: what the client resumes from if the
    /// connection drops before anything arrives.
    pub fn add(
        &mut self,
        numbers: &[(u64, Inbox)],
        open: impl FnOnce(&[Inbox]) -> Subscription,
    ) -> u64 {
        for (number, _) in numbers {
            self.remove(*number);
        }
        let inboxes: Vec<Inbox> = numbers.iter().map(|(_, inbox)| *inbox).collect();
        self.numbers.extend(numbers.iter().copied());
        let subscription = open(&inboxes);
        let start = subscription.cursor();
        self.subscriptions.push(subscription);
        start
    }

    /// Stops following `number`; false when it was not followed.
    pub fn remove(&mut self, number: u64) -> bool {
        let Some(inbox) = self.numbers.remove(&number) else {
            return false;
        };
        // Another followed number may share the inbox only in theory (one inbox belongs
        // to one number); keep it then.
        if self.numbers.values().any(|other| *other == inbox) {
            return true;
        }
        self.subscriptions.retain_mut(|subscription| {
            !(subscription.inboxes().contains(&inbox) && subscription.remove(inbox))
        });
        true
    }

    /// The numbers followed now, ascending.
    pub fn numbers(&self) -> Vec<u64> {
        let mut numbers: Vec<u64> = self.numbers.keys().copied().collect();
        numbers.sort_unstable();
        numbers
    }

    /// Where the client should resume if the connection ends now: the oldest cursor of
    /// its subscriptions (events of other subscriptions after it may come again; their
    /// ids tell the client which it has).
    pub fn resume_after(&self) -> Option<u64> {
        self.subscriptions.iter().map(Subscription::cursor).min()
    }

    /// The next event of any subscription; never completes while there is none.
    /// Cancel-safe, like [`Subscription::next`].
    pub async fn next(&mut self) -> Result<Next, StoreError> {
        if self.subscriptions.is_empty() {
            return std::future::pending().await;
        }
        let pending = self
            .subscriptions
            .iter_mut()
            .map(|subscription| Box::pin(subscription.next()));
        let (next, _, _) = futures_util::future::select_all(pending).await;
        next
    }
}
