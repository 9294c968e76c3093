//! What every stage of a request's glue shares: [`Ctx`] (bindings, the configuration read once
//! per isolate, the request's id, time and address), [`Reply`] and [`Incoming`]; and the
//! configuration's loading, with each problem logged once per isolate.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{console_log, Env, Response};

use super::http::{self, Req};
use crate::core::cidr;
use crate::core::config::Config;
use crate::core::{Cause, Error};

thread_local! {
    /// Each configuration problem is reported once per isolate, so a bad deploy is loud in the
    /// log without flooding it (a few distinct problems at most).
    static CONFIG_ERRORS_LOGGED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}
const MAX_CONFIG_ERRORS_LOGGED: usize = 8;

/// What one request's glue needs: bindings, configuration, its id and the time.
pub(crate) struct Ctx {
    pub env: Env,
    /// Parsed once per isolate ([`load_config`]).
    pub config: Rc<Config>,
    pub request_id: String,
    /// Drawn by the gateway for this request, whatever `X-Request-Id` the client sent: seeds the
    /// ids of the changes it records (see [`crate::core::events::Change::nonce`]). Drawn when
    /// first asked for ([`Ctx::nonce`]): most requests record no change.
    pub nonce: std::cell::OnceCell<String>,
    /// Unix seconds, read once per request.
    pub now: i64,
    /// `CF-Connecting-IP`, for the audit trail and IP allowlists.
    pub client_ip: Option<String>,
    /// Calls to pools' objects this request made or started, once a pool applied to it
    /// (docs/CONTRACT.md section 17), for the log line's `pool_calls`.
    pub pool_calls: std::cell::Cell<Option<u32>>,
}

impl Ctx {
    /// A copy for work that outlives the request (a background lease renewal).
    pub fn detached(&self) -> Ctx {
        Ctx {
            env: self.env.clone(),
            config: self.config.clone(),
            request_id: self.request_id.clone(),
            nonce: self.nonce.clone(),
            now: self.now,
            client_ip: self.client_ip.clone(),
            pool_calls: std::cell::Cell::new(None),
        }
    }

    /// Counts `n` calls to pools' objects (0: a pool applied, decided from its lease).
    pub fn count_pool_calls(&self, n: u32) {
        let before = self.pool_calls.get().unwrap_or(0);
        self.pool_calls.set(Some(before.saturating_add(n)));
    }

    /// This request's nonce, drawn on first use.
    pub fn nonce(&self) -> String {
        self.nonce.get_or_init(http::new_request_id).clone()
    }

    /// The client's address, for `allowed_ips`; `None` when absent or unreadable.
    pub fn client_addr(&self) -> Option<std::net::IpAddr> {
        cidr::client_ip(self.client_ip.as_deref())
    }
}

/// A route's answer, with a note for the log line when something behind a successful answer
/// failed (an idempotent answer that could not be remembered, say).
pub(crate) struct Reply {
    pub response: Response,
    pub note: Option<Cause>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply {
            response,
            note: None,
        }
    }
}

/// The request as it arrived: the `worker` request with its raw method and its path and query
/// split once, so every stage reads the same spelling of them.
#[derive(Clone, Copy)]
pub(crate) struct Incoming<'a> {
    pub req: &'a Req,
    /// The raw method (the `worker` enum folds methods it does not know, e.g. QUERY, into GET).
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

thread_local! {
    /// The configuration, read and checked once per isolate: vars are fixed for a deployed
    /// version (a new one starts new isolates), and reading a dozen of them across the JS
    /// boundary on every request showed in the profile. A bad configuration is not kept: each
    /// request reads it again (and is answered 503).
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

pub(crate) fn load_config(env: &Env) -> Result<Rc<Config>, Error> {
    if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(config);
    }
    let config = Config::from_env(
        |name| env.var(name).ok().map(|v| v.to_string()),
        |name| env.secret(name).ok().map(|v| v.to_string()),
    )
    .map(Rc::new)
    .map_err(|e| config_error(e.0))?;
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    Ok(config)
}

/// A configuration problem (a var, or a secret such as the assertion's signing key): each one
/// logged once per isolate, with what is wrong (never a secret's value); 503 for the client.
pub(crate) fn config_error(problem: String) -> Error {
    let first = CONFIG_ERRORS_LOGGED.with(|seen| {
        let mut seen = seen.borrow_mut();
        let new = !seen.contains(&problem) && seen.len() < MAX_CONFIG_ERRORS_LOGGED;
        if new {
            seen.push(problem.clone());
        }
        new
    });
    if first {
        console_log!(
            "{}",
            serde_json::json!({"level": "error", "config_error": problem})
        );
    }
    Error::Unavailable(Cause::Config)
}
