"""Run a Python script under cProfile in every Python thread (the worker runs workflow activations in a thread
pool, which `python -m cProfile` would not see), timing CPU (`time.thread_time`), not waits; write the merged
stats when the script returns.

    python bench/profiled.py OUT.prof worker.py [args...]
    python bench/profiled.py OUT.prof -m api [args...]

Only `bench.py --profile` uses it. The figures of a profiled run are not comparable with an unprofiled one.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import runpy
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profile_this_thread(*_: object) -> None:
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    profile.enable()  # replaces this hook for the rest of the thread's life


def main() -> None:
    out, script, *args = sys.argv[1:]
    module = args.pop(0) if script == "-m" else None
    sys.argv = [script if module is None else module, *args]
    sys.path[0] = os.getcwd() if module else os.path.dirname(os.path.abspath(script))
    threading.setprofile(_profile_this_thread)
    main_profile = cProfile.Profile(time.thread_time)
    _profiles.append(main_profile)
    main_profile.enable()
    try:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(script, run_name="__main__")
    finally:
        main_profile.disable()
        threading.setprofile(None)
        with _lock:
            profiles = list(_profiles)
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            try:
                stats.add(profile)
            except TypeError:  # a thread that never made a call
                pass
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
