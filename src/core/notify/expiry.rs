//! The Cron Trigger's expiry notices (docs/CONTRACT.md section 14): which keys are about to
//! expire (7 days, 1 day) or expired lately, the dedup that makes every run after the first
//! publish nothing new, and a run's bounds (one call per user and page). Pure; the scan is `edge::cron`.

use crate::core::events::ChangeKind;

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
/// A run stops after the page that brings its calls to users' objects to this many. A call
/// carries all of one user's notices due on a page, so a user with many keys costs one call a
/// page, never one per key: one user's many short-lived keys cannot spend a run before other
/// users' keys are reached. At most one call per entry of a page, so a run makes fewer than
/// `MAX_CALLS_PER_RUN + SCAN_PAGE` object calls, plus its page reads and its cursor's read and
/// write: inside a Worker invocation's 1,000 subrequests.
pub const MAX_CALLS_PER_RUN: usize = 500;

/// A run stops after the page on which this many calls have failed (a user's object
/// unavailable): one failing trail is skipped, not a reason to give up on everyone else's, but
/// many failures mean the trails are down, and going on would only spend subrequests.
pub const MAX_FAILURES_PER_RUN: usize = 10;

/// A run's totals so far, after a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTally {
    pub pages: usize,
    /// Calls made to users' objects (one per user per page with notices due).
    pub calls: usize,
    /// Notices those calls carried.
    pub notices: usize,
    /// Of `notices`, those the user's object stored as new (the rest were sent before).
    pub new_notices: usize,
    /// Calls that failed (each skipped; the dedup lets a later pass send their notices).
    pub failures: usize,
}

/// Groups `(user, item)` pairs by user, users in the order they first appear and each user's
/// items in theirs: one call per user carries all of that user's notices of a page.
pub fn by_user<T>(items: Vec<(String, T)>) -> Vec<(String, Vec<T>)> {
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for (user, item) in items {
        match groups.iter_mut().find(|(u, _)| *u == user) {
            Some((_, list)) => list.push(item),
            None => groups.push((user, vec![item])),
        }
    }
    groups
}

/// What a run does after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPage {
    /// Read the next page, from this cursor.
    Continue(String),
    /// Stop and store `cursor` for the next run (`None`: the next run starts at the beginning);
    /// `complete` when the scan reached the end of the index.
    Stop {
        cursor: Option<String>,
        complete: bool,
    },
}

/// The decision after a page read from `page_cursor` whose KV listing answered `next`:
/// - too many failures: stop at this page (`page_cursor`), so the next run tries it again
///   rather than starting over or passing it by;
/// - the end of the index: stop, complete; the next run starts over;
/// - the run's page or call budget spent: stop at `next`;
/// - otherwise go on to `next`.
///
/// Failures count towards the call budget too, so a run's object calls stay below
/// `MAX_CALLS_PER_RUN + SCAN_PAGE`.
pub fn after_page(page_cursor: Option<&str>, next: Option<String>, tally: RunTally) -> AfterPage {
    if tally.failures >= MAX_FAILURES_PER_RUN {
        return AfterPage::Stop {
            cursor: page_cursor.map(str::to_owned),
            complete: false,
        };
    }
    let Some(next) = next else {
        return AfterPage::Stop {
            cursor: None,
            complete: true,
        };
    };
    if tally.pages >= SCAN_PAGES_PER_RUN || tally.calls + tally.failures >= MAX_CALLS_PER_RUN {
        return AfterPage::Stop {
            cursor: Some(next),
            complete: false,
        };
    }
    AfterPage::Continue(next)
}

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

    fn tally(pages: usize, calls: usize, failures: usize) -> RunTally {
        RunTally {
            pages,
            calls,
            notices: calls,
            new_notices: 0,
            failures,
        }
    }

    #[test]
    fn one_call_per_user_per_page_whatever_their_number_of_keys() {
        // Finding 5 of the security review: one user's 800 old notices used to cost 800 calls
        // of a run's budget before another user's key was reached.
        let mut page: Vec<(String, u32)> = (0..800).map(|i| ("heavy".to_owned(), i)).collect();
        page.insert(3, ("other".to_owned(), 9_999));
        page.push(("third".to_owned(), 1));
        let groups = by_user(page);
        assert_eq!(
            groups.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
            ["heavy", "other", "third"]
        );
        assert_eq!(groups[0].1.len(), 800);
        assert_eq!(groups[0].1[..4], [0, 1, 2, 3], "each user's in their order");
        assert_eq!(groups[1].1, [9_999]);
    }

    #[test]
    fn the_call_budget_fits_the_subrequest_limit() {
        // Calls, one page's worth past the budget, page reads, the cursor's read and write.
        let worst = MAX_CALLS_PER_RUN + SCAN_PAGE as usize + SCAN_PAGES_PER_RUN + 2;
        assert!(worst <= 1000, "{worst} subrequests");
    }

    fn stop(cursor: Option<&str>, complete: bool) -> AfterPage {
        AfterPage::Stop {
            cursor: cursor.map(str::to_owned),
            complete,
        }
    }

    #[test]
    fn a_run_goes_on_past_a_few_failures() {
        let next = || Some("c2".to_owned());
        assert_eq!(
            after_page(Some("c1"), next(), tally(1, 3, 0)),
            AfterPage::Continue("c2".into())
        );
        // A failing notice is skipped: the run still moves on.
        assert_eq!(
            after_page(Some("c1"), next(), tally(1, 3, MAX_FAILURES_PER_RUN - 1)),
            AfterPage::Continue("c2".into())
        );
        assert_eq!(
            after_page(Some("c1"), None, tally(2, 3, 1)),
            stop(None, true)
        );
    }

    #[test]
    fn too_many_failures_stop_at_the_failing_page() {
        let many = tally(3, 0, MAX_FAILURES_PER_RUN);
        // The next run resumes at the page that failed, even when it was the last one.
        assert_eq!(
            after_page(Some("c3"), Some("c4".into()), many),
            stop(Some("c3"), false)
        );
        assert_eq!(after_page(Some("c3"), None, many), stop(Some("c3"), false));
        // The first page has no cursor: the next run starts there, at the beginning.
        assert_eq!(after_page(None, Some("c1".into()), many), stop(None, false));
    }

    #[test]
    fn the_budget_stops_a_run_at_the_next_page() {
        let next = || Some("c9".to_owned());
        assert_eq!(
            after_page(Some("c8"), next(), tally(SCAN_PAGES_PER_RUN, 0, 0)),
            stop(Some("c9"), false)
        );
        assert_eq!(
            after_page(Some("c8"), next(), tally(1, MAX_CALLS_PER_RUN, 0)),
            stop(Some("c9"), false)
        );
        // Failed calls are calls: they count towards the budget.
        assert_eq!(
            after_page(Some("c8"), next(), tally(1, MAX_CALLS_PER_RUN - 5, 5)),
            stop(Some("c9"), false)
        );
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
