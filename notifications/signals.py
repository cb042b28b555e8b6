"""Signals of this app, for the layers above it (which it may not import).

`fanned_out`: a bulk, topic or campaign send has written its last messages (its status is now
`accepted`), or a campaign run paused after that has resumed (`accepted` again). Sent inside the
transaction that says so, with `notification_id` and `tenant_id`.
Whoever waits for a notification to be complete must look then too: its messages may all be
final already (sent while the fan-out was still writing, or suppressed when written), and no
later message move would tell.
"""

from django.dispatch import Signal

fanned_out = Signal()
