from django.contrib import admin
from django.urls import include, path

# The API first: its requests are the many, and Django tries the patterns in order.
urlpatterns = [
    path("api/", include("booking.api.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("booking.pages")),
]

handler404 = "booking.api.exceptions.not_found_json"
handler500 = "booking.api.exceptions.server_error_json"
