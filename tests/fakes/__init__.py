"""Local stand-ins for providers, at the network edge: the real SDKs talk to these over 127.0.0.1.

Each fake records what it received so tests assert on what the SDK actually sent, and can be
told to answer the next requests with a failure. Fixtures are in `tests/fakes/fixtures.py`.
"""
