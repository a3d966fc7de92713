"""The real public datasets speedmap is measured on (issues 25 and 33): where each comes from, its licence, and
how to lay it out from a local copy. Nothing is downloaded here: fetch each repository at the commit below
(``git clone`` + ``git checkout``, or ``git archive``), then point ``--src`` at the folder holding them.

    python benchmarks/real_datasets.py --src /work/data/real                 # load each as a user would, print info
    python benchmarks/real_datasets.py --src /work/data/real --subset tests/data/real   # the committed test subset

Each dataset is used exactly as its repository has it (no conversion): that is the point, since users bring
folders as their labelling tools wrote them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from speedmap.data import dataset_info, load_dataset
from speedmap.train.convergence import object_step


@dataclass(frozen=True)
class RealDataset:
    name: str
    kind: str
    repo: str
    commit: str
    licence: str
    layout: str
    subset: tuple[str, ...]  # image stems committed under tests/data/real (quirks included on purpose)
    folder: str = ""  # the repository's folder that is the dataset (its contents, or itself, under --src/NAME)


DATASETS = (
    RealDataset(
        "bccd",
        "microscopy: blood cells (RBC, WBC, platelets), 640x480",
        "Shenggan/BCCD_Dataset",
        "d272fb14cdff6e473fafeeeba32aba5f560e9e43",
        "MIT (LICENSE, Copyright (c) 2017 shenggan)",
        "Pascal VOC devkit: BCCD/{Annotations,JPEGImages,ImageSets/Main}; 205/87/72 split given",
        # 00338 and 00343 hold a zero-area box each; every XML's <path> points to the author's machine
        tuple(f"BloodImage_{i:05d}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 338, 343)),
    ),
    RealDataset(
        "roadsign",
        "traffic: road signs (speed limit, crosswalk, traffic light, stop), about 300x400",
        "MuratOzc/traffic-sign-recognition-using-deep-learning",
        "e680f0da76e08b166607d01f18db7d1687f1c7bb",
        "CC0 1.0 (a verbatim copy of Kaggle andrewmvd/road-sign-detection; CC0 as recorded by "
        "dataset-ninja/road-sign-detection LICENSE.md)",
        "LabelImg style: images/*.png (RGBA) + annotations/*.xml, unsplit",
        # road38 and road153 have boxes touching the border (coordinate 0)
        ("road38", "road153", "road397", "road396", "road415", "road414"),
    ),
    RealDataset(
        "raccoon",
        "everyday: raccoons in photos, 1 class, mostly large objects, sizes vary",
        "datitran/raccoon_dataset",
        "93938849301895fb73909842ba04af9b602f677a",
        "MIT (LICENSE, Copyright (c) 2017 Dat Tran); images collected from Google and Pixabay",
        "LabelImg style: images/*.jpg + annotations/*.xml, unsplit (a 160/40 split exists only as CSV)",
        # 150, 152, 161: greyscale JPEGs; 39, 99: EXIF orientation tags
        tuple(f"raccoon-{i}" for i in (150, 152, 161, 39, 99, 151, 131, 159, 166, 132, 155, 125)),
    ),
    # issue 33's new datasets: measured on (BENCHMARKS.md), nothing committed from them
    RealDataset(
        "kangaroo",
        "wildlife: 1 class, photos of many sizes, mostly large objects",
        "experiencor/kangaroo",
        "882bbbd75ba49cb8cf9393e06d88ebaec293af32",
        "none stated in the repository (measured on, never redistributed)",
        "LabelImg VOC: images/ + annots/, unsplit; 00090.jpg is truncated (20 bytes)",
        (),
    ),
    RealDataset(
        "cards",
        "playing cards: 6 classes (nine to ace), 4032x3024 and smaller photos",
        "EdjeElectronics/TensorFlow-Object-Detection-API-Tutorial-Train-Multiple-Objects-Windows-10",
        "c1645825822622fc75919b6be253779d49678f55",
        "Apache-2.0 (the repository's LICENSE)",
        "LabelImg VOC, XML beside each JPEG in images/train and images/test; no valid split",
        (),
    ),
    RealDataset(
        "medicine",
        "product photos: 1 class, medicine boxes and bottles on plain backgrounds, 640x640",
        "2004apurva/Medicine_detector",
        "e70dd51cbd093c0e3ffdc9bc58d9fad010215ff6",
        "CC BY 4.0 (the Roboflow README and data.yaml; no LICENSE file)",
        "Roboflow YOLOv8 export: train|valid|test/{images,labels} + data.yaml with the exporter's absolute paths",
        (),
        "dataset",
    ),
    RealDataset(
        "microcontroller",
        "electronics: Arduino, ESP8266, Heltec, Raspberry Pi (+ Arduino Nano, 1 box), phone photos 800x600",
        "Grod-d/classifier_microcontrollers",
        "482d529deb13c363cfd192fa9cd42a0460fc5793",
        "MIT (README.roboflow.txt and each annotation file's licenses)",
        "Roboflow COCO JSON export: train|valid|test/_annotations.coco.json beside the images; 15 valid images",
        (),
        "dataset",
    ),
)


def find(src: Path, ds: RealDataset) -> Path:
    """``src/NAME/FOLDER`` (a clone) or ``src/NAME`` (the dataset's folder itself)."""
    clone = src / ds.name / ds.folder
    if ds.folder and clone.is_dir():
        return clone
    if (src / ds.name).is_dir():
        return src / ds.name
    folder = f" (its {ds.folder}/ folder)" if ds.folder else ""
    sys.exit(f"{src / ds.name} not found: fetch {ds.repo} at {ds.commit} into it{folder}")


def copy_subset(src: Path, dst: Path) -> None:
    """The listed images and their XML, in each dataset's own layout, plus a NOTICE with the licences."""
    notice = [
        "Subsets of real public datasets, unmodified files, for speedmap's tests (benchmarks/real_datasets.py).",
        "",
    ]
    for ds in (d for d in DATASETS if d.subset):
        root = find(src, ds)
        for stem in ds.subset:
            for f in [*root.rglob(f"{stem}.xml"), *root.rglob(f"{stem}.jpg"), *root.rglob(f"{stem}.png")]:
                if "ImageSets" in f.parts:
                    continue
                out = dst / ds.name / f.relative_to(root)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, out)
        notice += [
            f"{ds.name}: {ds.kind}",
            f"  source: github.com/{ds.repo} @ {ds.commit}",
            f"  licence: {ds.licence}",
            "",
        ]
    (dst / "NOTICE.txt").write_text("\n".join(notice), encoding="utf-8")
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"wrote {dst}: {size / 1e6:.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, required=True, help="folder holding one folder per dataset, by name")
    ap.add_argument("--subset", type=Path, help="write the test subset here")
    ap.add_argument("--only", help="comma-separated names (default: all)")
    args = ap.parse_args()
    only = args.only.split(",") if args.only else [d.name for d in DATASETS]
    unknown = sorted(set(only) - {d.name for d in DATASETS})
    if unknown:
        sys.exit(f"--only: unknown dataset(s) {', '.join(unknown)}; known: {', '.join(d.name for d in DATASETS)}")
    for ds in (d for d in DATASETS if d.name in only):
        data = load_dataset(find(args.src, ds), auto_split=True)
        info = dataset_info(data)
        counts = " / ".join(f"{s} {info['splits'][s]['images']}" for s in ("train", "valid", "test"))
        val = data.split("valid")
        step = object_step((r.class_ids[~r.iscrowd] for r in val.records), data.classes)
        plateau = (
            "none" if step is None else f"{step.sentence()}: {'a' if step.resolves_plateau else 'no'} plateau stop"
        )
        print(
            f"{ds.name} ({ds.repo}, {ds.licence.split(' (')[0]}): {data.format}, {len(data.classes)} classes, "
            f"{counts}; split {data.split_info.describe()}; {len(data.problems)} problem(s); {plateau}"
        )
    if args.subset:
        copy_subset(args.src, args.subset)


if __name__ == "__main__":
    main()
