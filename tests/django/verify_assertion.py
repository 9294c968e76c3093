"""Verifies a gateway's Keygate-Assertion with PyJWT against its published key set, the way an
origin's JWT library would (tests/e2e/assertion.test.mjs runs it).

Usage: python verify_assertion.py JWKS_URL AUDIENCE ISSUER  (the token on stdin)

Prints the verified header and claims as JSON; exits 1 with the reason when verification fails.
"""

import json
import sys

import jwt

jwks_url, audience, issuer = sys.argv[1:4]
token = sys.stdin.read().strip()
try:
    signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        leeway=5,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
except jwt.PyJWTError as e:
    print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"header": jwt.get_unverified_header(token), "claims": claims}))
