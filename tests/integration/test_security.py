"""TLS, mutual TLS, bearer tokens and the loopback-only rule for plain text; certificates made at test time."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from movierec.client import AsyncClient, Client, MovieRecError, RecommendQuery

TOKEN = "s3cret-token-0123456789abcdef"
OTHER = "second-token-abcdefghijklmnop"


def _certs(tmp: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key: Any, cert: Any) -> None:
        (tmp / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (tmp / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def build(cn: str, issuer: Any, issuer_key: Any, key: Any, ca: bool, usage: Any = None, san: Any = None) -> Any:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("movierec test CA", name("movierec test CA"), ca_key, ca_key, True)
    write("ca", ca_key, ca)
    skey = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    write("server", skey, build("localhost", ca.subject, ca_key, skey, False, ExtendedKeyUsageOID.SERVER_AUTH, san))
    ckey = ec.generate_private_key(ec.SECP256R1())
    write("client", ckey, build("client-1", ca.subject, ca_key, ckey, False, ExtendedKeyUsageOID.CLIENT_AUTH))
    return {n: tmp / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _certs(tmp_path_factory.mktemp("pki"))


def _user(scorer: Any) -> int:
    return int(scorer.users.raw[0])


def test_tls_and_mutual_tls(make_server: Any, scorer: Any, certs: dict[str, Path]) -> None:
    user = _user(scorer)
    tls = make_server(tls_cert=str(certs["server.pem"]), tls_key=str(certs["server.key"]))
    with Client(tls.target, root_certificates=certs["ca.pem"], timeout=10) as c:
        assert c.recommend(user, k=2)[0].user_id == user
    with Client(tls.target, timeout=2) as plain, pytest.raises(MovieRecError) as exc:
        plain.recommend(user, k=2)  # a plain-text client cannot talk to a TLS port
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE

    mtls = make_server(
        tls_cert=str(certs["server.pem"]), tls_key=str(certs["server.key"]), tls_client_ca=str(certs["ca.pem"])
    )
    with Client(
        mtls.target, root_certificates=certs["ca.pem"], client_cert=certs["client.pem"],
        client_key=certs["client.key"], timeout=10,
    ) as c:  # fmt: skip
        assert c.recommend(user, k=2)[0].user_id == user
    with Client(mtls.target, root_certificates=certs["ca.pem"], timeout=2) as c, pytest.raises(MovieRecError):
        c.recommend(user, k=2)  # no client certificate: the handshake fails


def test_bearer_tokens(make_server: Any, scorer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user = _user(scorer)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# two tokens: rotation\n{TOKEN}\n\n{OTHER}\n")
    srv = make_server(auth_token_file=str(tokens))

    for bad in (None, "wrong-token-0123456789abcdef", TOKEN[:-1], TOKEN + "x", ""):
        with Client(srv.target, token=bad, timeout=5) as c:
            with pytest.raises(MovieRecError) as exc:
                c.recommend(user, k=2)
            assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED, exc.value
            with pytest.raises(MovieRecError) as exc:
                list(c.stream([RecommendQuery([user], k=2)]))
            assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(MovieRecError) as exc:
                c.model_info()
            assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert c.health() == "SERVING"  # orchestrators' probes need no token
    # a raw metadata header with another scheme is refused too
    ch = grpc.insecure_channel(srv.target)
    with pytest.raises(grpc.RpcError) as rpc:
        ch.unary_unary("/movierec.v1.RecommenderService/GetModelInfo")(b"", metadata=[("authorization", TOKEN)])
    assert rpc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ch.close()

    for good in (TOKEN, OTHER):
        with Client(srv.target, token=good, timeout=10) as c:
            assert c.recommend(user, k=2)[0].user_id == user
            assert [r.ok for r in c.stream([RecommendQuery([user], k=2)])] == [True]
            assert c.model_info().n_items == len(scorer.items)

    async def aio() -> None:
        async with AsyncClient(srv.target, token=TOKEN, timeout=10) as c:
            assert (await c.recommend(user, k=2))[0].user_id == user
            assert [r.ok async for r in c.stream([RecommendQuery([user], k=2)])] == [True]
        async with AsyncClient(srv.target, timeout=5) as c:
            with pytest.raises(MovieRecError) as exc:
                await c.recommend(user, k=2)
            assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert await c.health() == "SERVING"

    asyncio.run(aio())
    assert srv.server.guard.denied >= 15
    assert TOKEN not in caplog.text and OTHER not in caplog.text
    assert TOKEN not in srv.settings.describe()


def test_tls_with_token(make_server: Any, scorer: Any, certs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "t").write_text(TOKEN + "\n")
    srv = make_server(
        tls_cert=str(certs["server.pem"]), tls_key=str(certs["server.key"]), auth_token_file=str(tmp_path / "t")
    )
    with Client(srv.target, root_certificates=certs["ca.pem"].read_bytes(), token=TOKEN, timeout=10) as c:
        assert c.recommend(_user(scorer), k=1)[0].user_id == _user(scorer)


def test_bad_token_file_and_settings(tmp_path: Path) -> None:
    from movierec.server.auth import read_tokens
    from movierec.server.config import ServerSettings

    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ValueError, match="at least 16"):
        read_tokens(tmp_path / "short")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no tokens"):
        read_tokens(tmp_path / "empty")
    with pytest.raises(ValueError, match="refusing plain-text"):
        ServerSettings(host="0.0.0.0")
    assert ServerSettings(host="0.0.0.0", insecure=True).transport().startswith("plain text (--insecure")
    assert ServerSettings(host="::1").loopback and ServerSettings(host="localhost").loopback
    with pytest.raises(ValueError, match="go together"):
        ServerSettings(tls_cert="a.pem")


def test_serve_refuses_plain_text_off_loopback(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "refusing plain-text" in out.stderr and "--insecure" in out.stderr and "Traceback" not in out.stderr
