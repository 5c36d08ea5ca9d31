"""A service whose configuration updates live: it reads settings from a local Mirror of etcd (no
round trip per read) and reacts when an operator changes them.

Run: python examples/live_config.py   (uses $ETCD_URL, or starts a private etcd for the run)
"""

from txaioetcd import Client, KeySet
from txaioetcd.recipes.mirror import Mirror
from txaioetcd.devserver import run_with_etcd

CONFIG = b'examples/live-config/'


class Service:
    """Reads its settings from the mirror on every request; logs each change as it arrives."""

    def __init__(self, client):
        self.client = client
        self.config = Mirror(client, KeySet(CONFIG, prefix=True), self.changed)
        self.changes = []

    def setting(self, name: str, default: str) -> str:
        value = self.config.get(CONFIG + name.encode())
        return value.decode() if value is not None else default

    def changed(self, event):
        name = event.kv.key[len(CONFIG):].decode()
        if event.type == 'DELETE':
            self.changes.append(f'{name} removed (back to its default)')
        else:
            self.changes.append(f'{name} = {event.kv.value.decode()}')
        print(f'config changed at revision {event.revision}: {self.changes[-1]}')


async def main(reactor, url):
    operator = Client(reactor, url=url)                     # stands for another process
    await operator.delete(KeySet(CONFIG, prefix=True))
    await operator.set(CONFIG + b'log_level', b'info')

    service = Service(Client(reactor, url=url))
    await service.config.ready()
    print(f'service starts with log_level={service.setting("log_level", "warning")}, '
          f'workers={service.setting("workers", "4")}')

    await operator.set(CONFIG + b'workers', b'16')
    await operator.set(CONFIG + b'log_level', b'debug')
    last = await operator.delete(CONFIG + b'log_level')
    await service.config.wait_for(last.header.revision, timeout=10)

    print(f'service now runs with log_level={service.setting("log_level", "warning")}, '
          f'workers={service.setting("workers", "4")}')
    assert service.changes == ['workers = 16', 'log_level = debug',
                               'log_level removed (back to its default)']
    service.config.close()
    await service.client.close()
    await operator.close()


if __name__ == '__main__':
    raise SystemExit(run_with_etcd(main))
