"""`{cipher}` values: Spring's test vectors, our AES-GCM, RSA, keyrings, serving and the CLI."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config_server.content.crypto import Keyring, load_keyring
from config_server.errors import CryptoError, NoKeyError
from tests.helpers import SPRING_VECTOR

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "spring_vectors.json").read_text())
CONFIG_SERVER = Path(sys.executable).with_name("config-server")


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ciphertext", "plain"),
    [
        # The two vectors of Spring's own test suite (protocol.md).
        ("mykey", "6defc102cd76752fcf4c78231ed82ead85133a09741d9a1442595b4800e2b3d1", "password"),
        ("foo", SPRING_VECTOR, "SUPER SECRET"),
        # Produced by tests/vectors/SpringVectors.java with Spring's algorithm and parameters.
        (VECTORS["symmetric_key"], VECTORS["aes_cbc_hex"], VECTORS["plaintext"]),
    ],
)
def test_spring_symmetric_values_decrypt(key, ciphertext, plain):
    assert Keyring.single(key).decrypt("{cipher}" + ciphertext) == plain
    assert Keyring.single(key).decrypt(ciphertext) == plain


@pytest.mark.parametrize("field", ["rsa_cbc_base64", "rsa_gcm_base64"])
def test_spring_rsa_values_decrypt(field):
    keyring = Keyring.single(VECTORS["rsa_private_key_pem"])
    assert keyring.decrypt("{cipher}" + VECTORS[field]) == VECTORS["plaintext"]


def test_new_values_are_aes_gcm_and_round_trip():
    keyring = Keyring.single("k3y")
    first, second = keyring.encrypt("s3cret"), keyring.encrypt("s3cret")
    assert first.startswith("gcm1:") and first != second  # a fresh nonce each time
    assert keyring.decrypt(first) == keyring.decrypt(second) == "s3cret"


def test_spring_format_can_still_be_written():
    keyring = Keyring.single("k3y")
    text = keyring.encrypt("s3cret", spring=True)
    assert all(c in "0123456789abcdef" for c in text)
    assert keyring.decrypt(text) == "s3cret"


def test_gcm_detects_tampering_and_wrong_keys():
    text = Keyring.single("k3y").encrypt("s3cret")
    flipped = text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1]
    with pytest.raises(CryptoError):
        Keyring.single("k3y").decrypt(flipped)
    with pytest.raises(CryptoError, match="wrong key") as error:
        Keyring.single("other").decrypt(text)
    assert "s3cret" not in str(error.value)


def test_rsa_round_trip_in_both_inner_formats():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keyring = Keyring.single(pem)
    for spring in (False, True):
        assert keyring.decrypt(keyring.encrypt("p@ss", spring=spring)) == "p@ss"
    with pytest.raises(CryptoError):
        keyring.decrypt(VECTORS["rsa_cbc_base64"])  # another RSA key


def test_garbage_is_a_crypto_error_not_a_crash():
    keyring = Keyring.single("k")
    for junk in ["", "zz", "gcm1:!!!", "gcm1:AAAA", "00" * 8, "00" * 32, "QUJD" * 40]:
        with pytest.raises(CryptoError):
            keyring.decrypt(junk)


def test_keyring_file_names_keys_and_rotates(tmp_path):
    old = Keyring.single("old-passphrase")
    legacy_value = old.encrypt("legacy")  # written before keys had names
    ring_file = tmp_path / "keys.yml"
    ring_file.write_text("primary: k2026\nkeys:\n  default: old-passphrase\n  k2026: new-passphrase\n")
    ring = Keyring.from_file(ring_file)
    fresh = ring.encrypt("fresh")
    assert fresh.startswith("{key:k2026}gcm1:")
    assert ring.decrypt(fresh) == "fresh"
    assert ring.decrypt(legacy_value) == "legacy"  # no prefix: the key named default
    assert ring.decrypt(ring.encrypt("x", key_name="default")).endswith("x")
    assert ring.decrypt(ring.encrypt("{key:default}y")) == "y"
    with pytest.raises(NoKeyError):
        ring.decrypt("{key:nope}" + fresh.split("}", 1)[1])


def test_key_file_with_a_plain_passphrase_or_pem(tmp_path):
    plain = tmp_path / "key.txt"
    plain.write_text("foo\n")
    vector = SPRING_VECTOR
    assert load_keyring(None, str(plain)).decrypt(vector) == "SUPER SECRET"
    pem = tmp_path / "key.pem"
    pem.write_text(VECTORS["rsa_private_key_pem"])
    assert load_keyring(None, str(pem)).decrypt(VECTORS["rsa_cbc_base64"]) == VECTORS["plaintext"]
    assert load_keyring(None, None) is None


# -- serving ------------------------------------------------------------------------------------


@pytest.fixture
def secret_repo(repo):
    keyring = Keyring.single("foo")
    repo.commit(
        {
            "application.yml": "shared: plain\n",
            "orders.yml": (
                "db:\n"
                f"  password: '{{cipher}}{keyring.encrypt('hunter2')}'\n"
                f"  spring: '{{cipher}}{SPRING_VECTOR}'\n"
                "  url: jdbc://db/${db.password}\n"
            ),
            "billing.properties": f"token={{cipher}}{SPRING_VECTOR}\n",
            "templates/app.conf": "password=${db.password}\n",
        }
    )
    return repo


def test_cipher_values_are_served_decrypted_in_every_format(secret_repo, serve, http, caplog):
    server = serve(secret_repo.path, encrypt_key="foo")
    with caplog.at_level(logging.WARNING):
        source = http.get(f"{server.url}/orders/default").json()["propertySources"][0]["source"]
    assert source["db.password"] == "hunter2"
    assert source["db.spring"] == "SUPER SECRET"
    assert "password: hunter2" in http.get(f"{server.url}/orders-default.yml").text
    assert "url: jdbc://db/hunter2" in http.get(f"{server.url}/orders-default.yml").text
    assert "db.spring: SUPER SECRET" in http.get(f"{server.url}/orders-default.properties").text
    assert http.get(f"{server.url}/orders-default.json").json()["db"]["password"] == "hunter2"
    assert http.get(f"{server.url}/billing/default").json()["propertySources"][0]["source"] == {
        "token": "SUPER SECRET"
    }
    assert http.get(f"{server.url}/orders/default/main/templates/app.conf").text == "password=hunter2\n"


def test_a_value_that_does_not_decrypt_is_422_naming_key_file_and_line(secret_repo, serve, http, caplog):
    secret_repo.commit({"orders.yml": "db:\n  user: app\n  broken: '{cipher}0badc0de'\n"})
    server = serve(secret_repo.path, encrypt_key="foo")
    with caplog.at_level(logging.WARNING):
        response = http.get(f"{server.url}/orders/default/{secret_repo.head()}")
    assert response.status_code == 422
    assert response.json()["message"].startswith("orders.yml:3: db.broken: cannot decrypt")
    assert "db.broken" in caplog.text and "0badc0de" not in caplog.text  # the key, never the value
    assert "0badc0de" not in response.text


def test_without_a_key_cipher_values_are_never_served(secret_repo, serve, http):
    server = serve(secret_repo.path)
    response = http.get(f"{server.url}/orders/default")
    assert response.status_code == 422
    assert "orders.yml:2: db.password: cannot decrypt: no encryption key" in response.json()["message"]
    assert http.get(f"{server.url}/billing/default").status_code == 422
    assert http.get(f"{server.url}/application/default").status_code == 200


def test_encrypt_endpoint_and_status(repo, serve, http):
    repo.commit({"a.yml": "x: 1\n"})
    server = serve(repo.path, encrypt_key="foo")
    assert http.get(f"{server.url}/encrypt/status").json() == {"status": "OK"}
    response = http.post(f"{server.url}/encrypt", data="mysecret", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200 and response.text.startswith("gcm1:")
    assert Keyring.single("foo").decrypt(response.text) == "mysecret"
    # curl -d sends a form body, possibly with a trailing '=': decoded and dropped as Spring does
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    form = http.post(f"{server.url}/encrypt", data=b"my+secret%21=", headers=form_type)
    assert Keyring.single("foo").decrypt(form.text) == "my secret!"
    spring = http.post(
        f"{server.url}/encrypt?format=spring", data="x", headers={"Content-Type": "text/plain"}
    )
    assert all(c in "0123456789abcdef" for c in spring.text)
    empty = http.post(f"{server.url}/encrypt", data=b"", headers={"Content-Type": "text/plain"})
    assert empty.status_code == 400 and "empty" in empty.json()["message"]


def test_no_key_answers_like_spring(repo, serve, http):
    repo.commit({"a.yml": "x: 1\n"})
    server = serve(repo.path)
    status = http.get(f"{server.url}/encrypt/status")
    assert status.status_code == 404 and status.json()["status"] == "NO_KEY"
    response = http.post(f"{server.url}/encrypt", data="x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 404 and "No key" in response.json()["message"]


def test_decrypt_is_refused_on_an_open_server(repo, serve, http):
    repo.commit({"a.yml": "x: 1\n"})
    server = serve(repo.path, encrypt_key="foo")
    vector = SPRING_VECTOR
    response = http.post(f"{server.url}/decrypt", data=vector, headers={"Content-Type": "text/plain"})
    assert response.status_code == 403 and "auth file" in response.json()["message"]


def test_bad_key_settings_stop_the_start(tmp_path, repo, serve):
    repo.commit({"a.yml": "x: 1\n"})
    ring = tmp_path / "ring.yml"
    ring.write_text("primary: missing\nkeys:\n  a: b\n")
    with pytest.raises(CryptoError, match="primary key 'missing'"):
        serve(repo.path, encrypt_key_file=str(ring))


def test_settings_never_show_the_key():
    from config_server.settings import Settings

    settings = Settings.load(environ={"ENCRYPT_KEY": "top-secret-key"})
    assert settings.encrypt_key == "top-secret-key"
    assert "top-secret-key" not in repr(settings)


# -- command line -------------------------------------------------------------------------------


def test_cli_encrypt_and_decrypt_round_trip(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ENCRYPT_KEY": "foo", "HOME": str(tmp_path)}
    encrypted = subprocess.run(
        [str(CONFIG_SERVER), "encrypt", "cli-secret"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert encrypted.startswith("{cipher}gcm1:")
    decrypted = subprocess.run(
        [str(CONFIG_SERVER), "decrypt"], input=encrypted, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert decrypted == "cli-secret\n"
    spring = subprocess.run(
        [str(CONFIG_SERVER), "decrypt", SPRING_VECTOR],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert spring == "SUPER SECRET\n"


def test_cli_without_a_key_says_so(tmp_path):
    result = subprocess.run(
        [str(CONFIG_SERVER), "encrypt", "x"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no key" in result.stderr and "Traceback" not in result.stderr
