"""The command line: `eib` and its subcommands (commands.py; devices.py and reports.py add theirs).

    python -m harness.cli run CONFIG      # the same as `eib run CONFIG`
"""
