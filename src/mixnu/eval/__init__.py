"""Qualitative evaluation: the Korean prompt suite, the LLM judge, automatic checks, reports,
and human verification (annotation page, judge-human agreement). See docs/eval-run-format.md."""
