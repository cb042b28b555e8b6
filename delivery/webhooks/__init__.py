"""Tenant webhooks out (issue 10): signed POSTs of message and notification events.

- `models`: endpoints (with their secrets), the outbox of events, a delivery per (event,
  endpoint), an attempt row per try.
- `events`: what becomes an event, written to the outbox inside the transaction of the status
  change that caused it (a listener of `notifications.transitions`).
- `signing`: the `X-AlertFlow-Signature` header.
- `relay`: the due-delivery poller that POSTs through the outbound guard, retries with backoff,
  disables endpoints that keep failing, and replays.
"""
