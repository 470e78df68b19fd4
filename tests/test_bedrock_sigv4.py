"""SigV4 signing (gateway/llm/auth/sigv4.py) and the AWS event stream decoder (eventstream.py), offline.

The signer is checked against AWS's published example signatures, against the mock Bedrock's
separately written verifier, and — where some Python on this machine has botocore — against
botocore's SigV4Auth. The decoder is fed frames built by the mock's own encoder, byte by byte.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from gateway.llm.auth.sigv4 import SigV4Signer, bedrock_signer, canonical_query, region_from_url, sign, signing_key
from gateway.wire.translate.eventstream import EventStreamDecoder, EventStreamError, decode_headers, encode_message
from tests.support.mock_bedrock import event, exception, frame, verify_sigv4

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = dt.datetime(2015, 8, 30, 12, 36, 0, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------ AWS's published examples


def test_aws_documentation_example_iam_list_users():
    """AWS General Reference, "Signature Version 4 signing process" example: GET IAM ListUsers."""
    assert signing_key(SECRET, "20150830", "us-east-1", "iam").hex() == \
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    headers = SigV4Signer(AKID, SECRET, None, "us-east-1", "iam").sign(
        "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, b"", now=WHEN)
    assert headers["x-amz-date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def test_aws_test_suite_get_vanilla():
    """aws-sig-v4-test-suite ``get-vanilla``."""
    auth = sign("GET", "https://example.amazonaws.com/", {"host": "example.amazonaws.com",
                                                          "x-amz-date": "20150830T123600Z"}, b"",
                access_key=AKID, secret_key=SECRET, region="us-east-1", service="service",
                amz_date="20150830T123600Z")
    assert auth.endswith("Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    headers = SigV4Signer(AKID, SECRET, None, "us-east-1", "service").sign("GET", "https://example.amazonaws.com/",
                                                                           {}, b"", now=WHEN)
    assert headers["Authorization"] == auth


def test_canonical_query_sorted_and_encoded():
    assert canonical_query("b=2&a=1&a=0&c=x%20y&d=~_-.") == "a=0&a=1&b=2&c=x%20y&d=~_-."


# ------------------------------------------------------------------ Bedrock requests vs the mock's verifier


def _converse(signer: SigV4Signer, url: str, body: bytes, extra: dict | None = None):
    headers = signer.sign("POST", url, {"content-type": "application/json", "accept": "application/json",
                                        **(extra or {})}, body)
    return {k.lower(): v for k, v in headers.items()}


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEXAMPLETOKEN//=="])
def test_signed_converse_verifies_in_the_mock(token):
    signer = SigV4Signer("AKIAMOCK", "mock/secret+key", token, "us-west-2")
    url = "http://127.0.0.1:9999/model/us.amazon.nova-premier-v1%3A0/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    headers = _converse(signer, url, body)
    headers["host"] = "127.0.0.1:9999"
    creds = {"AKIAMOCK": ("mock/secret+key", token)}
    path = "/model/us.amazon.nova-premier-v1%3A0/converse"
    assert verify_sigv4("POST", path, "", headers, body, creds, "us-west-2", "bedrock") is None
    assert ("x-amz-security-token" in headers) == (token is not None)
    # Each of these must break the signature: the check is real.
    assert "does not match" in verify_sigv4("POST", path, "", headers, body + b" ", creds, "us-west-2", "bedrock")
    assert "does not match" in verify_sigv4("POST", path.replace("%3A", ":"), "", headers, body, creds,
                                            "us-west-2", "bedrock")
    assert verify_sigv4("POST", path, "", headers, body, {"AKIAMOCK": ("other", token)}, "us-west-2", "bedrock")
    assert "scoped" in verify_sigv4("POST", path, "", headers, body, creds, "us-east-1", "bedrock")
    late = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    assert "expired" in verify_sigv4("POST", path, "", headers, body, creds, "us-west-2", "bedrock", now=late)


def _python_with_botocore() -> str | None:
    for candidate in (sys.executable, shutil.which("python3"), shutil.which("python")):
        if not candidate:
            continue
        try:
            done = subprocess.run([candidate, "-c", "import botocore.auth"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    return None


_BOTOCORE_SIGN = r"""
import datetime, json, sys
from unittest import mock
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
args = json.loads(sys.argv[1])
when = datetime.datetime(2026, 1, 2, 3, 4, 5)
req = AWSRequest(method="POST", url=args["url"], data=args["body"].encode(), headers=args["headers"])
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
    botocore.auth.SigV4Auth(Credentials(args["ak"], args["sk"], args["token"]), "bedrock", args["region"]).add_auth(req)
print(json.dumps(dict(req.headers.items())))
"""


@pytest.mark.parametrize("model", ["anthropic.claude-3-5-sonnet-20240620-v1%3A0",
                                   "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x-v1%3A0"])
def test_signature_matches_botocore(model):
    python = _python_with_botocore()
    if python is None:
        pytest.skip("no Python with botocore on this machine")
    url = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{model}/converse-stream"
    body = '{"messages": [{"role": "user", "content": [{"text": "hello"}]}]}'
    args = {"url": url, "body": body, "headers": {"Content-Type": "application/json"}, "ak": "AKIAEXAMPLE",
            "sk": "secret/key", "token": "session-token", "region": "us-east-1"}
    done = subprocess.run([python, "-c", _BOTOCORE_SIGN, json.dumps(args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "AWS_CONFIG_FILE": "/dev/null"})
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    ours = SigV4Signer("AKIAEXAMPLE", "secret/key", "session-token", "us-east-1").sign(
        "POST", url, {"Content-Type": "application/json"}, body.encode(),
        now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["x-amz-security-token"] == theirs["X-Amz-Security-Token"]


def test_credentials_and_region_resolution():
    class Entry:
        aws_access_key_id = aws_secret_access_key = aws_session_token = aws_region = None

    env = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "tok",
           "AWS_REGION": "eu-central-1"}
    s = bedrock_signer(Entry(), "https://bedrock-runtime.ap-south-1.amazonaws.com", env)
    assert (s.access_key, s.session_token, s.region, s.service) == ("AKIAENV", "tok", "ap-south-1", "bedrock")
    assert bedrock_signer(Entry(), "http://127.0.0.1:1234", env).region == "eu-central-1"
    assert bedrock_signer(Entry(), "http://127.0.0.1:1234", {}) is None
    entry = Entry()
    entry.aws_access_key_id, entry.aws_secret_access_key, entry.aws_region = "AKIAENTRY", "s", "us-west-1"
    s = bedrock_signer(entry, "https://bedrock-runtime.us-east-2.amazonaws.com", env)
    assert (s.access_key, s.session_token, s.region) == ("AKIAENTRY", None, "us-west-1")
    assert "envsecret" not in repr(bedrock_signer(Entry(), None, env))
    assert region_from_url("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com") == "us-gov-west-1"
    assert region_from_url("https://example.com") is None


# ------------------------------------------------------------------ event stream


def _frames():
    return [event("messageStart", {"role": "assistant"}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}),
            exception("throttlingException", "slow down")]


def test_decoder_byte_by_byte_and_all_at_once():
    data = b"".join(_frames())
    for size in (1, 3, 7, 64, len(data)):
        decoder = EventStreamDecoder()
        messages = []
        for i in range(0, len(data), size):
            messages.extend(decoder.feed(data[i:i + size]))
        assert decoder.pending == 0
        assert [m.event_type for m in messages] == ["messageStart", "contentBlockDelta", None]
        assert [m.message_type for m in messages] == ["event", "event", "exception"]
        assert json.loads(messages[1].payload)["delta"] == {"text": "héllo"}
        assert messages[2].headers[":exception-type"] == "throttlingException"


def test_decoder_detects_corruption_and_truncation():
    good = _frames()[1]
    bad_message_crc = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bad_message_crc)
    bad_prelude = bytearray(good)
    bad_prelude[9] ^= 0xFF
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(bad_prelude))
    decoder = EventStreamDecoder()
    assert decoder.feed(good[:-3]) == [] and decoder.pending == len(good) - 3
    huge = struct.pack(">II", 1 << 30, 0)
    with pytest.raises(EventStreamError, match="invalid"):
        EventStreamDecoder().feed(huge + struct.pack(">I", zlib.crc32(huge)))


def test_header_value_types():
    raw = b""
    raw += b"\x01a" + b"\x00"  # true
    raw += b"\x01b" + b"\x01"  # false
    raw += b"\x01c" + b"\x02" + b"\xff"  # byte -1
    raw += b"\x01d" + b"\x03" + struct.pack(">h", -2)
    raw += b"\x01e" + b"\x04" + struct.pack(">i", 70000)
    raw += b"\x01f" + b"\x05" + struct.pack(">q", 1 << 40)
    raw += b"\x01g" + b"\x06" + struct.pack(">H", 2) + b"\x00\x01"
    raw += b"\x01h" + b"\x07" + struct.pack(">H", 3) + b"abc"
    raw += b"\x01i" + b"\x08" + struct.pack(">q", 1700000000000)
    raw += b"\x01j" + b"\x09" + bytes(range(16))
    headers = decode_headers(raw)
    assert headers == {"a": True, "b": False, "c": -1, "d": -2, "e": 70000, "f": 1 << 40, "g": b"\x00\x01",
                       "h": "abc", "i": 1700000000000, "j": "00010203-0405-0607-0809-0a0b0c0d0e0f"}
    with pytest.raises(EventStreamError):
        decode_headers(b"\x01a\x07\x00\x05ab")
    with pytest.raises(EventStreamError):
        decode_headers(b"\x01a\x0c")


def test_encoder_matches_the_mock_encoder():
    assert encode_message({":event-type": "x", ":message-type": "event"}, b"{}") == \
        frame([(":event-type", "x"), (":message-type", "event")], b"{}")
