"""``python -m ml_integrity``: the same program as ``ml-integrity``."""

from ml_integrity.cli.main import run

if __name__ == "__main__":
    run()
