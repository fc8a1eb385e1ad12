"""launch/ and docker/ files parse, are pinned and name files that exist. They cannot run here (no SLURM,
Kubernetes or Docker engine); launch/submit.sh and launch/local_cluster.sh run in tests/integration/test_cluster.py."""

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from hgpo.train import validate_overrides

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("launch/**/*.sh"), *ROOT.glob("launch/**/*.sbatch")])
DOCKERFILES = sorted(ROOT.glob("docker/Dockerfile*"))
MANIFESTS = sorted(ROOT.glob("launch/k8s/*.yaml"))
REPO_PATH = re.compile(r"(?<![\w./-])(?:launch|docker|docs|tests|hgpo|conf)/[\w./-]*\w")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def dockerfile_instructions(path: Path) -> list[list[str]]:
    """Each instruction as shell words, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [shlex.split(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def pinned(image: str) -> bool:
    name, _, tag = image.rpartition("/")[2].partition(":")
    return "@sha256:" in image or (bool(tag) and tag != "latest")


def test_every_kind_of_file_is_there():
    assert {"submit.sh", "local_cluster.sh", "hgpo.sbatch"} <= {p.name for p in SCRIPTS}
    assert {"Dockerfile.cpu", "Dockerfile.gpu"} <= {p.name for p in DOCKERFILES}
    assert MANIFESTS


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=rel)
def test_dockerfile_is_pinned_and_copies_files_that_exist(dockerfile):
    instructions = dockerfile_instructions(dockerfile)
    bases = [words[1] for words in instructions if words[0].upper() == "FROM"]
    assert bases and all(pinned(image) for image in bases), bases
    for words in instructions:
        if words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            missing = [s for s in sources if not (ROOT / s).exists()]
            assert not missing, f"{rel(dockerfile)}: {' '.join(words)}: {missing} not in the repository"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=rel)
def test_rayjob_runs_a_valid_config_on_the_pinned_ray(manifest):
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "hgpo.train"]
    validate_overrides(words[3:])
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_pin,) = [d for d in dependencies if d.startswith("ray")]
    cluster = job["spec"]["rayClusterSpec"]
    assert ray_pin.endswith(f"=={cluster['rayVersion']}")
    assert cluster["authOptions"]["mode"] == "token"
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    images = [c["image"] for g in groups for c in g["template"]["spec"]["containers"]]
    assert images and all(pinned(image) for image in images), images


def test_slurm_script_starts_ray_on_every_node_and_submits_with_the_tested_launcher():
    text = (ROOT / "launch" / "slurm" / "hgpo.sbatch").read_text()
    assert "#SBATCH --nodes=" in text and "scontrol show hostnames" in text
    assert "ray start --head" in text and "ray start --address" in text and "--block" in text
    assert "bash launch/submit.sh" in text and "RAY_AUTH_MODE=token" in text


@pytest.mark.parametrize("path", [*SCRIPTS, *DOCKERFILES, *MANIFESTS, ROOT / "docs" / "multinode.md"], ids=rel)
def test_paths_named_in_the_file_exist(path):
    missing = sorted({p for p in REPO_PATH.findall(path.read_text()) if not (ROOT / p).exists()})
    assert not missing, f"{rel(path)} names {missing}"
