"""Moves the wall clock of every Python process of a `make test-dates` run.

`tests/time_travel/run.py` puts this folder on PYTHONPATH and sets
CLINIC_TEST_TIME_SHIFT_S; Python imports `sitecustomize` at start-up, so the test process,
the `clinic` commands it starts and the gunicorn workers all read one shifted clock (each
process adds the same shift to the real time, so they agree with each other). Monotonic
time is left alone, so sleeps and timeouts behave. Debian's libfaketime was tried first:
with Python 3.11's threads it made `time.sleep` fail with EINVAL and `Event.wait` hang.
"""

import os

_shift = os.environ.get("CLINIC_TEST_TIME_SHIFT_S")
if _shift:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_shift), tick=True).start()
