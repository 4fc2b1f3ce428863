"""URLs of the demo: the shop at the root, the personalization API, the admin and sign-in pages."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from storefront_demo.shop import views as shop_views

urlpatterns = [
    path("", include("storefront_demo.shop.urls")),
    path("api/personalization/", include("personalization.api.urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", shop_views.signup, name="signup"),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
