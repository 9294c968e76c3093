"""The example origin's jobs API written with Django and Django REST framework, authenticated by
keygate's signed assertion through the keygate_drf package (clients/django): what a platform
whose API is DRF adds to sit behind keygate. One file, no database.

    python examples/django_origin.py --port 8789 \\
        --jwks-url http://127.0.0.1:8787/.well-known/jwks.json \\
        --issuer http://127.0.0.1:8787 --audience http://127.0.0.1:8789

(or --jwks '<JSON key set>' instead of --jwks-url). The end-to-end tests run it behind the
gateway (tests/e2e/django.test.mjs).
"""

import argparse
import json
import os
import secrets
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "django"))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

WORKSPACES = [
    {"id": "demo", "name": "Demo workspace"},
    {"id": "analytics", "name": "Analytics"},
    {"id": "ws1", "name": "Workspace ws1"},
]
JOBS = [{"id": "daily_etl", "name": "Daily ETL"}, {"id": "dbt_build", "name": "dbt build"}]


def configure(args):
    keygate = {"ISSUER": args.issuer, "AUDIENCE": args.audience, "LEEWAY": 5}
    if args.jwks:
        keygate["JWKS"] = json.loads(args.jwks)
    else:
        keygate["JWKS_URL"] = args.jwks_url
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_hex(16),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        DATABASES={},
        MIDDLEWARE=[],
        APPEND_SLASH=False,
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["keygate_drf.KeygateAssertionAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["keygate_drf.HasKeygatePermission"],
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "UNAUTHENTICATED_USER": None,
        },
        KEYGATE=keygate,
        LOGGING={"version": 1, "disable_existing_loggers": True},
    )
    django.setup()


def views():
    from keygate_drf.permissions import covers
    from rest_framework.response import Response
    from rest_framework.views import APIView

    def identity(request):
        u = request.user
        return {"user_id": u.id, "email": u.email, "key_id": u.key_id,
                "request_id": request.auth.get("request_id")}

    class Workspaces(APIView):
        keygate_permission = "workspaces:read"

        def get(self, request):
            # Only the caller's workspaces: keygate authorizes the route, not the listing.
            mine = [w for w in WORKSPACES if covers(request.user.workspaces, w["id"])]
            return Response({"results": mine, "identity": identity(request)})

    class Jobs(APIView):
        keygate_permission = "jobs:read"

        def get(self, request, workspace_id):
            return Response({"results": JOBS, "identity": identity(request)})

    class Run(APIView):
        keygate_permission = "jobs:run"

        def post(self, request, workspace_id, job_id):
            return Response({"execution_id": f"exec_{secrets.token_hex(8)}", "job_id": job_id,
                             "workspace_id": workspace_id, "triggered_by": str(request.user),
                             "identity": identity(request)}, status=201)

    return Workspaces, Jobs, Run


urlpatterns = []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8789)
    p.add_argument("--jwks-url")
    p.add_argument("--jwks")
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", required=True)
    args = p.parse_args()
    configure(args)
    from django.urls import path

    workspaces, jobs, run = views()
    urlpatterns.extend([
        path("developers/workspaces/", workspaces.as_view()),
        path("developers/workspaces/<str:workspace_id>/jobs/", jobs.as_view()),
        path("developers/workspaces/<str:workspace_id>/jobs/<str:job_id>/run/", run.as_view()),
    ])
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *a):  # the tests read stdout for the port line only
            pass

    server = make_server("127.0.0.1", args.port, get_wsgi_application(), handler_class=Quiet)
    print(f"django origin listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
