"""The command line's wiring: every subcommand builds, and only the one that runs is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segformer_lab import cli


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_builds_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: segformer-lab {command}" in capsys.readouterr().out


def test_help_lists_every_command_without_importing_torch():
    """``segformer-lab --help`` (and the package import) stay light: the tools, and with
    them torch, Lightning and onnxruntime, load only for the subcommand that runs."""
    code = (
        "import sys\n"
        "from segformer_lab import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'onnxruntime', 'segformer_lab.tools') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for command in cli.COMMANDS:
        assert command in out


def test_a_subcommand_imports_only_its_own_tool():
    code = (
        "import sys\n"
        "from segformer_lab import cli\n"
        "cli.build_parser('models')\n"
        "print(sorted(m for m in sys.modules if m.startswith('segformer_lab.tools.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['segformer_lab.tools.catalog']"
