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
/// A run sends at most this many notices (each is one call to a user's object and one KV
/// write that marks the index entry as sent), so with its page reads it stays inside a Worker
/// invocation's 1,000 subrequests: `2 * 400 + MAX_FAILURES_PER_RUN + SCAN_PAGES_PER_RUN + 2`.
/// A notice already sent (marked in the index) costs nothing and does not count.
pub const MAX_NOTICES_PER_RUN: usize = 400;
/// At most this many notices of one user in one run: one user's many short-lived keys cannot
/// spend the run's budget before other users' keys are reached. The rest wait for the scan's
/// next pass (the next run when the index fits in one run).
pub const MAX_NOTICES_PER_USER_PER_RUN: usize = 20;

/// A run stops after the page on which this many notices have failed (a user's object
/// unavailable): one failing trail is skipped, not a reason to give up on everyone else's, but
/// many failures mean the trails are down, and going on would only spend subrequests.
pub const MAX_FAILURES_PER_RUN: usize = 10;

/// A run's totals so far, after a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTally {
    pub pages: usize,
    /// Notices sent to a user's object (each one call; new or, rarely, a repeat it dropped).
    pub notices: usize,
    /// Notices whose recording failed (each was skipped; its dedup lets a later pass send it).
    pub failures: usize,
    /// Of `notices`, those the user's object stored as new.
    pub new_notices: usize,
    /// Notices left for a later pass because their user's share of this run was spent.
    pub deferred: usize,
}

impl RunTally {
    /// Whether the run's call budget is spent: it stops before sending another notice, at
    /// the start of the current page (notices sent there are marked, and skipped next time).
    pub fn spent(&self) -> bool {
        self.notices + self.failures >= MAX_NOTICES_PER_RUN
    }
}

/// What the run does with one due notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Already sent (the index entry is marked with its dedup): no call.
    Skip,
    /// Its user's share of this run is spent: left for a later pass.
    Defer,
    Send,
}

/// The step for a due notice `dedup`, given the index entry's mark (the dedup of the last
/// notice sent for it) and how many of its user's notices this run has sent.
pub fn step(marked: Option<&str>, dedup: &str, sent_for_user: usize) -> Step {
    if marked == Some(dedup) {
        Step::Skip
    } else if sent_for_user >= MAX_NOTICES_PER_USER_PER_RUN {
        Step::Defer
    } else {
        Step::Send
    }
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
/// `MAX_NOTICES_PER_RUN + SCAN_PAGE`.
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
    if tally.pages >= SCAN_PAGES_PER_RUN || tally.notices + tally.failures >= MAX_NOTICES_PER_RUN {
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

    fn tally(pages: usize, notices: usize, failures: usize) -> RunTally {
        RunTally {
            pages,
            notices,
            failures,
            new_notices: 0,
            deferred: 0,
        }
    }

    #[test]
    fn a_sent_notice_is_skipped_and_one_user_gets_a_bounded_share() {
        // Finding 5 of the security review: old notices cost no call, and one user's many
        // keys cannot spend the run.
        let d = dedup("key_1", ChangeKind::Expired, 5);
        assert_eq!(step(Some(&d), &d, 0), Step::Skip);
        assert_eq!(step(Some(&d), &d, MAX_NOTICES_PER_USER_PER_RUN), Step::Skip);
        assert_eq!(step(None, &d, 0), Step::Send);
        // A mark of an earlier notice (the 7-day warning) does not skip the next one.
        let seven = dedup("key_1", ChangeKind::Expiring { days: 7 }, 5);
        assert_eq!(step(Some(&seven), &d, 0), Step::Send);
        assert_eq!(step(None, &d, MAX_NOTICES_PER_USER_PER_RUN - 1), Step::Send);
        assert_eq!(step(None, &d, MAX_NOTICES_PER_USER_PER_RUN), Step::Defer);
    }

    #[test]
    fn the_budget_is_spent_by_calls_and_fits_the_subrequest_limit() {
        assert!(!tally(1, MAX_NOTICES_PER_RUN - 1, 0).spent());
        assert!(tally(1, MAX_NOTICES_PER_RUN, 0).spent());
        assert!(tally(1, MAX_NOTICES_PER_RUN - 3, 3).spent());
        // Each notice: one object call and one KV write; plus page reads, failures and the
        // cursor's read and write.
        let worst = 2 * MAX_NOTICES_PER_RUN + MAX_FAILURES_PER_RUN + SCAN_PAGES_PER_RUN + 2;
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
            after_page(Some("c8"), next(), tally(1, MAX_NOTICES_PER_RUN, 0)),
            stop(Some("c9"), false)
        );
        // Failed calls are calls: they count towards the budget.
        assert_eq!(
            after_page(Some("c8"), next(), tally(1, MAX_NOTICES_PER_RUN - 5, 5)),
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
