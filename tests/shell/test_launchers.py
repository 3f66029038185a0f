"""``epollshim install-launchers``: which interpreter the binaries run, and with what flags."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from epollshim.tools import launchers

OURS = "{}.{}".format(*sys.version_info[:2])


def test_auto_picks_a_working_interpreter_of_our_version() -> None:
    chosen = launchers.choose_python("auto")
    assert chosen in (f"/usr/bin/python{OURS}", sys.executable)
    r = subprocess.run(
        [chosen, "-I", "-S", "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.strip() == OURS


def test_an_explicit_interpreter_is_checked(tmp_path: Path) -> None:
    assert launchers.choose_python(sys.executable) == sys.executable
    with pytest.raises(ValueError, match=re.escape(f"needs Python {OURS}")):
        launchers.choose_python("/bin/false")
    fake = tmp_path / "python9"
    fake.write_text("#!/bin/sh\necho 9.9\n")
    fake.chmod(0o755)
    with pytest.raises(ValueError, match=r"found 9\.9"):
        launchers.choose_python(str(fake))


@pytest.mark.parametrize(
    "argv", [["--python"], ["--python", "/bin/false", "d"], ["a", "b"], ["--bogus"]]
)
def test_bad_arguments_give_one_line_and_status_2(
    argv: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    assert launchers.install_launchers(argv) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith(("usage:", "install-launchers:"))


def test_the_launchers_run_with_the_chosen_interpreter(tmp_path: Path) -> None:
    assert launchers.install_launchers(["--python", sys.executable, str(tmp_path)]) == 0
    v2 = (tmp_path / "containerd-shim-epollshim-v2").read_text()
    assert v2.startswith(f"#!{sys.executable} -ISOO\n")  # docstrings and asserts dropped
    assert (tmp_path / "epollshim").read_text().startswith(f"#!{sys.executable} -IS\n")
    assert f"exec {sys.executable} -ISOO -c " in (tmp_path / "epollshim-conmon").read_text()
    r = subprocess.run([tmp_path / "containerd-shim-epollshim-v2", "-v"], capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"epollshim v2 (containerd runtime v2 shim, ttrpc)\n")


def test_another_interpreter_still_finds_the_packages_beside_us(tmp_path: Path) -> None:
    # The launcher of another build appends our site-packages after its own directories,
    # so optional packages installed with us (PyYAML) import; stdlib stays its own.
    other = tmp_path / "python"
    other.symlink_to(f"/usr/bin/python{OURS}")
    if launchers.choose_python("auto") != f"/usr/bin/python{OURS}":
        pytest.skip(f"no distribution python{OURS} here")
    text = launchers.launcher_text("epollshim.v2.main:main", str(other))
    probe = text.split("from epollshim")[0] + "import yaml, os; print(os.__file__)\n"
    script = tmp_path / "probe"
    script.write_text(probe)
    r = subprocess.run([other, "-I", "-S", script], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("/usr/lib/python")
