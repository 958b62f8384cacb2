"""What every wing shares: the error type, files written atomically and hashed, the machine, the device rule."""

from fashionzoo.core.errors import FashionZooError, reason

__all__ = ["FashionZooError", "reason"]
