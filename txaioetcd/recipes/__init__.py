"""Recipes: coordination built only on the public Client, one module each.

``lock`` (Lock, LockTimeout) and ``election`` (Election, NotLeader) follow etcd's Go
``concurrency`` package; ``mirror`` (Mirror), ``table_mirror`` (TableMirror, IndexMirror) and
``paths`` (children, delete_prefix, PathCache) keep local copies current. The names below are imported on first use, so importing one recipe never
loads the others (and the core never imports a recipe).
"""

import importlib

# name -> the module of this package that defines it
_LAZY = {
    'Lock': 'lock',
    'LockTimeout': 'lock',
    'Election': 'election',
    'NotLeader': 'election',
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'.{module}', __name__), name)

# Local copies kept current by a watch: of a key range, of a table or an index, of a path tree.
_LAZY.update(Mirror='mirror', TableMirror='table_mirror', IndexMirror='table_mirror',
             PathCache='paths', children='paths', delete_prefix='paths')
