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
        (folder / "values.yaml").write_text(yaml.safe_dump(rel.values, sort_keys=False))
        for obj in rel.crds:
            _write(folder / "crds", obj)
        for obj in rel.objects:
            _write(folder / ("hooks" if is_hook(obj) else "objects"), obj)
        count += len(rel.crds) + len(rel.objects)
    return count


def _write(folder: Path, obj: dict[str, Any]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / object_file_name(obj)).write_text(yaml.safe_dump(obj, sort_keys=False))
