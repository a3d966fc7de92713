"""The command line: JSON schemas, exit codes, and clear errors instead of tracebacks."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.data.tasks import TASKS
from speedmap.study.config import QUICK, StudyConfig

runner = CliRunner()

SPLIT_KEYS = {"images", "boxes", "negatives", "per_class", "sizes"}


def run(*args: str) -> object:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("cli") / "shapes"
    result = run("datasets", "make", "shapes", str(dst), "--images", "20", "--imgsz", "128", "--seed", "5")
    assert result.exit_code == 0, result.output
    return dst


def test_info_json_schema_is_exact(made: Path) -> None:
    result = run("datasets", "info", str(made), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert set(doc) == {"format", "classes", "splits", "split"}
    assert doc["split"] == {"source": "dataset", "seed": None, "ratios": None, "carved": []}
    assert doc["format"] == "coco" and doc["classes"] == ["circle", "square", "triangle"]
    assert set(doc["splits"]) == {"train", "valid", "test"}
    for st in doc["splits"].values():
        assert set(st) == SPLIT_KEYS
        assert set(st["per_class"]) == set(doc["classes"]) and set(st["sizes"]) == {"small", "medium", "large"}
        assert sum(st["per_class"].values()) == st["boxes"] == sum(st["sizes"].values())
        assert all(isinstance(v, int) for v in (st["images"], st["boxes"], st["negatives"]))
    assert [doc["splits"][s]["images"] for s in ("train", "valid", "test")] == [14, 3, 3]


def test_info_table_and_missing_splits_are_carved_or_zero(made: Path, tmp_path: Path) -> None:
    result = run("datasets", "info", str(made))
    assert result.exit_code == 0 and "circle" in result.stdout and "negatives" in result.stdout
    only = tmp_path / "only"
    (only / "train").mkdir(parents=True)
    for f in (made / "train").iterdir():
        (only / "train" / f.name).write_bytes(f.read_bytes())
    doc = json.loads(run("datasets", "info", str(only), "--json").stdout)
    assert doc["split"]["source"] == "automatic"  # 14 train images: valid and test carved from them
    assert [doc["splits"][s]["images"] for s in ("train", "valid", "test")] == [10, 2, 2]
    few = tmp_path / "few"  # under 10 images there is nothing to split: missing splits are zeros
    (few / "train").mkdir(parents=True)
    ann = json.loads((made / "train" / "_annotations.coco.json").read_text())
    ann["images"] = ann["images"][:4]
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in {im["id"] for im in ann["images"]}]
    (few / "train" / "_annotations.coco.json").write_text(json.dumps(ann))
    for im in ann["images"]:
        (few / "train" / im["file_name"]).write_bytes((made / "train" / im["file_name"]).read_bytes())
    doc = json.loads(run("datasets", "info", str(few), "--json").stdout)
    assert doc["split"]["source"] == "dataset"
    assert doc["splits"]["test"] == {
        "images": 0,
        "boxes": 0,
        "negatives": 0,
        "per_class": {"circle": 0, "square": 0, "triangle": 0},
        "sizes": {"small": 0, "medium": 0, "large": 0},
    }


def test_tasks_json_lists_names() -> None:
    result = run("datasets", "tasks", "--json")
    assert json.loads(result.stdout) == list(TASKS) and len(TASKS) >= 4
    assert "difficulty" in run("datasets", "tasks").stdout


def test_convert_and_validate(made: Path, tmp_path: Path) -> None:
    for fmt in ("yolo", "voc"):
        result = run("datasets", "convert", str(made), str(tmp_path / fmt), "--to", fmt)
        assert result.exit_code == 0, result.output
        doc = json.loads(run("datasets", "info", str(tmp_path / fmt), "--json").stdout)
        assert doc["format"] == fmt
    result = run("datasets", "validate", str(tmp_path / "yolo"), "--strict")
    assert result.exit_code == 0 and "no problems" in result.stdout
    label = next((tmp_path / "yolo" / "train" / "labels").glob("*.txt"))
    label.write_text("0 0.5 0.5\n")
    result = run("datasets", "validate", str(tmp_path / "yolo"))
    assert result.exit_code == 0 and f"{label}:1" in result.stdout
    assert run("datasets", "validate", str(tmp_path / "yolo"), "--strict").exit_code == 1
    problems = json.loads(run("datasets", "validate", str(tmp_path / "yolo"), "--json").stdout)["problems"]
    assert problems[0]["kind"] == "bad_fields" and problems[0]["line"] == 1
    # default: the broken image is skipped and summarised on stderr; stdout stays valid JSON
    result = run("datasets", "info", str(tmp_path / "yolo"), "--json")
    assert result.exit_code == 0 and "label line with the wrong number of fields" in result.stderr
    assert json.loads(result.stdout)["splits"]["train"]["images"] == 13
    result = run("datasets", "info", str(tmp_path / "yolo"), "--strict")
    assert result.exit_code == 2 and "strict" in result.stderr


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda p: p.mkdir(), "no dataset found"),
        (lambda p: None, "not found"),
        (lambda p: (p.mkdir(), (p / "data.yaml").write_text("names: [a\n")), "malformed or truncated YAML"),
        (lambda p: (p.mkdir(), (p / "a.json").write_text('{"images": [')), "truncated JSON"),
    ],
)
def test_bad_datasets_give_one_clear_line_not_a_traceback(tmp_path: Path, setup, needle: str) -> None:
    target = tmp_path / "ds"
    setup(target)
    proc = subprocess.run(
        [sys.executable, "-m", "speedmap", "datasets", "info", str(target)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_make_refuses_existing_non_empty_folder_and_unknown_task(made: Path, tmp_path: Path) -> None:
    result = run("datasets", "make", "shapes", str(made), "--images", "20", "--imgsz", "128", "--seed", "5")
    assert result.exit_code == 0 and "reusing" in result.stdout  # same arguments: nothing to redo
    result = run("datasets", "make", "shapes", str(made))
    assert result.exit_code == 2 and "not empty" in result.stderr
    result = run("datasets", "make", "nope", str(tmp_path / "n"))
    assert result.exit_code == 2 and "unknown task" in result.stderr
    result = run("datasets", "convert", str(made), str(tmp_path / "z"), "--to", "pascal")
    assert result.exit_code == 2 and "unknown format" in result.stderr


def test_version_and_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "speedmap", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("speedmap ")


def test_base_commands_do_not_import_torch() -> None:
    code = (
        "import sys, speedmap.cli, speedmap.eval, speedmap.data, speedmap.postprocess, speedmap.preprocess, "
        "speedmap.engine, speedmap.eval.model, speedmap.cli.predict; print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False"


def _help(*args: str, columns: int = 100) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def _command_paths(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under ``cmd``, as the words that name it on the command line."""
    found = [path]
    for name, sub in getattr(cmd, "commands", {}).items():
        found += _command_paths(sub, (*path, name))
    return found


def test_help_lists_the_commands_in_workflow_order() -> None:
    panel = _help().split("Commands", 1)[1]
    rows = [line.split()[1] for line in panel.splitlines() if line.startswith("│ ") and line[2] != " "]
    assert rows == ["compare", "datasets", "train", "pretrain", "export", "predict", "eval", "serve", "bench", "models"]


def test_no_help_shows_a_value_placeholder_on_a_flag() -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) >= 15  # the root, its commands and groups, and theirs
    for path in paths:
        text = _help(*path)
        assert "<bool>" not in text, f"speedmap {' '.join(path)} --help"
    assert "--quick  " in _help("compare") and "--eager  " in _help("serve")


def test_help_sentences_written_over_several_source_lines_render_unbroken() -> None:
    from speedmap.cli.evaluate import eval_command
    from speedmap.cli.export import export_command
    from speedmap.cli.serve import serve_command

    root = _help(columns=300)
    for name, fn in (("eval", eval_command), ("export", export_command), ("serve", serve_command)):
        doc = inspect.getdoc(fn) or ""
        assert "\n" in doc  # the docstring spans several source lines
        sentence = " ".join(doc.split())
        assert sentence in root and sentence in _help(name, columns=300)
    assert "against ground truth (--gt/--pred), or of an exported model" in root  # a source line break, before


def test_compare_help_states_the_presets_from_the_study_config() -> None:
    full = StudyConfig()
    rows = {line.split()[1]: line for line in _help("compare", columns=300).splitlines() if line.startswith("│ --")}
    assert f"(full: {full.epochs}, --quick: {QUICK['epochs']})" in rows["--epochs"]
    assert (full.epochs, QUICK["epochs"]) == (60, 40)
    assert f"(full: {full.batch}, --quick: {QUICK['batch']})" in rows["--batch"]
    assert f"(full: {full.patience}, --quick: {QUICK['patience']})" in rows["--patience"]
    assert f"(full: {full.images}, --quick: {QUICK['images']})" in rows["--images"]
    assert f"(full: {full.bench_repeats}, --quick: {QUICK['bench_repeats']})" in rows["--bench-repeats"]
    imgsz = " ".join(rows["--imgsz"].split())  # the help may wrap this one
    assert "chosen from your data's box sizes" in imgsz
    assert f"at {full.task_imgsz} px (--quick: {QUICK['task_imgsz']})" in imgsz
