from django.contrib import admin
from django.urls import include, path

from booking.monitoring import metrics_view

# The API first: its requests are the many, and Django tries the patterns in order.
urlpatterns = [
    path("api/", include("booking.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("booking.pages")),
]

# JSON in the API's shape under /api/, Django's HTML pages elsewhere (booking/error_views.py).
handler400 = "booking.error_views.bad_request"
handler403 = "booking.error_views.permission_denied"
handler404 = "booking.error_views.page_not_found"
handler500 = "booking.error_views.server_error"
