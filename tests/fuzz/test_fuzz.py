"""Each fuzz target, run for a bounded number of inputs from its committed corpus.

Every target (fuzz_<name>.py here) runs in its own process under atheris,
niced: first every input in corpus/<name>/ (the seeds and each crash ever
found, kept as regression cases), then mutations of them, up to ``runs``
inputs or ``seconds``, whichever comes first. The seed is fixed, so a run is
repeatable; MASH_FUZZ_SEED picks another. A crash (an exception outside the
target's oracle), a hang past 10 s or memory past 2 GiB fails the test,
which prints the traceback and where the input that caused it was written.
README.md in this folder says what each target feeds and how to run one longer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Budget:
    runs: int  # inputs tried, the corpus included
    seconds: int  # the ceiling, should the machine be slower than ours
    dictionary: str | None = None


# Sized so each takes 30-45 s here on a quiet machine (2 cores, niced); the ceiling keeps
# the five under 4 minutes on a busy one.
BUDGETS = {
    "envelope": Budget(runs=100_000, seconds=45, dictionary="xml.dict"),
    "xml_payload": Budget(runs=100_000, seconds=45, dictionary="xml.dict"),
    "intake": Budget(runs=8_000, seconds=45, dictionary="mail.dict"),
    "csv_mapping": Budget(runs=100_000, seconds=45),
    "json_mapping": Budget(runs=250_000, seconds=45, dictionary="json.dict"),
}


def command(target: str, budget: Budget, work: Path) -> list[str]:
    new_inputs = work / "new"
    new_inputs.mkdir()
    options = [
        f"-runs={budget.runs}",
        f"-max_total_time={budget.seconds}",
        f"-seed={os.environ.get('MASH_FUZZ_SEED', '1')}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
    ]
    if budget.dictionary is not None:
        options.append(f"-dict={HERE / budget.dictionary}")
    script = HERE / f"fuzz_{target}.py"
    corpus = HERE / "corpus" / target
    return ["nice", "-n", "10", sys.executable, str(script), *options, str(new_inputs), str(corpus)]


@pytest.mark.parametrize("target", sorted(BUDGETS))
def test_the_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    budget = BUDGETS[target]
    run = subprocess.run(
        command(target, budget, tmp_path),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=budget.seconds + 120,
        check=False,
    )
    found = sorted(p.name for p in tmp_path.iterdir() if p.name != "new")
    lines = [line for line in run.stderr.splitlines() if not line.startswith("INFO: Instrumenting")]
    stats = [line for line in lines if line.startswith(("stat::", "Done "))]
    print(f"{target}: " + "; ".join(stats))  # executions and time, for -s or a failure
    assert run.returncode == 0 and not found, (
        f"fuzz_{target} found a crash (kept in {tmp_path}: {found}); copy the input into "
        f"tests/fuzz/corpus/{target}/ as a regression case once fixed\n" + "\n".join(lines[-60:])
    )
