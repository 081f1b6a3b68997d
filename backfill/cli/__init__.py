"""The `backfill` command line: one small module per command."""
