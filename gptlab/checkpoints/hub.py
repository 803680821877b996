"""Hugging Face Hub ids as checkpoint paths: `openai-community/gpt2`, `gpt2`, `org/name@revision`.

    gptlab eval openai-community/gpt2 --no-probes            # from the local Hub cache, or downloaded once
    HF_HUB_OFFLINE=1 gptlab models openai-community/gpt2@main
    python -m pytest tests/test_hub.py

`discover` (gptlab/checkpoints/__init__.py) asks here only for a PATH that does not exist: a local file or
folder always wins. A name that can be a Hub model id (`is_hub_id`) is resolved by huggingface_hub's
`snapshot_download` to a snapshot folder of its cache (models--org--name/snapshots/<commit>/), which the
Hugging Face folder reader then reads like any other. The revision after `@` is a branch, tag or commit
(default `main`). The cache is the one huggingface_hub uses (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub); both it and HF_HUB_OFFLINE are read from the environment when the id is resolved.
Offline (HF_HUB_OFFLINE=1) only the cache is looked at; online, only what gptlab reads is downloaded
(config and tokenizer JSON, safetensors weights, vocab/merges text): never pickled `.bin` weights, never code.
Every failure (not cached while offline, no such repository or revision, a gated repository, the Hub
unreachable) is one line naming the id.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gptlab.errors import GptlabError

DOWNLOAD = ["*.json", "*.safetensors", "*.txt", "*.tiktoken"]   # what the folder readers can use
# Hub ids are `name` or `org/name` (letters, digits, - _ .); a path-like or file-like name is not tried
ID_RE = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".json", ".jsonl", ".pkl", ".toml", ".txt", ".npy")
TRUE = {"1", "ON", "YES", "TRUE"}


def split_revision(text: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev'); no '@' -> (text, None)."""
    repo, sep, rev = text.partition("@")
    return (repo, rev) if sep else (text, None)


def is_hub_id(text: str) -> bool:
    """Whether `text` can name a Hub model: `name` or `org/name`, optionally `@revision`, and not shaped like
    a local path (./x, /x, ~/x, a/b/c) or a checkpoint file (x.pt, x.bin, ...)."""
    repo, rev = split_revision(str(text))
    if rev is not None and (not rev or any(c.isspace() for c in rev) or ".." in rev):
        return False
    return bool(ID_RE.fullmatch(repo)) and "--" not in repo and ".." not in repo and \
        not repo.lower().endswith(FILE_SUFFIXES) and not repo.endswith((".", "-"))


def cache_dir() -> Path:
    """The Hub cache huggingface_hub uses, from the environment as it is now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in TRUE


def resolve(text: str) -> tuple[Path, str]:
    """(the snapshot folder of Hub id `text`, its label for listings: the id, with @revision when given).
    Raises a one-line GptlabError when it cannot be had (see the module docstring)."""
    try:
        from huggingface_hub import errors, snapshot_download  # deferred: optional extra [hf]; only Hub ids need it
        from huggingface_hub.utils import validate_repo_id  # deferred: optional extra [hf]
    except ImportError:
        raise GptlabError(f"{text}: no such file or directory (to read it as a Hugging Face Hub id, install "
                          f"huggingface_hub: pip install 'gptlab[hf]')") from None
    repo, rev = split_revision(text)
    cache, off = cache_dir(), offline()
    where = f"{repo}@{rev}" if rev else repo
    try:
        validate_repo_id(repo)
        folder = snapshot_download(repo, revision=rev, cache_dir=cache, local_files_only=off,
                                                   allow_patterns=DOWNLOAD)
    except errors.HFValidationError:
        raise GptlabError(f"{text}: no such file or directory") from None
    except errors.RevisionNotFoundError:
        raise GptlabError(f"{text}: the Hugging Face model {repo} has no revision {rev!r}") from None
    except errors.GatedRepoError:
        raise GptlabError(f"{text}: the Hugging Face model {repo} is gated: accept its terms on "
                          f"huggingface.co and log in (hf auth login)") from None
    except errors.RepositoryNotFoundError:
        raise GptlabError(f"{text}: no such file or directory, and no model {repo} on the Hugging Face Hub (a "
                          f"private one needs hf auth login)") from None
    except (errors.LocalEntryNotFoundError, errors.IncompleteSnapshotError):
        why = "HF_HUB_OFFLINE is set, so nothing is downloaded" if off else "the Hub could not be reached"
        raise GptlabError(f"{text}: no such file or directory, and {where} is not in the Hugging Face cache "
                          f"{cache} ({why})") from None
    except Exception as e:  # noqa: BLE001 - network and HTTP errors of every kind: one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise GptlabError(f"{text}: cannot fetch {where} from the Hugging Face Hub ({first})") from None
    folder = Path(folder)
    if not any(folder.glob("*.safetensors")):
        raise GptlabError(f"{text}: {where} has no safetensors weights (in {folder}); gptlab never loads "
                          f"pickled .bin weights")
    return folder, where
