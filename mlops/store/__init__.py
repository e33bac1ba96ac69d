"""Content-addressed storage: hashing while copying, objects, tree manifests, workspace links,
the state database. Knows nothing of repos, git or YAML."""
