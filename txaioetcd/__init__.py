"""txaioetcd: an asynchronous etcd v3 client for Twisted, with typed persistent maps on top.

The public names live here; see docs/ for a guide.
"""

from ._version import __version__
from . import pmap
from .client import Client
from .database import Database
from .errors import Failed
from .keyset import KeySet
from .lease import Lease, LeaseLost
from .ops import (CompCreated, CompLease, CompModified, CompValue, CompVersion, OpDel, OpGet, OpSet,
                  OpTxn, Transaction)
from .watch import EventStream, WatchEvent, Watching
from .transport._tls import TLSConfig
from .results import Alarm, Deleted, Hash, Header, KeyValue, Member, Range, Revision, Status, Success, TxnResult

__all__ = (
    '__version__', 'Client', 'TLSConfig', 'Database', 'pmap', 'KeySet', 'Transaction', 'Failed', 'Success',
    'CompValue', 'CompVersion', 'CompCreated', 'CompModified', 'CompLease',
    'OpGet', 'OpSet', 'OpDel', 'OpTxn',
    'Lease', 'LeaseLost', 'WatchEvent', 'Watching', 'EventStream',
    'Header', 'KeyValue', 'Range', 'Revision', 'Deleted', 'TxnResult', 'Status', 'Member', 'Alarm', 'Hash',
)
