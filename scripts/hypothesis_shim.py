# Loaded by a .pth file in scripts/apifuzz's venv (target/schemathesis-venv).
#
# CPython 3.11 can raise SystemError("AST constructor recursion depth mismatch") from
# ast.parse (python/cpython#106905). Hypothesis calls ast.parse on a whole source file only
# to describe a lambda for a strategy's repr, and lets that SystemError end the schemathesis
# run as a "Runtime Error" (seen in CI on a clean clone). A description is all that is at
# stake, so a failed parse becomes an unknown description here.
import hypothesis.internal.lambda_sources as _lambda_sources

_describe = _lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


_lambda_sources._lambda_description = _lambda_description
