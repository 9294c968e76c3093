//! The `worker` glue: the fetch entry point, and the I/O each decision of [`crate::core`] needs.
//!
//! - [`store`]: Workers KV (records by hash, id and user indexes).
//! - [`key_object`]: the per-key Durable Object (rate limit, revocation, last use, idempotency);
//!   [`key_client`] (also named `durable` here): the Worker's typed calls to it.
//! - [`throttle`]: failed-authentication throttling per client IP.
//! - [`keys`]: `/v1/me` and `/v1/api-keys...`.
//! - [`proxy`]: `/developers/...` forwarding to the origin.
//! - [`http`]: responses, randomness, the clock.

mod http;
mod key_client;
mod key_object;
mod keys;
mod proxy;
mod store;
mod throttle;

use std::cell::{Cell, RefCell};

// The name the glue already calls the key's object by.
use key_client as durable;
use std::sync::atomic::{AtomicBool, Ordering};

use worker::{console_log, event, Context, Date, Env, Request, Response};

use crate::core::auth::{parse_authorization, Credential};
use crate::core::config::Config;
use crate::core::forward::{accept_request_id, HEADER_REQUEST_ID};
use crate::core::key::{check_key, hash_key};
use crate::core::log::LogLine;
use crate::core::ratelimit::Decision;
use crate::core::record::KeyRecord;
use crate::core::route::{check_path, resolve, split_url, Route};
use crate::core::Error;

/// The contract, served at `/v1/openapi.json` (and checked by schemathesis in `make test`).
const OPENAPI: &str = include_str!("../../api/openapi.json");

/// Reported once per isolate, so a bad deploy is loud in the log without flooding it.
static CONFIG_ERROR_LOGGED: AtomicBool = AtomicBool::new(false);

/// What one request carries through the glue.
pub(crate) struct Ctx {
    pub env: Env,
    pub config: Config,
    pub request_id: String,
    /// Unix seconds, read once per request.
    pub now: i64,
    pub key_id: RefCell<Option<String>>,
    pub user_id: RefCell<Option<String>>,
    /// A fixed name of the internal failure behind a 503, for the log only.
    pub cause: Cell<Option<&'static str>>,
    /// The key's rate-limit decision, once its Durable Object has counted the request.
    pub decision: Cell<Option<Decision>>,
}

impl Ctx {
    /// Records why the request failed closed and returns the client-facing error.
    pub fn unavailable(&self, cause: &'static str) -> Error {
        self.cause.set(Some(cause));
        Error::Unavailable
    }

    /// The rate-limit row of SPEC section 2: applied after the workspace and permission checks.
    pub fn enforce_rate_limit(&self) -> Result<(), Error> {
        match self.decision.get() {
            Some(d) if !d.allowed => Err(Error::RateLimited {
                retry_after: d.retry_after_secs,
            }),
            _ => Ok(()),
        }
    }

    fn identify(&self, record: &KeyRecord) {
        *self.key_id.borrow_mut() = Some(record.id.clone());
        *self.user_id.borrow_mut() = Some(record.user_id.clone());
    }
}

/// Who called a `/v1/api-keys` route.
pub(crate) enum Caller {
    Admin,
    Key(KeyRecord),
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started = Date::now().as_millis();
    let request_id = accept_request_id(
        req.headers()
            .get(HEADER_REQUEST_ID)
            .ok()
            .flatten()
            .as_deref(),
    )
    .map(str::to_owned)
    .unwrap_or_else(http::new_request_id);
    // The raw method: the `worker` enum folds methods it does not know (e.g. QUERY) into GET.
    let method = req.inner().method();
    let raw_url = req.inner().url();
    let (path, query) = split_url(&raw_url);

    let client_ip = req.headers().get(throttle::CLIENT_IP_HEADER).ok().flatten();
    let mut ctx_slot = None;
    let result = match throttle::blocked(client_ip.as_deref(), started) {
        // Refused before any storage read: guessing costs the guesser, not the gateway.
        Some(retry_after) => Err(Error::TooManyFailedAttempts { retry_after }),
        None => {
            let limiter = env.rate_limiter(throttle::BINDING).ok();
            let result = handle(&req, env, &method, path, query, &request_id, &mut ctx_slot).await;
            match result {
                Err(e) if throttle::counts_as_failure(&e) => {
                    throttle::record_failure(limiter, client_ip.as_deref(), started, e).await
                }
                other => other,
            }
        }
    };
    let (status, code) = match &result {
        Ok(resp) => (resp.status_code(), None),
        Err(e) => (e.status(), Some(e.code())),
    };
    let mut response = match result {
        Ok(resp) => resp,
        Err(e) => http::error_response(&e, &request_id),
    };
    let _ = response.headers_mut().set(HEADER_REQUEST_ID, &request_id);
    if let Some(d) = ctx_slot.as_ref().and_then(|c| c.decision.get()) {
        http::set_rate_limit_headers(response.headers_mut(), &d);
    }

    let (key_id, user_id, cause) = match &ctx_slot {
        Some(c) => (
            c.key_id.borrow().clone(),
            c.user_id.borrow().clone(),
            c.cause.get(),
        ),
        None => (None, None, None),
    };
    let line = LogLine {
        request_id: &request_id,
        method: &method,
        path,
        status,
        code,
        key_id: key_id.as_deref(),
        user_id: user_id.as_deref(),
        duration_ms: Date::now().as_millis().saturating_sub(started),
        cause,
    };
    console_log!("{}", line.to_json());
    Ok(response)
}

async fn handle(
    req: &Request,
    env: Env,
    method: &str,
    path: &str,
    query: Option<&str>,
    request_id: &str,
    ctx_slot: &mut Option<Ctx>,
) -> Result<Response, Error> {
    check_path(path)?;
    let route = resolve(method, path)?;
    let config = load_config(&env)?;
    let ctx = ctx_slot.insert(Ctx {
        env,
        config,
        request_id: request_id.to_owned(),
        now: (Date::now().as_millis() / 1000) as i64,
        key_id: RefCell::new(None),
        user_id: RefCell::new(None),
        cause: Cell::new(None),
        decision: Cell::new(None),
    });
    match route {
        Route::Health => http::json(200, &serde_json::json!({"status": "ok"})),
        Route::OpenApi => http::raw_json(200, OPENAPI),
        Route::Me => {
            let record = authenticate(ctx, req).await?;
            count(ctx, &record).await?;
            ctx.enforce_rate_limit()?;
            keys::me(ctx, &record)
        }
        Route::CreateKey => keys::create(ctx, req, caller(ctx, req).await?).await,
        Route::ListKeys => keys::list(ctx, query, caller(ctx, req).await?).await,
        Route::GetKey(id) => keys::get(ctx, id, caller(ctx, req).await?).await,
        Route::RevokeKey(id) => keys::revoke(ctx, id, caller(ctx, req).await?).await,
        Route::RollKey(id) => keys::roll(ctx, req, id, caller(ctx, req).await?).await,
        Route::Forward(fwd) => {
            // Counted inside `forward`: the job trigger folds the count into its object call.
            let record = authenticate(ctx, req).await?;
            proxy::forward(ctx, req, method, path, query, &fwd, &record).await
        }
    }
}

fn load_config(env: &Env) -> Result<Config, Error> {
    Config::from_vars(|name| env.var(name).ok().map(|v| v.to_string())).map_err(|e| {
        if !CONFIG_ERROR_LOGGED.swap(true, Ordering::Relaxed) {
            console_log!(
                "{}",
                serde_json::json!({"level": "error", "config_error": e.0})
            );
        }
        Error::Unavailable
    })
}

fn authorization(req: &Request) -> Option<String> {
    req.headers().get("authorization").ok().flatten()
}

/// SPEC section 2, rows 2–6: header, shape and checksum (no storage read), then the record.
/// The request is not counted yet: see [`count`].
async fn authenticate(ctx: &Ctx, req: &Request) -> Result<KeyRecord, Error> {
    let header = authorization(req);
    match parse_authorization(header.as_deref())? {
        Credential::ApiKey(key) => authenticate_key(ctx, key).await,
        Credential::Admin(_) => Err(Error::MalformedApiKey),
    }
}

async fn authenticate_key(ctx: &Ctx, key: &str) -> Result<KeyRecord, Error> {
    check_key(&ctx.config.key_prefix, key)?;
    let record = store::record_by_hash(ctx, &hash_key(key), true)
        .await?
        .ok_or(Error::InvalidApiKey)?;
    // Identify before the revoked/expired checks, so the log says which key was refused.
    ctx.identify(&record);
    record.check_usable(ctx.now)?;
    Ok(record)
}

/// The key's own object knows revocations and shortened expiries everywhere at once, and
/// counts the request; its decision is enforced after the workspace and permission rows.
pub async fn count(ctx: &Ctx, record: &KeyRecord) -> Result<(), Error> {
    ctx.decision.set(Some(durable::hit(ctx, record).await?));
    Ok(())
}

/// The admin token (`Bearer`, compared in constant time) or an API key.
async fn caller(ctx: &Ctx, req: &Request) -> Result<Caller, Error> {
    let header = authorization(req);
    match parse_authorization(header.as_deref())? {
        Credential::ApiKey(key) => {
            let record = authenticate_key(ctx, key).await?;
            count(ctx, &record).await?;
            Ok(Caller::Key(record))
        }
        Credential::Admin(token) => {
            let configured = ctx
                .env
                .secret("ADMIN_TOKEN")
                .ok()
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty())
                .ok_or(Error::AdminDisabled)?;
            if crate::core::auth::admin_token_matches(token, &configured) {
                Ok(Caller::Admin)
            } else {
                Err(Error::InvalidAdminToken)
            }
        }
    }
}
