"""Foundation: files written atomically, locks, CPU facts, the user-error vocabulary."""
