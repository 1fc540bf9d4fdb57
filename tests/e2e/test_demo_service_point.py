"""`clinic demo-service-point` as a child process on the product's own clock (moved by
`make test-dates` to the year's end, New Year, 29 February…): whatever the date, the premium
is collected for the year the policy offers first, the certificate runs from the day of
the approval for a year, and the walkthrough's visits settle. Its --json facts are checked
against the rules, not against fixed dates."""

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from edge import demo
from edge.domain.service_point import next_roster_version

CLINIC = Path(sys.executable).parent / "clinic"


def test_the_walkthrough_holds_on_the_products_own_date(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CLINIC_CLOCK", "CLINIC_HUB_DATABASE")}
    done = subprocess.run(
        [str(CLINIC), "demo-service-point", "--data-dir", str(tmp_path / "walk"), "--json"],
        capture_output=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    facts = json.loads(done.stdout)
    day = date.fromisoformat(facts["day"])
    policy = demo.policy_document()["premiums"]
    opens = date.fromisoformat(f"{day.year}-{policy['collection_opens']}")
    assert facts["premium"]["year"] == (day.year + 1 if day >= opens else day.year)
    assert facts["premium"]["amount"] == 2 * policy["resident"]
    certificate = facts["chronic"]["result"]
    assert certificate["valid_from"] == day.isoformat()
    # a year: to the day before the anniversary, which for 29 February is 1 March
    if (day.month, day.day) == (2, 29):
        assert certificate["valid_to"] == f"{day.year + 1}-02-28"
    else:
        last = day.replace(year=day.year + 1) - timedelta(days=1)
        assert certificate["valid_to"] == last.isoformat()
    roster = demo.roster_document(day)["version"]
    assert facts["roster_after"] == next_roster_version(next_roster_version(roster))
    assert facts["chronic_refused_before"] == "CHRONIC_NOT_CERTIFIED"
    assert facts["chronic"]["visit"]["visit_type"] == "chronic"
    assert facts["new_resident"]["visit"]["amounts"]["fund"] > 0
    assert facts["daily_close"]["premiums"]["net"]["cash"] == 0

    # Without --json: each step in Chinese and English, and the folder kept.
    again = subprocess.run(
        [str(CLINIC), "demo-service-point", "--data-dir", str(tmp_path / "again")],
        capture_output=True, timeout=300, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr.decode()
    out = again.stdout.decode()
    steps = ["(a) 离线 offline", "(b) 同步 sync", "(c) 县医保局审核", "(d) 同步 sync",
             "(e) 就诊 the visits", "(f) 保费冲正与日结", "由政府全额资助",
             "应上缴现金"]  # fmt: skip
    for step in steps:
        assert step in out, step
    assert "kept in" in out and (tmp_path / "again" / "clinic" / "clinic.db").exists()
    # A folder that is not empty is refused, and nothing is changed in it.
    refused = subprocess.run(
        [str(CLINIC), "demo-service-point", "--data-dir", str(tmp_path / "again")],
        capture_output=True, timeout=60, env=env,
    )  # fmt: skip
    assert refused.returncode != 0 and b"not empty" in refused.stderr
