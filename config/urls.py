from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("booking.api.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("booking.pages")),
]

handler404 = "booking.api.exceptions.not_found_json"
handler500 = "booking.api.exceptions.server_error_json"
