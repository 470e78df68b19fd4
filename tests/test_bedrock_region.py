"""Amazon Bedrock without a base_url: the default host from the region, the region from the entry, the
environment or the AWS profile's config, and SigV4 credentials from the environment or a named profile
in ``~/.aws/credentials`` (``AWS_PROFILE``). Every test uses a temporary HOME and a clean AWS_* env.
"""

from __future__ import annotations

import os
import textwrap

import openai
import pytest

from gateway.config import load_config_text
from gateway.config.schema import ModelProvider
from gateway.llm.auth.sigv4 import aws_credentials, aws_region
from gateway.llm.targets import build_target
from tests.support.gateway import Gateway, free_port
from tests.support.mock_bedrock import MockBedrock

NOVA = "us.amazon.nova-premier-v1:0"
_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
             "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")


def write_aws(home, credentials: str = "", config: str = "") -> None:
    aws = home / ".aws"
    aws.mkdir(parents=True, exist_ok=True)
    (aws / "credentials").write_text(textwrap.dedent(credentials))
    (aws / "config").write_text(textwrap.dedent(config))


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def bedrock(**kw) -> ModelProvider:
    return ModelProvider(model=f"amazon_bedrock/{NOVA}", **kw)


# ------------------------------------------------------------------ default host and region


def test_config_accepts_bedrock_without_base_url():
    cfg = load_config_text(textwrap.dedent(f"""
        version: v0.4.0
        listeners: [{{type: model, name: llm, port: {free_port()}, address: 127.0.0.1}}]
        model_providers:
          - model: amazon_bedrock/{NOVA}
            default: true
    """), env={})
    assert cfg.model_providers[0].base_url is None


def test_default_host_from_aws_region(home, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")  # AWS_REGION wins
    target = build_target(bedrock(access_key="api-key"), default_timeout=None)
    assert target.url == "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.amazon.nova-premier-v1%3A0/converse"


def test_default_host_from_aws_default_region(home, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert build_target(bedrock(access_key="k"), default_timeout=None).url.startswith(
        "https://bedrock-runtime.eu-west-3.amazonaws.com/model/")


def test_entry_region_wins(home, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    target = build_target(bedrock(access_key="k", aws_region="ap-northeast-1"), default_timeout=None)
    assert target.url.startswith("https://bedrock-runtime.ap-northeast-1.amazonaws.com/")


def test_region_from_the_profile_config_then_us_east_1(home, monkeypatch):
    write_aws(home, config="""
        [default]
        region = sa-east-1
        [profile work]
        region = ca-central-1
    """)
    assert aws_region(bedrock(), None) == "sa-east-1"
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert build_target(bedrock(access_key="k"), default_timeout=None).url.startswith(
        "https://bedrock-runtime.ca-central-1.amazonaws.com/")
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    assert aws_region(bedrock(), None) == "us-east-1"


def test_base_url_still_wins(home, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    target = build_target(bedrock(access_key="k", base_url="https://bedrock-runtime.eu-west-1.amazonaws.com"),
                          default_timeout=None)
    assert target.url.startswith("https://bedrock-runtime.eu-west-1.amazonaws.com/")


# ------------------------------------------------------------------ credentials


PROFILES = """
    [default]
    aws_access_key_id = AKIADEFAULT
    aws_secret_access_key = default-secret
    [work]
    aws_access_key_id = AKIAWORK
    aws_secret_access_key = work-secret
    aws_session_token = work-token
"""


def test_credentials_from_the_default_profile(home):
    write_aws(home, PROFILES)
    assert aws_credentials(bedrock()) == ("AKIADEFAULT", "default-secret", None)
    target = build_target(bedrock(), default_timeout=None)
    assert target.signer is not None and target.missing_key_env is None


def test_credentials_from_a_named_profile(home, monkeypatch):
    write_aws(home, PROFILES, config="[profile work]\nregion = eu-north-1\n")
    monkeypatch.setenv("AWS_PROFILE", "work")
    target = build_target(bedrock(), default_timeout=None)
    signer = target.signer
    assert (signer.access_key, signer.session_token, signer.region) == ("AKIAWORK", "work-token", "eu-north-1")
    assert "work-secret" not in repr(signer)


def test_environment_wins_over_profiles(home, monkeypatch):
    write_aws(home, PROFILES)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert aws_credentials(bedrock()) == ("AKIAENV", "env-secret", None)


def test_credentials_file_location_from_env(home, monkeypatch, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere") / "creds"
    other.write_text("[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(other))
    assert aws_credentials(bedrock())[0] == "AKIAFILE"


def test_missing_profile_means_missing_credentials(home, monkeypatch, caplog):
    write_aws(home, PROFILES)
    monkeypatch.setenv("AWS_PROFILE", "absent")
    target = build_target(bedrock(), default_timeout=None)
    assert target.signer is None and target.missing_key_env == "AWS_ACCESS_KEY_ID"
    assert "absent" in caplog.text and "secret" not in caplog.text.replace("aws_secret_access_key", "")


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def br():
    mock = MockBedrock(credentials={"AKIAWORK": ("work-secret", "work-token")}, region="eu-north-1").start()
    yield mock
    mock.stop()


def test_profile_credentials_and_region_sign_real_requests(br, tmp_path):
    """HOME holds the profile; the gateway gets no AWS_* credentials: the mock verifies the SigV4
    signature with the profile's keys and the profile's region."""
    write_aws(tmp_path, PROFILES, config="[profile work]\nregion = eu-north-1\n")
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}],
        "model_providers": [{"model": f"amazon_bedrock/{NOVA}", "base_url": br.url, "default": True}],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"HOME": str(tmp_path), "AWS_PROFILE": "work", "PLANO_HOME": str(tmp_path / "plano")})
    g = Gateway(config, tmp_path, env=env)
    g.env = env  # exactly this environment: no AWS_* variables inherited
    g.start()
    try:
        client = openai.OpenAI(base_url=f"{g.url()}/v1", api_key="sk-client", max_retries=0, timeout=20)
        answer = client.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "hello bedrock"}])
        assert "hello bedrock" in answer.choices[0].message.content
        assert br.verified[-1] == "sigv4"
    finally:
        g.stop()
