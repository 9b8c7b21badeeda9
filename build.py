#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Face Anything for Blender: set-up, tests, wheels and extension zips.

Standard library only; runs on any Python >= 3.10.

    python3 build.py demo        track the bundled demo clip with the bundled model into out/
    python3 build.py setup       create .venv (Blender 5.0 bpy) and .venv-blender42 (Blender 4.2 LTS bpy)
    python3 build.py test        set up if needed, then run the whole pytest suite in both
    python3 build.py wheels      download the manifest's wheels into wheels/ and verify their sha256
    python3 build.py extension   build dist/face_anything-<version>-<platform>-<blender range>.zip
    python3 build.py bench       run the benchmarks, record bench/results.json and bench/RESULTS.md
    python3 build.py export-published --checkpoint checkpoint.pt -o OUT.onnx
                                 export the published Face Anything checkpoint (not bundled) to ONNX

Every subcommand is idempotent. `python3 build.py <command> --help` lists its options.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_DIR = ROOT / "face_anything_addon"
MANIFEST = ROOT / "blender_manifest.toml"
WHEEL_LOCK = ROOT / "wheels.lock.json"
WHEELS_DIR = ROOT / "wheels"
DIST_DIR = ROOT / "dist"
BUILD_DIR = ROOT / "build"
REQUIREMENTS = ROOT / "requirements"
CONSTRAINTS = REQUIREMENTS / "constraints.txt"


@dataclass(frozen=True)
class Environment:
    """A virtual environment the tests run in."""

    name: str
    path: Path
    requirements: Path
    pytest_args: tuple[str, ...]  # which part of the suite runs here
    no_deps: Path | None = None  # installed after `requirements` with pip --no-deps


ENVIRONMENTS = (
    Environment("main (Blender 5.0)", ROOT / ".venv", REQUIREMENTS / "dev.txt", (),
                REQUIREMENTS / "published.txt"),
    Environment("Blender 4.2 LTS", ROOT / ".venv-blender42", REQUIREMENTS / "blender42.txt",
                ("tests/blender",)),
)


@dataclass(frozen=True)
class PythonGeneration:
    """Blender releases that share one bundled Python, and so one set of wheels."""

    python: str  # "3.11"
    blender_min: str
    blender_max: str | None  # exclusive, as the manifest means it
    label: str  # used in zip names

    @property
    def tag(self) -> str:
        return "cp" + self.python.replace(".", "")


GENERATIONS = (
    PythonGeneration("3.11", "4.2.0", "5.1.0", "blender-4.2-to-5.0"),
    PythonGeneration("3.13", "5.1.0", None, "blender-5.1-plus"),
)
PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64")
PLATFORM_TAGS = {  # wheel platform tag suffix -> manifest platform
    "manylinux": "linux-x64",
    "win_amd64": "windows-x64",
    "macosx": "macos-arm64",
}


class BuildError(Exception):
    """A failure with a message that tells the user what to do."""


def say(msg: str) -> None:
    print(f"build.py: {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    say("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], **kw)


# --------------------------------------------------------------------------- manifest and wheels

def manifest_text() -> str:
    if not MANIFEST.is_file():
        raise BuildError(f"{MANIFEST.name} is missing: run build.py from a full checkout")
    return MANIFEST.read_text(encoding="utf-8")


def manifest_value(key: str) -> str:
    m = re.search(rf'^{key}\s*=\s*"([^"]*)"', manifest_text(), re.M)
    if not m:
        raise BuildError(f"{MANIFEST.name} has no `{key} = \"...\"` line")
    return m.group(1)


def manifest_wheels() -> list[str]:
    """File names in the manifest's `wheels = [...]` (tomllib is not in Python 3.10)."""
    m = re.search(r"^wheels\s*=\s*\[(.*?)\]", manifest_text(), re.M | re.S)
    if not m:
        raise BuildError(f"{MANIFEST.name} has no `wheels = [...]` list")
    paths = re.findall(r'"([^"]+)"', m.group(1))
    bad = [p for p in paths if not p.startswith("./wheels/")]
    if bad:
        raise BuildError(f"manifest wheels must live under ./wheels/: {bad}")
    return [p[len("./wheels/"):] for p in paths]


def wheel_hashes() -> dict[str, str]:
    """The one place wheel hashes live, checked against the manifest's list."""
    lock = json.loads(WHEEL_LOCK.read_text(encoding="utf-8"))["wheels"]
    listed = manifest_wheels()
    missing = sorted(set(listed) - set(lock))
    extra = sorted(set(lock) - set(listed))
    if missing or extra:
        raise BuildError(
            f"{MANIFEST.name} and {WHEEL_LOCK.name} disagree: "
            f"no hash for {missing or 'none'}; hashes for unlisted wheels {extra or 'none'}")
    return {name: lock[name] for name in listed}


@dataclass(frozen=True)
class Wheel:
    filename: str
    name: str
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str

    @classmethod
    def parse(cls, filename: str) -> "Wheel":
        parts = filename[:-len(".whl")].split("-")
        if len(parts) != 5:
            raise BuildError(f"not a plain wheel file name: {filename}")
        return cls(filename, *parts)

    @property
    def platform(self) -> str | None:
        """Manifest platform, or None for a pure-Python wheel that fits every platform."""
        if self.platform_tag == "any":
            return None
        for prefix, plat in PLATFORM_TAGS.items():
            if self.platform_tag.startswith(prefix):
                return plat
        raise BuildError(f"{self.filename}: unknown platform tag {self.platform_tag}")

    def fits(self, generation: PythonGeneration, platform: str | None = None) -> bool:
        if self.python_tag.startswith("cp") and self.python_tag != generation.tag:
            return False
        return platform is None or self.platform in (None, platform)

    def pip_download_args(self) -> list[str]:
        args = ["--no-deps", "--only-binary", ":all:", "--platform", self.platform_tag]
        if self.platform_tag != "any":
            args += ["--implementation", "cp", "--abi", self.abi_tag,
                     "--python-version", self.python_tag[2] + "." + self.python_tag[3:]]
        return args + [f"{self.name.replace('_', '-')}=={self.version}"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def selected_wheels(platforms: list[str], pythons: list[str]) -> list[Wheel]:
    gens = [g for g in GENERATIONS if g.python in pythons]
    return [w for w in map(Wheel.parse, wheel_hashes())
            if any(w.fits(g) for g in gens) and (w.platform is None or w.platform in platforms)]


def fetch_wheels(platforms: list[str], pythons: list[str]) -> list[Path]:
    """Download exactly the manifest's wheels for these platforms and Pythons, verify sha256."""
    hashes = wheel_hashes()
    WHEELS_DIR.mkdir(exist_ok=True)
    paths = []
    for wheel in selected_wheels(platforms, pythons):
        path = WHEELS_DIR / wheel.filename
        if not (path.is_file() and sha256(path) == hashes[wheel.filename]):
            with tempfile.TemporaryDirectory(dir=WHEELS_DIR) as tmp:
                proc = run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                            "-q", "-d", tmp, *wheel.pip_download_args()])
                got = Path(tmp) / wheel.filename
                if proc.returncode or not got.is_file():
                    raise BuildError(f"could not download {wheel.filename} from PyPI "
                                     f"(pip said what went wrong above; is PyPI reachable?)")
                shutil.move(str(got), path)
            if sha256(path) != hashes[wheel.filename]:
                path.unlink()
                raise BuildError(f"{wheel.filename}: sha256 does not match {WHEEL_LOCK.name}; "
                                 f"the file was deleted. Do not build with it.")
        paths.append(path)
    say(f"{len(paths)} wheels present in wheels/, sha256 verified")
    return paths


# --------------------------------------------------------------------------- environments

def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def env_stamp(env: Environment) -> str:
    h = hashlib.sha256()
    for f in (env.requirements, CONSTRAINTS) + ((env.no_deps,) if env.no_deps else ()):
        h.update(f.read_bytes())
    return h.hexdigest()


def setup_env(env: Environment) -> Path:
    py = venv_python(env.path)
    stamp_file = env.path / ".face_anything_stamp"
    stamp = env_stamp(env)
    if py.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        say(f"{env.name}: {env.path.name} is up to date")
        return py
    if sys.version_info[:2] != (3, 11):
        raise BuildError(f"the bpy wheels need Python 3.11; this is {sys.version.split()[0]}. "
                         "Run build.py with python3.11.")
    say(f"{env.name}: creating {env.path.name} from {env.requirements.relative_to(ROOT)}")
    if not py.is_file():
        proc = run([sys.executable, "-m", "venv", env.path])
        if proc.returncode:
            raise BuildError("could not create a virtual environment; on Debian install python3-venv")
    proc = run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                "-r", env.requirements, "-c", CONSTRAINTS])
    if proc.returncode:
        raise BuildError(f"pip could not install {env.requirements.name} (see pip's message above)")
    if env.no_deps:  # packages whose declared dependencies are not needed (and too heavy)
        proc = run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
                    "-r", env.no_deps, "-c", CONSTRAINTS])
        if proc.returncode:
            raise BuildError(f"pip could not install {env.no_deps.name} (see pip's message above)")
    stamp_file.write_text(stamp)
    return py


def cmd_setup(args) -> None:
    for env in ENVIRONMENTS:
        setup_env(env)
    say("set-up complete")


# --------------------------------------------------------------------------- tests

def junit_counts(path: Path) -> dict[str, int]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if path.is_file():
        for suite in ET.parse(path).getroot().iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
    return counts


def cmd_test(args) -> int:
    failed_runs = []
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    with tempfile.TemporaryDirectory(prefix="fa-test-") as tmp:
        for i, env in enumerate(ENVIRONMENTS):
            py = setup_env(env)
            junit = Path(tmp) / f"junit{i}.xml"
            say(f"running tests in {env.name}")
            proc = run([py, "-m", "pytest", *env.pytest_args, f"--junitxml={junit}", *args.pytest],
                       cwd=ROOT)
            c = junit_counts(junit)
            bad = c["failures"] + c["errors"]
            totals["passed"] += c["tests"] - bad - c["skipped"]
            totals["failed"] += bad
            totals["skipped"] += c["skipped"]
            if proc.returncode == 5 or c["tests"] == 0:
                failed_runs.append(f"{env.name}: pytest collected no tests")
            elif proc.returncode:
                failed_runs.append(f"{env.name}: pytest exited {proc.returncode}")
    for f in failed_runs:
        say(f"FAILED {f}")
    print(f"total: {totals['passed']} passed, {totals['failed']} failed, "
          f"{totals['skipped']} skipped", flush=True)
    return 1 if failed_runs else 0


# --------------------------------------------------------------------------- extension

def blender_ext_script(py: Path) -> Path:
    """Blender's own extension tool, shipped inside the bpy wheel."""
    out = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    hits = sorted(Path(out.stdout.strip()).glob("bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not hits:
        raise BuildError(f"Blender's blender_ext.py is not in {py.parent.parent.name}'s bpy; "
                         "run `python3 build.py setup`")
    return hits[-1]


def staged_manifest(generation: PythonGeneration, wheels: list[str]) -> str:
    """The manifest with this generation's Blender range and wheels only."""
    text = manifest_text()
    version_lines = f'blender_version_min = "{generation.blender_min}"\n'
    if generation.blender_max:
        version_lines += f'blender_version_max = "{generation.blender_max}"\n'
    text = re.sub(r'^blender_version_min\s*=.*\n(blender_version_max\s*=.*\n)?', version_lines,
                  text, flags=re.M)
    wheel_lines = "".join(f'  "./wheels/{w}",\n' for w in wheels)
    return re.sub(r"^wheels\s*=\s*\[.*?\]", f"wheels = [\n{wheel_lines}]", text, flags=re.M | re.S)


def build_generation(py: Path, tool: Path, generation: PythonGeneration,
                     platforms: list[str]) -> list[Path]:
    wheels = [w for w in selected_wheels(platforms, [generation.python])]
    stage = BUILD_DIR / generation.label / "face_anything"
    if stage.parent.exists():
        shutil.rmtree(stage.parent)
    shutil.copytree(ADDON_DIR, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (stage / "wheels").mkdir()
    for w in wheels:
        shutil.copy2(WHEELS_DIR / w.filename, stage / "wheels" / w.filename)
    for extra in ("LICENSE", "THIRD_PARTY.md"):
        shutil.copy2(ROOT / extra, stage / extra)
    manifest = staged_manifest(generation, [w.filename for w in wheels])
    manifest = re.sub(r'^platforms\s*=.*$', "platforms = [" + ", ".join(
        f'"{p}"' for p in platforms) + "]", manifest, flags=re.M)
    (stage / "blender_manifest.toml").write_text(manifest, encoding="utf-8")
    out_dir = stage.parent / "out"
    out_dir.mkdir()
    for step in (["validate", stage],
                 ["build", "--source-dir", stage, "--output-dir", out_dir, "--split-platforms"]):
        proc = run([py, tool, *step])
        if proc.returncode:
            raise BuildError(f"Blender's extension tool rejected the {generation.label} build "
                             f"(its message is above)")
    DIST_DIR.mkdir(exist_ok=True)
    built = []
    for zip_path in sorted(out_dir.glob("*.zip")):
        final = DIST_DIR / f"{zip_path.stem}-{generation.label}.zip"
        shutil.move(str(zip_path), final)
        built.append(final)
    return built


DEMO_FOOTAGE = ROOT / "demo" / "footage"
DEFAULT_MODEL = ADDON_DIR / "assets" / "face_anything_default.onnx"


def cmd_demo(args) -> int:
    """The main job on the bundled demo clip with the bundled model, headless, into out/."""
    py = setup_env(ENVIRONMENTS[0])
    for needed, what in ((DEMO_FOOTAGE, "the demo clip"), (DEFAULT_MODEL, "the default model")):
        if not needed.exists():
            raise BuildError(f"{what} is missing ({needed.relative_to(ROOT)}): use a full checkout")
    out = ROOT / "out"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(BUILD_DIR / "blender-user"))
    proc = run([py, "-m", "face_anything_addon", DEMO_FOOTAGE, "-o", out, "--name", "demo",
                "--markers", "24", *args.cli], cwd=ROOT, env=env)
    if proc.returncode == 0:
        say(f"demo done: open {(out / 'demo.blend').relative_to(ROOT)} in Blender 4.2+, "
            f"or look at out/demo_preview.png")
    return proc.returncode


def cmd_bench(args) -> int:
    py = setup_env(ENVIRONMENTS[0])
    return run([py, "-m", "bench.run", *(["--quick"] if args.quick else [])], cwd=ROOT).returncode


def cmd_export_published(args) -> int:
    """The published checkpoint (which the user has; never bundled) -> a contract ONNX model."""
    py = setup_env(ENVIRONMENTS[0])
    # from the caller's folder, so that relative paths in the arguments mean what they say
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return run([py, "-m", "training.export_published", *args.cli],
               env=dict(os.environ, PYTHONPATH=path)).returncode


def cmd_wheels(args) -> None:
    fetch_wheels(args.platform, args.python)


def cmd_extension(args) -> None:
    py = setup_env(ENVIRONMENTS[0])
    tool = blender_ext_script(py)
    fetch_wheels(args.platform, args.python)
    built = []
    for generation in GENERATIONS:
        if generation.python in args.python:
            built += build_generation(py, tool, generation, args.platform)
    for z in built:
        say(f"built {z.relative_to(ROOT)}  ({z.stat().st_size / 1e6:.1f} MB)")


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create the development environments")
    sub.add_parser("test", help="set up if needed, run the whole test suite; "
                                "further arguments go to pytest")
    sub.add_parser("demo", help="track the bundled demo clip with the bundled model into out/; "
                                "further arguments go to the command line (see README)")
    sub.add_parser("export-published", add_help=False,
                   help="export the published Face Anything checkpoint to ONNX "
                        "(docs/published-checkpoint.md); its arguments: "
                        "--checkpoint PATH -o OUT.onnx [--res 504] [--fp16] [--window N] ...")
    p = sub.add_parser("bench", help="run the benchmarks, record bench/results.json + RESULTS.md")
    p.add_argument("--quick", action="store_true", help="a short smoke run (separate files)")
    for name, help_ in (("wheels", "download and verify the manifest's wheels"),
                        ("extension", "build the extension zips into dist/")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--platform", action="append", choices=PLATFORMS,
                       help="only this platform (repeatable; default: all)")
        p.add_argument("--python", action="append", choices=[g.python for g in GENERATIONS],
                       help="only this Blender Python generation (repeatable; default: all)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("test", "demo", "export-published"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest = args.cli = [a for a in extra if a != "--"]
    if args.command in ("wheels", "extension"):
        args.platform = args.platform or list(PLATFORMS)
        args.python = args.python or [g.python for g in GENERATIONS]
    handler = {"setup": cmd_setup, "test": cmd_test, "demo": cmd_demo, "wheels": cmd_wheels,
               "extension": cmd_extension, "bench": cmd_bench,
               "export-published": cmd_export_published}[args.command]
    try:
        return handler(args) or 0
    except BuildError as e:
        say(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
