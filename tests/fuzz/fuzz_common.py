"""What every fuzz target shares: the oracle, and running under atheris or replaying files.

A target is a script: ``python tests/fuzz/fuzz_<name>.py [libFuzzer options] DIR...``
fuzzes from the corpus folders (the first one receives new inputs), and
``--seeds DIR`` writes the target's seed inputs into DIR (how the committed
corpus under ``corpus/<name>/`` was made). The oracle: ``one_input`` may
raise only the target's ``allowed`` error types, the documented, specific
errors its code promises for bad input; any other exception is a crash, and
atheris writes the input that caused it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import atheris
from lxml import etree

OneInput = Callable[[bytes], None]


def main(
    one_input: OneInput,
    allowed: tuple[type[BaseException], ...],
    seeds: Callable[[], Mapping[str, bytes]],
) -> None:
    """Write seeds (``--seeds DIR``) or fuzz with libFuzzer's command line."""
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(Path(sys.argv[2]), seeds())
        return

    def oracle(data: bytes) -> None:
        with contextlib.suppress(allowed):
            one_input(data)

    # libFuzzer starts argv[0] again through the shell for -merge, -jobs and -fork:
    # make it the command that runs this script with this interpreter.
    argv = [f"{sys.executable} {Path(sys.argv[0]).resolve()}", *sys.argv[1:]]
    atheris.Setup(argv, oracle)
    atheris.Fuzz()


def write_seeds(folder: Path, seeds: Mapping[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        digest = hashlib.sha256(data).hexdigest()[:12]
        (folder / f"seed-{name}-{digest}").write_bytes(data)


def replace_values(root: etree._Element, given: atheris.FuzzedDataProvider) -> bool:
    """Replace one to three texts or attribute values under ``root`` with text from ``given``.

    False when lxml refuses a character XML cannot hold: the harness, not the target,
    hit that, so the input is skipped.
    """
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    try:
        for _ in range(given.ConsumeIntInRange(1, 3)):
            element = elements[given.ConsumeIntInRange(0, len(elements) - 1)]
            value = given.ConsumeUnicodeNoSurrogates(given.ConsumeIntInRange(0, 48))
            names = sorted(element.attrib)
            if names and given.ConsumeBool():
                element.set(names[given.ConsumeIntInRange(0, len(names) - 1)], value)
            else:
                element.text = value
    except ValueError:
        return False
    return True
