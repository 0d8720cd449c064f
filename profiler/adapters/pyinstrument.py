"""Running pyinstrument on one pytest test, in a subprocess (`hotpath gate --profile`).

pyinstrument hooks every call (about 0.4x speed on a tight loop), so it is for on-demand
profiling of one benchmark, never always-on. The pytest run happens in a fresh interpreter in
the project's folder, so the test sees its own conftest, imports and working directory; the
child imports only pytest and pyinstrument (not this package), so it also works in a checkout
of another project, whatever its own packages are called.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hotpath.profiler.formats import pyinstrument as session_format
from hotpath.profiler.model import Profile

DEFAULT_INTERVAL_S = 0.0005

# argv: session path, interval, then pytest's arguments. The exit code is pytest's.
# pytest-benchmark pauses any profiler (sys.setprofile(None)) around its timed rounds, and
# cannot restore pyinstrument's (its profile object is not callable: a TypeError): the pause
# is made a no-op, so the rounds run profiled, which is the point here.
_CHILD = """
import json, sys
import pytest
from pyinstrument import Profiler
out, interval, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
try:
    import pytest_benchmark.fixture as fixture
except ImportError:
    pass
else:
    class Profiled:
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
    fixture.PauseInstrumentation = Profiled
profiler = Profiler(interval=interval, async_mode="disabled")
profiler.start()
try:
    code = pytest.main(args)
finally:
    profiler.stop()
with open(out, "w") as f:
    json.dump(profiler.last_session.to_json(), f)
sys.exit(int(code))
"""


@dataclass(frozen=True)
class PytestProfile:
    profile: Profile  # the whole session, pytest itself included
    exit_code: int  # pytest's: 0 passed, 1 failed, 4 usage error, 5 no tests collected
    output: str  # pytest's output, for messages

    __test__ = False  # not a pytest test class, whatever its module is imported into


def profile_pytest(
    node_id: str,
    rootdir: Path,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    pytest_args: Sequence[str] = (),
    timeout_s: float = 600,
    python: str = sys.executable,
) -> PytestProfile:
    """Run one pytest node id (relative to `rootdir`) under pyinstrument in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="hotpath-pyinstrument-") as tmp:
        session_path = Path(tmp) / "session.json"
        args = [node_id, "-q", "-p", "no:cacheprovider", *pytest_args]
        try:
            done = subprocess.run(
                [python, "-c", _CHILD, str(session_path), str(interval_s), *args],
                cwd=rootdir,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return PytestProfile(Profile(), -1, f"pytest {node_id} took over {timeout_s:.0f} s")
        output = done.stdout + done.stderr
        if not session_path.is_file():
            return PytestProfile(Profile(), done.returncode, output)
        session = json.loads(session_path.read_text())
    return PytestProfile(session_format.from_session(session), done.returncode, output)
