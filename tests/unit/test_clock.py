"""The one clock: China time whatever the machine's zone, and CLINIC_CLOCK for tests and
training, read by every entry point."""

import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from clock import NOW

from edge.clock import CLINIC_TZ, ClockError, configured_clock, starting_at, system_clock
from edge.console import main


def test_without_clinic_clock_the_system_clock_reads_china_time():
    assert configured_clock({}) is system_clock
    assert system_clock().utcoffset() == timedelta(hours=8)


def test_clinic_clock_starts_at_its_instant_and_advances():
    clock = configured_clock({"CLINIC_CLOCK": "2028-02-29T01:30:00+00:00"})
    first = clock()
    assert first.tzinfo == CLINIC_TZ and first.isoformat().startswith("2028-02-29T09:30:00")
    time.sleep(0.05)
    assert timedelta(seconds=0.04) < clock() - first < timedelta(seconds=5)


@pytest.mark.parametrize("value", ["yesterday", "2026-11-22T09:30:00", "2026-13-01T00:00+08:00"])
def test_a_bad_clinic_clock_is_refused_in_plain_words(value):
    with pytest.raises(ClockError, match="CLINIC_CLOCK"):
        configured_clock({"CLINIC_CLOCK": value})
    with pytest.raises(ClockError):
        starting_at(NOW.replace(tzinfo=None))


def test_a_command_reads_clinic_clock_and_a_bad_one_changes_nothing(tmp_path):
    runner = CliRunner()
    data_dir = str(tmp_path / "device")
    bad = runner.invoke(main, ["init", "--data-dir", data_dir], env={"CLINIC_CLOCK": "noon"})
    assert bad.exit_code == 1 and "CLINIC_CLOCK='noon'" in bad.output
    assert not (tmp_path / "device" / "clinic.db").exists()
    env = {"CLINIC_CLOCK": NOW.isoformat()}
    assert runner.invoke(main, ["init", "--data-dir", data_dir], env=env).exit_code == 0
    shown = runner.invoke(main, ["device", "show", "--json", "--data-dir", data_dir], env=env)
    assert '"created_at": "2026-11-22T09:30:0' in shown.output
