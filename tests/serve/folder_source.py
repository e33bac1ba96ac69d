"""A model source backed by a plain folder, for serving tests until the registry is merged.

``<repo>/test-models/<name>/<version>/{model.pkl, meta.json}``; meta.json: {"stage", "signature"}.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from mlops.errors import CheckFailed, UsageError
from mlops.serve.signature import Signature
from mlops.serve.source import ModelInfo


class FolderSource:
    def __init__(self, repo: Any) -> None:
        self.root = Path(repo.root) / "test-models"

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            raise UsageError(f"no model '{name}'")
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

    def _info(self, name: str, version: int) -> ModelInfo:
        meta = json.loads((self.root / name / str(version) / "meta.json").read_text())
        return ModelInfo(name, version, meta.get("stage", "none"), Signature.from_dict(meta.get("signature")))

    def resolve(self, ref: str) -> ModelInfo:
        if "@" in ref:
            name, stage = ref.split("@", 1)
            for v in reversed(self._versions(name)):
                if self._info(name, v).stage == stage:
                    return self._info(name, v)
            raise UsageError(f"no {stage} version of {name}")
        if ":" in ref:
            name, version = ref.split(":", 1)
            if int(version) not in self._versions(name):
                raise UsageError(f"no version {version} of {name}")
            return self._info(name, int(version))
        return self._info(ref, self._versions(ref)[-1])

    def load(self, info: ModelInfo) -> Any:
        with open(self.root / info.name / str(info.version) / "model.pkl", "rb") as handle:
            return pickle.load(handle)

    def promote(self, name: str, version: int, *, reason: str, actor: str, force: bool = False) -> None:
        meta_path = self.root / name / str(version) / "meta.json"
        meta = json.loads(meta_path.read_text())
        if meta.get("refuse_promotion") and not force:
            raise CheckFailed(f"promotion of {name}:{version} refused: {meta['refuse_promotion']}")
        for v in self._versions(name):
            path = self.root / name / str(v) / "meta.json"
            other = json.loads(path.read_text())
            if other.get("stage") == "production":
                other["stage"] = "archived"
                path.write_text(json.dumps(other))
        meta["stage"] = "production"
        meta_path.write_text(json.dumps(meta))
        self.audit("promote", model=name, version=version, reason=reason, actor=actor)

    def audit(self, event: str, **fields: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "audit.jsonl", "a") as handle:
            handle.write(json.dumps({"event": event, **fields}) + "\n")
