"""`hftk push`: an output folder (trained or exported) to the Hugging Face Hub, in one commit.

What goes up is what `pipeline()` and `hftk predict` read: weights (or model.onnx), config, tokenizer, recipe,
metrics, curve and the card, whose YAML metadata (pipeline, base model, language, license, datasets, results) the
run wrote. Checkpoints, staging folders and locks stay behind. One `create_commit`, so a push that fails leaves
the repository as it was. The recipe goes up with its local paths cut to their last part, as the card shows them:
the saved recipe.yaml keeps absolute paths (for evaluate and export on this machine), which say nothing to others
and tell them how your disk is laid out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from hftk.errors import HftkError
from hftk.files import CHECKPOINTS, TRACKING
from hftk.inference.exported import is_exported

_LEFT_BEHIND = {CHECKPOINTS, TRACKING}  # Trainer's state; the trackers' logs (paths, settings)


def files_to_push(folder: str | Path) -> list[str]:
    """The folder's files that go to the Hub, relative and sorted; an error for a folder that is no model."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        raise HftkError(f"{root}: no config.json here, so no model to push; name an hftk output or export folder")
    if not (is_exported(root) or any(root.glob("*.safetensors")) or (root / "adapter").is_dir()):
        raise HftkError(f"{root}: no weights (model.safetensors or model.onnx); train or export into it first")
    files = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and parts[0] not in _LEFT_BEHIND and not any(p.startswith(".") for p in parts):
            files.append(path.relative_to(root).as_posix())
    return files


def shared_recipe(path: Path) -> bytes:
    """recipe.yaml as it goes to the Hub: data files, a local base model and output_dir by their last part."""
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(recipe, dict):
        raise HftkError(f"{path}: not a recipe; train the folder again (hftk train)")

    def name(value: Any) -> Any:
        if isinstance(value, list):
            return [name(v) for v in value]
        return Path(value).name if isinstance(value, str) and os.path.isabs(value) else value

    data = recipe.get("data")
    if isinstance(data, dict):
        for split in ("train", "validation", "test"):
            if split in data:
                data[split] = name(data[split])
    for key in ("model", "output_dir"):
        if key in recipe:
            recipe[key] = name(recipe[key])
    return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).encode("utf-8")


def shared_card(path: Path, repo_id: str) -> bytes:
    """README.md as it goes to the Hub: its "Use" snippet loads `repo_id`, not the folder on this disk."""
    text = path.read_text(encoding="utf-8")
    found = re.search(r'^model = "(.+)"  # this folder, where hftk saved it.*$', text, flags=re.M)
    if found:
        text = text.replace(found[0], f'model = "{repo_id}"  # on the Hugging Face Hub').replace(found[1], repo_id)
    return text.encode("utf-8")


def _shared(path: Path, repo_id: str) -> bytes | str:
    if path.name == "recipe.yaml":
        return shared_recipe(path)
    return shared_card(path, repo_id) if path.name == "README.md" else str(path)


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload the folder's model files to `repo_id` (created if missing); returns the commit's URL."""
    files = files_to_push(folder)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise HftkError("HF_HUB_OFFLINE is set: hftk push needs the network; unset it to push (nothing was sent)")
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = token or get_token()
    if not token:
        raise HftkError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (nothing was sent)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        root = Path(folder)
        operations = [CommitOperationAdd(f, _shared(root / f, repo_id)) for f in files]
        commit = api.create_commit(
            repo_id=repo_id, operations=operations, commit_message=f"hftk push: {root.name}", repo_type="model"
        )
    except Exception as e:  # connection, authentication, permission: huggingface_hub raises many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HftkError(f"{repo_id}: push failed ({first}); the repository's files are as they were") from None
    return str(getattr(commit, "commit_url", commit))
