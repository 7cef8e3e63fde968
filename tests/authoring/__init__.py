"""Tests of harness.authoring and the command line (a package, so module names cannot clash with other test folders)."""
