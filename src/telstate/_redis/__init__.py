"""One Redis transport for the sync and asyncio backends.

The rules of talking to Redis are written once, without I/O, and two drivers move
the bytes::

    resp      RESP packing; hiredis parses replies (errors stay in place)
    config    where a deployment is and how to reach it: URLs, clients, TLS, credentials
    rules     what a failure means: retry, rediscover the primary, or give up; backoff
    session   the plans: handshake of a new connection, discovery of the primary through
              the sentinels, a batch of commands with its retries, NOSCRIPT reloads and
              WAIT for replicas (generators yielding Exchange and Pause effects)
    hub       pub/sub bookkeeping shared by every waiter of a backend, and the sentinels'
              +switch-master announcements
    sync      the blocking driver: sockets, a pool of connections, a hub thread
    aio       the asyncio driver: protocols multiplexing requests, a hub task

A plan never touches a socket: it yields ``Exchange(node, payload, count)`` and gets
the replies back (or a :class:`~.rules.Failure` thrown in), and ``Pause(seconds)`` to
back off.  The drivers run plans the way psycopg 3 runs its generators, so the sync
and asyncio backends behave the same by construction.
"""
