"""Flows that cross packages, between the core rooms and the command line (docs/architecture.md).

A flow here composes verbs of rooms that cannot know each other (the registry stands below
serving, so it cannot know deployments); the CLI only parses and prints around it.
"""
