"""Safe defaults: DEBUG is off unless asked for, and a start without DEBUG refuses without
SECRET_KEY, saying how to set it; a development run (DEBUG=true) needs neither."""

from __future__ import annotations

import subprocess

import pytest

from .processes import BIN, run_with_only


def manage_check(tmp_path, **environment: str) -> subprocess.CompletedProcess:
    """`manage.py check` with only ``environment``."""
    return run_with_only(tmp_path, [str(BIN / "python"), "manage.py", "check"], **environment)


@pytest.mark.parametrize("debug", [{}, {"DEBUG": "false"}], ids=["DEBUG unset", "DEBUG=false"])
def test_a_non_debug_start_without_secret_key_refuses_and_says_how_to_set_it(tmp_path, debug):
    done = manage_check(tmp_path, **debug)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "ImproperlyConfigured" in output
    assert "SECRET_KEY is not set. Set the SECRET_KEY environment variable" in output
    assert "DEBUG=true" in output


def test_a_non_debug_start_with_secret_key_starts(tmp_path):
    done = manage_check(tmp_path, DEBUG="false", SECRET_KEY="a-long-random-secret-for-this-test-only-0123456789-abcdef")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_development_start_needs_no_secret_key(tmp_path):
    done = manage_check(tmp_path, DEBUG="true")
    assert done.returncode == 0, done.stdout + done.stderr


def test_debug_defaults_to_false(tmp_path):
    done = run_with_only(
        tmp_path,
        [str(BIN / "python"), "-c", "from django.conf import settings; print(settings.DEBUG)"],
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="a-long-random-secret-for-this-test-only-0123456789-abcdef",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "False"


def asgi_gc_threshold(tmp_path, **environment: str) -> subprocess.CompletedProcess:
    """The garbage collector's thresholds once the ASGI application (the live process's) is loaded."""
    return run_with_only(
        tmp_path,
        [str(BIN / "python"), "-c", "import gc, config.asgi; print(*gc.get_threshold(), sep=',')"],
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",
        **environment,
    )


@pytest.mark.parametrize(
    ("setting", "thresholds"),
    [(None, "50000,20,10"), ("1000,5,5", "1000,5,5"), ("", "700,10,10")],
    ids=["default", "set", "empty: CPython's own"],
)
def test_the_live_process_collects_garbage_as_the_setting_says(tmp_path, setting, thresholds):
    done = asgi_gc_threshold(tmp_path, **({} if setting is None else {"BOOKING_LIVE_GC_THRESHOLDS": setting}))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == thresholds


@pytest.mark.parametrize("setting", ["abc", "-1", "1,2,3,4"])
def test_a_bad_gc_setting_refuses_to_start_and_says_what_it_takes(tmp_path, setting):
    done = asgi_gc_threshold(tmp_path, BOOKING_LIVE_GC_THRESHOLDS=setting)
    assert done.returncode != 0
    assert "BOOKING_LIVE_GC_THRESHOLDS takes up to three non-negative integers" in done.stderr
