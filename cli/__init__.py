"""The plumbing the command-line scripts share (flags.py): written once, used by every script and benchmark.
Library packages never import it: only scripts speak of --flags."""
