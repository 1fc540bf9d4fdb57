"""`clinic quote --jsonl` on a large seeded batch, every answer against the v2 reference.

4000 documents, a third of them version 1 only, some broken (rejections of version 1,
malformed version 2 fields), go through one run of the real command line; each output
line must be the reference settlement (tests/settlement_reference_v2.py) of its input
line, field for field, warning and error messages aside.
"""

import json
import random
import subprocess
import sys
from pathlib import Path

from quote_v2_documents import RandomSource, draw_batch_document
from settlement_reference_v2 import reference_quote

CLINIC = Path(sys.executable).with_name("clinic")
SEED = 20270101
BATCH = 4000


def comparable(result: dict) -> dict:
    if "error" in result:
        error = result["error"]
        assert isinstance(error.get("message"), str) and error["message"], error
        return {"error": {k: v for k, v in error.items() if k != "message"}}
    return {**result, "warnings": [w["code"] for w in result["warnings"]]}


def first_difference(actual: dict, expected: dict) -> str:
    if "error" in actual or "error" in expected:
        return f"{actual} != {expected}"
    if sorted(actual) != sorted(expected):
        return f"keys {sorted(actual)} != {sorted(expected)}"
    for key in sorted(expected):
        if actual[key] != expected[key]:
            return f"{key}: {actual[key]!r} != {expected[key]!r}"
    return "equal"


def test_every_answer_of_a_large_mixed_batch_is_the_reference_settlement():
    source = RandomSource(random.Random(SEED))
    documents = [draw_batch_document(source) for _ in range(BATCH)]
    stdin = "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in documents)
    done = subprocess.run(
        [str(CLINIC), "quote", "--jsonl"], input=stdin.encode(), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    answers = done.stdout.decode().splitlines()
    assert len(answers) == BATCH

    settled = errors = 0
    differences = []
    for index, (doc, answer) in enumerate(zip(documents, answers, strict=True)):
        actual = comparable(json.loads(answer))
        expected = reference_quote(doc)
        if "error" in expected:
            errors += 1
        else:
            settled += 1
        if actual != expected:
            differences.append((index, first_difference(actual, expected), doc))
    # the batch really is mixed
    assert settled > BATCH // 2 and errors > BATCH // 20, (settled, errors)
    assert not differences, (
        f"{len(differences)} of {BATCH} differ; first: line {differences[0][0]}: "
        f"{differences[0][1]}\n{json.dumps(differences[0][2], ensure_ascii=False)}"
    )
