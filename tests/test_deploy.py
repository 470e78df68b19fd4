"""Static checks of the deployment files (no Docker daemon or cluster on this machine).

The Dockerfile, config/docker-compose.yaml and deploy/k8s/ are read as data: every file they
copy exists, every service they start runs a module that exists, every config they mount
passes ``plano validate``, every probe and URL points at a port the mounted config serves.
A renamed module, a moved file or a port typo fails here rather than on a user's cluster.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _validate(path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "validate", str(path)], cwd=ROOT,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-x"})
    assert out.returncode == 0, out.stdout + out.stderr


def _module_exists(name: str) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.util.find_spec(name) is not None


# ----------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    lines = _dockerfile()
    froms = [rest for instr, rest in lines if instr == "FROM"]
    assert len(froms) >= 2 and " AS " in froms[0].upper(), froms
    final = max(i for i, (instr, _) in enumerate(lines) if instr == "FROM")
    tail = lines[final:]
    users = [rest for instr, rest in tail if instr == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert any(instr == "HEALTHCHECK" and "healthz" in rest for instr, rest in tail)
    assert any(instr == "COPY" and rest.startswith("--from=") for instr, rest in tail), "runtime copies the build"
    # No compilers or pip caches in the runtime stage: it installs from the build stage's wheels only.
    run = " ".join(rest for instr, rest in tail if instr == "RUN")
    assert "--no-index" in run and "apt-get" not in run


def test_dockerfile_copies_only_what_exists_and_ships_filters_and_examples():
    sources = []
    for instr, rest in _dockerfile():
        if instr == "COPY" and not rest.startswith("--from="):
            sources.extend(rest.split()[:-1])
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
    assert "filters" in sources and "examples" in sources and "constraints.txt" in sources


# ----------------------------------------------------------------------------- compose


def _compose() -> dict:
    return yaml.safe_load((ROOT / "config" / "docker-compose.yaml").read_text())


def test_compose_services_reference_each_other_and_published_ports_bind_loopback():
    services = _compose()["services"]
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for needed in ("plano", "redis", "postgres", "jaeger", "prometheus", "grafana"):
        assert needed in services


def test_compose_commands_run_modules_that_exist():
    services = _compose()["services"]
    started = 0
    for name, svc in services.items():
        cmd = svc.get("command")
        if isinstance(cmd, list) and cmd[:2] == ["python", "-m"]:
            assert _module_exists(cmd[2]), f"{name}: python -m {cmd[2]} does not exist"
            started += 1
    assert started >= 6


def test_compose_plano_config_validates_and_its_urls_name_compose_services():
    compose = _compose()
    services = compose["services"]
    mount = next(v for v in services["plano"]["volumes"] if v.endswith(":/etc/plano/plano.yaml:ro"))
    cfg_path = ROOT / "config" / mount.split(":")[0]
    _validate(cfg_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    urls = [a["url"] for a in cfg.get("agents", [])] + [f["url"] for f in cfg.get("filters", [])]
    urls += [p["base_url"] for p in cfg["model_providers"] if "base_url" in p]
    urls.append(cfg["state"]["redis_url"])
    for url in urls:
        host = urlparse(url).hostname
        assert host in services, f"{url}: no compose service named {host}"
    # The listeners bind inside the container and are the ports the plano service publishes.
    published = {int(str(p).rsplit(":", 1)[1]) for p in services["plano"]["ports"]}
    for listener in cfg["listeners"]:
        assert listener["address"] == "0.0.0.0"
        assert listener["port"] in published
    assert cfg["admin"]["port"] in published


# ----------------------------------------------------------------------------- kubernetes


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        if path.name in ("kustomization.yaml", "plano-config.yaml"):
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_kustomization_lists_existing_files_and_the_config_validates():
    kdir = ROOT / "deploy" / "k8s"
    kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (kdir / res).exists(), res
    for gen in kust["configMapGenerator"]:
        for entry in gen["files"]:
            assert (kdir / entry.split("=", 1)[1]).exists(), entry
    _validate(kdir / "plano-config.yaml")


def test_plano_deployment_probes_point_at_served_ports_and_drain_on_sigterm():
    docs = _k8s_docs()
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "plano")
    cfg = yaml.safe_load((ROOT / "deploy" / "k8s" / "plano-config.yaml").read_text())
    served = {listener["port"] for listener in cfg["listeners"]} | {cfg["admin"]["port"]}
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports.values()) <= served
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] in ports, probe
    # The drain (30 s, gateway/server/runner.py) fits in the grace period, after the preStop pause.
    assert pod["terminationGracePeriodSeconds"] >= 35
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deploy["spec"]["replicas"] >= 2
    # Replicas share state: the config points at the Redis service the manifests define.
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert urlparse(cfg["state"]["redis_url"]).hostname in services


def test_demo_config_binds_loopback():
    cfg = yaml.safe_load((ROOT / "plano.yaml").read_text())
    assert all(listener.get("address") == "127.0.0.1" for listener in cfg["listeners"])
