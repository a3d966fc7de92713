"""Fetching image URLs for the server without opening a door into its network.

A URL is fetched only when its host is on the allowlist (exact match, after normalisation), every
address it resolves to is public (unless the policy allows private ones), and the connection goes to
the very address that was checked (no second DNS lookup, so no DNS-rebinding gap). The whole fetch,
name resolution included, runs under one total deadline, the body is capped while it streams, and
redirects are refused, not followed.

Errors are :class:`UrlRefused` (the URL breaks the policy) or its subclass :class:`UrlFetchError`
(the URL was allowed but fetching it failed). Both carry ``status``, the HTTP status suggested for the
server's answer, and their messages name at most the URL's host: never its path or query string,
which could hold a key.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, quote, urlsplit

import certifi
import httpx
import idna

from speedmap.errors import SpeedmapError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 2048
MAX_HOST_CHARS = 253
_SHOWN_HOST_CHARS = 100
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ASCII_HOST = re.compile(r"[a-z0-9_.-]+")
_IPV6_LITERAL = re.compile(r"[0-9a-f:.]+")
# What may stay as is in a request target: unreserved, reserved and "%" (existing escapes are kept).
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class UrlRefused(SpeedmapError):
    """The image URL is refused by the server's policy (malformed, host not allowed, private address,
    redirect, too large). ``status`` is the suggested HTTP status: 400, or 403 for a host or address
    that is not allowed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UrlFetchError(UrlRefused):
    """The URL was allowed but fetching it failed: the name did not resolve, the connection failed,
    the upstream answered an error status, or the deadline passed (``timeout``). ``status`` is 400: an
    image the client pointed at and the server cannot get is the client's bad input, not a server failure;
    ``upstream_status`` is the upstream's HTTP status when it answered."""

    def __init__(self, message: str, *, timeout: bool = False, upstream_status: int | None = None) -> None:
        super().__init__(message, 400)
        self.timeout = timeout
        self.upstream_status = upstream_status


def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower case, no trailing dot, IDNA (punycode) for non-ASCII
    names, IP addresses in their canonical form; raises ValueError for a host that is not valid."""
    host = host.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("empty host")
    if ":" in host:
        if not _IPV6_LITERAL.fullmatch(host):
            raise ValueError("bad IPv6 address")
        return str(ipaddress.IPv6Address(host))
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii").rstrip(".")
        except idna.IDNAError as exc:
            raise ValueError(f"bad international name: {exc}") from None
    if not _ASCII_HOST.fullmatch(host) or len(host) > MAX_HOST_CHARS:
        raise ValueError("bad host name")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return host  # a name, or an IPv4 address in another notation (only ever matches itself)


@dataclass(frozen=True)
class UrlPolicy:
    """Which image URLs the server fetches. ``hosts`` are normalised with :func:`normalize_host`
    (any iterable is accepted); ``allow_private`` lets hosts resolve to loopback, private, link-local
    and other non-public addresses (never to unspecified or multicast ones)."""

    hosts: frozenset[str] = field(default_factory=frozenset)
    allow_private: bool = False
    max_bytes: int = 20 * 1024 * 1024
    deadline_s: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.hosts, str):
            raise TypeError("UrlPolicy.hosts is a collection of host names, not one string")
        if self.max_bytes <= 0 or not self.deadline_s > 0:
            raise ValueError("UrlPolicy needs max_bytes > 0 and deadline_s > 0")
        object.__setattr__(self, "hosts", frozenset(normalize_host(h) for h in self.hosts))


# (test, problem) pairs, checked in order; the first test that holds names the problem.
_IPV6_PROBLEMS: tuple[tuple[Callable[[ipaddress.IPv6Address], bool], str], ...] = (
    (lambda ip: ip in _NAT64_LOCAL, "local-use NAT64"),
    (
        lambda ip: ip in _IPV4_COMPATIBLE and not (ip.is_unspecified or ip.is_loopback),
        "IPv4-compatible (deprecated)",
    ),
    (lambda ip: ip.is_site_local, "site-local"),
)
_ADDRESS_PROBLEMS: tuple[tuple[Callable[[IPAddress], bool], str], ...] = (
    (lambda ip: ip.is_unspecified, "unspecified"),
    (lambda ip: ip.is_loopback, "loopback"),
    (lambda ip: ip.is_link_local, "link-local"),
    (lambda ip: ip.is_multicast, "multicast"),
    (lambda ip: isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (carrier-grade NAT)"),
    (lambda ip: ip.is_private, "private"),
    (lambda ip: ip.is_reserved, "reserved"),
    (lambda ip: not ip.is_global, "non-public"),
)


def address_problem(address: IPAddress | str) -> str | None:
    """Why a connection to ``address`` could reach somewhere it should not ("loopback",
    "private", "IPv4-mapped loopback", ...), or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop a scope id
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = address_problem(embedded[1])
            return None if inner is None else f"{embedded[0]} {inner}"
        problem = next((why for test, why in _IPV6_PROBLEMS if test(ip)), None)
        if problem is not None:
            return problem
    return next((why for test, why in _ADDRESS_PROBLEMS if test(ip)), None)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4 or NAT64), with the kind's name."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _show(host: str) -> str:
    return repr(host if len(host) <= _SHOWN_HOST_CHARS else host[:_SHOWN_HOST_CHARS] + "...")


def _split(url: str, policy: UrlPolicy) -> tuple[SplitResult, str, int]:
    """The parsed URL, its normalised allowlisted host and its port; raises UrlRefused."""
    if len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"the image URL is longer than {MAX_URL_CHARS} characters")
    if any(c <= " " or c in "\x7f\\" for c in url):
        raise UrlRefused("the image URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UrlRefused("the image URL is malformed") from None
    if parts.scheme not in _DEFAULT_PORTS:
        scheme = _show(parts.scheme) if parts.scheme else "(none)"
        raise UrlRefused(f"the image URL scheme {scheme} is not allowed: use http or https")
    if "@" in parts.netloc:
        raise UrlRefused("the image URL must not contain a user name or password")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise UrlRefused("the image URL has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        port = _DEFAULT_PORTS[parts.scheme]
    elif not 0 < port < 65536:
        raise UrlRefused(f"the image URL for host {_show(raw_host)} has a bad port")
    try:
        host = normalize_host(raw_host)
    except ValueError:
        raise UrlRefused(f"the image URL host {_show(raw_host)} is not a valid host name") from None
    if host not in policy.hosts:
        raise UrlRefused(f"the image URL host {_show(host)} is not in the server's allowlist", 403)
    return parts, host, port


async def _resolve(host: str, port: int, policy: UrlPolicy) -> list[str]:
    """The addresses ``host`` resolves to, each checked; raises UrlRefused or UrlFetchError."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise UrlFetchError(f"the image URL host {_show(host)} could not be resolved") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise UrlFetchError(f"the image URL host {_show(host)} could not be resolved")
    for address in addresses:
        problem = address_problem(address)
        if problem is None:
            continue
        always = problem.endswith(("unspecified", "multicast"))
        if always or not policy.allow_private:
            why = f"resolves to a non-public address ({problem}), which this server refuses"
            raise UrlRefused(f"the image URL host {_show(host)} {why}", 403)
    return addresses


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())  # httpx's default, built once


async def _get(parts: SplitResult, host: str, port: int, addresses: list[str], policy: UrlPolicy) -> bytes:
    """GET the URL from the first checked address that accepts a connection, with the original host
    in the Host header and (for https) in SNI and the certificate check."""
    scheme = parts.scheme
    url_host = f"[{host}]" if ":" in host else host
    headers = {
        "Host": url_host if port == _DEFAULT_PORTS[scheme] else f"{url_host}:{port}",
        "Accept": "image/*, */*;q=0.5",
        "Accept-Encoding": "identity",  # a compressed body would be inflated past max_bytes in one chunk
    }
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_TARGET_SAFE)
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=policy.deadline_s, verify=_ssl_context()
    ) as client:
        for i, address in enumerate(addresses):
            url = httpx.URL(scheme=scheme, host=address, port=port, raw_path=target.encode("ascii"))
            request = client.build_request("GET", url, headers=headers, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError:
                if i + 1 < len(addresses):
                    continue  # the next checked address of the same host
                raise
            try:
                return await _read(response, _show(host), policy.max_bytes)
            finally:
                await response.aclose()
    raise AssertionError("not reached: the last address returns or raises")


async def _read(response: httpx.Response, shown: str, max_bytes: int) -> bytes:
    """The body of a 200 response, at most ``max_bytes``; raises UrlRefused or UrlFetchError."""
    status = response.status_code
    if 300 <= status < 400:
        raise UrlRefused(
            f"the image URL at host {shown} answered with a redirect (HTTP {status}); redirects are not "
            "followed, send the final URL"
        )
    if status != 200:
        raise UrlFetchError(f"fetching the image URL from host {shown} gave HTTP {status}", upstream_status=status)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UrlFetchError(f"the image URL at host {shown} sent an encoded body ({encoding[:20]!r}), not accepted")
    too_big = UrlRefused(f"the image at the URL is above {max_bytes} bytes")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


async def fetch_image(url: str, policy: UrlPolicy) -> bytes:
    """The body of ``url``, fetched as ``policy`` allows, within ``policy.deadline_s`` in all.

    Raises UrlRefused when the policy refuses the URL (suggested HTTP status in ``exc.status``: 400
    or 403) and UrlFetchError, a subclass, when fetching an allowed URL fails (502, or 504 on timeout).
    """
    parts, host, port = _split(url, policy)
    shown = _show(host)
    late = f"fetching the image URL from host {shown} did not finish within {policy.deadline_s:g} s"
    try:
        async with asyncio.timeout(policy.deadline_s):
            addresses = await _resolve(host, port, policy)
            return await _get(parts, host, port, addresses, policy)
    except (TimeoutError, httpx.TimeoutException):
        raise UrlFetchError(late, timeout=True) from None
    except httpx.HTTPError as exc:
        raise UrlFetchError(f"fetching the image URL from host {shown} failed: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """A short reason for a failed fetch, naming neither the URL's path nor its query."""
    cause: BaseException | None = exc
    for _ in range(5):
        cause = cause.__cause__ or cause.__context__ if cause is not None else None
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"{exc.__class__.__name__}, certificate check failed ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"{exc.__class__.__name__}, TLS failed ({cause.reason})"
        if isinstance(cause, ConnectionRefusedError):
            return f"{exc.__class__.__name__}, connection refused"
    return exc.__class__.__name__
