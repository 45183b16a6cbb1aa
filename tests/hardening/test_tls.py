"""TLS (issue 6): ``nfcpay server run --tls-cert --tls-key`` serves HTTPS; a client that
trusts the CA (``PaymentClient(verify=...)``, ``nfcpay --ca FILE`` / NFCPAY_CA) works, one
that does not fails with a clear, non-retried certificate error.

A throwaway CA and server certificate for 127.0.0.1 are made with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nfcpay import crypto
from nfcpay.client import PaymentClient, tls_context
from nfcpay.errors import ApiError

_URL_RE = re.compile(r"listening on (https://\S+)")


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("nfcpay test CA"))
        .issuer_name(_name("nfcpay test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pki.key.chmod(0o600)
    return pki


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pki]]:
    root = tmp_path_factory.mktemp("tls")
    pki = make_pki(root / "pki")
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nfcpay",
                "server",
                "run",
                "--data-dir",
                str(root / "data"),
                "--port",
                "0",
                "--tls-cert",
                str(pki.cert),
                "--tls-key",
                str(pki.key),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    try:
        url = _wait_ready(process, log, pki.ca)
        yield url, pki
    finally:
        process.terminate()
        process.wait(10)


def _wait_ready(process: subprocess.Popen[bytes], log: Path, ca: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        match = _URL_RE.search(log.read_text())
        if match:
            try:
                httpx.get(f"{match.group(1)}/v1/health", verify=tls_context(ca), timeout=2)
                return match.group(1)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise TimeoutError(log.read_text())


def test_client_with_the_ca_pays_over_tls(tls_server: tuple[str, Pki]) -> None:
    url, pki = tls_server
    assert url.startswith("https://127.0.0.1:")
    client, answer = PaymentClient.register_terminal(
        url, crypto.generate_terminal_key(), role="user", label="tls", verify=pki.ca
    )
    with client:
        assert client.me()["terminal_id"] == answer["terminal_id"]
        assert client.health()["status"] == "ok"


def test_client_without_the_ca_fails_clearly_and_at_once(tls_server: tuple[str, Pki]) -> None:
    url, _ = tls_server
    waits: list[float] = []
    with pytest.raises(ApiError) as caught:
        PaymentClient.register_terminal(
            url, crypto.generate_terminal_key(), role="user", label="no-ca", sleep=waits.append
        )
    error = caught.value
    assert error.code == "certificate_verify_failed"
    assert not error.retryable
    assert "certificate verification failed" in error.message
    assert "--ca" in error.message
    assert waits == [], "a certificate failure is not retried"


def test_plain_http_client_cannot_talk_to_the_tls_port(tls_server: tuple[str, Pki]) -> None:
    url, _ = tls_server
    with pytest.raises(ApiError):
        PaymentClient.register_terminal(
            url.replace("https://", "http://"),
            crypto.generate_terminal_key(),
            role="user",
            label="plain",
            timeout=3,
        )


def test_cli_ca_option_reaches_the_terminal_client(
    tls_server: tuple[str, Pki], tmp_path: Path
) -> None:
    url, pki = tls_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}

    def init(*extra: str) -> subprocess.CompletedProcess[str]:
        home = tmp_path / f"home{len(extra)}"
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "nfcpay",
                "--json",
                "--home",
                str(home),
                "--server",
                url,
                *extra,
                "terminal",
                "init",
                "--role",
                "user",
                "--label",
                "cli-tls",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    trusted = init("--ca", str(pki.ca))
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["terminal_id"].startswith("t_")
    untrusted = init()
    assert untrusted.returncode != 0
    assert "certificate verification failed" in untrusted.stdout + untrusted.stderr


@pytest.mark.parametrize(
    "workers", [[], ["--workers", "2", "--db", "postgresql://nobody@127.0.0.1:1/x"]]
)
def test_a_bad_certificate_fails_the_start_before_anything_is_served(
    tmp_path: Path, workers: list[str]
) -> None:
    """Checked once, before the port is served or any worker forked (nor the database
    opened: the PostgreSQL URL above leads nowhere)."""
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    key.write_text("not a key\n")
    done = subprocess.run(
        [sys.executable, "-m", "nfcpay", "server", "run", "--data-dir", str(tmp_path / "data"),
         "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key), *workers],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_SERVER")},
    )  # fmt: skip
    assert done.returncode != 0, done
    assert "cannot load the TLS certificate or key" in done.stderr, done.stderr
    assert "listening" not in done.stdout + done.stderr
