"""`{cipher}` values: Spring Cloud Config's formats are read, AES-GCM is written by default.

Three formats, told apart by their text:

- `gcm1:<base64url>`, ours and the default for new values: AES-256-GCM (authenticated) with a
  random 12-byte nonce, the key derived once per key from the passphrase with PBKDF2-HMAC-SHA256.
- lowercase hex, Spring's symmetric format: PBKDF2-HMAC-SHA1 (salt `deadbeef`, 1024 rounds,
  256 bits), AES-CBC with PKCS#7 padding, the random 16-byte IV in front.
- base64, Spring's RSA format: a 2-byte length, the RSA-encrypted random secret, then the value
  encrypted with that secret (AES-CBC, or AES-GCM with Spring's `strong` option).

A value may name its key, `{key:name}...`, so keys can be rotated. Every primitive comes from
`cryptography`; nothing here is a hand-written cipher.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from config_server.errors import CryptoError, NoKeyError

CIPHER_PREFIX = "{cipher}"
GCM_PREFIX = "gcm1:"
DEFAULT_SALT = "deadbeef"
#: PBKDF2-HMAC-SHA256 rounds for our GCM keys (OWASP's 2023 figure); paid once per key and process.
GCM_ROUNDS = 600_000
_GCM_SALT = b"gitconfig-server/aes-256-gcm/v1"
_GCM_AAD = b"gitconfig-server {cipher} v1"
_SPRING_ROUNDS = 1024
_KEY_PREFIX = re.compile(r"\{key:([A-Za-z0-9._\-]{1,64})\}")
_OTHER_PREFIX = re.compile(r"\{[A-Za-z]+:[^{}]*\}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


def _pbkdf2(secret: str, salt: bytes, rounds: int, algorithm: hashes.HashAlgorithm) -> bytes:
    return PBKDF2HMAC(algorithm=algorithm, length=32, salt=salt, iterations=rounds).derive(secret.encode())


def _cbc_encrypt(key: bytes, plaintext: bytes) -> bytes:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()


def _cbc_decrypt(key: bytes, data: bytes) -> bytes:
    if len(data) < 32 or len(data) % 16:
        raise CryptoError("ciphertext has the wrong length for AES-CBC")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(decryptor.update(data[16:]) + decryptor.finalize()) + unpadder.finalize()
    except ValueError:
        raise CryptoError("wrong key or corrupted value (bad padding)") from None


def _spring_gcm_decrypt(key: bytes, data: bytes) -> bytes:
    """Spring's `Encryptors.stronger`: a 16-byte IV, then ciphertext and 128-bit tag."""
    if len(data) < 32:
        raise CryptoError("ciphertext is too short for AES-GCM")
    try:
        return AESGCM(key).decrypt(data[:16], data[16:], None)
    except InvalidTag:
        raise CryptoError("wrong key or tampered value") from None


@dataclass(frozen=True)
class SymmetricKey:
    """A passphrase: Spring's AES-CBC format and our AES-GCM format both derive from it."""

    name: str
    secret: str = field(repr=False)
    salt: bytes = field(default=bytes.fromhex(DEFAULT_SALT))

    @cached_property
    def _spring_key(self) -> bytes:
        return _pbkdf2(self.secret, self.salt, _SPRING_ROUNDS, hashes.SHA1())  # noqa: S303 - Spring's

    @cached_property
    def _gcm_key(self) -> bytes:
        return _pbkdf2(self.secret, _GCM_SALT, GCM_ROUNDS, hashes.SHA256())

    def encrypt(self, plaintext: str, spring: bool = False) -> str:
        """`gcm1:...` (default) or Spring's hex AES-CBC text."""
        if spring:
            return _cbc_encrypt(self._spring_key, plaintext.encode()).hex()
        nonce = os.urandom(12)
        sealed = AESGCM(self._gcm_key).encrypt(nonce, plaintext.encode(), _GCM_AAD)
        return GCM_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def decrypt(self, text: str) -> bytes:
        """Plain bytes of a `gcm1:` or Spring hex value."""
        if text.startswith(GCM_PREFIX):
            data = _b64decode(text[len(GCM_PREFIX) :], urlsafe=True)
            if len(data) < 12 + 16:
                raise CryptoError("ciphertext is too short for AES-GCM")
            try:
                return AESGCM(self._gcm_key).decrypt(data[:12], data[12:], _GCM_AAD)
            except InvalidTag:
                raise CryptoError("wrong key or tampered value") from None
        if not _HEX.fullmatch(text):
            raise CryptoError("not a value this key can read (expected gcm1: or lowercase hex)")
        return _cbc_decrypt(self._spring_key, bytes.fromhex(text))


@dataclass(frozen=True)
class RsaKey:
    """An RSA private key, read and written in Spring's `RsaSecretEncryptor` format."""

    name: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    salt: bytes = field(default=bytes.fromhex(DEFAULT_SALT))
    oaep: bool = False

    def _padding(self) -> rsa_padding.AsymmetricPadding:
        if self.oaep:
            return rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)  # noqa: S303
        return rsa_padding.PKCS1v15()

    def encrypt(self, plaintext: str, spring: bool = False) -> str:
        """Base64 of length, RSA-wrapped secret and the value; AES-GCM inside unless `spring`."""
        random = os.urandom(16)
        wrapped = self.private_key.public_key().encrypt(random, self._padding())
        key = _pbkdf2(random.hex(), self.salt, _SPRING_ROUNDS, hashes.SHA1())  # noqa: S303
        if spring:
            body = _cbc_encrypt(key, plaintext.encode())
        else:
            iv = os.urandom(16)
            body = iv + AESGCM(key).encrypt(iv, plaintext.encode(), None)
        return base64.b64encode(len(wrapped).to_bytes(2, "big") + wrapped + body).decode()

    def decrypt(self, text: str) -> bytes:
        """Plain bytes of a Spring RSA value (CBC or `strong` GCM inside)."""
        data = _b64decode(text, urlsafe=False)
        length = int.from_bytes(data[:2], "big")
        if len(data) < 2 + length + 32:
            raise CryptoError("ciphertext is too short for an RSA value")
        try:
            random = self.private_key.decrypt(data[2 : 2 + length], self._padding())
        except ValueError:
            raise CryptoError("wrong key or corrupted value (RSA)") from None
        key = _pbkdf2(random.hex(), self.salt, _SPRING_ROUNDS, hashes.SHA1())  # noqa: S303
        body = data[2 + length :]
        try:
            return _spring_gcm_decrypt(key, body)  # authenticated: a CBC body simply fails here
        except CryptoError:
            return _cbc_decrypt(key, body)


Key = SymmetricKey | RsaKey


def _b64decode(text: str, urlsafe: bool) -> bytes:
    try:
        padded = text + "=" * (-len(text) % 4)
        return base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("ciphertext is not valid base64") from None


def make_key(name: str, material: str, salt: str = DEFAULT_SALT) -> Key:
    """A key from text: an RSA private key in PEM, otherwise a symmetric passphrase."""
    salt_bytes = bytes.fromhex(salt)
    if material.lstrip().startswith("-----BEGIN"):
        try:
            private = serialization.load_pem_private_key(material.strip().encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise CryptoError(f"key {name!r} is not a readable unencrypted PEM private key") from exc
        if not isinstance(private, rsa.RSAPrivateKey):
            raise CryptoError(f"key {name!r} is not an RSA key")
        return RsaKey(name, private, salt_bytes)
    if not material:
        raise CryptoError(f"key {name!r} is empty")
    return SymmetricKey(name, material, salt_bytes)


@dataclass(frozen=True)
class Keyring:
    """Named keys and the primary one that encrypts; `{key:name}` picks a key to decrypt with.

    A value without `{key:...}` is read with the key named `default` when there is one, else
    with the primary key: so a single `ENCRYPT_KEY` behaves exactly like Spring's.
    """

    keys: Mapping[str, Key]
    primary: str
    named: bool = False

    def __post_init__(self) -> None:
        if self.primary not in self.keys:
            raise CryptoError(f"primary key {self.primary!r} is not in the keyring")

    @classmethod
    def single(cls, material: str, salt: str = DEFAULT_SALT) -> Keyring:
        """One unnamed key, as `ENCRYPT_KEY` gives."""
        return cls({"default": make_key("default", material, salt)}, "default")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], salt: str = DEFAULT_SALT) -> Keyring:
        """A key file: a PEM key, a passphrase, or YAML `{primary: name, keys: {name: material}}`."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict) and "keys" in data:
            keys = data["keys"]
            if not isinstance(keys, dict) or not keys:
                raise CryptoError(f"{path}: 'keys' must map names to keys")
            ring = {str(n): make_key(str(n), str(m), str(data.get("salt", salt))) for n, m in keys.items()}
            for name in ring:
                if not _KEY_PREFIX.fullmatch(f"{{key:{name}}}"):
                    raise CryptoError(f"{path}: key name {name!r} is malformed")
            primary = str(data.get("primary", next(iter(ring))))
            return cls(ring, primary, named=True)
        return cls.single(text.strip() if not text.lstrip().startswith("-----BEGIN") else text, salt)

    def encrypt(self, plaintext: str, key_name: str | None = None, spring: bool = False) -> str:
        """Ciphertext without `{cipher}`; prefixed `{key:name}` when the keyring names its keys."""
        name, rest = split_key_prefix(plaintext)
        name = key_name or name or self.primary
        key = self._key(name)
        text = key.encrypt(rest, spring=spring)
        return f"{{key:{name}}}{text}" if self.named or name != self.primary else text

    def decrypt(self, value: str) -> str:
        """The plain text of `{cipher}{key:name}...` (both prefixes optional)."""
        text = value[len(CIPHER_PREFIX) :] if value.startswith(CIPHER_PREFIX) else value
        name, text = split_key_prefix(text.strip())
        key = self._key(name or ("default" if "default" in self.keys else self.primary))
        try:
            return key.decrypt(text).decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("wrong key or corrupted value (not UTF-8)") from None

    def fingerprint(self) -> str:
        """A short digest that changes when any key changes, and reveals none of them.

        Remembered verdicts ("this commit decrypts") are keyed by it, so a restart with another
        key (or none) re-checks instead of trusting them. Derived from the PBKDF2 output (or the
        RSA public key), never from the raw secret.
        """
        digest = hashlib.sha256(b"config-server keyring fingerprint\0")
        for name in sorted(self.keys):
            key = self.keys[name]
            if isinstance(key, SymmetricKey):
                material = key._gcm_key
            else:
                material = key.private_key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            digest.update(name.encode() + b"\0" + hashlib.sha256(material).digest())
        return digest.hexdigest()[:16]

    def _key(self, name: str) -> Key:
        try:
            return self.keys[name]
        except KeyError:
            raise NoKeyError(f"no key named {name!r}") from None


def split_key_prefix(text: str) -> tuple[str | None, str]:
    """(`name`, rest) for `{key:name}rest`; other `{x:y}` prefixes Spring allows are skipped."""
    name = None
    while True:
        match = _KEY_PREFIX.match(text)
        if match:
            name, text = match[1], text[match.end() :]
            continue
        other = _OTHER_PREFIX.match(text)
        if other and not text.startswith("{cipher}"):
            text = text[other.end() :]
            continue
        return name, text


def load_keyring(key: str | None, key_file: str | None, salt: str = DEFAULT_SALT) -> Keyring | None:
    """The keyring the settings describe, or None when no key is configured."""
    if key_file:
        return Keyring.from_file(key_file, salt)
    if key:
        return Keyring.single(key, salt)
    return None
