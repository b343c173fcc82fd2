"""The repository keeps its promises about itself."""
import os
import re

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    cmds = re.findall(r"^    (apt-get .*&& make check)$", readme, re.M)
    assert len(cmds) == 1
    assert cmds[0] in ci.splitlines()
