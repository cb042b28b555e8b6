from django.db import models


class Event(models.Model):
    """One accepted POST: the row the reference endpoint INSERTs."""

    recipient = models.CharField(max_length=64)
    payload = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"event {self.pk} to {self.recipient}"
