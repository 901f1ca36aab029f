"""Command-line commands (see ``vscolormnet.__main__``)."""
