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
