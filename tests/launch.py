"""Launching `nsr` on several CPU processes from a test: one subprocess (Lightning's launcher starts the
other ranks), a clean environment, a timeout that kills the whole process group."""
import os
import shutil
import signal
import subprocess
import sys

import pytest

# variables of a distributed run: a test launches afresh, never as a rank of another run
DDP_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT")


def launch_nsr(cwd, args, devices: int, timeout: float = 300, pythonpath=None):
    """``nsr ARGS --trainer.devices DEVICES`` in ``cwd``; returns ``(returncode, stdout, stderr)``.
    Fails the test (after killing rank 0 and the ranks it launched) if it runs past ``timeout`` s."""
    script = os.path.join(os.path.dirname(sys.executable), "nsr")  # Lightning relaunches the ranks with the same argv
    cmd = [script if os.path.exists(script) else shutil.which("nsr"), *map(str, args), "--trainer.devices", str(devices)]
    env = {k: v for k, v in os.environ.items() if k not in DDP_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])
    os.makedirs(cwd, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"nsr {' '.join(map(str, args))} on {devices} devices did not finish in {timeout} s:\n{err[-2000:]}")
    return proc.returncode, out, err
