"""The recipe: its schema, reading YAML safely, and the check of the `training:` block."""
