"""Small real model folders built offline (fixtures) for tests, demos and offline recipes."""
