//! The permission vocabulary (docs/CONTRACT.md section 5) and what holding one means.

/// Every permission a key can hold, without the wildcard. [`crate::core::route`] demands only these
/// (a unit test there ties the two together).
pub const PERMISSIONS: [&str; 12] = [
    "workspaces:read",
    "jobs:read",
    "jobs:write",
    "jobs:run",
    "orchestration:read",
    "orchestration:write",
    "secrets:read",
    "secrets:write",
    "variables:read",
    "variables:write",
    "api_keys:read",
    "api_keys:write",
];
/// Grants every permission, or every workspace.
pub const WILDCARD: &str = "*";
pub const PERM_WORKSPACES_READ: &str = "workspaces:read";
pub const PERM_JOBS_RUN: &str = "jobs:run";
pub const PERM_KEYS_READ: &str = "api_keys:read";
pub const PERM_KEYS_WRITE: &str = "api_keys:write";

/// Whether `held` (a key's permissions) includes `permission`, directly or by the wildcard.
pub fn grants(held: &[String], permission: &str) -> bool {
    held.iter().any(|p| p == WILDCARD || p == permission)
}

/// Whether `held` (a key's workspaces) covers workspace `ws`.
pub fn covers(held: &[String], ws: &str) -> bool {
    held.iter().any(|w| w == WILDCARD || w == ws)
}

/// Whether every entry of `wanted` is within `held` (the no-escalation rule for lists).
pub fn within(held: &[String], wanted: &[String]) -> bool {
    held.iter().any(|h| h == WILDCARD) || wanted.iter().all(|w| w != WILDCARD && held.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings page keeps its own copy of the vocabulary (to expand a `*` ceiling in the
    /// browser): it must be this list, in this order, nothing more.
    #[test]
    fn the_settings_page_lists_exactly_these_permissions() {
        let page = include_str!("../../web/settings/app.js");
        let start = page.find("const PERMISSIONS = [").expect("the page's list") + 21;
        let end = start + page[start..].find("];").expect("its end");
        let listed: Vec<&str> = page[start..end]
            .split(',')
            .map(|p| p.trim().trim_matches('"'))
            .filter(|p| !p.is_empty())
            .collect();
        assert_eq!(listed, PERMISSIONS);
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcard_grants_everything_and_lists_nest() {
        assert!(grants(&v(&["*"]), "secrets:write"));
        assert!(grants(&v(&["jobs:read"]), "jobs:read"));
        assert!(!grants(&v(&["jobs:read"]), "jobs:write"));
        assert!(covers(&v(&["*"]), "anything"));
        assert!(covers(&v(&["a"]), "a") && !covers(&v(&["a"]), "b"));
        assert!(within(&v(&["*"]), &v(&["*"])));
        assert!(within(&v(&["a", "b"]), &v(&["a"])));
        assert!(!within(&v(&["a", "b"]), &v(&["*"])));
        assert!(!within(&v(&["a"]), &v(&["a", "c"])));
    }

    #[test]
    fn named_permissions_are_in_the_vocabulary() {
        for p in [
            PERM_WORKSPACES_READ,
            PERM_JOBS_RUN,
            PERM_KEYS_READ,
            PERM_KEYS_WRITE,
        ] {
            assert!(PERMISSIONS.contains(&p), "{p}");
        }
    }

    #[test]
    fn every_permission_a_route_demands_is_in_the_vocabulary() {
        use crate::core::route::{resolve, Route};
        let mut seen = 0;
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            for path in [
                "/developers/workspaces/",
                "/developers/workspaces/w/",
                "/developers/workspaces/w/jobs/",
                "/developers/workspaces/w/jobs/j/run/",
                "/developers/workspaces/w/orchestration/x",
                "/developers/workspaces/w/secrets/x",
                "/developers/workspaces/w/variables/x",
            ] {
                if let Ok(Route::Forward(f)) = resolve(method, path) {
                    assert!(PERMISSIONS.contains(&f.permission), "{}", f.permission);
                    seen += 1;
                }
            }
        }
        assert!(seen > 20, "the routes above should resolve");
    }
}
