"""``KeygateAssertionAuthentication``: the caller is who keygate's signed assertion says."""

import hashlib
import json
import threading
import time
import urllib.request
from base64 import urlsafe_b64encode
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from django.core.cache import caches
from rest_framework import authentication, exceptions

from .conf import keygate_settings

HEADER = "HTTP_KEYGATE_ASSERTION"
TYP = "keygate-assertion+jwt"
REQUIRED = ["iss", "aud", "sub", "key", "workspaces", "permissions", "htm", "htu", "jti", "iat", "exp"]

# How long a fetched key set is used (the gateway's Cache-Control), how soon an unknown kid may
# refetch it (a flood of forged kids costs one fetch per this long), and the fetch's timeout.
JWKS_LIFESPAN = 300
JWKS_REFETCH_AFTER = 30
JWKS_TIMEOUT = 5

_sets = {}
_lock = threading.Lock()


class _KeySet:
    """The gateway's key set at a URL: fetched, used for JWKS_LIFESPAN seconds, refetched early
    (at most every JWKS_REFETCH_AFTER) for an unknown kid, and kept when a refetch fails. A key
    removed from the set (rotation's last step) stops verifying with the next fetch."""

    def __init__(self, url):
        self.url = url
        self.keys = None
        self.fetched = 0.0

    def _fetch(self):
        with urllib.request.urlopen(self.url, timeout=JWKS_TIMEOUT) as resp:
            data = json.load(resp)
        self.keys = {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(data).keys}
        self.fetched = time.monotonic()

    def key(self, kid):
        with _lock:
            age = time.monotonic() - self.fetched
            stale = self.keys is None or age >= JWKS_LIFESPAN
            unknown = self.keys is not None and kid not in self.keys and age >= JWKS_REFETCH_AFTER
            if stale or unknown:
                try:
                    self._fetch()
                except (OSError, ValueError, jwt.PyJWTError):
                    if self.keys is None:
                        raise jwt.InvalidTokenError("the gateway's key set could not be fetched")
            key = self.keys.get(kid)
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        return key


def _key_set(url):
    with _lock:
        return _sets.setdefault(url, _KeySet(url))


def _signing_key(token, conf):
    kid = jwt.get_unverified_header(token).get("kid")
    if conf.jwks is not None:
        for key in jwt.PyJWKSet.from_dict(conf.jwks).keys:
            if key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError("unknown kid")
    return _key_set(conf.jwks_url).key(kid)


def _canonical(url):
    """A URL as compared for htu: scheme and host lowercased, default port dropped, the path
    percent-decoded, the query as its decoded pairs in order. The gateway signs the URL as the
    runtime wrote it and Django rebuilds it with its own escaping; both name the same request."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    scheme = parts.scheme.lower()
    if (scheme, port) in (("http", 80), ("https", 443)):
        port = None
    netloc = f"{host}:{port}" if port else host
    return (scheme, netloc, unquote(parts.path), parse_qsl(parts.query, keep_blank_values=True))


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
    if claims["htm"] != method or _canonical(claims["htu"]) != _canonical(url):
        raise jwt.InvalidTokenError("the assertion is for another request")
    return claims


def check_body(claims, body):
    """The assertion's body_sha256 (the idempotent job trigger's), when it has one, against the
    body received."""
    expected = claims.get("body_sha256")
    if expected is None:
        return
    digest = urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    if digest != expected:
        raise jwt.InvalidTokenError("the body is not the one the assertion covers")


def check_replay(claims, conf):
    """With KEYGATE["REPLAY_CACHE"] (a Django cache alias), each jti is accepted once."""
    if not conf.replay_cache:
        return
    ttl = max(1, int(claims["exp"] - time.time()) + conf.leeway)
    if not caches[conf.replay_cache].add(f"keygate-jti:{claims['jti']}", 1, timeout=ttl):
        raise jwt.InvalidTokenError("the assertion was used already")


class KeygateUser:
    """The caller, as the assertion says: a key (``key_id``) of a user (``id``)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, claims):
        self.claims = claims
        self.id = self.pk = claims["sub"]
        self.email = claims.get("email")
        self.key_id = claims["key"]
        self.workspaces = list(claims["workspaces"])
        self.permissions = list(claims["permissions"])

    def __str__(self):
        return self.email or self.id

    def get_username(self):
        return self.id

    def has_perm(self, perm, obj=None):
        """Django's model permissions: none (keygate's are checked by HasKeygatePermission)."""
        return False

    def has_perms(self, perms, obj=None):
        return False

    def has_module_perms(self, app_label):
        return False


class KeygateAssertionAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by its ``Keygate-Assertion``: ``request.user`` is a
    ``KeygateUser``, ``request.auth`` the verified claims. No header: not authenticated (DRF then
    answers 401 where a permission needs a user); a bad one: 401."""

    def authenticate(self, request):
        token = request.META.get(HEADER)
        if not token:
            return None
        try:
            conf = keygate_settings()
            claims = verify(token, request.method, expected_url(request, conf), conf)
            check_body(claims, request.body)
            check_replay(claims, conf)
        except jwt.PyJWTError as e:
            raise exceptions.AuthenticationFailed(f"invalid Keygate-Assertion: {e}") from None
        return KeygateUser(claims), claims

    def authenticate_header(self, request):
        return 'Keygate-Assertion realm="keygate"'
