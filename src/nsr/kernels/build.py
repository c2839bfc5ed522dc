"""Building and loading the native kernels: C sources shipped in this package, compiled on first
use, cached, loaded with ctypes.

Each kernel family names its sources (``common.h`` plus its own ``.c`` file) and the C functions it
calls, as a :class:`Library`. On first use the sources are compiled with the system's C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``; a few seconds) into a cache folder (``$NSR_CACHE_DIR``,
else ``~/.cache/nsr``); the file name carries a hash of the sources, compiler, flags and CPU, so an
edited source builds anew. Without a compiler, or with ``NSR_COMPILE=0``, nsr runs the eager torch
kernels instead (same results to float rounding, tested) and says why once (a ``RuntimeWarning``).

C functions are called with named arguments (:class:`Signature`), never by position alone.
Contraction to FMA is off, so the native epoch and the step-by-step epoch give the same bits.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from importlib import resources

import torch

FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-std=c11"]
_enabled = os.environ.get("NSR_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off", "")
_LIBRARIES: list["Library"] = []

# ctypes argument kinds of a Signature
i64, i32, f32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p


class Signature:
    """A C function's parameters by name, in declaration order: ``Signature("f", P=i64, w=ptr)``.
    ``sig(lib, P=..., w=...)`` calls it with exactly these named arguments."""

    def __init__(self, name: str, **params):
        self.name, self.params = name, params

    def bind(self, lib: ctypes.CDLL) -> None:
        fn = getattr(lib, self.name)
        fn.argtypes = list(self.params.values())
        fn.restype = ctypes.c_int

    def __call__(self, lib: ctypes.CDLL, **args) -> int:
        if args.keys() != self.params.keys():
            raise TypeError(f"{self.name}: arguments {sorted(set(args) ^ set(self.params))} missing or unknown")
        return getattr(lib, self.name)(*(args[k] for k in self.params))


def _cache_dir() -> str:
    base = os.environ.get("NSR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nsr")
    try:
        os.makedirs(base, exist_ok=True)
        return base
    except OSError:
        return tempfile.gettempdir()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_source(name: str) -> str:
    """The text of a C source shipped in this package (package data)."""
    return resources.files("nsr.kernels").joinpath(name).read_text()


def compile_library(name: str, sources: dict[str, str]) -> str:
    """Path of the shared library built from ``sources`` (file name -> text; the ``.c`` files are
    compiled), from the cache when the same sources were built before."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found (set CC)")
    key = "\0".join([*(f"{k}\0{v}" for k, v in sorted(sources.items())), cc, " ".join(FLAGS), _cpu_name(), sys.platform])
    path = os.path.join(_cache_dir(), f"nsr_{name}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so")
    if os.path.exists(path):
        return path
    with tempfile.TemporaryDirectory() as tmp:
        for file, text in sources.items():
            with open(os.path.join(tmp, file), "w") as f:
                f.write(text)
        c_files = [os.path.join(tmp, f) for f in sources if f.endswith(".c")]
        so_file = os.path.join(tmp, "kernels.so")
        res = None
        for flags in (FLAGS, [f for f in FLAGS if f != "-march=native"]):  # some compilers lack -march=native
            res = subprocess.run([cc, *flags, *c_files, "-o", so_file, "-lm"], capture_output=True, text=True,
                                 timeout=300)
            if res.returncode == 0:
                break
        if res.returncode:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:300]}")
        tmp_dest = f"{path}.{os.getpid()}.tmp"
        shutil.copyfile(so_file, tmp_dest)
        os.replace(tmp_dest, path)  # atomic: concurrent processes never load a partial file
    return path


class Library:
    """A kernel family's native code: its package sources and C functions, built on first use."""

    def __init__(self, name: str, files: list[str], signatures: list[Signature]):
        self.name, self.files = name, list(files)
        self.signatures = {s.name: s for s in signatures}
        self._lib, self.error = None, None
        self._lock = threading.Lock()
        _LIBRARIES.append(self)

    def load(self):
        """The loaded ``ctypes.CDLL``, building it on first use; None when disabled or unavailable."""
        if not _enabled:
            return None
        if self._lib is None and self.error is None:
            with self._lock:
                if self._lib is None and self.error is None:
                    try:
                        lib = ctypes.CDLL(compile_library(self.name, {f: read_source(f) for f in self.files}))
                        for s in self.signatures.values():
                            s.bind(lib)
                        self._lib = lib
                    except Exception as err:  # noqa: BLE001 - no compiler, read-only disk, ...: fall back
                        said = any(lib.error for lib in _LIBRARIES)  # said once, not once per library
                        self.error = f"{type(err).__name__}: {err}"
                        if not said:
                            warnings.warn(f"nsr: native kernels unavailable ({self.error}); using the eager torch kernels",
                                          RuntimeWarning, stacklevel=3)
        return self._lib

    def call(self, fn: str, **args) -> int:
        """Call the C function ``fn`` with named arguments (see its :class:`Signature`)."""
        return self.signatures[fn](self._lib, **args)


def set_enabled(enabled: bool) -> None:
    """Use the native kernels where they apply (``True``) or always the eager torch kernels."""
    global _enabled
    _enabled = bool(enabled)


def enabled() -> bool:
    return _enabled


def available() -> bool:
    """Whether the native kernels are enabled and every family's library is built."""
    return _enabled and all(lib.load() is not None for lib in _LIBRARIES)


def unavailable_reason() -> str | None:
    if not _enabled:
        return "disabled (NSR_COMPILE=0 or set_compile(False))"
    return next((lib.error for lib in _LIBRARIES if lib.error), None)


def native_tensors(*tensors) -> bool:
    """The native kernels take float32 CPU tensors that need no autograd graph (anything else runs
    the differentiable torch kernels)."""
    grad = torch.is_grad_enabled()
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and not (grad and t.requires_grad))
               for t in tensors)
