"""The service's URLs plus two views that crash, one under /api/ (tests/test_error_shapes.py)."""

from django.urls import path

from config.urls import handler400, handler403, handler404, handler500  # noqa: F401  (the same handlers)
from config.urls import urlpatterns as service_urlpatterns


def crash(request):
    raise RuntimeError("a bug")


urlpatterns = [path("api/crash", crash), path("crash", crash), *service_urlpatterns]
