"""Assertions for the platform's own tests: what keygate would send, signed with a test key.

    from keygate_drf.testing import new_test_key, mint_assertion
    private, jwks = new_test_key()            # settings.KEYGATE["JWKS"] = jwks in tests
    token = mint_assertion(private, method="GET", url="http://testserver/api/jobs/",
                           issuer=..., audience=..., sub="alice", workspaces=["ws1"])
    client.get("/api/jobs/", HTTP_KEYGATE_ASSERTION=token)
"""

import json
import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from .authentication import TYP


def new_test_key(kid="test"):
    """A fresh P-256 key: (private key object, the public JWK set to configure as JWKS)."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    public.update(kid=kid, alg="ES256", use="sig")
    return private, {"keys": [public]}


def mint_assertion(private_key, *, method, url, issuer, audience, sub="user", email=None,
                   key="key_0000000000000000", ws=None, workspaces=("*",), permissions=("*",),
                   kid="test", now=None, ttl=60, body_sha256=None, request_id="test"):
    """A Keygate-Assertion as the gateway makes it (docs/CONTRACT.md section 16)."""
    iat = int(now if now is not None else time.time())
    claims = {
        "iss": issuer, "aud": audience, "sub": sub, "key": key,
        "workspaces": list(workspaces), "permissions": list(permissions),
        "htm": method, "htu": url, "jti": secrets.token_hex(16), "request_id": request_id,
        "iat": iat, "exp": iat + ttl,
    }
    if email:
        claims["email"] = email
    if ws:
        claims["ws"] = ws
    if body_sha256:
        claims["body_sha256"] = body_sha256
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid, "typ": TYP})
