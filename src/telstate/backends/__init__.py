"""Storage backends: where the bytes live (see :class:`Backend`)."""

from .base import Backend, Found, Subscription
from .memory import MemoryBackend

__all__ = ["Backend", "Found", "MemoryBackend", "Subscription"]
