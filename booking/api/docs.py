"""The OpenAPI schema and its interactive page (drf-spectacular), answering errors in JSON.

Their renderers are YAML and an HTML template, so DRF rendered their errors
(a wrong method, an unknown ``?format=``, a refused ``Accept``) in YAML or as
plain text, and an OPTIONS request for the page crashed on its missing
template. Here an error, and an OPTIONS answer, use the API's JSON renderer,
in the API's shape like every other view under /api/.
"""

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.response import Response

from .renderers import FastJSONRenderer


class JSONErrorsMixin:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        if isinstance(response, Response) and (response.status_code >= 400 or request.method == "OPTIONS"):
            renderer = FastJSONRenderer()
            response.accepted_renderer, response.accepted_media_type = renderer, renderer.media_type
        return response


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    pass


class DocsView(JSONErrorsMixin, SpectacularSwaggerView):
    pass
