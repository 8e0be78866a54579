"""The one place where ml-integrity runs ``git``.

Everything that talks to git goes through :class:`Git` (one repository) and
:class:`CatFileBatch` (a long-lived ``git cat-file --batch`` reader), so that
environment handling, ``-z`` parsing and error reporting are done once:

- Variables that git exports to hooks and filters (``GIT_DIR``,
  ``GIT_WORK_TREE``, ``GIT_PREFIX``...) point at the repository that ran the
  hook. They are dropped when we run git elsewhere (a clone, a test repo);
  ``GIT_INDEX_FILE`` is kept only where the caller asks for the index that
  git is building (a pre-commit hook under ``git commit -a`` or
  ``git commit PATH`` uses a temporary index).
- Output is read with ``-z`` and split on NUL, never on newlines or spaces.
- A git failure is a :class:`~ml_integrity.errors.ToolError` (exit 3) with
  the command and the end of git's stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from ml_integrity.errors import ToolError

__all__ = [
    "CatFileBatch",
    "Git",
    "IndexEntry",
    "TreeEntry",
    "clean_env",
    "require_git",
]

# Set by git for hooks and filters; they describe *that* repository and must
# not leak into git commands run for another one. GIT_INDEX_FILE is handled
# separately (see Git.index_env).
_REPO_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_PREFIX",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_INTERNAL_SUPER_PREFIX",
)


def clean_env(
    base: Mapping[str, str] | None = None,
    *,
    keep_index: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (default ``os.environ``) without the per-repository git variables.

    ``keep_index`` keeps ``GIT_INDEX_FILE`` (made absolute against the current
    directory, as git resolves it), for code that must see the index a
    running ``git commit`` is building.
    """
    env = dict(os.environ if base is None else base)
    index = env.get("GIT_INDEX_FILE")
    for var in _REPO_VARS:
        env.pop(var, None)
    if keep_index and index:
        env["GIT_INDEX_FILE"] = os.path.abspath(index)
    if extra:
        env.update(extra)
    return env


def require_git() -> str:
    exe = shutil.which("git")
    if exe is None:
        raise ToolError(
            "git is not installed or not on PATH",
            hint="install git (Debian/Ubuntu: apt-get install git)",
        )
    return exe


class IndexEntry(NamedTuple):
    """One row of ``git ls-files -s``: a staged file (a tuple: cheap in bulk)."""

    mode: str
    oid: str
    stage: int
    path: str


class TreeEntry(NamedTuple):
    """One row of ``git ls-tree -l``: a file in a tree (size is -1 for trees)."""

    mode: str
    type: str
    oid: str
    size: int
    path: str


class Git:
    """Runs git in one repository (its top-level directory ``root``).

    ``keep_index`` makes every command honour the caller's
    ``GIT_INDEX_FILE`` (for hooks that run inside ``git commit``).
    """

    def __init__(self, root: Path, *, keep_index: bool = False) -> None:
        self.root = Path(root)
        self.keep_index = keep_index
        self._git_dir: Path | None = None
        self._common_dir: Path | None = None

    # -- construction ---------------------------------------------------------

    @classmethod
    def discover(cls, start: Path | None = None, *, keep_index: bool = False) -> Git:
        """The repository containing ``start`` (default: the current directory).

        Inside a hook or filter git has set ``GIT_DIR``; it is honoured here
        (the work tree is where git runs us), so a clone in progress is found.
        """
        start = Path.cwd() if start is None else start
        env = dict(os.environ)
        if "GIT_DIR" not in env:
            env = clean_env(env)
        out = _run(
            ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
            cwd=start,
            env=env,
            check=False,
        )
        lines = out.stdout.decode("utf-8", "surrogateescape").split("\n")
        if out.returncode != 0 or len(lines) < 3 or not lines[0]:
            from ml_integrity.errors import UsageError

            raise UsageError(
                "not inside a git work tree",
                path=start,
                hint="run this command inside a git repository (or `git init` first)",
            )
        git = cls(Path(lines[0]), keep_index=keep_index)
        # the same call names the git directories: saves two git runs per command
        git._git_dir = Path(lines[1])
        common = Path(lines[2])
        git._common_dir = common if common.is_absolute() else (start / common).resolve()
        return git

    # -- running --------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return clean_env(keep_index=self.keep_index, extra=extra)

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """``git -C root ARGS``; raises ToolError on a non-zero exit when ``check``."""
        return _run(["git", *args], cwd=self.root, env=self.env(env), input=input, check=check)

    def text(self, args: Sequence[str], **kw: object) -> str:
        out = self.run(args, **kw)  # type: ignore[arg-type]
        return out.stdout.decode("utf-8", "surrogateescape")

    # -- paths and config -----------------------------------------------------

    @property
    def git_dir(self) -> Path:
        if self._git_dir is None:
            self._git_dir = self._abs(self.text(["rev-parse", "--git-dir"]).strip())
        return self._git_dir

    @property
    def common_dir(self) -> Path:
        """The directory shared by all worktrees (where ``lfs/`` lives)."""
        if self._common_dir is None:
            self._common_dir = self._abs(self.text(["rev-parse", "--git-common-dir"]).strip())
        return self._common_dir

    def git_path(self, name: str) -> Path:
        """``git rev-parse --git-path NAME`` (honours ``core.hooksPath`` for hooks)."""
        return self._abs(self.text(["rev-parse", "--git-path", name]).strip())

    def _abs(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else (self.root / path).resolve()

    def config_get(self, key: str, *, scope: str | None = None) -> str | None:
        args = ["config"]
        if scope:
            args.append(f"--{scope}")
        out = self.run([*args, "--get", key], check=False)
        if out.returncode != 0:
            return None
        return out.stdout.decode("utf-8", "surrogateescape").rstrip("\n")

    def config_matching(self, regexp: str) -> dict[str, str]:
        """Every config key matching ``regexp`` -> value (lower-case keys; the last value wins)."""
        out = self.run(["config", "-z", "--get-regexp", regexp], check=False)
        settings: dict[str, str] = {}
        for rec in out.stdout.split(b"\0"):
            if rec:
                key, _, value = rec.decode("utf-8", "surrogateescape").partition("\n")
                settings[key.lower()] = value
        return settings

    def config_bool(self, key: str, default: bool = False) -> bool:
        out = self.run(["config", "--type=bool", "--get", key], check=False)
        if out.returncode == 1:
            return default
        if out.returncode != 0:
            from ml_integrity.errors import ConfigError

            raise ConfigError(
                f"git config {key} is not a boolean",
                hint=f"set it with `git config {key} true` or `false`",
            )
        return out.stdout.strip() == b"true"

    def config_set(self, key: str, value: str, *, scope: str = "local") -> None:
        self.run(["config", f"--{scope}", key, value])

    def config_unset(self, key: str, *, scope: str = "local") -> None:
        out = self.run(["config", f"--{scope}", "--unset-all", key], check=False)
        if out.returncode not in (0, 5):  # 5: the key was not set
            raise ToolError(
                f"git config --unset-all {key} failed",
                command=["git", "config", f"--{scope}", "--unset-all", key],
                stderr=out.stderr.decode(errors="replace"),
            )

    def rev_parse(self, rev: str) -> str | None:
        out = self.run(["rev-parse", "--verify", "--quiet", "--end-of-options", rev], check=False)
        return out.stdout.decode().strip() if out.returncode == 0 else None

    # -- listings -------------------------------------------------------------

    def ls_files_stage(
        self, paths: Sequence[str] = (), *, literal: bool = False
    ) -> list[IndexEntry]:
        """The staged files (``git ls-files -s -z``), honouring ``keep_index``.

        ``paths`` are pathspecs; with ``literal`` they are plain file and
        directory names (``*`` and ``?`` in a file name match only themselves).
        """
        glob = ["--literal-pathspecs"] if literal else []
        raw = self.run([*glob, "ls-files", "-s", "-z", "--", *paths]).stdout
        # "<mode> <oid> <stage>\t<path>": one decode, slices, and no Python-level
        # __new__ per entry: fast on indexes of 10,000s of files
        make = tuple.__new__
        out = []
        for rec in _decode_path(raw).split("\0"):
            if rec:
                tab = rec.index("\t")
                out.append(
                    make(IndexEntry, (rec[:6], rec[7 : tab - 2], int(rec[tab - 1]), rec[tab + 1 :]))
                )
        return out

    def staged_changes(self) -> list[IndexEntry]:
        """Files the next commit adds or changes: the index against HEAD, deletions left out.

        Before the first commit, every staged file. Renames are not detected
        (a renamed file is an added one). Honours ``keep_index``.
        """
        proc = self.run(
            ["diff-index", "--cached", "--no-renames", "--diff-filter=d", "-z", "HEAD", "--"],
            check=False,
        )
        if proc.returncode != 0:
            if self.rev_parse("HEAD^{tree}") is None:  # no commit yet: everything is new
                return [e for e in self.ls_files_stage() if e.stage == 0]
            self.run(["diff-index", "--cached", "-z", "HEAD", "--"])  # raises with the cause
        raw = proc.stdout
        fields = _decode_path(raw).split("\0")
        out = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            # :<old mode> <new mode> <old oid> <new oid> <status>
            _old_mode, mode, _old_oid, oid, status = meta.lstrip(":").split(" ")
            if status != "U":  # an unmerged path has no stage-0 entry yet
                out.append(IndexEntry(mode, oid, 0, path))
        return out

    def changed_against_head(self, paths: Sequence[str]) -> list[str]:
        """Which of ``paths`` differ between HEAD and the index or the work tree.

        A path in neither HEAD nor the index is not reported (no commit holds
        it). Before the first commit, every path in the index is reported.
        """
        if not paths:
            return []
        if self.rev_parse("HEAD^{tree}") is None:
            return sorted({e.path for e in self.ls_files_stage(paths, literal=True)})
        args = ["--literal-pathspecs", "diff", "--no-ext-diff", "--no-renames", "--name-only"]
        raw = self.run([*args, "-z", "HEAD", "--", *paths]).stdout
        return sorted(p for p in _decode_path(raw).split("\0") if p)

    def check_attr(self, attr: str, paths: Sequence[str], *, cached: bool = True) -> dict[str, str]:
        """path -> value of a gitattribute (``unspecified``, ``unset``, ``set`` or the value).

        ``cached`` reads ``.gitattributes`` from the index (what is being committed).
        """
        if not paths:
            return {}
        args = ["check-attr", "-z", "--stdin", *(["--cached"] if cached else []), attr]
        data = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
        fields = _decode_path(self.run(args, input=data).stdout).split("\0")
        return {fields[i]: fields[i + 2] for i in range(0, len(fields) - 2, 3)}

    def write_object(self, spec: str, dest: IO[bytes], *, filters: bool = False) -> None:
        """Stream an object's content into ``dest`` (any size, no copy in memory).

        ``spec`` is ``<oid>`` or ``<treeish>:<path>`` (``:<path>``: the index).
        With ``filters`` the content is converted as a checkout would write it
        (``git cat-file --filters``: smudge filters, end-of-line conversion).
        """
        args = ["git", "cat-file", "--filters" if filters else "blob", spec]
        _run(args, cwd=self.root, env=self.env(), stdout=dest, error_path=spec)

    def sha256_blob(self, oid: str) -> tuple[str, int]:
        """(sha256 hex, size) of a blob's content, streamed (any size, no copy in memory)."""
        import hashlib

        h = hashlib.sha256()
        size = 0
        proc = subprocess.Popen(
            ["git", "cat-file", "blob", oid],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        with proc.stdout:
            while chunk := proc.stdout.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        if proc.wait() != 0:
            raise ToolError(f"git cat-file blob {oid} failed", command=["git", "cat-file", oid])
        return h.hexdigest(), size

    def ls_tree(
        self, treeish: str, paths: Sequence[str] = (), *, recursive: bool = True
    ) -> list[TreeEntry]:
        """Files of ``treeish`` (``git ls-tree -z -l [-r]``)."""
        args = ["ls-tree", "-z", "-l"]
        if recursive:
            args.append("-r")
        raw = self.run([*args, treeish, "--", *paths]).stdout
        out = []
        for rec in _split_z(raw):
            meta, _, path = rec.partition(b"\t")
            mode, typ, oid, size = meta.decode().split()
            out.append(
                TreeEntry(mode, typ, oid, -1 if size == "-" else int(size), _decode_path(path))
            )
        return out

    def cat_file(self) -> CatFileBatch:
        return CatFileBatch(self)

    def blob_at(self, rev: str, path: str) -> bytes | None:
        """The content of the blob ``path`` in commit ``rev``; None if it has no such blob."""
        out = self.run(["cat-file", "blob", f"{rev}:{path}"], check=False)
        return out.stdout if out.returncode == 0 else None


def _split_z(raw: bytes) -> list[bytes]:
    return [r for r in raw.split(b"\0") if r]


def _decode_path(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _run(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    input: bytes | None = None,
    check: bool = True,
    stdout: IO[bytes] | None = None,
    error_path: str | Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run git; ``stdout`` streams the output to a file instead of capturing it."""
    try:
        proc = subprocess.run(
            list(args),
            cwd=cwd,
            env=dict(env),
            input=input,
            # never our stdin: in the filter that is git's pkt-line pipe, which a git
            # child (reading a config file that is /dev/stdin, say) would take from git
            stdin=subprocess.DEVNULL if input is None else None,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
            check=False,
        )
    except FileNotFoundError:
        require_git()
        raise
    if check and proc.returncode != 0:
        raise ToolError(
            f"{' '.join(args[:2])} failed (exit {proc.returncode})",
            path=cwd if error_path is None else error_path,
            command=args,
            stderr=proc.stderr.decode("utf-8", "replace"),
            hint="check that this is a healthy git repository (`git status`, `git fsck`)",
        )
    return proc


class CatFileBatch:
    """A long-lived ``git cat-file --batch`` process for reading many small objects.

    ``read(name)`` returns the content of one object (or ``None`` when it does
    not exist). ``read_many(names)`` streams a whole list through the one
    process (a writer thread feeds names while results are read, so large
    lists cannot deadlock on pipe buffers).
    """

    def __init__(self, git: Git) -> None:
        self._git = git
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=self._git.root,
                env=self._git.env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        return self._proc

    @staticmethod
    def _read_one(out: IO[bytes], name: str) -> tuple[str, bytes] | None:
        header = out.readline()
        if not header:
            raise ToolError(
                "git cat-file --batch stopped unexpectedly", command=["git", "cat-file"]
            )
        parts = header.rstrip(b"\n").split(b" ")
        if (len(parts) == 2 and parts[1] == b"missing") or len(parts) != 3:
            return None
        size = int(parts[2])
        data = out.read(size)
        out.read(1)  # the newline after the content
        return parts[1].decode(), data

    def read(self, name: str) -> bytes | None:
        """Content of one object (``<oid>`` or ``<treeish>:<path>``), or ``None``."""
        got = self.read_typed(name)
        return None if got is None else got[1]

    def read_typed(self, name: str) -> tuple[str, bytes] | None:
        if "\n" in name:
            return None
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
            proc.stdin.flush()
            return self._read_one(proc.stdout, name)

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes | None]]:
        """Yield ``(name, content or None)`` for every name, in order."""
        names = [n for n in names if "\n" not in n]
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            stdin = proc.stdin

            def feed() -> None:
                try:
                    stdin.write(
                        b"".join(n.encode("utf-8", "surrogateescape") + b"\n" for n in names)
                    )
                    stdin.flush()
                except (BrokenPipeError, OSError):
                    pass

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            try:
                for name in names:
                    got = self._read_one(proc.stdout, name)
                    yield name, None if got is None else got[1]
            finally:
                writer.join()

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> CatFileBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_script(
    argv: Sequence[str],
    *,
    cwd: Path,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a hook script (or ``git lfs HOOK``) with our stdout/stderr; its exit code.

    The environment is passed on unchanged: a chained hook must see what git
    gave us (``GIT_DIR``, ``GIT_INDEX_FILE``...).
    """
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, input=stdin, env=None if env is None else dict(env), check=False
        )
    except OSError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc}", path=argv[0]) from exc
    return proc.returncode
