"""The documentation is checked like code.

- Every worked example in `docs/` is run again through the code it documents: the quote
  documents of `docs/settlement-rules.md` and `docs/settlement-rules-v2.md` through
  `clinic quote`, the example ledger of `docs/ledger.md` through both verifiers, the
  signed request of `docs/sync-protocol.md` and the signed updates of `docs/updates.md`
  through `sync.protocol` and `sync.updates`.
  A change of behaviour that the pages do not follow fails here.
- Everything a user can call or set must be written down: every `clinic` command in a
  README, every option next to its command, every `CLINIC_…` environment variable and
  every application setting somewhere in the READMEs or `docs/`.
- The `TestTheChecksCanFail` class proves each of those checks reports what is missing.
"""

import ast
import base64
import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask
from independent_verifier import verify_records

from edge.adapters.catalog_files import open_catalog_file
from edge.adapters.identity import device_id_for
from edge.console import main
from edge.domain import records as rec
from edge.domain.ledger import b64url, canonical, genesis_hash, raw_public_key, verify_chain
from edge.domain.quote import quote_document
from sync.protocol import (
    SignedRequest,
    SyncError,
    answer_payload,
    canonical_json,
    sha256_hex,
    sign_answer,
    sign_request,
    signing_payload,
    verify_answer,
    verify_request,
)
from sync.updates import catalog_item_to_json, catalog_items_of, verify_update

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def readme_paths() -> list[Path]:
    """README.md and the READMEs of the packages and deploy targets."""
    nested = [
        path
        for pattern in ("*/README.md", "deploy/*/README.md")
        for path in sorted(ROOT.glob(pattern))
        if not path.relative_to(ROOT).parts[0].startswith((".", "docs"))
    ]
    return [ROOT / "README.md", *nested]


def doc_paths() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def texts(paths: list[Path]) -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in paths}


READMES = texts(readme_paths())
ALL_DOCS = {**READMES, **texts(doc_paths())}


def blocks(page: str, name: str) -> list[str]:
    """The contents of the fenced code blocks whose info string names `name`
    (```json quote-input)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    pattern = re.compile(
        r"^```\S*[ \t]+" + re.escape(name) + r"[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S
    )
    return [match.group(1) for match in pattern.finditer(text)]


def block(page: str, name: str) -> str:
    found = blocks(page, name)
    assert len(found) == 1, f"{page} should hold one `{name}` block, not {len(found)}"
    return found[0]


# ---- settlement-rules.md and settlement-rules-v2.md: the worked examples ------------------------

# Each page of the rules, and how many settled worked examples it must show at least.
RULES_PAGES = {"settlement-rules.md": 3, "settlement-rules-v2.md": 5}
# The version 1 page shows version 1's result. Version 2 adds members to every result and
# keeps the values of version 1's members (settlement-rules-v2.md), so that page's outputs
# are compared on the members they show; the version 2 page's, on every member.
SHOWS_VERSION_1_MEMBERS = {"settlement-rules.md"}


def shown(value, expected):
    """`value` cut down to the members that `expected` shows, in nested objects too."""
    if isinstance(value, dict) and isinstance(expected, dict):
        return {key: shown(value.get(key), part) for key, part in expected.items()}
    if isinstance(value, list) and isinstance(expected, list) and len(value) == len(expected):
        return [shown(item, part) for item, part in zip(value, expected, strict=True)]
    return value


def worked_examples(page: str) -> list[tuple[str, str]]:
    """The (quote-input, quote-output) pairs of a page, in order."""
    inputs, outputs = blocks(page, "quote-input"), blocks(page, "quote-output")
    assert len(inputs) == len(outputs), f"{page}: every quote-input needs its quote-output"
    return list(zip(inputs, outputs, strict=True))


@pytest.mark.parametrize(("page", "at_least"), RULES_PAGES.items())
def test_settlement_rules_show_enough_worked_examples_each_with_its_output(page, at_least):
    settled = [out for _, out in worked_examples(page) if "error" not in json.loads(out)]
    assert len(settled) >= at_least, f"{page} shows {len(settled)} settled examples"


@pytest.mark.parametrize(
    ("page", "document", "expected"),
    [
        pytest.param(page, document, expected, id=f"{page} example {n}")
        for page in RULES_PAGES
        for n, (document, expected) in enumerate(worked_examples(page), start=1)
    ],
)
def test_each_worked_example_is_what_clinic_quote_prints(page, document, expected):
    expected = json.loads(expected)
    result = CliRunner().invoke(main, ["quote"], input=json.dumps(json.loads(document)))
    assert result.exit_code == (2 if "error" in expected else 0), result.output
    printed = json.loads(result.output)
    if page in SHOWS_VERSION_1_MEMBERS:
        printed = shown(printed, expected)
    assert printed == expected


# ---- ledger.md: the example ledger ----------------------------------------------------------


def example_ledger() -> tuple[str, list[str], list[dict]]:
    public_key = json.loads(block("ledger.md", "device-show"))["public_key"]
    lines = block("ledger.md", "ledger-export").splitlines()
    return public_key, lines, [json.loads(line) for line in lines]


def public_key_from(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(text + "=="))


def test_the_example_ledger_verifies_with_the_documented_public_key():
    public_key, lines, records = example_ledger()
    assert [r["kind"] for r in records] == ["settlement", "settlement", "reversal", "daily_close"]
    verdict = verify_chain(records, public_key_from(public_key))
    assert verdict.ok and verdict.count == 4, verdict
    assert verify_records(lines, public_key)["ok"]


def test_the_example_ledger_starts_at_the_genesis_hash_and_names_the_derived_device_id():
    public_key, _, records = example_ledger()
    key = public_key_from(public_key)
    assert records[0]["prev_hash"] == genesis_hash(key)
    assert {r["device_id"] for r in records} == {device_id_for(key)}
    assert json.loads(block("ledger.md", "device-show"))["device_id"] == device_id_for(key)


def test_the_documented_canonical_bytes_are_those_of_record_3_and_hash_to_it():
    _, _, records = example_ledger()
    shown = block("ledger.md", "canonical-bytes").rstrip("\n")
    assert shown.encode() == canonical(records[2])
    assert hashlib.sha256(shown.encode()).hexdigest() == records[2]["hash"]
    assert records[2]["hash"] in (DOCS / "ledger.md").read_text(encoding="utf-8")


def test_the_indented_record_is_the_first_line_of_the_export():
    _, _, records = example_ledger()
    assert json.loads(block("ledger.md", "ledger-record")) == records[0]


def test_the_example_bodies_are_what_the_code_writes():
    _, _, records = example_ledger()
    settlement, _, reversal, close = records
    # A version 1 ledger: the code writes version 2's members besides, with version 1's
    # values for version 1's members.
    before, after = (
        settlement["body"]["accumulators_before"],
        settlement["body"]["result"]["accumulators_after"],
    )
    current = {**dict.fromkeys(rec.ACCUMULATOR_FIELDS, 0), "supplements_paid": {}, **after}
    written = rec.reversal_body(
        settlement,
        reason=reversal["body"]["reason"],
        operator=reversal["body"]["operator"],
        accumulators_after=rec.restored_accumulators(before, after, current),
    )
    assert written["amounts"] == {
        **dict.fromkeys(rec.MONEY_FIELDS, 0),
        **reversal["body"]["amounts"],
    }
    written["amounts"] = reversal["body"]["amounts"]
    written["accumulators_after"] = {
        k: written["accumulators_after"][k] for k in reversal["body"]["accumulators_after"]
    }
    assert reversal["body"] == written
    # A close after midnight belongs to the day it closes.
    day = rec.closed_business_day(records[:3], close["created_at"][:10])
    assert (day, close["created_at"][:10]) == ("2026-11-22", "2026-11-23")
    written = rec.daily_close_body(
        records[:3], business_day=day, operator=close["body"]["operator"]
    )
    for section in ("settlements", "reversals", "net"):
        shown = close["body"][section]
        assert written[section] == {**dict.fromkeys(rec.MONEY_FIELDS, 0), **shown}
        written[section] = shown
    assert close["body"] == written


def test_the_example_settlement_is_what_the_rules_give_with_the_demo_county():
    _, _, records = example_ledger()
    body = records[0]["body"]
    demo = ROOT / "edge" / "demo"
    roster = json.loads((demo / "roster.json").read_text(encoding="utf-8"))
    person = next(p for p in roster["persons"] if p["insured_id"] == body["insured_id"])
    before = body["accumulators_before"]
    # The example was settled under the demo's policy 2026.1 and catalog 2026.11.1, when the
    # general consultation fee was ¥6 with no fixed payment (the record names its price).
    recorded_prices = {line["code"]: line["price"] for line in body["visit"]["lines"]}
    catalog = [catalog_item_to_json(i) for i in open_catalog_file(demo / "catalog.csv").items]
    for item in catalog:
        item.pop("fund_fixed", None)
        item["price"] = recorded_prices.get(item["code"], item["price"])
    document = {
        "policy": json.loads((demo / "policy-2026.1.json").read_text(encoding="utf-8")),
        "catalog": catalog,
        "person": {**person, "account_balance": before["account_balance"]},
        "accumulators": {k: before[k] for k in ("deductible_used", "fund_paid", "assistance_paid")},
        "visit": {
            **body["visit"],
            "lines": [
                {"code": x["code"], "quantity": x["quantity"]} for x in body["visit"]["lines"]
            ],
        },
    }
    assert (body["rules_version"], body["policy_version"]) == (1, document["policy"]["version"])
    assert version_1_members(quote_document(document), body["result"]) == body["result"]


def version_1_members(result: dict, recorded: dict) -> dict:
    """`result` with only the members a version 1 `recorded` result has: version 2 adds
    members and keeps the values of version 1's."""
    shown = {k: v for k, v in result.items() if k in recorded}
    shown["lines"] = [
        {k: v for k, v in line.items() if k in old}
        for line, old in zip(result["lines"], recorded["lines"], strict=True)
    ]
    shown["accumulators_after"] = {
        k: v for k, v in result["accumulators_after"].items() if k in recorded["accumulators_after"]
    }
    return shown


# ---- sync-protocol.md: a signed request --------------------------------------------------------


def test_the_signed_request_example_is_what_sync_protocol_signs():
    example = json.loads(block("sync-protocol.md", "signing-example"))
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(example["seed_hex"]))
    assert b64url(raw_public_key(key.public_key())) == example["public_key"]
    assert device_id_for(key.public_key()) == example["device_id"]
    body = example["body"].encode()
    assert sha256_hex(body) == example["body_sha256"]
    payload = signing_payload(
        method=example["method"],
        path=example["path"],
        body_sha256=example["body_sha256"],
        timestamp=example["timestamp"],
        nonce=example["nonce"],
        device_id=example["device_id"],
    )
    assert payload.decode() == block("sync-protocol.md", "signing-payload").rstrip("\n")
    signed_at = datetime.fromisoformat(example["signed_at"])
    headers = sign_request(
        key,
        device_id=example["device_id"],
        method=example["method"],
        path=example["path"],
        body=body,
        now=signed_at,
        nonce=example["nonce"],
    )
    assert headers == {
        "X-Clinic-Device": example["device_id"],
        "X-Clinic-Timestamp": example["timestamp"],
        "X-Clinic-Nonce": example["nonce"],
        "X-Clinic-Signature": example["signature"],
    }
    claimed = SignedRequest(
        example["device_id"], example["timestamp"], example["nonce"], example["signature"]
    )
    verify_request(
        key.public_key(), claimed, method="POST", path=example["path"], body=body, now=signed_at
    )


def test_the_signed_answer_example_is_what_sync_protocol_signs():
    example = json.loads(block("sync-protocol.md", "answer-example"))
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(example["seed_hex"]))
    assert b64url(raw_public_key(key.public_key())) == example["county_public_key"]
    body = example["body"].encode()
    assert sha256_hex(body) == example["body_sha256"]
    request = {k: example[k] for k in ("method", "path", "device_id", "nonce")}
    answer = {**request, "status": example["status"], "hub_time": example["hub_time"]}
    payload = answer_payload(body_sha256=example["body_sha256"], **answer)
    assert payload.decode() == block("sync-protocol.md", "answer-payload").rstrip("\n")
    assert sign_answer(key, body=body, **answer) == example["signature"]
    verify_answer(key.public_key(), signature=example["signature"], body=body, **answer)
    # The example heartbeat above is the request this answers.
    asked = json.loads(block("sync-protocol.md", "signing-example"))
    assert request == {k: asked[k] for k in request}


# ---- updates.md: a snapshot, a delta, a rollback -------------------------------------------------


def example_updates():
    key = public_key_from(block("updates.md", "county-public-key").strip())
    full = json.loads(block("updates.md", "signed-update-full"))
    delta = json.loads(block("updates.md", "signed-update-delta"))
    return key, full, delta


NOW = datetime.fromisoformat("2026-12-20T09:00:00+08:00")


def test_the_example_snapshot_verifies_and_signs_the_documented_bytes():
    key, full, _ = example_updates()
    manifest_bytes = block("updates.md", "manifest-canonical").rstrip("\n")
    assert canonical_json(full["manifest"]).decode() == manifest_bytes
    update = verify_update(full, key, kind="catalog", installed_version=None, now=NOW)
    assert (update.version, update.update_format) == ("2026.12", "full")
    assert len(catalog_items_of(update, {})) == 3


def test_the_example_delta_applies_to_the_snapshot_and_gives_the_county_version():
    key, full, delta = example_updates()
    installed = {item["code"]: item for item in full["content"]["items"]}
    update = verify_update(delta, key, kind="catalog", installed_version="2026.12", now=NOW)
    items = {item.code: item for item in catalog_items_of(update, installed)}
    assert sorted(items) == ["110200005000000", "XA10BAA154A003", "XJ01CAA040A001"]
    assert str(items["XJ01CAA040A001"].price) == "6.50"


def test_the_example_snapshot_is_refused_by_a_terminal_that_has_the_newer_version():
    key, full, _ = example_updates()
    with pytest.raises(SyncError) as refused:
        verify_update(full, key, kind="catalog", installed_version="2026.12.1", now=NOW)
    assert refused.value.code == "UPDATE_OLDER"


# ---- nothing a user can call or set is undocumented ----------------------------------------------


def command_paths(group: click.Group = main, path: tuple[str, ...] = ()):
    """(path, command) for `clinic` itself and every command and group under it."""
    yield path, group
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            yield from command_paths(command, (*path, name))


def mentions(documents: dict[str, str], path: tuple[str, ...]) -> bool:
    pattern = re.compile(r"\bclinic " + " ".join(map(re.escape, path)) + r"(?![\w-])")
    return any(pattern.search(text) for text in documents.values())


def undocumented_commands(documents: dict[str, str]) -> list[str]:
    return [
        "clinic " + " ".join(path)
        for path, _ in command_paths()
        if path and not mentions(documents, path)
    ]


def text_units(text: str) -> list[str]:
    """A Markdown page cut into paragraphs, table rows and fenced code blocks."""
    units, paragraph, fence = [], [], None
    for line in text.splitlines():
        if fence is not None:
            if line.startswith("```"):
                units.append("\n".join(fence))
                fence = None
            else:
                fence.append(line)
        elif line.startswith("```"):
            fence = []
        elif line.lstrip().startswith("|"):
            units.append(line)
        elif line.strip():
            paragraph.append(line)
            continue
        if paragraph:
            units.append("\n".join(paragraph))
            paragraph = []
    if paragraph:
        units.append("\n".join(paragraph))
    return units


# `clinic` as a word: not `--clinic`, `clinic.db`, `clinic-hub` or `/var/lib/clinic`.
MENTION = re.compile(r"(?<![\w./-])clinic(?![\w.-])((?: [a-z][a-z0-9-]*)*)")


def resolve(words: list[str]) -> tuple[tuple[str, ...], int]:
    """The command the words name (the longest path through the click tree) and how many
    of the words that path took."""
    command, path = main, ()
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command, path = command.commands[word], (*path, word)
    return path, len(path)


def command_segments(documents: dict[str, str]) -> dict[tuple[str, ...], list[str]]:
    """For each command, the text that follows each mention of it, up to the next mention
    of any `clinic …` command in the same paragraph, table row or code block."""
    segments: dict[tuple[str, ...], list[str]] = {}
    for text in documents.values():
        for unit in text_units(text):
            found = []  # (command path, where its mention starts, where its segment starts)
            for match in MENTION.finditer(unit):
                path, taken = resolve(match.group(1).split())
                start = match.start(1)
                for word in match.group(1).split()[:taken]:
                    start = unit.index(word, start) + len(word)
                # "clinic" alone is the English word ("村卫生室 Village clinic"), unless an
                # option follows it (`clinic --version`).
                if path or unit.startswith(" --", start):
                    found.append((path, match.start(), start))
            for index, (path, _, start) in enumerate(found):
                end = found[index + 1][1] if index + 1 < len(found) else len(unit)
                segments.setdefault(path, []).append(unit[start:end])
    return segments


def is_shared_data_dir(option: click.Option) -> bool:
    """The device's and the hub's `--data-dir`, documented once for every command in
    docs/commands.md ("Options every command shares")."""
    return option.opts == ["--data-dir"] and option.envvar in ("CLINIC_DATA_DIR", "CLINIC_HUB_DIR")


def undocumented_options(documents: dict[str, str]) -> list[str]:
    """Options not written next to their command.

    The rule: an option is documented when one of its flags (`--output` or `-o`) appears
    in a README or a `docs/` page after a mention of its command (`clinic hub report`),
    in the same paragraph, table row or code block, before any other `clinic …` command
    is mentioned. Why not looser: "somewhere in the docs" lets a new `--json` or
    `--township` pass unseen because another command documents one; and "in `--help`"
    can never fail, since click writes the help from the options themselves. Why not
    stricter (a default and a meaning for each): no test can tell whether a sentence
    explains an option; docs/commands.md gives both, and review keeps them right.
    The one exception is the shared `--data-dir` of device and hub commands
    (`is_shared_data_dir`), which docs/commands.md documents once for all of them (a
    separate test holds it to that); `clinic demo`'s own `--data-dir` is not exempt.
    """
    segments = command_segments(documents)
    missing = []
    for path, command in command_paths():
        for option in command.params:
            if not isinstance(option, click.Option) or is_shared_data_dir(option):
                continue
            flags = [*option.opts, *option.secondary_opts]
            patterns = [re.compile(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])") for f in flags]
            if not any(p.search(s) for s in segments.get(path, []) for p in patterns):
                missing.append(" ".join(["clinic", *path, option.opts[0]]))
    return missing


def environment_variables() -> set[str]:
    """Every `CLINIC_…` variable the code reads: in Python, each string that is exactly a
    variable name (`os.environ.get("CLINIC_NAME")`, `envvar="CLINIC_DATA_DIR"`, constants
    such as `CLOCK_VARIABLE = "CLINIC_CLOCK"`); in the deploy scripts and units, each
    `$CLINIC_…` read and each `CLINIC_…=` setting."""
    names: set[str] = set()
    for package in ("edge", "web_ui", "sync", "drivers", "deploy"):
        for path in (ROOT / package).rglob("*"):
            if not path.is_file() or path.suffix in (".md", ".pyc", ".mo", ".po", ".pot"):
                continue
            if path.suffix == ".py":
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                    value = getattr(node, "value", None)
                    if isinstance(value, str) and re.fullmatch(r"CLINIC_[A-Z0-9_]+", value):
                        names.add(value)
            elif package == "deploy":
                text = path.read_text(encoding="utf-8")
                names.update(re.findall(r"\$\{?(CLINIC_[A-Z0-9_]+)", text))
                names.update(re.findall(r"(?:^|[\s=#])(CLINIC_[A-Z0-9_]+)=", text, re.M))
    return names


def undocumented_variables(documents: dict[str, str]) -> list[str]:
    return sorted(
        name
        for name in environment_variables()
        if not any(re.search(rf"\b{name}\b", text) for text in documents.values())
    )


def web_ui_settings() -> set[str]:
    from web_ui.app import default_config

    return set(default_config(Path("DATA_DIR")))


def hub_settings(tmp_path: Path) -> set[str]:
    """What `create_app` sets that Flask's own defaults do not: its defaults, and what the
    console sets (run for real on a new SQLite hub)."""
    from sync.hub.app import create_app
    from sync.hub.bootstrap import init_hub

    init_hub(tmp_path / "hub", "Docs County", NOW)
    app = create_app({"HUB_DATA_DIR": str(tmp_path / "hub")})
    bare, unset = Flask("bare").config, object()
    return {k for k, v in app.config.items() if bare.get(k, unset) != v}


def undocumented_settings(settings: set[str], documents: dict[str, str]) -> list[str]:
    return sorted(
        key
        for key in settings
        if not any(re.search(rf"`{key}(?:`|=)", text) for text in documents.values())
    )


def test_every_clinic_command_is_in_a_readme():
    assert undocumented_commands(READMES) == []


def test_every_option_is_documented_next_to_its_command():
    assert undocumented_options(ALL_DOCS) == []


def test_the_shared_data_dir_options_are_documented_with_their_variables():
    shared = ALL_DOCS["docs/commands.md"].split("## Options every command shares")[1]
    shared = shared.split("\n## ")[0]
    for command_words, variable in (("device commands", "CLINIC_DATA_DIR"),
                                    ("`clinic hub …` commands", "CLINIC_HUB_DIR")):  # fmt: skip
        assert command_words in shared and f"`--data-dir DIR` on {command_words}" in shared
        assert f"${variable}" in shared


def test_every_clinic_environment_variable_is_documented():
    assert {"CLINIC_CLOCK", "CLINIC_DATA_DIR", "CLINIC_HEALTH_URL"} <= environment_variables()
    assert undocumented_variables(ALL_DOCS) == []


def test_every_web_ui_setting_is_documented():
    assert {"DATA_DIR", "CLOCK", "MAX_CONTENT_LENGTH"} <= web_ui_settings()
    assert undocumented_settings(web_ui_settings(), ALL_DOCS) == []


def test_every_hub_setting_is_documented(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINIC_HUB_DATABASE", raising=False)
    settings = hub_settings(tmp_path)
    assert {"HUB_DATA_DIR", "CLOCK", "RECONCILE_INTERVAL_S", "CONSOLE"} <= settings
    assert undocumented_settings(settings, ALL_DOCS) == []


def test_the_readmes_point_only_at_pages_the_repository_has():
    for name, text in ALL_DOCS.items():
        assert "shared/docs" not in text, name
        for page in re.findall(r"`docs/([\w-]+\.md)`", text):
            assert (DOCS / page).exists(), f"{name} names docs/{page}"


class TestTheChecksCanFail:
    """Each check above, given the documents with one thing taken out, reports it."""

    @staticmethod
    def without(documents: dict[str, str], needle: str) -> dict[str, str]:
        return {name: text.replace(needle, "") for name, text in documents.items()}

    def test_a_command_taken_out_of_the_readmes_is_reported(self):
        assert undocumented_commands(self.without(READMES, "clinic hub report")) == [
            "clinic hub report"
        ]

    def test_an_option_taken_out_is_reported(self):
        documents = self.without(ALL_DOCS, "--reconcile-interval")
        assert undocumented_options(documents) == ["clinic hub serve --reconcile-interval"]

    def test_an_option_written_only_next_to_another_command_is_reported(self):
        documents = {"page.md": "| `clinic hub status` | `--township T`, `--json` |\n"}
        assert "clinic hub report --township" in undocumented_options(documents)
        assert "clinic hub status --township" not in undocumented_options(documents)

    def test_an_environment_variable_taken_out_is_reported(self):
        documents = self.without(ALL_DOCS, "CLINIC_HEALTH_FAILURES")
        assert undocumented_variables(documents) == ["CLINIC_HEALTH_FAILURES"]

    def test_a_setting_taken_out_is_reported(self):
        documents = self.without(ALL_DOCS, "`CARD_POLL_MS`")
        assert undocumented_settings(web_ui_settings(), documents) == ["CARD_POLL_MS"]

    def test_a_version_1_member_that_differs_or_is_missing_is_reported(self):
        expected = {"fund": 10, "lines": [{"inscp": 5}]}
        added = {"fund": 10, "lines": [{"inscp": 5, "fund_fixed": 0}], "setlinfo": {}}
        assert shown(added, expected) == expected
        assert shown({"fund": 11, "lines": [{"inscp": 5}]}, expected) != expected
        assert shown({"lines": [{"inscp": 5}]}, expected) != expected
        assert shown({"fund": 10, "lines": []}, expected) != expected
