"""Small text inputs read as untrusted: a bounded read of a regular file, TOML parsed without surprises, and
text made fit for a one-line error message. Claims files and probe suites are read through here.

    gptlab check examples/claims.toml        gptlab probes my_suite.toml
    python -m pytest tests/test_fuzz_inputs.py

`read_text_file` opens without blocking (a FIFO is refused, not waited on), refuses anything that is not a
regular file, reads at most `max_bytes` (so /dev/zero or a huge file cannot exhaust memory), requires UTF-8,
and folds line endings to "\\n" as `Path.read_text` does. `parse_toml` turns every way tomllib can fail
(TOMLDecodeError, an integer of over 4,300 digits, nesting too deep) and unpaired surrogates in a caller's
string into one-line GptlabErrors.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from gptlab.errors import GptlabError

_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(text: str, limit: int = 60) -> str:
    """Text from a file, fit for a one-line message: cut to `limit` characters, control characters (and
    anything else not printable: line breaks, unpaired surrogates) escaped as in a Python literal."""
    short = text if len(text) <= limit else text[:limit - 3] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in short)


def shown_repr(value, limit: int = 120) -> str:
    """repr(value) for a message, cut to `limit` characters (repr escapes what is not printable)."""
    try:
        text = repr(value)
    except ValueError:                                  # an integer too long to print (over 4,300 digits)
        text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO or pipe"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_regular_file(path: str | Path, what: str, hint: str = ""):
    """A binary file object for `path`, which must be a regular file; `what` names it in errors ("claims
    file"), `hint` may follow ("write the samples to a JSONL file")."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)      # a FIFO must not block before we can refuse it
    except FileNotFoundError:
        raise GptlabError(f"{p}: no such {what}") from None
    except OSError as e:
        raise GptlabError(f"{p}: cannot read ({e.strerror})") from None
    except ValueError as e:                               # a NUL in the path
        raise GptlabError(f"{shown_repr(str(p))}: cannot read ({e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise GptlabError(f"{p}: is {kind}, not a {what}" + (f"; {hint}" if hint else ""))
    return os.fdopen(fd, "rb")


def read_text_file(path: str | Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most max_bytes; `what` names it in errors ("claims file")."""
    p = Path(path)
    with open_regular_file(p, what) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise GptlabError(f"{p}: larger than {max_bytes >> 20} MiB; not a {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GptlabError(f"{p}: not UTF-8 text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_toml(text: str, where: str) -> dict:
    """tomllib.loads with every failure as one line naming `where`."""
    if (bad := _SURROGATE.search(text)) is not None:       # only a caller's str can hold one, not a file
        line = text.count("\n", 0, bad.start()) + 1
        raise GptlabError(f"{where}: not text (an unpaired surrogate on line {line})")
    try:
        return tomllib.loads(text)
    except ValueError as e:       # TOMLDecodeError, or an integer of over 4,300 digits
        raise GptlabError(f"{where}: invalid TOML ({shown(str(e).split(': value has')[0], 200)})") from None
    except RecursionError:
        raise GptlabError(f"{where}: invalid TOML (arrays or tables nested too deeply)") from None
