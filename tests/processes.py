"""Helpers for tests that start real processes (servers, Celery worker and beat)
on the test database: free ports, the environment, bounded waits, clean kills."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import requests
from django.db import connection

from bench.watchers import shell_exec  # the Procfile's lines, run as the benchmark runs them
from bench.webhooks import procfile_command

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url() -> str:
    """The URL of the database this test runs on (the test database), for a child process."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    auth = quote(settings.get("USER") or "")
    if settings.get("PASSWORD"):
        auth += ":" + quote(settings["PASSWORD"])
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{settings['NAME']}"


def child_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment, pointed at the test database; None removes a variable."""
    env = dict(os.environ)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    env.update(DATABASE_URL=current_database_url(), DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Process:
    """A child process in its own process group, its output (stdout and stderr) collected as it comes."""

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path = REPO):
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            with self._lock:
                self._lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match:
        """The first match of ``pattern`` in the output; fails after ``timeout`` seconds or if the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output, re.MULTILINE)
            if match:
                return match
            if self.popen.poll() is not None:
                self._reader.join(timeout=2)
                match = re.search(pattern, self.output, re.MULTILINE)
                if match:
                    return match
                raise AssertionError(
                    f"{self.args[0]} exited ({self.popen.returncode}) before {pattern!r}:\n{self.output}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout}s from {self.args}:\n{self.output}")

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout=timeout)
        self._reader.join(timeout=2)
        return code

    def stop(self) -> None:
        """Terminate the whole group, then kill it if it lingers (a test's cleanup)."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(timeout=2)


def wait_for_http(url: str, *, timeout: float, process: Process | None = None) -> requests.Response:
    """GET ``url`` until it answers 200; fails after ``timeout`` seconds or when ``process`` dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise AssertionError(f"server exited ({process.popen.returncode}):\n{process.output}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except requests.RequestException as exc:
            last_error = exc
        time.sleep(0.1)
    output = process.output if process is not None else ""
    raise AssertionError(f"{url} did not answer 200 within {timeout}s ({last_error}):\n{output}")


def _bin_on_path(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the virtualenv's bin first on PATH: a Procfile line names its programs bare."""
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"}


def start_web_server(*, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None) -> tuple[Process, str]:
    """The production web server, run as the Procfile's ``web:`` line runs it, on the test
    database and a free port (``workers`` processes of ``threads`` threads); returns it and its base URL."""
    port = free_port()
    server_env = dict(env or child_env())
    server_env.update(PORT=str(port), WEB_CONCURRENCY=str(workers), WEB_THREADS=str(threads))
    server = Process(["bash", "-c", shell_exec(procfile_command("web"))], env=_bin_on_path(server_env))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/health", timeout=30, process=server)
    except BaseException:
        server.stop()
        raise
    return server, base


def start_live_server(*, env: dict[str, str] | None = None, port: int | None = None) -> tuple[Process, str]:
    """The ASGI server as the Procfile's ``live:`` line runs it (uvicorn: HTTP, the pages and
    WebSockets; no persistent database connections: they leak under ASGI), on the test database
    and a free port (or ``port``, to restart one); returns it and its base URL."""
    port = port or free_port()
    server_env = _bin_on_path({**(env or child_env()), "LIVE_PORT": str(port)})
    server = Process(["bash", "-c", shell_exec(procfile_command("live"))], env=server_env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/health", timeout=30, process=server)
    except BaseException:
        server.stop()
        raise
    return server, base


@contextmanager
def running_worker_and_beat(*, env: dict[str, str]) -> Iterator[Process]:
    """A Celery worker and a beat process (separate, as in production) with ``env``
    (its CELERY_BROKER_URL, BOOKING_SWEEP_SECONDS, BOOKING_VAR_DIR for beat's schedule); yields the worker."""
    celery = str(BIN / "celery")
    worker = Process([celery, "-A", "config", "worker", "--pool=solo", "--loglevel=INFO", "--without-gossip"], env=env)
    beat = Process([celery, "-A", "config", "beat", "--loglevel=INFO"], env=env)
    try:
        worker.wait_for_output(r"celery@\S+ ready\.", timeout=30)
        beat.wait_for_output(r"beat: Starting", timeout=30)
        yield worker
    finally:
        beat.stop()
        worker.stop()


@contextmanager
def running_web_servers(count: int, **kwargs) -> Iterator[list[str]]:
    """``count`` separate web server processes on one database; yields their base URLs."""
    started: list[Process] = []
    try:
        urls = []
        for _ in range(count):
            server, base = start_web_server(**kwargs)
            started.append(server)
            urls.append(base)
        yield urls
    finally:
        for server in started:
            server.stop()


def run_with_only(tmp_path, args: list[str], **environment: str) -> subprocess.CompletedProcess:
    """Run ``args`` in the repository with only ``environment`` (nothing from this machine's or
    the test run's), the venv's tools first on the PATH and a var folder of its own."""
    return subprocess.run(
        args,
        cwd=REPO,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "BOOKING_VAR_DIR": str(tmp_path / "var"),
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
