//! A settings link opened in a browser that already holds a live settings session of another
//! user (docs/CONTRACT.md section 11). Opening a link answers with the cookie and a redirect,
//! so anyone's link, opened in someone else's browser (a cross-site navigation is enough),
//! would silently replace that person's session with the link's: keys they then make would
//! belong to the link's user (login CSRF). Instead, when the browser holds a live session of
//! another user, opening the link answers a page naming both accounts; the link stays unused
//! until the person chooses it (a same-origin `POST /settings/open`).
//!
//! The session cookie is `SameSite=Strict`, so a navigation from another site does not carry
//! it: the same value also goes in [`SWITCH_COOKIE`], `SameSite=Lax` and sent only to
//! `/settings/open`, whose only use of it is this comparison.

use crate::core::names::SWITCH_COOKIE;
use crate::core::session::{link_token, read_named_cookie, Session, StoredSession};
use crate::core::settings::PATH_OPEN;

/// `Set-Cookie` of [`SWITCH_COOKIE`]: the session cookie's value, `HttpOnly`, `SameSite=Lax`,
/// scoped to `/settings/open` only, gone with the session, `Secure` off a local host.
pub fn set_switch_cookie(value: &str, max_age: i64, secure: bool) -> String {
    let mut c = format!(
        "{SWITCH_COOKIE}={value}; HttpOnly; SameSite=Lax; Path={PATH_OPEN}; Max-Age={}",
        max_age.max(0)
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// `Set-Cookie` that removes [`SWITCH_COOKIE`] (sign-out).
pub fn clear_switch_cookie(secure: bool) -> String {
    set_switch_cookie("", 0, secure)
}

/// `(object name, cookie secret)` of the session this browser holds, from [`SWITCH_COOKIE`].
pub fn read_switch_cookie(header: Option<&str>) -> Option<(&str, &str)> {
    read_named_cookie(header, SWITCH_COOKIE)
}

/// A link's session as its object holds it, if the link can still be opened (not yet opened,
/// not expired): the account it would sign in as.
pub fn unopened(stored: Option<StoredSession>, now: i64) -> Option<Session> {
    stored
        .filter(|s| !s.opened && now < s.session.expires_at)
        .map(|s| s.session)
}

/// Whether opening a link of `link`'s user in a browser signed in as `current` must ask first:
/// only when the accounts differ (the same user's link simply opens).
pub fn must_ask(current: &Session, link: &Session) -> bool {
    current.user_id != link.user_id
}

/// The link token of the choice page's form (`token=...`, URL-encoded), if well formed.
pub fn form_token(body: &[u8]) -> Option<String> {
    link_token(std::str::from_utf8(body).ok())
}

/// Whether a `POST /settings/open` comes from the gateway's own page: the browser's `Origin`
/// must be present and be the gateway's (a form post always carries it).
pub fn same_origin(origin_header: Option<&str>, own_origin: &str) -> bool {
    origin_header.is_some_and(|o| o.eq_ignore_ascii_case(own_origin))
}

/// The choice page: `template` (web/settings/switch.html) with `{current}`, `{link}` and
/// `{token}` filled in, every value HTML-escaped.
pub fn render(template: &str, current: &Session, link: &Session, token: &str) -> String {
    template
        .replace("{current}", &escape(&account(current)))
        .replace("{link}", &escape(&account(link)))
        .replace("{token}", &escape(token))
}

/// How an account is named to its person: the e-mail and the user id.
fn account(s: &Session) -> String {
    format!("{} ({})", s.email, s.user_id)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '{' => out.push_str("&#123;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::tests::session;

    fn stored(opened: bool, expires_at: i64) -> StoredSession {
        let mut s = session();
        s.expires_at = expires_at;
        StoredSession {
            session: s,
            opened,
            cookie_hash: None,
            csrf_token: "t".into(),
        }
    }

    #[test]
    fn only_a_link_that_can_still_be_opened_is_named() {
        assert!(unopened(Some(stored(false, 100)), 99).is_some());
        assert!(unopened(Some(stored(true, 100)), 99).is_none(), "used");
        assert!(unopened(Some(stored(false, 100)), 100).is_none(), "expired");
        assert!(unopened(None, 0).is_none());
    }

    #[test]
    fn another_users_link_asks_first_the_same_users_opens() {
        // Finding 11 of the security review (login CSRF on settings links).
        let me = session();
        let mut other = session();
        other.user_id = "mallory".into();
        assert!(must_ask(&me, &other));
        assert!(!must_ask(&me, &me.clone()));
    }

    #[test]
    fn the_page_escapes_what_it_names() {
        let mut me = session();
        me.email = "a<b>@example.com".into();
        let mut other = session();
        other.user_id = "\"><script>x</script>{token}".into();
        let page = render(
            "<p>{current}</p><p>{link}</p><i>{token}</i>",
            &me,
            &other,
            "tok",
        );
        assert!(page.contains("a&lt;b&gt;@example.com"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;x&lt;/script&gt;&#123;token}"));
        assert!(page.contains("<i>tok</i>"));
        assert!(!page.contains("<script>"));
        // Every character HTML gives a meaning, each to its own entity.
        assert_eq!(escape("a&b'c<>\"{"), "a&amp;b&#39;c&lt;&gt;&quot;&#123;");
    }

    #[test]
    fn the_form_needs_this_origin_and_a_well_formed_token() {
        assert!(same_origin(
            Some("https://keys.example.com"),
            "https://keys.example.com"
        ));
        assert!(!same_origin(None, "https://keys.example.com"));
        assert!(!same_origin(
            Some("https://evil.example"),
            "https://keys.example.com"
        ));
        let token = "A".repeat(43);
        assert_eq!(form_token(format!("token={token}").as_bytes()), Some(token));
        assert_eq!(form_token(b"token=short"), None);
        assert_eq!(form_token(&[0xff, 0xfe]), None);
    }

    #[test]
    fn the_cookie_goes_only_to_the_link_and_survives_a_cross_site_navigation() {
        let c = set_switch_cookie("v", 60, true);
        assert!(c.contains("SameSite=Lax") && c.contains("HttpOnly") && c.contains("Secure"));
        assert!(c.contains("Path=/settings/open;"));
        assert!(clear_switch_cookie(false).contains("Max-Age=0"));
        let (name, secret) = ("a".repeat(64), "B".repeat(43));
        let header = format!("kg_settings=x; kg_settings_open={name}.{secret}");
        assert_eq!(
            read_switch_cookie(Some(&header)),
            Some((name.as_str(), secret.as_str()))
        );
        // Only that cookie: the session's own cookie is not read as it.
        let own = format!("kg_settings={name}.{secret}");
        assert_eq!(read_switch_cookie(Some(&own)), None);
        assert_eq!(read_switch_cookie(None), None);
    }
}
