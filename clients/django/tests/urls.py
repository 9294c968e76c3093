from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView


class Jobs(APIView):
    keygate_permission = "jobs:read"

    def get(self, request, workspace_id):
        return Response({"user": request.user.id, "email": request.user.email,
                         "key": request.user.key_id, "workspace": workspace_id})


class Run(APIView):
    keygate_permission = "jobs:run"

    def post(self, request, workspace_id, job_id):
        return Response({"run": job_id, "by": str(request.user)}, status=201)


urlpatterns = [
    path("developers/workspaces/<str:workspace_id>/jobs/", Jobs.as_view()),
    path("developers/workspaces/<str:workspace_id>/jobs/<str:job_id>/run/", Run.as_view()),
]
