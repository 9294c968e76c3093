//! The fixed names of internal failures that the logs print as `cause` (docs/CONTRACT.md
//! section 10): one list, so that the glue cannot misspell one and the contract's table of them
//! cannot drift (the unit tests below compare the two).
//!
//! A cause is for operators only: the client sees a generic `unavailable`,
//! `origin_unavailable` or `origin_timeout` body (section 3), never the cause.

/// Declares [`Cause`], its [`Cause::name`] and [`Cause::ALL`] from one list, so that `ALL` can
/// never miss a variant and every variant has exactly one name.
macro_rules! causes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Cause {
            $($(#[$doc])* $variant,)*
        }

        impl Cause {
            /// Every cause, in the contract table's order.
            pub const ALL: &'static [Cause] = &[$(Cause::$variant,)*];

            /// The name the log line prints. Operators and the end-to-end tests read these:
            /// a name never changes once released.
            pub fn name(self) -> &'static str {
                match self {
                    $(Cause::$variant => $name,)*
                }
            }
        }
    };
}

causes! {
    // Storage and bindings: the request fails closed with 503 `unavailable`.

    /// The Workers KV binding (`KEYS`) is missing.
    KvBinding => "kv_binding",
    /// A Workers KV read failed (a record, an id, an upgrade, a pool, the cron cursor).
    KvRead => "kv_read",
    /// A Workers KV write or delete failed.
    KvWrite => "kv_write",
    /// A Workers KV listing failed (a user's keys, the pools, the cron scan).
    KvList => "kv_list",
    /// A key's (or pool's) Durable Object could not be reached, did not answer 200, or answered
    /// something unreadable; also an idempotent attempt the object could not open.
    DurableObject => "durable_object",
    /// The user's (or workspace's) audit-log object could not record or list: for a change
    /// that has not taken effect yet, for `GET /v1/audit-events`, and on the line of a
    /// `rate_limit.exceeded` notice that could not be recorded.
    AuditLog => "audit_log",
    /// A settings session's Durable Object could not be reached or answered something
    /// unreadable.
    SettingsSessionObject => "settings_session_object",
    /// A key's request waited for other requests' calls to its object (section 8) longer than
    /// the gateway waits.
    LeaseWait => "lease_wait",
    /// The `AUTH_FAILURES` Rate Limiting binding is missing: failed attempts could not be
    /// counted, so nothing that authenticates is served.
    AuthFailuresBinding => "auth_failures_binding",
    /// The `AUTH_FAILURES` binding failed to count a failed attempt.
    AuthFailuresLimit => "auth_failures_limit",
    /// A var or secret is invalid (its problem has its own `config_error` line, once per
    /// isolate).
    Config => "config",
    /// Neither `ORIGIN_SIGNING_SECRET` nor `ASSERTION_SIGNING_KEY` is configured: nothing is forwarded
    /// without a statement of identity.
    SigningSecretMissing => "signing_secret_missing",
    /// The runtime's WebCrypto (`crypto.subtle`) failed: a PBKDF2 check or an assertion's
    /// signature.
    Webcrypto => "webcrypto",
    /// The isolate already holds as many request bodies as it may (bodies read before the
    /// origin is called).
    BodyBudget => "body_budget",
    /// The `ASSETS` service binding (to the keygate-assets Worker) is missing or did not serve
    /// one of the settings page's files or the OpenAPI document.
    Assets => "assets",

    // The origin.

    /// The request to the origin could not be built (503 `unavailable`).
    OriginRequest => "origin_request",
    /// The origin could not be reached (502 `origin_unavailable`).
    OriginFetch => "origin_fetch",
    /// The origin's body failed while it was read or relayed (502 `origin_unavailable`).
    OriginBody => "origin_body",
    /// The origin did not answer within `ORIGIN_TIMEOUT_MS` (504 `origin_timeout`).
    OriginTimeout => "origin_timeout",

    // Notes on a successful answer: the change took effect and the answer stands, but
    // something behind it failed.

    /// A revocation (by `DELETE` or a leak report) took effect but its audit entry was not
    /// written.
    AuditAfterRevoke => "audit_after_revoke",
    /// A `PATCH` took effect but its audit entry was not written.
    AuditAfterUpdate => "audit_after_update",
    /// A roll took effect but its audit entry was not written.
    AuditAfterRoll => "audit_after_roll",
    /// A roll took effect but the old key's record (its new expiry or revocation) was not
    /// written to KV; its object already enforces it.
    KvWriteAfterRoll => "kv_write_after_roll",
    /// A settings link was opened (and used up) but the opening's audit entry was not written.
    AuditAfterOpen => "audit_after_open",
    /// A run was counted but its quota notice (80 % or exhausted, a key's or a pool's) was not
    /// recorded.
    AuditQuotaNotice => "audit_quota_notice",
    /// A pool was written or deleted but its audit entry was not.
    AuditPool => "audit_pool",
    /// An idempotent job trigger's answer could not be stored in the key's object: a retry
    /// waits for the in-flight record to lapse instead of replaying it.
    IdempotencyStore => "idempotency_store",

    // A webhook delivery's line (the queue consumer): the attempt failed and is retried.

    /// The queued event has no `id`.
    WebhookEventId => "event_id",
    /// The delivery's headers could not be set.
    WebhookHeaders => "headers",
    /// The delivery's request could not be built.
    WebhookRequest => "request",
    /// The receiver could not be reached.
    WebhookNetwork => "network",
    /// The receiver did not answer in time.
    WebhookTimeout => "timeout",
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    #[test]
    fn names_are_distinct_and_snake_case() {
        let names: BTreeSet<&str> = Cause::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Cause::ALL.len(), "two causes share a name");
        for name in names {
            let snake = !name.is_empty()
                && name.split('_').all(|w| {
                    !w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                });
            assert!(snake, "{name} is not snake_case");
        }
    }

    #[test]
    fn all_lists_every_cause_once() {
        let distinct: HashSet<Cause> = Cause::ALL.iter().copied().collect();
        assert_eq!(distinct.len(), Cause::ALL.len());
        // Today's names, which the log format promises (spot checks against the e2e tests).
        assert_eq!(Cause::KvBinding.name(), "kv_binding");
        assert_eq!(Cause::DurableObject.name(), "durable_object");
        assert_eq!(Cause::AuthFailuresBinding.name(), "auth_failures_binding");
        assert_eq!(Cause::AuditQuotaNotice.name(), "audit_quota_notice");
    }

    /// The first cells of the rows between `<!-- causes:begin -->` and `<!-- causes:end -->`
    /// in the contract, each one code span.
    fn contract_causes() -> Vec<String> {
        let contract = include_str!("../../docs/CONTRACT.md");
        let begin = contract
            .find("<!-- causes:begin -->")
            .expect("causes:begin marker");
        let end = contract
            .find("<!-- causes:end -->")
            .expect("causes:end marker");
        contract[begin..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cell = l.split('|').nth(1).unwrap_or_default().trim();
                cell.trim_matches('`').to_owned()
            })
            .collect()
    }

    #[test]
    fn the_contract_lists_exactly_these_causes() {
        let listed = contract_causes();
        let names: Vec<String> = Cause::ALL.iter().map(|c| c.name().to_owned()).collect();
        for name in &names {
            assert!(
                listed.contains(name),
                "`{name}` is missing from docs/CONTRACT.md section 10's table of causes"
            );
        }
        for name in &listed {
            assert!(
                names.contains(name),
                "docs/CONTRACT.md lists `{name}`, which is no Cause"
            );
        }
        assert_eq!(listed.len(), names.len(), "a cause is listed twice");
    }
}
