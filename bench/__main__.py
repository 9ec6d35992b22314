"""``python -m bench [options]`` (``make bench``): see docs/benchmark.md and ``--help``."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    from .runner import Options  # imports nothing of the product yet: --help needs no database

    o = Options()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Benchmark the production web server on DATABASE_URL (PostgreSQL; use a database of its own): "
            "bookings/s, lock/confirm latency and CPU per booking under concurrent clients, against pgbench "
            "running the least SQL a row-locked, audited booking needs on the same tables, in turns; "
            "with webhooks (one endpoint subscribed to every type, the Procfile's webhooks: worker) and "
            "without, in turns; with W live watchers of one event (the Procfile's live: process) and without, "
            "in turns; a contended run, the seat map and the expiry sweep. See docs/benchmark.md."
        ),
    )
    p.add_argument("--seats", type=int, default=o.seats, help="Seats of the booking event (and of pgbench's copy).")
    p.add_argument("--clients", type=int, default=o.clients, help="Concurrent clients (users); pgbench's too.")
    p.add_argument("--duration", type=float, default=o.duration, help="Measured seconds of bookings (and pgbench's).")
    p.add_argument("--warmup", type=float, default=o.warmup, help="Unmeasured seconds before each round of bookings.")
    p.add_argument(
        "--rounds",
        type=int,
        default=o.rounds,
        help="Bookings and pgbench take turns this many times, each for duration / rounds.",
    )
    p.add_argument("--contended-seats", type=int, default=o.contended_seats, help="Seats all clients fight for.")
    p.add_argument(
        "--best-seats", type=int, default=o.best_seats, help="Seats of the best-available event (0: no such run)."
    )
    p.add_argument(
        "--best-quantity", type=int, default=o.best_quantity, help="Seats together per best-available request."
    )
    p.add_argument("--map-seats", type=int, default=o.map_seats, help="Seats of the seat map fetched.")
    p.add_argument("--sweep-holds", type=int, default=o.sweep_holds, help="Expired holds the sweep releases.")
    p.add_argument("--server-cmd", default=None, help="Instead of the Procfile's web: line.")
    p.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="Extra server environment (repeat)."
    )
    p.add_argument("--workdir", default=None, help="Where logs and the report go (a temporary folder).")
    p.add_argument("--keep", action="store_true", help="Keep the benchmark's events afterwards.")
    p.add_argument("--json", default=None, help="Also write the report as JSON to this file.")
    p.add_argument(
        "--webhooks",
        action=argparse.BooleanOptionalAction,
        default=o.webhooks,
        help="The webhook load check: each round also books with one endpoint subscribed to every type "
        "(the Procfile's webhooks: worker, the benchmark's receiver); --no-webhooks skips it.",
    )
    p.add_argument(
        "--webhook-broker-url",
        default=None,
        help="The Celery broker of the check's worker and server (REDIS_URL's server, database 3).",
    )
    p.add_argument(
        "--webhook-drain",
        type=float,
        default=o.webhook_drain,
        help="Seconds to wait after each round with webhooks for the backlog to reach the receiver.",
    )
    p.add_argument(
        "--webhook-worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Extra environment for the webhook worker only, on top of the server's (repeat).",
    )
    p.add_argument(
        "--watchers",
        type=_counts,
        default=o.watchers,
        metavar="W,W,…",
        help="The watchers check: for each W, bookings with W live watchers of one event (the Procfile's live: "
        "process) and without, in turns (default 100,500,2000).",
    )
    p.add_argument("--no-watchers", dest="watchers", action="store_const", const=(), help="Skip the watchers check.")
    p.add_argument("--watch-seats", type=int, default=o.watch_seats, help="Seats of the watched event.")
    p.add_argument(
        "--watch-duration", type=float, default=o.watch_duration, help="Measured seconds of each watchers round."
    )
    p.add_argument(
        "--watch-drain",
        type=float,
        default=o.watch_drain,
        help="Seconds after a watchers round's last answer before the watchers' states are taken.",
    )
    p.add_argument(
        "--watch-redis-url",
        default=None,
        help="The channel layer of the live process and the web server (REDIS_URL's server, database 4).",
    )
    return p


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("a list of numbers: 100,500,2000") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("at least one number, each at least 1")
    return counts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    try:
        server_env = dict(item.split("=", 1) for item in args.server_env)
        worker_env = dict(item.split("=", 1) for item in args.webhook_worker_env)
    except ValueError:
        p.error("--server-env and --webhook-worker-env take NAME=VALUE")
    if args.clients < 1 or args.rounds < 1 or args.seats < args.clients * args.rounds or args.duration <= 0:
        p.error("need at least one client and round, a seat per client and round, and a positive duration")
    if args.watchers and (args.watch_seats < args.clients * len(args.watchers) or args.watch_duration <= 0):
        p.error("the watchers check needs a watched seat per client and W, and a positive --watch-duration")

    # The product's settings, as its own processes load them. This process serves and signs
    # nothing, so a key of its own will do where none is set (the settings refuse to start
    # without one unless DEBUG=true); the server gets a fresh one of its own anyway.
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()

    from . import runner

    options = runner.Options(
        seats=args.seats,
        clients=args.clients,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        contended_seats=args.contended_seats,
        best_seats=args.best_seats,
        best_quantity=args.best_quantity,
        map_seats=args.map_seats,
        sweep_holds=args.sweep_holds,
        server_cmd=args.server_cmd,
        server_env=server_env,
        keep=args.keep,
        workdir=args.workdir,
        webhooks=args.webhooks,
        webhook_broker_url=args.webhook_broker_url,
        webhook_drain=args.webhook_drain,
        webhook_worker_env=worker_env,
        watchers=args.watchers,
        watch_seats=args.watch_seats,
        watch_duration=args.watch_duration,
        watch_drain=args.watch_drain,
        watch_redis_url=args.watch_redis_url,
    )
    try:
        report = runner.run(options, command_line=shlex.join(["python", "-m", "bench", *argv]))
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(runner.format_report(report), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
