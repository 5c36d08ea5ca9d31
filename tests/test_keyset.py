"""KeySet: pure functions, no server needed."""

import pytest

from txaioetcd import KeySet
from txaioetcd.keyset import prefix_range_end


@pytest.mark.parametrize('prefix, end', [
    (b'a', b'b'),
    (b'app/', b'app0'),
    (b'a\xff', b'b'),
    (b'a\xfe', b'a\xff'),
    (b'ab\xff\xff', b'ac'),
    (b'\xff', b'\0'),
    (b'\xff\xff\xff', b'\0'),
    (b'', b'\0'),
])
def test_prefix_range_end(prefix, end):
    assert prefix_range_end(prefix) == end


def test_single_range_prefix():
    assert (KeySet(b'k').key, KeySet(b'k').range_end, KeySet(b'k').type) == (b'k', None, 'single')
    ks = KeySet(b'a', b'c')
    assert (ks.key, ks.range_end, ks.type) == (b'a', b'c', 'range')
    ks = KeySet(b'p/', prefix=True)
    assert (ks.key, ks.range_end, ks.type) == (b'p/', b'p0', 'prefix')


def test_all_keys_is_nul_to_nul():
    ks = KeySet(b'', prefix=True)
    assert (ks.key, ks.range_end) == (b'\0', b'\0')
    assert repr(ks) == "KeySet(b'', prefix=True)"
    assert ks.contains(b'\0') and ks.contains(b'\xff\xff') and ks.contains(b'anything')


def test_contains_follows_half_open_ranges():
    ks = KeySet(b'b', b'd')
    assert [k for k in (b'a', b'b', b'c', b'c\xff', b'd', b'e') if ks.contains(k)] == [b'b', b'c', b'c\xff']
    ff = KeySet(b'x\xff', prefix=True)
    assert ff.contains(b'x\xff') and ff.contains(b'x\xff\xff\x00') and not ff.contains(b'y')
    assert not ff.contains(b'x\xfe')


def test_errors_say_what_to_do():
    with pytest.raises(TypeError, match=r"encode it"):
        KeySet('text')
    with pytest.raises(TypeError, match='must be bytes, not int'):
        KeySet(5)
    with pytest.raises(ValueError, match='empty key'):
        KeySet(b'')
    with pytest.raises(ValueError, match='not both'):
        KeySet(b'a', b'b', prefix=True)


def test_equality_and_of():
    assert KeySet(b'a', prefix=True) == KeySet(b'a', prefix=True)
    assert KeySet(b'a', b'b') != KeySet(b'a', prefix=True)
    assert KeySet.of(b'k') == KeySet(b'k')
    ks = KeySet(b'k', prefix=True)
    assert KeySet.of(ks) is ks
    assert len({KeySet(b'a'), KeySet(b'a')}) == 1
