"""What ``schema gen`` writes: readers and object-API classes that give exactly what flatc's do, faster,
and checked-in generated code that matches its schema. No etcd here: tests/test_fbs_tables.py has the
round trips through a real one."""

import importlib
import pathlib
import subprocess
import sys
import uuid

import flatbuffers
import pytest

from txaioetcd.fbs._codegen import generate

ROOT = pathlib.Path(__file__).resolve().parent.parent
KINDS = pathlib.Path(__file__).resolve().parent / 'fbs' / 'kinds.fbs'

# (schema, checked-in output): every generated module the project ships
CHECKED_IN = [('schemas/v1/shop.fbs', 'examples/etcdb/shop_v1'), ('schemas/shop.fbs', 'examples/etcdb/shop_v2'),
              ('benchmarks/fbs/bench.fbs', 'benchmarks/fbs/gen')]


@pytest.fixture(scope='module')
def kinds(tmp_path_factory):
    """(our module, flatc's module) generated from tests/fbs/kinds.fbs."""
    root = tmp_path_factory.mktemp('kinds')
    package = f'gen_{uuid.uuid4().hex}'
    generate(KINDS, root / package)
    sys.path.insert(0, str(root))
    try:
        return (importlib.import_module(f'{package}.kinds'), importlib.import_module(f'{package}.kinds_generated'))
    finally:
        sys.path.remove(str(root))


def _full(ours):
    return ours.EverythingT(
        flag=False, i8=-128, u8=255, i16=-32768, u16=1, i32=-2 ** 31, u32=2 ** 32 - 1, i64=2 ** 63 - 1,
        u64=2 ** 64 - 1, f32=1.25, f64=-2.5e300, maybe=0, text='naïve ☃', raw=bytes(range(16)),
        numbers=[1, -2, 3], words=['a', 'bc'], leaf=ours.LeafT(label='one', weight=3),
        leaves=[ours.LeafT(label='x'), ours.LeafT(weight=0)], point=ours.PointT(x=1.5, y=2.25, tag=9),
        points=[ours.PointT(x=0.5, y=1.0, tag=1), ours.PointT(x=-1.0, y=3.0, tag=2)],
        colour=ours.Colour.Red, colours=[ours.Colour.Green, ours.Colour.Blue],
        payloadType=ours.Payload.Other, payload=ours.OtherT(n=-7))


def _pack(obj, pack) -> bytes:
    builder = flatbuffers.Builder(0)
    builder.Finish(pack(obj, builder))
    return bytes(builder.Output())


def _getters(reader_class):
    return sorted(name for name, value in vars(reader_class).items()
                  if callable(value) and name[:1].isupper() and name not in ('Init', 'GetRootAs', 'GetRootAsEverything'))


def _read_all(reader, names):
    """Every getter's value; vector getters at each index."""
    out = {}
    for name in names:
        method = getattr(reader, name)
        if name.endswith(('Length', 'IsNone', 'AsNumpy')) or method.__code__.co_argcount == 1:
            if not name.endswith('AsNumpy'):
                out[name] = method()
        else:
            length = getattr(reader, name + 'Length')()
            out[name] = [method(i) for i in range(length)]
    return out


def _plain(value):
    """Readers of nested tables and structs compared by their scalar content."""
    if hasattr(value, '_tab'):
        return {name: _plain(getattr(value, name)()) for name in _getters(type(value))
                if getattr(value, name).__code__.co_argcount == 1 and not name.endswith(('IsNone', 'Length'))}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, flatbuffers.table.Table):
        return ('table', value.Pos)
    return value


@pytest.mark.parametrize('which', ['full', 'empty'])
def test_pack_writes_flatc_bytes_and_readers_read_what_flatc_reads(kinds, which):
    ours, theirs = kinds
    obj = _full(ours) if which == 'full' else ours.EverythingT()
    data = _pack(obj, ours.EverythingT.Pack)
    assert data == _pack(obj, theirs.EverythingT.Pack)          # byte for byte what flatc's Pack writes
    reader = ours.things.decode_value(1, data)
    assert type(reader) is ours.Everything
    flatc_reader = theirs.Everything.GetRootAs(data)
    names = _getters(theirs.Everything)
    assert 'Gone' not in names and 'Flag' in names and 'Payload' in names
    assert _plain(_read_all(reader, names)) == _plain(_read_all(flatc_reader, names))


def test_a_vector_of_negative_bytes(kinds):
    """flatc's Pack writes [byte] elements with the runtime's unsigned PrependByte (TypeError for -1);
    ours writes them as int8."""
    ours, theirs = kinds
    obj = ours.EverythingT(colours=[ours.Colour.Red, ours.Colour.Blue])
    with pytest.raises(TypeError, match='bad number -1 for type uint8'):
        _pack(obj, theirs.EverythingT.Pack)
    reader = ours.things.decode_value(1, _pack(obj, ours.EverythingT.Pack))
    assert [reader.Colours(i) for i in range(reader.ColoursLength())] == [-1, 1]


def test_defaults_of_an_empty_record(kinds):
    ours, _ = kinds
    reader = ours.things.decode_value(1, _pack(ours.EverythingT(), ours.EverythingT.Pack))
    assert (reader.Flag(), reader.I8(), reader.U16(), reader.I64(), reader.F32(), reader.Maybe(),
            reader.Text(), reader.Colour()) == (True, -3, 65535, -9000000000, 0.5, None, None, ours.Colour.Blue)


def test_unpack_gives_what_was_written(kinds):
    ours, theirs = kinds
    obj = _full(ours)
    back = ours.things.decode_value(1, _pack(obj, ours.EverythingT.Pack)).unpack()
    assert type(back) is ours.EverythingT
    flatc_back = theirs.EverythingT.InitFromObj(theirs.Everything.GetRootAs(_pack(obj, theirs.EverythingT.Pack)))
    for name, value in vars(obj).items():
        got, flatc_got = getattr(back, name), getattr(flatc_back, name)
        if name == 'raw':
            assert got == value and list(flatc_got) == list(value)      # ours: bytes; flatc: a list of ints
        elif name == 'words':
            assert got == value and flatc_got == [w.encode() for w in value]  # flatc leaves them bytes
        elif name in ('leaf', 'point', 'payload'):
            assert vars(got) == vars(flatc_got) == vars(value)
        elif name in ('leaves', 'points'):
            assert [vars(g) for g in got] == [vars(g) for g in flatc_got]
        else:
            assert got == flatc_got, name
    assert back.text == 'naïve ☃' and back.leaves[0].label == 'x' and back.leaves[1].weight == 0
    assert _pack(back, ours.EverythingT.Pack) == _pack(obj, ours.EverythingT.Pack)


def test_writes_take_the_object_api_only(kinds):
    from txaioetcd.errors import ValueEncodeError
    ours, theirs = kinds
    reader = ours.things.decode_value(1, _pack(_full(ours), ours.EverythingT.Pack))
    with pytest.raises(ValueEncodeError, match=r'things\[5\].*written as an EverythingT, not an Everything.*unpack'):
        ours.things.encode_value(5, reader)
    with pytest.raises(ValueEncodeError, match=r'things\[5\].*not a dict'):
        ours.things.encode_value(5, {'flag': True})


def test_generated_module_shape(kinds):
    ours, _ = kinds
    assert ours.Kinds().tables == {'things': ours.things}
    assert ours.things.describe()['root_type'] == 'kinds.Everything'
    assert ours.things.value_options['root'].bfbs == ours.BFBS
    assert 'One of everything.' in ours.Everything.__doc__
    assert set(ours.__all__) >= {'Everything', 'EverythingT', 'Leaf', 'LeafT', 'Point', 'PointT', 'Colour',
                                 'Payload', 'things', 'Kinds', 'BFBS'}


@pytest.mark.parametrize('fbs,out', CHECKED_IN, ids=[out for _, out in CHECKED_IN])
def test_checked_in_code_is_current(fbs, out):
    """The generated code the project ships is what its schema generates now (``schema gen --check``)."""
    done = subprocess.run([sys.executable, '-m', 'txaioetcd', 'schema', 'gen', fbs, '--out', out, '--check'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'is up to date' in done.stdout


def test_check_finds_stale_code_and_gen_mends_it(tmp_path):
    out = tmp_path / 'gen'
    generate(ROOT / 'schemas/shop.fbs', out)
    module = out / 'shop.py'
    module.write_text(module.read_text().replace('slot', 'SLOT', 1))
    (out / 'shop.bfbs').unlink()
    command = [sys.executable, '-m', 'txaioetcd', 'schema', 'gen', str(ROOT / 'schemas/shop.fbs'), '--out', str(out)]
    stale = subprocess.run(command + ['--check'], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1
    assert f'stale: {out / "shop.bfbs"}, {out / "shop.py"} (regenerate: python -m txaioetcd schema gen' in stale.stdout
    assert not (out / 'shop.bfbs').exists()                      # --check writes nothing
    mended = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert mended.returncode == 0 and 'wrote shop.bfbs, shop.py' in mended.stdout
    again = subprocess.run(command + ['--check'], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout
