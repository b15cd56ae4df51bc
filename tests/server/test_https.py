"""HTTPS served directly by gunicorn with --certfile/--keyfile, and the client library over it."""

import datetime
import ipaddress
import threading

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config_client import ConfigClient
from tests.helpers import wait_for


def self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


CLOSE = {"Connection": "close"}


@pytest.fixture
def https_server(server_process, repo, tmp_path):
    """config-server on HTTPS with a fresh self-signed certificate; `.cert` is its path for verify."""
    repo.commit({"orders.yml": "v: 1\n"})
    cert, key = self_signed(tmp_path)
    server = server_process(
        "--repo",
        str(repo.path),
        "--workers",
        "1",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        scheme="https",
    )
    server.cert = str(cert)
    server.wait_ready(lambda: get(server, "/health", timeout=1).ok)
    return server


def get(server, path: str, **kwargs) -> requests.Response:
    """GET over the server's TLS, trusting its certificate, on a connection closed afterwards."""
    headers = {**CLOSE, **kwargs.pop("headers", {})}
    return requests.get(server.url + path, verify=server.cert, headers=headers, **{"timeout": 5, **kwargs})


def test_https_with_certfile_and_keyfile(https_server):
    response = get(https_server, "/orders/default")
    assert response.json()["propertySources"][0]["source"] == {"v": 1}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https_server.url}/orders/default", timeout=5, headers=CLOSE)  # not trusted by default
    with ConfigClient(https_server.url, "orders", "default", verify=https_server.cert, watch=False) as client:
        assert client.get("v") == 1


def test_certfile_without_keyfile_is_refused(server_process, repo, tmp_path):
    cert, _ = self_signed(tmp_path)
    server = server_process("--repo", str(repo.path), "--certfile", str(cert))
    server.process.wait(timeout=30)
    log = server.stop()
    assert server.process.returncode != 0 and "certfile and keyfile go together" in log


def test_long_polls_over_https_take_the_usual_path(https_server, repo):
    etag = get(https_server, "/orders/default").headers["ETag"]
    answers = []

    def poll():
        answers.append(
            get(https_server, "/orders/default?wait=20", headers={"If-None-Match": etag}, timeout=25)
        )

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        wait_for(
            lambda: get(https_server, "/health").json()["details"]["watchers"] == 1,
            what="the long poll to park",
        )
        repo.commit({"orders.yml": "v: 2\n"})
    finally:
        thread.join(timeout=25)
    assert answers[0].status_code == 200 and answers[0].json()["propertySources"][0]["source"] == {"v": 2}
    assert answers[0].headers["Server"].startswith("gunicorn")  # through gunicorn's TLS response path
