//! The Cron Trigger's expiry notices (docs/CONTRACT.md section 14): which keys are about to
//! expire (7 days, 1 day) or expired lately, and the dedup that makes every run after the
//! first publish nothing new. Pure; the scan is `edge::cron`.

use super::events::ChangeKind;

const DAY_SECS: i64 = 86_400;
/// The warnings, widest first: a key inside a window gets that window's warning once.
pub const WARNING_DAYS: [u32; 2] = [1, 7];
/// How long after its expiry a key still gets its `key.expired` notice (a run that was missed,
/// or a key whose first run came late). The KV index keeps entries as long (store.rs).
pub const EXPIRED_NOTICE_SECS: i64 = 30 * DAY_SECS;
/// KV index entries read per page. Small enough that a page's notices (at most one per
/// entry) always fit in a run: a run stops between pages, never inside one, so it always
/// makes progress.
pub const SCAN_PAGE: u64 = 250;
/// Pages per run: 10,000 keys an hour. A larger index is read on across runs from a stored
/// cursor, so every key is still seen, once per `keys / 10,000` hours.
pub const SCAN_PAGES_PER_RUN: usize = 40;
/// A run stops after the page that reaches this many notices (each is one call to a user's
/// object), so it makes fewer than `MAX_NOTICES_PER_RUN + SCAN_PAGE` object calls plus its
/// KV reads: inside a Worker invocation's 1,000 subrequests.
pub const MAX_NOTICES_PER_RUN: usize = 500;

/// The notice a live key expiring at `expires_at` is due at `now`, if any.
pub fn notice(now: i64, expires_at: i64) -> Option<ChangeKind> {
    let left = expires_at - now;
    if left <= 0 {
        return (-left <= EXPIRED_NOTICE_SECS).then_some(ChangeKind::Expired);
    }
    WARNING_DAYS
        .iter()
        .find(|d| left <= **d as i64 * DAY_SECS)
        .map(|&days| ChangeKind::Expiring { days })
}

/// The stable dedup of a notice: the same key, kind and expiry give the same event however
/// many runs see it; a changed expiry (a roll's grace) warns again.
pub fn dedup(key_id: &str, kind: ChangeKind, expires_at: i64) -> String {
    match kind {
        ChangeKind::Expiring { days } => format!("expiring:{key_id}:{days}:{expires_at}"),
        _ => format!("{}:{key_id}:{expires_at}", kind.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 2_000_000_000;

    #[test]
    fn warnings_at_seven_days_and_one_day() {
        assert_eq!(notice(NOW, NOW + 8 * DAY_SECS), None);
        assert_eq!(
            notice(NOW, NOW + 7 * DAY_SECS),
            Some(ChangeKind::Expiring { days: 7 })
        );
        assert_eq!(
            notice(NOW, NOW + 3 * DAY_SECS),
            Some(ChangeKind::Expiring { days: 7 })
        );
        assert_eq!(
            notice(NOW, NOW + DAY_SECS + 1),
            Some(ChangeKind::Expiring { days: 7 })
        );
        assert_eq!(
            notice(NOW, NOW + DAY_SECS),
            Some(ChangeKind::Expiring { days: 1 })
        );
        assert_eq!(notice(NOW, NOW + 1), Some(ChangeKind::Expiring { days: 1 }));
    }

    #[test]
    fn expired_notices_for_thirty_days() {
        assert_eq!(notice(NOW, NOW), Some(ChangeKind::Expired));
        assert_eq!(notice(NOW, NOW - 30 * DAY_SECS), Some(ChangeKind::Expired));
        assert_eq!(notice(NOW, NOW - 30 * DAY_SECS - 1), None);
    }

    #[test]
    fn dedup_is_stable_per_key_kind_and_expiry() {
        let seven = ChangeKind::Expiring { days: 7 };
        assert_eq!(dedup("key_1", seven, 5), dedup("key_1", seven, 5));
        assert_ne!(
            dedup("key_1", seven, 5),
            dedup("key_1", ChangeKind::Expiring { days: 1 }, 5)
        );
        assert_ne!(dedup("key_1", seven, 5), dedup("key_1", seven, 6));
        assert_ne!(dedup("key_1", seven, 5), dedup("key_2", seven, 5));
        assert_eq!(
            dedup("key_1", ChangeKind::Expired, 5),
            "key.expired:key_1:5"
        );
    }
}
