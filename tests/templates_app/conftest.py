import pytest

from templates_app.rendering import compiled_cache


@pytest.fixture(autouse=True)
def empty_compiled_cache():
    """Version ids are never reused in production; a test database's may be, so start empty."""
    compiled_cache.clear()
