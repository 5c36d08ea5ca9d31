"""Is one FlatBuffers binary schema a safe evolution of another, for the records of one root table?

A new schema may read old records and an old one new records when, for every table and struct the
root reaches: table fields keep their ids, types and defaults and are only ever appended (a field that
goes away is deprecated, not removed), structs keep their exact layout, and enums and unions keep
every value they had (new ones appended). Renaming a field or an enum value is allowed: the bytes do
not change (``flatc --conform`` agrees). Making a field required is not: old records lack it.
"""

from __future__ import annotations

from ._reflection import SCALAR_TYPES, BinarySchema, SchemaField, SchemaObject, SchemaType

__all__ = ('evolution_problems', 'same_layout')


def evolution_problems(old: BinarySchema, new: BinarySchema, root: str) -> list[str]:
    """What makes ``new`` unable to share records of table ``root`` with ``old`` (empty: compatible).
    Each problem names the table or struct, the field, what ``old`` has and what ``new`` has."""
    return _Walk(old, new).table_or_struct(root)


def same_layout(old: BinarySchema, new: BinarySchema, root: str) -> bool:
    """Each can read the other's records: an evolution both ways (e.g. only renames or comments)."""
    return not evolution_problems(old, new, root) and not evolution_problems(new, old, root)


class _Walk:
    def __init__(self, old: BinarySchema, new: BinarySchema):
        self.old, self.new = old, new
        self.seen: set[str] = set()
        self.problems: list[str] = []

    def table_or_struct(self, name: str) -> list[str]:
        if name in self.seen:
            return self.problems
        self.seen.add(name)
        was = self.old.object(name)
        try:
            now = self.new.object(name)
        except KeyError:
            self.problems.append(f'{name}: this service\'s schema has no table or struct {name}')
            return self.problems
        if was.is_struct != now.is_struct:
            kinds = ('table', 'struct')
            self.problems.append(f'{name}: stored as a {kinds[was.is_struct]}, this service has a '
                                 f'{kinds[now.is_struct]}')
        elif was.is_struct:
            self._struct(was, now)
        else:
            self._table(was, now)
        return self.problems

    def _struct(self, was: SchemaObject, now: SchemaObject):
        layout = [(f.offset, f.type.base, f.type.element, self.old.type_name(f.type)) for f in was.fields]
        if layout != [(f.offset, f.type.base, f.type.element, self.new.type_name(f.type)) for f in now.fields] \
                or was.bytesize != now.bytesize:
            self.problems.append(f'struct {was.name}: its layout changed (stored: {self._fields(self.old, was)}; '
                                 f'this service: {self._fields(self.new, now)}); a struct never changes, '
                                 f'add a new field of a new struct type instead')
            return
        for field in was.fields:
            self._follow(field.type, f'{was.name}.{field.name}')

    @staticmethod
    def _fields(schema, obj):
        return ', '.join(f'{f.name}: {_spelled(schema, f.type)}' for f in obj.fields)

    def _table(self, was: SchemaObject, now: SchemaObject):
        by_id = {f.id: f for f in now.fields}
        by_name = {f.name: f for f in now.fields}
        for old_field in was.fields:
            moved = by_name.get(old_field.name)
            if moved is not None and moved.id != old_field.id:
                # One removal or insertion shifts every later id: say that once, not per field.
                self.problems.append(f'{was.name}.{old_field.name}: stored with id {old_field.id}, this '
                                     f'service has it with id {moved.id}; a field was removed or inserted '
                                     f'before it (fields are only appended; deprecate a field instead of '
                                     f'removing it)')
                return
        for old_field in was.fields:
            where = f'{was.name}.{old_field.name}'
            new_field = by_id.get(old_field.id)
            if new_field is None:
                self.problems.append(f'{where} (id {old_field.id}): stored schema has it, this service\'s '
                                     f'has no field with that id; deprecate a field instead of removing it')
                continue
            self._field(where, old_field, new_field)
        known = {f.id for f in was.fields}
        for new_field in now.fields:
            if new_field.id not in known and new_field.required:
                self.problems.append(f'{was.name}.{new_field.name} (id {new_field.id}): a new field cannot '
                                     f'be required (stored records do not have it)')

    def _field(self, where: str, was: SchemaField, now: SchemaField):
        old_type, new_type = _spelled(self.old, was.type), _spelled(self.new, now.type)
        if (was.type.base, was.type.element, old_type) != (now.type.base, now.type.element, new_type):
            self.problems.append(f'{where} (id {was.id}): stored type {old_type}, this service has '
                                 f'{new_type} (as {now.name}); a field\'s type never changes, add a new field')
            return
        if was.type.base in SCALAR_TYPES and (was.default_integer, was.default_real, was.optional) != \
                (now.default_integer, now.default_real, now.optional):
            self.problems.append(f'{where} (id {was.id}): stored default {_default(was)}, this service has '
                                 f'{_default(now)}; old records would read differently')
        if now.required and not was.required:
            self.problems.append(f'{where} (id {was.id}): made required, but stored records may lack it')
        self._follow(was.type, where)

    def _follow(self, t: SchemaType, where: str):
        """Check what a field refers to: a table or struct, an enum, a union and its members."""
        base = t.element if t.base in ('Vector', 'Vector64', 'Array') else t.base
        if base == 'Obj':
            self.table_or_struct(self.old.objects[t.index].name)
        elif t.index >= 0:      # an enum, a union or a union's type field
            self._enum(self.old.enums[t.index].name, where)

    def _enum(self, name: str, where: str):
        if name in self.seen:
            return
        self.seen.add(name)
        was = next(e for e in self.old.enums if e.name == name)
        now = next((e for e in self.new.enums if e.name == name), None)
        kind = 'union' if was.is_union else 'enum'
        if now is None:
            self.problems.append(f'{kind} {name} (used by {where}): this service\'s schema has no {name}')
            return
        if was.underlying.base != now.underlying.base and not was.is_union:
            self.problems.append(f'enum {name}: stored underlying type {was.underlying.base.lower()}, this '
                                 f'service has {now.underlying.base.lower()}')
        for value, (label, member) in sorted(was.values.items()):
            if value not in now.values:
                self.problems.append(f'{kind} {name}: value {label} = {value} is stored, this service\'s '
                                     f'{name} has no value {value}; keep every value')
                continue
            if was.is_union and member is not None and member.base == 'Obj':
                old_member = self.old.objects[member.index].name
                new_member = now.values[value][1]
                new_name = self.new.objects[new_member.index].name if new_member and new_member.base == 'Obj' \
                    else None
                if new_name != old_member:
                    self.problems.append(f'union {name}: value {value} is {old_member} in the stored schema, '
                                         f'{new_name} in this service\'s')
                else:
                    self.table_or_struct(old_member)


def _spelled(schema: BinarySchema, t: SchemaType) -> str:
    """A type as the messages name it: an enum with its underlying type ('shop.Status (ubyte)')."""
    name = schema.type_name(t)
    base = t.element if t.base in ('Vector', 'Vector64', 'Array') else t.base
    if t.index >= 0 and base not in ('Obj', 'Union', 'UType'):
        return f'{name} ({base.lower()})' if not name.startswith('[') else f'{name[:-1]} ({base.lower()})]'
    return name


def _default(f: SchemaField) -> str:
    return 'null (optional)' if f.default is None else repr(f.default)
