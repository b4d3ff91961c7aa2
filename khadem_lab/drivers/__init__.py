"""Drivers: where jobs are stored. See :mod:`khadem_lab.drivers.base` for the contract."""

from .base import BaseQueueDriver
from .factory import QueueFactory
from .file import FileStorageDriver
from .memory import InMemoryDriver
from .redis import RedisStorageDriver
from .sqlite import SQLiteDriver
from .sync import SynchronousDriver

__all__ = [
    "BaseQueueDriver",
    "FileStorageDriver",
    "InMemoryDriver",
    "QueueFactory",
    "RedisStorageDriver",
    "SQLiteDriver",
    "SynchronousDriver",
]
