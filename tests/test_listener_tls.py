"""HTTPS listeners (``tls: {cert_file, key_file[, ca_file]}``) through real sockets and the official client."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import time
import urllib.request

import httpx
import openai
import pytest
import yaml

from tests.support.gateway import REPO, free_port
from tests.support.mock_llm import MockLLM

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")


def _cert(tmp_path, name: str, ca: tuple | None = None) -> tuple:
    key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    if ca is None:  # self-signed, valid for 127.0.0.1 and localhost
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True)
    else:  # signed by ``ca`` (a client certificate)
        csr = tmp_path / f"{name}.csr"
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key),
                        "-out", str(csr)], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
                        "-CAcreateserial", "-days", "1", "-out", str(crt)], check=True, capture_output=True)
    return key, crt


def _start(tmp_path, tls: dict, upstream: MockLLM, client_cert: tuple | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = {"version": "v0.4.0",
           "model_providers": [{"model": "openai/m", "access_key": "sk-x", "default": True,
                                "base_url": f"{upstream.url}/v1"}],
           "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "tls": tls}]}
    (tmp_path / "plano.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "up", str(tmp_path / "plano.yaml"), "--foreground"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gw.log", "wb"),
                            env={**__import__("os").environ, "PLANO_HOME": str(tmp_path / "home"),
                                 "PLANO_ACCESS_LOG": "off", "PLANO_ADMIN_PORT": "0"}, start_new_session=True)
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    if client_cert is not None:
        insecure.load_cert_chain(str(client_cert[1]), str(client_cert[0]))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=0.5, context=insecure)
            return proc, port
        except (OSError, ssl.SSLError) as exc:
            if getattr(exc, "code", None) == 401:
                return proc, port
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((tmp_path / "gw.log").read_text())
            time.sleep(0.05)


@pytest.fixture
def upstream():
    mock = MockLLM().start()
    yield mock
    mock.stop()


def test_an_https_listener_serves_the_openai_client_and_refuses_plain_http(tmp_path, upstream):
    key, crt = _cert(tmp_path, "server")
    proc, port = _start(tmp_path, {"cert_file": "server.crt", "key_file": "server.key"}, upstream)  # relative paths
    try:
        client = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                               http_client=httpx.Client(verify=str(crt)))
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "over tls"}])
        assert answer.choices[0].message.content == "echo: over tls"
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: a b"
        # A client that does not trust the certificate is refused by its own TLS check.
        with pytest.raises(openai.APIConnectionError):
            openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="x", max_retries=0).models.list()
        # Plain HTTP on the TLS port gets no HTTP answer, and the gateway keeps serving.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
        assert client.models.list().data
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path, upstream):
    key, crt = _cert(tmp_path, "server")
    ca = _cert(tmp_path, "clients-ca")
    client_key, client_crt = _cert(tmp_path, "client", ca=ca)
    proc, port = _start(tmp_path, {"cert_file": str(crt), "key_file": str(key), "ca_file": str(ca[1])}, upstream,
                        client_cert=(client_key, client_crt))
    try:
        with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=str(crt), timeout=3)
        context = ssl.create_default_context(cafile=str(crt))
        context.load_cert_chain(str(client_crt), str(client_key))
        r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context, timeout=5)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_missing_certificate_is_a_validation_error_with_its_path(tmp_path):
    cfg = {"version": "v0.4.0",
           "model_providers": [{"model": "openai/m", "access_key": "sk-x", "default": True}],
           "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1",
                          "tls": {"cert_file": "nope.crt", "key_file": "nope.key"}}]}
    (tmp_path / "plano.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "gateway", "validate", str(tmp_path / "plano.yaml")], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "listeners[0].tls" in out.stderr and "certificate" in out.stderr
