"""``KeygateAssertionAuthentication``: the caller is who keygate's signed assertion says."""

import threading

import jwt
from rest_framework import authentication, exceptions

from .conf import keygate_settings

HEADER = "HTTP_KEYGATE_ASSERTION"
TYP = "keygate-assertion+jwt"
REQUIRED = ["iss", "aud", "sub", "key", "workspaces", "permissions", "htm", "htu", "jti", "iat", "exp"]

_clients = {}
_lock = threading.Lock()


def _jwks_client(url):
    with _lock:
        client = _clients.get(url)
        if client is None:
            # The gateway's key set is cacheable for 300 s; an unknown kid refetches it (a
            # rotation publishes the next key at least that long before it signs).
            client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300)
            _clients[url] = client
        return client


def _signing_key(token, conf):
    if conf.jwks is not None:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in jwt.PyJWKSet.from_dict(conf.jwks).keys:
            if key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError("unknown kid")
    return _jwks_client(conf.jwks_url).get_signing_key_from_jwt(token).key


def expected_url(request, conf=None):
    """The URL the gateway must have forwarded this request to (the assertion's htu)."""
    conf = conf or keygate_settings()
    if conf.origin_url:
        return conf.origin_url + request.get_full_path()
    return request.build_absolute_uri()


def verify(token, method, url, conf=None):
    """The claims of a valid assertion for this method and URL; raises jwt.InvalidTokenError."""
    conf = conf or keygate_settings()
    header = jwt.get_unverified_header(token)
    if header.get("alg") != "ES256" or header.get("typ") != TYP:
        raise jwt.InvalidTokenError("not a keygate assertion")
    claims = jwt.decode(
        token,
        _signing_key(token, conf),
        algorithms=["ES256"],  # pinned: never taken from the token
        audience=conf.audience,
        issuer=conf.issuer,
        leeway=conf.leeway,
        options={"require": REQUIRED},
    )
    if claims["htm"] != method or claims["htu"] != url:
        raise jwt.InvalidTokenError("the assertion is for another request")
    return claims


class KeygateUser:
    """The caller, as the assertion says: a key (``key_id``) of a user (``id``)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, claims):
        self.claims = claims
        self.id = self.pk = claims["sub"]
        self.email = claims.get("email")
        self.key_id = claims["key"]
        self.workspaces = list(claims["workspaces"])
        self.permissions = list(claims["permissions"])

    def __str__(self):
        return self.email or self.id


class KeygateAssertionAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by its ``Keygate-Assertion``: ``request.user`` is a
    ``KeygateUser``, ``request.auth`` the verified claims. No header: not authenticated (DRF then
    answers 401 where a permission needs a user); a bad one: 401."""

    def authenticate(self, request):
        token = request.META.get(HEADER)
        if not token:
            return None
        try:
            claims = verify(token, request.method, expected_url(request))
        except jwt.PyJWTError as e:
            raise exceptions.AuthenticationFailed(f"invalid Keygate-Assertion: {e}") from None
        return KeygateUser(claims), claims

    def authenticate_header(self, request):
        return 'Keygate-Assertion realm="keygate"'
