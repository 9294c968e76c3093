//! The in-isolate cache of key records, bounded in time by `KV_CACHE_TTL` and in size.
//!
//! Why it is safe: a record only changes by revocation or by a roll shortening its expiry, and
//! both are also recorded in the key's Durable Object, which every request consults. A cached
//! record can therefore never let a revoked or expired key through; it only saves the KV read.

use std::collections::HashMap;

use crate::core::record::KeyRecord;

/// Records kept per isolate at most; beyond it the cache starts over (bounded memory).
pub const MAX_CACHED_RECORDS: usize = 10_000;

#[derive(Debug, Default)]
pub struct RecordCache {
    entries: HashMap<String, (KeyRecord, u64)>,
}

impl RecordCache {
    /// The record for `hash` if cached and younger than its deadline.
    pub fn get(&self, hash: &str, now_ms: u64) -> Option<&KeyRecord> {
        self.entries
            .get(hash)
            .filter(|(_, until)| *until > now_ms)
            .map(|(r, _)| r)
    }

    pub fn insert(&mut self, hash: &str, record: KeyRecord, now_ms: u64, ttl_ms: u64) {
        if ttl_ms == 0 {
            return;
        }
        if self.entries.len() >= MAX_CACHED_RECORDS && !self.entries.contains_key(hash) {
            self.entries.retain(|_, (_, until)| *until > now_ms);
            if self.entries.len() >= MAX_CACHED_RECORDS {
                self.entries.clear();
            }
        }
        self.entries
            .insert(hash.to_owned(), (record, now_ms.saturating_add(ttl_ms)));
    }

    /// Evicts a record this isolate has just changed (revoke, roll).
    pub fn remove(&mut self, hash: &str) {
        self.entries.remove(hash);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::tests::new_key;

    fn rec(id: &str) -> KeyRecord {
        new_key(&["*"], &["*"], None).into_record(id.into(), "kg_000000".into(), 0)
    }

    #[test]
    fn entries_live_for_the_ttl_only() {
        let mut c = RecordCache::default();
        c.insert("h", rec("key_a"), 1_000, 60_000);
        assert_eq!(c.get("h", 60_999).map(|r| r.id.as_str()), Some("key_a"));
        assert!(c.get("h", 61_000).is_none());
        c.remove("h");
        assert!(c.get("h", 1_000).is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let mut c = RecordCache::default();
        c.insert("h", rec("key_a"), 0, 0);
        assert!(c.is_empty());
    }

    #[test]
    fn size_is_bounded() {
        let mut c = RecordCache::default();
        for i in 0..(MAX_CACHED_RECORDS + 10) {
            c.insert(&format!("h{i}"), rec("key_a"), 0, 60_000);
        }
        assert!(c.len() <= MAX_CACHED_RECORDS);
        assert!(c.get(&format!("h{}", MAX_CACHED_RECORDS + 9), 1).is_some());
    }

    #[test]
    fn a_full_cache_drops_stale_records_first_and_keeps_fresh_ones() {
        let mut c = RecordCache::default();
        let half = MAX_CACHED_RECORDS / 2;
        for i in 0..half {
            c.insert(&format!("stale{i}"), rec("key_a"), 0, 100);
        }
        // Ends exactly now: no longer fresh, dropped too.
        c.insert("edge", rec("key_a"), 0, 1_000);
        for i in 0..MAX_CACHED_RECORDS - half - 1 {
            c.insert(&format!("fresh{i}"), rec("key_a"), 500, 60_000);
        }
        assert_eq!(c.len(), MAX_CACHED_RECORDS);
        // Replacing a cached record does not make room.
        c.insert("fresh0", rec("key_b"), 1_000, 60_000);
        assert_eq!(c.len(), MAX_CACHED_RECORDS);
        c.insert("new", rec("key_a"), 1_000, 60_000);
        assert_eq!(
            c.len(),
            MAX_CACHED_RECORDS - half,
            "stale and ending ones dropped"
        );
        assert!(c.get("fresh1", 1_000).is_some(), "fresh ones kept");
        assert!(!c.is_empty());
    }
}
