"""Project-wide pytest configuration.

The harness itself is a plugin (registered through the ``pytest11`` entry point), so
``pytest testcases/`` needs nothing here; the project's own tests use ``pytester``.
"""

pytest_plugins = ["pytester"]
