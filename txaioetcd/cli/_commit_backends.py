"""Where ``txaioetcd commits`` commands read and write: etcd directly (a CommitStore) or a commits HTTP
API (ours or Rainer's, through CommitsClient). Both give the same plain shapes: metadata dicts (Rainer's
keys) and payload bytes, with asynchronous methods returning Deferreds."""

from __future__ import annotations

from twisted.internet import threads

from ..commits.http import CommitsClient

__all__ = ('StoreBackend', 'HttpBackend')


def _meta(meta) -> dict:
    return {'key': meta.key, 'version': meta.version, 'author': meta.author, 'comment': meta.comment,
            'mtime': meta.mtime, 'empty': meta.empty, 'revision': meta.revision}


class StoreBackend:
    def __init__(self, store):
        self.store = store
        self.where = f'etcd namespace {store.namespace!r}'

    async def heads(self, everything: bool) -> dict:
        return {key: _meta(commit.meta) for key, commit in (await self.store.heads(all=everything)).items()}

    async def get(self, key: str, version: int | None = None) -> tuple:
        commit = await self.store.get(key, version)
        return _meta(commit.meta), commit.payload

    async def history(self, key: str, before: int | None, limit: int | None) -> list:
        """[(meta, payload)] newest first."""
        return [(_meta(c.meta), c.payload) async for c in self.store.history(key, before=before, limit=limit)]

    async def commit(self, key, payload, version, author, comment, empty=False) -> dict:
        return _meta(await self.store.commit(key, payload, version, author, comment, empty=empty))

    async def close(self):
        await self.store.client.close()


class HttpBackend:
    """Calls CommitsClient (blocking urllib) in a thread, so that commands share one asynchronous shape."""

    def __init__(self, url: str, token: str | None, timeout: float):
        self.client = CommitsClient(url, token=token, timeout=timeout)
        self.where = url

    def _call(self, fn, *args, **kwargs):
        return threads.deferToThread(fn, *args, **kwargs)

    async def heads(self, everything: bool) -> dict:
        return await self._call(self.client.list, all=everything)

    async def get(self, key: str, version: int | None = None) -> tuple:
        meta = await self._call(self.client.get_metadata, key, version)
        payload = b'' if meta.get('empty') else await self._call(self.client.get_value, key, meta['version'])
        return meta, payload

    async def history(self, key: str, before: int | None, limit: int | None) -> list:
        metas = await self._call(self.client.log, key, before=before, limit=limit)
        out = []
        for meta in metas:
            payload = b'' if meta.get('empty') else await self._call(self.client.get_value, key, meta['version'])
            out.append((meta, payload))
        return out

    async def commit(self, key, payload, version, author, comment, empty=False) -> dict:
        return await self._call(self.client.post_commit, {'key': key, 'version': version, 'author': author,
                                                          'comment': comment, 'empty': empty}, payload)

    async def close(self):
        pass
