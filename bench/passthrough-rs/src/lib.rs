//! The plainest pass-through the `worker` crate allows (bench only): the target URL from
//! `ORIGIN_URL` + path + query, the request's headers cloned into a `RequestInit` with its
//! method, `Request::new_with_init`, `Fetch::Request(..).send()`, nothing else.

use worker::{event, Context, Env, Fetch, Request, RequestInit, Response, Result};

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = env.var("ORIGIN_URL")?.to_string();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{origin}{}?{q}", url.path()),
        None => format!("{origin}{}", url.path()),
    };
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(req.headers().clone());
    Fetch::Request(Request::new_with_init(&target, &init)?)
        .send()
        .await
}
