"""Versioned records with an audit trail: every change of a key is a commit (payload, version = latest
+ 1, author, comment, time), every version is kept in etcd (surviving compaction), and the latest are
mirrored live. ``CommitStore`` is the store; ``store.mirror()`` the live copy of the heads.

The byte layout is in docs/formats.md; the HTTP API (Rainer's) and the command line build on this.
"""

from ..errors import CommitError, CommitNotFound, InvalidCommitKey, PayloadTooLarge, VersionConflict
from ._layout import Commit, CommitMeta
from ._mirror import CommitMirror
from ._store import DEFAULT_MAX_PAYLOAD, CommitStore

__all__ = ('CommitStore', 'CommitMirror', 'Commit', 'CommitMeta', 'DEFAULT_MAX_PAYLOAD', 'CommitError',
           'VersionConflict', 'CommitNotFound', 'PayloadTooLarge', 'InvalidCommitKey')
