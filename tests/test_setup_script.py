"""scripts/setup.sh, the README's two commands, on each kind of machine: fake `id`, `apt-get`, `npm`,
`node`, `chromium`, `chromedriver` and `python3` (whose venv holds a fake `pip`, `python` and `speedmap`)
on a PATH of their own, each logging its calls, so that nothing is installed and the real tools in
/usr/bin are never seen."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLIENT_PINS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup.sh"
PACKAGE_COMMAND = {"chromium": "chromium", "chromium-driver": "chromedriver", "npm": "npm"}
BROWSER_NOTE = "to add them: apt-get install chromium chromium-driver (as root)"
NPM_NOTE = "no npm, so the browser page's runtime is not (re)built"
CLIENTS = ["python -m venv .venv-clients", f"python -m pip install -q {' '.join(CLIENT_PINS)}"]  # the Roboflow clients


def _fake(path: Path, body: str = "", rc: int = 0) -> None:
    path.write_text(f'#!/bin/sh\necho "{path.name} $*" >> "$SETUP_LOG"\n{body}\nexit {rc}\n')
    path.chmod(0o755)


class Machine:
    """A checkout holding only scripts/setup.sh, and a PATH presenting ``tools``."""

    def __init__(
        self,
        tmp: Path,
        tools: set[str],
        uid: int = 0,
        apt_fails: frozenset[str] = frozenset(),
        pip_rc: int = 0,
        job_rc: int = 0,
        npm_rc: int = 0,
    ) -> None:
        self.checkout, self.bin, self.kit, self.log = tmp / "checkout", tmp / "bin", tmp / "kit", tmp / "calls.log"
        (self.checkout / "scripts").mkdir(parents=True)
        shutil.copy2(SCRIPT, self.checkout / "scripts" / "setup.sh")
        (self.checkout / "tests").mkdir()
        shutil.copy2(ROOT / "tests" / "clients.txt", self.checkout / "tests" / "clients.txt")
        (self.checkout / "web").mkdir()
        for d in (self.bin, self.kit / "venv"):
            d.mkdir(parents=True)
        for real in ("dirname", "cp", "mkdir"):  # what the script and the fakes need from the system
            (self.bin / real).symlink_to(shutil.which(real))
        _fake(self.bin / "id", f"echo {uid}")
        # what apt-get would install; it copies these into bin/
        for command in PACKAGE_COMMAND.values():
            _fake(self.kit / command, rc=npm_rc if command == "npm" else 0)
        _fake(self.bin / "apt-get", self._apt(apt_fails))
        for tool in tools - {"apt-get"}:
            if (self.kit / tool).exists():
                shutil.copy2(self.kit / tool, self.bin / tool)
            else:
                _fake(self.bin / tool)
        if "apt-get" not in tools:
            (self.bin / "apt-get").unlink()
        # python3 -m venv .venv: a venv whose activate puts its fake pip, python and speedmap first on PATH
        venv = self.kit / "venv"
        (venv / "activate").write_text('PATH="$PWD/.venv/bin:$PATH"\n')
        _fake(venv / "pip", rc=pip_rc)
        # its python makes venvs and installs (the clients' venv); anything else is the job
        clients = (
            f'case "$1 $2" in "-m venv") mkdir -p "$3/bin" && cp "{venv}"/* "$3/bin/"; exit 0;; "-m pip") exit 0;; esac'
        )
        _fake(venv / "python", clients, rc=job_rc)
        _fake(venv / "speedmap", rc=job_rc)
        _fake(self.bin / "python3", f'[ "$1 $2" = "-m venv" ] && mkdir -p "$3/bin" && cp "{venv}"/* "$3/bin/"')

    def _apt(self, fails: frozenset[str]) -> str:
        lines = ["for pkg; do :; done  # the last argument", '[ "$1" = install ] || exit 0']
        lines += [f'[ "$pkg" = {p} ] && {{ echo "E: held broken packages" >&2; exit 100; }}' for p in sorted(fails)]
        lines += [f'[ "$pkg" = {p} ] && cp "{self.kit}/{c}" "{self.bin}/{c}"' for p, c in PACKAGE_COMMAND.items()]
        return "\n".join(lines)

    def setup(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "SETUP_LOG": str(self.log), "HOME": str(self.checkout.parent)}
        return subprocess.run(
            [shutil.which("bash"), str(self.checkout / "scripts" / "setup.sh"), *args],
            env=env,
            cwd=self.checkout.parent,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def calls(self, tool: str = "") -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if not tool or line.split()[0] == tool]


ALL = {"apt-get", "node", "npm", "chromium", "chromedriver"}
BUILD = ["npm ci --ignore-scripts --no-audit --no-fund --prefix web", "npm run build --prefix web"]
LINT = ["python -m ruff format --check .", "python -m ruff check ."]


def test_no_node_as_root_installs_each_package_alone_and_goes_on_without_npm(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"apt-get"}, apt_fails=frozenset({"npm"}))
    r = m.setup("run")
    assert r.returncode == 0, r.stderr
    assert m.calls("apt-get") == [
        "apt-get update -qq",
        "apt-get install -y -qq chromium",
        "apt-get install -y -qq chromium-driver",
        "apt-get install -y -qq npm",
    ]
    assert "apt-get could not install npm" in r.stderr and "held broken packages" in r.stderr
    assert NPM_NOTE in r.stderr and "apt-get install npm" in r.stderr
    assert BROWSER_NOTE not in r.stderr  # chromium and its driver went in
    assert m.calls("npm") == []
    assert m.calls()[-3:] == ["python3 -m venv .venv", "pip install -q -e .[train,browser]", "speedmap compare --quick"]


def test_nodesource_node_asks_apt_only_for_chromium_never_for_npm(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"apt-get", "node", "npm"})
    r = m.setup("test", "-x", "tests/test_a.py")
    assert r.returncode == 0, r.stderr
    assert m.calls("apt-get") == [
        "apt-get update -qq",
        "apt-get install -y -qq chromium",
        "apt-get install -y -qq chromium-driver",
    ]
    assert "setup:" not in r.stderr
    assert m.calls()[-9:] == [
        "python3 -m venv .venv",
        "pip install -q -e .[all]",
        *CLIENTS,
        *BUILD,
        *LINT,
        "python -m pytest -q -n auto --dist worksteal -x tests/test_a.py",
    ]


def test_no_chromium_when_apt_fails_for_it_says_how_to_add_the_browser(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"apt-get", "node", "npm"}, apt_fails=frozenset({"chromium", "chromium-driver"}))
    r = m.setup("run", "--tasks", "shapes")
    assert r.returncode == 0, r.stderr
    assert "apt-get could not install chromium " in r.stderr and "could not install chromium-driver" in r.stderr
    assert BROWSER_NOTE in r.stderr
    assert m.calls()[-4:] == ["pip install -q -e .[train,browser]", *BUILD, "speedmap compare --quick --tasks shapes"]


def test_not_root_calls_no_apt_get_and_says_what_to_install(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"apt-get"}, uid=1000)
    r = m.setup("run")
    assert r.returncode == 0, r.stderr
    assert m.calls("apt-get") == []
    assert "not root" in r.stderr and "as root: apt-get install chromium chromium-driver npm" in r.stderr
    assert BROWSER_NOTE in r.stderr and NPM_NOTE in r.stderr
    assert m.calls()[-1] == "speedmap compare --quick"


def test_everything_present_installs_nothing_and_reuses_the_venv(tmp_path: Path) -> None:
    m = Machine(tmp_path, ALL)
    assert m.setup("run").returncode == 0
    m.log.unlink()
    r = m.setup("test")
    assert r.returncode == 0 and "setup:" not in r.stderr, r.stderr
    assert m.calls() == [
        "pip install -q -e .[all]",
        *CLIENTS,
        *BUILD,
        *LINT,
        "python -m pytest -q -n auto --dist worksteal",
    ]  # no apt-get, no new venv
    m.log.unlink()
    assert m.setup("test").returncode == 0 and not set(CLIENTS) & set(m.calls())  # the clients' venv: reused


def test_a_failed_web_build_is_a_note(tmp_path: Path) -> None:
    m = Machine(tmp_path, ALL, npm_rc=1)
    r = m.setup("run")
    assert r.returncode == 0 and "the browser page's runtime did not build" in r.stderr
    assert m.calls()[-2:] == [BUILD[0], "speedmap compare --quick"]


@pytest.mark.parametrize("failing", ["pip", "job"])
def test_pip_or_the_job_failing_fails_the_script(tmp_path: Path, failing: str) -> None:
    m = Machine(tmp_path, ALL, **{f"{failing}_rc": 3})
    r = m.setup("test")
    assert r.returncode == 3
    # a failing job stops at its first step: the format check
    assert m.calls()[-1] == ("pip install -q -e .[all]" if failing == "pip" else LINT[0])


def test_usage(tmp_path: Path) -> None:
    m = Machine(tmp_path, ALL)
    r = m.setup("nope")
    assert r.returncode == 2 and "usage: scripts/setup.sh run|test" in r.stderr and m.calls() == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "scripts/setup.sh test" and f"```bash\n{ci}\n```" in readme
    assert "```bash\nscripts/setup.sh run\n```" in readme
