import json

from django.core.management.base import BaseCommand, CommandError

from booking.benchmark import runner


class Command(BaseCommand):
    help = (
        "Benchmark the production web server on DATABASE_URL (PostgreSQL; use a database of its own): "
        "bookings/s and lock/confirm latency under concurrent clients, against pgbench replaying the "
        "service's own SQL; a contended run, the seat map and the expiry sweep."
    )

    def add_arguments(self, parser):
        o = runner.Options()
        parser.add_argument("--seats", type=int, default=o.seats, help="Seats of the booking event.")
        parser.add_argument("--clients", type=int, default=o.clients, help="Concurrent clients (users).")
        parser.add_argument("--duration", type=float, default=o.duration, help="Measured seconds (and pgbench's).")
        parser.add_argument(
            "--warmup", type=float, default=o.warmup, help="Unmeasured seconds before each round of bookings."
        )
        parser.add_argument(
            "--rounds",
            type=int,
            default=o.rounds,
            help="Bookings and pgbench take turns this many times, each for duration / rounds.",
        )
        parser.add_argument("--contended-seats", type=int, default=o.contended_seats)
        parser.add_argument("--map-seats", type=int, default=o.map_seats)
        parser.add_argument("--sweep-holds", type=int, default=o.sweep_holds)
        parser.add_argument("--server-cmd", default=None, help="Instead of the Procfile's web: line.")
        parser.add_argument(
            "--server-env", action="append", default=[], metavar="NAME=VALUE", help="Extra server environment."
        )
        parser.add_argument("--pg-log", default=None, help="The PostgreSQL server log (found if not given).")
        parser.add_argument("--workdir", default=None, help="Where logs and the report go (a temporary folder).")
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark's events afterwards.")
        parser.add_argument("--json", default=None, help="Also write the report as JSON to this file.")

    def handle(self, *args, **opts):
        try:
            server_env = dict(item.split("=", 1) for item in opts["server_env"])
        except ValueError as exc:
            raise CommandError("--server-env takes NAME=VALUE") from exc
        options = runner.Options(
            seats=opts["seats"],
            clients=opts["clients"],
            duration=opts["duration"],
            warmup=opts["warmup"],
            rounds=opts["rounds"],
            contended_seats=opts["contended_seats"],
            map_seats=opts["map_seats"],
            sweep_holds=opts["sweep_holds"],
            server_cmd=opts["server_cmd"],
            server_env=server_env,
            pg_log=opts["pg_log"],
            keep=opts["keep"],
            workdir=opts["workdir"],
        )
        if (
            options.clients < 1
            or options.rounds < 1
            or options.seats < options.clients * options.rounds
            or options.duration <= 0
        ):
            raise CommandError("need at least one client and round, a seat per client and round, a positive duration")
        try:
            report = runner.run(options)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(runner.format_report(report))
        if opts["json"]:
            with open(opts["json"], "w") as handle:
                json.dump(report, handle, indent=2, default=str)
