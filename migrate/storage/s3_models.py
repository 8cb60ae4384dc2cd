"""Imported ahead by the fork server of migrate.runners, in place of migrate.storage.s3: the S3
model read once there, so that no worker forked from it parses it again."""

from migrate.storage.s3 import load_models

load_models()
