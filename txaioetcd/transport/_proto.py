"""etcd's protobuf messages, built at run time from ``etcd.proto`` - no protoc, no generated code.

Generated ``_pb2`` modules are tied to the protobuf release that made them (python-etcd3's broke
with protobuf 4). Here a small reader turns ``etcd.proto`` - our own subset of etcd's API, in plain
proto3 - into a ``FileDescriptorProto``, and protobuf's public descriptor pool and message factory
make the classes from it: the only protobuf APIs used are the ones every release since 4.21 has.

``message(name)`` gives a class (``message('RangeRequest')``).
"""

from __future__ import annotations

import re
from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ('message', 'parse_proto', 'PACKAGE')

PACKAGE = 'etcdserverpb'

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    'bytes': _F.TYPE_BYTES, 'string': _F.TYPE_STRING, 'bool': _F.TYPE_BOOL, 'int64': _F.TYPE_INT64,
    'uint64': _F.TYPE_UINT64, 'int32': _F.TYPE_INT32, 'uint32': _F.TYPE_UINT32,
}
_TOKEN = re.compile(r'\s*(?://[^\n]*|("[^"]*"|[A-Za-z_][A-Za-z0-9_.]*|\d+|[{};=]))', re.S)


def _tokens(text: str) -> list[str]:
    found, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip():
                raise ValueError(f'etcd.proto: cannot read {text[pos:pos + 40]!r}')
            break
        if match.group(1) is not None:
            found.append(match.group(1))
        pos = match.end()
    return found


class _Reader:
    """proto3 as etcd.proto uses it: messages (nested enums, oneofs), enums, scalar and message
    fields, ``repeated``; nothing else."""

    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.pos = 0

    def next(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, wanted: str) -> None:
        token = self.next()
        if token != wanted:
            raise ValueError(f'etcd.proto: expected {wanted!r}, found {token!r}')

    def file(self) -> descriptor_pb2.FileDescriptorProto:
        proto = descriptor_pb2.FileDescriptorProto(name='txaioetcd/etcd.proto', syntax='proto3')
        while self.pos < len(self.tokens):
            token = self.next()
            if token == 'syntax':
                self.expect('=')
                self.next()
                self.expect(';')
            elif token == 'package':
                proto.package = self.next()
                self.expect(';')
            elif token == 'message':
                self.message(proto.message_type.add())
            elif token == 'enum':
                self.enum(proto.enum_type.add())
            else:
                raise ValueError(f'etcd.proto: unexpected {token!r}')
        return proto

    def enum(self, enum) -> None:
        enum.name = self.next()
        self.expect('{')
        while (token := self.next()) != '}':
            value = enum.value.add(name=token)
            self.expect('=')
            value.number = int(self.next())
            self.expect(';')

    def message(self, message) -> None:
        message.name = self.next()
        self.expect('{')
        while (token := self.next()) != '}':
            if token == 'enum':
                self.enum(message.enum_type.add())
            elif token == 'oneof':
                index = len(message.oneof_decl)
                message.oneof_decl.add(name=self.next())
                self.expect('{')
                while (kind := self.next()) != '}':
                    self.field(message, kind, False, index)
            elif token == 'repeated':
                self.field(message, self.next(), True, None)
            else:
                self.field(message, token, False, None)

    def field(self, message, kind: str, repeated: bool, oneof) -> None:
        field = message.field.add(name=self.next())
        self.expect('=')
        field.number = int(self.next())
        self.expect(';')
        field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if kind in _SCALARS:
            field.type = _SCALARS[kind]
        else:
            field.type_name = kind          # resolved once every message is known
        if oneof is not None:
            field.oneof_index = oneof


def _resolve(proto: descriptor_pb2.FileDescriptorProto) -> None:
    """Named types → message or enum fields with their full names (nested enums first)."""
    messages = {m.name for m in proto.message_type}
    enums = {e.name for e in proto.enum_type}
    for message in proto.message_type:
        nested = {e.name for e in message.enum_type}
        for field in message.field:
            if field.HasField('type'):      # a scalar (an unset proto2 enum reads as its first value)
                continue
            name = field.type_name
            if name in nested:
                field.type, field.type_name = _F.TYPE_ENUM, f'.{proto.package}.{message.name}.{name}'
            elif name in enums:
                field.type, field.type_name = _F.TYPE_ENUM, f'.{proto.package}.{name}'
            elif name in messages:
                field.type, field.type_name = _F.TYPE_MESSAGE, f'.{proto.package}.{name}'
            else:
                raise ValueError(f'etcd.proto: {message.name}.{field.name} has unknown type {name!r}')


def parse_proto(text: str) -> descriptor_pb2.FileDescriptorProto:
    proto = _Reader(text).file()
    _resolve(proto)
    return proto


def _classes() -> dict:
    text = resources.files('txaioetcd.transport').joinpath('etcd.proto').read_text('utf-8')
    pool = descriptor_pool.DescriptorPool()
    pool.Add(parse_proto(text))
    found = {}
    for name in pool.FindFileByName('txaioetcd/etcd.proto').message_types_by_name:
        descriptor = pool.FindMessageTypeByName(f'{PACKAGE}.{name}')
        if hasattr(message_factory, 'GetMessageClass'):       # protobuf >= 4.22
            found[name] = message_factory.GetMessageClass(descriptor)
        else:
            found[name] = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    return found


_MESSAGES = _classes()


def message(name: str):
    """The message class ``name`` of etcd.proto (e.g. 'RangeRequest')."""
    return _MESSAGES[name]
