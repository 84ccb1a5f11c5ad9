"""Coverage-guided fuzzing of the engine's request path with atheris (in `make fuzz`).

The same in-process engines and oracle as test_engine_fuzz, on bytes that libFuzzer
mutates towards new coverage of the mesh code, starting from streams the grammar writes.
The first byte of an input picks the engine and where the reads are cut. Arguments go to
libFuzzer (`-max_total_time=60`); the corpus and any crash input go to a temporary folder.

    python tests/integration/engine/atheris_engine.py -max_total_time=60
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from random import Random

import atheris

with atheris.instrument_imports(include=["mesh"]):
    from fake_net import ENGINES, InProcessProxy
from fuzz_http import pieces, stream
from oracle import check

SEEDS = 256


def main() -> None:
    loop = asyncio.new_event_loop()
    engines = [InProcessProxy(loop, **settings) for settings in ENGINES.values()]

    def one(data: bytes) -> None:
        if not data:
            return
        raw = data[1:]
        check(raw, engines[data[0] % len(engines)].run(pieces(Random(data[0]), raw)))

    folder = Path(tempfile.mkdtemp(prefix="natsmesh-engine-fuzz-"))
    corpus = folder / "corpus"
    corpus.mkdir()
    for seed in range(SEEDS):
        (corpus / f"seed-{seed}").write_bytes(bytes([seed % 256]) + stream(Random(seed)))
    print(f"corpus and crash inputs in {folder}", file=sys.stderr)
    atheris.Setup([sys.argv[0], f"-artifact_prefix={folder}/", *sys.argv[1:], str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
