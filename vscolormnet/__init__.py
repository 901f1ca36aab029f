"""vscolormnet."""
