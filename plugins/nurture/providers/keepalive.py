"""A keep-alive transport for the SendGrid SDK's HTTP client.

`python_http_client` (under `sendgrid`) opens a new connection, and builds a new urllib
opener, for every request: at a thousand messages a second that is most of the CPU the
sender and the provider spend. Everything else of the SDK is kept (URL, headers, auth, the
Response, its HTTPError classes); only the SDK's documented seam, `_make_request`, sends
over one persistent connection per thread instead.

What a failure means is kept as urllib reports it, which the hook relies on: a failure
before the whole request was written is a `URLError` (it never reached SendGrid: safe to
send again); a failure after that is an `OSError`, or an `http.client.HTTPException` when
the answer broke off (either way it may have been accepted).
"""

from __future__ import annotations

import http.client
import io
import time
import urllib.error
from urllib.parse import urlsplit

# A connection idle this long is replaced before use: the server may be closing it, and a
# request lost that way could not be told from one SendGrid accepted.
MAX_IDLE_S = 2.0


class KeepAliveTransport:
    """`_make_request(opener, request, timeout)` over a reused connection (one thread's)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        self.secure = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def __call__(self, opener, request, timeout=None):
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(request.get_method(), request.selector, body=request.data,
                         headers=dict(request.header_items()))
        except OSError as err:  # the request was not all written: it cannot have been read
            self.close()
            raise urllib.error.URLError(err) from err
        try:
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            self.close()
            raise
        self._last_used = time.monotonic()
        if response.will_close:
            self.close()
        if response.status >= 400:
            from python_http_client.exceptions import handle_error

            raise handle_error(urllib.error.HTTPError(
                request.full_url, response.status, response.reason, response.headers,
                io.BytesIO(body)))
        return _Answer(response.status, body, response.headers)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._last_used > MAX_IDLE_S:
            self.close()
        if self._conn is None:
            kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            conn = kind(self.host, self.port, timeout=timeout)
            try:
                conn.connect()
            except OSError as err:  # refused, unresolvable, connect timeout: nothing sent
                raise urllib.error.URLError(err) from err
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Answer:
    """What `python_http_client.Response` reads from urllib's answer."""

    def __init__(self, status: int, body: bytes, headers) -> None:
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self):
        return self._headers
