from tests.fakes.fixtures import *  # noqa: F403
from tests.pipeline.conftest import fresh_provider_cache  # noqa: F401
