"""The real labelled datasets `speedmap pretrain --pool` was given for the shipped weights (issue 34): where each
comes from, its licence, and how to lay it out from a local copy of its repository. Nothing is downloaded here.

    python benchmarks/pool_datasets.py --mirrors /work/.mirror --dst /work/data/pool-src
    python benchmarks/pool_datasets.py --notice            # print the NOTICE text packed with the weights

``--mirrors`` holds each repository as ``OWNER+NAME/repo`` (a bare git directory) or ``OWNER+NAME/.git`` (a
clone); each dataset's folder is taken at its commit with ``git archive`` into ``DST/.src/NAME`` and laid out as
``DST/NAME``, the folder to pass to ``--pool``. None of them is a dataset speedmap is measured on
(benchmarks/real_datasets.py), nor of the same kind: no blood cells, road signs, playing cards, raccoons,
kangaroos, medicine boxes or circuit boards.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PoolDataset:
    name: str
    kind: str
    repo: str
    commit: str
    path: str  # the dataset's folder in the repository
    licence: str
    extra: tuple[str, ...] = ()  # other paths of the repository the layout needs


POOL = (
    PoolDataset(
        "aquarium",
        "underwater: fish, jellyfish, penguin, puffin, shark, starfish, stingray (Roboflow's aquarium photos)",
        "sumit2011/underwater-object-detection",
        "eee4be3324cd019b9032bb13f22a756a77866503",
        "dataset/aquarium_pretrain",
        "CC BY 4.0 (README.dataset.txt: 'License: CC BY 4.0', Roboflow 'Aquarium Combined'); repository MIT",
    ),
    PoolDataset(
        "chess",
        "tabletop: 13 chess piece classes on boards (Roboflow 100 'chess pieces')",
        "abhijeetsourav/yolo_object_detection",
        "843772a703782f92d0eb9923f18041d683b83c02",
        "chess-pieces-2",
        "CC BY 4.0 (README.dataset.txt and data.yaml 'license: CC BY 4.0')",
    ),
    PoolDataset(
        "mask",
        "people: faces with and without masks (Roboflow 'Mask Wearing')",
        "GDGCVITBHOPAL/ML-Reserve",
        "69c021761d1cd1796050a31ff4beff8fe902df90",
        "Mask-vs-No-Mask-Detection/Dataset",
        "Public Domain (README.dataset.txt: 'License: Public Domain'); repository MIT",
        ("Mask-vs-No-Mask-Detection/Model/data/data.yaml",),
    ),
    PoolDataset(
        "thermal",
        "thermal infrared: people and dogs (Roboflow 'Thermal Dogs and People')",
        "JJongSSu/Study",
        "afeed51c90965daf1237c175dfdc43c8bedeaa0c",
        "Teamproject/second/hashtag/roboflow",
        "Public Domain (README.dataset.txt: 'License: Public Domain')",
    ),
    PoolDataset(
        "household21",
        "indoor: 21 household object classes (named by number), augmented copies included",
        "IgorLucindo/prothestic-ada-hand",
        "0d9ac7fab8ff5d73e37a9e0f615cacc24cac2d81",
        "draft/computervisionmodels/yolov8/datasets/householdobjects",
        "CC BY 4.0 (README.dataset.txt and data.yaml)",
    ),
    PoolDataset(
        "vehicles",
        "traffic: bike, bus, car, truck from street cameras, augmented copies included",
        "yuskun/object_detected",
        "aa099629e3c774c7c77fd9404f39f355be164941",
        "datasets/car",
        "CC BY 4.0 (README.dataset.txt and data.yaml 'license: CC BY 4.0')",
    ),
)
# looked at and left out: household3 (curtain/pot/toaster; MIT + CC BY 4.0 declared, but its file names show
# images scraped from shops, whose copyright the uploaders do not hold)


def git_dir(mirrors: Path, repo: str) -> Path:
    base = mirrors / repo.replace("/", "+")
    for candidate in (base / "repo", base / ".git", base):
        if (candidate / "HEAD").is_file():
            return candidate
    sys.exit(f"{base} not found: fetch github.com/{repo} (a clone or a bare mirror) into it")


def extract(mirrors: Path, ds: PoolDataset, dst: Path) -> Path:
    """``ds``'s folder (and extra paths) at its commit, as files under ``dst``."""
    if dst.is_dir():
        return dst
    work = dst.with_name(dst.name + ".part")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = ["git", "--git-dir", str(git_dir(mirrors, ds.repo)), "archive", ds.commit, ds.path, *ds.extra]
    data = subprocess.run(cmd, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(work, filter="data")
    work.rename(dst)
    return dst


def layout(src: Path, ds: PoolDataset, dst: Path) -> None:
    """``DST/NAME`` as ``--pool`` takes it: a link to the dataset's folder, or for ``mask`` (whose label files are
    named ``SPLIT_label_N.jpg`` beside ``SPLIT_img_N.jpg``) a copy in YOLO layout with its labels renamed."""
    folder = src / ds.path
    if dst.is_symlink() or dst.is_dir():
        return
    if ds.name != "mask":
        dst.symlink_to(folder.resolve(), target_is_directory=True)
        return
    work = dst.with_name(dst.name + ".part")
    shutil.rmtree(work, ignore_errors=True)
    for split in ("train", "test"):
        (work / split / "labels").mkdir(parents=True)
        shutil.copytree(folder / split / "images", work / split / "images")
        for label in (folder / split / "labels").iterdir():
            stem = re.sub(r"_label_", "_img_", label.stem)
            shutil.copyfile(label, work / split / "labels" / f"{stem}.txt")
    names = (src / ds.extra[0]).read_text(encoding="utf-8").split("names:", 1)[1].strip()
    (work / "data.yaml").write_text(f"train: train/images\nval: test/images\nnames: {names}\n", encoding="utf-8")
    for readme in folder.glob("README*.txt"):
        shutil.copyfile(readme, work / readme.name)
    work.rename(dst)


def notice() -> str:
    lines = [
        "speedmap's pretrained weights (speedmap/weights/*.pt) were pretrained on generated scenes and on these",
        "public labelled datasets, each taken unmodified from a public GitHub repository at a fixed commit",
        "(benchmarks/pool_datasets.py lays them out; BENCHMARKS.md, issue 34, gives the commands). The weights",
        "contain no image; their provenance (pretrain.json, packed in each file) names each source and its",
        "fingerprint.",
        "",
    ]
    for ds in POOL:
        lines += [
            f"{ds.name}: {ds.kind}",
            f"  source: github.com/{ds.repo} @ {ds.commit}, {ds.path}/",
            f"  licence: {ds.licence}",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirrors", type=Path, help="folder of the repositories (OWNER+NAME/repo or OWNER+NAME/.git)")
    ap.add_argument("--dst", type=Path, help="folder to lay the datasets out in (DST/NAME for --pool)")
    ap.add_argument("--notice", action="store_true", help="print the NOTICE text for the weights")
    args = ap.parse_args()
    if args.notice:
        print(notice(), end="")
        return
    if args.mirrors is None or args.dst is None:
        ap.error("--mirrors and --dst are needed to lay the datasets out")
    args.dst.mkdir(parents=True, exist_ok=True)
    for ds in POOL:
        src = extract(args.mirrors, ds, args.dst / ".src" / ds.name)
        layout(src, ds, args.dst / ds.name)
        print(f"{ds.name}: {args.dst / ds.name}")
    print(" ".join(f"--pool {args.dst / ds.name}" for ds in POOL))


if __name__ == "__main__":
    main()
