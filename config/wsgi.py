"""The WSGI application: the API, the admin and the pages (the web server's, Procfile's ``web``)."""

import os
import sys
import threading
import time
from pathlib import Path

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def _orphaned_at_start() -> bool:
    """A granian worker whose main process died before this module loaded (its parent is init
    now, and init is not that main process, as it is when granian runs as a container's PID 1)."""
    if os.getppid() != 1 or Path(sys.argv[0]).name != "granian":
        return False
    try:
        return Path("/proc/1/cmdline").read_bytes() != Path("/proc/self/cmdline").read_bytes()
    except OSError:
        return False


def _exit_with_parent(interval: float = 1.0) -> None:
    """A web server worker whose server process died exits too: granian's workers go on
    accepting on the port, orphaned, when their main process is killed (measured), and
    they ignore SIGTERM then."""
    if _orphaned_at_start():
        os._exit(1)
    parent = os.getppid()
    if parent == 1:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_exit_with_parent()
