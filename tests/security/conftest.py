"""The integration tests' cluster and fixtures, for the security tests too."""

from tests.integration.conftest import *  # noqa: F403
from tests.integration.test_corpus import databases  # noqa: F401
