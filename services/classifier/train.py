"""Train the classifier from scikit-learn's bundled iris dataset (offline, deterministic).

Run at image build: `python -m services.classifier.train` (prints the artifact paths). A replica
that finds its artifact missing (dev checkout, sandbox, tests) trains it at first start.
Versions: v1 = standardised logistic regression, v2 = random forest (a model change a team would
roll out as a canary). Both predict the class index (0 setosa, 1 versicolor, 2 virginica).
Each artifact is a joblib file holding {"model", "features", "classes", "holdout_accuracy"}.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from services.common.artifacts import artifact_dir, ensure_artifact

Version = Literal["v1", "v2"]
VERSIONS: tuple[Version, ...] = ("v1", "v2")
SEED = 0


def artifact_path(version: str) -> Path:
    return artifact_dir("classifier") / f"iris-{version}.joblib"


def make_estimator(version: str) -> Any:
    if version == "v1":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return RandomForestClassifier(n_estimators=50, max_depth=4, random_state=SEED, n_jobs=1)


def train(version: str, out: Path) -> None:
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=SEED, stratify=data.target
    )
    model = make_estimator(version).fit(x_train, y_train)
    bundle = {
        "model": model,
        "features": list(data.feature_names),
        "classes": list(data.target_names),
        "holdout_accuracy": float(model.score(x_test, y_test)),
    }
    with open(out, "wb") as f:
        joblib.dump(bundle, f)


def ensure_model(version: str) -> Path:
    return ensure_artifact(artifact_path(version), lambda out: train(version, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for version in VERSIONS:
        print(ensure_model(version))


if __name__ == "__main__":
    main()
