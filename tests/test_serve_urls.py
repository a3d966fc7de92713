"""Fetching image URLs: the policy (schemes, exact hosts, resolved addresses) and the fetch itself
(deadline, size cap, redirects, errors) against small real HTTP and TLS servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from speedmap.errors import SpeedmapError
from speedmap.serve import urls
from speedmap.serve.urls import UrlFetchError, UrlPolicy, UrlRefused, address_problem, fetch_image, normalize_host

IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40  # 10244 bytes, content does not matter here


@dataclass
class Upstream:
    """A real HTTP server on 127.0.0.1 that records what it was asked."""

    port: int
    hits: list[tuple[str, str]] = field(default_factory=list)  # (path with query, Host header)
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _serve(redirect_to: int | None = None) -> tuple[Upstream, http.server.ThreadingHTTPServer]:
    upstream = Upstream(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _start(self, status: int = 200, length: int | None = None, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "image/jpeg")
            if length is not None:
                self.send_header("Content-Length", str(length))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()

        def do_GET(self) -> None:
            upstream.hits.append((self.path, self.headers.get("Host", "")))
            path = self.path.split("?", 1)[0]
            try:
                if path == "/image.jpg":
                    self._start(length=len(IMAGE))
                    self.wfile.write(IMAGE)
                elif path == "/image-unsized.jpg":  # no Content-Length: the cap is checked while streaming
                    self._start()
                    self.wfile.write(IMAGE)
                elif path == "/redirect":
                    self._start(302, 0, Location=f"http://127.0.0.1:{redirect_to}/image.jpg")
                elif path == "/drip":  # one byte every 0.5 s, forever: only a total deadline ends it
                    self._start()
                    while not upstream.stop.is_set():
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.5)
                elif path == "/endless":
                    self._start()
                    while not upstream.stop.is_set():
                        self.wfile.write(b"\0" * 65536)
                elif path == "/declared-huge":
                    self._start(length=10**12)
                elif path == "/gzip":
                    self._start(length=len(IMAGE), Content_Encoding="gzip")
                    self.wfile.write(IMAGE)
                else:
                    self._start(404, 0)
            except OSError:
                pass  # the client hung up, as it should on an endless body

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    upstream.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return upstream, server


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Upstream, Upstream]]:
    """The upstream under test, and a second one that only the redirect points to."""
    target, target_server = _serve()
    upstream, server = _serve(redirect_to=target.port)
    yield upstream, target
    for up, srv in ((upstream, server), (target, target_server)):
        up.stop.set()
        srv.shutdown()
        srv.server_close()


def fetch(url: str, *hosts: str, allow_private: bool = True, max_bytes: int = 10**6, deadline_s: float = 3.0) -> bytes:
    policy = UrlPolicy(frozenset(hosts), allow_private=allow_private, max_bytes=max_bytes, deadline_s=deadline_s)
    return asyncio.run(fetch_image(url, policy))


def refused(url: str, *hosts: str, **kwargs: object) -> UrlRefused:
    with pytest.raises(UrlRefused) as info:
        fetch(url, *hosts, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, SpeedmapError)
    return info.value


# ---- the fetch against real servers


def test_an_allowlisted_address_is_fetched_with_its_host_and_query(servers: tuple[Upstream, Upstream]) -> None:
    upstream, _ = servers
    assert fetch(upstream.url("/image.jpg?size=large&k=1"), "127.0.0.1") == IMAGE
    assert upstream.hits[-1] == ("/image.jpg?size=large&k=1", f"127.0.0.1:{upstream.port}")
    assert fetch(upstream.url("/image-unsized.jpg"), "127.0.0.1", max_bytes=len(IMAGE)) == IMAGE


def test_a_name_is_fetched_from_its_checked_address_with_its_own_host_header(
    servers: tuple[Upstream, Upstream],
) -> None:
    upstream, _ = servers
    assert fetch(upstream.url("/image.jpg", host="LocalHost."), "localhost") == IMAGE
    assert upstream.hits[-1] == ("/image.jpg", f"localhost:{upstream.port}")


def test_loopback_is_refused_unless_private_addresses_are_allowed(servers: tuple[Upstream, Upstream]) -> None:
    upstream, _ = servers
    before = len(upstream.hits)
    for host in ("127.0.0.1", "localhost"):
        exc = refused(upstream.url("/image.jpg", host=host), host, allow_private=False)
        assert not isinstance(exc, UrlFetchError)
        assert exc.status == 403
        assert "loopback" in str(exc)
        assert repr(host) in str(exc)
    assert len(upstream.hits) == before  # refused before connecting


def test_only_the_exact_host_is_allowed(servers: tuple[Upstream, Upstream]) -> None:
    upstream, _ = servers
    for url, allowed in [
        ("http://img.example.com/a.jpg", "example.com"),
        ("http://example.com.evil.test/a.jpg", "example.com"),
        ("http://example.com/a.jpg", "img.example.com"),
        (upstream.url("/image.jpg", host="localhost"), "127.0.0.1"),
        (upstream.url("/image.jpg"), "localhost"),
    ]:
        exc = refused(url, allowed)
        assert exc.status == 403
        assert "not in the server's allowlist" in str(exc)


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0x7f.1", "017700000001", "[::1]", "[::ffff:127.0.0.1]", "[0:0::1]"]
)
def test_ip_literals_in_any_notation_are_refused(host: str) -> None:
    url = f"http://{host}/image.jpg"
    # not the allowlisted address as written: no match
    assert "allowlist" in str(refused(url, "127.0.0.1", "localhost", allow_private=False))
    # allowlisted as written: the address they resolve to is checked like any other
    exc = refused(url, host, allow_private=False)
    assert not isinstance(exc, UrlFetchError)
    assert "loopback" in str(exc)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/image.jpg",
        "gopher://127.0.0.1:70/_GET%20/",
        "data:image/png;base64,AAAA",
        "//127.0.0.1/image.jpg",
        "127.0.0.1/image.jpg",
        "http://user:pw@127.0.0.1/image.jpg",
        "http://user@127.0.0.1/image.jpg",
        "http://@127.0.0.1/image.jpg",
        "http:///image.jpg",
        "http://127.0.0.1:0/image.jpg",
        "http://127.0.0.1:99999/image.jpg",
        "http://127.0.0.1/ima ge.jpg",
        "http://127.0.0.1\\@example.com/image.jpg",
        "http://127.0.0.1/\r\nX-Injected: 1",
        "http://127.0.0.1/" + "a" * 2048,
        "http://" + "a" * 300 + "/image.jpg",
    ],
)
def test_malformed_or_other_scheme_urls_are_refused(url: str) -> None:
    exc = refused(url, "127.0.0.1", "example.com")
    assert not isinstance(exc, UrlFetchError)
    assert exc.status in (400, 403)


def test_a_redirect_is_refused_and_never_followed(servers: tuple[Upstream, Upstream]) -> None:
    upstream, target = servers
    exc = refused(upstream.url("/redirect?api_key=secret"), "127.0.0.1")
    assert not isinstance(exc, UrlFetchError)
    assert "redirect" in str(exc)
    assert "302" in str(exc)
    assert "not followed" in str(exc)
    assert target.hits == []


def test_a_dripping_server_is_cut_at_the_total_deadline(servers: tuple[Upstream, Upstream]) -> None:
    upstream, _ = servers
    started = time.perf_counter()
    with pytest.raises(UrlFetchError) as info:
        fetch(upstream.url("/drip"), "127.0.0.1", deadline_s=1.5)
    elapsed = time.perf_counter() - started
    assert 1.4 < elapsed < 2.5
    assert info.value.timeout
    assert info.value.status == 400 and info.value.timeout
    assert "within 1.5 s" in str(info.value)


def test_a_body_above_max_bytes_is_refused(servers: tuple[Upstream, Upstream]) -> None:
    upstream, _ = servers
    started = time.perf_counter()
    exc = refused(upstream.url("/endless"), "127.0.0.1", max_bytes=100_000)
    assert time.perf_counter() - started < 2.0
    assert "above 100000 bytes" in str(exc)
    assert not isinstance(exc, UrlFetchError)
    assert "above 100000 bytes" in str(refused(upstream.url("/declared-huge"), "127.0.0.1", max_bytes=100_000))
    # one byte over, with and without a Content-Length
    assert "above" in str(refused(upstream.url("/image.jpg"), "127.0.0.1", max_bytes=len(IMAGE) - 1))
    assert "above" in str(refused(upstream.url("/image-unsized.jpg"), "127.0.0.1", max_bytes=len(IMAGE) - 1))


def test_upstream_errors_name_the_status_and_never_the_query(servers: tuple[Upstream, Upstream]) -> None:
    upstream, _ = servers
    with pytest.raises(UrlFetchError) as info:
        fetch(upstream.url("/missing.jpg?api_key=secret"), "127.0.0.1")
    assert "404" in str(info.value)
    assert info.value.upstream_status == 404
    assert info.value.status == 400
    assert not info.value.timeout
    with pytest.raises(UrlFetchError, match="encoded body"):
        fetch(upstream.url("/gzip"), "127.0.0.1")
    # nothing listens on port 1: a connection error, named by its class only
    with pytest.raises(UrlFetchError, match="ConnectError, connection refused"):
        fetch("http://127.0.0.1:1/image.jpg?api_key=secret", "127.0.0.1")
    for url, hosts in [
        (upstream.url("/missing.jpg?api_key=secret"), ("127.0.0.1",)),
        (upstream.url("/redirect?api_key=secret"), ("127.0.0.1",)),
        (upstream.url("/image.jpg?api_key=secret"), ()),
        (upstream.url("/image.jpg?api_key=secret&x=" + "y" * 3000), ("127.0.0.1",)),
        ("http://127.0.0.1:1/image.jpg?api_key=secret", ("127.0.0.1",)),
        ("ftp://127.0.0.1/image.jpg?api_key=secret", ("127.0.0.1",)),
    ]:
        with pytest.raises(UrlRefused) as info:
            fetch(url, *hosts)
        assert "secret" not in str(info.value)
        assert "api_key" not in str(info.value)
        assert "/image.jpg" not in str(info.value)


def test_messages_show_at_most_100_characters_of_the_host() -> None:
    host = "a" * 60 + "." + "b" * 60 + ".example"
    exc = refused(f"http://{host}/image.jpg", "example")
    assert host not in str(exc)
    assert host[:100] in str(exc)


# ---- https: the connection goes to the checked address, SNI and the certificate check use the host


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _tls_server(cert: Path, key: Path, seen: list[str | None]) -> socket.socket:
    """A one-connection-at-a-time HTTPS server on 127.0.0.1 answering IMAGE, until its listening
    socket (returned) is closed; records the SNI names."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(3)
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += tls.recv(4096) or b"\r\n\r\n"
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(IMAGE)}\r\nConnection: close\r\n\r\n"
                    tls.sendall(head.encode() + IMAGE)
            except (OSError, ssl.SSLError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_https_checks_the_certificate_against_the_host_not_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path, "localhost")
    trusted = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(urls, "_ssl_context", lambda: trusted)  # trust the test certificate, nothing else
    seen: list[str | None] = []
    with _tls_server(cert, key, seen) as listener:
        port = listener.getsockname()[1]
        # the certificate names "localhost", not 127.0.0.1: this works only if the check uses the host
        assert fetch(f"https://localhost:{port}/image.jpg", "localhost") == IMAGE
        assert seen == ["localhost"]
        # the same server reached as 127.0.0.1 fails the check: hostname checking is on
        with pytest.raises(UrlFetchError, match="certificate check failed") as info:
            fetch(f"https://127.0.0.1:{port}/image.jpg?api_key=secret", "127.0.0.1")
        assert "secret" not in str(info.value)


# ---- the policy's pieces


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "127.0.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "::",
        "ff02::1",
        "fec0::1",
        "2001:db8::1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_non_public_addresses_are_named(address: str) -> None:
    assert address_problem(address) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


def test_problems_say_what_the_address_is() -> None:
    assert address_problem("127.0.0.1") == "loopback"
    assert address_problem("::ffff:127.0.0.1") == "IPv4-mapped loopback"
    assert address_problem("169.254.169.254") == "link-local"
    assert address_problem("100.64.0.1") == "shared (carrier-grade NAT)"


def test_hosts_are_normalised_the_same_way_in_the_policy_and_the_url() -> None:
    assert normalize_host("Example.COM.") == "example.com"
    assert normalize_host("bücher.de") == "xn--bcher-kva.de"
    assert normalize_host("[::FFFF:127.0.0.1]") == "::ffff:7f00:1"
    assert normalize_host("0x7f.1") == "0x7f.1"
    assert UrlPolicy(frozenset({"LOCALHOST.", "Bücher.de"})).hosts == {"localhost", "xn--bcher-kva.de"}
    for bad in ["", ".", "a b", "a/b", "[::1", "a" * 254, "fe80::1%eth0"]:
        with pytest.raises(ValueError):
            normalize_host(bad)
    with pytest.raises(TypeError):
        UrlPolicy("localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        UrlPolicy(frozenset(), deadline_s=0)


def test_unspecified_and_multicast_stay_refused_even_with_private_allowed() -> None:
    exc = refused("http://0.0.0.0/image.jpg", "0.0.0.0", allow_private=True)
    assert "unspecified" in str(exc)
