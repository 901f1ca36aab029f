"""The stateful propagation: per-frame step, sessions, memory, key run-ahead, shared networks."""
