"""Issue 14's reference endpoint, served by bench.floor: a POSTed JSON body validated by a DRF
serializer, one row INSERTed, one Redis LPUSH, 202. Settings in bench/floor_settings.py."""

# The Redis list the endpoint LPUSHes to (read by bench.floor without Django set up).
QUEUE_KEY = "floor:events"
