"""Recipes: coordination built only on the public Client, one module each.

``lock`` (Lock, LockTimeout) and ``election`` (Election, NotLeader) follow etcd's Go
``concurrency`` package. The names below are imported on first use, so importing one recipe never
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

# ``mirror``: local copies of a key range, a table or an index, kept current by a watch.
_LAZY.update(dict.fromkeys(('Mirror', 'TableMirror', 'IndexMirror', 'PathCache', 'children',
                            'delete_prefix'), 'mirror'))
