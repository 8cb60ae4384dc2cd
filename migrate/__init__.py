"""regmig: move a container registry's storage to object storage, prove the copy, repair nameless tags."""

__version__ = "0.1.0"
