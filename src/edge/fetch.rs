//! The fetch entry point: the request's path, route, configuration and caller in the order of
//! docs/CONTRACT.md section 2, then a key's request in the order [`crate::core::plan`] gives;
//! every response gets its request id and security headers, and one log line.

use worker::{console_log, event, web_sys, Context, Date, Env, Response};

use crate::core::access::{self, Caller, Need};
use crate::core::auth::{parse_authorization, Credential};
use crate::core::forward::{accept_request_id, HEADER_REQUEST_ID};
use crate::core::key::{check_key, hash_key};
use crate::core::legacy::split_key;
use crate::core::log::LogLine;
use crate::core::names::{AUTHORIZATION, AUTH_FAILURES_BINDING, CLIENT_IP};
use crate::core::plan::{plan, Plan};
use crate::core::ratelimit::Decision;
use crate::core::record::KeyRecord;
use crate::core::route::{check_path, resolve, split_url, Route};
use crate::core::settings::{self as settings_paths, is_settings_path, Settings, SECURITY_HEADERS};
use crate::core::{Cause, Error};

use super::assets::{self, File};
use super::ctx::load_config;
use super::http::{self, Req};
use super::{
    assertion, forward, imports, key_client, keys, leak, lease, legacy, notices, pool, pool_admin,
    settings, store, throttle, trigger, Ctx, Incoming, Reply,
};

/// What one request came to: everything its response headers and its log line need, returned
/// as a value by each stage rather than set aside on the side.
struct Outcome {
    result: Result<Reply, Error>,
    /// The key's id and user, once the key is known (also when it is then refused).
    key: Option<(String, String)>,
    /// The key's rate-limit decision, once its object has counted the request.
    decision: Option<Decision>,
    /// How the key's request was decided (section 8), for the log line.
    lease: Option<lease::Decided>,
    /// Calls to pools' objects, when a pool applied (section 17), for the log line.
    pool_calls: Option<u32>,
}

impl Outcome {
    fn of(result: Result<Reply, Error>) -> Self {
        Outcome {
            result,
            key: None,
            decision: None,
            lease: None,
            pool_calls: None,
        }
    }

    fn for_key(record: &KeyRecord) -> Self {
        Outcome {
            result: Err(Error::Internal),
            key: Some((record.id.clone(), record.user_id.clone())),
            decision: None,
            lease: None,
            pool_calls: None,
        }
    }

    fn with(mut self, result: Result<Reply, Error>) -> Self {
        self.result = result;
        self
    }
}

#[event(fetch)]
pub async fn fetch(req: web_sys::Request, env: Env, wctx: Context) -> worker::Result<Response> {
    let req = Req::new(req);
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

    let client_ip = req.headers().get(CLIENT_IP).ok().flatten();
    let mut outcome = match throttle::blocked(client_ip.as_deref(), started) {
        // Refused before any storage read: guessing costs the guesser, not the gateway.
        Some(retry_after) => Outcome::of(Err(Error::TooManyFailedAttempts { retry_after })),
        None => {
            let incoming = Incoming {
                req: &req,
                method: &method,
                path,
                query,
            };
            // The binding is looked up only for a failure (a crossing saved on every success).
            let limiter = || env.rate_limiter(AUTH_FAILURES_BINDING).ok();
            let mut outcome = handle(incoming, env.clone(), &wctx, &request_id, &client_ip).await;
            if let Err(e) = &outcome.result {
                if throttle::counts_as_failure(e) {
                    let limiter = limiter();
                    outcome.result =
                        throttle::record_failure(limiter, client_ip.as_deref(), started, e.clone())
                            .await;
                }
            }
            outcome
        }
    };
    let (status, code, cause) = match &outcome.result {
        Ok(reply) => (
            reply.response.status_code(),
            None,
            reply.note.map(Cause::name),
        ),
        Err(e) => (e.status(), Some(e.code()), e.cause()),
    };
    let result = std::mem::replace(&mut outcome.result, Err(Error::Internal));
    let mut response = match result {
        Ok(reply) => reply.response,
        Err(e) => http::error_response(&e, &request_id),
    };
    let _ = response.headers_mut().set(HEADER_REQUEST_ID, &request_id);
    if is_settings_path(path) {
        // Every answer under /settings, the page's files, redirects and errors alike.
        for (name, value) in SECURITY_HEADERS {
            let _ = response.headers_mut().set(name, value);
        }
    }
    if let Some(d) = &outcome.decision {
        http::set_rate_limit_headers(response.headers_mut(), d);
    }
    let (key_id, user_id) = match &outcome.key {
        Some((k, u)) => (Some(k.as_str()), Some(u.as_str())),
        None => (None, None),
    };
    let line = LogLine {
        request_id: &request_id,
        method: &method,
        path,
        status,
        code,
        key_id,
        user_id,
        duration_ms: Date::now().as_millis().saturating_sub(started),
        cause,
        lease: outcome.lease.map(|p| p.name()),
        pool_calls: outcome.pool_calls,
    };
    console_log!("{}", line.to_json());
    Ok(response)
}

/// A checked path, routed: an API route, or a settings path (cookie-authenticated).
enum Routed<'a> {
    Api(Route<'a>),
    Settings(Settings<'a>),
}

/// Path, route, configuration, then the caller, in the order of docs/CONTRACT.md section 2;
/// every access decision is [`access`]'s, this only fetches the facts it needs.
async fn handle(
    incoming: Incoming<'_>,
    env: Env,
    wctx: &Context,
    request_id: &str,
    client_ip: &Option<String>,
) -> Outcome {
    let Incoming {
        req,
        method,
        path,
        query,
    } = incoming;
    let routed = check_path(path).and_then(|()| {
        if is_settings_path(path) {
            settings_paths::resolve(method, path).map(Routed::Settings)
        } else {
            resolve(method, path).map(Routed::Api)
        }
    });
    let routed = match routed {
        Ok(routed) => routed,
        Err(e) => return Outcome::of(Err(e)),
    };
    let config = match load_config(&env) {
        Ok(config) => config,
        Err(e) => return Outcome::of(Err(e)),
    };
    let ctx = Ctx {
        env,
        config,
        request_id: request_id.to_owned(),
        nonce: std::cell::OnceCell::new(),
        now: (Date::now().as_millis() / 1000) as i64,
        client_ip: client_ip.clone(),
        pool_calls: std::cell::Cell::new(None),
    };
    let route = match routed {
        Routed::Api(route) => route,
        // Cookie-authenticated (section 11): no Authorization header is read there.
        Routed::Settings(s) => {
            return Outcome::of(settings::handle(&ctx, incoming, s).await);
        }
    };
    let Some(need) = access::need(&route) else {
        return Outcome::of(match route {
            // The contract (checked by schemathesis in `make test`), a static asset.
            Route::OpenApi => assets::respond(&ctx, File::OpenApi).await.map(Reply::from),
            Route::Jwks => assertion::jwks_response(&ctx).await.map(Reply::from),
            Route::Leaks => leak::report(&ctx, req).await,
            _ => http::json(200, &serde_json::json!({"status": "ok"})).map(Reply::from),
        });
    };
    // Failed authentications must be countable before any credential is judged.
    if let Err(e) = throttle::require_binding(&ctx) {
        return Outcome::of(Err(e));
    }
    let header = req.headers().get(AUTHORIZATION).ok().flatten();
    let credential = parse_authorization(header.as_deref()).and_then(|c| {
        access::credential(&need, matches!(c, Credential::Admin(_)))?;
        Ok(c)
    });
    match credential {
        Err(e) => Outcome::of(Err(e)),
        Ok(Credential::Admin(token)) => {
            let configured = ctx.config.secrets.admin_token.as_ref().map(|s| s.expose());
            Outcome::of(match access::admin(token, configured) {
                Ok(()) if route == Route::CreateSettingsSession => {
                    settings::create(&ctx, req).await
                }
                Ok(()) if route == Route::ImportKeys => imports::import(&ctx, req).await,
                Ok(())
                    if matches!(
                        route,
                        Route::ListPools | Route::Pool(..) | Route::PoolUsage(..)
                    ) =>
                {
                    pool_admin::manage(&ctx, req, method, query, &route).await
                }
                Ok(()) => keys::manage(&ctx, req, query, &route, &Caller::Admin, None).await,
                Err(e) => Err(e),
            })
        }
        Ok(Credential::ApiKey(key)) => key_request(&ctx, wctx, incoming, &route, &need, key).await,
    }
}

/// A request authenticated by an API key: the record (no storage read for a malformed key),
/// then [`key_route`].
async fn key_request(
    ctx: &Ctx,
    wctx: &Context,
    incoming: Incoming<'_>,
    route: &Route<'_>,
    need: &Need<'_>,
    key: &str,
) -> Outcome {
    let record = match lookup(ctx, key).await {
        Ok(record) => record,
        Err(e) => return Outcome::of(Err(e)),
    };
    let mut out = key_route(ctx, wctx, incoming, route, need, &record).await;
    out.pool_calls = ctx.pool_calls.get();
    // Every refusal by the key's own rate limit ends here, whichever path decided it (the
    // lease, the object, a trigger): noticed once an hour per isolate, in the background.
    if matches!(out.result, Err(Error::RateLimited { .. })) {
        notices::rate_limited(ctx, wctx, &record);
    }
    out
}

/// The known key's request: its object's verdict, [`access::decide_key`], then the route.
async fn key_route(
    ctx: &Ctx,
    wctx: &Context,
    incoming: Incoming<'_>,
    route: &Route<'_>,
    need: &Need<'_>,
    record: &KeyRecord,
) -> Outcome {
    // Identified before the revoked/expired rows, so the log says which key was refused.
    let mut out = Outcome::for_key(record);
    if let Err(e) = access::usable(record, ctx.now) {
        return out.with(Err(e));
    }
    let idempotency_key = match route {
        Route::Forward(fwd) => trigger::idempotency_key(incoming.req, fwd),
        _ => None,
    };
    let planned = plan(route, record, idempotency_key.as_deref());
    let decided = match planned {
        Plan::IdempotentTrigger { idempotency_key } => {
            if let Some((decision, refusal)) = trigger::refused_here(ctx, need, record) {
                // Decided here, before the body is read (the log line says `local`).
                out.lease = Some(lease::Decided::Local);
                out.decision = decision;
                return out.with(Err(refusal));
            }
            let (decision, result) =
                trigger::trigger(ctx, wctx, incoming, need, record, &planned, idempotency_key)
                    .await;
            out.decision = decision;
            return out.with(result);
        }
        Plan::QuotaTrigger { quota } => {
            let (decision, result) =
                trigger::quota_trigger(ctx, wctx, incoming, need, record, &planned, quota).await;
            out.decision = decision;
            return out.with(result);
        }
        Plan::Lease => lease::decide(ctx, wctx, record).await,
        Plan::Exact => key_client::hit(ctx, record, 1, 0)
            .await
            .map(|hit| (hit, lease::Decided::Exact)),
    };
    let verdict = match decided {
        Ok((verdict, path)) => {
            out.lease = Some(path);
            verdict
        }
        Err(e) => return out.with(Err(e)),
    };
    out.decision = access::counted(&verdict);
    if let Err(e) = access::decide_key(record, ctx.now, &verdict, need, ctx.client_addr()) {
        return out.with(Err(e));
    }
    let result = match route {
        Route::Me => keys::me(ctx, record).await.map(Reply::from),
        // What can be refused before the origin call (the query, a declared body too large,
        // no signing secret) is refused before the pools count it: a pool's run is not spent
        // on a call that never leaves.
        Route::Forward(fwd) => match forward::prepare(ctx, incoming, fwd.workspace, record) {
            Ok(call) => {
                let (decision, pooled) = pool::admit(ctx, wctx, record, fwd, out.decision).await;
                out.decision = decision;
                match pooled {
                    Ok(()) => forward::forward_call(ctx, incoming.req, &call).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        _ => {
            let expiry = access::object_expiry(&verdict);
            let caller = Caller::Key(record);
            keys::manage(ctx, incoming.req, incoming.query, route, &caller, expiry).await
        }
    };
    out.with(result)
}

/// Shape and checksum (no storage read for a malformed key), then the record by hash. With
/// `LEGACY_KEYS` on, a key of djangorestframework-api-key's shape is an imported key's
/// (section 15); otherwise it is as malformed as any other.
async fn lookup(ctx: &Ctx, key: &str) -> Result<KeyRecord, Error> {
    if let Err(malformed) = check_key(&ctx.config.key_prefix, key) {
        return match split_key(key) {
            Some((prefix, _)) if ctx.config.legacy_keys => legacy::lookup(ctx, key, prefix).await,
            _ => Err(malformed),
        };
    }
    access::known(store::record_by_hash(ctx, &hash_key(key), true).await?)
}
