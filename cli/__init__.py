"""The `hotpath` command line: one click group, its commands, and their terminal reports."""
