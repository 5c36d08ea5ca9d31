"""What every transport shares: its members (endpoints) and the failover rules of a unary call.

``Members`` is the base of a transport: the member list, the preferred member (calls stick to the
first that works), members passed over for a while after they failed or stayed silent, auto-sync's
new members, the connection state and ``lazy``.

``FailoverCall`` is the base of one unary call: it tries members in turn, bounded by one deadline.
The rules, the same for every transport:

- could not connect (nothing was sent): the next member, for any request;
- the connection dropped, the member has no leader, or the stream was refused before processing:
  the next member for requests that may be sent again (``op.idempotent``); a write whose answer was
  lost fails with OutcomeUnknown, never sent twice;
- every member tried: a lazy client (for connect failures) and reads to a cluster (for lost
  connections and "unavailable") wait with growing, jittered pauses and try again, until the
  deadline says no;
- the deadline: Timeout for a read or for a request never sent, OutcomeUnknown for a write that
  went out; a member that took a request and stayed silent until then is passed over for a while.

A subclass implements ``_attempt(member)`` (send the request), ``_stop_attempt()`` (drop what is in
flight) and calls ``_next_member(error)``, ``_finish(result)`` and ``_finish_error(error)``.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from .._defer import Deferred
from ..errors import (ClientClosed, ConnectionFailed, ConnectionLost, NoLeader, OutcomeUnknown, ServerError,
                      Timeout, TLSError, TransportError, Unavailable)
from ..retry import READ_RETRY
from ._state import ConnectionState

# etcd before 3.5.5 (and 3.4.22) panics - the whole member goes down - when the context of a
# read-only transaction is cancelled while it is being applied (etcd-io/etcd#14110): a client that
# gives up on one must not cancel it in the server. Such a request is left to finish and its answer
# dropped; only if it is still running this much later is it cancelled after all (a member paused
# or cut off would otherwise hold the connection or stream for ever).
DETACHED_GRACE = 30.0


def detaches(op) -> bool:
    """Whether a request given up is left to finish in the server rather than cancelled there."""
    return op.rpc == 'KV/Txn' and op.idempotent

__all__ = ('Members', 'FailoverCall', 'with_request')


class Members:
    """The endpoints of a transport and which one calls start at. ``_make_member(url)`` builds one
    (an object with ``url`` and ``avoid_until``)."""

    lazy = False
    AVOID_SECONDS = 3.0     # how long a member that failed is passed over when a call starts

    def __init__(self, reactor, endpoints):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError(f'{type(self).__name__} needs at least one endpoint URL')
        self._reactor = reactor
        self._members = [self._make_member(url) for url in endpoints]
        self._preferred = 0
        self._closed = False
        self.connection = ConnectionState()

    def _make_member(self, url: str):
        raise NotImplementedError

    @property
    def endpoints(self) -> list[str]:
        return [member.url for member in self._members]

    @property
    def current_endpoint(self) -> str:
        return self._members[self._preferred].url

    def endpoint_failed(self, error: Exception) -> None:
        """A stream on the preferred endpoint broke for a transport reason: prefer the next one."""
        if isinstance(error, (ConnectionFailed, ConnectionLost, Timeout)) and len(self._members) > 1:
            self._avoid(self._members[self._preferred])
            self._preferred = self._start_index()

    def add_endpoint(self, url: str) -> bool:
        """Talk to one more member (auto-sync found it) → whether it was new."""
        if url in self.endpoints or self._closed:
            return False
        self._members.append(self._make_member(url))
        return True

    def _avoid(self, member) -> None:
        if len(self._members) > 1:
            member.avoid_until = self._reactor.seconds() + self.AVOID_SECONDS

    def _start_index(self) -> int:
        """Where a call starts: the preferred member, unless it failed lately and another did not."""
        now = self._reactor.seconds()
        count = len(self._members)
        for step in range(count):
            index = (self._preferred + step) % count
            if self._members[index].avoid_until <= now:
                return index
        return self._preferred

    def _moved_on(self, index: int) -> None:
        # Prefer the member that just answered, so later calls skip the dead one.
        self._preferred = index


class FailoverCall:
    """One unary call over ``transport`` (a Members), tried member by member within its deadline."""

    __slots__ = ('_transport', '_op', '_describe', '_idempotent', '_result', '_timer', '_index', '_tries',
                 '_member', '_errors', '_failures', '_waits', '_retry', '_reached', '_done', '_sent', '_pending')

    def __init__(self, transport: Members, op):
        self._transport = transport
        self._op = op
        self._describe = op.describe()
        self._idempotent = op.idempotent
        self._index = transport._start_index()
        self._tries = 0
        self._member = None
        self._errors = []
        self._failures = []
        self._waits = 0
        self._retry = None
        self._reached = False
        self._done = False
        self._sent = False          # the current attempt's request went out
        self._pending = None        # Deferred of the connection the current attempt waits for
        self._timer = None

    def start(self, timeout: float) -> Deferred:
        self._result = Deferred(self._cancelled)
        if self._transport._closed:
            self._finish_error(ClientClosed('the client is closed', self._describe))
            return self._result
        self._timer = self._transport._reactor.callLater(timeout, self._expired, timeout)
        self._try()
        return self._result

    # -- what a transport provides

    def _attempt(self, member) -> None:
        raise NotImplementedError

    def _stop_attempt(self) -> bool:
        """Drop the attempt in flight → whether a request had gone out on it."""
        raise NotImplementedError

    # -- the connection an attempt waits for

    def _when_connected(self, connect) -> None:
        """The attempt goes on in ``_send(connection)`` once ``connect()`` (a Deferred of a connection;
        it may raise ClientClosed at once) gives one."""
        try:
            pending = connect()
        except ClientClosed as error:
            self._finish_error(ClientClosed(error.reason, self._describe))
            return
        self._pending = pending
        pending.addCallbacks(self._send, self._no_connection)

    def _send(self, connection) -> None:
        raise NotImplementedError

    def _no_connection(self, failure) -> None:
        self._pending = None
        if self._done:
            return
        failure.trap(ConnectionFailed, ClientClosed)
        if isinstance(failure.value, ClientClosed):
            self._finish_error(ClientClosed(failure.value.reason, self._describe))
            return
        self._next_member(failure.value)      # nothing was sent

    def _stop_waiting(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.addErrback(lambda failure: failure.trap(CancelledError))
            pending.cancel()

    # -- attempts

    def _try(self) -> None:
        members = self._transport._members
        self._member = members[self._index % len(members)]
        self._tries += 1
        self._sent = False
        self._attempt(self._member)

    def _next_member(self, error: Exception) -> None:
        """Try the next member, or give up (or wait and start over) when every member had its turn."""
        transport = self._transport
        self._errors.append(f'{self._member.url}: {error.reason if hasattr(error, "reason") else error}')
        self._failures.append(error)
        if isinstance(error, (ConnectionFailed, ConnectionLost, Unavailable)):
            transport._avoid(self._member)
        if not isinstance(error, ConnectionFailed):
            self._reached = True        # some member is up: worth waiting for it (or an election)
        if self._tries < len(transport._members):
            self._index += 1
            self._try()
            return
        if isinstance(error, (ConnectionFailed, ConnectionLost)):
            transport.connection.down()
        retryable = not isinstance(error, TLSError)    # a certificate does not fix itself
        waits = retryable and (
            (isinstance(error, ConnectionFailed) and transport.lazy) or
            (self._idempotent and self._reached and len(transport._members) > 1 and
             isinstance(error, (ConnectionFailed, ConnectionLost, Unavailable))))
        if waits:
            # Nothing was sent (or it is safe to send again): a lazy client waits for an endpoint to
            # come up, and a read to a cluster waits out an election or a restart - until the deadline.
            self._waits += 1
            self._tries = 0
            self._index += 1
            self._retry = transport._reactor.callLater(READ_RETRY.pause(self._waits), self._retry_now)
            return
        if isinstance(error, ConnectionFailed) and len(self._errors) > 1:
            # Keep a specific class (e.g. CertificateUntrusted) when every endpoint failed alike.
            kind = type(error) if all(isinstance(e, type(error)) for e in self._failures) else ConnectionFailed
            error = kind('no endpoint could be reached (' + '; '.join(self._errors) + ')')
        self._finish_error(with_request(error, self._describe))

    def _retry_now(self) -> None:
        self._retry = None
        if not self._done:
            self._try()

    def _lost_after_sending(self, error: Exception) -> None:
        """The answer of a sent request is lost: a read goes elsewhere, a write's fate is unknown."""
        if self._idempotent:
            self._next_member(error)
        else:
            self._finish_error(OutcomeUnknown(
                f'connection to {self._member.url} lost after the request was sent; it may or may '
                f'not have been applied - read the key back to find out', self._describe, error))

    def _unavailable(self, refused: Unavailable, message: str) -> None:
        """etcd answered "unavailable": no leader (refused before processing) or a read moves on; any
        other came after the request went on into etcd (a lost proposal, a leader change)."""
        if self._idempotent or isinstance(refused, NoLeader):
            self._next_member(refused)
            return
        self._finish_error(OutcomeUnknown(
            f'{self._member.url} answered "{message}" after taking the request; it may or may not '
            f'have been applied - read the key back to find out', self._describe, refused))

    # -- endings

    def _expired(self, timeout: float) -> None:
        self._timer = None
        if self._done:
            return
        sent = self._abandon()
        transport = self._transport
        if sent:
            # A member that took a request and stayed silent until the deadline: later calls start
            # elsewhere for a while (a hung member must not keep the client pinned).
            transport._avoid(self._member)
            if transport._members[transport._preferred] is self._member:
                transport._preferred = transport._start_index()
        if sent and not self._idempotent:
            self._finish_error(OutcomeUnknown(
                f'no answer from {self._member.url} within {timeout:g} s after the request was sent; '
                f'it may or may not have been applied - read the key back to find out',
                self._describe, Timeout(f'deadline of {timeout:g} s passed', self._describe)))
        else:
            tried = f' (earlier: {"; ".join(self._errors[-3:])})' if self._errors else ''
            self._finish_error(Timeout(f'no answer within {timeout:g} s from {self._member.url}{tried}',
                                       self._describe))

    def _abandon(self) -> bool:
        """Stop trying: drop the attempt in flight (→ whether its request had gone out) and the retry."""
        self._done = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        return self._stop_attempt()

    def _cancelled(self, result: Deferred) -> None:
        if not self._done:
            self._abandon()
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _answered(self) -> None:
        """The current member answered: it is where calls start from now on."""
        transport = self._transport
        index = self._index % len(transport._members)
        if index != transport._preferred:
            transport._moved_on(index)
        transport.connection.up()

    def _finish(self, result) -> None:
        self._done = True
        self._stop_timer()
        self._result.callback(result)

    def _finish_error(self, error: Exception) -> None:
        self._done = True
        self._stop_timer()
        self._result.errback(error)


def with_request(error: Exception, describe: str) -> Exception:
    """The same kind of error, naming the request it belongs to."""
    if isinstance(error, (TransportError, ServerError)) and error.request is None:
        return type(error)(error.reason, describe)
    return error
