"""pgheal's client side: installer, CLI and the throwaway cluster of ``make demo``."""

from heal import PGLAST_VERSION, __version__

__all__ = ["PGLAST_VERSION", "__version__"]
