"""`manage.py relay`: publish the outbox's committed rows to the broker (notifications/relay.py).

One is enough for thousands of sends a second; several at once are safe (each row is taken by
one of them). It stops on SIGTERM or SIGINT after the round in progress.
"""

import signal

from django.core.management.base import BaseCommand

from notifications import relay


class Command(BaseCommand):
    help = "Publish committed outbox rows to the broker (woken by LISTEN/NOTIFY on PostgreSQL, polling on SQLite)."

    def handle(self, *args, **options):
        stop = []

        def request_stop(signum, frame):
            stop.append(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, request_stop)
        self.stdout.write("Relay started.")
        relay.serve(lambda: bool(stop))
        self.stdout.write("Relay stopped.")
