"""The repository: root, `.mlops/` layout, configuration, git access."""
