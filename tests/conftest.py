"""Fixtures: real etcd servers from txaioetcd.testing, clients, and per-test key prefixes.

One single-member etcd serves the whole session (tests keep apart by key prefix); tests that need
special server flags or faults start their own from the same harness.
"""

import os
import uuid
from contextlib import ExitStack

import pytest

from txaioetcd import Client
from txaioetcd.testing import EtcdCluster, LocalEtcd


@pytest.fixture(scope='session')
def etcd():
    """A real etcd for the session (or the one at ETCD_URL, if set)."""
    url = os.environ.get('ETCD_URL')
    if url:
        yield _External(url)
        return
    with LocalEtcd() as server:
        yield server


class _External:
    def __init__(self, url):
        self.url = url
        self.endpoints = [url]


@pytest.fixture(scope='session')
def cluster():
    """A real 3-member etcd cluster on loopback, shared by the tests that need one."""
    with EtcdCluster(size=3) as servers:
        yield servers


@pytest.fixture(scope='module')
def etcd_factory():
    """``etcd_factory(**LocalEtcd_arguments)``: a started etcd of the module's own, for tests that need
    special server flags; every one it started is closed when the module is done."""
    with ExitStack() as servers:
        yield lambda **arguments: servers.enter_context(LocalEtcd(**arguments))


@pytest.fixture
def reactor():
    from twisted.internet import reactor
    return reactor


@pytest.fixture
def client(etcd, reactor):
    """A Client on the session etcd, closed after the test."""
    c = Client(reactor, url=etcd.url, timeout=10)
    yield c
    c.close()


@pytest.fixture
def prefix(request):
    """A key prefix no other test uses: tests share the session etcd."""
    name = request.node.name.encode('ascii', 'replace')[:40]
    return b'test/' + name + b'/' + uuid.uuid4().hex[:8].encode() + b'/'
