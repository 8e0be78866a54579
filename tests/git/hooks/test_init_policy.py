"""``ml-integrity init`` writes a policy template that the policy parser accepts.

The hooks' trust can come from the in-repository policy at a trusted base
(``--policy-base HEAD``); the template is where users start from.
"""

from __future__ import annotations

from pathlib import Path

from tests.git.hooks.support import git, make_keys, mi


def test_the_template_and_its_examples_are_valid(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git("init", "-q", repo, cwd=tmp_path)
    assert mi("init", cwd=repo).returncode == 0
    policy = repo / ".ml-integrity" / "policy.yaml"
    checked = mi("policy", "check", policy, cwd=repo)
    assert checked.returncode == 0, checked.output
    # the commented examples, uncommented, are a valid policy too
    lines = policy.read_text().splitlines()
    examples = [
        line[2:] if line.startswith(("# signers:", "# artifacts:", "#   ")) else line
        for line in lines
    ]
    policy.write_text("\n".join(examples) + "\n")
    keys = repo / ".ml-integrity" / "keys"
    make_keys(keys, "release")
    (keys / "release.pem.pub").rename(keys / "release.pub")
    checked = mi("policy", "check", policy, cwd=repo)
    assert checked.returncode == 0, checked.output
    assert "release: public key" in checked.stdout
    assert "GitHub Actions (repository ORG/REPO" in checked.stdout
