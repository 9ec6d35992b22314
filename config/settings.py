"""Settings, read from the environment (django-environ).

Every deployment knob is an environment variable; the defaults give the
embedded run: SQLite in ./var, no servers needed.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("BOOKING_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]", "testserver"]),
)

# Off unless asked for: `make run` and the test suite (tests/settings.py) set DEBUG=true.
DEBUG = env("DEBUG")
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random string, "
            "generated once and kept secret (e.g. export SECRET_KEY=\"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))')\"), or set DEBUG=true for a development run."
        )
    # Development only (DEBUG=true): a fixed key, so sessions survive a restart.
    SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# A failed CSRF check: JSON in the API's shape under /api/, Django's page elsewhere.
CSRF_FAILURE_VIEW = "booking.error_views.csrf_failure"

# --- Production security (DEBUG=false) ------------------------------------------
# The app servers sit behind a load balancer that terminates TLS and sets
# X-Forwarded-Proto (it must overwrite any the client sent). `manage.py check
# --deploy` passes with the production environment of docs/operations.md.
if not DEBUG:
    if env.bool("SECURE_PROXY_SSL_HEADER", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # The load balancer's health check may come in plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^api/health$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Booking rules (documented in docs/operations.md) -----------------------
BOOKING_HOLD_SECONDS = env.int("BOOKING_HOLD_SECONDS", default=60)
# None: 10 x the event's hold_seconds.
BOOKING_MAX_HOLD_SECONDS = env.int("BOOKING_MAX_HOLD_SECONDS", default=None)
BOOKING_LOCK_TIMEOUT_MS = env.int("BOOKING_LOCK_TIMEOUT_MS", default=3000)
BOOKING_MAX_HOLDS = env.int("BOOKING_MAX_HOLDS", default=10)
# A holder may cancel a booking until this long before its event starts (the box office any time).
BOOKING_CANCEL_CUTOFF_SECONDS = env.int("BOOKING_CANCEL_CUTOFF_SECONDS", default=0)
# How long a write's Idempotency-Key and its answer are kept; how long a running request
# keeps its key before a retry may take over (longer than any request: the lock timeout
# bounds a request's waits).
BOOKING_IDEMPOTENCY_SECONDS = env.int("BOOKING_IDEMPOTENCY_SECONDS", default=86400)
BOOKING_IDEMPOTENCY_LEASE_SECONDS = env.int("BOOKING_IDEMPOTENCY_LEASE_SECONDS", default=15)
# Webhooks (booking/services/webhooks.py): how long a process keeps the list of endpoints
# (every seat write asks it), how often beat sends what is due, how long delivered
# messages are kept.
BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS = env.float("BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS", default=1.0)
BOOKING_WEBHOOK_POLL_SECONDS = env.float("BOOKING_WEBHOOK_POLL_SECONDS", default=5.0)
BOOKING_WEBHOOK_RETENTION_DAYS = env.int("BOOKING_WEBHOOK_RETENTION_DAYS", default=30)
BOOKING_WEBHOOK_TIMEOUT_SECONDS = env.float("BOOKING_WEBHOOK_TIMEOUT_SECONDS", default=15.0)
# How many of a batch's attempts to one endpoint are in flight at once (each on a connection
# of its own, kept alive); 1 sends them one after the other.
BOOKING_WEBHOOK_PARALLEL_ATTEMPTS = env.int("BOOKING_WEBHOOK_PARALLEL_ATTEMPTS", default=8)
# Seconds to wait after each failed attempt; after the last, a delivery has failed.
BOOKING_WEBHOOK_RETRY_SCHEDULE = [
    float(seconds)
    for seconds in env.list(
        "BOOKING_WEBHOOK_RETRY_SCHEDULE", default=["5", "300", "1800", "7200", "18000", "36000", "36000"]
    )
]
BOOKING_SWEEP_SECONDS = env.float("BOOKING_SWEEP_SECONDS", default=5.0)
BOOKING_SWEEP_BATCH = env.int("BOOKING_SWEEP_BATCH", default=10000)
# Concurrent sweeps per beat run on PostgreSQL (each its own connection and rows).
BOOKING_SWEEP_WORKERS = env.int("BOOKING_SWEEP_WORKERS", default=2)
# How long a process keeps an API token's user (booking/api/authentication.py); 0: ask
# the database on every request. A token revoked elsewhere works at most this long.
BOOKING_TOKEN_CACHE_SECONDS = env.float("BOOKING_TOKEN_CACHE_SECONDS", default=2.0)

INSTALLED_APPS = [
    # First: its runserver command serves HTTP and WebSockets (ASGI).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    # The admin's seat import with a preview (booking/admin_layouts.py).
    "import_export",
    "booking",
]

MIDDLEWARE = [
    # Requests by view and status, and their latency (django-prometheus), around everything else.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # A view's database error (a dropped connection): 503 for the pages and the admin, not 500.
    "booking.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue
    # (for at most the lock timeout) instead of failing at once.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": BOOKING_LOCK_TIMEOUT_MS / 1000,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so tests can race threads on it.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    _db["ENGINE"] = "django.db.backends.postgresql"
    _options = _db.setdefault("OPTIONS", {})
    # Bounds every row-lock wait; the API turns the error into 503 busy.
    _options["options"] = f"-c lock_timeout={BOOKING_LOCK_TIMEOUT_MS}"
    # psycopg's own prepared statements: parameters bound by the server, and a statement run
    # DATABASE_PREPARE_THRESHOLD times on a connection prepared there (protocol-level, which
    # PgBouncer 1.21+ tracks with max_prepared_statements; false for an older pooler in
    # transaction mode). Measured: PostgreSQL's CPU per booking 2.16 -> 1.44 ms, bookings/s
    # +15 % (docs/benchmark.md).
    if env.bool("DATABASE_SERVER_SIDE_BINDING", default=True):
        _options["server_side_binding"] = True
        _options["prepare_threshold"] = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    if env.bool("DATABASE_POOL", default=False):
        _options["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=8),
            "timeout": 10,
        }
        _db["CONN_MAX_AGE"] = 0
    else:
        _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        # Off: a check is one more round trip on every request (a sixth of a booking's).
        # A connection that died meanwhile fails one request (503 busy) and is then replaced.
        _db["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)

# Off by default: django-prometheus' engine of the same database counts queries, errors and
# connections and times every statement (one more timer per statement of every request).
if env.bool("METRICS_DATABASE", default=False):
    _db["ENGINE"] = _db["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# The venue's time zone: the pages show the events' dates in it (the API always speaks UTC).
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# --- Metrics (/metrics, booking/monitoring.py; docs/operations.md) ----------------
# Let in: a bearer token (when set), or a connection from these networks (REMOTE_ADDR).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
# django-prometheus' request latency buckets, from 1 ms (a booking takes a few).
PROMETHEUS_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
# How long a rendered seat map is kept (booking/api/seat_map.py); it is used only while its ETag is current.
BOOKING_SEAT_MAP_CACHE_SECONDS = env.float("BOOKING_SEAT_MAP_CACHE_SECONDS", default=60.0)

# --- Cache: throttling counters; share one across servers (CACHE_URL=redis://…) --
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- Dependencies that may fail: bounded waits (booking/dependencies.py, docs/operations.md) --
# Every call to the cache, the channel layer and the broker waits at most these many seconds
# to connect and for a reply; after a failure the dependency is skipped for
# DEPENDENCY_RETRY_SECONDS (per process), and the feature that needs it degrades.
DEPENDENCY_CONNECT_TIMEOUT = env.float("DEPENDENCY_CONNECT_TIMEOUT", default=0.2)
DEPENDENCY_TIMEOUT = env.float("DEPENDENCY_TIMEOUT", default=0.3)
DEPENDENCY_RETRY_SECONDS = env.float("DEPENDENCY_RETRY_SECONDS", default=5.0)
_redis_timeouts = {"socket_connect_timeout": DEPENDENCY_CONNECT_TIMEOUT, "socket_timeout": DEPENDENCY_TIMEOUT}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    from booking.dependencies import CacheConnection

    CACHES["default"].setdefault("OPTIONS", {}).update(_redis_timeouts, connection_class=CacheConnection)

# --- Channel layer: live seat updates (booking/live.py, booking/consumers.py) ---
# In memory by default: it reaches only the clients of this one process, which
# is all the embedded run needs (its page turns expired holds free by itself).
# With REDIS_URL every app server, the Celery worker and the admin reach every
# client. RedisChannelLayer rather than RedisPubSubChannelLayer: it is the
# stable, documented layer, and its per-channel queues are bounded (capacity,
# expiry). Only each live process's feed of an event is a group member, not
# each socket (booking/live_feed.py), so a push costs Redis one message per
# event and process. Sync code (the WSGI server's threads, Celery) publishes
# through booking/live.py's publisher thread.
#: Seconds a channel layer read may wait: longer than channels-redis' blocking pop (brpop_timeout).
CHANNEL_LAYER_READ_TIMEOUT = 10.0
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # The connect timeout is longer than the others: in a burst of connects the live
                # process's event loop is busy for a moment, and no request thread waits on it (a
                # feed that cannot join closes its socket: 4503). The read timeout must outlast
                # channels-redis' blocking pop (5 s): redis-py's default is 5 s too, and a message
                # Redis popped just as the read gave up was lost (the watchers benchmark lost a
                # round's changes that way). The publisher bounds each send itself (booking/live.py).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": max(DEPENDENCY_CONNECT_TIMEOUT, 2.0),
                        "socket_timeout": CHANNEL_LAYER_READ_TIMEOUT,
                    }
                ],
                "prefix": env.str("CHANNEL_LAYER_PREFIX", default="booking"),
                "capacity": 1000,
                "expiry": 30,
                # Each live process's feed of an event renews its membership every minute
                # (booking/live_feed.py): a process that died leaves none behind for long.
                "group_expiry": 300,
            },
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The ASGI server's garbage collector (config/asgi.py), far less eager than CPython's (700, 10, 10):
# with 2 000 sockets the objects of one round's sends outlived two young collections, so a full one
# walked 420 000 objects every few seconds and stopped every socket for 0.3-0.5 s (docs/benchmark.md).
# Reference counting still frees everything that is not in a cycle at once. Empty: CPython's own.
_gc_thresholds = env.list("BOOKING_LIVE_GC_THRESHOLDS", default=["50000", "20", "10"])
if len(_gc_thresholds) > 3 or not all(n.strip().isdigit() for n in _gc_thresholds):
    raise ImproperlyConfigured(
        "BOOKING_LIVE_GC_THRESHOLDS takes up to three non-negative integers (gc.set_threshold), e.g. 50000,20,10"
    )
BOOKING_LIVE_GC_THRESHOLDS = [int(n) for n in _gc_thresholds]

# --- REST framework ----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "booking.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_RENDERER_CLASSES": ["booking.api.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["booking.api.parsers.FastJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "booking.api.renderers.JSONFirstNegotiation",
    "DEFAULT_THROTTLE_CLASSES": [
        "booking.api.throttling.AnonRateThrottle",
        "booking.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON_RATE", default="600/minute"),
        "user": env.str("THROTTLE_USER_RATE", default="6000/minute"),
    },
    "EXCEPTION_HANDLER": "booking.api.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # How many proxies in front set X-Forwarded-For (the load balancer: 1). 0: the header is
    # ignored and a caller is its connection's address (REMOTE_ADDR); otherwise DRF takes the
    # address that many hops from the right, which a client cannot forge.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Seat booking service",
    "DESCRIPTION": (
        "Hold seats for a short time, then book them for good; no two holders ever "
        "get the same seat. Errors share one shape: {code, detail, seats?}."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery: the expiry sweep (booking.tasks) on beat --------------------------
# The default broker needs no server: Kombu's filesystem transport in var/,
# one folder for both directions, so a worker and beat on this machine share
# it. Production: CELERY_BROKER_URL=redis://... (or amqp://...). No result
# backend: the sweep's outcome is in the database and the log.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "polling_interval": 0.5,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request's send to a broker that is down or silent waits at most the dependency
# timeouts, once (no publish retries): the webhook's delivery row is committed and beat's
# deliver-due task sends it later (booking/services/webhooks.py).
CELERY_BROKER_CONNECTION_TIMEOUT = DEPENDENCY_CONNECT_TIMEOUT
CELERY_TASK_PUBLISH_RETRY = False
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {**_redis_timeouts, "max_retries": 0}
CELERY_TASK_IGNORE_RESULT = True
# Webhook attempts on a queue of their own, served by a worker of many threads (Procfile's
# webhooks:): a slow receiver holds one thread for up to 15 s, never the expiry sweep.
CELERY_TASK_ROUTES = {"booking.tasks.deliver_webhooks": {"queue": "webhooks"}}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "deliver-due-webhooks": {
        "task": "booking.tasks.deliver_due_webhooks",
        "schedule": BOOKING_WEBHOOK_POLL_SECONDS,
        "options": {"expires": max(BOOKING_WEBHOOK_POLL_SECONDS, 1.0)},
    },
    "purge-webhook-messages": {
        "task": "booking.tasks.purge_webhook_messages",
        "schedule": 86400.0,
        "options": {"expires": 3600.0},
    },
    "purge-idempotency-keys": {
        "task": "booking.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "release-expired-holds": {
        "task": "booking.tasks.release_expired_holds",
        "schedule": BOOKING_SWEEP_SECONDS,
        # A sweep nobody ran in time is dropped: the next one does its work.
        "options": {"expires": max(BOOKING_SWEEP_SECONDS, 1.0)},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
