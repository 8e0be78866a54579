"""Entry point of the GitHub Action (``action.yml``): verify on pull requests, sign releases.

``action.yml`` passes every input to this module as an environment variable
``GHA_ML_INTEGRITY_<INPUT>`` (never by interpolating it into a script), runs
``python -m ml_integrity.action``, and exposes what this module writes to
``$GITHUB_OUTPUT``. Like the CLI this package prints, and :func:`main` is the
only other place that turns errors into exit codes (same contract: 0
verified or signed, 1 integrity or policy failure, 2 usage or configuration
error, 3 operational error).

The package: :mod:`.inputs` (the inputs, the job context, the trust made from
them), :mod:`.verify` and :mod:`.sign` (the two flows), :mod:`.output` (log
lines, annotations, ``$GITHUB_OUTPUT``, the job summary, SARIF, the report)
and :mod:`.github` (the REST client).

Modes:

- ``verify`` reads the LFS pointers of ``HEAD`` (nothing is downloaded for
  that), verifies the bundles ``.ml-integrity/*.sig`` against the trust
  given to the Action, and scans the changed artifacts (fetching only the
  LFS objects the scan needs). Trust never comes from what a pull request
  changed: a trust file given by a path inside the repository is read from
  the pull request's *base* commit (see :class:`.inputs.TrustReader`).
- ``sign`` builds the manifest of ``HEAD``, signs it (keyless with the job's
  OIDC identity, or with a key), and attaches the bundle to the release.

With the ``path`` input both modes work on a model folder or file instead
(an OMS bundle over its files, as ``ml-integrity sign``/``verify`` do).

What the runner gets: a job summary (Markdown), at most 10 ``::error`` and
10 ``::warning`` annotations per step (GitHub's limit; the rest are counted
in the summary), and the outputs ``verified``, ``report``, ``report-path``,
``bundle-path``, ``log-index``, ``asset-url``, ``sarif-path``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from ml_integrity.action.inputs import ENV_PREFIX, Context, Inputs
from ml_integrity.action.output import Runner, escape_data, md
from ml_integrity.action.sign import run_sign
from ml_integrity.action.verify import run_verify
from ml_integrity.errors import Error, ExitCode

# --- main ---------------------------------------------------------------------------------


def _error_title(err: Error) -> str:
    if err.exit_code == ExitCode.FAILURE:
        return "ml-integrity: integrity failure"
    if err.exit_code == ExitCode.USAGE:
        return "ml-integrity: configuration error"
    return "ml-integrity: could not run"


def main(environ: Mapping[str, str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run the Action; return the exit code of the contract."""
    env = os.environ if environ is None else environ
    out = stdout or sys.stdout
    output_file = env.get("GITHUB_OUTPUT")
    summary_file = env.get("GITHUB_STEP_SUMMARY")
    runner = Runner(
        out,
        Path(output_file) if output_file else None,
        Path(summary_file) if summary_file else None,
    )
    mode = env.get(ENV_PREFIX + "MODE", "verify").strip().lower() or "verify"
    try:
        ctx = Context.from_env(env)
        inputs = Inputs.from_env(env)
        with _chdir(ctx.workspace):
            if inputs.mode == "verify":
                return run_verify(ctx, inputs, runner)
            return run_sign(ctx, inputs, runner)
    except Error as err:
        file = err.path if err.path and not os.path.isabs(err.path) else None
        message = err.message + (f" (hint: {err.hint})" if err.hint else "")
        runner.annotate("error", message, file=file, title=_error_title(err))
        for line in err.details():
            runner.log(f"  {line}")
        runner.add_summary(
            f"## ml-integrity: ❌ {_error_title(err).split(': ', 1)[1]}\n\n"
            + "<br>".join(md(line) for line in err.diagnostics().splitlines())
        )
        if mode == "verify":
            runner.set_output("verified", "false")
        return int(err.exit_code)
    except KeyboardInterrupt:
        runner.annotate("error", "interrupted", title="ml-integrity")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: say so, fail, and keep the job's log useful
        runner.annotate(
            "error",
            f"internal error: {type(exc).__name__}: {exc}. This is a bug in ml-integrity; "
            "please report it at https://github.com/ml-integrity/ml-integrity/issues",
            title="ml-integrity: internal error",
        )
        if mode == "verify":
            runner.set_output("verified", "false")
        return int(ExitCode.OPERATIONAL)
    finally:
        try:
            runner.flush()
        except OSError as exc:
            out.write(
                f"::error::ml-integrity: cannot write the step outputs: {escape_data(str(exc))}\n"
            )


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
