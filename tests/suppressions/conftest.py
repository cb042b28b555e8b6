from tests.pipeline.conftest import *  # noqa: F403 (ada, providers, the fakes, a fresh provider cache)
