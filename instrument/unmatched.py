"""Which of the user's patterns named nothing, so that a typo is pointed out once.

A pattern in ``include``, ``only`` or ``exclude`` that names modules or paths
counts as used when it decided about a module the selector was asked about.
One that names functions (``module:qualname``), and every ``levels`` pattern,
counts as used when it names a function of a module that was planned.  ``scope
plan`` reports the patterns the modules it explained leave unused; a recorded
run, those that the modules it loaded leave unused.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from scope.instrument.plan import (
    ModulePlan,
    PlanSettings,
    is_function_pattern,
    pattern_matches,
    script_names,
)


def unmatched_patterns(
    settings: PlanSettings, decided_by: Collection[str], plans: Iterable[ModulePlan]
) -> list[tuple[str, str]]:
    """(option, pattern) for each pattern that named nothing, in the settings' order.

    ``decided_by`` holds the module and path patterns that decided about a module.
    """
    functions = [
        (name, function.qualname)
        for plan in plans
        for name in (plan.module, *script_names(plan.module, plan.path))
        for function in plan.functions
    ]

    def names_a_function(pattern: str) -> bool:
        return any(pattern_matches(pattern, module, qualname) for module, qualname in functions)

    unmatched = []
    for option, patterns in (
        ("level", [pattern for pattern, _ in settings.levels]),
        ("include", settings.include),
        ("only", settings.only),
        ("exclude", settings.exclude),
    ):
        for pattern in patterns:
            by_function = option == "level" or is_function_pattern(pattern)
            used = names_a_function(pattern) if by_function else pattern in decided_by
            if not used:
                unmatched.append((option, pattern))
    return unmatched


def describe(unmatched: Iterable[tuple[str, str]], where: str) -> list[str]:
    """One line for each unmatched pattern, saying where it found nothing."""
    return [f"--{option} {pattern!r} matched nothing {where}" for option, pattern in unmatched]
