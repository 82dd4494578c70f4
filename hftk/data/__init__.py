"""Records (rows that remember their file and line) and the readers that make them."""
