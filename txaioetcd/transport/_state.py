"""Connection state of a transport, as the client reports it: connecting → connected ⇄ disconnected.

'connected' once any request got an answer; 'disconnected' when a request found no endpoint it could
reach (or lost its connection on all of them); back to 'connected' with the next answer. Listeners
hear every change.
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ('ConnectionState',)

_log = Logger()


class ConnectionState:
    def __init__(self):
        self.state = 'connecting'
        self._listeners = []

    def listen(self, callback) -> None:
        """Call ``callback(old, new)`` on every change."""
        self._listeners.append(callback)

    def unlisten(self, callback) -> None:
        self._listeners.remove(callback)

    def up(self) -> None:
        if self.state != 'connected':
            self._change('connected')

    def down(self) -> None:
        if self.state != 'disconnected':
            self._change('disconnected')

    def _change(self, new: str) -> None:
        old, self.state = self.state, new
        for callback in list(self._listeners):
            try:
                callback(old, new)
            except Exception:
                _log.failure('connection state listener {callback!r} raised', callback=callback)
