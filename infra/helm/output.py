"""Write what each Helm release creates beside Gantry's own objects (`gantry render`).

<out>/releases/<release>/values.yaml   the values Helm uses (chart defaults + ours)
<out>/releases/<release>/crds/         installed first, from the charts' crds/ folders
<out>/releases/<release>/objects/      templates, one object per file
<out>/releases/<release>/hooks/        hook objects (helm.sh/hook), run around the install
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.helm.template import RenderedRelease, is_hook
from infra.render import object_file_name


def write_releases(releases: list[RenderedRelease], out: Path) -> int:
    """Write every release's objects under `out/releases`; return how many objects."""
    count = 0
    for rel in releases:
        folder = out / "releases" / rel.inputs.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "values.yaml").write_text(_dump(rel.values))
        # As the charts ship them (one file may hold several CRDs).
        (folder / "crds").mkdir(exist_ok=True)
        for path, text in rel.crd_files.items():
            (folder / "crds" / path.replace("/", "_")).write_text(text)
        for obj in rel.objects:
            _write(folder / ("hooks" if is_hook(obj) else "objects"), obj)
        count += len(rel.crd_heads) + len(rel.objects)
    return count


def _dump(data: dict[str, Any]) -> str:
    # libyaml's emitter: the charts' CRDs are megabytes, PyYAML's own takes seconds for them.
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False)


def _write(folder: Path, obj: dict[str, Any]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / object_file_name(obj)).write_text(_dump(obj))
