"""Config checks before any job runs: the JSON schema (`config_schema`), with one clear message
per fault, then cross-field checks (layers of the architecture, splits, class counts, chunk sizes, paths).

Every message names the key, the bad value and what is accepted. All faults are collected and
raised together as one `ConfigError`. Imports no torch and no Snakemake: it runs at parse time
(on the submit host and in every cluster job) and is unit-testable on plain dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from unit_ablation.workflow.config_context import Check, Context, _overlaps
from unit_ablation.workflow.config_schema import load_schema, schema_faults
from unit_ablation.workflow.data_checks import (
    check_attribute_split,
    check_class_counts,
    check_paths,
    check_splits,
)
from unit_ablation.workflow.model_checks import (
    check_ablation,
    check_arch,
    check_compare_values,
    check_cumulative,
    check_layers,
    check_models_and_data,
)


class ConfigError(ValueError):
    """One or more faults in the config; `problems` lists one message per fault."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        count = len(self.problems)
        header = f"config: {count} problem{'s' if count != 1 else ''} (nothing was run):"
        super().__init__("\n".join([header, *(f"  - {problem}" for problem in self.problems)]))


CHECKS: tuple[Check, ...] = (
    check_attribute_split,
    check_compare_values,
    check_models_and_data,
    check_arch,
    check_layers,
    check_cumulative,
    check_ablation,
    check_splits,
    check_class_counts,
    check_paths,
)


def cross_field_problems(
    config: dict, basedir: str | Path | None = None, rejected: Sequence[str] = ()
) -> list[str]:
    """Faults between keys and against the file system. A check that reads a key the schema
    `rejected` (key paths) is skipped; with any rejected key, a check that trips over a malformed
    value elsewhere is skipped too, instead of raising."""
    context = Context(config, basedir)
    problems: list[str] = []
    for check in CHECKS:
        if any(_overlaps(path, key) for path in rejected for key in getattr(check, "reads", ())):
            continue
        try:
            for problem in check(config, context):
                if problem not in problems:
                    problems.append(problem)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            if not rejected:
                raise
    return problems


def check_config(config: dict, schema: str | Path | dict, basedir: str | Path | None = None) -> None:
    """Validate `config` (filling schema defaults in place), then the cross-field checks; raise one
    ConfigError listing every fault. `basedir`: the checkout (its data/fashion-mnist is searched)."""
    schema = schema if isinstance(schema, dict) else load_schema(schema)
    faults = schema_faults(config, schema)
    problems = [message for _, message in faults]
    problems += cross_field_problems(config, basedir, rejected=[path for path, _ in faults])
    if problems:
        raise ConfigError(problems)
