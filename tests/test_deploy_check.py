"""Production settings pass Django's deployment checklist with exactly the documented production
environment (docs/operations.md)."""

from __future__ import annotations

import re
import subprocess

from .processes import BIN, REPO, run_with_only

DOC = REPO / "docs" / "operations.md"
MARKER = "<!-- production-env -->"


def documented_production_env() -> str:
    """The shell block that follows the production-env marker in docs/operations.md."""
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} has no production environment block"
    match = re.search(r"```sh\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert match, "no ```sh block after the production-env marker"
    return match.group(1)


def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    block = documented_production_env()
    assert "DEBUG=false" in block and "SECRET_KEY=" in block
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{block}\nexec python manage.py check --deploy --fail-level WARNING"],
        cwd=REPO,
        # Nothing from this machine's environment: only the documented block counts.
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "BOOKING_VAR_DIR": str(tmp_path / "var")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout + done.stderr


def test_without_the_production_environment_check_deploy_warns(tmp_path):
    """The control: the embedded run's settings (DEBUG=true, the dev key) fail the same check."""
    done = run_with_only(
        tmp_path, [str(BIN / "python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"], DEBUG="true"
    )
    assert done.returncode != 0
    assert "security.W018" in done.stdout + done.stderr  # DEBUG
