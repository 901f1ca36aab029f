"""Host-side memory (XMem design): storage, similarity and the policy that manages them."""
from .manager import MemoryManager
from .store import KeyValueStore

__all__ = ["MemoryManager", "KeyValueStore"]
