"""keygate_drf against DRF's own request handling (APIClient), with assertions minted by the
package's test helper; the end-to-end test (tests/e2e/django.test.mjs) checks the same package
against assertions signed by a running gateway."""

import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from keygate_drf.testing import mint_assertion, new_test_key

ISS = "https://keygate.test"
AUD = "http://testserver"
JOBS = "/developers/workspaces/ws1/jobs/"


@pytest.fixture()
def key():
    private, jwks = new_test_key("k1")
    conf = {"JWKS": jwks, "ISSUER": ISS, "AUDIENCE": AUD}
    with override_settings(KEYGATE=conf):
        yield private


def get(token, path=JOBS, method="get"):
    client = APIClient()
    headers = {"HTTP_KEYGATE_ASSERTION": token} if token else {}
    return getattr(client, method)(path, **headers)


def mint(private, **kw):
    args = dict(method="GET", url=AUD + JOBS, issuer=ISS, audience=AUD, sub="alice",
                email="alice@example.com", key="key_0123456789abcdef", workspaces=["ws1"],
                permissions=["jobs:read"], kid="k1")
    args.update(kw)
    return mint_assertion(private, **args)


def test_a_valid_assertion_is_the_caller(key):
    r = get(mint(key))
    assert r.status_code == 200, r.content
    assert r.json() == {"user": "alice", "email": "alice@example.com",
                        "key": "key_0123456789abcdef", "workspace": "ws1"}


def test_no_assertion_is_401_with_the_challenge(key):
    r = get(None)
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == 'Keygate-Assertion realm="keygate"'


@pytest.mark.parametrize("change", [
    {"url": AUD + "/developers/workspaces/ws1/secrets/"},   # replayed to another path
    {"method": "POST"},                                      # another method
    {"audience": "https://other.example.com"},              # for another origin
    {"issuer": "https://evil.example.com"},                 # from another gateway
    {"now": time.time() - 120},                              # expired
    {"now": time.time() + 120},                              # issued in the future
    {"kid": "unknown"},                                      # not a published key
])
def test_an_assertion_for_another_request_or_time_is_401(key, change):
    assert get(mint(key, **change)).status_code == 401


def test_a_tampered_or_foreign_signature_is_401(key):
    token = mint(key)
    head, body, sig = token.split(".")
    assert get(f"{head}.{body}x.{sig}").status_code == 401
    other, _ = new_test_key("k1")
    assert get(mint(other)).status_code == 401
    # alg none, and HS256 with the public key as secret: the algorithm is pinned.
    import jwt
    none = jwt.encode({"sub": "x"}, None, algorithm="none", headers={"typ": "keygate-assertion+jwt"})
    assert get(none).status_code == 401


def test_permission_and_workspace_are_checked_in_depth(key):
    assert get(mint(key, permissions=["jobs:run"])).status_code == 403
    assert get(mint(key, permissions=["*"])).status_code == 200
    r = get(mint(key, url=AUD + "/developers/workspaces/ws2/jobs/"), "/developers/workspaces/ws2/jobs/")
    assert r.status_code == 403
    r = get(mint(key, workspaces=["*"], url=AUD + "/developers/workspaces/ws2/jobs/"),
            "/developers/workspaces/ws2/jobs/")
    assert r.status_code == 200


def test_behind_another_proxy_htu_is_checked_against_origin_url(key):
    from django.conf import settings
    conf = dict(settings.KEYGATE, ORIGIN_URL="https://api.example.com/")
    with override_settings(KEYGATE=conf):
        token = mint(key, url="https://api.example.com" + JOBS)
        assert get(token).status_code == 200
        assert get(mint(key)).status_code == 401


def test_htu_is_compared_as_the_same_request_not_the_same_spelling():
    from keygate_drf.authentication import _canonical
    assert _canonical("http://TestServer:80/a/%7Eb/x%3Dy?q=a%20b&e=") == _canonical("http://testserver/a/~b/x=y?q=a+b&e=")
    assert _canonical("https://h:443/p") == _canonical("https://h/p")
    assert _canonical("http://h/p?a=1&b=2") != _canonical("http://h/p?b=2&a=1")
    assert _canonical("http://h/p") != _canonical("http://h/p/")
    assert _canonical("http://h/a%2Fb") == _canonical("http://h/a/b")  # both reach the same view here


def test_hs256_with_the_public_key_as_secret_is_refused(key):
    from cryptography.hazmat.primitives import serialization
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": ISS, "aud": AUD, "sub": "x", "key": "k", "workspaces": ["*"], "permissions": ["*"],
              "htm": "GET", "htu": AUD + JOBS, "jti": "j", "iat": int(time.time()), "exp": int(time.time()) + 60}
    # PyJWT itself refuses to HMAC with a PEM key; signed by hand, as an attacker would.
    import base64, hashlib, hmac, json as _json
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(_json.dumps({"alg": "HS256", "kid": "k1", "typ": "keygate-assertion+jwt"}).encode())
    body = b64(_json.dumps(claims).encode())
    sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    assert get(f"{head}.{body}.{sig}").status_code == 401


def test_the_body_hash_is_checked_when_the_assertion_has_one(key):
    import base64, hashlib
    path = "/developers/workspaces/ws1/jobs/daily_etl/run/"
    body = b'{"date": "2026-12-03"}'
    h = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    client = APIClient()
    ok = mint(key, method="POST", url=AUD + path, permissions=["jobs:run"], body_sha256=h)
    r = client.post(path, data=body, content_type="application/json", HTTP_KEYGATE_ASSERTION=ok)
    assert r.status_code == 201, r.content
    other = client.post(path, data=b'{"date": "2099-01-01"}', content_type="application/json", HTTP_KEYGATE_ASSERTION=ok)
    assert other.status_code == 401


def test_with_a_replay_cache_each_assertion_is_accepted_once(key):
    from django.conf import settings
    conf = dict(settings.KEYGATE, REPLAY_CACHE="default")
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(KEYGATE=conf, CACHES=caches):
        token = mint(key)
        assert get(token).status_code == 200
        assert get(token).status_code == 401
        assert get(mint(key)).status_code == 200


def test_a_key_set_by_url_drops_a_retired_key_at_its_next_fetch(monkeypatch):
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from keygate_drf import authentication

    old, old_set = new_test_key("old")
    new, new_set = new_test_key("new")
    served = {"keys": old_set["keys"] + new_set["keys"]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = _json.dumps(served).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    try:
        with override_settings(KEYGATE={"JWKS_URL": url, "ISSUER": ISS, "AUDIENCE": AUD}):
            assert get(mint(old, kid="old")).status_code == 200
            assert get(mint(new, kid="new")).status_code == 200
            served["keys"] = new_set["keys"]  # rotation's last step: the old key retired
            monkeypatch.setattr(authentication, "JWKS_LIFESPAN", 0)
            assert get(mint(old, kid="old")).status_code == 401
            assert get(mint(new, kid="new")).status_code == 200
    finally:
        server.shutdown()


def test_the_settings_helper_refuses_to_send_the_admin_token_in_clear():
    from keygate_drf.views import open_settings_session
    with pytest.raises(ValueError):
        open_settings_session(gateway_url="http://keygate.example.com", admin_token="x", user_id="u",
                              email="u@example.com", workspaces=["*"], permissions=["*"])
