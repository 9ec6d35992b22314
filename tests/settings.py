"""The test suite's settings: config.settings as the embedded run has it (DEBUG=true, the
development key), so `pytest` needs no environment. pytest-django imports this before
any conftest; the processes the tests start inherit the same environment."""

import os

os.environ.setdefault("DEBUG", "true")

from config.settings import *  # noqa: E402, F403
