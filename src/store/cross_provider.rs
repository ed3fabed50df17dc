//! One SMS arriving through two providers (a ported number, or a number reachable
//! through two accounts) is stored once.
//!
//! Provider message ids differ between providers, so the match is by content: the same
//! sender, recipient and text, through another provider, within [`WINDOW`]. Occurrences
//! are counted per provider, so a person who really sends the same text twice gets two
//! messages: the second copy through provider B matches the second through A, not the
//! first.
//!
//! The memory is in RAM and used only inside the writer thread. Losing it (a restart
//! between the two deliveries) can only store a copy twice, never lose one, and every
//! match is checked against the store before it is trusted. A note is taken back when
//! its group commit does not commit ([`RecentContent::undo`]), so the counts follow
//! what the store holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How far apart the copies of one SMS may arrive through different providers.
pub const WINDOW_MS: i64 = 10 * 60 * 1000;

/// Content seen recently, by keyed hash of (sender, recipient, text).
#[derive(Debug, Default)]
pub struct RecentContent {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<[u8; 32], Seen>,
    /// (first seen, content) in arrival order, for forgetting.
    order: VecDeque<(i64, [u8; 32])>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Copies received per provider instance.
    per_provider: Vec<(String, usize)>,
    /// The message stored for the 1st, 2nd, … copy.
    message_ids: Vec<u64>,
}

impl Seen {
    fn count(&self, provider: &str) -> usize {
        self.per_provider
            .iter()
            .find(|(name, _)| name == provider)
            .map_or(0, |(_, count)| *count)
    }

    fn bump(&mut self, provider: &str) {
        match self
            .per_provider
            .iter_mut()
            .find(|(name, _)| name == provider)
        {
            Some((_, count)) => *count += 1,
            None => self.per_provider.push((provider.to_owned(), 1)),
        }
    }
}

/// What the memory says about an incoming copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// The same copy already came through another provider and was stored as this.
    SeenAs(u64),
    /// News.
    New,
}

impl RecentContent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this copy from `provider` was already stored through another provider.
    pub fn sighting(&self, content: &[u8; 32], provider: &str, now_ms: i64) -> Sighting {
        let mut inner = self.lock();
        inner.forget_before(now_ms - WINDOW_MS);
        let Some(seen) = inner.seen.get(content) else {
            return Sighting::New;
        };
        let nth = seen.count(provider);
        let elsewhere = seen
            .per_provider
            .iter()
            .any(|(name, count)| name != provider && *count > nth);
        match seen.message_ids.get(nth) {
            Some(id) if elsewhere => Sighting::SeenAs(*id),
            _ => Sighting::New,
        }
    }

    /// Notes a copy from `provider`: stored as `stored` when it was news. Returns what
    /// [`Self::undo`] needs to take the note back.
    pub fn note(
        &self,
        content: [u8; 32],
        provider: &str,
        stored: Option<u64>,
        now_ms: i64,
    ) -> Noted {
        let mut inner = self.lock();
        let fresh = !inner.seen.contains_key(&content);
        let seen = inner.seen.entry(content).or_default();
        seen.bump(provider);
        if let Some(id) = stored {
            seen.message_ids.push(id);
        }
        if fresh {
            inner.order.push_back((now_ms, content));
        }
        Noted {
            content,
            provider: provider.to_owned(),
            stored,
            fresh,
        }
    }

    /// Takes back a note whose write was rolled back. Notes of one batch are taken
    /// back newest first, so each finds the memory as it left it.
    pub fn undo(&self, noted: Noted) {
        let mut inner = self.lock();
        let Some(seen) = inner.seen.get_mut(&noted.content) else {
            // Forgotten meanwhile (out of the window): nothing left to take back.
            return;
        };
        if let Some(at) = seen
            .per_provider
            .iter()
            .position(|(name, _)| *name == noted.provider)
        {
            seen.per_provider[at].1 -= 1;
            if seen.per_provider[at].1 == 0 {
                seen.per_provider.remove(at);
            }
        }
        if noted.stored.is_some() && seen.message_ids.last().copied() == noted.stored {
            seen.message_ids.pop();
        }
        if noted.fresh && seen.per_provider.is_empty() {
            inner.seen.remove(&noted.content);
            if inner.order.back().map(|(_, content)| content) == Some(&noted.content) {
                inner.order.pop_back();
            }
        }
    }
}

/// One note, as [`RecentContent::undo`] takes it back.
#[derive(Debug)]
pub struct Noted {
    content: [u8; 32],
    provider: String,
    stored: Option<u64>,
    fresh: bool,
}

impl Inner {
    fn forget_before(&mut self, cutoff_ms: i64) {
        while let Some((at, content)) = self.order.front().copied() {
            if at >= cutoff_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&content);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_match_across_providers_by_occurrence() {
        let memory = RecentContent::default();
        let text = [7u8; 32];
        assert_eq!(memory.sighting(&text, "a", 0), Sighting::New);
        memory.note(text, "a", Some(10), 0);
        // The same provider again is a second message, not a copy.
        assert_eq!(memory.sighting(&text, "a", 1), Sighting::New);
        memory.note(text, "a", Some(11), 1);
        // Provider b's first and second copies match a's first and second messages.
        assert_eq!(memory.sighting(&text, "b", 2), Sighting::SeenAs(10));
        memory.note(text, "b", None, 2);
        assert_eq!(memory.sighting(&text, "b", 3), Sighting::SeenAs(11));
        memory.note(text, "b", None, 3);
        // A third through b has no counterpart: news.
        assert_eq!(memory.sighting(&text, "b", 4), Sighting::New);
        // After the window, everything is forgotten.
        assert_eq!(memory.sighting(&text, "b", WINDOW_MS + 1), Sighting::New);
        assert!(memory.lock().seen.is_empty());
    }

    #[test]
    fn notes_of_a_rolled_back_batch_are_taken_back() {
        let memory = RecentContent::default();
        let text = [9u8; 32];
        memory.note(text, "a", Some(10), 0);
        // One batch: b's copy attaches to 10, then a new message through a; the batch
        // does not commit, so both notes are taken back, newest first.
        let batch = [
            memory.note(text, "b", None, 1),
            memory.note(text, "a", Some(11), 1),
        ];
        for noted in batch.into_iter().rev() {
            memory.undo(noted);
        }
        // b's retry is still the first copy of a's first message, not news.
        assert_eq!(memory.sighting(&text, "b", 2), Sighting::SeenAs(10));
        // A note of content never seen before leaves nothing behind.
        let other = [3u8; 32];
        let noted = memory.note(other, "a", Some(12), 2);
        memory.undo(noted);
        assert_eq!(memory.sighting(&other, "b", 3), Sighting::New);
        let inner = memory.lock();
        assert!(!inner.seen.contains_key(&other));
        assert_eq!(inner.order.len(), 1, "only the first content is remembered");
    }
}
