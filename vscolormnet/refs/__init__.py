"""Reference workflows: extract one frame per shot, suggest where more references are needed."""
