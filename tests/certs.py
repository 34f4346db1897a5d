"""A throwaway certificate authority and a server certificate for 127.0.0.1/localhost,
made with the `openssl` command (the `cryptography` package is not a dependency).

The server certificate is signed by the CA rather than self-signed, since rustls (under
pyqwest) refuses a CA certificate used as a server's own."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_EXTENSIONS = """\
subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """Write ca.pem, cert.pem and key.pem into `directory`; skip if openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "cert.pem", directory / "key.pem", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        *EC,
        "-subj",
        "/CN=provd test CA",
        "-days",
        "2",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run("req", *EC, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-set_serial",
        "1",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(cert),
    )
    return Certificates(ca, cert, key)
