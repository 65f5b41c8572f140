"""Errors raised by the storage layer; each message says what was wrong and what to do."""


class StoreError(Exception):
    """Base class of every error the storage layer raises on purpose."""


class ManifestError(StoreError):
    """An input manifest does not follow the manifest contract."""


class SchemaVersionError(StoreError):
    """An artifact was written by a newer schema version than this code can read."""


class IncompatibleStoreError(StoreError):
    """A store was made with another encoder, dimension or preprocessing."""
