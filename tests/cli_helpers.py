"""Running the CLI in-process and checking the bad-input contract, shared by the CLI tests."""
from typer.testing import CliRunner

from quickadapt.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_bad_input(result, fragment):
    """Exit code 2, exactly one line on stderr naming the problem, no traceback anywhere."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment.lower() in lines[0].lower(), lines[0]
