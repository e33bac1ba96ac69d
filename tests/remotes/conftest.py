"""The S3 fixtures (s3_server, s3_bucket, aws_env, ...) live in tests/conftest.py: tests/security uses them too."""
