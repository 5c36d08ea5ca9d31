"""The User record the tutorials store: any class works, the table only needs marshal and parse."""

import uuid


class User:
    def __init__(self, oid: uuid.UUID, name: str, email: str, age: int | None = None):
        self.oid = oid
        self.name = name
        self.email = email
        self.age = age

    def marshal(self) -> dict:
        return {'oid': self.oid.bytes, 'name': self.name, 'email': self.email, 'age': self.age}

    @staticmethod
    def parse(data: dict) -> 'User':
        return User(uuid.UUID(bytes=data['oid']), data['name'], data['email'], data.get('age'))

    def __eq__(self, other):
        return isinstance(other, User) and self.marshal() == other.marshal()

    def __repr__(self):
        return f'User({self.name!r}, {self.email!r}, age={self.age})'
