"""txaioetcd: an asynchronous etcd v3 client for Twisted, with typed persistent maps on top.

The public names live here (every error of ``txaioetcd.errors`` included); see docs/ for a guide.
Every public asynchronous method returns a Deferred.
"""

from ._version import __version__
from . import errors, pmap, retry, rpc
from .client import Client
from .database import Database, DbTransaction
from .errors import *  # noqa: F401,F403 - the one error hierarchy, importable from the package
from .errors import __all__ as _errors
from .keyset import KeySet
from .lease import Lease
from .ops import (CompCreated, CompLease, CompModified, CompValue, CompVersion, OpDel, OpGet, OpSet,
                  OpTxn, Transaction)
from .watch import EventStream, WatchEvent, Watching
from .transport._tls import TLSConfig
from .results import Alarm, Deleted, Hash, Header, KeyValue, Member, Range, Revision, Status, Success, TxnResult

__all__ = (
    '__version__', 'Client', 'TLSConfig', 'Database', 'DbTransaction', 'pmap', 'errors', 'rpc', 'retry', 'KeySet',
    'Transaction', 'Success', 'CompValue', 'CompVersion', 'CompCreated', 'CompModified', 'CompLease',
    'OpGet', 'OpSet', 'OpDel', 'OpTxn',
    'Lease', 'WatchEvent', 'Watching', 'EventStream',
    'Header', 'KeyValue', 'Range', 'Revision', 'Deleted', 'TxnResult', 'Status', 'Member', 'Alarm', 'Hash',
) + tuple(_errors)
